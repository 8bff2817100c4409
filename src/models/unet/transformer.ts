// The UNet's attention pieces, as diffusers' attention.py / transformers/transformer_2d.py:
// BasicTransformerBlock (layer_norm type: norm1 → attn1 (self, or cross when only_cross_attention),
// norm2 → attn2 (cross), norm3 → GEGLU feed-forward, each residual) and Transformer2DModel for
// continuous inputs (GroupNorm eps 1e-6 → proj_in (1×1 conv, or Linear with use_linear_projection)
// → blocks over the H·W tokens → proj_out → + residual).

import { type Tensor, add, tidy, toMemoryFormat } from "../../tensor/index.ts";
import { Attention } from "../../nn/attention.ts";
import { FeedForward } from "../../nn/feed-forward.ts";
import { Conv2d, GroupNorm, LayerNorm, Linear } from "../../nn/layers.ts";
import { Module, ModuleList, type ModuleOptions } from "../../nn/module.ts";
import { swap } from "./resnet.ts";

export interface TransformerBlockOptions extends ModuleOptions {
  /** Width of encoder_hidden_states; attn2 exists when given. */
  crossAttentionDim?: number | null;
  onlyCrossAttention?: boolean;
  upcastAttention?: boolean;
  normEps?: number;
}

/** Per-call inputs of the attention stages. */
export interface CrossAttentionInputs {
  /** [B, S, D] text states. */
  encoderHiddenStates: Tensor | null;
  /** Additive mask on the text keys, [B, 1, S] (0 keep, −10000 drop), for attn2. */
  encoderAttentionMask?: Tensor | null;
}

/** diffusers `BasicTransformerBlock` with norm_type "layer_norm", GEGLU feed-forward, no attention bias. */
export class BasicTransformerBlock extends Module<[Tensor, CrossAttentionInputs], Tensor> {
  readonly norm1: LayerNorm;
  readonly attn1: Attention;
  readonly norm2: LayerNorm | null;
  readonly attn2: Attention | null;
  readonly norm3: LayerNorm;
  readonly ff: FeedForward;
  readonly onlyCrossAttention: boolean;

  constructor(dim: number, heads: number, headDim: number, opts: TransformerBlockOptions = {}) {
    super(opts);
    const o = this.options;
    const eps = opts.normEps ?? 1e-5;
    const cross = opts.crossAttentionDim ?? null;
    this.onlyCrossAttention = opts.onlyCrossAttention ?? false;
    const attn = { ...o, heads, dimHead: headDim, bias: false, upcastAttention: opts.upcastAttention ?? false };
    this.norm1 = this.child("norm1", new LayerNorm(dim, { ...o, eps }));
    this.attn1 = this.child("attn1", new Attention(dim, { ...attn, crossAttentionDim: this.onlyCrossAttention ? cross : null }));
    this.norm2 = cross !== null ? this.child("norm2", new LayerNorm(dim, { ...o, eps })) : null;
    this.attn2 = cross !== null ? this.child("attn2", new Attention(dim, { ...attn, crossAttentionDim: cross })) : null;
    this.norm3 = this.child("norm3", new LayerNorm(dim, { ...o, eps }));
    this.ff = this.child("ff", new FeedForward(dim, { ...o, activationFn: "geglu" }));
  }

  /** x [B, N, dim] -> [B, N, dim]. */
  forward(x: Tensor, ctx: CrossAttentionInputs): Tensor {
    return tidy(() => {
      let n = this.norm1.call(x);
      // diffusers gives attn1 the UNet's attention_mask (unsupported here), never the encoder mask
      const a1 = this.attn1.call(n, this.onlyCrossAttention ? ctx.encoderHiddenStates : null);
      n.dispose();
      let h = add(a1, x);
      a1.dispose();
      if (this.attn2 && this.norm2) {
        n = this.norm2.call(h);
        const a2 = this.attn2.call(n, ctx.encoderHiddenStates, { attentionMask: ctx.encoderAttentionMask ?? null });
        n.dispose();
        h = swap(h, add(a2, h));
        a2.dispose();
      }
      n = this.norm3.call(h);
      const f = this.ff.call(n);
      n.dispose();
      h = swap(h, add(f, h));
      f.dispose();
      return h;
    });
  }
}

