// Table-driven tests of the reductions (sum, mean, max, min, argmax, argmin, prod, var, std) and
// softmax / logSoftmax on every test device, against float64 references on SD-realistic and odd
// shapes and dim sets in every float dtype (and int32/int64 where it makes sense); also NaN
// propagation, argmax's first-index rule, var's correction, masked softmax rows, empty
// reductions, bad dims, non-contiguous inputs and memory hygiene.

import { describe, expect, test } from "bun:test";
import { cpuBackend } from "../../src/backends/cpu/index.ts";
import { full, tensor } from "../../src/tensor/creation.ts";
import type { DType } from "../../src/core/dtype.ts";
import type { Device } from "../../src/core/device.ts";
import * as red from "../../src/tensor/ops/reduce.ts";
import { tidy } from "../../src/tensor/scope.ts";
import type { Tensor } from "../../src/tensor/tensor.ts";
import { FLOAT_DTYPES, expectClose, prng, randomTensor, roundTo, testDevices, tolerance, values } from "../helpers/op-harness.ts";

const INT_DTYPES: DType[] = ["int32", "int64"];
const EXACT = { atol: 0, rtol: 0 };

// ---- references ------------------------------------------------------------------------------

/**
 * Reduce `v` (row-major values of `shape`) over `dims` with f(slice), where each slice lists
 * the reduced elements in row-major order; returns the kept-dims shape and the results.
 */
function refReduce(shape: number[], dims: number[], v: ArrayLike<number>, f: (xs: number[]) => number): { shape: number[]; out: Float64Array } {
  const kept = shape.map((_, i) => !dims.includes(i));
  const outShape = shape.filter((_, i) => kept[i]);
  const outN = outShape.reduce((a, b) => a * b, 1);
  const groups: number[][] = Array.from({ length: outN }, () => []);
  const outStride = new Array<number>(shape.length).fill(0);
  let s = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    if (!kept[d]) continue;
    outStride[d] = s;
    s *= shape[d]!;
  }
  const counter = new Array<number>(shape.length).fill(0);
  let o = 0;
  for (let i = 0; i < v.length; i++) {
    groups[o]!.push(v[i]!);
    for (let d = shape.length - 1; d >= 0; d--) {
      counter[d]!++;
      o += outStride[d]!;
      if (counter[d]! < shape[d]!) break;
      o -= outStride[d]! * shape[d]!;
      counter[d] = 0;
    }
  }
  return { shape: outShape, out: Float64Array.from(groups, f) };
}

const sumRef = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const meanRef = (xs: number[]) => sumRef(xs) / xs.length;
const varRef = (correction: number) => (xs: number[]) => {
  const m = meanRef(xs);
  return xs.reduce((a, x) => a + (x - m) ** 2, 0) / Math.max(0, xs.length - correction);
};
const argRef = (better: (a: number, b: number) => boolean) => (xs: number[]) => {
  let bi = 0;
  for (let i = 1; i < xs.length; i++) if (better(xs[i]!, xs[bi]!)) bi = i;
  return bi;
};

// ---- inputs ----------------------------------------------------------------------------------

function input(shape: number[], dtype: DType, device: Device, seed: number, lo: number, hi: number): { t: Tensor; v: Float64Array } {
  if (!INT_DTYPES.includes(dtype)) return randomTensor(shape, dtype, device, seed, lo, hi);
  const n = shape.reduce((a, b) => a * b, 1);
  const r = prng(seed);
  const v = Float64Array.from({ length: n }, () => Math.floor(-1000 + 2000 * r()));
  return { t: tensor(v, { shape, dtype, device }), v };
}

// ---- reduction table -------------------------------------------------------------------------

type Dim = number | number[] | undefined;

interface ReduceCase {
  name: string;
  fn: (x: Tensor, dim: Dim, keepdim: boolean) => Tensor;
  ref: (xs: number[]) => number;
  /** result dtype for an input dtype */
  out: (dtype: DType) => DType;
  ints?: boolean;
  /** single dim or all only (argmax/argmin) */
  singleDim?: boolean;
  /** throws on an empty reduction */
  needsElements?: boolean;
  lo?: number;
  hi?: number;
}

