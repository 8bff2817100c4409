// UNet2DConditionModel against the golden data: every unet case of the index entries this file drives
// (test/golden/registry.ts; cases discovered from the tensor names, batch sizes, 0-d or 1-d per-sample
// timesteps and block counts taken from the files and configs) loaded from its model folder through
// fromPretrained, tolerance 1e-5·max|ref| (the golden README's single-module tolerance); the real-size
// SD 1.5 / SD 2.1 / SDXL manifests rebuilt on "meta" name by name; timestep forms, per-sample timesteps, odd
// latent sizes (explicit upsample sizes), memory, float16, and the error paths (unsupported config values —
// patched into the loaded config and into the same config with one more level —, missing / mis-shaped keys,
// missing weights).

import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { ModelFolderError } from "../../src/io/model-folder.ts";
import { type SafetensorsFile, openSafetensors, type TensorInput, writeSafetensors } from "../../src/io/safetensors.ts";
import { Attention } from "../../src/nn/attention.ts";
import { LoadStateDictError } from "../../src/nn/module.ts";
import {
  ConfigError,
  UNET_CONFIG_DEFAULTS,
  UNet2DConditionModel,
  type UNetForwardOptions,
  parseUNetConfig,
  sinusoidalEmbedding,
  unetLevels,
} from "../../src/models/unet/index.ts";
import { type Tensor, cat, memoryStats, randn, resetPeakMemory, tensor, tidy } from "../../src/tensor/index.ts";
import { goldenDriven } from "../golden/registry.ts";
import { type GoldenEntry, goldenTensor, maxError, openGolden } from "../helpers/golden.ts";
import { goldenDir } from "../helpers/paths.ts";

const entries = goldenDriven(import.meta.path);
const INPUTS = ["sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids"] as const;
const OUTPUTS = ["out"] as const;

/** Case prefixes ("case0", "case1", ...) in the order the file lists them; every tensor name must be known. */
function casesOf(entry: GoldenEntry): string[] {
  const known = new Set<string>([...INPUTS, ...OUTPUTS]);
  const cases: string[] = [];
  for (const name of Object.keys(entry.tensors)) {
    const i = name.indexOf("/");
    const [c, rest] = [name.slice(0, i), name.slice(i + 1)];
    if (i < 0 || !known.has(rest)) throw new Error(`${entry.file}: golden tensor ${JSON.stringify(name)} is not known to this test`);
    if (!cases.includes(c)) cases.push(c);
  }
  return cases;
}

interface CaseInputs {
  sample: Tensor;
  timestep: Tensor;
  ehs: Tensor;
  extra: UNetForwardOptions;
  out: Tensor;
}

function caseInputs(entry: GoldenEntry, f: SafetensorsFile, c: string): CaseInputs {
  const get = (n: string) => (entry.tensors[`${c}/${n}`] ? goldenTensor(f, `${c}/${n}`) : null);
  return {
    sample: get("sample")!,
    timestep: get("timestep")!,
    ehs: get("encoder_hidden_states")!,
    extra: { textEmbeds: get("text_embeds"), timeIds: get("time_ids") },
    out: get("out")!,
  };
}

const modelDir = (entry: GoldenEntry) => path.join(goldenDir, entry.meta.model!);
const f32 = (t: Tensor) => t.toTypedArray() as Float32Array;

/** A timestep tensor's values (one for 0-d, B for a 1-d per-sample timestep). */
const timestepValues = (t: Tensor): number[] => Array.from(t.toTypedArray() as ArrayLike<number | bigint>, Number);
/** One timestep per batch row: a 0-d (or [1]) timestep is shared by every row. */
function perRow(x: CaseInputs): number[] {
  const v = timestepValues(x.timestep);
  return v.length === 1 ? Array<number>(x.sample.shape[0]!).fill(v[0]!) : v;
}
const describeTimestep = (t: Tensor) => `t=${t.ndim === 0 ? timestepValues(t)[0] : `[${timestepValues(t).join(", ")}]`} ${t.dtype}`;

