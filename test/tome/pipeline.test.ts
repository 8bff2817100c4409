// pipe.enableTokenMerging / disableTokenMerging on the demo model (assets/shapes-64): the feature registry lists
// "tokenMerging" with its resolved options and images carry it in their parameters; enabling again replaces,
// disabling restores the plain images bit for bit, bad options change nothing; and a ToMe'd generation (ratio 0.5,
// random dst choice over the CFG batch of 2) still draws the prompted shape and colours: the centre / border colour
// check of test/pipelines/shapes64.test.ts, plus the shape's pixel mask against the plain image's (IoU ≥ 0.8 —
// ToMe perturbs the latents by a few percent, it must not move or reshape the shape). CPU live bytes return.

import { beforeAll, describe, expect, test } from "bun:test";
import type { GeneratedImage } from "../../src/io/image.ts";
import { StableDiffusionPipeline } from "../../src/pipelines/index.ts";
import { TokenMergingOptionError, tokenMergingOf } from "../../src/tome/index.ts";
import { type DemoPipeline, useDemoPipeline } from "../helpers/demo-pipeline.ts";
import { iou, nearestColour, regions, requested, shapeMask } from "../helpers/shapes64-colours.ts";

/** Nearest colour names of the centre (the shape) and the border (the background). */
function regionColours(img: GeneratedImage): { centre: string; border: string } {
  const { centre, border } = regions(img);
  return { centre: nearestColour(centre), border: nearestColour(border) };
}

const demo = useDemoPipeline();
let pipe: StableDiffusionPipeline;
let meta: DemoPipeline["meta"];
beforeAll(() => void ({ pipe, meta } = demo));
const gen = demo.gen;

describe("enableTokenMerging", () => {
  test("features() lists tokenMerging with its options, images carry it; again replaces; disable restores bit for bit; bad options change nothing", async () => {
    const prompt = meta.prompts[0]!;
    const plain = (await gen(prompt, meta.seeds[0]!, 3)).images[0]!;
    pipe.enableTokenMerging({ ratio: 0.5 });
    const f = pipe.features().find((x) => x.name === "tokenMerging")!;
    expect(f.options).toMatchObject({ mode: "tome", ratio: 0.5, maxDownsample: "auto", sx: 2, sy: 2, useRand: true, mergeAttn: true });
    const h = tokenMergingOf(pipe.unet)!;
    expect(h.maxDownsample).toBe(1);
    const tome = (await gen(prompt, meta.seeds[0]!, 3)).images[0]!;
    expect(tome.parameters!.extra!.Features).toMatch(/^tokenMerging\(mode=tome ratio=0\.5 maxDownsample=auto sx=2 sy=2 useRand=true/);
    expect(h.timing.calls).toBeGreaterThan(0);
    expect(tome.rgb).not.toEqual(plain.rgb);

    pipe.enableTokenMerging({ mode: "todo" }); // replaces
    expect(pipe.features().filter((x) => x.name === "tokenMerging")).toEqual([{ name: "tokenMerging", options: { mode: "todo", factor: 2, maxDepth: 1 } }]);
    expect([...pipe.unet.attnProcessors().values()].some((p) => p.name === "todo")).toBe(true);
    const todo = (await gen(prompt, meta.seeds[0]!, 3)).images[0]!;
    expect(todo.parameters!.extra!.Features).toBe("tokenMerging(mode=todo factor=2 maxDepth=1)");

    expect(() => pipe.enableTokenMerging({ ratio: 2 })).toThrow(TokenMergingOptionError);
    expect(pipe.features().find((x) => x.name === "tokenMerging")!.options.mode).toBe("todo"); // the active one stays

    expect(pipe.disableTokenMerging()).toBe(true);
    expect(pipe.disableTokenMerging()).toBe(false);
    expect(pipe.features()).toEqual([]);
    expect(tokenMergingOf(pipe.unet)).toBeNull();
    const again = (await gen(prompt, meta.seeds[0]!, 3)).images[0]!;
    expect(again.rgb).toEqual(plain.rgb);
    expect(again.parameters!.extra!.Features).toBeUndefined();
  }, 60_000);

  test("ToMe 0.5 (random dst over the CFG batch) still draws every golden prompt's shape and colours (DDIM 20 steps)", async () => {
    const seen: string[] = [];
    for (let i = 0; i < meta.prompts.length; i++) {
      const prompt = meta.prompts[i]!;
      const want = requested(prompt);
      pipe.disableTokenMerging();
      const plain = (await gen(prompt, meta.seeds[i]!)).images[0]!;
      pipe.enableTokenMerging({ ratio: 0.5, seed: i });
      const tome = (await gen(prompt, meta.seeds[i]!)).images[0]!;
      expect({ prompt, ...regionColours(tome) }).toEqual({ prompt, centre: want.shape, border: want.background });
      const overlap = iou(shapeMask(tome, want.shape, want.background), shapeMask(plain, want.shape, want.background));
      seen.push(`${prompt}: IoU ${overlap.toFixed(3)}`);
      expect(overlap, prompt).toBeGreaterThanOrEqual(0.8);
    }
    pipe.disableTokenMerging();
    console.log(`shapes-64 with ToMe 0.5 vs plain: ${seen.join("; ")}`);
  }, 120_000);
});
