// TorchGenerator: torch's CPU generator (torch.Generator("cpu").manual_seed(s)) for float32
// randn / rand, reproducing torch 1.13's CPU kernels draw for draw:
//
// * uniform float: one 32-bit draw x -> (x & (2^24-1)) * 2^-24 (at::uniform_real_distribution<float>);
//   uniform double: random64() (first draw high) -> (v & (2^53-1)) * 2^-53.
// * randn with numel >= 16 (contiguous float32): normal_fill_AVX2 (DistributionTemplates.h). Fill the
//   whole output with uniform floats, then Box-Muller in blocks of 16 over the pairs (j, j+8):
//   u1 = 1 - d[j], u2 = d[j+8], r = sqrt(-2 log u1), theta = 2π·u2, d[j] = r cos theta, d[j+8] = r sin theta.
//   If numel % 16 != 0 the last 16 outputs are redrawn (16 fresh uniforms) and transformed again.
//   log / sincos are the Cephes-derived AVX polynomials of ATen's avx_mathfun.h (log256_ps,
//   sincos256_ps), emulated here op by op in float32, including the multiply-adds GCC contracts
//   into FMAs when it compiles that header with -mfma (C++ default -ffp-contract=fast).
// * randn with numel < 16: at::normal_distribution<double> per element: Box-Muller in double on two
//   53-bit uniforms (u1 -> angle, u2 -> radius), returning r·cos and caching r·sin in the generator;
//   the cache survives between calls and is cleared by manualSeed.
//
// The default seed of a fresh generator is torch's default_rng_seed_val, 67280421310721.

import { fma32 } from "../../core/float32.ts";
import { hostAlloc } from "../../core/host-memory.ts";
import { MT19937, type MT19937State, seedToU64 } from "./mt19937.ts";

export const TORCH_DEFAULT_SEED = 67280421310721n;

const fr = Math.fround;

const bitsF32 = new Float32Array(1);
const bitsU32 = new Uint32Array(bitsF32.buffer);

// ---- avx_mathfun.h log256_ps, one lane ------------------------------------------------------

const SQRTHF = fr(0.707106781186547524);
const LOG_P0 = fr(7.0376836292e-2);
const LOG_P1 = fr(-1.151461031e-1);
const LOG_P2 = fr(1.167699874e-1);
const LOG_P3 = fr(-1.2420140846e-1);
const LOG_P4 = fr(1.4249322787e-1);
const LOG_P5 = fr(-1.6668057665e-1);
const LOG_P6 = fr(2.0000714765e-1);
const LOG_P7 = fr(-2.4999993993e-1);
const LOG_P8 = fr(3.3333331174e-1);
const LOG_Q1 = fr(-2.1219444e-4);
const LOG_Q2 = fr(0.693359375);

/** Natural log of a float32 the way log256_ps computes it (Cephes logf polynomial), NaN for x <= 0. */
export function cephesLogf(xIn: number): number {
  if (!(xIn > 0)) return NaN;
  bitsF32[0] = xIn;
  let bits = bitsU32[0]!;
  if (bits < 0x00800000) bits = 0x00800000; // max(x, smallest normal)
  let e = (bits >>> 23) - 127 + 1; // exponent as float, plus one for the [0.5, 1) mantissa
  bitsU32[0] = (bits & 0x807fffff) | 0x3f000000;
  let x = bitsF32[0]!; // mantissa in [0.5, 1)
  if (x < SQRTHF) {
    e -= 1;
    x = fr(fr(x - 1) + x);
  } else {
    x = fr(x - 1);
  }
  const z = fr(x * x);
  let y = fma32(LOG_P0, x, LOG_P1);
  y = fma32(y, x, LOG_P2);
  y = fma32(y, x, LOG_P3);
  y = fma32(y, x, LOG_P4);
  y = fma32(y, x, LOG_P5);
  y = fma32(y, x, LOG_P6);
  y = fma32(y, x, LOG_P7);
  y = fma32(y, x, LOG_P8);
  y = fr(y * x);
  y = fma32(y, z, fr(e * LOG_Q1)); // y·z + e·q1: GCC fuses the first multiply
  y = fr(y - z * 0.5); // z·0.5 is exact
  x = fr(x + y);
  return fma32(e, LOG_Q2, x);
}

// ---- avx_mathfun.h sincos256_ps, one lane ---------------------------------------------------