/** Rows [start, start + n) of a case's per-sample tensors (the timestep as one float32 value per row). */
function rowsOf(x: CaseInputs, start: number, n: number): CaseInputs {
  const r = (t: Tensor | null | undefined) => (t ? t.narrow(0, start, n) : null);
  return {
    sample: r(x.sample)!,
    timestep: tensor(perRow(x).slice(start, start + n)),
    ehs: r(x.ehs)!,
    extra: { textEmbeds: r(x.extra.textEmbeds), timeIds: r(x.extra.timeIds) },
    out: r(x.out)!,
  };
}

/** Several cases as one batch: rows concatenated, timesteps as a 1-d float32 per-sample vector. */
function joinCases(xs: CaseInputs[]): CaseInputs {
  const all = (pick: (x: CaseInputs) => Tensor | null | undefined) => {
    const ts = xs.map(pick);
    return ts.every((t) => t) ? cat(ts as Tensor[], 0) : null;
  };
  return {
    sample: all((x) => x.sample)!,
    timestep: tensor(xs.flatMap(perRow)),
    ehs: all((x) => x.ehs)!,
    extra: { textEmbeds: all((x) => x.extra.textEmbeds), timeIds: all((x) => x.extra.timeIds) },
    out: all((x) => x.out)!,
  };
}

/** Max |a − b| / max |b|. */
function relError(a: Tensor, b: Tensor): number {
  const { maxAbs, maxRef } = maxError(f32(a), f32(b));
  return maxAbs / maxRef;
}

describe("golden UNets", () => {
  test("index.json lists unet cases", () => {
    expect(entries.length).toBeGreaterThan(0);
  });

  for (const entry of entries) {
    test(`${entry.file} (${entry.meta.model}): every case within 1e-5·max|ref|`, () => {
      const live0 = memoryStats("cpu").live;
      const model = UNet2DConditionModel.fromPretrained(modelDir(entry));
      const f = openGolden(entry.file);
      const cases = casesOf(entry);
      expect(cases.length).toBeGreaterThan(0);
      for (const c of cases)
        tidy(() => {
          const x = caseInputs(entry, f, c);
          const out = model.call(x.sample, x.timestep, x.ehs, x.extra);
          expect(out.shape).toEqual(x.out.shape);
          const { maxAbs, maxRef } = maxError(f32(out), f32(x.out));
          console.log(`${entry.file} ${c} (B=${x.sample.shape[0]}, ${describeTimestep(x.timestep)}): max|err| ${maxAbs.toExponential(2)}, max|ref| ${maxRef.toFixed(3)}, rel ${(maxAbs / maxRef).toExponential(2)}`);
          expect(maxAbs, `${entry.file} ${c}`).toBeLessThanOrEqual(1e-5 * maxRef); // single-module tolerance (golden README)
        });
      model.dispose();
      expect(memoryStats("cpu").live).toBe(live0);
    });
  }

  test("naive attention gives the same results as the default (fused) attention", () => {
    for (const entry of entries) {
      const chunked = UNet2DConditionModel.fromPretrained(modelDir(entry));
      const naive = UNet2DConditionModel.fromPretrained(modelDir(entry), { attention: "naive" });
      const kinds = (m: UNet2DConditionModel) => new Set(m.namedModules().flatMap(([, a]) => (a instanceof Attention ? [a.attentionKind] : [])));
      expect(kinds(chunked)).toEqual(new Set(["fused"])); // the default processor's kind
      expect(kinds(naive)).toEqual(new Set(["naive"]));
      tidy(() => {
        const f = openGolden(entry.file);
        const x = caseInputs(entry, f, casesOf(entry)[0]!);
        const a = chunked.call(x.sample, x.timestep, x.ehs, x.extra);
        const b = naive.call(x.sample, x.timestep, x.ehs, x.extra);
        expect(relError(a, b)).toBeLessThanOrEqual(2e-6); // same math, another summation order: float32 rounding
        expect(relError(b, x.out)).toBeLessThanOrEqual(1e-5); // single-module tolerance (golden README)
      });
      chunked.dispose();
      naive.dispose();
    }
  });

  test("float16 weights and activations stay close to the float32 golden", () => {
    const entry = entries[0]!;
    const model = UNet2DConditionModel.fromPretrained(modelDir(entry), { dtype: "float16" });
    expect(model.parameters().every((p) => p.dtype === "float16")).toBe(true);
    tidy(() => {
      const x = caseInputs(entry, openGolden(entry.file), casesOf(entry)[0]!);
      const h = (t: Tensor | null | undefined) => (t ? t.to("float16") : t);
      const out = model.call(x.sample.to("float16"), x.timestep, x.ehs.to("float16"), { textEmbeds: h(x.extra.textEmbeds), timeIds: x.extra.timeIds });
      expect(out.dtype).toBe("float16");
      // 11-bit mantissas through ~20 layers: ~2e-3 relative observed
      expect(relError(out, x.out)).toBeLessThanOrEqual(2e-2);
    });
    model.dispose();
  });
});

