// CPU op benchmark, printed as one JSON object: GEMM GFLOP/s (1024³ and M×N×K = 4096×320×2880),
// conv2d 3×3 (pad 1) at [1,320,64,64] and [1,640,32,32], GroupNorm(32) and softmax throughput, each
// with 1 and 2 GEMM threads. GEMM and convolution use OpenBLAS threads; GroupNorm and softmax run
// in one JavaScript thread, so their two rows show the thread setting does not affect them.
// Usage: bun scripts/bench/cpu-ops.ts [--min-seconds 0.5]

import { gemmBackendName, setGemmThreads } from "../../src/backends/cpu/index.ts";
import { cpuInfo } from "../../ffi/cpuid.ts";
import { time } from "./bench-util.ts";
import { conv2d, groupNorm, randn, softmax, tidy, type Tensor } from "../../src/index.ts";

const argi = process.argv.indexOf("--min-seconds");
const MIN_SECONDS = argi > 0 ? Number(process.argv[argi + 1]) : 0.5;

const r2 = (x: number) => Math.round(x * 100) / 100;
const results: Record<string, unknown>[] = [];

function run(threads: number, inputs: Record<string, Tensor>): void {
  setGemmThreads(threads);
  const gemm = (M: number, N: number, K: number, a: Tensor, b: Tensor) => {
    const t = time(() => tidy(() => void a.matmul(b)), MIN_SECONDS);
    results.push({ op: "matmul", shape: `${M}×${N}×${K}`, threads, ms: r2(t.ms), gflops: r2((2 * M * N * K) / (t.ms * 1e6)), reps: t.reps });
  };
  gemm(1024, 1024, 1024, inputs.a1024!, inputs.b1024!);
  gemm(4096, 320, 2880, inputs.a4096!, inputs.b2880!);
  for (const [name, C, H] of [["x320", 320, 64], ["x640", 640, 32]] as const) {
    const x = inputs[name]!;
    const w = inputs[`w${C}`]!;
    const t = time(() => tidy(() => void conv2d(x, w, null, { padding: 1 })), MIN_SECONDS);
    const flops = 2 * C * C * 9 * H * H;
    results.push({ op: "conv2d_3x3", shape: `[1,${C},${H},${H}]->${C}`, threads, ms: r2(t.ms), gflops: r2(flops / (t.ms * 1e6)), reps: t.reps });
  }
  const g = inputs.g!;
  const tg = time(() => tidy(() => void groupNorm(g, 32, null, null, 1e-5)), MIN_SECONDS);
  results.push({ op: "group_norm", shape: "[2,320,64,64] G=32", threads, ms: r2(tg.ms), gb_per_s: r2((2 * g.byteLength) / (tg.ms * 1e6)), reps: tg.reps });
  const s = inputs.s!;
  const ts = time(() => tidy(() => void softmax(s, -1)), MIN_SECONDS);
  results.push({ op: "softmax", shape: "[16,1024,1024]", threads, ms: r2(ts.ms), gb_per_s: r2((2 * s.byteLength) / (ts.ms * 1e6)), reps: ts.reps });
}

const inputs = {
  a1024: randn([1024, 1024], { seed: 1 }),
  b1024: randn([1024, 1024], { seed: 2 }),
  a4096: randn([4096, 2880], { seed: 3 }),
  b2880: randn([2880, 320], { seed: 4 }),
  x320: randn([1, 320, 64, 64], { seed: 5 }),
  w320: randn([320, 320, 3, 3], { seed: 6 }),
  x640: randn([1, 640, 32, 32], { seed: 7 }),
  w640: randn([640, 640, 3, 3], { seed: 8 }),
  g: randn([2, 320, 64, 64], { seed: 9 }),
  s: randn([16, 1024, 1024], { seed: 10 }),
};
for (const threads of [1, 2]) run(threads, inputs);
for (const t of Object.values(inputs)) t.dispose();

console.log(JSON.stringify({ bench: "cpu-ops", date: new Date().toISOString(), cpu: cpuInfo().model, gemm: gemmBackendName(), results }, null, 2));
