// The automatic memory strategy (offload-choice.ts) on the real-size SD 1.5 plans, and out-of-memory errors that
// say what would fit: refused before the run on an emulated device with a small memory limit
// (BD_CUDA_EMU_MEMORY's machinery, ffi/cuda/emu-memory.ts), and raised by the allocator mid-run (the limit lowered
// from the last step's callback) with the phase named.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseByteSize, setEmulatedMemoryLimit } from "../../ffi/cuda/index.ts";
import { makeTinyModel } from "../../scripts/make-tiny-model.ts";
import { cudaEmptyCache, cudaInfo } from "../../src/backends/cuda/index.ts";
import { hasBackend } from "../../src/backends/registry.ts";
import { OutOfMemoryError } from "../../src/core/errors.ts";
import { chooseOffload, describeCandidate } from "../../src/pipelines/offload-choice.ts";
import { type AnyPipeline, MetaModels, type PlanRequest, knownPlanModels, loadPipeline, planMemory } from "../../src/pipelines/index.ts";
import { memoryStats } from "../../src/tensor/index.ts";

describe("chooseOffload on SD 1.5 at 1024² (float16)", () => {
  const m = new MetaModels(knownPlanModels("sd15", "float16"));
  afterAll(() => m.dispose());
  const plan = (o: Partial<PlanRequest>) => planMemory(m, { width: 1024, height: 1024, ...o });
  const peak = (offload: PlanRequest["offload"], vaeTiling = false) => plan({ offload, vaeTiling }).peak;

  test("the cheapest configuration that fits, in order none → model → sequential, tiling only when decode is over", () => {
    const none = peak("none");
    const model = peak("model");
    const seq = peak("sequential");
    expect(chooseOffload(plan, none, { vaeTiling: false })).toMatchObject({ offload: "none", vaeTiling: false, peak: none });
    const between = Math.floor((none + model) / 2);
    const c = chooseOffload(plan, between, { vaeTiling: false })!;
    expect(c.offload === "model" || (c.offload === "none" && c.vaeTiling)).toBe(true);
    expect(c.peak).toBeLessThanOrEqual(between);
    expect(c.reason).toContain(describeCandidate(c));
    // every configuration tried before the choice needs more than the budget
    for (const t of c.tried.slice(0, -1)) expect(t.peak).toBeGreaterThan(between);
    const small = chooseOffload(plan, seq, { vaeTiling: false })!;
    expect(small.peak).toBeLessThanOrEqual(seq);
    expect(["sequential", "model", "none"]).toContain(small.offload);
    expect(chooseOffload(plan, 1 << 20, { vaeTiling: false })).toBeNull();
    expect(chooseOffload(plan, peak("sequential", true), { vaeTiling: false })).not.toBeNull();
  });
});

test("parseByteSize reads sizes and names the variable on bad input", () => {
  expect(parseByteSize("2GiB")).toBe(2 * 2 ** 30);
  expect(parseByteSize("512 MiB")).toBe(512 * 2 ** 20);
  expect(parseByteSize("1.5GB")).toBe(1.5e9);
  expect(parseByteSize("4096")).toBe(4096);
  for (const bad of ["", "two GiB", "-1GiB", "5 parsecs", "0"]) expect(() => parseByteSize(bad, "BD_CUDA_EMU_MEMORY")).toThrow(/BD_CUDA_EMU_MEMORY: .* is not a size/);
});

