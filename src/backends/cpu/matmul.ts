// CPU batched matrix multiply (the backend contract's `matmul`): out[..., M, N] = a[..., M, K] @ b[..., K, N]
// on sgemm/sgemmBatched. Float32 matrices whose last two dims are row-major ([K, 1]-like strides) or
// column-major ([1, M]-like, e.g. a `.T` view) are passed to the GEMM as they lie, with transA/transB; any other
// layout, and float16/bfloat16, is materialised once as float32 (broadcast batch dims are not expanded). The
// batch dims are collapsed: one uniform stride becomes a single sgemmBatched call, a batch broadcast on `b` over a
// row-major `a` is folded into M (one large GEMM), anything else loops. Results are rounded once on commit.

import type { TensorView } from "../backend.ts";
import { collapseDims, contiguousStrides, numel } from "../../core/shape.ts";
import { commit, outF32, rawOf, readF32 } from "./strided.ts";
import { sgemm, sgemmBatched } from "./gemm.ts";

/** A float32 operand as the GEMM sees it: array, offset, transpose flag, leading dim, batch strides. */
interface Operand {
  arr: Float32Array;
  off: number;
  trans: boolean;
  ld: number;
  batchStrides: number[];
}

/**
 * Describe the rows×cols matrices of `v` (its last two dims) for the GEMM: zero-copy when float32 and
 * row- or column-major, otherwise a float32 copy that keeps broadcast (stride-0) batch dims unexpanded.
 */
function operand(v: TensorView, rows: number, cols: number): Operand {
  const nd = v.shape.length;
  const batchShape = v.shape.slice(0, nd - 2);
  const rs = v.strides[nd - 2]!;
  const cs = v.strides[nd - 1]!;
  if (v.dtype === "float32") {
    const arr = rawOf(v) as Float32Array;
    const batchStrides = v.strides.slice(0, nd - 2) as number[];
    // Row-major: element (i, j) at i·ld + j. Size-1 dims place no constraint on their stride.
    if ((cols <= 1 || cs === 1) && (rows <= 1 || rs >= Math.max(1, cols)))
      return { arr, off: v.offset, trans: false, ld: rows <= 1 ? Math.max(1, cols) : rs, batchStrides };
    // Column-major: element (i, j) at j·ld + i, i.e. the transpose of a row-major cols×rows matrix.
    if ((rows <= 1 || rs === 1) && (cols <= 1 || cs >= Math.max(1, rows)))
      return { arr, off: v.offset, trans: true, ld: cols <= 1 ? Math.max(1, rows) : cs, batchStrides };
  }
  // Materialise: broadcast batch dims read as size 1 (stride 0 afterwards), so nothing is duplicated.
  const compactShape = v.shape.map((d, i) => (i < nd - 2 && v.strides[i] === 0 ? 1 : d));
  const arr = readF32({ storage: v.storage, dtype: v.dtype, shape: compactShape, strides: v.strides, offset: v.offset });
  const cst = contiguousStrides(compactShape);
  const batchStrides = batchShape.map((d, i) => (v.strides[i] === 0 && d !== 1 ? 0 : cst[i]!));
  return { arr, off: 0, trans: false, ld: Math.max(1, cols), batchStrides };
}

export function matmul(a: TensorView, b: TensorView, out: TensorView): void {
  const nd = out.shape.length;
  const M = out.shape[nd - 2]!;
  const N = out.shape[nd - 1]!;
  const K = a.shape[nd - 1]!;
  if (numel(out.shape) === 0) return;
  const batchShape = out.shape.slice(0, nd - 2);
  const A = operand(a, M, K);
  const B = operand(b, K, N);
  const C = outF32(out); // contiguous: row-major M×N blocks, one after another
  const cStrides = contiguousStrides(batchShape).map((s) => s * M * N);
  const batch = numel(batchShape);

  // `b` shared by every batch and `a` a stack of row-major blocks at a uniform M·lda spacing: one GEMM with
  // M' = batch·M (e.g. activations [B, S, K] @ weight [K, N]).
  if (batch > 1 && !A.trans && B.batchStrides.every((s) => s === 0)) {
    const ca = collapseDims(batchShape, A.batchStrides);
    if (ca.shape.length === 1 && ca.strides[0]![0] === M * A.ld) {
      sgemm(false, B.trans, batch * M, N, K, 1, A.arr, A.off, A.ld, B.arr, B.off, B.ld, 0, C, 0, N);
      commit(out, C);
      return;
    }
  }

  // Collapse batch dims that share a uniform stride in a, b and out; the innermost run is one sgemmBatched.
  const c = collapseDims(batchShape, A.batchStrides, B.batchStrides, cStrides);
  const dims = c.shape;
  const [sa, sb, sc] = c.strides as [number[], number[], number[]];
  const last = dims.length - 1;
  const inner = last >= 0 ? dims[last]! : 1;
  const ia = last >= 0 ? sa[last]! : 0;
  const ib = last >= 0 ? sb[last]! : 0;
  const ic = last >= 0 ? sc[last]! : 0;
  const outer = batch / inner;
  const counter = new Array<number>(Math.max(0, last)).fill(0);
  let oa = A.off;
  let ob = B.off;
  let oc = 0;
  for (let o = 0; o < outer; o++) {
    if (inner === 1) sgemm(A.trans, B.trans, M, N, K, 1, A.arr, oa, A.ld, B.arr, ob, B.ld, 0, C, oc, N);
    else sgemmBatched(A.trans, B.trans, M, N, K, 1, A.arr, oa, A.ld, ia, B.arr, ob, B.ld, ib, 0, C, oc, N, ic, inner);
    // odometer over the outer collapsed dims
    for (let k = last - 1; k >= 0; k--) {
      counter[k]!++;
      oa += sa[k]!;
      ob += sb[k]!;
      oc += sc[k]!;
      if (counter[k]! < dims[k]!) break;
      oa -= sa[k]! * dims[k]!;
      ob -= sb[k]! * dims[k]!;
      oc -= sc[k]! * dims[k]!;
      counter[k] = 0;
    }
  }
  commit(out, C);
}
