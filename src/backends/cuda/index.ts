// The CUDA backend: every method of the backend contract on device "cuda", through cudart, cuBLAS, cuDNN and our
// kernels (ffi/cuda), on a real GPU or on the emulated device (BD_CUDA_EMULATE=1 / initCuda({ emulate: true })).
// initCuda() loads the libraries, selects the device, creates the streams, handles, caching allocator and pinned
// staging, and registers the backend; cudaAvailable() says whether that would work and, if not, why (the lowest
// failing layer first: driver, runtime, then libraries — diagnose.ts). One op family
// per file: elementwise, reduce, linalg (cuBLAS), conv (cuDNN), norm, indexing, attention; allocator and streams;
// CUDA graphs (graph.ts).

import type { Backend } from "../backend.ts";
import { registerBackend } from "../registry.ts";
import { CudaLibraryLoadError } from "../../../ffi/cuda/bind.ts";
import { PROP_BUFFER_BYTES, cudaDevAttr } from "../../../ffi/cuda/cudart.ts";
import { CudaNotFoundError, type DiscoverOptions, discoverCuda, isEmulated } from "../../../ffi/cuda/discover.ts";
import { type CudaLibraries, checkCudaVersions, loadCuda } from "../../../ffi/cuda/index.ts";
import { checkAttentionLayout } from "../../../ffi/cuda/kernels.ts";
import { attention } from "./attention.ts";
import { type AllocatorCounters } from "./allocator.ts";
import { allocateStorage, createContext, cudaContext, cudaMemory, hasCudaContext, setAllowTf32 } from "./context.ts";
import { conv2d, conv2dScratchBytes } from "./conv.ts";
import { cudaStackFacts, describeCudaStack } from "./diagnose.ts";
import { binary, binaryScalar, copy, fill, unary, where } from "./elementwise.ts";
import { downloadView } from "./fallback.ts";
import { argsort, gather, indexSelect, scatterAdd } from "./indexing.ts";
import { linear, matmul } from "./linalg.ts";
import { ltUnavailable } from "./lt-plans.ts";
import { groupNorm, layerNorm, upsampleNearest2d } from "./norm.ts";
import { reduce, softmax } from "./reduce.ts";

export { cudaMemory, type CudaContext, cudaContext, dptr } from "./context.ts";
export { CudaGraphExec, captureCudaGraph, cudaGraphLaunches, cudaGraphsUnsupported } from "./graph.ts";

export const cudaBackend: Backend = {
  device: "cuda",
  memory: cudaMemory,
  /** cudaMemGetInfo's free bytes plus what our caching allocator holds for reuse. */
  availableMemory() {
    const a = cudaContext().allocator;
    const [free, total] = a.deviceMemInfo();
    return { available: free + a.cachedBytes, total, maxAllocation: null, source: "cudaMemGetInfo free memory plus the allocator's cache" };
  },
  /**
   * bfloat16 needs compute capability 8.0+: cuBLAS and cuDNN reject it before Ampere, so a bfloat16 model on a
   * Turing GPU (sm_75) fails when it is created or moved there, not with a status code mid-generation. The
   * capability is read from the device on each bfloat16 allocation (cudaDeviceGetAttribute: cheap, no sync).
   */
  dtypeProblem(dtype) {
    if (dtype !== "bfloat16") return null;
    const c = cudaContext();
    const i32 = new Int32Array(1);
    const attr = (a: number) => (c.rt.cudaDeviceGetAttribute(i32, a, c.device) === 0 ? i32[0]! : 0);
    const major = attr(cudaDevAttr.computeCapabilityMajor);
    if (major >= 8) return null;
    return `bfloat16 needs an NVIDIA GPU of compute capability 8.0 or newer (cuBLAS and cuDNN reject it before Ampere), ` +
      `but CUDA device ${c.device} is ${major}.${attr(cudaDevAttr.computeCapabilityMinor)}: use dtype "float16" instead (CLI: --dtype float16)`;
  },
  allocate: allocateStorage,
  /** Always a copy (device memory cannot borrow host bytes): host → pinned staging → device on the copy stream. */
  fromHostBytes(bytes) {
    const s = allocateStorage(bytes.byteLength);
    try {
      cudaContext().staging.upload(s.handle as number, bytes);
    } catch (e) {
      s.release();
      throw e;
    }
    return s;
  },
  toHostBytes: downloadView,
  copy,
  fill,
  unary,
  binary,
  binaryScalar,
  where,
  reduce,
  softmax,
  matmul,
  linear,
  conv2d,
  conv2dScratchBytes,
  attention,
  groupNorm,
  layerNorm,
  upsampleNearest2d,
  indexSelect,
  gather,
  scatterAdd,
  argsort,
};

