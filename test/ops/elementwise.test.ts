// Table-driven tests of the element-wise ops on every test device: unary math and activations,
// binary ops with broadcasting and scalars, comparisons, where and clamp, against float64
// references on SD-realistic and odd shapes in every float dtype (and int32/int64 where it makes
// sense); also non-contiguous inputs, dtype rules, errors, erf accuracy and memory hygiene.

import { describe, expect, test } from "bun:test";
import { cpuBackend } from "../../src/backends/cpu/index.ts";
import { erf as cpuErf, erfc as cpuErfc } from "../../src/backends/cpu/elementwise.ts";
import { type SimdActivation, simdKernels } from "../../src/backends/cpu/simd-kernels.ts";
import { full, tensor } from "../../src/tensor/creation.ts";
import type { DType } from "../../src/core/dtype.ts";
import type { Device } from "../../src/core/device.ts";
import * as ew from "../../src/tensor/ops/elementwise.ts";
import { chunk } from "../../src/tensor/ops/shape-ops.ts";
import { tidy } from "../../src/tensor/scope.ts";
import type { Tensor } from "../../src/tensor/tensor.ts";
import { FLOAT_DTYPES, expectClose, prng, randomTensor, roundTo, testDevices, tolerance, values } from "../helpers/op-harness.ts";

const INT_DTYPES: DType[] = ["int32", "int64"];
const SHAPES: number[][] = [[1, 77, 768], [2, 97, 40], [1025, 64], [3, 5, 7], [], [0, 3]];
const BIG: number[] = [2, 320, 64, 64];
const EXACT = { atol: 0, rtol: 0 };

// ---- references ------------------------------------------------------------------------------

/** erf(x) = 2/√π · e^{-x²} · Σ 2ⁿ x^{2n+1} / (1·3···(2n+1)): all terms positive, so no cancellation. */
function erfRef(x: number): number {
  if (x === 0) return x;
  const a = Math.abs(x);
  if (a > 6) return Math.sign(x);
  let term = a;
  let sum = a;
  for (let n = 1; n < 500 && term > sum * 1e-18; n++) {
    term *= (2 * a * a) / (2 * n + 1);
    sum += term;
  }
  return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * Math.exp(-a * a) * sum;
}

/** erfc(x) for x >= 3 by its continued fraction e^{-x²}/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + ...)))). */
function erfcTailRef(x: number): number {
  let k = x;
  for (let n = 300; n >= 1; n--) k = x + n / 2 / k;
  return Math.exp(-x * x) / (Math.sqrt(Math.PI) * k);
}

const sigmoidRef = (v: number) => 1 / (1 + Math.exp(-v));

