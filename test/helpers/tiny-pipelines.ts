// Tiny random SD 1.x and SDXL pipelines for a test file (scripts/make-tiny-model.ts): written to a temp
// folder in beforeAll, loaded, and in afterAll disposed with the check that CPU live bytes are back at
// the start, then the folder removed. Each file passes its own seeds so the files draw different weights.

import { afterAll, beforeAll, expect } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { makeTinyModel } from "../../scripts/make-tiny-model.ts";
import { StableDiffusionPipeline, StableDiffusionXLPipeline } from "../../src/pipelines/index.ts";
import { memoryStats } from "../../src/tensor/index.ts";

export interface TinyPipelines {
  /** The temp folder: sd15/ and sdxl/ model folders live here; tests may add their own files. */
  readonly tmp: string;
  readonly sd: StableDiffusionPipeline;
  readonly xl: StableDiffusionXLPipeline;
}

/** Register the beforeAll/afterAll pair; the returned object's fields are set once beforeAll ran. */
export function useTinyPipelines(prefix: string, seeds: { sd15: number; sdxl: number }): TinyPipelines {
  const state = {} as { tmp: string; sd: StableDiffusionPipeline; xl: StableDiffusionXLPipeline };
  let live0 = 0;
  beforeAll(async () => {
    state.tmp = mkdtempSync(path.join(tmpdir(), `bd-${prefix}-`));
    live0 = memoryStats("cpu").live;
    await makeTinyModel(path.join(state.tmp, "sd15"), { preset: "sd15", seed: seeds.sd15 });
    await makeTinyModel(path.join(state.tmp, "sdxl"), { preset: "sdxl", seed: seeds.sdxl });
    state.sd = await StableDiffusionPipeline.fromPretrained(path.join(state.tmp, "sd15"));
    state.xl = await StableDiffusionXLPipeline.fromPretrained(path.join(state.tmp, "sdxl"));
  });
  afterAll(() => {
    state.sd?.dispose();
    state.xl?.dispose();
    expect(memoryStats("cpu").live).toBe(live0);
    rmSync(state.tmp, { recursive: true, force: true });
  });
  return state;
}
