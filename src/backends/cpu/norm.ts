// CPU normalisation kernels (the backend contract's `groupNorm` and `layerNorm`), as torch.nn.functional.group_norm
// and layer_norm: population variance, y = (x − mean) / sqrt(var + eps) · weight + bias, optionally followed by a
// fused SiLU (group norm), and for group norm an optional per-channel addend [N, C] added first (each sum rounded
// as the binary add stores it, so the fused call normalises the same values as add-then-groupNorm). Statistics are in float64 and the affine transform runs in float64, the result rounded
// once to the output dtype.
//
// JavaScript path (the reference, and BD_CPU_SIMD=0): two-pass statistics (mean, then Σ(x − mean)²), so large
// means do not cancel; SiLU in float64 before the rounding.
//
// WebAssembly SIMD path (simd-kernels.ts; float32 values): a group (≤ RESIDENT floats) or a block of layer-norm
// rows is copied into the module's memory once; the statistics are one pass of float64 moments about a pivot
// (class Moments), the affine transform is f64(x)·scale + shift (group norm) or ((f64(x) − mean)·rstd)·w + b
// (layer norm) in float64 lanes rounded once, so the normalised values are the JavaScript path's up to the last
// bits of the float64 statistics, which rarely move a rounding (a [2,320,64,64] tensor with per-channel offsets
// and scales, G = 32: bit-identical output). The SiLU then runs in float32 on
// the rounded value, y / (1 + exp(−y)) (≤ 3 ulp for y ≥ −88.3; −0 below, where |silu(y)| < 4e-37), as torch's
// float32 kernels compute it. Larger groups stream through the memory in blocks (two reads of the input).

import type { TensorView } from "../backend.ts";
import type { DType } from "../../core/dtype.ts";
import { roundBf16, roundF16 } from "../../core/half.ts";
import { hostAlloc } from "../../core/host-memory.ts";
import { numel } from "../../core/shape.ts";
import { commit, outF32, readF32 } from "./strided.ts";
import { type SimdKernels, simdKernels } from "./simd-kernels.ts";

/** Floats of one group held in the SIMD module's memory at once (256 KiB, in L2); larger groups stream. */
const RESIDENT = 1 << 16;
/** Floats per streamed block / per block of layer-norm rows. */
const BLOCK = 1 << 14;

/** Mean and 1/sqrt(var + eps) of xs[off, off + n) (two-pass, float64). */
function stats(xs: Float32Array, off: number, n: number, eps: number): [number, number] {
  let sum = 0;
  for (let i = off, end = off + n; i < end; i++) sum += xs[i]!;
  const mean = n > 0 ? sum / n : 0;
  let sq = 0;
  for (let i = off, end = off + n; i < end; i++) {
    const d = xs[i]! - mean;
    sq += d * d;
  }
  const variance = n > 0 ? sq / n : 0;
  return [mean, 1 / Math.sqrt(variance + eps)];
}

/**
 * Running float64 moments about a pivot K: Σ(x − K) and Σ(x − K)², accumulated block by block by the SIMD kernel
 * (four float64 partial sums; the last n mod 4 values here), giving the mean and the population variance in one
 * pass: var = Σ(x − K)²/n − (Σ(x − K)/n)². K is the mean of the first (up to) 64 values, so (mean − K)² is small
 * against the variance and the subtraction does not cancel: the relative error of the variance is bounded by about
 * (1 + (mean − K)²/var)·n·2^-53 (1e-11 for 65536 values and a pivot within 1σ of the mean); the two-pass formula's
 * bound is n·2^-53. Measured on [2,320,64,64], G = 32, per-channel offsets up to ±10: mean within 5e-15 and
 * 1/σ within 6e-14 relative of the two-pass values.
 */
class Moments {
  s1 = 0;
  s2 = 0;
  n = 0;
  readonly k: number;
  constructor(xs: Float32Array, off: number, size: number) {
    const m = Math.min(size, 64);
    let s = 0;
    for (let i = off; i < off + m; i++) s += xs[i]!;
    this.k = Math.fround(s / m);
  }
  /** Add xs[off, off + n), already copied to byte `p` of the module's memory; `slot`: 16 scratch bytes there. */
  add(kern: SimdKernels, d: Float64Array, p: number, slot: number, xs: Float32Array, off: number, n: number): void {
    kern.moments(p, n >> 2, this.k, slot);
    let s1 = d[slot >> 3]!;
    let s2 = d[(slot >> 3) + 1]!;
    for (let i = off + (n & ~3), end = off + n; i < end; i++) {
      const v = xs[i]! - this.k;
      s1 += v;
      s2 += v * v;
    }
    this.s1 += s1;
    this.s2 += s2;
    this.n += n;
  }
  /** [mean, 1/sqrt(var + eps)] */
  stats(eps: number): [number, number] {
    const m1 = this.s1 / this.n;
    const variance = Math.max(0, this.s2 / this.n - m1 * m1);
    return [this.k + m1, 1 / Math.sqrt(variance + eps)];
  }
}

