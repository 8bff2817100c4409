// Timestep and sigma schedules as diffusers builds them with NumPy in float64: linspace/arange
// spacings with NumPy's round-half-to-even, σ(t) = √((1 − ᾱ_t)/ᾱ_t) interpolated at fractional
// timesteps (np.interp), Karras et al.'s ρ = 7 noise levels, and the inverse map σ → t through
// log σ. Shared by the sigma-parameterised schedulers (Euler, LMS, DPM-Solver, UniPC).

import { fma32, f32, log32, roundHalfEven, sqrt32, sub32 } from "../core/float32.ts";
import { alphasCumprodFor } from "./betas.ts";
import type { SchedulerConfig, TimestepSpacing } from "./config.ts";

/** np.linspace(start, stop, num, endpoint) in float64: start + i·step, the last value set to stop. */
export function npLinspace(start: number, stop: number, num: number, endpoint = true): number[] {
  const div = endpoint ? num - 1 : num;
  const delta = stop - start;
  const step = delta / div;
  const out: number[] = [];
  for (let i = 0; i < num; i++) {
    if (div <= 0) out.push(i * delta + start);
    else if (step === 0) out.push((i / div) * delta + start);
    else out.push(i * step + start);
  }
  if (endpoint && num > 1) out[num - 1] = stop;
  return out;
}

/** np.arange(start, stop, step) for float steps: start + i·(x1 − start) with x1 = start + step. */
export function npArange(start: number, stop: number, step: number): number[] {
  const n = Math.max(0, Math.ceil((stop - start) / step));
  const delta = start + step - start;
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(i === 0 ? start : start + i * delta);
  return out;
}

/**
 * The three spacings of Lin et al. 2023 (Table 2) as the DDIM/Euler family computes them, largest
 * first, before any cast: "linspace" = evenly over [0, T−1]; "leading" = k·⌊T/n⌋ + steps_offset;
 * "trailing" = round(T − k·T/n) − 1.
 */
export function spacedTimesteps(spacing: TimestepSpacing, trainSteps: number, n: number, stepsOffset: number): number[] {
  switch (spacing) {
    case "linspace":
      return npLinspace(0, trainSteps - 1, n).reverse();
    case "leading": {
      const ratio = Math.floor(trainSteps / n);
      return Array.from({ length: n }, (_, i) => roundHalfEven(i * ratio) + stepsOffset).reverse();
    }
    case "trailing":
      return npArange(trainSteps, 0, -trainSteps / n).map((v) => roundHalfEven(v) - 1);
  }
}

/**
 * The multistep solvers' spacings (DPM-Solver, UniPC): n+1 points of which the last (t = 0 end)
 * is dropped, rounded to integers; `lastTimestep` is T unless λ clipping shortens the range.
 */
export function solverTimesteps(spacing: TimestepSpacing, lastTimestep: number, trainSteps: number, n: number, stepsOffset: number): number[] {
  switch (spacing) {
    case "linspace":
      return npLinspace(0, lastTimestep - 1, n + 1).map(roundHalfEven).reverse().slice(0, n);
    case "leading": {
      const ratio = Math.floor(lastTimestep / (n + 1));
      return Array.from({ length: n + 1 }, (_, i) => roundHalfEven(i * ratio)).reverse().slice(0, n).map((t) => t + stepsOffset);
    }
    case "trailing":
      return npArange(lastTimestep, 0, -trainSteps / n).map((v) => roundHalfEven(v) - 1);
  }
}

/** σ_t = √((1 − ᾱ_t)/ᾱ_t) for every training step, in float32 (torch tensor math). */
export function trainSigmas(alphasCumprod: Float32Array): Float32Array {
  return alphasCumprod.map((a) => sqrt32(f32(sub32(1, a) / a)));
}

/**
 * ᾱ for the σ-parameterised schedulers: with zero terminal SNR (rescale_betas_zero_snr) ᾱ_T = 0
 * would make σ_T infinite, so diffusers sets it to float16's smallest subnormal, 2^-24.
 */
export function sigmaAlphasCumprod(cfg: SchedulerConfig): Float32Array {
  const alphasCumprod = alphasCumprodFor(cfg);
  if (cfg.rescale_betas_zero_snr) alphasCumprod[cfg.num_train_timesteps - 1] = 2 ** -24;
  return alphasCumprod;
}

/** The last sigma of a solver schedule: σ_min of training (final_sigmas_type "sigma_min") or 0 ("zero" or unset). */
export function finalSigma(finalSigmasType: string | undefined, alphasCumprod: Float32Array): number {
  return finalSigmasType === "sigma_min" ? sqrt32(f32(sub32(1, alphasCumprod[0]!) / alphasCumprod[0]!)) : 0;
}

