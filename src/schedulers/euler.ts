// EulerDiscreteScheduler: Euler's method on the probability-flow ODE in σ (Karras et al. 2022,
// arXiv:2206.00364, Algorithm 2; k-diffusion's sample_euler), as diffusers' EulerDiscreteScheduler:
// σ from the training ᾱ, interpolated at the (float) timesteps, or Karras's ρ = 7 levels mapped
// back to fractional timesteps; optional stochastic churn. Timesteps are float32 values.

import { f32, add32, sub32, mul32, div32, sqrt32, sq32, log32, exp32 } from "../core/float32.ts";
import { type Tensor, tidy } from "../tensor/index.ts";
import { alphasCumprodFor, torchLinspaceF32 } from "./betas.ts";
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
import { finalSigma, interpIndex, karrasSigmas, logSigmas, npLinspace, sigmaToT, spacedTimesteps, trainSigmas } from "./schedule.ts";

export class EulerDiscreteScheduler extends BaseScheduler implements Scheduler {
  readonly className = "EulerDiscreteScheduler";
  readonly config: SchedulerConfig;
  readonly alphasCumprod: Float32Array;
  sigmas: number[];

  constructor(config: Record<string, unknown> = {}, overrides: Record<string, unknown> = {}) {
    super();
    const cfg = (this.config = resolveConfig("EulerDiscreteScheduler", config, overrides));
    requireOneOf(this.className, cfg, "prediction_type", ["epsilon", "v_prediction", "sample"]);
    requireOneOf(this.className, cfg, "interpolation_type", ["linear", "log_linear"]);
    requireOneOf(this.className, cfg, "timestep_type", ["discrete"]);
    requireOneOf(this.className, cfg, "final_sigmas_type", ["zero", "sigma_min"]);
    rejectTrue(this.className, cfg, "use_exponential_sigmas", "use_beta_sigmas");
    this.alphasCumprod = alphasCumprodFor(cfg);
    // Zero terminal SNR makes ᾱ_T = 0 and σ_T infinite: use float16's smallest subnormal instead.
    if (cfg.rescale_betas_zero_snr) this.alphasCumprod[cfg.num_train_timesteps - 1] = 2 ** -24;
    const train = trainSigmas(this.alphasCumprod);
    this.sigmas = [...Array.from(train).reverse(), 0];
    this.timesteps = npLinspace(0, cfg.num_train_timesteps - 1, cfg.num_train_timesteps).reverse().map(f32);
  }

  /** σ_max for linspace/trailing spacing, √(σ_max² + 1) for leading (the VP-normalised scale). */
  get initNoiseSigma(): number {
    const max = Math.max(...this.sigmas);
    if (this.config.timestep_spacing === "linspace" || this.config.timestep_spacing === "trailing") return max;
    return sqrt32(add32(sq32(max), 1));
  }

  setTimesteps(numInferenceSteps: number): void {
    const cfg = this.config;
    const T = cfg.num_train_timesteps;
    if (!Number.isInteger(numInferenceSteps) || numInferenceSteps < 1)
      throw new Error(`EulerDiscreteScheduler: numInferenceSteps=${numInferenceSteps} must be a positive integer`);
    this.numInferenceSteps = numInferenceSteps;
    // Timesteps as NumPy float32 (linspace computed in float64, then cast).
    let timesteps = spacedTimesteps(cfg.timestep_spacing, T, numInferenceSteps, cfg.steps_offset).map(f32);
    const train = trainSigmas(this.alphasCumprod);
    const logSig = logSigmas(train);
    let sigmas: number[];
    if (cfg.interpolation_type === "linear") {
      sigmas = timesteps.map((t) => interpIndex(t, train));
    } else {
      // log-linear: torch.linspace(log σ[-1], log σ[0], n + 1).exp() in float32, exactly as
      // diffusers writes it (from σ_max down to σ_min, n + 1 values before the final σ).
      const ls = torchLinspaceF32(log32(train[T - 1]!), log32(train[0]!), numInferenceSteps + 1);
      sigmas = Array.from(ls, (v) => exp32(v));
    }
    if (cfg.use_karras_sigmas) {
      const sigmaMin = cfg.sigma_min ?? sigmas[sigmas.length - 1]!;
      const sigmaMax = cfg.sigma_max ?? sigmas[0]!;
      sigmas = karrasSigmas(sigmaMin, sigmaMax, numInferenceSteps);
      timesteps = sigmas.map((s) => f32(sigmaToT(s, logSig)));
    }
    const sigmaLast = finalSigma(cfg.final_sigmas_type, this.alphasCumprod);
    this.sigmas = [...sigmas.map(f32), f32(sigmaLast)];
    this.timesteps = timesteps;
    this.reset();
  }

