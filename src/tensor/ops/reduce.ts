// Reductions and softmax: sum, mean, max, min (values; maxWithIndices/minWithIndices for both),
// argmax, argmin, prod, var/std (torch's `correction`), softmax and logSoftmax over any dim;
// also attached to Tensor as methods (x.sum(1), x.var(-1, { correction: 0 }), x.softmax(-1), ...).
//
// `dim` undefined reduces over all dims; a list reduces over several (an empty list reduces
// nothing, as numpy; torch would read it as all dims). Result dtypes: float inputs
// keep their dtype (float16/bfloat16 are accumulated wider and rounded once); sum and prod of
// integer or bool tensors give int64; mean of an integer tensor gives float32 (torch refuses it,
// we pick true division); max/min keep the dtype; argmax/argmin give int64; var, std, softmax
// and logSoftmax need a float tensor. Empty reductions: sum 0, prod 1, mean/var NaN; max, min,
// argmax and argmin throw.

import type { ReduceOp } from "../../backends/backend.ts";
import { type DType, isFloat } from "../../core/dtype.ts";
import { TensorError } from "../../core/errors.ts";
import { normalizeDim } from "../../core/shape.ts";
import { Tensor, backendFor, disposeAll, requireFloat } from "./common.ts";
import { sqrt } from "./elementwise.ts";

export type Dims = number | readonly number[];

export interface VarOptions {
  /** Divide by N - correction: 1 (default) = unbiased sample variance, 0 = population variance. */
  correction?: number;
  keepdim?: boolean;
}

/** Sorted, unique, non-negative reduction dims; all dims when `dim` is undefined. */
function reductionDims(op: string, x: Tensor, dim: Dims | undefined): number[] {
  if (dim === undefined) return [...Array(x.ndim).keys()];
  const list = typeof dim === "number" ? [dim] : [...dim];
  if (x.ndim === 0) {
    // A 0-d tensor accepts dim 0 / -1, as torch.
    for (const d of list) if (d !== 0 && d !== -1) throw new TensorError(`${op}: dim ${d} is out of range for a 0-d tensor`);
    return [];
  }
  const out: number[] = [];
  for (const d of list) {
    let n: number;
    try {
      n = normalizeDim(d, x.ndim);
    } catch (e) {
      throw new TensorError(`${op}: ${(e as Error).message} (${x.describe()})`);
    }
    if (out.includes(n)) throw new TensorError(`${op}: dim ${d} appears more than once in [${list.join(", ")}]`);
    out.push(n);
  }
  return out.sort((a, b) => a - b);
}

function reduceOp(name: string, op: ReduceOp, x: Tensor, dims: number[], keepdim: boolean, dtype: DType, correction = 0): Tensor {
  const backend = backendFor(name, x);
  let count = 1;
  for (const d of dims) count *= x.shape[d]!;
  if (count === 0 && (op === "max" || op === "min" || op === "argmax" || op === "argmin"))
    throw new TensorError(`${name}: cannot reduce over an empty dimension of ${x.describe()} (the operation has no identity)`);
  const keepShape = x.shape.map((s, i) => (dims.includes(i) ? 1 : s));
  const outShape = keepdim ? keepShape : x.shape.filter((_, i) => !dims.includes(i));
  const out = Tensor.empty(outShape, dtype, x.device);
  const view = out.reshape(keepShape); // the backend writes the keepdim layout
  try {
    backend.reduce(op, x, dims, view, correction);
  } catch (e) {
    out.dispose();
    throw e;
  } finally {
    view.dispose();
  }
  return out;
}

const wideInt = (x: Tensor): DType => (isFloat(x.dtype) ? x.dtype : "int64");

export function sum(x: Tensor, dim?: Dims, keepdim = false): Tensor {
  return reduceOp("sum", "sum", x, reductionDims("sum", x, dim), keepdim, wideInt(x));
}

/** Mean; integer inputs give float32. */
export function mean(x: Tensor, dim?: Dims, keepdim = false): Tensor {
  return reduceOp("mean", "mean", x, reductionDims("mean", x, dim), keepdim, isFloat(x.dtype) ? x.dtype : "float32");
}

