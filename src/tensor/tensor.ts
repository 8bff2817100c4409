// Tensor: dtype, shape, element strides and offset over a refcounted device Storage.
// This file holds the data structure, views (no copies), read-back and conversion;
// computing ops are defined in src/tensor/ops and attached as methods in src/tensor/index.ts.

import type { TensorView } from "../backends/backend.ts";
import { getBackend } from "../backends/registry.ts";
import { type DType, assertDType, dtypeBytes, isFloat } from "../core/dtype.ts";
import { type Device, parseDevice } from "../core/device.ts";
import { TensorError } from "../core/errors.ts";
import { hostAlloc } from "../core/host-memory.ts";
import { bf16ArrayToF32, f16ArrayToF32 } from "../core/half.ts";
import { track, unwatchLeak, watchForLeak } from "./scope.ts";
import {
  type Shape,
  contiguousStrides,
  formatShape,
  isContiguous,
  normalizeDim,
  numel,
  resolveShape,
  shapeEquals,
} from "../core/shape.ts";
import type { Storage } from "../core/storage.ts";
import { type MemoryFormat, channelsLastOrder, memoryFormatOf, stridesFor } from "../core/memory-format.ts";

/** Set by Tensor#view just before `new Tensor`: the constructor then adopts the fresh shape/stride arrays it is given. */
let adoptArrays = false;

/** Nested number arrays as returned by toArray(). */
export type NestedArray = number | NestedArray[];

export class Tensor implements TensorView {
  #storage: Storage | null;
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  readonly offset: number;
  readonly dtype: DType;
  readonly device: Device;

  /**
   * Wrap a storage reference. The new tensor takes ownership of one reference: callers pass
   * either a freshly allocated storage or `storage.retain()`.
   */
  constructor(storage: Storage, dtype: DType, shape: Shape, strides?: readonly number[], offset = 0) {
    this.#storage = storage;
    this.dtype = dtype;
    // Own copies, typed readonly but not Object.freeze()d: freezing arrays was a third of the host time of a
    // UNet step on "meta" (docs/architecture.md, "Host overhead").
    if (adoptArrays) {
      adoptArrays = false; // views pass arrays nobody else writes: no copies
      this.shape = shape;
      this.strides = strides!;
    } else {
      this.shape = shape.slice();
      this.strides = strides ? strides.slice() : contiguousStrides(shape);
    }
    this.offset = offset;
    this.device = storage.device;
    track(this);
    // The leak warning watches storages, not views: a storage garbage-collected while still referenced had a view
    // that was never disposed. One registration per allocation instead of one per view (views are most tensors).
    if (storage.refCount === 1) watchForLeak(storage, dtype, this.shape, storage.device);
  }

  /**
   * Allocate an uninitialised dense tensor: row-major, or in `format` (core/memory-format.ts; "channelsLast" stores
   * dim 1 innermost, for rank ≥ 3 — lower ranks are row-major either way).
   */
  static empty(shape: Shape, dtype: DType = "float32", device: Device = "cpu", format: MemoryFormat = "contiguous"): Tensor {
    for (const d of shape)
      if (!Number.isInteger(d) || d < 0) throw new TensorError(`invalid shape ${formatShape(shape)}: dims must be non-negative integers`);
    const backend = getBackend(device);
    requireSupportedDType(backend, assertDType(dtype));
    const storage = backend.allocate(numel(shape) * dtypeBytes(dtype));
    return new Tensor(storage, dtype, shape, format === "contiguous" ? undefined : stridesFor(shape, format));
  }

  // ---- basic properties -------------------------------------------------------------

