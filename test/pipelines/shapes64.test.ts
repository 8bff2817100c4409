// The shipped demo model (assets/shapes-64) against diffusers' own runs of it
// (../shared/models/shapes-64/golden.safetensors + golden.json): the real CLIP tokenizer gives the
// recorded token ids, the text encoder the recorded embeddings; DDIM runs end to end from the
// prompt strings and seeds through generate() (tokenizer → encoder → seeded latents = the recorded
// latents_in → 20 steps → decode) and the other recorded schedulers (Euler, PNDM) run from the
// recorded embeddings and latents_in; every stepNN/latents, final_latents and image is compared with
// 1e-4·max|value| (the model README's expected agreement). Then an automatic colour check: images of
// "a red circle on a blue background" and other prompts must show the requested shape colour in the
// centre and the requested background colour at the border (nearest reference colour).

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import path from "node:path";
import type { GeneratedImage } from "../../src/io/image.ts";
import { openSafetensors, type SafetensorsFile } from "../../src/io/safetensors.ts";
import { entryToTensor } from "../../src/io/tensor-io.ts";
import { StableDiffusionPipeline } from "../../src/pipelines/index.ts";
import { encodeRows } from "../../src/pipelines/prompt-encoding.ts";
import { schedulerFromConfig } from "../../src/schedulers/index.ts";
import { type Tensor, memoryStats } from "../../src/tensor/index.ts";
import { CLIPTokenizer } from "../../src/tokenizer/clip-tokenizer.ts";
import { maxError } from "../helpers/golden.ts";
import { projectRoot, requireDir, sharedDir } from "../helpers/paths.ts";
import { nearestColour, regions, requested } from "../helpers/shapes64-colours.ts";

const modelDir = path.join(projectRoot, "assets", "shapes-64");
const goldenFolder = path.join(sharedDir, "models", "shapes-64");

interface ShapesGolden {
  prompts: string[];
  seeds: number[];
  negative_prompt: string;
  guidance_scale: number;
  height: number;
  width: number;
  runs: Record<string, { scheduler: string; steps: number; config: Record<string, unknown> }>;
}

let golden: SafetensorsFile;
let meta: ShapesGolden;
let pipe: StableDiffusionPipeline;
let live0 = 0;
const ddimImages = new Map<number, GeneratedImage>();

const values = (name: string): Float32Array => {
  const t = entryToTensor(golden.get(name));
  try {
    return t.toFloat32Array();
  } finally {
    t.dispose();
  }
};
const ids = (name: string): number[] => {
  const t = entryToTensor(golden.get(name));
  try {
    return Array.from(t.toTypedArray() as BigInt64Array, Number);
  } finally {
    t.dispose();
  }
};
const tensorOf = (name: string): Tensor => entryToTensor(golden.get(name));

/** Asserts |actual − golden| ≤ rel·max|golden| and returns the relative error. */
function close(actual: ArrayLike<number>, name: string, rel = 1e-4): number {
  const { maxAbs, maxRef } = maxError(actual, values(name));
  if (!(maxAbs <= rel * maxRef)) throw new Error(`${name}: max|err| ${maxAbs} > ${rel} × ${maxRef}`);
  return maxAbs / maxRef;
}

beforeAll(async () => {
  requireDir(goldenFolder, "the shapes-64 golden folder");
  golden = openSafetensors(path.join(goldenFolder, "golden.safetensors"));
  meta = (await Bun.file(path.join(goldenFolder, "golden.json")).json()) as ShapesGolden;
  live0 = memoryStats("cpu").live;
  pipe = await StableDiffusionPipeline.fromPretrained(modelDir);
});

afterAll(() => {
  pipe?.dispose();
  expect(memoryStats("cpu").live).toBe(live0);
});

