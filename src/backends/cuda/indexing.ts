// CUDA index ops (kernels/index.cu, sort.cu): indexSelect, gather, scatterAdd and a stable argsort. Indices are
// int32 or int64 read on the device; an out-of-range index cannot throw inside a kernel, so the kernels raise a
// deferred device flag (deferred-errors.ts: no host synchronisation per launch) that the next synchronisation point
// (a download, cudaSynchronize) turns into an Error naming the op and an offending index. scatterAdd is
// deterministic: one thread per line along `dim` adds in index order (bdk_scatter_add_lines, no atomics), so float
// sums equal the CPU backend's sequential float32 ones bit for bit and repeat exactly (torch's CUDA scatter_add
// does not); float16/bfloat16 accumulate in a float32 copy and round once, as on the CPU; uint8/bool run on the
// CPU backend.

import type { TensorView } from "../backend.ts";
import { cpuBackend } from "../cpu/index.ts";
import { isHalf } from "../../core/dtype.ts";
import { numel } from "../../core/shape.ts";
import { type Temp, cudaContext, dptr, launch, requireDType, stridedParams, tagOf, temp } from "./context.ts";
import { copy, stridedFor } from "./elementwise.ts";
import { viaCpu } from "./fallback.ts";
import { contiguousAs } from "./dense-views.ts";

/** A deferred error slot for one launch of `op` whose indices must lie in [0, size) along `dim`. */
function badFlag(op: string, index: TensorView, size: number, dim: number): number {
  return cudaContext().errors.slot(op, `for dim ${dim} of size ${size} (${index.dtype}[${index.shape.join(", ")}] index)`);
}

export function indexSelect(x: TensorView, dim: number, index: TensorView, out: TensorView): void {
  requireDType("indexSelect", x.dtype, out);
  const size = x.shape[dim]!;
  const n = numel(index.shape);
  if (n === 0) return;
  const outer = numel(x.shape.slice(0, dim));
  const inner = numel(x.shape.slice(dim + 1));
  const xc = contiguousAs(x);
  const ic = contiguousAs(index);
  try {
    launch(`bdk_index_select_${tagOf(x.dtype)}`, `indexSelect along dim ${dim}`, [x, index, out], dptr(out), dptr(xc.view), dptr(ic.view),
      outer, size, inner, n, index.dtype === "int64" ? 1 : 0, badFlag("indexSelect", index, size, dim), cudaContext().stream);
  } finally {
    xc.temp?.free();
    ic.temp?.free();
  }
}

const P_GATHER = stridedParams();
export function gather(x: TensorView, dim: number, index: TensorView, out: TensorView): void {
  if (numel(index.shape) === 0) return;
  requireDType("gather", x.dtype, out);
  const xs = x.strides.slice();
  xs[dim] = 0;
  const p = stridedFor(P_GATHER, index.shape, [out.strides, index.strides, xs]);
  const size = x.shape[dim]!;
  launch(`bdk_gather_${tagOf(x.dtype)}`, `gather along dim ${dim}`, [x, index, out], p, dptr(out), dptr(x), dptr(index), x.strides[dim]!, size,
    index.dtype === "int64" ? 1 : 0, badFlag("gather", index, size, dim), cudaContext().stream);
}

const P_SCATTER = stridedParams();
export function scatterAdd(out: TensorView, dim: number, index: TensorView, src: TensorView): void {
  if (numel(index.shape) === 0) return;
  requireDType("scatterAdd", out.dtype, src);
  if (out.dtype === "uint8" || out.dtype === "bool") {
    // no byte-wide atomic add on the GPU; rare (scatter of masks), so the CPU backend does it
    return viaCpu([index, src], [out], ([ci, cs], [co]) => cpuBackend.scatterAdd(co!, dim, ci!, cs!));
  }
  const half = isHalf(out.dtype);
  let acc: TensorView = out;
  let s: TensorView = src;
  const temps: Temp[] = [];
  try {
    if (half) {
      // float32 accumulation, one rounding: scatter into a float32 copy of out, then convert back
      const a = temp(out.shape, "float32");
      temps.push(a);
      copy(out, a);
      const b = temp(src.shape, "float32");
      temps.push(b);
      copy(src, b);
      acc = a;
      s = b;
    }
    // one thread per line along dim (the index shape with dim set to 1) adds that line's elements in order
    const os = acc.strides.slice();
    os[dim] = 0;
    const lines = index.shape.slice();
    const n = lines[dim]!;
    lines[dim] = 1;
    const p = stridedFor(P_SCATTER, lines, [os, index.strides, s.strides]);
    const size = out.shape[dim]!;
    launch(`bdk_scatter_add_lines_${tagOf(acc.dtype)}`, `scatterAdd along dim ${dim}`, [out, index, src], p, dptr(acc), dptr(index), dptr(s),
      n, index.strides[dim]!, s.strides[dim]!, acc.strides[dim]!, size, index.dtype === "int64" ? 1 : 0, badFlag("scatterAdd", index, size, dim),
      cudaContext().stream);
    if (half) copy(acc, out);
  } finally {
    for (const t of temps) t.free();
  }
}

export function argsort(x: TensorView, descending: boolean, out: TensorView): void {
  const total = numel(x.shape);
  if (total === 0) return;
  requireDType("argsort", "int64", out);
  const n = x.shape.length === 0 ? 1 : x.shape[x.shape.length - 1]!;
  const xc = contiguousAs(x);
  try {
    launch(`bdk_argsort_${tagOf(x.dtype)}`, `argsort${descending ? " (descending)" : ""}`, [x, out], dptr(out), dptr(xc.view), total / n, n,
      descending ? 1 : 0, cudaContext().stream);
  } finally {
    xc.temp?.free();
  }
}
