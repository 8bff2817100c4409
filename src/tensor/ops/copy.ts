// In-place copy between tensors: copyInto(dst, src) writes src's values into dst's storage (equal
// shapes, any strides), converting the dtype; a source on another device is moved first (one
// temporary in the source dtype on dst's device). Used where storage must be kept (loading weights
// into parameters that already live on their device).

import { TensorError } from "../../core/errors.ts";
import { formatShape, shapeEquals } from "../../core/shape.ts";
import { getBackend } from "../../backends/registry.ts";
import type { Tensor } from "./common.ts";

/** dst[...] = src[...] (dtype converted); returns dst. */
export function copyInto(dst: Tensor, src: Tensor): Tensor {
  if (dst.isDisposed || src.isDisposed) throw new TensorError("copyInto: an argument was disposed");
  if (!shapeEquals(dst.shape, src.shape))
    throw new TensorError(`copyInto: source ${formatShape(src.shape)} and destination ${formatShape(dst.shape)} differ in shape`);
  if (dst.device === "meta") return dst; // meta holds no values
  if (src.device === dst.device) {
    getBackend(dst.device).copy(src, dst);
    return dst;
  }
  const moved = src.to(dst.device); // source dtype on the target device; converted there
  try {
    getBackend(dst.device).copy(moved, dst);
  } finally {
    moved.dispose();
  }
  return dst;
}
