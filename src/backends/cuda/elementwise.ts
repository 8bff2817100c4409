// CUDA element-wise ops and data movement: copy (with dtype conversion through the cast kernels), fill, unary,
// binary, tensor ⊕ scalar and where, all on strided views through bd::Strided (kernels/elementwise.cu, copy.cu).
// Dtype cases the kernels do not take directly are converted on the device first: float math on an integer input
// and true division of integers run in float32 on a cast copy; an integer tensor compared with a non-integer
// scalar compares against the equivalent integer bound (exact), or in float32 when the scalar is not finite.

import type { BinaryOp, TensorView, UnaryOp } from "../backend.ts";
import { type StridedParams, binaryCode, unaryCode } from "../../../ffi/cuda/kernels.ts";
import { type DType, isFloat } from "../../core/dtype.ts";
import { TensorError } from "../../core/errors.ts";
import { collapseDims, formatShape, numel } from "../../core/shape.ts";
import { cudaContext, dptr, launch, stridedParams, tagOf, temp } from "./context.ts";
import { noteCopy } from "./layout-copies.ts";

/**
 * bd::Strided for `shape` and the operands' strides (the output's first; dims merged first when there are more than
 * 8). With `reorder` (element-wise kernels, whose result does not depend on the order of the dims), when the output's
 * strides do not decrease (a channels-last or otherwise permuted output), the dims are listed
 * in the output's storage order first — the same elements, walked as the output lies — so that its innermost dim
 * has stride 1 and the kernel's vector path applies.
 */
export function stridedFor(P: StridedParams, shape: readonly number[], strides: readonly (readonly number[])[], reorder = false): Uint8Array {
  const order = reorder ? storageOrder(shape, strides[0]!) : null;
  if (order) {
    shape = order.map((d) => shape[d]!);
    strides = strides.map((st) => order.map((d) => st[d]!));
  }
  if (shape.length <= 8) return P.set(shape, strides);
  const c = collapseDims(shape, ...strides);
  if (c.shape.length > 8)
    throw new TensorError(`CUDA kernels take at most 8 dims after merging contiguous ones; ${formatShape(shape)} has ${c.shape.length}`);
  return P.set(c.shape, c.strides);
}

/** The dims of `shape` by decreasing output stride (stable; size-1 dims stay put), or null when already so. */
function storageOrder(shape: readonly number[], out: readonly number[]): number[] | null {
  let prev = Infinity;
  let sorted = true;
  for (let i = 0; i < shape.length; i++) {
    if (shape[i] === 1) continue;
    if (out[i]! > prev) sorted = false;
    prev = out[i]!;
  }
  if (sorted) return null;
  const dims = shape.map((_, i) => i).filter((i) => shape[i] !== 1);
  dims.sort((a, b) => out[b]! - out[a]!);
  return dims;
}

const castTag = (d: DType) => (d === "bool" ? "bool" : tagOf(d));

const P_COPY = stridedParams();
/** dst[...] = src[...] for same-shape views of any strides, converting dtype when they differ. */
export function copy(src: TensorView, dst: TensorView): void {
  if (numel(dst.shape) === 0) return;
  noteCopy(dst.shape, src.strides, dst.strides);
  const p = stridedFor(P_COPY, dst.shape, [dst.strides, src.strides], true);
  const same = src.dtype === dst.dtype || (src.dtype === "bool" && dst.dtype === "uint8");
  const name = same ? `bdk_copy_${tagOf(dst.dtype)}` : `bdk_cast_${tagOf(src.dtype)}_${castTag(dst.dtype)}`;
  launch(name, "copy", [src, dst], p, dptr(dst), dptr(src), cudaContext().stream);
}

const P_FILL = stridedParams();
export function fill(dst: TensorView, value: number): void {
  if (numel(dst.shape) === 0) return;
  let v = value;
  if (dst.dtype === "bool") v = value !== 0 ? 1 : 0; // NaN is true, as the CPU backend
  else if (!isFloat(dst.dtype)) v = Number.isFinite(value) ? Math.trunc(value) : 0;
  launch(`bdk_fill_${tagOf(dst.dtype)}`, "fill", [dst], stridedFor(P_FILL, dst.shape, [dst.strides], true), dptr(dst), v, cudaContext().stream);
}

/**
 * Run a kernel whose output dtype is `dtype` into `out`: directly when out has that dtype (bool and uint8 are the
 * same bytes), else into a temporary converted into out afterwards (e.g. float32 math rounded to a float16 out).
 */
function into(out: TensorView, dtype: DType, run: (dst: TensorView) => void): void {
  if (out.dtype === dtype || (dtype === "bool" && out.dtype === "uint8")) return run(out);
  const t = temp(out.shape, dtype);
  try {
    run(t);
    copy(t, out);
  } finally {
    t.free();
  }
}

/** `v` converted to `dtype` (a contiguous copy to free), or v itself. */
function as(v: TensorView, dtype: DType): { view: TensorView; free(): void } {
  if (v.dtype === dtype) return { view: v, free() {} };
  const t = temp(v.shape, dtype);
  try {
    copy(v, t);
  } catch (e) {
    t.free();
    throw e;
  }
  return { view: t, free: () => t.free() };
}

/**
 * The dtype a kernel computes in: the input's, except float32 when the result is a float of another dtype (an integer
 * input with a float result, or a float16 input with a float32 result), so that the result is rounded only once.
 */
