// Normalisation and resampling ops with torch semantics: groupNorm (optionally with a fused SiLU and a fused
// per-channel addend before it, as diffusers' ResnetBlock2D uses them), layerNorm over trailing dims, and nearest-neighbour resizing of NCHW images:
// interpolateNearest (torch.nn.functional.interpolate(mode="nearest") with `size` or `scale_factor`) and
// upsampleNearest2x (diffusers' Upsample2D). Shapes and dtypes are checked here; backends only compute.

import { nearestIndexTable } from "../../core/nearest.ts";
import { tensor } from "../creation.ts";
import { TensorError } from "../../core/errors.ts";
import { formatShape, shapeEquals } from "../../core/shape.ts";
import { Tensor, backendFor, disposeAll, requireFloat, sameDType } from "./common.ts";
import { memoryFormatOf } from "../../core/memory-format.ts";

function checkEps(op: string, eps: number): void {
  if (!(Number.isFinite(eps) && eps >= 0)) throw new TensorError(`${op}: eps must be a finite number ≥ 0, got ${eps}`);
}

/** Run a backend call into a fresh output, disposing the output if the call throws. */
function into(out: Tensor, run: (out: Tensor) => void): Tensor {
  try {
    run(out);
  } catch (e) {
    out.dispose();
    throw e;
  }
  return out;
}

export interface GroupNormOptions {
  /** Apply x·sigmoid(x) to the result (diffusers' ResnetBlock2D follows each norm with SiLU). */
  silu?: boolean;
  /**
   * A per-channel addend, [N, C] or [N, C, 1, …] (N may be 1): groupNorm(x + add) in one pass without storing the
   * sum — diffusers' ResnetBlock2D adds the projected time embedding right before norm2. Each sum is rounded to
   * x's dtype as the separate add would store it, so the result equals add-then-groupNorm on the same backend up to
   * the backend's own rounding of the statistics.
   */
  add?: Tensor | null;
}

/**
 * torch.nn.functional.group_norm: x [N, C, ...] normalised per (sample, group of C/groups channels) with the
 * population variance; optional per-channel weight/bias [C]; options: a fused SiLU after, a per-channel addend before.
 */
export function groupNorm(
  x: Tensor, groups: number, weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5, opts: GroupNormOptions = {},
): Tensor {
  const op = "groupNorm";
  const addend = opts.add ?? null;
  const backend = backendFor(op, x, weight, bias, addend);
  requireFloat(op, x);
  sameDType(op, x, ...[weight, bias, addend].filter((t): t is Tensor => !!t));
  checkEps(op, eps);
  if (x.ndim < 2) throw new TensorError(`groupNorm: input must be [N, C, ...], got ${formatShape(x.shape)}`);
  const [N, C] = [x.shape[0]!, x.shape[1]!];
  if (!Number.isInteger(groups) || groups < 1 || C % groups !== 0)
    throw new TensorError(`groupNorm: ${C} channels of ${formatShape(x.shape)} are not divisible into ${groups} groups`);
  for (const [name, t] of [["weight", weight], ["bias", bias]] as const)
    if (t && (t.ndim !== 1 || t.shape[0] !== C))
      throw new TensorError(`groupNorm: ${name} must have shape [${C}] for input ${formatShape(x.shape)}, got ${formatShape(t.shape)}`);
  if (addend) {
    const s = addend.shape;
    const ok = (s.length === 2 || s.length === x.ndim) && (s[0] === N || s[0] === 1) && s[1] === C && s.slice(2).every((d) => d === 1);
    if (!ok)
      throw new TensorError(
        `groupNorm: add must be a per-channel addend [${N}, ${C}] or [${N}, ${C}${", 1".repeat(x.ndim - 2)}] (N may be 1) for input ` +
          `${formatShape(x.shape)}, got ${formatShape(s)}; add other shapes with add() first`,
      );
  }
  const a2 = addend ? addend.reshape([addend.shape[0]!, C]) : null; // [N or 1, C]
  const av = a2 && a2.shape[0] !== N ? a2.expand([N, C]) : a2;
  try {
    return into(Tensor.empty(x.shape, x.dtype, x.device, memoryFormatOf(x)), (out) => // x's memory format
      backend.groupNorm(x, weight ?? null, bias ?? null, groups, eps, out, opts.silu ?? false, av),
    );
  } finally {
    if (av !== a2) av?.dispose();
    a2?.dispose();
  }
}

/**
 * torch.nn.functional.layer_norm: normalise over the trailing dims given by `normalizedShape` (a size or sizes);
 * optional elementwise weight/bias of that shape.
 */
