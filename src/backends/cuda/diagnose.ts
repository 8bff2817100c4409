// Why CUDA cannot be used, lowest layer first: the driver (libcuda.so.1), then the runtime (libcudart
// and what it reports: cudaErrorInsufficientDriver, cudaErrorNoDevice, …), then the libraries on top
// (cuBLAS, cuDNN, our kernels). When a lower layer fails it is the cause and is reported first; the
// missing libraries follow as what is still needed once it works. `lowerLayerProblem` gathers the
// facts (loading libcudart when it is found); `describeCudaStack` orders them (pure, tested alone).

import { openLibrary } from "../../../ffi/cuda/bind.ts";
import { CUDART } from "../../../ffi/cuda/cudart.ts";
import type { CudaDiscovery } from "../../../ffi/cuda/discover.ts";

/** What was found at the layers below the libraries. */
export interface CudaStackFacts {
  /** libcuda.so.1 as discovery found it (null: not in the ldconfig cache or the standard folders). */
  driver: string | null;
  /** libcudart, when found: its path and what cudaGetDeviceCount said (or why it could not be loaded). */
  runtime: { path: string; status?: { code: number; name: string; text: string }; deviceCount?: number; loadError?: string } | null;
}

export const DRIVER_HINT =
  "install or update the NVIDIA driver for your GPU (https://www.nvidia.com/Download/index.aspx, or your distribution's nvidia-driver package); " +
  "without a GPU, BD_CUDA_EMULATE=1 runs the CUDA backend on the emulated device";

/** The lowest failing layer below the libraries as { message, summary }, or null when driver and device are fine. */
export function describeCudaStack(f: CudaStackFacts): { message: string; summary: string } | null {
  const rt = f.runtime;
  if (rt?.status && rt.status.code !== 0) {
    const what =
      rt.status.name === "cudaErrorInsufficientDriver"
        ? f.driver
          ? `the NVIDIA driver (${f.driver}) is older than the CUDA runtime needs`
          : "no NVIDIA driver is installed (libcuda.so.1 not found)"
        : rt.status.name === "cudaErrorNoDevice"
          ? "no CUDA-capable GPU is visible (check that the GPU is present and, in a container, passed through)"
          : "the CUDA runtime cannot use the driver or the device";
    return {
      message: `${what}: the CUDA runtime (${rt.path}) reports ${rt.status.name}: ${rt.status.text}. To fix: ${DRIVER_HINT}`,
      summary: `${what} (${rt.status.name})`,
    };
  }
  if (rt && rt.status?.code === 0) {
    if (rt.deviceCount === 0) return { message: `no CUDA device found (cudaGetDeviceCount = 0). To fix: ${DRIVER_HINT}`, summary: "no CUDA device found" };
    return null; // the runtime talks to a driver with a device: whatever discovery said about libcuda, it works
  }
  if (!f.driver)
    return {
      message:
        "no NVIDIA driver is installed: libcuda.so.1 is not in the ldconfig cache, /usr/lib/x86_64-linux-gnu, /usr/lib64 or /usr/lib/wsl/lib" +
        `${rt?.loadError ? ` (and libcudart at ${rt.path} could not be loaded: ${rt.loadError})` : ""}. To fix: ${DRIVER_HINT}`,
      summary: "no NVIDIA driver (libcuda.so.1 not found)",
    };
  return null;
}

/** Gather the driver and runtime facts of `d` (loads libcudart when found; never throws). */
export function cudaStackFacts(d: CudaDiscovery): CudaStackFacts {
  const path = d.libraries.cudart.path;
  if (!path) return { driver: d.driver, runtime: null };
  try {
    const rt = openLibrary("cudart", path, CUDART).symbols;
    const n = new Int32Array(1);
    const code = rt.cudaGetDeviceCount(n) as number;
    if (code !== 0) rt.cudaGetLastError();
    return {
      driver: d.driver,
      runtime: { path, status: { code, name: String(rt.cudaGetErrorName(code)), text: String(rt.cudaGetErrorString(code)) }, deviceCount: code === 0 ? n[0]! : undefined },
    };
  } catch (e) {
    return { driver: d.driver, runtime: { path, loadError: (e as Error).message } };
  }
}
