// CUDA op benchmark, printed as one JSON object on stdout (with --markdown, also a table on stderr or in a file):
// the device and library versions, then per case the median time of the op on the compute stream (CUDA events)
// and its throughput as a fraction of a stated peak.
//
//   gemm         matmul through the backend vs cublasGemmEx called directly on the same buffers: 4096³ and the
//                SD 1.5 shapes M×N×K = 8192×320×320, 8192×1280×320, 2048×640×5120. TFLOP/s (2·M·N·K).
//   conv         conv2d 3×3 pad 1 through the backend vs cudnnConvolutionForward called directly (own
//                descriptors, the backend's algorithm rule): [2,320,64,64]→320, [2,640,32,32]→640,
//                [2,1280,16,16]→1280. TFLOP/s (2·N·O·OH·OW·C·9).
//   elementwise  cudaMemcpyAsync device→device of the same bytes (the achievable bandwidth), add, mul and silu on
//                [2,320,128,128], add [2,320,128,128] + [1,320,1,1], the same add with both operands one element
//                off 16-byte alignment (the scalar path), + a scalar, and [2,4096,320] + [320] / + [2,1,320]. GB/s
//                counting bytes read + written; each row's note names the path it took (vector or scalar).
//   norm         group_norm [2,320,64,64] G=32 (weight, bias; with and without fused SiLU; add-then-norm+SiLU vs
//                the fused per-channel addend), group_norm+SiLU [1,128,512,512] G=32 (split into many pieces),
//                layer_norm [2,4096,320] over 320. GB/s (input read once + output written + weight/bias).
//   softmax      [16,4096,1024] over the last dim (= [2·8 heads, 4096, 1024]). GB/s.
//   attention    fused attention [2,8,4096,40], self (Sk = 4096) and cross (Sk = 77), q/k/v as the Attention
//                module passes them ([B,S,H·D] projections viewed as [B,H,S,D]). TFLOP/s (4·B·H·Sq·Sk·D).
// Each in float32, float16 and bfloat16 (float16/bfloat16 compute in float32: tensor cores for GEMM and conv).
//
// Timing: warm-up runs, a probe for the per-rep time, then enough reps for --min-seconds of device time (at least
// 10, at most 20000), in batches of ≤ 100 with a cudaEventRecord pair around each rep on the compute stream. Each
// batch is queued behind a "blocker" (float32 GEMMs) long enough that the host is ahead of the device for the whole
// batch, so the events time the device work of one call, not the gaps of a host-bound loop; host_ms (the host's
// enqueue time per call) shows when a stream of such calls would be host-bound. Peaks are dense (no sparsity)
// vendor datasheet numbers at boost clock; an unknown GPU gets null peaks.
//
// Output (schema_version 1): { bench, schema_version, date, emulated, note? (emulated only), quick, command,
//   device { index, name, compute_capability, sm_count, memory_total_bytes, memory_total_gib, memory_free_bytes_at_start,
//            l2_cache_bytes, clock_mhz, memory_clock_mhz, memory_bus_bits, memory_bandwidth_from_attributes_gb_per_s },
//   software { driver, runtime, cublas, cudnn, kernels, bun, libraries }, settings { dtypes, ops, min_seconds, tf32,
//   cudnn_benchmark, cudnn_workspace_mb, blocker_unit_ms, timing }, peak { gpu, source, basis, tflops { float16,
//   bfloat16, tf32, float32 }, memory_gb_per_s, sm_count_expected, sm_count_matches } (gpu null when unknown),
//   bandwidth { memcpy_dram_gb_per_s, memcpy_dram_bytes, memcpy_same_size_gb_per_s { dtype: GB/s } },
//   results [ { op, impl (backend | cublas | cudnn | cudaMemcpy), shape, dtype, median_ms, mean_ms, min_ms, reps,
//     host_ms, compute cases: gflop, tflops, peak_tflops, peak_basis; memory cases: mbytes, gb_per_s, peak_gb_per_s,
//     fraction_of_memcpy, fraction_of_dram_memcpy; fraction_of_peak; backend_vs_raw (backend ms / raw ms); algo
//     (cuDNN); note; error (failed case; timing fields null) } ],
//   memory { live_bytes_end (0 = nothing leaked), peak_bytes, peak_mib, reserved_bytes_end,
//     reserved_bytes_after_empty_cache, allocator }, failures, wall_seconds }
//
// Usage: bun scripts/bench/cuda-ops.ts [--quick] [--dtype f32,f16,bf16] [--ops gemm,conv,elementwise,norm,softmax,attention]
//          [--device-index N] [--min-seconds 0.3] [--markdown [FILE]]
//   --quick    tiny shapes, one warm-up and one timed rep (for checking the script on the emulated device:
//              BD_CUDA_EMULATE=1 bun scripts/bench/cuda-ops.ts --quick)
// Environment the backend reads and this script reports: BD_CUDA_TF32=1 (float32 GEMM on TF32 tensor cores; the
// float32 GEMM peak is then the TF32 one), BD_CUDNN_BENCHMARK=1, BD_CUDNN_WORKSPACE_MB.
// Exit status: 0 ok; 1 CUDA unavailable or bad arguments (the reason on stderr); 2 a case failed or memory leaked
// (the JSON is still printed, failing rows carry "error").

import { writeFileSync } from "node:fs";
import { cublasComputeType, cublasGemmAlgo, cublasOperation, cudaDataType } from "../../ffi/cuda/cublas.ts";
import { cudaDevAttr, cudaMemcpyKind } from "../../ffi/cuda/cudart.ts";
import { ALGO_PERF, cudnnConvolutionFwdAlgo, cudnnConvolutionMode, cudnnDataType, cudnnMathType, cudnnTensorFormat } from "../../ffi/cuda/cudnn.ts";
import { cudaEnvironment } from "../../ffi/cuda/index.ts";
import { type CudaContext, cudaContext, dptr } from "../../src/backends/cuda/index.ts";
import { cudaAllocatorStats, cudaAvailable, cudaEmptyCache, cudaSynchronize, initCuda } from "../../src/backends/cuda/index.ts";
import { scaledDotProductAttention } from "../../src/nn/attention-dispatch.ts";
import {
  type DType, type Tensor, add, conv2d, dtypeBytes, empty, groupNorm, layerNorm, memoryStats, mul, ones, randn, silu, softmax, tidy,
  zeros,
} from "../../src/tensor/index.ts";
import { median, round, sig } from "./bench-util.ts";

// ---- options

const FAMILIES = ["gemm", "conv", "elementwise", "norm", "softmax", "attention"] as const;
type Family = (typeof FAMILIES)[number];
const ALL_DTYPES: DType[] = ["float32", "float16", "bfloat16"];
const DTYPE_NAMES: Record<string, DType> = {
  f32: "float32", fp32: "float32", float32: "float32", float: "float32",
  f16: "float16", fp16: "float16", float16: "float16", half: "float16",
  bf16: "bfloat16", bfloat16: "bfloat16",
};

const USAGE = `usage: bun scripts/bench/cuda-ops.ts [options]
  --quick               tiny shapes, 1 warm-up + 1 timed rep (checks the script, e.g. on the emulated device)
  --dtype LIST          comma-separated: f32,f16,bf16 (default all)
  --ops LIST            comma-separated: ${FAMILIES.join(",")} (default all)
  --device-index N      CUDA device ordinal (default 0)
  --min-seconds S       device time to accumulate per case (default 0.3)
  --markdown [FILE]     also write a markdown table (to FILE, or to stderr)
  -h, --help            this text
Without a GPU: BD_CUDA_EMULATE=1 bun scripts/bench/cuda-ops.ts --quick (after bun scripts/build-kernels.ts --emu-only).`;

