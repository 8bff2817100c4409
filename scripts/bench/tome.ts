// Token merging benchmark, printed as one JSON object: the time of one UNet step (one forward at batch 2, as with
// CFG) of the SD 1.5 architecture (config from the golden manifests/sd15_unet.json, built on "meta" and filled with
// random weights as scripts/bench/cpu-models.ts does; float32, fused attention) on the CPU, plain vs ToMe at ratios
// 0.25 / 0.5 / 0.75 (tomesd defaults: maxDownsample "auto" = 1, sx = sy = 2, useRand) vs ToDo (factor 2, maxDepth
// 1), with the time spent inside ToMe (computing the matchings, merging, unmerging: host clock, synchronous on the
// CPU) and the speed-up over plain (wall clock, and process CPU time: user + sys of all threads, less swayed by other
// jobs on a shared machine). Runs in the order given, each after one untimed call at that size.
// --device cuda runs it on the CUDA device (float16 unless --dtype; each step ends by reading the output, so it
// waits for the device; the inside-ToMe times are then host enqueue times, not device times); --attention
// fused,naive repeats every mode with the memory-efficient kernel and with materialised scores.
// Usage: bun scripts/bench/tome.ts [--sizes 512] [--reps 1] [--modes plain,tome0.25,tome0.5,tome0.75,todo2]
//        [--device cpu|cuda] [--dtype float32|float16|bfloat16] [--attention fused,naive] [--golden DIR]

import path from "node:path";
import { cpuInfo } from "../../ffi/cpuid.ts";
import { gemmBackendName } from "../../src/backends/cpu/index.ts";
import { UNet2DConditionModel } from "../../src/models/unet/index.ts";
import { cudaInfo } from "../../src/backends/cuda/index.ts";
import { AttnProcessorDefault } from "../../src/nn/attention.ts";
import type { AttentionKind } from "../../src/nn/attention-dispatch.ts";
import { setAttnProcessor } from "../../src/nn/attention-processors.ts";
import { type DType, memoryStats, randn, resetPeakMemory, tidy } from "../../src/tensor/index.ts";
import { type TokenMergingOptions, applyTokenMerging, removeTokenMerging } from "../../src/tome/index.ts";
import { benchDevice, cliOption, median, round } from "./bench-util.ts";
import { fillRandom, manifestConfig } from "./random-weights.ts";

const args = process.argv.slice(2);
const opt = (name: string) => cliOption(args, name);
const SIZES = (opt("--sizes") ?? "512").split(",").map(Number);
const REPS = Number(opt("--reps") ?? 1);
const MODES = (opt("--modes") ?? "plain,tome0.25,tome0.5,tome0.75,todo2").split(",");
const DEVICE = benchDevice(opt("--device"));
const DTYPE = (opt("--dtype") ?? (DEVICE === "cpu" ? "float32" : "float16")) as DType;
const ATTENTION = (opt("--attention") ?? "fused").split(",") as AttentionKind[];
for (const k of ATTENTION) if (k !== "fused" && k !== "naive") throw new Error(`--attention: fused or naive, got ${k}`);
const GOLDEN = path.resolve(opt("--golden") ?? process.env.BD_GOLDEN_DIR ?? path.join(import.meta.dir, "../../../shared/golden"));
for (const px of SIZES) if (!(Number.isInteger(px) && px > 0 && px % 8 === 0)) throw new Error(`--sizes: ${px} is not a positive multiple of 8 pixels`);

function modeOptions(mode: string): TokenMergingOptions | null {
  if (mode === "plain") return null;
  const tome = /^tome([0-9.]+)$/.exec(mode);
  if (tome) return { ratio: Number(tome[1]) };
  const todo = /^todo(\d+)$/.exec(mode);
  if (todo) return { mode: "todo", factor: Number(todo[1]) };
  throw new Error(`--modes: unknown mode ${JSON.stringify(mode)} (plain, tome<ratio>, todo<factor>)`);
}

