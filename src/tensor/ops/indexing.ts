// Indexing ops with torch's semantics and shape checks: indexSelect, gather, scatterAdd,
// scatterReduce ("sum" | "mean", as Token Merging uses), argsort (stable), sort and topk.
// Index tensors are int32 or int64; argsort/sort/topk return int64 indices. Also attaches the
// methods of the same names to Tensor.

import { type DType, isFloat } from "../../core/dtype.ts";
import { TensorError } from "../../core/errors.ts";
import { formatShape, normalizeDim } from "../../core/shape.ts";
import { Tensor, backendFor, disposeAll } from "./common.ts";
import { movedim } from "./shape-ops.ts";

function dimOf(op: string, dim: number, ndim: number): number {
  try {
    return normalizeDim(dim, Math.max(ndim, 1));
  } catch (e) {
    throw new TensorError(`${op}: ${(e as Error).message}`);
  }
}

function requireIndex(op: string, index: Tensor): void {
  if (index.dtype !== "int32" && index.dtype !== "int64")
    throw new TensorError(`${op}: index must be int32 or int64, got ${index.describe()}`);
}

/** x.index_select(dim, index): the slices of x at the positions of a 1-D index. */
export function indexSelect(x: Tensor, dim: number, index: Tensor): Tensor {
  const backend = backendFor("indexSelect", x, index);
  requireIndex("indexSelect", index);
  if (x.ndim === 0) throw new TensorError(`indexSelect: needs a tensor with at least 1 dim, got ${x.describe()}`);
  if (index.ndim > 1) throw new TensorError(`indexSelect: index must be 1-D, got ${index.describe()}`);
  const d = dimOf("indexSelect", dim, x.ndim);
  const shape = x.shape.slice();
  shape[d] = index.numel;
  const out = Tensor.empty(shape, x.dtype, x.device);
  try {
    backend.indexSelect(x, d, index, out);
  } catch (e) {
    out.dispose();
    throw e;
  }
  return out;
}

/** torch.gather: out[i][j][k] = x[i][index[i][j][k]][k] for dim 1; out has index's shape. */
export function gather(x: Tensor, dim: number, index: Tensor): Tensor {
  const backend = backendFor("gather", x, index);
  requireIndex("gather", index);
  if (index.ndim !== x.ndim)
    throw new TensorError(`gather: index must have as many dims as the input: index ${formatShape(index.shape)}, input ${x.describe()}`);
  const d = dimOf("gather", dim, x.ndim);
  for (let k = 0; k < x.ndim; k++)
    if (k !== d && index.shape[k]! > x.shape[k]!)
      throw new TensorError(`gather: index ${formatShape(index.shape)} is larger than input ${formatShape(x.shape)} in dim ${k} (only dim ${d} may differ)`);
  const out = Tensor.empty(index.shape, x.dtype, x.device);
  try {
    backend.gather(x, d, index, out);
  } catch (e) {
    out.dispose();
    throw e;
  }
  return out;
}

function checkScatter(op: string, x: Tensor, dim: number, index: Tensor, src: Tensor): number {
  requireIndex(op, index);
  if (src.dtype !== x.dtype) throw new TensorError(`${op}: src dtype ${src.dtype} differs from input dtype ${x.dtype}; convert one with .to(dtype)`);
  if (index.ndim !== x.ndim || src.ndim !== x.ndim)
    throw new TensorError(`${op}: input ${formatShape(x.shape)}, index ${formatShape(index.shape)} and src ${formatShape(src.shape)} must have the same number of dims`);
  const d = dimOf(op, dim, x.ndim);
  for (let k = 0; k < x.ndim; k++) {
    if (index.shape[k]! > src.shape[k]!)
      throw new TensorError(`${op}: index ${formatShape(index.shape)} is larger than src ${formatShape(src.shape)} in dim ${k}`);
    if (k !== d && index.shape[k]! > x.shape[k]!)
      throw new TensorError(`${op}: index ${formatShape(index.shape)} is larger than input ${formatShape(x.shape)} in dim ${k} (only dim ${d} may differ)`);
  }
  return d;
}

