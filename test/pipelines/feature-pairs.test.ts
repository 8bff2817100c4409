// Every pair of the pipeline's optional features, enabled in both orders, either works together or is refused at
// enable time with an error that names the conflict — nothing in between. Features: token merging, DeepCache,
// fused QKV, VAE slicing, VAE tiling, the naive attention kind, channels-last and (on a CUDA device: the emulated one
// in CI) model and sequential CPU offload and CUDA-graph steps (channels-last, fused QKV and CUDA graphs are on by default there:
// the pipeline starts without them here so that every pair is enabled explicitly; a replayed step is bit-identical, so
// graphs count as memory-only). For a working pair the run must give a finite image, features() must list both,
// and where one of the two only moves memory (offload, and slicing at batch 1) the image must equal the other
// feature's image alone bit for bit; after all pairs were disabled the plain image is back bit for bit. Model and sequential
// offload replace each other (the later one stays), as documented.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { makeTinyModel } from "../../scripts/make-tiny-model.ts";
import { hasBackend } from "../../src/backends/registry.ts";
import { type AnyPipeline, loadPipeline } from "../../src/pipelines/index.ts";
import { memoryStats } from "../../src/tensor/index.ts";

const GEN = { prompt: "a red circle", width: 64, height: 64, steps: 2, seed: 7, scheduler: "ddim" } as const;
const device = hasBackend("cuda") ? "cuda" : "cpu";

interface Feature {
  name: string; // as features() lists it
  enable: (p: AnyPipeline) => void;
  disable: (p: AnyPipeline) => void;
  /** Changes only where memory lives: outputs equal the run without it, bit for bit. */
  memoryOnly: boolean;
}
const FEATURES: Feature[] = [
  { name: "tokenMerging", enable: (p) => p.enableTokenMerging({ ratio: 0.5 }), disable: (p) => p.disableTokenMerging(), memoryOnly: false },
  { name: "deepCache", enable: (p) => p.enableDeepCache({ interval: 2 }), disable: (p) => p.disableDeepCache(), memoryOnly: false },
  { name: "fusedQkv", enable: (p) => p.fuseQkvProjections(), disable: (p) => p.unfuseQkvProjections(), memoryOnly: false },
  { name: "vaeSlicing", enable: (p) => p.enableVaeSlicing(), disable: (p) => p.disableVaeSlicing(), memoryOnly: true },
  { name: "vaeTiling", enable: (p) => p.enableVaeTiling({ tileSize: 32 }), disable: (p) => p.disableVaeTiling(), memoryOnly: false },
  { name: "attention", enable: (p) => p.setAttentionKind("naive"), disable: (p) => p.setAttentionKind("fused"), memoryOnly: false },
  // channels-last reorders the convolutions' and GroupNorms' summations: not bit for bit
  { name: "channelsLast", enable: (p) => p.enableChannelsLast(), disable: (p) => p.disableChannelsLast(), memoryOnly: false },
  ...(device === "cuda"
    ? [
        { name: "modelCpuOffload", enable: (p: AnyPipeline) => p.enableModelCpuOffload(), disable: (p: AnyPipeline) => p.disableOffload(), memoryOnly: true },
        { name: "sequentialCpuOffload", enable: (p: AnyPipeline) => p.enableSequentialCpuOffload(), disable: (p: AnyPipeline) => p.disableOffload(), memoryOnly: true },
        { name: "cudaGraphs", enable: (p: AnyPipeline) => p.enableCudaGraphs(), disable: (p: AnyPipeline) => p.disableCudaGraphs(), memoryOnly: true },
      ]
    : []),
];
/** Pairs that are refused, with the words the error must contain. */
const REFUSED: Record<string, RegExp> = {
  "fusedQkv+modelCpuOffload": /fused QKV and CPU offload do not combine/,
  "fusedQkv+sequentialCpuOffload": /fused QKV and CPU offload do not combine/,
  "cudaGraphs+deepCache": /DeepCache.*CUDA graphs and it do not combine|CUDA graphs are enabled .*DeepCache .*do not combine/,
  "cudaGraphs+tokenMerging": /ToMe token merging is active .*CUDA graphs and it do not combine|CUDA graphs are enabled .*ToMe builds .*do not combine/,
  "cudaGraphs+sequentialCpuOffload": /sequential .*offload.*CUDA graphs and it do not combine|CUDA graphs are enabled .*sequential offload.*do not combine/,
};
/** Pairs where the second replaces the first. */
const REPLACES = new Set(["modelCpuOffload+sequentialCpuOffload"]);
const key = (a: string, b: string) => [a, b].sort().join("+");

