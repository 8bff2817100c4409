// Tests for src/core/half.ts: float16 / bfloat16 <-> float32, exhaustively over all 65,536 bit
// patterns of each format (decoding against a formula, bit-exact round trips, every midpoint between
// neighbours and one f32 ulp either side, overflow and subnormal boundaries, NaN handling), plus a
// million random f32 values against an independent nearest-even reference, scalar and bulk paths.

import { describe, expect, test } from "bun:test";
import {
  bf16ArrayToF32,
  bf16ToF32,
  f16ArrayToF32,
  f16ToF32,
  f32ArrayToBf16,
  f32ArrayToF16,
  f32ToBf16,
  f32ToF16,
  roundBf16,
  roundF16,
} from "../../src/core/half.ts";

// ---- independent reference ----------------------------------------------------------------

interface Format {
  name: string;
  manBits: number;
  bias: number;
  expMax: number; // all-ones exponent field
  encode: (x: number) => number;
  decode: (h: number) => number;
  encodeArray: (src: Float32Array, dst?: Uint16Array) => Uint16Array;
  decodeArray: (src: Uint16Array, dst?: Float32Array) => Float32Array;
  round: (x: number) => number;
}

const F16: Format = {
  name: "float16", manBits: 10, bias: 15, expMax: 31,
  encode: f32ToF16, decode: f16ToF32, encodeArray: f32ArrayToF16, decodeArray: f16ArrayToF32, round: roundF16,
};
const BF16: Format = {
  name: "bfloat16", manBits: 7, bias: 127, expMax: 255,
  encode: f32ToBf16, decode: bf16ToF32, encodeArray: f32ArrayToBf16, decodeArray: bf16ArrayToF32, round: roundBf16,
};

/** Value of a 16-bit pattern by the textbook formula: sign · 2^(e-bias) · (1 + m/2^p), subnormals 2^(1-bias) · m/2^p. */
function formulaValue(fmt: Format, h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> fmt.manBits) & fmt.expMax;
  const m = h & ((1 << fmt.manBits) - 1);
  const scale = 2 ** fmt.manBits;
  if (e === fmt.expMax) return m === 0 ? sign * Infinity : NaN;
  if (e === 0) return sign * Math.pow(2, 1 - fmt.bias) * (m / scale);
  return sign * Math.pow(2, e - fmt.bias) * (1 + m / scale);
}

function isNaNPattern(fmt: Format, h: number): boolean {
  return ((h >> fmt.manBits) & fmt.expMax) === fmt.expMax && (h & ((1 << fmt.manBits) - 1)) !== 0;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
function bitsOf(x: number): number {
  f32[0] = x;
  return u32[0]!;
}
function fromBits(b: number): number {
  u32[0] = b;
  return f32[0]!;
}

/**
 * Nearest-even rounding by value comparison: the non-negative finite values of the format in ascending
 * order (the patterns 0 .. maxFinite) plus the first overflow value 2^(emax+1) standing for inf. For a
 * float32 |x| find the neighbours lo <= |x| < hi and compare with their midpoint (exact in f64).
 */
class Reference {
  readonly values: Float64Array;
  readonly infPattern: number;
  constructor(readonly fmt: Format) {
    this.infPattern = fmt.expMax << fmt.manBits;
    const n = this.infPattern + 1;
    this.values = new Float64Array(n);
    for (let h = 0; h < this.infPattern; h++) this.values[h] = formulaValue(fmt, h);
    this.values[this.infPattern] = Math.pow(2, fmt.expMax - fmt.bias); // where inf would sit
  }
  encode(x: number): number {
    const v = Math.fround(x); // torch rounds to f32 first
    const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
    const a = Math.abs(v);
    const vals = this.values;
    const last = vals.length - 1;
    if (a >= vals[last]!) return sign | this.infPattern;
    let lo = 0;
    let hi = last; // vals[lo] <= a < vals[hi]
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (vals[mid]! <= a) lo = mid;
      else hi = mid;
    }
    if (vals[lo] === a) return sign | lo;
    const midpoint = (vals[lo]! + vals[hi]!) / 2;
    if (a < midpoint) return sign | lo;
    if (a > midpoint) return sign | hi;
    return sign | (lo % 2 === 0 ? lo : hi);
  }
}

