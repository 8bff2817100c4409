// generate() options and lifecycle on small models: tiny random SD 1.x and SDXL pipelines written by
// scripts/make-tiny-model.ts, the shipped shapes-64 model and the golden tiny SDXL model. Bad options
// fail before any work (no allocation, no UNet call) with messages naming the option; AbortSignal
// stops between steps or at the next module call inside one (one run's abort never stops another's)
// and frees everything; onStep, output types, numImagesPerPrompt × prompt
// lists, seeds (one generator for the batch, or one per image), CFG on/off, guidance rescale,
// clip skip, long prompts (truncation warning once, chunked mode), every scheduler name, SDXL's
// force_zeros_for_empty_prompt / micro-conditioning / VAE upcast, loader errors and dispose().

import { beforeAll, describe, expect, test } from "bun:test";
import { cpSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { makeTinyModel } from "../../scripts/make-tiny-model.ts";
import {
  AbortError,
  GenerateOptionsError,
  StableDiffusionPipeline,
  StableDiffusionXLPipeline,
  loadPipeline,
  rescaleNoiseCfg,
} from "../../src/pipelines/index.ts";
import type { UNetForwardOptions } from "../../src/models/unet/index.ts";
import type { Module } from "../../src/nn/module.ts";
import type { GenerateResult } from "../../src/pipelines/options.ts";
import { hasBackend } from "../../src/backends/registry.ts";
import { SCHEDULER_NAMES, schedulerByName } from "../../src/schedulers/index.ts";
import { TorchGenerator, memoryStats, randn, tensor, tidy, zeros } from "../../src/tensor/index.ts";
import { goldenCases, goldenTensor, maxError, openGolden } from "../helpers/golden.ts";
import { goldenDir, projectRoot } from "../helpers/paths.ts";
import { useTinyPipelines } from "../helpers/tiny-pipelines.ts";

let tmp: string;
let sd: StableDiffusionPipeline; // tiny random SD 1.x (32×32 images, 8×8 latents)
let xl: StableDiffusionXLPipeline; // tiny random SDXL

/** Records every UNet call: batch rows, timestep, encoder states and SDXL's added conditioning. */
function recordUNet(pipe: StableDiffusionPipeline | StableDiffusionXLPipeline) {
  const calls: { rows: number; t: number; ehs: Float32Array; ehsShape: number[]; opts?: UNetForwardOptions; timeIds?: Float32Array }[] = [];
  const h = pipe.unet.registerForwardPreHook((_m, [sample, t, ehs, opts]) => {
    calls.push({
      rows: sample.shape[0]!,
      t: typeof t === "number" ? t : t.item(),
      ehs: ehs.toFloat32Array(),
      ehsShape: [...ehs.shape],
      timeIds: opts?.timeIds?.toFloat32Array(),
    });
  });
  return { calls, remove: () => h.remove() };
}

const tiny = useTinyPipelines("pipelines", { sd15: 1, sdxl: 2 });
beforeAll(() => void ({ tmp, sd, xl } = tiny));

describe("bad options fail before any work", () => {
  const bad: [string, Record<string, unknown>, string, RegExp][] = [
    ["width not a multiple of 8", { prompt: "x", width: 36 }, "width", /multiple of 8/],
    ["height not a multiple of 8", { prompt: "x", height: 20 }, "height", /multiple of 8/],
    ["steps < 1", { prompt: "x", steps: 0 }, "steps", /positive integer/],
    ["fractional steps", { prompt: "x", steps: 2.5 }, "steps", /positive integer/],
    ["unknown scheduler", { prompt: "x", scheduler: "heun" }, "scheduler", /valid names: ddim, pndm, lms, euler, euler_a, dpmpp_2m, dpmpp_2m_karras, unipc, lcm/],
    ["negative list length", { prompt: ["a", "b"], negativePrompt: ["n1", "n2", "n3"] }, "negativePrompt", /3 entries but prompt has 2/],
    ["seed list length", { prompt: ["a", "b"], numImagesPerPrompt: 2, seed: [1, 2, 3] }, "seed", /3 seeds but 4 images/],
    ["negative seed", { prompt: "x", seed: -1 }, "seed", /non-negative integers/],
    ["seed and generator", { prompt: "x", seed: 1, generator: new TorchGenerator(1) }, "seed", /not both/],
    ["guidance NaN", { prompt: "x", guidanceScale: NaN }, "guidanceScale", /finite number/],
    ["guidance Infinity", { prompt: "x", guidanceScale: Infinity }, "guidanceScale", /finite number/],
    ["guidance rescale > 1", { prompt: "x", guidanceRescale: 1.5 }, "guidanceRescale", /\[0, 1\]/],
    ["numImagesPerPrompt 0", { prompt: "x", numImagesPerPrompt: 0 }, "numImagesPerPrompt", /positive integer/],
    ["no prompt", {}, "prompt", /required/],
    ["empty prompt list", { prompt: [] }, "prompt", /non-empty array/],
    ["unknown outputType", { prompt: "x", outputType: "png" }, "outputType", /"image", "latent", "tensor"/],
    ["clipSkip too large", { prompt: "x", clipSkip: 3 }, "clipSkip", /too many/],
    ["longPrompt mode", { prompt: "x", longPrompt: "split" }, "longPrompt", /"truncate" or "chunked"/],
    ["onStep not a function", { prompt: "x", onStep: 3 }, "onStep", /function/],
  ];
  for (const [what, opts, option, message] of bad) {
    test(what, async () => {
      const rec = recordUNet(sd);
      const before = memoryStats("cpu");
      let err: unknown;
      try {
        await sd.generate(opts as never);
      } catch (e) {
        err = e;
      }
      rec.remove();
      expect(err).toBeInstanceOf(GenerateOptionsError);
      expect((err as GenerateOptionsError).option).toBe(option);
      expect((err as Error).message).toMatch(message);
      expect(rec.calls.length).toBe(0);
      const after = memoryStats("cpu");
      expect(after.live).toBe(before.live);
      expect(after.peak).toBe(before.peak); // nothing was even allocated temporarily
    });
  }

  test("tensor options are checked too: latents shape, embeddings width, prompt and promptEmbeds together", async () => {
    const latents = zeros([2, 4, 8, 8]);
    const embeds = zeros([1, 77, 16]);
    const good = zeros([1, 77, 32]);
    const xlEmbeds = zeros([1, 77, 64]);
    try {
      await expect(sd.generate({ prompt: "x", latents })).rejects.toThrow(/latents: shape \[2, 4, 8, 8\] does not match the expected \[1, 4, 8, 8\]/);
      await expect(sd.generate({ promptEmbeds: embeds })).rejects.toThrow(/cross_attention_dim 32/);
      await expect(sd.generate({ prompt: "x", promptEmbeds: good })).rejects.toThrow(/either prompt or promptEmbeds/);
      await expect(xl.generate({ promptEmbeds: xlEmbeds })).rejects.toThrow(/pooledPromptEmbeds: is required/);
      await expect(xl.generate({ prompt: "x", prompt2: ["a", "b"] })).rejects.toThrow(/prompt2: has 2 entries but prompt has 1/);
      await expect(xl.generate({ prompt: "x", originalSize: [64] as never })).rejects.toThrow(/originalSize: must be a pair/);
    } finally {
      for (const t of [latents, embeds, good, xlEmbeds]) t.dispose();
    }
  });

  test("a model without tokenizer (golden tiny SD): prompts and un-embedded negatives are refused up front", async () => {
    const entry = goldenCases("pipeline").find((e) => e.meta.component === "StableDiffusionPipeline");
    if (!entry) throw new Error("the golden index has no SD pipeline case");
    const pipe = await StableDiffusionPipeline.fromPretrained(path.join(goldenDir, entry.meta.model!));
    const embeds = zeros([1, 77, pipe.unet.config.cross_attention_dim as number]);
    try {
      expect(pipe.tokenizer).toBeNull();
      const live = memoryStats("cpu").live;
      await expect(pipe.generate({ prompt: "x" })).rejects.toThrow(/no tokenizer\/text encoder .* pass promptEmbeds/);
      await expect(pipe.generate({ promptEmbeds: embeds })).rejects.toThrow(/negativePromptEmbeds: are required for guidance/);
      expect(memoryStats("cpu").live).toBe(live);
      const r = await pipe.generate({ promptEmbeds: embeds, guidanceScale: 1, steps: 2, outputType: "latent" }); // no CFG: no negative needed
      r.latents!.dispose();
    } finally {
      embeds.dispose();
      pipe.dispose();
    }
  });

  test("an already-aborted signal throws AbortError before any work", async () => {
    const rec = recordUNet(sd);
    const live = memoryStats("cpu").live;
    const c = new AbortController();
    c.abort();
    await expect(sd.generate({ prompt: "x", signal: c.signal })).rejects.toBeInstanceOf(AbortError);
    rec.remove();
    expect(rec.calls.length).toBe(0);
    expect(memoryStats("cpu").live).toBe(live);
  });
});

describe("generation lifecycle", () => {
  test("abort through the AbortSignal after step k frees everything", async () => {
    const live = memoryStats("cpu").live;
    const rec = recordUNet(sd);
    const c = new AbortController();
    const k = 3;
    const err = await sd
      .generate({ prompt: ["a", "b"], steps: 20, scheduler: "euler_a", signal: c.signal, onStep: (i) => void (i === k && c.abort("stop")) })
      .catch((e) => e);
    rec.remove();
    expect(err).toBeInstanceOf(AbortError);
    expect((err as AbortError).step).toBe(k);
    expect((err as AbortError).cause).toBe("stop");
    expect(rec.calls.length).toBe(k);
    expect(memoryStats("cpu").live).toBe(live);
  });

  /** Pre-hooks on every module of `models` counting the calls that start after `signal` fired. */
  function countCallsAfterAbort(models: Module[], signal: AbortSignal) {
    let n = 0;
    const handles = models.flatMap((m) => m.namedModules().map(([, mod]) => mod.registerForwardPreHook(() => void (signal.aborted && n++))));
    return { get count() { return n; }, remove: () => handles.forEach((h) => h.remove()) };
  }
  const hooksOn = (models: Module[]) => models.flatMap((m) => m.namedModules()).reduce((n, [, m]) => n + m.hookCount, 0);

  test("abort from inside a module stops at the next module call, mid-step, and frees everything", async () => {
    const models: Module[] = [sd.unet, sd.vae, sd.textEncoder!];
    const live = memoryStats("cpu").live;
    const c = new AbortController();
    const unetCalls = recordUNet(sd);
    const inner = sd.unet.getSubmodule("down_blocks.0.resnets.0");
    let innerCalls = 0;
    const trigger = inner.registerForwardPostHook(() => void (++innerCalls === 2 && c.abort("from a module"))); // in step 2
    const after = countCallsAfterAbort(models, c.signal);
    const err = await sd.generate({ prompt: "a", steps: 5, scheduler: "ddim", signal: c.signal }).catch((e) => e);
    trigger.remove();
    after.remove();
    unetCalls.remove();
    expect(err).toBeInstanceOf(AbortError);
    expect((err as AbortError).during).toBe("step 2 of 5");
    expect((err as AbortError).step).toBe(1);
    expect((err as AbortError).message).toBe("generation aborted during step 2 of 5");
    expect((err as AbortError).cause).toBe("from a module");
    expect(unetCalls.calls.length).toBe(2); // step 2's UNet call started and was cut short
    expect(after.count).toBeLessThanOrEqual(1); // the module call at which the check threw
    expect(hooksOn(models)).toBe(0); // the run's check is gone
    expect(memoryStats("cpu").live).toBe(live);
  });

  test("abort inside prompt encoding and inside decoding: AbortError naming the phase, nothing left", async () => {
    const cases = [[sd.textEncoder!, "text_model.encoder.layers.1", "prompt encoding"], [sd.vae, "decoder.mid_block.resnets.0", "decoding"]] as const;
    for (const [model, at, during] of cases) {
      const live = memoryStats("cpu").live;
      const c = new AbortController();
      const inner = model.getSubmodule(at);
      const trigger = inner.registerForwardPostHook(() => c.abort());
      const after = countCallsAfterAbort([model], c.signal);
      const err = await sd.generate({ prompt: "a", steps: 2, signal: c.signal }).catch((e) => e);
      trigger.remove();
      after.remove();
      expect(err).toBeInstanceOf(AbortError);
      expect((err as AbortError).during).toBe(during);
      expect(after.count).toBeLessThanOrEqual(1);
      expect(memoryStats("cpu").live).toBe(live);
    }
  });

  test("the module-call check belongs to its run: aborting one of two concurrent runs leaves the other intact", async () => {
    const other = await StableDiffusionPipeline.fromPretrained(path.join(tmp, "sd15"));
    try {
      const alone = await other.generate({ prompt: "b", steps: 4, seed: 5, outputType: "latent" });
      const expected = alone.latents!.toFloat32Array();
      alone.latents!.dispose();
      const live = memoryStats("cpu").live;
      const a = new AbortController();
      const b = new AbortController();
      let aCalls = 0;
      const trigger = sd.unet.registerForwardPreHook(() => void (++aCalls === 2 && a.abort())); // a aborts inside its step 2
      const [ra, rb] = await Promise.allSettled([
        sd.generate({ prompt: "a", steps: 4, signal: a.signal, outputType: "latent" }),
        other.generate({ prompt: "b", steps: 4, seed: 5, signal: b.signal, outputType: "latent" }),
      ]);
      trigger.remove();
      expect(ra.status).toBe("rejected");
      expect((ra as PromiseRejectedResult).reason).toBeInstanceOf(AbortError);
      expect(rb.status).toBe("fulfilled");
      const latents = (rb as PromiseFulfilledResult<GenerateResult>).value.latents!;
      expect(latents.toFloat32Array()).toEqual(expected);
      latents.dispose();
      expect(memoryStats("cpu").live).toBe(live);
    } finally {
      other.dispose();
    }
  });

  test("abort from a timer while generating (the loop yields between steps)", async () => {
    const live = memoryStats("cpu").live;
    const c = new AbortController();
    let steps = 0;
    const p = sd.generate({ prompt: "a", steps: 200, signal: c.signal, onStep: (i) => void (steps = i) });
    setTimeout(() => c.abort(), 50);
    await expect(p).rejects.toBeInstanceOf(AbortError);
    expect(steps).toBeLessThan(200);
    expect(memoryStats("cpu").live).toBe(live);
  });

  test("onStep is called once per step with the scheduler's timesteps and the current latents", async () => {
    const seen: [number, number, number, number[]][] = [];
    const s = schedulerByName("ddim", { ...sd.schedulerConfig });
    await sd.generate({
      prompt: "x",
      steps: 6,
      scheduler: s,
      onStep: (i, n, info) => void seen.push([i, n, info.timestep, [...info.latents.shape]]),
    });
    expect(seen.map((x) => x[0])).toEqual([1, 2, 3, 4, 5, 6]);
    expect(seen.every((x) => x[1] === 6)).toBe(true);
    expect(seen.map((x) => x[2])).toEqual(s.timesteps);
    expect(seen[0]![3]).toEqual([1, 4, 8, 8]);
  });

  test('outputType "latent" returns only the latents; "tensor" returns images and the [B, 3, H, W] tensor; nothing else stays live', async () => {
    const live = memoryStats("cpu").live;
    const a = await sd.generate({ prompt: "x", steps: 2, outputType: "latent", seed: 3 });
    expect(a.images).toEqual([]);
    expect(a.latents!.shape).toEqual([1, 4, 8, 8]);
    expect(memoryStats("cpu").live).toBe(live + a.latents!.byteLength);
    a.latents!.dispose();
    const b = await sd.generate({ prompt: "x", steps: 2, outputType: "tensor", seed: 3, numImagesPerPrompt: 2 });
    expect(b.images.length).toBe(2);
    expect(b.tensor!.shape).toEqual([2, 3, 32, 32]);
    expect(memoryStats("cpu").live).toBe(live + b.tensor!.byteLength);
    const v = b.tensor!.toFloat32Array();
    expect(Math.min(...v)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...v)).toBeLessThanOrEqual(1);
    b.tensor!.dispose();
    const c = await sd.generate({ prompt: "x", steps: 2 });
    expect(c.latents).toBeUndefined();
    expect(c.tensor).toBeUndefined();
    expect(memoryStats("cpu").live).toBe(live);
  });

  test("numImagesPerPrompt × a prompt list: rows, order, parameters", async () => {
    const rec = recordUNet(sd);
    const { images } = await sd.generate({ prompt: ["a red cat", "a blue dog"], negativePrompt: "blurry", numImagesPerPrompt: 3, steps: 2, seed: 7 });
    rec.remove();
    expect(images.length).toBe(6);
    expect(images.map((im) => im.parameters!.prompt)).toEqual(["a red cat", "a red cat", "a red cat", "a blue dog", "a blue dog", "a blue dog"]);
    expect(images.every((im) => im.parameters!.negativePrompt === "blurry" && im.parameters!.seed === 7)).toBe(true);
    expect(images[4]!.parameters!.extra).toEqual({ "Batch size": 6, "Batch pos": 4 });
    expect(rec.calls[0]!.rows).toBe(12); // [negative × 6, positive × 6]
    // positive rows 6..8 are the first prompt, 9..11 the second
    const row = (r: number) => rec.calls[0]!.ehs.subarray(r * 77 * 32, (r + 1) * 77 * 32);
    expect(row(6)).toEqual(row(8));
    expect(row(8)).not.toEqual(row(9));
    // one negative prompt for all: rows 0..2 repeat the first encoded copy exactly; rows 3..5 are the same text
    // encoded at another batch row (diffusers broadcasts a string negative to the batch), which a BLAS kernel may
    // round differently in the last bits, so equal within float32 rounding through the encoder
    expect(row(0)).toEqual(row(2));
    const [n0, n5] = [row(0), row(5)];
    const scale = Math.max(...n0.map(Math.abs));
    expect(Math.max(...n0.map((v, i) => Math.abs(v - n5[i]!)))).toBeLessThanOrEqual(1e-6 * scale);
    expect(Math.max(...n0.map((v, i) => Math.abs(v - row(6)[i]!)))).toBeGreaterThan(1e-3 * scale); // negative ≠ positive
  });

  test("seeds reproduce; one seed draws the whole batch, a list draws one row per seed", async () => {
    const run = (o: Record<string, unknown>) => sd.generate({ prompt: "x", steps: 2, outputType: "latent", ...o });
    const f = async (o: Record<string, unknown>) => {
      const r = await run(o);
      const v = r.latents!.toFloat32Array();
      r.latents!.dispose();
      return v;
    };
    const a = await f({ seed: 11 });
    expect(await f({ seed: 11 })).toEqual(a);
    expect(await f({ seed: 12 })).not.toEqual(a);
    expect(await f({ generator: new TorchGenerator(11) })).toEqual(a);
    // a seed list: image i equals a single-image run with seed i
    const both = await f({ seed: [21, 22], numImagesPerPrompt: 2 });
    const second = await f({ seed: 22 });
    const e = maxError(both.subarray(256), second); // batched vs single UNet calls: float32 rounding only
    expect(e.maxAbs).toBeLessThan(1e-5 * e.maxRef);
    const { images } = await sd.generate({ prompt: "x", steps: 2, seed: [21, 22], numImagesPerPrompt: 2 });
    expect(images.map((im) => im.parameters!.seed)).toEqual([21, 22]);
  });

  test("initial latents are exactly the seeded torch noise (times init_noise_sigma)", async () => {
    const captured: Float32Array[] = [];
    const h = sd.unet.registerForwardPreHook((_m, [sample]) => void captured.push(sample.toFloat32Array()));
    await sd.generate({ prompt: "x", steps: 2, seed: 5, numImagesPerPrompt: 2, scheduler: "ddim", outputType: "latent" }).then((r) => r.latents!.dispose());
    h.remove();
    const noise = randn([2, 4, 8, 8], { seed: 5 });
    const n = noise.toFloat32Array();
    noise.dispose();
    expect(captured[0]!.subarray(0, 512)).toEqual(n); // DDIM: σ_init = 1, no input scaling; rows [neg, neg', pos, pos'] start with the noise
    expect(captured[0]!.subarray(512)).toEqual(n);
  });

  test("guidance ≤ 1 disables CFG (one UNet row per image); guidance rescale changes the result", async () => {
    const rec = recordUNet(sd);
    await sd.generate({ prompt: ["a", "b"], guidanceScale: 1, steps: 2 });
    rec.remove();
    expect(rec.calls[0]!.rows).toBe(2);
    const lat = async (g: number) => {
      const r = await sd.generate({ prompt: "x", steps: 3, seed: 1, guidanceRescale: g, outputType: "latent" });
      const v = r.latents!.toFloat32Array();
      r.latents!.dispose();
      return v;
    };
    expect(await lat(0.7)).not.toEqual(await lat(0));
  });

  test("rescaleNoiseCfg follows diffusers' formula", () => {
    tidy(() => {
      const cfg = randn([2, 4, 3, 3], { seed: 1 }).mul(3);
      const text = randn([2, 4, 3, 3], { seed: 2 });
      const out = rescaleNoiseCfg(cfg, text, 0.7).toFloat32Array();
      const c = cfg.toFloat32Array();
      const t = text.toFloat32Array();
      const std = (a: Float32Array) => {
        const m = a.reduce((s, x) => s + x, 0) / a.length;
        return Math.sqrt(a.reduce((s, x) => s + (x - m) ** 2, 0) / (a.length - 1));
      };
      const expected = new Float32Array(c.length);
      for (let b = 0; b < 2; b++) {
        const sl = (a: Float32Array) => a.subarray(b * 36, (b + 1) * 36);
        const k = std(sl(t)) / std(sl(c));
        for (let i = b * 36; i < (b + 1) * 36; i++) expected[i] = 0.7 * c[i]! * k + 0.3 * c[i]!;
      }
      expect(maxError(out, expected).maxAbs).toBeLessThan(1e-5);
    });
  });

  test("clipSkip conditions on final_layer_norm(hidden_states[-(k+1)]) for the prompt (diffusers)", async () => {
    const rec = recordUNet(sd);
    await sd.generate({ prompt: "a cat", steps: 2, clipSkip: 1 });
    rec.remove();
    const expected = tidy(() => {
      const ids = tensor(Int32Array.from(sd.tokenizer!.encodeForModel("a cat").inputIds[0]!), { shape: [1, 77] });
      const out = sd.textEncoder!.call(ids);
      return sd.textEncoder!.finalLayerNorm(out.hiddenStates[out.hiddenStates.length - 2]!).toFloat32Array();
    });
    expect(maxError(rec.calls[0]!.ehs.subarray(77 * 32), expected).maxAbs).toBeLessThan(1e-6);
  });

  test("long prompts: truncated with one warning per pipeline, or chunked (77·k tokens, negative padded to k chunks)", async () => {
    const warnings: string[] = [];
    const original = sd.tokenizer!.onWarning;
    sd.tokenizer!.onWarning = (m) => void warnings.push(m);
    const long = Array.from({ length: 60 }, (_, i) => `red circle number ${i}`).join(", ");
    try {
      const rec = recordUNet(sd);
      await sd.generate({ prompt: long, steps: 2 });
      await sd.generate({ prompt: long, steps: 2 });
      expect(rec.calls[0]!.ehsShape).toEqual([2, 77, 32]);
      await sd.generate({ prompt: long, steps: 2, longPrompt: "chunked", negativePrompt: "blurry" });
      rec.remove();
      const k = Math.ceil(sd.tokenizer!.encode(long).length / 75);
      expect(k).toBeGreaterThan(2);
      expect(rec.calls[rec.calls.length - 1]!.ehsShape).toEqual([2, 77 * k, 32]);
    } finally {
      sd.tokenizer!.onWarning = original;
    }
    expect(warnings.length).toBe(1);
    expect(warnings[0]).toMatch(/truncat/i);
  });

  test("guidance-embedded UNets (time_cond_proj_dim, LCM): no CFG rows, w−1 embedded as diffusers' get_guidance_scale_embedding", async () => {
    const dir = path.join(tmp, "lcm");
    await makeTinyModel(dir, { preset: "sd15", seed: 3, overrides: { unet: { time_cond_proj_dim: 8 } } });
    const pipe = await StableDiffusionPipeline.fromPretrained(dir, { scheduler: "lcm" });
    try {
      const rec = recordUNet(pipe);
      let cond: Float32Array | undefined;
      const h = pipe.unet.registerForwardPreHook((_m, [, , , o]) => void (cond ??= o?.timestepCond?.toFloat32Array()));
      const { images } = await pipe.generate({ prompt: ["a", "b"], steps: 2, guidanceScale: 8.5 });
      h.remove();
      rec.remove();
      expect(rec.calls[0]!.rows).toBe(2);
      expect(images[0]!.parameters!.sampler).toBe("LCM");
      // emb = [sin(w·1000·f), cos(w·1000·f)], f_j = exp(−j·ln(10000)/(half − 1)), w = 7.5
      const half = 4;
      const expected = [0, 1, 2, 3].map((j) => 7500 * Math.exp((-j * Math.log(10000)) / (half - 1)));
      const row = [...expected.map(Math.sin), ...expected.map(Math.cos)];
      expect(maxError(cond!.subarray(0, 8), row).maxAbs).toBeLessThan(2e-3); // float32 phase of a 7500-radian argument
      expect(cond!.subarray(8, 16)).toEqual(cond!.subarray(0, 8));
    } finally {
      pipe.dispose();
    }
  });

  test("every scheduler name runs", async () => {
    for (const name of SCHEDULER_NAMES) {
      const { images } = await sd.generate({ prompt: "x", steps: 3, scheduler: name, seed: 1 });
      expect(images[0]!.parameters!.sampler.length).toBeGreaterThan(0);
    }
    const { images } = await sd.generate({ prompt: "x", steps: 2, scheduler: "dpmpp_2m_karras" });
    expect(images[0]!.parameters!.sampler).toBe("DPM++ 2M Karras");
  });
});

