// CPU storage access for the op kernels: typed views over a tensor's bytes, strided
// gather/scatter loops (dims collapsed first), and the float32 compute convention:
// readF32/readNum give the logical values of any view as a contiguous array (zero-copy when
// the view already is contiguous float32), outF32/commit let a kernel write float32 results
// into an output of any dtype with one rounding.

import type { TensorView } from "../backend.ts";
import { type DType, type RawArray, dtypeBytes, rawView } from "../../core/dtype.ts";
import { bf16ArrayToF32, f16ArrayToF32, f32ArrayToBf16, f32ArrayToF16 } from "../../core/half.ts";
import { collapseDims, isContiguous, numel } from "../../core/shape.ts";
import { hostAlloc } from "../../core/host-memory.ts";

/** The bytes behind a CPU storage. */
export function storageBytes(v: TensorView): Uint8Array {
  const h = v.storage.handle;
  if (!(h instanceof Uint8Array)) throw new Error(`internal: ${v.storage.device} storage reached the CPU backend`);
  return h;
}

/** Typed view of the whole storage in the view's dtype (element 0 = storage start). */
export function rawOf(v: TensorView): RawArray {
  const bytes = storageBytes(v);
  const size = dtypeBytes(v.dtype);
  return rawView(v.dtype, bytes.buffer, bytes.byteOffset, Math.floor(bytes.byteLength / size));
}

type Indexable = { [i: number]: number | bigint; length: number };

/**
 * dst[dOff + Σ i·dStride] = src[sOff + Σ i·sStride] over `shape`; both arrays of the same
 * element kind. The innermost collapsed dim runs as a tight loop.
 */
export function stridedCopy(
  src: Indexable,
  sOff: number,
  sStrides: readonly number[],
  dst: Indexable,
  dOff: number,
  dStrides: readonly number[],
  shape: readonly number[],
): void {
  const n = numel(shape);
  if (n === 0) return;
  const c = collapseDims(shape, sStrides, dStrides);
  const dims = c.shape;
  const ss = c.strides[0]!;
  const ds = c.strides[1]!;
  const nd = dims.length;
  if (nd === 0) {
    dst[dOff] = src[sOff]!;
    return;
  }
  const inner = dims[nd - 1]!;
  const si = ss[nd - 1]!;
  const di = ds[nd - 1]!;
  if (nd === 1) {
    if (si === 1 && di === 1 && "set" in dst && "subarray" in src) {
      (dst as unknown as Float32Array).set((src as unknown as Float32Array).subarray(sOff, sOff + inner), dOff);
      return;
    }
    for (let i = 0, s = sOff, d = dOff; i < inner; i++, s += si, d += di) dst[d] = src[s]!;
    return;
  }
  const counter = new Array<number>(nd - 1).fill(0);
  let s0 = sOff;
  let d0 = dOff;
  const outer = n / inner;
  for (let o = 0; o < outer; o++) {
    for (let i = 0, s = s0, d = d0; i < inner; i++, s += si, d += di) dst[d] = src[s]!;
    for (let k = nd - 2; k >= 0; k--) {
      counter[k]!++;
      s0 += ss[k]!;
      d0 += ds[k]!;
      if (counter[k]! < dims[k]!) break;
      s0 -= ss[k]! * dims[k]!;
      d0 -= ds[k]! * dims[k]!;
      counter[k] = 0;
    }
  }
}

/** The view's raw elements as a contiguous array of the storage kind (zero-copy when contiguous). */
export function readRaw(v: TensorView): RawArray {
  const raw = rawOf(v);
  const n = numel(v.shape);
  if (isContiguous(v.shape, v.strides)) return raw.subarray(v.offset, v.offset + n) as RawArray;
  const out = rawView(v.dtype, new ArrayBuffer(n * dtypeBytes(v.dtype)), 0, n);
  stridedCopy(raw, v.offset, v.strides, out, 0, contiguousStridesOf(v.shape), v.shape);
  return out;
}

function contiguousStridesOf(shape: readonly number[]): number[] {
  const st = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    st[i] = s;
    s *= shape[i]!;
  }
  return st;
}

