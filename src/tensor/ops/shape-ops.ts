// Shape ops built on views and the backend's copy/fill: cat, stack, split, chunk, pad
// (constant with negative pads = cropping, reflect, replicate) and movedim, with torch's
// semantics. split/chunk/movedim return views; cat/stack/pad allocate their output.
// Also attaches Tensor.split and Tensor.chunk.

import { TensorError } from "../../core/errors.ts";
import { formatShape, normalizeDim } from "../../core/shape.ts";
import { Tensor, backendFor, commonDevice, sameDType } from "./common.ts";
import { memoryFormatOf } from "../../core/memory-format.ts";

function dimOf(op: string, dim: number, ndim: number): number {
  try {
    return normalizeDim(dim, ndim);
  } catch (e) {
    throw new TensorError(`${op}: ${(e as Error).message}`);
  }
}

/**
 * Concatenate along `dim`. All tensors share dtype, device and rank, and their shapes agree
 * except along `dim`; zero-size inputs are allowed (1-D tensors of shape [0] are skipped
 * whatever the others' shapes, as in torch).
 */
export function cat(tensors: readonly Tensor[], dim = 0): Tensor {
  if (tensors.length === 0) throw new TensorError("cat: expected a non-empty list of tensors");
  const backend = backendFor("cat", ...tensors);
  const dtype = sameDType("cat", ...tensors);
  const parts = tensors.filter((t) => !(t.ndim === 1 && t.shape[0] === 0));
  if (parts.length === 0) return Tensor.empty([0], dtype, tensors[0]!.device);
  const ref = parts[0]!;
  if (ref.ndim === 0) throw new TensorError("cat: zero-dimensional tensors cannot be concatenated; unsqueeze them or use stack");
  const d = dimOf("cat", dim, ref.ndim);
  const shape = ref.shape.slice();
  shape[d] = 0;
  for (const [i, t] of parts.entries()) {
    const ok = t.ndim === ref.ndim && t.shape.every((s, k) => k === d || s === ref.shape[k]);
    if (!ok)
      throw new TensorError(
        `cat: shapes must match except along dim ${d}: tensor ${i} is ${formatShape(t.shape)}, tensor 0 is ${formatShape(ref.shape)}`,
      );
    shape[d]! += t.shape[d]!;
  }
  const out = Tensor.empty(shape, dtype, ref.device, memoryFormatOf(ref)); // the first input's memory format, as torch
  let at = 0;
  for (const t of parts) {
    const len = t.shape[d]!;
    if (len > 0 && t.numel > 0) {
      const view = out.narrow(d, at, len);
      try {
        backend.copy(t, view);
      } finally {
        view.dispose();
      }
    }
    at += len;
  }
  return out;
}

/** Join same-shape tensors along a new dim. */
export function stack(tensors: readonly Tensor[], dim = 0): Tensor {
  if (tensors.length === 0) throw new TensorError("stack: expected a non-empty list of tensors");
  commonDevice("stack", ...tensors);
  sameDType("stack", ...tensors);
  const ref = tensors[0]!;
  for (const [i, t] of tensors.entries())
    if (t.ndim !== ref.ndim || t.shape.some((s, k) => s !== ref.shape[k]))
      throw new TensorError(`stack: all tensors must have the same shape: tensor ${i} is ${formatShape(t.shape)}, tensor 0 is ${formatShape(ref.shape)}`);
  const d = dimOf("stack", dim, ref.ndim + 1);
  const views = tensors.map((t) => t.unsqueeze(d));
  try {
    return cat(views, d);
  } finally {
    for (const v of views) v.dispose();
  }
}

/**
 * Views along `dim` (torch.split): a number is the chunk size (the last chunk may be smaller);
 * an array gives every chunk's size and must sum to the dim's size.
 */