describe("timesteps and shapes", () => {
  const entry = entries[0]!;

  test("timestep forms agree: number, 0-d and 1-d tensors, int64 and float32", () => {
    const model = UNet2DConditionModel.fromPretrained(modelDir(entry));
    tidy(() => {
      const f = openGolden(entry.file);
      const c = casesOf(entry)[0]!;
      const x = rowsOf(caseInputs(entry, f, c), 0, 1); // the case's first row (its batch may be larger)
      const t = Math.round(x.timestep.item()); // an integer timestep, so every dtype holds it exactly
      const B = 2;
      const two = (p: Tensor | null | undefined) => (p ? cat([p, p], 0) : null);
      const sample = two(x.sample)!;
      const ehs = two(x.ehs)!;
      const extra = { textEmbeds: two(x.extra.textEmbeds), timeIds: two(x.extra.timeIds) };
      const forms: [string, number | Tensor][] = [
        ["number", t],
        ["0-d int64", tensor(BigInt64Array.of(BigInt(t)), { shape: [] })],
        ["0-d float32", tensor([t], { shape: [] })],
        ["1-d [1] float32", tensor([t])],
        ["1-d [B] int64", tensor(BigInt64Array.from({ length: B }, () => BigInt(t)))],
        ["1-d [B] int32", tensor(Int32Array.from({ length: B }, () => t))],
        ["1-d [B] float32", tensor(Array<number>(B).fill(t))],
      ];
      const outs = forms.map(([, ts]) => f32(model.call(sample, ts, ehs, extra)));
      for (const [i, [name]] of forms.entries()) expect(maxError(outs[i]!, outs[0]!).maxAbs, name).toBe(0);
      // both rows equal the golden row when that row's timestep is an integer
      if (t === x.timestep.item()) {
        const half = outs[0]!.length / 2;
        const ref = f32(x.out.contiguous());
        const tol = 1e-5 * maxError(ref, ref).maxRef; // single-module tolerance (golden README)
        expect(maxError(outs[0]!.subarray(0, half), ref).maxAbs).toBeLessThanOrEqual(tol);
        expect(maxError(outs[0]!.subarray(half), ref).maxAbs).toBeLessThanOrEqual(tol);
      }
      expect(() => model.call(sample, tensor([1, 2, 3]), ehs, extra)).toThrow(/1-d timestep must hold 1 or 2 values, got 3/);
      expect(() => model.call(sample, tensor([[1]]), ehs, extra)).toThrow(/timestep must be 0-d or 1-d/);
    });
    model.dispose();
  });

  test("per-sample 1-d timesteps: every case of a file joined into one batch reproduces every output", () => {
    for (const entry of entries) {
      const model = UNet2DConditionModel.fromPretrained(modelDir(entry));
      tidy(() => {
        const f = openGolden(entry.file);
        const names = casesOf(entry);
        // one case alone is joined with itself, so the batch always mixes at least two rows
        const xs = (names.length > 1 ? names : [names[0]!, names[0]!]).map((c) => caseInputs(entry, f, c));
        const both = joinCases(xs);
        expect(both.timestep.shape).toEqual([both.sample.shape[0]!]);
        const out = model.call(both.sample, both.timestep, both.ehs, both.extra);
        let row = 0;
        for (const [i, x] of xs.entries()) {
          const n = x.sample.shape[0]!;
          // 1e-5·max|ref|: the single-module tolerance; rows are independent in diffusers
          expect(relError(out.narrow(0, row, n), x.out), `${entry.file} part ${i}`).toBeLessThanOrEqual(1e-5);
          row += n;
        }
      });
      model.dispose();
    }
  });

  test("batch 2 with latent sides that are not multiples of 2^upsamplers (explicit upsample sizes)", () => {
    for (const entry of entries) {
      const model = UNet2DConditionModel.fromPretrained(modelDir(entry));
      const factor = 2 ** model.numUpsamplers;
      const [H, W] = [factor * 2 + 2, factor * 3 + 1]; // e.g. 10×13 for 3 levels
      tidy(() => {
        const x = rowsOf(caseInputs(entry, openGolden(entry.file), casesOf(entry)[0]!), 0, 1);
        const sample = randn([2, model.config.in_channels, H, W], { seed: 7 });
        const two = (t: Tensor | null | undefined) => (t ? cat([t, t], 0) : null);
        const ehs = two(x.ehs)!;
        const extra = { textEmbeds: two(x.extra.textEmbeds), timeIds: two(x.extra.timeIds) };
        const out = model.call(sample, 981, ehs, extra);
        expect(out.shape).toEqual([2, model.config.out_channels, H, W]);
        expect(f32(out).every(Number.isFinite)).toBe(true);
        // each row equals the row computed alone (batch independence); 1e-6: float32 rounding of
        // GEMMs whose shapes differ with the batch
        for (const b of [0, 1]) {
          const one = model.call(sample.narrow(0, b, 1), 981, x.ehs, x.extra);
          expect(relError(out.narrow(0, b, 1), one)).toBeLessThanOrEqual(1e-6);
        }
      });
      model.dispose();
    }
  });

  test("encoder attention mask: all-ones changes nothing, dropping tokens changes the output", () => {
    const model = UNet2DConditionModel.fromPretrained(modelDir(entry));
    tidy(() => {
      const x = caseInputs(entry, openGolden(entry.file), casesOf(entry)[0]!);
      const [B, S] = x.ehs.shape as [number, number];
      const plain = model.call(x.sample, x.timestep, x.ehs, x.extra);
      const ones = model.call(x.sample, x.timestep, x.ehs, { ...x.extra, encoderAttentionMask: tensor(Array(B * S).fill(1), { shape: [B, S] }) });
      expect(maxError(f32(ones), f32(plain)).maxAbs).toBe(0);
      const keep = tensor(Array.from({ length: B * S }, (_, i) => (i % S < 10 ? 1 : 0)), { shape: [B, S], dtype: "int64" });
      const masked = model.call(x.sample, x.timestep, x.ehs, { ...x.extra, encoderAttentionMask: keep });
      // masking = the first 10 tokens alone, up to exp(−10000) ≈ 0 weights
      const short = model.call(x.sample, x.timestep, x.ehs.narrow(1, 0, 10).contiguous(), x.extra);
      expect(relError(masked, short)).toBeLessThanOrEqual(1e-5); // float32 rounding of softmaxes over 77 vs 10 keys
      expect(relError(masked, plain)).toBeGreaterThan(1e-3); // dropping 67 of 77 tokens is far above rounding
    });
    model.dispose();
  });

  test("sinusoidal embedding: diffusers' formula, flip order, odd widths padded with zero", () => {
    const e = sinusoidalEmbedding([0, 1, 981, 500.5], 8, { flipSinToCos: true, downscaleFreqShift: 0 });
    for (const [n, t] of [0, 1, 981, 500.5].entries())
      for (let i = 0; i < 4; i++) {
        const arg = t * Math.exp((-Math.log(10000) * i) / 4);
        expect(Math.abs(e[n * 8 + i]! - Math.cos(arg))).toBeLessThan(1e-4); // float32 arguments up to ~1000
        expect(Math.abs(e[n * 8 + 4 + i]! - Math.sin(arg))).toBeLessThan(1e-4);
      }
    const odd = sinusoidalEmbedding([3], 5, {});
    expect(odd.length).toBe(5);
    expect(odd[4]).toBe(0);
    expect(odd[0]).toBeCloseTo(Math.sin(3), 6); // shift 1: f_0 = 1
  });
});