let tmp = "";
let pipe: AnyPipeline;
let live0 = 0;
const solo = new Map<string, string>(); // feature name ("" = plain) → image bits

async function image(): Promise<string> {
  const r = await pipe.generate({ ...GEN, outputType: "tensor" });
  try {
    const px = r.tensor!.toFloat32Array();
    expect(px.every(Number.isFinite)).toBe(true);
    return Buffer.from(px.buffer, px.byteOffset, px.byteLength).toString("base64");
  } finally {
    r.tensor!.dispose();
  }
}

describe(`feature pairs on ${device}`, () => {
  beforeAll(async () => {
    live0 = memoryStats(device).live;
    tmp = mkdtempSync(path.join(tmpdir(), "bd-pairs-"));
    await makeTinyModel(path.join(tmp, "sd15"), { preset: "sd15", seed: 831 });
    pipe = await loadPipeline(path.join(tmp, "sd15"), { device, dtype: "float32" }); // explicit: CUDA would default to bfloat16
    // channels-last and CUDA graphs are on by default on CUDA only; the pairs start from a pipeline without features
    expect(pipe.features().map((f) => f.name).sort()).toEqual(device === "cuda" ? ["channelsLast", "cudaGraphs", "fusedQkv"] : []);
    if (device === "cuda") {
      expect(pipe.features().find((f) => f.name === "cudaGraphs")?.options).toEqual({ auto: true });
      expect(pipe.features().find((f) => f.name === "fusedQkv")?.options).toEqual({ cacheCrossAttention: true, auto: true });
      pipe.disableCudaGraphs();
      pipe.disableChannelsLast();
      pipe.unfuseQkvProjections();
    }
  });
  afterAll(() => {
    pipe?.dispose();
    expect(memoryStats(device).live).toBe(live0);
    rmSync(tmp, { recursive: true, force: true });
  });

  // runs first (tests run in order): the plain image and each feature's alone, which the pairs compare with
  test("each feature alone changes the image only where it computes differently", async () => {
    solo.set("", await image());
    for (const f of FEATURES) {
      f.enable(pipe);
      solo.set(f.name, await image());
      f.disable(pipe);
      expect(pipe.features()).toEqual([]);
    }
    for (const f of FEATURES) if (f.memoryOnly) expect(solo.get(f.name)).toBe(solo.get(""));
  });

  for (let i = 0; i < FEATURES.length; i++)
    for (let j = 0; j < FEATURES.length; j++) {
      if (i === j) continue;
      const a = FEATURES[i]!;
      const b = FEATURES[j]!;
      test(`${a.name} then ${b.name}`, async () => {
        a.enable(pipe);
        try {
          const refused = REFUSED[key(a.name, b.name)];
          if (refused) {
            const before = pipe.features();
            expect(() => b.enable(pipe)).toThrow(refused);
            expect(pipe.features()).toEqual(before); // nothing changed
            return;
          }
          b.enable(pipe);
          const names = pipe.features().map((f) => f.name);
          if (REPLACES.has(key(a.name, b.name))) {
            expect(names).toEqual([b.name]);
            expect(await image()).toBe(solo.get(b.name)!);
            return;
          }
          expect(names.sort()).toEqual([a.name, b.name].sort());
          const img = await image();
          if (a.memoryOnly) expect(img).toBe(solo.get(b.name)!);
          if (b.memoryOnly) expect(img).toBe(solo.get(a.name)!);
        } finally {
          b.disable(pipe);
          a.disable(pipe);
        }
        expect(pipe.features()).toEqual([]);
      });
    }

  test("after every pair was enabled and disabled, the plain image is back bit for bit", async () => {
    expect(await image()).toBe(solo.get("")!);
  });
});
