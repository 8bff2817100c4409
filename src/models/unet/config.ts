// UNet2DConditionConfig: the UNet configuration as diffusers writes it in config.json (field names are
// the JSON keys) with diffusers v0.31 UNet2DConditionModel.__init__ defaults; parseUNetConfig(), which
// fills the defaults and rejects every value this implementation does not run (naming field and
// value); and unetLevels(), the per-level values diffusers derives from the config (heads, cross
// dims, layer counts, transformer depths for the down path and the reversed up path).

import { activation } from "../../nn/layers.ts";
import { ConfigError } from "../clip-config.ts";

export { ConfigError };

/** An int, or one value per level. */
type PerLevel<T> = T | T[];

export interface UNet2DConditionConfig {
  sample_size: number | number[] | null;
  in_channels: number;
  out_channels: number;
  /** sample = 2·sample − 1 before anything else. */
  center_input_sample: boolean;
  /** Sinusoidal embedding order: true = [cos, sin] (every SD model), false = [sin, cos]. */
  flip_sin_to_cos: boolean;
  /** downscale_freq_shift of the sinusoidal embedding (SD: 0). */
  freq_shift: number;
  /** "CrossAttnDownBlock2D" | "DownBlock2D" (a "UNetRes" prefix is accepted, as diffusers does). */
  down_block_types: string[];
  /** "UNetMidBlock2DCrossAttn" or null (no mid block). */
  mid_block_type: string | null;
  /** "CrossAttnUpBlock2D" | "UpBlock2D". */
  up_block_types: string[];
  only_cross_attention: PerLevel<boolean>;
  block_out_channels: number[];
  layers_per_block: PerLevel<number>;
  downsample_padding: number;
  mid_block_scale_factor: number;
  dropout: number;
  act_fn: string;
  norm_num_groups: number;
  norm_eps: number;
  cross_attention_dim: PerLevel<number>;
  /** Per level: an int, or (asymmetric UNets) one int per resnet layer. */
  transformer_layers_per_block: number | (number | number[])[];
  /** Up-path transformer depths when transformer_layers_per_block is nested (up block order). */
  reverse_transformer_layers_per_block: (number | number[])[] | null;
  encoder_hid_dim: number | null;
  encoder_hid_dim_type: string | null;
  /** SD 1.x/2.x/SDXL meaning: the NUMBER OF HEADS per level (diffusers' historic misnomer). */
  attention_head_dim: PerLevel<number>;
  /** When set, the number of heads (diffusers: `num_attention_heads or attention_head_dim`). */
  num_attention_heads: PerLevel<number> | null;
  dual_cross_attention: boolean;
  /** Transformer2DModel proj_in/proj_out: Linear (SD 2.x, SDXL) instead of 1×1 Conv2d (SD 1.x). */
  use_linear_projection: boolean;
  class_embed_type: string | null;
  /** null or "text_time" (SDXL: text_embeds + time_ids). */
  addition_embed_type: string | null;
  addition_time_embed_dim: number | null;
  num_class_embeds: number | null;
  upcast_attention: boolean;
  resnet_time_scale_shift: string;
  resnet_skip_time_act: boolean;
  resnet_out_scale_factor: number;
  time_embedding_type: string;
  time_embedding_dim: number | null;
  time_embedding_act_fn: string | null;
  timestep_post_act: string | null;
  /** LCM-distilled UNets: width of the `timestep_cond` input (TimestepEmbedding.cond_proj). */
  time_cond_proj_dim: number | null;
  conv_in_kernel: number;
  conv_out_kernel: number;
  projection_class_embeddings_input_dim: number | null;
  attention_type: string;
  class_embeddings_concat: boolean;
  mid_block_only_cross_attention: boolean | null;
  cross_attention_norm: string | null;
  addition_embed_type_num_heads: number;
  _class_name?: string;
  _diffusers_version?: string;
  [extra: string]: unknown;
}

