// Fused QKV projections. On the golden UNets (SD 1.5, SD 2.1 — which has use_linear_projection and
// upcast_attention — and SDXL, read as test/models/unet.test.ts reads them): fusing equals the unfused output
// within 5e-6·max|out| (measured 4–6e-7) and still meets the golden 1e-5·max|ref| (the fused GEMM has a wider N, so OpenBLAS may
// block and sum the float32 products in another order: a few ulp per projection, nothing more); the
// cross-attention K/V cache is bit-identical to recomputing (same GEMM on the same inputs), and a counter shows
// it computes K/V once per encoder tensor and per module while later calls reuse it; unfusing restores the
// default processors bit for bit and frees the fused weights. On the tiny pipelines: pipe.fuseQkvProjections
// is listed by features(), follows pipe.setAttentionKind() (re-fused with the new kind), computes the text K/V once per generate() (CFG batch: one tensor every step), the
// images equal the unfused ones within float rounding (8-bit values within 1), the cached and uncached fused
// images are identical, and live bytes return after each run.

import { describe, expect, test } from "bun:test";
import path from "node:path";
import { UNet2DConditionModel } from "../../src/models/unet/index.ts";
import { Attention, AttnProcessorDefault } from "../../src/nn/attention.ts";
import { FusedQkvProcessor, deepCacheOf, fuseQkvProjections, fusedQkvOf, unfuseQkvProjections } from "../../src/speed/index.ts";
import { type Tensor, memoryStats, tidy } from "../../src/tensor/index.ts";
import { goldenCases, goldenTensor, maxError, openGolden } from "../helpers/golden.ts";
import { goldenDir } from "../helpers/paths.ts";
import { useTinyPipelines } from "../helpers/tiny-pipelines.ts";

const f32 = (t: Tensor) => t.toTypedArray() as Float32Array;

describe("fused QKV on the golden UNets", () => {
  for (const entry of goldenCases("unet")) {
    test(`${entry.file}: fused ≈ unfused (5e-6·max) and golden (1e-5·max|ref|); K/V cache bit-identical and counted; unfuse restores`, () => {
      const live0 = memoryStats("cpu").live;
      const model = UNet2DConditionModel.fromPretrained(path.join(goldenDir, entry.meta.model!));
      const f = openGolden(entry.file);
      const get = (n: string) => (entry.tensors[`case0/${n}`] ? goldenTensor(f, `case0/${n}`) : null);
      const [sample, timestep, ehs, ref] = [get("sample")!, get("timestep")!, get("encoder_hidden_states")!, get("out")!];
      const extra = { textEmbeds: get("text_embeds"), timeIds: get("time_ids") };
      const run = () => tidy(() => f32(model.call(sample, timestep, ehs, extra)));
      const attn = model.namedModules().filter(([, m]) => m instanceof Attention) as [string, Attention][];
      const cross = attn.filter(([, m]) => m.isCrossAttention).length;

      const plain = run();
      const h = fuseQkvProjections(model, { cacheCrossAttention: false });
      expect(h.fused.length).toBe(attn.length);
      expect(attn.every(([, m]) => m.processor instanceof FusedQkvProcessor)).toBe(true);
      const selfP = attn.find(([, m]) => !m.isCrossAttention)![1].processor as FusedQkvProcessor;
      expect(selfP.weight.shape).toEqual([3 * selfP.inner, attn.find(([, m]) => !m.isCrossAttention)![1].queryDim]);
      const uncached = run();
      const { maxAbs, maxRef } = maxError(uncached, plain);
      console.log(`${entry.file}: fused vs unfused max|diff| ${maxAbs.toExponential(2)} (max|out| ${maxRef.toFixed(3)}); ${attn.length} attention modules, ${cross} cross`);
      expect(maxAbs).toBeLessThanOrEqual(5e-6 * maxRef); // float32 GEMM reordering only: a few ulp per projection, carried through the net (measured ≤ 6e-7·max)
      const g = maxError(uncached, f32(ref));
      expect(g.maxAbs).toBeLessThanOrEqual(1e-5 * g.maxRef); // the golden single-module tolerance still holds
      expect(h.stats().kvComputed).toBe(cross);
      expect(h.stats().kvReused).toBe(0);

      const c = fuseQkvProjections(model); // replaces: cache on
      expect(h.processors.every((p) => p.weight.isDisposed)).toBe(true); // the replaced fusion freed its weights
      const first = run();
      const second = run(); // same encoder tensor: K/V from the cache
      expect(first).toEqual(uncached); // bit for bit: the cache holds what recomputing gives
      expect(second).toEqual(uncached);
      expect(c.stats()).toMatchObject({ kvComputed: cross, kvReused: cross });
      expect(c.processors.reduce((n, p) => n + p.cachedEntries, 0)).toBe(cross);

      const ehs2 = ehs.clone(); // another tensor (another run): computed again
      tidy(() => void model.call(sample, timestep, ehs2, extra));
      expect(c.stats()).toMatchObject({ kvComputed: 2 * cross, kvReused: cross });
      ehs2.dispose();
      c.clear(); // drops the disposed tensor's entries, keeps the live one's
      expect(c.processors.reduce((n, p) => n + p.cachedEntries, 0)).toBe(cross);

      expect(unfuseQkvProjections(model)).toBe(true);
      expect(unfuseQkvProjections(model)).toBe(false);
      expect(fusedQkvOf(model)).toBeNull();
      expect(attn.every(([, m]) => m.processor instanceof AttnProcessorDefault)).toBe(true);
      expect(run()).toEqual(plain);
      for (const t of [sample, timestep, ehs, ref, ...Object.values(extra)]) t?.dispose();
      model.dispose();
      expect(memoryStats("cpu").live).toBe(live0); // fused weights and caches freed
    });
  }

  test("modules with another processor are left alone and keep it", () => {
    const entry = goldenCases("unet")[0]!;
    const model = UNet2DConditionModel.fromPretrained(path.join(goldenDir, entry.meta.model!), { attention: "naive" });
    const other = { name: "recording", process: new AttnProcessorDefault().process };
    const [firstPath, first] = model.namedModules().find(([, m]) => m instanceof Attention) as [string, Attention];
    first.setProcessor(other);
    const h = fuseQkvProjections(model);
    expect(h.skipped).toEqual([firstPath]);
    expect(first.processor).toBe(other);
    expect(h.processors.every((p) => p.kind === "naive")).toBe(true); // the replaced default's kind
    h.remove();
    model.dispose();
  });
});