export function split(x: Tensor, sizeOrSections: number | readonly number[], dim = 0): Tensor[] {
  const d = dimOf("split", dim, x.ndim);
  const n = x.shape[d]!;
  let sizes: number[];
  if (typeof sizeOrSections === "number") {
    const s = sizeOrSections;
    if (!Number.isInteger(s) || s < 0 || (s === 0 && n !== 0))
      throw new TensorError(`split: split size must be a positive integer, got ${s} for dim ${d} of size ${n}`);
    const count = Math.max(1, Math.ceil(n / Math.max(s, 1)));
    sizes = Array.from({ length: count }, (_, i) => Math.min(s, n - i * s));
  } else {
    sizes = sizeOrSections.slice();
    const sum = sizes.reduce((a, b) => a + b, 0);
    if (sizes.some((s) => !Number.isInteger(s) || s < 0) || sum !== n)
      throw new TensorError(`split: sections [${sizes.join(", ")}] must be non-negative integers summing to ${n} (dim ${d} of ${x.describe()})`);
  }
  const out: Tensor[] = [];
  let at = 0;
  for (const s of sizes) {
    out.push(x.narrow(d, at, s));
    at += s;
  }
  return out;
}

/** torch.chunk: views of ceil(size / chunks) elements along `dim`; may return fewer than `chunks`. */
export function chunk(x: Tensor, chunks: number, dim = 0): Tensor[] {
  if (!Number.isInteger(chunks) || chunks <= 0) throw new TensorError(`chunk: chunks must be a positive integer, got ${chunks}`);
  const d = dimOf("chunk", dim, x.ndim);
  const n = x.shape[d]!;
  // An empty dim still yields `chunks` empty views (torch keeps the count).
  if (n === 0) return split(x, new Array<number>(chunks).fill(0), d);
  return split(x, Math.ceil(n / chunks), d);
}

/** Move dims `source` to positions `destination` (torch.movedim); the others keep their order. A view. */
export function movedim(x: Tensor, source: number | readonly number[], destination: number | readonly number[]): Tensor {
  const src = (typeof source === "number" ? [source] : source.slice()).map((s) => dimOf("movedim", s, x.ndim));
  const dst = (typeof destination === "number" ? [destination] : destination.slice()).map((s) => dimOf("movedim", s, x.ndim));
  if (src.length !== dst.length)
    throw new TensorError(`movedim: source [${src.join(", ")}] and destination [${dst.join(", ")}] must have the same length`);
  if (new Set(src).size !== src.length || new Set(dst).size !== dst.length)
    throw new TensorError(`movedim: repeated dim in source [${src.join(", ")}] or destination [${dst.join(", ")}]`);
  const perm = new Array<number>(x.ndim).fill(-1);
  src.forEach((s, i) => (perm[dst[i]!] = s));
  const rest = [...Array(x.ndim).keys()].filter((k) => !src.includes(k));
  let r = 0;
  for (let k = 0; k < x.ndim; k++) if (perm[k] === -1) perm[k] = rest[r++]!;
  return x.permute(perm);
}

export type PadMode = "constant" | "reflect" | "replicate";

export interface PadOptions {
  mode?: PadMode;
  /** Fill value of "constant" mode. */
  value?: number;
}

/**
 * torch.nn.functional.pad: `pads` pairs start at the last dim ([left, right, top, bottom, ...]).
 * "constant" fills with `value` and accepts negative pads (cropping); "reflect" (mirror without
 * repeating the edge, pad < size) and "replicate" (repeat the edge) take non-negative pads.
 */
