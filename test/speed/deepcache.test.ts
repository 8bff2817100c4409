// DeepCache on the demo model (assets/shapes-64: 3 levels, layers_per_block 1, so 6 skip connections):
// the branch plan; interval 1 equals the plain run bit for bit (every call is a full pass, nothing is
// replayed); the number of full passes is ⌈steps/interval⌉, counted on the deep blocks' inner modules
// (which run only when the deep part runs); pipe.enableDeepCache is listed by features() and carried by the
// image parameters, disabling restores bit for bit; at interval 3 every golden prompt still draws its shape
// and colours (centre / border colour check + shape mask IoU ≥ 0.8 against the plain image — DeepCache
// reuses deep features of up to 2 steps before, so it moves values a little, it must not move the shape);
// CPU live bytes return to the start after each run (the per-run cache is freed, also when a run is aborted)
// and at the end.

import { beforeAll, describe, expect, test } from "bun:test";
import type { GeneratedImage } from "../../src/io/image.ts";
import { AbortError, StableDiffusionPipeline } from "../../src/pipelines/index.ts";
import { DeepCacheOptionError, deepCacheOf, deepCachePlan } from "../../src/speed/index.ts";
import { memoryStats } from "../../src/tensor/index.ts";
import { type DemoPipeline, useDemoPipeline } from "../helpers/demo-pipeline.ts";
import { iou, nearestColour, regions, requested, shapeMask } from "../helpers/shapes64-colours.ts";

const demo = useDemoPipeline();
let pipe: StableDiffusionPipeline;
let meta: DemoPipeline["meta"];
beforeAll(() => void ({ pipe, meta } = demo));
const gen = demo.gen;

/** Count calls of the deep part: the mid block's first resnet and the deepest down block's first resnet. */
function countDeepCalls(): { counts: { mid: number; down: number }; remove: () => void } {
  const counts = { mid: 0, down: 0 };
  const a = pipe.unet.mid_block!.resnets.at(0).registerForwardPreHook(() => void counts.mid++);
  const deepest = pipe.unet.down_blocks.at(pipe.unet.down_blocks.length - 1);
  const b = deepest.resnets.at(0).registerForwardPreHook(() => void counts.down++);
  return { counts, remove: () => (a.remove(), b.remove()) };
}

describe("DeepCache plan", () => {
  test("branch ids number the skip connections; the frontier is what a shallow step skips while its parent runs", () => {
    const p0 = deepCachePlan(pipe.unet, 0);
    expect(p0.branches).toBe(6); // conv_in + (resnet, downsampler) ×2 + resnet
    // b = 0: down block 0 entirely skipped; up block 2 runs only resnets.1 (which consumes conv_in's output)
    expect(p0.frontier.map(([p]) => p)).toEqual([
      "down_blocks.0",
      "down_blocks.1",
      "down_blocks.2",
      "mid_block",
      "up_blocks.0",
      "up_blocks.1",
      "up_blocks.2.resnets.0",
      "up_blocks.2.attentions.0",
    ]);
    // b = 2: down block 0 runs whole (its downsampler produces skip 2); up block 1's last resnet consumes skip 2
    expect(deepCachePlan(pipe.unet, 2).frontier.map(([p]) => p)).toEqual([
      "down_blocks.1",
      "down_blocks.2",
      "mid_block",
      "up_blocks.0",
      "up_blocks.1.resnets.0",
      "up_blocks.1.attentions.0",
    ]);
    expect(deepCachePlan(pipe.unet, 5).frontier.map(([p]) => p)).toEqual(["mid_block"]);
    expect(() => pipe.enableDeepCache({ branchId: 6 })).toThrow(DeepCacheOptionError);
    expect(() => pipe.enableDeepCache({ interval: 0 })).toThrow(DeepCacheOptionError);
    expect(() => pipe.enableDeepCache({ interval: 1.5 })).toThrow(DeepCacheOptionError);
    expect(pipe.features()).toEqual([]);
    expect(pipe.unet.hookCount).toBe(0);
  });
});

