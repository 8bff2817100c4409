// Table-driven tests of indexSelect, gather, scatterAdd, scatterReduce, argsort, sort and topk
// on every test device and on float32/float16/bfloat16/int64, against naive references.
// Ops that move values are compared bit for bit on raw elements; sums against float64
// references with the harness's tolerances. Shapes follow SD (embedding lookups, channel
// selects) and Token Merging (gather/scatter_reduce over [2,1024,320], argsort of [2,768]).

import { describe, expect, test } from "bun:test";
import { cpuBackend } from "../../src/backends/cpu/index.ts";
import { tensor } from "../../src/tensor/creation.ts";
import type { DType } from "../../src/core/dtype.ts";
import type { Device } from "../../src/core/device.ts";
import { argsort, gather, indexSelect, scatterAdd, scatterReduce, sort, topk } from "../../src/tensor/ops/indexing.ts";
import { tidy } from "../../src/tensor/scope.ts";
import type { Tensor } from "../../src/tensor/tensor.ts";
import { expectClose, prng, randomValues, roundTo, testDevices, tolerance, values } from "../helpers/op-harness.ts";

const DTYPES: DType[] = ["float32", "float16", "bfloat16", "int64"];

type Raw = Float32Array | Uint16Array | Int32Array | BigInt64Array | Uint8Array;

function numelOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function stridesOf(shape: readonly number[]): number[] {
  const st: number[] = [];
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    st[i] = s;
    s *= shape[i]!;
  }
  return st;
}

function flat(idx: readonly number[], strides: readonly number[]): number {
  let o = 0;
  for (let k = 0; k < idx.length; k++) o += idx[k]! * strides[k]!;
  return o;
}

/** Calls fn(multiIndex, pos) for every element of shape in row-major order. */
function forEach(shape: readonly number[], fn: (idx: number[], pos: number) => void): void {
  const n = numelOf(shape);
  const idx = new Array<number>(shape.length).fill(0);
  for (let pos = 0; pos < n; pos++) {
    fn(idx, pos);
    for (let k = shape.length - 1; k >= 0; k--) {
      if (++idx[k]! < shape[k]!) break;
      idx[k] = 0;
    }
  }
}

/** out[pos] = src[f(multi-index)] over outShape. */
function mapRaw(outShape: readonly number[], src: Raw, f: (idx: number[]) => number): Raw {
  const out = new (src.constructor as { new (n: number): Raw })(numelOf(outShape));
  forEach(outShape, (idx, pos) => (out[pos] = src[f(idx)]!));
  return out;
}

function expectRaw(t: Tensor, expected: Raw, label: string): void {
  const a = t.toRawArray();
  expect(a.length, `${label}: length`).toBe(expected.length);
  const ai = a instanceof Float32Array ? new Uint32Array(a.buffer, a.byteOffset, a.length) : a;
  const ei = expected instanceof Float32Array ? new Uint32Array(expected.buffer, expected.byteOffset, expected.length) : expected;
  for (let i = 0; i < ai.length; i++)
    if (ai[i] !== ei[i]) throw new Error(`${label}: element ${i} is ${a[i]}, expected ${expected[i]}`);
}

interface Input {
  t: Tensor;
  raw: Raw; // row-major raw elements of t's logical values
  v: Float64Array; // the same values as numbers
}

/**
 * A deterministic input; int64 values exceed 2^53 unless `small`. `transposed`: a transposed
 * view of a tensor stored with the last two dims swapped. `levels`: values quantised to that
 * many distinct levels (ties).
 */
