// The memory planner: the predicted peak device memory of one generate() run, phase by phase (text
// encoding, one UNet step, VAE decode), with the weights resident in each phase — computed on the "meta"
// device (shapes and allocator accounting, no compute, no weights). It needs only the model configs, so
// the same plan serves a loaded pipeline (`pipe.plan(opts)`) and the CLI's `bun-diffusion plan` for a
// model folder or a known architecture (plan-configs.ts).
//
// Each phase runs the pipeline's own flow on meta copies of its models: the text encoders on token rows
// (positive, then negative under CFG; concatenated), the latents and one CFG step (cat, UNet call,
// guidance, the scheduler's new sample) with the conditioning live, and the decode with its postprocess
// with the final latents live. A phase's peak = weights resident in it (plan-weights.ts: every component
// with no offload, the running component with model offload, the largest leaf window with sequential
// offload) + its tensor peak. Features change the meta models as they change the real ones: the
// attention kind (processors), token merging (tomesd's hooks on the meta UNet, removed after), and the
// VAE's slicing / tiling switches. What the plan leaves out is listed in `notes` of the result.

import type { CLIPTextConfig } from "../models/clip-config.ts";
import { CLIPTextModel, CLIPTextModelWithProjection } from "../models/clip.ts";
import { UNet2DConditionModel, type UNet2DConditionConfig } from "../models/unet/index.ts";
import { AutoencoderKL, type AutoencoderKLConfig, type VaeTilingOptions } from "../models/vae/index.ts";
import { type AttentionKind, type AttentionOptions } from "../nn/attention-dispatch.ts";
import { AttnProcessorDefault } from "../nn/attention.ts";
import { setAttnProcessor } from "../nn/attention-processors.ts";
import type { Module } from "../nn/module.ts";
import { type DType, type Device, type Tensor, cat, empty, measureMemory, planAs, tidy } from "../tensor/index.ts";
import { fuseQkvProjections, type FusedQkvHandle } from "../speed/fused-qkv.ts";
import { type TokenMergingOptions, applyTokenMerging, removeTokenMerging, resolveTokenMergingOptions } from "../tome/index.ts";
import { decodeLatents } from "./decode.ts";
import { type EmbeddingLayer, type TextEncoder, type TokenRows, encodeRows } from "./prompt-encoding.ts";
import { type OffloadStrategy, type WeightsByPhase, residentWeights } from "./plan-weights.ts";

export type { OffloadStrategy } from "./plan-weights.ts";

/** The models a plan is made for (configs only). */
export interface PlanModels {
  unet: UNet2DConditionConfig | Record<string, unknown>;
  vae: AutoencoderKLConfig | Record<string, unknown>;
  /** In pipeline order (SD: text_encoder; SDXL: text_encoder, text_encoder_2). */
  textEncoders: { name: string; config: CLIPTextConfig | Record<string, unknown>; projection: boolean }[];
  /** Weights' dtype of the UNet and text encoders, and of the VAE. */
  dtype: DType;
  vaeDtype?: DType;
}

/** One run to plan. */
export interface PlanRequest {
  /** The device whose allocator the plan predicts (its op scratch, e.g. cuDNN workspaces, is modelled); default "meta": tensors only. */
  device?: Device;
  width: number;
  height: number;
  /** Images per call (prompts × images per prompt). */
  batch?: number;
  /** Classifier-free guidance (two UNet rows per image); default true. */
  cfg?: boolean;
  /** Text sequence length (77, or 75-token chunks × 77 for long prompts). */
  seqLen?: number;
  attention?: AttentionKind;
  attentionOptions?: Partial<AttentionOptions>;
  /** Token merging options (ToMe / ToDo) as pipe.enableTokenMerging takes them; null or absent: none. */
  tome?: TokenMergingOptions | null;
  offload?: OffloadStrategy;
  /** Sequential offload's look-ahead in bytes (0 = no prefetch). */
  prefetchBytes?: number;
  vaeTiling?: Partial<VaeTilingOptions> | boolean;
  vaeSlicing?: boolean;
  /** Fused QKV projections (pipe.fuseQkvProjections; on by default on CUDA): the step runs fused processors and
   * keeps the text K/V cache. Ignored with offload (they do not combine). */
  fusedQkv?: boolean;
  /** Whether the run decodes (default true). */
  decode?: boolean;
}