/** diffusers v0.31 UNet2DConditionModel.__init__ defaults (models/unets/unet_2d_condition.py). */
export const UNET_CONFIG_DEFAULTS: Readonly<UNet2DConditionConfig> = Object.freeze({
  sample_size: null,
  in_channels: 4,
  out_channels: 4,
  center_input_sample: false,
  flip_sin_to_cos: true,
  freq_shift: 0,
  down_block_types: ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
  mid_block_type: "UNetMidBlock2DCrossAttn",
  up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
  only_cross_attention: false,
  block_out_channels: [320, 640, 1280, 1280],
  layers_per_block: 2,
  downsample_padding: 1,
  mid_block_scale_factor: 1,
  dropout: 0.0,
  act_fn: "silu",
  norm_num_groups: 32,
  norm_eps: 1e-5,
  cross_attention_dim: 1280,
  transformer_layers_per_block: 1,
  reverse_transformer_layers_per_block: null,
  encoder_hid_dim: null,
  encoder_hid_dim_type: null,
  attention_head_dim: 8,
  num_attention_heads: null,
  dual_cross_attention: false,
  use_linear_projection: false,
  class_embed_type: null,
  addition_embed_type: null,
  addition_time_embed_dim: null,
  num_class_embeds: null,
  upcast_attention: false,
  resnet_time_scale_shift: "default",
  resnet_skip_time_act: false,
  resnet_out_scale_factor: 1.0,
  time_embedding_type: "positional",
  time_embedding_dim: null,
  time_embedding_act_fn: null,
  timestep_post_act: null,
  time_cond_proj_dim: null,
  conv_in_kernel: 3,
  conv_out_kernel: 3,
  projection_class_embeddings_input_dim: null,
  attention_type: "default",
  class_embeddings_concat: false,
  mid_block_only_cross_attention: null,
  cross_attention_norm: null,
  addition_embed_type_num_heads: 64,
});

export const DOWN_BLOCK_TYPES = ["CrossAttnDownBlock2D", "DownBlock2D"] as const;
export const UP_BLOCK_TYPES = ["CrossAttnUpBlock2D", "UpBlock2D"] as const;
export const MID_BLOCK_TYPES = ["UNetMidBlock2DCrossAttn"] as const;

/** diffusers' get_down_block / get_up_block strip a "UNetRes" prefix. */
export function blockTypeName(t: string): string {
  return t.startsWith("UNetRes") ? t.slice(7) : t;
}

const isInt = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v);
const isPosInt = (v: unknown): v is number => isInt(v) && v >= 1;

/**
 * Fill diffusers' defaults and validate. `where` (e.g. the config.json path) prefixes error messages.
 * Every value this implementation would not run exactly as diffusers does raises a ConfigError.
 */
