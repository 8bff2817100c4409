// GroupNorm split in two, for normalising an image held in pieces (the seamless tiled VAE decode):
// groupStatistics() gives one piece's per-(sample, group) count, mean and M2 (the sum of squared
// deviations from that mean) in float32; mergeGroupStatistics() combines two pieces' statistics exactly
// (Chan et al.'s parallel variance update, no E[x²] − E[x]² cancellation); groupNormWithStatistics()
// normalises a piece with given (whole-image) statistics: (x − mean)·rsqrt(M2/count + eps)·weight + bias,
// optionally followed by SiLU. Built from existing tensor ops, so every backend (CPU, CUDA, meta) runs
// them; 16-bit inputs are computed in float32 and rounded once.

import { TensorError } from "../../core/errors.ts";
import { formatShape } from "../../core/shape.ts";
import { Tensor } from "./common.ts";
import { add, div, mul, rsqrt, silu as siluOp, square, sub } from "./elementwise.ts";
import { mean, sum } from "./reduce.ts";
import { tidy } from "../scope.ts";

/** Per-(sample, group) statistics of a piece: `count` elements per group, mean and M2 [N, G] float32. */
export interface GroupStatistics {
  count: number;
  mean: Tensor;
  m2: Tensor;
}

function checkGroups(op: string, x: Tensor, groups: number): void {
  if (x.ndim < 2) throw new TensorError(`${op}: input must be [N, C, ...], got ${formatShape(x.shape)}`);
  const C = x.shape[1]!;
  if (!Number.isInteger(groups) || groups < 1 || C % groups !== 0)
    throw new TensorError(`${op}: ${C} channels of ${formatShape(x.shape)} are not divisible into ${groups} groups`);
}

/** x [N, C, ...] -> { count = C/groups · Π rest, mean [N, G], m2 [N, G] } (float32, on x's device). */
export function groupStatistics(x: Tensor, groups: number): GroupStatistics {
  checkGroups("groupStatistics", x, groups);
  const N = x.shape[0]!;
  const count = x.numel / (N * groups);
  if (count === 0) throw new TensorError(`groupStatistics: input ${formatShape(x.shape)} is empty`);
  return tidy(() => {
    const xf = (x.dtype === "float32" ? x : x.to("float32")).reshape([N, groups, count]); // [N, G, n]
    const m = mean(xf, 2, true); // [N, G, 1]
    const m2 = sum(square(sub(xf, m)), 2); // [N, G]
    return { count, mean: m.reshape([N, groups]), m2 };
  });
}

/** The statistics of the union of two disjoint pieces (same N, G, device); the inputs are kept. */
export function mergeGroupStatistics(a: GroupStatistics, b: GroupStatistics): GroupStatistics {
  if (a.mean.shape.join() !== b.mean.shape.join())
    throw new TensorError(`mergeGroupStatistics: shapes differ: ${formatShape(a.mean.shape)} vs ${formatShape(b.mean.shape)}`);
  const n = a.count + b.count;
  return tidy(() => {
    const delta = sub(b.mean, a.mean);
    const m = add(a.mean, mul(delta, b.count / n));
    const m2 = add(add(a.m2, b.m2), mul(square(delta), (a.count * b.count) / n));
    return { count: n, mean: m, m2 };
  });
}

/** Release a statistics record's tensors. */
export function disposeGroupStatistics(s: GroupStatistics): void {
  s.mean.dispose();
  s.m2.dispose();
}

/**
 * GroupNorm of x [N, C, ...] with the given statistics (population variance M2/count) instead of x's
 * own; optional per-channel weight / bias [C]; `silu` applies x·sigmoid(x) to the result.
 */
export function groupNormWithStatistics(
  x: Tensor, groups: number, stats: GroupStatistics, weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5,
  opts: { silu?: boolean } = {},
): Tensor {
  const op = "groupNormWithStatistics";
  checkGroups(op, x, groups);
  const [N, C] = x.shape as [number, number];
  if (stats.mean.shape.join() !== `${N},${groups}` || stats.m2.shape.join() !== `${N},${groups}`)
    throw new TensorError(`${op}: statistics must be [${N}, ${groups}] for input ${formatShape(x.shape)}, got ${formatShape(stats.mean.shape)}`);
  for (const [name, t] of [["weight", weight], ["bias", bias]] as const)
    if (t && (t.ndim !== 1 || t.shape[0] !== C))
      throw new TensorError(`${op}: ${name} must have shape [${C}] for input ${formatShape(x.shape)}, got ${formatShape(t.shape)}`);
  if (!(Number.isFinite(eps) && eps >= 0)) throw new TensorError(`${op}: eps must be a finite number ≥ 0, got ${eps}`);
  const f32 = (t: Tensor) => (t.dtype === "float32" ? t : t.to("float32"));
  const ones = new Array<number>(x.ndim - 2).fill(1);
  return tidy(() => {
    const perChannel = (g: Tensor) => g.reshape([N, groups, 1]).expand([N, groups, C / groups]).reshape([N, C, ...ones]); // [N, C, 1…]
    const rstd = rsqrt(add(div(stats.m2, stats.count), eps)); // [N, G]
    // each full-size intermediate is freed as soon as the next exists: at most two are alive
    const xf = f32(x);
    let y = sub(xf, perChannel(stats.mean));
    if (xf !== x) xf.dispose();
    const next = (t: Tensor) => {
      y.dispose();
      y = t;
    };
    next(mul(y, perChannel(rstd)));
    if (weight) next(mul(y, f32(weight).reshape([1, C, ...ones])));
    if (bias) next(add(y, f32(bias).reshape([1, C, ...ones])));
    if (opts.silu) next(siluOp(y));
    if (y.dtype !== x.dtype) next(y.to(x.dtype));
    return y;
  });
}
