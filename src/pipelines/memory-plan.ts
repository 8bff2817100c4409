// Memory prediction for one generate() call, before any tensor is allocated. The pipeline's UNet and
// VAE are rebuilt on the "meta" device (shapes only; built once per pipeline, with its attention
// kind) and generate()'s flow runs there at the requested size: the conditioning, the latents, one
// denoising step (CFG batch, UNet call, guidance) and the decode with its postprocess. The meta
// tracker's peak is the device need of the tensors; added to it:
//   - scheduler state: SCHEDULER_LATENTS float32 latent copies (multistep histories, step temporaries,
//     the noise drawn on the host);
//   - on the CPU, backend scratch outside the allocator (padded conv inputs, float32 staging of 16-bit
//     outputs): SCRATCH_FACTOR × the largest single tensor of the run. Other devices' op scratch (cuDNN
//     workspaces, contiguous copies) goes through their allocator and is modelled on meta (planAs);
//   - host bytes of the images (the float32 copy of one image and the RGB bytes of all).
// The text encoders (77-token sequences) are left out: their peak is far below the UNet's.
// The VAE's slicing and tiling switches (pipe.enableVaeSlicing / enableVaeTiling) are copied to the meta
// VAE, so a sliced or tiled decode is predicted as it runs. Other features installed as hooks or
// processors are not modelled.
// Predictions are cached per shape; a refusal names the need, the memory available and the largest
// square size that fits (found by bisection over meta runs).

import { formatBytes, OutOfMemoryError } from "../core/errors.ts";
import { UNet2DConditionModel } from "../models/unet/index.ts";
import { AutoencoderKL } from "../models/vae/index.ts";
import type { Module } from "../nn/module.ts";
import { type DType, type Device, type DeviceMemory, type Tensor, cat, dtypeBytes, empty, measureMemory, memoryAvailable, memoryStats, planAs, tidy } from "../tensor/index.ts";
import { decodeLatents } from "./decode.ts";

/** Float32 latent copies a scheduler and the loop may hold besides the current latents (PNDM keeps 4 + 1). */
export const SCHEDULER_LATENTS = 8;
/** The CPU backend's scratch outside its allocator, as a multiple of the run's largest tensor. */
export const SCRATCH_FACTOR = 2;

/** The shapes of one run that memory depends on. */
export interface RunShape {
  /** Images (B·n) and UNet batch rows (2·B·n under CFG). */
  total: number;
  rows: number;
  latentChannels: number;
  /** Latent height and width (pixels / VAE scale factor). */
  h: number;
  w: number;
  /** Text sequence length and width of the UNet's encoder states. */
  seqLen: number;
  crossDim: number;
  cfg: boolean;
  /** Whether the run decodes (outputType "image" / "tensor") and keeps the tensor ("tensor"). */
  decode: boolean;
  keepTensor: boolean;
}

export interface MemoryNeed {
  /** Bytes on the compute device at the run's peak, with the allowances of the header. */
  device: number;
  /** Host bytes of the images (on the CPU device they are part of `device` too). */
  host: number;
  /** The tensor peak of the meta run and its largest tensor. */
  tensorPeak: number;
  largest: number;
  /** The phase at the peak. */
  phase: "denoising" | "decoding";
}

export interface PlanSource {
  unet: UNet2DConditionModel;
  vae: AutoencoderKL;
  device: Device;
  dtype: DType;
  /** Applies the pipeline's attention kind to a meta model (the key says when it changed). */
  attention: { key: string; apply: (m: Module) => void };
}

export class MemoryPlanner {
  #unet: UNet2DConditionModel | null = null;
  #vae: AutoencoderKL | null = null;
  #attentionKey = "";
  readonly #cache = new Map<string, MemoryNeed>();

  constructor(private readonly source: () => PlanSource) {}

