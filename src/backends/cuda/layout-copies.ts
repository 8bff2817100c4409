// A count of the CUDA backend's transposing copies: copies whose source and destination store their dims in a
// different order (an NCHW ↔ NHWC conversion, a contiguous copy of a transposed view). Channels-last tests read it
// to show that the tensors between convolutions stay in one layout; copies that keep the order (a narrow into a
// concatenation, a broadcast) are not counted.

let count = 0;

/** Transposing copies since the last reset. */
export function layoutCopyCount(): number {
  return count;
}

export function resetLayoutCopyCount(): void {
  count = 0;
}

/** Whether copying src into dst (same shape) changes the order the dims are stored in. */
export function isTransposingCopy(shape: readonly number[], src: readonly number[], dst: readonly number[]): boolean {
  for (let i = 0; i < shape.length; i++) {
    if (shape[i] === 1 || src[i] === 0) continue;
    for (let j = i + 1; j < shape.length; j++) {
      if (shape[j] === 1 || src[j] === 0) continue;
      if (dst[i]! > dst[j]! !== src[i]! > src[j]!) return true;
    }
  }
  return false;
}

/** Count the copy when it transposes. */
export function noteCopy(shape: readonly number[], src: readonly number[], dst: readonly number[]): void {
  if (isTransposingCopy(shape, src, dst)) count++;
}
