// torch's legacy "nearest" resize index rule, shared by the op layer (which checks that a scale factor gives the
// same table as the size ratio) and every backend's upsampleNearest2d.

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