  /** x / √(σ² + 1): the VP-scaled model input (the UNet was trained on unit-variance inputs). */
  scaleModelInput(sample: Tensor, t: number): Tensor {
    const sigma = this.sigmas[this.currentIndex(t)]!;
    return sample.div(sqrt32(add32(sq32(sigma), 1)));
  }

  step(modelOutput: Tensor, t: number, sample: Tensor, opts: StepOptions = {}): StepOutput {
    this.requireTimesteps();
    const i = this.currentIndex(t);
    const sigma = this.sigmas[i]!;
    const sChurn = opts.sChurn ?? 0;
    const sTmin = opts.sTmin ?? 0;
    const sTmax = opts.sTmax ?? Infinity;
    const sNoise = opts.sNoise ?? 1;
    // γ = min(s_churn/N, √2 − 1) inside [s_tmin, s_tmax]: raise σ to σ̂ = σ(1 + γ) by adding noise.
    const gamma = sTmin <= sigma && sigma <= sTmax ? Math.min(sChurn / (this.sigmas.length - 1), 2 ** 0.5 - 1) : 0;
    const sigmaHat = mul32(sigma, f32(gamma + 1));
    const out = tidy(() => {
      let x = asFloat32(sample);
      const m = asFloat32(modelOutput);
      if (gamma > 0) {
        const eps = drawNoise(opts, m).mul(f32(sNoise));
        x = x.add(eps.mul(sqrt32(sub32(sq32(sigmaHat), sq32(sigma)))));
      }
      // 1. denoised x_0 from the model's parameterisation.
      let x0: Tensor;
      const pt = this.config.prediction_type;
      if (pt === "sample") x0 = m.reshape(m.shape);
      else if (pt === "epsilon") x0 = x.sub(m.mul(sigmaHat));
      else x0 = vPredictionX0(m, x, sigma);
      // 2. ODE derivative d = (x − x_0)/σ̂, 3. Euler step to σ_{i+1}.
      const d = x.sub(x0).div(sigmaHat);
      const dt = sub32(this.sigmas[i + 1]!, sigmaHat);
      const prev = x.add(d.mul(dt));
      return { prevSample: castTo(prev, modelOutput.dtype), predOriginalSample: x0 };
    });
    this.stepIndex = i + 1;
    return out;
  }

  /** x_0 + σ_t ε: the noisy sample at each batch item's timestep. */
  addNoise(original: Tensor, noise: Tensor, timesteps: number[] | Tensor): Tensor {
    return addNoiseSigma(this, original, noise, timestepList(timesteps));
  }

  /** Indices of add_noise's timesteps (diffusers: the begin index once set, else a lookup). */
  noiseIndices(ts: number[]): number[] {
    if (this.beginIndex === null) return ts.map((t) => this.indexForTimestep(t));
    return ts.map(() => this.stepIndex ?? this.beginIndex!);
  }
}

/** x_0 = c_skip x + c_out v with c_skip = 1/(σ² + 1), c_out = −σ/√(σ² + 1) (v-prediction in σ form). */
export function vPredictionX0(m: Tensor, x: Tensor, sigma: number): Tensor {
  const s2p1 = add32(sq32(sigma), 1);
  return m.mul(div32(-sigma, sqrt32(s2p1))).add(x.div(s2p1));
}

/** add_noise of the σ-parameterised (VE-form) schedulers: x_0 + σ ε. */
export function addNoiseSigma(
  s: { sigmas: number[]; noiseIndices(ts: number[]): number[] },
  original: Tensor,
  noise: Tensor,
  ts: number[],
): Tensor {
  const sig = s.noiseIndices(ts).map((i) => s.sigmas[i]!);
  return tidy(() => original.add(noise.mul(perBatch(sig, original))));
}
