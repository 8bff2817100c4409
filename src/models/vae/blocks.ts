// The VAE's building blocks, with diffusers' parameter names (unets/resnet.py, unets/unet_2d_blocks.py):
// ResnetBlock2D without a time embedding (temb_channels=None, output_scale_factor 1, eps 1e-6 in the
// VAE), Downsample2D (stride-2 conv after an asymmetric zero pad (0,1,0,1), diffusers' padding=0 form),
// Upsample2D (nearest ×2 + 3×3 conv), DownEncoderBlock2D, UpDecoderBlock2D and the VAE's UNetMidBlock2D
// (resnet, single-head self-attention over all pixels, resnet). Forwards free each intermediate as soon
// as the next exists, so a block holds at most its input and two activations (512×512 decodes).

import { type Tensor, add, pad, tidy, upsampleNearest2x } from "../../tensor/index.ts";
import { Attention } from "../../nn/attention.ts";
import { Conv2d, GroupNorm } from "../../nn/layers.ts";
import { Module, ModuleList, type ModuleOptions } from "../../nn/module.ts";

/** GroupNorm epsilon of every norm in diffusers' VAE encoder and decoder. */
export const VAE_NORM_EPS = 1e-6;

/** Dispose `prev` (an intermediate) once `next` exists; the forward's own input `keep` is the caller's. */
export function advance(prev: Tensor, next: Tensor, keep?: Tensor): Tensor {
  if (prev !== next && prev !== keep) prev.dispose();
  return next;
}

export interface VaeBlockOptions extends ModuleOptions {
  groups: number;
  /** GroupNorm epsilon (the VAE uses 1e-6 everywhere). */
  eps: number;
}

/** diffusers ResnetBlock2D with temb_channels=None: x + conv2(silu(norm2(conv1(silu(norm1(x)))))). */
export class ResnetBlock2D extends Module<[Tensor], Tensor> {
  readonly norm1: GroupNorm;
  readonly conv1: Conv2d;
  readonly norm2: GroupNorm;
  readonly conv2: Conv2d;
  /** 1×1 conv on the skip path when the channel count changes. */
  readonly conv_shortcut: Conv2d | null;

  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    opts: VaeBlockOptions,
  ) {
    super(opts);
    const o = this.options;
    this.norm1 = this.child("norm1", new GroupNorm(opts.groups, inChannels, { ...o, eps: opts.eps }));
    this.conv1 = this.child("conv1", new Conv2d(inChannels, outChannels, 3, { ...o, padding: 1 }));
    this.norm2 = this.child("norm2", new GroupNorm(opts.groups, outChannels, { ...o, eps: opts.eps }));
    this.conv2 = this.child("conv2", new Conv2d(outChannels, outChannels, 3, { ...o, padding: 1 }));
    this.conv_shortcut = inChannels !== outChannels ? this.child("conv_shortcut", new Conv2d(inChannels, outChannels, 1, o)) : null;
  }

  /** [N, Cin, H, W] -> [N, Cout, H, W] */
  forward(x: Tensor): Tensor {
    return tidy(() => {
      let h = this.norm1.call(x, true); // GroupNorm + SiLU, fused
      h = advance(h, this.conv1.call(h), x);
      h = advance(h, this.norm2.call(h, true), x); // dropout is the identity at inference
      h = advance(h, this.conv2.call(h), x);
      const skip = this.conv_shortcut ? this.conv_shortcut.call(x) : x;
      const out = add(skip, h); // output_scale_factor is 1 in the VAE
      advance(h, out, x);
      advance(skip, out, x);
      return out;
    });
  }
}

/** diffusers Downsample2D(use_conv=True, padding=0): zero-pad right/bottom by 1, 3×3 conv with stride 2. */
export class Downsample2D extends Module<[Tensor], Tensor> {
  readonly conv: Conv2d;
  constructor(channels: number, opts: ModuleOptions = {}) {
    super(opts);
    this.conv = this.child("conv", new Conv2d(channels, channels, 3, { ...this.options, stride: 2, padding: 0 }));
  }

  /** [N, C, H, W] -> [N, C, floor((H+1-3)/2)+1, …] = [N, C, H/2, W/2] for even H, W */
  forward(x: Tensor): Tensor {
    return tidy(() => {
      const padded = pad(x, [0, 1, 0, 1]); // (left, right, top, bottom): [N, C, H+1, W+1]
      return advance(padded, this.conv.call(padded), x);
    });
  }
}

/** diffusers Upsample2D(use_conv=True): nearest-neighbour ×2, then a 3×3 conv. */
export class Upsample2D extends Module<[Tensor], Tensor> {
  readonly conv: Conv2d;
  constructor(channels: number, opts: ModuleOptions = {}) {
    super(opts);
    this.conv = this.child("conv", new Conv2d(channels, channels, 3, { ...this.options, padding: 1 }));
  }

