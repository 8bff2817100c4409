// The fast-diffusion ladder of diffusers' speed guides, printed as one JSON object (with --out PREFIX also
// PREFIX.json, PREFIX.md and a PNG bar chart PREFIX.png): the denoising time of one image, rung by rung, each rung
// keeping the ones before it — float32 with materialised attention ("default attention") → bfloat16 →
// memory-efficient attention (our fused kernel) → CUDA graph → fused QKV → channels-last → DeepCache (interval 3) —
// for SDXL and SD 1.5 with random weights of the real-size configs (assets/configs; speed does not depend on weight
// values). A rung the device cannot run is listed without a time and the ladder goes on from the rung before it: the
// CUDA-graph rung (src/speed/cuda-graph.ts) is CUDA-only and
// listed as skipped on the CPU. From the DeepCache rung on, the graphs step aside (DeepCache's per-call choice of
// full or shallow step cannot be replayed): those calls run eagerly, as the row's note says.
// "Seconds per image" = --steps UNet calls at batch 2 (classifier-free guidance) with one prompt embedding, after
// one untimed call: the denoising loop, which is most of an image's time; the text encoders, the scheduler's few
// element-wise ops and the VAE decode are not in it (stated in the output). it/s = steps / seconds.
// Defaults: on CUDA, SD 1.5 at 512² and SDXL at 1024², 30 steps; on the CPU, SD 1.5 at 256², 4 steps (an SD 1.5
// 512² step takes about a minute on 2 cores) — the sizes and steps are in the output.
// Usage: bun scripts/bench/ladder.ts [--device cpu|cuda] [--models sd15,sdxl] [--size PX] [--steps N]
//        [--fast-dtype bfloat16|float16] [--out PREFIX]

import { writeFileSync } from "node:fs";
import os from "node:os";
import sharp from "sharp";
import { cpuInfo } from "../../ffi/cpuid.ts";
import { cudaInfo, cudaSynchronize } from "../../src/backends/cuda/index.ts";
import { UNet2DConditionModel } from "../../src/models/unet/index.ts";
import type { AttentionKind } from "../../src/nn/attention-dispatch.ts";
import { AttnProcessorDefault } from "../../src/nn/attention.ts";
import { setAttnProcessor } from "../../src/nn/attention-processors.ts";
import { cudaCapturer } from "../../src/pipelines/cuda-graph-feature.ts";
import { applyCudaGraphs, applyDeepCache, fuseQkvProjections } from "../../src/speed/index.ts";
import { applyChannelsLast } from "../../src/speed/channels-last.ts";
import { type DType, tidy } from "../../src/tensor/index.ts";
import { benchDevice, cliOption, round } from "./bench-util.ts";
import { randomUNet, unetCall, unetInputs } from "./unet-bench.ts";

const args = process.argv.slice(2);
const opt = (name: string) => cliOption(args, name);
const DEVICE = benchDevice(opt("--device"));
const MODELS = (opt("--models") ?? (DEVICE === "cuda" ? "sdxl,sd15" : "sd15")).split(",");
const STEPS = Number(opt("--steps") ?? (DEVICE === "cuda" ? 30 : 4));
const FAST = (opt("--fast-dtype") ?? "bfloat16") as DType;
// The CPU backend stores 16-bit floats but computes in float32, so there the 16-bit rung only adds conversions
// (SD 1.5 at 64²: 5× slower measured); the CPU ladder skips it unless --fast-dtype is given.
const DTYPE_RUNG = DEVICE === "cuda" || opt("--fast-dtype") !== undefined;
const OUT = opt("--out");
const NATIVE: Record<string, number> = DEVICE === "cuda" ? { sd15: 512, sdxl: 1024 } : { sd15: 256, sdxl: 512 };
const SIZE = opt("--size") !== undefined ? Number(opt("--size")) : null;
if (!(Number.isInteger(STEPS) && STEPS >= 1)) throw new Error(`--steps: a positive integer, got ${opt("--steps")}`);
if (SIZE !== null && !(Number.isInteger(SIZE) && SIZE > 0 && SIZE % 8 === 0)) throw new Error(`--size: a positive multiple of 8, got ${opt("--size")}`);
if (FAST !== "bfloat16" && FAST !== "float16") throw new Error(`--fast-dtype: bfloat16 or float16, got ${FAST}`);
for (const m of MODELS) if (!(m in NATIVE)) throw new Error(`--models: sd15 or sdxl, got ${m}`);