describe("memory", () => {
  test("load + forward + dispose returns CPU live bytes to the start; load peak ≤ weights + one tensor", () => {
    const entry = entries[0]!;
    const live0 = memoryStats("cpu").live;
    resetPeakMemory("cpu");
    const model = UNet2DConditionModel.fromPretrained(modelDir(entry));
    const bytes = model.parameterBytes();
    const largest = Math.max(...model.parameters().map((p) => p.byteLength));
    expect(memoryStats("cpu").live - live0).toBe(bytes);
    expect(memoryStats("cpu").peak - live0).toBeLessThanOrEqual(bytes + largest);
    const x = caseInputs(entry, openGolden(entry.file), casesOf(entry)[0]!);
    const inputs = [x.sample, x.timestep, x.ehs, x.out, x.extra.textEmbeds, x.extra.timeIds].filter((t): t is Tensor => !!t);
    const liveIn = memoryStats("cpu").live;
    const out = model.call(x.sample, x.timestep, x.ehs, x.extra);
    expect(memoryStats("cpu").live - liveIn).toBe(out.byteLength); // only the output survives the forward
    out.dispose();
    for (const t of inputs) t.dispose();
    model.dispose();
    expect(memoryStats("cpu").live).toBe(live0);
  });
});

describe("manifests (real-size UNets built on meta)", () => {
  const dir = path.join(goldenDir, "manifests");
  const manifests = readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .map((f) => ({ file: f, json: JSON.parse(readFileSync(path.join(dir, f), "utf8")) as Record<string, unknown> }))
    .filter((m) => m.json.class_name === "UNet2DConditionModel");
  test("the manifests folder has the SD 1.5, SD 2.1 and SDXL UNets", () => {
    expect(manifests.map((m) => m.json.name).sort()).toEqual(["sd15_unet", "sd21_unet", "sdxl_base_unet"]);
  });

  for (const { file, json } of manifests) {
    test(`${file}: every parameter name and shape (state-dict order) and the count`, () => {
      const cpu0 = memoryStats("cpu").live;
      const model = new UNet2DConditionModel(json.resolved_config as Record<string, unknown>, { device: "meta" });
      expect(memoryStats("cpu").live).toBe(cpu0);
      const ours = model.namedParameters().map(([k, p]) => `${k} [${p.shape.join(", ")}]`);
      const theirs = (json.params as [string, number[]][]).map(([k, s]) => `${k} [${s.join(", ")}]`);
      expect(ours.slice().sort()).toEqual(theirs.slice().sort());
      expect(ours).toEqual(theirs); // same order as torch's state_dict too
      expect(model.numParameters()).toBe(json.param_count as number);
      expect(model.numParameters()).toBe(json.expected_param_count as number); // the published count the manifest records
      expect(json.matches_expected).toBe(true);
      model.dispose();
    });
  }

  test("the source config (defaults left out) builds the same model as the resolved one", () => {
    for (const { json } of manifests) {
      const a = new UNet2DConditionModel(json.source_config as Record<string, unknown>, { device: "meta" });
      expect(a.numParameters()).toBe(json.param_count as number);
      a.dispose();
    }
  });
});