/** Round half to even, written differently from the kernel (via the fractional part). */
function roundRef(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d < 0.5) return f;
  if (d > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

/** Flat index into an input of `inShape` for every element of the broadcast `outShape`. */
function broadcastIndex(inShape: number[], outShape: number[]): Int32Array {
  const n = outShape.reduce((a, b) => a * b, 1);
  const idx = new Int32Array(n);
  const nd = outShape.length;
  const off = nd - inShape.length;
  if (off === 0 && inShape.every((d, i) => d === outShape[i])) {
    for (let i = 0; i < n; i++) idx[i] = i;
    return idx;
  }
  const strides = new Array<number>(nd).fill(0); // input stride per output dim (0 = broadcast)
  let s = 1;
  for (let d = inShape.length - 1; d >= 0; d--) {
    strides[d + off] = inShape[d] === 1 ? 0 : s;
    s *= inShape[d]!;
  }
  const counter = new Array<number>(nd).fill(0);
  let j = 0;
  for (let i = 0; i < n; i++) {
    idx[i] = j;
    for (let d = nd - 1; d >= 0; d--) {
      counter[d]!++;
      j += strides[d]!;
      if (counter[d]! < outShape[d]!) break;
      j -= strides[d]! * outShape[d]!;
      counter[d] = 0;
    }
  }
  return idx;
}

// ---- inputs ----------------------------------------------------------------------------------

type Kind = "float" | "int" | "discrete";

/** Random input: uniform floats in [lo, hi) rounded to dtype, integers in [lo, hi), or a few exact values (ties for comparisons). */
function input(shape: number[], dtype: DType, device: Device, seed: number, lo: number, hi: number, kind: Kind): { t: Tensor; v: Float64Array } {
  if (kind === "float" && (dtype === "float32" || dtype === "float16" || dtype === "bfloat16")) return randomTensor(shape, dtype, device, seed, lo, hi);
  const n = shape.reduce((a, b) => a * b, 1);
  const r = prng(seed);
  const v = new Float64Array(n);
  const choices = [-1, -0.5, 0, 0.5, 1];
  for (let i = 0; i < n; i++) {
    if (kind === "discrete") v[i] = dtype === "int32" || dtype === "int64" ? Math.floor(r() * 5) - 2 : choices[Math.floor(r() * 5)]!;
    else v[i] = Math.floor(lo + (hi - lo) * r());
  }
  return { t: tensor(v, { shape, dtype, device }), v };
}

// ---- unary table -----------------------------------------------------------------------------

interface UnaryCase {
  name: string;
  fn: (x: Tensor) => Tensor;
  ref: (v: number) => number;
  lo: number;
  hi: number;
  /** also run on int32/int64 (the result keeps the integer dtype) */
  ints?: boolean;
  /** result is bool */
  bool?: boolean;
  kind?: Kind;
  /** also run on [2,320,64,64] float32 */
  big?: boolean;
}

const UNARY: UnaryCase[] = [
  { name: "neg", fn: ew.neg, ref: (v) => -v, lo: -4, hi: 4, ints: true, big: true },
  { name: "exp", fn: ew.exp, ref: Math.exp, lo: -4, hi: 4 },
  { name: "log", fn: ew.log, ref: Math.log, lo: 0.01, hi: 10 },
  { name: "sqrt", fn: ew.sqrt, ref: Math.sqrt, lo: 0, hi: 10 },
  { name: "rsqrt", fn: ew.rsqrt, ref: (v) => 1 / Math.sqrt(v), lo: 0.01, hi: 10 },
  { name: "abs", fn: ew.abs, ref: Math.abs, lo: -4, hi: 4, ints: true },
  { name: "sigmoid", fn: ew.sigmoid, ref: sigmoidRef, lo: -8, hi: 8 },
  { name: "tanh", fn: ew.tanh, ref: Math.tanh, lo: -4, hi: 4 },
  { name: "silu", fn: ew.silu, ref: (v) => v * sigmoidRef(v), lo: -8, hi: 8, big: true },
  { name: "gelu", fn: (x) => ew.gelu(x), ref: (v) => 0.5 * v * (1 + erfRef(v / Math.SQRT2)), lo: -6, hi: 6 },
  {
    name: "gelu_tanh",
    fn: (x) => ew.gelu(x, "tanh"),
    ref: (v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))),
    lo: -6,
    hi: 6,
  },
  { name: "quickGelu", fn: ew.quickGelu, ref: (v) => v * sigmoidRef(1.702 * v), lo: -8, hi: 8 },
  { name: "sin", fn: ew.sin, ref: Math.sin, lo: -6, hi: 6 },
  { name: "cos", fn: ew.cos, ref: Math.cos, lo: -6, hi: 6 },
  { name: "relu", fn: ew.relu, ref: (v) => Math.max(v, 0), lo: -4, hi: 4, ints: true },
  { name: "square", fn: ew.square, ref: (v) => v * v, lo: -4, hi: 4, ints: true },
  { name: "reciprocal", fn: ew.reciprocal, ref: (v) => 1 / v, lo: 0.25, hi: 4 },
  { name: "floor", fn: ew.floor, ref: Math.floor, lo: -8, hi: 8, ints: true },
  { name: "ceil", fn: ew.ceil, ref: Math.ceil, lo: -8, hi: 8, ints: true },
  // bfloat16 in [-8, 8) has many exact .5 values: a real test of ties-to-even.
  { name: "round", fn: ew.round, ref: roundRef, lo: -8, hi: 8, ints: true },
  { name: "sign", fn: ew.sign, ref: (v) => (v > 0 ? 1 : v < 0 ? -1 : 0), lo: -4, hi: 4, ints: true },
  { name: "clamp", fn: (x) => ew.clamp(x, -0.5, 0.75), ref: (v) => Math.min(Math.max(v, -0.5), 0.75), lo: -2, hi: 2 },
  { name: "clamp(min)", fn: (x) => ew.clamp(x, 0.25), ref: (v) => Math.max(v, 0.25), lo: -2, hi: 2 },
  { name: "logicalNot", fn: ew.logicalNot, ref: (v) => (v === 0 ? 1 : 0), lo: -1, hi: 1, ints: true, bool: true, kind: "discrete" },
];

describe("unary ops", () => {
  for (const device of testDevices()) {
    for (const c of UNARY) {
      const dtypes = c.ints ? [...FLOAT_DTYPES, ...INT_DTYPES] : FLOAT_DTYPES;
      for (const dtype of dtypes) {
        test(`${c.name} ${dtype} on ${device}`, () =>
          tidy(() => {
            const isInt = INT_DTYPES.includes(dtype);
            const shapes = c.big && dtype === "float32" ? [...SHAPES, BIG] : SHAPES;
            shapes.forEach((shape, si) => {
              const lo = isInt && c.kind !== "discrete" ? -50 : c.lo;
              const hi = isInt && c.kind !== "discrete" ? 50 : c.hi;
              const { t, v } = input(shape, dtype, device, 100 + si, lo, hi, c.kind ?? (isInt ? "int" : "float"));
              const y = c.fn(t);
              expect(y.dtype).toBe(c.bool ? "bool" : dtype);
              expect(y.shape).toEqual(shape);
              const want = Float64Array.from(v, (x) => roundTo(y.dtype, c.ref(x)));
              const tol = c.bool || isInt ? EXACT : tolerance(dtype);
              expectClose(values(y), want, tol, `${c.name} ${dtype}${JSON.stringify(shape)}`);
            });
          }));
      }
    }
  }
});

