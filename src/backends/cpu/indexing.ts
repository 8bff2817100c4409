// CPU indexing kernels: indexSelect, gather, scatterAdd and a stable argsort along the last
// dim. Values move as raw storage elements (int64 stays exact, 16-bit floats keep their bits);
// scatterAdd accumulates floats in float32 and rounds to the output dtype once, integers in
// their own type. Out-of-range indices throw an Error naming the op, the index and the dim size.
//
// Fast paths (same elements, same accumulation order as the general loops): indexSelect of contiguous views copies
// whole inner blocks with TypedArray.set; gather / scatterAdd with an index broadcast along the last dim (stride 0,
// as `idx.expand([B, r, C])` gives, dim not the last) read one index per row and move or add whole rows.

import type { TensorView } from "../backend.ts";
import type { RawArray } from "../../core/dtype.ts";
import { contiguousStrides, isContiguous, numel } from "../../core/shape.ts";
import { rawOf, readIndex, readNum, readRaw, stridedCopy, writeRaw, writeValues } from "./strided.ts";

type Indexable = { [i: number]: number | bigint; length: number };

function checkIndex(op: string, i: number, size: number, dim: number): void {
  if (!(i >= 0 && i < size)) throw new Error(`${op}: index ${i} is out of range for dim ${dim} of size ${size}`);
}

/**
 * Calls body(pos, offA, offB) for every element of `shape` in row-major order, with the element
 * offsets of two strided layouts (pos counts elements 0..numel-1). The last dim is a tight loop.
 */
function forEachOffset(
  shape: readonly number[],
  stridesA: readonly number[],
  offA: number,
  stridesB: readonly number[],
  offB: number,
  body: (pos: number, a: number, b: number) => void,
): void {
  const n = numel(shape);
  if (n === 0) return;
  const nd = shape.length;
  if (nd === 0) {
    body(0, offA, offB);
    return;
  }
  const inner = shape[nd - 1]!;
  const sa = stridesA[nd - 1]!;
  const sb = stridesB[nd - 1]!;
  const counter = new Array<number>(nd).fill(0);
  let a0 = offA;
  let b0 = offB;
  for (let pos = 0; pos < n; ) {
    for (let i = 0, a = a0, b = b0; i < inner; i++, a += sa, b += sb) body(pos++, a, b);
    for (let k = nd - 2; k >= 0; k--) {
      counter[k]!++;
      a0 += stridesA[k]!;
      b0 += stridesB[k]!;
      if (counter[k]! < shape[k]!) break;
      a0 -= stridesA[k]! * shape[k]!;
      b0 -= stridesB[k]! * shape[k]!;
      counter[k] = 0;
    }
  }
}

/**
 * For an index broadcast along its last dim (stride 0, ≥ 2 dims, gathered/scattered along another dim): the view of
 * one index per row (last dim 1) and the row length; null otherwise.
 */
function rowIndex(index: TensorView, dim: number): { rows: TensorView; inner: number } | null {
  const nd = index.shape.length;
  if (nd < 2 || dim === nd - 1 || index.strides[nd - 1] !== 0 || index.shape[nd - 1]! < 2) return null;
  const rows: TensorView = { storage: index.storage, dtype: index.dtype, shape: [...index.shape.slice(0, -1), 1], strides: index.strides, offset: index.offset };
  return { rows, inner: index.shape[nd - 1]! };
}

/** Strides with the entry of `dim` set to zero (that dim's offset is added from the index). */
function withoutDim(strides: readonly number[], dim: number): number[] {
  const s = strides.slice();
  s[dim] = 0;
  return s;
}

