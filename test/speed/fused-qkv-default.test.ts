// Fused QKV on by default on CUDA (src/pipelines/pipeline.ts, ARCHITECTURE.md decision 10): a CUDA pipeline starts
// with fusedQkv(auto=true), a CPU one without it; its image matches the unfused one within float tolerance; fusing
// holds no extra device bytes (the projections' parameters are views of the fused weights; unfusing gives them
// their own copies back, bit for bit) and the memory plan predicts the fused run's peaks; the default one keeps
// its auto mark through an attention-kind change and steps aside for CPU offload (whose image then equals the
// unfused one bit for bit), while an explicit fuseQkvProjections() refuses offload by name.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { makeTinyModel } from "../../scripts/make-tiny-model.ts";
import { cudaInfo } from "../../src/backends/cuda/index.ts";
import { hasBackend } from "../../src/backends/registry.ts";
import { type AnyPipeline, loadPipeline } from "../../src/pipelines/index.ts";
import { memoryStats } from "../../src/tensor/index.ts";
import { measurePhases } from "../helpers/measured-phases.ts";

const GEN = { prompt: "a red circle", width: 64, height: 64, steps: 2, seed: 13, scheduler: "ddim" } as const;
/** Planned vs measured phase peaks (as test/offload/offload.test.ts: the planner's accuracy on the tiny models). */
const PLAN_TOLERANCE = 0.05;
let tmp = "";
beforeAll(async () => {
  tmp = mkdtempSync(path.join(tmpdir(), "bd-fused-default-"));
  await makeTinyModel(path.join(tmp, "sd15"), { preset: "sd15", seed: 17 });
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function pixels(pipe: AnyPipeline): Promise<Float32Array> {
  const r = await pipe.generate({ ...GEN, outputType: "tensor" });
  try {
    return r.tensor!.toFloat32Array();
  } finally {
    r.tensor!.dispose();
  }
}
const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("base64");
const fusedOf = (pipe: AnyPipeline) => pipe.features().find((f) => f.name === "fusedQkv");
const sum = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);
/** Every attention projection parameter's values (the ones fusing turns into views), by module path. */
function parameterBits(pipe: AnyPipeline): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of [pipe.unet, pipe.vae])
    for (const [name, p] of m.namedParameters())
      if (/\.to_[qkv]\.(weight|bias)$/.test(name)) {
        const a = p.value.toFloat32Array();
        out[name] = Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("base64");
      }
  return out;
}

test("on the CPU fused QKV is not on by default", async () => {
  const pipe = await loadPipeline(path.join(tmp, "sd15"), { device: "cpu", dtype: "float32" });
  try {
    expect(fusedOf(pipe)).toBeUndefined();
  } finally {
    pipe.dispose();
  }
});

