// Memory formats of tensors of rank ≥ 3, as PyTorch's: the logical shape stays [N, C, ...spatial] and only the
// storage order differs. "contiguous" is row-major ([N, C, H, W] with W innermost); "channelsLast" stores
// channels innermost (NHWC: strides [H·W·C, 1, W·C, C]). Both are dense, so every strided op is correct on either;
// backends add fast paths where the order helps (cuDNN NHWC convolutions, NHWC GroupNorm). Size-1 dims do not
// count, and a layout that is both (C = 1, or one pixel) is reported as "contiguous".

import { isContiguous } from "./shape.ts";

export type MemoryFormat = "contiguous" | "channelsLast";

/** Element strides of a dense channels-last tensor of `shape` (rank ≥ 3): dim 1 innermost, then the last dim, … */
export function channelsLastStrides(shape: readonly number[]): number[] {
  const nd = shape.length;
  if (nd < 3) throw new Error(`channels-last needs a tensor of rank ≥ 3 ([N, C, ...spatial]), got rank ${nd}`);
  const strides = new Array<number>(nd);
  let s = 1;
  strides[1] = s;
  s *= shape[1]!;
  for (let i = nd - 1; i >= 2; i--) {
    strides[i] = s;
    s *= shape[i]!;
  }
  strides[0] = s;
  return strides;
}

/** Whether (shape, strides) is dense channels-last; size-1 dims may have any stride. */
export function hasChannelsLastStrides(shape: readonly number[], strides: readonly number[]): boolean {
  const nd = shape.length;
  if (nd < 3) return false;
  let s = 1;
  const check = (i: number): boolean => {
    const d = shape[i]!;
    if (d !== 1 && strides[i] !== s) return false;
    s *= d;
    return true;
  };
  if (!check(1)) return false;
  for (let i = nd - 1; i >= 2; i--) if (!check(i)) return false;
  return check(0);
}

/** The memory format of a view: "channelsLast" when it is dense channels-last and not also row-major contiguous. */
export function memoryFormatOf(v: { readonly shape: readonly number[]; readonly strides: readonly number[] }): MemoryFormat {
  return hasChannelsLastStrides(v.shape, v.strides) && !isContiguous(v.shape, v.strides) ? "channelsLast" : "contiguous";
}

/** The strides of a dense tensor of `shape` in `format` (rank < 3 is always row-major). */
export function stridesFor(shape: readonly number[], format: MemoryFormat): number[] | undefined {
  return format === "channelsLast" && shape.length >= 3 ? channelsLastStrides(shape) : undefined;
}

/** The permutation that lists the dims of a channels-last tensor outermost first: [0, 2, 3, …, nd−1, 1]. */
export function channelsLastOrder(nd: number): number[] {
  const order = [0];
  for (let i = 2; i < nd; i++) order.push(i);
  order.push(1);
  return order;
}
