// CLIP text encoders as transformers defines them (modeling_clip.py), with its parameter names:
// CLIPTextModel (SD 1.x / 2.x, SDXL's first encoder) and CLIPTextModelWithProjection (SDXL's second
// encoder, adds `text_projection`). Pre-LN transformer blocks with causal self-attention, final
// LayerNorm, pooled output at the EOS position; fromPretrained() loads a transformers model folder.
// The attention kind ("fused" by default) is the model's: setAttentionKind() or fromPretrained({ attention }).

import { type DType, type Device, type Tensor, add, indexSelect, tensor, tidy } from "../tensor/index.ts";
import { loadPretrained, type PretrainedOptions, TRANSFORMERS_WEIGHTS } from "../io/model-folder.ts";
import { type AttentionKind, type AttentionOptions, getAttention, scaledDotProductAttention } from "../nn/attention-dispatch.ts";
import { CLIPMLP } from "../nn/feed-forward.ts";
import { Embedding, LayerNorm, Linear } from "../nn/layers.ts";
import { Module, ModuleList, type ModuleOptions } from "../nn/module.ts";
import { type CLIPTextConfig, parseClipTextConfig } from "./clip-config.ts";

/** torch.finfo(float32).min: transformers' additive mask value for padding keys. */
const FINFO_MIN = -3.4028234663852886e38;

export interface CLIPTextOutput {
  /** Final LayerNorm of the last layer's output. [B, S, D] */
  lastHiddenState: Tensor;
  /** N+1 entries: embeddings, then each layer's output (no final LayerNorm). [B, S, D] each */
  hiddenStates: Tensor[];
  /** lastHiddenState at the EOS position of each row. [B, D] */
  poolerOutput: Tensor;
  /** text_projection(poolerOutput) (CLIPTextModelWithProjection only). [B, P] */
  textEmbeds?: Tensor;
}

export interface CLIPForwardOptions {
  /** [B, S] keep-mask (1 = token, 0 = padding), as transformers' attention_mask. */
  attentionMask?: Tensor | null;
}

export interface CLIPFromPretrainedOptions extends Omit<PretrainedOptions, "weightsNames"> {
  device?: Device;
  dtype?: DType;
  variant?: string;
  /** Attention implementation of every layer (default "fused"). */
  attention?: AttentionKind;
}

class CLIPTextEmbeddings extends Module<[Tensor], Tensor> {
  readonly token_embedding: Embedding;
  readonly position_embedding: Embedding;
  constructor(cfg: CLIPTextConfig, opts: ModuleOptions) {
    super(opts);
    this.token_embedding = this.child("token_embedding", new Embedding(cfg.vocab_size, cfg.hidden_size, opts));
    this.position_embedding = this.child("position_embedding", new Embedding(cfg.max_position_embeddings, cfg.hidden_size, opts));
  }
  forward(ids: Tensor): Tensor {
    const S = ids.shape[1]!;
    const maxPos = this.position_embedding.numEmbeddings;
    if (S > maxPos) throw new Error(`CLIP: sequence length ${S} exceeds max_position_embeddings ${maxPos}`);
    // [B, S, D] + [S, D] (positions 0..S-1 are the first S rows of the table)
    return tidy(() => add(this.token_embedding.call(ids), this.position_embedding.weight.value.narrow(0, 0, S)));
  }
}

