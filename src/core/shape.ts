// Shape arithmetic shared by the tensor and op layers: element counts, contiguous strides,
// broadcasting, dimension normalisation and dimension collapsing for strided loops.

export type Shape = readonly number[];

export function numel(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Row-major (C-contiguous) element strides. */
export function contiguousStrides(shape: Shape): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i]!;
  }
  return strides;
}

export function isContiguous(shape: Shape, strides: readonly number[]): boolean {
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    const d = shape[i]!;
    if (d !== 1 && strides[i] !== s) return false;
    s *= d;
  }
  return true;
}

export function shapeEquals(a: Shape, b: Shape): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function formatShape(shape: Shape): string {
  return `[${shape.join(", ")}]`;
}

/** Normalise a possibly negative dimension index against `ndim` dims; throws with context when out of range. */
export function normalizeDim(dim: number, ndim: number, what = "dim"): number {
  if (!Number.isInteger(dim)) throw new RangeError(`${what} must be an integer, got ${dim}`);
  const d = dim < 0 ? dim + ndim : dim;
  if (d < 0 || d >= ndim) throw new RangeError(`${what} ${dim} is out of range for a tensor with ${ndim} dimensions`);
  return d;
}

/** numpy/torch broadcasting of several shapes; throws naming both shapes when incompatible. */
export function broadcastShapes(...shapes: Shape[]): number[] {
  const ndim = Math.max(0, ...shapes.map((s) => s.length));
  const out = new Array<number>(ndim).fill(1);
  for (const s of shapes) {
    for (let i = 0; i < s.length; i++) {
      const o = ndim - s.length + i;
      const d = s[i]!;
      if (d === out[o]) continue;
      if (out[o] === 1) out[o] = d;
      else if (d !== 1)
        throw new RangeError(`shapes ${shapes.map(formatShape).join(" and ")} cannot be broadcast together (dim ${o}: ${out[o]} vs ${d})`);
    }
  }
  return out;
}

/** Validate a user-supplied shape (non-negative integers) and, if it contains a single -1, infer it. */
export function resolveShape(shape: readonly number[], total: number): number[] {
  let infer = -1;
  let known = 1;
  const out = shape.slice();
  for (let i = 0; i < out.length; i++) {
    const d = out[i]!;
    if (d === -1) {
      if (infer >= 0) throw new RangeError(`only one dimension can be -1 in ${formatShape(shape)}`);
      infer = i;
    } else if (!Number.isInteger(d) || d < 0) {
      throw new RangeError(`invalid dimension ${d} in shape ${formatShape(shape)}`);
    } else known *= d;
  }
  if (infer >= 0) {
    if (known === 0 || total % known !== 0)
      throw new RangeError(`cannot infer -1 in shape ${formatShape(shape)} for ${total} elements`);
    out[infer] = total / known;
  } else if (known !== total) {
    throw new RangeError(`shape ${formatShape(shape)} has ${known} elements, expected ${total}`);
  }
  return out;
}

/**
 * Merge adjacent dimensions that are laid out contiguously with respect to each other in
 * every one of the given stride sets, dropping size-1 dims. Strided loops then run over
 * fewer, longer dimensions. Returns the collapsed shape and one collapsed stride array per input.
 */
export function collapseDims(shape: Shape, ...strideSets: (readonly number[])[]): { shape: number[]; strides: number[][] } {
  const outShape: number[] = [];
  const outStrides: number[][] = strideSets.map(() => []);
  for (let i = 0; i < shape.length; i++) {
    const d = shape[i]!;
    if (d === 1) continue;
    const last = outShape.length - 1;
    if (last >= 0 && strideSets.every((st, k) => outStrides[k]![last] === st[i]! * d)) {
      outShape[last] = outShape[last]! * d;
      for (let k = 0; k < strideSets.length; k++) outStrides[k]![last] = strideSets[k]![i]!;
    } else {
      outShape.push(d);
      for (let k = 0; k < strideSets.length; k++) outStrides[k]!.push(strideSets[k]![i]!);
    }
  }
  return { shape: outShape, strides: outStrides };
}