/** out = x.index_select(dim, index): out[..., j, ...] = x[..., index[j], ...]; index is 1-D (or 0-D). */
export function indexSelect(x: TensorView, dim: number, index: TensorView, out: TensorView): void {
  const idx = readIndex(index);
  const size = x.shape[dim]!;
  for (let j = 0; j < idx.length; j++) checkIndex("indexSelect", idx[j]!, size, dim);
  if (numel(out.shape) === 0) return;
  const src = rawOf(x);
  const dst = rawOf(out);
  if (x.shape.length > 0 && isContiguous(x.shape, x.strides) && isContiguous(out.shape, out.strides)) {
    // [outer, size, inner] -> [outer, n, inner]: one block of `inner` elements per (outer, j)
    let outer = 1;
    for (let d = 0; d < dim; d++) outer *= x.shape[d]!;
    let inner = 1;
    for (let d = dim + 1; d < x.shape.length; d++) inner *= x.shape[d]!;
    const n = idx.length;
    for (let o = 0; o < outer; o++) {
      const sBase = x.offset + o * size * inner;
      const dBase = out.offset + o * n * inner;
      for (let j = 0; j < n; j++) {
        const s0 = sBase + idx[j]! * inner;
        const d0 = dBase + j * inner;
        if (inner >= 16) (dst as Float32Array).set((src as Float32Array).subarray(s0, s0 + inner), d0);
        else for (let c = 0; c < inner; c++) dst[d0 + c] = src[s0 + c]!;
      }
    }
    return;
  }
  // One strided copy of the slice at index[j] per j; the copy loop collapses the other dims.
  const sliceShape = out.shape.slice();
  sliceShape[dim] = 1;
  for (let j = 0; j < idx.length; j++) {
    stridedCopy(src, x.offset + idx[j]! * x.strides[dim]!, x.strides, dst, out.offset + j * out.strides[dim]!, out.strides, sliceShape);
  }
}

/** out = torch.gather(x, dim, index): out[i..] = x[i.. with dim replaced by index[i..]]; out has index's shape. */
export function gather(x: TensorView, dim: number, index: TensorView, out: TensorView): void {
  const ri = rowIndex(index, dim);
  const idx = readIndex(ri ? ri.rows : index);
  const size = x.shape[dim]!;
  for (let j = 0; j < idx.length; j++) checkIndex("gather", idx[j]!, size, dim);
  const src = rawOf(x) as Indexable;
  const dst = rawOf(out) as Indexable;
  const sd = x.strides[dim]!;
  if (ri) {
    const nd = index.shape.length;
    const { inner } = ri;
    const sx = x.strides[nd - 1]!;
    const so = out.strides[nd - 1]!;
    forEachOffset(ri.rows.shape, withoutDim(x.strides, dim), x.offset, out.strides, out.offset, (pos, xo, oo) => {
      const s0 = xo + idx[pos]! * sd;
      if (sx === 1 && so === 1 && inner >= 16) (dst as Float32Array).set((src as Float32Array).subarray(s0, s0 + inner), oo);
      else for (let c = 0; c < inner; c++) dst[oo + c * so] = src[s0 + c * sx]!;
    });
    return;
  }
  forEachOffset(index.shape, withoutDim(x.strides, dim), x.offset, out.strides, out.offset, (pos, xo, oo) => {
    dst[oo] = src[xo + idx[pos]! * sd]!;
  });
}

/**
 * torch scatter_add_ on `out` in place: out[i.. with dim replaced by index[i..]] += src[i..],
 * iterating over index's shape (index ≤ src in every dim, ≤ out except along dim).
 */
