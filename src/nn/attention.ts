// diffusers' `Attention` module (attention_processor.py, AttnProcessor2_0 behaviour): to_q / to_k /
// to_v projections (bias off by default, as diffusers' `bias=False`), to_out.0 output Linear (bias
// on, `out_bias=True`), multi-head split, scaled dot-product attention through the dispatcher, and
// the options the UNet and VAE use: cross-attention (`cross_attention_dim`), `upcast_attention` /
// `upcast_softmax`, a GroupNorm on the input (`norm_num_groups`, VAE), 4-D [B, C, H, W] inputs,
// `residual_connection` and `rescale_output_factor`.
//
// As in diffusers, the computation lives in the module's processor (`attn.processor`): an
// AttnProcessor computes the projections, the attention and the output from the module's weights,
// so fused QKV, token merging, token downsampling or recording are processors, not edits to this
// file. AttnProcessorDefault is diffusers' AttnProcessor2_0 with a chosen attention kind ("fused",
// "naive", "chunked" or any registered name). The module's steps are public so processors reuse
// them: prepareInput (4-D flattening, group norm), splitHeads / mergeHeads, attend, finishOutput
// (back to 4-D, residual, rescale). Setting processors on every Attention under a model:
// attention-processors.ts.

import { type Tensor, add, div, tidy } from "../tensor/index.ts";
import { type AttentionKind, type AttentionOptions, getAttention, scaledDotProductAttention } from "./attention-dispatch.ts";
import { GroupNorm, Linear } from "./layers.ts";
import { Identity, Module, ModuleList, type ModuleOptions } from "./module.ts";

export interface AttentionModuleOptions extends ModuleOptions {
  /** Width of encoder_hidden_states (default queryDim: self-attention). */
  crossAttentionDim?: number | null;
  heads?: number; // default 8
  dimHead?: number; // default 64
  /** Bias of to_q / to_k / to_v (diffusers default false; the VAE mid-block uses true). */
  bias?: boolean;
  /** Bias of to_out.0 (default true). */
  outBias?: boolean;
  /** Output width (default queryDim); when given, heads = outDim / dimHead as in diffusers. */
  outDim?: number;
  upcastAttention?: boolean;
  upcastSoftmax?: boolean;
  /** GroupNorm(norm_num_groups, queryDim) on the input (VAE attention). */
  normNumGroups?: number | null;
  eps?: number;
  residualConnection?: boolean;
  rescaleOutputFactor?: number;
}

/** Extra per-call arguments of Attention.forward. */
export interface AttentionCallOptions {
  /** Additive mask or bool keep-mask broadcastable to [B, H, Sq, Sk] (or [B, 1, Sk] / [B, Sk] key masks). */
  attentionMask?: Tensor | null;
}

export class Attention extends Module<[Tensor, (Tensor | null)?, AttentionCallOptions?], Tensor> {
  readonly to_q: Linear;
  readonly to_k: Linear;
  readonly to_v: Linear;
  readonly to_out: ModuleList<Module<[Tensor], Tensor>>;
  readonly group_norm: GroupNorm | null;
  readonly heads: number;
  readonly dimHead: number;
  readonly scale: number;
  readonly isCrossAttention: boolean;
  readonly upcast: boolean;
  readonly residualConnection: boolean;
  readonly rescaleOutputFactor: number;
  /** What forward() runs (see the file header); replace it with setProcessor(). */
  #processor: AttnProcessor = DEFAULT_PROCESSOR;

  constructor(
    readonly queryDim: number,
    opts: AttentionModuleOptions = {},
  ) {
    super(opts);
    this.dimHead = opts.dimHead ?? 64;
    const outDim = opts.outDim ?? queryDim;
    this.heads = opts.outDim !== undefined ? Math.trunc(opts.outDim / this.dimHead) : (opts.heads ?? 8);
    const inner = opts.outDim ?? this.dimHead * this.heads;
    const crossDim = opts.crossAttentionDim ?? queryDim;
    this.isCrossAttention = opts.crossAttentionDim != null;
    this.scale = this.dimHead ** -0.5;
    this.upcast = !!(opts.upcastAttention || opts.upcastSoftmax);
    this.residualConnection = opts.residualConnection ?? false;
    this.rescaleOutputFactor = opts.rescaleOutputFactor ?? 1;
    const o = this.options;
    this.group_norm = opts.normNumGroups
      ? this.child("group_norm", new GroupNorm(opts.normNumGroups, queryDim, { ...o, eps: opts.eps ?? 1e-5 }))
      : null;
    const bias = opts.bias ?? false;
    this.to_q = this.child("to_q", new Linear(queryDim, inner, { ...o, bias }));
    this.to_k = this.child("to_k", new Linear(crossDim, inner, { ...o, bias }));
    this.to_v = this.child("to_v", new Linear(crossDim, inner, { ...o, bias }));
    this.to_out = this.child(
      "to_out",
      new ModuleList<Module<[Tensor], Tensor>>([new Linear(inner, outDim, { ...o, bias: opts.outBias ?? true }), new Identity<Tensor>()], o),
    );
  }

  get processor(): AttnProcessor {
    return this.#processor;
  }

  /** Install `p` (null: the default processor with the "fused" kernel). */
  /** Free the parameters and what the processor owns (e.g. fused QKV's weight and K/V cache). */
  override dispose(): void {
    super.dispose();
    this.#processor.dispose?.();
  }

