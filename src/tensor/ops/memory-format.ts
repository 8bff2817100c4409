// Memory formats at the op layer (core/memory-format.ts has the stride rules): toMemoryFormat converts a tensor to
// row-major or channels-last storage (a new reference when it already is, else one copy), and the helpers ops use
// to keep a format through a computation as PyTorch's suggest_memory_format does: an op's output takes the format
// of its first full-size operand of the output's rank, and an element-wise op whose output is channels-last runs on
// views permuted to storage order ([N, H, W, C]), so every backend sees dense row-major operands (the CUDA vector
// path, the CPU's in-place float32 reads) instead of channel-strided ones.

import { type MemoryFormat, channelsLastOrder, hasChannelsLastStrides, memoryFormatOf } from "../../core/memory-format.ts";
import { TensorError } from "../../core/errors.ts";
import { getBackend } from "../../backends/registry.ts";
import { Tensor } from "./common.ts";

declare module "../tensor.ts" {
  interface Tensor {
    /** The same values stored channels-last (NHWC for [N, C, H, W]); a new reference when already so. */
    toChannelsLast(): Tensor;
  }
}

/** The same values in `format`: a new reference to this storage when it already is, else a dense copy. */
export function toMemoryFormat(x: Tensor, format: MemoryFormat): Tensor {
  if (format === "channelsLast" && x.ndim < 3)
    throw new TensorError(`toMemoryFormat: channels-last needs a tensor of rank ≥ 3 ([N, C, ...spatial]), got ${x.describe()}`);
  if (format === "contiguous") return x.contiguous();
  if (hasChannelsLastStrides(x.shape, x.strides)) return x.reshape(x.shape);
  const out = Tensor.empty(x.shape, x.dtype, x.device, format);
  try {
    if (x.device !== "meta") getBackend(x.device).copy(x, out);
  } catch (e) {
    out.dispose();
    throw e;
  }
  return out;
}

Tensor.prototype.toChannelsLast = function (this: Tensor): Tensor {
  return toMemoryFormat(this, "channelsLast");
};

/**
 * The format an op's output of `shape` takes: channels-last when the first operand with the output's shape (no
 * broadcast dims) is channels-last, else row-major.
 */
export function suggestFormat(shape: readonly number[], ...operands: (Tensor | null | undefined)[]): MemoryFormat {
  if (shape.length < 3) return "contiguous";
  for (const t of operands) {
    if (!t || t.ndim !== shape.length) continue;
    let full = true;
    for (let i = 0; i < shape.length; i++) if (t.shape[i] !== shape[i]) full = false;
    if (full) return memoryFormatOf(t);
  }
  return "contiguous";
}

/** Views of `ts` with their dims in channels-last storage order ([N, H, W, C] for [N, C, H, W]); caller disposes. */
export function storageOrderViews(ts: readonly Tensor[]): Tensor[] {
  const order = channelsLastOrder(ts[0]!.ndim);
  return ts.map((t) => t.permute(order));
}

/**
 * Run a backend call that fills `out` from `inputs` (all of out's shape, broadcast views allowed): on views in
 * storage order when out is channels-last, else on the tensors as they are.
 */
export function inStorageOrder(out: Tensor, inputs: readonly Tensor[], call: (out: Tensor, inputs: Tensor[]) => void): void {
  if (out.ndim < 3 || memoryFormatOf(out) !== "channelsLast") return call(out, inputs as Tensor[]);
  const views = storageOrderViews([out, ...inputs]);
  try {
    call(views[0]!, views.slice(1));
  } finally {
    for (const v of views) v.dispose();
  }
}
