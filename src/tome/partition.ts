// tomesd's dst/src partition of a w×h token grid: one dst token per whole sy×sx cell (the cell's top-left, or a
// random one drawn with torch.randint(sy·sx) from a seeded torch-compatible generator), every other token src
// (including the ragged right/bottom border when w, h are not multiples of sx, sy). tomesd orders both lists by
// argsorting a buffer of −1 (dst) / 0 (src) with torch's unstable CPU sort; torch-sort.ts reproduces that order,
// so a_idx / b_idx equal tomesd's index for index. The partition depends on the grid and the random draw only (no
// token values), so it is built on the host and uploaded: no device data is read.

import { type Device, type Tensor, tensor } from "../tensor/index.ts";
import type { TorchGenerator } from "../tensor/random/torch-normal.ts";
import { torchUnstableArgsort } from "./torch-sort.ts";

/** [1, Na, 1] src and [1, Nb, 1] dst token positions (int64), Na + Nb = w·h. */
export interface Partition {
  readonly aIdx: Tensor;
  readonly bIdx: Tensor;
}

/** Host form of a partition: src and dst positions. */
export interface PartitionIndices {
  readonly a: Int32Array;
  readonly b: Int32Array;
}

/** Cells of the grid: ⌊h / sy⌋ rows × ⌊w / sx⌋ columns. */
export function cellCount(w: number, h: number, sx: number, sy: number): number {
  return Math.floor(h / sy) * Math.floor(w / sx);
}

/**
 * torch.randint(sy·sx, (⌊h/sy⌋, ⌊w/sx⌋, 1), generator): one 32-bit draw per cell, modulo the range (torch's
 * uniform_int_from_to for ranges below 2^32). Which token of each cell becomes dst, row-major within the cell.
 */
export function randomDstChoice(gen: TorchGenerator, w: number, h: number, sx: number, sy: number): Int32Array {
  const out = new Int32Array(cellCount(w, h, sx, sy));
  const range = sx * sy;
  for (let i = 0; i < out.length; i++) out[i] = gen.engine.nextU32() % range;
  return out;
}

/** The partition's positions; `choice` (per cell, row-major: dy·sx + dx) null = the top-left token (no_rand). */
export function partitionIndices(w: number, h: number, sx: number, sy: number, choice: Int32Array | null = null): PartitionIndices {
  const hsy = Math.floor(h / sy);
  const wsx = Math.floor(w / sx);
  if (choice && choice.length !== hsy * wsx) throw new Error(`partitionIndices: ${choice.length} choices for ${hsy * wsx} cells`);
  const buf = new Float64Array(h * w); // 0 = src, −1 = dst (tomesd's idx_buffer)
  for (let i = 0; i < hsy; i++)
    for (let j = 0; j < wsx; j++) {
      const c = choice ? choice[i * wsx + j]! : 0;
      if (!(c >= 0 && c < sx * sy)) throw new Error(`partitionIndices: choice ${c} is outside the ${sy}×${sx} cell`);
      buf[(i * sy + Math.floor(c / sx)) * w + j * sx + (c % sx)] = -1;
    }
  const order = torchUnstableArgsort(buf); // dst | src
  const nDst = hsy * wsx;
  return { a: order.slice(nDst), b: order.slice(0, nDst) };
}

/** The partition as int64 tensors on `device`. */
export function partitionTensors(p: PartitionIndices, device: Device): Partition {
  const t = (v: Int32Array) => tensor(BigInt64Array.from(v, (i) => BigInt(i)), { shape: [1, v.length, 1], device });
  const aIdx = t(p.a);
  try {
    return { aIdx, bIdx: t(p.b) };
  } catch (e) {
    aIdx.dispose();
    throw e;
  }
}
