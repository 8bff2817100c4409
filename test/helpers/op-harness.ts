// The harness of the table-driven op tests: the devices under test, deterministic inputs
// rounded to the dtype under test (so references see exactly the stored values), float64
// references, and tolerances per dtype with their reason.

import { afterAll, beforeAll, expect } from "bun:test";
import type { DType } from "../../src/core/dtype.ts";
import type { Device } from "../../src/core/device.ts";
import { roundBf16, roundF16 } from "../../src/core/half.ts";
import { hasBackend } from "../../src/backends/registry.ts";
import { Tensor } from "../../src/tensor/tensor.ts";
import { tensor } from "../../src/tensor/creation.ts";
import { memoryStats } from "../../src/tensor/memory.ts";

/** Devices every op test runs on: the CPU always, CUDA (real or emulated) when its backend is loaded. */
export function testDevices(): Device[] {
  const list: Device[] = ["cpu"];
  if (hasBackend("cuda")) list.push("cuda");
  return list;
}

export const FLOAT_DTYPES: DType[] = ["float32", "float16", "bfloat16"];

/** Round a float64 value to what a tensor of `dtype` stores. */
export function roundTo(dtype: DType, v: number): number {
  if (dtype === "float16") return roundF16(v);
  if (dtype === "bfloat16") return roundBf16(v);
  if (dtype === "float32") return Math.fround(v);
  return v;
}

/** Small deterministic PRNG (mulberry32) for test inputs: independent of the library's generators. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Values uniform in [lo, hi), rounded to `dtype`. */
export function randomValues(n: number, dtype: DType, seed: number, lo = -1, hi = 1): Float64Array {
  const r = prng(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = roundTo(dtype, lo + (hi - lo) * r());
  return out;
}

/** A test input: the tensor and the exact values it holds (float64). */
export function randomTensor(shape: number[], dtype: DType, device: Device, seed: number, lo = -1, hi = 1): { t: Tensor; v: Float64Array } {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = randomValues(n, dtype, seed, lo, hi);
  return { t: tensor(v, { shape, dtype, device }), v };
}

/**
 * Tolerances of an op result in `dtype` against a float64 reference. The result is computed
 * in float32 and rounded once to the storage dtype, so the error is dominated by that final
 * rounding (half an ulp: 2^-11 relative for float16, 2^-8 for bfloat16) plus float32
 * accumulation error, which grows with the reduction length `k` (≈ k·2^-24 worst case,
 * usually √k).
 */
export function tolerance(dtype: DType, k = 1): { atol: number; rtol: number } {
  const acc = Math.sqrt(Math.max(1, k)) * 2 ** -22;
  switch (dtype) {
    case "float16":
      return { atol: 1e-3 + acc, rtol: 2 ** -10 + acc };
    case "bfloat16":
      return { atol: 8e-3 + acc, rtol: 2 ** -7 + acc };
    default:
      return { atol: 1e-6 + acc, rtol: 1e-5 + acc };
  }
}

/** Compare element-wise: |a - e| <= atol + rtol·|e| (NaN must match NaN, ±inf must match). Returns the max abs error. */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: { atol: number; rtol: number }, label: string): number {
  expect(actual.length, `${label}: length`).toBe(expected.length);
  let maxErr = 0;
  let worst = -1;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    if (Number.isNaN(e) || !Number.isFinite(e)) {
      if (!Object.is(a, e) && !(Number.isNaN(a) && Number.isNaN(e))) {
        throw new Error(`${label}: element ${i} is ${a}, expected ${e}`);
      }
      continue;
    }
    const err = Math.abs(a - e);
    if (!(err <= tol.atol + tol.rtol * Math.abs(e))) {
      if (worst < 0 || err > Math.abs(actual[worst]! - expected[worst]!)) worst = i;
    }
    if (err > maxErr || Number.isNaN(err)) maxErr = Number.isNaN(err) ? Infinity : err;
  }
  if (worst >= 0)
    throw new Error(
      `${label}: element ${worst} is ${actual[worst]}, expected ${expected[worst]} (|diff| ${Math.abs(actual[worst]! - expected[worst]!)} > atol ${tol.atol} + rtol ${tol.rtol}·|e|); max abs error ${maxErr}`,
    );
  return maxErr;
}

/** Read a tensor's values as float64 (any dtype). */
export function values(t: Tensor): Float64Array {
  const a = t.toTypedArray();
  return Float64Array.from(a as ArrayLike<number | bigint>, (x) => Number(x));
}

/** Half an ulp relative of each float dtype: the rounding of one stored value. */
export const HALF_ULP: Record<string, number> = { float32: 2 ** -24, float16: 2 ** -11, bfloat16: 2 ** -8 };

/** Register hooks asserting that each device's allocator live bytes are back to their start after the file's tests. */
export function expectLiveBytesReturn(devices: readonly Device[]): void {
  const live0 = new Map<Device, number>();
  beforeAll(() => {
    for (const d of devices) live0.set(d, memoryStats(d).live);
  });
  afterAll(() => {
    for (const d of devices) expect(memoryStats(d).live).toBe(live0.get(d)!);
  });
}
