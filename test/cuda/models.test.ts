// The models and the pipeline on device "cuda" (the emulated device when no GPU): every golden UNet (SD 1.5, SD 2,
// SDXL tiny models) loaded with fromPretrained({ device: "cuda" }) against the golden output and the CPU backend;
// the CLIP text encoders and the VAE (decode and encode, untiled and tiled with the meta tiling) likewise; float16 and bfloat16 runs against the float32
// golden and against the CPU backend in the same dtype; allocator live bytes back to their start after load +
// forward + dispose; and StableDiffusionPipeline on the shapes-64 demo model for a few steps against the CPU.
//
// Tolerances: float32 as the golden README's single-module tolerance (1e-5·max|ref|), which the CPU backend meets
// too; CUDA vs CPU in float32 1e-5·max (different summation orders only). float16 / bfloat16 against the float32
// golden: every op rounds to an 11-bit (float16) / 8-bit (bfloat16) mantissa through ~20 layers, ~2e-3 / ~2e-2
// relative observed, bounded by 2e-2 / 8e-2. CUDA vs CPU in the same 16-bit dtype: both compute each op in float32
// and round once, so they differ by ulp-level rounding flips that propagate: bounded by 1e-2 / 5e-2 (observed
// ~1e-3 / ~1e-2).

import { describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import path from "node:path";
import { hasBackend } from "../../src/backends/registry.ts";
import { cudaEmptyCache } from "../../src/backends/cuda/index.ts";
import { CLIPTextModel, CLIPTextModelWithProjection } from "../../src/models/clip.ts";
import { UNet2DConditionModel } from "../../src/models/unet/index.ts";
import { AutoencoderKL } from "../../src/models/vae/index.ts";
import { StableDiffusionPipeline } from "../../src/pipelines/index.ts";
import type { DType } from "../../src/core/dtype.ts";
import { type Tensor, memoryStats, tidy } from "../../src/tensor/index.ts";
import { type GoldenEntry, goldenCases, goldenIndex, goldenTensor, maxError, openGolden } from "../helpers/golden.ts";
import { goldenDir, projectRoot } from "../helpers/paths.ts";

const HAS_CUDA = hasBackend("cuda");
const f32 = (t: Tensor) => t.toFloat32Array();
/** max |a − b| / max |b|. */
function rel(a: Tensor | Float32Array, b: Tensor | Float32Array): number {
  const { maxAbs, maxRef } = maxError(a instanceof Float32Array ? a : f32(a), b instanceof Float32Array ? b : f32(b));
  return maxAbs / maxRef;
}
const log = (line: string) => process.env.BD_TEST_VERBOSE && console.log(line);

/** Allocator live bytes of both devices around fn: they must return to their start. */
function noLeak(fn: () => void): void {
  const cuda0 = memoryStats("cuda").live;
  const cpu0 = memoryStats("cpu").live;
  fn();
  expect(memoryStats("cuda").live).toBe(cuda0);
  expect(memoryStats("cpu").live).toBe(cpu0);
}

const UNET_INPUTS = ["sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids"];

/** The first case of a golden UNet file: inputs on `device` in `dtype` and the float32 reference output. */
function unetCase(entry: GoldenEntry, device: "cpu" | "cuda", dtype: DType) {
  const f = openGolden(entry.file);
  const c = Object.keys(entry.tensors)[0]!.split("/")[0]!;
  const get = (n: string, float: boolean) => {
    if (!entry.tensors[`${c}/${n}`]) return null;
    const t = goldenTensor(f, `${c}/${n}`);
    return float ? t.to({ device, dtype }) : t.to(device);
  };
  return {
    args: [get("sample", true)!, get("timestep", false)!, get("encoder_hidden_states", true)!] as const,
    extra: { textEmbeds: get("text_embeds", true), timeIds: get("time_ids", true) },
    ref: goldenTensor(f, `${c}/out`),
  };
}

describe.skipIf(!HAS_CUDA)("UNet2DConditionModel on cuda", () => {
  const entries = goldenCases("unet");
  for (const entry of entries)
    test(`${entry.file}: float32 on cuda = golden (1e-5·max|ref|) = cpu; live bytes return to the start`, () => {
      expect(Object.keys(entry.tensors).every((n) => [...UNET_INPUTS, "out"].includes(n.split("/")[1]!))).toBe(true);
      const dir = path.join(goldenDir, entry.meta.model!);
      noLeak(() => {
        const gpu = UNet2DConditionModel.fromPretrained(dir, { device: "cuda" });
        const cpu = UNet2DConditionModel.fromPretrained(dir);
        expect(gpu.parameters().every((p) => p.device === "cuda")).toBe(true);
        tidy(() => {
          const g = unetCase(entry, "cuda", "float32");
          const outG = gpu.call(...g.args, g.extra);
          expect(outG.device).toBe("cuda");
          const c = unetCase(entry, "cpu", "float32");
          const outC = cpu.call(...c.args, c.extra);
          log(`${entry.file}: cuda vs golden ${rel(outG, g.ref).toExponential(2)}, vs cpu ${rel(outG, outC).toExponential(2)}`);
          expect(rel(outG, g.ref)).toBeLessThanOrEqual(1e-5);
          expect(rel(outG, outC)).toBeLessThanOrEqual(1e-5);
        });
        gpu.dispose();
        cpu.dispose();
      });
    });

  for (const [dtype, vsGolden, vsCpu] of [["float16", 2e-2, 1e-2], ["bfloat16", 8e-2, 5e-2]] as const)
    test(`sd15 in ${dtype}: close to the float32 golden (${vsGolden}) and to the cpu in ${dtype} (${vsCpu})`, () => {
      const entry = entries.find((e) => e.file.includes("sd15")) ?? entries[0]!;
      const dir = path.join(goldenDir, entry.meta.model!);
      noLeak(() => {
        const gpu = UNet2DConditionModel.fromPretrained(dir, { device: "cuda", dtype });
        const cpu = UNet2DConditionModel.fromPretrained(dir, { dtype });
        expect(gpu.parameters().every((p) => p.dtype === dtype && p.device === "cuda")).toBe(true);
        tidy(() => {
          const g = unetCase(entry, "cuda", dtype);
          const outG = gpu.call(...g.args, g.extra);
          expect(outG.dtype).toBe(dtype);
          const c = unetCase(entry, "cpu", dtype);
          const outC = cpu.call(...c.args, c.extra);
          log(`unet ${dtype}: cuda vs golden ${rel(outG, g.ref).toExponential(2)}, vs cpu ${rel(outG, outC).toExponential(2)}, cpu vs golden ${rel(outC, g.ref).toExponential(2)}`);
          expect(rel(outG, g.ref)).toBeLessThanOrEqual(vsGolden);
          expect(rel(outG, outC)).toBeLessThanOrEqual(vsCpu);
        });
        gpu.dispose();
        cpu.dispose();
      });
    });
});

describe.skipIf(!HAS_CUDA)("text encoders and VAE on cuda", () => {
  const CLASSES = { CLIPTextModel, CLIPTextModelWithProjection } as const;
  const encoders = goldenIndex().filter((e) => (e.meta.component ?? "") in CLASSES);
  for (const entry of encoders)
    test(`${entry.file} (${entry.meta.component}): last hidden state, pooled output (argmax of int64 ids) and every layer = golden = cpu`, () => {
      const cls = CLASSES[entry.meta.component as keyof typeof CLASSES];
      const dir = path.join(goldenDir, entry.meta.model!);
      noLeak(() => {
        const gpu = cls.fromPretrained(dir, { device: "cuda" });
        const cpu = cls.fromPretrained(dir);
        tidy(() => {
          const f = openGolden(entry.file);
          const ids = goldenTensor(f, "input_ids");
          const og = gpu.call(ids.to("cuda"));
          const oc = cpu.call(ids);
          const pairs: [string, Tensor, Tensor][] = [["lastHiddenState", og.lastHiddenState, oc.lastHiddenState], ["poolerOutput", og.poolerOutput, oc.poolerOutput],
            ...og.hiddenStates.map((h, i) => [`hidden_states/${i}`, h, oc.hiddenStates[i]!] as [string, Tensor, Tensor])];
          if (og.textEmbeds) pairs.push(["textEmbeds", og.textEmbeds, oc.textEmbeds!]);
          for (const [name, g, c] of pairs) {
            expect(g.device).toBe("cuda");
            expect(rel(g, c), name).toBeLessThanOrEqual(1e-5);
            const golden = name === "lastHiddenState" ? "last_hidden_state" : name === "poolerOutput" ? "pooler_output" : name === "textEmbeds" ? "text_embeds" : name;
            if (entry.tensors[golden]) expect(rel(g, goldenTensor(f, golden, "float32")), golden).toBeLessThanOrEqual(1e-5);
          }
        });
        gpu.dispose();
        cpu.dispose();
      });
    });

  const vaes = goldenCases("vae");
  for (const entry of vaes)
    test(`${entry.file}: decode and encode on cuda = golden = cpu (float32); decode in float16`, () => {
      const dir = path.join(goldenDir, entry.meta.model!);
      noLeak(() => {
        const gpu = AutoencoderKL.fromPretrained(dir, { device: "cuda" });
        const cpu = AutoencoderKL.fromPretrained(dir);
        tidy(() => {
          const f = openGolden(entry.file);
          const z = goldenTensor(f, "decode/z", "float32");
          const dg = gpu.decode(z.to("cuda"));
          const dc = cpu.decode(z);
          log(`${entry.file} decode: cuda vs golden ${rel(dg, goldenTensor(f, "decode/out")).toExponential(2)}, vs cpu ${rel(dg, dc).toExponential(2)}`);
          expect(rel(dg, goldenTensor(f, "decode/out"))).toBeLessThanOrEqual(1e-5);
          expect(rel(dg, dc)).toBeLessThanOrEqual(1e-5);
          const x = goldenTensor(f, "encode/x", "float32");
          const eg = gpu.encode(x.to("cuda")).latentDist;
          expect(rel(eg.mean, goldenTensor(f, "encode/mean"))).toBeLessThanOrEqual(1e-5);
          expect(rel(eg.std, goldenTensor(f, "encode/std"))).toBeLessThanOrEqual(1e-5);
        });
        gpu.dispose();
        cpu.dispose();
        const half = AutoencoderKL.fromPretrained(dir, { device: "cuda", dtype: "float16" });
        tidy(() => {
          const f = openGolden(entry.file);
          const out = half.decode(goldenTensor(f, "decode/z", "float32").to({ device: "cuda", dtype: "float16" }));
          log(`${entry.file} decode float16: vs golden ${rel(out, goldenTensor(f, "decode/out")).toExponential(2)}`);
          expect(rel(out, goldenTensor(f, "decode/out"))).toBeLessThanOrEqual(2e-2);
        });
        half.dispose();
      });
    });

  for (const entry of vaes.filter((e) => e.tensors["tiled_decode/out"] && e.meta.tiling))
    test(`${entry.file}: tiled decode and encode on cuda (meta tiling) = golden = cpu (float32)`, () => {
      const dir = path.join(goldenDir, entry.meta.model!);
      const m = entry.meta.tiling as Record<string, number>;
      const tiling = { tileSampleMinSize: m.tile_sample_min_size!, tileLatentMinSize: m.tile_latent_min_size!, tileOverlapFactor: m.tile_overlap_factor! };
      noLeak(() => {
        const gpu = AutoencoderKL.fromPretrained(dir, { device: "cuda" });
        const cpu = AutoencoderKL.fromPretrained(dir);
        gpu.enableTiling(tiling);
        cpu.enableTiling(tiling);
        tidy(() => {
          const f = openGolden(entry.file);
          const z = goldenTensor(f, "tiled_decode/z", "float32");
          const dg = gpu.decode(z.to("cuda"));
          expect(dg.device).toBe("cuda");
          log(`${entry.file} tiled decode: cuda vs golden ${rel(dg, goldenTensor(f, "tiled_decode/out")).toExponential(2)}`);
          expect(rel(dg, goldenTensor(f, "tiled_decode/out"))).toBeLessThanOrEqual(1e-5);
          expect(rel(dg, cpu.decode(z))).toBeLessThanOrEqual(1e-5);
          if (entry.tensors["tiled_encode/mean"]) {
            const eg = gpu.encode(goldenTensor(f, "tiled_encode/x", "float32").to("cuda")).latentDist;
            expect(rel(eg.mean, goldenTensor(f, "tiled_encode/mean"))).toBeLessThanOrEqual(1e-5);
            expect(rel(eg.std, goldenTensor(f, "tiled_encode/std"))).toBeLessThanOrEqual(1e-5);
          }
        });
        gpu.dispose();
        cpu.dispose();
      });
    });
});

const SHAPES = path.join(projectRoot, "assets", "shapes-64");
describe.skipIf(!HAS_CUDA || !existsSync(SHAPES))("StableDiffusionPipeline on cuda", () => {
  test("shapes-64, 3 DDIM steps, guidance 7.5: the image equals the cpu's (1e-4); nothing left on the device after dispose", async () => {
    const images: Float32Array[] = [];
    const cuda0 = memoryStats("cuda").live;
    for (const device of ["cpu", "cuda"] as const) {
      const pipe = await StableDiffusionPipeline.fromPretrained(SHAPES, { device, dtype: "float32" }); // explicit: CUDA would default to bfloat16
      const r = await pipe.generate({ prompt: "a red circle on a blue background", steps: 3, seed: 7, width: 64, height: 64, outputType: "tensor" });
      expect(r.tensor!.shape).toEqual([1, 3, 64, 64]);
      images.push(f32(r.tensor!));
      r.tensor!.dispose();
      pipe.dispose();
    }
    log(`pipeline cuda vs cpu: max|diff| ${maxError(images[1]!, images[0]!).maxAbs.toExponential(2)}`);
    expect(maxError(images[1]!, images[0]!).maxAbs).toBeLessThanOrEqual(1e-4);
    expect(memoryStats("cuda").live).toBe(cuda0);
    cudaEmptyCache();
  }, 60_000); // two pipelines (CPU and emulated device), 3 steps each: a few seconds alone, more on a loaded 2-core machine
});
