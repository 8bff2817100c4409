// Host time per UNet step with and without CUDA graphs (src/speed/cuda-graph.ts) on the CUDA device — a GPU, or
// the emulated device with BD_CUDA_EMULATE=1, where the numbers are the host's issue time on the CPU emulator, not
// GPU timings (the emulator's own kernel execution shares the host's cores). The UNet of a real-size config with
// random weights (unet-bench.ts) at --size pixels (default 512 on a GPU, 64 emulated), batch 2 (CFG), --dtype
// (default float32). Per mode: `issue_ms` = time for the call to return (the host work of a step: module code and
// launches eagerly, copy-ins + one graph launch + an output copy replayed), `step_ms` = the call plus a
// synchronisation (the step's wall time), medians of --steps steps after one untimed step; the capture's own time
// (warm-up + capture + first launch) is reported once. Prints JSON; --out FILE also writes it.
//
//   BD_CUDA_EMULATE=1 bun scripts/bench/cuda-graph-steps.ts [--model sd15|sdxl] [--size PX] [--steps N] [--dtype float16]

import { writeFileSync } from "node:fs";
import { cudaAvailable, cudaGraphLaunches, cudaInfo, cudaSynchronize, initCuda } from "../../src/backends/cuda/index.ts";
import { cudaCapturer } from "../../src/pipelines/cuda-graph-feature.ts";
import { applyCudaGraphs } from "../../src/speed/index.ts";
import { type DType, tidy } from "../../src/tensor/index.ts";
import { cliOption, median, round } from "./bench-util.ts";
import { randomUNet, unetCall, unetInputs } from "./unet-bench.ts";

const args = process.argv.slice(2);
const opt = (name: string) => cliOption(args, name);
const a = cudaAvailable();
if (!a.ok) throw new Error(`no CUDA device (real, or the emulated one with BD_CUDA_EMULATE=1): ${a.reason}`);
initCuda();
const info = cudaInfo()!;
const MODEL = opt("--model") ?? "sd15";
const SIZE = Number(opt("--size") ?? (info.emulated ? 64 : 512));
const STEPS = Number(opt("--steps") ?? 10);
const DTYPE = (opt("--dtype") ?? "float32") as DType;
if (!(Number.isInteger(STEPS) && STEPS >= 1)) throw new Error(`--steps: a positive integer, got ${opt("--steps")}`);

const unet = randomUNet(MODEL, "cuda", DTYPE);
const x = unetInputs(unet, SIZE, 2);
/** One step: [ms until the call returned, ms until the device finished]. */
const step = (i: number): [number, number] => {
  cudaSynchronize();
  const t0 = performance.now();
  let issued = 0;
  tidy(() => {
    unetCall(unet, x, 999 - i);
    issued = performance.now() - t0;
  });
  cudaSynchronize();
  return [issued, performance.now() - t0];
};
const measure = () => {
  step(0);
  const r = Array.from({ length: STEPS }, (_, i) => step(i + 1));
  return { issue_ms: round(median(r.map((v) => v[0])), 3), step_ms: round(median(r.map((v) => v[1])), 3) };
};

const eager = measure();
const h = applyCudaGraphs(unet, cudaCapturer);
const t0 = performance.now();
step(0); // capture
const captureMs = performance.now() - t0;
const launches = cudaGraphLaunches();
const graph = measure();
const result = {
  bench: "cuda-graph-steps",
  date: new Date().toISOString(),
  machine: `${info.name}${info.emulated ? " (emulated: host times on the CPU emulator, not GPU timings)" : ""}`,
  model: MODEL,
  latents: x.sample.shape,
  dtype: DTYPE,
  steps: STEPS,
  eager,
  graph: { ...graph, capture_ms: round(captureMs, 1), nodes: h.nodes, launches_per_step: launches === null ? null : (cudaGraphLaunches()! - launches) / (STEPS + 1) },
  fallbacks: h.stats.fallbacks,
  issue_speedup: round(eager.issue_ms / graph.issue_ms, 2),
};
h.remove();
x.dispose();
unet.dispose();
console.log(JSON.stringify(result, null, 2));
const out = opt("--out");
if (out) writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