type Config = Record<string, unknown>;
const readConfig = (entry: GoldenEntry): Config => JSON.parse(readFileSync(path.join(modelDir(entry), "config.json"), "utf8")) as Config;

/** The same UNet with one more level: level 0 repeated in every per-level list (up lists: the last). */
function withExtraLevel(cfg: Config): Config {
  const out: Config = { ...cfg };
  for (const k of ["block_out_channels", "down_block_types", "attention_head_dim", "num_attention_heads", "cross_attention_dim", "layers_per_block", "only_cross_attention", "transformer_layers_per_block"]) {
    const v = cfg[k];
    if (Array.isArray(v)) out[k] = [v[0], ...v];
  }
  for (const k of ["up_block_types", "reverse_transformer_layers_per_block"]) {
    const v = cfg[k];
    if (Array.isArray(v)) out[k] = [...v, v.at(-1)];
  }
  return out;
}

/** The loaded config and the same with one more level (3 and 4 levels for the public tiny models). */
function configVariants(cfg: Config): { name: string; cfg: Config }[] {
  const levels = (cfg.block_out_channels as number[]).length;
  return [
    { name: `config (the loaded ${levels}-level UNet)`, cfg },
    { name: `config (${levels + 1} levels: the loaded UNet with level 0 repeated)`, cfg: withExtraLevel(cfg) },
  ];
}