export function prod(x: Tensor, dim?: Dims, keepdim = false): Tensor {
  return reduceOp("prod", "prod", x, reductionDims("prod", x, dim), keepdim, wideInt(x));
}

/** Maximum values (NaN propagates). For the indices too, use maxWithIndices. */
export function max(x: Tensor, dim?: Dims, keepdim = false): Tensor {
  return reduceOp("max", "max", x, reductionDims("max", x, dim), keepdim, x.dtype);
}

export function min(x: Tensor, dim?: Dims, keepdim = false): Tensor {
  return reduceOp("min", "min", x, reductionDims("min", x, dim), keepdim, x.dtype);
}

/** Index (int64) of the first maximum along `dim`, or into the flattened tensor when dim is undefined. */
export function argmax(x: Tensor, dim?: number, keepdim = false): Tensor {
  return reduceOp("argmax", "argmax", x, reductionDims("argmax", x, dim), keepdim, "int64");
}

export function argmin(x: Tensor, dim?: number, keepdim = false): Tensor {
  return reduceOp("argmin", "argmin", x, reductionDims("argmin", x, dim), keepdim, "int64");
}

/** One-pass values + indices where the backend has reduceWithIndices (null: use the two reductions). */
function extremeWithIndices(op: "max" | "min", x: Tensor, dim: number, keepdim: boolean): { values: Tensor; indices: Tensor } | null {
  const backend = backendFor(op === "max" ? "maxWithIndices" : "minWithIndices", x);
  if (!backend.reduceWithIndices) return null;
  const dims = reductionDims(op, x, dim);
  if (dims.length !== 1 || x.shape[dims[0]!] === 0) return null; // the two reductions raise the errors
  const d = dims[0]!;
  const keepShape = x.shape.map((s, i) => (i === d ? 1 : s));
  const outShape = keepdim ? keepShape : x.shape.filter((_, i) => i !== d);
  const values = Tensor.empty(outShape, x.dtype, x.device);
  const indices = Tensor.empty(outShape, "int64", x.device);
  const vv = values.reshape(keepShape);
  const iv = indices.reshape(keepShape);
  try {
    backend.reduceWithIndices(op, x, d, vv, iv);
  } catch (e) {
    values.dispose();
    indices.dispose();
    throw e;
  } finally {
    vv.dispose();
    iv.dispose();
  }
  return { values, indices };
}

/** torch.max(x, dim): the values and the (first) indices of the maxima. */
export function maxWithIndices(x: Tensor, dim: number, keepdim = false): { values: Tensor; indices: Tensor } {
  const fused = extremeWithIndices("max", x, dim, keepdim);
  if (fused) return fused;
  const values = max(x, dim, keepdim);
  try {
    return { values, indices: argmax(x, dim, keepdim) };
  } catch (e) {
    values.dispose();
    throw e;
  }
}

export function minWithIndices(x: Tensor, dim: number, keepdim = false): { values: Tensor; indices: Tensor } {
  const fused = extremeWithIndices("min", x, dim, keepdim);
  if (fused) return fused;
  const values = min(x, dim, keepdim);
  try {
    return { values, indices: argmin(x, dim, keepdim) };
  } catch (e) {
    values.dispose();
    throw e;
  }
}

/** torch.var: Σ(x - mean)² / max(0, N - correction); float tensors only. Exported as `var` too. */
export function variance(x: Tensor, dim?: Dims, opts: VarOptions = {}): Tensor {
  requireFloat("var", x);
  const correction = opts.correction ?? 1;
  return reduceOp("var", "var", x, reductionDims("var", x, dim), opts.keepdim ?? false, x.dtype, correction);
}

/** torch.std: √var with the same options. float16/bfloat16 take the root in float32 and round once. */
export function std(x: Tensor, dim?: Dims, opts: VarOptions = {}): Tensor {
  requireFloat("std", x);
  const dims = reductionDims("std", x, dim);
  const v = reduceOp("std", "var", x, dims, opts.keepdim ?? false, "float32", opts.correction ?? 1);
  let s: Tensor | null = null;
  try {
    s = sqrt(v);
    if (x.dtype === "float32") return s;
    return s.to(x.dtype);
  } finally {
    v.dispose();
    if (x.dtype !== "float32") disposeAll(s);
  }
}

