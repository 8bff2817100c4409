// AlphaScheduler: the shared base of the ᾱ-parameterised (DDPM-family, variance-preserving)
// samplers with integer timesteps — DDIM, PNDM and LCM: the ᾱ table, the ᾱ used past t = 0
// (1, or ᾱ_0 when set_alpha_to_one is false), unit init noise, the unscaled model input, the x̂_0
// and ε estimates for each prediction type (with clip_sample), the step-count limit of
// num_train_timesteps their diffusers set_timesteps checks, and add_noise √ᾱ_t x_0 + √(1 − ᾱ_t) ε.

import { sqrt32, sub32 } from "../core/float32.ts";
import { type Tensor, tidy } from "../tensor/index.ts";
import { alphasCumprodFor } from "./betas.ts";
import { ConfiguredScheduler, type SchedulerSetup } from "./configured-scheduler.ts";
import { perBatch, timestepList } from "./scheduler.ts";

export abstract class AlphaScheduler extends ConfiguredScheduler {
  readonly initNoiseSigma = 1.0;
  /** ᾱ used for the step that lands past t = 0: 1, or ᾱ_0 (set_alpha_to_one false, as SD). */
  readonly finalAlphaCumprod: number;

  protected constructor(setup: SchedulerSetup) {
    super(setup, alphasCumprodFor);
    this.finalAlphaCumprod = this.config.set_alpha_to_one ? 1 : this.alphasCumprod[0]!;
  }

  protected override inferenceStepLimits(): { min: number; max: number } {
    return { min: 1, max: this.config.num_train_timesteps };
  }

  /** ᾱ at a timestep, or the final value for t < 0. */
  protected alphaProd(t: number): number {
    return t >= 0 ? this.alphasCumprod[t]! : this.finalAlphaCumprod;
  }

  scaleModelInput(sample: Tensor): Tensor {
    return sample.reshape(sample.shape);
  }

  /**
   * diffusers' pred_original_sample at ᾱ_t = a: (x − √(1−ᾱ) ε)/√ᾱ, the sample itself, or
   * √ᾱ x − √(1−ᾱ) v (Salimans & Ho 2022); then clipped to ±clip_sample_range if clip_sample.
   */
  protected predictOriginal(m: Tensor, x: Tensor, a: number): Tensor {
    const cfg = this.config;
    const sa = sqrt32(a);
    const sb = sqrt32(sub32(1, a));
    let x0: Tensor;
    if (cfg.prediction_type === "epsilon") x0 = x.sub(m.mul(sb)).div(sa);
    else if (cfg.prediction_type === "sample") x0 = m;
    else x0 = x.mul(sa).sub(m.mul(sb));
    if (cfg.clip_sample) x0 = x0.clamp(-cfg.clip_sample_range!, cfg.clip_sample_range!);
    return x0;
  }

  /**
   * The ε the model output implies at ᾱ_t = a (from the unclipped prediction): ε itself,
   * (x − √ᾱ x_0)/√(1−ᾱ), or √ᾱ v + √(1−ᾱ) x. For ε-prediction it is `m` itself.
   */
  protected predictEpsilon(m: Tensor, x: Tensor, a: number): Tensor {
    const pt = this.config.prediction_type;
    if (pt === "epsilon") return m;
    const sa = sqrt32(a);
    const sb = sqrt32(sub32(1, a));
    if (pt === "sample") return x.sub(m.mul(sa)).div(sb);
    return m.mul(sa).add(x.mul(sb));
  }

  /** q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I), per batch item (integer timesteps). */
  addNoise(original: Tensor, noise: Tensor, timesteps: number[] | Tensor): Tensor {
    const a = timestepList(timesteps).map((t) => {
      const v = this.alphasCumprod[Math.round(t)];
      if (v === undefined) throw new Error(`addNoise: timestep ${t} is outside [0, ${this.alphasCumprod.length - 1}]`);
      return v;
    });
    return tidy(() => {
      const sa = perBatch(a.map((v) => sqrt32(v)), original);
      const sb = perBatch(a.map((v) => sqrt32(sub32(1, v))), original);
      return original.mul(sa).add(noise.mul(sb));
    });
  }
}