interface Options {
  quick: boolean;
  dtypes: DType[];
  families: Family[];
  device: number;
  minSeconds: number;
  /** null: no markdown; "-": stderr; else a file path. */
  markdown: string | null;
}

function usageError(message: string): never {
  console.error(`cuda-ops: ${message}\n${USAGE}`);
  process.exit(1);
}

function parseOptions(argv: readonly string[]): Options {
  const o: Options = { quick: false, dtypes: ALL_DTYPES, families: [...FAMILIES], device: 0, minSeconds: 0.3, markdown: null };
  const args = argv.flatMap((a) => (a.startsWith("--") && a.includes("=") ? [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)] : [a]));
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const value = (): string => {
      const v = args[++i];
      if (v === undefined || v.startsWith("--")) usageError(`${a} needs a value`);
      return v;
    };
    switch (a) {
      case "--quick":
        o.quick = true;
        break;
      case "--dtype":
      case "--dtypes": {
        const list = value().split(",").filter(Boolean);
        const bad = list.filter((d) => !DTYPE_NAMES[d.toLowerCase()]);
        if (bad.length || !list.length) usageError(`unknown dtype ${bad.join(", ") || "(empty)"}; use f32, f16, bf16`);
        o.dtypes = ALL_DTYPES.filter((d) => list.some((x) => DTYPE_NAMES[x.toLowerCase()] === d));
        break;
      }
      case "--ops": {
        const list = value().split(",").filter(Boolean);
        const bad = list.filter((f) => !(FAMILIES as readonly string[]).includes(f));
        if (bad.length || !list.length) usageError(`unknown op family ${bad.join(", ") || "(empty)"}; use ${FAMILIES.join(", ")}`);
        o.families = FAMILIES.filter((f) => list.includes(f));
        break;
      }
      case "--device-index": {
        const v = value();
        const n = Number(v);
        if (!Number.isInteger(n) || n < 0) usageError(`--device-index must be an integer ≥ 0, got ${v}`);
        o.device = n;
        break;
      }
      case "--min-seconds": {
        const v = value();
        const s = Number(v);
        if (!(s > 0)) usageError(`--min-seconds must be a positive number, got ${v}`);
        o.minSeconds = s;
        break;
      }
      case "--markdown": {
        const next = args[i + 1];
        if (next !== undefined && !next.startsWith("--")) {
          o.markdown = next;
          i++;
        } else o.markdown = "-";
        break;
      }
      case "-h":
      case "--help":
        console.log(USAGE);
        process.exit(0);
      default:
        usageError(`unknown argument ${a}`);
    }
  }
  return o;
}

// ---- peaks (dense, no sparsity, boost clock; float16/bfloat16 = tensor cores with float32 accumulation)

interface GpuSpec {
  gpu: string;
  match: RegExp;
  sms: number;
  tflops: { float16: number | null; bfloat16: number | null; tf32: number | null; float32: number };
  memoryGBps: number;
  source: string;
}
const DATASHEET = "vendor datasheet";
/** First match wins: more specific names first. */
const GPUS: GpuSpec[] = [
  { gpu: "GH200 144GB HBM3e", match: /GH200.*144G/i, sms: 132, tflops: { float16: 989.5, bfloat16: 989.5, tf32: 494.5, float32: 67 }, memoryGBps: 4900, source: DATASHEET },
  { gpu: "GH200 96GB HBM3", match: /GH200/i, sms: 132, tflops: { float16: 989.5, bfloat16: 989.5, tf32: 494.5, float32: 67 }, memoryGBps: 4000, source: DATASHEET },
  { gpu: "H200 NVL", match: /H200 NVL/i, sms: 132, tflops: { float16: 835.5, bfloat16: 835.5, tf32: 417.5, float32: 60 }, memoryGBps: 4800, source: DATASHEET },
  { gpu: "H200 SXM", match: /H200/i, sms: 132, tflops: { float16: 989.5, bfloat16: 989.5, tf32: 494.5, float32: 67 }, memoryGBps: 4800, source: DATASHEET },
  { gpu: "H100 NVL", match: /H100 NVL/i, sms: 132, tflops: { float16: 835.5, bfloat16: 835.5, tf32: 417.5, float32: 60 }, memoryGBps: 3900, source: DATASHEET },
  { gpu: "H100 PCIe", match: /H100.*PCIe/i, sms: 114, tflops: { float16: 756.5, bfloat16: 756.5, tf32: 378, float32: 51 }, memoryGBps: 2000, source: DATASHEET },
  { gpu: "H100 SXM", match: /H100/i, sms: 132, tflops: { float16: 989.5, bfloat16: 989.5, tf32: 494.5, float32: 67 }, memoryGBps: 3350, source: DATASHEET },
  { gpu: "A100 PCIe 80GB", match: /A100.*(80GB.*PCIe|PCIe.*80GB)/i, sms: 108, tflops: { float16: 312, bfloat16: 312, tf32: 156, float32: 19.5 }, memoryGBps: 1935, source: DATASHEET },
  { gpu: "A100 SXM 80GB", match: /A100.*80GB/i, sms: 108, tflops: { float16: 312, bfloat16: 312, tf32: 156, float32: 19.5 }, memoryGBps: 2039, source: DATASHEET },
  { gpu: "A100 40GB", match: /A100/i, sms: 108, tflops: { float16: 312, bfloat16: 312, tf32: 156, float32: 19.5 }, memoryGBps: 1555, source: DATASHEET },
  { gpu: "L40S", match: /L40S/i, sms: 142, tflops: { float16: 362.05, bfloat16: 362.05, tf32: 183, float32: 91.6 }, memoryGBps: 864, source: DATASHEET },
  { gpu: "L40", match: /L40\b/i, sms: 142, tflops: { float16: 181.05, bfloat16: 181.05, tf32: 90.5, float32: 90.5 }, memoryGBps: 864, source: DATASHEET },
  { gpu: "L4", match: /\bL4\b/i, sms: 58, tflops: { float16: 121, bfloat16: 121, tf32: 60, float32: 30.3 }, memoryGBps: 300, source: DATASHEET },
  { gpu: "RTX A6000", match: /RTX A6000/i, sms: 84, tflops: { float16: 154.8, bfloat16: 154.8, tf32: 77.4, float32: 38.7 }, memoryGBps: 768, source: DATASHEET },
  { gpu: "A10", match: /\bA10\b/i, sms: 72, tflops: { float16: 125, bfloat16: 125, tf32: 62.5, float32: 31.2 }, memoryGBps: 600, source: DATASHEET },
  {
    gpu: "GeForce RTX 4090", match: /RTX 4090/i, sms: 128, tflops: { float16: 165.2, bfloat16: 165.2, tf32: 82.6, float32: 82.6 }, memoryGBps: 1008,
    source: `${DATASHEET} (NVIDIA Ada architecture whitepaper; tensor rate with float32 accumulation)`,
  },
  {
    gpu: "GeForce RTX 3090", match: /RTX 3090/i, sms: 82, tflops: { float16: 71, bfloat16: 71, tf32: 35.6, float32: 35.6 }, memoryGBps: 936,
    source: `${DATASHEET} (NVIDIA Ampere GA102 whitepaper; tensor rate with float32 accumulation)`,
  },
  { gpu: "T4", match: /\bT4\b/i, sms: 40, tflops: { float16: 65, bfloat16: null, tf32: null, float32: 8.1 }, memoryGBps: 320, source: DATASHEET },
];

const TF32 = process.env.BD_CUDA_TF32 === "1";
const CUDNN_BENCHMARK = process.env.BD_CUDNN_BENCHMARK === "1";
const CUDNN_WORKSPACE = (Number(process.env.BD_CUDNN_WORKSPACE_MB) || 1024) * 2 ** 20;

// ---- device and environment

const opts = parseOptions(process.argv.slice(2));