/** np.interp(x, arange(len(fp)), fp) in float64 (fp holds float32 values). */
export function interpIndex(x: number, fp: ArrayLike<number>): number {
  const last = fp.length - 1;
  if (Number.isNaN(x)) return NaN;
  if (x <= 0) return fp[0]!;
  if (x >= last) return fp[last]!;
  const j = Math.floor(x);
  const slope = fp[j + 1]! - fp[j]!;
  return slope * (x - j) + fp[j]!;
}

/**
 * Karras et al. 2022 ("Elucidating the Design Space…", eq. 5): σ_i = (σ_max^{1/ρ} + i/(n−1)·
 * (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ with ρ = 7, in float64 like k-diffusion / diffusers.
 */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, n: number, rho = 7): number[] {
  const ramp = npLinspace(0, 1, n);
  const minInv = sigmaMin ** (1 / rho);
  const maxInv = sigmaMax ** (1 / rho);
  return ramp.map((r) => (maxInv + r * (minInv - maxInv)) ** rho);
}

const bitsF = new Float32Array(1);
const bitsU = new Uint32Array(bitsF.buffer);
const fromBits = (u: number): number => {
  bitsU[0] = u;
  return bitsF[0]!;
};
const NPY_SQRT1_2F = fromBits(0x3f3504f3);
const NPY_LOGE2F = fromBits(0x3f317218);
const LOG_P = [0, 9.999999999999998702752e-1, 2.112677543073053063722, 1.480000633576506585156, 3.808837741388407920751e-1, 2.589979117907922693523e-2].map(f32);
const LOG_Q = [1, 2.612677543073109236779, 2.453006071784736363091, 9.864942958519418960339e-1, 1.546476374983906719538e-1, 5.875095403124574342950e-3].map(f32);

/**
 * np.log of a float32 value as NumPy (≥ 1.20) computes it with AVX2/AVX-512F: mantissa m in
 * [½, 1) (doubled below √½), y = m − 1, a P5/Q5 rational approximation with FMA Horner steps,
 * plus e·ln2 — up to ~4 ulp from the true logarithm, which is what diffusers' float32 log σ holds.
 */
export function npLogF32(xIn: number): number {
  const x = f32(xIn);
  if (Number.isNaN(x)) return NaN;
  if (x < 0) return NaN;
  if (x === 0) return -Infinity;
  if (x === Infinity) return Infinity;
  bitsF[0] = x;
  const bits = bitsU[0]!;
  if (bits >>> 23 === 0) return log32(x); // subnormal: not reached by σ schedules
  let e = (bits >>> 23) - 126;
  let m = fromBits((bits & 0x007fffff) | 0x3f000000);
  if (m <= NPY_SQRT1_2F) {
    m = f32(m + m);
    e -= 1;
  }
  const y = f32(m - 1);
  let num = fma32(LOG_P[5]!, y, LOG_P[4]!);
  for (let k = 3; k >= 0; k--) num = fma32(num, y, LOG_P[k]!);
  let den = fma32(LOG_Q[5]!, y, LOG_Q[4]!);
  for (let k = 3; k >= 0; k--) den = fma32(den, y, LOG_Q[k]!);
  return fma32(e, NPY_LOGE2F, f32(num / den));
}

/** log σ of the training schedule as NumPy gives it for a float32 array (float32 values). */
export function logSigmas(sigmas: Float32Array): Float32Array {
  return sigmas.map((s) => npLogF32(s));
}

/**
 * diffusers' _sigma_to_t: the (fractional) training timestep whose σ matches, by linear
 * interpolation in log σ between the two neighbouring training steps. Precision follows NumPy
 * 1.24's value-based casting: log σ is float64, but everything it meets in a float32 array
 * (distances, the weight w) is float32; only (1 − w)·low + w·high is float64.
 */
export function sigmaToT(sigma: number, logSig: Float32Array): number {
  const ls32 = f32(Math.log(Math.max(sigma, 1e-10)));
  // low = the last index whose distance is >= 0, clipped to len − 2; 0 when none is.
  let low = 0;
  for (let j = 0; j < logSig.length; j++) if (f32(ls32 - logSig[j]!) >= 0) low = j;
  low = Math.min(low, logSig.length - 2);
  const lo = logSig[low]!;
  const hi = logSig[low + 1]!;
  let w = f32(f32(lo - ls32) / f32(lo - hi));
  w = Math.min(Math.max(w, 0), 1);
  return f32(1 - w) * low + w * (low + 1);
}
