// Dense operands for kernels and cuDNN calls that read one layout: a view as it lies when it already has that
// layout, else a copy into a fresh temporary (row-major, optionally in another dtype, or channels-last) that the
// caller frees. A failed copy frees its temporary before the error propagates.

import type { TensorView } from "../backend.ts";
import { type DType, dtypeBytes } from "../../core/dtype.ts";
import { channelsLastStrides, hasChannelsLastStrides } from "../../core/memory-format.ts";
import { isContiguous, numel } from "../../core/shape.ts";
import { allocateStorage, temp, type Temp } from "./context.ts";
import { copy } from "./elementwise.ts";

export type DenseView = { view: TensorView; temp: Temp | null };

/** v copied into t (freed if the copy throws). */
function copiedInto(v: TensorView, t: Temp): DenseView {
  try {
    copy(v, t);
  } catch (e) {
    t.free();
    throw e;
  }
  return { view: t, temp: t };
}

/** A contiguous view of `v` in `dtype`: v itself, or a copy (converted) to free afterwards. */
export function contiguousAs(v: TensorView, dtype: DType = v.dtype): DenseView {
  if (v.dtype === dtype && isContiguous(v.shape, v.strides)) return { view: v, temp: null };
  return copiedInto(v, temp(v.shape, dtype));
}

/** An uninitialised dense channels-last temporary of `shape`. */
export function channelsLastTemp(shape: readonly number[], dtype: DType): Temp {
  const storage = allocateStorage(numel(shape) * dtypeBytes(dtype));
  return { storage, dtype, shape, strides: channelsLastStrides(shape), offset: 0, free: () => storage.release() };
}

/** v as a dense channels-last view: itself, or a copy to free. */
export function channelsLastAs(v: TensorView): DenseView {
  if (hasChannelsLastStrides(v.shape, v.strides)) return { view: v, temp: null };
  return copiedInto(v, channelsLastTemp(v.shape, v.dtype));
}