function unavailable(reason: string): never {
  console.error(
    `cuda-ops: CUDA is not available, so there is nothing to measure.\n${reason}\n` +
      "On a machine without a GPU, BD_CUDA_EMULATE=1 bun scripts/bench/cuda-ops.ts --quick runs the script on the emulated device " +
      "(build it with bun scripts/build-kernels.ts --emu-only; its numbers are meaningless).",
  );
  process.exit(1);
}

const avail = cudaAvailable();
if (!avail.ok) unavailable(avail.reason);
// the environment report first: it selects every device in turn; initCuda then selects ours
const env = cudaEnvironment();
let info: ReturnType<typeof initCuda>;
try {
  info = initCuda({ device: opts.device });
} catch (e) {
  unavailable((e as Error).message);
}
const ctx: CudaContext = cudaContext();
const rt = ctx.rt;
const EMULATED = info.emulated;
const freeAtStart = ctx.allocator.deviceMemInfo()[0]; // cudaMemGetInfo on the device this process uses

const i32 = new Int32Array(1);
function attribute(attr: number): number | null {
  const st = rt.cudaDeviceGetAttribute(i32, attr, opts.device);
  if (st !== 0) {
    rt.cudaGetLastError();
    return null;
  }
  return i32[0]!;
}
// cudaDeviceAttr values (driver_types.h) beyond those ffi/cuda/cudart.ts names
const ATTR_CLOCK_KHZ = 13;
const ATTR_MEMORY_CLOCK_KHZ = 36;
const ATTR_MEMORY_BUS_BITS = 37;
const clockKHz = attribute(ATTR_CLOCK_KHZ);
const memClockKHz = attribute(ATTR_MEMORY_CLOCK_KHZ);
const busBits = attribute(ATTR_MEMORY_BUS_BITS);

const spec = EMULATED ? undefined : GPUS.find((g) => g.match.test(info.name));

type Kind = "gemm" | "conv" | "attention";
/** The compute peak a case of `kind` in `dtype` is compared with, and what it is. */
function computePeak(kind: Kind, dtype: DType): { tflops: number | null; basis: string } {
  if (dtype === "float32") {
    if (kind === "gemm" && TF32) return { tflops: spec?.tflops.tf32 ?? null, basis: "TF32 tensor (BD_CUDA_TF32=1)" };
    return { tflops: spec?.tflops.float32 ?? null, basis: "float32 non-tensor" };
  }
  return { tflops: spec?.tflops[dtype as "float16" | "bfloat16"] ?? null, basis: `${dtype} tensor, float32 accumulation` };
}

// ---- timing on the compute stream

interface Timing {
  median: number;
  mean: number;
  min: number;
  reps: number;
  /** Host wall time per call while enqueueing (≈ device time when the launch queue was full). */
  hostMs: number;
}

const MIN_REPS = 10;
const MAX_REPS = 20000;
const BATCH = 100;
const MAX_BLOCK_MS = 200;

class GpuTimer {
  private readonly events: number[] = [];
  private readonly f32 = new Float32Array(1);
  /** Blocker GEMM operands (float32 n×n) and the device time of one blocker GEMM. */
  private blockN = 0;
  private block: Tensor[] = [];
  private unitMs = 0;

  constructor(
    private readonly c: CudaContext,
    private readonly quick: boolean,
    private readonly minSeconds: number,
  ) {
    if (quick) return;
    this.blockN = EMULATED ? 128 : 2048;
    this.block = [zeros([this.blockN, this.blockN], { device: "cuda" }), zeros([this.blockN, this.blockN], { device: "cuda" }), empty([this.blockN, this.blockN], { device: "cuda" })];
    for (let i = 0; i < 2; i++) this.blockUnit();
    this.ensure(2);
    this.sync();
    this.record(0);
    for (let i = 0; i < 5; i++) this.blockUnit();
    this.record(1);
    this.sync();
    this.unitMs = Math.max(this.elapsed(0, 1) / 5, 1e-3);
  }

  /** Calibrated blocker: ms of device work per unit (0 in quick mode). */
  get blockerUnitMs(): number {
    return this.unitMs;
  }

  private blockUnit(): void {
    const [a, b, out] = this.block as [Tensor, Tensor, Tensor];
    const n = this.blockN;
    cublasGemm(a, b, out, n, n, n, "float32", false);
  }

  private ensure(n: number): void {
    while (this.events.length < n) this.events.push(this.c.streams.createEvent(true));
  }

  private record(i: number): void {
    this.c.libs.check(rt.cudaEventRecord(this.events[i]!, this.c.stream), "cudaEventRecord");
  }

  private elapsed(i: number, j: number): number {
    this.c.libs.check(rt.cudaEventElapsedTime(this.f32, this.events[i]!, this.events[j]!), "cudaEventElapsedTime");
    return this.f32[0]!;
  }

  sync(): void {
    this.c.streams.synchronize(this.c.stream);
  }

  /** Queue about `ms` of device work so that the host gets ahead of the device. */
  private queueAhead(ms: number): void {
    const units = Math.min(Math.max(1, Math.ceil(ms / this.unitMs)), Math.ceil(MAX_BLOCK_MS / this.unitMs));
    for (let i = 0; i < units; i++) this.blockUnit();
  }

  measure(fn: () => void): Timing {
    for (let i = 0; i < (this.quick ? 1 : 3); i++) fn();
    this.sync();
    this.ensure(2 * BATCH);
    if (this.quick) {
      const h = performance.now();
      this.record(0);
      fn();
      this.record(1);
      const hostMs = performance.now() - h;
      this.sync();
      const ms = this.elapsed(0, 1);
      return { median: ms, mean: ms, min: ms, reps: 1, hostMs };
    }
    // probe: per-call device and host time (the device time may include host gaps; only the rep count uses it)
    const p = 3;
    const h0 = performance.now();
    this.record(0);
    for (let i = 0; i < p; i++) fn();
    this.record(1);
    let hostPer = (performance.now() - h0) / p;
    this.sync();
    let devicePer = Math.max(this.elapsed(0, 1) / p, 1e-4);
    const reps = Math.min(MAX_REPS, Math.max(MIN_REPS, Math.ceil((this.minSeconds * 1000) / devicePer)));
    const times: number[] = [];
    let hostTotal = 0;
    for (let done = 0; done < reps; ) {
      const n = Math.min(BATCH, reps - done);
      // the device must not catch up with the host within the batch: n·(host − device) of work ahead, with margin
      this.queueAhead(1.5 * n * Math.max(0, hostPer - devicePer) + 0.2);
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        this.record(2 * i);
        fn();
        this.record(2 * i + 1);
      }
      const dt = performance.now() - t0;
      hostTotal += dt;
      hostPer = dt / n;
      this.sync();
      const batch: number[] = [];
      for (let i = 0; i < n; i++) batch.push(this.elapsed(2 * i, 2 * i + 1));
      devicePer = Math.max(median(batch), 1e-4);
      times.push(...batch);
      done += n;
    }
    return {
      median: median(times),
      mean: times.reduce((s, t) => s + t, 0) / times.length,
      min: times.reduce((m, t) => Math.min(m, t), Infinity),
      reps: times.length,
      hostMs: hostTotal / times.length,
    };
  }

  dispose(): void {
    this.sync();
    for (const ev of this.events) rt.cudaEventDestroy(ev);
    this.events.length = 0;
    for (const t of this.block) t.dispose();
    this.block = [];
  }
}

// ---- raw library calls on the backend's buffers (same handles, same compute stream)

const CUDA_TYPE: Partial<Record<DType, number>> = { float32: cudaDataType.R_32F, float16: cudaDataType.R_16F, bfloat16: cudaDataType.R_16BF };
const ONE = new Float32Array([1]);
const ZERO = new Float32Array([0]);

