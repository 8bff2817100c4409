// AutoencoderKL against the golden data: every VAE case this file drives (test/golden/registry.ts) is
// loaded from its model folder through fromPretrained and every output is compared (encode -> mean / std /
// logvar of the latent distribution, decode, the untiled references of the tiling cases, and the tiled
// outputs after enableTiling with the entry's meta `tiling` values, which must also be the defaults the
// model derives from its config; any batch size and latent shape the file holds; tolerance 1e-5·max|ref|,
// the golden README's single-module tolerance). Also: real-size manifests rebuilt on "meta", the latent
// distribution's seeded sampling (torch generator semantics), legacy attention names, slicing and tiling
// switches, error paths and memory accounting.

import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { openSafetensors, type TensorInput, writeSafetensors } from "../../src/io/safetensors.ts";
import { LoadStateDictError } from "../../src/nn/module.ts";
import { setAttentionKind } from "../../src/nn/attention-processors.ts";
import { type Tensor, TorchGenerator, add, cat, full, memoryStats, mul, randn, tidy, zeros } from "../../src/tensor/index.ts";
import { AutoencoderKL, ConfigError, DiagonalGaussianDistribution, type VaeTilingOptions, renameLegacyVaeKey } from "../../src/models/vae/index.ts";
import { decodeGeometry, encodeGeometry, tiledApply } from "../../src/models/vae/tiling.ts";
import { goldenDriven } from "../golden/registry.ts";
import { goldenTensor, maxError, openGolden } from "../helpers/golden.ts";
import { goldenDir } from "../helpers/paths.ts";

const cases = goldenDriven(import.meta.path);
const f32 = (t: Tensor) => t.toTypedArray() as Float32Array;

/** Golden names are `<group>/<name>`; a group's input is `<group>/x` (encode) or `<group>/z` (decode). */
function groupsOf(tensors: Record<string, unknown>): Map<string, string[]> {
  const groups = new Map<string, string[]>();
  for (const name of Object.keys(tensors)) {
    const i = name.indexOf("/");
    if (i < 0) throw new Error(`golden tensor ${JSON.stringify(name)} has no <group>/ prefix`);
    const g = name.slice(0, i);
    groups.set(g, [...(groups.get(g) ?? []), name.slice(i + 1)]);
  }
  return groups;
}

interface OutputSpec {
  op: "encode" | "decode";
  field: "mean" | "std" | "logvar" | "out";
  /** Computed after enableTiling (a `tiled_*` group's outputs without the `untiled_` prefix). */
  tiled: boolean;
}

/** What computes a golden output: encode or decode, which field, with or without tiling. */
function outputSpec(group: string, output: string): OutputSpec {
  const plain = output.startsWith("untiled_") ? output.slice("untiled_".length) : output;
  const tiled = group.startsWith("tiled_") && plain === output;
  if (plain === "mean" || plain === "std" || plain === "logvar") return { op: "encode", field: plain, tiled };
  if (plain === "out") return { op: "decode", field: "out", tiled };
  throw new Error(`golden output ${group}/${output} is not known to this test`);
}

/** The entry's meta `tiling` (diffusers' attribute names) in AutoencoderKL.enableTiling's names. */
function tilingOf(entry: { file: string; meta: Record<string, unknown> }): VaeTilingOptions {
  const t = entry.meta.tiling as Record<string, unknown> | undefined;
  if (!t) throw new Error(`${entry.file}: tiled outputs but no meta \`tiling\``);
  return {
    tileSampleMinSize: t.tile_sample_min_size as number,
    tileLatentMinSize: t.tile_latent_min_size as number,
    tileOverlapFactor: t.tile_overlap_factor as number,
  };
}

