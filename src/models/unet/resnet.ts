// The UNet's convolutional pieces, as diffusers' resnet.py / downsampling.py / upsampling.py:
// ResnetBlock2D (GroupNorm → act → conv, + time-embedding projection fused into the next GroupNorm, → act → conv,
// 1×1 conv_shortcut when the width changes, output_scale_factor), Downsample2D (3×3 conv, stride 2,
// named `conv`) and Upsample2D (nearest ×2, or to an explicit size when the skip connection is odd,
// then a 3×3 conv named `conv`).

import { type Tensor, add, div, interpolateNearest, pad, silu, tidy, upsampleNearest2x } from "../../tensor/index.ts";
import { Conv2d, GroupNorm, Linear, activation } from "../../nn/layers.ts";
import { Identity, Module, type ModuleOptions } from "../../nn/module.ts";

export interface ResnetBlock2DOptions extends ModuleOptions {
  /** Output width (default inChannels). */
  outChannels?: number;
  /** Width of the time embedding; null = no time_emb_proj. */
  tembChannels?: number | null;
  groups?: number;
  /** GroupNorm groups of norm2 (default groups). */
  groupsOut?: number;
  eps?: number;
  /** diffusers non_linearity (default "swish" = silu). */
  actFn?: string;
  outputScaleFactor?: number;
}

/** GroupNorm of x (+ a per-channel addend, fused) followed by the activation, fused when it is SiLU. */
function normAct(norm: GroupNorm, x: Tensor, act: ((x: Tensor) => Tensor) | null, add: Tensor | null = null): Tensor {
  if (!act) return norm.call(x, true, add); // fused SiLU
  const n = norm.call(x, false, add);
  try {
    return act(n);
  } finally {
    n.dispose();
  }
}

/** diffusers `ResnetBlock2D` (time_embedding_norm "default", pre-norm, no up/down sampling). */
export class ResnetBlock2D extends Module<[Tensor, Tensor | null], Tensor> {
  readonly norm1: GroupNorm;
  readonly conv1: Conv2d;
  readonly time_emb_proj: Linear | null;
  readonly norm2: GroupNorm;
  readonly dropout: Identity;
  readonly conv2: Conv2d;
  readonly conv_shortcut: Conv2d | null;
  readonly outChannels: number;
  readonly outputScaleFactor: number;
  /** null = SiLU (fused into the GroupNorm kernel). */
  readonly #act: ((x: Tensor) => Tensor) | null;

  constructor(
    readonly inChannels: number,
    opts: ResnetBlock2DOptions = {},
  ) {
    super(opts);
    const o = this.options;
    const out = (this.outChannels = opts.outChannels ?? inChannels);
    const groups = opts.groups ?? 32;
    const eps = opts.eps ?? 1e-6;
    const act = opts.actFn ?? "swish";
    this.#act = act === "silu" || act === "swish" ? null : activation(act);
    this.outputScaleFactor = opts.outputScaleFactor ?? 1;
    this.norm1 = this.child("norm1", new GroupNorm(groups, inChannels, { ...o, eps }));
    this.conv1 = this.child("conv1", new Conv2d(inChannels, out, 3, { ...o, padding: 1 }));
    const temb = opts.tembChannels === undefined ? 512 : opts.tembChannels;
    this.time_emb_proj = temb !== null ? this.child("time_emb_proj", new Linear(temb, out, o)) : null;
    this.norm2 = this.child("norm2", new GroupNorm(opts.groupsOut ?? groups, out, { ...o, eps }));
    this.dropout = this.child("dropout", new Identity());
    this.conv2 = this.child("conv2", new Conv2d(out, out, 3, { ...o, padding: 1 }));
    this.conv_shortcut = inChannels !== out ? this.child("conv_shortcut", new Conv2d(inChannels, out, 1, o)) : null;
  }

  /** x [B, Cin, H, W], temb [B, T] -> [B, Cout, H, W]. */
  forward(x: Tensor, temb: Tensor | null): Tensor {
    return tidy(() => {
      const act = this.#act;
      let h = normAct(this.norm1, x, act);
      h = swap(h, this.conv1.call(h)); // [B, Cout, H, W]
      // norm2(h + temb[:, :, None, None]): the time embedding is added inside the GroupNorm
      const t = this.time_emb_proj && temb ? this.time_emb_proj.call(act ? act(temb) : silu(temb)) : null; // [B, Cout]
      h = swap(h, normAct(this.norm2, h, act, t));
      h = swap(h, this.conv2.call(this.dropout.call(h)));
      const shortcut = this.conv_shortcut ? this.conv_shortcut.call(x) : x;
      let out = add(shortcut, h);
      h.dispose();
      if (this.outputScaleFactor !== 1) out = swap(out, div(out, this.outputScaleFactor));
      return out;
    });
  }
}

/** Dispose `old` and return `next` (keeps at most two activations alive in a chain of ops). */
export function swap(old: Tensor, next: Tensor): Tensor {
  if (old !== next) old.dispose();
  return next;
}

/** diffusers `Downsample2D` with use_conv: 3×3 conv, stride 2; padding 0 pads right/bottom by one first. */
export class Downsample2D extends Module<[Tensor], Tensor> {
  readonly conv: Conv2d;

  constructor(
    readonly channels: number,
    readonly outChannels: number = channels,
    readonly padding = 1,
    opts: ModuleOptions = {},
  ) {
    super(opts);
    this.conv = this.child("conv", new Conv2d(channels, outChannels, 3, { ...this.options, stride: 2, padding }));
  }

  /** [B, C, H, W] -> [B, C', ⌊(H + 2p − 3)/2⌋ + 1, …]. */
  forward(x: Tensor): Tensor {
    if (this.padding !== 0) return this.conv.call(x);
    return tidy(() => this.conv.call(pad(x, [0, 1, 0, 1])));
  }
}

/** diffusers `Upsample2D` with use_conv: nearest-neighbour ×2 (or to `outputSize`), then a 3×3 conv. */
export class Upsample2D extends Module<[Tensor, ([number, number] | null)?], Tensor> {
  readonly conv: Conv2d;

  constructor(
    readonly channels: number,
    readonly outChannels: number = channels,
    opts: ModuleOptions = {},
  ) {
    super(opts);
    this.conv = this.child("conv", new Conv2d(channels, outChannels, 3, { ...this.options, padding: 1 }));
  }

  /** [B, C, H, W] -> [B, C', 2H, 2W] (or [B, C', ...outputSize]). */
  forward(x: Tensor, outputSize: [number, number] | null = null): Tensor {
    return tidy(() => {
      const up = outputSize ? interpolateNearest(x, { size: outputSize }) : upsampleNearest2x(x);
      return this.conv.call(up);
    });
  }
}
