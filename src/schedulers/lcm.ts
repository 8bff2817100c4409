// LCMScheduler: multistep sampling of latent consistency models (Luo et al. 2023,
// arXiv:2310.04378, after Song et al.'s consistency models). The model's x_0 estimate passes
// through the consistency boundary condition f(x, t) = c_skip(t) x + c_out(t) x̂_0 with
// c_skip = σ_d²/((s t)² + σ_d²), c_out = s t/√((s t)² + σ_d²) (σ_d = 0.5, s = timestep_scaling),
// then is re-noised to the next timestep with fresh noise (every step but the last). Timesteps
// are a subset of the distillation schedule (k·⌊T/original_inference_steps⌋ − 1). AlphaScheduler
// holds the ᾱ table, x̂_0 and add_noise. Int timesteps.

import { f32, add32, sub32, mul32, div32, sqrt32, sq32 } from "../core/float32.ts";
import { type Tensor, tidy } from "../tensor/index.ts";
import { AlphaScheduler } from "./alpha-scheduler.ts";
import { type Scheduler, type StepOptions, type StepOutput, asFloat32, castTo, drawNoise } from "./scheduler.ts";

export class LCMScheduler extends AlphaScheduler implements Scheduler {
  constructor(config: Record<string, unknown> = {}, overrides: Record<string, unknown> = {}) {
    super({ className: "LCMScheduler", config, overrides, predictionTypes: ["epsilon", "v_prediction", "sample"] });
    this.timesteps = Array.from({ length: this.config.num_train_timesteps }, (_, i) => this.config.num_train_timesteps - 1 - i);
  }

  /**
   * The LCM schedule: the distillation timesteps k·c − 1 (c = ⌊T/original_inference_steps⌋,
   * k = 1 … original_inference_steps), largest first, sampled at evenly spaced indices.
   */
  setTimesteps(numInferenceSteps: number, originalInferenceSteps?: number, strength = 1): void {
    const T = this.config.num_train_timesteps;
    const original = originalInferenceSteps ?? this.config.original_inference_steps!;
    if (original > T) throw new Error(`LCMScheduler: original_inference_steps=${original} cannot exceed num_train_timesteps=${T}`);
    this.checkInferenceSteps(numInferenceSteps);
    const c = Math.floor(T / original);
    const origin = Array.from({ length: Math.trunc(original * strength) }, (_, k) => (k + 1) * c - 1);
    if (Math.floor(origin.length / numInferenceSteps) < 1)
      throw new Error(`LCMScheduler: original_inference_steps × strength = ${origin.length} is smaller than numInferenceSteps=${numInferenceSteps}`);
    if (numInferenceSteps > original)
      throw new Error(`LCMScheduler: numInferenceSteps=${numInferenceSteps} cannot exceed original_inference_steps=${original}`);
    origin.reverse();
    // np.floor(np.linspace(0, len, num, endpoint=False)): index i·len/num.
    const step = origin.length / numInferenceSteps;
    this.timesteps = Array.from({ length: numInferenceSteps }, (_, i) => origin[Math.floor(i * step)]!);
    this.numInferenceSteps = numInferenceSteps;
    this.reset();
  }

  /** c_skip and c_out of the boundary condition at timestep t (float32, t·s as torch computes it). */
  boundaryScalings(t: number): { cSkip: number; cOut: number } {
    const sigmaData2 = 0.25; // σ_d = 0.5
    const st = mul32(f32(t), f32(this.config.timestep_scaling!));
    const denom = add32(sq32(st), sigmaData2);
    return { cSkip: div32(sigmaData2, denom), cOut: div32(st, sqrt32(denom)) };
  }

  step(modelOutput: Tensor, t: number, sample: Tensor, opts: StepOptions = {}): StepOutput {
    this.requireTimesteps();
    const i = this.currentIndex(t);
    // 1. the next timestep of the schedule (the same one at the end).
    const prevT = i + 1 < this.timesteps.length ? this.timesteps[i + 1]! : t;
    // 2. ᾱ_t, ᾱ_prev.
    const a = this.alphaProd(t);
    const aPrev = this.alphaProd(prevT);
    const bPrev = sub32(1, aPrev);
    // 3. boundary-condition scalings.
    const { cSkip, cOut } = this.boundaryScalings(t);
    const last = i === this.numInferenceSteps! - 1;
    const out = tidy(() => {
      const x = asFloat32(sample);
      const m = asFloat32(modelOutput);
      // 4. x̂_0 from the parameterisation; 5. optional clipping.
      const x0 = this.predictOriginal(m, x, a);
      // 6. denoised = c_out x̂_0 + c_skip x.
      const denoised = x0.mul(cOut).add(x.mul(cSkip));
      // 7. re-noise to the next timestep (not after the last one).
      const prev = last ? denoised.reshape(denoised.shape) : denoised.mul(sqrt32(aPrev)).add(drawNoise(opts, m).mul(sqrt32(bPrev)));
      return { prevSample: castTo(prev, modelOutput.dtype), denoised: castTo(denoised, modelOutput.dtype) };
    });
    this.stepIndex = i + 1;
    return out;
  }
}