describe("golden AutoencoderKL", () => {
  test("index.json lists VAE cases", () => {
    expect(cases.length).toBeGreaterThan(0);
  });

  for (const entry of cases) {
    const modelDir = path.join(goldenDir, entry.meta.model!);
    for (const [group, names] of groupsOf(entry.tensors)) {
      const outputs = names.filter((n) => n !== "x" && n !== "z");
      for (const tiled of [false, true]) {
        const checked = outputs.filter((n) => outputSpec(group, n).tiled === tiled);
        if (checked.length === 0) continue;
        test(`${entry.file} ${group}: ${checked.join(", ")}${tiled ? " (tiled, meta tiling)" : ""} (${entry.meta.model})`, () => {
          const live0 = memoryStats("cpu").live;
          const vae = AutoencoderKL.fromPretrained(modelDir);
          if (tiled) {
            const t = tilingOf(entry);
            expect(vae.defaultTiling()).toEqual(t); // diffusers derives these from the config; so do we
            vae.enableTiling(t);
          }
          const f = openGolden(entry.file);
          const report: string[] = [];
          tidy(() => {
            const op = outputSpec(group, checked[0]!).op;
            const input = goldenTensor(f, `${group}/${op === "encode" ? "x" : "z"}`, "float32");
            let results: Record<string, Tensor>;
            if (op === "encode") {
              const d = vae.encode(input).latentDist;
              results = { mean: d.mean, std: d.std, logvar: d.logvar };
            } else results = { out: vae.decode(input) };
            for (const name of checked) {
              const spec = outputSpec(group, name);
              expect(spec.op, `${group}/${name}`).toBe(op);
              const ref = goldenTensor(f, `${group}/${name}`, "float32");
              const act = results[spec.field]!;
              expect(act.shape, name).toEqual(ref.shape);
              const { maxAbs, maxRef } = maxError(f32(act), f32(ref));
              report.push(`${group}/${name} max|err| ${maxAbs.toExponential(2)} (rel ${(maxAbs / maxRef).toExponential(2)})`);
              expect(maxAbs, `${entry.file}: ${group}/${name}`).toBeLessThanOrEqual(1e-5 * maxRef); // single-module tolerance (golden README)
              const untiled = `${group}/untiled_${name}`;
              if (tiled && entry.tensors[untiled]) {
                // the tiles really were blended: the untiled reference differs by far more than the tolerance
                const { maxAbs: apart, maxRef: ref2 } = maxError(f32(act), f32(goldenTensor(f, untiled, "float32")));
                expect(apart, `${untiled} vs tiled`).toBeGreaterThan(1e-2 * ref2);
              }
            }
          });
          console.log(`${entry.file}: ${report.join("; ")}`);
          vae.dispose();
          expect(memoryStats("cpu").live).toBe(live0);
        });
      }
    }
  }

  test("naive and default (fused) mid-block attention agree", () => {
    const entry = cases[0]!;
    const vae = AutoencoderKL.fromPretrained(path.join(goldenDir, entry.meta.model!));
    const z = goldenTensor(openGolden(entry.file), "decode/z", "float32");
    try {
      expect(vae.decoder.mid_block.attentions?.at(0).attentionKind).toBe("fused"); // the default processor's kind
      const chunked = tidy(() => f32(vae.decode(z)));
      expect(setAttentionKind(vae, "naive")).toBe(2);
      const naive = tidy(() => f32(vae.decode(z)));
      const { maxAbs, maxRef } = maxError(naive, chunked);
      expect(maxAbs).toBeLessThanOrEqual(1e-6 * maxRef); // same math, other summation order: float32 rounding
    } finally {
      z.dispose();
      vae.dispose();
    }
  });

  test("float16 load runs and stays close to the golden decode", () => {
    const entry = cases[0]!;
    const vae = AutoencoderKL.fromPretrained(path.join(goldenDir, entry.meta.model!), { dtype: "float16" });
    expect(vae.parameters().every((p) => p.dtype === "float16")).toBe(true);
    tidy(() => {
      const f = openGolden(entry.file);
      const out = vae.decode(goldenTensor(f, "decode/z", "float32").to("float16"));
      expect(out.dtype).toBe("float16");
      const { maxAbs, maxRef } = maxError(f32(out.to("float32")), f32(goldenTensor(f, "decode/out", "float32")));
      expect(maxAbs).toBeLessThanOrEqual(2e-2 * maxRef); // 11-bit mantissa through ~20 layers
    });
    vae.dispose();
  });
});