/** x.scatter_add(dim, index, src) out of place: a copy of x with src added at the indexed positions. */
export function scatterAdd(x: Tensor, dim: number, index: Tensor, src: Tensor): Tensor {
  const backend = backendFor("scatterAdd", x, index, src);
  const d = checkScatter("scatterAdd", x, dim, index, src);
  const out = x.clone();
  try {
    backend.scatterAdd(out, d, index, src);
  } catch (e) {
    out.dispose();
    throw e;
  }
  return out;
}

export type ScatterReduce = "sum" | "mean";

/**
 * x.scatter_reduce(dim, index, src, reduce, include_self) out of place. "mean" with includeSelf
 * counts x's own element: (x + Σ src) / (1 + count); without it, indexed positions become
 * Σ src / count and the others keep x. Floats accumulate in float32 and round once.
 */
export function scatterReduce(x: Tensor, dim: number, index: Tensor, src: Tensor, reduce: ScatterReduce, opts: { includeSelf?: boolean } = {}): Tensor {
  const includeSelf = opts.includeSelf ?? true;
  const backend = backendFor("scatterReduce", x, index, src);
  const d = checkScatter("scatterReduce", x, dim, index, src);
  if (reduce !== "sum" && reduce !== "mean") throw new TensorError(`scatterReduce: unsupported reduce "${reduce as string}"; use "sum" or "mean"`);
  if (reduce === "sum" && includeSelf) return scatterAdd(x, d, index, src);
  if (reduce === "mean" && !isFloat(x.dtype)) throw new TensorError(`scatterReduce: "mean" needs a floating-point tensor, got ${x.describe()}`);
  const dev = x.device;
  const temps: Tensor[] = [];
  const tmp = (shape: readonly number[], dtype: DType) => {
    const t = Tensor.empty(shape, dtype, dev);
    temps.push(t);
    return t;
  };
  const out = Tensor.empty(x.shape, x.dtype, dev);
  try {
    // Hits per position of x: 1 (self) or 0, plus one per scattered element.
    const one = tmp([1], "float32");
    backend.fill(one, 1);
    const oneNd = one.reshape(new Array<number>(x.ndim).fill(1));
    temps.push(oneNd);
    const ones = oneNd.expand(index.shape); // stride 0: no allocation
    temps.push(ones);
    const count = tmp(x.shape, "float32");
    backend.fill(count, includeSelf ? 1 : 0);
    backend.scatterAdd(count, d, index, ones);

    if (reduce === "sum") {
      // Without self: Σ src where hit, x elsewhere (exact in x's dtype).
      const sum = tmp(x.shape, x.dtype);
      backend.fill(sum, 0);
      backend.scatterAdd(sum, d, index, src);
      const hit = tmp(x.shape, "bool");
      backend.binaryScalar("gt", count, 0, hit, false);
      backend.where(hit, sum, x, out);
      return out;
    }

    const sum = tmp(x.shape, "float32");
    if (includeSelf) backend.copy(x, sum);
    else backend.fill(sum, 0);
    let src32 = src;
    if (src.dtype !== "float32") {
      src32 = tmp(src.shape, "float32");
      backend.copy(src, src32);
    }
    backend.scatterAdd(sum, d, index, src32);
    if (includeSelf) {
      backend.binary("div", sum, count, out); // count >= 1 everywhere
      return out;
    }
    const mean = tmp(x.shape, "float32");
    backend.binary("div", sum, count, mean);
    const hit = tmp(x.shape, "bool");
    backend.binaryScalar("gt", count, 0, hit, false);
    let x32 = x;
    if (x.dtype !== "float32") {
      x32 = tmp(x.shape, "float32");
      backend.copy(x, x32);
    }
    const res = tmp(x.shape, "float32");
    backend.where(hit, mean, x32, res);
    backend.copy(res, out);
    return out;
  } catch (e) {
    out.dispose();
    throw e;
  } finally {
    disposeAll(...temps);
  }
}