interface Rung {
  name: string;
  /** Apply this rung to the UNet (cumulative); null: it does not run on this device (`skipped` says why). */
  apply: ((u: UNet2DConditionModel, state: { dtype: DType }) => void) | null;
  note?: string;
  /** Why the rung does not run on this device (its row has no time). */
  skipped?: string;
}
const attention = (kind: AttentionKind) => (u: UNet2DConditionModel) => void setAttnProcessor(u, new AttnProcessorDefault(kind));
/** Removers of the installed features, undone (last first) before the model is freed. */
const removers: (() => void)[] = [];
/** Run before each image (the CUDA-graph rung drops its graph: it is captured again, as per generate()). */
const perImage: (() => void)[] = [];
const RUNGS: Rung[] = [
  { name: "float32, default attention", apply: (u, s) => { s.dtype = "float32"; u.to({ dtype: "float32" }); attention("naive")(u); } },
  DTYPE_RUNG
    ? { name: FAST, apply: (u, s) => { s.dtype = FAST; u.to({ dtype: FAST }); } }
    : { name: FAST, apply: null, skipped: "skipped on the CPU backend: it computes in float32, 16-bit storage only adds conversions (--fast-dtype to run it)" },
  { name: "+ memory-efficient attention", apply: attention("fused") },
  DEVICE === "cuda"
    ? {
        name: "+ CUDA graph",
        apply: (u) => {
          const h = applyCudaGraphs(u, cudaCapturer);
          removers.push(h.remove);
          perImage.push(h.reset); // a graph lives for one image, as in the pipeline: every image pays its capture
        },
        note: "one UNet step captured per image (warm-up + capture in the timed run), replayed with one launch",
      }
    : { name: "+ CUDA graph", apply: null, skipped: "skipped: CUDA-only (a CUDA graph captures CUDA work; the CPU backend has no launch overhead to remove)" },
  { name: "+ fused QKV", apply: (u) => void removers.push(fuseQkvProjections([u]).remove) },
  { name: "+ channels-last", apply: (u) => void removers.push(applyChannelsLast(u).remove) },
  {
    name: "+ DeepCache (interval 3)",
    apply: (u) => void removers.push(applyDeepCache(u, { interval: 3, branchId: 0 }).remove),
    ...(DEVICE === "cuda" ? { note: "CUDA graphs step aside: DeepCache's calls run eagerly" } : {}),
  },
];

const rows: Record<string, unknown>[] = [];
for (const arch of MODELS) {
  const px = SIZE ?? NATIVE[arch]!;
  const unet = randomUNet(arch, DEVICE, "float32");
  const state = { dtype: "float32" as DType };
  /** `n` UNet calls with one prompt embedding (one DeepCache run); returns seconds. */
  const image = (n: number) => {
    for (const f of perImage) f();
    const x = unetInputs(unet, px, 2);
    try {
      const t = performance.now();
      for (let i = 0; i < n; i++)
        tidy(() => {
          const out = unetCall(unet, x, 999 - i * Math.floor(1000 / n));
          if (i === n - 1 && !out.toFloat32Array().every(Number.isFinite)) throw new Error("UNet output is not finite");
        });
      if (DEVICE === "cuda") cudaSynchronize();
      return (performance.now() - t) / 1e3;
    } finally {
      x.dispose();
    }
  };
  let first = Number.NaN;
  for (const rung of RUNGS) {
    if (!rung.apply) {
      rows.push({ model: arch, size: px, steps: STEPS, rung: rung.name, note: rung.skipped, seconds_per_image: null, it_per_s: null, speedup_vs_first: null });
      continue;
    }
    rung.apply(unet, state);
    image(1); // untimed: kernels, plans, JIT at this dtype
    const s = image(STEPS);
    if (Number.isNaN(first)) first = s;
    rows.push({ model: arch, size: px, steps: STEPS, rung: rung.name, dtype: state.dtype, seconds_per_image: round(s, 3), it_per_s: round(STEPS / s, 3), speedup_vs_first: round(first / s, 3), ...(rung.note ? { note: rung.note } : {}) });
    console.error(JSON.stringify(rows[rows.length - 1]));
  }
  while (removers.length) removers.pop()!();
  perImage.length = 0;
  unet.dispose();
}

