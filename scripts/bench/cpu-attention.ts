// CPU attention benchmark, printed as one JSON object: GFLOP/s (4·B·H·Sq·Sk·D counted, q·kᵀ and p·v) of the
// "fused" (backend kernel), "chunked" (online softmax from tensor ops) and "naive" attention kinds on the SD 1.5
// UNet's shapes at 512×512 with batch 2 (CFG): self-attention [2, 8, 4096, 40] (level 1), [2, 8, 1024, 80]
// (level 2), [2, 8, 256, 160] (level 3) and cross-attention [2, 8, 4096, 40] × 77 text tokens. q, k, v are the
// strided views the Attention module passes: [B, S, H·D] projections reshaped to [B, S, H, D] and permuted to
// [B, H, S, D] (no copy). BD_CPU_SIMD=0 measures the fused kernel with its JavaScript softmax. float32; median of ≥ 3 runs and ≥ --min-seconds; "naive" is skipped where its score
// matrices would exceed --naive-max-mb (default 2048).
// Usage: bun scripts/bench/cpu-attention.ts [--min-seconds 1] [--kinds fused,chunked,naive] [--naive-max-mb 2048]

import { cpuInfo } from "../../ffi/cpuid.ts";
import { gemmBackendName } from "../../src/backends/cpu/index.ts";
import { softmaxSimd } from "../../src/backends/cpu/index.ts";
import { scaledDotProductAttention } from "../../src/nn/attention-dispatch.ts";
import { type Tensor, memoryStats, randn, resetPeakMemory, tidy } from "../../src/tensor/index.ts";
import { cliOption, time } from "./bench-util.ts";

const args = process.argv.slice(2);
const opt = (name: string) => cliOption(args, name);
const MIN_SECONDS = Number(opt("--min-seconds") ?? 1);
const KINDS = (opt("--kinds") ?? "fused,chunked,naive").split(",");
const NAIVE_MAX_BYTES = Number(opt("--naive-max-mb") ?? 2048) * 2 ** 20;

interface Case {
  name: string;
  B: number;
  H: number;
  Sq: number;
  Sk: number;
  D: number;
}
const CASES: Case[] = [
  { name: "self [2,8,4096,40]", B: 2, H: 8, Sq: 4096, Sk: 4096, D: 40 },
  { name: "self [2,8,1024,80]", B: 2, H: 8, Sq: 1024, Sk: 1024, D: 80 },
  { name: "self [2,8,256,160]", B: 2, H: 8, Sq: 256, Sk: 256, D: 160 },
  { name: "cross [2,8,4096,40]x77", B: 2, H: 8, Sq: 4096, Sk: 77, D: 40 },
];

/** [B, S, H·D] -> [B, H, S, D] as the Attention module's splitHeads makes it (a strided view). */
function heads(x: Tensor, H: number): Tensor {
  const [B, S] = x.shape as [number, number];
  return x.reshape([B, S, H, -1]).transpose(1, 2);
}

const r2 = (x: number) => Math.round(x * 100) / 100;
const results: Record<string, unknown>[] = [];
for (const c of CASES) {
  tidy(() => {
    const q = heads(randn([c.B, c.Sq, c.H * c.D], { seed: 1 }), c.H);
    const k = heads(randn([c.B, c.Sk, c.H * c.D], { seed: 2 }), c.H);
    const v = heads(randn([c.B, c.Sk, c.H * c.D], { seed: 3 }), c.H);
    const flops = 4 * c.B * c.H * c.Sq * c.Sk * c.D;
    const row: Record<string, unknown> = { shape: c.name, gflop: r2(flops / 1e9) };
    for (const kind of KINDS) {
      if (kind === "naive" && c.B * c.H * c.Sq * c.Sk * 4 > NAIVE_MAX_BYTES) {
        row[kind] = "skipped (scores exceed --naive-max-mb)";
        continue;
      }
      const live0 = memoryStats("cpu").live;
      resetPeakMemory("cpu");
      const t = time(() => tidy(() => void scaledDotProductAttention(q, k, v, { kind })), MIN_SECONDS);
      row[kind] = { ms: r2(t.ms), gflops: r2(flops / (t.ms * 1e6)), reps: t.reps, peak_mb: r2((memoryStats("cpu").peak - live0) / 2 ** 20) };
    }
    results.push(row);
    console.error(JSON.stringify(row));
  });
}

console.log(JSON.stringify({ bench: "cpu-attention", date: new Date().toISOString(), cpu: cpuInfo().model, gemm: gemmBackendName(), softmax: softmaxSimd() ? "wasm simd" : "javascript", dtype: "float32", results }, null, 2));
