// CLIPTextConfig: the text-encoder configuration as transformers writes it in config.json (field
// names are the JSON keys), with transformers' CLIPTextConfig defaults, and parseClipTextConfig(),
// which fills defaults and rejects values this implementation does not support, naming the field.

/** Activations CLIP text encoders use: OpenAI CLIP (SD 1.x) quick_gelu, OpenCLIP (SD 2.x, SDXL-2) gelu. */
export type ClipHiddenAct = "quick_gelu" | "gelu" | "gelu_new" | "gelu_pytorch_tanh";

export interface CLIPTextConfig {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  /** Output width of text_projection (CLIPTextModelWithProjection only). */
  projection_dim: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  max_position_embeddings: number;
  hidden_act: ClipHiddenAct;
  layer_norm_eps: number;
  attention_dropout: number;
  initializer_range: number;
  initializer_factor: number;
  pad_token_id: number;
  bos_token_id: number;
  eos_token_id: number;
  architectures?: string[];
  model_type?: string;
  torch_dtype?: string;
  [extra: string]: unknown;
}

/** transformers' CLIPTextConfig defaults (configuration_clip.py). */
export const CLIP_TEXT_CONFIG_DEFAULTS: Readonly<CLIPTextConfig> = Object.freeze({
  vocab_size: 49408,
  hidden_size: 512,
  intermediate_size: 2048,
  projection_dim: 512,
  num_hidden_layers: 12,
  num_attention_heads: 8,
  max_position_embeddings: 77,
  hidden_act: "quick_gelu",
  layer_norm_eps: 1e-5,
  attention_dropout: 0.0,
  initializer_range: 0.02,
  initializer_factor: 1.0,
  pad_token_id: 1,
  bos_token_id: 49406,
  eos_token_id: 49407,
});

const ACTS: readonly string[] = ["quick_gelu", "gelu", "gelu_new", "gelu_pytorch_tanh"];

/** Thrown for a config value we cannot run; names the field and the value. */
export class ConfigError extends Error {
  override name = "ConfigError";
  constructor(
    readonly field: string,
    readonly value: unknown,
    reason: string,
    where = "CLIPTextConfig",
  ) {
    super(`${where}: unsupported ${field} = ${JSON.stringify(value)}: ${reason}`);
  }
}

/**
 * Fill defaults and validate. Accepts a full CLIPConfig too (uses its `text_config`).
 * `where` (e.g. the config.json path) prefixes error messages.
 */
export function parseClipTextConfig(json: unknown, where = "CLIPTextConfig"): CLIPTextConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json))
    throw new ConfigError("(config)", json, "expected a JSON object", where);
  let raw = json as Record<string, unknown>;
  if (raw.model_type === "clip" && typeof raw.text_config === "object" && raw.text_config !== null)
    raw = raw.text_config as Record<string, unknown>;
  const cfg = { ...CLIP_TEXT_CONFIG_DEFAULTS, ...raw } as CLIPTextConfig;

  const positiveInts = [
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "projection_dim",
    "num_hidden_layers",
    "num_attention_heads",
    "max_position_embeddings",
  ] as const;
  for (const f of positiveInts) {
    const v = cfg[f];
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1) throw new ConfigError(f, v, "expected a positive integer", where);
  }
  for (const f of ["pad_token_id", "bos_token_id", "eos_token_id"] as const) {
    const v = cfg[f];
    if (typeof v !== "number" || !Number.isInteger(v)) throw new ConfigError(f, v, "expected an integer token id", where);
  }
  if (!ACTS.includes(cfg.hidden_act as string))
    throw new ConfigError("hidden_act", cfg.hidden_act, `expected one of ${ACTS.join(", ")}`, where);
  if (typeof cfg.layer_norm_eps !== "number" || !(cfg.layer_norm_eps >= 0))
    throw new ConfigError("layer_norm_eps", cfg.layer_norm_eps, "expected a number ≥ 0", where);
  if (cfg.hidden_size % cfg.num_attention_heads !== 0)
    throw new ConfigError(
      "num_attention_heads",
      cfg.num_attention_heads,
      `hidden_size ${cfg.hidden_size} is not divisible by it`,
      where,
    );
  return cfg;
}
