// Our elementwise kernels (kernels/elementwise.cu, copy.cu) on the emulated device through ffi/cuda/kernels.ts,
// against float64 references in every float dtype with odd sizes, strided and broadcast views: unary, binary,
// tensor ⊕ scalar, where, GEGLU, copy / cat, casts between every pair of dtypes, fill. Also the bd::Strided
// layout and the launchers' argument checks.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { CudaLibraries } from "../../ffi/cuda/index.ts";
import { BINARY_OPS, INT_UNARY_OPS, STRIDED, StridedParams, TAGS, UNARY_OPS, binaryCode, unaryCode } from "../../ffi/cuda/kernels.ts";
import { erf } from "../../src/backends/cpu/elementwise.ts";
import {
  BUILD_TIMEOUT, Device, EPS, FLOAT_TAGS, HAS_GXX, type Tag, bytesOf, decode, emulatedCuda, encode, errorRatio, hostArray, random, roundTo,
} from "./setup.ts";

const contiguous = (shape: number[]) => shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
const RTOL = { f32: 4 * EPS.f32, f16: 2 * EPS.f16, bf16: 2 * EPS.bf16 };

function unaryRef(op: string, x: number, p0: number, p1: number): number {
  const g = (v: number) => 0.5 * v * (1 + erf(v / Math.SQRT2));
  switch (op) {
    case "neg": return -x;
    case "exp": return Math.exp(x);
    case "log": return Math.log(x);
    case "sqrt": return Math.sqrt(x);
    case "rsqrt": return 1 / Math.sqrt(x);
    case "abs": return Math.abs(x);
    case "sigmoid": return 1 / (1 + Math.exp(-x));
    case "tanh": return Math.tanh(x);
    case "silu": return x / (1 + Math.exp(-x));
    case "gelu": return g(x);
    case "gelu_tanh": return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
    case "quick_gelu": return x / (1 + Math.exp(-1.702 * x));
    case "sin": return Math.sin(x);
    case "cos": return Math.cos(x);
    case "relu": return Math.max(x, 0);
    case "square": return x * x;
    case "reciprocal": return 1 / x;
    case "floor": return Math.floor(x);
    case "ceil": return Math.ceil(x);
    case "round": return Math.abs(x % 1) === 0.5 ? 2 * Math.round(x / 2) : Math.round(x);
    case "sign": return Math.sign(x);
    case "logical_not": return x === 0 ? 1 : 0;
    case "clamp": return Math.min(Math.max(x, p0), p1);
  }
  throw new Error(op);
}
function binaryRef(op: string, a: number, b: number): number {
  switch (op) {
    case "add": return a + b;
    case "sub": return a - b;
    case "mul": return a * b;
    case "div": return a / b;
    case "pow": return a ** b;
    case "maximum": return Math.max(a, b);
    case "minimum": return Math.min(a, b);
    case "eq": return +(a === b);
    case "ne": return +(a !== b);
    case "lt": return +(a < b);
    case "le": return +(a <= b);
    case "gt": return +(a > b);
    case "ge": return +(a >= b);
    case "logical_and": return +(a !== 0 && b !== 0);
    case "logical_or": return +(a !== 0 || b !== 0);
  }
  throw new Error(op);
}
const POSITIVE = new Set(["log", "sqrt", "rsqrt", "reciprocal"]);
const BOOL_OUT = new Set(["eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or"]);