describe("slicing and tiling switches", () => {
  const entry = cases[0]!;
  const modelDir = path.join(goldenDir, entry.meta.model!);

  test("enableSlicing: a batch of 3 encoded / decoded image by image matches the batched run; disableSlicing restores it bit for bit", () => {
    const live0 = memoryStats("cpu").live;
    const vae = AutoencoderKL.fromPretrained(modelDir);
    tidy(() => {
      const f = openGolden(entry.file);
      const z1 = goldenTensor(f, "decode/z", "float32"); // [1, L, h, w]
      const z = cat([z1, mul(z1, 0.5), add(z1, 0.25)], 0); // [3, L, h, w]
      const x1 = goldenTensor(f, "encode/x", "float32");
      const x = cat([x1, mul(x1, -0.5), add(mul(x1, 0.5), 0.1)], 0); // [3, 3, H, W]
      const batched = { dec: f32(vae.decode(z)), enc: f32(vae.encode(x).latentDist.mean) };
      vae.enableSlicing();
      expect(vae.useSlicing).toBe(true);
      const sliced = { dec: f32(vae.decode(z)), enc: f32(vae.encode(x).latentDist.mean) };
      const single = f32(vae.decode(z1));
      vae.disableSlicing();
      const again = { dec: f32(vae.decode(z)), enc: f32(vae.encode(x).latentDist.mean) };
      for (const k of ["dec", "enc"] as const) {
        const { maxAbs, maxRef } = maxError(sliced[k], batched[k]);
        console.log(`slicing ${k}: max|sliced − batched| ${maxAbs.toExponential(2)} (rel ${(maxAbs / maxRef).toExponential(2)})`);
        // batched CPU kernels may pick another convolution algorithm / GEMM blocking for another batch size
        // (architecture decision 13): float32 summation order only, observed 0 … 7.5e-7 relative
        expect(maxAbs).toBeLessThanOrEqual(1e-5 * maxRef);
        expect(maxError(again[k], batched[k]).maxAbs).toBe(0);
      }
      // image 0 of the sliced run is a batch-of-1 decode: identical
      expect(maxError(sliced.dec.subarray(0, single.length), single).maxAbs).toBe(0);
    });
    vae.dispose();
    expect(memoryStats("cpu").live).toBe(live0);
  });

  test("tiling: inputs no larger than a tile take the untiled path bit for bit; odd sizes give the untiled shapes; disableTiling restores", () => {
    const live0 = memoryStats("cpu").live;
    const vae = AutoencoderKL.fromPretrained(modelDir);
    const t = vae.defaultTiling();
    const f = vae.scaleFactor;
    tidy(() => {
      const zSmall = randn([1, vae.config.latent_channels, t.tileLatentMinSize, t.tileLatentMinSize - 1], { seed: 3 });
      const zBig = randn([1, vae.config.latent_channels, t.tileLatentMinSize + 3, 2 * t.tileLatentMinSize + 1], { seed: 4 });
      const xOdd = randn([1, vae.config.in_channels, t.tileSampleMinSize + 13, 2 * t.tileSampleMinSize - 3], { seed: 5 });
      const plain = { small: f32(vae.decode(zSmall)), big: f32(vae.decode(zBig)), enc: vae.encode(xOdd).latentDist.mean };
      vae.enableTiling();
      expect(vae.useTiling).toBe(true);
      expect(vae.tiling).toEqual(t);
      expect(maxError(f32(vae.decode(zSmall)), plain.small).maxAbs).toBe(0);
      const big = vae.decode(zBig);
      expect(big.shape).toEqual([1, vae.config.out_channels, zBig.shape[2]! * f, zBig.shape[3]! * f]);
      expect(maxError(f32(big), plain.big).maxAbs).toBeGreaterThan(0); // tiled: each tile decoded on its own
      const enc = vae.encode(xOdd).latentDist.mean;
      expect(enc.shape).toEqual(plain.enc.shape); // floor(n / 2) per level, tile by tile, sums to the untiled size
      vae.disableTiling();
      expect(maxError(f32(vae.decode(zBig)), plain.big).maxAbs).toBe(0);
      expect(vae.tiling).toEqual(t); // kept, as diffusers keeps its attributes
    });
    vae.dispose();
    expect(memoryStats("cpu").live).toBe(live0);
  });

  test("float16 tiled decode (blends computed in float32, rounded once) stays close to the golden tiled decode", () => {
    const tiledCase = cases.find((e) => e.tensors["tiled_decode/out"] && e.meta.tiling);
    expect(tiledCase).toBeDefined();
    const vae = AutoencoderKL.fromPretrained(path.join(goldenDir, tiledCase!.meta.model!), { dtype: "float16" });
    vae.enableTiling(tilingOf(tiledCase!));
    tidy(() => {
      const f = openGolden(tiledCase!.file);
      const out = vae.decode(goldenTensor(f, "tiled_decode/z", "float32").to("float16"));
      expect(out.dtype).toBe("float16");
      const { maxAbs, maxRef } = maxError(f32(out.to("float32")), f32(goldenTensor(f, "tiled_decode/out", "float32")));
      expect(maxAbs).toBeLessThanOrEqual(2e-2 * maxRef); // 11-bit mantissa through ~20 layers, as the untiled float16 test
    });
    vae.dispose();
  });

  test("tile geometry as diffusers' for SD's 512-px tiles; a tile that fails leaves nothing allocated", () => {
    const sd = { tileSampleMinSize: 512, tileLatentMinSize: 64, tileOverlapFactor: 0.25 };
    expect(decodeGeometry(sd)).toEqual({ tileIn: 64, stride: 48, blend: 128, keep: 384 }); // overlap_size, blend_extent, row_limit
    expect(encodeGeometry(sd)).toEqual({ tileIn: 512, stride: 384, blend: 16, keep: 48 });
    const live0 = memoryStats("cpu").live;
    const x = randn([1, 2, 20, 20], { seed: 6 });
    let calls = 0;
    const g = decodeGeometry({ tileSampleMinSize: 16, tileLatentMinSize: 8, tileOverlapFactor: 0.25 });
    const fail = () =>
      tiledApply(x, g, (t) => {
        if (++calls === 6) throw new Error("tile 6 failed"); // row 1, column 1: strips of row 0 and of row 1 held
        return mul(t, 2); // [1, 2, h, w]: a stand-in for the decoder (output length = input length)
      }, (n) => n);
    expect(fail).toThrow("tile 6 failed");
    x.dispose();
    expect(memoryStats("cpu").live).toBe(live0);
  });

  test("enableTiling options: explicit sizes take effect, bad values are refused before anything changes", () => {
    const config = JSON.parse(readFileSync(path.join(modelDir, "config.json"), "utf8")) as Record<string, unknown>;
    const vae = new AutoencoderKL({ ...config, sample_size: [64, 64] }, { device: "meta" });
    const levels = vae.config.block_out_channels.length - 1;
    // diffusers: sample_size (its first entry when a list) and int(sample_size / 2^(levels − 1))
    expect(vae.defaultTiling()).toEqual({ tileSampleMinSize: 64, tileLatentMinSize: Math.trunc(64 / 2 ** levels), tileOverlapFactor: 0.25 });
    expect(vae.useTiling).toBe(false);
    vae.enableTiling({ tileSampleMinSize: 48, tileLatentMinSize: 12 });
    expect(vae.tiling).toEqual({ tileSampleMinSize: 48, tileLatentMinSize: 12, tileOverlapFactor: 0.25 });
    for (const bad of [{ tileSampleMinSize: 0 }, { tileLatentMinSize: 2.5 }, { tileOverlapFactor: 1 }, { tileOverlapFactor: -0.1 }, { tileLatentMinSize: 1, tileOverlapFactor: 0.5 }])
      expect(() => vae.enableTiling(bad)).toThrow(RangeError);
    expect(vae.tiling.tileSampleMinSize).toBe(48);
    vae.dispose();
  });
});

