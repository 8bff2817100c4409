// The fused scaled dot-product attention op: out = softmax(q·kᵀ·scale + mask)·v computed by the
// backend's blockwise kernel (an online softmax, no [Sq, Sk] score tensor). Shapes, dtypes and devices
// are checked here once, with messages that name the op and the shapes; the backend only computes.
// q [B, H, Sq, D], k [B, H, Sk, D], v [B, H, Sk, Dv] of one float dtype, any strides (the views of
// permuted [B, S, H·D] projections are read in place); mask: additive float or bool/uint8 keep-mask
// broadcastable to [B, H, Sq, Sk]; causal: query i attends keys j ≤ i (top-left aligned). Scores and
// softmax statistics are float32 for every dtype; the output [B, H, Sq, Dv] has q's dtype. A row whose
// keys are all masked gives 0 (FlashAttention's convention), not torch's NaN.

import { isFloat } from "../../core/dtype.ts";
import { TensorError } from "../../core/errors.ts";
import { formatShape } from "../../core/shape.ts";
import { empty } from "../creation.ts";
import { type Tensor, backendFor } from "./common.ts";

export interface FusedAttentionOptions {
  /** Multiplier of q·kᵀ (default D^-0.5). */
  scale?: number;
  /** Additive float mask or bool keep-mask, broadcastable to [B, H, Sq, Sk]. */
  mask?: Tensor | null;
  /** Query i attends keys j ≤ i. */
  causal?: boolean;
}

/** Check q, k, v (and a mask) for attention; throws a TensorError naming `op` and the shapes. */
export function checkAttentionShapes(op: string, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | null = null): void {
  const s = (t: Tensor) => formatShape(t.shape);
  if (q.ndim !== 4 || k.ndim !== 4 || v.ndim !== 4)
    throw new TensorError(`${op}: q, k, v must be [B, H, S, D], got ${s(q)}, ${s(k)}, ${s(v)}`);
  const [B, H, , D] = q.shape as [number, number, number, number];
  if (k.shape[0] !== B || v.shape[0] !== B || k.shape[1] !== H || v.shape[1] !== H)
    throw new TensorError(`${op}: batch/heads differ: q ${s(q)}, k ${s(k)}, v ${s(v)}`);
  if (k.shape[3] !== D) throw new TensorError(`${op}: q and k head dims differ: ${s(q)} vs ${s(k)}`);
  if (k.shape[2] !== v.shape[2]) throw new TensorError(`${op}: k and v lengths differ: ${s(k)} vs ${s(v)}`);
  if (mask) {
    const want = [B, H, q.shape[2]!, k.shape[2]!];
    const off = 4 - mask.ndim;
    if (off < 0 || mask.shape.some((d, i) => d !== 1 && d !== want[i + off]))
      throw new TensorError(`${op}: mask ${s(mask)} does not broadcast to ${formatShape(want)}`);
  }
}

/** softmax(q·kᵀ·scale + mask)·v by the backend's fused kernel; see the file header. */
export function fusedAttention(q: Tensor, k: Tensor, v: Tensor, opts: FusedAttentionOptions = {}): Tensor {
  const mask = opts.mask ?? null;
  checkAttentionShapes("attention", q, k, v, mask);
  const backend = backendFor("attention", q, k, v, mask);
  if (q.dtype !== k.dtype || q.dtype !== v.dtype)
    throw new TensorError(`attention: q, k, v dtypes differ (${q.dtype}, ${k.dtype}, ${v.dtype}); convert with .to(dtype)`);
  if (!isFloat(q.dtype)) throw new TensorError(`attention: needs floating-point q, k, v, got ${q.dtype}`);
  if (mask && !isFloat(mask.dtype) && mask.dtype !== "bool" && mask.dtype !== "uint8")
    throw new TensorError(`attention: mask must be float (additive) or bool (keep), got ${mask.dtype}`);
  const scale = opts.scale ?? 1 / Math.sqrt(q.shape[3]!);
  if (!Number.isFinite(scale)) throw new TensorError(`attention: scale must be finite, got ${scale}`);
  const [B, H, Sq] = q.shape as [number, number, number];
  const Sk = k.shape[2]!;
  const out = empty([B, H, Sq, v.shape[3]!], { dtype: q.dtype, device: q.device });
  const m = mask ? mask.expand([B, H, Sq, Sk]) : null; // stride-0 view on broadcast dims
  try {
    backend.attention(q, k, v, out, scale, m, opts.causal === true);
    return out;
  } catch (e) {
    out.dispose();
    throw e;
  } finally {
    m?.dispose();
  }
}
