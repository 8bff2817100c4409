// A count of the CUDA backend's layout conversions: copies whose destination stores the dims in the source's order
// with one dim moved innermost, or the reverse — NCHW ↔ NHWC, and [B, C, L] ↔ [B, L, C] tokens (the same move in
// 3-D). Channels-last tests read it to show that the tensors between convolutions stay in one layout. Copies that
// keep the order (a narrow into a concatenation, a broadcast) and other permutations (attention's head merge
// [B, H, S, D] → [B, S, H, D] swaps two outer dims) are not counted.

let count = 0;

/** Layout conversions since the last reset. */
export function layoutConversionCount(): number {
  return count;
}

export function resetLayoutConversionCount(): void {
  count = 0;
}

/** The dims (of size > 1, not broadcast in `src`) ordered by decreasing stride. */
function storageOrder(shape: readonly number[], strides: readonly number[], src: readonly number[]): number[] {
  const dims: number[] = [];
  for (let i = 0; i < shape.length; i++) if (shape[i] !== 1 && src[i] !== 0) dims.push(i);
  return dims.sort((a, b) => strides[b]! - strides[a]!);
}

/** Whether `b` is `a` with one element (not already last) moved to the end. */
function movedInnermost(a: readonly number[], b: readonly number[]): boolean {
  for (let i = 0; i < a.length - 1; i++) {
    const moved = [...a.slice(0, i), ...a.slice(i + 1), a[i]!];
    if (moved.every((d, k) => d === b[k])) return true;
  }
  return false;
}

/** Whether copying src into dst (same shape) is a layout conversion (see the file comment). */
export function isLayoutConversion(shape: readonly number[], src: readonly number[], dst: readonly number[]): boolean {
  const p = storageOrder(shape, src, src);
  const q = storageOrder(shape, dst, src);
  if (p.length < 2 || p.every((d, k) => d === q[k])) return false;
  return movedInnermost(p, q) || movedInnermost(q, p);
}

/** Count the copy when it converts the layout. */
export function noteCopy(shape: readonly number[], src: readonly number[], dst: readonly number[]): void {
  if (isLayoutConversion(shape, src, dst)) count++;
}
