// The pipelines against diffusers' own runs: every case under pipeline/ in the golden index (SD 1.x
// and 2.x, SDXL; whatever the folder holds) is loaded from its tiny model folder, given the
// recorded latents_in and prompt embeddings (pooled too for SDXL) and the case's scheduler
// (Cls.from_config(scheduler_config)), steps, guidance and size from the metadata. Hooks on the UNet
// and the VAE decoder and the onStep callback capture every step's UNet input, timestep and output,
// the latents after each scheduler step, the final latents, the raw VAE decode, the image, the
// timesteps, init_noise_sigma and SDXL's add_time_ids; each is compared with
// atol = 1e-4·max|golden| (the golden README's pipeline tolerance) and the max errors are printed.
// The prompt embeddings are also recomputed from the recorded token ids through the pipeline's own
// encoding path (single-module tolerance 1e-5·max|golden|).

import { describe, expect, test } from "bun:test";
import path from "node:path";
import type { SafetensorsFile } from "../../src/io/safetensors.ts";
import { StableDiffusionPipeline, StableDiffusionXLPipeline } from "../../src/pipelines/index.ts";
import { encodeRows, type TextEncoder } from "../../src/pipelines/prompt-encoding.ts";
import { schedulerFromConfig } from "../../src/schedulers/index.ts";
import { type Tensor, cat, memoryStats } from "../../src/tensor/index.ts";
import { type GoldenEntry, goldenCases, goldenTensor, maxError, openGolden } from "../helpers/golden.ts";
import { goldenDir } from "../helpers/paths.ts";

const cases = goldenCases("pipeline");

interface Check {
  name: string;
  maxAbs: number;
  maxRef: number;
  tol: number;
}

/** Records comparisons against one golden file; assert() fails with every out-of-tolerance tensor listed. */
class Comparer {
  readonly checks: Check[] = [];
  readonly missing = new Set<string>();
  constructor(
    readonly file: SafetensorsFile,
    readonly entry: GoldenEntry,
    readonly relTol: number,
  ) {}

  values(name: string): number[] {
    const t = goldenTensor(this.file, name);
    try {
      return Array.from(t.toTypedArray() as ArrayLike<number | bigint>, Number);
    } finally {
      t.dispose();
    }
  }

  has(name: string): boolean {
    return name in this.entry.tensors;
  }

  compare(name: string, actual: ArrayLike<number> | Tensor, relTol = this.relTol): void {
    if (!this.has(name)) {
      this.missing.add(name);
      return;
    }
    const a = Array.isArray(actual) || ArrayBuffer.isView(actual) ? (actual as ArrayLike<number>) : (actual as Tensor).toFloat32Array();
    const { maxAbs, maxRef } = maxError(a, this.values(name));
    this.checks.push({ name, maxAbs, maxRef, tol: relTol * Math.max(maxRef, 1e-12) });
  }

  /** Every golden output name must have been compared (inputs excepted). */
  assertComplete(inputs: readonly string[]): void {
    const done = new Set(this.checks.map((c) => c.name));
    const unchecked = Object.keys(this.entry.tensors).filter((n) => !inputs.includes(n) && !done.has(n));
    expect(unchecked).toEqual([]);
  }

  report(label: string): void {
    const worst = new Map<string, Check>(); // by kind: stepNN/x -> step*/x
    for (const c of this.checks) {
      const kind = c.name.replace(/step\d+/, "step*");
      const w = worst.get(kind);
      if (!w || c.maxAbs / c.tol > w.maxAbs / w.tol) worst.set(kind, c);
    }
    const lines = [...worst.entries()].map(
      ([k, c]) => `  ${k.padEnd(26)} max|err| ${c.maxAbs.toExponential(2)}  max|ref| ${c.maxRef.toPrecision(4)}  rel ${(c.maxAbs / Math.max(c.maxRef, 1e-12)).toExponential(2)}`,
    );
    console.log(`${label}\n${lines.join("\n")}`);
    const bad = this.checks.filter((c) => !(c.maxAbs <= c.tol));
    expect(bad.map((c) => `${c.name}: ${c.maxAbs} > ${c.tol}`)).toEqual([]);
  }
}

