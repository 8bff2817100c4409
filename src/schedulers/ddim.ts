// DDIMScheduler: denoising diffusion implicit models (Song et al. 2020, arXiv:2010.02502), the
// non-Markovian sampler of eq. (12) with the η-controlled noise of eq. (16), as diffusers'
// DDIMScheduler (leading / trailing / linspace spacing, v-prediction, clip_sample,
// set_alpha_to_one, zero-terminal-SNR betas). Integer timesteps.

import { roundHalfEven, f32, sub32, mul32, div32, sqrt32, sq32 } from "../core/float32.ts";
import { type Tensor, tidy } from "../tensor/index.ts";
import { alphasCumprodFor } from "./betas.ts";
import { type SchedulerConfig, rejectTrue, requireOneOf, resolveConfig } from "./config.ts";
import {
  BaseScheduler,
  type Scheduler,
  type StepOptions,
  type StepOutput,
  asFloat32,
  castTo,
  drawNoise,
  perBatch,
  timestepList,
} from "./scheduler.ts";
import { spacedTimesteps } from "./schedule.ts";

export class DDIMScheduler extends BaseScheduler implements Scheduler {
  readonly className = "DDIMScheduler";
  readonly config: SchedulerConfig;
  readonly alphasCumprod: Float32Array;
  readonly initNoiseSigma = 1.0;
  /** ᾱ used for the step that lands past t = 0: 1, or ᾱ_0 (set_alpha_to_one false, as SD). */
  readonly finalAlphaCumprod: number;

  constructor(config: Record<string, unknown> = {}, overrides: Record<string, unknown> = {}) {
    super();
    this.config = resolveConfig("DDIMScheduler", config, overrides);
    requireOneOf(this.className, this.config, "prediction_type", ["epsilon", "v_prediction", "sample"]);
    rejectTrue(this.className, this.config, "thresholding");
    this.alphasCumprod = alphasCumprodFor(this.config);
    this.finalAlphaCumprod = this.config.set_alpha_to_one ? 1 : this.alphasCumprod[0]!;
  }

  setTimesteps(numInferenceSteps: number): void {
    const { num_train_timesteps: T, timestep_spacing, steps_offset } = this.config;
    if (!Number.isInteger(numInferenceSteps) || numInferenceSteps < 1 || numInferenceSteps > T)
      throw new Error(`DDIMScheduler: numInferenceSteps=${numInferenceSteps} must be an integer in [1, ${T}]`);
    this.numInferenceSteps = numInferenceSteps;
    const ts = spacedTimesteps(timestep_spacing, T, numInferenceSteps, steps_offset);
    // linspace is rounded to integers; leading already holds steps_offset; trailing is integral.
    this.timesteps = ts.map((t) => roundHalfEven(t));
    this.reset();
  }

  scaleModelInput(sample: Tensor): Tensor {
    return sample.reshape(sample.shape);
  }

  /** ᾱ at a timestep, or the final value for t < 0. */
  private alphaProd(t: number): number {
    return t >= 0 ? this.alphasCumprod[t]! : this.finalAlphaCumprod;
  }

  /** σ_t(η)² / η² of eq. (16): (1 − ᾱ_{t−1})/(1 − ᾱ_t) · (1 − ᾱ_t/ᾱ_{t−1}). */
  private variance(t: number, prevT: number): number {
    const a = this.alphaProd(t);
    const aPrev = this.alphaProd(prevT);
    return mul32(div32(sub32(1, aPrev), sub32(1, a)), sub32(1, div32(a, aPrev)));
  }

  step(modelOutput: Tensor, t: number, sample: Tensor, opts: StepOptions = {}): StepOutput {
    this.requireTimesteps();
    const cfg = this.config;
    const eta = opts.eta ?? 0;
    // 1. previous timestep t − T/n (DDIM skips along the sub-sequence τ).
    const prevT = t - Math.floor(cfg.num_train_timesteps / this.numInferenceSteps!);
    // 2. ᾱ_t, ᾱ_{t−1}, 1 − ᾱ_t as float32 scalars.
    const a = this.alphaProd(t);
    const aPrev = this.alphaProd(prevT);
    const b = sub32(1, a);
    const sa = sqrt32(a);
    const sb = sqrt32(b);
    return tidy(() => {
      const x = asFloat32(sample);
      const m = asFloat32(modelOutput);
      // 3. "predicted x_0" of eq. (12) and the ε it implies.
      let x0: Tensor;
      let eps: Tensor;
      if (cfg.prediction_type === "epsilon") {
        x0 = x.sub(m.mul(sb)).div(sa);
        eps = m;
      } else if (cfg.prediction_type === "sample") {
        x0 = m;
        eps = x.sub(m.mul(sa)).div(sb);
      } else {
        // v = √ᾱ ε − √(1−ᾱ) x_0 (Salimans & Ho 2022): x_0 = √ᾱ x_t − √(1−ᾱ) v, ε = √ᾱ v + √(1−ᾱ) x_t.
        x0 = x.mul(sa).sub(m.mul(sb));
        eps = m.mul(sa).add(x.mul(sb));
      }
      // 4. optional clipping of x_0.
      if (cfg.clip_sample) x0 = x0.clamp(-cfg.clip_sample_range!, cfg.clip_sample_range!);
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

  /** q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I), per batch item. */
  addNoise(original: Tensor, noise: Tensor, timesteps: number[] | Tensor): Tensor {
    return addNoiseVP(this.alphasCumprod, original, noise, timestepList(timesteps));
  }
}

/** √ᾱ_t x_0 + √(1 − ᾱ_t) ε with integer timesteps (DDPM-family add_noise). */
export function addNoiseVP(alphasCumprod: Float32Array, original: Tensor, noise: Tensor, ts: number[]): Tensor {
  const a = ts.map((t) => {
    const v = alphasCumprod[Math.round(t)];
    if (v === undefined) throw new Error(`addNoise: timestep ${t} is outside [0, ${alphasCumprod.length - 1}]`);
    return v;
  });
  return tidy(() => {
    const sa = perBatch(a.map((v) => sqrt32(v)), original);
    const sb = perBatch(a.map((v) => sqrt32(sub32(1, v))), original);
    return original.mul(sa).add(noise.mul(sb));
  });
}