/**
 * Row-major out[M, N] = a[M, K]·b[K, N] with one cublasGemmEx, as the backend issues it for contiguous operands
 * (column-major Cᵀ = Bᵀ·Aᵀ), float32 compute (TF32 with BD_CUDA_TF32=1 when `tf32`).
 */
function cublasGemm(a: Tensor, b: Tensor, out: Tensor, M: number, N: number, K: number, dtype: DType, tf32 = TF32): void {
  const s = ctx.libs.cublas.symbols;
  const type = CUDA_TYPE[dtype]!;
  const compute = dtype === "float32" && tf32 ? cublasComputeType.F32_FAST_TF32 : cublasComputeType.F32;
  const algo = dtype === "float32" ? cublasGemmAlgo.default : cublasGemmAlgo.defaultTensorOp;
  const op = cublasOperation.N;
  const st = s.cublasGemmEx(ctx.cublas, op, op, N, M, K, ONE, dptr(b), type, N, dptr(a), type, K, ZERO, dptr(out), type, N, compute, algo);
  if (st !== 0) ctx.libs.cublasCheck(st, "cublasGemmEx", `raw GEMM ${M}×${N}×${K} ${dtype}`);
}

const CUDNN_TYPE: Partial<Record<DType, number>> = { float32: cudnnDataType.float, float16: cudnnDataType.half, bfloat16: cudnnDataType.bfloat16 };
const ALGO_NAMES = Object.fromEntries(Object.entries(cudnnConvolutionFwdAlgo).map(([k, v]) => [v, k])) as Record<number, string>;

/**
 * cudnnConvolutionForward on the given NCHW buffers with descriptors of its own and the backend's algorithm rule
 * (the first of cudnnGetConvolutionForwardAlgorithm_v7's ranking — cudnnFindConvolutionForwardAlgorithmEx's with
 * BD_CUDNN_BENCHMARK=1 on a GPU — that succeeds within BD_CUDNN_WORKSPACE_MB), a workspace of its own.
 */
class RawConv {
  private readonly desc: { x: number; w: number; y: number; conv: number } = { x: 0, w: 0, y: 0, conv: 0 };
  readonly algo: number = -1;
  private readonly workspaceBytes: number = 0;
  private workspace: Tensor | null = null;

  constructor(
    private readonly x: Tensor,
    private readonly w: Tensor,
    private readonly y: Tensor,
    pad: number,
  ) {
    const s = ctx.libs.cudnn.symbols;
    const ck = (st: number, fn: string) => ctx.libs.cudnnCheck(st, fn, "raw conv");
    const type = CUDNN_TYPE[x.dtype];
    if (type === undefined) throw new Error(`raw conv of ${x.dtype}`);
    const h = new BigUint64Array(1);
    try {
      ck(s.cudnnCreateTensorDescriptor(h), "cudnnCreateTensorDescriptor");
      this.desc.x = Number(h[0]);
      ck(s.cudnnCreateTensorDescriptor(h), "cudnnCreateTensorDescriptor");
      this.desc.y = Number(h[0]);
      ck(s.cudnnCreateFilterDescriptor(h), "cudnnCreateFilterDescriptor");
      this.desc.w = Number(h[0]);
      ck(s.cudnnCreateConvolutionDescriptor(h), "cudnnCreateConvolutionDescriptor");
      this.desc.conv = Number(h[0]);
      const [N, C, H, W] = x.shape as [number, number, number, number];
      const [O, , kh, kw] = w.shape as [number, number, number, number];
      const [, , OH, OW] = y.shape as [number, number, number, number];
      ck(s.cudnnSetTensor4dDescriptor(this.desc.x, cudnnTensorFormat.NCHW, type, N, C, H, W), "cudnnSetTensor4dDescriptor");
      ck(s.cudnnSetTensor4dDescriptor(this.desc.y, cudnnTensorFormat.NCHW, type, N, O, OH, OW), "cudnnSetTensor4dDescriptor");
      ck(s.cudnnSetFilter4dDescriptor(this.desc.w, type, cudnnTensorFormat.NCHW, O, C, kh, kw), "cudnnSetFilter4dDescriptor");
      ck(s.cudnnSetConvolution2dDescriptor(this.desc.conv, pad, pad, 1, 1, 1, 1, cudnnConvolutionMode.crossCorrelation, cudnnDataType.float),
        "cudnnSetConvolution2dDescriptor");
      ck(s.cudnnSetConvolutionMathType(this.desc.conv, type === cudnnDataType.float ? cudnnMathType.default : cudnnMathType.tensorOp),
        "cudnnSetConvolutionMathType");
      const perf = new Uint8Array(ALGO_PERF.bytes * 8);
      const count = new Int32Array(1);
      if (CUDNN_BENCHMARK && !EMULATED) {
        const ws = empty([Math.min(CUDNN_WORKSPACE, 256 * 2 ** 20)], { dtype: "uint8", device: "cuda" });
        try {
          ck(s.cudnnFindConvolutionForwardAlgorithmEx(ctx.cudnn, this.desc.x, dptr(x), this.desc.w, dptr(w), this.desc.conv, this.desc.y, dptr(y), 8,
            count, perf, dptr(ws), ws.shape[0]!), "cudnnFindConvolutionForwardAlgorithmEx");
        } finally {
          ws.dispose();
        }
      } else {
        ck(s.cudnnGetConvolutionForwardAlgorithm_v7(ctx.cudnn, this.desc.x, this.desc.w, this.desc.conv, this.desc.y, 8, count, perf),
          "cudnnGetConvolutionForwardAlgorithm_v7");
      }
      const view = new DataView(perf.buffer);
      for (let i = 0; i < count[0]! && this.algo < 0; i++) {
        const at = i * ALGO_PERF.bytes;
        if (view.getInt32(at + ALGO_PERF.status, true) === 0 && Number(view.getBigUint64(at + ALGO_PERF.memory, true)) <= CUDNN_WORKSPACE)
          this.algo = view.getInt32(at + ALGO_PERF.algo, true);
      }
      if (this.algo < 0) throw new Error("cuDNN offers no usable algorithm");
      ck(s.cudnnGetConvolutionForwardWorkspaceSize(ctx.cudnn, this.desc.x, this.desc.w, this.desc.conv, this.desc.y, this.algo, h),
        "cudnnGetConvolutionForwardWorkspaceSize");
      this.workspaceBytes = Number(h[0]);
      if (this.workspaceBytes > 0) this.workspace = empty([this.workspaceBytes], { dtype: "uint8", device: "cuda" });
    } catch (e) {
      this.dispose();
      throw e;
    }
  }

  get algoName(): string {
    return ALGO_NAMES[this.algo] ?? `algo ${this.algo}`;
  }

  run(): void {
    const st = ctx.libs.cudnn.symbols.cudnnConvolutionForward(ctx.cudnn, ONE, this.desc.x, dptr(this.x), this.desc.w, dptr(this.w), this.desc.conv,
      this.algo, this.workspace ? dptr(this.workspace) : null, this.workspaceBytes, ZERO, this.desc.y, dptr(this.y));
    if (st !== 0) ctx.libs.cudnnCheck(st, "cudnnConvolutionForward", "raw conv");
  }

  dispose(): void {
    const s = ctx.libs.cudnn.symbols;
    if (this.desc.x) s.cudnnDestroyTensorDescriptor(this.desc.x);
    if (this.desc.y) s.cudnnDestroyTensorDescriptor(this.desc.y);
    if (this.desc.w) s.cudnnDestroyFilterDescriptor(this.desc.w);
    if (this.desc.conv) s.cudnnDestroyConvolutionDescriptor(this.desc.conv);
    this.desc.x = this.desc.y = this.desc.w = this.desc.conv = 0;
    this.workspace?.dispose();
    this.workspace = null;
  }
}

// ---- inputs

const RANDN_BLOCK = 1 << 22;

