// SigmaScheduler: the shared base of the σ-parameterised samplers of k-diffusion's family
// (Karras et al. 2022) — Euler, Euler ancestral and LMS: the training ᾱ and σ tables, the
// inference σ's (np.interp at the spaced timesteps, or log-linear, or Karras's ρ = 7 levels mapped
// back to fractional timesteps) with their final σ, init noise sigma, the VP-scaled model input
// x/√(σ² + 1), the x_0 estimate for each prediction type, and add_noise x_0 + σ ε. Timesteps are
// float32 values. Each subclass validates the options its diffusers class has; keys a class does
// not know are absent from its config, so they select the default branch here.

import { exp32, f32, add32, div32, log32, sqrt32, sq32 } from "../core/float32.ts";
import { type Tensor, tidy } from "../tensor/index.ts";
import { torchLinspaceF32 } from "./betas.ts";
import { ConfiguredScheduler, type SchedulerSetup } from "./configured-scheduler.ts";
import { perBatch, timestepList } from "./scheduler.ts";
import {
  finalSigma,
  interpIndex,
  karrasSigmas,
  logSigmas,
  npLinspace,
  sigmaAlphasCumprod,
  sigmaToT,
  spacedTimesteps,
  trainSigmas,
} from "./schedule.ts";

/** x_0 = c_skip x + c_out v with c_skip = 1/(σ² + 1), c_out = −σ/√(σ² + 1) (v-prediction in σ form). */
export function vPredictionX0(m: Tensor, x: Tensor, sigma: number): Tensor {
  const s2p1 = add32(sq32(sigma), 1);
  return m.mul(div32(-sigma, sqrt32(s2p1))).add(x.div(s2p1));
}

export abstract class SigmaScheduler extends ConfiguredScheduler {
  /** σ per step plus the final σ (before setTimesteps: the training σ's, largest first, then 0). */
  sigmas: number[];

  protected constructor(setup: SchedulerSetup) {
    super(setup, sigmaAlphasCumprod);
    const cfg = this.config;
    this.sigmas = [...Array.from(trainSigmas(this.alphasCumprod)).reverse(), 0];
    this.timesteps = npLinspace(0, cfg.num_train_timesteps - 1, cfg.num_train_timesteps).reverse().map(f32);
  }

  /** σ_max for linspace/trailing spacing, √(σ_max² + 1) for leading (the VP-normalised scale). */
  get initNoiseSigma(): number {
    const max = Math.max(...this.sigmas);
    if (this.config.timestep_spacing === "linspace" || this.config.timestep_spacing === "trailing") return max;
    return sqrt32(add32(sq32(max), 1));
  }

  /**
   * The schedule of `numInferenceSteps` steps: timesteps by the configured spacing (NumPy float64,
   * cast to float32), σ interpolated there from the training σ's ("linear", the default) or
   * log-linear between σ_max and σ_min (interpolation_type "log_linear"), optionally replaced by
   * Karras's levels between sigma_min/sigma_max (default: the ends of that table) with the
   * fractional timesteps they map back to, then the final σ (final_sigmas_type; 0 by default).
   */
  setTimesteps(numInferenceSteps: number): void {
    this.checkInferenceSteps(numInferenceSteps);
    const cfg = this.config;
    const T = cfg.num_train_timesteps;
    this.numInferenceSteps = numInferenceSteps;
    let timesteps = spacedTimesteps(cfg.timestep_spacing, T, numInferenceSteps, cfg.steps_offset).map(f32);
    const train = trainSigmas(this.alphasCumprod);
    let sigmas: number[];
    if (cfg.interpolation_type === "log_linear") {
      // torch.linspace(log σ[-1], log σ[0], n + 1).exp() in float32, exactly as diffusers writes
      // it (from σ_max down to σ_min, n + 1 values before the final σ).
      const ls = torchLinspaceF32(log32(train[T - 1]!), log32(train[0]!), numInferenceSteps + 1);
      sigmas = Array.from(ls, (v) => exp32(v));
    } else {
      sigmas = timesteps.map((t) => interpIndex(t, train));
    }
    if (cfg.use_karras_sigmas) {
      const logSig = logSigmas(train);
      const sigmaMin = cfg.sigma_min ?? sigmas[sigmas.length - 1]!;
      const sigmaMax = cfg.sigma_max ?? sigmas[0]!;
      sigmas = karrasSigmas(sigmaMin, sigmaMax, numInferenceSteps);
      timesteps = sigmas.map((s) => f32(sigmaToT(s, logSig)));
    }
    this.sigmas = [...sigmas.map(f32), f32(finalSigma(cfg.final_sigmas_type, this.alphasCumprod))];
    this.timesteps = timesteps;
    this.reset();
  }

  /** x / √(σ² + 1): the VP-scaled model input (the UNet was trained on unit-variance inputs). */
  scaleModelInput(sample: Tensor, t: number): Tensor {
    const sigma = this.sigmas[this.currentIndex(t)]!;
    return sample.div(sqrt32(add32(sq32(sigma), 1)));
  }

  /**
   * The denoised x_0 from the model's parameterisation at σ (ε-prediction taken at σ̂ = σ(1 + γ)
   * when Euler's churn raised the noise level; v-prediction always at σ, as diffusers does).
   */
  protected predictOriginal(m: Tensor, x: Tensor, sigma: number, sigmaHat = sigma): Tensor {
    const pt = this.config.prediction_type;
    if (pt === "sample") return m.reshape(m.shape);
    if (pt === "epsilon") return x.sub(m.mul(sigmaHat));
    return vPredictionX0(m, x, sigma);
  }

  /** x_0 + σ_t ε: the noisy sample at each batch item's timestep (VE form). */
  addNoise(original: Tensor, noise: Tensor, timesteps: number[] | Tensor): Tensor {
    const sig = this.noiseIndices(timestepList(timesteps)).map((i) => this.sigmas[i]!);
    return tidy(() => original.add(noise.mul(perBatch(sig, original))));
  }
}
