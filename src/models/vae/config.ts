// AutoencoderKLConfig: the VAE configuration as diffusers writes it in config.json (field names are
// the JSON keys), with diffusers v0.31 AutoencoderKL.__init__ defaults, and parseAutoencoderKLConfig(),
// which fills the defaults and rejects values this implementation does not run, naming the field.

import { ConfigError } from "../clip-config.ts";

export { ConfigError };

export interface AutoencoderKLConfig {
  in_channels: number;
  out_channels: number;
  /** Only "DownEncoderBlock2D"; one per level (length = block_out_channels.length). */
  down_block_types: string[];
  /** Only "UpDecoderBlock2D"; one per level. */
  up_block_types: string[];
  /** Channels per level, finest first (SD: [128, 256, 512, 512]). */
  block_out_channels: number[];
  /** Resnets per encoder level (the decoder uses layers_per_block + 1). */
  layers_per_block: number;
  /** "silu" (diffusers also spells it "swish"). */
  act_fn: string;
  latent_channels: number;
  norm_num_groups: number;
  /** Image size the model was trained at (int or [h, w]); sets the VAE-tiling tile size. */
  sample_size: number | number[];
  /** Latents are multiplied by it before the UNet, divided by it before decode (pipeline's job). */
  scaling_factor: number;
  /** Subtracted before scaling (SD3 / Flux VAEs); null when absent. */
  shift_factor: number | null;
  latents_mean: number[] | null;
  latents_std: number[] | null;
  /** The VAE should run in float32 even when the pipeline runs in float16 (SDXL). */
  force_upcast: boolean;
  use_quant_conv: boolean;
  use_post_quant_conv: boolean;
  mid_block_add_attention: boolean;
  _class_name?: string;
  _diffusers_version?: string;
  [extra: string]: unknown;
}

/** diffusers v0.31 AutoencoderKL.__init__ defaults (models/autoencoders/autoencoder_kl.py). */
export const AUTOENCODER_KL_DEFAULTS: Readonly<AutoencoderKLConfig> = Object.freeze({
  in_channels: 3,
  out_channels: 3,
  down_block_types: ["DownEncoderBlock2D"],
  up_block_types: ["UpDecoderBlock2D"],
  block_out_channels: [64],
  layers_per_block: 1,
  act_fn: "silu",
  latent_channels: 4,
  norm_num_groups: 32,
  sample_size: 32,
  scaling_factor: 0.18215,
  shift_factor: null,
  latents_mean: null,
  latents_std: null,
  force_upcast: true,
  use_quant_conv: true,
  use_post_quant_conv: true,
  mid_block_add_attention: true,
});

const WHERE = "AutoencoderKLConfig";
const ACTS = ["silu", "swish"];

const isPosInt = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v) && v >= 1;
const isNumArray = (v: unknown): v is number[] => Array.isArray(v) && v.every((x) => typeof x === "number" && Number.isFinite(x));

/**
 * Fill defaults and validate. `where` (e.g. the config.json path) prefixes error messages.
 * Unknown keys (`_class_name`, `_name_or_path`, …) are kept and ignored.
 */
export function parseAutoencoderKLConfig(json: unknown, where = WHERE): AutoencoderKLConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json))
    throw new ConfigError("(config)", json, "expected a JSON object", where);
  const raw = json as Record<string, unknown>;
  // an explicit null is kept, as diffusers passes None on: fine for shift_factor, an error elsewhere
  const filled: Record<string, unknown> = { ...AUTOENCODER_KL_DEFAULTS };
  for (const [k, v] of Object.entries(raw)) if (v !== undefined) filled[k] = v;
  const cfg = filled as AutoencoderKLConfig;
  const fail = (field: string, reason: string): never => {
    throw new ConfigError(field, cfg[field], reason, where);
  };

  if (cfg._class_name !== undefined && cfg._class_name !== "AutoencoderKL")
    fail("_class_name", "only AutoencoderKL is implemented here (AutoencoderTiny, AsymmetricAutoencoderKL, … are other models)");
  for (const f of ["in_channels", "out_channels", "latent_channels", "norm_num_groups", "layers_per_block"] as const)
    if (!isPosInt(cfg[f])) fail(f, "expected a positive integer");
  const chans = cfg.block_out_channels;
  if (!Array.isArray(chans) || chans.length === 0 || !chans.every(isPosInt))
    fail("block_out_channels", "expected a non-empty list of positive integers");
  const bad = chans.find((c) => c % cfg.norm_num_groups !== 0);
  if (bad !== undefined) fail("norm_num_groups", `block_out_channels entry ${bad} is not divisible by it (GroupNorm)`);
  for (const [f, type] of [["down_block_types", "DownEncoderBlock2D"], ["up_block_types", "UpDecoderBlock2D"]] as const) {
    const list = cfg[f];
    if (!Array.isArray(list)) fail(f, `expected a list of "${type}"`);
    const other = list.find((t) => t !== type);
    if (other !== undefined)
      throw new ConfigError(f, other, `only "${type}" is supported (the AutoencoderKL encoder/decoder block)`, where);
    if (list.length !== chans.length) fail(f, `has ${list.length} entries but block_out_channels has ${chans.length}`);
  }
  if (!ACTS.includes(cfg.act_fn)) fail("act_fn", `expected one of ${ACTS.join(", ")} (the VAE's conv_act is always SiLU)`);
  const ss = cfg.sample_size;
  if (!isPosInt(ss) && !(Array.isArray(ss) && ss.length === 2 && ss.every(isPosInt)))
    fail("sample_size", "expected a positive integer or [height, width]");
  if (typeof cfg.scaling_factor !== "number" || !Number.isFinite(cfg.scaling_factor) || cfg.scaling_factor === 0)
    fail("scaling_factor", "expected a finite non-zero number");
  if (cfg.shift_factor !== null && (typeof cfg.shift_factor !== "number" || !Number.isFinite(cfg.shift_factor)))
    fail("shift_factor", "expected a number or null");
  for (const f of ["latents_mean", "latents_std"] as const) {
    const v = cfg[f];
    if (v !== null && !(isNumArray(v) && v.length === cfg.latent_channels))
      fail(f, `expected null or ${cfg.latent_channels} numbers (one per latent channel)`);
  }
  // diffusers types force_upcast as float; 0 / 1 occur in the wild
  if (typeof cfg.force_upcast === "number") cfg.force_upcast = cfg.force_upcast !== 0;
  for (const f of ["force_upcast", "use_quant_conv", "use_post_quant_conv", "mid_block_add_attention"] as const)
    if (typeof cfg[f] !== "boolean") fail(f, "expected true or false");
  return cfg;
}

/** Spatial downsampling factor between image and latent: 2^(levels-1) (8 for SD). */
export function vaeScaleFactor(cfg: AutoencoderKLConfig): number {
  return 2 ** (cfg.block_out_channels.length - 1);
}
