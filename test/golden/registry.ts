// The golden-driver registry: which test file drives which index.json entries (selected by folder or
// component, never by a fixed list of files), and which entries are pending until a feature lands.
// Driver files get their entries from here (goldenDriven(import.meta.path)), so what a file declares
// is what it runs; test/golden/coverage.test.ts fails when an index entry is driven by no file.

import { test } from "bun:test";
import path from "node:path";
import { type GoldenEntry, goldenIndex } from "../helpers/golden.ts";
import { projectRoot } from "../helpers/paths.ts";

export interface GoldenDriver {
  /** The test file, relative to the project root. */
  file: string;
  /** The selector in words (shown in coverage reports). */
  selects: string;
  match: (e: GoldenEntry) => boolean;
  /** "values": compares the entry's tensors with our outputs; "format": only reads and validates the file. */
  checks: "values" | "format";
  /**
   * Text the file's source must contain: how it obtains its entries. Files owned elsewhere that do not use
   * the registry yet name their own selector call here.
   */
  marker?: string;
  /** Runs only with a CUDA device (a real GPU or the emulated one); an extra check, not primary coverage. */
  device?: "cuda";
}

export interface PendingGolden {
  selects: string;
  match: (e: GoldenEntry) => boolean;
  /** The issue whose feature these entries wait for. */
  reason: string;
}

const inFolder = (folder: string) => (e: GoldenEntry) => e.file.startsWith(`${folder}/`);
const TEXT_ENCODERS = new Set(["CLIPTextModel", "CLIPTextModelWithProjection"]);
const isTextEncoder = (e: GoldenEntry) => TEXT_ENCODERS.has(e.meta.component ?? "");
/** tome/* entries by what tomesd produced them: direct matching calls, or patched-UNet outputs. */
const isTomeMatching = (e: GoldenEntry) => inFolder("tome")(e) && (e.meta.component ?? "").startsWith("tomesd.merge.");
const isTomeUNet = (e: GoldenEntry) => inFolder("tome")(e) && (e.meta.component ?? "").startsWith("tomesd.apply_patch");

/** The marker every registry-driven file contains. */
export const REGISTRY_MARKER = "goldenDriven(import.meta.path)";

export const GOLDEN_DRIVERS: readonly GoldenDriver[] = [
  { file: "test/models/unet.test.ts", selects: "unet/*", match: inFolder("unet"), checks: "values" },
  { file: "test/models/clip.test.ts", selects: "component CLIPTextModel | CLIPTextModelWithProjection", match: isTextEncoder, checks: "values" },
  { file: "test/models/vae.test.ts", selects: "vae/*", match: inFolder("vae"), checks: "values" },
  { file: "test/pipelines/golden.test.ts", selects: "pipeline/*", match: inFolder("pipeline"), checks: "values" },
  // owned by the scheduler work; it selects its entries itself
  { file: "test/schedulers/golden.test.ts", selects: "schedulers/*", match: inFolder("schedulers"), checks: "values", marker: 'goldenCases("schedulers")' },
  {
    file: "test/cuda/models.test.ts",
    selects: "unet/*, text encoders, vae/* on the CUDA device",
    match: (e) => inFolder("unet")(e) || inFolder("vae")(e) || isTextEncoder(e),
    checks: "values",
    marker: 'goldenCases("unet")',
    device: "cuda",
  },
  { file: "test/tome/bipartite.test.ts", selects: "tome/* of component tomesd.merge.*", match: isTomeMatching, checks: "values" },
  { file: "test/tome/unet.test.ts", selects: "tome/* of component tomesd.apply_patch*", match: isTomeUNet, checks: "values" },
  { file: "test/io/safetensors.test.ts", selects: "every entry (names, dtypes, shapes, metadata)", match: () => true, checks: "format" },
];

export const PENDING_GOLDEN: readonly PendingGolden[] = [];

/** The index entries the registered test file `file` (its import.meta.path) drives. */
export function goldenDriven(file: string): GoldenEntry[] {
  const rel = path.relative(projectRoot, file).split(path.sep).join("/");
  const driver = GOLDEN_DRIVERS.find((d) => d.file === rel);
  if (!driver) throw new Error(`${rel} is not registered in test/golden/registry.ts (GOLDEN_DRIVERS)`);
  return goldenIndex().filter(driver.match);
}

/** The pending reason of an entry, or null when it is not pending. */
export function pendingReason(e: GoldenEntry): string | null {
  return PENDING_GOLDEN.find((p) => p.match(e))?.reason ?? null;
}

/** Marks golden data that waits for a feature: a visible todo (never a pass) naming the issue. */
export function pendingGolden(title: string, reason: string): void {
  test.todo(`${title} — pending until the ${reason} lands`);
}