export { variance as var };

function softmaxOp(name: string, x: Tensor, dim: number, log: boolean): Tensor {
  requireFloat(name, x);
  const backend = backendFor(name, x);
  if (x.ndim === 0) {
    if (dim !== 0 && dim !== -1) throw new TensorError(`${name}: dim ${dim} is out of range for a 0-d tensor`);
  }
  let d = 0;
  if (x.ndim > 0) {
    try {
      d = normalizeDim(dim, x.ndim);
    } catch (e) {
      throw new TensorError(`${name}: ${(e as Error).message} (${x.describe()})`);
    }
  }
  const last = Math.max(0, x.ndim - 1);
  if (d === last) {
    const out = Tensor.empty(x.shape, x.dtype, x.device);
    try {
      backend.softmax(x, out, log);
    } catch (e) {
      out.dispose();
      throw e;
    }
    return out;
  }
  // Move `dim` last (a view), compute into a contiguous buffer, move it back and make it contiguous.
  const xt = x.transpose(d, last);
  const tmp = Tensor.empty(xt.shape, x.dtype, x.device);
  let back: Tensor | null = null;
  try {
    backend.softmax(xt, tmp, log);
    back = tmp.transpose(d, last);
    return back.contiguous();
  } finally {
    disposeAll(xt, tmp, back);
  }
}

/** Softmax along `dim` (default last); statistics in float32 or wider. Fully -inf slices give NaN, as torch. */
export function softmax(x: Tensor, dim = -1): Tensor {
  return softmaxOp("softmax", x, dim, false);
}

/** log(softmax(x)) computed stably as x - max - log Σ exp(x - max). */
export function logSoftmax(x: Tensor, dim = -1): Tensor {
  return softmaxOp("logSoftmax", x, dim, true);
}

// ---- methods ---------------------------------------------------------------------------------

declare module "../tensor.ts" {
  interface Tensor {
    sum(dim?: Dims, keepdim?: boolean): Tensor;
    mean(dim?: Dims, keepdim?: boolean): Tensor;
    prod(dim?: Dims, keepdim?: boolean): Tensor;
    /** Values only; see maxWithIndices. */
    max(dim?: Dims, keepdim?: boolean): Tensor;
    min(dim?: Dims, keepdim?: boolean): Tensor;
    argmax(dim?: number, keepdim?: boolean): Tensor;
    argmin(dim?: number, keepdim?: boolean): Tensor;
    var(dim?: Dims, opts?: VarOptions): Tensor;
    std(dim?: Dims, opts?: VarOptions): Tensor;
    softmax(dim?: number): Tensor;
    logSoftmax(dim?: number): Tensor;
  }
}

Tensor.prototype.sum = function (this: Tensor, dim?: Dims, keepdim?: boolean) {
  return sum(this, dim, keepdim);
};
Tensor.prototype.mean = function (this: Tensor, dim?: Dims, keepdim?: boolean) {
  return mean(this, dim, keepdim);
};
Tensor.prototype.prod = function (this: Tensor, dim?: Dims, keepdim?: boolean) {
  return prod(this, dim, keepdim);
};
Tensor.prototype.max = function (this: Tensor, dim?: Dims, keepdim?: boolean) {
  return max(this, dim, keepdim);
};
Tensor.prototype.min = function (this: Tensor, dim?: Dims, keepdim?: boolean) {
  return min(this, dim, keepdim);
};
Tensor.prototype.argmax = function (this: Tensor, dim?: number, keepdim?: boolean) {
  return argmax(this, dim, keepdim);
};
Tensor.prototype.argmin = function (this: Tensor, dim?: number, keepdim?: boolean) {
  return argmin(this, dim, keepdim);
};
Tensor.prototype.var = function (this: Tensor, dim?: Dims, opts?: VarOptions) {
  return variance(this, dim, opts);
};
Tensor.prototype.std = function (this: Tensor, dim?: Dims, opts?: VarOptions) {
  return std(this, dim, opts);
};
Tensor.prototype.softmax = function (this: Tensor, dim?: number) {
  return softmax(this, dim);
};
Tensor.prototype.logSoftmax = function (this: Tensor, dim?: number) {
  return logSoftmax(this, dim);
};