const cfg = manifestConfig(GOLDEN, "sd15_unet");
const t0 = performance.now();
const unet = new UNet2DConditionModel(cfg, { device: "meta" });
fillRandom(unet);
unet.to({ device: DEVICE, dtype: DTYPE });
const cross = cfg.cross_attention_dim as number;
const input = (shape: number[], seed: number) => tidy(() => randn(shape, { seed }).to({ device: DEVICE, dtype: DTYPE }));
tidy(() => void unet.call(input([2, 4, 8, 8], 1), 981, input([2, 77, cross], 2)).toFloat32Array()); // loads OpenBLAS, JIT, kernels

const results: Record<string, unknown>[] = [];
for (const px of SIZES) for (const attention of ATTENTION) {
  setAttnProcessor(unet, new AttnProcessorDefault(attention));
  const h = px / 8;
  const sample = input([2, 4, h, h], 3);
  const ehs = input([2, 77, cross], 4);
  const step = () =>
    tidy(() => {
      const out = unet.call(sample, 981, ehs);
      if (!out.toFloat32Array().every(Number.isFinite)) throw new Error("UNet output is not finite"); // also waits for the device
    });
  let plainSeconds = Number.NaN;
  let plainCpuSeconds = Number.NaN;
  for (const mode of MODES) {
    const o = modeOptions(mode);
    const handle = o ? applyTokenMerging(unet, o) : null;
    step(); // untimed call at this size
    const timing0 = handle ? { ...handle.timing } : null;
    resetPeakMemory(DEVICE);
    const live0 = memoryStats(DEVICE).live;
    const times: number[] = [];
    const cpuTimes: number[] = []; // process CPU time (user + sys, all threads): a second view on a loaded machine
    for (let r = 0; r < REPS; r++) {
      const c = process.cpuUsage();
      const t = performance.now();
      step();
      times.push((performance.now() - t) / 1e3);
      const d = process.cpuUsage(c);
      cpuTimes.push((d.user + d.system) / 1e6);
    }
    const seconds = median(times);
    const cpuSeconds = median(cpuTimes);
    if (mode === "plain") [plainSeconds, plainCpuSeconds] = [seconds, cpuSeconds];
    const per = (x: number) => round(x / REPS / 1e3, 3);
    const tome =
      handle && timing0 && handle.options.mode === "tome"
        ? {
            match_seconds: per(handle.timing.matchMs - timing0.matchMs),
            merge_seconds: per(handle.timing.mergeMs - timing0.mergeMs),
            unmerge_seconds: per(handle.timing.unmergeMs - timing0.unmergeMs),
            matchings_per_step: (handle.timing.calls - timing0.calls) / REPS,
            blocks: handle.blocks.length,
          }
        : undefined;
    results.push({
      name: `unet_sd15_${px}_${attention}_${mode}`,
      mode,
      attention,
      options: handle ? JSON.parse(JSON.stringify(handle.options, (_k, v) => (typeof v === "bigint" ? v.toString() : v))) : null,
      input: `sample [2, 4, ${h}, ${h}], encoder_hidden_states [2, 77, ${cross}]`,
      seconds: round(seconds, 3),
      runs: times.map((t) => round(t, 3)),
      speedup_vs_plain: Number.isNaN(plainSeconds) ? null : round(plainSeconds / seconds, 3),
      cpu_seconds: round(cpuSeconds, 3),
      cpu_speedup_vs_plain: Number.isNaN(plainCpuSeconds) ? null : round(plainCpuSeconds / cpuSeconds, 3),
      tome,
      peak_activation_mb: Math.round((memoryStats(DEVICE).peak - live0) / 2 ** 20),
    });
    console.error(JSON.stringify(results[results.length - 1]));
    removeTokenMerging(unet);
  }
  sample.dispose();
  ehs.dispose();
}
unet.dispose();

console.log(
  JSON.stringify(
    { bench: "tome", date: new Date().toISOString(), cpu: cpuInfo().model, gemm: gemmBackendName(), device: DEVICE === "cuda" ? cudaInfo() && { name: cudaInfo()!.name, emulated: cudaInfo()!.emulated } : "cpu", dtype: DTYPE, batch: 2, reps: REPS, total_seconds: round((performance.now() - t0) / 1e3, 1), results },
    null,
    2,
  ),
);
