// Symbol table of the CUDA runtime (libcudart, CUDA 11.2+; the emulated one in kernels/build/emu), its enum
// values, and the status describer behind check(). Only version-stable entry points: device properties other
// than the name come from cudaDeviceGetAttribute (struct cudaDeviceProp changes between CUDA versions; its
// `name` is at offset 0 in all of them, so cudaGetDeviceProperties needs a buffer of PROP_BUFFER_BYTES).

import { makeCheck, type NativeLibrary, type StatusCheck, type SymbolTable } from "./bind.ts";

const S = "i32"; // cudaError_t

export const CUDART = {
  cudaGetDeviceCount: { args: ["ptr"], returns: S },
  cudaSetDevice: { args: ["i32"], returns: S },
  cudaGetDevice: { args: ["ptr"], returns: S },
  cudaGetDeviceProperties: { args: ["ptr", "i32"], returns: S },
  cudaDeviceGetAttribute: { args: ["ptr", "i32", "i32"], returns: S },
  cudaDeviceSynchronize: { args: [], returns: S },
  cudaDeviceReset: { args: [], returns: S },
  cudaDriverGetVersion: { args: ["ptr"], returns: S },
  cudaRuntimeGetVersion: { args: ["ptr"], returns: S },
  cudaGetErrorString: { args: ["i32"], returns: "cstring" },
  cudaGetErrorName: { args: ["i32"], returns: "cstring" },
  cudaGetLastError: { args: [], returns: S },
  cudaPeekAtLastError: { args: [], returns: S },
  cudaMalloc: { args: ["ptr", "u64"], returns: S },
  cudaFree: { args: ["ptr"], returns: S },
  cudaMemGetInfo: { args: ["ptr", "ptr"], returns: S },
  // stream-ordered allocation (CUDA 11.2+)
  cudaMallocAsync: { args: ["ptr", "u64", "ptr"], returns: S, optional: true },
  cudaFreeAsync: { args: ["ptr", "ptr"], returns: S, optional: true },
  cudaDeviceGetDefaultMemPool: { args: ["ptr", "i32"], returns: S, optional: true },
  cudaMemPoolSetAttribute: { args: ["ptr", "i32", "ptr"], returns: S, optional: true },
  cudaMemPoolGetAttribute: { args: ["ptr", "i32", "ptr"], returns: S, optional: true },
  cudaMemPoolTrimTo: { args: ["ptr", "u64"], returns: S, optional: true },
  // pinned host memory
  cudaMallocHost: { args: ["ptr", "u64"], returns: S },
  cudaHostAlloc: { args: ["ptr", "u64", "u32"], returns: S },
  cudaFreeHost: { args: ["ptr"], returns: S },
  cudaHostRegister: { args: ["ptr", "u64", "u32"], returns: S },
  cudaHostUnregister: { args: ["ptr"], returns: S },
  // copies
  cudaMemcpy: { args: ["ptr", "ptr", "u64", "i32"], returns: S },
  cudaMemcpyAsync: { args: ["ptr", "ptr", "u64", "i32", "ptr"], returns: S },
  cudaMemset: { args: ["ptr", "i32", "u64"], returns: S },
  cudaMemsetAsync: { args: ["ptr", "i32", "u64", "ptr"], returns: S },
  // streams and events
  cudaStreamCreate: { args: ["ptr"], returns: S },
  cudaStreamCreateWithFlags: { args: ["ptr", "u32"], returns: S },
  cudaStreamDestroy: { args: ["ptr"], returns: S },
  cudaStreamSynchronize: { args: ["ptr"], returns: S },
  cudaStreamQuery: { args: ["ptr"], returns: S },
  cudaStreamWaitEvent: { args: ["ptr", "ptr", "u32"], returns: S },
  cudaEventCreate: { args: ["ptr"], returns: S },
  cudaEventCreateWithFlags: { args: ["ptr", "u32"], returns: S },
  cudaEventDestroy: { args: ["ptr"], returns: S },
  cudaEventRecord: { args: ["ptr", "ptr"], returns: S },
  cudaEventSynchronize: { args: ["ptr"], returns: S },
  cudaEventQuery: { args: ["ptr"], returns: S },
  cudaEventElapsedTime: { args: ["ptr", "ptr", "ptr"], returns: S },
  // stream capture and CUDA graphs (CUDA 10+; cudaGraphInstantiate has this signature from CUDA 12 on, so callers
  // check cudaRuntimeGetVersion ≥ 12000 first: src/backends/cuda/graph.ts)
  cudaStreamBeginCapture: { args: ["ptr", "i32"], returns: S, optional: true },
  cudaStreamEndCapture: { args: ["ptr", "ptr"], returns: S, optional: true },
  cudaStreamIsCapturing: { args: ["ptr", "ptr"], returns: S, optional: true },
  cudaThreadExchangeStreamCaptureMode: { args: ["ptr"], returns: S, optional: true },
  cudaGraphInstantiate: { args: ["ptr", "ptr", "u64"], returns: S, optional: true },
  cudaGraphLaunch: { args: ["ptr", "ptr"], returns: S, optional: true },
  cudaGraphExecDestroy: { args: ["ptr"], returns: S, optional: true },
  cudaGraphDestroy: { args: ["ptr"], returns: S, optional: true },
  cudaGraphGetNodes: { args: ["ptr", "ptr", "ptr"], returns: S, optional: true },
  // the emulated runtime only, for tests: host synchronisations so far (kernels/emu/cudart.cpp)
  bdemu_sync_count: { args: [], returns: "u64", optional: true },
  // the emulated runtime only (kernels/emu/cudart_streams.cpp): which stream work raised the last execution
  // error, how streams run (BD_EMU_STREAMS), and, for tests, holding a stream's queue
  bdemu_work_error: { args: [], returns: "cstring", optional: true },
  bdemu_stream_mode: { args: [], returns: "cstring", optional: true },
  bdemu_stream_hold: { args: ["ptr", "i32"], returns: S, optional: true },
  // the emulated runtime only (kernels/emu/cudart_graphs.cpp): cudaGraphLaunch calls so far, and why the latest
  // capture was invalidated
  bdemu_graph_launch_count: { args: [], returns: "u64", optional: true },
  bdemu_capture_error: { args: [], returns: "cstring", optional: true },
} as const satisfies SymbolTable;

