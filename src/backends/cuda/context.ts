// The CUDA backend's process-wide state: the loaded libraries (ffi/cuda), the selected device, the compute and
// copy streams, the cuBLAS and cuDNN handles bound to the compute stream, the caching allocator and the pinned
// staging ring; and the helpers every op file uses: device pointers of views, checked launches whose errors name
// the op, shapes and dtypes, and stream-ordered temporaries.

import type { CudaLibraries } from "../../../ffi/cuda/index.ts";
import { cublasMath } from "../../../ffi/cuda/cublas.ts";
import { cudaError } from "../../../ffi/cuda/cudart.ts";
import { StridedParams, type Tag } from "../../../ffi/cuda/kernels.ts";
import type { TensorView } from "../backend.ts";
import { type DType, dtypeBytes } from "../../core/dtype.ts";
import { MemoryTracker } from "../../core/memory-stats.ts";
import { contiguousStrides, formatShape, numel } from "../../core/shape.ts";
import { Storage } from "../../core/storage.ts";
import { CachingAllocator } from "./allocator.ts";
import { DeferredErrors } from "./deferred-errors.ts";
import { CudaStreams, PinnedStaging } from "./streams.ts";

export type Kernels = CudaLibraries["kernels"]["symbols"];

export interface CudaContext {
  libs: CudaLibraries;
  device: number;
  rt: CudaLibraries["cudart"]["symbols"];
  k: Kernels;
  streams: CudaStreams;
  /** The compute stream (kernels, cuBLAS, cuDNN). */
  stream: number;
  allocator: CachingAllocator;
  staging: PinnedStaging;
  cublas: number;
  cudnn: number;
  /** The numerics policy (see setAllowTf32). */
  allowTf32: boolean;
  /** Device-side error flags checked at the next synchronisation (index bounds). */
  errors: DeferredErrors;
}

/** Statistics of the CUDA device; the tracker exists before the device is initialised (memoryStats is then 0). */
export const cudaMemory = new MemoryTracker("cuda");

let current: CudaContext | null = null;

export function cudaContext(): CudaContext {
  if (!current) throw new Error("the CUDA backend is not initialised: call initCuda() first");
  return current;
}
export function hasCudaContext(): boolean {
  return current !== null;
}

/** Create streams, handles, allocator and staging on `device` (the libraries are loaded). */
export function createContext(libs: CudaLibraries, device: number, allowTf32 = false): CudaContext {
  const rt = libs.cudart.symbols;
  libs.check(rt.cudaSetDevice(device), "cudaSetDevice", `device ${device}`);
  const streams = new CudaStreams(libs);
  const out = new BigUint64Array(1);
  const mem = new BigUint64Array(2);
  const allocator = new CachingAllocator(
    {
      malloc(bytes) {
        const st = rt.cudaMalloc(out, bytes);
        if (st === cudaError.memoryAllocation) {
          rt.cudaGetLastError(); // not sticky: clear it so the retry and later calls are not blamed
          return null;
        }
        libs.check(st, "cudaMalloc", `${bytes} bytes`);
        return Number(out[0]);
      },
      free(ptr) {
        libs.check(rt.cudaFree(ptr), "cudaFree");
      },
      memInfo() {
        libs.check(rt.cudaMemGetInfo(mem.subarray(0, 1), mem.subarray(1, 2)), "cudaMemGetInfo");
        return [Number(mem[0]), Number(mem[1])];
      },
      streamWait(waiter, stream) {
        streams.wait(waiter, stream);
      },
    },
    cudaMemory,
  );
  libs.cublasCheck(libs.cublas.symbols.cublasCreate_v2(out), "cublasCreate_v2");
  const cublas = Number(out[0]);
  libs.cublasCheck(libs.cublas.symbols.cublasSetStream_v2(cublas, streams.compute), "cublasSetStream_v2");
  libs.cudnnCheck(libs.cudnn.symbols.cudnnCreate(out), "cudnnCreate");
  const cudnn = Number(out[0]);
  libs.cudnnCheck(libs.cudnn.symbols.cudnnSetStream(cudnn, streams.compute), "cudnnSetStream");
  const staging = new PinnedStaging(libs, streams);
  const errors = new DeferredErrors(libs, streams.compute, () => streams.synchronize(streams.compute));
  staging.deferred = errors;
  current = {
    libs, device, rt, k: libs.kernels.symbols, streams, stream: streams.compute, allocator, staging, cublas, cudnn, allowTf32, errors,
  };
  setAllowTf32(allowTf32);
  return current;
}

