// Exact float32 scalar arithmetic on JavaScript numbers, for code that must reproduce torch/NumPy float32 results
// bit for bit (schedulers, the torch CPU generator): a correctly rounded fmaf, the IEEE float32 + − × ÷ √ (float64 ops
// on float32 inputs, rounded once), SLEEF's expf, and round-half-to-even (torch.round / np.rint / np.round).

/** Round to nearest, ties to even (torch.round, np.rint, np.round); exact for every double. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x); // ties toward +inf
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

const fmaF64 = new Float64Array(1);
const fmaU32 = new Uint32Array(fmaF64.buffer); // [low word, high word] on little-endian hosts
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const LO = LITTLE_ENDIAN ? 0 : 1;
const HI = 1 - LO;

/**
 * fmaf(a, b, c) for float32 a, b, c, correctly rounded: a·b is exact in f64, the sum is rounded to
 * odd at 53 bits (TwoSum error decides the direction), which makes the final rounding to 24 bits exact.
 */
export function fma32(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const v = s - p;
  const err = p - (s - v) + (c - v);
  if (err === 0 || s !== s || s === Infinity || s === -Infinity) return Math.fround(s);
  fmaF64[0] = s;
  const lo = fmaU32[LO]!;
  if ((lo & 1) === 0) {
    if (err > 0 === s > 0) {
      fmaU32[LO] = lo + 1; // away from zero; an even low word cannot carry
    } else if (lo === 0) {
      fmaU32[LO] = 0xffffffff;
      fmaU32[HI] = fmaU32[HI]! - 1;
    } else {
      fmaU32[LO] = lo - 1;
    }
    return Math.fround(fmaF64[0]!);
  }
  return Math.fround(s);
}

// ---- float32 scalar arithmetic -------------------------------------------------------------
//
// diffusers computes per-step coefficients on 0-d float32 tensors: each operation rounds to
// float32. These helpers do the same on JS numbers (float64 ops on float32 inputs, rounded once,
// equal the IEEE float32 result for + - * / and sqrt). torch's CPU exp of a float32 tensor is
// SLEEF's 1-ulp expf (even for one element), which exp32 reproduces; log and expm1 (SLEEF's
// double-float u10 versions) are correctly rounded in practice, so Math.log/Math.expm1 serve.

export const f32 = Math.fround;
export const add32 = (a: number, b: number): number => f32(a + b);
export const sub32 = (a: number, b: number): number => f32(a - b);
export const mul32 = (a: number, b: number): number => f32(a * b);
export const div32 = (a: number, b: number): number => f32(a / b);
export const sqrt32 = (a: number): number => f32(Math.sqrt(a));
export const sq32 = (a: number): number => f32(a * a);
export const log32 = (a: number): number => f32(Math.log(a));
export const expm1_32 = (a: number): number => f32(Math.expm1(a));

const R_LN2F = f32(1.442695040888963407359924681001892137426645954152985934135449406931);
const L2UF = f32(0.693145751953125);
const L2LF = f32(1.428606765330187045e-6);
const EXPF_POLY = [
  0.000198527617612853646278381, 0.00139304355252534151077271, 0.00833336077630519866943359, 0.0416664853692054748535156,
  0.166666671633720397949219, 0.5,
].map(f32);

/**
 * e^a in float32 as SLEEF's xexpf (u10) computes it with FMA (torch's AVX2/AVX-512 exp):
 * a = q·ln2 + s (Cody–Waite, two-part ln2), e^s by a degree-7 polynomial, then · 2^q.
 */
export function exp32(a: number): number {
  const d = f32(a);
  if (Number.isNaN(d)) return NaN;
  if (d < -104) return 0;
  if (d > 100) return Infinity;
  const q = roundHalfEven(f32(d * R_LN2F));
  let s = fma32(q, -L2UF, d);
  s = fma32(q, -L2LF, s);
  let u = EXPF_POLY[0]!;
  for (let k = 1; k < EXPF_POLY.length; k++) u = fma32(u, s, EXPF_POLY[k]!);
  u = f32(1 + fma32(f32(s * s), u, s));
  const h = q >> 1; // ldexp in two exact halves, as SLEEF's vldexp2
  return f32(f32(u * 2 ** h) * 2 ** (q - h));
}
