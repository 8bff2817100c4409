// The memory planner (src/pipelines/plan.ts, pipe.plan, `bun-diffusion plan`): its per-phase peaks agree with
// the allocator's measured peaks of real runs of tiny SD 1.x and SDXL pipelines — on the CPU and on the CUDA
// device (the emulated one in CI, a GPU when present) — for the feature combinations that change memory; on the
// real-size architectures it orders the strategies as they must be ordered; its inputs are checked.
//
// Tolerance: 5 % of each measured phase peak (the bound). What the plan does not model — one prompt per
// image is encoded (an upper bound under numImagesPerPrompt), the scheduler's own temporaries beyond one step —
// is small next to the weights and activations it does model; observed differences are below 4 %.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { makeTinyModel } from "../../scripts/make-tiny-model.ts";
import { hasBackend } from "../../src/backends/registry.ts";
import type { Device } from "../../src/core/device.ts";
import {
  type AnyPipeline,
  KNOWN_ARCHITECTURES,
  MetaModels,
  type PlanRequest,
  folderPlanModels,
  knownPlanModels,
  loadPipeline,
  planMemory,
} from "../../src/pipelines/index.ts";
import { memoryStats } from "../../src/tensor/index.ts";
import { goldenDir } from "../helpers/paths.ts";
import { measurePhases } from "../helpers/measured-phases.ts";

const TOLERANCE = 0.05;

type Feature = "plain" | "naive" | "tome" | "tiling" | "slicing";
interface Case {
  preset: "sd15" | "sdxl";
  dtype: "float32" | "float16";
  size: number;
  images: number;
  feature: Feature;
}

const CASES: Case[] = [
  { preset: "sd15", dtype: "float32", size: 64, images: 1, feature: "plain" },
  { preset: "sd15", dtype: "float32", size: 128, images: 2, feature: "plain" },
  { preset: "sd15", dtype: "float32", size: 128, images: 1, feature: "naive" },
  { preset: "sd15", dtype: "float32", size: 128, images: 1, feature: "tome" },
  { preset: "sd15", dtype: "float32", size: 192, images: 1, feature: "tiling" },
  { preset: "sd15", dtype: "float32", size: 128, images: 3, feature: "slicing" },
  { preset: "sdxl", dtype: "float16", size: 128, images: 1, feature: "plain" },
  { preset: "sdxl", dtype: "float16", size: 128, images: 1, feature: "tome" },
  { preset: "sdxl", dtype: "float16", size: 256, images: 1, feature: "tiling" },
];

function enable(pipe: AnyPipeline, f: Feature): void {
  if (f === "naive") pipe.setAttentionKind("naive");
  if (f === "tome") pipe.enableTokenMerging({ ratio: 0.5 });
  if (f === "tiling") pipe.enableVaeTiling({ tileSize: 128 });
  if (f === "slicing") pipe.enableVaeSlicing();
}

function disable(pipe: AnyPipeline): void {
  pipe.setAttentionKind("fused");
  pipe.disableTokenMerging();
  pipe.disableVaeTiling();
  pipe.disableVaeSlicing();
}