const same = (d: DType) => d;
const CASES: ReduceCase[] = [
  { name: "sum", fn: red.sum, ref: sumRef, out: (d) => (INT_DTYPES.includes(d) ? "int64" : d), ints: true },
  { name: "mean", fn: red.mean, ref: meanRef, out: (d) => (INT_DTYPES.includes(d) ? "float32" : d), ints: true },
  { name: "max", fn: red.max, ref: (xs) => Math.max(...xs), out: same, ints: true, needsElements: true },
  { name: "min", fn: red.min, ref: (xs) => Math.min(...xs), out: same, ints: true, needsElements: true },
  {
    name: "argmax",
    fn: (x, d, k) => red.argmax(x, d as number | undefined, k),
    ref: argRef((a, b) => a > b),
    out: () => "int64",
    ints: true,
    singleDim: true,
    needsElements: true,
  },
  {
    name: "argmin",
    fn: (x, d, k) => red.argmin(x, d as number | undefined, k),
    ref: argRef((a, b) => a < b),
    out: () => "int64",
    ints: true,
    singleDim: true,
    needsElements: true,
  },
  // near 1 so that products of hundreds of values stay in range
  { name: "prod", fn: red.prod, ref: (xs) => xs.reduce((a, b) => a * b, 1), out: same, lo: 0.9, hi: 1.1 },
  { name: "var", fn: (x, d, k) => red.variance(x, d, { keepdim: k }), ref: varRef(1), out: same },
  { name: "var(correction 0)", fn: (x, d, k) => red.variance(x, d, { correction: 0, keepdim: k }), ref: varRef(0), out: same },
  { name: "std", fn: (x, d, k) => red.std(x, d, { keepdim: k }), ref: (xs) => Math.sqrt(varRef(1)(xs)), out: same },
];

/** [shape, dim] pairs: SD shapes, odd sizes, several and non-adjacent dims, 0-d and empty. */
const LAYOUTS: [number[], Dim][] = [
  [[1, 77, 768], -1],
  [[1, 77, 768], 1],
  [[2, 97, 40], [0, 2]],
  [[1025, 64], 0],
  [[1025, 64], undefined],
  [[3, 5, 7], 1],
  [[3, 5, 7], [-1, 0]],
  [[2, 320, 8, 8], [2, 3]],
  [[2, 4, 6, 5], [1, 3]],
  [[], undefined],
  [[], 0],
  [[0, 3], 1],
  [[0, 3], 0],
];

function dimsOf(shape: number[], dim: Dim): number[] {
  if (shape.length === 0) return [];
  if (dim === undefined) return shape.map((_, i) => i);
  return (typeof dim === "number" ? [dim] : dim).map((d) => (d < 0 ? d + shape.length : d));
}

describe("reductions", () => {
  for (const device of testDevices()) {
    for (const c of CASES) {
      const dtypes = c.ints ? [...FLOAT_DTYPES, ...INT_DTYPES] : FLOAT_DTYPES;
      for (const dtype of dtypes) {
        test(`${c.name} ${dtype} on ${device}`, () =>
          tidy(() => {
            LAYOUTS.forEach(([shape, dim], li) => {
              if (c.singleDim && Array.isArray(dim)) return;
              const dims = dimsOf(shape, dim);
              const count = dims.reduce((a, d) => a * shape[d]!, 1);
              if (c.needsElements && count === 0) return;
              const { t, v } = input(shape, dtype, device, 700 + li, c.lo ?? -2, c.hi ?? 2);
              const label = `${c.name} ${dtype}${JSON.stringify(shape)} dim ${JSON.stringify(dim)}`;
              const y = c.fn(t, dim, false);
              const want = refReduce(shape, dims, v, c.ref);
              expect(y.dtype, label).toBe(c.out(dtype));
              expect(y.shape, label).toEqual(want.shape);
              const exact = c.name.startsWith("arg") || c.name === "max" || c.name === "min" || INT_DTYPES.includes(y.dtype);
              const tol = exact ? EXACT : tolerance(y.dtype, count);
              expectClose(values(y), want.out.map((x) => roundTo(y.dtype, x)), tol, label);
              // keepdim: same values, reduced dims kept as 1
              if (li % 3 === 0) {
                const k = c.fn(t, dim, true);
                expect(k.shape, `${label} keepdim`).toEqual(shape.map((s, i) => (dims.includes(i) ? 1 : s)));
                expectClose(values(k), values(y), EXACT, `${label} keepdim`);
              }
            });
          }));
      }
    }
  }
});