describe("enableDeepCache", () => {
  test("interval 1 equals the plain run bit for bit; full passes = ⌈steps/interval⌉; features(); disable restores bit for bit; live bytes return", async () => {
    const prompt = meta.prompts[0]!;
    const seed = meta.seeds[0]!;
    const deep = countDeepCalls();
    const plain = (await gen(prompt, seed, 10)).images[0]!;
    expect(deep.counts).toEqual({ mid: 10, down: 10 });

    pipe.enableDeepCache({ interval: 1 });
    const live = memoryStats("cpu").live;
    const one = (await gen(prompt, seed, 10)).images[0]!;
    expect(one.rgb).toEqual(plain.rgb);
    expect(memoryStats("cpu").live).toBe(live);

    pipe.enableDeepCache(); // replaces: interval 3, branch 0
    expect(pipe.features()).toEqual([{ name: "deepCache", options: { interval: 3, branchId: 0 } }]);
    for (const [steps, interval] of [
      [10, 3],
      [20, 3],
      [10, 4],
      [7, 2],
    ] as const) {
      pipe.enableDeepCache({ interval });
      const h = deepCacheOf(pipe.unet)!;
      deep.counts.mid = deep.counts.down = 0;
      const img = (await gen(prompt, seed, steps)).images[0]!;
      const full = Math.ceil(steps / interval);
      expect({ steps, interval, ...deep.counts }).toEqual({ steps, interval, mid: full, down: full });
      expect(h.stats).toEqual({ calls: steps, fullPasses: full });
      expect(memoryStats("cpu").live).toBe(live); // the run's cache was freed when generate() ended
      if (steps === 20 && interval === 3) {
        expect(img.parameters!.extra!.Features).toBe("deepCache(interval=3 branchId=0)");
        expect(img.rgb).not.toEqual(plain.rgb);
      }
    }
    deep.remove();

    expect(pipe.disableDeepCache()).toBe(true);
    expect(pipe.disableDeepCache()).toBe(false);
    expect(pipe.features()).toEqual([]);
    expect(deepCacheOf(pipe.unet)).toBeNull();
    expect(pipe.unet.hookCount).toBe(0);
    const again = (await gen(prompt, seed, 10)).images[0]!;
    expect(again.rgb).toEqual(plain.rgb);
  }, 120_000);

  test("a run stopped mid-way (AbortSignal after step 4) frees its cache; the next run starts with a full pass", async () => {
    pipe.enableDeepCache({ interval: 3 });
    const h = deepCacheOf(pipe.unet)!;
    const live = memoryStats("cpu").live;
    const ac = new AbortController();
    const stopped = pipe.generate({ prompt: meta.prompts[1]!, seed: 1, steps: 10, scheduler: "ddim", signal: ac.signal, onStep: (i) => void (i === 4 && ac.abort()) });
    await expect(stopped).rejects.toThrow(AbortError);
    expect(memoryStats("cpu").live).toBe(live);
    const before = { ...h.stats };
    await gen(meta.prompts[1]!, 1, 4);
    expect({ calls: h.stats.calls - before.calls, fullPasses: h.stats.fullPasses - before.fullPasses }).toEqual({ calls: 4, fullPasses: 2 });
    expect(memoryStats("cpu").live).toBe(live);
    pipe.disableDeepCache();
  }, 60_000);

  test("interval 3 (branch 0) still draws every golden prompt's shape and colours (DDIM 20 steps)", async () => {
    const seen: string[] = [];
    for (let i = 0; i < meta.prompts.length; i++) {
      const prompt = meta.prompts[i]!;
      const want = requested(prompt);
      pipe.disableDeepCache();
      const plain = (await gen(prompt, meta.seeds[i]!)).images[0]!;
      pipe.enableDeepCache({ interval: 3 });
      const cached: GeneratedImage = (await gen(prompt, meta.seeds[i]!)).images[0]!;
      const { centre, border } = regions(cached);
      expect({ prompt, centre: nearestColour(centre), border: nearestColour(border) }).toEqual({ prompt, centre: want.shape, border: want.background });
      const overlap = iou(shapeMask(cached, want.shape, want.background), shapeMask(plain, want.shape, want.background));
      seen.push(`${prompt}: IoU ${overlap.toFixed(3)}`);
      expect(overlap, prompt).toBeGreaterThanOrEqual(0.8);
    }
    pipe.disableDeepCache();
    console.log(`shapes-64 with DeepCache interval 3 vs plain: ${seen.join("; ")}`);
  }, 120_000);
});
