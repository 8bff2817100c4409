// DiffusionPipeline: what the SD and SDXL pipelines share — the UNet, VAE and scheduler config,
// model facts for validation, and generate()'s flow: validate every option (nothing allocated yet),
// pick the scheduler, encode the conditioning (the subclass's part), set the timesteps, prepare the
// latents, run the denoising loop, decode, and wrap the images with their generation parameters.
// Everything generate() allocates is freed before it returns or throws, except the tensors it
// returns; dispose() removes every feature and frees the weights. With an AbortSignal, the run's
// module-call check (interrupt.ts) is installed on the pipeline's models for the duration of the
// call, so an abort stops at the next module call.
//
// Robustness (docs/architecture.md, decision 11): before anything is allocated, the run's peak
// memory is predicted on "meta" (memory-plan.ts) and a run that cannot fit throws an
// OutOfMemoryError; the latents (and the decoded image) are checked for NaN/Inf (finite.ts) and a
// NonFiniteError replaces the black image; a Scheduler instance serves one generate() call at a
// time (a second concurrent call with it is refused); dispose() while a call runs throws a
// PipelineBusyError and changes nothing.
//
// Optional features go through the pipeline's feature registry (features.ts): `features()` lists
// them, image parameters carry them. The attention kind is the pipeline's (setAttentionKind or the
// `attention` load option): it sets the default attention processor of the UNet and VAE and the
// attention of the text encoders, and shows as the "attention" feature when it is not "fused".

import type { GenerationParameters } from "../io/image.ts";
import { CLIPTextModel, CLIPTextModelWithProjection } from "../models/clip.ts";
import type { UNet2DConditionModel } from "../models/unet/index.ts";
import type { AutoencoderKL } from "../models/vae/index.ts";
import { type AttentionKind, type AttentionOptions, getAttention } from "../nn/attention-dispatch.ts";
import { AttnProcessorDefault } from "../nn/attention.ts";
import { setAttnProcessor } from "../nn/attention-processors.ts";
import type { Module } from "../nn/module.ts";
import type { Scheduler } from "../schedulers/index.ts";
import { type DType, type Device, type Tensor, memoryAvailable, memoryStats, tidy } from "../tensor/index.ts";
import { OutOfMemoryError, formatBytes } from "../core/errors.ts";
import {
  type DeepCacheOptions,
  type FuseQkvOptions,
  applyChannelsLast,
  applyDeepCache,
  deepCachePlan,
  fuseQkvProjections,
  resolveDeepCacheOptions,
} from "../speed/index.ts";
import { DEFAULT_PREFETCH_BYTES, assertOffloadDevice, installModelOffload, installSequentialOffload, resolveSequentialOptions } from "../offload/index.ts";
import { type TokenMergingOptions, applyTokenMerging, removeTokenMerging, resolveTokenMergingOptions } from "../tome/index.ts";
import { decodeLatents, toGeneratedImages } from "./decode.ts";
import { type UNetConditioning, denoise, guidanceScaleEmbedding } from "./denoise.ts";
import { GenerateOptionsError, NonFiniteError, PipelineBusyError, throwIfAborted } from "./errors.ts";
import { allFinite, nonFiniteCauses } from "./finite.ts";
import { MemoryPlanner, type RunShape, SCHEDULER_LATENTS } from "./memory-plan.ts";
import { MetaModels, type MemoryPlan, type OffloadStrategy, type PlanRequest, planMemory } from "./plan.ts";
import { type OffloadChoice, type OffloadRequest, chooseOffload, describeCandidate, offloadAdvice, resolveOffloadRequest } from "./offload-choice.ts";
import { ModuleAbortCheck, interruptible } from "./interrupt.ts";
import { type ActiveFeature, type FeatureHooks, PipelineFeatures, formatFeatures } from "./features.ts";
import { cudaGraphFeatureConflict, cudaGraphsProblem, installCudaGraphs } from "./cuda-graph-feature.ts";
import { prepareLatents, stepNoise } from "./latents.ts";
import { type VaeTilingFeatureOptions, installVaeSlicing, installVaeTiling, resolveVaeTiling } from "./vae-features.ts";
import { GENERATE_OPTION_KEYS, type GenerateOptions, type GenerateResult, type ModelFacts, type ResolvedRun, validateCommon } from "./options.ts";
import { acquireScheduler, pickScheduler, samplerName } from "./scheduler-choice.ts";

/** The planner's agreement with measured peaks (tests: within 5 %): enableOffload keeps this margin free. */
const PLAN_MARGIN = 0.05;

export interface PipelineParts {
  modelDir: string;
  modelName: string;
  device: Device;
  dtype: DType;
  /** Why this dtype (default-dtype.ts): "given", or the default rule that chose it. */
  dtypeReason?: string;
  unet: UNet2DConditionModel;
  vae: AutoencoderKL;
  schedulerConfig: Record<string, unknown>;
  /** Scheduler name used when generate() names none (else the model's own class). */
  defaultScheduler?: string;
}