/** Config patches we do not support and the message naming the field and value; list lengths follow `cfg`. */
function unsupportedPatches(cfg: Config): [Config, string][] {
  const channels = cfg.block_out_channels as number[];
  const levels = channels.length;
  const down = cfg.down_block_types as string[];
  const up = cfg.up_block_types as string[];
  const replaced = <T>(list: readonly T[], i: number, v: T): T[] => list.map((x, j) => (j === i ? v : x));
  // a head count that does not divide the channels of some level with attention
  const attnLevel = [...down.keys()].find((i) => down[i] === "CrossAttnDownBlock2D") ?? levels - 1;
  let heads = 3;
  while (channels[attnLevel]! % heads === 0) heads++;
  const tooMany = Array.from({ length: levels + 1 }, (_, i) => 2 ** (i + 1));
  return [
    [{ class_embed_type: "timestep" }, 'class_embed_type = "timestep"'],
    [{ num_class_embeds: 10 }, "num_class_embeds = 10"],
    [{ addition_embed_type: "text" }, 'addition_embed_type = "text"'],
    [{ addition_embed_type: "text_time", addition_time_embed_dim: null }, "addition_time_embed_dim = null"],
    [{ resnet_time_scale_shift: "scale_shift" }, 'resnet_time_scale_shift = "scale_shift"'],
    [{ dual_cross_attention: true }, "dual_cross_attention = true"],
    [{ time_embedding_type: "fourier" }, 'time_embedding_type = "fourier"'],
    [{ attention_type: "gated" }, 'attention_type = "gated"'],
    [{ encoder_hid_dim: 32, encoder_hid_dim_type: "text_proj" }, 'encoder_hid_dim_type = "text_proj"'],
    [{ mid_block_type: "UNetMidBlock2DSimpleCrossAttn" }, 'mid_block_type = "UNetMidBlock2DSimpleCrossAttn"'],
    [{ down_block_types: replaced(down, 1, "SimpleCrossAttnDownBlock2D") }, 'down_block_types[1] = "SimpleCrossAttnDownBlock2D"'],
    [{ up_block_types: replaced(up, 1, "AttnUpBlock2D") }, 'up_block_types[1] = "AttnUpBlock2D"'],
    [{ act_fn: "mish" }, 'act_fn = "mish"'],
    [{ class_embeddings_concat: true }, "class_embeddings_concat = true"],
    [{ norm_num_groups: null }, "norm_num_groups = null"],
    [{ block_out_channels: [...channels, channels.at(-1)!] }, "down_block_types"],
    [{ attention_head_dim: tooMany }, `attention_head_dim = ${JSON.stringify(tooMany)}`],
    [{ attention_head_dim: heads, num_attention_heads: null }, `attention_head_dim = ${heads}`],
    [{ transformer_layers_per_block: replaced<number | number[]>(Array(levels).fill(1), 1, [1, 2]), reverse_transformer_layers_per_block: null }, "reverse_transformer_layers_per_block = null"],
    [{ conv_in_kernel: 2 }, "conv_in_kernel = 2"],
  ];
}

