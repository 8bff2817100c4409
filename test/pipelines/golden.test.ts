// The pipelines against diffusers' own runs: every pipeline case this file drives
// (test/golden/registry.ts; SD 1.x and 2.x, SDXL, any batch size) is loaded from its tiny model folder,
// given the recorded latents_in and prompt embeddings (pooled too for SDXL) and the case's scheduler
// (Cls.from_config(scheduler_config)), steps, guidance, size, clip_skip and SDXL micro-conditioning
// (sdxl_extra: original_size, crops_coords_top_left, target_size and the negative ones) from the
// metadata. Negative prompts come from the metadata too: none on an SDXL model with
// force_zeros_for_empty_prompt means the pipeline's own zero embeddings, otherwise the recorded ones.
// Hooks on the UNet and the VAE decoder and the onStep callback capture every step's UNet input,
// timestep and output, the conditioning rows the UNet receives ([negative…, positive…]), the time ids
// (against values built from the metadata and against add_time_ids), the latents after each scheduler
// step, the final latents, the raw VAE decode, the image, the timesteps and init_noise_sigma; each is
// compared with atol = 1e-4·max|golden| (the golden README's pipeline tolerance) and the max errors are
// printed. Every tensor of the file must be used or compared. The prompt embeddings are also recomputed
// from the recorded token ids (negative_input_ids_2 for SDXL's second tokenizer when recorded) through
// the pipeline's own encoding path (single-module tolerance 1e-5·max|golden|).

import { describe, expect, test } from "bun:test";
import path from "node:path";
import type { SafetensorsFile } from "../../src/io/safetensors.ts";
import { StableDiffusionPipeline, StableDiffusionXLPipeline } from "../../src/pipelines/index.ts";
import { type EmbeddingLayer, encodeRows, type TextEncoder } from "../../src/pipelines/prompt-encoding.ts";
import { schedulerFromConfig } from "../../src/schedulers/index.ts";
import { type Tensor, cat, memoryStats } from "../../src/tensor/index.ts";
import { goldenDriven } from "../golden/registry.ts";
import { type GoldenEntry, goldenTensor, maxError, openGolden } from "../helpers/golden.ts";
import { goldenDir } from "../helpers/paths.ts";