export interface Transformer2DOptions extends TransformerBlockOptions {
  numLayers?: number;
  normNumGroups?: number;
  useLinearProjection?: boolean;
}

/** diffusers `Transformer2DModel` for continuous [B, C, H, W] inputs (the UNet's `attentions.N`). */
export class Transformer2DModel extends Module<[Tensor, CrossAttentionInputs], Tensor> {
  readonly norm: GroupNorm;
  readonly proj_in: Conv2d | Linear;
  readonly transformer_blocks: ModuleList<BasicTransformerBlock>;
  readonly proj_out: Conv2d | Linear;
  readonly innerDim: number;
  readonly useLinearProjection: boolean;

  constructor(
    readonly inChannels: number,
    heads: number,
    headDim: number,
    opts: Transformer2DOptions = {},
  ) {
    super(opts);
    const o = this.options;
    const inner = (this.innerDim = heads * headDim);
    this.useLinearProjection = opts.useLinearProjection ?? false;
    this.norm = this.child("norm", new GroupNorm(opts.normNumGroups ?? 32, inChannels, { ...o, eps: 1e-6 }));
    this.proj_in = this.child("proj_in", this.useLinearProjection ? new Linear(inChannels, inner, o) : new Conv2d(inChannels, inner, 1, o));
    const blocks = Array.from({ length: opts.numLayers ?? 1 }, () => new BasicTransformerBlock(inner, heads, headDim, { ...opts, ...o }));
    this.transformer_blocks = this.child("transformer_blocks", new ModuleList(blocks, o));
    this.proj_out = this.child("proj_out", this.useLinearProjection ? new Linear(inner, inChannels, o) : new Conv2d(inner, inChannels, 1, o));
  }

  /** x [B, C, H, W] -> [B, C, H, W]. */
  forward(x: Tensor, ctx: CrossAttentionInputs): Tensor {
    const [B, C, H, W] = x.shape as [number, number, number, number];
    const inner = this.innerDim;
    return tidy(() => {
      let h = this.norm.call(x);
      if (this.useLinearProjection) {
        h = swap(h, h.permute(0, 2, 3, 1).reshape([B, H * W, C])); // [B, HW, C]
        h = swap(h, this.proj_in.call(h)); // [B, HW, inner]
      } else {
        h = swap(h, this.proj_in.call(h)); // [B, inner, H, W]
        h = swap(h, h.permute(0, 2, 3, 1).reshape([B, H * W, inner])); // [B, HW, inner]
      }
      for (const block of this.transformer_blocks) h = swap(h, block.call(h, ctx));
      if (this.useLinearProjection) {
        h = swap(h, this.proj_out.call(h)); // [B, HW, C]
        h = swap(h, asFormatOf(h.reshape([B, H, W, C]).permute(0, 3, 1, 2), x)); // [B, C, H, W]
      } else {
        h = swap(h, asFormatOf(h.reshape([B, H, W, inner]).permute(0, 3, 1, 2), x)); // [B, inner, H, W]
        h = swap(h, this.proj_out.call(h)); // [B, C, H, W]
      }
      return swap(h, add(h, x));
    });
  }
}

/**
 * The tokens' [B, C, H, W] view in x's memory format: a copy to row-major for a row-major x, the view itself for a
 * channels-last x ([B, H·W, C] tokens already are NHWC storage). Disposes the view when it copies.
 */
function asFormatOf(v: Tensor, x: Tensor): Tensor {
  try {
    return toMemoryFormat(v, x.memoryFormat);
  } finally {
    v.dispose();
  }
}
