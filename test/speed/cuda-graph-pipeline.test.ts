// The cudaGraphs pipeline feature (src/pipelines/cuda-graph-feature.ts): on the CPU an explicit enableCudaGraphs()
// is an error naming the device and nothing is on by default; on CUDA (the emulated device in CI) it is on by
// default for the SD 1.5 and SDXL tiny pipelines, every denoising step is one graph launch (the first captures too), the images
// are bit-identical to the eager run's, the graph is gone after each run (live bytes back to the start), a default-on
// cudaGraphs steps aside for DeepCache while an explicit one refuses it by name, and model offload combines.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { makeTinyModel } from "../../scripts/make-tiny-model.ts";
import { cudaGraphLaunches, cudaInfo } from "../../src/backends/cuda/index.ts";
import { hasBackend } from "../../src/backends/registry.ts";
import { type AnyPipeline, loadPipeline } from "../../src/pipelines/index.ts";
import { cudaGraphsOf } from "../../src/speed/index.ts";
import { memoryStats } from "../../src/tensor/index.ts";

const GEN = { prompt: "a red circle", width: 64, height: 64, steps: 3, seed: 11, scheduler: "ddim" } as const;
let tmp = "";
beforeAll(async () => {
  tmp = mkdtempSync(path.join(tmpdir(), "bd-graphs-"));
  for (const preset of ["sd15", "sdxl"] as const) await makeTinyModel(path.join(tmp, preset), { preset, seed: 5 });
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function image(pipe: AnyPipeline): Promise<string> {
  const r = await pipe.generate({ ...GEN, outputType: "tensor" });
  try {
    const px = r.tensor!.toFloat32Array();
    return Buffer.from(px.buffer, px.byteOffset, px.byteLength).toString("base64");
  } finally {
    r.tensor!.dispose();
  }
}

test("on the CPU: not on by default, and enableCudaGraphs() names the device", async () => {
  const pipe = await loadPipeline(path.join(tmp, "sd15"), { device: "cpu", dtype: "float32" });
  try {
    expect(pipe.features()).toEqual([]);
    expect(() => pipe.enableCudaGraphs()).toThrow(/enableCudaGraphs: CUDA graphs capture CUDA work; this pipeline runs on "cpu"/);
    expect(pipe.features()).toEqual([]);
  } finally {
    pipe.dispose();
  }
});

/** The pipeline's features but channels-last and fused QKV, which are on by default on CUDA too and combine with graphs. */
const graphFeatures = (pipe: { features(): { name: string; options: Record<string, unknown> }[] }) =>
  pipe.features().filter((f) => f.name !== "channelsLast" && f.name !== "fusedQkv");

describe.skipIf(!hasBackend("cuda") || !cudaInfo()?.emulated)("cudaGraphs on the emulated CUDA device", () => {
  for (const preset of ["sd15", "sdxl"] as const)
    test(`${preset}: on by default, one launch per step, bit-identical images, nothing left after the run`, async () => {
      const live = memoryStats("cuda").live;
      const pipe = await loadPipeline(path.join(tmp, preset), { device: "cuda", dtype: "float32" });
      try {
        expect(graphFeatures(pipe)).toEqual([{ name: "cudaGraphs", options: { auto: true } }]);
        const weights = memoryStats("cuda").live;
        const before = cudaGraphLaunches()!;
        const graphed = await image(pipe);
        const h = cudaGraphsOf(pipe.unet)!;
        expect(h.stats.fallbacks).toEqual([]);
        expect(cudaGraphLaunches()! - before).toBe(GEN.steps); // one UNet call per step (CFG rows batched): one launch each
        expect(h.stats).toMatchObject({ captures: 1, replays: GEN.steps, eager: 0 });
        expect(h.nodes).toBeNull(); // released after the denoising loop
        expect(memoryStats("cuda").live).toBe(weights);
        await image(pipe); // a second run captures again (the graph lives for one loop)
        expect(h.stats.captures).toBe(2);
        pipe.disableCudaGraphs();
        expect(graphFeatures(pipe)).toEqual([]);
        expect(await image(pipe)).toBe(graphed);
        pipe.enableCudaGraphs();
        expect(graphFeatures(pipe)).toEqual([{ name: "cudaGraphs", options: {} }]);
        expect(await image(pipe)).toBe(graphed);
      } finally {
        pipe.dispose();
      }
      expect(memoryStats("cuda").live).toBe(live);
    });

  test("a default-on cudaGraphs steps aside for DeepCache; an explicit one refuses them by name; model offload combines", async () => {
    const live = memoryStats("cuda").live;
    const pipe = await loadPipeline(path.join(tmp, "sd15"), { device: "cuda", dtype: "float32" });
    try {
      pipe.unfuseQkvProjections(); // the default fused QKV steps aside for the model offload below (GEMM order differs)
      const plain = await image(pipe);
      pipe.enableDeepCache({ interval: 2 });
      expect(graphFeatures(pipe).map((f) => f.name)).toEqual(["deepCache"]);
      expect(() => pipe.enableCudaGraphs()).toThrow(/enableCudaGraphs: DeepCache is active .*CUDA graphs and it do not combine, disable it first/);
      pipe.disableDeepCache();
      pipe.enableCudaGraphs();
      expect(() => pipe.enableDeepCache()).toThrow(/enableDeepCache: CUDA graphs are enabled \(enableCudaGraphs\(\)\) and DeepCache .*call disableCudaGraphs\(\) first/);
      expect(() => pipe.enableTokenMerging({ ratio: 0.5, useRand: false })).toThrow(/enableTokenMerging: CUDA graphs are enabled .*ToMe builds its partition indices/);
      expect(() => pipe.enableSequentialCpuOffload()).toThrow(/enableSequentialCpuOffload: CUDA graphs are enabled .*sequential offload uploads weights inside the step's hooks/);
      expect(graphFeatures(pipe).map((f) => f.name)).toEqual(["cudaGraphs"]);
      pipe.enableModelCpuOffload();
      const before = cudaGraphLaunches()!;
      expect(await image(pipe)).toBe(plain);
      expect(cudaGraphLaunches()! - before).toBe(GEN.steps);
      expect(await image(pipe)).toBe(plain); // the UNet moved off and back between runs: captured again, not replayed stale
      expect(cudaGraphsOf(pipe.unet)!.stats).toMatchObject({ captures: 2, fallbacks: [] });
    } finally {
      pipe.dispose();
    }
    expect(memoryStats("cuda").live).toBe(live);
  });
});