test("float math of integer tensors gives float32", () =>
  tidy(() => {
    const x = tensor([1, 2, 3], { dtype: "int32" });
    for (const f of [ew.exp, ew.log, ew.sqrt, ew.sigmoid, ew.silu, ew.reciprocal, (t: Tensor) => ew.gelu(t)]) {
      const y = f(x);
      expect(y.dtype).toBe("float32");
    }
    expectClose(values(ew.exp(x)), [Math.exp(1), Math.exp(2), Math.exp(3)].map(Math.fround), tolerance("float32"), "exp int32");
    expect(ew.clamp(x, 1.5).dtype).toBe("float32");
    expect(ew.clamp(x, 2).dtype).toBe("int32");
    expect(values(ew.clamp(x, 2))).toEqual(Float64Array.of(2, 2, 3));
  }));

test("activations are stable and exact at the extremes", () =>
  tidy(() => {
    const x = tensor([-1000, -100, -20, 0, 20, 100, 1000, NaN, -Infinity, Infinity]);
    const sig = values(ew.sigmoid(x));
    expect(Array.from(sig.slice(0, 7))).toEqual([0, Math.fround(sigmoidRef(-100)), Math.fround(sigmoidRef(-20)), 0.5, 1, 1, 1]);
    expect(Number.isNaN(sig[7])).toBe(true);
    expect([sig[8], sig[9]]).toEqual([0, 1]);
    const silu = values(ew.silu(x));
    expect(silu.slice(0, 7).every((v) => Number.isFinite(v))).toBe(true);
    expect(silu[6]).toBe(1000);
    expect(Object.is(silu[0], -0) || silu[0] === 0).toBe(true);
    const gelu = values(ew.gelu(x));
    expect(gelu[6]).toBe(1000);
    expect(gelu[0] === 0).toBe(true); // -0 or 0
    // Tiny negative tail keeps relative precision through erfc: gelu(-10) ≈ -7.6e-23.
    const g10 = ew.gelu(tensor([-10])).item();
    const ref10 = -10 * 0.5 * erfcTailRef(10 / Math.SQRT2);
    expect(Math.abs(g10 - ref10) / Math.abs(ref10)).toBeLessThan(1e-6);
    expect(Number.isNaN(values(ew.relu(tensor([NaN])))[0])).toBe(true);
    expect(Array.from(values(ew.round(tensor([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5]))))).toEqual([-2, -2, -0, 0, 2, 2, 4]);
  }));

test("erf and erfc: max relative error <= 1e-7 (float64 reference)", () => {
  let worst = 0;
  for (let i = -6000; i <= 6000; i++) {
    const x = i / 1000 + 1e-4 * Math.sin(i); // avoid only hitting round numbers
    const want = erfRef(x);
    if (want !== 0) worst = Math.max(worst, Math.abs(cpuErf(x) - want) / Math.abs(want));
  }
  for (const x of [1e-30, 1e-10, 1e-5, -1e-5, 0.84375, 1.25, 2.857142857, 6, 27, Infinity, -Infinity])
    if (Number.isFinite(x) && Math.abs(x) <= 6) worst = Math.max(worst, Math.abs(cpuErf(x) - erfRef(x)) / Math.abs(erfRef(x)));
  expect(worst).toBeLessThan(1e-7);
  expect(cpuErf(Infinity)).toBe(1);
  expect(cpuErf(-Infinity)).toBe(-1);
  expect(Number.isNaN(cpuErf(NaN))).toBe(true);
  let worstTail = 0;
  for (let x = 3; x < 26; x += 0.0137) worstTail = Math.max(worstTail, Math.abs(cpuErfc(x) - erfcTailRef(x)) / erfcTailRef(x));
  expect(worstTail).toBeLessThan(1e-7);
  for (let x = -3; x < 3; x += 0.0173) expect(Math.abs(cpuErfc(x) - (1 - erfRef(x)))).toBeLessThan(1e-14);
  expect(cpuErfc(-30)).toBe(2);
  expect(cpuErfc(30)).toBe(0);
});

// ---- the WebAssembly SIMD activations ---------------------------------------------------------

/** Φ(x) from the series / continued-fraction references above (independent of the kernels' erf). */
function phiRef(x: number): number {
  const z = Math.abs(x) / Math.SQRT2;
  const erfcZ = z < 3 ? 1 - erfRef(z) : erfcTailRef(z);
  return x >= 0 ? 1 - 0.5 * erfcZ : 0.5 * erfcZ;
}

