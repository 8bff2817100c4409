// The CUDA versions that must agree before the first launch: the runtime that discovery loaded
// (cudaRuntimeGetVersion), the CUDA version the driver supports (cudaDriverGetVersion), and the runtime our
// kernels library was built against (bdk_cudart_version; it links libcudart.so.<major> shared, so it uses the
// loaded runtime). A driver older than the runtime fails every launch with cudaErrorInsufficientDriver; a
// kernels library built for another runtime major would pull a second runtime into the process. Each mismatch is
// one clear error naming the versions and the fix, raised when the backend initialises.

import type { Cudart } from "./cudart.ts";

export interface CudaVersions {
  /** cudaRuntimeGetVersion, e.g. 13000 for 13.0. */
  runtime: number;
  /** cudaDriverGetVersion: the newest CUDA the installed driver supports; 0 without a driver. */
  driver: number;
  /** The runtime the kernels library was built against; 0 when unknown or emulated. */
  kernels: number;
}

/** "13.0" for 13000. */
export function formatCudaVersion(v: number): string {
  return `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}`;
}

/** Read the runtime's and the driver's versions (0 where a call fails). */
export function readCudaVersions(rt: Cudart["symbols"], kernelsBuiltWith = 0): CudaVersions {
  const i32 = new Int32Array(1);
  const runtime = rt.cudaRuntimeGetVersion(i32) === 0 ? i32[0]! : 0;
  const driver = rt.cudaDriverGetVersion(i32) === 0 ? i32[0]! : 0;
  return { runtime, driver, kernels: kernelsBuiltWith };
}

/** Why these versions cannot work together, with the fix; null when they can. */
export function cudaVersionProblem(v: CudaVersions, paths: { cudart: string; kernels?: string }): string | null {
  const rt = formatCudaVersion(v.runtime);
  if (v.driver === 0)
    return `the NVIDIA driver reports no CUDA version (cudaDriverGetVersion = 0) while the CUDA runtime ${paths.cudart} is ${rt}: ` +
      "install the NVIDIA driver (nvidia-smi must work)";
  if (v.driver < v.runtime)
    return `the NVIDIA driver supports CUDA ${formatCudaVersion(v.driver)} but the CUDA runtime ${paths.cudart} is ${rt}: every kernel launch ` +
      `would fail with cudaErrorInsufficientDriver. Fix: update the driver to one that supports CUDA ${rt} or newer, or use a CUDA runtime ` +
      `no newer than ${formatCudaVersion(v.driver)} (e.g. the nvidia-cuda-runtime wheel of that version, found through BD_CUDA_LIB_DIR) ` +
      `and rebuild the kernels with the matching toolkit (bun scripts/build-kernels.ts).`;
  if (v.kernels > 0) {
    const built = formatCudaVersion(v.kernels);
    const fix = `Fix: rebuild the kernels with the CUDA ${rt} toolkit (bun scripts/build-kernels.ts), or point BD_CUDA_LIB_DIR at a CUDA ${built}+ runtime of the same major version.`;
    if (Math.floor(v.kernels / 1000) !== Math.floor(v.runtime / 1000))
      return `the kernels library ${paths.kernels ?? ""} was built against CUDA runtime ${built} (libcudart.so.${Math.floor(v.kernels / 1000)}) but the loaded ` +
        `runtime ${paths.cudart} is ${rt}: that would be two CUDA runtimes in one process. ${fix}`;
    if (v.runtime < v.kernels)
      return `the kernels library ${paths.kernels ?? ""} was built against CUDA runtime ${built}, newer than the loaded runtime ${paths.cudart} (${rt}). ${fix}`;
  }
  return null;
}