export function layerNorm(
  x: Tensor, normalizedShape: number[] | number, weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5,
): Tensor {
  const op = "layerNorm";
  const backend = backendFor(op, x, weight, bias);
  requireFloat(op, x);
  sameDType(op, x, ...[weight, bias].filter((t): t is Tensor => !!t));
  checkEps(op, eps);
  const ns = typeof normalizedShape === "number" ? [normalizedShape] : normalizedShape.slice();
  if (ns.length === 0 || ns.length > x.ndim || !shapeEquals(x.shape.slice(x.ndim - ns.length), ns))
    throw new TensorError(`layerNorm: normalizedShape ${formatShape(ns)} does not match the trailing dims of input ${formatShape(x.shape)}`);
  for (const [name, t] of [["weight", weight], ["bias", bias]] as const)
    if (t && !shapeEquals(t.shape, ns))
      throw new TensorError(`layerNorm: ${name} must have shape ${formatShape(ns)}, got ${formatShape(t.shape)}`);
  const normSize = ns.reduce((a, b) => a * b, 1);
  return into(Tensor.empty(x.shape, x.dtype, x.device), (out) =>
    backend.layerNorm(x, weight ?? null, bias ?? null, normSize, eps, out),
  );
}

export interface InterpolateOptions {
  /** Output [height, width]. */
  size?: [number, number];
  /** Output = floor(input · factor) per dim; the source index uses 1/factor as torch does. */
  scaleFactor?: number | [number, number];
}

/**
 * torch.nn.functional.interpolate(x, size | scale_factor, mode="nearest") for NCHW x (legacy nearest rule:
 * src = min(floor(dst · scale), in − 1) in float32; see nearestIndex in backends/cpu/resample.ts).
 */
export function interpolateNearest(x: Tensor, opts: InterpolateOptions): Tensor {
  const op = "interpolateNearest";
  const backend = backendFor(op, x);
  if (x.ndim !== 4) throw new TensorError(`interpolateNearest: input must be 4-D [N, C, H, W], got ${formatShape(x.shape)}`);
  if ((opts.size === undefined) === (opts.scaleFactor === undefined))
    throw new TensorError("interpolateNearest: pass exactly one of size and scaleFactor");
  const [N, C, H, W] = x.shape as [number, number, number, number];
  let OH: number;
  let OW: number;
  let factors: [number, number] | undefined;
  if (opts.size) {
    [OH, OW] = opts.size;
    if (!Number.isInteger(OH) || !Number.isInteger(OW) || OH < 1 || OW < 1)
      throw new TensorError(`interpolateNearest: size must be two positive integers, got ${JSON.stringify(opts.size)}`);
  } else {
    const sf = opts.scaleFactor!;
    factors = typeof sf === "number" ? [sf, sf] : [sf[0], sf[1]];
    if (!factors.every((f) => Number.isFinite(f) && f > 0))
      throw new TensorError(`interpolateNearest: scaleFactor must be positive, got ${JSON.stringify(sf)}`);
    OH = Math.floor(H * factors[0]);
    OW = Math.floor(W * factors[1]);
    if (OH < 1 || OW < 1)
      throw new TensorError(`interpolateNearest: scaleFactor ${JSON.stringify(sf)} gives an empty output for ${formatShape(x.shape)}`);
  }
  const shape = [N, C, OH, OW];
  // The backend kernel uses the size-ratio scale; a scale factor whose reciprocal picks other source indices is
  // applied as two index selections with torch's tables instead.
  if (factors) {
    const hIdx = nearestIndexTable(H, OH, factors[0]);
    const wIdx = nearestIndexTable(W, OW, factors[1]);
    if (!sameTable(hIdx, nearestIndexTable(H, OH)) || !sameTable(wIdx, nearestIndexTable(W, OW))) {
      const hi = tensor(hIdx, { dtype: "int32", device: x.device });
      const wi = tensor(wIdx, { dtype: "int32", device: x.device });
      const rows = Tensor.empty([N, C, OH, W], x.dtype, x.device);
      try {
        backend.indexSelect(x, 2, hi, rows);
        return into(Tensor.empty(shape, x.dtype, x.device), (out) => backend.indexSelect(rows, 3, wi, out));
      } finally {
        disposeAll(hi, wi, rows);
      }
    }
  }
  return into(Tensor.empty(shape, x.dtype, x.device, memoryFormatOf(x)), (out) => backend.upsampleNearest2d(x, out)); // x's memory format
}

function sameTable(a: Int32Array, b: Int32Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Nearest-neighbour ×2 upsampling of NCHW x (diffusers' Upsample2D: interpolate(scale_factor=2.0, mode="nearest")). */
export function upsampleNearest2x(x: Tensor): Tensor {
  if (x.ndim !== 4) throw new TensorError(`upsampleNearest2x: input must be 4-D [N, C, H, W], got ${formatShape(x.shape)}`);
  return interpolateNearest(x, { size: [x.shape[2]! * 2, x.shape[3]! * 2] });
}