/**
 * x: [N, C, ...spatial]; statistics per (n, group of C/groups channels) over the channels' spatial extent;
 * weight/bias: [C] or null; out: x's shape.
 */
export function groupNorm(
  x: TensorView, weight: TensorView | null, bias: TensorView | null, groups: number, eps: number, out: TensorView,
  silu: boolean, add: TensorView | null = null,
): void {
  const total = numel(x.shape);
  if (total === 0) return;
  const N = x.shape[0]!;
  const C = x.shape[1]!;
  const S = total / (N * C); // spatial elements per channel
  const cg = C / groups;
  const xs = add ? plusChannels(readF32(x), readF32(add), x.dtype, S) : readF32(x);
  const ws = weight ? readF32(weight) : null;
  const bs = bias ? readF32(bias) : null;
  const ys = outF32(out);
  const k = simdKernels();
  for (let n = 0; n < N; n++) {
    for (let g = 0; g < groups; g++) {
      const base = (n * C + g * cg) * S;
      if (k) {
        groupSimd(k, xs, ws, bs, ys, base, g * cg, cg, S, eps, silu);
        continue;
      }
      const [mean, rstd] = stats(xs, base, cg * S, eps);
      for (let c0 = 0; c0 < cg; c0++) {
        const c = g * cg + c0;
        // y = x·scale + shift folds mean, rstd and the affine parameters of channel c
        const scale = rstd * (ws ? ws[c]! : 1);
        const shift = (bs ? bs[c]! : 0) - mean * scale;
        const off = base + c0 * S;
        if (silu) {
          for (let i = off, end = off + S; i < end; i++) {
            const y = xs[i]! * scale + shift;
            ys[i] = y / (1 + Math.exp(-y));
          }
        } else {
          for (let i = off, end = off + S; i < end; i++) ys[i] = xs[i]! * scale + shift;
        }
      }
    }
  }
  commit(out, ys);
}

/**
 * x [N, C, S] + add [N, C] per channel, each sum rounded as the CPU's binary add stores it (float32, then the
 * dtype): the values a separate add would have given the norm.
 */
function plusChannels(xs: Float32Array, as: Float32Array, dtype: DType, S: number): Float32Array {
  const v = hostAlloc(4 * xs.length, "float32 scratch of a CPU kernel", () => new Float32Array(xs.length));
  const round = dtype === "float16" ? roundF16 : dtype === "bfloat16" ? roundBf16 : null;
  for (let nc = 0; nc < as.length; nc++) {
    const a = as[nc]!;
    for (let i = nc * S, end = i + S; i < end; i++) v[i] = xs[i]! + a; // float32 store
    if (round) for (let i = nc * S, end = i + S; i < end; i++) v[i] = round(v[i]!);
  }
  return v;
}

