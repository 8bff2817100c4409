// CPU nearest-neighbour resize of the last two dims (the backend contract's `upsampleNearest2d`) with torch's
// legacy "nearest" index rule (src/core/nearest.ts). The
// kernel copies raw elements, so every dtype is exact and no float conversion happens.

import type { TensorView } from "../backend.ts";
import { isContiguous, numel } from "../../core/shape.ts";
import { nearestIndexTable } from "../../core/nearest.ts";
import { rawOf, readRaw, writeRaw } from "./strided.ts";
import { type RawArray, dtypeBytes, rawView } from "../../core/dtype.ts";

/** Element access common to every raw typed array (number or bigint elements). */
type Elements = { [i: number]: number | bigint; copyWithin(target: number, start: number, end: number): unknown };

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