  /** [N, C, H, W] -> [N, C, 2H, 2W] */
  forward(x: Tensor): Tensor {
    return tidy(() => {
      const up = upsampleNearest2x(x);
      return advance(up, this.conv.call(up), x);
    });
  }
}

/** diffusers DownEncoderBlock2D: `numLayers` resnets, then an optional Downsample2D. */
export class DownEncoderBlock2D extends Module<[Tensor], Tensor> {
  readonly resnets: ModuleList<ResnetBlock2D>;
  readonly downsamplers: ModuleList<Downsample2D> | null;

  constructor(inChannels: number, outChannels: number, numLayers: number, addDownsample: boolean, opts: VaeBlockOptions) {
    super(opts);
    const o = { ...opts, ...this.options };
    this.resnets = this.child(
      "resnets",
      new ModuleList(Array.from({ length: numLayers }, (_, i) => new ResnetBlock2D(i === 0 ? inChannels : outChannels, outChannels, o)), o),
    );
    this.downsamplers = addDownsample ? this.child("downsamplers", new ModuleList([new Downsample2D(outChannels, o)], o)) : null;
  }

  /** [N, Cin, H, W] -> [N, Cout, H/2, W/2] (H, W without a downsampler) */
  forward(x: Tensor): Tensor {
    return tidy(() => {
      let h = x;
      for (const r of this.resnets) h = advance(h, r.call(h), x);
      if (this.downsamplers) for (const d of this.downsamplers) h = advance(h, d.call(h), x);
      return h;
    });
  }
}

/** diffusers UpDecoderBlock2D: `numLayers` resnets, then an optional Upsample2D. */
export class UpDecoderBlock2D extends Module<[Tensor], Tensor> {
  readonly resnets: ModuleList<ResnetBlock2D>;
  readonly upsamplers: ModuleList<Upsample2D> | null;

  constructor(inChannels: number, outChannels: number, numLayers: number, addUpsample: boolean, opts: VaeBlockOptions) {
    super(opts);
    const o = { ...opts, ...this.options };
    this.resnets = this.child(
      "resnets",
      new ModuleList(Array.from({ length: numLayers }, (_, i) => new ResnetBlock2D(i === 0 ? inChannels : outChannels, outChannels, o)), o),
    );
    this.upsamplers = addUpsample ? this.child("upsamplers", new ModuleList([new Upsample2D(outChannels, o)], o)) : null;
  }

  /** [N, Cin, H, W] -> [N, Cout, 2H, 2W] (H, W without an upsampler) */
  forward(x: Tensor): Tensor {
    return tidy(() => {
      let h = x;
      for (const r of this.resnets) h = advance(h, r.call(h), x);
      if (this.upsamplers) for (const u of this.upsamplers) h = advance(h, u.call(h), x);
      return h;
    });
  }
}

/**
 * diffusers UNetMidBlock2D as the VAE builds it (temb_channels=None, num_layers=1): resnets.0,
 * attentions.0, resnets.1. The attention is diffusers' `Attention` with one head of width C
 * (attention_head_dim = C), biased q/k/v, a GroupNorm on its input, a residual connection and
 * upcast softmax — the former `AttentionBlock` (`_from_deprecated_attn_block`, whose old parameter
 * names AutoencoderKL renames on load). It attends over all H·W pixels, so it relies on the default
 * "fused" attention (the backend's online-softmax kernel, no [HW, HW] scores): a 64×64 latent is 4096 tokens; override with
 * setAttentionKind(). `addAttention: false` (mid_block_add_attention) leaves just the two resnets.
 */
export class UNetMidBlock2D extends Module<[Tensor], Tensor> {
  /** Registered before `resnets`, as in diffusers (state-dict order). */
  readonly attentions: ModuleList<Attention> | null;
  readonly resnets: ModuleList<ResnetBlock2D>;

  constructor(channels: number, addAttention: boolean, opts: VaeBlockOptions) {
    super(opts);
    const o = { ...opts, ...this.options };
    this.attentions = addAttention
      ? this.child(
          "attentions",
          new ModuleList(
            [
              new Attention(channels, {
                ...this.options,
                heads: 1,
                dimHead: channels,
                bias: true,
                normNumGroups: opts.groups,
                eps: opts.eps,
                residualConnection: true,
                rescaleOutputFactor: 1,
                upcastSoftmax: true,
              }),
            ],
            o,
          ),
        )
      : null;
    this.resnets = this.child("resnets", new ModuleList([new ResnetBlock2D(channels, channels, o), new ResnetBlock2D(channels, channels, o)], o));
  }

  /** [N, C, H, W] -> [N, C, H, W] */
  forward(x: Tensor): Tensor {
    return tidy(() => {
      let h = this.resnets.at(0).call(x);
      if (this.attentions) h = advance(h, this.attentions.at(0).call(h), x); // residual inside: x + attn(norm(x))
      return advance(h, this.resnets.at(1).call(h), x);
    });
  }
}