/** One group (channels c0 .. c0 + cg of S elements each, from xs[base]) through the SIMD kernels. */
function groupSimd(
  k: SimdKernels, xs: Float32Array, ws: Float32Array | null, bs: Float32Array | null, ys: Float32Array, base: number,
  c0: number, cg: number, S: number, eps: number, silu: boolean,
): void {
  const size = cg * S;
  let mean: number;
  let rstd: number;
  if (size <= RESIDENT) {
    // input at float 0, output from float dst (each channel's last vector may spill into the next channel's
    // output, which is written afterwards, or into the slack after the last one)
    const dst = (size + 7) & ~7;
    const slot = ((dst + size + 5) & ~1) * 4; // after 4 floats of spill, 8-byte aligned
    k.reserve(slot + 16);
    const v = k.f32();
    v.set(xs.subarray(base, base + size));
    const mo = new Moments(xs, base, size);
    mo.add(k, k.f64(), 0, slot, xs, base, size);
    [mean, rstd] = mo.stats(eps);
    const m4 = (S + 3) >> 2;
    for (let j = 0; j < cg; j++) {
      const c = c0 + j;
      const scale = rstd * (ws ? ws[c]! : 1);
      const shift = (bs ? bs[c]! : 0) - mean * scale;
      k.affine(j * S * 4, (dst + j * S) * 4, m4, scale, shift);
    }
    if (silu) k.activation("silu", dst * 4, dst * 4, (size + 3) >> 2);
    ys.set(v.subarray(dst, dst + size), base);
    return;
  }
  // streamed: the moments block by block, then each channel block by block, in place
  const slot = (BLOCK + 4) * 4;
  k.reserve(slot + 16);
  const v = k.f32();
  const d = k.f64();
  const mo = new Moments(xs, base, size);
  for (let o = base, end = base + size; o < end; o += BLOCK) {
    const m = Math.min(BLOCK, end - o);
    v.set(xs.subarray(o, o + m));
    mo.add(k, d, 0, slot, xs, o, m);
  }
  [mean, rstd] = mo.stats(eps);
  for (let j = 0; j < cg; j++) {
    const c = c0 + j;
    const scale = rstd * (ws ? ws[c]! : 1);
    const shift = (bs ? bs[c]! : 0) - mean * scale;
    for (let o = base + j * S, end = o + S; o < end; o += BLOCK) {
      const m = Math.min(BLOCK, end - o);
      v.set(xs.subarray(o, o + m));
      k.affine(0, 0, (m + 3) >> 2, scale, shift);
      if (silu) k.activation("silu", 0, 0, (m + 3) >> 2);
      ys.set(v.subarray(0, m), o);
    }
  }
}

/** Normalise each row of `normSize` trailing elements; weight/bias hold normSize values (or are null). */
export function layerNorm(
  x: TensorView, weight: TensorView | null, bias: TensorView | null, normSize: number, eps: number, out: TensorView,
): void {
  const total = numel(x.shape);
  if (total === 0 || normSize === 0) return;
  const rows = total / normSize;
  const xs = readF32(x);
  const ws = weight ? readF32(weight) : null;
  const bs = bias ? readF32(bias) : null;
  const ys = outF32(out);
  const k = normSize <= RESIDENT ? simdKernels() : null;
  if (k) layerNormSimd(k, xs, ws, bs, ys, rows, normSize, eps);
  else
    for (let r = 0; r < rows; r++) {
      const off = r * normSize;
      const [mean, rstd] = stats(xs, off, normSize, eps);
      if (ws && bs) {
        for (let i = 0; i < normSize; i++) ys[off + i] = (xs[off + i]! - mean) * rstd * ws[i]! + bs[i]!;
      } else {
        for (let i = 0; i < normSize; i++) {
          let y = (xs[off + i]! - mean) * rstd;
          if (ws) y *= ws[i]!;
          if (bs) y += bs[i]!;
          ys[off + i] = y;
        }
      }
    }
  commit(out, ys);
}

/**
 * Layer norm through the SIMD kernels: blocks of rows copied in at float 0, output rows from float `dst`, the
 * weight and bias (1 and 0 where absent: y·1 + 0 = y, but for −0 becoming +0) after that.
 */
function layerNormSimd(
  k: SimdKernels, xs: Float32Array, ws: Float32Array | null, bs: Float32Array | null, ys: Float32Array, rows: number,
  n: number, eps: number,
): void {
  const per = Math.max(1, Math.floor(BLOCK / n)); // rows per block
  const span = (per * n + 4 + 7) & ~7; // + 4: the last row's last vector may spill over its end
  const [dst, wOff] = [span, 2 * span];
  const bOff = wOff + ((n + 7) & ~7);
  const slot = ((bOff + n + 5) & ~1) * 4; // 8-byte aligned
  k.reserve(slot + 16);
  const v = k.f32();
  const d = k.f64();
  if (ws) v.set(ws, wOff);
  else v.fill(1, wOff, wOff + n);
  if (bs) v.set(bs, bOff);
  else v.fill(0, bOff, bOff + n);
  const m4 = (n + 3) >> 2;
  for (let r0 = 0; r0 < rows; r0 += per) {
    const nr = Math.min(per, rows - r0);
    const base = r0 * n;
    v.set(xs.subarray(base, base + nr * n));
    for (let i = 0; i < nr; i++) {
      const off = base + i * n;
      const p = i * n * 4;
      const mo = new Moments(xs, off, n);
      mo.add(k, d, p, slot, xs, off, n);
      const [mean, rstd] = mo.stats(eps);
      k.lnAffine(p, (dst + i * n) * 4, m4, mean, rstd, wOff * 4, bOff * 4);
    }
    ys.set(v.subarray(dst, dst + nr * n), base);
  }
}
