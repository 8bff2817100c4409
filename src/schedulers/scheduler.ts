// The Scheduler interface every sampler implements, the NoiseSource through which schedulers draw
// noise (default: torch's CPU generator, so `randn_tensor(generator=torch.Generator("cpu"))` draws
// reproduce diffusers), small tensor helpers, and BaseScheduler: step-index bookkeeping and
// ownership of the tensors a multistep method remembers. Imports only config.ts's types from this
// folder (config.ts imports nothing here), so the two files form no cycle.
//
// Ownership: callers own every tensor a scheduler returns (prevSample, predOriginalSample,
// denoised, scaleModelInput's result) and keep owning what they pass in; a scheduler that must
// remember an input (a model output, a sample) takes its own reference, and frees what falls out
// of its history. reset() forgets the history, dispose() frees it for good.

import { Tensor, TorchGenerator, keep, randn, tensor } from "../tensor/index.ts";
import type { SchedulerConfig } from "./config.ts";

/** Draws standard normal noise of `shape` with `like`'s dtype and device. */
export type NoiseSource = (shape: readonly number[], like: Tensor) => Tensor;

/**
 * A NoiseSource drawing from a torch-compatible CPU generator, then moving to `like`'s device,
 * as diffusers' randn_tensor does for a CPU generator. Values are drawn as float32 and converted
 * to `like`'s dtype (torch draws float16 directly, which can differ in the last bit).
 */
export function torchNoise(generator: TorchGenerator): NoiseSource {
  return (shape, like) => {
    const t = randn([...shape], { generator, dtype: "float32" });
    if (t.dtype === like.dtype && t.device === like.device) return t;
    try {
      return t.to({ dtype: like.dtype, device: like.device });
    } finally {
      t.dispose();
    }
  };
}

export interface StepOptions {
  /** Where noise comes from when the step needs some (a TorchGenerator is wrapped with torchNoise). */
  generator?: NoiseSource | TorchGenerator;
  /** DDIM's η: 0 = deterministic DDIM, 1 = DDPM-like ancestral sampling. */
  eta?: number;
  /** The exact noise this step adds (diffusers' variance_noise); used instead of the generator. */
  noise?: Tensor;
  /** Euler's stochastic "churn" (Karras et al. 2022, Alg. 2): s_churn, s_tmin, s_tmax, s_noise. */
  sChurn?: number;
  sTmin?: number;
  sTmax?: number;
  sNoise?: number;
}

export interface StepOutput {
  /** x_{t-1}: the next sample (the input of the next model call). */
  prevSample: Tensor;
  /** The x_0 estimate of this step (DDIM, Euler, Euler ancestral, LMS). */
  predOriginalSample?: Tensor;
  /** LCM's boundary-condition-denoised x_0. */
  denoised?: Tensor;
}

export interface Scheduler {
  /** diffusers' class name (`DDIMScheduler`, ...). */
  readonly className: string;
  /** The resolved configuration: diffusers' JSON keys, the class's defaults filled in. */
  readonly config: Readonly<SchedulerConfig>;
  /** The timesteps of the schedule, largest first (after setTimesteps). */
  timesteps: number[];
  /** Noise levels σ per step plus the final one (sigma-parameterised schedulers), float32 values. */
  readonly sigmas?: number[];
  /** ᾱ_t for t = 0 … num_train_timesteps-1, float32 values. */
  readonly alphasCumprod: Float32Array;
  /** Standard deviation of the initial noise: x_T = N(0, I) · initNoiseSigma. */
  readonly initNoiseSigma: number;
  /** Model evaluations per step (1 for every scheduler here). */
  readonly order: number;
  setTimesteps(numInferenceSteps: number): void;
  /** The model input for timestep t (a new tensor, even when no scaling applies). */
  scaleModelInput(sample: Tensor, t: number): Tensor;
  step(modelOutput: Tensor, t: number, sample: Tensor, opts?: StepOptions): StepOutput;
  /** Forward diffusion q(x_t | x_0): the original sample noised to each batch item's timestep. */
  addNoise(original: Tensor, noise: Tensor, timesteps: number[] | Tensor): Tensor;
  /** Start at this index of `timesteps` (img2img): the first step uses it instead of a lookup. */
  setBeginIndex(index: number): void;
  /** Forget the step counter and any remembered model outputs (same schedule). */
  reset(): void;
  /** Free every tensor the scheduler holds. */
  dispose(): void;
}

/** The timesteps of a Tensor (0-d or 1-d) or array as plain numbers. */
export function timestepList(ts: number[] | Tensor): number[] {
  if (Array.isArray(ts)) return ts;
  return Array.from(ts.toFloat32Array(), Number);
}

/** A [B, 1, 1, …] float32 tensor of per-batch-item coefficients that broadcasts against `like`. */
export function perBatch(values: number[], like: Tensor): Tensor {
  const shape = [values.length, ...Array<number>(Math.max(0, like.ndim - 1)).fill(1)];
  return tensor(Float32Array.from(values), { shape, device: like.device, dtype: like.dtype });
}

/** Resolve StepOptions' generator into a NoiseSource (undefined: none given). */
export function noiseSourceOf(g: StepOptions["generator"]): NoiseSource | undefined {
  if (g === undefined) return undefined;
  return g instanceof TorchGenerator ? torchNoise(g) : g;
}

let fallbackGenerator: TorchGenerator | null = null;

