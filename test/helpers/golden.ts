// Golden data access for tests: the index of the golden folder (every case, never a
// hard-coded list), its files' tensors as Tensors, and error reporting relative to the
// reference's magnitude.

import path from "node:path";
import { readFileSync } from "node:fs";
import { openSafetensors, type SafetensorsFile } from "../../src/io/safetensors.ts";
import { parsePythonJson } from "../../src/io/python-json.ts";
import { entryToTensor } from "../../src/io/tensor-io.ts";
import type { Tensor } from "../../src/tensor/tensor.ts";
import { goldenDir } from "./paths.ts";

export interface GoldenEntry {
  file: string;
  meta: Record<string, unknown> & { component?: string; model?: string };
  tensors: Record<string, { dtype: string; shape: number[] }>;
}

let cached: GoldenEntry[] | null = null;

/** Every file listed in the golden folder's index.json. */
export function goldenIndex(): GoldenEntry[] {
  if (!cached) {
    const index = parsePythonJson(readFileSync(path.join(goldenDir, "index.json"), "utf8")) as { files: GoldenEntry[] };
    cached = index.files;
  }
  return cached;
}

/** The index entries whose file lies under `folder/` (e.g. "unet", "schedulers"). */
export function goldenCases(folder: string): GoldenEntry[] {
  return goldenIndex().filter((e) => e.file.startsWith(`${folder}/`));
}

export function openGolden(file: string): SafetensorsFile {
  return openSafetensors(path.join(goldenDir, file));
}

/** A golden tensor as a CPU Tensor (float32/int64 as stored, or converted to `dtype`). */
export function goldenTensor(f: SafetensorsFile, name: string, dtype?: "float32"): Tensor {
  return entryToTensor(f.get(name), dtype ? { dtype } : {});
}

/** Max |a - b| and max |b| over two equally long arrays. */
export function maxError(actual: ArrayLike<number>, expected: ArrayLike<number>): { maxAbs: number; maxRef: number } {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} vs ${expected.length}`);
  let maxAbs = 0;
  let maxRef = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i]! - expected[i]!);
    maxAbs = Number.isNaN(d) ? Infinity : Math.max(maxAbs, d);
    maxRef = Math.max(maxRef, Math.abs(expected[i]!));
  }
  return { maxAbs, maxRef };
}