  setProcessor(p: AttnProcessor | null): void {
    this.#processor = p ?? DEFAULT_PROCESSOR;
  }

  /** The attention kind of the default processor in use (null when another processor is installed). */
  get attentionKind(): AttentionKind | null {
    return this.#processor instanceof AttnProcessorDefault ? this.#processor.kind : null;
  }

  /**
   * hidden [B, S, C] or [B, C, H, W]; encoder [B, Sk, cross] (null: self-attention) -> same shape as hidden.
   */
  forward(hidden: Tensor, encoder: Tensor | null = null, call: AttentionCallOptions = {}): Tensor {
    return tidy(() => this.#processor.process(this, hidden, encoder, call));
  }

  /** [B, C, H, W] -> [B, HW, C] (3-D passes through), then the group norm over channels if any. */
  prepareInput(hidden: Tensor): Tensor {
    let x = hidden;
    if (hidden.ndim === 4) {
      const [b, c, h, w] = hidden.shape as [number, number, number, number];
      x = x.reshape([b, c, h * w]).transpose(1, 2); // [B, HW, C]
    }
    if (this.group_norm) x = this.group_norm.call(x.transpose(1, 2)).transpose(1, 2); // norm over channels
    return x;
  }

  /** [B, S, H·Dh] -> [B, H, S, Dh] (a strided view; the matmuls read it as it lies). */
  splitHeads(t: Tensor): Tensor {
    const [B, S] = t.shape as [number, number];
    return t.reshape([B, S, this.heads, -1]).transpose(1, 2);
  }

  /** [B, H, S, Dh] -> [B, S, H·Dh]. */
  mergeHeads(o: Tensor): Tensor {
    const [B, H, S, Dh] = o.shape as [number, number, number, number];
    return o.transpose(1, 2).reshape([B, S, H * Dh]);
  }

  /** softmax(q·kᵀ·scale + mask)·v with the module's scale and upcast rule, by `kind`. */
  attend(q: Tensor, k: Tensor, v: Tensor, call: AttentionCallOptions, kind: AttentionKind = "fused", options: Partial<AttentionOptions> = {}): Tensor {
    return scaledDotProductAttention(q, k, v, {
      ...options,
      scale: this.scale,
      upcast: this.upcast,
      mask: call.attentionMask ? expandKeyMask(call.attentionMask) : null,
      kind,
    }); // [B, H, Sq, Dv]
  }

  /** y [B, S, outDim] back to hidden's layout ([B, C, H, W] for 4-D input), + residual, / rescale factor. */
  finishOutput(y: Tensor, hidden: Tensor): Tensor {
    if (hidden.ndim === 4) {
      const [b, c, h, w] = hidden.shape as [number, number, number, number];
      y = y.transpose(1, 2).reshape([b, c, h, w]);
    }
    if (this.residualConnection) y = add(y, hidden);
    if (this.rescaleOutputFactor !== 1) y = div(y, this.rescaleOutputFactor);
    return y;
  }
}

/** Computes an Attention module's output from its weights; see the file header. */
export interface AttnProcessor {
  /** A short name for listings (e.g. "default", "tome"). */
  readonly name: string;
  /** hidden [B, S, C] or [B, C, H, W]; encoder [B, Sk, cross] or null -> hidden's shape. Runs inside tidy(). */
  process(attn: Attention, hidden: Tensor, encoder: Tensor | null, call: AttentionCallOptions): Tensor;
  /** Free what the processor owns (fused weights, caches); called when its module is disposed. */
  dispose?(): void;
}

/** diffusers' AttnProcessor2_0: projections, scaled dot-product attention by `kind`, output projection. */
export class AttnProcessorDefault implements AttnProcessor {
  readonly name = "default";
  constructor(
    readonly kind: AttentionKind = "fused",
    /** Extra options of the attention function (e.g. chunk sizes of "chunked"). */
    readonly options: Readonly<Partial<AttentionOptions>> = {},
  ) {
    getAttention(kind); // an unknown kind fails here, naming the registered ones
  }

  process(attn: Attention, hidden: Tensor, encoder: Tensor | null, call: AttentionCallOptions): Tensor {
    const x = attn.prepareInput(hidden); // [B, Sq, C]
    const ctx = encoder ?? x;
    const q = attn.splitHeads(attn.to_q.call(x)); // [B, H, Sq, Dh]
    const k = attn.splitHeads(attn.to_k.call(ctx)); // [B, H, Sk, Dh]
    const v = attn.splitHeads(attn.to_v.call(ctx)); // [B, H, Sk, Dh]
    const o = attn.attend(q, k, v, call, this.kind, this.options); // [B, H, Sq, Dh]
    return attn.finishOutput(attn.to_out.at(0).call(attn.mergeHeads(o)), hidden); // [B, Sq, outDim] -> hidden's layout
  }
}

const DEFAULT_PROCESSOR = new AttnProcessorDefault("fused");

/** A key mask [B, Sk] or [B, 1, Sk] becomes [B, 1, 1, Sk]; 4-D masks pass through. */
function expandKeyMask(mask: Tensor): Tensor {
  if (mask.ndim === 2) return mask.reshape([mask.shape[0]!, 1, 1, mask.shape[1]!]);
  if (mask.ndim === 3) return mask.unsqueeze(1);
  return mask;
}
