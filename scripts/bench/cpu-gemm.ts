// Micro benchmark of the CPU GEMM (src/backends/cpu/gemm.ts): GFLOP/s of OpenBLAS at 1, 2 and all threads and
// of the TypeScript fallback, printed as one JSON object on stdout.
// Shapes are written M×N×K: C[M,N] = A[M,K]·B[K,N] (row-major, no transposes), 2·M·N·K flops per GEMM.
// Usage: bun scripts/bench/cpu-gemm.ts [--min-seconds 0.5]

import { sgemm, setGemmBackend, setGemmThreads, gemmBackendName } from "../../src/backends/cpu/index.ts";
import { openBlasStatus, getOpenBlas } from "../../ffi/openblas.ts";
import { cpuInfo } from "../../ffi/cpuid.ts";

const argi = process.argv.indexOf("--min-seconds");
const MIN_SECONDS = argi > 0 ? Number(process.argv[argi + 1]) : 0.5;

interface Result {
  backend: string;
  threads: number;
  shape: string; // "M×N×K"
  gflops_best: number;
  gflops_median: number;
  ms_median: number;
  reps: number;
}

function randomArray(n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.random() * 2 - 1;
  return a;
}

/** Time C = A·B: one warm-up, then at least 3 runs and MIN_SECONDS of runs. */
function bench(M: number, N: number, K: number, minSeconds = MIN_SECONDS): Omit<Result, "backend" | "threads"> {
  const A = randomArray(M * K), B = randomArray(K * N), C = new Float32Array(M * N);
  const run = () => sgemm(false, false, M, N, K, 1, A, 0, K, B, 0, N, 0, C, 0, N);
  run();
  const times: number[] = [];
  const start = performance.now();
  while (times.length < 3 || performance.now() - start < minSeconds * 1000) {
    const t = performance.now();
    run();
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  const flops = 2 * M * N * K;
  const med = times[times.length >> 1];
  const round = (x: number) => Math.round(x * 100) / 100;
  return {
    shape: `${M}×${N}×${K}`,
    gflops_best: round(flops / (times[0] * 1e6)),
    gflops_median: round(flops / (med * 1e6)),
    ms_median: round(med),
    reps: times.length,
  };
}

const SHAPES: [number, number, number][] = [[1024, 1024, 1024], [4096, 320, 2880]];
const results: Result[] = [];
const cpu = cpuInfo();

if (getOpenBlas()) {
  setGemmBackend("openblas");
  const initial = getOpenBlas()!.getNumThreads();
  for (const threads of [...new Set([1, 2, cpu.cpus])]) {
    setGemmThreads(threads);
    for (const [M, N, K] of SHAPES) results.push({ backend: gemmBackendName(), threads, ...bench(M, N, K) });
  }
  setGemmThreads(initial);
}

// TypeScript fallback: 256³ always; 1024³ only if the 256³ rate predicts under 2 s per run.
setGemmBackend("typescript");
const small = bench(256, 256, 256);
results.push({ backend: "typescript", threads: 1, ...small });
if ((2 * 1024 ** 3) / (small.gflops_median * 1e9) < 2) {
  results.push({ backend: "typescript", threads: 1, ...bench(1024, 1024, 1024, 0) });
}
setGemmBackend("auto");

const { config: _config, ...blas } = openBlasStatus();
console.log(JSON.stringify({
  bench: "cpu-gemm",
  convention: "shape M×N×K: C[M,N] = A[M,K]·B[K,N], row-major, fp32; GFLOP/s = 2·M·N·K / time",
  cpu: { model: cpu.model, cpus: cpu.cpus },
  openblas: blas,
  results,
}, null, 2));
