// The CUDA libraries in one call: discover (discover.ts), bind (bind.ts + the symbol tables; cuBLASLt when it is
// found, else null with the reason), check the kernels library's ABI, and give each library its check(), and the version check (versions.ts) initCuda runs.
// cudaEnvironment() is the report behind `bun-diffusion info`: per device it queries only cudaGetDeviceProperties
// (name, total memory) and cudaDeviceGetAttribute (compute capability, SMs), which create no context; free memory
// is not reported there (cudaMemGetInfo needs a context on the device).

import { getOpenBlas } from "../openblas.ts";
import { applyEmulatedMemoryEnv } from "./emu-memory.ts";
import { openLibrary, type StatusCheck } from "./bind.ts";
import { CUBLAS, cublasCheck, type Cublas } from "./cublas.ts";
import { CUBLASLT, cublasLtCheck, type CublasLt } from "./cublaslt.ts";
import { CUDART, PROP_BUFFER_BYTES, PROP_TOTAL_GLOBAL_MEM, cudaDevAttr, cudartCheck, type Cudart } from "./cudart.ts";
import { CUDNN, cudnnCheck, type Cudnn } from "./cudnn.ts";
import {
  type CudaLibrary, type CudaToolkit, type DiscoverOptions, OPTIONAL_LIBRARIES, type RequiredCudaLibrary, discoverCuda,
  findCudaToolkit, requireLibraries,
} from "./discover.ts";
import { KERNELS, checkKernelAbi, type KernelAbi, type Kernels } from "./kernels.ts";
import { type CudaVersions, cudaVersionProblem, formatCudaVersion, readCudaVersions } from "./versions.ts";

export { type CudaVersions, cudaVersionProblem, formatCudaVersion, readCudaVersions } from "./versions.ts";

export interface CudaLibraries {
  emulated: boolean;
  paths: Record<RequiredCudaLibrary, string> & { cublasLt?: string };
  cudart: Cudart;
  cublas: Cublas;
  /** cuBLASLt, or null when it was not found or could not be loaded (`cublasLtMissing` says why). */
  cublasLt: CublasLt | null;
  cublasLtMissing: string | null;
  cublasLtCheck: StatusCheck;
  cudnn: Cudnn;
  kernels: Kernels;
  kernelAbi: KernelAbi;
  /** check(status, "cudaMalloc") for cudart calls and for kernel launchers (both return cudaError_t). */
  check: StatusCheck;
  cublasCheck: StatusCheck;
  cudnnCheck: StatusCheck;
}

const loaded = new Map<string, CudaLibraries>();

/**
 * Find, open and bind cudart, cuBLAS, cuDNN and our kernels (memoised per set of paths). Throws
 * CudaNotFoundError (where it looked, what to install) or CudaLibraryLoadError.
 */
export function loadCuda(opts: DiscoverOptions = {}): CudaLibraries {
  const d = discoverCuda(opts);
  const paths: CudaLibraries["paths"] = requireLibraries(d, ["cudart", "cublas", "cudnn", "kernels"] as const);
  const ltPath = d.libraries.cublasLt.path;
  if (ltPath) paths.cublasLt = ltPath;
  const key = Object.values(paths).join("|");
  const hit = loaded.get(key);
  if (hit) return hit;
  // the emulated cuBLAS / cuDNN run on OpenBLAS: load it through ffi/openblas.ts first, which sets its
  // load-time configuration (OPENBLAS_CORETYPE, threads); the shims' dlopen then gets that instance
  if (d.emulated) {
    getOpenBlas();
    applyEmulatedMemoryEnv(); // BD_CUDA_EMU_MEMORY=2GiB: the emulated device's capacity
  }
  const cudart = openLibrary("cudart", paths.cudart, CUDART);
  const cublas = openLibrary("cuBLAS", paths.cublas, CUBLAS);
  const cudnn = openLibrary("cuDNN", paths.cudnn, CUDNN);
  let cublasLt: CublasLt | null = null;
  let cublasLtMissing: string | null = null;
  if (ltPath)
    try {
      cublasLt = openLibrary("cuBLASLt", ltPath, CUBLASLT);
    } catch (e) {
      cublasLtMissing = (e as Error).message;
      delete paths.cublasLt;
    }
  else cublasLtMissing = `libcublasLt not found (looked in ${d.libraries.cublasLt.searched.length} places)`;
  const kernels = openLibrary("kernels", paths.kernels, KERNELS);
  const kernelAbi = checkKernelAbi(kernels.symbols.bdk_abi!() as string | null, paths.kernels);
  if (kernelAbi.emulated !== d.emulated)
    throw new Error(`${paths.kernels} is ${kernelAbi.emulated ? "the emulated" : "the real"} kernels library but the ${d.emulated ? "emulated" : "real"} device was asked for`);
  const libs: CudaLibraries = {
    emulated: d.emulated, paths, cudart, cublas, cudnn, kernels, kernelAbi, cublasLt, cublasLtMissing,
    check: cudartCheck(cudart, () => (kernels.symbols.bdk_last_error!() as string | null) || null), cublasCheck: cublasCheck(cublas), cudnnCheck: cudnnCheck(cudnn),
    cublasLtCheck: cublasLt ? cublasLtCheck(cublasLt) : () => {
      throw new Error(`internal: cuBLASLt is not loaded (${cublasLtMissing})`);
    },
  };
  loaded.set(key, libs);
  return libs;
}