/** Indices (int64) that sort x along `dim`; stable (equal values keep their order), NaN sorts above every number. */
export function argsort(x: Tensor, dim = -1, opts: { descending?: boolean } = {}): Tensor {
  const backend = backendFor("argsort", x);
  const d = dimOf("argsort", dim, x.ndim);
  if (x.ndim === 0) {
    const out = Tensor.empty([], "int64", x.device);
    backend.fill(out, 0);
    return out;
  }
  const last = x.ndim - 1;
  const moved = d === last ? x : movedim(x, d, last);
  const out = Tensor.empty(moved.shape, "int64", x.device);
  try {
    backend.argsort(moved, opts.descending ?? false, out);
  } catch (e) {
    out.dispose();
    throw e;
  } finally {
    if (moved !== x) moved.dispose();
  }
  if (d === last) return out;
  try {
    return movedim(out, last, d);
  } finally {
    out.dispose();
  }
}

/** Sorted values along `dim` and the int64 indices they came from (stable). */
export function sort(x: Tensor, dim = -1, opts: { descending?: boolean } = {}): { values: Tensor; indices: Tensor } {
  const indices = argsort(x, dim, opts);
  try {
    const values = x.ndim === 0 ? x.clone() : gather(x, dim, indices);
    return { values, indices };
  } catch (e) {
    indices.dispose();
    throw e;
  }
}

/** The k largest (or smallest) values along `dim`, in order, with their int64 indices; ties keep index order. */
export function topk(x: Tensor, k: number, dim = -1, opts: { largest?: boolean; sorted?: boolean } = {}): { values: Tensor; indices: Tensor } {
  const d = dimOf("topk", dim, x.ndim);
  const size = x.ndim === 0 ? 1 : x.shape[d]!;
  if (!Number.isInteger(k) || k < 0 || k > size) throw new TensorError(`topk: k = ${k} is out of range for dim ${d} of size ${size} in ${x.describe()}`);
  // `sorted: false` allows any order; sorted order is one of them.
  const order = argsort(x, d, { descending: opts.largest ?? true });
  let indices: Tensor;
  try {
    indices = x.ndim === 0 ? order.reshape([]) : order.narrow(d, 0, k);
  } finally {
    order.dispose();
  }
  try {
    const values = x.ndim === 0 ? x.clone() : gather(x, d, indices);
    return { values, indices };
  } catch (e) {
    indices.dispose();
    throw e;
  }
}

declare module "../tensor.ts" {
  interface Tensor {
    indexSelect(dim: number, index: Tensor): Tensor;
    gather(dim: number, index: Tensor): Tensor;
    scatterAdd(dim: number, index: Tensor, src: Tensor): Tensor;
    scatterReduce(dim: number, index: Tensor, src: Tensor, reduce: ScatterReduce, opts?: { includeSelf?: boolean }): Tensor;
    argsort(dim?: number, opts?: { descending?: boolean }): Tensor;
    sort(dim?: number, opts?: { descending?: boolean }): { values: Tensor; indices: Tensor };
    topk(k: number, dim?: number, opts?: { largest?: boolean; sorted?: boolean }): { values: Tensor; indices: Tensor };
  }
}

Tensor.prototype.indexSelect = function (this: Tensor, dim: number, index: Tensor) {
  return indexSelect(this, dim, index);
};
Tensor.prototype.gather = function (this: Tensor, dim: number, index: Tensor) {
  return gather(this, dim, index);
};
Tensor.prototype.scatterAdd = function (this: Tensor, dim: number, index: Tensor, src: Tensor) {
  return scatterAdd(this, dim, index, src);
};
Tensor.prototype.scatterReduce = function (this: Tensor, dim: number, index: Tensor, src: Tensor, reduce: ScatterReduce, opts?: { includeSelf?: boolean }) {
  return scatterReduce(this, dim, index, src, reduce, opts);
};
Tensor.prototype.argsort = function (this: Tensor, dim?: number, opts?: { descending?: boolean }) {
  return argsort(this, dim, opts);
};
Tensor.prototype.sort = function (this: Tensor, dim?: number, opts?: { descending?: boolean }) {
  return sort(this, dim, opts);
};
Tensor.prototype.topk = function (this: Tensor, k: number, dim?: number, opts?: { largest?: boolean; sorted?: boolean }) {
  return topk(this, k, dim, opts);
};