/**
 * Standard normal values on the device. Large tensors tile one block of RANDN_BLOCK − 1 values (an odd period, so
 * rows do not repeat in step with the shape) on the device: drawing tens of millions of values on the CPU takes
 * seconds, and the values do not matter for timing.
 */
function rnd(shape: number[], dtype: DType, seed: number): Tensor {
  const n = shape.reduce((p, d) => p * d, 1);
  if (n <= RANDN_BLOCK) return randn(shape, { dtype, device: "cuda", seed });
  const L = RANDN_BLOCK - 1;
  const rows = Math.ceil(n / L);
  return tidy(() => randn([1, L], { dtype, device: "cuda", seed }).expand([rows, L]).contiguous().reshape([rows * L]).narrow(0, 0, n).reshape(shape));
}

function disposeAll(...ts: (Tensor | null | undefined)[]): void {
  for (const t of ts) t?.dispose();
}

// ---- shapes

const Q = opts.quick;
type Dims3 = [number, number, number];
type Dims4 = [number, number, number, number];
const SHAPES: {
  gemm: Dims3[];
  conv: Dims4[];
  elementwise: Dims4;
  groupNorm: Dims4;
  groupNormLarge: Dims4;
  tokens: Dims3;
  groups: number;
  layerNorm: Dims3;
  softmax: Dims3;
  attention: Dims4;
  crossTokens: number;
} = {
  /** M, N, K */
  gemm: Q ? [[64, 64, 64], [128, 32, 32], [128, 64, 32], [32, 48, 160]] : [[4096, 4096, 4096], [8192, 320, 320], [8192, 1280, 320], [2048, 640, 5120]],
  /** [N, C, H, W] → C output channels, 3×3, pad 1 */
  conv: Q ? [[1, 8, 8, 8], [1, 16, 4, 4], [1, 32, 2, 2]] : [[2, 320, 64, 64], [2, 640, 32, 32], [2, 1280, 16, 16]],
  elementwise: Q ? [2, 8, 16, 16] : [2, 320, 128, 128],
  groupNorm: Q ? [2, 64, 4, 4] : [2, 320, 64, 64],
  /** the VAE decoder's last resolution at 512² (128 channels, 4 per group): groups split into many pieces */
  groupNormLarge: Q ? [1, 32, 96, 96] : [1, 128, 512, 512],
  /** [B, N, C] activations of a transformer block (SD 1.5 at 512²): bias [C] and [B, 1, C] broadcasts */
  tokens: Q ? [2, 16, 40] : [2, 4096, 320],
  groups: 32,
  layerNorm: Q ? [2, 16, 32] : [2, 4096, 320],
  softmax: Q ? [2, 16, 64] : [16, 4096, 1024],
  /** B, H, Sq, D; self attention has Sk = Sq, cross attention Sk = 77 */
  attention: Q ? [1, 2, 32, 40] : [2, 8, 4096, 40],
  crossTokens: 77,
};

const fmtShape = (s: readonly number[]) => `[${s.join(",")}]`;

// ---- results

type Impl = "backend" | "cublas" | "cudnn" | "cudaMemcpy";
interface Row {
  op: string;
  impl: Impl;
  shape: string;
  dtype: DType;
  median_ms: number | null;
  mean_ms: number | null;
  min_ms: number | null;
  reps: number;
  host_ms: number | null;
  gflop?: number;
  tflops?: number | null;
  peak_tflops?: number | null;
  peak_basis?: string;
  mbytes?: number;
  gb_per_s?: number | null;
  peak_gb_per_s?: number | null;
  /** Of the copy of the same bytes (same cache effects). */
  fraction_of_memcpy?: number | null;
  /** Of the copy of a buffer far larger than L2 (the achievable DRAM bandwidth). */
  fraction_of_dram_memcpy?: number | null;
  fraction_of_peak: number | null;
  backend_vs_raw?: number | null;
  algo?: string;
  note?: string;
  error?: string;
}

const results: Row[] = [];
const timer = new GpuTimer(ctx, opts.quick, opts.minSeconds);
/** Measured device-to-device copy bandwidth per dtype (bytes of the elementwise tensor in that dtype). */
const memcpyGBps = new Map<DType, number | null>();
/** Measured device-to-device copy bandwidth of a buffer far larger than L2 (undefined: not measured yet). */
let dramMemcpyGBps: number | null | undefined;
const L2_BYTES = attribute(cudaDevAttr.l2CacheSize) ?? 0;
const DRAM_COPY_BYTES = Q ? 1 << 20 : 512 * 2 ** 20;

function frac(x: number | null | undefined, peak: number | null | undefined): number | null {
  return x != null && peak != null && peak > 0 ? round(x / peak, 3) : null;
}

function timed(fn: () => void): Timing | Error {
  try {
    return timer.measure(fn);
  } catch (e) {
    try {
      timer.sync();
    } catch {
      // the error is reported with the row
    }
    return e as Error;
  }
}

/** A result row for a compute-bound case (flops per call). */
function computeRow(op: string, impl: Impl, shape: string, dtype: DType, kind: Kind, flops: number, t: Timing | Error, extra: Partial<Row> = {}): Row {
  const peak = computePeak(kind, dtype);
  const base = { op, impl, shape, dtype, gflop: sig(flops / 1e9, 5), peak_tflops: peak.tflops, peak_basis: peak.basis };
  if (t instanceof Error)
    return { ...base, median_ms: null, mean_ms: null, min_ms: null, reps: 0, host_ms: null, tflops: null, fraction_of_peak: null, ...extra, error: t.message };
  const tflops = flops / (t.median * 1e9);
  return {
    ...base, median_ms: sig(t.median), mean_ms: sig(t.mean), min_ms: sig(t.min), reps: t.reps, host_ms: sig(t.hostMs, 3),
    tflops: sig(tflops, 4), fraction_of_peak: frac(tflops, peak.tflops), ...extra,
  };
}

/** A result row for a memory-bound case (bytes read + written per call). */
function bandwidthRow(op: string, impl: Impl, shape: string, dtype: DType, bytes: number, t: Timing | Error, extra: Partial<Row> = {}): Row {
  const peak = spec?.memoryGBps ?? null;
  const base = { op, impl, shape, dtype, mbytes: round(bytes / 1e6, 3), peak_gb_per_s: peak };
  if (t instanceof Error)
    return { ...base, median_ms: null, mean_ms: null, min_ms: null, reps: 0, host_ms: null, gb_per_s: null, fraction_of_peak: null, ...extra, error: t.message };
  const gbps = bytes / (t.median * 1e6);
  const copy = memcpyGBps.get(dtype) ?? null;
  const l2 = L2_BYTES > 0 && bytes <= 2 * L2_BYTES
    ? `bytes moved ≤ 2× L2 (${round(L2_BYTES / 2 ** 20, 1)} MiB): may be partly served from L2 across reps; compare with fraction_of_dram_memcpy`
    : undefined;
  const note = [extra.note, l2].filter(Boolean).join("; ");
  return {
    ...base, median_ms: sig(t.median), mean_ms: sig(t.mean), min_ms: sig(t.min), reps: t.reps, host_ms: sig(t.hostMs, 3),
    gb_per_s: sig(gbps, 4), fraction_of_peak: frac(gbps, peak),
    ...(impl === "cudaMemcpy" ? {} : { fraction_of_memcpy: frac(gbps, copy), fraction_of_dram_memcpy: frac(gbps, dramMemcpyGBps) }),
    ...extra, ...(note ? { note } : {}),
  };
}