const FOPI = fr(1.27323954473516); // 4/π
const DP1 = fr(-0.78515625);
const DP2 = fr(-2.4187564849853515625e-4);
const DP3 = fr(-3.77489497744594108e-8);
const SIN_P0 = fr(-1.9515295891e-4);
const SIN_P1 = fr(8.3321608736e-3);
const SIN_P2 = fr(-1.6666654611e-1);
const COS_P0 = fr(2.443315711809948e-5);
const COS_P1 = fr(-1.388731625493765e-3);
const COS_P2 = fr(4.166664568298827e-2);

/** Output slots of cephesSincosf (avoids an allocation per call). */
export const sincosOut = { sin: 0, cos: 0 };

/** sin and cos of a float32 the way sincos256_ps computes them; results in `sincosOut`. */
export function cephesSincosf(xIn: number): typeof sincosOut {
  let x = Math.abs(xIn);
  let sinNeg = xIn < 0 || Object.is(xIn, -0);
  const j = ((Math.trunc(fr(x * FOPI)) | 0) + 1) & ~1; // cvttps, then j = (j + 1) & ~1
  const y = j; // exact in float32 for the range we use
  if (j & 4) sinNeg = !sinNeg;
  const polyMask = (j & 2) === 0;
  const cosNeg = ((j - 2) & 4) === 0;
  // Extended-precision reduction x - y·π/4 in three parts (each step contracted to an FMA).
  x = fma32(y, DP1, x);
  x = fma32(y, DP2, x);
  x = fma32(y, DP3, x);
  const z = fr(x * x);
  // cos polynomial on [0, π/4]: ((c0 z + c1) z + c2) z·z - z/2 + 1
  let yc = fma32(COS_P0, z, COS_P1);
  yc = fma32(yc, z, COS_P2);
  yc = fr(yc * z);
  yc = fma32(yc, z, -fr(z * 0.5));
  yc = fr(yc + 1);
  // sin polynomial on [0, π/4]: ((s0 z + s1) z + s2) z·x + x
  let ys = fma32(SIN_P0, z, SIN_P1);
  ys = fma32(ys, z, SIN_P2);
  ys = fr(ys * z);
  ys = fma32(ys, x, x);
  const s = polyMask ? ys : yc;
  const c = polyMask ? yc : ys;
  sincosOut.sin = sinNeg ? -s : s;
  sincosOut.cos = cosNeg ? -c : c;
  return sincosOut;
}

// ---- the generator ----------------------------------------------------------------------------

const TWO_PI_F32 = fr(2 * Math.PI); // _mm256_set1_ps(2.0f * c10::pi<double>)
const TWO_NEG24 = 2 ** -24;
const TWO_NEG53 = 2 ** -53;
const TWO_POW32 = 2 ** 32;

export interface TorchGeneratorState {
  engine: MT19937State;
  nextDoubleNormal: number | null;
  nextFloatNormal: number | null;
}

export interface NormalOptions {
  mean?: number;
  std?: number;
}

function numelOf(shape: number | readonly number[]): number {
  if (typeof shape === "number") {
    if (!Number.isInteger(shape) || shape < 0) throw new RangeError(`bad element count ${shape}`);
    return shape;
  }
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new RangeError(`bad shape [${shape.join(", ")}]`);
    n *= d;
  }
  return n;
}

/** torch.Generator("cpu") work-alike: a seeded MT19937 plus the cached Box-Muller normals. */
export class TorchGenerator {
  readonly engine: MT19937;
  private nextDoubleNormal: number | null = null;
  private nextFloatNormal: number | null = null; // kept for state fidelity; float32 randn never uses it

  constructor(seed: number | bigint = TORCH_DEFAULT_SEED) {
    this.engine = new MT19937(seed);
  }

  /** torch.Generator.manual_seed: re-seed and drop cached normals. */
  manualSeed(seed: number | bigint): this {
    this.engine.seed(seed);
    this.nextDoubleNormal = null;
    this.nextFloatNormal = null;
    return this;
  }

  /** torch.Generator.initial_seed (the full 64-bit seed). */
  get initialSeed(): bigint {
    return this.engine.initialSeed;
  }

  /** One uniform float in [0, 1) from one 32-bit draw. */
  uniformFloat(): number {
    return (this.engine.nextU32() & 0xffffff) * TWO_NEG24;
  }