describe("shapes-64 demo model vs diffusers (golden.json)", () => {
  test("the real CLIP tokenizer reproduces the recorded token ids", () => {
    const tok = CLIPTokenizer.fromPretrained(path.join(modelDir, "tokenizer"));
    meta.prompts.forEach((p, i) => expect(tok.encodeForModel(p).inputIds[0]).toEqual(ids(`p${i}/input_ids`)));
    expect(tok.encodeForModel(meta.negative_prompt).inputIds[0]).toEqual(ids("negative_input_ids"));
  });

  test("the text encoder reproduces the recorded prompt embeddings (1e-5·max)", () => {
    const rows = (name: string) => {
      const r = ids(name);
      return { rows: [r], masks: [r.map(() => 1)], texts: 1, chunks: 1 };
    };
    meta.prompts.forEach((_, i) => {
      for (const [idName, embName] of [
        [`p${i}/input_ids`, `p${i}/prompt_embeds`],
        ["negative_input_ids", `p${i}/negative_prompt_embeds`],
      ] as const) {
        const e = encodeRows(pipe.textEncoder!, rows(idName), { kind: "final" });
        close(e.hidden.toFloat32Array(), embName, 1e-5);
        e.hidden.dispose();
        e.pooled.dispose();
      }
    });
  });

  test("DDIM end to end from the prompt strings and seeds: latents_in, every step, final latents, image", async () => {
    const run = meta.runs.ddim!;
    const worst = { latents: 0, image: 0 };
    for (let i = 0; i < meta.prompts.length; i++) {
      let calls = 0;
      let seededError = NaN;
      const hook = pipe.unet.registerForwardPreHook((_m, [sample]) => {
        if (calls++ > 0) return;
        // DDIM: init_noise_sigma = 1 and no input scaling, so row 0 of the first call is the seeded noise
        const row = sample.narrow(0, 0, 1);
        seededError = maxError(row.toFloat32Array(), values(`p${i}/latents_in`)).maxAbs;
        row.dispose();
      });
      let last: Float32Array | null = null;
      const r = await pipe.generate({
        prompt: meta.prompts[i]!,
        negativePrompt: meta.negative_prompt,
        seed: meta.seeds[i]!,
        steps: run.steps,
        guidanceScale: meta.guidance_scale,
        width: meta.width,
        height: meta.height,
        scheduler: schedulerFromConfig(run.config),
        outputType: "tensor",
        onStep: (s, _n, info) => {
          last = info.latents.toFloat32Array();
          worst.latents = Math.max(worst.latents, close(last, `ddim/p${i}/step${String(s - 1).padStart(2, "0")}/latents`));
        },
      });
      hook.remove();
      expect(calls).toBe(run.steps); // one batched CFG call per step, so the check above ran on the first
      expect(seededError).toBeLessThanOrEqual(4e-6); // the torch CPU generator's tolerance (golden README, rng/)
      close(last!, `ddim/p${i}/final_latents`);
      worst.image = Math.max(worst.image, close(r.tensor!.toFloat32Array(), `ddim/p${i}/image`));
      r.tensor!.dispose();
      ddimImages.set(i, r.images[0]!);
    }
    console.log(`shapes-64 ddim (end to end): worst relative error latents ${worst.latents.toExponential(2)}, image ${worst.image.toExponential(2)}`);
  }, 60_000);

  for (const name of ["euler", "pndm"]) {
    test(`${name}: every prompt from the recorded embeddings and latents_in, every step, final latents, image`, async () => {
      const run = meta.runs[name]!;
      const worst = { latents: 0, image: 0 };
      for (let i = 0; i < meta.prompts.length; i++) {
        const given = {
          promptEmbeds: tensorOf(`p${i}/prompt_embeds`),
          negativePromptEmbeds: tensorOf(`p${i}/negative_prompt_embeds`),
          latents: tensorOf(`p${i}/latents_in`),
        };
        let last: Float32Array | null = null;
        let steps = 0;
        try {
          const r = await pipe.generate({
            ...given,
            steps: run.steps,
            guidanceScale: meta.guidance_scale,
            width: meta.width,
            height: meta.height,
            scheduler: schedulerFromConfig(run.config),
            outputType: "tensor",
            onStep: (s, _n, info) => {
              steps = s;
              last = info.latents.toFloat32Array();
              worst.latents = Math.max(worst.latents, close(last, `${name}/p${i}/step${String(s - 1).padStart(2, "0")}/latents`));
            },
          });
          close(last!, `${name}/p${i}/final_latents`);
          worst.image = Math.max(worst.image, close(r.tensor!.toFloat32Array(), `${name}/p${i}/image`));
          r.tensor!.dispose();
          expect(golden.has(`${name}/p${i}/step${String(steps).padStart(2, "0")}/latents`)).toBe(false); // no golden step left unchecked
        } finally {
          for (const t of Object.values(given)) t.dispose();
        }
      }
      console.log(`shapes-64 ${name}: worst relative error latents ${worst.latents.toExponential(2)}, image ${worst.image.toExponential(2)}`);
    }, 60_000);
  }
});

describe("shapes-64 colour check (generate() from prompt strings)", () => {
  test("the golden prompts: shape colour in the centre, background colour at the border", () => {
    expect(ddimImages.size).toBe(meta.prompts.length); // made by the DDIM end-to-end test above
    for (const [i, img] of ddimImages) {
      const want = requested(meta.prompts[i]!);
      const { centre, border } = regions(img);
      expect({ prompt: meta.prompts[i], centre: nearestColour(centre), border: nearestColour(border) }).toEqual({
        prompt: meta.prompts[i],
        centre: want.shape,
        border: want.background,
      });
    }
  });

  for (const prompt of ["a black square on a white background", "a yellow circle on a green background"]) {
    test(`"${prompt}" (golden seed 0, DDIM 20 steps)`, async () => {
      const { images } = await pipe.generate({ prompt, seed: meta.seeds[0]!, steps: 20, scheduler: "ddim", negativePrompt: "" });
      const want = requested(prompt);
      const { centre, border } = regions(images[0]!);
      expect({ centre: nearestColour(centre), border: nearestColour(border) }).toEqual({ centre: want.shape, border: want.background });
      expect(images[0]!.parameters?.sampler).toBe("DDIM");
    }, 30_000);
  }
});
