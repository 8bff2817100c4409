// Host (JavaScript) time per UNet step, measured on the "meta" device, where ops compute nothing: what is left is
// the framework's own work per step — shape and dtype checks, views, allocator bookkeeping, dispatch — i.e. the
// floor under every GPU step without CUDA graphs (issue 12, "Host time"). Cases: the SD 1.5 UNet (golden
// manifests/sd15_unet.json) at 512² (latents [2, 4, 64, 64], batch 2 = CFG) and, unless --no-sdxl, the SDXL base
// UNet (manifests/sdxl_base_unet.json) at 1024² (latents [2, 4, 128, 128]); float16; weights on meta need no memory.
// Each case runs --warmup untimed steps, then --steps timed ones (median reported; the machine may be shared), then
// one counted step with the meta backend's methods wrapped, which gives backend calls and allocations per step.
// Wall time is what a step costs; on a shared machine it includes time other processes took, so the process's CPU
// time per step (all its threads, GC included; median) and the fastest step are reported beside it.
// Prints JSON: top-level `host_ms_per_step` (SD 1.5 median), the cases, the machine. --out FILE also writes it.
//
//   bun scripts/bench/host-overhead.ts [--steps 20] [--warmup 5] [--no-sdxl] [--golden DIR] [--out FILE]

import os from "node:os";
import path from "node:path";
import { writeFileSync } from "node:fs";
import { getBackend } from "../../src/backends/registry.ts";
import { UNet2DConditionModel } from "../../src/models/unet/index.ts";
import { empty, memoryStats, tidy } from "../../src/tensor/index.ts";
import { manifestConfig } from "./random-weights.ts";
import { cliOption, median, round } from "./bench-util.ts";

const args = process.argv.slice(2);
const opt = (name: string) => cliOption(args, name);
const STEPS = Number(opt("--steps") ?? 20);
const WARMUP = Number(opt("--warmup") ?? 5);
const GOLDEN = path.resolve(opt("--golden") ?? process.env.BD_GOLDEN_DIR ?? path.join(import.meta.dir, "../../../shared/golden"));

/** Backend calls (by method) and allocations made while `fn` runs, counted by wrapping meta's methods. */
function countCalls(fn: () => void): { calls: number; allocations: number; byMethod: Record<string, number> } {
  const meta = getBackend("meta") as unknown as Record<string, unknown>;
  const saved = new Map<string, unknown>();
  const byMethod: Record<string, number> = {};
  for (const [k, v] of Object.entries(meta)) {
    if (typeof v !== "function") continue;
    saved.set(k, v);
    byMethod[k] = 0;
    meta[k] = (...a: unknown[]) => {
      byMethod[k]!++;
      return (v as (...a: unknown[]) => unknown)(...a);
    };
  }
  try {
    fn();
  } finally {
    for (const [k, v] of saved) meta[k] = v;
  }
  const allocations = (byMethod.allocate ?? 0) + (byMethod.fromHostBytes ?? 0);
  const calls = Object.entries(byMethod).reduce((s, [k, n]) => (k === "allocate" || k === "fromHostBytes" || k === "availableMemory" || k === "dtypeProblem" ? s : s + n), 0);
  for (const k of Object.keys(byMethod)) if (byMethod[k] === 0) delete byMethod[k];
  return { calls, allocations, byMethod };
}

interface CaseResult {
  name: string;
  model: string;
  input: string;
  dtype: string;
  warmup_steps: number;
  timed_steps: number;
  host_ms_per_step: number;
  host_ms_min: number;
  host_ms_max: number;
  host_ms_steps: number[];
  cpu_ms_per_step: number;
  backend_calls_per_step: number;
  allocations_per_step: number;
  backend_calls_by_method: Record<string, number>;
  live_bytes_returned_to_start: boolean;
}

function runCase(name: string, manifest: string, px: number): CaseResult {
  const cfg = manifestConfig(GOLDEN, manifest);
  const unet = new UNet2DConditionModel(cfg, { device: "meta", dtype: "float16" });
  const h = px / 8;
  const cross = cfg.cross_attention_dim as number;
  const dev = { device: "meta" as const, dtype: "float16" as const };
  const sample = empty([2, cfg.in_channels as number, h, h], dev);
  const ehs = empty([2, 77, cross], dev);
  const sdxl = cfg.addition_embed_type === "text_time";
  const textEmbeds = sdxl ? empty([2, (cfg.projection_class_embeddings_input_dim as number) - 6 * (cfg.addition_time_embed_dim as number)], dev) : null;
  const timeIds = sdxl ? empty([2, 6], dev) : null; // on meta the UNet takes shapes only
  const live0 = memoryStats("meta").live;
  const step = (i: number) => tidy(() => void unet.call(sample, 981 - 10 * (i % 90), ehs, { textEmbeds, timeIds }));
  for (let i = 0; i < WARMUP; i++) step(i);
  const times: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < STEPS; i++) {
    const c = process.cpuUsage();
    const t = performance.now();
    step(i);
    times.push(performance.now() - t);
    const d = process.cpuUsage(c);
    cpu.push((d.user + d.system) / 1e3);
  }
  const counted = countCalls(() => step(0));
  const back = memoryStats("meta").live === live0;
  for (const t of [sample, ehs, textEmbeds, timeIds]) t?.dispose();
  unet.dispose();
  return {
    name,
    model: `${manifest} (golden manifests/${manifest}.json), UNet2DConditionModel on "meta"`,
    input: `sample [2, 4, ${h}, ${h}] (${px}², batch 2 = CFG), encoder_hidden_states [2, 77, ${cross}]${sdxl ? ", text_embeds + time_ids" : ""}`,
    dtype: "float16",
    warmup_steps: WARMUP,
    timed_steps: STEPS,
    host_ms_per_step: round(median(times), 3),
    host_ms_min: round(Math.min(...times), 3),
    host_ms_max: round(Math.max(...times), 3),
    host_ms_steps: times.map((x) => round(x, 3)),
    cpu_ms_per_step: round(median(cpu), 3),
    backend_calls_per_step: counted.calls,
    allocations_per_step: counted.allocations,
    backend_calls_by_method: counted.byMethod,
    live_bytes_returned_to_start: back,
  };
}

const cases = [runCase("unet_sd15_512_b2_fp16_meta", "sd15_unet", 512)];
if (!args.includes("--no-sdxl")) cases.push(runCase("unet_sdxl_1024_b2_fp16_meta", "sdxl_base_unet", 1024));
const cpus = os.cpus();
const result = {
  bench: "host-overhead",
  date: new Date().toISOString(),
  host_ms_per_step: cases[0]!.host_ms_per_step,
  host_ms_min: cases[0]!.host_ms_min,
  cpu_ms_per_step: cases[0]!.cpu_ms_per_step,
  backend_calls_per_step: cases[0]!.backend_calls_per_step,
  allocations_per_step: cases[0]!.allocations_per_step,
  note: `median of ${STEPS} steps after ${WARMUP} warm-up steps; the meta device computes nothing, so this is framework (JavaScript) time only`,
  machine: { cpu: cpus[0]?.model ?? "unknown", cores: cpus.length, os: `${os.type()} ${os.release()} ${os.arch()}`, bun: Bun.version, load_average_1m: round(os.loadavg()[0]!, 2) },
  cases,
};
const json = JSON.stringify(result, null, 2);
console.log(json);
const out = opt("--out");
if (out) writeFileSync(out, json + "\n");
