// applyTokenMerging on real UNets against tomesd.apply_patch (the tome/* entries of component tomesd.apply_patch*
// this file drives, test/golden/registry.ts), on the CPU and the CUDA device (emulated without a GPU). The variants
// come from the out_tome_* keys, parsed (md, r, sx, sy) and checked against meta.variants[].apply_patch_args where
// given (use_rand too); the model folder and inputs from the entry. Tolerance: 1e-5·max|ref|, the golden README's
// single-module tolerance — our UNet itself is within ~1e-6 of out_vanilla, and merging adds copies and the same
// float32 mean; the ToMe outputs differ from vanilla by ~3e-2 (meta max_abs_diff_vs_vanilla), so a wrong merge
// cannot pass. Then, bit for bit: ratio 0 = no ToMe, remove restores, applying twice = applying once; the random
// dst choice (seeded, odd batches fixed); merging in cross-attention / MLP; SDXL merged by "auto"; float16; option
// errors changing nothing; CPU live bytes back to the start.

import { afterAll, describe, expect, test } from "bun:test";
import path from "node:path";
import type { SafetensorsFile } from "../../src/io/safetensors.ts";
import { UNet2DConditionModel, type UNetForwardOptions } from "../../src/models/unet/index.ts";
import { type Device, type Tensor, cat, memoryStats, tidy } from "../../src/tensor/index.ts";
import { type ToMeOptions, type TokenMergingOptions, TokenMergingOptionError, applyTokenMerging, removeTokenMerging, tokenMergingOf } from "../../src/tome/index.ts";
import { goldenDriven } from "../golden/registry.ts";
import { type GoldenEntry, goldenCases, goldenTensor, maxError, openGolden } from "../helpers/golden.ts";
import { testDevices } from "../helpers/op-harness.ts";
import { goldenDir } from "../helpers/paths.ts";

const entries = goldenDriven(import.meta.path);
const INPUTS = { sample: "in/sample", timestep: "in/timestep", ehs: "in/encoder_hidden_states" } as const;
const KEY = /^out_tome_md(\d+)_r([0-9.]+)_sx(\d+)_sy(\d+)$/;

interface Variant {
  key: string;
  options: ToMeOptions;
  recordedDiff: number | null;
}

/** Every out_tome_* key as options (parsed from the key, cross-checked with meta.variants). */
function variantsOf(entry: GoldenEntry): Variant[] {
  const meta = (entry.meta.variants ?? []) as { key: string; apply_patch_args: Record<string, number | boolean>; max_abs_diff_vs_vanilla?: number }[];
  const out: Variant[] = [];
  for (const name of Object.keys(entry.tensors)) {
    if (name === "out_vanilla" || Object.values(INPUTS).includes(name as never)) continue;
    const m = KEY.exec(name);
    if (!m) throw new Error(`${entry.file}: golden tensor ${JSON.stringify(name)} is not known to this test`);
    const [md, ratio, sx, sy] = [Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4])];
    const v = meta.find((x) => x.key === name);
    const args = v?.apply_patch_args ?? {};
    for (const [k, want] of [["max_downsample", md], ["ratio", ratio], ["sx", sx], ["sy", sy]] as const)
      if (args[k] !== undefined && args[k] !== want) throw new Error(`${entry.file}: ${name} says ${k}=${want}, meta says ${args[k]}`);
    out.push({
      key: name,
      options: {
        ratio,
        maxDownsample: md,
        sx,
        sy,
        useRand: (args.use_rand as boolean | undefined) ?? false, // the golden README: use_rand=False
        mergeAttn: (args.merge_attn as boolean | undefined) ?? true,
        mergeCrossattn: (args.merge_crossattn as boolean | undefined) ?? false,
        mergeMlp: (args.merge_mlp as boolean | undefined) ?? false,
      },
      recordedDiff: v?.max_abs_diff_vs_vanilla ?? null,
    });
  }
  return out;
}

const f32 = (t: Tensor) => t.toFloat32Array();
const hooks = (unet: UNet2DConditionModel) => unet.namedModules().reduce((n, [, m]) => n + m.hookCount, 0);
const processors = (unet: UNet2DConditionModel) => [...unet.attnProcessors().values()];