export function scatterAdd(out: TensorView, dim: number, index: TensorView, src: TensorView): void {
  const ri = rowIndex(index, dim);
  const idx = readIndex(ri ? ri.rows : index);
  const size = out.shape[dim]!;
  for (let j = 0; j < idx.length; j++) checkIndex("scatterAdd", idx[j]!, size, dim);
  if (idx.length === 0) return;
  // Accumulate into a contiguous buffer of out's values, addressed with contiguous strides.
  const oStrides = contiguousStrides(out.shape);
  const od = oStrides[dim]!;
  const oIter = withoutDim(oStrides, dim);
  const dtype = out.dtype;
  if (dtype === "float32" || dtype === "float16" || dtype === "bfloat16") {
    // Float32 buffer: each add rounds to float32; one final rounding to the storage dtype.
    const acc = readNum(out) as Float32Array;
    const s = dtype === "float32" ? (rawOf(src) as Float32Array) : null;
    const sv = s ?? (readNum(src) as Float32Array);
    const sOff = s ? src.offset : 0;
    const sStrides = s ? src.strides : contiguousStrides(src.shape);
    if (ri) {
      // one index per row; each output element still receives its adds in index order
      const { inner } = ri;
      const sl = sStrides[sStrides.length - 1]!;
      forEachOffset(ri.rows.shape, oIter, 0, sStrides, sOff, (pos, oo, so) => {
        const o0 = oo + idx[pos]! * od;
        if (sl === 1) for (let c = 0; c < inner; c++) acc[o0 + c] += sv[so + c]!;
        else for (let c = 0; c < inner; c++) acc[o0 + c] += sv[so + c * sl]!;
      });
    } else
      forEachOffset(index.shape, oIter, 0, sStrides, sOff, (pos, oo, so) => {
        acc[oo + idx[pos]! * od] += sv[so]!;
      });
    writeValues(out, acc);
    return;
  }
  const acc = readRaw(out);
  const sv = rawOf(src);
  let add: (o: number, s: number) => void;
  if (dtype === "int64") {
    const a = acc as BigInt64Array;
    const b = sv as BigInt64Array;
    add = (o, s) => {
      a[o] = BigInt.asIntN(64, a[o]! + b[s]!);
    };
  } else if (dtype === "bool") {
    const a = acc as Uint8Array;
    const b = sv as Uint8Array;
    add = (o, s) => {
      a[o] = a[o]! | b[s]! ? 1 : 0;
    };
  } else {
    // int32 and uint8 wrap around like their C types (the typed array store does it).
    const a = acc as Int32Array | Uint8Array;
    const b = sv as Int32Array | Uint8Array;
    add = (o, s) => {
      a[o] = a[o]! + b[s]!;
    };
  }
  if (ri) {
    const { inner } = ri;
    const sl = src.strides[src.strides.length - 1]!;
    forEachOffset(ri.rows.shape, oIter, 0, src.strides, src.offset, (pos, oo, so) => {
      const o0 = oo + idx[pos]! * od;
      for (let c = 0; c < inner; c++) add(o0 + c, so + c * sl);
    });
  } else forEachOffset(index.shape, oIter, 0, src.strides, src.offset, (pos, oo, so) => add(oo + idx[pos]! * od, so));
  writeRaw(out, acc as RawArray);
}

/**
 * Indices (int64) that sort each row of x along its last dim, stable: equal values keep
 * their original order in both directions; NaN sorts above every number (first when descending).
 */
export function argsort(x: TensorView, descending: boolean, out: TensorView): void {
  const n = x.shape.length === 0 ? 1 : x.shape[x.shape.length - 1]!;
  const total = numel(x.shape);
  if (total === 0) return;
  const v = readNum(x);
  const rows = total / n;
  const result = new BigInt64Array(total);
  const words = new Int32Array(result.buffer); // indices < 2^31: low word, high word 0
  const order = new Array<number>(n);
  const sign = descending ? -1 : 1;
  for (let r = 0; r < rows; r++) {
    const base = r * n;
    for (let i = 0; i < n; i++) order[i] = i;
    order.sort((i, j) => {
      const a = v[base + i]!;
      const b = v[base + j]!;
      let c: number;
      if (a < b) c = -1;
      else if (a > b) c = 1;
      else {
        const na = a !== a;
        const nb = b !== b;
        c = na === nb ? 0 : na ? 1 : -1;
      }
      return c * sign || i - j;
    });
    for (let i = 0; i < n; i++) words[2 * (base + i)] = order[i]!;
  }
  writeRaw(out, result);
}
