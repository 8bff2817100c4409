// DeepCache benchmark, printed as one JSON object. (1) The demo model (assets/shapes-64): whole generate()
// calls (DDIM, --steps 20, CFG, 64×64), plain vs DeepCache at --interval 3, branch --branch 0, alternated
// --reps times (alternating spreads machine-load drift over both). (2) The SD 1.5 architecture (config from the
// golden manifests/sd15_unet.json, built on "meta", filled with random weights) at --sd-size pixels: --sd-calls
// UNet calls at batch 2 (as with CFG) with one encoder_hidden_states tensor (one "run"), plain vs DeepCache,
// after one untimed call. (3) With --fused SIZE: the same SD 1.5 UNet at SIZE pixels, --reps alternated pairs of
// --sd-calls calls (one encoder tensor per group), plain vs fused QKV with the cross-attention K/V cache.
// float32, CPU, fused attention. Speed-ups are plain / feature wall time (medians over the reps).
// Usage: bun scripts/bench/deepcache.ts [--steps 20] [--interval 3] [--branch 0] [--reps 2] [--sd-size 256] [--sd-calls 6]
//        [--no-demo] [--no-sd] [--fused 128]

import path from "node:path";
import { cpuInfo } from "../../ffi/cpuid.ts";
import { gemmBackendName } from "../../src/backends/cpu/index.ts";
import { UNet2DConditionModel } from "../../src/models/unet/index.ts";
import { StableDiffusionPipeline } from "../../src/pipelines/index.ts";
import { applyDeepCache, fuseQkvProjections } from "../../src/speed/index.ts";
import { randn, tidy } from "../../src/tensor/index.ts";
import { cliOption, median, round } from "./bench-util.ts";
import { fillRandom, manifestConfig } from "./random-weights.ts";

const args = process.argv.slice(2);
const opt = (name: string) => cliOption(args, name);
const STEPS = Number(opt("--steps") ?? 20);
const INTERVAL = Number(opt("--interval") ?? 3);
const BRANCH = Number(opt("--branch") ?? 0);
const REPS = Number(opt("--reps") ?? 2);
const SD_SIZE = Number(opt("--sd-size") ?? 256);
const SD_CALLS = Number(opt("--sd-calls") ?? 6);
const GOLDEN = path.resolve(opt("--golden") ?? process.env.BD_GOLDEN_DIR ?? path.join(import.meta.dir, "../../../shared/golden"));
const t0 = performance.now();
const results: Record<string, unknown>[] = [];

// (1) demo model, whole generate() calls
if (!args.includes("--no-demo")) {
  const pipe = await StableDiffusionPipeline.fromPretrained(path.join(import.meta.dir, "../../assets/shapes-64"));
  const run = async () => {
    const t = performance.now();
    await pipe.generate({ prompt: "a red circle on a blue background", seed: 0, steps: STEPS, scheduler: "ddim", negativePrompt: "" });
    return (performance.now() - t) / 1e3;
  };
  await run(); // untimed: JIT, OpenBLAS
  const plain: number[] = [];
  const cached: number[] = [];
  for (let r = 0; r < REPS; r++) {
    pipe.disableDeepCache();
    plain.push(await run());
    pipe.enableDeepCache({ interval: INTERVAL, branchId: BRANCH });
    cached.push(await run());
  }
  pipe.dispose();
  const p = median(plain);
  const c = median(cached);
  results.push({ name: `shapes64_generate_${STEPS}steps`, interval: INTERVAL, branchId: BRANCH, plain_seconds: round(p, 3), deepcache_seconds: round(c, 3), plain_runs: plain.map((x) => round(x, 3)), deepcache_runs: cached.map((x) => round(x, 3)), speedup: round(p / c, 3) });
  console.error(JSON.stringify(results[results.length - 1]));
}

// (2) SD 1.5 architecture, random weights, UNet calls only
if (!args.includes("--no-sd")) {
  const cfg = manifestConfig(GOLDEN, "sd15_unet");
  const unet = new UNet2DConditionModel(cfg, { device: "meta" });
  fillRandom(unet);
  const cross = cfg.cross_attention_dim as number;
  const h = SD_SIZE / 8;
  const sample = randn([2, 4, h, h], { seed: 3 });
  tidy(() => void unet.call(sample, 981, randn([2, 77, cross], { seed: 4 }))); // untimed
  const calls = () => {
    const ehs = randn([2, 77, cross], { seed: 4 }); // one run: one tensor
    const times: number[] = [];
    for (let i = 0; i < SD_CALLS; i++) {
      const t = performance.now();
      tidy(() => void unet.call(sample, 981 - 50 * i, ehs).toFloat32Array());
      times.push((performance.now() - t) / 1e3);
    }
    ehs.dispose();
    return times;
  };
  const plain = calls();
  const h2 = applyDeepCache(unet, { interval: INTERVAL, branchId: BRANCH });
  const cached = calls();
  h2.remove();
  const sum = (a: number[]) => a.reduce((x, y) => x + y, 0);
  results.push({
    name: `unet_sd15_${SD_SIZE}_${SD_CALLS}calls`,
    interval: INTERVAL,
    branchId: BRANCH,
    input: `sample [2, 4, ${h}, ${h}], encoder_hidden_states [2, 77, ${cross}]`,
    plain_call_seconds: plain.map((x) => round(x, 3)),
    deepcache_call_seconds: cached.map((x) => round(x, 3)),
    plain_seconds: round(sum(plain), 3),
    deepcache_seconds: round(sum(cached), 3),
    speedup: round(sum(plain) / sum(cached), 3),
    full_vs_shallow_call: round(median(cached.filter((_, i) => i % INTERVAL === 0)) / median(cached.filter((_, i) => i % INTERVAL !== 0)), 2),
  });
  console.error(JSON.stringify(results[results.length - 1]));
  sample.dispose();
  unet.dispose();
}

// (3) fused QKV + K/V cache on the SD 1.5 architecture
if (opt("--fused")) {
  const px = Number(opt("--fused"));
  const cfg = manifestConfig(GOLDEN, "sd15_unet");
  const unet = new UNet2DConditionModel(cfg, { device: "meta" });
  fillRandom(unet);
  const cross = cfg.cross_attention_dim as number;
  const h = px / 8;
  const sample = randn([2, 4, h, h], { seed: 3 });
  const group = () => {
    const ehs = randn([2, 77, cross], { seed: 4 });
    const t = performance.now();
    for (let i = 0; i < SD_CALLS; i++) tidy(() => void unet.call(sample, 981 - 50 * i, ehs).toFloat32Array());
    ehs.dispose();
    return (performance.now() - t) / 1e3 / SD_CALLS;
  };
  group(); // untimed
  const plain: number[] = [];
  const fused: number[] = [];
  for (let r = 0; r < REPS; r++) {
    plain.push(group());
    const f = fuseQkvProjections(unet);
    fused.push(group());
    f.remove();
  }
  results.push({
    name: `unet_sd15_${px}_fused_qkv`,
    input: `sample [2, 4, ${h}, ${h}], encoder_hidden_states [2, 77, ${cross}]`,
    plain_call_seconds: plain.map((x) => round(x, 3)),
    fused_call_seconds: fused.map((x) => round(x, 3)),
    speedup: round(median(plain) / median(fused), 3),
  });
  console.error(JSON.stringify(results[results.length - 1]));
  sample.dispose();
  unet.dispose();
}

console.log(JSON.stringify({ bench: "deepcache", date: new Date().toISOString(), cpu: cpuInfo().model, gemm: gemmBackendName(), dtype: "float32", total_seconds: round((performance.now() - t0) / 1e3, 1), results }, null, 2));