export interface CudaBackendInfo {
  emulated: boolean;
  device: number;
  name: string;
  computeCapability: string;
  multiprocessors: number;
  totalMemoryBytes: number;
  libraries: CudaLibraries["paths"];
  /** How linear layers run (cudaLinearPath). */
  linear: string;
}

export interface InitCudaOptions {
  /** Use the emulated device (default: BD_CUDA_EMULATE=1). */
  emulate?: boolean;
  /** Device ordinal (default 0). */
  device?: number;
  /** Environment for library discovery (default process.env). */
  env?: DiscoverOptions["env"];
  /**
   * Let float32 GEMMs and convolutions use TF32 tensor cores on sm_80+ (default false; BD_CUDA_TF32=1 turns it
   * on). One switch for cuBLAS and cuDNN alike: see setCudaAllowTf32.
   */
  allowTf32?: boolean;
}

/** CUDA cannot be used: no libraries, no driver, or no device. The message says what was searched and what to do. */
export class CudaUnavailableError extends Error {
  override name = "CudaUnavailableError";
  constructor(
    message: string,
    /** One line for notices, e.g. "cublas, cudnn not found". */
    readonly summary = message.split("\n")[0]!,
  ) {
    super(message);
  }
}

let info: CudaBackendInfo | null = null;

/** Load the libraries and find the device; throws CudaUnavailableError with the reason. */
function probe(opts: InitCudaOptions): { libs: CudaLibraries; count: number } {
  const emulate = opts.emulate ?? isEmulated(opts.env ?? process.env);
  let libs: CudaLibraries;
  try {
    libs = loadCuda({ emulate, env: opts.env });
  } catch (e) {
    if (e instanceof CudaNotFoundError) {
      // the lowest failing layer first: without a driver (or a device) the missing libraries are not the cause
      const lower = emulate ? null : describeCudaStack(cudaStackFacts(discoverCuda({ emulate, env: opts.env })));
      if (lower) throw new CudaUnavailableError(`${lower.message}\nOnce that works, these are still missing:\n${e.message}`, lower.summary);
      throw new CudaUnavailableError(e.message, `${e.missing.map((m) => m.library).join(", ")} not found; install them or set BD_CUDA_LIB_DIR (device "cuda" lists where it looked)`);
    }
    const why = e instanceof CudaLibraryLoadError ? `${e.message} (is the NVIDIA driver installed? libcudart needs libcuda.so.1)` : (e as Error).message;
    throw new CudaUnavailableError(why);
  }
  const rt = libs.cudart.symbols;
  const n = new Int32Array(1);
  const st = rt.cudaGetDeviceCount(n);
  if (st !== 0) {
    rt.cudaGetLastError();
    throw new CudaUnavailableError(
      `no usable CUDA device: ${rt.cudaGetErrorName(st)}: ${rt.cudaGetErrorString(st)} ` +
        "(install or update the NVIDIA driver; without a GPU, BD_CUDA_EMULATE=1 runs the CUDA backend on the emulated device)",
    );
  }
  if (n[0]! < 1) throw new CudaUnavailableError("no CUDA device found (cudaGetDeviceCount = 0)");
  try {
    checkCudaVersions(libs);
  } catch (e) {
    throw new CudaUnavailableError((e as Error).message);
  }
  return { libs, count: n[0]! };
}

/**
 * Initialise the CUDA backend and register it for device "cuda" (idempotent: later calls return the same info;
 * asking for another device or the other of real / emulated then throws). Throws CudaUnavailableError when the
 * libraries, driver or device are missing.
 */