const cases = goldenDriven(import.meta.path);

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

  /** Compares `actual` with the golden tensor `name` (or with `expected`, values derived from it). */
  compare(name: string, actual: ArrayLike<number> | Tensor, relTol = this.relTol, expected?: ArrayLike<number>): void {
    if (!this.has(name)) {
      this.missing.add(name);
      return;
    }
    const a = Array.isArray(actual) || ArrayBuffer.isView(actual) ? (actual as ArrayLike<number>) : (actual as Tensor).toFloat32Array();
    const { maxAbs, maxRef } = maxError(a, expected ?? this.values(name));
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

type SizePair = [number, number];

/** diffusers' add_time_ids for one half: (original_size, crops_coords_top_left, target_size), defaults from the image size. */
function timeIds(extra: Record<string, SizePair | undefined>, height: number, width: number, negative: boolean): number[] {
  const size: SizePair = [height, width];
  const positive = [...(extra.original_size ?? size), ...(extra.crops_coords_top_left ?? [0, 0]), ...(extra.target_size ?? size)];
  // diffusers uses separate negative ids only when both negative sizes are given
  if (!negative || !extra.negative_original_size || !extra.negative_target_size) return positive;
  return [...extra.negative_original_size, ...(extra.negative_crops_coords_top_left ?? [0, 0]), ...extra.negative_target_size];
}

/** Rows of a [B, ...] tensor's values with each row repeated n times in place (diffusers' repeat per image). */
function repeatRows(values: number[], rows: number, n: number): number[] {
  const w = values.length / rows;
  return Array.from({ length: rows * n }, (_, r) => values.slice(Math.floor(r / n) * w, (Math.floor(r / n) + 1) * w)).flat();
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
      prompts?: string[];
      negative_prompts?: string[] | null;
      num_inference_steps: number;
      guidance_scale: number;
      height: number;
      width: number;
      sdxl_extra?: Record<string, SizePair | undefined>;
      guidance_rescale?: number;
      eta?: number;
      clip_skip?: number;
    };
    const sdxl = meta.component === "StableDiffusionXLPipeline";
    const B = entry.tensors.prompt_embeds?.shape[0] ?? 1;
    test(`${entry.file}: ${meta.component} + ${meta.scheduler}, ${meta.num_inference_steps} steps, batch ${B}, every step tensor`, async () => {
      const live0 = memoryStats("cpu").live;
      // 1e-4·max|golden|: the golden README's pipeline tolerance (errors grow over the steps)
      const g = new Comparer(openGolden(entry.file), entry, 1e-4);
      const modelDir = path.join(goldenDir, meta.model);
      const pipe = sdxl ? await StableDiffusionXLPipeline.fromPretrained(modelDir) : await StableDiffusionPipeline.fromPretrained(modelDir);
      const inputs = [
        "input_ids",
        "input_ids_2",
        "negative_input_ids",
        "negative_input_ids_2",
        "latents_in",
        "prompt_embeds",
        "negative_prompt_embeds",
        "pooled_prompt_embeds",
        "negative_pooled_prompt_embeds",
      ];
      const load = (n: string) => (g.has(n) ? goldenTensor(g.file, n) : undefined);
      // No negative prompt on an SDXL model with force_zeros_for_empty_prompt: diffusers conditions on zeros,
      // so the pipeline's own zeros are used (and the recorded negative embeddings compared with what the UNet gets).
      const zeroNegative = sdxl && meta.negative_prompts == null && (pipe as StableDiffusionXLPipeline).forceZerosForEmptyPrompt;
      const given = {
        latents: load("latents_in"),
        promptEmbeds: load("prompt_embeds"),
        negativePromptEmbeds: zeroNegative ? undefined : load("negative_prompt_embeds"),
        pooledPromptEmbeds: load("pooled_prompt_embeds"),
        negativePooledPromptEmbeds: zeroNegative ? undefined : load("negative_pooled_prompt_embeds"),
      };
      try {
        if (meta.prompts) expect(meta.prompts.length).toBe(B);
        if (meta.negative_prompts) expect(meta.negative_prompts.length).toBe(B);
        if (g.has("negative_input_ids")) expect(entry.tensors.negative_input_ids!.shape[0]).toBe(B);

        // The pipeline's own prompt encoding from the recorded ids reproduces the recorded embeddings
        // (clip_skip from the metadata for the positive prompt; diffusers' negatives ignore it).
        const encoders: TextEncoder[] = sdxl
          ? [(pipe as StableDiffusionXLPipeline).textEncoder!, (pipe as StableDiffusionXLPipeline).textEncoder2!]
          : [(pipe as StableDiffusionPipeline).textEncoder!];
        const positiveLayer: EmbeddingLayer = sdxl ? { kind: "hidden", fromEnd: (meta.clip_skip ?? 0) + 2 } : { kind: "final", clipSkip: meta.clip_skip };
        const negativeLayer: EmbeddingLayer = sdxl ? { kind: "hidden", fromEnd: 2 } : { kind: "final" };
        const encodeAndCompare = (idNames: string[], layer: EmbeddingLayer, embedsName: string, pooledName: string) => {
          const outs = encoders.map((enc, i) => encodeRows(enc, idRows(g, idNames[i]!), layer));
          const embeds = cat(outs.map((o) => o.hidden), -1);
          g.compare(embedsName, embeds, 1e-5); // single-module tolerance: the text encoders alone
          if (sdxl) g.compare(pooledName, outs[1]!.pooled, 1e-5);
          embeds.dispose();
          for (const o of outs) (o.hidden.dispose(), o.pooled.dispose());
        };
        encodeAndCompare(sdxl ? ["input_ids", "input_ids_2"] : ["input_ids"], positiveLayer, "prompt_embeds", "pooled_prompt_embeds");
        if (g.has("negative_input_ids")) {
          // SDXL: the second tokenizer's ids under negative_input_ids_2 when recorded (else the same ids)
          const negNames = sdxl ? ["negative_input_ids", g.has("negative_input_ids_2") ? "negative_input_ids_2" : "negative_input_ids"] : ["negative_input_ids"];
          encodeAndCompare(negNames, negativeLayer, "negative_prompt_embeds", "negative_pooled_prompt_embeds");
        }

        // The recorded call, with hooks on every step.
        const scheduler = schedulerFromConfig(meta.scheduler_config, { _class_name: meta.scheduler });
        const perPrompt = given.latents && given.promptEmbeds ? given.latents.shape[0]! / given.promptEmbeds.shape[0]! : 1;
        const cfg = meta.guidance_scale > 1;
        const sdxlExtra = meta.sdxl_extra ?? {};
        let call = 0;
        const pre = pipe.unet.registerForwardPreHook((_m, [sample, timestep, ehs, opts]) => {
          g.compare(`${step(call)}/unet_sample`, sample);
          const tv = typeof timestep === "number" ? [timestep] : Array.from(timestep.toFloat32Array());
          const recordedT = entry.tensors[`${step(call)}/unet_timestep`]?.shape ?? [];
          if (recordedT.length === 0) expect(new Set(tv).size).toBe(1); // one timestep for every row
          g.compare(`${step(call)}/unet_timestep`, recordedT.length === 0 ? tv.slice(0, 1) : tv);
          if (call === 0) {
            // the conditioning rows the UNet receives: [negative…, positive…], each prompt's row repeated per image
            const halves = (negName: string, posName: string, actual: Tensor) => {
              const vals = actual.toFloat32Array();
              const half = cfg ? vals.length / 2 : 0;
              g.compare(posName, vals.subarray(half), undefined, repeatRows(g.values(posName), B, perPrompt));
              if (cfg) g.compare(negName, vals.subarray(0, half), undefined, repeatRows(g.values(negName), B, perPrompt));
            };
            halves("negative_prompt_embeds", "prompt_embeds", ehs);
            if (sdxl && opts?.textEmbeds) halves("negative_pooled_prompt_embeds", "pooled_prompt_embeds", opts.textEmbeds);
          }
          if (sdxl && opts?.timeIds) {
            const ids = opts.timeIds.toFloat32Array(); // [rows, 6]
            const rows = ids.length / 6;
            // diffusers: cat([negative, positive]).repeat(B·n, 1) under CFG, so odd rows are positive
            const isPositive = (r: number) => !cfg || r % 2 === 1;
            for (let r = 0; r < rows; r++)
              expect(Array.from(ids.subarray(r * 6, r * 6 + 6)), `time ids row ${r}`).toEqual(timeIds(sdxlExtra, meta.height, meta.width, !isPositive(r)));
            const recorded = entry.tensors.add_time_ids?.shape ?? [1, 6];
            if (recorded[0] === 1) {
              for (let r = 0; r < rows; r++) if (isPositive(r)) g.compare("add_time_ids", ids.subarray(r * 6, r * 6 + 6));
            } else g.compare("add_time_ids", ids); // recorded as the UNet received them
          }
        });
        const post = pipe.unet.registerForwardPostHook((_m, _args, out) => {
          g.compare(`${step(call++)}/unet_out`, out);
        });
        let decodes = 0;
        const dec = pipe.vae.decoder.registerForwardPostHook((_m, _args, out) => {
          decodes++;
          g.compare("image_raw_decode", out);
        });
        let last: Float32Array | null = null;
        const liveBefore = memoryStats("cpu").live;
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
        expect(decodes).toBe(1); // one batched decode, as diffusers without VAE slicing
        expect(result.images.length).toBe(given.latents?.shape[0] ?? B);
        expect(memoryStats("cpu").live).toBe(liveBefore); // nothing of the run stays live
        g.assertComplete(inputs);
        g.report(`${entry.file} (${meta.component}, ${meta.scheduler}, batch ${B}):`);
      } finally {
        for (const t of Object.values(given)) t?.dispose();
        pipe.dispose();
      }
      expect(memoryStats("cpu").live).toBe(live0);
    }, 120_000);
  }
});