export function parseUNetConfig(json: unknown, where = "UNet2DConditionConfig"): UNet2DConditionConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json))
    throw new ConfigError("(config)", json, "expected a JSON object", where);
  const cfg = { ...UNET_CONFIG_DEFAULTS, ...(json as Record<string, unknown>) } as UNet2DConditionConfig;
  const fail = (field: string, reason: string): never => {
    throw new ConfigError(field, cfg[field], reason, where);
  };
  const unsupportedUnless = (field: string, ok: boolean, reason: string) => {
    if (!ok) fail(field, reason);
  };

  for (const f of ["in_channels", "out_channels"] as const) if (!isPosInt(cfg[f])) fail(f, "expected a positive integer");
  if (!isInt(cfg.downsample_padding) || cfg.downsample_padding < 0) fail("downsample_padding", "expected an integer ≥ 0");
  for (const f of ["conv_in_kernel", "conv_out_kernel"] as const)
    if (!isPosInt(cfg[f]) || cfg[f] % 2 === 0) fail(f, "expected an odd positive integer (same-size convolution)");
  if (!Array.isArray(cfg.block_out_channels) || cfg.block_out_channels.length === 0 || !cfg.block_out_channels.every(isPosInt))
    fail("block_out_channels", "expected a non-empty list of positive integers");
  const levels = cfg.block_out_channels.length;

  // block types
  if (!Array.isArray(cfg.down_block_types) || cfg.down_block_types.length !== levels)
    fail("down_block_types", `expected a list of ${levels} block types (one per block_out_channels entry)`);
  if (!Array.isArray(cfg.up_block_types) || cfg.up_block_types.length !== levels)
    fail("up_block_types", `expected a list of ${levels} block types (as many as down_block_types)`);
  for (const [i, t] of cfg.down_block_types.entries())
    if (!(DOWN_BLOCK_TYPES as readonly string[]).includes(blockTypeName(String(t))))
      throw new ConfigError(`down_block_types[${i}]`, t, `supported: ${DOWN_BLOCK_TYPES.join(", ")}`, where);
  for (const [i, t] of cfg.up_block_types.entries())
    if (!(UP_BLOCK_TYPES as readonly string[]).includes(blockTypeName(String(t))))
      throw new ConfigError(`up_block_types[${i}]`, t, `supported: ${UP_BLOCK_TYPES.join(", ")}`, where);
  if (cfg.mid_block_type !== null && !(MID_BLOCK_TYPES as readonly string[]).includes(cfg.mid_block_type))
    fail("mid_block_type", `supported: ${MID_BLOCK_TYPES.join(", ")} or null`);

  // per-level lists
  const perLevel = (field: string, ok: (v: unknown) => boolean, what: string) => {
    const v = cfg[field];
    if (Array.isArray(v)) {
      if (v.length !== levels) fail(field, `a list must have ${levels} entries (one per down block)`);
      if (!v.every(ok)) fail(field, `expected ${what} or a list of them`);
    } else if (!ok(v)) fail(field, `expected ${what} or a list of ${levels} of them`);
  };
  perLevel("only_cross_attention", (v) => typeof v === "boolean", "a boolean");
  perLevel("layers_per_block", isPosInt, "a positive integer");
  perLevel("cross_attention_dim", isPosInt, "a positive integer");
  perLevel("attention_head_dim", isPosInt, "a positive integer");
  if (cfg.num_attention_heads !== null) perLevel("num_attention_heads", isPosInt, "a positive integer");
  const tl = cfg.transformer_layers_per_block;
  const depthOk = (v: unknown) => isInt(v) && v >= 0;
  if (Array.isArray(tl)) {
    if (tl.length !== levels) fail("transformer_layers_per_block", `a list must have ${levels} entries`);
    if (!tl.every((v) => depthOk(v) || (Array.isArray(v) && v.every(depthOk))))
      fail("transformer_layers_per_block", "expected integers or lists of integers");
    if (tl.some(Array.isArray) && cfg.reverse_transformer_layers_per_block === null)
      fail("reverse_transformer_layers_per_block", "must be given when transformer_layers_per_block is nested (asymmetric UNet)");
  } else if (!depthOk(tl)) fail("transformer_layers_per_block", "expected an integer ≥ 0 or a list");
  const rtl = cfg.reverse_transformer_layers_per_block;
  if (rtl !== null && (!Array.isArray(rtl) || rtl.length !== levels || !rtl.every((v) => depthOk(v) || (Array.isArray(v) && v.every(depthOk)))))
    fail("reverse_transformer_layers_per_block", `expected null or a list of ${levels} integers / lists of integers`);

  // norms and activations
  if (!isPosInt(cfg.norm_num_groups)) fail("norm_num_groups", "expected a positive integer (null, no output norm, is not supported)");
  if (typeof cfg.norm_eps !== "number" || !(cfg.norm_eps >= 0)) fail("norm_eps", "expected a number ≥ 0");
  for (const [i, c] of cfg.block_out_channels.entries())
    if (c % cfg.norm_num_groups !== 0)
      throw new ConfigError(`block_out_channels[${i}]`, c, `not divisible into norm_num_groups = ${cfg.norm_num_groups} groups`, where);
  for (const f of ["act_fn", "time_embedding_act_fn", "timestep_post_act"] as const) {
    const v = cfg[f];
    if (v === null && f !== "act_fn") continue;
    if (typeof v !== "string") fail(f, "expected an activation name");
    try {
      activation(v as string);
    } catch {
      fail(f, "unknown activation");
    }
  }
  if (typeof cfg.mid_block_scale_factor !== "number" || !(cfg.mid_block_scale_factor > 0))
    fail("mid_block_scale_factor", "expected a positive number");
  if (typeof cfg.freq_shift !== "number") fail("freq_shift", "expected a number");

  // features we do not implement
  unsupportedUnless("time_embedding_type", cfg.time_embedding_type === "positional", 'only "positional" is supported');
  unsupportedUnless("resnet_time_scale_shift", cfg.resnet_time_scale_shift === "default", 'only "default" is supported');
  unsupportedUnless("dual_cross_attention", cfg.dual_cross_attention === false, "dual cross-attention is not supported");
  unsupportedUnless("class_embed_type", cfg.class_embed_type === null, "class embeddings are not supported");
  unsupportedUnless("num_class_embeds", cfg.num_class_embeds === null, "class embeddings are not supported");
  unsupportedUnless("class_embeddings_concat", !cfg.class_embeddings_concat, "class embeddings are not supported");
  unsupportedUnless("encoder_hid_dim_type", cfg.encoder_hid_dim_type === null, "encoder_hid_proj is not supported");
  unsupportedUnless("encoder_hid_dim", cfg.encoder_hid_dim === null, "encoder_hid_proj is not supported");
  unsupportedUnless("attention_type", cfg.attention_type === "default", 'only "default" is supported (no GLIGEN)');
  unsupportedUnless("addition_embed_type", cfg.addition_embed_type === null || cfg.addition_embed_type === "text_time", 'only null or "text_time" (SDXL) is supported');
  if (cfg.addition_embed_type === "text_time") {
    if (!isPosInt(cfg.addition_time_embed_dim)) fail("addition_time_embed_dim", 'addition_embed_type "text_time" needs a positive integer');
    if (!isPosInt(cfg.projection_class_embeddings_input_dim))
      fail("projection_class_embeddings_input_dim", 'addition_embed_type "text_time" needs a positive integer');
  }
  for (const f of ["time_embedding_dim", "time_cond_proj_dim"] as const)
    if (cfg[f] !== null && !isPosInt(cfg[f])) fail(f, "expected null or a positive integer");
  if (cfg.upcast_attention === null) cfg.upcast_attention = false; // SDXL's config writes null
  if (typeof cfg.upcast_attention !== "boolean") fail("upcast_attention", "expected a boolean");
  if (typeof cfg.use_linear_projection !== "boolean") fail("use_linear_projection", "expected a boolean");

  // per-layer transformer depths must cover every resnet layer of a cross-attention block (checked here,
  // before any parameter exists)
  const lv = unetLevels(cfg);
  for (let i = 0; i < levels; i++) {
    const down = lv.transformerLayers[i]!;
    if (Array.isArray(down) && blockTypeName(cfg.down_block_types[i]!) === "CrossAttnDownBlock2D" && down.length < lv.layersPerBlock[i]!)
      throw new ConfigError("transformer_layers_per_block", tl, `level ${i} lists ${down.length} depths for ${lv.layersPerBlock[i]} resnet layers`, where);
    const up = lv.upTransformerLayers[i]!;
    const upLayers = lv.layersPerBlock[levels - 1 - i]! + 1;
    if (Array.isArray(up) && blockTypeName(cfg.up_block_types[i]!) === "CrossAttnUpBlock2D" && up.length < upLayers)
      throw new ConfigError(
        rtl !== null ? "reverse_transformer_layers_per_block" : "transformer_layers_per_block",
        rtl ?? tl,
        `up block ${i} lists ${up.length} depths for ${upLayers} resnet layers`,
        where,
      );
  }
  const midDepth = lv.transformerLayers[levels - 1]!;
  if (cfg.mid_block_type !== null && Array.isArray(midDepth) && midDepth.length < 1)
    throw new ConfigError("transformer_layers_per_block", tl, "the mid block needs a depth (last level is an empty list)", where);

  // heads must divide the channels of every level with attention
  for (let i = 0; i < levels; i++) {
    const hasAttn = blockTypeName(cfg.down_block_types[i]!) === "CrossAttnDownBlock2D" || blockTypeName(cfg.up_block_types[levels - 1 - i]!) === "CrossAttnUpBlock2D" ||
      (i === levels - 1 && cfg.mid_block_type !== null);
    if (hasAttn && cfg.block_out_channels[i]! % lv.heads[i]! !== 0)
      fail(cfg.num_attention_heads !== null ? "num_attention_heads" : "attention_head_dim",
        `level ${i}: ${cfg.block_out_channels[i]} channels are not divisible by ${lv.heads[i]} heads`);
  }
  return cfg;
}