export function initCuda(opts: InitCudaOptions = {}): CudaBackendInfo {
  const emulate = opts.emulate ?? isEmulated(opts.env ?? process.env);
  const device = opts.device ?? 0;
  if (info) {
    if (info.emulated !== emulate || info.device !== device)
      throw new Error(
        `initCuda: the CUDA backend already runs on ${info.emulated ? "the emulated device" : `device ${info.device}`}; ` +
          `one CUDA device per process (asked for ${emulate ? "the emulated device" : `device ${device}`})`,
      );
    return info;
  }
  const { libs, count } = probe({ ...opts, emulate });
  if (!Number.isInteger(device) || device < 0 || device >= count)
    throw new CudaUnavailableError(`CUDA device ${device} does not exist (${count} device${count === 1 ? "" : "s"} found)`);
  checkAttentionLayout(libs.kernels.symbols.bdk_attention_params_layout!() as string | null, libs.paths.kernels);
  createContext(libs, device, opts.allowTf32 ?? (opts.env ?? process.env).BD_CUDA_TF32 === "1");
  const rt = libs.cudart.symbols;
  const prop = new Uint8Array(PROP_BUFFER_BYTES);
  libs.check(rt.cudaGetDeviceProperties(prop, device), "cudaGetDeviceProperties");
  const i32 = new Int32Array(1);
  const attr = (a: number) => (rt.cudaDeviceGetAttribute(i32, a, device) === 0 ? i32[0]! : 0);
  const mem = new BigUint64Array(2);
  libs.check(rt.cudaMemGetInfo(mem.subarray(0, 1), mem.subarray(1, 2)), "cudaMemGetInfo");
  info = {
    emulated: libs.emulated,
    device,
    name: new TextDecoder().decode(prop.subarray(0, Math.max(0, prop.indexOf(0)))),
    computeCapability: `${attr(cudaDevAttr.computeCapabilityMajor)}.${attr(cudaDevAttr.computeCapabilityMinor)}`,
    multiprocessors: attr(cudaDevAttr.multiProcessorCount),
    totalMemoryBytes: Number(mem[1]),
    libraries: libs.paths,
    linear: "",
  };
  info.linear = cudaLinearPath();
  registerBackend(cudaBackend);
  return info;
}

/** Whether initCuda(opts) would succeed, and if not, why (loads the libraries; registers nothing). */
export function cudaAvailable(opts: InitCudaOptions = {}): { ok: true } | { ok: false; reason: string } {
  if (info) return { ok: true };
  try {
    probe(opts);
    return { ok: true };
  } catch (e) {
    return { ok: false, reason: (e as Error).message };
  }
}

/** The initialised backend's device, or null. */
export function cudaInfo(): CudaBackendInfo | null {
  return info;
}

/**
 * The current device's compute capability [major, minor], read from the device on each call
 * (cudaDeviceGetAttribute: cheap, no sync; the emulated device answers BD_EMU_COMPUTE_CAPABILITY, default 8.0).
 */
export function cudaComputeCapability(): [number, number] {
  const c = cudaContext();
  const i32 = new Int32Array(1);
  const attr = (a: number) => (c.rt.cudaDeviceGetAttribute(i32, a, c.device) === 0 ? i32[0]! : 0);
  return [attr(cudaDevAttr.computeCapabilityMajor), attr(cudaDevAttr.computeCapabilityMinor)];
}

/**
 * How linear layers run now: "cuBLASLt (…)" — one cublasLtMatmul with the bias / GELU epilogue — or "cuBLAS GEMM +
 * bias kernel (why)" when libcublasLt is missing or BD_CUDA_LINEAR=cublas asks for the unfused path (read per call).
 */
export function cudaLinearPath(): string {
  const why = ltUnavailable(cudaContext());
  return why === null ? "cuBLASLt matmul with bias / GELU(tanh) epilogues" : `cuBLAS GEMM + bias kernel (${why})`;
}

/** Release every cached block of the allocator (cudaFree); live tensors stay. */
export function cudaEmptyCache(): void {
  if (hasCudaContext()) cudaContext().allocator.emptyCache();
}

/** Allocator and staging counters (tests, benchmarks). */
export function cudaAllocatorStats(): AllocatorCounters & { cachedBytes: number; liveBlocks: number } {
  const a = cudaContext().allocator;
  return { ...a.counters, cachedBytes: a.cachedBytes, liveBlocks: a.liveBlocks };
}

/** The numerics policy for float32 (context.ts setAllowTf32): TF32 tensor cores allowed or not, from now on. */
export function setCudaAllowTf32(on: boolean): void {
  setAllowTf32(on);
}
/** Whether float32 GEMMs and convolutions may use TF32 (false until turned on). */
export function cudaAllowTf32(): boolean {
  return hasCudaContext() && cudaContext().allowTf32;
}

/** Wait for all queued work on the compute and copy streams. */
export function cudaSynchronize(): void {
  const c = cudaContext();
  c.errors.queueReadback();
  c.streams.synchronize(c.streams.compute);
  c.streams.synchronize(c.streams.copy);
  c.errors.verify(); // a deferred device error (an out-of-range index) raised since the last sync
}
