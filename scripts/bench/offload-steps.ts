// Measured cost of CPU offload, printed as one JSON object: the time and peak device memory of one UNet step
// (one forward at batch 2, as with CFG) with the weights resident, with sequential offload without prefetch and with
// prefetch (--prefetch-mib, default the library's DEFAULT_PREFETCH_BYTES), beside the memory planner's prediction of
// the denoising phase for the same configuration. The target: sequential offload with prefetch ≤ 1.5× the
// resident step time on a GPU (diffusers pays 3× and more). Model offload is not listed: across the steps of one
// generation the UNet stays resident, so its step time is the resident one (its cost is one upload per component
// per generate() call, measured in the memory benchmark's GPU run).
// Models: the real-size configs shipped in assets/configs (SD 1.5, SDXL), random weights (speed and memory do not
// depend on weight values; scripts/bench/random-weights.ts), built on "meta", filled on the CPU, then moved to the
// device in --dtype. Each mode: one untimed step, then the median of --steps steps (each ends with a device sync).
// On the emulated device the numbers are the CPU emulator's, not a GPU's (the JSON says so); use --size 64 there.
// Usage: bun scripts/bench/offload-steps.ts [--device cuda] [--cases sd15,sdxl] [--size PX] [--steps 5]
//        [--dtype float16] [--prefetch-mib 64]

import os from "node:os";
import { cudaAvailable, cudaSynchronize, initCuda } from "../../src/backends/cuda/index.ts";
import { DEFAULT_PREFETCH_BYTES, installSequentialOffload } from "../../src/offload/index.ts";
import { MetaModels, knownPlanModels, planMemory } from "../../src/pipelines/index.ts";
import { type DType, type Device, memoryStats, resetPeakMemory, tidy } from "../../src/tensor/index.ts";
import { cliOption, median, round } from "./bench-util.ts";
import { randomUNet, unetCall, unetInputs } from "./unet-bench.ts";

const args = process.argv.slice(2);
const opt = (name: string) => cliOption(args, name);
const DEVICE = (opt("--device") ?? "cuda") as Device;
const CASES = (opt("--cases") ?? "sd15,sdxl").split(",");
const STEPS = Number(opt("--steps") ?? 5);
const DTYPE = (opt("--dtype") ?? "float16") as DType;
const PREFETCH = opt("--prefetch-mib") !== undefined ? Number(opt("--prefetch-mib")) * 2 ** 20 : DEFAULT_PREFETCH_BYTES;
const SIZE = opt("--size") !== undefined ? Number(opt("--size")) : null;
if (DEVICE !== "cuda") throw new Error(`offload-steps: offload is for a CUDA device; got --device ${DEVICE}`);
const avail = cudaAvailable();
if (!avail.ok) throw new Error(`offload-steps: no CUDA device (real, or the emulated one with BD_CUDA_EMULATE=1): ${avail.reason}`);
const info = initCuda();
if (!(STEPS >= 1) || !(PREFETCH >= 0) || (SIZE !== null && !(SIZE > 0 && SIZE % 8 === 0)))
  throw new Error("offload-steps: --steps ≥ 1, --prefetch-mib ≥ 0, --size a positive multiple of 8");
const NATIVE: Record<string, number> = { sd15: 512, sdxl: 1024 };

const results: Record<string, unknown>[] = [];
for (const arch of CASES) {
  if (!(arch in NATIVE)) throw new Error(`offload-steps: unknown case ${JSON.stringify(arch)} (sd15, sdxl)`);
  const px = SIZE ?? NATIVE[arch]!;
  const pm = knownPlanModels(arch, DTYPE);
  const unet = randomUNet(arch, DEVICE, DTYPE);
  const x = unetInputs(unet, px, 2);
  const step = () =>
    tidy(() => {
      void unetCall(unet, x, 981);
      cudaSynchronize();
    });
  const meta = new MetaModels(pm);
  // the plan's denoising phase with only the UNet's weights resident (this benchmark holds no text encoder or VAE)
  const planned = (offload: "none" | "sequential", prefetchBytes: number) => {
    const p = planMemory(meta, { width: px, height: px, batch: 1, cfg: true, offload, prefetchBytes });
    const d = p.phases.find((x) => x.phase === "denoising")!;
    return d.peak - d.weights + (offload === "none" ? p.componentWeights.unet! : d.weights);
  };
  const modes: [string, "none" | "sequential", number][] = [
    ["resident", "none", 0],
    ["sequential, no prefetch", "sequential", 0],
    [`sequential, prefetch ${round(PREFETCH / 2 ** 20, 1)} MiB`, "sequential", PREFETCH],
  ];
  let residentMs = Number.NaN;
  for (const [name, offload, prefetchBytes] of modes) {
    const handle = offload === "sequential" ? installSequentialOffload([unet], DEVICE, { prefetch: prefetchBytes > 0, prefetchBytes }) : null;
    try {
      step(); // untimed: plans, caches, first uploads
      const live0 = memoryStats(DEVICE).live;
      resetPeakMemory(DEVICE);
      const times: number[] = [];
      for (let i = 0; i < STEPS; i++) {
        const t = performance.now();
        step();
        times.push(performance.now() - t);
      }
      // live bytes between steps are the weights still resident (all of them, or none after sequential's release)
      const peak = memoryStats(DEVICE).peak;
      const ms = median(times);
      if (offload === "none") residentMs = ms;
      const plannedPeak = planned(offload, prefetchBytes);
      results.push({
        model: arch,
        size: px,
        mode: name,
        step_ms: round(ms, 2),
        runs_ms: times.map((t) => round(t, 2)),
        vs_resident: round(ms / residentMs, 3),
        measured_peak_bytes: peak,
        live_between_steps_bytes: live0,
        planned_unet_step_peak_bytes: plannedPeak,
        planned_vs_measured: round(plannedPeak / peak, 4),
      });
      console.error(JSON.stringify(results[results.length - 1]));
    } finally {
      handle?.remove();
    }
  }
  meta.dispose();
  x.dispose();
  unet.dispose();
}

console.log(
  JSON.stringify(
    {
      benchmark: "offload-steps",
      date: new Date().toISOString(),
      machine: { cpu: os.cpus()[0]?.model, cores: os.cpus().length, bun: Bun.version },
      device: info ? { name: info.name, computeCapability: info.computeCapability, emulated: info.emulated } : null,
      note: info?.emulated ? "emulated CUDA device: times are the CPU emulator's, not a GPU's; memory figures are the allocator's, as on a GPU" : null,
      dtype: DTYPE,
      steps: STEPS,
      prefetch_bytes: PREFETCH,
      target: "sequential offload with prefetch ≤ 1.5× the resident step time (GPU)",
      results,
    },
    null,
    2,
  ),
);