describe("reduction semantics", () => {
  test("max/min propagate NaN; argmax/argmin point at the first NaN", () =>
    tidy(() => {
      for (const dtype of FLOAT_DTYPES) {
        const x = tensor(
          [
            [1, NaN, 3, NaN],
            [4, 2, -Infinity, 0],
            [NaN, 9, 9, 1],
          ],
          { dtype },
        );
        expect(values(red.max(x, 1)).map((v) => (Number.isNaN(v) ? -999 : v))).toEqual(Float64Array.of(-999, 4, -999));
        expect(values(red.min(x, 1)).map((v) => (Number.isNaN(v) ? -999 : v))).toEqual(Float64Array.of(-999, -Infinity, -999));
        expect(Number.isNaN(red.max(x).item())).toBe(true);
        expect(values(red.max(x, 0)).map((v) => (Number.isNaN(v) ? -999 : v))).toEqual(Float64Array.of(-999, -999, 9, -999));
        expect(red.argmax(x, 1).toArray()).toEqual([1, 0, 0]);
        expect(red.argmin(x, 1).toArray()).toEqual([1, 2, 0]);
        expect(red.argmax(x, 0).toArray()).toEqual([2, 0, 2, 0]);
        expect(red.argmax(x).item()).toBe(1);
      }
    }));

  test("argmax/argmin return the first index of ties", () =>
    tidy(() => {
      const x = tensor([
        [1, 3, 3, 2, 3],
        [5, 5, 5, 5, 5],
        [-1, -2, -2, 0, -2],
      ]);
      expect(red.argmax(x, 1).toArray()).toEqual([1, 0, 3]);
      expect(red.argmin(x, 1).toArray()).toEqual([0, 0, 1]);
      expect(red.argmax(x, 0).toArray()).toEqual([1, 1, 1, 1, 1]);
      expect(red.argmin(x, 0).toArray()).toEqual([2, 2, 2, 2, 2]);
      expect(red.argmax(x).item()).toBe(5); // flattened: first 5
      expect(red.argmin(x).item()).toBe(11);
      expect(red.argmax(x, 1, true).shape).toEqual([3, 1]);
      expect(red.argmax(x, undefined, true).shape).toEqual([1, 1]);
      const allInf = tensor([-Infinity, -Infinity, -Infinity]);
      expect(red.argmax(allInf).item()).toBe(0);
      expect(red.argmax(tensor([[7, 9, 9]], { dtype: "int32" }), 1).toArray()).toEqual([1]);
      const { values: mv, indices } = red.maxWithIndices(x, 1);
      expect(mv.toArray()).toEqual([3, 5, 0]);
      expect(indices.toArray()).toEqual([1, 0, 3]);
      expect(indices.dtype).toBe("int64");
      const mn = red.minWithIndices(x, 0, true);
      expect(mn.values.shape).toEqual([1, 5]);
      expect(mn.indices.toArray()).toEqual([[2, 2, 2, 2, 2]]);
    }));

  test("var/std with correction 0 and 1", () =>
    tidy(() => {
      const x = tensor([
        [1, 2, 3, 4],
        [2, 2, 2, 2],
      ]);
      expect(red.variance(x, 1).toArray()).toEqual([5 / 3, 0].map(Math.fround));
      expect(red.variance(x, 1, { correction: 0 }).toArray()).toEqual([1.25, 0]);
      expect(red.std(x, 1, { correction: 0 }).toArray()).toEqual([Math.fround(Math.sqrt(1.25)), 0]);
      expect(red.variance(x, 1, { correction: 0, keepdim: true }).shape).toEqual([2, 1]);
      expect(red.variance(x).item()).toBeCloseTo(varRef(1)([1, 2, 3, 4, 2, 2, 2, 2]), 6);
      // a single element: N - 1 = 0 -> NaN (0/0), as torch
      expect(Number.isNaN(red.variance(tensor([3])).item())).toBe(true);
      expect(red.variance(tensor([3]), undefined, { correction: 0 }).item()).toBe(0);
      // large offset: the two-pass algorithm keeps the small variance exact
      const off = tensor([1e4 + 1, 1e4 + 2, 1e4 + 3]);
      expect(red.variance(off).item()).toBe(1);
      expect(x.var(1, { correction: 0 }).toArray()).toEqual([1.25, 0]);
      expect(x.std().dtype).toBe("float32");
      expect(red.std(x.to("float16"), 1).dtype).toBe("float16");
    }));

  test("integer rules", () =>
    tidy(() => {
      const big = tensor([2147483647, 2147483647, 5], { dtype: "int32" });
      const s = red.sum(big);
      expect(s.dtype).toBe("int64");
      expect(s.toTypedArray()).toEqual(BigInt64Array.of(4294967299n));
      expect(red.mean(big).dtype).toBe("float32");
      expect(red.mean(tensor([1, 2], { dtype: "int64" })).item()).toBe(1.5);
      expect(red.max(big).dtype).toBe("int32");
      expect(red.max(big).item()).toBe(2147483647);
      expect(red.prod(tensor([3, -4, 5], { dtype: "int32" })).toArray()).toEqual(-60);
      expect(red.prod(tensor([3, -4, 5], { dtype: "int32" })).dtype).toBe("int64");
      expect(red.sum(tensor([true, true, false])).toArray()).toEqual(2);
      expect(red.max(tensor([false, true])).dtype).toBe("bool");
      expect(() => red.variance(big)).toThrow(/var: needs a floating-point tensor/);
      expect(() => red.softmax(big)).toThrow(/softmax: needs a floating-point tensor/);
    }));

  test("empty reductions and bad dims", () =>
    tidy(() => {
      const e = full([0, 3], 1);
      expect(red.sum(e).item()).toBe(0);
      expect(red.sum(e, 0).toArray()).toEqual([0, 0, 0]);
      expect(red.prod(e, 0).toArray()).toEqual([1, 1, 1]);
      expect(Number.isNaN(red.mean(e).item())).toBe(true);
      expect(red.max(e, 1).shape).toEqual([0]);
      expect(() => red.max(e)).toThrow(/max: cannot reduce over an empty dimension/);
      expect(() => red.argmin(e, 0)).toThrow(/argmin: cannot reduce over an empty/);
      const x = full([2, 3, 4], 1);
      expect(() => red.sum(x, 3)).toThrow(/sum: .*out of range/);
      expect(() => red.mean(x, -4)).toThrow(/mean: .*out of range/);
      expect(() => red.sum(x, [1, -2])).toThrow(/sum: dim -2 appears more than once/);
      expect(() => red.max(x, 1.5)).toThrow(/integer/);
      expect(() => red.softmax(x, 3)).toThrow(/softmax: .*out of range/);
      const scalar = tensor(5);
      expect(red.sum(scalar, 0).item()).toBe(5);
      expect(red.argmax(scalar).item()).toBe(0);
      expect(() => red.sum(scalar, 1)).toThrow(/0-d/);
      expect(red.sum(x, []).shape).toEqual([2, 3, 4]); // an empty dim list reduces nothing (numpy semantics)
    }));

  test("methods on Tensor", () =>
    tidy(() => {
      const x = tensor([
        [1, 5, 2],
        [4, 0, 6],
      ]);
      expect(x.sum().item()).toBe(18);
      expect(x.sum(0).toArray()).toEqual([5, 5, 8]);
      expect(x.sum([0, 1], true).shape).toEqual([1, 1]);
      expect(x.mean(1).toArray()).toEqual([Math.fround(8 / 3), Math.fround(10 / 3)]);
      expect(x.max().item()).toBe(6);
      expect(x.min(1).toArray()).toEqual([1, 0]);
      expect(x.argmax(1).toArray()).toEqual([1, 2]);
      expect(x.argmin().item()).toBe(4);
      expect(x.prod(1).toArray()).toEqual([10, 0]);
      expect(x.var(1).shape).toEqual([2]);
      expect(x.std(0, { keepdim: true }).shape).toEqual([1, 3]);
      expect(x.softmax(-1).sum(-1).toArray()).toEqual([1, 1].map((v) => expect.closeTo(v, 6)));
      expect(x.logSoftmax(0).shape).toEqual([2, 3]);
    }));
});