describe("pipe.fuseQkvProjections on the tiny pipelines", () => {
  const tiny = useTinyPipelines("fused-qkv", { sd15: 71, sdxl: 72 });
  for (const which of ["sd", "xl"] as const) {
    test(`${which}: features(); text K/V once per generate(); ≈ unfused images; cache on = off; live bytes return`, async () => {
      const pipe = tiny[which];
      const gen = async () => (await pipe.generate({ prompt: "a red circle", seed: 3, steps: 4, width: 64, height: 64, scheduler: "ddim", outputType: "tensor" })).tensor!;
      const crossCount = pipe.unet.namedModules().filter(([, m]) => m instanceof Attention && m.isCrossAttention).length;
      const plainT = await gen();
      const plain = f32(plainT);
      plainT.dispose();

      pipe.fuseQkvProjections();
      expect(pipe.features()).toEqual([{ name: "fusedQkv", options: { cacheCrossAttention: true } }]);
      const h = fusedQkvOf(pipe.unet)!;
      const live = memoryStats("cpu").live;
      const fusedT = await gen();
      const fused = f32(fusedT);
      fusedT.dispose();
      expect(memoryStats("cpu").live).toBe(live); // the run's K/V cache was freed when generate() ended
      // DDIM: one UNet call per step (CFG batched): K/V computed once per cross module, reused in the 3 later steps
      expect(h.stats()).toMatchObject({ kvComputed: crossCount, kvReused: 3 * crossCount });
      const { maxAbs } = maxError(fused, plain);
      console.log(`tiny ${which}: fused vs unfused image max|diff| ${maxAbs.toExponential(2)}`);
      expect(maxAbs).toBeLessThanOrEqual(1 / 255); // GEMM reordering (≈1e-6 relative) may move an 8-bit value by one step at most
      expect(fusedQkvOf(pipe.vae)).toBe(h); // the VAE's attention is fused too

      pipe.setAttentionKind("naive"); // reaches the fused processors: the pipeline unfuses and fuses again
      const kinds = () => new Set([...pipe.unet.attnProcessors().values(), ...pipe.vae.attnProcessors().values()].map((p) => (p instanceof FusedQkvProcessor ? p.kind : "unfused")));
      expect(kinds()).toEqual(new Set(["naive"]));
      expect(pipe.features().map((f) => f.name)).toEqual(["attention", "fusedQkv"]);
      pipe.setAttentionKind("fused");
      expect(kinds()).toEqual(new Set(["fused"]));
      expect(pipe.features().map((f) => f.name)).toEqual(["fusedQkv"]);

      pipe.fuseQkvProjections({ cacheCrossAttention: false });
      const noCacheT = await gen();
      expect(f32(noCacheT)).toEqual(fused); // bit for bit
      noCacheT.dispose();
      expect(fusedQkvOf(pipe.unet)!.stats()).toMatchObject({ kvComputed: 4 * crossCount, kvReused: 0 });

      expect(pipe.unfuseQkvProjections()).toBe(true);
      expect(pipe.unfuseQkvProjections()).toBe(false);
      expect(pipe.features()).toEqual([]);
      const againT = await gen();
      expect(f32(againT)).toEqual(plain);
      againT.dispose();
    }, 60_000);
  }

  test("sd: with DeepCache as well: both listed, both apply (K/V once per run, full passes ⌈steps/interval⌉), both come off bit for bit", async () => {
    const pipe = tiny.sd;
    const gen = async () => (await pipe.generate({ prompt: "a blue square", seed: 5, steps: 5, width: 64, height: 64, scheduler: "ddim", outputType: "tensor" })).tensor!;
    const crossCount = pipe.unet.namedModules().filter(([, m]) => m instanceof Attention && m.isCrossAttention).length;
    const plainT = await gen();
    const plain = f32(plainT);
    plainT.dispose();
    const live = memoryStats("cpu").live;
    pipe.enableDeepCache({ interval: 2 });
    pipe.fuseQkvProjections();
    expect(pipe.features().map((f) => f.name)).toEqual(["deepCache", "fusedQkv"]);
    const both = await gen();
    both.dispose();
    expect(deepCacheOf(pipe.unet)!.stats).toEqual({ calls: 5, fullPasses: 3 });
    const s = fusedQkvOf(pipe.unet)!.stats();
    // shallow steps skip some cross-attention modules, so reuse counts depend on the branch: computed once each
    expect(s.kvComputed).toBe(crossCount);
    expect(s.kvReused).toBeGreaterThan(0);
    pipe.unfuseQkvProjections();
    pipe.disableDeepCache();
    expect(memoryStats("cpu").live).toBe(live); // fused weights and every cache freed
    const again = await gen();
    expect(f32(again)).toEqual(plain);
    again.dispose();
  }, 60_000);
});