function push(row: Row): Row {
  results.push(row);
  const rate = row.error
    ? `FAILED: ${row.error}`
    : `${row.median_ms} ms, ${row.tflops != null ? `${row.tflops} TFLOP/s` : `${row.gb_per_s} GB/s`}` +
      (row.fraction_of_peak != null ? ` (${round(row.fraction_of_peak * 100, 1)}% of peak)` : "");
  console.error(`[cuda-ops] ${row.op} ${row.shape} ${row.dtype} ${row.impl}: ${rate}`);
  return row;
}

/** Run a case's setup and body; a setup failure becomes failed rows of the given names. */
function guarded(names: { op: string; impl: Impl; shape: string; dtype: DType }[], body: () => void): void {
  try {
    body();
  } catch (e) {
    for (const n of names)
      push({ ...n, median_ms: null, mean_ms: null, min_ms: null, reps: 0, host_ms: null, fraction_of_peak: null, error: (e as Error).message });
  }
}

// ---- cases

function benchGemm(dtype: DType): void {
  for (const [M, N, K] of SHAPES.gemm) {
    const shape = `${M}×${N}×${K}`;
    guarded([{ op: "matmul", impl: "backend", shape, dtype }], () => {
      const a = rnd([M, K], dtype, 1);
      const b = rnd([K, N], dtype, 2);
      const out = empty([M, N], { dtype, device: "cuda" });
      try {
        const flops = 2 * M * N * K;
        const be = timed(() => a.matmul(b).dispose());
        const raw = timed(() => cublasGemm(a, b, out, M, N, K, dtype));
        const ratio = !(be instanceof Error) && !(raw instanceof Error) ? round(be.median / raw.median, 2) : null;
        push(computeRow("matmul", "backend", shape, dtype, "gemm", flops, be, { backend_vs_raw: ratio }));
        push(computeRow("matmul", "cublas", shape, dtype, "gemm", flops, raw, { note: "cublasGemmEx on the same buffers" }));
      } finally {
        disposeAll(a, b, out);
      }
    });
  }
}

function benchConv(dtype: DType): void {
  for (const [N, C, H, W] of SHAPES.conv) {
    const shape = `${fmtShape([N, C, H, W])}→${C} 3×3 pad 1`;
    guarded([{ op: "conv2d", impl: "backend", shape, dtype }], () => {
      const x = rnd([N, C, H, W], dtype, 3);
      const w = tidy(() => rnd([C, C, 3, 3], dtype, 4).mul(0.05));
      const out = empty([N, C, H, W], { dtype, device: "cuda" });
      let raw: RawConv | null = null;
      try {
        const flops = 2 * N * C * H * W * C * 9;
        const f32note = dtype === "float32" && spec?.tflops.tf32 != null
          ? `cuDNN's default math may use TF32 tensor cores for float32 on sm_80+ (TF32 peak ${spec.tflops.tf32} TFLOP/s)`
          : undefined;
        const be = timed(() => conv2d(x, w, null, { padding: 1 }).dispose());
        let rawT: Timing | Error;
        try {
          raw = new RawConv(x, w, out, 1);
          const r = raw;
          rawT = timed(() => r.run());
        } catch (e) {
          rawT = e as Error;
        }
        const ratio = !(be instanceof Error) && !(rawT instanceof Error) ? round(be.median / rawT.median, 2) : null;
        push(computeRow("conv2d", "backend", shape, dtype, "conv", flops, be, { backend_vs_raw: ratio, ...(f32note ? { note: f32note } : {}) }));
        push(computeRow("conv2d", "cudnn", shape, dtype, "conv", flops, rawT, {
          ...(raw ? { algo: raw.algoName } : {}),
          note: `cudnnConvolutionForward on the same buffers, ${CUDNN_BENCHMARK && !EMULATED ? "cudnnFind" : "cudnnGet_v7"} rule as the backend` +
            (f32note ? `; ${f32note}` : ""),
        }));
      } finally {
        raw?.dispose();
        disposeAll(x, w, out);
      }
    });
  }
}

/** cudaMemcpyAsync device→device of `bytes` on the compute stream. */
function copyD2D(dst: Tensor, src: Tensor, bytes: number): void {
  ctx.libs.check(rt.cudaMemcpyAsync(dptr(dst), dptr(src), bytes, cudaMemcpyKind.deviceToDevice, ctx.stream), "cudaMemcpyAsync", `${bytes} bytes`);
}

/** The device-to-device copy bandwidth of a buffer far larger than L2 (measured once, reported as a row). */
function benchDramMemcpy(): void {
  if (dramMemcpyGBps !== undefined) return;
  dramMemcpyGBps = null;
  const shape = `${DRAM_COPY_BYTES / 2 ** 20} MiB`;
  guarded([{ op: "memcpy_d2d", impl: "cudaMemcpy", shape, dtype: "uint8" }], () => {
    const x = zeros([DRAM_COPY_BYTES], { dtype: "uint8", device: "cuda" });
    const y = empty([DRAM_COPY_BYTES], { dtype: "uint8", device: "cuda" });
    try {
      const t = timed(() => copyD2D(y, x, DRAM_COPY_BYTES));
      const row = push(bandwidthRow("memcpy_d2d", "cudaMemcpy", shape, "uint8", 2 * DRAM_COPY_BYTES, t, {
        note: "cudaMemcpyAsync device→device of a buffer far larger than L2: the achievable DRAM bandwidth",
      }));
      dramMemcpyGBps = row.gb_per_s ?? null;
    } finally {
      disposeAll(x, y);
    }
  });
}

/** The device-to-device copy bandwidth for dtype at the elementwise tensor's size (measured once, reported as a row). */
function benchMemcpy(dtype: DType): void {
  benchDramMemcpy();
  if (memcpyGBps.has(dtype)) return;
  const shape = SHAPES.elementwise;
  const s = fmtShape(shape);
  memcpyGBps.set(dtype, null);
  guarded([{ op: "memcpy_d2d", impl: "cudaMemcpy", shape: s, dtype }], () => {
    const x = rnd([...shape], dtype, 5);
    const y = empty([...shape], { dtype, device: "cuda" });
    try {
      const bytes = x.byteLength;
      const t = timed(() => copyD2D(y, x, bytes));
      const row = push(bandwidthRow("memcpy_d2d", "cudaMemcpy", s, dtype, 2 * bytes, t, {
        note: "cudaMemcpyAsync device→device of the elementwise tensor's bytes: the achievable bandwidth at this size",
      }));
      memcpyGBps.set(dtype, row.gb_per_s ?? null);
    } finally {
      disposeAll(x, y);
    }
  });
}

/** Which path the last elementwise launch took (16-byte vectors or scalar), for the rows' notes. */
function pathNote(): string {
  const w = Number(ctx.k.bdk_elementwise_last_width?.() ?? 0);
  return w > 1 ? `16-byte vector path (${w} elements per thread)` : "scalar path (FastDiv offsets)";
}

