// CPU nearest-neighbour resize of the last two dims (the backend contract's `upsampleNearest2d`) with torch's
// legacy "nearest" index rule, and that rule on its own (`nearestIndex`) for the op layer and tests. The
// kernel copies raw elements, so every dtype is exact and no float conversion happens.

import type { TensorView } from "../backend.ts";
import { isContiguous, numel } from "../../tensor/shape.ts";
import { rawOf, readRaw, writeRaw } from "./strided.ts";
import { type RawArray, dtypeBytes, rawView } from "../../tensor/dtype.ts";

/** Element access common to every raw typed array (number or bigint elements). */
type Elements = { [i: number]: number | bigint; copyWithin(target: number, start: number, end: number): unknown };

/**
 * Source index of output position `dst` for a resize from `inSize` to `outSize`, as torch's nearest_idx
 * (aten/src/ATen/native/UpSample.h): identity when the sizes match, dst >> 1 when doubling, otherwise
 * min(floor(dst · scale), inSize − 1) in float32, where scale = float(inSize) / outSize, or float(1 / scaleFactor)
 * when the caller passed a scale factor (torch's `scales` argument).
 */
export function nearestIndex(dst: number, inSize: number, outSize: number, scaleFactor?: number): number {
  if (outSize === inSize) return dst;
  if (outSize === 2 * inSize) return dst >> 1;
  const scale = scaleFactor !== undefined && scaleFactor > 0 ? Math.fround(1 / scaleFactor) : Math.fround(inSize / outSize);
  return Math.min(Math.floor(Math.fround(dst * scale)), inSize - 1);
}

/** The index table of nearestIndex for every output position. */
export function nearestIndexTable(inSize: number, outSize: number, scaleFactor?: number): Int32Array {
  const t = new Int32Array(outSize);
  for (let i = 0; i < outSize; i++) t[i] = nearestIndex(i, inSize, outSize, scaleFactor);
  return t;
}

/** out[..., oh, ow] = x[..., nearestIndex(oh), nearestIndex(ow)] with the size-ratio scale. */
export function upsampleNearest2d(x: TensorView, out: TensorView): void {
  const nd = x.shape.length;
  const H = x.shape[nd - 2]!;
  const W = x.shape[nd - 1]!;
  const OH = out.shape[nd - 2]!;
  const OW = out.shape[nd - 1]!;
  const n = numel(out.shape);
  if (n === 0) return;
  const planes = n / (OH * OW);
  const src = readRaw(x) as unknown as Elements; // contiguous [planes, H, W]
  // out's own memory when contiguous (the contract's case), else a temporary written back below
  const inPlace = isContiguous(out.shape, out.strides);
  const raw: RawArray = inPlace
    ? (rawOf(out).subarray(out.offset, out.offset + n) as RawArray)
    : rawView(out.dtype, new ArrayBuffer(n * dtypeBytes(out.dtype)), 0, n);
  const dst = raw as unknown as Elements;
  const hIdx = nearestIndexTable(H, OH);
  const wIdx = nearestIndexTable(W, OW);
  const double = OW === 2 * W;
  let d = 0;
  for (let p = 0; p < planes; p++) {
    const plane = p * H * W;
    let prevRow = -1;
    for (let oh = 0; oh < OH; oh++) {
      const ih = hIdx[oh]!;
      if (ih === prevRow) {
        // same source row as the previous output row: copy that output row
        dst.copyWithin(d, d - OW, d);
        d += OW;
        continue;
      }
      prevRow = ih;
      const s = plane + ih * W;
      if (double) {
        for (let iw = 0; iw < W; iw++) {
          const v = src[s + iw]!;
          dst[d++] = v;
          dst[d++] = v;
        }
      } else {
        for (let ow = 0; ow < OW; ow++) dst[d++] = src[s + wIdx[ow]!]!;
      }
    }
  }
  if (!inPlace) writeRaw(out, raw);
}