export type PhaseName = "text encoding" | "denoising" | "decoding";

export interface PhasePlan {
  phase: PhaseName;
  /** Predicted allocator peak during the phase: weights resident + tensors. */
  peak: number;
  /** Weight bytes resident on the device during the phase. */
  weights: number;
  /** The phase's tensor peak (activations, conditioning, latents). */
  tensors: number;
  /** The largest single tensor of the phase. */
  largest: number;
}

export interface MemoryPlan {
  device: Device;
  width: number;
  height: number;
  batch: number;
  dtype: DType;
  vaeDtype: DType;
  attention: AttentionKind;
  offload: OffloadStrategy;
  tome: number | null;
  vaeTiling: boolean;
  vaeSlicing: boolean;
  phases: PhasePlan[];
  /** The largest phase peak and its phase. */
  peak: number;
  peakPhase: PhaseName;
  /** Weight bytes of each component (its own dtype). */
  componentWeights: Record<string, number>;
  /** Time spent planning (ms). */
  planMs: number;
  notes: string[];
}

/** Meta copies of a pipeline's models, built once and reused across plans. */
export class MetaModels {
  readonly unet: UNet2DConditionModel;
  readonly vae: AutoencoderKL;
  readonly textEncoders: { name: string; model: TextEncoder }[];
  readonly dtype: DType;
  readonly vaeDtype: DType;
  #attentionKey = "fused{}";

  constructor(m: PlanModels) {
    this.dtype = m.dtype;
    this.vaeDtype = m.vaeDtype ?? m.dtype;
    const meta = { device: "meta" as const, dtype: m.dtype };
    this.unet = new UNet2DConditionModel(m.unet, meta);
    this.vae = new AutoencoderKL(m.vae, { device: "meta", dtype: this.vaeDtype });
    this.textEncoders = m.textEncoders.map((t) => ({
      name: t.name,
      model: t.projection ? new CLIPTextModelWithProjection(t.config, meta) : new CLIPTextModel(t.config, meta),
    }));
  }

  /** Set the attention kind of every meta model (as the pipeline's setAttentionKind does). */
  setAttention(kind: AttentionKind, options: Partial<AttentionOptions> = {}): void {
    const key = kind + JSON.stringify(options);
    if (key === this.#attentionKey) return;
    const plain = kind === "fused" && !Object.keys(options).length;
    const next = plain ? null : new AttnProcessorDefault(kind, options);
    for (const m of [this.unet, this.vae] as Module[]) setAttnProcessor(m, () => next);
    for (const t of this.textEncoders) t.model.setAttentionKind(kind, options);
    this.#attentionKey = key;
  }

  componentWeights(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const t of this.textEncoders) out[t.name] = t.model.parameterBytes();
    out.unet = this.unet.parameterBytes();
    out.vae = this.vae.parameterBytes();
    return out;
  }

  dispose(): void {
    this.unet.dispose();
    this.vae.dispose();
    for (const t of this.textEncoders) t.model.dispose();
  }
}