describe("config", () => {
  test("defaults are diffusers' (SD 1.x layout); levels follow the attention_head_dim misnomer", () => {
    const cfg = parseUNetConfig({});
    expect(cfg).toEqual({ ...UNET_CONFIG_DEFAULTS });
    const lv = unetLevels(cfg);
    expect(lv.heads).toEqual([8, 8, 8, 8]);
    expect(lv.timeEmbedDim).toBe(1280);
    expect(lv.crossAttentionDim).toEqual([1280, 1280, 1280, 1280]);
    // num_attention_heads, when set, is the number of heads (num_attention_heads or attention_head_dim)
    expect(unetLevels(parseUNetConfig({ attention_head_dim: [5, 10, 20, 20] })).heads).toEqual([5, 10, 20, 20]);
    expect(unetLevels(parseUNetConfig({ num_attention_heads: 4, attention_head_dim: 8 })).heads).toEqual([4, 4, 4, 4]);
    // SDXL-style per-level depths reverse for the up path; nested lists need the explicit reverse list
    const xl = unetLevels(parseUNetConfig({ transformer_layers_per_block: [1, 2, 10, 10] }));
    expect(xl.upTransformerLayers).toEqual([10, 10, 2, 1]);
    expect(parseUNetConfig({ upcast_attention: null }).upcast_attention).toBe(false);
  });

  for (const { name, cfg } of configVariants(readConfig(entries[0]!)))
    describe(name, () => {
      const levels = (cfg.block_out_channels as number[]).length;

      test("the config builds (on meta) with one up-sampler per level but the last", () => {
        const m = new UNet2DConditionModel(cfg, { device: "meta" });
        expect(m.numUpsamplers).toBe(levels - 1);
        m.dispose();
      });

      test("asymmetric transformer depths: nested lists per resnet layer, explicit reverse list for the up path", () => {
        const lpb = 1;
        const allCrossAttn = { down_block_types: Array(levels).fill("CrossAttnDownBlock2D"), up_block_types: Array(levels).fill("CrossAttnUpBlock2D") };
        const m = new UNet2DConditionModel(
          {
            ...cfg,
            ...allCrossAttn,
            layers_per_block: lpb,
            transformer_layers_per_block: Array.from({ length: levels }, (_, i) => [i + 1]),
            reverse_transformer_layers_per_block: Array.from({ length: levels }, (_, i) => [3, 1].concat(Array(lpb - 1).fill(1)).map((d) => d + i)),
          },
          { device: "meta" },
        );
        const depth = (p: string) => (m.getSubmodule(`${p}.transformer_blocks`) as unknown as { length: number }).length;
        expect(depth("down_blocks.0.attentions.0")).toBe(1);
        expect(depth(`down_blocks.${levels - 1}.attentions.0`)).toBe(levels);
        expect(depth("mid_block.attentions.0")).toBe(levels); // the last down level's first entry
        expect(depth("up_blocks.0.attentions.0")).toBe(3);
        expect(depth("up_blocks.0.attentions.1")).toBe(1);
        expect(depth("up_blocks.1.attentions.0")).toBe(4);
        m.dispose();
        // a per-layer list shorter than the block's resnets names the field
        const short = Array.from({ length: levels }, () => [1]);
        expect(() =>
          new UNet2DConditionModel(
            { ...cfg, ...allCrossAttn, layers_per_block: 2, transformer_layers_per_block: short, reverse_transformer_layers_per_block: Array(levels).fill(1) },
            { device: "meta" },
          ),
        ).toThrow(`transformer_layers_per_block = ${JSON.stringify(short)}: level 0 lists 1 depths for 2 resnet layers`);
      });

      test("heads per cross-attention level: num_attention_heads or the attention_head_dim misnomer, head dim = channels / heads", () => {
        const m = new UNet2DConditionModel(cfg, { device: "meta" });
        const lv = unetLevels(m.config);
        const down = m.config.down_block_types;
        const withAttn = [...down.keys()].filter((i) => down[i] === "CrossAttnDownBlock2D");
        expect(withAttn.length).toBeGreaterThan(0);
        for (const i of withAttn) {
          const attn = m.getSubmodule(`down_blocks.${i}.attentions.0.transformer_blocks.0.attn1`) as Attention;
          expect(attn.heads, `level ${i}`).toBe(lv.heads[i]!);
          expect(attn.dimHead, `level ${i}`).toBe(m.config.block_out_channels[i]! / lv.heads[i]!);
        }
        m.dispose();
      });

      for (const [patch, message] of unsupportedPatches(cfg))
        test(`unsupported ${JSON.stringify(patch)} fails naming the field and value`, () => {
          let err: unknown;
          try {
            new UNet2DConditionModel({ ...cfg, ...patch }, { device: "meta" }).dispose();
          } catch (e) {
            err = e;
          }
          expect(err).toBeInstanceOf(ConfigError);
          expect((err as Error).message).toContain(message);
        });
    });
});

