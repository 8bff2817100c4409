// Checks of `bun-diffusion generate` that need the model folder but no weights, run before the
// model loads: the step count against the scheduler that will run (built from the model's
// scheduler_config.json, or by --scheduler name, and asked to set its timesteps: its own limits,
// not a copy of them), and the seed of every image of a batch (seed, seed+1, … as A1111 numbers
// them, so the seed in a file name reproduces that image alone), and the --tome ratio.

import { type ModelIndex, readSchedulerConfig } from "../pipelines/index.ts";
import { type Scheduler, schedulerByName, schedulerFromConfig } from "../schedulers/index.ts";
import { resolveTokenMergingOptions } from "../tome/index.ts";

/** An option rejected by the CLI before loading; the message names the flag. */
export class CliOptionError extends Error {
  override name = "CliOptionError";
}

/** generate()'s default step count (options.ts). */
const DEFAULT_STEPS = 50;

/** Throw a CliOptionError naming --steps when the scheduler of this run cannot take `steps` steps. */
export function checkSteps(index: ModelIndex, steps: number | undefined, scheduler: string | undefined): void {
  const n = steps ?? DEFAULT_STEPS;
  let s: Scheduler;
  try {
    const config = readSchedulerConfig(index);
    s = scheduler !== undefined ? schedulerByName(scheduler, { ...config }) : schedulerFromConfig({ ...config });
  } catch {
    return; // an unusable scheduler config is reported by the loader, with its own fix
  }
  try {
    s.setTimesteps(n);
  } catch (e) {
    const which = scheduler !== undefined ? `--scheduler ${scheduler}` : `the model's scheduler (${s.className})`;
    throw new CliOptionError(
      `--steps ${n}${steps === undefined ? " (the default)" : ""} is not allowed by ${which}: ${(e as Error).message}; pick a step count it allows, or another --scheduler`,
    );
  } finally {
    s.dispose();
  }
}

/** Throw a CliOptionError naming --tome when Token Merging would refuse the ratio (the library's own check). */
export function checkTome(ratio: number | undefined): void {
  if (ratio === undefined) return;
  try {
    resolveTokenMergingOptions({ ratio });
  } catch (e) {
    throw new CliOptionError(`--tome ${ratio}: ${(e as Error).message.replace(/^token merging: /, "")}`);
  }
}

/** Largest seed the library takes. */
const MAX_SEED = Number.MAX_SAFE_INTEGER;

/** The seed option for generate(): one seed for one image, else one per image (base, base+1, …). */
export function batchSeeds(seed: number | number[] | undefined, batch: number, random: () => number = randomSeed): number | number[] {
  if (Array.isArray(seed)) {
    if (seed.length !== batch) throw new CliOptionError(`--seed: has ${seed.length} seeds for ${batch} image(s); give one seed or one per image`);
    return seed;
  }
  const base = seed ?? random();
  if (batch === 1) return base;
  if (base + batch - 1 > MAX_SEED) throw new CliOptionError(`--seed ${base}: with --batch ${batch} the last image's seed would pass ${MAX_SEED}; pick a smaller seed`);
  return Array.from({ length: batch }, (_, i) => base + i);
}

/** A random 32-bit seed, as A1111 draws. */
export function randomSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0]!;
}