  get storage(): Storage {
    if (!this.#storage) throw new TensorError(`tensor ${this.describe()} was disposed and cannot be used`);
    return this.#storage;
  }

  get isDisposed(): boolean {
    return this.#storage === null;
  }

  get ndim(): number {
    return this.shape.length;
  }

  get numel(): number {
    return numel(this.shape);
  }

  /** Size of one dim (negative counts from the end), or the shape when called without a dim. */
  size(dim: number): number {
    return this.shape[normalizeDim(dim, this.ndim)]!;
  }

  get isContiguous(): boolean {
    return isContiguous(this.shape, this.strides);
  }

  /** "channelsLast" for a dense channels-last view (NHWC storage of [N, C, H, W]), else "contiguous". */
  get memoryFormat(): MemoryFormat {
    return memoryFormatOf(this);
  }

  get byteLength(): number {
    return this.numel * dtypeBytes(this.dtype);
  }

  describe(): string {
    return `${this.dtype}${formatShape(this.shape)} on ${this.device}`;
  }

  toString(): string {
    return `Tensor(${this.describe()})`;
  }

  // ---- lifetime -------------------------------------------------------------------------

  /** Release this view's reference to its storage. Idempotent. */
  dispose(): void {
    if (!this.#storage) return;
    const s = this.#storage;
    this.#storage = null;
    s.release();
    if (s.released) unwatchLeak(s);
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /** A new view sharing this storage (takes its own reference). */
  private view(shape: Shape, strides: readonly number[], offset: number): Tensor {
    const storage = this.storage.retain();
    adoptArrays = true; // shape and strides are fresh or this tensor's own (never written): adopt them
    return new Tensor(storage, this.dtype, shape, strides, offset);
  }

  // ---- views ------------------------------------------------------------------------------

  /** Same data, new shape; a view when the layout allows it, otherwise a contiguous copy. */
  reshape(...shapeArgs: (number | readonly number[])[]): Tensor {
    const shape = resolveShape(flattenShapeArgs(shapeArgs), this.numel);
    const strides = viewStrides(this.shape, this.strides, shape);
    if (strides) return this.view(shape, strides, this.offset);
    const c = this.contiguous();
    try {
      return c.view(shape, contiguousStrides(shape), c.offset);
    } finally {
      c.dispose();
    }
  }

  /** Like reshape but never copies: throws when the layout does not allow a view. */
  viewAs(...shapeArgs: (number | readonly number[])[]): Tensor {
    const shape = resolveShape(flattenShapeArgs(shapeArgs), this.numel);
    const strides = viewStrides(this.shape, this.strides, shape);
    if (!strides)
      throw new TensorError(`cannot view ${this.describe()} as ${formatShape(shape)} without a copy; use reshape() or contiguous() first`);
    return this.view(shape, strides, this.offset);
  }

  flatten(startDim = 0, endDim = -1): Tensor {
    if (this.ndim === 0) return this.reshape([1]);
    const s = normalizeDim(startDim, this.ndim, "startDim");
    const e = normalizeDim(endDim, this.ndim, "endDim");
    if (e < s) throw new TensorError(`flatten: endDim ${endDim} comes before startDim ${startDim}`);
    const shape = [...this.shape.slice(0, s), numel(this.shape.slice(s, e + 1)), ...this.shape.slice(e + 1)];
    return this.reshape(shape);
  }

  permute(...dimArgs: (number | readonly number[])[]): Tensor {
    const given = flattenShapeArgs(dimArgs);
    const n = this.ndim;
    const shape = new Array<number>(given.length);
    const strides = new Array<number>(given.length);
    let seen = 0; // bit d: dim d was named (tensors have far fewer than 31 dims)
    for (let i = 0; i < given.length; i++) {
      const d = normalizeDim(given[i]!, n);
      seen |= 1 << d;
      shape[i] = this.shape[d]!;
      strides[i] = this.strides[d]!;
    }
    if (given.length !== n || seen !== (1 << n) - 1)
      throw new TensorError(`permute: dims [${given.map((d) => normalizeDim(d, n)).join(", ")}] are not a permutation of ${n} dimensions`);
    return this.view(shape, strides, this.offset);
  }

  transpose(dim0: number, dim1: number): Tensor {
    const a = normalizeDim(dim0, this.ndim);
    const b = normalizeDim(dim1, this.ndim);
    const shape = this.shape.slice();
    const strides = this.strides.slice();
    shape[a] = this.shape[b]!;
    shape[b] = this.shape[a]!;
    strides[a] = this.strides[b]!;
    strides[b] = this.strides[a]!;
    return this.view(shape, strides, this.offset);
  }

  /** Matrix transpose of the last two dims. */
  get T(): Tensor {
    if (this.ndim < 2) throw new TensorError(`.T needs at least 2 dims, got ${this.describe()}`);
    return this.transpose(-2, -1);
  }

  /** Elements [start, start+length) of `dim`. */
  narrow(dim: number, start: number, length: number): Tensor {
    const d = normalizeDim(dim, this.ndim);
    const size = this.shape[d]!;
    if (start < 0) start += size;
    if (!Number.isInteger(start) || !Number.isInteger(length) || start < 0 || length < 0 || start + length > size)
      throw new TensorError(`narrow: [${start}, ${start + length}) is out of range for dim ${dim} of size ${size} in ${this.describe()}`);
    const shape = this.shape.slice();
    shape[d] = length;
    return this.view(shape, this.strides, this.offset + start * this.strides[d]!);
  }

  /** Python-style slice along one dim: start/end may be negative or omitted; step > 0. */
  slice(dim: number, start = 0, end?: number, step = 1): Tensor {
    const d = normalizeDim(dim, this.ndim);
    const size = this.shape[d]!;
    if (!Number.isInteger(step) || step <= 0) throw new TensorError(`slice: step must be a positive integer, got ${step}`);
    const clampIdx = (i: number) => Math.min(Math.max(i < 0 ? i + size : i, 0), size);
    const s = clampIdx(start);
    const e = Math.max(s, clampIdx(end ?? size));
    const shape = this.shape.slice();
    shape[d] = Math.ceil((e - s) / step);
    const strides = this.strides.slice();
    strides[d] = this.strides[d]! * step;
    return this.view(shape, strides, this.offset + s * this.strides[d]!);
  }

  /** Index one position of `dim`, removing the dim. */
  select(dim: number, index: number): Tensor {
    const d = normalizeDim(dim, this.ndim);
    const size = this.shape[d]!;
    const i = index < 0 ? index + size : index;
    if (!Number.isInteger(i) || i < 0 || i >= size)
      throw new TensorError(`select: index ${index} is out of range for dim ${dim} of size ${size} in ${this.describe()}`);
    const shape = this.shape.slice();
    const strides = this.strides.slice();
    shape.splice(d, 1);
    strides.splice(d, 1);
    return this.view(shape, strides, this.offset + i * this.strides[d]!);
  }

  /** Broadcast to a larger shape without copying (stride 0 on expanded dims). -1 keeps a dim. */
  expand(...shapeArgs: (number | readonly number[])[]): Tensor {
    const target = flattenShapeArgs(shapeArgs);
    if (target.length < this.ndim)
      throw new TensorError(`expand: target ${formatShape(target)} has fewer dims than ${this.describe()}`);
    const lead = target.length - this.ndim;
    const shape: number[] = [];
    const strides: number[] = [];
    for (let i = 0; i < target.length; i++) {
      const t = target[i]!;
      if (i < lead) {
        if (t < 0) throw new TensorError(`expand: -1 is not allowed for new leading dim ${i}`);
        shape.push(t);
        strides.push(0);
        continue;
      }
      const cur = this.shape[i - lead]!;
      const want = t === -1 ? cur : t;
      if (want === cur) {
        shape.push(cur);
        strides.push(this.strides[i - lead]!);
      } else if (cur === 1) {
        shape.push(want);
        strides.push(0);
      } else {
        throw new TensorError(`expand: cannot expand ${this.describe()} to ${formatShape(target)} (dim ${i}: ${cur} vs ${want})`);
      }
    }
    return this.view(shape, strides, this.offset);
  }

  unsqueeze(dim: number): Tensor {
    const d = normalizeDim(dim, this.ndim + 1);
    const shape = this.shape.slice();
    const strides = this.strides.slice();
    const stride = d < this.ndim ? this.shape[d]! * this.strides[d]! : 1;
    shape.splice(d, 0, 1);
    strides.splice(d, 0, stride);
    return this.view(shape, strides, this.offset);
  }

  /** Remove size-1 dims: all of them, or the given one(s) (a non-1 dim given explicitly is left, as torch). */
  squeeze(...dimArgs: (number | readonly number[])[]): Tensor {
    const given = flattenShapeArgs(dimArgs).map((d) => normalizeDim(d, this.ndim));
    const drop = new Set(given.length ? given.filter((d) => this.shape[d] === 1) : this.shape.flatMap((s, i) => (s === 1 ? [i] : [])));
    return this.view(
      this.shape.filter((_, i) => !drop.has(i)),
      this.strides.filter((_, i) => !drop.has(i)),
      this.offset,
    );
  }

  /** A contiguous tensor with the same values: this tensor's storage with a new reference when already contiguous, else a copy. */
  contiguous(): Tensor {
    if (this.isContiguous) return this.view(this.shape, contiguousStrides(this.shape), this.offset);
    return this.clone();
  }

  /** A contiguous copy that owns new storage. */
  clone(): Tensor {
    const out = Tensor.empty(this.shape, this.dtype, this.device);
    getBackend(this.device).copy(this, out);
    return out;
  }

  // ---- conversion -------------------------------------------------------------------------

  /** Convert dtype and/or move to another device. Returns a new reference even when nothing changes. */
  to(target: DType | Device | "cuda:0" | { dtype?: DType; device?: Device }): Tensor {
    let dtype = this.dtype;
    let device = this.device;
    if (typeof target === "string") {
      if ((["cpu", "cuda", "meta", "cuda:0"] as string[]).includes(target)) device = parseDevice(target);
      else dtype = assertDType(target);
    } else {
      dtype = target.dtype ?? dtype;
      device = target.device ?? device;
    }
    if (dtype === this.dtype && device === this.device) return this.view(this.shape, this.strides, this.offset);
    const format = this.memoryFormat; // preserved, as torch's .to(): a channels-last tensor stays channels-last
    if (device === this.device) {
      const out = Tensor.empty(this.shape, dtype, device, format);
      getBackend(device).copy(this, out);
      return out;
    }
    if (format === "channelsLast") {
      // move the storage order as it lies ([N, H, W, C] is row-major) and view it back as [N, C, H, W]
      const order = channelsLastOrder(this.ndim);
      const inverse = order.map((_, i) => order.indexOf(i));
      const stored = this.permute(order);
      try {
        const moved = stored.to({ dtype, device });
        try {
          return moved.permute(inverse);
        } finally {
          moved.dispose();
        }
      } finally {
        stored.dispose();
      }
    }
    // Cross-device: move the contiguous bytes in the source dtype, then convert on the target.
    const src = this.contiguous();
    try {
      const dst = getBackend(device);
      let moved: Tensor;
      if (this.device === "meta" || device === "meta") {
        moved = Tensor.empty(this.shape, this.dtype, device);
      } else {
        requireSupportedDType(dst, dtype); // the bytes travel in this.dtype only as an intermediate
        const bytes = getBackend(this.device).toHostBytes(src);
        moved = new Tensor(dst.fromHostBytes(bytes, false), this.dtype, this.shape);
      }
      if (dtype === this.dtype) return moved;
      try {
        return moved.to(dtype);
      } finally {
        moved.dispose();
      }
    } finally {
      src.dispose();
    }
  }

  /** Raw element storage of a contiguous host copy: Float32Array, Uint16Array (16-bit float bits), Int32Array, BigInt64Array or Uint8Array. */
  toRawArray(): Float32Array | Uint16Array | Int32Array | BigInt64Array | Uint8Array {
    if (this.device === "meta") throw new TensorError(`cannot read values of a meta tensor ${this.describe()}`);
    const src = this.contiguous();
    try {
      const bytes = getBackend(this.device).toHostBytes(src);
      return hostAlloc(2 * bytes.byteLength, `a host copy of ${this.describe()}`, () => this.#rawCopy(bytes));
    } finally {
      src.dispose();
    }
  }

  /** A fresh typed array over a copy of `bytes` (this tensor's contiguous host bytes). */
  #rawCopy(bytes: Uint8Array): Float32Array | Uint16Array | Int32Array | BigInt64Array | Uint8Array {
    {
      const n = this.numel;
      const aligned = bytes.byteOffset % dtypeBytes(this.dtype) === 0 ? bytes : bytes.slice();
      switch (this.dtype) {
        case "float32":
          return new Float32Array(aligned.buffer, aligned.byteOffset, n).slice();
        case "float16":
        case "bfloat16":
          return new Uint16Array(aligned.buffer, aligned.byteOffset, n).slice();
        case "int32":
          return new Int32Array(aligned.buffer, aligned.byteOffset, n).slice();
        case "int64":
          return new BigInt64Array(aligned.buffer, aligned.byteOffset, n).slice();
        case "uint8":
        case "bool":
          return new Uint8Array(aligned.buffer, aligned.byteOffset, n).slice();
      }
    }
  }

  /**
   * Values as a fresh typed array in row-major order: Float32Array for every float dtype
   * (16-bit values widened exactly), Int32Array, BigInt64Array for int64, Uint8Array for uint8/bool.
   */
  toTypedArray(): Float32Array | Int32Array | BigInt64Array | Uint8Array {
    const raw = this.toRawArray();
    if (this.dtype === "float16") return f16ArrayToF32(raw as Uint16Array);
    if (this.dtype === "bfloat16") return bf16ArrayToF32(raw as Uint16Array);
    return raw as Float32Array | Int32Array | BigInt64Array | Uint8Array;
  }

  /** Values as a flat Float32Array whatever the dtype (int64 beyond 2^24 loses precision). */
  toFloat32Array(): Float32Array {
    const a = this.toTypedArray();
    if (a instanceof Float32Array) return a;
    const out = hostAlloc(4 * a.length, `a float32 copy of ${this.describe()}`, () => new Float32Array(a.length));
    for (let i = 0; i < a.length; i++) out[i] = Number(a[i]!);
    return out;
  }

  /** Nested JS arrays of numbers (int64 as numbers; exact up to 2^53). */
  toArray(): NestedArray {
    const flat = this.toTypedArray();
    const values: number[] = Array.from(flat as ArrayLike<number | bigint>, (v) => Number(v));
    if (this.ndim === 0) return values[0]!;
    const build = (dim: number, base: number): NestedArray[] => {
      const n = this.shape[dim]!;
      const inner = numel(this.shape.slice(dim + 1));
      const out: NestedArray[] = new Array(n);
      for (let i = 0; i < n; i++) out[i] = dim === this.ndim - 1 ? values[base + i]! : build(dim + 1, base + i * inner);
      return out;
    };
    return build(0, 0);
  }

  /** The single value of a one-element tensor. */
  item(): number {
    if (this.numel !== 1) throw new TensorError(`item() needs exactly one element, got ${this.describe()}`);
    return Number(this.toTypedArray()[0]!);
  }

  get isFloatingPoint(): boolean {
    return isFloat(this.dtype);
  }

  /** True when both tensors have identical dtype, shape and values (NaN equals NaN). */
  equals(other: Tensor): boolean {
    if (this.dtype !== other.dtype || !shapeEquals(this.shape, other.shape)) return false;
    const a = this.toRawArray();
    const b = other.toRawArray();
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return false;
    return true;
  }
}

function flattenShapeArgs(args: (number | readonly number[])[]): number[] {
  if (args.length === 1 && Array.isArray(args[0])) return (args[0] as number[]).slice();
  return args as number[];
}

/**
 * Strides that let `newShape` view memory laid out as (oldShape, oldStrides) without a
 * copy, or null when impossible (the rule of torch's computeStride).
 */
export function viewStrides(oldShape: Shape, oldStrides: readonly number[], newShape: Shape): number[] | null {
  const n = numel(oldShape);
  if (n === 0 || oldShape.length === 0) return contiguousStrides(newShape);
  const newStrides = new Array<number>(newShape.length).fill(0);
  let viewD = newShape.length - 1;
  let chunkBase = oldStrides[oldStrides.length - 1]!;
  let tensorNumel = 1;
  let viewNumel = 1;
  for (let d = oldShape.length - 1; d >= 0; d--) {
    tensorNumel *= oldShape[d]!;
    if (d === 0 || (oldShape[d - 1] !== 1 && oldStrides[d - 1] !== tensorNumel * chunkBase)) {
      while (viewD >= 0 && (viewNumel < tensorNumel || newShape[viewD] === 1)) {
        newStrides[viewD] = viewNumel * chunkBase;
        viewNumel *= newShape[viewD]!;
        viewD--;
      }
      if (viewNumel !== tensorNumel) return null;
      if (d > 0) {
        chunkBase = oldStrides[d - 1]!;
        tensorNumel = 1;
        viewNumel = 1;
      }
    }
  }
  if (viewD !== -1) return null;
  return newStrides;
}

/** Throws a TensorError when `backend`'s device cannot hold `dtype` tensors (Backend.dtypeProblem). */
export function requireSupportedDType(backend: ReturnType<typeof getBackend>, dtype: DType): void {
  const problem = backend.dtypeProblem?.(dtype);
  if (problem) throw new TensorError(problem);
}
