// Channels-last vs NCHW UNet steps on one device, printed as JSON: the demo model's UNet (assets/shapes-64, its native
// 64² at batch 2) and, unless --demo-only, SD 1.5 with random weights (at 256² on the CPU, 512² on CUDA). The layouts
// are timed interleaved (NCHW, NHWC, NCHW, …) after one untimed call each, so a shared machine's load falls on both;
// each row gives the median ms per UNet call and NHWC's speed-up (> 1: channels-last is faster).
// Usage: bun scripts/bench/channels-last.ts [--device cpu|cuda] [--reps N] [--demo-only]

import os from "node:os";
import path from "node:path";
import { cudaSynchronize } from "../../src/backends/cuda/index.ts";
import { UNet2DConditionModel } from "../../src/models/unet/index.ts";
import { DEMO_MODEL_DIR } from "../../src/pipelines/demo-model.ts";
import { applyChannelsLast } from "../../src/speed/channels-last.ts";
import { tidy } from "../../src/tensor/index.ts";
import { benchDevice, cliOption, median, round } from "./bench-util.ts";
import { randomUNet, unetCall, unetInputs } from "./unet-bench.ts";

const args = process.argv.slice(2);
const opt = (name: string) => cliOption(args, name);
const DEVICE = benchDevice(opt("--device"));
const REPS = Number(opt("--reps") ?? 5);
if (!(Number.isInteger(REPS) && REPS >= 1)) throw new Error(`--reps: a positive integer, got ${opt("--reps")}`);

function compare(name: string, unet: UNet2DConditionModel, px: number, reps: number) {
  const x = unetInputs(unet, px, 2);
  const call = () => {
    const t = performance.now();
    tidy(() => void unetCall(unet, x, 500).toFloat32Array());
    if (DEVICE === "cuda") cudaSynchronize();
    return performance.now() - t;
  };
  const times: Record<"nchw" | "nhwc", number[]> = { nchw: [], nhwc: [] };
  try {
    for (let r = -1; r < reps; r++)
      for (const layout of ["nchw", "nhwc"] as const) {
        const h = layout === "nhwc" ? applyChannelsLast(unet) : null;
        try {
          const ms = call();
          if (r >= 0) times[layout].push(ms);
        } finally {
          h?.remove();
        }
      }
  } finally {
    x.dispose();
  }
  const a = median(times.nchw), b = median(times.nhwc);
  return { model: name, size: px, batch: 2, reps, nchw_ms: round(a, 1), nhwc_ms: round(b, 1), nhwc_speedup: round(a / b, 3) };
}

const rows = [];
const demo = UNet2DConditionModel.fromPretrained(path.join(DEMO_MODEL_DIR, "unet"), { device: DEVICE });
rows.push(compare("shapes-64 (demo)", demo, 64, REPS));
demo.dispose();
if (!args.includes("--demo-only")) {
  const sd15 = randomUNet("sd15", DEVICE, "float32");
  rows.push(compare("sd15 (random weights)", sd15, DEVICE === "cuda" ? 512 : 256, Math.max(1, Math.ceil(REPS / 3))));
  sd15.dispose();
}
console.log(JSON.stringify({ device: DEVICE, cpus: os.cpus().length, cpu: os.cpus()[0]?.model, dtype: "float32", rows }, null, 2));
