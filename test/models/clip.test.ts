// CLIP text encoders against the golden data: every text-encoder case this file drives
// (test/golden/registry.ts; any number of rows) is loaded from its model folder through fromPretrained
// and every recorded output is compared (tolerance 1e-5·max|ref|, the golden README's single-module
// tolerance); real-size manifests are rebuilt on
// "meta" and compared name by name; loading paths (fp16, variant, sharded, position_ids buffer,
// memory) and the error paths (missing files, keys, shapes, unsupported config values).

import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { ModelFolderError } from "../../src/io/model-folder.ts";
import { openSafetensors, type TensorInput, writeSafetensors } from "../../src/io/safetensors.ts";
import { ConfigError } from "../../src/models/clip-config.ts";
import {
  type CLIPTextOutput,
  CLIPTextModel,
  CLIPTextModelWithProjection,
  disposeClipOutput,
  poolingPositions,
} from "../../src/models/clip.ts";
import { LoadStateDictError } from "../../src/nn/module.ts";
import { type Tensor, memoryStats, resetPeakMemory, tensor, tidy } from "../../src/tensor/index.ts";
import { goldenDriven } from "../golden/registry.ts";
import { goldenTensor, maxError, openGolden } from "../helpers/golden.ts";
import { goldenDir } from "../helpers/paths.ts";

const CLASSES = { CLIPTextModel, CLIPTextModelWithProjection } as const;
type ClipClass = keyof typeof CLASSES;
type ClipModel = CLIPTextModel | CLIPTextModelWithProjection;

const cases = goldenDriven(import.meta.path); // text-encoder entries (test/golden/registry.ts)

function load(cls: string, dir: string, opts: Parameters<typeof CLIPTextModel.fromPretrained>[1] = {}): ClipModel {
  return CLASSES[cls as ClipClass].fromPretrained(dir, opts);
}

/** The tensor our model gives for a golden output name (throws for a name we do not know). */
function actualFor(name: string, out: CLIPTextOutput, model: ClipModel): Tensor {
  const hs = out.hiddenStates;
  if (name === "last_hidden_state") return out.lastHiddenState;
  if (name === "pooler_output") return out.poolerOutput;
  if (name === "penultimate_hidden_state") return hs[hs.length - 2]!;
  if (name === "clip_skip1_prompt_embeds") return model.finalLayerNorm(hs[hs.length - 2]!);
  if (name === "text_embeds") {
    if (!out.textEmbeds) throw new Error("golden has text_embeds but the model returned none");
    return out.textEmbeds;
  }
  const m = /^hidden_states\/(\d+)$/.exec(name);
  if (m) {
    const i = Number(m[1]);
    if (i >= hs.length) throw new Error(`golden has ${name} but the model returned ${hs.length} hidden states`);
    return hs[i]!;
  }
  throw new Error(`golden output ${JSON.stringify(name)} is not known to this test`);
}

const INPUTS = new Set(["input_ids"]);