export function pad(x: Tensor, pads: readonly number[], opts: PadOptions = {}): Tensor {
  const mode = opts.mode ?? "constant";
  const value = opts.value ?? 0;
  if (pads.length % 2 !== 0 || pads.length > 2 * x.ndim || pads.some((p) => !Number.isInteger(p)))
    throw new TensorError(`pad: pads [${pads.join(", ")}] must be integer pairs, at most 2 per dim of ${x.describe()}`);
  const backend = backendFor("pad", x);
  const nd = x.ndim;
  const lo = new Array<number>(nd).fill(0);
  const hi = new Array<number>(nd).fill(0);
  for (let i = 0; i < pads.length / 2; i++) {
    lo[nd - 1 - i] = pads[2 * i]!;
    hi[nd - 1 - i] = pads[2 * i + 1]!;
  }
  const outShape = x.shape.map((s, d) => s + lo[d]! + hi[d]!);
  if (outShape.some((s) => s < 0))
    throw new TensorError(`pad: pads [${pads.join(", ")}] give a negative size ${formatShape(outShape)} for ${x.describe()}`);

  if (mode === "constant") {
    const out = Tensor.empty(outShape, x.dtype, x.device);
    if (lo.some((p) => p > 0) || hi.some((p) => p > 0)) backend.fill(out, value);
    // Copy the overlap of input and output: crop where pads are negative, offset where positive.
    let src = x.reshape(x.shape);
    let dst = out.reshape(outShape);
    try {
      for (let d = 0; d < nd; d++) {
        const len = x.shape[d]! - Math.max(0, -lo[d]!) - Math.max(0, -hi[d]!);
        if (len <= 0) return out;
        const s2 = src.narrow(d, Math.max(0, -lo[d]!), len);
        const d2 = dst.narrow(d, Math.max(0, lo[d]!), len);
        src.dispose();
        dst.dispose();
        src = s2;
        dst = d2;
      }
      backend.copy(src, dst);
      return out;
    } finally {
      src.dispose();
      dst.dispose();
    }
  }

  if (mode !== "reflect" && mode !== "replicate") throw new TensorError(`pad: unknown mode "${mode as string}"; use constant, reflect or replicate`);
  if (lo.some((p) => p < 0) || hi.some((p) => p < 0)) throw new TensorError(`pad: ${mode} mode needs non-negative pads, got [${pads.join(", ")}]`);
  for (let d = 0; d < nd; d++) {
    const size = x.shape[d]!;
    if (mode === "reflect" && (lo[d]! >= size || hi[d]! >= size) && lo[d]! + hi[d]! > 0)
      throw new TensorError(`pad: reflect pads (${lo[d]}, ${hi[d]}) must be smaller than dim ${d} of size ${size} in ${x.describe()}`);
    if (mode === "replicate" && size === 0 && lo[d]! + hi[d]! > 0)
      throw new TensorError(`pad: replicate cannot pad dim ${d} of size 0 in ${x.describe()}`);
  }
  // One dim at a time: copy the current tensor into the middle, then each border slice from the
  // source position its mode names (reflect: mirror about the edge; replicate: the edge itself).
  let cur = x.reshape(x.shape);
  for (let d = nd - 1; d >= 0; d--) {
    if (lo[d] === 0 && hi[d] === 0) continue;
    const size = cur.shape[d]!;
    const shape = cur.shape.slice();
    shape[d] = size + lo[d]! + hi[d]!;
    const next = Tensor.empty(shape, x.dtype, x.device);
    const put = (dstStart: number, srcStart: number, len: number) => {
      const s = cur.narrow(d, srcStart, len);
      const t = next.narrow(d, dstStart, len);
      try {
        backend.copy(s, t);
      } finally {
        s.dispose();
        t.dispose();
      }
    };
    put(lo[d]!, 0, size);
    for (let i = 0; i < lo[d]!; i++) put(lo[d]! - 1 - i, mode === "reflect" ? i + 1 : 0, 1);
    for (let i = 0; i < hi[d]!; i++) put(lo[d]! + size + i, mode === "reflect" ? size - 2 - i : size - 1, 1);
    cur.dispose();
    cur = next;
  }
  return cur;
}

declare module "../tensor.ts" {
  interface Tensor {
    /** torch.split: views along `dim` of the given chunk size or section sizes. */
    split(sizeOrSections: number | readonly number[], dim?: number): Tensor[];
    /** torch.chunk: at most `chunks` views along `dim`. */
    chunk(chunks: number, dim?: number): Tensor[];
  }
}

Tensor.prototype.split = function (this: Tensor, sizeOrSections: number | readonly number[], dim = 0): Tensor[] {
  return split(this, sizeOrSections, dim);
};
Tensor.prototype.chunk = function (this: Tensor, chunks: number, dim = 0): Tensor[] {
  return chunk(this, chunks, dim);
};