/** The per-level values diffusers derives from a config (down order; `up*` in up-block order). */
export interface UNetLevels {
  /** Attention heads per level (head dim = channels / heads). */
  heads: number[];
  crossAttentionDim: number[];
  onlyCrossAttention: boolean[];
  layersPerBlock: number[];
  /** Transformer depth per down level: one value, or one per resnet layer. */
  transformerLayers: (number | number[])[];
  /** Transformer depth per up block (up order). */
  upTransformerLayers: (number | number[])[];
  /** Time-embedding width (time_embedding_dim or 4·block_out_channels[0]). */
  timeEmbedDim: number;
}

export function unetLevels(cfg: UNet2DConditionConfig): UNetLevels {
  const n = cfg.block_out_channels.length;
  const list = <T>(v: T | T[]): T[] => (Array.isArray(v) ? v.slice() : Array<T>(n).fill(v));
  // diffusers: num_attention_heads = num_attention_heads or attention_head_dim (the SD 1.x misnomer)
  const heads = list(cfg.num_attention_heads ?? cfg.attention_head_dim);
  const transformerLayers = list<number | number[]>(cfg.transformer_layers_per_block);
  return {
    heads,
    crossAttentionDim: list(cfg.cross_attention_dim),
    onlyCrossAttention: list(cfg.only_cross_attention),
    layersPerBlock: list(cfg.layers_per_block),
    transformerLayers,
    upTransformerLayers: cfg.reverse_transformer_layers_per_block?.slice() ?? transformerLayers.slice().reverse(),
    timeEmbedDim: cfg.time_embedding_dim ?? cfg.block_out_channels[0]! * 4,
  };
}

/** Transformer depth of resnet layer `i` of a block given an int or per-layer list. */
export function layerDepth(depth: number | number[], i: number, block: string): number {
  if (!Array.isArray(depth)) return depth;
  const d = depth[i];
  if (d === undefined)
    throw new ConfigError("transformer_layers_per_block", depth, `${block} has no entry for resnet layer ${i}`, "UNet2DConditionConfig");
  return d;
}