describe("golden text encoders", () => {
  test("index.json lists text-encoder cases", () => {
    expect(cases.length).toBeGreaterThan(0);
  });

  for (const entry of cases) {
    test(`${entry.file} (${entry.meta.component}, ${entry.meta.model})`, () => {
      const live0 = memoryStats("cpu").live;
      const model = load(entry.meta.component!, path.join(goldenDir, entry.meta.model!));
      const f = openGolden(entry.file);
      let worst = 0;
      const report: string[] = [];
      tidy(() => {
        const ids = goldenTensor(f, "input_ids");
        const out = model.call(ids);
        expect(out.hiddenStates.length).toBe(model.config.num_hidden_layers + 1);
        for (const name of Object.keys(entry.tensors)) {
          if (INPUTS.has(name)) continue;
          const ref = goldenTensor(f, name, "float32");
          const act = actualFor(name, out, model);
          expect(act.shape, name).toEqual(ref.shape);
          const { maxAbs, maxRef } = maxError(act.toTypedArray() as Float32Array, ref.toTypedArray() as Float32Array);
          report.push(`${name} ${maxAbs.toExponential(2)}`);
          worst = Math.max(worst, maxAbs / maxRef);
          expect(maxAbs, `${entry.file}: ${name}`).toBeLessThanOrEqual(1e-5 * maxRef); // single-module tolerance (golden README)
        }
        disposeClipOutput(out);
      });
      console.log(`${entry.file}: max |err|/max|ref| = ${worst.toExponential(2)}; ${report.join(", ")}`);
      model.dispose();
      expect(memoryStats("cpu").live).toBe(live0);
    });
  }

  test("the chunked attention kernel reproduces the golden outputs too", () => {
    const entry = cases[0]!;
    const model = load(entry.meta.component!, path.join(goldenDir, entry.meta.model!));
    try {
      model.setAttentionKind("chunked");
      tidy(() => {
        const f = openGolden(entry.file);
        const out = model.call(goldenTensor(f, "input_ids"));
        const ref = goldenTensor(f, "last_hidden_state");
        const { maxAbs, maxRef } = maxError(out.lastHiddenState.toTypedArray() as Float32Array, ref.toTypedArray() as Float32Array);
        expect(maxAbs).toBeLessThanOrEqual(1e-5 * maxRef); // single-module tolerance (golden README)
        disposeClipOutput(out);
      });
    } finally {
      model.dispose();
    }
  });

  test("float16 load: memory-conscious (peak ≤ weights + one tensor) and close to the golden", () => {
    const entry = cases[0]!;
    const live0 = memoryStats("cpu").live;
    resetPeakMemory("cpu");
    const model = load(entry.meta.component!, path.join(goldenDir, entry.meta.model!), { dtype: "float16" });
    const bytes = model.parameterBytes();
    const largest = Math.max(...model.parameters().map((p) => p.numel * 4));
    expect(model.parameters().every((p) => p.dtype === "float16" && p.device === "cpu")).toBe(true);
    expect(memoryStats("cpu").live - live0).toBe(bytes);
    expect(memoryStats("cpu").peak - live0).toBeLessThanOrEqual(bytes + largest);
    tidy(() => {
      const f = openGolden(entry.file);
      const out = model.call(goldenTensor(f, "input_ids"));
      expect(out.lastHiddenState.dtype).toBe("float16");
      const ref = goldenTensor(f, "last_hidden_state");
      const { maxAbs, maxRef } = maxError(out.lastHiddenState.toTypedArray() as Float32Array, ref.toTypedArray() as Float32Array);
      // float16 weights and activations (11-bit mantissa) through 3 layers: ~1e-3 relative
      expect(maxAbs).toBeLessThanOrEqual(2e-2 * maxRef);
      disposeClipOutput(out);
    });
    model.dispose();
    expect(memoryStats("cpu").live).toBe(live0);
  });

  test("a [B, S] attention mask leaves the positions before the padding unchanged (causal)", () => {
    const entry = cases[0]!;
    const model = load(entry.meta.component!, path.join(goldenDir, entry.meta.model!));
    tidy(() => {
      const ids = goldenTensor(openGolden(entry.file), "input_ids");
      const [B, S] = ids.shape as [number, number];
      const keep = 10;
      const mask = tensor(Array.from({ length: B * S }, (_, i) => (i % S < keep ? 1 : 0)), { shape: [B, S], dtype: "int64" });
      const a = model.call(ids).lastHiddenState.narrow(1, 0, keep).toTypedArray() as Float32Array;
      const b = model.call(ids, { attentionMask: mask }).lastHiddenState.narrow(1, 0, keep).toTypedArray() as Float32Array;
      expect(maxError(b, a).maxAbs).toBe(0);
    });
    model.dispose();
  });
});

describe("pooling position", () => {
  test("legacy eos_token_id 2: argmax of the ids (first maximum)", () => {
    tidy(() => {
      const ids = tensor([[49406, 320, 49407, 49407], [49406, 49407, 0, 0]], { dtype: "int64" });
      expect(poolingPositions(ids, 2)).toEqual([2, 1]);
      // other eos: the first position holding it (pad may equal eos); absent -> 0 as torch's argmax of zeros
      expect(poolingPositions(ids, 49407)).toEqual([2, 1]);
      expect(poolingPositions(tensor([[5, 7, 999, 999], [5, 6, 7, 8]], { dtype: "int64" }), 999)).toEqual([2, 0]);
      expect(poolingPositions(tensor([[5, 7, 3, 2], [1, 2, 9, 0]], { dtype: "int64" }), 2)).toEqual([1, 2]);
    });
  });
});