interface Inputs {
  sample: Tensor;
  timestep: Tensor;
  ehs: Tensor;
  extra?: UNetForwardOptions;
}

function inputsOf(f: SafetensorsFile, device: Device): Inputs {
  return {
    sample: goldenTensor(f, INPUTS.sample).to(device),
    timestep: goldenTensor(f, INPUTS.timestep),
    ehs: goldenTensor(f, INPUTS.ehs).to(device),
  };
}

const run = (unet: UNet2DConditionModel, x: Inputs): Float32Array => tidy(() => f32(unet.call(x.sample, x.timestep, x.ehs, x.extra ?? {})));
const same = (a: Float32Array, b: Float32Array) => maxError(a, b).maxAbs;

describe("golden ToMe UNets (tomesd.apply_patch)", () => {
  test("index.json lists ToMe UNet cases with variants", () => {
    expect(entries.length).toBeGreaterThan(0);
    for (const e of entries) expect(variantsOf(e).length).toBeGreaterThan(0);
  });

  for (const entry of entries)
    for (const device of testDevices())
      test(`${entry.file} on ${device}: out_vanilla and every out_tome_* within 1e-5·max|ref|`, () => {
        const live0 = memoryStats(device).live;
        const unet = UNet2DConditionModel.fromPretrained(path.join(goldenDir, entry.meta.model!), { device });
        const f = openGolden(entry.file);
        tidy(() => {
          const x = inputsOf(f, device);
          const ref = (n: string) => f32(goldenTensor(f, n));
          const vanilla = run(unet, x);
          const v0 = maxError(vanilla, ref("out_vanilla"));
          expect(v0.maxAbs).toBeLessThanOrEqual(1e-5 * v0.maxRef);
          for (const v of variantsOf(entry)) {
            const h = applyTokenMerging(unet, v.options);
            expect(h.blocks.length).toBeGreaterThan(0);
            const out = run(unet, x);
            const e = maxError(out, ref(v.key));
            console.log(`${entry.file} ${v.key} on ${device}: max|err| ${e.maxAbs.toExponential(2)}, max|ref| ${e.maxRef.toFixed(3)}, vs vanilla ${same(out, vanilla).toExponential(2)}`);
            expect(e.maxAbs, v.key).toBeLessThanOrEqual(1e-5 * e.maxRef); // single-module tolerance (golden README)
            if (v.recordedDiff !== null) expect(Math.abs(same(out, vanilla) - v.recordedDiff)).toBeLessThanOrEqual(2e-5 * e.maxRef);
          }
          removeTokenMerging(unet);
          expect(run(unet, x)).toEqual(vanilla); // removal restores bit for bit
        });
        unet.dispose();
        expect(memoryStats(device).live).toBe(live0);
      });
});