function input(shape: readonly number[], dtype: DType, device: Device, seed: number, o: { transposed?: boolean; small?: boolean; levels?: number } = {}): Input {
  const stored = o.transposed ? [...shape.slice(0, -2), shape[shape.length - 1]!, shape[shape.length - 2]!] : shape;
  const n = numelOf(shape);
  let base: Tensor;
  if (dtype === "int64") {
    const r = prng(seed);
    const v = new BigInt64Array(n);
    for (let i = 0; i < n; i++) {
      if (o.levels) v[i] = BigInt(Math.floor(r() * o.levels)) - 3n;
      else if (o.small) v[i] = BigInt(Math.floor(r() * 2000)) - 1000n;
      else v[i] = (BigInt(Math.floor(r() * 2 ** 30)) << 31n) - BigInt(Math.floor(r() * 2 ** 31));
    }
    base = tensor(v, { shape: stored, dtype, device });
  } else {
    let v = randomValues(n, dtype, seed, -4, 4);
    if (o.levels) v = v.map((x) => roundTo(dtype, Math.floor(((x + 4) / 8) * o.levels!) / 4));
    base = tensor(v, { shape: stored, dtype, device });
  }
  const baseRaw = base.toRawArray();
  let t = base;
  let raw = baseRaw;
  if (o.transposed) {
    const nd = shape.length;
    const st = stridesOf(stored);
    raw = mapRaw(shape, baseRaw, (idx) => {
      let off = 0;
      for (let k = 0; k < nd - 2; k++) off += idx[k]! * st[k]!;
      return off + idx[nd - 1]! * st[nd - 2]! + idx[nd - 2]! * st[nd - 1]!;
    });
    t = base.transpose(-1, -2);
  }
  return { t, raw, v: values(t) };
}

/** An index tensor of `shape` with entries in [0, size), int64 or int32; `expandFrom`: a view expanded from that shape. */
function indexTensor(shape: readonly number[], size: number, device: Device, seed: number, dtype: "int32" | "int64" = "int64", expandFrom?: readonly number[]): { t: Tensor; v: number[] } {
  const r = prng(seed);
  const storedShape = expandFrom ?? shape;
  const stored = Array.from({ length: numelOf(storedShape) }, () => Math.floor(r() * size));
  const base = dtype === "int64" ? tensor(BigInt64Array.from(stored, BigInt), { shape: storedShape, device }) : tensor(Int32Array.from(stored), { shape: storedShape, device });
  if (!expandFrom) return { t: base, v: stored };
  const st = stridesOf(expandFrom).map((s, k) => (expandFrom[k] === 1 ? 0 : s));
  const v: number[] = [];
  forEach(shape, (idx) => v.push(stored[flat(idx, st)]!));
  return { t: base.expand(shape), v };
}

const SCATTER_REDUCE_CASES: { name: string; reduce: "sum" | "mean"; includeSelf: boolean }[] = [
  { name: "mean, include self (ToMe merge)", reduce: "mean", includeSelf: true },
  { name: "mean, exclude self", reduce: "mean", includeSelf: false },
  { name: "sum, exclude self", reduce: "sum", includeSelf: false },
  { name: "sum, include self", reduce: "sum", includeSelf: true },
];

const norm = (d: number, nd: number) => (d < 0 ? d + nd : d);

/**
 * Tolerance of a float32-accumulated sum against float64: the harness's rounding tolerance plus
 * one float32 rounding of the running sum per added term (bounded by Σ|terms| · 2^-24 each).
 */
function sumTolerance(dtype: DType, absSum: Float64Array, count: Float64Array): { atol: number; rtol: number } {
  let worst = 0;
  for (let k = 0; k < absSum.length; k++) worst = Math.max(worst, absSum[k]! * count[k]! * 2 ** -24);
  const t = tolerance(dtype);
  return { atol: t.atol + worst, rtol: t.rtol };
}

/** Reference scatter_add: exact BigInt (wrapping) for int64, else float64 with Σ|terms| and term counts for the tolerance. */
function refScatterAdd(
  x: Input,
  xShape: readonly number[],
  dim: number,
  idx: number[],
  idxShape: readonly number[],
  src: Input,
  srcShape: readonly number[],
  dtype: DType,
): { out: Raw | Float64Array; absSum: Float64Array; count: Float64Array } {
  const d = norm(dim, xShape.length);
  const xs = stridesOf(xShape);
  const ss = stridesOf(srcShape);
  if (dtype === "int64") {
    const out = (x.raw as BigInt64Array).slice();
    forEach(idxShape, (ix, pos) => {
      const o = ix.slice();
      o[d] = idx[pos]!;
      const k = flat(o, xs);
      out[k] = BigInt.asIntN(64, out[k]! + (src.raw as BigInt64Array)[flat(ix, ss)]!);
    });
    return { out, absSum: new Float64Array(0), count: new Float64Array(0) };
  }
  const out = x.v.slice();
  const absSum = x.v.map(Math.abs);
  const count = new Float64Array(out.length).fill(1);
  forEach(idxShape, (ix, pos) => {
    const o = ix.slice();
    o[d] = idx[pos]!;
    const k = flat(o, xs);
    const term = src.v[flat(ix, ss)]!;
    out[k]! += term;
    absSum[k]! += Math.abs(term);
    count[k]!++;
  });
  return { out, absSum, count };
}