describe.skipIf(!hasBackend("cuda") || !cudaInfo()?.emulated)("out of memory on the emulated device", () => {
  let tmp = "";
  let pipe: AnyPipeline;
  let live0 = 0;
  beforeAll(async () => {
    live0 = memoryStats("cuda").live;
    tmp = mkdtempSync(path.join(tmpdir(), "bd-oom-"));
    await makeTinyModel(path.join(tmp, "sd15"), { preset: "sd15", seed: 821 });
    pipe = await loadPipeline(path.join(tmp, "sd15"), { device: "cuda", dtype: "float32" }); // explicit: CUDA would default to bfloat16
    // the default fused QKV steps aside for offload and reorders the q/k/v GEMMs: unfused, offload's image is bit-identical
    pipe.unfuseQkvProjections();
  });
  afterAll(() => {
    setEmulatedMemoryLimit(null);
    pipe?.dispose();
    expect(memoryStats("cuda").live).toBe(live0);
    rmSync(tmp, { recursive: true, force: true });
  });
  /** Limit the emulated device to what is live now plus `extra` bytes (the allocator's cache emptied first, so
   * the emulated cudart holds exactly the live blocks in their size classes). */
  const limitTo = (extra: number) => {
    cudaEmptyCache();
    setEmulatedMemoryLimit(memoryStats("cuda").reserved + extra);
  };

  test("refused before the run: the message names what fits", async () => {
    const size = 256;
    const plain = pipe.plan({ width: size, height: size });
    const tiled = pipe.plan({ width: size, height: size, vaeTiling: true });
    expect(tiled.peak).toBeLessThan(plain.peak);
    limitTo(plain.peak - Object.values(plain.componentWeights).reduce((a, b) => a + b, 0)); // room for the plain plan's tensors only
    try {
      const err = await pipe.generate({ prompt: "a", width: size, height: size, steps: 2, seed: 1 }).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(OutOfMemoryError);
      expect((err as Error).message).toMatch(/generate\(\) at 256×256/);
      expect((err as Error).message).toMatch(/(enableVaeTiling\(\)|enableModelCpuOffload\(\)|enableSequentialCpuOffload\(\))[^;]* fits in|even enableSequentialCpuOffload/);
    } finally {
      setEmulatedMemoryLimit(null);
    }
    expect(memoryStats("cuda").live).toBe(live0 + Object.values(plain.componentWeights).reduce((a, b) => a + b, 0));
  });

  test("enableOffload: a limit that refuses the plain run, then maxVram \"auto\" picks what fits and the run succeeds", async () => {
    const size = 64;
    const args = { prompt: "a red circle", width: size, height: size, steps: 2, seed: 5 };
    const ref = await pipe.generate({ ...args, outputType: "tensor" });
    const refPixels = ref.tensor!.toFloat32Array();
    ref.tensor!.dispose();
    const weights = (p: { componentWeights: Record<string, number> }) => Object.values(p.componentWeights).reduce((a, b) => a + b, 0);
    const none = pipe.plan({ width: size, height: size });
    const model = pipe.plan({ width: size, height: size, offload: "model" });
    const latents = 8 * 4 * (size / 8) ** 2 * 4; // SCHEDULER_LATENTS float32 latent copies, one image
    // room for model offload's peak with the margins enableOffload keeps, well short of the plain run's tensors
    const extra = Math.ceil(model.peak * 1.1 + latents) - weights(none);
    expect(extra).toBeLessThan(none.peak - weights(none));
    limitTo(extra);
    try {
      const refused = await pipe.generate(args).then(() => null, (e: unknown) => e);
      expect(refused).toBeInstanceOf(OutOfMemoryError);
      const choice = pipe.enableOffload({ maxVram: "auto", width: size, height: size });
      expect(choice.offload === "none" && !choice.vaeTiling).toBe(false);
      expect(choice.peak * 1.05 + latents).toBeLessThanOrEqual(memoryStats("cuda").reserved + extra + weights(none));
      expect(choice.reason).toContain(choice.description!);
      console.log(`[offload-choice] ${choice.reason}`);
      const shown = pipe.features().find((f) => f.name === "modelCpuOffload" || f.name === "sequentialCpuOffload");
      if (choice.offload !== "none") expect(shown?.options).toMatchObject({ maxVram: "auto", reason: choice.reason });
      const out = await pipe.generate({ ...args, outputType: "tensor" });
      const pixels = out.tensor!.toFloat32Array();
      out.tensor!.dispose();
      // offload moves weights only: bit-identical on the same device; VAE tiling (if chosen) changes the decode
      if (!choice.vaeTiling) expect(Buffer.from(pixels.buffer).equals(Buffer.from(refPixels.buffer))).toBe(true);
    } finally {
      setEmulatedMemoryLimit(null);
      pipe.disableOffload();
      pipe.disableVaeTiling();
    }
    expect(memoryStats("cuda").live).toBe(live0 + weights(none));
  });

  test("enableOffload: an ample budget keeps everything resident; one too small changes nothing and says what the least needs; bad options", () => {
    const none = pipe.plan();
    const ample = pipe.enableOffload({ maxVram: none.peak * 4 });
    expect(ample).toMatchObject({ offload: "none", vaeTiling: false });
    expect(pipe.features().map((f) => f.name)).not.toContain("modelCpuOffload");
    pipe.enableModelCpuOffload();
    const before = pipe.features();
    expect(() => pipe.enableOffload({ maxVram: 1024 })).toThrow(/enableOffload\(maxVram [0-9.]+ KiB\).*nothing fits — even enableSequentialCpuOffload\(\) \+ enableVaeTiling\(\) needs/);
    expect(pipe.features()).toEqual(before);
    pipe.disableOffload();
    for (const [bad, msg] of [
      [{ maxVram: -1 }, /maxVram must be a positive number of bytes or "auto"/],
      [{ maxVram: "lots" }, /maxVram must be a positive number/],
      [{ maxVram: "auto", width: 100 }, /width must be a positive multiple of 8/],
      [{ maxVram: "auto", batch: 0 }, /batch must be a positive integer/],
      [{ maxVram: "auto", vram: 1 }, /unknown option "vram"/],
    ] as const)
      expect(() => pipe.enableOffload(bad as never)).toThrow(msg);
  });

  test("raised by the allocator mid-run: the phase is named, nothing stays live", async () => {
    const before = memoryStats("cuda").live;
    const err = await pipe
      .generate({ prompt: "a", width: 128, height: 128, steps: 2, seed: 1, onStep: (step, total) => void (step === total && limitTo(64 << 10)) })
      .then(
        () => null,
        (e: unknown) => e,
      );
    setEmulatedMemoryLimit(null);
    expect(err).toBeInstanceOf(OutOfMemoryError);
    expect((err as Error).message).toMatch(/ran out of memory while decoding: out of memory on cuda: tried to allocate/);
    expect(memoryStats("cuda").live).toBe(before);
    // and the pipeline still works afterwards
    const ok = await pipe.generate({ prompt: "a", width: 64, height: 64, steps: 2, seed: 1 });
    expect(ok.images).toHaveLength(1);
  });
});