/**
 * The noise a step adds: opts.noise (a new reference), else a draw from opts.generator, else from
 * a process-wide generator seeded from the clock (like torch's unseeded global RNG).
 */
export function drawNoise(opts: StepOptions, like: Tensor): Tensor {
  if (opts.noise) {
    if (opts.noise.shape.length !== like.shape.length || opts.noise.shape.some((d, i) => d !== like.shape[i]))
      throw new Error(`step: noise has shape [${opts.noise.shape.join(", ")}], expected [${like.shape.join(", ")}]`);
    return opts.noise.reshape(opts.noise.shape);
  }
  const source = noiseSourceOf(opts.generator) ?? torchNoise((fallbackGenerator ??= new TorchGenerator(Date.now() >>> 0)));
  return source(like.shape, like);
}

/**
 * Shared state of all schedulers: the index of the current step in `timesteps` (diffusers'
 * `_step_index`, found from the first timestep passed in, then counted), the begin index, the
 * step-count validation every setTimesteps starts with, and the remembered tensors that
 * reset()/dispose() release.
 */
export abstract class BaseScheduler {
  abstract readonly className: string;
  readonly order = 1;
  timesteps: number[] = [];
  numInferenceSteps: number | null = null;
  protected stepIndex: number | null = null;
  protected beginIndex: number | null = null;

  /** diffusers' index_for_timestep: the second match when t repeats (so img2img does not skip a σ). */
  protected indexForTimestep(t: number, schedule = this.timesteps): number {
    const hits: number[] = [];
    schedule.forEach((v, i) => {
      if (v === t) hits.push(i);
    });
    if (hits.length === 0) return this.missingTimestepIndex(t);
    return hits.length > 1 ? hits[1]! : hits[0]!;
  }

  /**
   * The step indices add_noise uses for `ts` (diffusers): a lookup of each timestep before a
   * begin index is set; once it is, the current step (inpainting, mid-loop) or the begin index
   * (img2img, before the first step) for every batch item.
   */
  noiseIndices(ts: number[]): number[] {
    if (this.beginIndex === null) return ts.map((t) => this.indexForTimestep(t));
    return ts.map(() => this.stepIndex ?? this.beginIndex!);
  }

  /**
   * The numbers of inference steps setTimesteps accepts: at least 1 (PNDM: 2), and at most
   * num_train_timesteps for the classes whose diffusers set_timesteps checks that (DDIM, LCM, and
   * PNDM here); unbounded otherwise.
   */
  protected inferenceStepLimits(): { min: number; max: number } {
    return { min: 1, max: Infinity };
  }

  /** Throw an error naming the value and the fix unless `n` is an integer within inferenceStepLimits(). */
  protected checkInferenceSteps(n: number): void {
    const { min, max } = this.inferenceStepLimits();
    if (Number.isInteger(n) && n >= min && n <= max) return;
    const shown = typeof n === "number" ? String(n) : JSON.stringify(n);
    const range =
      max === Infinity
        ? min === 1
          ? "a positive integer"
          : `an integer >= ${min}`
        : `an integer from ${min} to num_train_timesteps (${max})`;
    const fix =
      typeof n !== "number" || !Number.isFinite(n)
        ? `pass a whole number of denoising steps, e.g. ${Math.min(50, max)}`
        : !Number.isInteger(n)
          ? `round it to a whole number, e.g. ${Math.min(Math.max(Math.round(n), min), max)}`
          : n < min
            ? `use at least ${min} step${min === 1 ? "" : "s"}`
            : `use at most ${max} steps`;
    throw new Error(`${this.className}: numInferenceSteps=${shown} must be ${range}; ${fix}`);
  }

  /** What a timestep outside the schedule maps to (diffusers: an error, or the last index for DPM/UniPC). */
  protected missingTimestepIndex(t: number): number {
    throw new Error(`${this.className}: timestep ${t} is not in the schedule [${this.timesteps.join(", ")}]`);
  }

  /** The step index for timestep t, initialised on first use. */
  protected currentIndex(t: number): number {
    if (this.stepIndex === null) this.stepIndex = this.beginIndex ?? this.indexForTimestep(t);
    return this.stepIndex;
  }

  protected requireTimesteps(): void {
    if (this.numInferenceSteps === null)
      throw new Error(`${this.className}: call setTimesteps(numInferenceSteps) before scaleModelInput/step`);
  }

  setBeginIndex(index: number): void {
    this.beginIndex = index;
  }

  /** Release remembered tensors (overridden by schedulers that remember some). */
  protected clearHistory(): void {}

  reset(): void {
    this.clearHistory();
    this.stepIndex = null;
    this.beginIndex = null;
  }

  dispose(): void {
    this.reset();
  }
}

/** A new reference to `t` (shares storage) that survives tidy scopes: for a scheduler's history. */
export function retain(t: Tensor): Tensor {
  return keep(t.reshape(t.shape));
}

/** The tensor as float32 (a new reference either way). */
export function asFloat32(t: Tensor): Tensor {
  return t.dtype === "float32" ? t.reshape(t.shape) : t.to("float32");
}

/** Convert a float32 result to `dtype`, consuming it. */
export function castTo(t: Tensor, dtype: Tensor["dtype"]): Tensor {
  if (t.dtype === dtype) return t;
  try {
    return t.to(dtype);
  } finally {
    t.dispose();
  }
}
