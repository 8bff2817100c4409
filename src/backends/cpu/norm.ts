// CPU normalisation kernels (the backend contract's `groupNorm` and `layerNorm`), as torch.nn.functional.group_norm
// and layer_norm: population variance, y = (x − mean) / sqrt(var + eps) · weight + bias, optionally followed by a
// fused SiLU (group norm). Statistics are two-pass in float64 (mean, then Σ(x − mean)²), so large means do not
// cancel; the affine transform runs in float64 and the result is rounded once to the output dtype.

import type { TensorView } from "../backend.ts";
import { numel } from "../../tensor/shape.ts";
import { commit, outF32, readF32 } from "./strided.ts";

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
 * x: [N, C, ...spatial]; statistics per (n, group of C/groups channels) over the channels' spatial extent;
 * weight/bias: [C] or null; out: x's shape.
 */
export function groupNorm(
  x: TensorView, weight: TensorView | null, bias: TensorView | null, groups: number, eps: number, out: TensorView,
  silu: boolean,
): void {
  const total = numel(x.shape);
  if (total === 0) return;
  const N = x.shape[0]!;
  const C = x.shape[1]!;
  const S = total / (N * C); // spatial elements per channel
  const cg = C / groups;
  const xs = readF32(x);
  const ws = weight ? readF32(weight) : null;
  const bs = bias ? readF32(bias) : null;
  const ys = outF32(out);
  for (let n = 0; n < N; n++) {
    for (let g = 0; g < groups; g++) {
      const base = (n * C + g * cg) * S;
      const [mean, rstd] = stats(xs, base, cg * S, eps);
      for (let k = 0; k < cg; k++) {
        const c = g * cg + k;
        // y = x·scale + shift folds mean, rstd and the affine parameters of channel c
        const scale = rstd * (ws ? ws[c]! : 1);
        const shift = (bs ? bs[c]! : 0) - mean * scale;
        const off = base + k * S;
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