let tmp = "";
beforeAll(async () => {
  tmp = mkdtempSync(path.join(tmpdir(), "bd-plan-"));
  await makeTinyModel(path.join(tmp, "sd15"), { preset: "sd15", seed: 811 });
  await makeTinyModel(path.join(tmp, "sdxl"), { preset: "sdxl", seed: 812 });
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

for (const device of ["cpu", "cuda"] as Device[]) {
  describe.skipIf(device !== "cpu" && !hasBackend(device))(`plan vs measured allocator peaks on ${device}`, () => {
    const pipes = new Map<string, AnyPipeline>();
    const live0 = { v: 0 };
    beforeAll(() => void (live0.v = memoryStats(device).live));
    afterAll(() => {
      for (const p of pipes.values()) p.dispose();
      expect(memoryStats(device).live).toBe(live0.v);
    });
    const pipeline = async (c: Case) => {
      const key = `${c.preset}|${c.dtype}`;
      let p = pipes.get(key);
      if (!p) pipes.set(key, (p = await loadPipeline(path.join(tmp, c.preset), { device, dtype: c.dtype })));
      return p;
    };
    // the CPU runs the float32 cases (its float16 path is the same accounting)
    for (const c of CASES.filter((x) => device !== "cpu" || x.dtype === "float32"))
      test(`${c.preset} ${c.dtype} ${c.size}² × ${c.images}, ${c.feature}: every phase within 5 %`, async () => {
        const pipe = await pipeline(c);
        enable(pipe, c.feature);
        try {
          const plan = pipe.plan({ width: c.size, height: c.size, batch: c.images });
          expect(plan.device).toBe(device);
          const run = await measurePhases(pipe, device, () =>
            pipe.generate({ prompt: "a red circle", width: c.size, height: c.size, numImagesPerPrompt: c.images, steps: 2, seed: 5, scheduler: "ddim" }),
          );
          expect(run.liveAfter).toBe(run.liveBefore);
          // bytes live on the device that are not this pipeline's (the other pipelines of this file, other files)
          const weights = Object.values(plan.componentWeights).reduce((a, b) => a + b, 0);
          const foreign = run.liveBefore - weights;
          expect(foreign).toBeGreaterThanOrEqual(0);
          for (const ph of plan.phases) {
            const measured = run.phases[ph.phase] - foreign;
            const err = Math.abs(ph.peak - measured) / measured;
            if (err > TOLERANCE) throw new Error(`${ph.phase}: planned ${ph.peak} B, measured ${measured} B (${(100 * err).toFixed(1)} %)`);
          }
        } finally {
          disable(pipe);
        }
      });
  });
}

describe("plans of the real-size architectures (configs shipped in assets/configs)", () => {
  const models = new Map<string, MetaModels>();
  const of = (name: string, dtype: "float32" | "float16" = "float16") => {
    const key = `${name}|${dtype}`;
    let m = models.get(key);
    if (!m) models.set(key, (m = new MetaModels(knownPlanModels(name, dtype))));
    return m;
  };
  afterAll(() => {
    for (const m of models.values()) m.dispose();
    expect(memoryStats("meta").live).toBe(0);
  });
  const plan = (name: string, req: Partial<PlanRequest>, dtype?: "float32" | "float16") => planMemory(of(name, dtype), { width: 512, height: 512, ...req });
  const phase = (p: ReturnType<typeof plan>, name: string) => p.phases.find((x) => x.phase === name)!;

  test("the shipped configs are the real-size models' resolved configs", () => {
    const dir = path.join(goldenDir, "manifests");
    if (!existsSync(dir)) return void console.warn("[plan] no manifests/ in the golden folder: the shipped configs are not compared");
    const manifest = (n: string) => (JSON.parse(readFileSync(path.join(dir, `${n}.json`), "utf8")) as { resolved_config: unknown }).resolved_config;
    const pairs: [string, string, string][] = [
      ["sd15", "unet", "sd15_unet"],
      ["sd21", "unet", "sd21_unet"],
      ["sdxl", "unet", "sdxl_base_unet"],
      ["sd15", "vae", "sd_vae"],
      ["sdxl", "vae", "sdxl_vae"],
    ];
    for (const [arch, part, name] of pairs)
      if (existsSync(path.join(dir, `${name}.json`))) expect((knownPlanModels(arch, "float32") as unknown as Record<string, unknown>)[part]).toEqual(manifest(name));
    const te = (arch: string, i: number) => knownPlanModels(arch, "float32").textEncoders[i]!.config;
    if (existsSync(path.join(dir, "sd15_text_encoder.json"))) expect(te("sd15", 0)).toEqual(manifest("sd15_text_encoder") as never);
    if (existsSync(path.join(dir, "sd21_text_encoder.json"))) expect(te("sd21", 0)).toEqual(manifest("sd21_text_encoder") as never);
    if (existsSync(path.join(dir, "sdxl_text_encoder_2.json"))) expect(te("sdxl", 1)).toEqual(manifest("sdxl_text_encoder_2") as never);
  });

  test("weights per phase: model offload < none, sequential < model; every phase and strategy consistent", () => {
    for (const name of KNOWN_ARCHITECTURES) {
      const none = plan(name, {});
      const model = plan(name, { offload: "model" });
      const seq = plan(name, { offload: "sequential" });
      const seqAhead = plan(name, { offload: "sequential", prefetchBytes: 64 << 20 });
      const w = none.componentWeights;
      const all = Object.values(w).reduce((a, b) => a + b, 0);
      for (const p of none.phases) expect(p.weights).toBe(all);
      expect(phase(model, "denoising").weights).toBe(w.unet!);
      expect(phase(model, "decoding").weights).toBe(w.vae!);
      expect(model.peak).toBeLessThan(none.peak);
      expect(seq.peak).toBeLessThan(model.peak);
      for (const ph of ["text encoding", "denoising", "decoding"]) {
        expect(phase(seq, ph).weights).toBeLessThanOrEqual(phase(seqAhead, ph).weights);
        expect(phase(seqAhead, ph).weights).toBeLessThanOrEqual(phase(seq, ph).weights + (64 << 20));
        // activations do not depend on where the weights live
        expect(phase(seq, ph).tensors).toBe(phase(none, ph).tensors);
      }
    }
  });

  test("float16 halves the weights; SDXL's VAE stays float32 (force_upcast) as the loader keeps it", () => {
    const a = plan("sd15", {}, "float32").componentWeights;
    const b = plan("sd15", {}, "float16").componentWeights;
    for (const k of Object.keys(a)) expect(b[k]! * 2).toBe(a[k]!);
    const xl = plan("sdxl", { width: 1024, height: 1024 });
    expect(xl.vaeDtype).toBe("float32");
    expect(xl.phases.map((p) => p.phase)).toEqual(["text encoding", "denoising", "decoding"]);
  });

  test("naive attention materialises the scores; token merging shrinks them; fused attention has none", () => {
    const fused = phase(plan("sd15", { width: 768, height: 768 }), "denoising");
    const naive = phase(plan("sd15", { width: 768, height: 768, attention: "naive" }), "denoising");
    const merged = phase(plan("sd15", { width: 768, height: 768, attention: "naive", tome: { ratio: 0.5 } }), "denoising");
    const tokens = (768 / 8) ** 2;
    const heads = 8;
    // one [2·heads, N, N] float16 score matrix of the first level's self-attention at least
    expect(naive.tensors - fused.tensors).toBeGreaterThan(2 * heads * tokens * tokens * 2);
    expect(merged.tensors).toBeLessThan(naive.tensors);
    expect(merged.tensors).toBeGreaterThan(fused.tensors);
  });

  test("VAE tiling bounds the decode: its tensors barely grow from 1024² to 2048²; untiled ones grow 4×", () => {
    const d = (size: number, vaeTiling: boolean) => phase(plan("sd15", { width: size, height: size, vaeTiling }), "decoding").tensors;
    const pixels = (size: number) => 3 * size * size * 2; // the float16 image is itself part of the decode
    expect(d(2048, false) / d(1024, false)).toBeGreaterThan(3.5);
    expect(d(2048, true) - pixels(2048)).toBeLessThan(1.5 * (d(1024, true) - pixels(1024)));
    expect(d(2048, true)).toBeLessThan(d(2048, false) / 4);
  });

  test("batch and guidance scale the activations", () => {
    const one = phase(plan("sd15", {}), "denoising").tensors;
    const four = phase(plan("sd15", { batch: 4 }), "denoising").tensors;
    const noCfg = phase(plan("sd15", { cfg: false }), "denoising").tensors;
    expect(four).toBeGreaterThan(3 * one);
    expect(noCfg).toBeLessThan(one);
  });

  test("bad requests are errors that name the option", () => {
    expect(() => plan("sd15", { width: 500 })).toThrow(/width must be a positive multiple of 8/);
    expect(() => plan("sd15", { batch: 0 })).toThrow(/batch must be a positive integer/);
    expect(() => plan("sd15", { offload: "disk" as never })).toThrow(/offload must be "none", "model" or "sequential"/);
    expect(() => plan("sd15", { tome: { ratio: 2 } })).toThrow(/ratio/);
    expect(() => knownPlanModels("sd3", "float16")).toThrow(/unknown architecture "sd3"; known: sd15, sd21, sdxl/);
  });
});

describe("pipe.plan and model folders", () => {
  test("a model folder is planned from its configs alone, as the loaded pipeline plans it", async () => {
    const spec = folderPlanModels(path.join(tmp, "sdxl"), "float32");
    expect(spec.textEncoders.map((t) => t.name)).toEqual(["text_encoder", "text_encoder_2"]);
    const m = new MetaModels(spec);
    const pipe = await loadPipeline(path.join(tmp, "sdxl"));
    try {
      const a = planMemory(m, { width: 128, height: 128, batch: 2 });
      const b = pipe.plan({ width: 128, height: 128, batch: 2, device: "meta" });
      expect(b.phases).toEqual(a.phases);
    } finally {
      m.dispose();
      pipe.dispose();
    }
  });

  test("pipe.plan follows the pipeline's features and their removal", async () => {
    const pipe = await loadPipeline(path.join(tmp, "sd15"));
    try {
      const plain = pipe.plan({ width: 128, height: 128 });
      pipe.setAttentionKind("naive");
      pipe.enableTokenMerging({ ratio: 0.5 });
      pipe.enableVaeTiling({ tileSize: 64 });
      const p = pipe.plan({ width: 128, height: 128 });
      expect([p.attention, p.tome, p.vaeTiling]).toEqual(["naive", 0.5, true]);
      expect(pipe.plan({ width: 128, height: 128, tome: null, attention: "fused", vaeTiling: false }).phases).toEqual(plain.phases);
      pipe.setAttentionKind("fused");
      pipe.disableTokenMerging();
      pipe.disableVaeTiling();
      expect(pipe.plan({ width: 128, height: 128 }).phases).toEqual(plain.phases);
    } finally {
      pipe.dispose();
    }
  });
});