export class CLIPAttention extends Module<[Tensor, Tensor | null], Tensor> {
  /** The attention implementation this layer calls (see nn/attention-dispatch.ts). */
  attentionKind: AttentionKind = "fused";
  attentionOptions: Readonly<Partial<AttentionOptions>> = {};
  readonly q_proj: Linear;
  readonly k_proj: Linear;
  readonly v_proj: Linear;
  readonly out_proj: Linear;
  readonly heads: number;
  constructor(cfg: CLIPTextConfig, opts: ModuleOptions) {
    super(opts);
    const d = cfg.hidden_size;
    this.heads = cfg.num_attention_heads;
    // Registered in transformers' order (k, v, q, out) so namedParameters() follows the state dict.
    this.k_proj = this.child("k_proj", new Linear(d, d, opts));
    this.v_proj = this.child("v_proj", new Linear(d, d, opts));
    this.q_proj = this.child("q_proj", new Linear(d, d, opts));
    this.out_proj = this.child("out_proj", new Linear(d, d, opts));
  }
  forward(x: Tensor, mask: Tensor | null): Tensor {
    return tidy(() => {
      const [B, S, D] = x.shape as [number, number, number];
      const split = (t: Tensor) => t.reshape([B, S, this.heads, -1]).transpose(1, 2); // [B, H, S, Dh]
      const q = split(this.q_proj.call(x));
      const k = split(this.k_proj.call(x));
      const v = split(this.v_proj.call(x));
      const o = scaledDotProductAttention(q, k, v, { ...this.attentionOptions, kind: this.attentionKind, causal: true, mask }); // [B, H, S, Dh], scale Dh^-0.5
      return this.out_proj.call(o.transpose(1, 2).reshape([B, S, D]));
    });
  }
}

class CLIPEncoderLayer extends Module<[Tensor, Tensor | null], Tensor> {
  readonly self_attn: CLIPAttention;
  readonly layer_norm1: LayerNorm;
  readonly mlp: CLIPMLP;
  readonly layer_norm2: LayerNorm;
  constructor(cfg: CLIPTextConfig, opts: ModuleOptions) {
    super(opts);
    const ln = { ...opts, eps: cfg.layer_norm_eps };
    this.self_attn = this.child("self_attn", new CLIPAttention(cfg, opts));
    this.layer_norm1 = this.child("layer_norm1", new LayerNorm(cfg.hidden_size, ln));
    this.mlp = this.child("mlp", new CLIPMLP(cfg.hidden_size, cfg.intermediate_size, cfg.hidden_act, opts));
    this.layer_norm2 = this.child("layer_norm2", new LayerNorm(cfg.hidden_size, ln));
  }
  forward(x: Tensor, mask: Tensor | null): Tensor {
    // pre-LN: x + attn(ln1(x)), then + mlp(ln2(.))
    return tidy(() => {
      const h = add(x, this.self_attn.call(this.layer_norm1.call(x), mask));
      return add(h, this.mlp.call(this.layer_norm2.call(h)));
    });
  }
}

class CLIPEncoder extends Module<[Tensor, Tensor | null], Tensor[]> {
  readonly layers: ModuleList<CLIPEncoderLayer>;
  constructor(cfg: CLIPTextConfig, opts: ModuleOptions) {
    super(opts);
    this.layers = this.child("layers", new ModuleList(Array.from({ length: cfg.num_hidden_layers }, () => new CLIPEncoderLayer(cfg, opts)), opts));
  }
  /** Each layer's output, in order. */
  forward(x: Tensor, mask: Tensor | null): Tensor[] {
    const outs: Tensor[] = [];
    let h = x;
    for (const layer of this.layers) outs.push((h = layer.call(h, mask)));
    return outs;
  }
}

/** transformers' CLIPTextTransformer (the `text_model.` prefix). */
export class CLIPTextTransformer extends Module<[Tensor, CLIPForwardOptions?], CLIPTextOutput> {
  readonly embeddings: CLIPTextEmbeddings;
  readonly encoder: CLIPEncoder;
  readonly final_layer_norm: LayerNorm;

  constructor(
    readonly config: CLIPTextConfig,
    opts: ModuleOptions,
  ) {
    super(opts);
    this.embeddings = this.child("embeddings", new CLIPTextEmbeddings(config, opts));
    this.encoder = this.child("encoder", new CLIPEncoder(config, opts));
    this.final_layer_norm = this.child("final_layer_norm", new LayerNorm(config.hidden_size, { ...opts, eps: config.layer_norm_eps }));
  }

