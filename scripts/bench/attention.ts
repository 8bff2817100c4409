// Attention benchmark on the CUDA device (real, or emulated with BD_CUDA_EMULATE=1), one JSON object on stdout:
// per shape, dtype and implementation the median device time per call (CUDA events around each rep on the
// compute stream), TFLOP/s (4·B·H·Sq·Sk·D: the two GEMMs; causal not used) and the device memory the call
// allocates above what was live before it (the allocator's peak: the output alone for the fused kernels, plus the
// [B, H, Sq, Sk] scores and probabilities for the naive path).
//
//   tensor-core  the default for float16 / bfloat16 (kernels/attention_tc.cu)
//   cuda-core    the CUDA-core kernel (kernels/attention.cu), forced with BD_CUDA_ATTENTION=cuda-cores
//   naive        the "naive" attention kind: materialising GEMM (cuBLAS) + softmax + GEMM, upcast to float32
//   cudnn        cuDNN's fused attention: not measured — our binding (ffi/cuda/cudnn.ts) has no backend graph API
//                (cudnnBackend* descriptors), which fused SDPA needs; each such row says why (or "absent")
//
// Shapes: SD 1.5 at 512² (CFG batch 2, 8 heads; self-attention 4096 / 1024 / 256 / 64 tokens with heads of 40 /
// 80 / 160 / 160, cross-attention of the same queries on 77 keys; 16384 tokens of 40 at 1024²) and SDXL at 1024²
// (batch 2; 10 heads of 64 at 4096 tokens, 20 heads of 64 at 1024, self and cross on 77 keys). q/k/v are the
// strided views the Attention module passes ([B, S, H·D] projections seen as [B, H, S, D]). The naive path at
// 16384 tokens needs 2 · 8 · 16384² · 4 bytes (32 GiB) per score matrix: on a smaller GPU its row says "error".
//
// On the emulated device the numbers are CPU emulation time, not performance (the JSON says so in "note"); use
// --quick there (small shapes, one rep).
//
// Usage: bun scripts/bench/attention.ts [--quick] [--dtype f16,bf16] [--impl tensor-core,cuda-core,naive]
//          [--min-seconds 0.2] [--out FILE]

import { writeFileSync } from "node:fs";
import { type CudaContext, cudaAvailable, cudaContext, cudaInfo, cudaSynchronize, initCuda } from "../../src/backends/cuda/index.ts";
import { scaledDotProductAttention } from "../../src/nn/attention-dispatch.ts";
import { type DType, type Tensor, memoryStats, randn, resetPeakMemory, tidy } from "../../src/tensor/index.ts";
import { median, sig } from "./bench-util.ts";

const IMPLS = ["tensor-core", "cuda-core", "naive"] as const;
type Impl = (typeof IMPLS)[number];

interface Shape {
  model: string;
  B: number;
  H: number;
  Sq: number;
  Sk: number;
  D: number;
}
const SD15: Shape[] = [[4096, 40], [1024, 80], [256, 160], [64, 160]].flatMap(([S, D]) => [
  { model: "sd15 self", B: 2, H: 8, Sq: S!, Sk: S!, D: D! },
  { model: "sd15 cross", B: 2, H: 8, Sq: S!, Sk: 77, D: D! },
]);
/** SD 1.5 at 1024²: the first level's 16384 tokens (self; cross on 77 keys). */
const SD15_1024: Shape[] = [
  { model: "sd15@1024 self", B: 2, H: 8, Sq: 16384, Sk: 16384, D: 40 },
  { model: "sd15@1024 cross", B: 2, H: 8, Sq: 16384, Sk: 77, D: 40 },
];
const SDXL: Shape[] = [[4096, 10], [1024, 20]].flatMap(([S, H]) => [
  { model: "sdxl self", B: 2, H: H!, Sq: S!, Sk: S!, D: 64 },
  { model: "sdxl cross", B: 2, H: H!, Sq: S!, Sk: 77, D: 64 },
]);
const QUICK: Shape[] = [
  { model: "quick self", B: 1, H: 2, Sq: 256, Sk: 256, D: 40 },
  { model: "quick self", B: 1, H: 1, Sq: 256, Sk: 256, D: 64 },
  { model: "quick cross", B: 1, H: 2, Sq: 256, Sk: 77, D: 80 },
];

function parse(argv: string[]) {
  const o = { quick: false, dtypes: ["float16", "bfloat16"] as DType[], impls: [...IMPLS] as Impl[], minSeconds: 0.2, out: null as string | null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const val = () => argv[++i] ?? fail(`${a} needs a value`);
    if (a === "--quick") o.quick = true;
    else if (a === "--dtype") o.dtypes = val().split(",").map((d) => ({ f16: "float16", bf16: "bfloat16", float16: "float16", bfloat16: "bfloat16" })[d] ?? fail(`unknown dtype ${d}`)) as DType[];
    else if (a === "--impl") o.impls = val().split(",").map((x) => (IMPLS.includes(x as Impl) ? (x as Impl) : fail(`unknown impl ${x}`)));
    else if (a === "--min-seconds") o.minSeconds = Number(val());
    else if (a === "--out") o.out = val();
    else fail(`unknown argument ${a}`);
  }
  return o;
}
function fail(msg: string): never {
  console.error(`attention bench: ${msg}\nusage: bun scripts/bench/attention.ts [--quick] [--dtype f16,bf16] [--impl ${IMPLS.join(",")}] [--min-seconds S] [--out FILE]`);
  process.exit(1);
}