/** One ulp of float32 at the float32 rounding of v (the subnormal step below 2^-126). */
function ulp32(v: number): number {
  const a = Math.abs(Math.fround(v));
  return a < 2 ** -126 ? 2 ** -149 : 2 ** (Math.floor(Math.log2(a)) - 23);
}

const GELU_K = Math.sqrt(2 / Math.PI);

// [op, float64 reference, range, bound]: a bound ≥ 1 is in ulps of the rounded reference, < 1 a relative error.
// The ranges stop where the result leaves float32's normal range (or, for silu / quick_gelu, where the kernel's
// exp overflows early: there the true value is below 4e-37 and the kernel returns −0).
const SIMD_BOUNDS: [SimdActivation, (x: number) => number, number, number, number][] = [
  ["exp", Math.exp, -87.33, 88.72, 2],
  ["sigmoid", sigmoidRef, -87, 88, 3],
  ["silu", (x) => x / (1 + Math.exp(-x)), -88.3, 88, 3],
  ["quickGelu", (x) => x / (1 + Math.exp(-1.702 * x)), -51.8, 51, 3],
  ["geluTanh", (x) => x / (1 + Math.exp(-2 * GELU_K * (x + 0.044715 * x ** 3))), -9, 9, 3], // = 0.5x(1 + tanh u)
  ["tanh", Math.tanh, -20, 20, 2],
  ["gelu", (x) => x * phiRef(x), -12.9, 20, 4e-7],
];

describe("WebAssembly SIMD activations: accuracy bounds against float64 references", () => {
  const k = simdKernels();
  for (const [op, ref, lo, hi, bound] of SIMD_BOUNDS)
    test.skipIf(!k)(`${op} on [${lo}, ${hi}] within ${bound >= 1 ? `${bound} ulp` : `${bound} relative`}`, () => {
      const n = 1 << 16;
      const r = prng(7);
      const xs = Float32Array.from({ length: n }, (_, i) => lo + ((hi - lo) * (i + r())) / n);
      const ys = new Float32Array(n);
      k!.map(op, xs, ys);
      let worst = 0;
      let at = 0;
      for (let i = 0; i < n; i++) {
        const want = ref(xs[i]!);
        const err = Math.abs(ys[i]! - want) / (bound >= 1 ? ulp32(want) : Math.abs(want));
        if (err > worst) [worst, at] = [err, xs[i]!];
      }
      expect(worst, `${op}: worst at x = ${at}`).toBeLessThanOrEqual(bound);
    });

  test.skipIf(!k)("exp: subnormal results, overflow, -inf and NaN", () => {
    const xs = Float32Array.from({ length: 1 << 14 }, (_, i) => -103.97 + (16.6 * i) / (1 << 14));
    const ys = new Float32Array(xs.length);
    k!.map("exp", xs, ys);
    for (let i = 0; i < xs.length; i++) expect(Math.abs(ys[i]! - Math.exp(xs[i]!))).toBeLessThanOrEqual(2 ** -149);
    const sp = Float32Array.of(-Infinity, Infinity, NaN, 88.8, -104, 0, -0);
    k!.map("exp", sp, sp);
    expect(Array.from(sp)).toEqual([0, Infinity, NaN, Infinity, 0, 1, 1]);
  });
});

// ---- binary table ----------------------------------------------------------------------------

interface BinaryCase {
  name: string;
  fn: (a: Tensor | number, b: Tensor | number) => Tensor;
  ref: (a: number, b: number) => number;
  a: [number, number];
  b: [number, number];
  ints?: boolean;
  bool?: boolean;
  kind?: Kind;
  big?: boolean;
}