/**
 * The one numerics switch for float32 on tensor-core GPUs (sm_80+): whether float32 GEMMs and convolutions may
 * read their operands as TF32 (10-bit mantissa, ~1e-3 relative per product). Off (the default): cuBLAS runs
 * CUBLAS_COMPUTE_32F under CUBLAS_DEFAULT_MATH and cuDNN float32 convolutions under CUDNN_FMA_MATH, so float32
 * results match the CPU backend to summation order. On: CUBLAS_COMPUTE_32F_FAST_TF32 with
 * CUBLAS_TF32_TENSOR_OP_MATH, and CUDNN_DEFAULT_MATH. float16 / bfloat16 always use tensor cores (float32
 * accumulation). Convolution plans are keyed by it, so switching takes effect on the next call.
 */
export function setAllowTf32(on: boolean): void {
  const c = cudaContext();
  const mode = on ? cublasMath.tf32TensorOp : cublasMath.default;
  c.libs.cublasCheck(c.libs.cublas.symbols.cublasSetMathMode(c.cublas, mode), "cublasSetMathMode");
  c.allowTf32 = on;
}

// ---- storages and views

/** A storage of `byteLength` bytes from the caching allocator, released back to it. */
export function allocateStorage(byteLength: number): Storage {
  const c = cudaContext();
  const ptr = c.allocator.allocate(byteLength, c.stream);
  return new Storage("cuda", byteLength, ptr, () => c.allocator.free(ptr));
}

/** Device address of a view's first element. */
export function dptr(v: TensorView): number {
  return (v.storage.handle as number) + v.offset * dtypeBytes(v.dtype);
}
/** Device address, or 0 (NULL) for an absent operand. */
export function dptrOrNull(v: TensorView | null): number | null {
  return v ? dptr(v) : null;
}

/** A stream-ordered temporary: a contiguous view over fresh storage; `free()` it when its last use is queued. */
export interface Temp extends TensorView {
  free(): void;
}

export function temp(shape: readonly number[], dtype: DType): Temp {
  const storage = allocateStorage(numel(shape) * dtypeBytes(dtype));
  return { storage, dtype, shape, strides: contiguousStrides(shape), offset: 0, free: () => storage.release() };
}

/** Run fn with temporaries that are freed afterwards (also when fn throws). */
export function withTemps<R>(fn: (t: (shape: readonly number[], dtype: DType) => Temp) => R): R {
  const made: Temp[] = [];
  try {
    return fn((shape, dtype) => {
      const t = temp(shape, dtype);
      made.push(t);
      return t;
    });
  } finally {
    for (const t of made) t.free();
  }
}

// ---- launches

/** "float16[2, 3]" for error messages. */
export function describe(...views: (TensorView | null | undefined)[]): string {
  return views.filter((v): v is TensorView => !!v).map((v) => `${v.dtype}${formatShape(v.shape)}`).join(", ");
}

/**
 * Throw unless a launcher returned cudaSuccess: a CudaError naming the launcher, CUDA's error and message, the op
 * with its operands' dtypes and shapes, and (emulated device) the emulator's message for failed launches.
 */
export function check(status: number, launcher: string, op: string, ...views: (TensorView | null | undefined)[]): void {
  if (status === 0) return;
  const c = cudaContext();
  let context = `${op}: ${describe(...views)}`;
  if (c.libs.emulated && (status === 719 || status === 9)) {
    const m = c.k.bdk_last_error!() as string | null;
    if (m) context += `; emulator: ${m}`;
  }
  c.libs.check(status, launcher, context);
}

/** Call launcher `name` with args and check its status. */
export function launch(name: string, op: string, views: (TensorView | null | undefined)[], ...args: Parameters<Kernels[string]>): void {
  const fn = cudaContext().k[name];
  if (!fn) throw new Error(`internal: the kernels library has no launcher ${name}`);
  check(fn(...args) as number, name, op, ...views);
}

/** One StridedParams per call site (reused, no per-call allocation). */
export function stridedParams(): StridedParams {
  return new StridedParams();
}

const TAG_OF: Record<DType, Tag> = { float32: "f32", float16: "f16", bfloat16: "bf16", int32: "i32", int64: "i64", uint8: "u8", bool: "u8" };
/** The launcher suffix for a dtype (bool tensors use the u8 launchers; casts to bool use `_bool`). */
export function tagOf(dtype: DType): Tag {
  return TAG_OF[dtype];
}

/**
 * Kernels write their output dtype's bytes: an out of another dtype would be overrun. The op layer never asks for
 * that; this turns a contract violation into an error instead of memory corruption.
 */
export function requireDType(op: string, dtype: DType, ...views: (TensorView | null | undefined)[]): void {
  for (const v of views)
    if (v && v.dtype !== dtype) throw new Error(`internal: CUDA ${op} expects ${dtype} operands, got ${describe(...views)}`);
}
