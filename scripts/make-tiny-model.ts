// make-tiny-model: writes a random-weight Stable Diffusion pipeline folder in the diffusers layout
// (model_index.json, unet/, vae/, text_encoder/ [+ text_encoder_2/], tokenizer/ [+ tokenizer_2/],
// scheduler/) for tests and quick experiments. Presets "sd15", "sd2" and "sdxl" mirror the tiny
// configurations of the golden models (../shared/golden/README.md) with diffusers' config keys; JSON
// overrides are merged per component ({"unet": {...}, "vae": {...}, "text_encoder": {...},
// "text_encoder_2": {...}, "scheduler": {...}, "model_index": {...}}).
//
// Tokenizers: the real CLIP BPE files are copied from assets/shapes-64/tokenizer, so the text
// encoders use CLIP's vocabulary size 49408 (bos 49406, eos 49407) and any prompt tokenizes; the
// SD 2.x tokenizer and SDXL's tokenizer_2 pad with "!" (id 0) as the real ones do. With hidden size 32
// the token embedding is 1.6 M values (6.3 MB in float32, half with --dtype float16).
//
// Weights are drawn from a seeded torch-compatible generator in state-dict order: matrices and
// kernels N(0, 1/fan_in), embeddings N(0, 0.02²), 1-D weights 1 + N(0, 0.1²), biases N(0, 0.1²).
// The same seed, preset and overrides give byte-identical files.
//
//   bun scripts/make-tiny-model.ts --preset sdxl --out /tmp/tiny-sdxl [--seed 0] [--dtype float16]
//       [--overrides '{"unet": {"sample_size": 16}}'] [--overrides-file more.json]

import { cpSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { type TensorInput, writeSafetensors } from "../src/io/safetensors.ts";
import { CLIPTextModel, CLIPTextModelWithProjection } from "../src/models/clip.ts";
import { UNet2DConditionModel } from "../src/models/unet/index.ts";
import { AutoencoderKL } from "../src/models/vae/index.ts";
import type { Module } from "../src/nn/module.ts";
import { f32ArrayToF16 } from "../src/core/half.ts";
import { TorchGenerator } from "../src/tensor/index.ts";

export type TinyPreset = "sd15" | "sd2" | "sdxl";
export const TINY_PRESETS: readonly TinyPreset[] = ["sd15", "sd2", "sdxl"];

type Json = Record<string, unknown>;

export interface TinyModelOptions {
  preset?: TinyPreset;
  /** Per-component config overrides, merged over the preset. */
  overrides?: Partial<Record<"unet" | "vae" | "text_encoder" | "text_encoder_2" | "scheduler" | "model_index", Json>>;
  seed?: number;
  dtype?: "float32" | "float16";
}

const ROOT = path.resolve(import.meta.dir, "..");
const TOKENIZER_SOURCE = path.join(ROOT, "assets", "shapes-64", "tokenizer");
const VERSION = { _diffusers_version: "0.31.0" };

const SCALED_LINEAR = { num_train_timesteps: 1000, beta_start: 0.00085, beta_end: 0.012, beta_schedule: "scaled_linear", trained_betas: null };

/** CLIP text encoder config (transformers keys) with the real vocabulary. */
function clipConfig(hidden: number, act: string, pad: number, withProjection: boolean): Json {
  return {
    architectures: [withProjection ? "CLIPTextModelWithProjection" : "CLIPTextModel"],
    model_type: "clip_text_model",
    vocab_size: 49408,
    bos_token_id: 49406,
    eos_token_id: 49407,
    pad_token_id: pad,
    hidden_size: hidden,
    intermediate_size: 4 * hidden,
    num_hidden_layers: 3,
    num_attention_heads: 4,
    max_position_embeddings: 77,
    hidden_act: act,
    layer_norm_eps: 1e-5,
    projection_dim: 32,
    attention_dropout: 0,
    initializer_factor: 1,
    initializer_range: 0.02,
    torch_dtype: "float32",
  };
}

function vaeConfig(channels: number[], groups: number, scaling: number): Json {
  return {
    _class_name: "AutoencoderKL",
    ...VERSION,
    in_channels: 3,
    out_channels: 3,
    latent_channels: 4,
    block_out_channels: channels,
    down_block_types: channels.map(() => "DownEncoderBlock2D"),
    up_block_types: channels.map(() => "UpDecoderBlock2D"),
    layers_per_block: 1,
    norm_num_groups: groups,
    act_fn: "silu",
    sample_size: 32,
    scaling_factor: scaling,
    force_upcast: true,
  };
}

/** The preset's component configs (before overrides). */
function presetConfigs(preset: TinyPreset): Record<string, Json> {
  const unetBase = {
    _class_name: "UNet2DConditionModel",
    ...VERSION,
    sample_size: 8,
    in_channels: 4,
    out_channels: 4,
    block_out_channels: [16, 32, 32],
    layers_per_block: 1,
    norm_num_groups: 8,
  };
  if (preset === "sd15")
    return {
      unet: {
        ...unetBase,
        down_block_types: ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        attention_head_dim: 8,
        cross_attention_dim: 32,
      },
      vae: vaeConfig([16, 32, 32], 8, 0.18215),
      text_encoder: clipConfig(32, "quick_gelu", 49407, false),
      scheduler: { _class_name: "PNDMScheduler", ...VERSION, ...SCALED_LINEAR, skip_prk_steps: true, set_alpha_to_one: false, steps_offset: 1, clip_sample: false },
    };
  if (preset === "sd2")
    return {
      unet: {
        ...unetBase,
        down_block_types: ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        attention_head_dim: [2, 4, 4],
        use_linear_projection: true,
        upcast_attention: true,
        cross_attention_dim: 48,
      },
      vae: vaeConfig([8, 16, 16], 4, 0.18215),
      text_encoder: clipConfig(48, "gelu", 0, false),
      scheduler: {
        _class_name: "DDIMScheduler",
        ...VERSION,
        ...SCALED_LINEAR,
        prediction_type: "v_prediction",
        set_alpha_to_one: false,
        steps_offset: 1,
        clip_sample: false,
        timestep_spacing: "leading",
      },
    };
  return {
    unet: {
      ...unetBase,
      down_block_types: ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
      up_block_types: ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
      attention_head_dim: [2, 4, 4],
      use_linear_projection: true,
      transformer_layers_per_block: [1, 1, 2],
      addition_embed_type: "text_time",
      addition_time_embed_dim: 8,
      cross_attention_dim: 64,
      projection_class_embeddings_input_dim: 80,
    },
    vae: vaeConfig([8, 16, 16], 4, 0.13025),
    text_encoder: clipConfig(32, "quick_gelu", 49407, false),
    text_encoder_2: clipConfig(32, "gelu", 0, true),
    scheduler: {
      _class_name: "EulerDiscreteScheduler",
      ...VERSION,
      ...SCALED_LINEAR,
      prediction_type: "epsilon",
      steps_offset: 1,
      timestep_spacing: "leading",
      interpolation_type: "linear",
      use_karras_sigmas: false,
    },
  };
}

/** Random weights for every parameter of `module` (built on "meta": names and shapes only), in state-dict order. */
function randomWeights(module: Module, gen: TorchGenerator, dtype: "float32" | "float16"): Record<string, TensorInput> {
  const out: Record<string, TensorInput> = {};
  for (const [key, p] of module.namedParameters()) {
    const shape = [...p.shape];
    const n = shape.reduce((a, b) => a * b, 1);
    const v = gen.randn(n);
    const leaf = key.slice(key.lastIndexOf(".") + 1);
    if (key.endsWith("embedding.weight")) for (let i = 0; i < n; i++) v[i]! *= 0.02;
    else if (shape.length >= 2) {
      const std = 1 / Math.sqrt(shape.slice(1).reduce((a, b) => a * b, 1));
      for (let i = 0; i < n; i++) v[i]! *= std;
    } else if (leaf === "weight") for (let i = 0; i < n; i++) v[i] = 1 + 0.1 * v[i]!;
    else for (let i = 0; i < n; i++) v[i]! *= 0.1;
    out[key] = dtype === "float16" ? { dtype: "F16", shape, data: f32ArrayToF16(v) } : { dtype: "F32", shape, data: v };
  }
  return out;
}

function writeJson(file: string, value: unknown): void {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(value, null, 2)}\n`);
}

/** Copy the CLIP tokenizer folder; `pad` "!" rewrites the pad token as SD 2.x / SDXL tokenizer_2 have it. */
function writeTokenizer(dir: string, pad: "<|endoftext|>" | "!"): void {
  cpSync(TOKENIZER_SOURCE, dir, { recursive: true });
  for (const name of ["tokenizer_config.json", "special_tokens_map.json"]) {
    const file = path.join(dir, name);
    const json = JSON.parse(readFileSync(file, "utf8")) as Json;
    json.pad_token = pad;
    writeJson(file, json);
  }
}

/**
 * Write a tiny random pipeline to `outDir` (created; existing files are overwritten). Derived
 * values follow the text encoders unless overridden: the UNet's cross_attention_dim (sum of the
 * encoders' hidden sizes) and SDXL's projection_class_embeddings_input_dim (6·addition_time_embed_dim
 * + projection_dim).
 */
export async function makeTinyModel(outDir: string, opts: TinyModelOptions = {}): Promise<string> {
  const preset = opts.preset ?? "sd15";
  if (!TINY_PRESETS.includes(preset)) throw new Error(`unknown preset "${preset}"; choose ${TINY_PRESETS.join(", ")}`);
  const dtype = opts.dtype ?? "float32";
  const ov = opts.overrides ?? {};
  const base = presetConfigs(preset);
  const cfg: Record<string, Json> = {};
  for (const k of Object.keys(base)) cfg[k] = { ...base[k], ...(ov as Record<string, Json | undefined>)[k] };
  const te = [cfg.text_encoder, cfg.text_encoder_2].filter((c) => c !== undefined);
  if (!ov.unet || !("cross_attention_dim" in ov.unet)) cfg.unet!.cross_attention_dim = te.reduce((s, c) => s + (c.hidden_size as number), 0);
  if (preset === "sdxl" && (!ov.unet || !("projection_class_embeddings_input_dim" in ov.unet)))
    cfg.unet!.projection_class_embeddings_input_dim = 6 * (cfg.unet!.addition_time_embed_dim as number) + (cfg.text_encoder_2!.projection_dim as number);

  const dir = path.resolve(outDir);
  mkdirSync(dir, { recursive: true });
  const gen = new TorchGenerator(opts.seed ?? 0);
  const meta = { device: "meta" as const };
  const components: [string, string, () => Module, string][] = [
    ["unet", "diffusion_pytorch_model.safetensors", () => new UNet2DConditionModel(cfg.unet!, meta), "diffusers"],
    ["vae", "diffusion_pytorch_model.safetensors", () => new AutoencoderKL(cfg.vae!, meta), "diffusers"],
    ["text_encoder", "model.safetensors", () => new CLIPTextModel(cfg.text_encoder!, meta), "transformers"],
  ];
  if (cfg.text_encoder_2) components.push(["text_encoder_2", "model.safetensors", () => new CLIPTextModelWithProjection(cfg.text_encoder_2!, meta), "transformers"]);
  for (const [name, weights, build] of components) {
    const module = build();
    const tensors = randomWeights(module, gen, dtype);
    module.dispose();
    writeJson(path.join(dir, name, "config.json"), cfg[name]);
    await writeSafetensors(path.join(dir, name, weights), tensors, { format: "pt" });
  }
  writeJson(path.join(dir, "scheduler", "scheduler_config.json"), cfg.scheduler);
  writeTokenizer(path.join(dir, "tokenizer"), preset === "sd2" ? "!" : "<|endoftext|>");
  if (preset === "sdxl") writeTokenizer(path.join(dir, "tokenizer_2"), "!");

  const index: Json =
    preset === "sdxl"
      ? {
          _class_name: "StableDiffusionXLPipeline",
          ...VERSION,
          force_zeros_for_empty_prompt: true,
          scheduler: ["diffusers", cfg.scheduler!._class_name],
          text_encoder: ["transformers", "CLIPTextModel"],
          text_encoder_2: ["transformers", "CLIPTextModelWithProjection"],
          tokenizer: ["transformers", "CLIPTokenizer"],
          tokenizer_2: ["transformers", "CLIPTokenizer"],
          unet: ["diffusers", "UNet2DConditionModel"],
          vae: ["diffusers", "AutoencoderKL"],
        }
      : {
          _class_name: "StableDiffusionPipeline",
          ...VERSION,
          feature_extractor: [null, null],
          requires_safety_checker: false,
          safety_checker: [null, null],
          scheduler: ["diffusers", cfg.scheduler!._class_name],
          text_encoder: ["transformers", "CLIPTextModel"],
          tokenizer: ["transformers", "CLIPTokenizer"],
          unet: ["diffusers", "UNet2DConditionModel"],
          vae: ["diffusers", "AutoencoderKL"],
        };
  writeJson(path.join(dir, "model_index.json"), { ...index, ...ov.model_index });
  return dir;
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      preset: { type: "string", default: "sd15" },
      out: { type: "string" },
      seed: { type: "string", default: "0" },
      dtype: { type: "string", default: "float32" },
      overrides: { type: "string" },
      "overrides-file": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help || !values.out) {
    console.log(
      "usage: bun scripts/make-tiny-model.ts --out DIR [--preset sd15|sd2|sdxl] [--seed N] [--dtype float32|float16]\n" +
        "       [--overrides JSON] [--overrides-file FILE]   (JSON: {\"unet\": {...}, \"vae\": {...}, \"text_encoder\": {...}, ...})",
    );
    process.exit(values.help ? 0 : 2);
  }
  const overrides = {
    ...(values["overrides-file"] ? (JSON.parse(readFileSync(values["overrides-file"], "utf8")) as Json) : {}),
    ...(values.overrides ? (JSON.parse(values.overrides) as Json) : {}),
  };
  const seed = Number(values.seed);
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`--seed must be a non-negative integer, got ${values.seed}`);
  if (values.dtype !== "float32" && values.dtype !== "float16") throw new Error(`--dtype must be float32 or float16, got ${values.dtype}`);
  const dir = await makeTinyModel(values.out, { preset: values.preset as TinyPreset, overrides, seed, dtype: values.dtype });
  console.log(`wrote a random-weight ${values.preset} pipeline to ${dir}`);
}
