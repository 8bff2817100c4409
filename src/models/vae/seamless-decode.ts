// Seamless tiled VAE decode (vae.enableTiling({ seamless: true })): the decoder is run layer by layer
// over tiles, with each activation kept whole on the host between layers, so the result equals the
// untiled decode up to float32 rounding and has no seams (unlike diffusers' blended tiles, which each
// see only their own neighbourhood and their own GroupNorm statistics). It walks the decoder's modules
// as the model defines them — post_quant_conv, conv_in, mid_block (resnet, attention, resnet), each
// up block's resnets and upsampler, conv_norm_out + SiLU, conv_out — and computes each with the
// layers' own weights through the steps of seamless-steps.ts; the model's forward code is not used
// or changed. The compute device holds a few tiles' activations (a tile's side is tileLatentMinSize
// latents, doubling with each upsample) plus, during the mid-block attention, its keys and values.

import type { Device, Tensor } from "../../tensor/index.ts";
import type { Conv2d } from "../../nn/layers.ts";
import type { ResnetBlock2D } from "./blocks.ts";
import type { Decoder } from "./decoder.ts";
import { DeviceMeter, type HostActivation, type SeamlessContext, attentionStep, convStep, disposeActivation } from "./seamless-steps.ts";

/** The parts of an AutoencoderKL the decode reads. */
export interface SeamlessDecodeModel {
  decoder: Decoder;
  post_quant_conv: Conv2d | null;
  config: { norm_num_groups: number };
}

export interface SeamlessDecodeOptions {
  /** Output tile side at the latent resolution (vae.tiling.tileLatentMinSize). */
  tileLatent: number;
  /** Where activations live between layers (default "cpu", or the compute device when that is "cpu" or "meta"). */
  host?: Device;
}

export interface SeamlessDecodeResult {
  /** [N, out_channels, h·f, w·f] on the model's device. */
  image: Tensor;
  /** The highest device bytes of any tile step (plus the attention's keys and values while held). */
  devicePeak: number;
}

/** One ResnetBlock2D: x + conv2(silu(norm2(conv1(silu(norm1(x)))))), the skip through conv_shortcut. */
function resnet(ctx: SeamlessContext, x: HostActivation, r: ResnetBlock2D): HostActivation {
  const h = convStep(ctx, x, r.conv1, { norm: { gn: r.norm1, silu: true }, withStats: true });
  try {
    return convStep(ctx, h, r.conv2, { norm: { gn: r.norm2, silu: true }, residual: { src: x.t, shortcut: r.conv_shortcut }, withStats: true });
  } finally {
    disposeActivation(h);
  }
}

/** Decode latents z [N, L, h, w] (already unscaled) seamlessly; see the file header. */
export function seamlessDecode(vae: SeamlessDecodeModel, z: Tensor, opts: SeamlessDecodeOptions): SeamlessDecodeResult {
  const device = vae.decoder.conv_in.weight.value.device;
  const host = opts.host ?? (device === "cuda" ? "cpu" : device);
  const ctx: SeamlessContext = {
    device, host, tileLatent: opts.tileLatent, latentHeight: z.shape[2]!, groups: vae.config.norm_num_groups, meter: new DeviceMeter(device),
  };
  const d = vae.decoder;
  let x: HostActivation = { t: z.to(host), stats: null };
  /** Replace the current activation by `next` (the input z's host copy included). */
  const step = (next: HostActivation) => {
    disposeActivation(x);
    x = next;
  };
  try {
    if (vae.post_quant_conv) step(convStep(ctx, x, vae.post_quant_conv, { withStats: false }));
    step(convStep(ctx, x, d.conv_in, { withStats: true }));
    const mid = d.mid_block;
    step(resnet(ctx, x, mid.resnets.at(0)));
    if (mid.attentions) step(attentionStep(ctx, x, mid.attentions.at(0)));
    step(resnet(ctx, x, mid.resnets.at(1)));
    for (const block of d.up_blocks) {
      for (const r of block.resnets) step(resnet(ctx, x, r));
      if (block.upsamplers) for (const u of block.upsamplers) step(convStep(ctx, x, u.conv, { upsample: true, withStats: true }));
    }
    step(convStep(ctx, x, d.conv_out, { norm: { gn: d.conv_norm_out, silu: true }, withStats: false }));
    const image = x.t.to(device);
    return { image, devicePeak: ctx.meter.peak };
  } finally {
    disposeActivation(x);
  }
}
