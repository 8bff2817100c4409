// EulerAncestralDiscreteScheduler: ancestral sampling with Euler steps (k-diffusion's
// sample_euler_ancestral, after Karras et al. 2022 and Song et al. 2021): each step splits the
// move from σ_i to σ_{i+1} into a deterministic Euler step down to σ_down and fresh noise of
// σ_up, with σ_up² = σ_{i+1}² (σ_i² − σ_{i+1}²)/σ_i² and σ_down² = σ_{i+1}² − σ_up².
// Draws noise at every step (through the step's NoiseSource). Timesteps are float32 values.

import { f32, add32, sub32, mul32, div32, sqrt32, sq32 } from "../core/float32.ts";
import { type Tensor, tidy } from "../tensor/index.ts";
import { alphasCumprodFor } from "./betas.ts";
import { type SchedulerConfig, requireOneOf, resolveConfig } from "./config.ts";
import { addNoiseSigma, vPredictionX0 } from "./euler.ts";
import {
  BaseScheduler,
  type Scheduler,
  type StepOptions,
  type StepOutput,
  asFloat32,
  castTo,
  drawNoise,
  timestepList,
} from "./scheduler.ts";
import { interpIndex, npLinspace, spacedTimesteps, trainSigmas } from "./schedule.ts";

export class EulerAncestralDiscreteScheduler extends BaseScheduler implements Scheduler {
  readonly className = "EulerAncestralDiscreteScheduler";
  readonly config: SchedulerConfig;
  readonly alphasCumprod: Float32Array;
  sigmas: number[];

  constructor(config: Record<string, unknown> = {}, overrides: Record<string, unknown> = {}) {
    super();
    const cfg = (this.config = resolveConfig("EulerAncestralDiscreteScheduler", config, overrides));
    requireOneOf(this.className, cfg, "prediction_type", ["epsilon", "v_prediction"]);
    this.alphasCumprod = alphasCumprodFor(cfg);
    if (cfg.rescale_betas_zero_snr) this.alphasCumprod[cfg.num_train_timesteps - 1] = 2 ** -24;
    this.sigmas = [...Array.from(trainSigmas(this.alphasCumprod)).reverse(), 0];
    this.timesteps = npLinspace(0, cfg.num_train_timesteps - 1, cfg.num_train_timesteps).reverse();
  }

  get initNoiseSigma(): number {
    const max = Math.max(...this.sigmas);
    if (this.config.timestep_spacing === "linspace" || this.config.timestep_spacing === "trailing") return max;
    return sqrt32(add32(sq32(max), 1));
  }

  setTimesteps(numInferenceSteps: number): void {
    const cfg = this.config;
    if (!Number.isInteger(numInferenceSteps) || numInferenceSteps < 1)
      throw new Error(`EulerAncestralDiscreteScheduler: numInferenceSteps=${numInferenceSteps} must be a positive integer`);
    this.numInferenceSteps = numInferenceSteps;
    const timesteps = spacedTimesteps(cfg.timestep_spacing, cfg.num_train_timesteps, numInferenceSteps, cfg.steps_offset).map(f32);
    const train = trainSigmas(this.alphasCumprod);
    this.sigmas = [...timesteps.map((t) => f32(interpIndex(t, train))), 0];
    this.timesteps = timesteps;
    this.reset();
  }

  scaleModelInput(sample: Tensor, t: number): Tensor {
    const sigma = this.sigmas[this.currentIndex(t)]!;
    return sample.div(sqrt32(add32(sq32(sigma), 1)));
  }

  step(modelOutput: Tensor, t: number, sample: Tensor, opts: StepOptions = {}): StepOutput {
    this.requireTimesteps();
    const i = this.currentIndex(t);
    const sigma = this.sigmas[i]!;
    const sigmaTo = this.sigmas[i + 1]!;
    const sigmaUp = sqrt32(div32(mul32(sq32(sigmaTo), sub32(sq32(sigma), sq32(sigmaTo))), sq32(sigma)));
    const sigmaDown = sqrt32(sub32(sq32(sigmaTo), sq32(sigmaUp)));
    const out = tidy(() => {
      const x = asFloat32(sample);
      const m = asFloat32(modelOutput);
      // 1. x_0 from ε or v.
      const x0 = this.config.prediction_type === "epsilon" ? x.sub(m.mul(sigma)) : vPredictionX0(m, x, sigma);
      // 2. d = (x − x_0)/σ; Euler step to σ_down; 3. add σ_up · z.
      const d = x.sub(x0).div(sigma);
      const dt = sub32(sigmaDown, sigma);
      const prev = x.add(d.mul(dt)).add(drawNoise(opts, m).mul(sigmaUp));
      return { prevSample: castTo(prev, modelOutput.dtype), predOriginalSample: x0 };
    });
    this.stepIndex = i + 1;
    return out;
  }

  addNoise(original: Tensor, noise: Tensor, timesteps: number[] | Tensor): Tensor {
    return addNoiseSigma(this, original, noise, timestepList(timesteps));
  }

  noiseIndices(ts: number[]): number[] {
    if (this.beginIndex === null) return ts.map((t) => this.indexForTimestep(t));
    return ts.map(() => this.stepIndex ?? this.beginIndex!);
  }
}