describe("manifests (real-size models built on meta)", () => {
  const dir = path.join(goldenDir, "manifests");
  const manifests = readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .map((f) => ({ file: f, json: JSON.parse(readFileSync(path.join(dir, f), "utf8")) as Record<string, unknown> }))
    .filter((m) => m.json.class_name === "AutoencoderKL");

  test("the manifests folder has AutoencoderKL entries", () => {
    expect(manifests.length).toBeGreaterThan(0);
  });

  for (const { file, json } of manifests) {
    test(`${file}: parameter names, shapes, state-dict order and count ${(json.param_count as number).toLocaleString("en")}`, () => {
      const cpu0 = memoryStats("cpu").live;
      const vae = new AutoencoderKL(json.resolved_config as Record<string, unknown>, { device: "meta" });
      expect(memoryStats("cpu").live).toBe(cpu0);
      const ours = vae.namedParameters().map(([k, p]) => `${k} [${p.shape.join(", ")}]`);
      const theirs = (json.params as [string, number[]][]).map(([k, s]) => `${k} [${s.join(", ")}]`);
      expect([...ours].sort()).toEqual([...theirs].sort());
      expect(ours).toEqual(theirs); // diffusers' state-dict order too
      expect(vae.numParameters()).toBe(json.param_count as number);
      expect(vae.numParameters()).toBe(json.expected_param_count as number);
      vae.dispose();
    });
  }

  test("use_quant_conv / use_post_quant_conv / mid_block_add_attention false drop those parameters", () => {
    const cfg = manifests[0]!.json.resolved_config as Record<string, unknown>;
    const vae = new AutoencoderKL({ ...cfg, use_quant_conv: false, use_post_quant_conv: false, mid_block_add_attention: false }, { device: "meta" });
    const names = vae.namedParameters().map(([k]) => k);
    expect(names.some((k) => k.includes("quant_conv") || k.includes("attentions"))).toBe(false);
    expect(vae.quant_conv).toBeNull();
    expect(vae.decoder.mid_block.attentions).toBeNull();
    vae.dispose();
  });
});