describe.skipIf(!hasBackend("cuda") || !cudaInfo()?.emulated)("fused QKV by default on the emulated CUDA device", () => {
  test("listed as auto; ≈ the unfused image; no extra bytes (unfusing restores the weights bit for bit); the plan predicts the run", async () => {
    const live0 = memoryStats("cuda").live;
    const pipe = await loadPipeline(path.join(tmp, "sd15"), { device: "cuda", dtype: "float32" });
    try {
      expect(fusedOf(pipe)).toEqual({ name: "fusedQkv", options: { cacheCrossAttention: true, auto: true } });
      pipe.disableCudaGraphs(); // the plan models eager steps (a graph's pool is not in it)
      const fusedPlan = pipe.plan({ width: 64, height: 64 });
      const unfusedPlan = pipe.plan({ width: 64, height: 64, fusedQkv: false });
      const run = await measurePhases(pipe, "cuda", () => pipe.generate({ ...GEN }));
      expect(run.liveAfter).toBe(run.liveBefore);
      const foreign = run.liveBefore - sum(fusedPlan.componentWeights); // device bytes that are not this pipeline's
      for (const ph of fusedPlan.phases) {
        const measured = run.phases[ph.phase] - foreign;
        const err = Math.abs(ph.peak - measured) / measured;
        if (err > PLAN_TOLERANCE) throw new Error(`${ph.phase}: planned ${ph.peak} B, measured ${measured} B (${(100 * err).toFixed(1)} %)`);
      }
      const fused = await pixels(pipe);

      // the weights' bytes are the same fused or not: unfusing copies each parameter's rows out and frees the fused tensor
      const held = memoryStats("cuda").live;
      const weightsBefore = parameterBits(pipe);
      expect(pipe.unfuseQkvProjections()).toBe(true);
      expect(memoryStats("cuda").live).toBe(held);
      expect(parameterBits(pipe)).toEqual(weightsBefore);
      expect(fusedPlan.componentWeights).toEqual(unfusedPlan.componentWeights);
      expect(fusedPlan.componentWeights.unet).toBe(pipe.unet.parameterBytes());
      expect(fusedPlan.notes.join("\n")).toMatch(/fused QKV on \d+ attention modules/);
      expect(pipe.plan({ width: 64, height: 64 }).notes.join("\n")).not.toContain("fused QKV"); // follows the features

      // the same image up to the GEMMs' summation order over the concatenated weights (float32; measured ~1e-6)
      const unfused = await pixels(pipe);
      let diff = 0, max = 0;
      for (let i = 0; i < fused.length; i++) {
        diff = Math.max(diff, Math.abs(fused[i]! - unfused[i]!));
        max = Math.max(max, Math.abs(unfused[i]!));
      }
      console.log(`tiny sd15 on cuda: default fused QKV vs unfused image max|diff| ${diff.toExponential(2)} (max ${max.toFixed(3)})`);
      expect(diff).toBeLessThanOrEqual(1e-4 * max);
    } finally {
      pipe.dispose();
    }
    expect(memoryStats("cuda").live).toBe(live0);
  });

  test("the default one steps aside for CPU offload (then bit-identical to unfused); an explicit one refuses it", async () => {
    const live0 = memoryStats("cuda").live;
    const pipe = await loadPipeline(path.join(tmp, "sd15"), { device: "cuda", dtype: "float32" });
    try {
      pipe.setAttentionKind("naive");
      expect(fusedOf(pipe)?.options).toEqual({ cacheCrossAttention: true, auto: true }); // re-fused, still the default
      pipe.setAttentionKind("fused");
      pipe.unfuseQkvProjections();
      const unfused = bits(await pixels(pipe));
      pipe.fuseQkvProjections();
      expect(fusedOf(pipe)?.options).toEqual({ cacheCrossAttention: true }); // explicit now
      const before = pipe.features();
      expect(() => pipe.enableModelCpuOffload()).toThrow(/enableModelCpuOffload: fused QKV projections are active.*call unfuseQkvProjections\(\) first/);
      expect(() => pipe.enableSequentialCpuOffload()).toThrow(/enableSequentialCpuOffload: fused QKV projections are active/);
      expect(pipe.features()).toEqual(before); // nothing changed
      pipe.dispose();

      const fresh = await loadPipeline(path.join(tmp, "sd15"), { device: "cuda", dtype: "float32" });
      try {
        expect(fusedOf(fresh)?.options.auto).toBe(true);
        fresh.enableModelCpuOffload();
        expect(fusedOf(fresh)).toBeUndefined();
        expect(fresh.features().map((f) => f.name)).toContain("modelCpuOffload");
        expect(bits(await pixels(fresh))).toBe(unfused);
        fresh.disableOffload();
        expect(fusedOf(fresh)).toBeUndefined(); // a default that stepped aside does not come back by itself
      } finally {
        fresh.dispose();
      }
    } finally {
      pipe.dispose();
    }
    expect(memoryStats("cuda").live).toBe(live0);
  });
});