describe.each(testDevices())("indexing ops on %s", (device) => {
  describe.each(DTYPES)("%s", (dtype) => {
    test.each([
      { name: "embedding lookup [1000,768] by 77 tokens (int64)", shape: [1000, 768], dim: 0, n: 77, idt: "int64" as const },
      { name: "channel select [2,320,8,8] dim 1 with repeats (int32)", shape: [2, 320, 8, 8], dim: 1, n: 9, idt: "int32" as const },
      { name: "last dim of a transposed view", shape: [5, 7, 6], dim: -1, n: 11, idt: "int64" as const, transposed: true },
      { name: "empty index", shape: [4, 3], dim: 0, n: 0, idt: "int64" as const },
    ])("indexSelect: $name", ({ shape, dim, n, idt, transposed }) => {
      tidy(() => {
        const d = norm(dim, shape.length);
        const x = input(shape, dtype, device, 1, { transposed });
        const index = indexTensor([n], shape[d]!, device, 2, idt);
        const got = indexSelect(x.t, dim, index.t);
        const outShape: number[] = shape.slice();
        outShape[d] = n;
        const st = stridesOf(shape);
        const ref = mapRaw(outShape, x.raw, (ix) => {
          const s = ix.slice();
          s[d] = index.v[ix[d]!]!;
          return flat(s, st);
        });
        expect(got.shape).toEqual(outShape);
        expectRaw(got, ref, "indexSelect");
        expect(x.t.indexSelect(dim, index.t).shape).toEqual(outShape);
      });
    });

    test.each([
      { name: "ToMe: [2,1024,320] with index [2,512,320] along dim 1", shape: [2, 1024, 320], idxShape: [2, 512, 320], dim: 1 },
      { name: "ToMe: expanded index [2,512,1] -> [2,512,320]", shape: [2, 1024, 320], idxShape: [2, 512, 320], dim: -2, expandFrom: [2, 512, 1] },
      { name: "index smaller than input in other dims", shape: [3, 4, 5], idxShape: [2, 6, 3], dim: 1 },
      { name: "last dim of a transposed view (int32 index)", shape: [6, 5], idxShape: [4, 9], dim: -1, transposed: true, idt: "int32" as const },
      { name: "dim 0", shape: [4, 3, 2], idxShape: [7, 3, 2], dim: 0 },
    ])("gather: $name", ({ shape, idxShape, dim, expandFrom, transposed, idt }) => {
      tidy(() => {
        const d = norm(dim, shape.length);
        const x = input(shape, dtype, device, 3, { transposed });
        const index = indexTensor(idxShape, shape[d]!, device, 4, idt ?? "int64", expandFrom);
        const got = gather(x.t, dim, index.t);
        const st = stridesOf(shape);
        const ref = new (x.raw.constructor as { new (n: number): Raw })(numelOf(idxShape));
        forEach(idxShape, (ix, pos) => {
          const s = ix.slice();
          s[d] = index.v[pos]!;
          ref[pos] = x.raw[flat(s, st)]!;
        });
        expect(got.shape).toEqual(idxShape);
        expectRaw(got, ref, "gather");
      });
    });

    test.each([
      { name: "ToMe merge: [2,512,320] += src [2,256,320] at an expanded index", shape: [2, 512, 320], idxShape: [2, 256, 320], srcShape: [2, 256, 320], dim: -2, expandFrom: [2, 256, 1] },
      { name: "index smaller than src in every dim", shape: [4, 6], idxShape: [2, 3], srcShape: [5, 4], dim: 0 },
      { name: "many duplicates along the last dim", shape: [3, 5], idxShape: [3, 40], srcShape: [3, 40], dim: 1 },
      { name: "transposed src", shape: [4, 5, 6], idxShape: [4, 5, 3], srcShape: [4, 5, 7], dim: 2, srcTransposed: true },
    ])("scatterAdd: $name", ({ shape, idxShape, srcShape, dim, expandFrom, srcTransposed }) => {
      tidy(() => {
        const d = norm(dim, shape.length);
        const x = input(shape, dtype, device, 5, { small: true });
        const src = input(srcShape, dtype, device, 6, { transposed: srcTransposed, small: true });
        const index = indexTensor(idxShape, shape[d]!, device, 7, "int64", expandFrom);
        const got = scatterAdd(x.t, dim, index.t, src.t);
        expect(got.shape).toEqual(shape);
        const ref = refScatterAdd(x, shape, dim, index.v, idxShape, src, srcShape, dtype);
        if (dtype === "int64") expectRaw(got, ref.out as Raw, "scatterAdd");
        else expectClose(values(got), ref.out as Float64Array, sumTolerance(dtype, ref.absSum, ref.count), "scatterAdd");
        // The input is unchanged; the method form agrees.
        expectRaw(x.t, x.raw, "input untouched");
        expectRaw(x.t.scatterAdd(dim, index.t, src.t), got.toRawArray(), "method");
      });
    });

    test.each(SCATTER_REDUCE_CASES.filter((c) => c.reduce === "sum" || dtype !== "int64"))("scatterReduce: $name", ({ reduce, includeSelf }) => {
      tidy(() => {
        // tomesd: dst[2,512,320].scatter_reduce(-2, dst_idx[2,256,1].expand(2,256,320), src, "mean");
        // half the destinations repeat so both counts (1 and several) occur.
        const shape = [2, 512, 320];
        const x = input(shape, dtype, device, 8, { small: true });
        const src = input([2, 256, 320], dtype, device, 9, { small: true });
        const index = indexTensor([2, 256, 320], 384, device, 10, "int64", [2, 256, 1]);
        const got = scatterReduce(x.t, -2, index.t, src.t, reduce, { includeSelf });
        const xs = stridesOf(shape);
        const ss = stridesOf([2, 256, 320]);
        const sum = includeSelf ? x.v.slice() : new Float64Array(x.v.length);
        const count = new Float64Array(x.v.length).fill(includeSelf ? 1 : 0);
        const absSum = includeSelf ? x.v.map(Math.abs) : new Float64Array(x.v.length);
        forEach([2, 256, 320], (ix, pos) => {
          const k = flat([ix[0]!, index.v[pos]!, ix[2]!], xs);
          const term = src.v[flat(ix, ss)]!;
          sum[k]! += term;
          absSum[k]! += Math.abs(term);
          count[k]!++;
        });
        const ref = sum.map((s, k) => (count[k] === 0 ? x.v[k]! : reduce === "mean" ? s / count[k]! : s));
        expect(got.shape).toEqual(shape);
        expect(got.dtype).toBe(dtype);
        expectClose(values(got), ref, sumTolerance(dtype, absSum, count), `scatterReduce ${reduce}`);
        if (dtype !== "int64") {
          // Untouched rows keep x's exact bits.
          const raw = got.toRawArray();
          for (let k = 0; k < count.length; k++)
            if (count[k] === (includeSelf ? 1 : 0) && raw[k] !== x.raw[k]) throw new Error(`untouched element ${k} changed`);
        }
        expect(x.t.scatterReduce(-2, index.t, src.t, reduce, { includeSelf }).shape).toEqual(shape);
      });
    });

    test.each([
      { name: "ToMe scores [2,768] descending with ties", shape: [2, 768], dim: -1, descending: true, levels: 6 },
      { name: "[2,768] ascending with ties", shape: [2, 768], dim: -1, descending: false, levels: 6 },
      { name: "distinct values, dim 0 of a transposed view", shape: [9, 7], dim: 0, descending: false, transposed: true },
      { name: "middle dim, descending", shape: [3, 10, 4], dim: 1, descending: true, levels: 3 },
    ])("argsort / sort: $name", ({ shape, dim, descending, levels, transposed }) => {
      tidy(() => {
        const d = norm(dim, shape.length);
        const x = input(shape, dtype, device, 11, { levels, transposed });
        const idx = argsort(x.t, dim, { descending });
        expect(idx.dtype).toBe("int64");
        expect(idx.shape).toEqual(shape);
        const ref = refArgsort(x.v, shape, d, descending);
        expect(Array.from(values(idx))).toEqual(ref);
        const { values: vals, indices } = sort(x.t, dim, { descending });
        expect(Array.from(values(indices))).toEqual(ref);
        const st = stridesOf(shape);
        const refVals = mapRaw(shape, x.raw, (ix) => {
          const s = ix.slice();
          s[d] = ref[flat(ix, st)]!;
          return flat(s, st);
        });
        expectRaw(vals, refVals, "sort values");
        expect(Array.from(values(x.t.argsort(dim, { descending })))).toEqual(ref);
      });
    });

    test.each([
      { name: "largest 128 of [2,768]", shape: [2, 768], k: 128, dim: -1, largest: true },
      { name: "smallest 3 of [4,33] along dim 0", shape: [4, 33], k: 3, dim: 0, largest: false },
      { name: "k = size", shape: [3, 6], k: 6, dim: 1, largest: true },
    ])("topk: $name", ({ shape, k, dim, largest }) => {
      tidy(() => {
        const d = norm(dim, shape.length);
        const x = input(shape, dtype, device, 12, { levels: 20 });
        const { values: vals, indices } = topk(x.t, k, dim, { largest });
        const outShape: number[] = shape.slice();
        outShape[d] = k;
        expect(indices.shape).toEqual(outShape);
        const order = refArgsort(x.v, shape, d, largest);
        const st = stridesOf(shape);
        const refIdx: number[] = [];
        const refVals = mapRaw(outShape, x.raw, (ix) => {
          const s = ix.slice();
          s[d] = order[flat(ix, st)]!;
          refIdx.push(s[d]!);
          return flat(s, st);
        });
        expect(Array.from(values(indices))).toEqual(refIdx);
        expectRaw(vals, refVals, "topk values");
        expect(topk(x.t, 0, dim).values.shape[d]).toBe(0);
        expect(Array.from(values(x.t.topk(k, dim, { largest }).indices))).toEqual(refIdx);
      });
    });
  });

  test("argsort puts NaN above everything, keeps order among equal values and -0 == 0", () => {
    tidy(() => {
      for (const dtype of ["float32", "float16", "bfloat16"] as DType[]) {
        const x = tensor([1, NaN, -Infinity, 0, -0, NaN, Infinity, 1, -2], { dtype, device });
        expect(argsort(x).toArray()).toEqual([2, 8, 3, 4, 0, 7, 6, 1, 5]);
        expect(argsort(x, 0, { descending: true }).toArray()).toEqual([1, 5, 6, 0, 7, 3, 4, 8, 2]);
        const { values: top, indices } = topk(x, 3);
        expect(indices.toArray()).toEqual([1, 5, 6]);
        expect(Number.isNaN((top.toArray() as number[])[0])).toBe(true);
      }
    });
  });

  test("errors name the op, the index and the dim size", () => {
    tidy(() => {
      const x = input([4, 5], "float32", device, 13).t;
      const i64 = (v: number[], shape = [v.length]) => tensor(BigInt64Array.from(v, BigInt), { shape, device });
      // a GPU raises index errors on the device and reports them at the next synchronisation: read the result
      const synced = (f: () => Tensor) => () => f().toFloat32Array();
      expect(synced(() => indexSelect(x, 0, i64([1, 4])))).toThrow(/indexSelect: index 4 is out of range for dim 0 of size 4/);
      expect(synced(() => indexSelect(x, 1, i64([-1])))).toThrow(/indexSelect: index -1 is out of range for dim 1 of size 5/);
      expect(synced(() => gather(x, 1, i64([0, 5], [1, 2])))).toThrow(/gather: index 5 is out of range for dim 1 of size 5/);
      expect(synced(() => scatterAdd(x, 0, i64([7], [1, 1]), x))).toThrow(/scatterAdd: index 7 is out of range for dim 0 of size 4/);
      expect(synced(() => scatterReduce(x, 0, i64([9], [1, 1]), x, "mean"))).toThrow(/index 9 is out of range for dim 0 of size 4/);
      const f = tensor([0, 1], { device });
      expect(() => indexSelect(x, 0, f)).toThrow(/indexSelect: index must be int32 or int64, got float32\[2\]/);
      expect(() => gather(x, 0, f.reshape([1, 2]))).toThrow(/gather: index must be int32 or int64/);
      expect(() => scatterAdd(x, 0, f.reshape([1, 2]), x)).toThrow(/scatterAdd: index must be int32 or int64/);
      expect(() => gather(x, 0, i64([0]))).toThrow(/gather: index must have as many dims as the input/);
      expect(() => gather(x, 0, i64([0, 0, 0, 0, 0, 0], [1, 6]))).toThrow(/larger than input \[4, 5\] in dim 1/);
      expect(() => scatterAdd(x, 0, i64([0, 0], [1, 2]), x.to("float16"))).toThrow(/scatterAdd: src dtype float16 differs/);
      expect(() => scatterAdd(x, 0, i64([0, 0, 0, 0, 0, 0], [6, 1]), x)).toThrow(/larger than src \[4, 5\] in dim 0/);
      expect(() => scatterReduce(x.to("int64"), 0, i64([0], [1, 1]), x.to("int64"), "mean")).toThrow(/"mean" needs a floating-point tensor/);
      expect(() => topk(x, 6)).toThrow(/topk: k = 6 is out of range for dim 1 of size 5/);
      expect(() => argsort(x, 2)).toThrow(/argsort: dim 2 is out of range/);
    });
  });
});

