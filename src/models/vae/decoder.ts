// The VAE Decoder (diffusers autoencoders/vae.py `Decoder`, norm_type "group"): conv_in, the mid
// block (resnet, attention, resnet), one UpDecoderBlock2D per level from the coarsest
// (layers_per_block + 1 resnets, a nearest ×2 upsampler on all but the last), GroupNorm + SiLU,
// conv_out to out_channels.

import { type Tensor, tidy } from "../../tensor/index.ts";
import { Conv2d, GroupNorm } from "../../nn/layers.ts";
import { Module, ModuleList, type ModuleOptions } from "../../nn/module.ts";
import { UNetMidBlock2D, UpDecoderBlock2D, VAE_NORM_EPS, advance } from "./blocks.ts";
import type { AutoencoderKLConfig } from "./config.ts";

export class Decoder extends Module<[Tensor], Tensor> {
  readonly conv_in: Conv2d;
  readonly up_blocks: ModuleList<UpDecoderBlock2D>;
  readonly mid_block: UNetMidBlock2D;
  readonly conv_norm_out: GroupNorm;
  readonly conv_out: Conv2d;

  constructor(cfg: AutoencoderKLConfig, opts: ModuleOptions = {}) {
    super(opts);
    const o = this.options;
    const rev = [...cfg.block_out_channels].reverse(); // coarsest first
    const top = rev[0]!;
    const blockOpts = { ...o, groups: cfg.norm_num_groups, eps: VAE_NORM_EPS };
    this.conv_in = this.child("conv_in", new Conv2d(cfg.latent_channels, top, 3, { ...o, padding: 1 }));
    // diffusers registers up_blocks before mid_block: keep its state-dict order
    this.up_blocks = this.child("up_blocks", new ModuleList<UpDecoderBlock2D>([], o));
    this.mid_block = this.child("mid_block", new UNetMidBlock2D(top, cfg.mid_block_add_attention, blockOpts));
    rev.forEach((out, i) =>
      this.up_blocks.push(new UpDecoderBlock2D(i === 0 ? top : rev[i - 1]!, out, cfg.layers_per_block + 1, i < rev.length - 1, blockOpts)),
    );
    const bottom = cfg.block_out_channels[0]!;
    this.conv_norm_out = this.child("conv_norm_out", new GroupNorm(cfg.norm_num_groups, bottom, { ...o, eps: VAE_NORM_EPS }));
    this.conv_out = this.child("conv_out", new Conv2d(bottom, cfg.out_channels, 3, { ...o, padding: 1 }));
  }

  /** latent [N, latent_channels, h, w] -> image [N, out_channels, h·f, w·f], f = 2^(levels-1) */
  forward(z: Tensor): Tensor {
    return tidy(() => {
      let h = this.conv_in.call(z); // [N, Ctop, h, w]
      h = advance(h, this.mid_block.call(h));
      for (const block of this.up_blocks) h = advance(h, block.call(h));
      h = advance(h, this.conv_norm_out.call(h, true)); // conv_norm_out + conv_act (SiLU), fused
      return advance(h, this.conv_out.call(h)); // [N, out_channels, H, W]
    });
  }
}
