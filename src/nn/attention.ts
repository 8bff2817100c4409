// diffusers' `Attention` module (attention_processor.py, AttnProcessor2_0 behaviour): to_q / to_k /
// to_v projections (bias off by default, as diffusers' `bias=False`), to_out.0 output Linear (bias
// on, `out_bias=True`), multi-head split, scaled dot-product attention through the dispatcher, and
// the options the UNet and VAE use: cross-attention (`cross_attention_dim`), `upcast_attention` /
// `upcast_softmax`, a GroupNorm on the input (`norm_num_groups`, VAE), 4-D [B, C, H, W] inputs,
// `residual_connection` and `rescale_output_factor`. Also setAttentionKind(root, kind), which sets
// the attention implementation of every Attention under a module (per-module override).

import { type Tensor, add, div, tidy } from "../tensor/index.ts";
import { type AttentionKind, type AttentionOptions, scaledDotProductAttention } from "./attention-dispatch.ts";
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
  /** Attention implementation for this module; null = the process default. */
  attentionKind: AttentionKind | null = null;
  /** Extra options passed to the attention function (e.g. chunk sizes). */
  attentionOptions: Partial<AttentionOptions> = {};

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

  /** Choose the attention implementation for this module (null = process default). */
  setAttentionKind(kind: AttentionKind | null, options: Partial<AttentionOptions> = {}): void {
    this.attentionKind = kind;
    this.attentionOptions = options;
  }

  /**
   * hidden [B, S, C] or [B, C, H, W]; encoder [B, Sk, cross] (null: self-attention) -> same shape as hidden.
   */
  forward(hidden: Tensor, encoder: Tensor | null = null, call: AttentionCallOptions = {}): Tensor {
    return tidy(() => {
      const residual = hidden;
      const spatial = hidden.ndim === 4 ? (hidden.shape as [number, number, number, number]) : null;
      let x = hidden;
      if (spatial) {
        const [b, c, h, w] = spatial;
        x = x.reshape([b, c, h * w]).transpose(1, 2); // [B, HW, C]
      }
      if (this.group_norm) x = this.group_norm.call(x.transpose(1, 2)).transpose(1, 2); // norm over channels
      const ctx = encoder ?? x;
      const q = this.splitHeads(this.to_q.call(x)); // [B, H, Sq, Dh]
      const k = this.splitHeads(this.to_k.call(ctx)); // [B, H, Sk, Dh]
      const v = this.splitHeads(this.to_v.call(ctx)); // [B, H, Sk, Dh]
      const o = scaledDotProductAttention(q, k, v, {
        ...this.attentionOptions,
        scale: this.scale,
        upcast: this.upcast,
        mask: call.attentionMask ? expandKeyMask(call.attentionMask) : null,
        ...(this.attentionKind ? { kind: this.attentionKind } : {}),
      }); // [B, H, Sq, Dh]
      const [B, H, Sq, Dh] = o.shape as [number, number, number, number];
      let y = this.to_out.at(0).call(o.transpose(1, 2).reshape([B, Sq, H * Dh])); // [B, Sq, outDim]
      if (spatial) {
        const [b, c, h, w] = spatial;
        y = y.transpose(1, 2).reshape([b, c, h, w]);
      }
      if (this.residualConnection) y = add(y, residual);
      if (this.rescaleOutputFactor !== 1) y = div(y, this.rescaleOutputFactor);
      return y;
    });
  }

  /** [B, S, H·Dh] -> [B, H, S, Dh] (a strided view; the matmuls read it as it lies). */
  private splitHeads(t: Tensor): Tensor {
    const [B, S] = t.shape as [number, number];
    return t.reshape([B, S, this.heads, -1]).transpose(1, 2);
  }
}

/** A key mask [B, Sk] or [B, 1, Sk] becomes [B, 1, 1, Sk]; 4-D masks pass through. */
function expandKeyMask(mask: Tensor): Tensor {
  if (mask.ndim === 2) return mask.reshape([mask.shape[0]!, 1, 1, mask.shape[1]!]);
  if (mask.ndim === 3) return mask.unsqueeze(1);
  return mask;
}

/** Set the attention implementation of every Attention module under `root` (null = default). */
export function setAttentionKind(root: Module, kind: AttentionKind | null, options: Partial<AttentionOptions> = {}): number {
  let n = 0;
  for (const [, m] of root.namedModules())
    if (m instanceof Attention) {
      m.setAttentionKind(kind, options);
      n++;
    }
  return n;
}