  /** One uniform double in [0, 1) from random64(). */
  uniformDouble(): number {
    const hi = this.engine.nextU32();
    const lo = this.engine.nextU32();
    return ((hi & 0x1fffff) * TWO_POW32 + lo) * TWO_NEG53;
  }

  /** at::normal_distribution<double>: one standard normal, using and refilling the cache. */
  normalDouble(): number {
    if (this.nextDoubleNormal !== null) {
      const v = this.nextDoubleNormal;
      this.nextDoubleNormal = null;
      return v;
    }
    const u1 = this.uniformDouble();
    const u2 = this.uniformDouble();
    const r = Math.sqrt(-2 * Math.log(1 - u2));
    const theta = 2 * Math.PI * u1;
    this.nextDoubleNormal = r * Math.sin(theta);
    return r * Math.cos(theta);
  }

  /** torch.rand(n) in float32: one draw per element. */
  rand(shape: number | readonly number[]): Float32Array {
    const n = numelOf(shape);
    const [out, bits] = hostAlloc(8 * n, "rand", () => [new Float32Array(n), new Uint32Array(n)] as const);
    this.engine.fillU32(bits);
    for (let i = 0; i < n; i++) out[i] = (bits[i]! & 0xffffff) * TWO_NEG24;
    return out;
  }

  /** torch.randn(n) / normal_(mean, std) in float32; successive calls continue the stream. */
  randn(shape: number | readonly number[], opts: NormalOptions = {}): Float32Array {
    const n = numelOf(shape);
    const mean = opts.mean ?? 0;
    const std = opts.std ?? 1;
    if (!(std >= 0)) throw new RangeError(`normal expects std >= 0, got ${std}`);
    const out = hostAlloc(4 * n, "randn", () => new Float32Array(n));
    if (n >= 16) {
      this.normalFill(out, fr(mean), fr(std));
    } else {
      for (let i = 0; i < n; i++) out[i] = this.normalDouble() * std + mean;
    }
    return out;
  }

  /** normal_fill_AVX2: uniforms first, then Box-Muller in blocks of 16, redoing a ragged tail. */
  private normalFill(data: Float32Array, mean: number, std: number): void {
    const n = data.length;
    const bits = this.engine.fillU32(hostAlloc(4 * n, "randn", () => new Uint32Array(n)));
    for (let i = 0; i < n; i++) data[i] = (bits[i]! & 0xffffff) * TWO_NEG24;
    for (let i = 0; i + 16 <= n; i += 16) boxMuller16(data, i, mean, std);
    if (n % 16 !== 0) {
      const tail = n - 16;
      for (let i = 0; i < 16; i++) data[tail + i] = this.uniformFloat();
      boxMuller16(data, tail, mean, std);
    }
  }

  getState(): TorchGeneratorState {
    return {
      engine: this.engine.getState(),
      nextDoubleNormal: this.nextDoubleNormal,
      nextFloatNormal: this.nextFloatNormal,
    };
  }

  setState(s: TorchGeneratorState): void {
    this.engine.setState(s.engine);
    this.nextDoubleNormal = s.nextDoubleNormal;
    this.nextFloatNormal = s.nextFloatNormal;
  }

  clone(): TorchGenerator {
    const g = new TorchGenerator(0);
    g.setState(this.getState());
    return g;
  }
}

/** normal_fill_16_AVX2 on data[off .. off+16), in place. */
function boxMuller16(data: Float32Array, off: number, mean: number, std: number): void {
  for (let j = off; j < off + 8; j++) {
    const u1 = fr(1 - data[j]!);
    const u2 = data[j + 8]!;
    const radius = fr(Math.sqrt(fr(-2 * cephesLogf(u1))));
    const sc = cephesSincosf(fr(TWO_PI_F32 * u2));
    data[j] = fma32(fr(radius * sc.cos), std, mean);
    data[j + 8] = fma32(fr(radius * sc.sin), std, mean);
  }
}

/** torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed)) as float32. */
export function randn(shape: readonly number[], opts: { seed: number | bigint } & NormalOptions): Float32Array {
  return new TorchGenerator(opts.seed).randn(shape, opts);
}

/** torch.rand(shape, generator=torch.Generator("cpu").manual_seed(seed)) as float32. */
export function rand(shape: readonly number[], opts: { seed: number | bigint }): Float32Array {
  return new TorchGenerator(opts.seed).rand(shape);
}

export { seedToU64 };
