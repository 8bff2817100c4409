// `bun-diffusion info`: the runtime, the backends and devices, and the native libraries found
// (OpenBLAS; cudart, cuBLAS, cuDNN, cuBLASLt (optional), our kernels: versions and where they were found, or where we
// looked), as text or JSON; the CUDA runtime version beside the CUDA version the driver supports, and the runtime
// the kernels were built against, with the mismatch initCuda would refuse. Devices are listed without creating a
// context on any of them (ffi/cuda/index.ts cudaEnvironment). BD_CUDA_EMULATE=1 reports the emulated device instead.

import { cpuInfo } from "../../ffi/cpuid.ts";
import { getOpenBlas, openBlasStatus } from "../../ffi/openblas.ts";
import { gemmBackendName } from "../backends/cpu/index.ts";
import { hasBackend } from "../backends/registry.ts";
import { type CudaEnvironmentReport, cudaEnvironment } from "../../ffi/cuda/index.ts";
import { cudaDefaultDtype } from "../pipelines/default-dtype.ts";
import pkg from "../../package.json" with { type: "json" };

/** How the CUDA backend's linear layers would run (src/backends/cuda/linalg.ts): cuBLASLt epilogues or the fallback. */
function linearPath(c: CudaEnvironmentReport): string {
  if (process.env.BD_CUDA_LINEAR === "cublas") return "cuBLAS GEMM + bias kernel (BD_CUDA_LINEAR=cublas)";
  const lt = c.libraries.cublasLt;
  return lt.path && !lt.error ? "cuBLASLt matmul with bias / GELU(tanh) epilogues" : `cuBLAS GEMM + bias kernel (cuBLASLt: ${lt.error ?? "not found"})`;
}

export interface InfoReport {
  package: { name: string; version: string };
  runtime: { bun: string; platform: string; arch: string };
  cpu: { model: string | undefined; cpus: number; simd: string[] };
  backends: { cpu: { gemm: string }; meta: boolean; cuda: boolean };
  libraries: { openblas: ReturnType<typeof openBlasStatus> };
  cuda: CudaEnvironmentReport;
}

export function collectInfo(): InfoReport {
  getOpenBlas(); // load (or record why not) before reporting
  const cpu = cpuInfo();
  const simd = ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "amx_tile", "neon", "asimd"].filter((f) =>
    cpu.flags.has(f),
  );
  return {
    package: { name: pkg.name, version: pkg.version },
    runtime: { bun: Bun.version, platform: process.platform, arch: process.arch },
    cpu: { model: cpu.model, cpus: cpu.cpus, simd },
    backends: { cpu: { gemm: gemmBackendName() }, meta: hasBackend("meta"), cuda: hasBackend("cuda") },
    libraries: { openblas: openBlasStatus() },
    cuda: cudaEnvironment(),
  };
}

export function formatInfo(r: InfoReport): string {
  const ob = r.libraries.openblas;
  return [
    `${r.package.name} ${r.package.version}`,
    `runtime      Bun ${r.runtime.bun} on ${r.runtime.platform}/${r.runtime.arch}`,
    `cpu          ${r.cpu.model ?? "unknown"} (${r.cpu.cpus} CPUs; ${r.cpu.simd.join(", ") || "no SIMD flags found"})`,
    `backend cpu  GEMM: ${r.backends.cpu.gemm}`,
    `backend cuda ${r.cuda.available ? `available${r.cuda.emulated ? " (emulated device)" : ""}` : `not available: ${r.cuda.problems.join("; ") || "no device"}`}`,
    ...r.cuda.devices.map(
      (d) =>
        `  device ${d.index}   ${d.name} (sm ${d.computeCapability}, ${d.multiprocessors} SMs, ${(d.totalMemoryBytes / 2 ** 30).toFixed(1)} GiB; ` +
        `pipelines default to ${cudaDefaultDtype(...(d.computeCapability.split(".").map(Number) as [number, number])).dtype})`,
    ),
    ...(r.cuda.available ? [`  linear     ${linearPath(r.cuda)}`] : []),
    `  driver     ${r.cuda.driver.path ?? (r.cuda.emulated ? "emulated" : "not found")}${r.cuda.driver.version ? ` (supports CUDA ${r.cuda.driver.version})` : ""}`,
    `  runtime    ${r.cuda.runtimeVersion ?? "unknown"}${r.cuda.kernelsRuntimeVersion ? ` (kernels built against ${r.cuda.kernelsRuntimeVersion})` : ""}`,
    ...(r.cuda.versionProblem ? [`  versions   PROBLEM: ${r.cuda.versionProblem}`] : []),
    ...Object.entries(r.cuda.libraries).map(
      ([name, l]) => `  ${name.padEnd(10)} ${l.path ? `${l.path}${l.version ? ` (${l.version})` : ""}${l.error ? ` — ${l.error}` : ""}` : l.error ?? "not found"}`,
    ),
    `  nvcc       ${r.cuda.toolkit ? `${r.cuda.toolkit.nvcc} (CUDA ${r.cuda.toolkit.version})` : "not found (needed only to build the kernels)"}`,
    `openblas     ${ob.loaded ? `${ob.path} (core ${ob.corename}, ${ob.threads} threads)` : `not loaded: ${ob.reason}`}`,
  ].join("\n");
}