const opts = parse(process.argv.slice(2));
const avail = cudaAvailable();
if (!avail.ok) fail(`CUDA is not available: ${avail.reason} (without a GPU: BD_CUDA_EMULATE=1 ... --quick)`);
initCuda();
const info = cudaInfo()!;
const ctx: CudaContext = cudaContext();
const rt = ctx.rt;
const EMULATED = info.emulated;

const events = [ctx.streams.createEvent(true), ctx.streams.createEvent(true)];
const f32 = new Float32Array(1);
/** Device ms of one call of fn, between two events on the compute stream. */
function deviceMs(fn: () => void): number {
  ctx.libs.check(rt.cudaEventRecord(events[0]!, ctx.stream), "cudaEventRecord");
  fn();
  ctx.libs.check(rt.cudaEventRecord(events[1]!, ctx.stream), "cudaEventRecord");
  ctx.streams.synchronize(ctx.stream);
  ctx.libs.check(rt.cudaEventElapsedTime(f32, events[0]!, events[1]!), "cudaEventElapsedTime");
  return f32[0]!;
}

function run(impl: Impl, q: Tensor, k: Tensor, v: Tensor): void {
  const prev = process.env.BD_CUDA_ATTENTION;
  if (impl === "cuda-core") process.env.BD_CUDA_ATTENTION = "cuda-cores";
  try {
    scaledDotProductAttention(q, k, v, impl === "naive" ? { kind: "naive", upcast: true } : { kind: "fused" }).dispose();
  } finally {
    if (prev === undefined) delete process.env.BD_CUDA_ATTENTION;
    else process.env.BD_CUDA_ATTENTION = prev;
  }
}

const cudnnNote = EMULATED
  ? "absent: the emulated cuDNN shim has no fused attention"
  : "not measured: ffi/cuda/cudnn.ts binds no cuDNN backend graph API (cudnnBackend* descriptors), which fused attention needs";

const rows: Record<string, unknown>[] = [];
const t0 = performance.now();
for (const s of opts.quick ? QUICK : [...SD15, ...SD15_1024, ...SDXL])
  for (const dtype of opts.dtypes) {
    const flops = 4 * s.B * s.H * s.Sq * s.Sk * s.D;
    const shape = `q [${s.B},${s.H},${s.Sq},${s.D}] k,v [${s.B},${s.H},${s.Sk},${s.D}]`;
    tidy(() => {
      const proj = (S: number, seed: number) => randn([s.B, S, s.H * s.D], { seed, device: "cuda", dtype }).reshape([s.B, S, s.H, s.D]).transpose(1, 2);
      const q = proj(s.Sq, 1), k = proj(s.Sk, 2), v = proj(s.Sk, 3);
      cudaSynchronize();
      for (const impl of opts.impls) {
        const row: Record<string, unknown> = { model: s.model, shape, dtype, impl, gflop: sig(flops / 1e9, 5) };
        try {
          run(impl, q, k, v); // warm-up (and the shared-memory opt-in)
          cudaSynchronize();
          const live = memoryStats("cuda").live;
          resetPeakMemory("cuda");
          const times = [deviceMs(() => run(impl, q, k, v))];
          row.peak_bytes = memoryStats("cuda").peak - live;
          const reps = opts.quick ? 1 : 50;
          const start = performance.now();
          while (times.length < reps && (performance.now() - start) / 1000 < opts.minSeconds) times.push(deviceMs(() => run(impl, q, k, v)));
          const ms = median(times);
          Object.assign(row, { median_ms: sig(ms), reps: times.length, tflops: sig(flops / (ms * 1e9), 4), peak_mib: sig((row.peak_bytes as number) / 2 ** 20, 4) });
        } catch (e) {
          row.error = (e as Error).message.split("\n")[0];
        }
        rows.push(row);
      }
      rows.push({ model: s.model, shape, dtype, impl: "cudnn", note: cudnnNote });
    });
  }

const result = {
  bench: "attention",
  date: new Date().toISOString(),
  emulated: EMULATED,
  ...(EMULATED ? { note: "emulated CUDA device: times are CPU emulation, not GPU performance" } : {}),
  device: { name: info.name, compute_capability: info.computeCapability, sm_count: info.multiprocessors },
  quick: opts.quick,
  flops_formula: "4·B·H·Sq·Sk·D",
  results: rows,
  wall_seconds: sig((performance.now() - t0) / 1000, 3),
};
const json = JSON.stringify(result, null, 2);
if (opts.out) writeFileSync(opts.out, json + "\n");
console.log(json);