/** Reference argsort by rank counting (O(n²) per row): the rank of i is the number of j that sort before it. */
function refArgsort(v: Float64Array, shape: readonly number[], d: number, descending: boolean): number[] {
  const st = stridesOf(shape);
  const n = shape[d]!;
  const out = new Array<number>(v.length);
  const key = (x: number) => (Number.isNaN(x) ? Infinity : x);
  const nan = (x: number) => Number.isNaN(x);
  const before = (a: number, ia: number, b: number, ib: number) => {
    // NaN above +inf; equal values keep index order.
    const ka = key(a);
    const kb = key(b);
    if (ka !== kb || nan(a) !== nan(b)) {
      const less = ka < kb || (ka === kb && !nan(a) && nan(b));
      return descending ? !less : less;
    }
    return ia < ib;
  };
  const lineShape: number[] = shape.slice();
  lineShape[d] = 1;
  forEach(lineShape, (ix) => {
    const base = flat(ix, st);
    for (let i = 0; i < n; i++) {
      const a = v[base + i * st[d]!]!;
      let rank = 0;
      for (let j = 0; j < n; j++) if (j !== i && before(v[base + j * st[d]!]!, j, a, i)) rank++;
      out[base + rank * st[d]!] = i;
    }
  });
  return out;
}

test("tidy releases every temporary: CPU live bytes return to their start", () => {
  const start = cpuBackend.memory.live;
  tidy(() => {
    const x = input([2, 64, 32], "float16", "cpu", 20);
    const index = indexTensor([2, 16, 32], 64, "cpu", 21, "int64", [2, 16, 1]);
    const src = input([2, 16, 32], "float16", "cpu", 22);
    gather(x.t, 1, index.t);
    scatterReduce(x.t, 1, index.t, src.t, "mean");
    scatterReduce(x.t, 1, index.t, src.t, "mean", { includeSelf: false });
    scatterReduce(x.t, 1, index.t, src.t, "sum", { includeSelf: false });
    topk(x.t, 5, 1);
    sort(x.t, 0, { descending: true });
    indexSelect(x.t, 2, tensor(Int32Array.of(3, 1), { device: "cpu" }));
    expect(() => gather(x.t, 1, tensor(BigInt64Array.of(99n), { shape: [1, 1, 1] }))).toThrow(/out of range/);
    expect(cpuBackend.memory.live).toBeGreaterThan(start);
  });
  expect(cpuBackend.memory.live).toBe(start);
});
