// CPU reductions (sum, mean, max, min, argmax, argmin, var, prod over any set of dims) and
// softmax / log-softmax over the last dim. This is the reference backend: reductions
// accumulate in float64; max/min propagate NaN and argmax/argmin return the first index of the
// extreme value (NaN counts as the extreme), as torch does.

import type { ReduceOp, TensorView } from "../backend.ts";
import { numel } from "../../core/shape.ts";
import { commit, outF32, readF32, readNum } from "./strided.ts";
import { type SimdKernels, simdKernels } from "./simd-kernels.ts";

type Num = Float32Array | Float64Array;

/**
 * The input's dims merged into alternating runs of kept and reduced dims (size-1 dims dropped),
 * with the strides of each run in the contiguous input, in the kept-only output and in the
 * row-major index space of the reduced dims.
 */
interface Plan {
  size: number[];
  reduced: boolean[];
  inStride: number[];
  outStride: number[];
  redStride: number[];
}

function plan(shape: readonly number[], dims: readonly number[]): Plan {
  const size: number[] = [];
  const reduced: boolean[] = [];
  for (let d = 0; d < shape.length; d++) {
    const s = shape[d]!;
    if (s === 1) continue;
    const r = dims.includes(d);
    const last = size.length - 1;
    if (last >= 0 && reduced[last] === r) size[last]! *= s;
    else {
      size.push(s);
      reduced.push(r);
    }
  }
  const g = size.length;
  const inStride = new Array<number>(g);
  const outStride = new Array<number>(g);
  const redStride = new Array<number>(g);
  let si = 1;
  let so = 1;
  let sr = 1;
  for (let k = g - 1; k >= 0; k--) {
    inStride[k] = si;
    si *= size[k]!;
    if (reduced[k]) {
      outStride[k] = 0;
      redStride[k] = sr;
      sr *= size[k]!;
    } else {
      outStride[k] = so;
      redStride[k] = 0;
      so *= size[k]!;
    }
  }
  return { size, reduced, inStride, outStride, redStride };
}

/**
 * Walk the input in memory order one innermost run at a time: fn(inBase, outBase, redBase)
 * for each run of `inner` elements. Within one output element the reduced index only grows,
 * which is what makes argmax's "first index wins" a strict comparison.
 */
function forEachRun(p: Plan, total: number, fn: (ib: number, ob: number, rb: number) => void): void {
  const g = p.size.length;
  if (g === 0) {
    fn(0, 0, 0);
    return;
  }
  const inner = p.size[g - 1]!;
  const outer = total / inner;
  const nd = g - 1;
  const counter = new Array<number>(nd).fill(0);
  let ib = 0;
  let ob = 0;
  let rb = 0;
  for (let o = 0; o < outer; o++) {
    fn(ib, ob, rb);
    for (let k = nd - 1; k >= 0; k--) {
      counter[k]!++;
      ib += p.inStride[k]!;
      ob += p.outStride[k]!;
      rb += p.redStride[k]!;
      if (counter[k]! < p.size[k]!) break;
      ib -= p.inStride[k]! * p.size[k]!;
      ob -= p.outStride[k]! * p.size[k]!;
      rb -= p.redStride[k]! * p.size[k]!;
      counter[k] = 0;
    }
  }
}

/** acc[out] += Σ x (or Σ (x - center[out])² when `center` is given). */
function sumInto(p: Plan, xs: Num, total: number, acc: Float64Array, center: Float64Array | null): void {
  const g = p.size.length;
  const inner = g ? p.size[g - 1]! : 1;
  const innerReduced = g ? p.reduced[g - 1]! : false;
  if (center === null) {
    if (innerReduced)
      forEachRun(p, total, (ib, ob) => {
        let s = 0;
        for (let i = 0; i < inner; i++) s += xs[ib + i]!;
        acc[ob]! += s;
      });
    else
      forEachRun(p, total, (ib, ob) => {
        for (let i = 0; i < inner; i++) acc[ob + i]! += xs[ib + i]!;
      });
  } else {
    if (innerReduced)
      forEachRun(p, total, (ib, ob) => {
        const m = center[ob]!;
        let s = 0;
        for (let i = 0; i < inner; i++) {
          const d = xs[ib + i]! - m;
          s += d * d;
        }
        acc[ob]! += s;
      });
    else
      forEachRun(p, total, (ib, ob) => {
        for (let i = 0; i < inner; i++) {
          const d = xs[ib + i]! - center[ob + i]!;
          acc[ob + i]! += d * d;
        }
      });
  }
}