function benchElementwise(dtype: DType): void {
  const shape = SHAPES.elementwise;
  const s = fmtShape(shape);
  const C = shape[1]!;
  const bshape = `${s}+${fmtShape([1, C, 1, 1])}`;
  const tok = SHAPES.tokens;
  const ts = fmtShape(tok);
  const tc = tok[2]!;
  const rows = [
    { op: "add", shape: s }, { op: "mul", shape: s }, { op: "silu", shape: s }, { op: "add_broadcast", shape: bshape },
    { op: "add_misaligned", shape: s }, { op: "add_scalar", shape: s }, { op: "add_bias_tokens", shape: `${ts}+[${tc}]` },
    { op: "add_sample_bias_tokens", shape: `${ts}+[${tok[0]},1,${tc}]` },
  ];
  guarded(rows.map((r) => ({ ...r, impl: "backend" as Impl, dtype })), () => {
    const x = rnd([...shape], dtype, 6);
    const y = rnd([...shape], dtype, 7);
    const bias = rnd([1, C, 1, 1], dtype, 8);
    const n = x.byteLength;
    const numel = x.shape.reduce((a, b) => a * b, 1);
    // one element past the start of a larger buffer: no longer 16-byte aligned, so the scalar path runs
    const xm = rnd([numel + 1], dtype, 6);
    const ym = rnd([numel + 1], dtype, 7);
    const xv = tidy(() => xm.narrow(0, 1, numel).reshape([...shape]));
    const yv = tidy(() => ym.narrow(0, 1, numel).reshape([...shape]));
    const tx = rnd([...tok], dtype, 11);
    const tb = rnd([tc], dtype, 12);
    const tsb = rnd([tok[0], 1, tc], dtype, 13);
    const row = (op: string, sh: string, bytes: number, fn: () => Tensor) => {
      fn().dispose();
      const note = pathNote();
      push(bandwidthRow(op, "backend", sh, dtype, bytes, timed(() => fn().dispose()), { note }));
    };
    try {
      row("add", s, 3 * n, () => add(x, y));
      row("mul", s, 3 * n, () => mul(x, y));
      row("silu", s, 2 * n, () => silu(x));
      row("add_broadcast", bshape, 2 * n + bias.byteLength, () => add(x, bias));
      row("add_misaligned", s, 3 * n, () => add(xv, yv));
      row("add_scalar", s, 2 * n, () => add(x, 0.5));
      row("add_bias_tokens", `${ts}+[${tc}]`, 2 * tx.byteLength + tb.byteLength, () => add(tx, tb));
      row("add_sample_bias_tokens", `${ts}+[${tok[0]},1,${tc}]`, 2 * tx.byteLength + tsb.byteLength, () => add(tx, tsb));
    } finally {
      disposeAll(x, y, bias, xm, ym, xv, yv, tx, tb, tsb);
    }
  });
}

function benchNorm(dtype: DType): void {
  const gshape = SHAPES.groupNorm;
  const G = SHAPES.groups;
  const gs = `${fmtShape(gshape)} G=${G}`;
  const lshape = SHAPES.layerNorm;
  const D = lshape[lshape.length - 1]!;
  const ls = `${fmtShape(lshape)} over ${D}`;
  const note = "bytes: input read once + output written + weight/bias";
  const pieces = (sh: readonly number[]) => {
    const bytes = Number(ctx.k.bdk_group_norm_workspace?.(sh[0]!, sh[1]!, sh[2]! * sh[3]!, G) ?? 0);
    return bytes > 0 ? `split: ${bytes / 8} blocks of partial statistics` : `one block per (sample, group): ${sh[0]! * G}`;
  };
  const gops = ["group_norm", "group_norm_silu", "add_then_group_norm_silu", "group_norm_add_silu"];
  guarded(gops.map((op) => ({ op, impl: "backend" as Impl, shape: gs, dtype })), () => {
    const C = gshape[1]!;
    const x = rnd([...gshape], dtype, 9);
    const w = ones([C], { dtype, device: "cuda" });
    const b = zeros([C], { dtype, device: "cuda" });
    const t = rnd([gshape[0]!, C], dtype, 14); // the time embedding's projection, [B, C]
    const t4 = t.reshape([gshape[0]!, C, 1, 1]);
    const extra = `${note}; ${pieces(gshape)}`;
    try {
      const bytes = 2 * x.byteLength + w.byteLength + b.byteLength;
      push(bandwidthRow("group_norm", "backend", gs, dtype, bytes, timed(() => groupNorm(x, G, w, b, 1e-5).dispose()), { note: extra }));
      push(bandwidthRow("group_norm_silu", "backend", gs, dtype, bytes, timed(() => groupNorm(x, G, w, b, 1e-5, { silu: true }).dispose()), { note: extra }));
      // ResnetBlock2D's norm2(h + temb): the separate add then the norm, and the fused call (same bytes counted:
      // the useful traffic is x and t read, y written)
      const fbytes = bytes + t.byteLength;
      push(bandwidthRow("add_then_group_norm_silu", "backend", gs, dtype, fbytes, timed(() => {
        const h = add(x, t4);
        groupNorm(h, G, w, b, 1e-5, { silu: true }).dispose();
        h.dispose();
      }), { note: `${extra}; two kernels and a stored sum` }));
      push(bandwidthRow("group_norm_add_silu", "backend", gs, dtype, fbytes, timed(() => groupNorm(x, G, w, b, 1e-5, { add: t, silu: true }).dispose()), { note: `${extra}; fused` }));
    } finally {
      disposeAll(x, w, b, t, t4);
    }
  });
  const large = SHAPES.groupNormLarge;
  const gl = `${fmtShape(large)} G=${G}`;
  guarded([{ op: "group_norm_silu", impl: "backend", shape: gl, dtype }], () => {
    const x = rnd([...large], dtype, 15);
    try {
      push(bandwidthRow("group_norm_silu", "backend", gl, dtype, 2 * x.byteLength, timed(() => groupNorm(x, G, null, null, 1e-6, { silu: true }).dispose()),
        { note: `input read once + output written; ${pieces(large)}` }));
    } finally {
      disposeAll(x);
    }
  });
  guarded([{ op: "layer_norm", impl: "backend", shape: ls, dtype }], () => {
    const x = rnd([...lshape], dtype, 10);
    const w = ones([D], { dtype, device: "cuda" });
    const b = zeros([D], { dtype, device: "cuda" });
    try {
      const bytes = 2 * x.byteLength + w.byteLength + b.byteLength;
      push(bandwidthRow("layer_norm", "backend", ls, dtype, bytes, timed(() => layerNorm(x, D, w, b, 1e-5).dispose()), { note }));
    } finally {
      disposeAll(x, w, b);
    }
  });
}

function benchSoftmax(dtype: DType): void {
  const shape = SHAPES.softmax;
  const s = `${fmtShape(shape)} dim -1`;
  guarded([{ op: "softmax", impl: "backend", shape: s, dtype }], () => {
    const x = rnd([...shape], dtype, 11);
    try {
      push(bandwidthRow("softmax", "backend", s, dtype, 2 * x.byteLength, timed(() => softmax(x, -1).dispose()), { note: "bytes: input read once + output written" }));
    } finally {
      x.dispose();
    }
  });
}

/** [B, S, H·D] -> [B, H, S, D] as the Attention module's splitHeads makes it (a strided view). */
function heads(x: Tensor, H: number): Tensor {
  const [B, S] = x.shape as [number, number];
  return tidy(() => x.reshape([B, S, H, -1]).transpose(1, 2));
}

function benchAttention(dtype: DType): void {
  const [B, H, Sq, D] = SHAPES.attention;
  for (const [name, Sk] of [["attention_self", Sq], ["attention_cross", SHAPES.crossTokens]] as const) {
    const shape = `q ${fmtShape([B, H, Sq, D])} k,v ${fmtShape([B, H, Sk, D])}`;
    guarded([{ op: name, impl: "backend", shape, dtype }], () => {
      const made: Tensor[] = [];
      try {
        const proj = (S: number, seed: number) => {
          const p = rnd([B, S, H * D], dtype, seed);
          made.push(p);
          const v = heads(p, H);
          made.push(v);
          return v;
        };
        const q = proj(Sq, 12);
        const k = proj(Sk, 13);
        const v = proj(Sk, 14);
        const flops = 4 * B * H * Sq * Sk * D;
        const t = timed(() => scaledDotProductAttention(q, k, v, { kind: "fused" }).dispose());
        push(computeRow(name, "backend", shape, dtype, "attention", flops, t, { note: "fused kernel; q/k/v strided views of [B,S,H·D] projections; flops 4·B·H·Sq·Sk·D" }));
      } finally {
        disposeAll(...made);
      }
    });
  }
}

// ---- run