const c = cpuInfo();
const dev = DEVICE === "cuda" ? cudaInfo() : null;
const machine = dev ? `${dev.name}${dev.emulated ? " (emulated: times are the CPU emulator's, not a GPU's)" : ""}` : `${c.model} (${os.cpus().length} cores), CPU backend`;
const result = {
  bench: "ladder",
  date: new Date().toISOString(),
  machine,
  bun: Bun.version,
  measured: `denoising only: ${STEPS} UNet calls at batch 2 (CFG) per image; text encoders and VAE decode excluded`,
  rows,
};
console.log(JSON.stringify(result, null, 2));

if (OUT) {
  writeFileSync(`${OUT}.json`, `${JSON.stringify(result, null, 2)}\n`);
  const md = [
    `# Fast-diffusion ladder — ${result.date.slice(0, 10)}`,
    "",
    `Machine: ${machine}; Bun ${Bun.version}. ${result.measured}. Random weights of the real-size configs. Produced by \`bun scripts/bench/ladder.ts ${args.join(" ")}\`.`,
    "",
    "| model | size | steps | rung | seconds / image | it/s | speed-up vs float32 |",
    "|---|---|---|---|---|---|---|",
    ...rows.map((r) => `| ${r.model} | ${r.size}² | ${r.steps} | ${r.rung} | ${r.seconds_per_image ?? `— (${r.note})`} | ${r.it_per_s ?? "—"} | ${r.speedup_vs_first ?? "—"} |`),
    "",
  ].join("\n");
  writeFileSync(`${OUT}.md`, md);
  await sharp(Buffer.from(chartSvg(rows, machine))).png().toFile(`${OUT}.png`);
}

/** A horizontal bar chart of seconds per image, one group per model. */
function chartSvg(rs: Record<string, unknown>[], title: string): string {
  const W = 900;
  const barH = 22;
  const left = 330;
  const max = Math.max(...rs.map((r) => (r.seconds_per_image as number | null) ?? 0), 1e-9);
  let y = 50;
  const parts: string[] = [];
  const esc = (s: string) => s.replaceAll("&", "&amp;").replaceAll("<", "&lt;");
  for (const model of [...new Set(rs.map((r) => r.model as string))]) {
    const group = rs.filter((r) => r.model === model);
    parts.push(`<text x="10" y="${y + 14}" font-weight="bold" font-size="15">${esc(model)} ${group[0]!.size}², ${group[0]!.steps} steps</text>`);
    y += 24;
    for (const r of group) {
      const s = r.seconds_per_image as number | null;
      parts.push(`<text x="${left - 8}" y="${y + 15}" text-anchor="end" font-size="13">${esc(r.rung as string)}</text>`);
      if (s === null) parts.push(`<text x="${left + 4}" y="${y + 15}" font-size="12" fill="#888">skipped on this device</text>`);
      else {
        const w = Math.max(1, ((W - left - 90) * s) / max);
        parts.push(`<rect x="${left}" y="${y + 2}" width="${w.toFixed(1)}" height="${barH - 6}" fill="#3b7dd8"/>`);
        parts.push(`<text x="${left + w + 6}" y="${y + 15}" font-size="12">${s.toFixed(2)} s</text>`);
      }
      y += barH;
    }
    y += 12;
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${y + 10}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/><text x="10" y="24" font-size="16">Seconds per image (denoising) — ${esc(title)}</text>${parts.join("")}</svg>`;
}
