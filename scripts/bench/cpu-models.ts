// CPU model benchmark, printed as one JSON object: one forward of the SD 1.5 UNet architecture (config from
// the golden manifests/sd15_unet.json) at 256×256 and 512×512 (latents 32×32 / 64×64, batch 2 as with CFG,
// float32, fused attention), a CLIP-L text encode (manifests/sd15_text_encoder.json, batch 2 × 77 tokens)
// and, when src/models/vae exists, an AutoencoderKL decode to 512×512 (manifests/sd_vae.json, batch 1).
// Weights are random: built on "meta", then each parameter is allocated and written in place from a table of
// LCG values (uniform ±1/√fan_in for matrices and kernels, torch's default-init scale; 1 ± 0.02 for norm
// gains; ±0.02 for biases): 860 M parameters take about a second, and activations stay finite.
// Each result has seconds, the FLOPs counted analytically while it ran (Conv2d and Linear from their
// shapes through forward hooks; attention q·kᵀ and p·v through a counting wrapper in the attention
// registry), GFLOP/s, a time split (conv / linear / attention / rest) and the CPU allocator's peak bytes.
// Usage: bun scripts/bench/cpu-models.ts [--sizes 256,512] [--skip-clip] [--skip-vae] [--golden DIR]

import { existsSync } from "node:fs";
import path from "node:path";
import { cpuInfo } from "../../ffi/cpuid.ts";
import { gemmBackendName } from "../../src/backends/cpu/index.ts";
import { CLIPTextModel } from "../../src/models/clip.ts";
import { UNet2DConditionModel } from "../../src/models/unet/index.ts";
import { setAttentionKind } from "../../src/nn/attention-processors.ts";
import { getAttention, registerAttention } from "../../src/nn/attention-dispatch.ts";
import { Conv2d, Linear } from "../../src/nn/layers.ts";
import type { Module } from "../../src/nn/module.ts";
import { type Tensor, memoryStats, randn, resetPeakMemory, tensor, tidy } from "../../src/tensor/index.ts";
import { fillRandom, manifestConfig } from "./random-weights.ts";
import { cliOption } from "./bench-util.ts";

const args = process.argv.slice(2);
const opt = (name: string) => cliOption(args, name);
const SIZES = (opt("--sizes") ?? "256,512").split(",").map(Number);
const GOLDEN = path.resolve(opt("--golden") ?? process.env.BD_GOLDEN_DIR ?? path.join(import.meta.dir, "../../../shared/golden"));
const manifest = (name: string) => manifestConfig(GOLDEN, name);


// ---- FLOP and time accounting -----------------------------------------------------------------

interface Counter {
  flops: { conv: number; linear: number; attention: number };
  seconds: { conv: number; linear: number; attention: number };
}
const counter: Counter = { flops: { conv: 0, linear: 0, attention: 0 }, seconds: { conv: 0, linear: 0, attention: 0 } };
const resetCounter = () => {
  counter.flops = { conv: 0, linear: 0, attention: 0 };
  counter.seconds = { conv: 0, linear: 0, attention: 0 };
};

/** Attention kinds "count:<kind>" that count 2·B·H·Sq·Sk·(D + Dv) FLOPs and time the call. */
for (const kind of ["naive", "chunked", "fused"]) {
  const inner = getAttention(kind);
  registerAttention(`count:${kind}`, (q, k, v, o) => {
    const [B, H, Sq, D] = q.shape as [number, number, number, number];
    counter.flops.attention += 2 * B * H * Sq * k.shape[2]! * (D + v.shape[3]!);
    const t = performance.now();
    const out = inner(q, k, v, o);
    counter.seconds.attention += (performance.now() - t) / 1e3;
    return out;
  });
}

/** Hooks on every Conv2d / Linear: FLOPs from the shapes, time spent inside. */
function instrument(model: Module): void {
  for (const [, m] of model.namedModules()) {
    if (!(m instanceof Conv2d) && !(m instanceof Linear)) continue;
    let t0 = 0;
    m.registerForwardPreHook(() => void (t0 = performance.now()));
    m.registerForwardPostHook((mod: Module, a: unknown[], out: unknown) => {
      const dt = (performance.now() - t0) / 1e3;
      const y = out as Tensor;
      if (mod instanceof Conv2d) {
        const [N, O, OH, OW] = y.shape as [number, number, number, number];
        const [, cg, kh, kw] = mod.weight.shape as [number, number, number, number];
        counter.flops.conv += 2 * N * O * OH * OW * cg * kh * kw;
        counter.seconds.conv += dt;
      } else {
        const x = a[0] as Tensor;
        const lin = mod as Linear;
        counter.flops.linear += 2 * x.numel * lin.outFeatures; // 2·rows·in·out
        counter.seconds.linear += dt;
      }
    });
  }
}

const r3 = (x: number) => Math.round(x * 1000) / 1000;