  forward(inputIds: Tensor, call: CLIPForwardOptions = {}): CLIPTextOutput {
    if (inputIds.ndim !== 2) throw new Error(`CLIP: input_ids must be [B, S], got [${inputIds.shape.join(", ")}]`);
    const [B, S] = inputIds.shape as [number, number];
    return tidy(() => {
      const mask = call.attentionMask ? paddingMask(call.attentionMask, B, S, inputIds.device) : null; // [B, 1, 1, S]
      const emb = this.embeddings.call(inputIds); // [B, S, D]
      const hiddenStates = [emb, ...this.encoder.call(emb, mask)];
      const lastHiddenState = this.final_layer_norm.call(hiddenStates[hiddenStates.length - 1]!);
      const rows = poolingPositions(inputIds, this.config.eos_token_id);
      const D = lastHiddenState.shape[2]!;
      const index = tensor(Int32Array.from(rows, (s, b) => b * S + s), { device: lastHiddenState.device });
      const poolerOutput = indexSelect(lastHiddenState.reshape([B * S, D]), 0, index); // [B, D]
      return { lastHiddenState, hiddenStates, poolerOutput };
    });
  }
}

/**
 * The position pooled for each row, transformers 4.x's rule (PR #24773): configs with the legacy
 * eos_token_id 2 (openai checkpoints, e.g. SD 1.5 / SDXL) pool at argmax(ids) — the EOT token 49407
 * is the largest id — others at the first position holding eos_token_id (pad may equal eos).
 * (transformers ≥ 5 instead uses argmax when every row's max id is 49407; the two agree whenever the
 * rows end with the tokenizer's EOT as their largest id, as every CLIP tokenizer produces.)
 */
export function poolingPositions(inputIds: Tensor, eosTokenId: number): number[] {
  const [B, S] = inputIds.shape as [number, number];
  if (inputIds.device === "meta") return Array<number>(B).fill(0); // shapes only: any position has the same cost
  const ids = Array.from(inputIds.toTypedArray() as ArrayLike<number | bigint>, Number);
  const out: number[] = [];
  for (let b = 0; b < B; b++) {
    const row = ids.slice(b * S, (b + 1) * S);
    let pos = 0;
    if (eosTokenId === 2) {
      for (let s = 1; s < S; s++) if (row[s]! > row[pos]!) pos = s; // first maximum, as torch.argmax
    } else {
      const i = row.indexOf(eosTokenId);
      pos = i < 0 ? 0 : i; // argmax of an all-zero row is 0
    }
    out.push(pos);
  }
  return out;
}

/** [B, S] keep-mask -> additive float32 [B, 1, 1, S] (0 keep, finfo.min drop). */
function paddingMask(mask: Tensor, B: number, S: number, device: Device): Tensor {
  if (mask.ndim !== 2 || mask.shape[0] !== B || mask.shape[1] !== S)
    throw new Error(`CLIP: attention_mask must be [${B}, ${S}], got [${mask.shape.join(", ")}]`);
  if (mask.device === "meta") return tensor(new Float32Array(B * S), { shape: [B, 1, 1, S], device }); // shapes only
  const keep = Array.from(mask.toTypedArray() as ArrayLike<number | bigint>, Number);
  return tensor(Float32Array.from(keep, (k) => (k ? 0 : FINFO_MIN)), { shape: [B, 1, 1, S], device });
}

/** Use `kind` (with `options`) in every CLIP attention layer under `root`; returns how many were set. */
function setClipAttentionKind(root: Module, kind: AttentionKind, options: Partial<AttentionOptions> = {}): number {
  getAttention(kind); // an unknown kind fails before anything changes
  let n = 0;
  for (const [, m] of root.namedModules())
    if (m instanceof CLIPAttention) {
      m.attentionKind = kind;
      m.attentionOptions = options;
      n++;
    }
  return n;
}

/** transformers `CLIPTextModel`: parameters under `text_model.`. */
export class CLIPTextModel extends Module<[Tensor, CLIPForwardOptions?], CLIPTextOutput> {
  readonly text_model: CLIPTextTransformer;
  readonly config: CLIPTextConfig;

  constructor(config: CLIPTextConfig | Record<string, unknown>, opts: ModuleOptions = {}) {
    super(opts);
    this.config = parseClipTextConfig(config);
    this.text_model = this.child("text_model", new CLIPTextTransformer(this.config, this.options));
  }

