// The shipped demo model (assets/shapes-64) as a test fixture: loaded in beforeAll with its golden
// prompts and seeds (../shared/models/shapes-64/golden.json), disposed in afterAll with the check that
// CPU live bytes are back at the start; `gen` runs DDIM with the empty negative prompt the goldens use.

import { afterAll, beforeAll, expect } from "bun:test";
import path from "node:path";
import { type GenerateResult, StableDiffusionPipeline } from "../../src/pipelines/index.ts";
import { memoryStats } from "../../src/tensor/index.ts";
import { projectRoot, requireDir, sharedDir } from "./paths.ts";

export const DEMO_MODEL = path.join(projectRoot, "assets", "shapes-64");
const goldenJson = path.join(sharedDir, "models", "shapes-64", "golden.json");

export interface DemoPipeline {
  readonly pipe: StableDiffusionPipeline;
  /** The golden run's prompts and seeds. */
  readonly meta: { prompts: string[]; seeds: number[] };
  /** DDIM, empty negative prompt, `steps` steps (default 20). */
  gen(prompt: string, seed: number, steps?: number): Promise<GenerateResult>;
}

/** Register the beforeAll/afterAll pair; the fields are set once beforeAll ran. */
export function useDemoPipeline(): DemoPipeline {
  const state = {
    gen: (prompt: string, seed: number, steps = 20) => state.pipe.generate({ prompt, seed, steps, scheduler: "ddim", negativePrompt: "" }),
  } as DemoPipeline & { pipe: StableDiffusionPipeline; meta: DemoPipeline["meta"] };
  let live0 = 0;
  beforeAll(async () => {
    requireDir(path.dirname(goldenJson), "the shapes-64 golden folder");
    state.meta = (await Bun.file(goldenJson).json()) as DemoPipeline["meta"];
    live0 = memoryStats("cpu").live;
    state.pipe = await StableDiffusionPipeline.fromPretrained(DEMO_MODEL);
  });
  afterAll(() => {
    state.pipe?.dispose();
    expect(memoryStats("cpu").live).toBe(live0);
  });
  return state;
}
