// The VAE Encoder (diffusers autoencoders/vae.py `Encoder`, double_z=True): conv_in, one
// DownEncoderBlock2D per level (a stride-2 downsampler on all but the last), the mid block
// (resnet, attention, resnet), GroupNorm + SiLU, conv_out to 2·latent_channels (mean and logvar).

import { type Tensor, tidy } from "../../tensor/index.ts";
import { Conv2d, GroupNorm } from "../../nn/layers.ts";
import { Module, ModuleList, type ModuleOptions } from "../../nn/module.ts";
import { DownEncoderBlock2D, UNetMidBlock2D, VAE_NORM_EPS, advance } from "./blocks.ts";
import type { AutoencoderKLConfig } from "./config.ts";

export class Encoder extends Module<[Tensor], Tensor> {
  readonly conv_in: Conv2d;
  readonly down_blocks: ModuleList<DownEncoderBlock2D>;
  readonly mid_block: UNetMidBlock2D;
  readonly conv_norm_out: GroupNorm;
  readonly conv_out: Conv2d;

  constructor(cfg: AutoencoderKLConfig, opts: ModuleOptions = {}) {
    super(opts);
    const o = this.options;
    const chans = cfg.block_out_channels;
    const top = chans[chans.length - 1]!;
    const blockOpts = { ...o, groups: cfg.norm_num_groups, eps: VAE_NORM_EPS };
    this.conv_in = this.child("conv_in", new Conv2d(cfg.in_channels, chans[0]!, 3, { ...o, padding: 1 }));
    this.down_blocks = this.child(
      "down_blocks",
      new ModuleList(
        chans.map(
          (out, i) => new DownEncoderBlock2D(i === 0 ? chans[0]! : chans[i - 1]!, out, cfg.layers_per_block, i < chans.length - 1, blockOpts),
        ),
        o,
      ),
    );
    this.mid_block = this.child("mid_block", new UNetMidBlock2D(top, cfg.mid_block_add_attention, blockOpts));
    this.conv_norm_out = this.child("conv_norm_out", new GroupNorm(cfg.norm_num_groups, top, { ...o, eps: VAE_NORM_EPS }));
    this.conv_out = this.child("conv_out", new Conv2d(top, 2 * cfg.latent_channels, 3, { ...o, padding: 1 }));
  }

  /** image [N, in_channels, H, W] -> moments [N, 2·latent_channels, H/f, W/f], f = 2^(levels-1) */
  forward(x: Tensor): Tensor {
    return tidy(() => {
      let h = this.conv_in.call(x); // [N, C0, H, W]
      for (const block of this.down_blocks) h = advance(h, block.call(h));
      h = advance(h, this.mid_block.call(h)); // [N, Ctop, H/f, W/f]
      h = advance(h, this.conv_norm_out.call(h, true)); // conv_norm_out + conv_act (SiLU), fused
      return advance(h, this.conv_out.call(h));
    });
  }
}