const cmp = (f: (a: number, b: number) => boolean) => (a: number, b: number) => (f(a, b) ? 1 : 0);
const BINARY: BinaryCase[] = [
  { name: "add", fn: ew.add, ref: (a, b) => a + b, a: [-4, 4], b: [-4, 4], ints: true, big: true },
  { name: "sub", fn: ew.sub, ref: (a, b) => a - b, a: [-4, 4], b: [-4, 4], ints: true },
  { name: "mul", fn: ew.mul, ref: (a, b) => a * b, a: [-4, 4], b: [-4, 4], ints: true, big: true },
  { name: "div", fn: ew.div, ref: (a, b) => a / b, a: [-4, 4], b: [0.25, 4] },
  { name: "pow", fn: ew.pow, ref: (a, b) => a ** b, a: [0.1, 3], b: [-2, 2] },
  { name: "maximum", fn: ew.maximum, ref: Math.max, a: [-4, 4], b: [-4, 4], ints: true },
  { name: "minimum", fn: ew.minimum, ref: Math.min, a: [-4, 4], b: [-4, 4], ints: true },
  { name: "eq", fn: ew.eq, ref: cmp((a, b) => a === b), a: [-1, 1], b: [-1, 1], ints: true, bool: true, kind: "discrete" },
  { name: "ne", fn: ew.ne, ref: cmp((a, b) => a !== b), a: [-1, 1], b: [-1, 1], ints: true, bool: true, kind: "discrete" },
  { name: "lt", fn: ew.lt, ref: cmp((a, b) => a < b), a: [-1, 1], b: [-1, 1], ints: true, bool: true, kind: "discrete" },
  { name: "le", fn: ew.le, ref: cmp((a, b) => a <= b), a: [-1, 1], b: [-1, 1], ints: true, bool: true, kind: "discrete" },
  { name: "gt", fn: ew.gt, ref: cmp((a, b) => a > b), a: [-1, 1], b: [-1, 1], ints: true, bool: true, kind: "discrete" },
  { name: "ge", fn: ew.ge, ref: cmp((a, b) => a >= b), a: [-1, 1], b: [-1, 1], ints: true, bool: true, kind: "discrete" },
  { name: "logicalAnd", fn: ew.logicalAnd, ref: cmp((a, b) => a !== 0 && b !== 0), a: [-1, 1], b: [-1, 1], ints: true, bool: true, kind: "discrete" },
  { name: "logicalOr", fn: ew.logicalOr, ref: cmp((a, b) => a !== 0 || b !== 0), a: [-1, 1], b: [-1, 1], ints: true, bool: true, kind: "discrete" },
];

/** Operand shape pairs: equal shapes, then broadcasting. */
const PAIRS: [number[], number[]][] = [
  ...SHAPES.map((s): [number[], number[]] => [s, s]),
  [[2, 320, 1, 1], [2, 320, 8, 8]],
  [[77, 1], [1, 80]],
  [[7], [3, 5, 7]],
  [[], [2, 3]],
  [[1, 77, 768], [768]],
  [[0, 3], [1, 3]],
];

/** Scalars exactly representable in every dtype, so the reference sees the same value. */
const SCALAR = 0.75;

describe("binary ops", () => {
  for (const device of testDevices()) {
    for (const c of BINARY) {
      const dtypes = c.ints ? [...FLOAT_DTYPES, ...INT_DTYPES] : FLOAT_DTYPES;
      for (const dtype of dtypes) {
        test(`${c.name} ${dtype} on ${device}`, () =>
          tidy(() => {
            const isInt = INT_DTYPES.includes(dtype);
            const kind = c.kind ?? (isInt ? "int" : "float");
            const range = (r: [number, number]): [number, number] => (isInt && kind === "int" ? [-50, 50] : r);
            const pairs = c.big && dtype === "float32" ? [...PAIRS, [BIG, BIG] as [number[], number[]]] : PAIRS;
            const outDType = c.bool ? "bool" : dtype;
            const tol = c.bool || isInt ? EXACT : tolerance(dtype);
            pairs.forEach(([sa, sb], pi) => {
              const A = input(sa, dtype, device, 200 + pi, ...range(c.a), kind);
              const B = input(sb, dtype, device, 300 + pi, ...range(c.b), kind);
              const y = c.fn(A.t, B.t);
              const shape = y.shape as number[];
              expect(y.dtype).toBe(outDType);
              const ia = broadcastIndex(sa, shape);
              const ib = broadcastIndex(sb, shape);
              const want = Float64Array.from(ia, (j, i) => roundTo(outDType, c.ref(A.v[j]!, B.v[ib[i]!]!)));
              expectClose(values(y), want, tol, `${c.name} ${dtype} ${JSON.stringify(sa)}⊕${JSON.stringify(sb)}`);
            });
            // tensor ⊕ number and number ⊕ tensor
            const s = isInt ? 2 : c.kind === "discrete" ? 0.5 : SCALAR;
            const A = input([2, 97, 40], dtype, device, 400, ...range(c.a), kind);
            const right = c.fn(A.t, s);
            const left = c.fn(s, A.t);
            expect(right.dtype).toBe(outDType);
            expect(left.dtype).toBe(outDType);
            expectClose(values(right), A.v.map((x) => roundTo(outDType, c.ref(x, s))), tol, `${c.name} ${dtype} tensor⊕${s}`);
            if (c.name !== "pow" || !isInt)
              expectClose(values(left), A.v.map((x) => roundTo(outDType, c.ref(s, x))), tol, `${c.name} ${dtype} ${s}⊕tensor`);
          }));
      }
    }
  }
});

test("binary ops as Tensor methods", () =>
  tidy(() => {
    const a = tensor([1, 2, 3]);
    const b = tensor([4, 5, 6]);
    expect(a.add(b).toArray()).toEqual([5, 7, 9]);
    expect(a.sub(1).toArray()).toEqual([0, 1, 2]);
    expect(a.mul(b).div(2).toArray()).toEqual([2, 5, 9]);
    expect(a.pow(2).toArray()).toEqual([1, 4, 9]);
    expect(a.maximum(2).minimum(2.5).toArray()).toEqual([2, 2, 2.5]);
    expect(a.lt(2).logicalOr(a.gt(2)).logicalNot().toArray()).toEqual([0, 1, 0]);
    expect(a.neg().abs().square().sqrt().toArray()).toEqual(a.toArray());
    expect(a.clamp(1.5, 2.5).toArray()).toEqual([1.5, 2, 2.5]);
    expect(a.where(a.ge(2), -1).toArray()).toEqual([-1, 2, 3]);
    expect(a.gelu("tanh").dtype).toBe("float32");
  }));

