// Tensor creation: empty, zeros, ones, full, arange, linspace, tensor/fromArray (from nested
// arrays or typed arrays), randn/rand (torch-compatible CPU generator), and the *Like forms.

import { getBackend } from "../backends/registry.ts";
import { type DType, assertDType, dtypeBytes, isFloat } from "../core/dtype.ts";
import type { Device } from "../core/device.ts";
import { TensorError } from "../core/errors.ts";
import { f32ArrayToBf16, f32ArrayToF16 } from "../core/half.ts";
import { TorchGenerator } from "./random/torch-normal.ts";
import { type Shape, formatShape, numel } from "../core/shape.ts";
import { Tensor, requireSupportedDType } from "./tensor.ts";

export interface CreateOptions {
  dtype?: DType;
  device?: Device;
}

export function empty(shape: Shape, opts: CreateOptions = {}): Tensor {
  return Tensor.empty(shape, opts.dtype ?? "float32", opts.device ?? "cpu");
}

export function full(shape: Shape, value: number, opts: CreateOptions = {}): Tensor {
  const t = empty(shape, opts);
  getBackend(t.device).fill(t, value);
  return t;
}

export function zeros(shape: Shape, opts: CreateOptions = {}): Tensor {
  return full(shape, 0, opts);
}

export function ones(shape: Shape, opts: CreateOptions = {}): Tensor {
  return full(shape, 1, opts);
}

export function zerosLike(t: Tensor, opts: CreateOptions = {}): Tensor {
  return zeros(t.shape, { dtype: opts.dtype ?? t.dtype, device: opts.device ?? t.device });
}

export function onesLike(t: Tensor, opts: CreateOptions = {}): Tensor {
  return ones(t.shape, { dtype: opts.dtype ?? t.dtype, device: opts.device ?? t.device });
}

export function fullLike(t: Tensor, value: number, opts: CreateOptions = {}): Tensor {
  return full(t.shape, value, { dtype: opts.dtype ?? t.dtype, device: opts.device ?? t.device });
}

/** [start, end) with step, like torch.arange; int64 when all arguments are integers and no dtype is given. */
export function arange(start: number, end?: number, step = 1, opts: CreateOptions = {}): Tensor {
  if (end === undefined) {
    end = start;
    start = 0;
  }
  if (step === 0 || !Number.isFinite(step)) throw new TensorError(`arange: step must be non-zero and finite, got ${step}`);
  const n = Math.max(0, Math.ceil((end - start) / step));
  const allInt = Number.isInteger(start) && Number.isInteger(end) && Number.isInteger(step);
  const dtype = opts.dtype ?? (allInt ? "int64" : "float32");
  const values = new Float64Array(n);
  for (let i = 0; i < n; i++) values[i] = start + i * step;
  return fromValues(values, [n], dtype, opts.device ?? "cpu");
}

/** `steps` evenly spaced values from start to end inclusive (torch.linspace's symmetric formula). */
export function linspace(start: number, end: number, steps: number, opts: CreateOptions = {}): Tensor {
  if (!Number.isInteger(steps) || steps < 0) throw new TensorError(`linspace: steps must be a non-negative integer, got ${steps}`);
  const values = new Float64Array(steps);
  const step = steps > 1 ? (end - start) / (steps - 1) : 0;
  const half = Math.floor(steps / 2);
  for (let i = 0; i < steps; i++) values[i] = i < half ? start + step * i : end - step * (steps - 1 - i);
  return fromValues(values, [steps], opts.dtype ?? "float32", opts.device ?? "cpu");
}

type Nested = number | boolean | bigint | readonly Nested[];

/**
 * Build a tensor from nested arrays or a typed array. Without a dtype: float32 for numbers,
 * int64 for bigint or BigInt64Array, int32 for Int32Array, uint8 for Uint8Array, bool for booleans.
 */
export function tensor(
  data: Nested | Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array | Uint16Array,
  opts: CreateOptions & { shape?: Shape } = {},
): Tensor {
  const device = opts.device ?? "cpu";
  if (ArrayBuffer.isView(data)) {
    const shape = opts.shape ?? [data.length];
    if (numel(shape) !== data.length) throw new TensorError(`tensor: shape ${formatShape(shape)} does not hold ${data.length} values`);
    const inferred: DType =
      data instanceof BigInt64Array ? "int64" : data instanceof Int32Array ? "int32" : data instanceof Uint8Array ? "uint8" : "float32";
    const dtype = opts.dtype ?? inferred;
    if (data instanceof Uint16Array) throw new TensorError("tensor: pass 16-bit float bit patterns with fromRaw(), not tensor()");
    if (data instanceof BigInt64Array) {
      if (dtype === "int64") return fromRaw(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), shape, "int64", device);
      return fromValues(Float64Array.from(data, Number), shape, dtype, device);
    }
    return fromValues(data as Float32Array | Float64Array | Int32Array | Uint8Array, shape, dtype, device);
  }
  const shape: number[] = [];
  let probe: Nested = data;
  while (Array.isArray(probe)) {
    shape.push(probe.length);
    probe = probe[0] as Nested;
  }
  const flat: (number | boolean | bigint)[] = [];
  const walk = (v: Nested, dim: number) => {
    if (Array.isArray(v)) {
      if (dim >= shape.length || v.length !== shape[dim]) throw new TensorError(`tensor: ragged nested array at depth ${dim}`);
      for (const x of v) walk(x, dim + 1);
    } else {
      if (dim !== shape.length) throw new TensorError(`tensor: ragged nested array at depth ${dim}`);
      flat.push(v as number | boolean | bigint);
    }
  };
  walk(data, 0);
  const first = flat[0];
  const inferred: DType = typeof first === "bigint" ? "int64" : typeof first === "boolean" ? "bool" : "float32";
  const dtype = opts.dtype ?? inferred;
  if (dtype === "int64" && flat.every((v) => typeof v === "bigint")) {
    const arr = BigInt64Array.from(flat as bigint[]);
    return fromRaw(new Uint8Array(arr.buffer), opts.shape ?? shape, "int64", device);
  }
  const values = Float64Array.from(flat, (v) => Number(v));
  return fromValues(values, opts.shape ?? shape, dtype, device);
}