/** Small deterministic PRNG for the random sweep (independent of the code under test). */
function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
}

const ALL = new Uint16Array(65536).map((_, i) => i);

for (const fmt of [F16, BF16]) {
  describe(`${fmt.name}: all 65,536 patterns`, () => {
    const ref = new Reference(fmt);
    const maxFinite = ref.infPattern - 1;

    test("16 -> 32 equals the formula for every pattern (scalar and bulk)", () => {
      const bulk = fmt.decodeArray(ALL);
      const bulkBits = new Uint32Array(bulk.buffer);
      let bad = 0;
      for (let h = 0; h < 65536; h++) {
        const want = formulaValue(fmt, h);
        const got = fmt.decode(h);
        if (Number.isNaN(want)) {
          if (!Number.isNaN(got) || !Number.isNaN(bulk[h]!)) bad++;
          // bulk keeps the NaN bit pattern exactly: the 16 bits are the top of the f32 pattern
          const expect32 = fmt === BF16 ? h << 16 : ((h & 0x8000) << 16) | 0x7f800000 | ((h & 0x3ff) << 13);
          if (bulkBits[h] !== expect32 >>> 0) bad++;
          continue;
        }
        if (!Object.is(got, want) || !Object.is(bulk[h]!, want)) bad++;
      }
      expect(bad).toBe(0);
    });

    test("16 -> 32 -> 16 round-trips bit-exactly; NaN stays NaN, quieted, sign kept", () => {
      const back = fmt.encodeArray(fmt.decodeArray(ALL));
      const quiet = 1 << (fmt.manBits - 1);
      let bad = 0;
      for (let h = 0; h < 65536; h++) {
        const s = fmt.encode(fmt.decode(h));
        if (isNaNPattern(fmt, h)) {
          // scalar: JS may canonicalise the NaN, so only NaN-ness, quiet bit and (bulk) payload are checked
          if (!isNaNPattern(fmt, s) || (s & quiet) === 0) bad++;
          if (back[h] !== (h | quiet)) bad++;
          continue;
        }
        if (s !== h || back[h] !== h) bad++;
      }
      expect(bad).toBe(0);
      // A JS number does not keep a NaN's sign or payload (the engine canonicalises it), so the
      // scalar path can only promise NaN-ness; the bulk path works on bits and keeps the sign.
      expect(isNaNPattern(fmt, fmt.encode(NaN))).toBe(true);
      expect(isNaNPattern(fmt, fmt.encode(fromBits(0xffc00000)))).toBe(true);
      // a signalling f32 NaN whose payload lives only in the low bits must not become inf
      expect(isNaNPattern(fmt, fmt.encode(fromBits(0x7f800001)))).toBe(true);
      const sn = new Float32Array(new Uint32Array([0x7f800001, 0xff800001]).buffer);
      const snOut = fmt.encodeArray(sn);
      expect(isNaNPattern(fmt, snOut[0]!) && isNaNPattern(fmt, snOut[1]!)).toBe(true);
      expect(snOut[1]! & 0x8000).toBe(0x8000);
    });

    test("every midpoint between neighbours ties to even; one f32 ulp either side goes to the nearer", () => {
      let bad = 0;
      let checked = 0;
      for (let h = 0; h <= maxFinite; h++) {
        const lo = ref.values[h]!;
        const hi = ref.values[h + 1]!; // for h = maxFinite this is the overflow value (inf)
        const mid = (lo + hi) / 2;
        if (Math.fround(mid) !== mid) throw new Error(`midpoint ${mid} is not an f32`);
        const even = h % 2 === 0 ? h : h + 1;
        const below = fromBits(bitsOf(mid) - 1);
        const above = fromBits(bitsOf(mid) + 1);
        for (const [x, want] of [[mid, even], [below, h], [above, h + 1]] as const) {
          checked++;
          if (fmt.encode(x) !== want) bad++;
          if (fmt.encode(-x) !== (0x8000 | want)) bad++;
          if (ref.encode(x) !== want) bad++; // the reference agrees with itself on these too
        }
      }
      expect(checked).toBe(3 * (maxFinite + 1));
      expect(bad).toBe(0);
    });

    test("bulk f32 -> 16 equals scalar on the midpoint grid", () => {
      const xs = new Float32Array(3 * (maxFinite + 1) * 2);
      let k = 0;
      for (let h = 0; h <= maxFinite; h++) {
        const mid = (ref.values[h]! + ref.values[h + 1]!) / 2;
        for (const x of [mid, fromBits(bitsOf(mid) - 1), fromBits(bitsOf(mid) + 1)]) {
          xs[k++] = x;
          xs[k++] = -x;
        }
      }
      const out = fmt.encodeArray(xs);
      let bad = 0;
      for (let i = 0; i < xs.length; i++) if (out[i] !== fmt.encode(xs[i]!)) bad++;
      expect(bad).toBe(0);
    });

    test("a million random f32 values against the reference (scalar, bulk, round)", () => {
      const next = splitmix32(fmt === F16 ? 1 : 2);
      const n = 1_000_000;
      const bits = new Uint32Array(n);
      for (let i = 0; i < n; i++) {
        const r = next();
        if (i % 2 === 0) {
          bits[i] = r; // any pattern
        } else {
          // concentrate on the format's finite range: f32 exponent within its reach
          const lowExp = fmt === F16 ? 127 - 15 - 12 : 1;
          const span = fmt === F16 ? 32 : 253;
          const e = lowExp + (next() % span);
          bits[i] = (r & 0x807fffff) | (e << 23);
        }
      }
      const xs = new Float32Array(bits.buffer);
      const bulk = fmt.encodeArray(xs);
      let bad = 0;
      let nan = 0;
      for (let i = 0; i < n; i++) {
        const x = xs[i]!;
        if (Number.isNaN(x)) {
          nan++;
          if (!isNaNPattern(fmt, bulk[i]!)) bad++;
          continue;
        }
        const want = ref.encode(x);
        if (fmt.encode(x) !== want || bulk[i] !== want) bad++;
        if (!Object.is(fmt.round(x), formulaValue(fmt, want))) bad++;
      }
      expect(nan).toBeLessThan(n / 100);
      expect(bad).toBe(0);
    });
  });
}