describe("ToMe on the sd15 tiny UNet", () => {
  const entry = entries[0]!;
  const load = () => UNet2DConditionModel.fromPretrained(path.join(goldenDir, entry.meta.model!));
  const variant = () => variantsOf(entry)[0]!;

  test("ratio 0 is no ToMe, bit for bit; removal restores bit for bit; applying twice replaces; live bytes return", () => {
    const live0 = memoryStats("cpu").live;
    const unet = load();
    tidy(() => {
      const x = inputsOf(openGolden(entry.file), "cpu");
      const vanilla = run(unet, x);
      const hooks0 = hooks(unet);
      applyTokenMerging(unet, { ...variant().options, ratio: 0 });
      expect(run(unet, x)).toEqual(vanilla);
      const once = applyTokenMerging(unet, variant().options);
      const hooksOnce = hooks(unet);
      const a = run(unet, x);
      expect(same(a, vanilla)).toBeGreaterThan(0);
      applyTokenMerging(unet, variant().options);
      expect(hooks(unet)).toBe(hooksOnce); // replaced, not stacked
      expect(run(unet, x)).toEqual(a);
      once.remove(); // a replaced handle removes nothing
      expect(hooks(unet)).toBe(hooksOnce);
      expect(removeTokenMerging(unet)).toBe(true);
      expect(removeTokenMerging(unet)).toBe(false);
      expect(tokenMergingOf(unet)).toBeNull();
      expect(hooks(unet)).toBe(hooks0);
      expect(run(unet, x)).toEqual(vanilla);
    });
    unet.dispose();
    expect(memoryStats("cpu").live).toBe(live0);
  });

  test("useRand: seeded and reproducible on an even batch (one draw per cell per block call); an odd batch uses the fixed choice", () => {
    const unet = load();
    tidy(() => {
      const one = inputsOf(openGolden(entry.file), "cpu");
      const two: Inputs = { sample: cat([one.sample, one.sample], 0), timestep: one.timestep, ehs: cat([one.ehs, one.ehs], 0) };
      const opts = { ...variant().options, useRand: true };
      applyTokenMerging(unet, { ...opts, useRand: false });
      const fixedOne = run(unet, one);
      const fixedTwo = run(unet, two);
      applyTokenMerging(unet, { ...opts, seed: 1 });
      expect(run(unet, one)).toEqual(fixedOne); // B odd: tomesd forces use_rand off
      const r1 = run(unet, two);
      const r1b = run(unet, two); // the generator moved on: another choice
      applyTokenMerging(unet, { ...opts, seed: 1 });
      expect(run(unet, two)).toEqual(r1); // re-applied with the same seed: the same stream
      expect(same(r1, fixedTwo)).toBeGreaterThan(0);
      expect(same(r1b, r1)).toBeGreaterThan(0);
      applyTokenMerging(unet, { ...opts, seed: 2 });
      expect(same(run(unet, two), r1)).toBeGreaterThan(0);
    });
    unet.dispose();
  });

  test("mergeCrossattn and mergeMlp merge there too (outputs change); removal restores", () => {
    const unet = load();
    tidy(() => {
      const x = inputsOf(openGolden(entry.file), "cpu");
      const vanilla = run(unet, x);
      applyTokenMerging(unet, variant().options);
      const attn = run(unet, x);
      for (const extra of [{ mergeCrossattn: true }, { mergeMlp: true }, { mergeAttn: false, mergeMlp: true }]) {
        applyTokenMerging(unet, { ...variant().options, ...extra });
        const out = run(unet, x);
        expect(out.every(Number.isFinite)).toBe(true);
        expect(same(out, attn), JSON.stringify(extra)).toBeGreaterThan(0);
      }
      applyTokenMerging(unet, { ...variant().options, mergeAttn: false });
      expect(run(unet, x)).toEqual(vanilla); // nothing merged anywhere
      removeTokenMerging(unet);
      expect(run(unet, x)).toEqual(vanilla);
    });
    unet.dispose();
  });

  test("maxDownsample: \"auto\" is 1 here (level 0 has attention) and equals maxDownsample 1 bit for bit", () => {
    const unet = load();
    tidy(() => {
      const x = inputsOf(openGolden(entry.file), "cpu");
      const h = applyTokenMerging(unet, { ...variant().options, maxDownsample: "auto" });
      expect(h.maxDownsample).toBe(1);
      expect(h.blocks.every((b) => b.startsWith("down_blocks.0.") || b.startsWith(`up_blocks.${unet.up_blocks.length - 1}.`))).toBe(true);
      const auto = run(unet, x);
      applyTokenMerging(unet, { ...variant().options, maxDownsample: 1 });
      expect(run(unet, x)).toEqual(auto);
    });
    unet.dispose();
  });

  test("float16: ToMe'd float16 UNet stays close to the float32 ToMe golden", () => {
    const unet = UNet2DConditionModel.fromPretrained(path.join(goldenDir, entry.meta.model!), { dtype: "float16" });
    const v = variant();
    tidy(() => {
      const f = openGolden(entry.file);
      const x = inputsOf(f, "cpu");
      applyTokenMerging(unet, v.options);
      const out = unet.call(x.sample.to("float16"), x.timestep, x.ehs.to("float16"));
      expect(out.dtype).toBe("float16");
      const e = maxError(f32(out), f32(goldenTensor(f, v.key)));
      expect(e.maxAbs / e.maxRef).toBeLessThanOrEqual(2e-2); // as the plain float16 UNet test: 11-bit mantissas through ~20 layers
    });
    unet.dispose();
  });
});