describe("SDXL", () => {
  test("the tiny golden SDXL model end to end with generate() from embeddings", async () => {
    const entry = goldenCases("pipeline").find((e) => e.meta.component === "StableDiffusionXLPipeline");
    if (!entry) throw new Error("the golden index has no SDXL pipeline case");
    const f = openGolden(entry.file);
    const pipe = await StableDiffusionXLPipeline.fromPretrained(path.join(goldenDir, entry.meta.model!));
    const g = (n: string) => goldenTensor(f, n);
    const given = {
      promptEmbeds: g("prompt_embeds"),
      negativePromptEmbeds: g("negative_prompt_embeds"),
      pooledPromptEmbeds: g("pooled_prompt_embeds"),
      negativePooledPromptEmbeds: g("negative_pooled_prompt_embeds"),
      latents: g("latents_in"),
    };
    try {
      const m = entry.meta as unknown as { num_inference_steps: number; guidance_scale: number };
      const r = await pipe.generate({ ...given, steps: m.num_inference_steps, guidanceScale: m.guidance_scale, scheduler: "euler", outputType: "tensor" });
      const ref = g("image");
      const { maxAbs, maxRef } = maxError(r.tensor!.toFloat32Array(), ref.toFloat32Array());
      ref.dispose();
      r.tensor!.dispose();
      expect(maxAbs).toBeLessThanOrEqual(1e-4 * maxRef); // the model's scheduler is Euler, as the golden run
      expect(r.images[0]!.parameters!.prompt).toBe("(prompt embeddings)");
    } finally {
      for (const t of Object.values(given)) t.dispose();
      pipe.dispose();
    }
  });

  test("force_zeros_for_empty_prompt: no negative prompt → zero negative rows; an explicit one is encoded", async () => {
    const rec = recordUNet(xl);
    await xl.generate({ prompt: "a cat", steps: 1 });
    await xl.generate({ prompt: "a cat", negativePrompt: "", steps: 1 });
    rec.remove();
    const half = 77 * 64;
    expect(rec.calls[0]!.ehs.subarray(0, half).every((v) => v === 0)).toBe(true);
    expect(rec.calls[1]!.ehs.subarray(0, half).some((v) => v !== 0)).toBe(true);
  });

  test("micro-conditioning: add_time_ids from originalSize, cropsCoordsTopLeft, targetSize (defaults: the image size)", async () => {
    const rec = recordUNet(xl);
    await xl.generate({ prompt: "a cat", steps: 1, width: 48, height: 32 });
    await xl.generate({
      prompt: "a cat",
      steps: 1,
      originalSize: [1024, 768],
      cropsCoordsTopLeft: [16, 8],
      targetSize: [512, 384],
      negativeOriginalSize: [256, 256],
      negativeTargetSize: [128, 128],
    });
    rec.remove();
    expect([...rec.calls[0]!.timeIds!]).toEqual([32, 48, 0, 0, 32, 48, 32, 48, 0, 0, 32, 48]);
    expect([...rec.calls[1]!.timeIds!]).toEqual([256, 256, 0, 0, 128, 128, 1024, 768, 16, 8, 512, 384]); // rows [negative, positive]
  });

  test("prompt2 and negativePrompt2 reach the second encoder; clipSkip picks an earlier hidden state", async () => {
    const rec = recordUNet(xl);
    await xl.generate({ prompt: "a cat", steps: 1, seed: 1 });
    await xl.generate({ prompt: "a cat", prompt2: "a dog", steps: 1, seed: 1 });
    await xl.generate({ prompt: "a cat", steps: 1, seed: 1, clipSkip: 1 });
    rec.remove();
    const pos = (c: number, lo: number, hi: number) => {
      const out: number[] = [];
      const e = rec.calls[c]!.ehs;
      for (let s = 0; s < 77; s++) out.push(...e.subarray(77 * 64 + s * 64 + lo, 77 * 64 + s * 64 + hi));
      return out;
    };
    expect(pos(1, 0, 32)).toEqual(pos(0, 0, 32)); // encoder 1 features unchanged
    expect(pos(1, 32, 64)).not.toEqual(pos(0, 32, 64)); // encoder 2 features changed
    expect(pos(2, 0, 32)).not.toEqual(pos(0, 0, 32));
  });

  test("float16 with force_upcast keeps the VAE in float32; the image comes out of a float32 decode", async () => {
    const pipe = await StableDiffusionXLPipeline.fromPretrained(path.join(tmp, "sdxl"), { dtype: "float16" });
    try {
      expect(pipe.unet.dtype).toBe("float16");
      expect(pipe.vae.dtype).toBe("float32");
      const r = await pipe.generate({ prompt: "a cat", steps: 1, outputType: "tensor" });
      expect(r.tensor!.dtype).toBe("float32");
      r.tensor!.dispose();
    } finally {
      pipe.dispose();
    }
  });
});