describe("float16 edges", () => {
  test("overflow thresholds: 65504 is the largest finite, >= 65520 rounds to inf", () => {
    expect(f32ToF16(65504)).toBe(0x7bff);
    expect(f32ToF16(fromBits(bitsOf(65520) - 1))).toBe(0x7bff);
    expect(f32ToF16(65520)).toBe(0x7c00);
    expect(f32ToF16(-65520)).toBe(0xfc00);
    expect(f32ToF16(65536)).toBe(0x7c00);
    expect(f32ToF16(3.4028234663852886e38)).toBe(0x7c00);
    expect(f32ToF16(1e300)).toBe(0x7c00); // f64 beyond f32: fround gives inf
    expect(f32ToF16(Infinity)).toBe(0x7c00);
    expect(f32ToF16(-Infinity)).toBe(0xfc00);
    expect(roundF16(70000)).toBe(Infinity);
  });

  test("subnormal / normal boundary and the smallest values", () => {
    expect(f32ToF16(2 ** -14)).toBe(0x0400); // smallest normal
    expect(f16ToF32(0x03ff)).toBe(2 ** -14 - 2 ** -24); // largest subnormal
    expect(f32ToF16(2 ** -14 - 2 ** -25)).toBe(0x0400); // tie between 0x3ff (odd) and 0x400
    expect(f32ToF16(2 ** -24)).toBe(0x0001);
    expect(f32ToF16(2 ** -25)).toBe(0x0000); // tie to even zero
    expect(f32ToF16(fromBits(bitsOf(2 ** -25) + 1))).toBe(0x0001);
    expect(f32ToF16(-(2 ** -25))).toBe(0x8000);
    expect(f32ToF16(1.5 * 2 ** -24)).toBe(0x0002); // tie between 1 and 2 -> 2
    expect(f32ToF16(1e-45)).toBe(0x0000); // f32 subnormal
    expect(f32ToF16(-1e-45)).toBe(0x8000);
    expect(f32ToF16(-0)).toBe(0x8000);
    expect(Object.is(f16ToF32(0x8000), -0)).toBe(true);
  });

  test("double rounding: an f64 just above an f16 midpoint first rounds to the f32 midpoint", () => {
    const mid = 1 + 2 ** -11; // between 1 (0x3c00, even) and 1 + 2^-10
    const x = mid + 2 ** -40; // nearer the upper neighbour in exact arithmetic, but fround(x) = mid
    expect(Math.fround(x)).toBe(mid);
    expect(f32ToF16(x)).toBe(0x3c00);
    expect(f32ToF16(mid + 2 ** -23)).toBe(0x3c01); // one f32 ulp above the midpoint survives
  });
});