export type Cudart = NativeLibrary<typeof CUDART>;

/** Bytes to allocate for cudaGetDeviceProperties (the struct is 1008 bytes in CUDA 13, smaller before). */
export const PROP_BUFFER_BYTES = 4096;
/** Byte offset of cudaDeviceProp.totalGlobalMem (size_t), stable since CUDA 10 (kernels/emu/abi_check.cpp asserts it). */
export const PROP_TOTAL_GLOBAL_MEM = 288;

/** cudaError_t values used by callers (driver_types.h). */
export const cudaError = {
  success: 0,
  invalidValue: 1,
  memoryAllocation: 2,
  insufficientDriver: 35,
  noDevice: 100,
  invalidDevice: 101,
  notReady: 600,
  notSupported: 801,
  illegalState: 401,
  streamCaptureUnsupported: 900,
  streamCaptureInvalidated: 901,
  streamCaptureIsolation: 905,
  streamCaptureImplicit: 906,
  capturedEvent: 907,
  streamCaptureWrongThread: 908,
} as const;

/** cudaStreamCaptureMode (driver_types.h). */
export const cudaStreamCaptureMode = { global: 0, threadLocal: 1, relaxed: 2 } as const;
/** cudaStreamCaptureStatus (driver_types.h). */
export const cudaStreamCaptureStatus = { none: 0, active: 1, invalidated: 2 } as const;

export const cudaMemcpyKind = {
  hostToHost: 0,
  hostToDevice: 1,
  deviceToHost: 2,
  deviceToDevice: 3,
  default: 4,
} as const;

export const cudaStreamNonBlocking = 0x01;
export const cudaEventDisableTiming = 0x02;
export const cudaMemPoolAttrReleaseThreshold = 4;
export const cudaMemPoolAttrUsedMemCurrent = 7;

/** cudaDeviceAttr values (driver_types.h). */
export const cudaDevAttr = {
  maxThreadsPerBlock: 1,
  maxSharedMemoryPerBlock: 8,
  warpSize: 10,
  multiProcessorCount: 16,
  l2CacheSize: 38,
  computeCapabilityMajor: 75,
  computeCapabilityMinor: 76,
  maxSharedMemoryPerBlockOptin: 97,
  memoryPoolsSupported: 115,
} as const;

/** check() for cudart and for our kernel launchers (which return cudaError_t too). */
export function cudartCheck(rt: Cudart, lastKernelMessage: () => string | null = () => null): StatusCheck {
  const plain = makeCheck("cudart", (status) => ({
    name: rt.symbols.cudaGetErrorName(status) ?? `cudaError ${status}`,
    message: rt.symbols.cudaGetErrorString(status) ?? "unknown error",
  }));
  if (!rt.has("bdemu_work_error")) return plain;
  // the emulated runtime: an execution error comes back from the next synchronising call, which says which stream
  // work failed; the emulated kernel's own message (a deadlock, a memcheck / racecheck report) is added to it
  return (status, fn, context) => {
    if (status !== 0 && SYNCHRONISING.test(fn)) {
      const work = rt.symbols.bdemu_work_error!() as string | null;
      const kernel = work?.startsWith("kernel launch") ? lastKernelMessage() : null;
      const detail = [work, kernel && `emulator: ${kernel}`].filter(Boolean).join("; ");
      if (detail) context = context ? `${context}; ${detail}` : detail;
    }
    plain(status, fn, context);
  };
}
/** The runtime calls that return errors raised earlier by queued work. */
const SYNCHRONISING = /Synchronize$|^cudaMemcpy$|Query$/;