  /** input_ids [B, S] (int64 / int32) -> { lastHiddenState, hiddenStates, poolerOutput }. */
  forward(inputIds: Tensor, call: CLIPForwardOptions = {}): CLIPTextOutput {
    return this.text_model.call(inputIds, call);
  }

  /** final_layer_norm, for clip-skip embeddings (hiddenStates[-(skip+1)] through the final LN). */
  finalLayerNorm(x: Tensor): Tensor {
    return this.text_model.final_layer_norm.call(x);
  }

  /** The attention implementation of every layer (default "fused"). */
  setAttentionKind(kind: AttentionKind, options: Partial<AttentionOptions> = {}): void {
    setClipAttentionKind(this, kind, options);
  }

  /** Load a transformers model folder (config.json + model.safetensors or a sharded index). */
  static fromPretrained(dir: string, opts: CLIPFromPretrainedOptions = {}): CLIPTextModel {
    return loadClip(dir, opts, (cfg, o) => new CLIPTextModel(cfg, o));
  }
}

/** transformers `CLIPTextModelWithProjection`: CLIPTextModel + `text_projection` (Linear without bias). */
export class CLIPTextModelWithProjection extends Module<[Tensor, CLIPForwardOptions?], CLIPTextOutput> {
  readonly text_model: CLIPTextTransformer;
  readonly text_projection: Linear;
  readonly config: CLIPTextConfig;

  constructor(config: CLIPTextConfig | Record<string, unknown>, opts: ModuleOptions = {}) {
    super(opts);
    this.config = parseClipTextConfig(config);
    this.text_model = this.child("text_model", new CLIPTextTransformer(this.config, this.options));
    this.text_projection = this.child(
      "text_projection",
      new Linear(this.config.hidden_size, this.config.projection_dim, { ...this.options, bias: false }),
    );
  }

  /** As CLIPTextModel, plus textEmbeds = text_projection(poolerOutput) [B, projection_dim]. */
  forward(inputIds: Tensor, call: CLIPForwardOptions = {}): CLIPTextOutput {
    const out = this.text_model.call(inputIds, call);
    return { ...out, textEmbeds: this.text_projection.call(out.poolerOutput) };
  }

  finalLayerNorm(x: Tensor): Tensor {
    return this.text_model.final_layer_norm.call(x);
  }

  setAttentionKind(kind: AttentionKind, options: Partial<AttentionOptions> = {}): void {
    setClipAttentionKind(this, kind, options);
  }

  static fromPretrained(dir: string, opts: CLIPFromPretrainedOptions = {}): CLIPTextModelWithProjection {
    return loadClip(dir, opts, (cfg, o) => new CLIPTextModelWithProjection(cfg, o));
  }
}

/** transformers checkpoints may carry the `position_ids` buffer; it is derived, not a parameter. */
const CLIP_IGNORED_KEYS = ["text_model.embeddings.position_ids"];

function loadClip<M extends Module>(
  dir: string,
  opts: CLIPFromPretrainedOptions,
  build: (cfg: CLIPTextConfig, o: ModuleOptions) => M,
): M {
  const { attention, ...rest } = opts;
  if (attention) getAttention(attention); // an unknown kind fails before any weight is read
  return loadPretrained(
    dir,
    (json, o, files) => {
      const m = build(parseClipTextConfig(json, files.configPath), o);
      if (attention) setClipAttentionKind(m, attention);
      return m;
    },
    { ...rest, weightsNames: [TRANSFORMERS_WEIGHTS], ignore: [...CLIP_IGNORED_KEYS, ...(rest.ignore ?? [])] },
  );
}

/** Release every tensor of an output. */
export function disposeClipOutput(out: CLIPTextOutput): void {
  const seen = new Set<Tensor>();
  for (const t of [out.lastHiddenState, out.poolerOutput, out.textEmbeds, ...out.hiddenStates])
    if (t && !seen.has(t)) {
      seen.add(t);
      t.dispose();
    }
}