describe("loading", () => {
  test("loadPipeline picks the class from model_index.json; dispose() frees every weight", async () => {
    const live = memoryStats("cpu").live;
    const a = await loadPipeline(path.join(projectRoot, "assets", "shapes-64"));
    const b = await loadPipeline(path.join(tmp, "sdxl"));
    expect(a).toBeInstanceOf(StableDiffusionPipeline);
    expect(b).toBeInstanceOf(StableDiffusionXLPipeline);
    expect(memoryStats("cpu").live).toBeGreaterThan(live);
    const r = await a.generate({ prompt: "a red circle on a blue background", steps: 2, outputType: "latent" });
    r.latents!.dispose();
    a.dispose();
    b.dispose();
    expect(memoryStats("cpu").live).toBe(live);
    await expect(a.generate({ prompt: "x" })).rejects.toThrow(/disposed/);
  });

  test("clear errors: wrong pipeline class, missing folder, unsupported component, missing model_index.json, cuda without backend", async () => {
    const live = memoryStats("cpu").live;
    await expect(StableDiffusionPipeline.fromPretrained(path.join(tmp, "sdxl"))).rejects.toThrow(/SDXL model .*StableDiffusionXLPipeline\.fromPretrained/);
    await expect(StableDiffusionXLPipeline.fromPretrained(path.join(tmp, "sd15"))).rejects.toThrow(/SD 1\.x\/2\.x model/);
    await expect(loadPipeline(path.join(tmp, "nope"))).rejects.toThrow(/does not exist/);
    await expect(loadPipeline(tmp)).rejects.toThrow(/no model_index\.json/);
    const broken = path.join(tmp, "broken");
    cpSync(path.join(tmp, "sd15"), broken, { recursive: true });
    const index = JSON.parse(await Bun.file(path.join(broken, "model_index.json")).text());
    writeFileSync(path.join(broken, "model_index.json"), JSON.stringify({ ...index, unet: ["diffusers", "UNet2DModel"] }));
    await expect(loadPipeline(broken)).rejects.toThrow(/component "unet" is a diffusers\.UNet2DModel; bun-diffusion supports UNet2DConditionModel/);
    rmSync(path.join(broken, "vae"), { recursive: true });
    writeFileSync(path.join(broken, "model_index.json"), JSON.stringify(index));
    await expect(loadPipeline(broken)).rejects.toThrow(/the vae\/ folder is missing/);
    // (another test file in this process may have loaded an emulated CUDA backend)
    if (!hasBackend("cuda")) await expect(loadPipeline(path.join(tmp, "sd15"), { device: "cuda" })).rejects.toThrow(/device "cuda" is not available: ./);
    await expect(loadPipeline(path.join(tmp, "sd15"), { scheduler: "heun" })).rejects.toThrow(/valid names/);
    expect(memoryStats("cpu").live).toBe(live); // failed loads leave nothing behind
  });

  test("a Hugging Face cache folder (models--org--name) loads its refs/main snapshot", async () => {
    const repo = path.join(tmp, "hub", "models--someone--tiny-sd");
    cpSync(path.join(tmp, "sd15"), path.join(repo, "snapshots", "0123abcd"), { recursive: true });
    mkdirSync(path.join(repo, "refs"), { recursive: true });
    writeFileSync(path.join(repo, "refs", "main"), "0123abcd\n");
    const pipe = await loadPipeline(repo);
    try {
      expect(pipe.modelDir).toBe(path.join(repo, "snapshots", "0123abcd"));
      expect(pipe.modelName).toBe("someone/tiny-sd");
    } finally {
      pipe.dispose();
    }
  });

  test("a model scheduler we do not implement needs a scheduler name", async () => {
    const dir = path.join(tmp, "kdpm");
    cpSync(path.join(tmp, "sd15"), dir, { recursive: true });
    const cfgFile = path.join(dir, "scheduler", "scheduler_config.json");
    const cfg = JSON.parse(await Bun.file(cfgFile).text());
    writeFileSync(cfgFile, JSON.stringify({ ...cfg, _class_name: "KDPM2DiscreteScheduler" }));
    await expect(loadPipeline(dir)).rejects.toThrow(/KDPM2DiscreteScheduler is not supported; pass a scheduler name/);
    const pipe = await loadPipeline(dir, { scheduler: "euler" });
    const { images } = await pipe.generate({ prompt: "x", steps: 2 });
    expect(images[0]!.parameters!.sampler).toBe("Euler");
    pipe.dispose();
  });
});