const computeDType = (input: DType, out: DType): DType => (isFloat(out) && out !== input ? "float32" : input);

const P_UNARY = stridedParams();
export function unary(op: UnaryOp, x: TensorView, out: TensorView, p0?: number, p1?: number): void {
  if (numel(out.shape) === 0) return;
  const cd = computeDType(x.dtype, out.dtype); // integer input, float result (exp, clamp with non-integer bounds): float32
  const xs = as(x, cd);
  try {
    into(out, op === "logical_not" ? "bool" : cd, (dst) => {
      const p = stridedFor(P_UNARY, dst.shape, [dst.strides, xs.view.strides], true);
      launch(`bdk_unary_${tagOf(cd)}`, `unary ${op}`, [x, out], unaryCode(op), p, dptr(dst), dptr(xs.view), p0 ?? -Infinity, p1 ?? Infinity,
        cudaContext().stream);
    });
  } finally {
    xs.free();
  }
}

const P_BINARY = stridedParams();
export function binary(op: BinaryOp, a: TensorView, b: TensorView, out: TensorView): void {
  if (numel(out.shape) === 0) return;
  const cd = computeDType(a.dtype, out.dtype); // true division of integers: float32
  const as_ = as(a, cd);
  try {
    const bs = as(b, cd);
    try {
      into(out, COMPARE_OR_LOGICAL.has(op) ? "bool" : cd, (dst) => {
        const p = stridedFor(P_BINARY, dst.shape, [dst.strides, as_.view.strides, bs.view.strides], true);
        launch(`bdk_binary_${tagOf(cd)}`, `binary ${op}`, [a, b, out], binaryCode(op), p, dptr(dst), dptr(as_.view), dptr(bs.view),
          cudaContext().stream);
      });
    } finally {
      bs.free();
    }
  } finally {
    as_.free();
  }
}

const COMPARE_OR_LOGICAL = new Set<BinaryOp>(["eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or"]);
const COMPARE = new Set<BinaryOp>(["eq", "ne", "lt", "le", "gt", "ge"]);
const FLIP: Partial<Record<BinaryOp, BinaryOp>> = { lt: "gt", le: "ge", gt: "lt", ge: "le", eq: "eq", ne: "ne" };

/**
 * An integer tensor compared with a non-integer finite scalar s: the same comparison against an integer bound.
 * x < s ⇔ x < ceil(s); x ≤ s ⇔ x ≤ floor(s); x > s ⇔ x > floor(s); x ≥ s ⇔ x ≥ ceil(s); x = s never; x ≠ s always.
 */
function integerBound(op: BinaryOp, s: number): { op: BinaryOp; s: number } | { constant: 0 | 1 } {
  switch (op) {
    case "lt": return { op, s: Math.ceil(s) };
    case "le": return { op, s: Math.floor(s) };
    case "gt": return { op, s: Math.floor(s) };
    case "ge": return { op, s: Math.ceil(s) };
    case "eq": return { constant: 0 };
    case "ne": return { constant: 1 };
  }
  throw new Error(`internal: ${op} is not a comparison`);
}

const P_SCALAR = stridedParams();
export function binaryScalar(op: BinaryOp, a: TensorView, scalar: number, out: TensorView, scalarFirst: boolean): void {
  if (numel(out.shape) === 0) return;
  const intInput = !isFloat(a.dtype);
  if (intInput && COMPARE.has(op) && !Number.isInteger(scalar)) {
    if (!Number.isFinite(scalar)) {
      // ±inf / NaN compare the same in float32
      const af = as(a, "float32");
      try {
        return binaryScalar(op, af.view, scalar, out, scalarFirst);
      } finally {
        af.free();
      }
    }
    const r = integerBound(scalarFirst ? FLIP[op]! : op, scalar);
    if ("constant" in r) return fill(out, r.constant);
    return binaryScalar(r.op, a, r.s, out, false);
  }
  const cd = computeDType(a.dtype, out.dtype); // integer tensor with a non-integer scalar, or true division: float32
  const as_ = as(a, cd);
  try {
    into(out, COMPARE_OR_LOGICAL.has(op) ? "bool" : cd, (dst) => {
      const p = stridedFor(P_SCALAR, dst.shape, [dst.strides, as_.view.strides], true);
      launch(`bdk_binary_scalar_${tagOf(cd)}`, `binaryScalar ${op}`, [a, out], binaryCode(op), p, dptr(dst), dptr(as_.view), scalar,
        scalarFirst ? 1 : 0, cudaContext().stream);
    });
  } finally {
    as_.free();
  }
}

const P_WHERE = stridedParams();
export function where(cond: TensorView, a: TensorView, b: TensorView, out: TensorView): void {
  if (numel(out.shape) === 0) return;
  const as_ = as(a, out.dtype);
  try {
    const bs = as(b, out.dtype);
    try {
      const p = stridedFor(P_WHERE, out.shape, [out.strides, cond.strides, as_.view.strides, bs.view.strides], true);
      launch(`bdk_where_${tagOf(out.dtype)}`, "where", [cond, a, b, out], p, dptr(out), dptr(cond), dptr(as_.view), dptr(bs.view), cudaContext().stream);
    } finally {
      bs.free();
    }
  } finally {
    as_.free();
  }
}