/** The runtime, driver and kernels-build versions of loaded libraries. */
export function cudaVersions(libs: CudaLibraries): CudaVersions {
  const k = libs.kernels;
  return readCudaVersions(libs.cudart.symbols, k.has("bdk_cudart_version") ? (k.symbols.bdk_cudart_version!() as number) : 0);
}

/** Throws an Error naming the versions and the fix when runtime, driver and kernels cannot work together. */
export function checkCudaVersions(libs: CudaLibraries): CudaVersions {
  const v = cudaVersions(libs);
  const problem = cudaVersionProblem(v, libs.paths);
  if (problem) throw new Error(problem);
  return v;
}

// ---- the environment report

export interface CudaDeviceInfo {
  index: number;
  name: string;
  computeCapability: string;
  multiprocessors: number;
  totalMemoryBytes: number;
}
export interface CudaLibraryReport {
  path: string | null;
  /** Which search rule found it. */
  source: string | null;
  version?: string;
  /** Why it is missing or could not be used. */
  error?: string;
  /** The backend works without it (cuBLASLt: linear layers then take the cuBLAS GEMM and a bias kernel). */
  optional?: boolean;
  /** Where it was looked for, when it was not found. */
  searched?: string[];
}
export interface CudaEnvironmentReport {
  emulated: boolean;
  /** Everything needed for device "cuda" loads and at least one device is present. */
  available: boolean;
  libraries: Record<CudaLibrary, CudaLibraryReport>;
  driver: { path: string | null; version?: string };
  runtimeVersion?: string;
  /** The CUDA runtime the kernels library was built against (absent for the emulated build). */
  kernelsRuntimeVersion?: string;
  /** Why the runtime, driver and kernels versions cannot work together (initCuda would throw it). */
  versionProblem?: string;
  devices: CudaDeviceInfo[];
  /** nvcc, for building kernels. */
  toolkit: CudaToolkit | null;
  problems: string[];
}

const cudaVersion = formatCudaVersion;