describe("loading errors", () => {
  const tmp = mkdtempSync(path.join(tmpdir(), "bd-unet-"));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  const src = modelDir(entries[0]!);
  const config = JSON.parse(readFileSync(path.join(src, "config.json"), "utf8")) as Record<string, unknown>;
  const weights = openSafetensors(path.join(src, "diffusion_pytorch_model.safetensors"));

  async function folder(name: string, opts: { config?: Record<string, unknown>; edit?: (t: Record<string, TensorInput>) => void; noWeights?: boolean } = {}) {
    const dir = path.join(tmp, name);
    rmSync(dir, { recursive: true, force: true });
    await Bun.write(path.join(dir, "config.json"), JSON.stringify(opts.config ?? config));
    if (opts.noWeights) return dir;
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

  test("strict loading names a missing key and a mis-shaped key; nothing stays allocated", async () => {
    const live0 = memoryStats("cpu").live;
    const missingKey = weights.names().find((k) => k.startsWith("mid_block.") && k.endsWith("attn2.to_k.weight")) ?? weights.names().find((k) => k.endsWith("attn2.to_k.weight"))!;
    const missing = await folder("missing-key", { edit: (t) => delete t[missingKey] });
    const e1 = errorOf(() => UNet2DConditionModel.fromPretrained(missing));
    expect(e1).toBeInstanceOf(LoadStateDictError);
    expect(e1.message).toContain(`missing keys (1): ${missingKey}`);
    const key = "conv_in.weight";
    const shape = weights.get(key).shape;
    const misShaped = await folder("wrong-shape", {
      edit: (t) => {
        const e = t[key]!;
        const per = e.data.byteLength / shape[0]!;
        t[key] = { dtype: e.dtype, shape: [shape[0]! - 1, ...shape.slice(1)], data: new Uint8Array(e.data.buffer, e.data.byteOffset + per, e.data.byteLength - per) };
      },
    });
    const e2 = errorOf(() => UNet2DConditionModel.fromPretrained(misShaped));
    expect(e2).toBeInstanceOf(LoadStateDictError);
    expect(e2.message).toContain(`${key} expected [${shape.join(", ")}] got [${[shape[0]! - 1, ...shape.slice(1)].join(", ")}]`);
    const extra = await folder("extra-key", { edit: (t) => (t["class_embedding.weight"] = { dtype: "F32", shape: [2], data: new Float32Array(2) }) });
    expect(errorOf(() => UNet2DConditionModel.fromPretrained(extra)).message).toContain("unexpected keys (1): class_embedding.weight");
    expect(memoryStats("cpu").live).toBe(live0);
  });

  test("missing weights file; unsupported config through fromPretrained names the config file", async () => {
    const none = await folder("no-weights", { noWeights: true });
    const e1 = errorOf(() => UNet2DConditionModel.fromPretrained(none));
    expect(e1).toBeInstanceOf(ModelFolderError);
    expect(e1.message).toContain("no weights found (looked for diffusion_pytorch_model.safetensors");
    const bad = await folder("scale-shift", { config: { ...config, resnet_time_scale_shift: "scale_shift" }, noWeights: true });
    const e2 = errorOf(() => UNet2DConditionModel.fromPretrained(bad));
    expect(e2).toBeInstanceOf(ModelFolderError); // weights are looked for first
    const bad2 = await folder("scale-shift-w", { config: { ...config, resnet_time_scale_shift: "scale_shift" } });
    const e3 = errorOf(() => UNet2DConditionModel.fromPretrained(bad2));
    expect(e3).toBeInstanceOf(ConfigError);
    expect(e3.message).toContain('unsupported resnet_time_scale_shift = "scale_shift"');
    expect(e3.message).toContain(path.join(bad2, "config.json"));
  });

  test("the fp16 variant file loads and matches the plain one", async () => {
    const dir = path.join(tmp, "variant");
    rmSync(dir, { recursive: true, force: true });
    await Bun.write(path.join(dir, "config.json"), JSON.stringify(config));
    const tensors: Record<string, TensorInput> = {};
    for (const e of weights.entries()) tensors[e.name] = { dtype: e.dtype, shape: e.shape, data: e.data };
    await writeSafetensors(path.join(dir, "diffusion_pytorch_model.fp16.safetensors"), tensors);
    const a = UNet2DConditionModel.fromPretrained(src);
    const b = UNet2DConditionModel.fromPretrained(dir, { variant: "fp16" });
    tidy(() => {
      const x = caseInputs(entries[0]!, openGolden(entries[0]!.file), casesOf(entries[0]!)[0]!);
      expect(maxError(f32(a.call(x.sample, x.timestep, x.ehs, x.extra)), f32(b.call(x.sample, x.timestep, x.ehs, x.extra))).maxAbs).toBe(0);
    });
    a.dispose();
    b.dispose();
  });
});
