// DDIMScheduler: denoising diffusion implicit models (Song et al. 2020, arXiv:2010.02502), the
// non-Markovian sampler of eq. (12) with the η-controlled noise of eq. (16), as diffusers'
// DDIMScheduler (leading / trailing / linspace spacing, v-prediction, clip_sample,
// set_alpha_to_one, zero-terminal-SNR betas). AlphaScheduler holds the ᾱ table, the x̂_0 / ε
// estimates and add_noise. Integer timesteps.

import { roundHalfEven, f32, sub32, mul32, div32, sqrt32, sq32 } from "../core/float32.ts";
import { type Tensor, tidy } from "../tensor/index.ts";
import { AlphaScheduler } from "./alpha-scheduler.ts";
import { rejectTrue } from "./config.ts";
import { type Scheduler, type StepOptions, type StepOutput, asFloat32, castTo, drawNoise } from "./scheduler.ts";
import { spacedTimesteps } from "./schedule.ts";

export class DDIMScheduler extends AlphaScheduler implements Scheduler {
  constructor(config: Record<string, unknown> = {}, overrides: Record<string, unknown> = {}) {
    super({ className: "DDIMScheduler", config, overrides, predictionTypes: ["epsilon", "v_prediction", "sample"] });
    rejectTrue(this.className, this.config, "thresholding");
  }

  setTimesteps(numInferenceSteps: number): void {
    this.checkInferenceSteps(numInferenceSteps);
    const { num_train_timesteps: T, timestep_spacing, steps_offset } = this.config;
    this.numInferenceSteps = numInferenceSteps;
    const ts = spacedTimesteps(timestep_spacing, T, numInferenceSteps, steps_offset);
    // linspace is rounded to integers; leading already holds steps_offset; trailing is integral.
    this.timesteps = ts.map((t) => roundHalfEven(t));
    this.reset();
  }

  /** σ_t(η)² / η² of eq. (16): (1 − ᾱ_{t−1})/(1 − ᾱ_t) · (1 − ᾱ_t/ᾱ_{t−1}). */
  private variance(t: number, prevT: number): number {
    const a = this.alphaProd(t);
    const aPrev = this.alphaProd(prevT);
    return mul32(div32(sub32(1, aPrev), sub32(1, a)), sub32(1, div32(a, aPrev)));
  }

  step(modelOutput: Tensor, t: number, sample: Tensor, opts: StepOptions = {}): StepOutput {
    this.requireTimesteps();
    const eta = opts.eta ?? 0;
    // 1. previous timestep t − T/n (DDIM skips along the sub-sequence τ).
    const prevT = t - Math.floor(this.config.num_train_timesteps / this.numInferenceSteps!);
    // 2. ᾱ_t, ᾱ_{t−1} as float32 scalars.
    const a = this.alphaProd(t);
    const aPrev = this.alphaProd(prevT);
    return tidy(() => {
      const x = asFloat32(sample);
      const m = asFloat32(modelOutput);
      // 3. "predicted x_0" of eq. (12) (4. clipped if clip_sample) and the ε it implies.
      const x0 = this.predictOriginal(m, x, a);
      const eps = this.predictEpsilon(m, x, a);
      // 5. σ_t(η) = η √variance, eq. (16).
      const std = mul32(f32(eta), sqrt32(this.variance(t, prevT)));
      // 6. "direction pointing to x_t": √(1 − ᾱ_{t−1} − σ_t²) · ε.
      const dir = eps.mul(sqrt32(sub32(sub32(1, aPrev), sq32(std))));
      // 7. x_{t−1} = √ᾱ_{t−1} x_0 + direction (+ σ_t z).
      let prev = x0.mul(sqrt32(aPrev)).add(dir);
      if (eta > 0) prev = prev.add(drawNoise(opts, m).mul(std));
      return {
        prevSample: castTo(prev, modelOutput.dtype),
        predOriginalSample: castTo(x0, modelOutput.dtype),
      };
    });
  }
}
