// diffusers' ToMe table on the device present, printed as one JSON object (with --out PREFIX also PREFIX.json and
// PREFIX.md beside the published figures of ../shared/reference/published-benchmarks.md): SD 1.5 (real-size config,
// random weights), each resolution × batch, three columns — vanilla (materialised attention scores), ToMe (ratio 0.5,
// tomesd defaults, vanilla attention) and ToMe + memory-efficient attention (our fused kernel, the analogue of
// xFormers) — with the seconds of --steps denoising calls (UNet at batch 2·batch, CFG) per image, the measured peak
// device memory, and "OOM" where the device ran out (the allocator's OutOfMemoryError; nothing is left allocated),
// beside the memory planner's predicted peak of that cell. Text encoding and the VAE decode are not timed (the
// published seconds include them; they are a small part at 50 steps).
// Defaults: CUDA — 512/768/1024 × 1, 2, 4, 8, 10, 50 steps, float16 (as published); CPU — 256 × 1, 2, 2 steps,
// float32 (a taste of the table: the CPU backend is the reference, not a speed path).
// Usage: bun scripts/bench/tome-table.ts [--device cpu|cuda] [--sizes 512,768,1024] [--batches 1,2,4,8,10]
//        [--steps 50] [--dtype float16] [--out PREFIX]

import { writeFileSync } from "node:fs";
import os from "node:os";
import { cpuInfo } from "../../ffi/cpuid.ts";
import { cudaEmptyCache, cudaInfo, cudaSynchronize } from "../../src/backends/cuda/index.ts";
import { OutOfMemoryError, formatBytes } from "../../src/core/errors.ts";
import { AttnProcessorDefault } from "../../src/nn/attention.ts";
import { setAttnProcessor } from "../../src/nn/attention-processors.ts";
import { MetaModels, knownPlanModels, planMemory } from "../../src/pipelines/index.ts";
import { type DType, memoryStats, resetPeakMemory, tidy } from "../../src/tensor/index.ts";
import { applyTokenMerging, removeTokenMerging } from "../../src/tome/index.ts";
import { benchDevice, cliOption, round } from "./bench-util.ts";
import { randomUNet, unetCall, unetInputs } from "./unet-bench.ts";

const args = process.argv.slice(2);
const opt = (name: string) => cliOption(args, name);
const DEVICE = benchDevice(opt("--device"));
const gpu = DEVICE === "cuda";
const ints = (name: string, dflt: string) =>
  (opt(name) ?? dflt).split(",").map((v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`${name}: positive integers, got ${v}`);
    return n;
  });
const SIZES = ints("--sizes", gpu ? "512,768,1024" : "256");
const BATCHES = ints("--batches", gpu ? "1,2,4,8,10" : "1,2");
const [STEPS] = ints("--steps", gpu ? "50" : "2");
const DTYPE = (opt("--dtype") ?? (gpu ? "float16" : "float32")) as DType;
const OUT = opt("--out");
for (const s of SIZES) if (s % 8 !== 0) throw new Error(`--sizes: multiples of 8, got ${s}`);

const COLUMNS = [
  { name: "vanilla", attention: "naive", tome: false },
  { name: "ToMe", attention: "naive", tome: true },
  { name: "ToMe + memory-efficient attention", attention: "fused", tome: true },
] as const;

