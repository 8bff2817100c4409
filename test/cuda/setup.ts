// Shared setup of the CUDA tests: builds the emulated device once per process (scripts/build-kernels.ts
// --emu-only, cached), loads it through ffi/cuda, and offers small device-memory helpers. Without g++ the
// suites skip, saying why.

import { buildKernels } from "../../scripts/build-kernels.ts";
import { loadCuda, type CudaLibraries } from "../../ffi/cuda/index.ts";
import { cudaMemcpyKind } from "../../ffi/cuda/cudart.ts";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "../../src/core/half.ts";

export const HAS_GXX = Bun.which("g++") !== null;
if (!HAS_GXX) console.warn("[test/cuda] SKIPPED: g++ not found, so the emulated CUDA device cannot be built (apt-get install g++)");

let ready: Promise<CudaLibraries> | undefined;
/** The emulated cudart / cuBLAS / cuDNN / kernels, built on first use. */
export function emulatedCuda(): Promise<CudaLibraries> {
  ready ??= buildKernels({ emu: true, real: false }).then((r) => {
    if (!r.ok) throw new Error(`building the emulated device failed:\n${r.errors.join("\n")}`);
    return loadCuda({ emulate: true });
  });
  return ready;
}
export const BUILD_TIMEOUT = 600_000;

export type Typed = Float32Array | Float64Array | Uint16Array | Int32Array | BigInt64Array | Uint8Array | Uint32Array;

/** Device memory for tests: allocations are tracked and freed by freeAll(). */
export class Device {
  private readonly live = new Set<number>();
  private readonly out = new BigUint64Array(1);
  constructor(readonly cu: CudaLibraries) {}

  malloc(bytes: number): number {
    this.cu.check(this.cu.cudart.symbols.cudaMalloc(this.out, bytes), "cudaMalloc", `${bytes} bytes`);
    const p = Number(this.out[0]);
    this.live.add(p);
    return p;
  }
  free(p: number): void {
    this.cu.check(this.cu.cudart.symbols.cudaFree(p), "cudaFree");
    this.live.delete(p);
  }
  freeAll(): void {
    for (const p of this.live) this.free(p);
  }
  upload(a: Typed): number {
    const p = this.malloc(Math.max(1, a.byteLength));
    this.cu.check(this.cu.cudart.symbols.cudaMemcpy(p, a, a.byteLength, cudaMemcpyKind.hostToDevice), "cudaMemcpy");
    return p;
  }
  download<T extends Typed>(p: number, into: T): T {
    this.cu.check(this.cu.cudart.symbols.cudaMemcpy(into, p, into.byteLength, cudaMemcpyKind.deviceToHost), "cudaMemcpy");
    return into;
  }
}

/** Deterministic uniform values in [lo, hi) (mulberry32). */
export function random(n: number, seed: number, lo = -1, hi = 1): Float64Array {
  let s = seed >>> 0;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = lo + (hi - lo) * (((t ^ (t >>> 14)) >>> 0) / 4294967296);
  }
  return out;
}

/** Max over i of |got - ref| / (atol + rtol·|ref|); ≤ 1 passes. NaN must match NaN. */
export function errorRatio(got: ArrayLike<number>, ref: ArrayLike<number>, atol: number, rtol: number): number {
  let worst = 0;
  for (let i = 0; i < ref.length; i++) {
    const g = got[i]!, r = ref[i]!;
    if (Number.isNaN(r) || Number.isNaN(g)) {
      if (Number.isNaN(r) !== Number.isNaN(g)) return Infinity;
      continue;
    }
    if (g === r) continue;
    worst = Math.max(worst, Math.abs(g - r) / (atol + rtol * Math.abs(r)));
  }
  return worst;
}

// ---- values in each kernel dtype

export type Tag = "f32" | "f16" | "bf16" | "i32" | "i64" | "u8";
export const FLOAT_TAGS = ["f32", "f16", "bf16"] as const;
/** Unit roundoff (ulp of 1) per float dtype. */
export const EPS = { f32: 2 ** -23, f16: 2 ** -10, bf16: 2 ** -7 } as const;
const WIDTH: Record<Tag, number> = { f32: 4, f16: 2, bf16: 2, i32: 4, i64: 8, u8: 1 };

/** An empty host array of `n` elements of `tag`. */
export function hostArray(tag: Tag, n: number): Typed {
  switch (tag) {
    case "f32": return new Float32Array(n);
    case "f16": case "bf16": return new Uint16Array(n);
    case "i32": return new Int32Array(n);
    case "i64": return new BigInt64Array(n);
    case "u8": return new Uint8Array(n);
  }
}
export const bytesOf = (tag: Tag) => WIDTH[tag];

/** `values` stored as `tag` (floats rounded to nearest even, integers truncated and wrapped), and the exact stored values. */
export function encode(values: ArrayLike<number>, tag: Tag): { host: Typed; exact: Float64Array } {
  const host = hostArray(tag, values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (tag === "f16") (host as Uint16Array)[i] = f32ToF16(v);
    else if (tag === "bf16") (host as Uint16Array)[i] = f32ToBf16(v);
    else if (tag === "i64") (host as BigInt64Array)[i] = BigInt(Math.trunc(v));
    else (host as Float32Array | Int32Array | Uint8Array)[i] = tag === "f32" ? v : Math.trunc(v);
  }
  return { host, exact: decode(host, tag) };
}
export function decode(host: Typed, tag: Tag): Float64Array {
  if (tag === "f16") return Float64Array.from(host as Uint16Array, (b) => f16ToF32(b));
  if (tag === "bf16") return Float64Array.from(host as Uint16Array, (b) => bf16ToF32(b));
  if (tag === "i64") return Float64Array.from(host as BigInt64Array, (b) => Number(b));
  return Float64Array.from(host as Float32Array);
}
/** Round a float64 value as storing it in a float dtype would. */
export function roundTo(v: number, tag: (typeof FLOAT_TAGS)[number]): number {
  return tag === "f32" ? Math.fround(v) : tag === "f16" ? f16ToF32(f32ToF16(v)) : bf16ToF32(f32ToBf16(v));
}