export const fromArray = tensor;

/** A tensor from raw little-endian element bytes of `dtype` (16-bit floats as bit patterns). */
export function fromRaw(bytes: Uint8Array, shape: Shape, dtype: DType, device: Device = "cpu"): Tensor {
  assertDType(dtype);
  const backend = getBackend(device);
  requireSupportedDType(backend, dtype);
  const expected = numel(shape) * dtypeBytes(dtype);
  if (bytes.byteLength !== expected)
    throw new TensorError(`fromRaw: ${bytes.byteLength} bytes do not hold ${dtype}${formatShape(shape)} (${expected} bytes)`);
  return new Tensor(backend.fromHostBytes(bytes, false), dtype, shape);
}

/**
 * A CPU tensor over `bytes` without copying them: borrowed storage that the allocator does not count
 * and that must outlive the tensor (a memory-mapped checkpoint entry). Bytes not aligned to the
 * element size are copied once into an aligned buffer.
 */
export function borrowRaw(bytes: Uint8Array, shape: Shape, dtype: DType): Tensor {
  assertDType(dtype);
  const size = dtypeBytes(dtype);
  if (bytes.byteLength !== numel(shape) * size)
    throw new TensorError(`borrowRaw: ${bytes.byteLength} bytes do not hold ${dtype}${formatShape(shape)} (${numel(shape) * size} bytes)`);
  const aligned = bytes.byteOffset % size === 0 ? bytes : bytes.slice();
  return new Tensor(getBackend("cpu").fromHostBytes(aligned, true), dtype, shape);
}

/** Encode numbers to `dtype` on the host, then upload. */
function fromValues(values: ArrayLike<number>, shape: Shape, dtype: DType, device: Device): Tensor {
  const n = values.length;
  let raw: ArrayBufferView;
  switch (dtype) {
    case "float32":
      raw = values instanceof Float32Array ? values : Float32Array.from(values);
      break;
    case "float16":
      raw = f32ArrayToF16(Float32Array.from(values));
      break;
    case "bfloat16":
      raw = f32ArrayToBf16(Float32Array.from(values));
      break;
    case "int32":
      raw = Int32Array.from(values, (v) => Math.trunc(v));
      break;
    case "int64":
      raw = BigInt64Array.from(Array.from(values, (v) => BigInt(Math.trunc(v))));
      break;
    case "uint8":
      raw = Uint8Array.from(values, (v) => Math.trunc(v) & 255);
      break;
    case "bool":
      raw = Uint8Array.from(values, (v) => (v ? 1 : 0));
      break;
  }
  if (n !== numel(shape)) throw new TensorError(`tensor: shape ${formatShape(shape)} does not hold ${n} values`);
  return fromRaw(new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength), shape, dtype, device);
}

export interface RandomOptions extends CreateOptions {
  /** Seed of a fresh torch-compatible CPU generator (torch.Generator("cpu").manual_seed(seed)). */
  seed?: number;
  /** Draw from this generator instead (its state advances, as torch's does). */
  generator?: TorchGenerator;
}

function generatorFor(op: string, opts: RandomOptions): TorchGenerator {
  if (opts.generator) return opts.generator;
  if (opts.seed !== undefined) return new TorchGenerator(opts.seed);
  return defaultGenerator();
}

let globalGenerator: TorchGenerator | null = null;
function defaultGenerator(): TorchGenerator {
  globalGenerator ??= new TorchGenerator(Date.now() >>> 0);
  return globalGenerator;
}

/** Standard normal samples, drawn on the CPU exactly as torch.randn with a CPU generator, then moved. */
export function randn(shape: Shape, opts: RandomOptions = {}): Tensor {
  const dtype = opts.dtype ?? "float32";
  if (!isFloat(dtype)) throw new TensorError(`randn: dtype must be floating point, got ${dtype}`);
  const values = generatorFor("randn", opts).randn(numel(shape));
  return fromValues(values, shape, dtype, opts.device ?? "cpu");
}

/** Uniform samples in [0, 1), as torch.rand with a CPU generator. */
export function rand(shape: Shape, opts: RandomOptions = {}): Tensor {
  const dtype = opts.dtype ?? "float32";
  if (!isFloat(dtype)) throw new TensorError(`rand: dtype must be floating point, got ${dtype}`);
  const values = generatorFor("rand", opts).rand(numel(shape));
  return fromValues(values, shape, dtype, opts.device ?? "cpu");
}

export { TorchGenerator };