describe("latent distribution", () => {
  test("sample(generator) = mean + std·randn(seed) exactly, and the generator state advances", () => {
    const entry = cases[0]!;
    const vae = AutoencoderKL.fromPretrained(path.join(goldenDir, entry.meta.model!));
    tidy(() => {
      const { latentDist: d } = vae.encode(goldenTensor(openGolden(entry.file), "encode/x", "float32"));
      const g = new TorchGenerator(1234);
      const s1 = d.sample(g);
      const s2 = d.sample(g); // continues the stream
      const want1 = add(d.mean, mul(d.std, randn(d.mean.shape, { seed: 1234 })));
      expect(maxError(f32(s1), f32(want1)).maxAbs).toBe(0);
      const g2 = new TorchGenerator(1234);
      g2.randn(d.mean.numel);
      const want2 = add(d.mean, mul(d.std, randn(d.mean.shape, { generator: g2 })));
      expect(maxError(f32(s2), f32(want2)).maxAbs).toBe(0);
      expect(maxError(f32(s1), f32(s2)).maxAbs).toBeGreaterThan(0);
      const mode = d.mode();
      expect(maxError(f32(mode), f32(d.mean)).maxAbs).toBe(0);
      // std = exp(0.5·logvar), var = exp(logvar)
      const std = f32(d.std);
      const variance = f32(d.var);
      const lv = f32(d.logvar);
      for (let i = 0; i < lv.length; i++) {
        expect(lv[i]!).toBeGreaterThanOrEqual(-30);
        expect(lv[i]!).toBeLessThanOrEqual(20);
        expect(Math.abs(std[i]! - Math.exp(0.5 * lv[i]!))).toBeLessThanOrEqual(1e-6 * std[i]!);
        expect(Math.abs(variance[i]! - Math.exp(lv[i]!))).toBeLessThanOrEqual(1e-6 * variance[i]!);
      }
    });
    vae.dispose();
  });

  test("ε reproduces torch.randn with a seeded CPU generator (rng golden) — zero mean, unit std", () => {
    const specs = (JSON.parse(readFileSync(path.join(goldenDir, "rng/randn.json"), "utf8")) as { key: string; fn: string; shape: number[]; seed: number }[])
      .filter((s) => s.fn === "randn" && s.shape.length === 4);
    expect(specs.length).toBeGreaterThan(0);
    const f = openSafetensors(path.join(goldenDir, "rng/randn.safetensors"));
    for (const s of specs)
      tidy(() => {
        const [B, C, H, W] = s.shape as [number, number, number, number];
        const d = new DiagonalGaussianDistribution(zeros([B, 2 * C, H, W])); // logvar 0 -> std 1
        const eps = d.sample(new TorchGenerator(s.seed));
        const ref = goldenTensor(f, s.key, "float32");
        expect(maxError(f32(eps), f32(ref)).maxAbs, s.key).toBeLessThanOrEqual(4e-6); // torch's SLEEF log/sincos vs ours (golden README, rng/)
      });
  });

  test("a list of generators draws each sample from its own (diffusers randn_tensor)", () => {
    tidy(() => {
      const d = new DiagonalGaussianDistribution(zeros([2, 8, 4, 4]));
      const s = d.sample([new TorchGenerator(1), new TorchGenerator(2)]);
      const want = cat([randn([1, 4, 4, 4], { seed: 1 }), randn([1, 4, 4, 4], { seed: 2 })], 0);
      expect(maxError(f32(s), f32(want)).maxAbs).toBe(0);
      expect(() => d.sample([new TorchGenerator(1), new TorchGenerator(2), new TorchGenerator(3)])).toThrow(/3 generators for a batch of 2/);
    });
  });

  test("logvar is clamped to [-30, 20]; deterministic gives zero std; tidy disposes an unreturned distribution", () => {
    const live0 = memoryStats("cpu").live;
    const moments = (logvar: number) => cat([zeros([1, 1, 1, 2]), full([1, 1, 1, 2], logvar)], 1); // [1, 2, 1, 2]
    let inner: DiagonalGaussianDistribution | null = null;
    const kept = tidy(() => {
      inner = new DiagonalGaussianDistribution(moments(-100)); // not returned: disposed with the scope
      expect([...f32(inner.logvar)]).toEqual([-30, -30]);
      const hi = new DiagonalGaussianDistribution(moments(100));
      expect([...f32(hi.logvar)]).toEqual([20, 20]);
      const det = new DiagonalGaussianDistribution(moments(3), { deterministic: true });
      expect([...f32(det.std)]).toEqual([0, 0]);
      expect([...f32(det.sample(new TorchGenerator(0)))]).toEqual([0, 0]);
      return { dist: hi }; // returned: survives the scope
    });
    expect(inner!.isDisposed).toBe(true);
    expect(kept.dist.isDisposed).toBe(false);
    expect([...f32(kept.dist.std)]).toEqual([Math.fround(Math.exp(10)), Math.fround(Math.exp(10))]);
    kept.dist.dispose();
    expect(memoryStats("cpu").live).toBe(live0);
  });
});