const started = performance.now();
for (const family of opts.families)
  for (const dtype of opts.dtypes) {
    switch (family) {
      case "gemm":
        benchGemm(dtype);
        break;
      case "conv":
        benchConv(dtype);
        break;
      case "elementwise":
        benchMemcpy(dtype);
        benchElementwise(dtype);
        break;
      case "norm":
        benchMemcpy(dtype);
        benchNorm(dtype);
        break;
      case "softmax":
        benchMemcpy(dtype);
        benchSoftmax(dtype);
        break;
      case "attention":
        benchAttention(dtype);
        break;
    }
  }
const blockerUnitMs = timer.blockerUnitMs;
timer.dispose();
cudaSynchronize();

const mem = memoryStats("cuda");
const allocator = cudaAllocatorStats();
cudaEmptyCache();
const reservedAfterEmpty = memoryStats("cuda").reserved;
const failures = results.filter((r) => r.error).length;
const leaked = mem.live !== 0;

const ver = (v: string | undefined) => v ?? null;
const report = {
  bench: "cuda-ops",
  schema_version: 1,
  date: new Date().toISOString(),
  emulated: EMULATED,
  ...(EMULATED
    ? { note: "emulated device (BD_CUDA_EMULATE=1): kernels run on the CPU and events time host work, so the numbers are meaningless; this run only shows the script works end to end" }
    : {}),
  quick: opts.quick,
  command: ["bun", "scripts/bench/cuda-ops.ts", ...process.argv.slice(2)].join(" "),
  device: {
    index: info.device,
    name: info.name,
    compute_capability: info.computeCapability,
    sm_count: info.multiprocessors,
    memory_total_bytes: info.totalMemoryBytes,
    memory_total_gib: round(info.totalMemoryBytes / 2 ** 30, 2),
    memory_free_bytes_at_start: freeAtStart,
    l2_cache_bytes: L2_BYTES || null,
    clock_mhz: clockKHz ? round(clockKHz / 1000, 0) : null,
    memory_clock_mhz: memClockKHz ? round(memClockKHz / 1000, 0) : null,
    memory_bus_bits: busBits || null,
    /** 2 transfers per memory clock × bus width: the theoretical DRAM bandwidth from the device attributes. */
    memory_bandwidth_from_attributes_gb_per_s: memClockKHz && busBits ? round((2 * memClockKHz * 1e3 * (busBits / 8)) / 1e9, 1) : null,
  },
  software: {
    driver: ver(env.driver.version),
    runtime: ver(env.runtimeVersion),
    cublas: ver(env.libraries.cublas.version),
    cudnn: ver(env.libraries.cudnn.version),
    kernels: ver(env.libraries.kernels.version),
    bun: Bun.version,
    libraries: info.libraries,
  },
  settings: {
    dtypes: opts.dtypes,
    ops: opts.families,
    min_seconds: opts.minSeconds,
    tf32: TF32,
    cudnn_benchmark: CUDNN_BENCHMARK,
    cudnn_workspace_mb: CUDNN_WORKSPACE / 2 ** 20,
    blocker_unit_ms: blockerUnitMs ? sig(blockerUnitMs, 3) : null,
    timing:
      "per-call device time between cudaEventRecord pairs on the compute stream; median over reps after warm-up; " +
      "each batch of ≤ 100 reps queued behind float32 GEMMs so the host stays ahead; host_ms = host enqueue time per call",
  },
  peak: spec
    ? {
        gpu: spec.gpu,
        source: spec.source,
        basis: "dense (no sparsity), boost clock; float16/bfloat16 tensor cores with float32 accumulation",
        tflops: spec.tflops,
        memory_gb_per_s: spec.memoryGBps,
        sm_count_expected: spec.sms,
        sm_count_matches: spec.sms === info.multiprocessors,
      }
    : { gpu: null, source: null, reason: EMULATED ? "emulated device" : `no table entry matches "${info.name}"`, tflops: null, memory_gb_per_s: null },
  bandwidth: {
    memcpy_dram_gb_per_s: dramMemcpyGBps ?? null,
    memcpy_dram_bytes: dramMemcpyGBps === undefined ? null : DRAM_COPY_BYTES,
    memcpy_same_size_gb_per_s: Object.fromEntries(memcpyGBps),
  },
  results,
  memory: {
    live_bytes_end: mem.live,
    peak_bytes: mem.peak,
    peak_mib: round(mem.peak / 2 ** 20, 1),
    reserved_bytes_end: mem.reserved,
    reserved_bytes_after_empty_cache: reservedAfterEmpty,
    allocator,
  },
  failures,
  wall_seconds: round((performance.now() - started) / 1000, 1),
};

console.log(JSON.stringify(report, null, 2));
console.error(`[cuda-ops] allocator: ${mem.live} bytes live at the end, peak ${round(mem.peak / 2 ** 20, 1)} MiB; ${results.length} rows, ${failures} failed`);

if (opts.markdown) {
  const pct = (f: number | null | undefined) => (f == null ? "–" : `${round(f * 100, 1)}%`);
  const lines = [
    `## cuda-ops: ${info.name}${EMULATED ? " (EMULATED: numbers meaningless)" : ""}`,
    "",
    `sm_${info.computeCapability.replace(".", "")}, ${info.multiprocessors} SMs, ${round(info.totalMemoryBytes / 2 ** 30, 1)} GiB; ` +
      `driver ${report.software.driver ?? "?"}, runtime ${report.software.runtime ?? "?"}, cuBLAS ${report.software.cublas ?? "?"}, ` +
      `cuDNN ${report.software.cudnn ?? "?"}; ${report.date.slice(0, 10)}${opts.quick ? "; --quick shapes" : ""}`,
    "",
    spec
      ? `Peak: ${spec.gpu} (${spec.source}; dense): ${spec.tflops.float16 ?? "–"} TFLOP/s f16, ${spec.tflops.bfloat16 ?? "–"} bf16, ` +
        `${spec.tflops.float32} f32 (non-tensor), ${spec.tflops.tf32 ?? "–"} TF32; ${spec.memoryGBps} GB/s.`
      : "Peak: unknown GPU (no fractions of peak).",
    "",
    "| op | shape | dtype | impl | median ms | throughput | of peak | notes |",
    "|---|---|---|---|---:|---:|---:|---|",
    ...results.map((r) => {
      const thr = r.error ? "–" : r.tflops != null ? `${r.tflops} TFLOP/s` : `${r.gb_per_s} GB/s`;
      const notes: string[] = [];
      if (r.error) notes.push(`FAILED: ${r.error.replace(/\|/g, "\\|")}`);
      if (r.backend_vs_raw != null) notes.push(`${r.backend_vs_raw}× raw`);
      if (r.fraction_of_memcpy != null) notes.push(`${pct(r.fraction_of_memcpy)} of memcpy`);
      if (r.fraction_of_dram_memcpy != null) notes.push(`${pct(r.fraction_of_dram_memcpy)} of DRAM memcpy`);
      if (r.algo) notes.push(r.algo);
      if (!EMULATED && !opts.quick && r.host_ms != null && r.median_ms != null && r.host_ms > r.median_ms) notes.push(`host-bound (${r.host_ms} ms/call)`);
      return `| ${r.op} | ${r.shape} | ${r.dtype} | ${r.impl} | ${r.median_ms ?? "–"} | ${thr} | ${pct(r.fraction_of_peak)} | ${notes.join("; ")} |`;
    }),
    "",
    `Allocator: live ${mem.live} B at the end, peak ${round(mem.peak / 2 ** 20, 1)} MiB.`,
    "",
  ];
  const md = lines.join("\n");
  if (opts.markdown === "-") console.error(md);
  else writeFileSync(opts.markdown, md);
}

if (failures > 0 || leaked) {
  console.error(`cuda-ops: ${failures} case(s) failed${leaked ? `; ${mem.live} bytes still live on the device at the end (a leak)` : ""}`);
  process.exit(2);
}