function measure(label: string, run: () => void): Record<string, unknown> {
  resetCounter();
  const live0 = memoryStats("cpu").live;
  resetPeakMemory("cpu");
  const t = performance.now();
  tidy(run);
  const seconds = (performance.now() - t) / 1e3;
  const f = counter.flops;
  const total = f.conv + f.linear + f.attention;
  const s = counter.seconds;
  return {
    name: label,
    seconds: r3(seconds),
    gflop: r3(total / 1e9),
    gflops_per_s: r3(total / 1e9 / seconds),
    gflop_split: { conv: r3(f.conv / 1e9), linear: r3(f.linear / 1e9), attention: r3(f.attention / 1e9) },
    seconds_split: { conv: r3(s.conv), linear: r3(s.linear), attention: r3(s.attention), other: r3(seconds - s.conv - s.linear - s.attention) },
    peak_activation_mb: Math.round((memoryStats("cpu").peak - live0) / 2 ** 20),
  };
}

// ---- runs ---------------------------------------------------------------------------------------

const results: Record<string, unknown>[] = [];
const t0 = performance.now();

{
  const cfg = manifest("sd15_unet");
  const unet = new UNet2DConditionModel(cfg, { device: "meta" });
  const tf = performance.now();
  fillRandom(unet);
  const fillSeconds = (performance.now() - tf) / 1e3;
  setAttentionKind(unet, "count:fused");
  instrument(unet);
  const cross = cfg.cross_attention_dim as number;
  // warm-up at a tiny size (loads OpenBLAS, JIT-compiles the kernels)
  tidy(() => void unet.call(randn([2, 4, 8, 8], { seed: 1 }), 981, randn([2, 77, cross], { seed: 2 })));
  for (const px of SIZES) {
    const h = px / 8;
    const sample = randn([2, 4, h, h], { seed: 3 });
    const ehs = randn([2, 77, cross], { seed: 4 });
    const r = measure(`unet_sd15_${px}`, () => {
      const out = unet.call(sample, 981, ehs);
      if (!(out.toTypedArray() as Float32Array).every(Number.isFinite)) throw new Error("UNet output is not finite");
    });
    results.push({ ...r, input: `sample [2, 4, ${h}, ${h}], encoder_hidden_states [2, 77, ${cross}]`, params: unet.numParameters(), weights_mb: Math.round(unet.parameterBytes() / 2 ** 20), fill_seconds: r3(fillSeconds) });
    sample.dispose();
    ehs.dispose();
    console.error(JSON.stringify(results[results.length - 1]));
  }
  unet.dispose();
}

if (!args.includes("--skip-clip")) {
  const clip = new CLIPTextModel(manifest("sd15_text_encoder"), { device: "meta" });
  fillRandom(clip, 777);
  instrument(clip);
  clip.setAttentionKind("count:fused"); // causal, 77 tokens
  const vocab = clip.config.vocab_size;
  const ids = tensor(BigInt64Array.from({ length: 2 * 77 }, (_, i) => BigInt((i * 7919 + 13) % vocab)), { shape: [2, 77] });
  tidy(() => void clip.call(ids)); // warm-up
  results.push({ ...measure("clip_l_text_encode", () => void clip.call(ids)), input: "input_ids [2, 77]", params: clip.numParameters() });
  ids.dispose();
  clip.dispose();
  console.error(JSON.stringify(results[results.length - 1]));
}

if (!args.includes("--skip-vae")) {
  const vaeIndex = path.join(import.meta.dir, "../../src/models/vae/index.ts");
  let vaeResult: Record<string, unknown>;
  try {
    if (!existsSync(vaeIndex)) throw new Error("src/models/vae/index.ts does not exist");
    const { AutoencoderKL } = (await import(vaeIndex)) as { AutoencoderKL?: new (c: Record<string, unknown>, o: { device: "meta" }) => Module & { decode(z: Tensor): Tensor } };
    if (!AutoencoderKL) throw new Error("src/models/vae does not export AutoencoderKL");
    const vae = new AutoencoderKL(manifest("sd_vae"), { device: "meta" });
    fillRandom(vae, 4242);
    instrument(vae);
    setAttentionKind(vae, "count:fused");
    tidy(() => void vae.decode(randn([1, 4, 8, 8], { seed: 5 }))); // warm-up
    const z = randn([1, 4, 64, 64], { seed: 6 });
    vaeResult = { ...measure("vae_decode_512", () => void vae.decode(z)), input: "z [1, 4, 64, 64] -> [1, 3, 512, 512]", params: vae.numParameters() };
    z.dispose();
    vae.dispose();
  } catch (e) {
    vaeResult = { name: "vae_decode_512", skipped: (e as Error).message };
  }
  results.push(vaeResult);
  console.error(JSON.stringify(vaeResult));
}

console.log(
  JSON.stringify(
    {
      bench: "cpu-models",
      date: new Date().toISOString(),
      cpu: cpuInfo().model,
      gemm: gemmBackendName(),
      dtype: "float32",
      total_seconds: r3((performance.now() - t0) / 1e3),
      results,
    },
    null,
    2,
  ),
);