const step = (i: number) => `step${String(i).padStart(2, "0")}`;

/** Rows of token ids from a golden [N, 77] int64 tensor. */
function idRows(g: Comparer, name: string): { rows: number[][]; masks: number[][]; texts: number; chunks: number } {
  const t = goldenTensor(g.file, name);
  const [N, L] = t.shape as [number, number];
  const flat = Array.from(t.toTypedArray() as BigInt64Array, Number);
  t.dispose();
  const rows = Array.from({ length: N }, (_, i) => flat.slice(i * L, (i + 1) * L));
  return { rows, masks: rows.map((r) => r.map(() => 1)), texts: N, chunks: 1 };
}

describe("golden pipelines (diffusers v0.31 StableDiffusionPipeline / StableDiffusionXLPipeline)", () => {
  test("index.json lists pipeline cases", () => {
    expect(cases.length).toBeGreaterThan(0);
  });

  for (const entry of cases) {
    const meta = entry.meta as GoldenEntry["meta"] & {
      component: string;
      model: string;
      scheduler: string;
      scheduler_config: Record<string, unknown>;
      num_inference_steps: number;
      guidance_scale: number;
      height: number;
      width: number;
      sdxl_extra?: Record<string, unknown>;
      guidance_rescale?: number;
      eta?: number;
      clip_skip?: number;
    };
    const sdxl = meta.component === "StableDiffusionXLPipeline";
    test(`${entry.file}: ${meta.component} + ${meta.scheduler}, ${meta.num_inference_steps} steps, every step tensor`, async () => {
      const live0 = memoryStats("cpu").live;
      const g = new Comparer(openGolden(entry.file), entry, 1e-4);
      const modelDir = path.join(goldenDir, meta.model);
      const pipe = sdxl ? await StableDiffusionXLPipeline.fromPretrained(modelDir) : await StableDiffusionPipeline.fromPretrained(modelDir);
      const inputs = [
        "input_ids",
        "input_ids_2",
        "negative_input_ids",
        "latents_in",
        "prompt_embeds",
        "negative_prompt_embeds",
        "pooled_prompt_embeds",
        "negative_pooled_prompt_embeds",
      ];
      const load = (n: string) => (g.has(n) ? goldenTensor(g.file, n) : undefined);
      const given = {
        latents: load("latents_in"),
        promptEmbeds: load("prompt_embeds"),
        negativePromptEmbeds: load("negative_prompt_embeds"),
        pooledPromptEmbeds: load("pooled_prompt_embeds"),
        negativePooledPromptEmbeds: load("negative_pooled_prompt_embeds"),
      };
      try {
        // The pipeline's own prompt encoding from the recorded ids reproduces the recorded embeddings.
        const encoders: TextEncoder[] = sdxl
          ? [(pipe as StableDiffusionXLPipeline).textEncoder!, (pipe as StableDiffusionXLPipeline).textEncoder2!]
          : [(pipe as StableDiffusionPipeline).textEncoder!];
        const idNames = sdxl ? ["input_ids", "input_ids_2"] : ["input_ids"];
        const outs = encoders.map((enc, i) => encodeRows(enc, idRows(g, idNames[i]!), sdxl ? { kind: "hidden", fromEnd: 2 } : { kind: "final" }));
        const embeds = cat(outs.map((o) => o.hidden), -1);
        g.compare("prompt_embeds", embeds, 1e-5);
        if (sdxl) g.compare("pooled_prompt_embeds", outs[1]!.pooled, 1e-5);
        embeds.dispose();
        for (const o of outs) (o.hidden.dispose(), o.pooled.dispose());
        if (g.has("negative_input_ids")) {
          // SDXL: the second tokenizer's ids under negative_input_ids_2 when recorded (else the same ids)
          const negNames = sdxl ? ["negative_input_ids", g.has("negative_input_ids_2") ? "negative_input_ids_2" : "negative_input_ids"] : ["negative_input_ids"];
          const negs = encoders.map((enc, i) => encodeRows(enc, idRows(g, negNames[i]!), sdxl ? { kind: "hidden", fromEnd: 2 } : { kind: "final" }));
          const negEmbeds = cat(negs.map((o) => o.hidden), -1);
          g.compare("negative_prompt_embeds", negEmbeds, 1e-5);
          if (sdxl) g.compare("negative_pooled_prompt_embeds", negs[1]!.pooled, 1e-5);
          negEmbeds.dispose();
          for (const o of negs) (o.hidden.dispose(), o.pooled.dispose());
        }

        // The recorded call, with hooks on every step.
        const scheduler = schedulerFromConfig(meta.scheduler_config, { _class_name: meta.scheduler });
        let call = 0;
        const pre = pipe.unet.registerForwardPreHook((_m, [sample, timestep, _ehs, opts]) => {
          g.compare(`${step(call)}/unet_sample`, sample);
          g.compare(`${step(call)}/unet_timestep`, [typeof timestep === "number" ? timestep : timestep.item()]);
          if (sdxl && opts?.timeIds) {
            const ids = opts.timeIds.toFloat32Array(); // [rows, 6]
            const recorded = entry.tensors.add_time_ids?.shape ?? [1, 6];
            if (recorded[0] === 1) for (let r = 0; r < ids.length / 6; r++) g.compare("add_time_ids", ids.subarray(r * 6, r * 6 + 6));
            else g.compare("add_time_ids", ids); // recorded as the UNet received them
          }
        });
        const post = pipe.unet.registerForwardPostHook((_m, _args, out) => {
          g.compare(`${step(call++)}/unet_out`, out);
        });
        const dec = pipe.vae.decoder.registerForwardPostHook((_m, _args, out) => {
          g.compare("image_raw_decode", out);
        });
        let last: Float32Array | null = null;
        const liveBefore = memoryStats("cpu").live;
        const sdxlExtra = (meta.sdxl_extra ?? {}) as Record<string, [number, number] | undefined>;
        const perPrompt = given.latents && given.promptEmbeds ? given.latents.shape[0]! / given.promptEmbeds.shape[0]! : 1;
        const result = await pipe.generate({
          ...given,
          numImagesPerPrompt: perPrompt,
          steps: meta.num_inference_steps,
          guidanceScale: meta.guidance_scale,
          guidanceRescale: meta.guidance_rescale,
          eta: meta.eta,
          clipSkip: meta.clip_skip,
          width: meta.width,
          height: meta.height,
          scheduler,
          outputType: "tensor",
          ...(sdxl
            ? {
                originalSize: sdxlExtra.original_size,
                cropsCoordsTopLeft: sdxlExtra.crops_coords_top_left,
                targetSize: sdxlExtra.target_size,
                negativeOriginalSize: sdxlExtra.negative_original_size,
                negativeCropsCoordsTopLeft: sdxlExtra.negative_crops_coords_top_left,
                negativeTargetSize: sdxlExtra.negative_target_size,
              }
            : {}),
          onStep: (i, _n, info) => {
            last = info.latents.toFloat32Array();
            g.compare(`${step(i - 1)}/latents`, last);
          },
        });
        pre.remove();
        post.remove();
        dec.remove();
        g.compare("final_latents", last!);
        g.compare("image", result.tensor!);
        g.compare("timesteps", scheduler.timesteps);
        g.compare("init_noise_sigma", [scheduler.initNoiseSigma]);
        result.tensor!.dispose();
        expect(call).toBe(scheduler.timesteps.length);
        expect(result.images.length).toBe(given.latents?.shape[0] ?? 1);
        expect(memoryStats("cpu").live).toBe(liveBefore); // nothing of the run stays live
        g.assertComplete(inputs);
        g.report(`${entry.file} (${meta.component}, ${meta.scheduler}):`);
      } finally {
        for (const t of Object.values(given)) t?.dispose();
        pipe.dispose();
      }
      expect(memoryStats("cpu").live).toBe(live0);
    }, 120_000);
  }
});