describe("manifests (real-size models built on meta)", () => {
  const dir = path.join(goldenDir, "manifests");
  const manifests = readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .map((f) => ({ file: f, json: JSON.parse(readFileSync(path.join(dir, f), "utf8")) as Record<string, unknown> }))
    .filter((m) => typeof m.json.class_name === "string" && m.json.class_name in CLASSES);

  test("the manifests folder has CLIP text encoders", () => {
    expect(manifests.length).toBeGreaterThan(0);
  });

  for (const { file, json } of manifests) {
    test(`${file}: ${json.class_name} parameter names, shapes and count`, () => {
      const cpu0 = memoryStats("cpu").live;
      const Cls = CLASSES[json.class_name as ClipClass];
      const model = new Cls(json.resolved_config as Record<string, unknown>, { device: "meta" });
      expect(memoryStats("cpu").live).toBe(cpu0);
      const ours = model.namedParameters().map(([k, p]) => `${k} [${p.shape.join(", ")}]`).sort();
      const theirs = (json.params as [string, number[]][]).map(([k, s]) => `${k} [${s.join(", ")}]`).sort();
      expect(ours).toEqual(theirs);
      expect(model.numParameters()).toBe(json.param_count as number);
      model.dispose();
    });
  }
});

describe("loading paths and errors", () => {
  const tmp = mkdtempSync(path.join(tmpdir(), "bd-clip-"));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  const entry = cases[0]!;
  const goldenModel = path.join(goldenDir, entry.meta.model!);
  const config = JSON.parse(readFileSync(path.join(goldenModel, "config.json"), "utf8")) as Record<string, unknown>;
  const weights = openSafetensors(path.join(goldenModel, "model.safetensors"));

  /** A model folder with `config` and the golden weights passed through `edit`. */
  async function folder(name: string, opts: { config?: Record<string, unknown>; edit?: (t: Record<string, TensorInput>) => void; file?: string } = {}) {
    const dir = path.join(tmp, name);
    rmSync(dir, { recursive: true, force: true });
    await Bun.write(path.join(dir, "config.json"), JSON.stringify(opts.config ?? config));
    const tensors: Record<string, TensorInput> = {};
    for (const e of weights.entries()) tensors[e.name] = { dtype: e.dtype, shape: e.shape, data: e.data };
    opts.edit?.(tensors);
    if (opts.file !== "") await writeSafetensors(path.join(dir, opts.file ?? "model.safetensors"), tensors);
    return dir;
  }

  function lastHidden(model: ClipModel): Float32Array {
    return tidy(() => {
      const out = model.call(goldenTensor(openGolden(entry.file), "input_ids"));
      return out.lastHiddenState.toTypedArray() as Float32Array;
    });
  }

  const errorOf = (fn: () => unknown): Error => {
    try {
      fn();
    } catch (e) {
      return e as Error;
    }
    throw new Error("expected an error");
  };

  test("missing folder, missing config, missing weights, pickle-only folders", async () => {
    expect(errorOf(() => load("CLIPTextModel", path.join(tmp, "nope"))).message).toMatch(/nope: is not a folder/);
    const noConfig = path.join(tmp, "no-config");
    await Bun.write(path.join(noConfig, "model.safetensors"), "x");
    expect(errorOf(() => load("CLIPTextModel", noConfig)).message).toContain(`${noConfig}: has no config.json`);
    const dir = await folder("no-weights", { file: "" });
    const e1 = errorOf(() => load("CLIPTextModel", dir));
    expect(e1).toBeInstanceOf(ModelFolderError);
    expect(e1.message).toContain(dir);
    expect(e1.message).toContain("no weights found (looked for model.safetensors, model.safetensors.index.json)");
    writeFileSync(path.join(dir, "pytorch_model.bin"), "pickle");
    const e2 = errorOf(() => load("CLIPTextModel", dir));
    expect(e2.message).toContain("pytorch_model.bin");
    expect(e2.message).toContain("not supported");
    expect(e2.message).toContain("convert them to safetensors");
  });

  test("strict loading names a missing key and a mis-shaped key; nothing stays allocated", async () => {
    const live0 = memoryStats("cpu").live;
    const missing = await folder("missing-key", { edit: (t) => delete t["text_model.final_layer_norm.bias"] });
    const e1 = errorOf(() => load("CLIPTextModel", missing));
    expect(e1).toBeInstanceOf(LoadStateDictError);
    expect(e1.message).toContain("missing keys (1): text_model.final_layer_norm.bias");
    const key = "text_model.embeddings.position_embedding.weight";
    const misShaped = await folder("wrong-shape", {
      edit: (t) => {
        const e = t[key]!;
        const row = e.data.byteLength / e.shape[0]!;
        t[key] = { dtype: e.dtype, shape: [e.shape[0]! - 1, e.shape[1]!], data: (e.data as Uint8Array).subarray(row) };
      },
    });
    const e2 = errorOf(() => load("CLIPTextModel", misShaped));
    const P = config.max_position_embeddings as number;
    expect(e2.message).toContain(`${key} expected [${P}, ${config.hidden_size}] got [${P - 1}, ${config.hidden_size}]`);
    // a projection checkpoint is not a CLIPTextModel: its text_projection is unexpected
    const extra = await folder("extra-key", {
      edit: (t) => (t["text_projection.weight"] = { dtype: "F32", shape: [2, 2], data: new Float32Array(4) }),
    });
    expect(errorOf(() => load("CLIPTextModel", extra)).message).toContain("unexpected keys (1): text_projection.weight");
    expect(memoryStats("cpu").live).toBe(live0);
  });

  test("unsupported config values fail naming the field and value", async () => {
    const dir = await folder("relu", { config: { ...config, hidden_act: "relu" } });
    const e = errorOf(() => load("CLIPTextModel", dir));
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toContain('unsupported hidden_act = "relu"');
    expect(e.message).toContain(path.join(dir, "config.json"));
    expect(errorOf(() => new CLIPTextModel({ ...config, num_attention_heads: 5 }, { device: "meta" })).message).toContain(
      "num_attention_heads = 5",
    );
  });

  test("variant files, the position_ids buffer and sharded checkpoints", async () => {
    const ref = load("CLIPTextModel", goldenModel);
    const want = lastHidden(ref);
    ref.dispose();
    // fp16 variant plus transformers' position_ids buffer (int64), which is ignored
    const variant = await folder("variant", {
      file: "model.fp16.safetensors",
      edit: (t) => {
        const P = config.max_position_embeddings as number;
        t["text_model.embeddings.position_ids"] = { dtype: "I64", shape: [1, P], data: BigInt64Array.from({ length: P }, (_, i) => BigInt(i)) };
      },
    });
    const m = load("CLIPTextModel", variant, { variant: "fp16" });
    expect(maxError(lastHidden(m), want).maxAbs).toBe(0);
    m.dispose();
    expect(errorOf(() => load("CLIPTextModel", variant)).message).toContain("other safetensors files here: model.fp16.safetensors");
    expect(errorOf(() => load("CLIPTextModel", goldenModel, { variant: "fp16" })).message).toContain(
      'variant "fp16" is absent but model.safetensors exists',
    );
    // two shards + index
    const sharded = await folder("sharded", { file: "" });
    const names = weights.names();
    const half = Math.ceil(names.length / 2);
    const weightMap: Record<string, string> = {};
    for (const [i, part] of [names.slice(0, half), names.slice(half)].entries()) {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      const tensors: Record<string, TensorInput> = {};
      for (const n of part) {
        const e = weights.get(n);
        tensors[n] = { dtype: e.dtype, shape: e.shape, data: e.data };
        weightMap[n] = file;
      }
      await writeSafetensors(path.join(sharded, file), tensors);
    }
    await Bun.write(path.join(sharded, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    const s = load("CLIPTextModel", sharded);
    expect(maxError(lastHidden(s), want).maxAbs).toBe(0);
    s.dispose();
  });
});