// ---- softmax ---------------------------------------------------------------------------------

const SOFTMAX_LAYOUTS: [number[], number][] = [
  [[1, 77, 768], -1],
  [[2, 97, 40], 1],
  [[1025, 64], 0],
  [[3, 5, 7], -1],
  [[3, 5, 7], 0],
  [[2, 8, 77, 77], -1],
  [[], 0],
  [[0, 3], -1],
  [[4, 0], 1],
];

function softmaxRef(xs: number[], log: boolean): number[] {
  const m = Math.max(...xs);
  const s = xs.reduce((a, x) => a + Math.exp(x - m), 0);
  return xs.map((x) => (log ? x - m - Math.log(s) : Math.exp(x - m) / s));
}

/** Apply a per-slice function along `dim`, returning row-major results. */
function alongDim(shape: number[], dim: number, v: Float64Array, f: (xs: number[]) => number[]): Float64Array {
  const out = new Float64Array(v.length);
  if (v.length === 0) return out;
  if (shape.length === 0) {
    out[0] = f([v[0]!])[0]!;
    return out;
  }
  const d = dim < 0 ? dim + shape.length : dim;
  const len = shape[d]!;
  const inner = shape.slice(d + 1).reduce((a, b) => a * b, 1);
  const outer = v.length / (len * inner);
  for (let o = 0; o < outer; o++)
    for (let i = 0; i < inner; i++) {
      const xs: number[] = [];
      for (let k = 0; k < len; k++) xs.push(v[(o * len + k) * inner + i]!);
      const r = f(xs);
      for (let k = 0; k < len; k++) out[(o * len + k) * inner + i] = r[k]!;
    }
  return out;
}