describe.skipIf(!HAS_GXX)("emulated kernels: elementwise, copy, cast, fill", () => {
  let cu: CudaLibraries;
  let dev: Device;
  let k: CudaLibraries["kernels"]["symbols"];
  const P = new StridedParams();

  beforeAll(async () => {
    cu = await emulatedCuda();
    dev = new Device(cu);
    k = cu.kernels.symbols;
  }, BUILD_TIMEOUT);
  afterAll(() => dev?.freeAll());

  const launch = (name: string, ...args: Parameters<(typeof k)[string]>) => cu.check(k[name]!(...args) as number, name);
  const fetch = (p: number, tag: Tag, n: number) => decode(dev.download(p, hostArray(tag, n)), tag);

  test("bd::Strided layout: TypeScript writes what the launcher reads", () => {
    const b = P.set([2, 3], [[3, 1], [1, 2 ** 33 + 5]]);
    const dv = new DataView(b.buffer);
    expect(b.byteLength).toBe(STRIDED.bytes);
    expect(dv.getInt32(STRIDED.ndim, true)).toBe(2);
    expect(dv.getBigInt64(STRIDED.shape + 8, true)).toBe(3n);
    expect(dv.getBigInt64(STRIDED.stride + 8 * (STRIDED.maxDims + 1), true)).toBe(2n ** 33n + 5n);
    // a transposed copy only comes out right if shape and both stride rows are read as written
    const src = encode(Array.from({ length: 15 }, (_, i) => i), "f32");
    const x = dev.upload(src.host);
    const y = dev.malloc(60);
    launch("bdk_copy_f32", P.set([5, 3], [[3, 1], [1, 5]]), y, x, null);
    expect(Array.from(fetch(y, "f32", 15))).toEqual([0, 5, 10, 1, 6, 11, 2, 7, 12, 3, 8, 13, 4, 9, 14]);
  });

  for (const tag of FLOAT_TAGS)
    test(`unary, all ${UNARY_OPS.length} ops, ${tag}, transposed input [25, 41]`, () => {
      const [R, C] = [25, 41];
      for (const op of UNARY_OPS) {
        const raw = random(R * C, 100 + unaryCode(op), -3, 3).map((v) => (POSITIVE.has(op) ? Math.abs(v) + 0.1 : v));
        if (op === "round") raw.set([0.5, 1.5, 2.5, -0.5, -2.5]); // ties go to even
        const x = encode(raw, tag);
        const px = dev.upload(x.host);
        const out = dev.malloc(R * C * bytesOf(tag));
        // x is stored [41, 25]; the kernel reads its transpose [25, 41]
        launch(`bdk_unary_${tag}`, unaryCode(op), P.set([R, C], [[C, 1], [1, R]]), out, px, -0.5, 0.7, null);
        const got = fetch(out, op === "logical_not" ? "u8" : tag, R * C);
        const ref = new Float64Array(R * C);
        for (let i = 0; i < R; i++) for (let j = 0; j < C; j++) ref[i * C + j] = unaryRef(op, x.exact[j * R + i]!, -0.5, 0.7);
        const ratio = errorRatio(got, ref, 1e-6, RTOL[tag]);
        if (ratio > 1) throw new Error(`${op} ${tag}: error ratio ${ratio}`);
        dev.free(px);
        dev.free(out);
      }
    });

  test("unary on integers: exact; float math on an integer input is refused", () => {
    const vals = [-7, -3, -1, 0, 1, 2, 5, 2 ** 40 + 3];
    for (const tag of ["i32", "i64"] as const) {
      const x = encode(vals, tag);
      const px = dev.upload(x.host);
      const out = dev.malloc(vals.length * 8);
      for (const op of INT_UNARY_OPS) {
        if (op === "square" && tag === "i64") continue; // overflows int64 for 2^40
        launch(`bdk_unary_${tag}`, unaryCode(op), P.set([vals.length], [[1], [1]]), out, px, -2.5, 3, null);
        const got = fetch(out, op === "logical_not" ? "u8" : tag, vals.length);
        const ref = encode(Array.from(x.exact, (v) => {
          const r = unaryRef(op, v, -2.5, 3);
          return op === "clamp" ? Math.trunc(r) : r;
        }), op === "logical_not" ? "u8" : tag).exact;
        expect([op, ...got]).toEqual([op, ...ref]);
      }
      expect(k[`bdk_unary_${tag}`]!(unaryCode("exp"), P.set([vals.length], [[1], [1]]), out, px, 0, 0, null)).toBe(1);
    }
  });

  for (const tag of FLOAT_TAGS)
    test(`binary, all ${BINARY_OPS.length} ops, ${tag}, broadcast [3,1,97] ⊕ [1,5,97]`, () => {
      const shape = [3, 5, 97];
      const n = 3 * 5 * 97;
      const a = encode(random(3 * 97, 7, -2, 2), tag);
      const braw = random(5 * 97, 8, -2, 2);
      for (let i = 0; i < 97; i += 3) braw[i] = a.exact[i]!; // some equal pairs for the comparisons
      const b = encode(braw, tag);
      const [pa, pb] = [dev.upload(a.host), dev.upload(b.host)];
      const out = dev.malloc(n * 4);
      for (const op of BINARY_OPS) {
        if (op === "pow") continue; // below, with a positive base
        launch(`bdk_binary_${tag}`, binaryCode(op), P.set(shape, [contiguous(shape), [97, 0, 1], [0, 97, 1]]), out, pa, pb, null);
        const got = fetch(out, BOOL_OUT.has(op) ? "u8" : tag, n);
        const ref = new Float64Array(n);
        for (let i = 0; i < 3; i++) for (let j = 0; j < 5; j++) for (let l = 0; l < 97; l++)
          ref[(i * 5 + j) * 97 + l] = binaryRef(op, a.exact[i * 97 + l]!, b.exact[j * 97 + l]!);
        const ratio = errorRatio(got, ref, 1e-6, RTOL[tag]);
        if (ratio > 1) throw new Error(`${op} ${tag}: error ratio ${ratio}`);
      }
      // pow with a positive base; then every op against a scalar, on both sides
      const base = encode(random(97, 9, 0.1, 3), tag);
      const pbase = dev.upload(base.host);
      launch(`bdk_binary_${tag}`, binaryCode("pow"), P.set([97], [[1], [1], [1]]), out, pbase, pb, null);
      expect(errorRatio(fetch(out, tag, 97), Array.from(base.exact, (v, i) => v ** b.exact[i]!), 1e-6, 4 * RTOL[tag])).toBeLessThanOrEqual(1);
      for (const op of BINARY_OPS)
        for (const first of [0, 1]) {
          launch(`bdk_binary_scalar_${tag}`, binaryCode(op), P.set([97], [[1], [1]]), out, pbase, 0.75, first, null);
          const got = fetch(out, BOOL_OUT.has(op) ? "u8" : tag, 97);
          const ref = Array.from(base.exact, (v) => (first ? binaryRef(op, 0.75, v) : binaryRef(op, v, 0.75)));
          const ratio = errorRatio(got, ref, 1e-6, 4 * RTOL[tag]);
          if (ratio > 1) throw new Error(`scalar ${op} first=${first} ${tag}: error ratio ${ratio}`);
        }
    });

  test("binary on integers is exact in int64; integer div is refused (true division gives float32)", () => {
    const big = 2 ** 40;
    const a = encode([big + 1, -5, 7, 0, 3, -big], "i64");
    const b = encode([big - 1, 2, 7, 4, 2, 3], "i64");
    const [pa, pb, out] = [dev.upload(a.host), dev.upload(b.host), dev.malloc(48)];
    for (const op of ["add", "sub", "maximum", "minimum", "eq", "lt", "ge", "logical_and", "logical_or"]) {
      launch("bdk_binary_i64", binaryCode(op), P.set([6], [[1], [1], [1]]), out, pa, pb, null);
      expect([op, ...fetch(out, BOOL_OUT.has(op) ? "u8" : "i64", 6)]).toEqual([op, ...Array.from(a.exact, (v, i) => binaryRef(op, v, b.exact[i]!))]);
    }
    const x = encode([2, -3, 5, 1], "i32"), e = encode([10, 3, 0, 7], "i32");
    const [px, pe] = [dev.upload(x.host), dev.upload(e.host)];
    launch("bdk_binary_i32", binaryCode("pow"), P.set([4], [[1], [1], [1]]), out, px, pe, null);
    expect(Array.from(fetch(out, "i32", 4))).toEqual([1024, -27, 1, 1]);
    launch("bdk_binary_scalar_i32", binaryCode("mul"), P.set([4], [[1], [1]]), out, px, 3, 0, null);
    expect(Array.from(fetch(out, "i32", 4))).toEqual([6, -9, 15, 3]);
    expect(k.bdk_binary_i32!(binaryCode("div"), P.set([4], [[1], [1], [1]]), out, px, pe, null)).toBe(1);
    expect(() => cu.check(k.bdk_binary_i32!(binaryCode("div"), P.set([4], [[1], [1], [1]]), out, px, pe, null) as number, "bdk_binary_i32"))
      .toThrow("bdk_binary_i32 failed: cudaErrorInvalidValue (1): invalid argument");
    const u = encode([0, 1, 1, 0], "u8"), v = encode([0, 0, 1, 1], "u8");
    launch("bdk_binary_u8", binaryCode("logical_or"), P.set([4], [[1], [1], [1]]), out, dev.upload(u.host), dev.upload(v.host), null);
    expect(Array.from(fetch(out, "u8", 4))).toEqual([0, 1, 1, 1]);
  });

  for (const tag of TAGS)
    test(`where ${tag}: bit-exact select with broadcast condition and operand`, () => {
      const shape = [4, 3, 33];
      const n = 4 * 3 * 33;
      const cond = encode(Array.from({ length: 3 * 33 }, (_, i) => (i * 7) % 3 === 0 ? 1 : 0), "u8");
      const a = encode(random(n, 21, -100, 100), tag);
      const b = encode(random(33, 22, -100, 100), tag);
      const out = dev.malloc(n * bytesOf(tag));
      launch(`bdk_where_${tag}`, P.set(shape, [contiguous(shape), [0, 33, 1], contiguous(shape), [0, 0, 1]]), out, dev.upload(cond.host),
        dev.upload(a.host), dev.upload(b.host), null);
      const got = fetch(out, tag, n);
      for (let i = 0; i < n; i++) expect(got[i]).toBe(cond.exact[i % 99] ? a.exact[i]! : b.exact[i % 33]!);
    });

  for (const tag of FLOAT_TAGS)
    test(`geglu ${tag}: [7, 2·97] -> a · gelu(gate), erf and tanh forms`, () => {
      const [rows, inner] = [7, 97];
      const x = encode(random(rows * 2 * inner, 31, -3, 3), tag);
      const [px, out] = [dev.upload(x.host), dev.malloc(rows * inner * 4)];
      for (const approx of [0, 1]) {
        launch(`bdk_geglu_${tag}`, out, px, rows, inner, approx, null);
        const ref = new Float64Array(rows * inner);
        for (let r = 0; r < rows; r++) for (let c = 0; c < inner; c++)
          ref[r * inner + c] = x.exact[r * 2 * inner + c]! * unaryRef(approx ? "gelu_tanh" : "gelu", x.exact[r * 2 * inner + inner + c]!, 0, 0);
        expect(errorRatio(fetch(out, tag, rows * inner), ref, 1e-6, RTOL[tag])).toBeLessThanOrEqual(1);
      }
    });

  test("copy of every dtype through strides, and cat as copies into slices", () => {
    for (const tag of TAGS) {
      const a = encode(random(2 * 3 * 5, 41, -100, 100), tag);
      const b = encode(random(2 * 4 * 5, 42, -100, 100), tag);
      const w = bytesOf(tag);
      const out = dev.malloc(2 * 7 * 5 * w);
      launch(`bdk_copy_${tag}`, P.set([2, 3, 5], [[35, 5, 1], [15, 5, 1]]), out, dev.upload(a.host), null);
      launch(`bdk_copy_${tag}`, P.set([2, 4, 5], [[35, 5, 1], [20, 5, 1]]), out + 3 * 5 * w, dev.upload(b.host), null);
      const got = fetch(out, tag, 70);
      for (let i = 0; i < 2; i++) for (let j = 0; j < 7; j++) for (let l = 0; l < 5; l++)
        expect(got[(i * 7 + j) * 5 + l]).toBe(j < 3 ? a.exact[(i * 3 + j) * 5 + l]! : b.exact[(i * 4 + j - 3) * 5 + l]!);
    }
  });

  test("casts between every pair of dtypes (and to bool) follow C / typed-array conversion", () => {
    const vals = [0, 1, -1, 2.5, -2.5, 3.7, -3.7, 100, 200.5, 255, 256, -129, 300, 65504, 70000, 1e6, 0.1, 1 / 3, NaN, Infinity, -Infinity];
    const wrap = (v: number, tag: Tag) => {
      const t = Number.isNaN(v) ? 0 : v >= 2 ** 63 ? 2 ** 63 - 1 : v <= -(2 ** 63) ? -(2 ** 63) : Math.trunc(v);
      const big = BigInt(Math.round(t) === t && Math.abs(t) < 2 ** 63 ? t : t > 0 ? 2n ** 63n - 1n : -(2n ** 63n));
      return Number(tag === "i32" ? BigInt.asIntN(32, big) : tag === "u8" ? BigInt.asUintN(8, big) : big);
    };
    const convert = (v: number, to: Tag | "bool") =>
      to === "bool" ? +(v !== 0) : to === "f32" || to === "f16" || to === "bf16" ? roundTo(v, to) : wrap(v, to);
    for (const from of TAGS) {
      // the test values as stored in `from` (integers: finite values, truncated and wrapped)
      const src = vals.filter((v) => !["i32", "i64", "u8"].includes(from) || Number.isFinite(v)).map((v) => convert(v, from));
      const x = encode(src, from);
      const px = dev.upload(x.host);
      const out = dev.malloc(src.length * 8);
      for (const to of [...TAGS, "bool"] as const) {
        launch(`bdk_cast_${from}_${to}`, P.set([src.length], [[1], [1]]), out, px, null);
        const got = fetch(out, to === "bool" ? "u8" : to, src.length);
        const ref = Array.from(x.exact, (v) => (to !== "bool" && to.startsWith("f") && from.startsWith("i") ? convert(Math.fround(v), to) : convert(v, to)));
        expect([`${from}->${to}`, ...got]).toEqual([`${from}->${to}`, ...ref]);
      }
    }
  });

  test("fill writes a value converted to the dtype into a strided view only", () => {
    for (const tag of TAGS) {
      const out = dev.malloc(12 * bytesOf(tag));
      cu.check(cu.cudart.symbols.cudaMemset(out, 0, 12 * bytesOf(tag)), "cudaMemset");
      launch(`bdk_fill_${tag}`, P.set([2, 3], [[6, 2]]), out, -1.25, null); // rows 0-1, every other column
      const v = tag === "u8" ? 255 : tag.startsWith("i") ? -1 : -1.25;
      expect([tag, ...fetch(out, tag, 12)]).toEqual([tag, v, 0, v, 0, v, 0, v, 0, v, 0, v, 0]);
    }
  });

  test("launchers refuse bad op codes and descriptors", () => {
    const out = dev.malloc(16);
    expect(k.bdk_unary_f32!(99, P.set([4], [[1], [1]]), out, out, 0, 0, null)).toBe(1);
    expect(k.bdk_binary_f16!(-1, P.set([4], [[1], [1], [1]]), out, out, out, null)).toBe(1);
    const bad = P.set([4], [[1], [1]]);
    new DataView(bad.buffer).setInt32(STRIDED.ndim, 9, true);
    expect(k.bdk_copy_f32!(bad, out, out, null)).toBe(1);
    expect(k.bdk_copy_f32!(P.set([0, 5], [[5, 1], [5, 1]]), out, out, null)).toBe(0); // empty: nothing to do
  });
});