// ---- where -----------------------------------------------------------------------------------

describe("where", () => {
  for (const device of testDevices()) {
    for (const dtype of [...FLOAT_DTYPES, ...INT_DTYPES]) {
      test(`broadcasting ${dtype} on ${device}`, () =>
        tidy(() => {
          const isInt = INT_DTYPES.includes(dtype);
          const kind: Kind = isInt ? "int" : "float";
          const cases: [number[], number[], number[]][] = [
            [[2, 97, 40], [2, 97, 40], [2, 97, 40]],
            [[77, 1], [1, 80], [77, 80]],
            [[1, 1, 4, 4], [2, 320, 4, 4], []],
            [[0, 3], [3], [1, 3]],
          ];
          cases.forEach(([sc, sa, sb], ci) => {
            const C = input(sc, "bool", device, 500 + ci, 0, 1, "discrete");
            const A = input(sa, dtype, device, 510 + ci, -4, 4, kind);
            const B = input(sb, dtype, device, 520 + ci, -4, 4, kind);
            const y = ew.where(C.t, A.t, B.t);
            expect(y.dtype).toBe(dtype);
            const shape = y.shape as number[];
            const [ic, ia, ib] = [broadcastIndex(sc, shape), broadcastIndex(sa, shape), broadcastIndex(sb, shape)];
            const want = Float64Array.from(ic, (j, i) => (C.v[j] ? A.v[ia[i]!]! : B.v[ib[i]!]!));
            expectClose(values(y), want, EXACT, `where ${dtype} case ${ci}`);
          });
          // scalar operands
          const C = input([3, 5, 7], "bool", device, 530, 0, 1, "discrete");
          const A = input([3, 5, 7], dtype, device, 531, -4, 4, kind);
          expectClose(values(ew.where(C.t, A.t, 2)), A.v.map((x, i) => (C.v[i] ? x : 2)), EXACT, "where(c, t, 2)");
          expectClose(values(ew.where(C.t, -1, A.t)), A.v.map((x, i) => (C.v[i] ? -1 : x)), EXACT, "where(c, -1, t)");
        }));
    }
  }

  test("dtype rules and errors", () =>
    tidy(() => {
      const c = tensor([true, false, true]);
      const i = tensor([1, 2, 3], { dtype: "int32" });
      const f = tensor([1, 2, 3], { dtype: "float16" });
      expect(ew.where(c, i, 0).dtype).toBe("int32");
      expect(ew.where(c, i, 0.5).dtype).toBe("float32");
      expect(ew.where(c, i, 0.5).toArray()).toEqual([1, 0.5, 3]);
      expect(ew.where(c, f, 0.5).dtype).toBe("float16");
      expect(ew.where(c, 1, 0).dtype).toBe("int64");
      expect(ew.where(c, 1.5, 0).toArray()).toEqual([1.5, 0, 1.5]);
      expect(ew.where(c.to("uint8"), f, f.neg()).toArray()).toEqual([1, -2, 3]);
      expect(() => ew.where(f, i, i)).toThrow(/cond must be bool or uint8/);
      expect(() => ew.where(c, i, f)).toThrow(/dtype mismatch/);
      expect(() => ew.where(tensor([true, false]), i, i)).toThrow(/broadcast/);
    }));
});

// ---- layouts ---------------------------------------------------------------------------------

describe("non-contiguous inputs match contiguous ones", () => {
  for (const device of testDevices()) {
    for (const dtype of FLOAT_DTYPES) {
      test(`${dtype} on ${device}`, () =>
        tidy(() => {
          const base = randomTensor([8, 12, 10], dtype, device, 600, -3, 3).t;
          const other = randomTensor([10, 12, 8], dtype, device, 601, -3, 3).t;
          const small = randomTensor([1, 12, 1], dtype, device, 602, -3, 3).t;
          const views: [string, Tensor][] = [
            ["transposed", base.transpose(0, 2)],
            ["permuted", base.permute(2, 0, 1).reshape([10, 8, 12]).permute(0, 2, 1)],
            ["sliced", base.slice(1, 1, 11, 2).slice(0, 1).transpose(0, 2)],
            ["expanded", small.expand([10, 12, 8])],
            ["offset", base.select(0, 3).narrow(1, 2, 8).T.unsqueeze(2).expand([8, 12, 8])],
          ];
          for (const [label, v] of views) {
            const c = v.contiguous();
            const o = other.narrow(0, 0, v.shape[0]!).narrow(1, 0, v.shape[1]!).narrow(2, 0, v.shape[2]!);
            const pairs: [string, (t: Tensor) => Tensor][] = [
              ["exp", ew.exp],
              ["silu", ew.silu],
              ["gelu", (t) => ew.gelu(t)],
              ["neg", ew.neg],
              ["add", (t) => ew.add(t, o)],
              ["mul(o, t)", (t) => ew.mul(o, t)],
              ["sub scalar", (t) => ew.sub(1.5, t)],
              ["gt", (t) => ew.gt(t, o)],
              ["where", (t) => ew.where(ew.gt(t, 0), t, o)],
            ];
            for (const [name, f] of pairs) {
              const got = f(v);
              const want = f(c);
              expect(got.isContiguous).toBe(true);
              expect(got.equals(want), `${name} on ${label} view`).toBe(true);
            }
          }
        }));
    }
  }
});

