// CUDA reductions and softmax (kernels/reduce.cu, softmax.cu). The reduce kernel takes a contiguous
// [outer, r, inner] float tensor reduced over r; any view and any set of dims is brought to that form: when the
// reduced dims (ignoring size-1 dims) are adjacent, a contiguous x is used as it lies (a strided one is copied
// first); otherwise the kept dims are permuted to the front and the view is copied contiguous (inner = 1).
// float16/bfloat16 inputs whose result is float32 (std) are reduced on a float32 copy, so they round once.
// Integer and bool inputs are reduced by the CPU backend (see reduceIntegers).

import type { ReduceOp, TensorView } from "../backend.ts";
import { cpuBackend } from "../cpu/index.ts";
import { reduceCode } from "../../../ffi/cuda/kernels.ts";
import { isFloat } from "../../core/dtype.ts";
import { isContiguous, numel } from "../../core/shape.ts";
import { cudaContext, dptr, launch, requireDType, tagOf } from "./context.ts";
import { copy } from "./elementwise.ts";
import { contiguousAs } from "./dense-views.ts";
import { viaCpu } from "./fallback.ts";


export function reduce(op: ReduceOp, x: TensorView, dims: readonly number[], out: TensorView, correction: number): void {
  const outN = numel(out.shape);
  if (outN === 0) return;
  if (!isFloat(x.dtype)) return reduceIntegers(op, x, dims, out, correction);
  const arg = op === "argmax" || op === "argmin";
  const work = arg ? x.dtype : out.dtype; // float16 -> float32 result (std): reduce a float32 copy
  requireDType(`reduce ${op}`, arg ? "int64" : work, out);
  // dims of size > 1, kept or reduced, in order
  const nd = x.shape.length;
  const big = [...Array(nd).keys()].filter((d) => x.shape[d]! !== 1);
  const red = big.filter((d) => dims.includes(d));
  const adjacent = red.length === 0 || big.indexOf(red[red.length - 1]!) - big.indexOf(red[0]!) === red.length - 1;
  let src: TensorView = x;
  let outer: number, r: number, inner: number;
  const prod = (ds: number[]) => ds.reduce((a, d) => a * x.shape[d]!, 1);
  if (adjacent) {
    const first = red.length ? red[0]! : nd;
    const last = red.length ? red[red.length - 1]! : nd - 1;
    outer = prod([...Array(first).keys()]);
    r = prod(red);
    inner = prod([...Array(nd).keys()].filter((d) => d > last));
  } else {
    const kept = [...Array(nd).keys()].filter((d) => !dims.includes(d));
    const order = [...kept, ...dims];
    src = { storage: x.storage, dtype: x.dtype, offset: x.offset, shape: order.map((d) => x.shape[d]!), strides: order.map((d) => x.strides[d]!) };
    outer = prod(kept);
    r = prod([...dims]);
    inner = 1;
  }
  const c = contiguousAs(src, work);
  try {
    launch(`bdk_reduce_${tagOf(work)}`, `reduce ${op} over [${dims.join(", ")}]`, [x, out], reduceCode(op), dptr(out), dptr(c.view), outer, r, inner,
      correction, cudaContext().stream);
  } finally {
    c.temp?.free();
  }
}

/**
 * Integer and bool reductions (sum/prod to int64 exactly, max/min, arg*, integer mean) have no kernels: they are
 * rare in a diffusion pipeline (argmax over CLIP token ids, counts of masks) and small, so they run on the CPU
 * backend, which computes them exactly in float64, with one download and one upload.
 */
function reduceIntegers(op: ReduceOp, x: TensorView, dims: readonly number[], out: TensorView, correction: number): void {
  viaCpu([x], [out], ([cx], [co]) => cpuBackend.reduce(op, cx!, dims, co!, correction));
}

export function softmax(x: TensorView, out: TensorView, log: boolean): void {
  const n = numel(x.shape);
  if (n === 0) return;
  requireDType("softmax", x.dtype, out);
  const cols = x.shape.length ? x.shape[x.shape.length - 1]! : 1;
  const rows = cols === 0 ? 0 : n / cols;
  // out is contiguous; a strided x is copied into it and normalised in place (the kernel allows out = x)
  let src = x;
  if (!isContiguous(x.shape, x.strides)) {
    copy(x, out);
    src = out;
  }
  launch(`bdk_softmax_${tagOf(x.dtype)}`, log ? "logSoftmax" : "softmax", [x, out], dptr(out), dptr(src), rows, cols, log ? 1 : 0, cudaContext().stream);
}