  /** The predicted need of a run (cached per shape and attention kind). */
  need(s: RunShape): MemoryNeed {
    const src = this.source();
    const key = `${src.attention.key}|${vaeSwitchesKey(src.vae)}|${JSON.stringify(s)}`;
    const hit = this.#cache.get(key);
    if (hit) return hit;
    const need = this.#measure(src, s);
    if (this.#cache.size > 256) this.#cache.clear(); // a long-lived server with many sizes stays bounded
    this.#cache.set(key, need);
    return need;
  }

  /**
   * Throw an OutOfMemoryError when the run cannot fit on the device (or its images on the host), naming
   * the need, the memory available, what `moreAdvice` suggests for that much memory (the offload
   * configuration that fits) and the largest square size that fits. `what` describes the run.
   */
  check(s: RunShape, scale: number, what: string, moreAdvice?: (availableBytes: number) => string | null): void {
    const src = this.source();
    const need = this.need(s);
    const dev = memoryAvailable(src.device);
    const host = src.device === "cpu" ? null : memoryAvailable("cpu");
    const fits = (n: MemoryNeed) =>
      (!dev || (n.device <= dev.available && (dev.maxAllocation === null || n.largest <= dev.maxAllocation))) &&
      (!host || n.host <= host.available);
    if (fits(need)) return;
    const problem = describeProblem(src.device, need, dev, host);
    const square = this.#largestSquare(s, scale, fits);
    // the advice plans peaks without this call's scheduler allowance: leave room for it
    const offload = dev ? moreAdvice?.(dev.available - SCHEDULER_LATENTS * s.total * s.latentChannels * s.h * s.w * 4) : null;
    const advice =
      (offload ? `${offload}; ` : "") +
      (square ? `the largest square size that fits is ${square}×${square}` : "not even a small image fits") +
      (s.total > 1 ? ` at this batch of ${s.total} (fewer images per call need less)` : "") +
      "; free memory or tensors you no longer need, lower the resolution or batch size, or use float16 / bfloat16";
    const dm = dev ?? host!;
    throw new OutOfMemoryError(src.device, need.device, memoryStats(src.device).live, dm.available, advice, `${what}: ${problem}; ${advice}`);
  }

  /** Free the meta models (the pipeline's dispose()). */
  dispose(): void {
    this.#unet?.dispose();
    this.#vae?.dispose();
    this.#unet = this.#vae = null;
    this.#cache.clear();
  }

  #models(src: PlanSource): [UNet2DConditionModel, AutoencoderKL] {
    if (!this.#unet || !this.#vae) {
      this.#unet = new UNet2DConditionModel(src.unet.config, { device: "meta", dtype: src.unet.dtype });
      this.#vae = new AutoencoderKL(src.vae.config, { device: "meta", dtype: src.vae.dtype });
      this.#attentionKey = "";
    }
    if (this.#attentionKey !== src.attention.key) {
      src.attention.apply(this.#unet);
      src.attention.apply(this.#vae);
      this.#attentionKey = src.attention.key;
    }
    copyVaeSwitches(src.vae, this.#vae);
    return [this.#unet, this.#vae];
  }

  #measure(src: PlanSource, s: RunShape): MemoryNeed {
    const [unet, vae] = this.#models(src);
    const c = unet.config;
    const meta = { device: "meta" as const, dtype: src.dtype };
    const latentShape = [s.total, s.latentChannels, s.h, s.w];
    let denoisePeak = 0;
    // planAs: the compute device's own op scratch (cuDNN workspaces, contiguous copies) is allocated on meta too
    const { peak, largest } = planAs(src.device, () => measureMemory("meta", () =>
      tidy(() => {
        // what lives through the whole run: the conditioning and the latents
        const ehs = empty([s.rows, s.seqLen, s.crossDim], meta);
        const text_time = c.addition_embed_type === "text_time";
        const pooled = (c.projection_class_embeddings_input_dim ?? 0) - (c.addition_time_embed_dim ?? 0) * 6;
        const textEmbeds = text_time ? empty([s.rows, pooled], meta) : null;
        const timeIds = text_time ? empty([s.rows, 6], meta) : null;
        const timestepCond = c.time_cond_proj_dim ? empty([s.total, c.time_cond_proj_dim], meta) : null;
        const x = empty(latentShape, meta);
        // one denoising step, as denoise.ts runs it
        const final = tidy(() => {
          const input = s.cfg ? cat([x, x], 0) : x;
          const scaled = input.mul(1); // scaleModelInput
          const out = unet.call(scaled, 999, ehs, { textEmbeds, timeIds, timestepCond });
          let noise = out;
          if (s.cfg) {
            const [uncond, text] = out.chunk(2, 0) as [Tensor, Tensor];
            noise = uncond.add(text.sub(uncond).mul(2));
          }
          return x.add(noise); // scheduler.step's prevSample
        });
        denoisePeak = memoryStats("meta").peak;
        if (s.decode) {
          const pixels = decodeLatents(vae, final); // [B·n, 3, H, W]
          if (!s.keepTensor) pixels.dispose();
        }
      }),
    ));
    const start = memoryStats("meta").live;
    const decodeWon = s.decode && peak > denoisePeak - start;
    const latentF32 = s.total * s.latentChannels * s.h * s.w * 4;
    const H = s.h * vae.scaleFactor;
    const W = s.w * vae.scaleFactor;
    // one image's float32 host copy (+ its 16-bit raw copy) while converting, and every image's RGB bytes
    const host = s.decode ? 3 * H * W * (4 + dtypeBytes(src.vae.dtype)) + s.total * H * W * 3 : 0;
    const devicePeak = peak + SCHEDULER_LATENTS * latentF32 + (src.device === "cpu" ? SCRATCH_FACTOR * largest : 0);
    return {
      device: src.device === "cpu" ? devicePeak + host : devicePeak,
      host,
      tensorPeak: peak,
      largest,
      phase: decodeWon ? "decoding" : "denoising",
    };
  }

  /** The largest square side (a multiple of 64 pixels, or of `scale`·8 when larger) that fits, or null. */
  #largestSquare(s: RunShape, scale: number, fits: (n: MemoryNeed) => boolean): number | null {
    const unit = Math.max(64, scale * 8) / scale; // latent pixels per step of the search
    const at = (k: number): RunShape => ({ ...s, h: k * unit, w: k * unit });
    if (!fits(this.#measureUncached(at(1)))) return null;
    let lo = 1; // fits
    let hi = Math.max(2, Math.ceil(Math.max(s.h, s.w) / unit)); // the requested size (or more) does not fit
    while (fits(this.#measureUncached(at(hi))) && hi < 1 << 16) [lo, hi] = [hi, hi * 2];
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (fits(this.#measureUncached(at(mid)))) lo = mid;
      else hi = mid;
    }
    return lo * unit * scale;
  }

  #measureUncached(s: RunShape): MemoryNeed {
    return this.#measure(this.source(), s);
  }
}

function describeProblem(device: Device, need: MemoryNeed, dev: DeviceMemory | null, host: DeviceMemory | null): string {
  const parts: string[] = [];
  if (dev) {
    const over = need.device > dev.available;
    parts.push(
      `it needs about ${formatBytes(need.device)} on ${device} (peak while ${need.phase})` +
        `${over ? " but" : " and"} ${formatBytes(dev.available)} is available (${dev.source}; ${formatBytes(dev.total)} in total)`,
    );
    if (dev.maxAllocation !== null && need.largest > dev.maxAllocation)
      parts.push(`its largest tensor needs ${formatBytes(need.largest)} but one ${device} buffer holds at most ${formatBytes(dev.maxAllocation)}`);
  }
  if (host && need.host > host.available)
    parts.push(`its images need about ${formatBytes(need.host)} of host memory but ${formatBytes(host.available)} is available (${host.source})`);
  return parts.join(", and ");
}

/** The VAE's slicing / tiling state as a cache-key part. */
function vaeSwitchesKey(vae: AutoencoderKL): string {
  return JSON.stringify({ s: vae.useSlicing, t: vae.useTiling ? vae.tiling : null });
}

/** Give the meta VAE the real one's slicing and tiling switches. */
function copyVaeSwitches(from: AutoencoderKL, to: AutoencoderKL): void {
  if (from.useSlicing) to.enableSlicing();
  else to.disableSlicing();
  to.enableTiling(from.tiling);
  if (!from.useTiling) to.disableTiling();
}