/** Widen raw elements of `dtype` to numbers: Float32Array for floats/uint8/bool, Float64Array for int32/int64. */
export function decodeRaw(raw: RawArray, dtype: DType): Float32Array | Float64Array {
  switch (dtype) {
    case "float32":
      return raw as Float32Array;
    case "float16":
      return f16ArrayToF32(raw as Uint16Array);
    case "bfloat16":
      return bf16ArrayToF32(raw as Uint16Array);
    case "uint8":
    case "bool":
      return Float32Array.from(raw as Uint8Array);
    case "int32":
      return Float64Array.from(raw as Int32Array);
    case "int64": {
      // hi·2^32 + lo from the two 32-bit words (little-endian): one rounding of the exact value, as Number(bigint)
      const r = raw as BigInt64Array;
      const w = new Int32Array(r.buffer, r.byteOffset, r.length * 2);
      const out = new Float64Array(r.length);
      for (let i = 0; i < r.length; i++) out[i] = w[2 * i + 1]! * 4294967296 + (w[2 * i]! >>> 0);
      return out;
    }
  }
}

/** Encode numbers into raw elements of `dtype` (RNE for 16-bit floats, truncation toward zero for ints). */
export function encodeRaw(values: Float32Array | Float64Array, dtype: DType): RawArray {
  const n = values.length;
  switch (dtype) {
    case "float32":
      return values instanceof Float32Array ? values : Float32Array.from(values);
    case "float16":
      return f32ArrayToF16(values instanceof Float32Array ? values : Float32Array.from(values));
    case "bfloat16":
      return f32ArrayToBf16(values instanceof Float32Array ? values : Float32Array.from(values));
    case "int32": {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) out[i] = truncInt(values[i]!);
      return out;
    }
    case "int64": {
      // Integers below 2^53 in magnitude as two 32-bit words; larger ones through BigInt (wrapping mod 2^64).
      const out = new BigInt64Array(n);
      const w = new Int32Array(out.buffer);
      for (let i = 0; i < n; i++) {
        const v = truncInt(values[i]!);
        if (v > -9007199254740992 && v < 9007199254740992) {
          const hi = Math.floor(v / 4294967296);
          w[2 * i] = v - hi * 4294967296;
          w[2 * i + 1] = hi;
        } else out[i] = BigInt(v);
      }
      return out;
    }
    case "uint8": {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) out[i] = truncInt(values[i]!) & 255;
      return out;
    }
    case "bool": {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) out[i] = values[i] !== 0 ? 1 : 0;
      return out;
    }
  }
}

function truncInt(v: number): number {
  return Number.isFinite(v) ? Math.trunc(v) : 0;
}

/** Logical values of a view as a contiguous Float32Array (zero-copy for contiguous float32; do not write to it). */
export function readF32(v: TensorView): Float32Array {
  const d = decodeRaw(readRaw(v), v.dtype);
  return d instanceof Float32Array ? d : Float32Array.from(d);
}

/** Logical values as numbers, exact for every dtype: Float64Array for int32/int64, Float32Array otherwise. */
export function readNum(v: TensorView): Float32Array | Float64Array {
  return decodeRaw(readRaw(v), v.dtype);
}

/** Indices of an int32/int64 view as a contiguous Int32Array-compatible array of numbers. */
export function readIndex(v: TensorView): Float64Array | Int32Array {
  if (v.dtype === "int32") return readRaw(v) as Int32Array;
  if (v.dtype === "int64") return readNum(v) as Float64Array;
  throw new Error(`index tensor must be int32 or int64, got ${v.dtype}`);
}

/** Write contiguous values into a (possibly strided) output view of any dtype. */
export function writeValues(out: TensorView, values: Float32Array | Float64Array): void {
  const raw = encodeRaw(values, out.dtype);
  writeRaw(out, raw);
}

/** Write contiguous raw elements (out's dtype kind) into a (possibly strided) view. */
export function writeRaw(out: TensorView, raw: RawArray): void {
  const dst = rawOf(out);
  if (dst.buffer === raw.buffer && dst.byteOffset + out.offset * dtypeBytes(out.dtype) === raw.byteOffset) return;
  stridedCopy(raw, 0, contiguousStridesOf(out.shape), dst, out.offset, out.strides, out.shape);
}

/**
 * A Float32Array a kernel may fill with out's values: out's own memory when out is contiguous
 * float32, else a temporary. Call commit(out, buf) afterwards.
 */
export function outF32(out: TensorView): Float32Array {
  const n = numel(out.shape);
  if (out.dtype === "float32" && isContiguous(out.shape, out.strides)) {
    return (rawOf(out) as Float32Array).subarray(out.offset, out.offset + n);
  }
  return hostAlloc(4 * n, "float32 scratch of a CPU kernel", () => new Float32Array(n));
}

/** Finish a kernel that wrote into outF32(out): converts and stores unless it wrote in place. */
export function commit(out: TensorView, buf: Float32Array | Float64Array): void {
  writeValues(out, buf);
}
