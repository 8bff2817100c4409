// Token downsampling (ToDo, Smith et al. 2024) as an attention processor for self-attention: the queries keep every
// token, the keys and values come from the token grid resized with torch's "nearest-exact" rule to
// ⌊h / factor⌋ × ⌊w / factor⌋ (F.interpolate(size=…, mode="nearest-exact"): src = min(⌊(dst + ½)·scale⌋, in − 1),
// scale = float32(in / out)). Nothing is unmerged: the output has one row per query. The processor hands the
// downsampled tokens to the module's previous processor as its key/value input, so the attention kind (and any
// other processor underneath) is kept.

import type { Attention, AttentionCallOptions, AttnProcessor } from "../nn/attention.ts";
import { type Tensor, indexSelect, tensor, tidy } from "../tensor/index.ts";
import { tokenGrid } from "./levels.ts";

/** The latent size of the UNet call in progress (set by the UNet pre-hook), or null outside one. */
export interface LatentSize {
  size: [number, number] | null;
}

/** torch's nearest-exact source indices for a resize from `inSize` to `outSize` (size given, no scale factor). */
export function nearestExactIndex(inSize: number, outSize: number): Int32Array {
  const scale = Math.fround(inSize / outSize);
  const t = new Int32Array(outSize);
  for (let i = 0; i < outSize; i++) t[i] = Math.min(Math.floor(Math.fround((i + 0.5) * scale)), inSize - 1);
  return t;
}

/** x [B, h·w, C] on an h×w grid -> [B, nh·nw, C] resized with nearest-exact. */
export function downsampleTokens(x: Tensor, h: number, w: number, nh: number, nw: number): Tensor {
  const [B, N, C] = x.shape as [number, number, number];
  if (N !== h * w) throw new Error(`downsampleTokens: ${N} tokens are not a ${h}×${w} grid`);
  return tidy(() => {
    const grid = x.reshape([B, h, w, C]); // [B, h, w, C]
    const rows = indexSelect(grid, 1, tensor(nearestExactIndex(h, nh), { device: x.device })); // [B, nh, w, C]
    const cells = indexSelect(rows, 2, tensor(nearestExactIndex(w, nw), { device: x.device })); // [B, nh, nw, C]
    return cells.reshape([B, nh * nw, C]); // [B, nh·nw, C]
  });
}

/** ToDo on one self-attention module; `inner` is the processor it replaced (and restores on removal). */
export class ToDoProcessor implements AttnProcessor {
  readonly name = "todo";
  constructor(
    readonly inner: AttnProcessor,
    readonly latent: LatentSize,
    readonly factor: number,
    /** Largest token downsample (relative to the latent) this applies at. */
    readonly maxDownsample: number,
  ) {}

  process(attn: Attention, hidden: Tensor, encoder: Tensor | null, call: AttentionCallOptions): Tensor {
    const size = this.latent.size;
    if (encoder !== null || hidden.ndim !== 3 || size === null || attn.isCrossAttention) return this.inner.process(attn, hidden, encoder, call);
    const N = hidden.shape[1]!;
    const g = tokenGrid(size[0], size[1], N);
    if (!(g.downsample >= 1) || g.downsample > this.maxDownsample || g.h * g.w !== N) return this.inner.process(attn, hidden, encoder, call);
    const nh = Math.max(1, Math.floor(g.h / this.factor));
    const nw = Math.max(1, Math.floor(g.w / this.factor));
    if (nh === g.h && nw === g.w) return this.inner.process(attn, hidden, encoder, call);
    const kv = downsampleTokens(hidden, g.h, g.w, nh, nw); // [B, nh·nw, C]
    return this.inner.process(attn, hidden, kv, call); // q from every token, k/v from the downsampled grid
  }
}