test("activations of views with long contiguous runs (chunk halves, narrowed rows) match contiguous inputs", () =>
  tidy(() => {
    const acts: [string, (t: Tensor) => Tensor][] = [
      ["exp", ew.exp],
      ["sigmoid", ew.sigmoid],
      ["silu", ew.silu],
      ["quickGelu", ew.quickGelu],
      ["gelu", (t) => ew.gelu(t)],
      ["gelu tanh", (t) => ew.gelu(t, "tanh")],
      ["tanh", ew.tanh],
    ];
    const geglu = randomTensor([2, 77, 2 * 300], "float32", "cpu", 640, -6, 6).t; // runs of 300, many per block
    const long = randomTensor([3, 2 * 9001], "float32", "cpu", 641, -6, 6).t; // runs longer than a block
    const views: [string, Tensor][] = [
      ["chunk gate", chunk(geglu, 2, -1)[1]!],
      ["chunk first half", chunk(geglu, 2, -1)[0]!],
      ["long runs", chunk(long, 2, -1)[1]!],
      ["narrowed rows", geglu.narrow(2, 7, 41).narrow(1, 3, 70)],
    ];
    for (const [label, v] of views) {
      expect(v.isContiguous).toBe(false);
      const c = v.contiguous();
      for (const [name, f] of acts) expect(f(v).equals(f(c)), `${name} on ${label}`).toBe(true);
    }
  }));

test("long broadcast runs over offset, strided views match materialised operands", () =>
  tidy(() => {
    const base = randomTensor([6, 12, 80], "float32", "cpu", 650, -3, 3).t;
    const a = base.narrow(2, 5, 70).slice(0, 1, 6, 2); // [3, 12, 70], offset, non-collapsible
    const bias = randomTensor([12, 1], "float32", "cpu", 651, -3, 3).t;
    const row = randomTensor([2, 70], "float32", "cpu", 652, -3, 3).t.select(0, 1); // offset 70
    for (const [name, f] of [
      ["sub", ew.sub],
      ["div", ew.div],
      ["pow", ew.pow],
      ["maximum", ew.maximum],
    ] as [string, (x: Tensor, y: Tensor) => Tensor][]) {
      for (const [label, x, y] of [
        ["a ⊕ bias", a, bias],
        ["bias ⊕ a", bias, a],
        ["a ⊕ row", a, row],
        ["row ⊕ a", row, a],
      ] as [string, Tensor, Tensor][]) {
        const shape = [3, 12, 70];
        const want = f(x.expand(shape).contiguous(), y.expand(shape).contiguous());
        expect(f(x, y).equals(want), `${name} ${label}`).toBe(true);
      }
    }
  }));

// ---- dtype rules and errors ------------------------------------------------------------------