describe("SDXL (first level without attention)", () => {
  test("\"auto\" merges the first attention level (downsample 2); tomesd's default maxDownsample 1 merges nothing there", () => {
    const sdxl = goldenCases("unet").find((e) => e.meta.model?.split("/").includes("sdxl"));
    expect(sdxl).toBeDefined();
    const live0 = memoryStats("cpu").live;
    const unet = UNet2DConditionModel.fromPretrained(path.join(goldenDir, sdxl!.meta.model!));
    tidy(() => {
      const f = openGolden(sdxl!.file);
      const c = Object.keys(sdxl!.tensors)[0]!.split("/")[0]!;
      const get = (n: string) => (sdxl!.tensors[`${c}/${n}`] ? goldenTensor(f, `${c}/${n}`) : null);
      const x: Inputs = { sample: get("sample")!, timestep: get("timestep")!, ehs: get("encoder_hidden_states")!, extra: { textEmbeds: get("text_embeds"), timeIds: get("time_ids") } };
      const vanilla = run(unet, x);
      const h = applyTokenMerging(unet, { ratio: 0.5, useRand: false });
      expect(h.maxDownsample).toBe(2);
      expect(h.blocks.length).toBeGreaterThan(0);
      expect(h.blocks.some((b) => b.startsWith("down_blocks.0."))).toBe(false);
      const calls0 = h.timing.calls;
      const out = run(unet, x);
      expect(h.timing.calls - calls0).toBeGreaterThan(0); // matchings were computed
      expect(same(out, vanilla)).toBeGreaterThan(0);
      expect(out.every(Number.isFinite)).toBe(true);
      applyTokenMerging(unet, { ratio: 0.5, useRand: false, maxDownsample: 1 });
      expect(run(unet, x)).toEqual(vanilla);
      removeTokenMerging(unet);
      expect(run(unet, x)).toEqual(vanilla);
    });
    unet.dispose();
    expect(memoryStats("cpu").live).toBe(live0);
  });
});

describe("option validation", () => {
  const unet = UNet2DConditionModel.fromPretrained(path.join(goldenDir, entries[0]!.meta.model!));
  afterAll(() => unet.dispose());
  const bad: [TokenMergingOptions, string, RegExp][] = [
    [{ ratio: 0.8 }, "ratio", /ratio must be a number in \[0, 0\.75\].*lower the ratio/],
    [{ ratio: -0.1 }, "ratio", /ratio must be a number in \[0, 0\.75\]/],
    [{ ratio: 0.6, sx: 2, sy: 1 }, "ratio", /\[0, 0\.5\].*raise sx \/ sy/],
    [{ ratio: Number.NaN }, "ratio", /ratio/],
    [{ sx: 0 }, "sx", /sx must be a positive integer, got 0/],
    [{ sy: 1.5 }, "sy", /sy must be a positive integer, got 1\.5/],
    [{ maxDownsample: 0 }, "maxDownsample", /maxDownsample must be "auto" or a positive integer/],
    [{ maxDownsample: "all" as never }, "maxDownsample", /"all"/],
    [{ useRand: 1 as never }, "useRand", /useRand must be true or false/],
    [{ max_downsample: 2 } as never, "max_downsample", /unknown option "max_downsample".*maxDownsample/],
    [{ mode: "todo", factor: 0 }, "factor", /factor must be a positive integer/],
    [{ mode: "todo", maxDepth: -1 }, "maxDepth", /maxDepth must be a positive integer/],
    [{ mode: "todo", ratio: 0.5 } as never, "ratio", /unknown option "ratio" for mode "todo"/],
    [{ mode: "merge" } as never, "mode", /mode must be "tome" or "todo"/],
    [{ seed: 1.5 }, "seed", /seed must be an integer/],
  ];
  for (const [opts, option, message] of bad)
    test(`${JSON.stringify(opts)}: TokenMergingOptionError naming ${option}; nothing installed or removed`, () => {
      const before = applyTokenMerging(unet, { ratio: 0.25 });
      const hooks0 = hooks(unet);
      let err: unknown = null;
      try {
        applyTokenMerging(unet, opts);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(TokenMergingOptionError);
      expect((err as TokenMergingOptionError).option).toBe(option);
      expect((err as Error).message).toMatch(message);
      expect(tokenMergingOf(unet)).toBe(before); // the previous installation stays
      expect(hooks(unet)).toBe(hooks0);
      removeTokenMerging(unet);
      expect(processors(unet).every((p) => p.name === "default")).toBe(true);
    });
});