function prodInto(p: Plan, xs: Num, total: number, acc: Float64Array): void {
  const g = p.size.length;
  const inner = g ? p.size[g - 1]! : 1;
  if (g && p.reduced[g - 1])
    forEachRun(p, total, (ib, ob) => {
      let s = acc[ob]!;
      for (let i = 0; i < inner; i++) s *= xs[ib + i]!;
      acc[ob] = s;
    });
  else
    forEachRun(p, total, (ib, ob) => {
      for (let i = 0; i < inner; i++) acc[ob + i]! *= xs[ib + i]!;
    });
}

/**
 * Running max (sign = 1) or min (sign = -1) with NaN propagation; with `idx`, also the reduced
 * index of the first extreme (the first NaN when there is one).
 */
function extremeInto(p: Plan, xs: Num, total: number, best: Float64Array, idx: Float64Array | null, sign: 1 | -1): void {
  const g = p.size.length;
  const inner = g ? p.size[g - 1]! : 1;
  const innerReduced = g ? p.reduced[g - 1]! : false;
  // Compare on s·x so that one "greater than" serves both max and min.
  if (innerReduced)
    forEachRun(p, total, (ib, ob, rb) => {
      let b = best[ob]!;
      let bi = -1;
      for (let i = 0; i < inner; i++) {
        const v = sign * xs[ib + i]!;
        if (v > b || (v !== v && b === b)) {
          b = v;
          bi = i;
        }
      }
      best[ob] = b;
      if (idx !== null && bi >= 0) idx[ob] = rb + bi;
    });
  else
    forEachRun(p, total, (ib, ob, rb) => {
      for (let i = 0; i < inner; i++) {
        const v = sign * xs[ib + i]!;
        const b = best[ob + i]!;
        if (v > b || (v !== v && b === b)) {
          best[ob + i] = v;
          if (idx !== null) idx[ob + i] = rb;
        }
      }
    });
}

export function reduce(op: ReduceOp, x: TensorView, dims: readonly number[], out: TensorView, correction: number): void {
  const outN = numel(out.shape);
  if (outN === 0) return;
  let count = 1;
  for (const d of dims) count *= x.shape[d]!;
  const acc = new Float64Array(outN);
  if (count === 0) {
    // Empty reductions: the identity where there is one (the op layer rejects max/min/argmax).
    const fillValue = op === "sum" ? 0 : op === "prod" ? 1 : op === "argmax" || op === "argmin" ? 0 : NaN;
    acc.fill(fillValue);
    commit(out, acc);
    return;
  }
  const xs = readNum(x);
  const total = outN * count;
  const p = plan(x.shape, dims);
  switch (op) {
    case "sum":
      sumInto(p, xs, total, acc, null);
      break;
    case "mean":
      sumInto(p, xs, total, acc, null);
      for (let i = 0; i < outN; i++) acc[i]! /= count;
      break;
    case "var": {
      // Two passes (mean, then squared deviations) for accuracy; divisor max(0, N - correction) as torch.
      const mean = new Float64Array(outN);
      sumInto(p, xs, total, mean, null);
      for (let i = 0; i < outN; i++) mean[i]! /= count;
      sumInto(p, xs, total, acc, mean);
      const div = Math.max(0, count - correction);
      for (let i = 0; i < outN; i++) acc[i]! /= div;
      break;
    }
    case "prod":
      acc.fill(1);
      prodInto(p, xs, total, acc);
      break;
    case "max":
    case "min": {
      const sign = op === "max" ? 1 : -1;
      acc.fill(-Infinity);
      extremeInto(p, xs, total, acc, null, sign);
      if (sign < 0) for (let i = 0; i < outN; i++) acc[i] = -acc[i]!;
      break;
    }
    case "argmax":
    case "argmin": {
      const best = new Float64Array(outN).fill(-Infinity);
      extremeInto(p, xs, total, best, acc, op === "argmax" ? 1 : -1);
      break;
    }
    default:
      throw new Error(`cpu reduce: unknown op "${op as string}"`);
  }
  commit(out, acc);
}

/** max/min over `dim` and argmax/argmin in one pass (extremeInto fills both); the same results as the two reduces. */
export function reduceWithIndices(op: "max" | "min", x: TensorView, dim: number, values: TensorView, indices: TensorView): void {
  const outN = numel(values.shape);
  if (outN === 0) return;
  const count = x.shape[dim]!;
  if (count === 0) throw new Error(`cpu reduceWithIndices: cannot reduce over an empty dim`);
  const sign = op === "max" ? 1 : -1;
  const best = new Float64Array(outN).fill(-Infinity);
  const idx = new Float64Array(outN);
  extremeInto(plan(x.shape, [dim]), readNum(x), outN * count, best, idx, sign);
  if (sign < 0) for (let i = 0; i < outN; i++) best[i] = -best[i]!;
  commit(values, best);
  commit(indices, idx);
}