export abstract class DiffusionPipeline<O extends GenerateOptions, X> {
  /** The resolved model folder and its display name (written into image parameters). */
  readonly modelDir: string;
  readonly modelName: string;
  readonly device: Device;
  /** Compute dtype of the UNet and text encoders. */
  readonly dtype: DType;
  /** Why `dtype`: "given" by the caller, or the default rule (bfloat16 on sm_80+, float16 below, float32 on the CPU). */
  readonly dtypeReason: string;
  readonly unet: UNet2DConditionModel;
  readonly vae: AutoencoderKL;
  /** The model's scheduler_config.json (with `_class_name`); schedulers are built from it per call. */
  readonly schedulerConfig: Readonly<Record<string, unknown>>;
  /** The scheduler name generate() uses by default (undefined: the model's own class). */
  defaultScheduler: string | undefined;
  #disposed = false;
  /** generate() calls running now (dispose() refuses while any do). */
  #running = 0;
  readonly #features = new PipelineFeatures();
  readonly #planner = new MemoryPlanner(() => ({
    unet: this.unet,
    vae: this.vae,
    device: this.device,
    dtype: this.dtype,
    attention: {
      key: JSON.stringify(this.features().find((f) => f.name === "attention")?.options ?? {}),
      apply: (m: Module) => {
        const f = this.features().find((x) => x.name === "attention");
        const { kind = "fused", ...options } = (f?.options ?? {}) as { kind?: AttentionKind } & Partial<AttentionOptions>;
        applyAttentionKind(m, kind, options);
      },
    },
  }));

  /** Meta copies of the models for plan() (built on first use). */
  #metaModels: MetaModels | null = null;

  protected constructor(p: PipelineParts) {
    this.modelDir = p.modelDir;
    this.modelName = p.modelName;
    this.device = p.device;
    this.dtype = p.dtype;
    this.dtypeReason = p.dtypeReason ?? "given";
    this.unet = p.unet;
    this.vae = p.vae;
    this.schedulerConfig = p.schedulerConfig;
    this.defaultScheduler = p.defaultScheduler;
    // on CUDA convolutions run NHWC through cuDNN's tensor-core kernels by default (decision 22)
    if (p.device === "cuda") this.enableChannelsLast();
    // and q/k/v (k/v) are one GEMM each, the text K/V computed once per run (decision 10): listed as
    // fusedQkv(auto=true), which steps aside when CPU offload is enabled
    if (p.device === "cuda") this.#installFusedQkv({}, true);
    // CUDA-graph steps are on by default where graphs work (each graph's first replay is checked bit for bit
    // against the eager step; a differing shape runs eagerly): listed as cudaGraphs(auto=true)
    if (cudaGraphsProblem(this.device) === null) this.#installCudaGraphs({ auto: true });
  }

  // ---- features ---------------------------------------------------------------------------

  /** The active optional features with their options, in the order enabled. */
  features(): ActiveFeature[] {
    return this.#features.list();
  }

  /**
   * Install a feature under `name` (replacing an active one of that name): `install` applies it to
   * this pipeline's models and returns the function that removes it. The enableX() methods use this;
   * it is public so that extensions install their own features the same way.
   */
  installFeature(name: string, options: Record<string, unknown>, install: () => (() => void) | FeatureHooks): void {
    this.#assertUsable();
    this.#features.enable(name, options, install);
  }

  /** Remove the feature `name`; false when it was not active. */
  removeFeature(name: string): boolean {
    return this.#features.disable(name);
  }

  /**
   * The attention implementation of every model of this pipeline ("fused" by default; "naive",
   * "chunked" or a registered kind), with options of that kind (e.g. chunk sizes of "chunked").
   */
  setAttentionKind(kind: AttentionKind, options: Partial<AttentionOptions> = {}): void {
    this.#assertUsable();
    getAttention(kind); // an unknown kind fails here, naming the registered ones, before anything changes
    // fused QKV processors carry the kind they replaced: unfuse around the change and fuse again
    const fused = this.features().find((f) => f.name === "fusedQkv");
    if (fused) this.#features.disable("fusedQkv");
    try {
      if (kind === "fused" && !Object.keys(options).length) {
        this.#features.disable("attention");
        return;
      }
      this.installFeature("attention", { kind, ...options }, () => {
        for (const m of this.modules()) applyAttentionKind(m, kind, options);
        return () => {
          for (const m of this.modules()) applyAttentionKind(m, "fused", {});
        };
      });
    } finally {
      if (fused) this.#installFusedQkv(fused.options as FuseQkvOptions, fused.options.auto === true);
    }
  }

  /**
   * Token merging on the UNet: ToMe (default; tomesd's options: ratio, maxDownsample ("auto"), sx, sy, useRand,
   * mergeAttn, mergeCrossattn, mergeMlp, seed) or ToDo ({ mode: "todo", factor, maxDepth }). Listed by features()
   * as "tokenMerging" with its resolved options; enabling again replaces it.
   */
  enableTokenMerging(opts: TokenMergingOptions = {}): void {
    this.#assertUsable();
    const resolved = resolveTokenMergingOptions(opts); // option errors before anything changes
    if (resolved.mode === "tome")
      this.#yieldCudaGraphs("enableTokenMerging", "ToMe builds its partition indices on the host per call (with useRand a new random choice), which a replayed graph would not repeat");
    const options: Record<string, unknown> = { ...resolved };
    if (typeof options.seed === "bigint") options.seed = options.seed.toString();
    this.installFeature("tokenMerging", options, () => {
      applyTokenMerging(this.unet, resolved); // the options resolved and reported above
      return () => void removeTokenMerging(this.unet);
    });
  }

  /**
   * DeepCache (Ma et al. 2023): the whole UNet runs every `interval` steps (default 3) and the steps in
   * between run only the shallow path that keeps skip connection `branchId` (default 0, the shallowest),
   * reusing the deep features cached on the last full step (src/speed/deepcache.ts). Listed by features()
   * as "deepCache"; enabling again replaces it.
   */
  enableDeepCache(opts: DeepCacheOptions = {}): void {
    this.#assertUsable();
    const options = resolveDeepCacheOptions(opts);
    deepCachePlan(this.unet, options.branchId); // a branch this UNet lacks fails before anything changes
    this.#yieldCudaGraphs("enableDeepCache", "DeepCache chooses full or shallow steps on the host per call, which a replayed graph would not do");
    this.installFeature("deepCache", { ...options }, () => {
      const h = applyDeepCache(this.unet, options);
      return { remove: () => h.remove(), afterRun: () => h.clear() };
    });
  }

  /**
   * Channels-last (NHWC) convolutions and activations in the UNet and VAE (src/speed/channels-last.ts; PyTorch's
   * `memory_format=torch.channels_last`): the convolution weights are stored NHWC and the tensors between convolutions
   * stay NHWC. On by default on CUDA; listed by features() as "channelsLast". With CPU offload active, the offload is
   * taken down first (its host copies hold the weights in their old format) and enabled again with the same options
   * afterwards, so the weights it uploads are the channels-last ones.
   */
  enableChannelsLast(): void {
    this.#assertUsable();
    this.#aroundOffload(() =>
      this.installFeature("channelsLast", {}, () => {
        const handles = [applyChannelsLast(this.unet), applyChannelsLast(this.vae)];
        return () => {
          for (const h of handles) h.remove();
        };
      }),
    );
  }

  /** Store the convolution weights row-major again (NCHW everywhere); false when channels-last was not enabled. */
  disableChannelsLast(): boolean {
    if (!this.#features.has("channelsLast")) return false;
    return this.#aroundOffload(() => this.#features.disable("channelsLast"));
  }

  /** Run fn with CPU offload (if active) removed, then enable that offload again with its options. */
  #aroundOffload<R>(fn: () => R): R {
    const active = this.features().find((f) => f.name === "modelCpuOffload" || f.name === "sequentialCpuOffload");
    if (!active) return fn();
    this.disableOffload();
    try {
      return fn();
    } finally {
      const { prefetch, prefetchBytes, ...shown } = active.options as { prefetch?: boolean; prefetchBytes?: number } & Record<string, unknown>;
      if (active.name === "modelCpuOffload") this.#installModelOffload(active.options);
      else this.#installSequentialOffload({ prefetch, prefetchBytes }, shown);
    }
  }

  /**
   * CUDA-graph UNet steps (src/speed/cuda-graph.ts): each UNet call's signature (shapes, dtypes, features, hooks,
   * weights) is captured once into a CUDA graph and replayed with one launch, the timestep staying a host scalar;
   * a graph lives for one denoising loop (its memory returns before decoding). On by default on CUDA; an explicit
   * call on another device is an error naming it. DeepCache, ToMe token merging and sequential offload do
   * not combine with it (refused by name; a default-on cudaGraphs steps aside for them instead). Listed by
   * features() as "cudaGraphs".
   */
  enableCudaGraphs(): void {
    this.#assertUsable();
    const problem = cudaGraphsProblem(this.device);
    if (problem) throw new Error(`enableCudaGraphs: ${problem}`);
    const conflict = cudaGraphFeatureConflict(this.unet, (n) => this.#features.has(n));
    if (conflict) throw new Error(`enableCudaGraphs: ${conflict}; CUDA graphs and it do not combine, disable it first`);
    this.#installCudaGraphs({});
  }

  /** Remove CUDA-graph steps (the default one too); false when they were not active. */
  disableCudaGraphs(): boolean {
    return this.#features.disable("cudaGraphs");
  }

  #installCudaGraphs(shown: Record<string, unknown>): void {
    this.installFeature("cudaGraphs", shown, () => {
      const h = installCudaGraphs(
        this.unet,
        () => formatFeatures(this.features().filter((f) => f.name !== "cudaGraphs")),
        () => cudaGraphFeatureConflict(this.unet, (n) => this.#features.has(n)),
      );
      return { remove: () => h.remove(), afterDenoise: () => h.reset() };
    });
  }

  /**
   * Before enabling a feature CUDA graphs cannot replay: an explicitly enabled cudaGraphs refuses it by name, a
   * default-on one is removed.
   */
  #yieldCudaGraphs(method: string, why: string): void {
    const f = this.features().find((x) => x.name === "cudaGraphs");
    if (!f) return;
    if (f.options.auto === true) {
      this.#features.disable("cudaGraphs");
      return;
    }
    throw new Error(`${method}: CUDA graphs are enabled (enableCudaGraphs()) and ${why}; CUDA graphs and it do not combine, call disableCudaGraphs() first`);
  }

  /** Remove DeepCache; false when it was not enabled. */
  disableDeepCache(): boolean {
    return this.#features.disable("deepCache");
  }

  /**
   * Fused QKV projections on the UNet and VAE (diffusers' fuse_qkv_projections): one GEMM for q/k/v
   * (self-attention) or k/v (cross-attention), with the text K/V computed once per generate() unless
   * `cacheCrossAttention: false` (src/speed/fused-qkv.ts). Fused modules keep the pipeline's attention kind
   * (setAttentionKind() unfuses and fuses again); modules with another feature's processor are left alone.
   * On by default on CUDA, listed as fusedQkv(auto=true): the default one steps aside when CPU offload is enabled,
   * an explicit one refuses offload. Costs no memory after fusing: the projections' parameters become views of the
   * fused weights. Listed by features() as "fusedQkv".
   */
  fuseQkvProjections(opts: FuseQkvOptions = {}): void {
    this.#installFusedQkv(opts, false);
  }

  /** fuseQkvProjections(); `auto`: the default-on one (listed with auto=true), which CPU offload removes. */
  #installFusedQkv(opts: FuseQkvOptions, auto: boolean): void {
    this.#assertUsable();
    const options = { cacheCrossAttention: opts.cacheCrossAttention ?? true };
    const offload = ["modelCpuOffload", "sequentialCpuOffload"].find((n) => this.#features.has(n));
    if (offload)
      throw new Error(`fuseQkvProjections: ${offload} is active; fused QKV's concatenated weights would not be offloaded. fused QKV and CPU offload do not combine; call disableOffload() to use fused QKV`);
    this.installFeature("fusedQkv", auto ? { ...options, auto: true } : options, () => {
      const h = fuseQkvProjections([this.unet, this.vae], options);
      return { remove: () => h.remove(), afterRun: () => h.clear() };
    });
  }

  /** The components in pipeline order (text encoders, UNet, VAE): the order offload moves them in. */
  #offloadOrder(): Module[] {
    const encoders = this.modules().filter((m) => m instanceof CLIPTextModel || m instanceof CLIPTextModelWithProjection);
    return [...encoders, this.unet, this.vae];
  }

  /** Checks only (nothing changes): an explicitly enabled fused QKV refuses offload; a default-on one does not. */
  #assertOffloadable(method: string): void {
    assertOffloadDevice(this.device, method);
    const fused = this.features().find((f) => f.name === "fusedQkv");
    if (fused && fused.options.auto !== true)
      throw new Error(`${method}: fused QKV projections are active; the projections' parameters are views of the fused weights, which offload would not move; fused QKV and CPU offload do not combine, call unfuseQkvProjections() first`);
  }

  /** After every check of an offload method passed: a default-on fused QKV steps aside (the projections get their own weights back). */
  #yieldFusedQkv(): void {
    if (this.features().find((f) => f.name === "fusedQkv")?.options.auto === true) this.#features.disable("fusedQkv");
  }

  /**
   * Model CPU offload (diffusers enable_model_cpu_offload): whole components live in host memory and move to the
   * device when their forward starts, in pipeline order (text encoders → UNet → VAE); the previous one goes back.
   * Replaces sequential offload. Listed by features() as "modelCpuOffload". CUDA only.
   */
  enableModelCpuOffload(): void {
    this.#installModelOffload({});
  }

  #installModelOffload(shown: Record<string, unknown>): void {
    this.#assertUsable();
    this.#assertOffloadable("enableModelCpuOffload");
    this.#yieldFusedQkv();
    this.#features.disable("sequentialCpuOffload");
    this.installFeature("modelCpuOffload", shown, () => {
      const h = installModelOffload(this.#offloadOrder(), this.device);
      return { remove: () => h.remove(), afterRun: () => h.endRun() };
    });
  }

  /**
   * Sequential CPU offload (diffusers enable_sequential_cpu_offload): each parameter-owning module's weights are
   * uploaded just before its forward and released after; with `prefetch` (default) the following modules' weights
   * up to `prefetchBytes` (default DEFAULT_PREFETCH_BYTES) are uploaded ahead. Replaces model offload. Listed by
   * features() as "sequentialCpuOffload". CUDA only.
   */
  enableSequentialCpuOffload(opts: { prefetch?: boolean; prefetchBytes?: number } = {}): void {
    this.#installSequentialOffload(opts, {});
  }

  #installSequentialOffload(opts: { prefetch?: boolean; prefetchBytes?: number }, shown: Record<string, unknown>): void {
    this.#assertUsable();
    const options = resolveSequentialOptions(opts);
    this.#assertOffloadable("enableSequentialCpuOffload");
    this.#yieldCudaGraphs("enableSequentialCpuOffload", "sequential offload uploads weights inside the step's hooks, which a replayed graph would not run");
    this.#yieldFusedQkv();
    this.#features.disable("modelCpuOffload");
    this.installFeature("sequentialCpuOffload", { ...options, ...shown }, () => {
      const h = installSequentialOffload(this.#offloadOrder(), this.device, options);
      return { remove: () => h.remove(), afterRun: () => h.endRun() };
    });
  }

  /**
   * Pick the cheapest memory strategy whose planned peak (plan()) fits `maxVram` bytes of device memory — in order
   * no offload, enableModelCpuOffload(), enableSequentialCpuOffload() (with prefetch), each with enableVaeTiling()
   * as well when the decode is the phase that does not fit — and enable it. `maxVram: "auto"` is the device memory
   * available now plus the weights this pipeline already holds there. The budget is for a run of `width` × `height`
   * (default the model's native size), `batch` images (1) with guidance (`cfg`, default true); the scheduler's
   * latents and the planner's 5 % accuracy margin are kept free. Returns what was chosen and why; features() shows
   * the chosen offload feature with `maxVram` and `reason`. Throws when even the smallest configuration does not fit
   * (nothing changes then). CUDA only.
   */
  enableOffload(opts: OffloadRequest): OffloadChoice {
    this.#assertUsable();
    const req = resolveOffloadRequest(opts, this.baseFacts().sampleSize * this.vaeScaleFactor);
    assertOffloadDevice(this.device, "enableOffload");
    const run = { width: req.width, height: req.height, batch: req.batch, cfg: req.cfg };
    const plan = (o: Partial<PlanRequest>) => this.plan({ ...run, ...o });
    const latents = SCHEDULER_LATENTS * req.batch * this.unet.config.in_channels * (req.height / this.vaeScaleFactor) * (req.width / this.vaeScaleFactor) * 4;
    let total: number;
    if (req.maxVram === "auto") {
      const dev = memoryAvailable(this.device);
      if (!dev) throw new Error(`enableOffload: the ${this.device} device does not report its free memory; pass maxVram in bytes`);
      total = dev.available + this.#weightsOnDevice();
    } else total = req.maxVram;
    const budget = Math.floor((total - latents) / (1 + PLAN_MARGIN));
    const what = `enableOffload(${req.maxVram === "auto" ? `maxVram "auto" = ${formatBytes(total)}` : `maxVram ${formatBytes(total)}`}) at ${req.width}×${req.height}, ${req.batch} image${req.batch === 1 ? "" : "s"}`;
    const choice = budget > 0 ? chooseOffload(plan, budget, { vaeTiling: this.vae.useTiling }) : null;
    if (!choice) {
      const least = plan({ offload: "sequential", vaeTiling: true }).peak;
      throw new OutOfMemoryError(this.device, least, memoryStats(this.device).live, total,
        "lower the resolution or batch size, or use float16 / bfloat16",
        `${what}: nothing fits — even enableSequentialCpuOffload() + enableVaeTiling() needs ${formatBytes(least)} plus ${formatBytes(latents)} of scheduler latents and the planner's ${PLAN_MARGIN * 100} % margin; lower the resolution or batch size, or use float16 / bfloat16`);
    }
    const reason = `${choice.reason} (${what}, less ${formatBytes(latents)} of scheduler latents and the planner's ${PLAN_MARGIN * 100} % margin)`;
    const shown = { maxVram: req.maxVram, reason };
    if (choice.vaeTiling && !this.vae.useTiling) this.enableVaeTiling();
    if (choice.offload === "model") this.#installModelOffload(shown);
    else if (choice.offload === "sequential") this.#installSequentialOffload({}, shown);
    else this.disableOffload();
    return { ...choice, budget, reason, description: describeCandidate(choice) };
  }

  /** Remove model or sequential offload (every weight back on the device); false when neither was enabled. */
  disableOffload(): boolean {
    const a = this.#features.disable("modelCpuOffload");
    const b = this.#features.disable("sequentialCpuOffload");
    return a || b;
  }

  /** Undo fuseQkvProjections(); false when it was not active. */
  unfuseQkvProjections(): boolean {
    return this.#features.disable("fusedQkv");
  }

  /** Remove token merging; false when it was not enabled. */
  disableTokenMerging(): boolean {
    return this.#features.disable("tokenMerging");
  }

  /**
   * Decode (and encode) a batch one image at a time (diffusers enable_vae_slicing): the VAE's peak memory
   * is one image's. Listed by features() as "vaeSlicing".
   */
  enableVaeSlicing(): void {
    this.#assertUsable();
    this.installFeature("vaeSlicing", {}, () => installVaeSlicing(this.vae));
  }

  /** Remove VAE slicing; false when it was not enabled. */
  disableVaeSlicing(): boolean {
    return this.#features.disable("vaeSlicing");
  }

  /**
   * Decode (and encode) images larger than a tile tile by tile with blended overlaps (diffusers
   * enable_vae_tiling): `tileSize` in pixels (default the VAE's sample_size), `overlap` the fraction of a
   * tile shared with its neighbour (default 0.25). `seamless: true` decodes layer by layer over tiles instead
   * (models/vae/seamless-decode.ts: equal to the untiled decode). Listed by features() as "vaeTiling" with its values.
   */
  enableVaeTiling(opts: VaeTilingFeatureOptions = {}): void {
    this.#assertUsable();
    const t = resolveVaeTiling(this.vae, opts); // option errors before anything changes
    const shown = { tileSize: t.tileSampleMinSize, overlap: t.tileOverlapFactor, ...(t.seamless === true ? { seamless: true } : {}) };
    this.installFeature("vaeTiling", shown, () => installVaeTiling(this.vae, t));
  }

  /** Remove VAE tiling; false when it was not enabled. */
  disableVaeTiling(): boolean {
    return this.#features.disable("vaeTiling");
  }

  /** The attention kind in use. */
  get attentionKind(): AttentionKind {
    return (this.features().find((f) => f.name === "attention")?.options.kind as AttentionKind | undefined) ?? "fused";
  }

  #assertUsable(): void {
    if (this.#disposed) throw new Error("this pipeline was disposed; load it again with fromPretrained()");
  }

  /** Image-to-latent downscale factor (8 for SD/SDXL). */
  get vaeScaleFactor(): number {
    return this.vae.scaleFactor;
  }

  /** A fresh scheduler from the model's config: by short name, or the model's own class. */
  createScheduler(name?: string): Scheduler {
    return pickScheduler(name, { ...this.schedulerConfig }, this.defaultScheduler).scheduler;
  }

  /** The option keys generate() accepts (anything else is an error with a suggestion). */
  protected optionKeys(): readonly string[] {
    return GENERATE_OPTION_KEYS;
  }
  /** Keys of other pipelines' generate() with what to say about them (e.g. SDXL's on an SD pipeline). */
  protected foreignOptionKeys(): Readonly<Record<string, string>> {
    return {};
  }
  /** Facts about the loaded model that validation checks options against. */
  protected abstract modelFacts(): ModelFacts;
  /** Pipeline-specific option checks (after the shared ones); returns what encode() needs. */
  protected abstract validateExtra(options: O, run: ResolvedRun): X;
  /** The UNet conditioning as the batched call receives it (rows [negative…, positive…] under CFG). */
  protected abstract encode(options: O, run: ResolvedRun, extra: X): UNetConditioning;
  /** Decode final latents to images [B, 3, H, W] in [0, 1]; `onNonFinite` (throws) when the VAE output holds NaN/Inf. */
  protected decode(latents: Tensor, onNonFinite?: () => never): Tensor {
    return decodeLatents(this.vae, latents, onNonFinite);
  }
  /** Extra "Key: value" pairs for image parameters. */
  protected extraParameters(_options: O, _run: ResolvedRun, _extra: X, _i: number): Record<string, string | number> {
    return {};
  }

  protected baseFacts(): Omit<ModelFacts, "textEncoderLayers" | "canEncodePrompts"> {
    const c = this.unet.config;
    const cross = c.cross_attention_dim;
    return {
      latentChannels: c.in_channels,
      crossAttentionDim: Array.isArray(cross) ? cross[0]! : cross,
      sampleSize: Array.isArray(c.sample_size) ? c.sample_size[0]! : (c.sample_size ?? 64),
      vaeScaleFactor: this.vae.scaleFactor,
      guidanceEmbedded: c.time_cond_proj_dim !== null && c.time_cond_proj_dim !== undefined,
    };
  }

  /**
   * The run's predicted peak memory on the pipeline's device (bytes, with the allowances of
   * memory-plan.ts) for these options; throws a GenerateOptionsError for bad options. Allocates nothing
   * but shapes on "meta".
   */
  predictMemory(options: O): { device: number; host: number; phase: "denoising" | "decoding" } {
    const run = validateCommon(options, this.modelFacts(), this.optionKeys(), this.foreignOptionKeys());
    this.validateExtra(options, run);
    const { device, host, phase } = this.#planner.need(this.#runShape(options, run));
    return { device, host, phase };
  }

  /**
   * The memory plan of a run (plan.ts): predicted peak device bytes per phase (text encoding, denoising, decoding)
   * and the weights resident in each, computed on "meta" without touching the weights. Defaults: the model's
   * native size, one image, guidance on, and this pipeline's active features (attention kind, token merging,
   * VAE slicing / tiling, offload, fused QKV); any of them can be overridden to ask "what if".
   */
  plan(opts: Partial<PlanRequest> = {}): MemoryPlan {
    this.#assertUsable();
    const size = this.baseFacts().sampleSize * this.vaeScaleFactor;
    const feature = (name: string) => this.features().find((f) => f.name === name)?.options;
    const att = (feature("attention") ?? {}) as { kind?: AttentionKind } & Partial<AttentionOptions>;
    const { kind = "fused", ...attentionOptions } = att;
    const tomeOpts = feature("tokenMerging") as Record<string, unknown> | undefined;
    // the feature lists a bigint seed as a string (features are JSON-like); seeds do not change memory
    const tome = tomeOpts ? ({ ...tomeOpts, ...(typeof tomeOpts.seed === "string" ? { seed: BigInt(tomeOpts.seed) } : {}) } as PlanRequest["tome"]) : null;
    this.#metaModels ??= new MetaModels({
      unet: this.unet.config,
      vae: this.vae.config,
      textEncoders: this.modules()
        .filter((m) => m instanceof CLIPTextModel || m instanceof CLIPTextModelWithProjection)
        .map((m, i) => ({ name: i === 0 ? "text_encoder" : `text_encoder_${i + 1}`, config: m.config, projection: m instanceof CLIPTextModelWithProjection })),
      dtype: this.dtype,
      vaeDtype: this.vae.dtype,
    });
    return planMemory(this.#metaModels, {
      device: this.device,
      width: size,
      height: size,
      attention: kind,
      attentionOptions,
      tome,
      vaeTiling: this.vae.useTiling ? this.vae.tiling : false,
      vaeSlicing: this.vae.useSlicing,
      offload: this.offloadStrategy(),
      prefetchBytes: prefetchBytesOf(feature("sequentialCpuOffload")),
      fusedQkv: feature("fusedQkv") !== undefined,
      ...opts,
    });
  }

  /** The offload strategy active now (the offload features of enableModelCpuOffload / enableSequentialCpuOffload). */
  protected offloadStrategy(): OffloadStrategy {
    const names = this.features().map((f) => f.name);
    return names.includes("sequentialCpuOffload") ? "sequential" : names.includes("modelCpuOffload") ? "model" : "none";
  }

  /** Weight bytes of this pipeline's models on its compute device now. */
  #weightsOnDevice(): number {
    let n = 0;
    for (const m of this.modules()) for (const p of m.parameters()) if (p.device === this.device) n += p.byteLength;
    return n;
  }

  /** What would fit a run in `available` device bytes (plus the weights it already holds), for OOM messages. */
  #offloadAdvice(run: ResolvedRun, available: number): string | null {
    if (this.device === "cpu") return null; // no offload on the CPU: the weights already live in host memory
    const plan = (o: Partial<PlanRequest>) => this.plan({ width: run.width, height: run.height, batch: run.total, cfg: run.cfg, ...o });
    return offloadAdvice(plan, available + this.#weightsOnDevice(), { vaeTiling: this.vae.useTiling }, this.offloadStrategy());
  }

  #runShape(o: O, run: ResolvedRun): RunShape {
    const [total, C, h, w] = run.latentShape;
    return {
      total,
      rows: run.cfg ? 2 * total : total,
      latentChannels: C,
      h,
      w,
      seqLen: o.promptEmbeds?.shape[1] ?? 77, // chunked long prompts add 75-token chunks: small next to the UNet's activations
      crossDim: this.baseFacts().crossAttentionDim,
      cfg: run.cfg,
      decode: run.outputType !== "latent",
      keepTensor: run.outputType === "tensor",
    };
  }

  /** Text-to-image. Bad options throw a GenerateOptionsError before any work; see GenerateOptions. */
  async generate(options: O): Promise<GenerateResult> {
    this.#assertUsable();
    const startedAt = performance.now();
    const run = validateCommon(options, this.modelFacts(), this.optionKeys(), this.foreignOptionKeys());
    const extra = this.validateExtra(options, run);
    throwIfAborted(options.signal, 0, run.steps);
    // refuse what cannot fit before anything is allocated
    this.#planner.check(
      this.#runShape(options, run),
      this.vaeScaleFactor,
      `generate() at ${run.width}×${run.height} (${run.total} image${run.total === 1 ? "" : "s"}, ${this.dtype})`,
      (available) => this.#offloadAdvice(run, available),
    );
    const { scheduler, owned, release } = acquireScheduler(options.scheduler, { ...this.schedulerConfig }, this.defaultScheduler);
    this.#running++;
    let cond: UNetConditioning | null = null;
    const causes = (where: "latents" | "image") => () =>
      nonFiniteCauses({
        dtype: this.dtype,
        vaeDtype: this.vae.dtype,
        guidanceScale: run.guidanceScale,
        conditioningBad: cond ? !allFinite(cond.encoderHiddenStates) : null,
        givenLatentsBad: options.latents ? !allFinite(options.latents) : null,
        where,
      });
    let interrupt: ModuleAbortCheck | undefined;
    let phase: string | null = null; // where an out-of-memory error during the run happened
    try {
      try {
        try {
          scheduler.setTimesteps(run.steps); // host-side only: a schedule the scheduler rejects fails before any tensor work
        } catch (e) {
          throw new GenerateOptionsError("steps", (e as Error).message);
        }
        if (options.signal) interrupt = new ModuleAbortCheck(this.modules(), options.signal, run.steps);
        phase = "prompt encoding";
        cond = interruptible(interrupt, "prompt encoding", 0, () => tidy(() => this.encode(options, run, extra)));
        phase = "denoising";
        if (this.unet.config.time_cond_proj_dim) {
          // guidance-distilled UNets (LCM): w − 1 embedded per image instead of CFG
          const w = guidanceScaleEmbedding(Array<number>(run.total).fill(run.guidanceScale - 1), this.unet.config.time_cond_proj_dim);
          cond.timestepCond = w.to({ dtype: this.dtype, device: this.device });
          w.dispose();
        }
        const latents = prepareLatents(run.seeds, run.latentShape, this.dtype, this.device, scheduler.initNoiseSigma, options.latents);
        let final: Tensor;
        try {
          final = await denoise(latents, {
            unet: this.unet,
            scheduler,
            cond,
            cfg: run.cfg,
            guidanceScale: run.guidanceScale,
            guidanceRescale: run.guidanceRescale,
            stepOptions: { generator: stepNoise(run.seeds), eta: run.eta },
            onStep: options.onStep,
            signal: options.signal,
            interrupt,
            startedAt,
            checkFinite: run.checkFinite,
            explainNonFinite: causes("latents"),
          });
        } finally {
          this.#features.afterDenoise(); // per-loop feature state (CUDA graphs) is released before decoding
        }
        if (run.outputType === "latent") return { images: [], latents: final };
        let pixels: Tensor;
        phase = "decoding";
        try {
          const onNonFinite = (): never => {
            throw new NonFiniteError("image", run.steps + 1, run.steps, causes("image")());
          };
          pixels = interruptible(interrupt, "decoding", run.steps, () => this.decode(final, run.checkFinite === false ? undefined : onNonFinite)); // [B·n, 3, H, W]
        } finally {
          final.dispose();
        }
        try {
          const sampler = samplerName(scheduler);
          const images = toGeneratedImages(pixels, (i) => this.parameters(options, run, extra, sampler, i));
          if (run.outputType === "tensor") return { images, tensor: pixels };
          pixels.dispose();
          return { images };
        } catch (e) {
          pixels.dispose();
          throw e;
        }
      } finally {
        this.#running--;
        interrupt?.remove();
        if (cond) for (const t of Object.values(cond)) (t as Tensor | undefined)?.dispose();
        release();
        this.#features.afterRun(); // per-run feature state (caches keyed on this run's tensors) is freed
      }
    } catch (e) {
      // the run's tensors are freed by now: what is available is what a retry would have
      if (e instanceof OutOfMemoryError && phase !== null) throw this.#explainOutOfMemory(e, phase, run);
      throw e;
    }
  }

  /** An allocator's OutOfMemoryError restated with the phase, the run and the configuration that would fit. */
  #explainOutOfMemory(e: OutOfMemoryError, phase: string, run: ResolvedRun): OutOfMemoryError {
    const available = memoryAvailable(this.device)?.available ?? null;
    let fits: string | null = null;
    try {
      fits = available === null ? null : this.#offloadAdvice(run, available);
    } catch {
      fits = null; // advice is best effort: the allocator's own message stays
    }
    const where = `generate() at ${run.width}×${run.height} (${run.total} image${run.total === 1 ? "" : "s"}, ${this.dtype}) ran out of memory while ${phase}`;
    const advice = `${fits ? `${fits}; ` : ""}or lower the resolution or batch size`;
    const err = new OutOfMemoryError(e.device, e.requestedBytes, e.liveBytes, e.limitBytes, advice, `${where}: ${e.message}; ${advice}`);
    err.cause = e;
    return err;
  }

  /** The A1111-style parameters of image i. */
  protected parameters(o: O, run: ResolvedRun, extra: X, sampler: string, i: number): GenerationParameters {
    const p = Math.floor(i / run.perPrompt);
    const seeds = run.seeds;
    const more: Record<string, string | number> = {};
    if (seeds.kind === "single" && run.total > 1) {
      more["Batch size"] = run.total; // one generator drew the whole batch (diffusers' semantics)
      more["Batch pos"] = i;
    }
    if (run.clipSkip) more["Clip skip"] = run.clipSkip + 1; // A1111 counts the last layer as 1
    if (run.guidanceRescale > 0) more["CFG Rescale phi"] = run.guidanceRescale;
    if (run.eta > 0) more.Eta = run.eta;
    const features = this.features();
    if (features.length) more.Features = formatFeatures(features);
    return {
      prompt: run.prompts ? run.prompts[p]! : "(prompt embeddings)",
      negativePrompt: run.negatives?.[p],
      steps: run.steps,
      sampler,
      cfgScale: run.guidanceScale,
      seed: seeds.kind === "single" ? seeds.seed : seeds.seeds[i],
      width: run.width,
      height: run.height,
      model: this.modelName,
      extra: { ...more, ...this.extraParameters(o, run, extra, i) },
    };
  }

  /** The models whose weights this pipeline owns. */
  protected abstract modules(): Module[];

  /** The models this pipeline owns (UNet, VAE, text encoders), e.g. to install hooks on every one. */
  models(): Module[] {
    this.#assertUsable();
    return this.modules();
  }

  /**
   * Remove every feature and free every weight; the pipeline cannot be used afterwards. While
   * generate() calls are running it throws a PipelineBusyError and changes nothing (await them first).
   */
  dispose(): void {
    if (this.#disposed) return;
    if (this.#running > 0) throw new PipelineBusyError(this.#running);
    this.#disposed = true;
    try {
      this.#features.clear();
    } finally {
      this.#planner.dispose();
      this.#metaModels?.dispose();
      this.#metaModels = null;
      for (const m of this.modules()) m.dispose();
    }
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/**
 * Set the attention kind of one model: CLIP encoders directly; diffusers models through the default
 * processors (a module with another processor, installed by another feature, keeps it).
 */
function applyAttentionKind(m: Module, kind: AttentionKind, options: Partial<AttentionOptions>): void {
  if (m instanceof CLIPTextModel || m instanceof CLIPTextModelWithProjection) {
    m.setAttentionKind(kind, options);
    return;
  }
  const next = kind === "fused" && !Object.keys(options).length ? null : new AttnProcessorDefault(kind, options);
  setAttnProcessor(m, (_name, a) => (a.processor instanceof AttnProcessorDefault ? next : a.processor));
}

/** The look-ahead bytes of the sequential offload feature (0 without prefetch; enableSequentialCpuOffload()'s default when it is off). */
function prefetchBytesOf(options: Record<string, unknown> | undefined): number {
  if (!options) return DEFAULT_PREFETCH_BYTES; // what enableSequentialCpuOffload() would use ("what if" plans)
  if (options.prefetch === false) return 0;
  return typeof options.prefetchBytes === "number" ? options.prefetchBytes : 0;
}