describe("softmax", () => {
  for (const device of testDevices()) {
    for (const dtype of FLOAT_DTYPES) {
      for (const log of [false, true]) {
        const name = log ? "logSoftmax" : "softmax";
        test(`${name} ${dtype} on ${device}`, () =>
          tidy(() => {
            SOFTMAX_LAYOUTS.forEach(([shape, dim], li) => {
              const { t, v } = randomTensor(shape, dtype, device, 800 + li, -8, 8);
              const y = log ? red.logSoftmax(t, dim) : red.softmax(t, dim);
              expect(y.dtype).toBe(dtype);
              expect(y.shape).toEqual(shape);
              expect(y.isContiguous).toBe(true);
              const len = shape.length ? shape[dim < 0 ? dim + shape.length : dim]! : 1;
              const want = alongDim(shape, dim, v, (xs) => softmaxRef(xs, log)).map((x) => roundTo(dtype, x));
              expectClose(values(y), want, tolerance(dtype, len), `${name} ${dtype}${JSON.stringify(shape)} dim ${dim}`);
            });
          }));
      }
    }

    test(`softmax rows sum to 1, masked and extreme rows on ${device}`, () =>
      tidy(() => {
        const { t } = randomTensor([16, 77, 77], "float32", device, 900, -30, 30);
        const sums = values(red.sum(red.softmax(t, -1), -1));
        expectClose(sums, new Float64Array(sums.length).fill(1), { atol: 1e-5, rtol: 0 }, "row sums");
        const m = -Infinity;
        const x = tensor(
          [
            [m, m, m, m],
            [0, m, 1, m],
            [1000, -1000, 1000, 0],
            [-1000, -1000, -1000, -1000],
          ],
          { device },
        );
        const p = values(red.softmax(x, -1));
        expect(Array.from(p.slice(0, 4)).every(Number.isNaN)).toBe(true); // fully masked row: NaN, as torch
        expectClose(p.slice(4), [1 / (1 + Math.E), 0, Math.E / (1 + Math.E), 0, 0.5, 0, 0.5, 0, 0.25, 0.25, 0.25, 0.25].map(Math.fround), tolerance("float32"), "softmax rows");
        const lp = values(red.logSoftmax(x, -1));
        expect(Array.from(lp.slice(0, 4)).every(Number.isNaN)).toBe(true);
        expect(lp[5]).toBe(-Infinity);
        expectClose(lp.slice(8), [-Math.LN2, -2000 - Math.LN2, -Math.LN2, -1000 - Math.LN2, -2 * Math.LN2, -2 * Math.LN2, -2 * Math.LN2, -2 * Math.LN2].map(Math.fround), tolerance("float32"), "logSoftmax rows");
        // masked along a non-last dim
        const col = values(red.softmax(x.T, 0));
        expect(Number.isNaN(col[0]!)).toBe(true);
        expect(col[1]).toBeCloseTo(1 / (1 + Math.E), 6);
      }));
  }
});