/** The plan of one run on `device` (the device only labels it; shapes come from the models). */
export function planMemory(models: MetaModels, req: PlanRequest): MemoryPlan {
  const t0 = performance.now();
  checkRequest(models, req);
  const batch = req.batch ?? 1;
  const cfg = req.cfg ?? true;
  const seqLen = req.seqLen ?? 77;
  const attention = req.attention ?? "fused";
  const offload = req.offload ?? "none";
  const tome = req.tome ? resolveTokenMergingOptions(req.tome) : null;
  models.setAttention(attention, req.attentionOptions ?? {});
  const vae = models.vae;
  const tiling = vae.tiling;
  const was = { tiling: vae.useTiling, slicing: vae.useSlicing };
  if (req.vaeTiling) vae.enableTiling(typeof req.vaeTiling === "object" ? req.vaeTiling : {});
  else vae.disableTiling();
  if (req.vaeSlicing) vae.enableSlicing();
  else vae.disableSlicing();
  const tomeHandle = tome ? applyTokenMerging(models.unet, tome) : null;
  const fused: FusedQkvHandle[] = [];
  try {
    // fused on meta too, so the step runs the real processors and keeps their text K/V cache; the fused weights
    // are the parameters' own bytes (the parameters become views of them), so the weights do not change
    if (req.fusedQkv && offload === "none") fused.push(fuseQkvProjections([models.unet, models.vae]));
    const shape = runShape(models, req.width, req.height, batch, cfg, seqLen);
    const device = req.device ?? "meta";
    const phases = planAs(device, () => measurePhases(models, shape, req.decode ?? true));
    const weights: WeightsByPhase = residentWeights(models, offload, req.prefetchBytes ?? 0);
    const plans: PhasePlan[] = phases.map((p) => {
      const w = weights[p.phase];
      return { phase: p.phase, peak: w + p.tensors, weights: w, tensors: p.tensors, largest: p.largest };
    });
    const top = plans.reduce((a, b) => (b.peak > a.peak ? b : a));
    const notes = ["one prompt per image; scheduler state beyond one step (multistep histories) is not included"];
    if (device === "meta") notes.push("op workspaces (cuDNN) are modelled only when planning for a loaded device");
    if (fused.length) notes.push(`fused QKV on ${fused[0]!.processors.length} attention modules: the cached text K/V are in the denoising phase`);
    if (tome && "mode" in tome && tome.mode === "todo") notes.push("token downsampling (ToDo) modelled on the UNet's self-attention keys/values");
    return {
      device,
      width: req.width,
      height: req.height,
      batch,
      dtype: models.dtype,
      vaeDtype: models.vaeDtype,
      attention,
      offload,
      tome: tome && !("mode" in tome && tome.mode === "todo") ? (tome as { ratio: number }).ratio : null,
      vaeTiling: !!req.vaeTiling,
      vaeSlicing: !!req.vaeSlicing,
      phases: plans,
      peak: top.peak,
      peakPhase: top.phase,
      componentWeights: models.componentWeights(),
      planMs: performance.now() - t0,
      notes,
    };
  } finally {
    for (const h of fused) h.remove();
    if (tomeHandle) removeTokenMerging(models.unet);
    vae.enableTiling(tiling);
    if (!was.tiling) vae.disableTiling();
    if (was.slicing) vae.enableSlicing();
    else vae.disableSlicing();
  }
}

interface Shape {
  total: number;
  rows: number;
  C: number;
  h: number;
  w: number;
  seqLen: number;
  cfg: boolean;
}

function runShape(models: MetaModels, width: number, height: number, total: number, cfg: boolean, seqLen: number): Shape {
  const f = models.vae.scaleFactor;
  return { total, rows: cfg ? 2 * total : total, C: models.unet.config.in_channels, h: height / f, w: width / f, seqLen, cfg };
}

function checkRequest(models: MetaModels, req: PlanRequest): void {
  const f = models.vae.scaleFactor;
  for (const k of ["width", "height"] as const) {
    const v = req[k];
    if (!Number.isInteger(v) || v <= 0 || v % f !== 0) throw new RangeError(`plan: ${k} must be a positive multiple of ${f} (the VAE scale factor), got ${v}`);
  }
  const b = req.batch ?? 1;
  if (!Number.isInteger(b) || b < 1) throw new RangeError(`plan: batch must be a positive integer, got ${b}`);
  const s = req.seqLen ?? 77;
  if (!Number.isInteger(s) || s < 1) throw new RangeError(`plan: seqLen must be a positive integer, got ${s}`);
  const o = req.offload ?? "none";
  if (o !== "none" && o !== "model" && o !== "sequential") throw new RangeError(`plan: offload must be "none", "model" or "sequential", got ${JSON.stringify(o)}`);
  const p = req.prefetchBytes ?? 0;
  if (!(p >= 0)) throw new RangeError(`plan: prefetchBytes must be ≥ 0, got ${p}`);
}