/** What was found where, versions and devices; never throws. Loads libraries that are found. */
export function cudaEnvironment(opts: DiscoverOptions = {}): CudaEnvironmentReport {
  const d = discoverCuda(opts);
  const problems: string[] = [];
  const libraries = {} as Record<CudaLibrary, CudaLibraryReport>;
  for (const [name, loc] of Object.entries(d.libraries) as [CudaLibrary, (typeof d.libraries)[CudaLibrary]][]) {
    const optional = OPTIONAL_LIBRARIES.includes(name);
    libraries[name] = { path: loc.path, source: loc.source, ...(optional ? { optional } : {}) };
    if (!loc.path) {
      libraries[name].error = `not found (looked in ${loc.searched.length} places)${optional ? "; optional" : ""}`;
      libraries[name].searched = loc.searched;
      if (!optional) problems.push(`${name} not found`);
    }
  }
  const report: CudaEnvironmentReport = {
    emulated: d.emulated, available: false, libraries, driver: { path: d.driver }, devices: [], toolkit: findCudaToolkit(), problems,
  };
  const attempt = <T>(lib: CudaLibrary, fn: () => T): T | undefined => {
    try {
      return fn();
    } catch (e) {
      libraries[lib].error = (e as Error).message;
      problems.push(`${lib}: ${(e as Error).message}`);
      return undefined;
    }
  };
  const i32 = new Int32Array(2);
  if (libraries.cudart.path)
    attempt("cudart", () => {
      const rt = openLibrary("cudart", libraries.cudart.path!, CUDART).symbols;
      if (rt.cudaRuntimeGetVersion(i32) === 0) report.runtimeVersion = libraries.cudart.version = cudaVersion(i32[0]!);
      if (rt.cudaDriverGetVersion(i32) === 0 && i32[0]) report.driver.version = cudaVersion(i32[0]!);
      const st = rt.cudaGetDeviceCount(i32);
      if (st !== 0) throw new Error(`no usable device: ${rt.cudaGetErrorName(st)}: ${rt.cudaGetErrorString(st)}`);
      // no context per device: attributes and properties only (cudaSetDevice + cudaMemGetInfo would create a
      // primary context, hundreds of MiB, on every GPU of the machine just to print them)
      const prop = new Uint8Array(PROP_BUFFER_BYTES);
      const props = new DataView(prop.buffer);
      for (let i = 0; i < i32[0]!; i++) {
        const attr = (a: number) => (rt.cudaDeviceGetAttribute(i32.subarray(1), a, i) === 0 ? i32[1]! : 0);
        prop.fill(0);
        const ok = rt.cudaGetDeviceProperties(prop, i) === 0;
        report.devices.push({
          index: i,
          name: new TextDecoder().decode(prop.subarray(0, Math.max(0, prop.indexOf(0)))),
          computeCapability: `${attr(cudaDevAttr.computeCapabilityMajor)}.${attr(cudaDevAttr.computeCapabilityMinor)}`,
          multiprocessors: attr(cudaDevAttr.multiProcessorCount),
          totalMemoryBytes: ok ? Number(props.getBigUint64(PROP_TOTAL_GLOBAL_MEM, true)) : 0,
        });
      }
    });
  if (libraries.cublas.path)
    attempt("cublas", () => {
      const b = openLibrary("cuBLAS", libraries.cublas.path!, CUBLAS);
      if (b.has("cublasGetProperty")) {
        const v = [0, 1, 2].map((t) => (b.symbols.cublasGetProperty(t, i32) === 0 ? i32[0]! : 0)); // MAJOR, MINOR, PATCH
        libraries.cublas.version = v.join(".");
      }
    });
  if (libraries.cublasLt.path)
    try {
      const lt = openLibrary("cuBLASLt", libraries.cublasLt.path, CUBLASLT);
      const v = Number(lt.symbols.cublasLtGetVersion()); // major * 10000 + minor * 100 + patch
      libraries.cublasLt.version = `${Math.floor(v / 10000)}.${Math.floor((v % 10000) / 100)}.${v % 100}`;
    } catch (e) {
      libraries.cublasLt.error = `${(e as Error).message}; optional`; // not a problem: linear layers use cuBLAS
    }
  if (libraries.cudnn.path)
    attempt("cudnn", () => {
      const v = Number(openLibrary("cuDNN", libraries.cudnn.path!, CUDNN).symbols.cudnnGetVersion());
      libraries.cudnn.version = v >= 90000 ? `${Math.floor(v / 10000)}.${Math.floor((v % 10000) / 100)}.${v % 100}` : `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 100)}.${v % 100}`;
    });
  if (libraries.kernels.path)
    attempt("kernels", () => {
      const k = openLibrary("kernels", libraries.kernels.path!, { bdk_abi: KERNELS.bdk_abi!, bdk_cudart_version: KERNELS.bdk_cudart_version! });
      const abi = checkKernelAbi(k.symbols.bdk_abi() as string | null, libraries.kernels.path!);
      libraries.kernels.version = `bdk ${abi.version}${abi.emulated ? " (emulated)" : ""}`;
      const v = new Int32Array(1);
      if (k.has("bdk_cudart_version")) v[0] = k.symbols.bdk_cudart_version() as number;
      if (v[0]) report.kernelsRuntimeVersion = cudaVersion(v[0]);
      if (libraries.cudart.path && report.runtimeVersion) {
        const rt = openLibrary("cudart", libraries.cudart.path, CUDART).symbols;
        const problem = cudaVersionProblem(readCudaVersions(rt, v[0]!), { cudart: libraries.cudart.path, kernels: libraries.kernels.path! });
        if (problem && report.driver.version) problems.push((report.versionProblem = problem)); // no driver: cudart already says so
      }
    });
  report.available = Object.values(libraries).every((l) => l.optional || (l.path && !l.error)) && report.devices.length > 0 && !report.versionProblem;
  return report;
}
export { parseByteSize, setEmulatedMemoryLimit } from "./emu-memory.ts";