test("CPU softmax: a row holding NaN or +inf gives a NaN row; long rows and odd lengths", () =>
  tidy(() => {
    const x = tensor([
      [1, NaN, 2, 3, 4],
      [0, Infinity, 1, 2, 3],
      [NaN, NaN, NaN, NaN, NaN],
      [-Infinity, 0, 1, 2, -Infinity],
    ]);
    for (const f of [red.softmax, red.logSoftmax]) {
      const p = values(f(x, -1));
      expect(Array.from(p.slice(0, 15)).every(Number.isNaN)).toBe(true);
      expect(Array.from(p.slice(15)).every((v) => !Number.isNaN(v))).toBe(true);
    }
    // rows longer than one SIMD block (16384 floats), of lengths with every remainder mod 8
    for (const len of [20001, 9, 10, 11, 12, 13, 14, 15, 16, 1, 2, 3]) {
      const { t, v } = randomTensor([3, len], "float32", "cpu", 990 + len, -20, 20);
      for (const log of [false, true]) {
        const y = log ? red.logSoftmax(t, -1) : red.softmax(t, -1);
        const want = alongDim([3, len], -1, v, (xs) => softmaxRef(xs, log));
        expectClose(values(y), want, tolerance("float32", len), `${log ? "logSoftmax" : "softmax"} [3, ${len}]`);
      }
    }
  }));

// ---- layouts and memory ----------------------------------------------------------------------

describe("non-contiguous inputs match contiguous ones", () => {
  for (const device of testDevices()) {
    for (const dtype of FLOAT_DTYPES) {
      test(`${dtype} on ${device}`, () =>
        tidy(() => {
          const base = randomTensor([6, 10, 9], dtype, device, 950, -3, 3).t;
          const small = randomTensor([1, 10, 1], dtype, device, 951, -3, 3).t;
          const views: [string, Tensor][] = [
            ["transposed", base.transpose(0, 2)],
            ["sliced", base.slice(1, 1, 10, 3).transpose(1, 2)],
            ["expanded", small.expand([4, 10, 3])],
            ["selected", base.select(2, 4).T.unsqueeze(0)],
          ];
          const ops: [string, (t: Tensor) => Tensor][] = [
            ["sum", (t) => red.sum(t, 1)],
            ["sum all", (t) => red.sum(t)],
            ["mean", (t) => red.mean(t, [0, 2])],
            ["max", (t) => red.max(t, -1)],
            ["argmax", (t) => red.argmax(t, 0)],
            ["argmin all", (t) => red.argmin(t)],
            ["var", (t) => red.variance(t, 1)],
            ["prod", (t) => red.prod(t, 2)],
            ["softmax last", (t) => red.softmax(t, -1)],
            ["softmax mid", (t) => red.softmax(t, 1)],
            ["logSoftmax first", (t) => red.logSoftmax(t, 0)],
          ];
          for (const [label, v] of views) {
            const c = v.contiguous();
            for (const [name, f] of ops) expect(f(v).equals(f(c)), `${name} on ${label}`).toBe(true);
          }
        }));
    }
  }
});

test("meta tensors: reduction shapes without compute", () =>
  tidy(() => {
    const x = full([2, 4096, 320], 0, { device: "meta", dtype: "float16" });
    expect(red.mean(x, -1, true).shape).toEqual([2, 4096, 1]);
    expect(red.argmax(x, 1).dtype).toBe("int64");
    expect(red.softmax(x, 1).shape).toEqual([2, 4096, 320]);
  }));

test("memory: live CPU bytes return to their start after a loop of ops (errors included)", () => {
  const start = cpuBackend.memory.live;
  for (let i = 0; i < 20; i++) {
    tidy(() => {
      const x = randomTensor([4, 9, 13], "float32", "cpu", i).t;
      red.sum(red.softmax(x, 1), [0, 2]);
      red.maxWithIndices(x, 2);
      red.std(x.to("bfloat16"), -1, { keepdim: true });
      red.logSoftmax(x.transpose(0, 2), 0);
    });
  }
  const e = full([0, 3], 1);
  const x = full([2, 3], 1);
  expect(() => red.max(e)).toThrow();
  expect(() => red.sum(x, 5)).toThrow();
  expect(() => red.softmax(x, 2)).toThrow();
  e.dispose();
  x.dispose();
  expect(cpuBackend.memory.live).toBe(start);
});