/** The conditioning the UNet receives for `s` (SD: [rows, S, D]; SDXL adds text_embeds and time_ids). */
function conditioning(models: MetaModels, s: Shape) {
  const c = models.unet.config;
  const meta = { device: "meta" as const, dtype: models.dtype };
  const cross = Array.isArray(c.cross_attention_dim) ? c.cross_attention_dim[0]! : c.cross_attention_dim;
  const textTime = c.addition_embed_type === "text_time";
  const pooled = (c.projection_class_embeddings_input_dim ?? 0) - (c.addition_time_embed_dim ?? 0) * 6;
  return {
    ehs: empty([s.rows, s.seqLen, cross], meta),
    textEmbeds: textTime ? empty([s.rows, pooled], meta) : null,
    timeIds: textTime ? empty([s.rows, 6], meta) : null,
    timestepCond: c.time_cond_proj_dim ? empty([s.total, c.time_cond_proj_dim], meta) : null,
  };
}

/** The text-encoding flow: each encoder on the prompts' rows (and the negatives' under CFG), hidden states concatenated. */
function encodeText(models: MetaModels, s: Shape): void {
  const texts = s.total; // one prompt per image: the largest text batch for this many images
  const chunks = Math.max(1, Math.ceil(s.seqLen / 77));
  const ids = Array.from({ length: texts * chunks }, () => Array<number>(77).fill(0));
  const rows: TokenRows = { rows: ids, masks: ids.map((r) => r.map(() => 1)), texts, chunks };
  const embeds = tidy(() => {
    const parts: Tensor[] = [];
    for (const [i, t] of models.textEncoders.entries()) {
      const layer: EmbeddingLayer = models.textEncoders.length > 1 ? { kind: "hidden", fromEnd: 2 } : { kind: "final" };
      const passes = s.cfg ? 2 : 1;
      const hidden: Tensor[] = [];
      for (let p = 0; p < passes; p++) {
        const e = encodeRows(t.model, rows, layer);
        hidden.push(e.hidden);
        if (i === models.textEncoders.length - 1) parts.push(e.pooled);
        else e.pooled.dispose();
      }
      parts.push(hidden.length > 1 ? cat(hidden, 0) : hidden[0]!);
    }
    const hs = parts.filter((p) => p.shape.length === 3);
    return hs.length > 1 ? cat(hs, -1) : hs[0]!;
  });
  embeds.dispose();
}

/** Tensor peaks of the three phases (bytes above the models' weights). */
function measurePhases(models: MetaModels, s: Shape, decode: boolean): { phase: PhaseName; tensors: number; largest: number }[] {
  const out: { phase: PhaseName; tensors: number; largest: number }[] = [];
  if (models.textEncoders.length) {
    const t = measureMemory("meta", () => encodeText(models, s));
    out.push({ phase: "text encoding", tensors: t.peak, largest: t.largest });
  }
  const meta = { device: "meta" as const, dtype: models.dtype };
  tidy(() => {
    const cond = conditioning(models, s);
    const x = empty([s.total, s.C, s.h, s.w], meta); // the current latents
    let final: Tensor | null = null;
    const step = measureMemory("meta", () => {
      final = tidy(() => {
        const input = s.cfg ? cat([x, x], 0) : x; // [rows, C, h, w]
        const scaled = input.mul(1); // scaleModelInput
        const noisePred = models.unet.call(scaled, 999, cond.ehs, { textEmbeds: cond.textEmbeds, timeIds: cond.timeIds, timestepCond: cond.timestepCond });
        let noise = noisePred;
        if (s.cfg) {
          const [uncond, text] = noisePred.chunk(2, 0) as [Tensor, Tensor];
          noise = uncond.add(text.sub(uncond).mul(2));
        }
        return x.add(noise); // the scheduler's previous sample
      });
    });
    // tensors live through denoising: conditioning + latents, measured from before they existed
    const persistent = [cond.ehs, cond.textEmbeds, cond.timeIds, cond.timestepCond, x].reduce((a, t) => a + (t ? t.byteLength : 0), 0);
    out.push({ phase: "denoising", tensors: persistent + step.peak, largest: Math.max(step.largest, persistent) });
    x.dispose();
    for (const t of Object.values(cond)) t?.dispose();
    if (decode) {
      const latents = final! as Tensor;
      const d = measureMemory("meta", () => decodeLatents(models.vae, latents).dispose());
      // the decoded images stay on the device until they are copied to the host
      out.push({ phase: "decoding", tensors: latents.byteLength + d.peak, largest: d.largest });
    }
    (final as Tensor | null)?.dispose();
  });
  return out;
}
