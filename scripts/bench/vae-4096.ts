// The 4096×4096 SDXL-VAE tiled decode benchmark, printed as one JSON object. The VAE is the real-size
// SDXL AutoencoderKL (config from the golden manifests/sdxl_vae.json). (1) Planned on "meta" (shapes
// only): the device peak of the untiled decode, of diffusers' blended tiled decode and of the seamless
// tiled decode (models/vae/seamless-decode.ts; its tile steps' peak, plus the weights and the output image
// a decode returns on the device), default tiles (1024 px / 128 latents, overlap 0.25). (2) With --cpu:
// the decode actually run on the CPU backend with random weights (fillRandom), tiled (--mode blended, the
// default, or seamless), timed, with the CPU allocator's measured peak.
// Usage: bun scripts/bench/vae-4096.ts [--size 4096] [--cpu] [--mode blended|seamless] [--golden DIR]

import path from "node:path";
import { cpuInfo } from "../../ffi/cpuid.ts";
import { AutoencoderKL } from "../../src/models/vae/index.ts";
import { empty, measureMemory, memoryStats, randn, resetPeakMemory, tidy } from "../../src/tensor/index.ts";
import { cliOption, round } from "./bench-util.ts";
import { fillRandom, manifestConfig } from "./random-weights.ts";

const args = process.argv.slice(2);
const opt = (name: string) => cliOption(args, name);
const SIZE = Number(opt("--size") ?? 4096);
const MODE = opt("--mode") ?? "blended";
if (MODE !== "blended" && MODE !== "seamless") throw new Error(`--mode must be blended or seamless, got ${MODE}`);
const GOLDEN = path.resolve(opt("--golden") ?? process.env.BD_GOLDEN_DIR ?? path.join(import.meta.dir, "../../../shared/golden"));
const GiB = 2 ** 30;
const cfg = manifestConfig(GOLDEN, "sdxl_vae");

// (1) the plan on meta
const meta = new AutoencoderKL(cfg, { device: "meta" });
const f = meta.scaleFactor;
if (SIZE % f !== 0) throw new Error(`--size must be a multiple of the VAE scale factor ${f}, got ${SIZE}`);
const latent = [1, meta.config.latent_channels, SIZE / f, SIZE / f];
const weights = meta.namedParameters().reduce((s, [, p]) => s + p.value.byteLength, 0);
const image = meta.config.out_channels * SIZE * SIZE * 4;
const peakOf = (fn: () => void) => measureMemory("meta", () => tidy(fn)).peak;
const z = empty(latent, { device: "meta" });
const untiled = peakOf(() => void meta.decode(z));
meta.enableTiling();
const tiling = meta.tiling;
const blended = peakOf(() => void meta.decode(z));
meta.enableTiling({ seamless: true });
let seamlessSteps = 0;
const seamless = peakOf(() => void (seamlessSteps = meta.seamlessDecode(z).devicePeak));
z.dispose();
meta.dispose();
const plan = {
  weights_bytes: weights,
  untiled_decode_peak_bytes: untiled,
  blended_tiled_decode_peak_bytes: blended,
  /** On meta the host is meta too: the host activations plus the device tiles (the host memory a seamless decode needs). */
  seamless_host_plus_device_peak_bytes: seamless,
  seamless_tile_steps_peak_bytes: seamlessSteps,
  /** On a device: weights + the seamless tile steps' peak + the returned image (activations on the host). */
  seamless_predicted_device_peak_bytes: weights + seamlessSteps + image,
  blended_predicted_device_peak_bytes: weights + blended,
  untiled_predicted_device_peak_bytes: weights + untiled,
  seamless_under_8GiB: weights + seamlessSteps + image < 8 * GiB,
};

// (2) the CPU run
let cpu: Record<string, unknown> | null = null;
if (args.includes("--cpu")) {
  const vae = new AutoencoderKL(cfg, { device: "meta" });
  fillRandom(vae, 3);
  vae.enableTiling(MODE === "seamless" ? { seamless: true } : {});
  const zc = randn(latent, { seed: 1 });
  const live0 = memoryStats("cpu").live;
  resetPeakMemory("cpu");
  const t0 = performance.now();
  tidy(() => void vae.decode(zc));
  const seconds = (performance.now() - t0) / 1000;
  cpu = { mode: MODE, seconds: round(seconds, 1), peak_bytes_above_start: memoryStats("cpu").peak - live0 };
  zc.dispose();
  vae.dispose();
}

const c = cpuInfo();
console.log(
  JSON.stringify(
    {
      bench: "vae-4096",
      model: "SDXL AutoencoderKL (manifests/sdxl_vae.json), float32",
      size: [SIZE, SIZE],
      latent,
      tiling,
      machine: { cpu: c.model, cpus: c.cpus, note: "shared with other jobs" },
      plan_on_meta: plan,
      cpu_run: cpu ?? "not run (pass --cpu)",
    },
    null,
    2,
  ),
);