describe("bfloat16 edges", () => {
  test("overflow, subnormals, zeros", () => {
    const maxBf16 = bf16ToF32(0x7f7f);
    expect(maxBf16).toBe((2 - 2 ** -7) * 2 ** 127);
    expect(f32ToBf16(fromBits(0x7f7f7fff))).toBe(0x7f7f);
    expect(f32ToBf16(fromBits(0x7f7f8000))).toBe(0x7f80); // tie to even -> inf
    expect(f32ToBf16(3.4028234663852886e38)).toBe(0x7f80);
    expect(f32ToBf16(-Infinity)).toBe(0xff80);
    expect(f32ToBf16(fromBits(0x00008000))).toBe(0x0000); // f32 subnormal tie -> 0
    expect(f32ToBf16(fromBits(0x00008001))).toBe(0x0001);
    expect(f32ToBf16(fromBits(0x00018000))).toBe(0x0002); // tie between 1 and 2 -> 2
    expect(f32ToBf16(fromBits(0x007fffff))).toBe(0x0080); // largest f32 subnormal -> smallest normal bf16
    expect(f32ToBf16(-0)).toBe(0x8000);
    expect(roundBf16(1 + 2 ** -8)).toBe(1); // tie to even
    expect(roundBf16(1 + 3 * 2 ** -8)).toBe(1 + 2 ** -6);
  });
});

describe("bulk API", () => {
  test("writes into a given destination, rejects a short one, handles subarray views", () => {
    const src = new Float32Array([1, -2, 0.1, 65520]);
    const dst = new Uint16Array(6);
    expect(f32ArrayToF16(src, dst)).toBe(dst);
    expect(Array.from(dst.subarray(0, 4))).toEqual([0x3c00, 0xc000, f32ToF16(0.1), 0x7c00]);
    expect(() => f32ArrayToF16(src, new Uint16Array(3))).toThrow(RangeError);
    expect(() => bf16ArrayToF32(new Uint16Array(4), new Float32Array(2))).toThrow(RangeError);
    const backing = new Float32Array(8);
    const view = backing.subarray(3, 7);
    f16ArrayToF32(dst.subarray(0, 4), view);
    expect(Array.from(backing)).toEqual([0, 0, 0, 1, -2, roundF16(0.1), Infinity, 0]);
    const bviewSrc = new Float32Array([0, 0, 1.5, 3]).subarray(2);
    expect(Array.from(f32ArrayToBf16(bviewSrc))).toEqual([0x3fc0, 0x4040]);
  });
});
