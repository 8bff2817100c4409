// MultistepScheduler: the shared base of the multistep exponential integrators in λ = log(α/σ)
// (DPMSolverMultistepScheduler, UniPCMultistepScheduler): the ᾱ and σ tables (finite σ_T under
// zero terminal SNR), unit init noise, the unscaled model input, the window of the last
// solver_order converted model outputs (convertModelOutput of multistep-output.ts) with the
// lower-order warm-up counter, the schedule's final σ, the last index for timesteps outside the
// schedule (as diffusers' DPM/UniPC index_for_timestep), and add_noise α_t x_0 + σ_t ε.

import { f32 } from "../core/float32.ts";
import { type Tensor, tidy } from "../tensor/index.ts";
import { ConfiguredScheduler, type SchedulerSetup } from "./configured-scheduler.ts";
import { alphaSigma, convertModelOutput } from "./multistep-output.ts";
import { perBatch, timestepList } from "./scheduler.ts";
import { npLinspace, sigmaAlphasCumprod, trainSigmas } from "./schedule.ts";

export abstract class MultistepScheduler extends ConfiguredScheduler {
  readonly initNoiseSigma = 1.0;
  /** σ per step plus the final σ (before setTimesteps: the training σ's, smallest first). */
  sigmas: number[];
  /** Converted model outputs of the last solver_order steps, oldest first. */
  protected modelOutputs: Tensor[] = [];
  /** How many steps have run, up to solver_order: the order the warm-up may use. */
  protected lowerOrderNums = 0;

  protected constructor(setup: SchedulerSetup) {
    super(setup, sigmaAlphasCumprod);
    const cfg = this.config;
    this.sigmas = Array.from(trainSigmas(this.alphasCumprod));
    this.timesteps = npLinspace(0, cfg.num_train_timesteps - 1, cfg.num_train_timesteps).reverse().map(f32);
  }

  /** Whether the solver integrates the data prediction x_0 (else the noise prediction ε). */
  protected abstract predictsData(): boolean;

  /** The model output as the quantity the solver integrates, at the σ of step i (a new tensor). */
  protected convertOutput(m: Tensor, x: Tensor, i: number): Tensor {
    return convertModelOutput(m, x, this.sigmas[i]!, this.config.prediction_type, this.predictsData());
  }

  /** Remember a (retained) converted output; free the one that leaves the solver_order window. */
  protected pushModelOutput(converted: Tensor): void {
    this.modelOutputs.push(converted);
    while (this.modelOutputs.length > this.config.solver_order!) this.modelOutputs.shift()!.dispose();
  }

  /** The converted output k steps back (0 = the newest). */
  protected history(k: number): Tensor {
    return this.modelOutputs[this.modelOutputs.length - 1 - k]!;
  }

  /** Install a schedule: σ's (cast to float32) plus the final σ, integer timesteps; then reset. */
  protected setSchedule(timesteps: number[], sigmas: number[], sigmaLast: number): void {
    this.sigmas = [...sigmas.map(f32), f32(sigmaLast)];
    this.timesteps = timesteps.map((t) => Math.trunc(t));
    this.numInferenceSteps = this.timesteps.length;
    this.reset();
  }

  /** After step i: one more model output available to the warm-up; move to step i + 1. */
  protected advance(i: number): void {
    if (this.lowerOrderNums < this.config.solver_order!) this.lowerOrderNums++;
    this.stepIndex = i + 1;
  }

  protected override missingTimestepIndex(): number {
    return this.timesteps.length - 1;
  }

  protected override clearHistory(): void {
    for (const m of this.modelOutputs) m.dispose();
    this.modelOutputs = [];
    this.lowerOrderNums = 0;
  }

  scaleModelInput(sample: Tensor): Tensor {
    return sample.reshape(sample.shape);
  }

  /** α_t x_0 + σ_t ε at each batch item's σ. */
  addNoise(original: Tensor, noise: Tensor, timesteps: number[] | Tensor): Tensor {
    const coeffs = this.noiseIndices(timestepList(timesteps)).map((k) => alphaSigma(this.sigmas[k]!));
    return tidy(() =>
      original.mul(perBatch(coeffs.map((c) => c.alpha), original)).add(noise.mul(perBatch(coeffs.map((c) => c.sigmaT), original))),
    );
  }
}