/** Longest row (floats) the SIMD softmax holds in the module's memory; longer rows run in JavaScript. */
const SIMD_ROW_MAX = 1 << 22;
/** Floats of one block of rows copied into the module's memory (64 KiB: stays in L2 through the passes). */
const SIMD_BLOCK = 1 << 14;

/**
 * Softmax (or log-softmax) over the last dim; a row that is entirely -inf has no finite max and gives NaN, as
 * torch, and so does a row holding NaN (or +inf).
 *
 * WebAssembly SIMD path (simd-kernels.ts; float32 values, rows up to SIMD_ROW_MAX): blocks of rows are copied
 * into the module's memory, each row padded with -inf to a multiple of 8 (exp(-inf - max) = 0 adds nothing; an
 * all -inf row stays NaN), and one call per block does, row by row, max → exp(x − max) in place with its float64
 * sum → ×(1/sum) (softmaxRows); log-softmax takes the max and the float64 Σ exp (rowMaxSum), log Σ per row here,
 * then x − max − log Σ in float64 lanes (logRows). x − max is rounded to float32 before the exp (as torch's
 * float32 kernels do): a relative error of |x − max|·2^-24 in exp(x − max) besides the exp's ≤ 1 ulp; the
 * probabilities are within ~5 ulp of exp(x − max)/Σ for that rounded difference.
 *
 * JavaScript path (the reference): max, Math.exp(x − max) and the sum in float64, one rounding when stored.
 */
export function softmax(x: TensorView, out: TensorView, log: boolean): void {
  const n = numel(x.shape);
  if (n === 0) return;
  const len = x.shape.length ? x.shape[x.shape.length - 1]! : 1;
  const rows = n / len;
  const xs = readF32(x);
  const o = outF32(out);
  const k = len <= SIMD_ROW_MAX ? simdKernels() : null;
  if (k) softmaxSimdRows(k, xs, o, rows, len, log);
  else softmaxRowsJs(xs, o, rows, len, log);
  commit(out, o);
}

function softmaxSimdRows(k: SimdKernels, xs: Float32Array, o: Float32Array, rows: number, len: number, log: boolean): void {
  const L8 = (len + 7) & ~7; // padded row
  const n8 = L8 >> 3;
  const per = Math.max(1, Math.floor(SIMD_BLOCK / L8)); // rows per block
  const st = per * L8 * 4; // byte offset of the per-row [max, log Σ] pairs (float64) after the block
  k.reserve(st + per * 16);
  const v = k.f32();
  const d = k.f64();
  const st8 = st >> 3;
  for (let r0 = 0; r0 < rows; r0 += per) {
    const nr = Math.min(per, rows - r0);
    const base = r0 * len;
    if (L8 === len) v.set(xs.subarray(base, base + nr * len));
    else
      for (let i = 0; i < nr; i++) {
        v.set(xs.subarray(base + i * len, base + (i + 1) * len), i * L8);
        v.fill(-Infinity, i * L8 + len, (i + 1) * L8);
      }
    if (!log) k.softmaxRows(0, nr, n8);
    else {
      k.rowMaxSum(0, nr, n8, st);
      for (let i = 0; i < nr; i++) d[st8 + 2 * i + 1] = Math.log(d[st8 + 2 * i + 1]!);
      k.logRows(0, nr, n8, st);
    }
    if (L8 === len) o.set(v.subarray(0, nr * len), base);
    else for (let i = 0; i < nr; i++) o.set(v.subarray(i * L8, i * L8 + len), base + i * len);
  }
}

function softmaxRowsJs(xs: Float32Array, o: Float32Array, rows: number, len: number, log: boolean): void {
  const e = new Float64Array(len); // exp(x - max) of one row, rounded once when stored
  for (let r = 0; r < rows; r++) {
    const base = r * len;
    let m = -Infinity;
    for (let i = 0; i < len; i++) {
      const v = xs[base + i]!;
      if (v > m || v !== v) m = v;
    }
    let s = 0;
    if (log) {
      for (let i = 0; i < len; i++) s += Math.exp(xs[base + i]! - m);
      const ls = Math.log(s);
      for (let i = 0; i < len; i++) o[base + i] = xs[base + i]! - m - ls;
    } else {
      for (let i = 0; i < len; i++) {
        const v = Math.exp(xs[base + i]! - m);
        e[i] = v;
        s += v;
      }
      const inv = 1 / s;
      for (let i = 0; i < len; i++) o[base + i] = e[i]! * inv;
    }
  }
}