describe("loading paths, errors and memory", () => {
  const tmp = mkdtempSync(path.join(tmpdir(), "bd-vae-"));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  const entry = cases[0]!;
  const goldenModel = path.join(goldenDir, entry.meta.model!);
  const config = JSON.parse(readFileSync(path.join(goldenModel, "config.json"), "utf8")) as Record<string, unknown>;
  const weights = openSafetensors(path.join(goldenModel, "diffusion_pytorch_model.safetensors"));

  /** A component folder with `config` and the golden weights passed through `edit`. */
  async function folder(name: string, opts: { config?: Record<string, unknown>; edit?: (t: Record<string, TensorInput>) => void } = {}) {
    const dir = path.join(tmp, name);
    rmSync(dir, { recursive: true, force: true });
    await Bun.write(path.join(dir, "config.json"), JSON.stringify(opts.config ?? config));
    const tensors: Record<string, TensorInput> = {};
    for (const e of weights.entries()) tensors[e.name] = { dtype: e.dtype, shape: e.shape, data: e.data };
    opts.edit?.(tensors);
    await writeSafetensors(path.join(dir, "diffusion_pytorch_model.safetensors"), tensors);
    return dir;
  }

  const errorOf = (fn: () => unknown): Error => {
    try {
      fn();
    } catch (e) {
      return e as Error;
    }
    throw new Error("expected an error");
  };

  function decodeOf(vae: AutoencoderKL): Float32Array {
    return tidy(() => f32(vae.decode(goldenTensor(openGolden(entry.file), "decode/z", "float32"))));
  }
  function encodeOf(vae: AutoencoderKL): Float32Array {
    return tidy(() => f32(vae.encode(goldenTensor(openGolden(entry.file), "encode/x", "float32")).latentDist.mean));
  }

  test("legacy mid-block attention names (query/key/value/proj_attn) load and give identical outputs", async () => {
    const renamed: string[] = [];
    const dir = await folder("legacy", {
      edit: (t) => {
        for (const key of Object.keys(t)) {
          const m = /^(.*\.mid_block\.attentions\.0)\.(to_q|to_k|to_v|to_out\.0)\.(weight|bias)$/.exec(key);
          if (!m) continue;
          const old = { to_q: "query", to_k: "key", to_v: "value", "to_out.0": "proj_attn" }[m[2]!]!;
          t[`${m[1]}.${old}.${m[3]}`] = t[key]!;
          delete t[key];
          renamed.push(key);
        }
      },
    });
    expect(renamed.length).toBe(16); // encoder + decoder × q, k, v, out × weight, bias
    expect(openSafetensors(path.join(dir, "diffusion_pytorch_model.safetensors")).names()).toContain("encoder.mid_block.attentions.0.query.weight");
    const ref = AutoencoderKL.fromPretrained(goldenModel);
    const old = AutoencoderKL.fromPretrained(dir);
    expect(maxError(decodeOf(old), decodeOf(ref)).maxAbs).toBe(0);
    expect(maxError(encodeOf(old), encodeOf(ref)).maxAbs).toBe(0);
    ref.dispose();
    old.dispose();
    expect(renameLegacyVaeKey("decoder.mid_block.attentions.0.proj_attn.bias")).toBe("decoder.mid_block.attentions.0.to_out.0.bias");
    expect(renameLegacyVaeKey("decoder.mid_block.attentions.0.group_norm.weight")).toBe("decoder.mid_block.attentions.0.group_norm.weight");
    expect(renameLegacyVaeKey("decoder.up_blocks.0.query.weight")).toBe("decoder.up_blocks.0.query.weight");
  });

  test("unsupported config values fail naming the field and value (and the config path)", async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ down_block_types: ["DownEncoderBlock2D", "CrossAttnDownBlock2D", "DownEncoderBlock2D"] }, 'unsupported down_block_types = "CrossAttnDownBlock2D"'],
      [{ up_block_types: ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpBlock2D"] }, 'unsupported up_block_types = "UpBlock2D"'],
      [{ act_fn: "gelu" }, 'unsupported act_fn = "gelu"'],
      [{ norm_num_groups: 5 }, "unsupported norm_num_groups = 5"],
      [{ block_out_channels: [] }, "unsupported block_out_channels = []"],
      [{ _class_name: "AutoencoderTiny" }, 'unsupported _class_name = "AutoencoderTiny"'],
      [{ shift_factor: "x" }, 'unsupported shift_factor = "x"'],
      [{ use_quant_conv: "yes" }, 'unsupported use_quant_conv = "yes"'],
    ];
    for (const [patch, message] of cases)
      expect(errorOf(() => new AutoencoderKL({ ...config, ...patch }, { device: "meta" })).message).toContain(message);
    const dir = await folder("bad-act", { config: { ...config, act_fn: "relu" } });
    const e = errorOf(() => AutoencoderKL.fromPretrained(dir));
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toContain('unsupported act_fn = "relu"');
    expect(e.message).toContain(path.join(dir, "config.json"));
    // defaults fill missing keys, as diffusers does; a null shift_factor stays null
    const vae = new AutoencoderKL({ block_out_channels: [32], norm_num_groups: 8 }, { device: "meta" });
    expect(vae.config.layers_per_block).toBe(1);
    expect(vae.shiftFactor).toBeNull();
    expect(vae.scalingFactor).toBe(0.18215);
    expect(vae.forceUpcast).toBe(true);
    vae.dispose();
  });

  test("strict loading names a missing key and a mis-shaped key; nothing stays allocated", async () => {
    const live0 = memoryStats("cpu").live;
    const missing = await folder("missing-key", { edit: (t) => delete t["decoder.conv_out.bias"] });
    const e1 = errorOf(() => AutoencoderKL.fromPretrained(missing));
    expect(e1).toBeInstanceOf(LoadStateDictError);
    expect(e1.message).toContain("missing keys (1): decoder.conv_out.bias");
    const key = "post_quant_conv.weight";
    const misShaped = await folder("wrong-shape", {
      edit: (t) => (t[key] = { dtype: "F32", shape: [4, 4, 3, 3], data: new Float32Array(144) }),
    });
    const onMeta = new AutoencoderKL(config, { device: "meta" }); // the parsed config, defaults filled in
    const C = onMeta.config.latent_channels;
    onMeta.dispose();
    expect(errorOf(() => AutoencoderKL.fromPretrained(misShaped)).message).toContain(`${key} expected [${C}, ${C}, 1, 1] got [4, 4, 3, 3]`);
    expect(memoryStats("cpu").live).toBe(live0);
  });

  test("memory: live bytes return to the start after load + encode + decode + dispose", () => {
    const live0 = memoryStats("cpu").live;
    const vae = AutoencoderKL.fromPretrained(goldenModel);
    expect(memoryStats("cpu").live - live0).toBe(vae.parameterBytes());
    const f = openGolden(entry.file);
    const x = goldenTensor(f, "encode/x", "float32");
    const { latentDist } = vae.encode(x);
    const z = latentDist.sample(new TorchGenerator(0));
    const img = vae.decode(z);
    const rec = vae.call(x); // forward: encode, mode, decode
    expect(img.shape).toEqual(x.shape);
    expect(rec.shape).toEqual(x.shape);
    for (const t of [x, z, img, rec]) t.dispose();
    latentDist.dispose();
    expect(latentDist.isDisposed).toBe(true);
    expect(() => latentDist.sample()).toThrow(/after dispose/);
    vae.dispose();
    expect(memoryStats("cpu").live).toBe(live0);
  });

  test("inputs with the wrong channel count or dtype are rejected with their shape", () => {
    const vae = AutoencoderKL.fromPretrained(goldenModel);
    tidy(() => {
      const C = vae.config.latent_channels;
      expect(() => vae.decode(zeros([1, C + 1, 8, 8]))).toThrow(`AutoencoderKL.decode: expected [B, ${C}, H, W], got [1, ${C + 1}, 8, 8]`);
      expect(() => vae.encode(zeros([1, 3, 8, 8], { dtype: "float16" }))).toThrow(/dtype float16 differs/);
    });
    vae.dispose();
  });
});