describe("integer dtype rules", () => {
  for (const device of testDevices()) {
    for (const dtype of INT_DTYPES) {
      test(`${dtype} on ${device}`, () =>
        tidy(() => {
          const a = tensor([7, -7, 3, 0], { dtype, device });
          const b = tensor([2, 2, -2, 5], { dtype, device });
          expect(ew.add(a, b).dtype).toBe(dtype);
          expect(ew.add(a, 3).dtype).toBe(dtype);
          expect(ew.add(a, 0.5).dtype).toBe("float32");
          expect(ew.add(a, 0.5).toArray()).toEqual([7.5, -6.5, 3.5, 0.5]);
          expect(ew.mul(a, 2.5).toArray()).toEqual([17.5, -17.5, 7.5, 0]);
          // true division, like torch.div
          expect(ew.div(a, b).dtype).toBe("float32");
          expect(ew.div(a, b).toArray()).toEqual([3.5, -3.5, -1.5, 0]);
          expect(ew.div(a, 2).toArray()).toEqual([3.5, -3.5, 1.5, 0]);
          expect(ew.div(1, b).toArray()).toEqual([0.5, 0.5, -0.5, 0.2].map(Math.fround));
          expect(ew.pow(a, 2).toArray()).toEqual([49, 49, 9, 0]);
          expect(ew.pow(a, 2).dtype).toBe(dtype);
          expect(() => ew.pow(a, -1)).toThrow(/negative integer powers/);
          expect(ew.lt(a, b).dtype).toBe("bool");
          expect(ew.lt(a, 2.5).toArray()).toEqual([0, 1, 0, 1]);
          expect(ew.abs(a).toArray()).toEqual([7, 7, 3, 0]);
          expect(ew.neg(a).dtype).toBe(dtype);
          expect(ew.sign(a).toArray()).toEqual([1, -1, 1, 0]);
          expect(ew.maximum(a, 1).toArray()).toEqual([7, 1, 3, 1]);
          if (dtype === "int32") {
            // exact at the edge of int32 (float32 compute would lose these)
            const big = tensor([2147483600, -2147483600], { dtype, device });
            expect(ew.add(big, 47).toArray()).toEqual([2147483647, -2147483553]);
            expect(ew.sub(big, 1).toArray()).toEqual([2147483599, -2147483601]);
          } else {
            const big = tensor([2n ** 40n + 1n, -(2n ** 40n) - 3n], { device });
            expect(ew.add(big, 1).toTypedArray()).toEqual(BigInt64Array.of(2n ** 40n + 2n, -(2n ** 40n) - 2n));
          }
        }));
    }
  }

  test("uint8 and bool", () =>
    tidy(() => {
      const u = tensor(Uint8Array.of(250, 3, 0));
      expect(ew.add(u, 10).toArray()).toEqual([4, 13, 10]); // wraps like torch uint8
      const t = tensor([true, false, true]);
      const f = tensor([false, false, true]);
      expect(ew.logicalAnd(t, f).toArray()).toEqual([0, 0, 1]);
      expect(ew.logicalOr(t, f).toArray()).toEqual([1, 0, 1]);
      expect(ew.eq(t, f).toArray()).toEqual([0, 1, 1]);
      expect(ew.logicalNot(t).toArray()).toEqual([0, 1, 0]);
      expect(() => ew.add(t, f)).toThrow(/bool/);
      expect(() => ew.neg(t)).toThrow(/bool/);
      expect(ew.exp(t).dtype).toBe("float32");
    }));
});

test("errors name the op and the problem", () =>
  tidy(() => {
    const a = tensor([1, 2, 3]);
    const h = tensor([1, 2, 3], { dtype: "float16" });
    expect(() => ew.add(a, h)).toThrow(/add: dtype mismatch \(float32 vs float16\)/);
    expect(() => ew.mul(a, tensor([1, 2]))).toThrow(/mul: .*cannot be broadcast/);
    expect(() => ew.add(1 as unknown as Tensor, 2)).toThrow(/add: needs at least one tensor/);
    expect(() => ew.gelu(a, "fast" as "tanh")).toThrow(/approximate/);
    expect(() => ew.clamp(a)).toThrow(/clamp: at least one/);
    const d = tensor([1, 2, 3]);
    d.dispose();
    expect(() => ew.exp(d)).toThrow(/disposed/);
    expect(() => ew.add(a, d)).toThrow(/disposed/);
  }));

test("meta tensors: shapes and dtypes without compute", () =>
  tidy(() => {
    const a = full([2, 320, 64, 64], 0, { device: "meta" });
    const b = full([2, 320, 1, 1], 0, { device: "meta", dtype: "float32" });
    const y = ew.silu(ew.add(a, b));
    expect(y.device).toBe("meta");
    expect(y.shape).toEqual([2, 320, 64, 64]);
    expect(ew.gt(a, 0).dtype).toBe("bool");
  }));

test("memory: live CPU bytes return to their start after a loop of ops (errors included)", () => {
  const start = cpuBackend.memory.live;
  for (let i = 0; i < 20; i++) {
    tidy(() => {
      const x = randomTensor([3, 17, 9], "float32", "cpu", i).t;
      const y = randomTensor([17, 1], "float32", "cpu", i + 1).t;
      ew.where(ew.gt(x, 0), ew.silu(ew.add(x, y)), ew.mul(2, ew.gelu(x.transpose(0, 2).contiguous().transpose(0, 2))));
      ew.clamp(ew.round(x), -1, 1);
    });
  }
  // Failing ops free what they allocated.
  const a = tensor([1, 2, 3]);
  const b = tensor([1, 2, 3], { dtype: "float16" });
  const short = tensor([1, 2]);
  const c = tensor([true, false, true]);
  expect(() => ew.add(a, b)).toThrow();
  expect(() => ew.add(a, short)).toThrow();
  expect(() => ew.where(c, a, short)).toThrow();
  expect(() => ew.where(c, b, a)).toThrow();
  ew.where(c, a, 0.5).dispose();
  for (const t of [a, b, short, c]) t.dispose();
  expect(cpuBackend.memory.live).toBe(start);
});