const unet = randomUNet("sd15", DEVICE, DTYPE);
const meta = new MetaModels(knownPlanModels("sd15", DTYPE));
const cells: Record<string, unknown>[] = [];
for (const px of SIZES)
  for (const batch of BATCHES)
    for (const col of COLUMNS) {
      setAttnProcessor(unet, new AttnProcessorDefault(col.attention));
      const tome = col.tome ? applyTokenMerging(unet, { ratio: 0.5 }) : null;
      const plan = planMemory(meta, { width: px, height: px, batch, cfg: true, attention: col.attention, tome: col.tome ? { ratio: 0.5 } : null });
      const planned = plan.phases.find((p) => p.phase === "denoising")!;
      const plannedUnet = planned.peak - planned.weights + plan.componentWeights.unet!; // only the UNet is on the device here
      const live0 = memoryStats(DEVICE).live;
      resetPeakMemory(DEVICE);
      let seconds: number | null = null;
      let oom: string | null = null;
      const x = unetInputs(unet, px, 2 * batch);
      try {
        tidy(() => void unetCall(unet, x, 999)); // untimed: plans and kernels at this shape
        if (gpu) cudaSynchronize();
        const t = performance.now();
        for (let i = 0; i < STEPS; i++) tidy(() => void unetCall(unet, x, 999 - i * Math.floor(1000 / STEPS)));
        if (gpu) cudaSynchronize();
        seconds = (performance.now() - t) / 1e3;
      } catch (e) {
        if (!(e instanceof OutOfMemoryError)) throw e;
        oom = e.message.slice(0, 200);
      } finally {
        x.dispose();
        if (tome) removeTokenMerging(unet);
        if (gpu) cudaEmptyCache();
      }
      if (memoryStats(DEVICE).live !== live0) throw new Error(`tome-table: ${memoryStats(DEVICE).live - live0} bytes left live after a cell`);
      cells.push({
        size: px,
        batch,
        column: col.name,
        seconds: seconds === null ? null : round(seconds, 3),
        seconds_per_image: seconds === null ? null : round(seconds / batch, 3),
        oom: oom !== null,
        oom_message: oom,
        measured_peak_bytes: oom ? null : memoryStats(DEVICE).peak,
        planned_unet_peak_bytes: plannedUnet,
      });
      console.error(JSON.stringify(cells[cells.length - 1]));
    }
meta.dispose();
unet.dispose();

const dev = gpu ? cudaInfo() : null;
const machine = dev ? `${dev.name}${dev.emulated ? " (emulated: times are the CPU emulator's)" : ""}, ${formatBytes(dev.totalMemoryBytes)}` : `${cpuInfo().model} (${os.cpus().length} cores), CPU backend`;
const result = { bench: "tome-table", date: new Date().toISOString(), machine, dtype: DTYPE, steps: STEPS, timed: `${STEPS} UNet calls at batch 2·batch (CFG); text encoding and VAE decode not timed`, cells };
console.log(JSON.stringify(result, null, 2));
if (OUT) {
  writeFileSync(`${OUT}.json`, `${JSON.stringify(result, null, 2)}\n`);
  const cell = (px: number, b: number, c: string) => {
    const x = cells.find((y) => y.size === px && y.batch === b && y.column === c)!;
    return x.oom ? "OOM" : `${x.seconds} s (${formatBytes(x.measured_peak_bytes as number)})`;
  };
  const md = [
    `# ToMe table (diffusers' layout) — ${result.date.slice(0, 10)}`,
    "",
    `Machine: ${machine}; Bun ${Bun.version}; SD 1.5 architecture, random weights, ${DTYPE}; ${result.timed}. ` +
      `Cells: seconds for ${STEPS} steps of the batch (measured peak device memory), or OOM. Produced by \`bun scripts/bench/tome-table.ts ${args.join(" ")}\`. ` +
      "diffusers' published figures (A100 / V100, whole pipeline, 50 steps) are in ../shared/reference/published-benchmarks.md.",
    "",
    `| resolution | batch | ${COLUMNS.map((c) => c.name).join(" | ")} |`,
    `|---|---|${COLUMNS.map(() => "---").join("|")}|`,
    ...SIZES.flatMap((px) => BATCHES.map((b) => `| ${px} | ${b} | ${COLUMNS.map((c) => cell(px, b, c.name)).join(" | ")} |`)),
    "",
  ].join("\n");
  writeFileSync(`${OUT}.md`, md);
}
