// The UNet's down, mid and up blocks, as diffusers' unet_2d_blocks.py names and runs them:
// CrossAttnDownBlock2D / DownBlock2D (resnets.N [+ attentions.N], downsamplers.0; every layer's output
// is a skip connection), UNetMidBlock2DCrossAttn (resnets.0, then attentions.N + resnets.N+1), and
// CrossAttnUpBlock2D / UpBlock2D (each resnet first concatenates [hidden, skip] along channels, taking
// skips from the end; upsamplers.0 optionally to an explicit size).

import { type Tensor, cat, tidy } from "../../tensor/index.ts";
import { Module, ModuleList, type ModuleOptions } from "../../nn/module.ts";
import { layerDepth } from "./config.ts";
import { Downsample2D, ResnetBlock2D, Upsample2D, swap } from "./resnet.ts";
import { type CrossAttentionInputs, Transformer2DModel } from "./transformer.ts";

/** What every block needs to build its resnets and transformers. */
export interface BlockOptions extends ModuleOptions {
  numLayers: number;
  tembChannels: number;
  resnetEps: number;
  resnetGroups: number;
  resnetActFn: string;
  /** Cross-attention blocks only. */
  attention?: {
    heads: number;
    crossAttentionDim: number;
    /** Transformer depth: one value or one per resnet layer. */
    transformerLayers: number | number[];
    useLinearProjection: boolean;
    onlyCrossAttention: boolean;
    upcastAttention: boolean;
  };
}

/** Outputs of a down block: the hidden state and the skip connections it contributes, in order. */
export interface DownBlockOutput {
  hidden: Tensor;
  skips: Tensor[];
}

export interface DownBlock extends Module<[Tensor, Tensor, CrossAttentionInputs], DownBlockOutput> {
  readonly resnets: ModuleList<ResnetBlock2D>;
}

export interface UpBlock extends Module<[Tensor, Tensor[], Tensor, CrossAttentionInputs, ([number, number] | null)?], Tensor> {
  readonly resnets: ModuleList<ResnetBlock2D>;
}

function resnet(inC: number, outC: number, o: BlockOptions, outputScaleFactor = 1): ResnetBlock2D {
  return new ResnetBlock2D(inC, {
    device: o.device,
    dtype: o.dtype,
    outChannels: outC,
    tembChannels: o.tembChannels,
    eps: o.resnetEps,
    groups: o.resnetGroups,
    actFn: o.resnetActFn,
    outputScaleFactor,
  });
}

function transformer(channels: number, layer: number, o: BlockOptions, where: string): Transformer2DModel {
  const a = o.attention;
  if (!a) throw new Error(`${where}: cross-attention options are required`);
  return new Transformer2DModel(channels, a.heads, Math.floor(channels / a.heads), {
    device: o.device,
    dtype: o.dtype,
    numLayers: layerDepth(a.transformerLayers, layer, where),
    crossAttentionDim: a.crossAttentionDim,
    normNumGroups: o.resnetGroups,
    useLinearProjection: a.useLinearProjection,
    onlyCrossAttention: a.onlyCrossAttention,
    upcastAttention: a.upcastAttention,
  });
}

function placement(o: BlockOptions): ModuleOptions {
  return { device: o.device, dtype: o.dtype };
}

/** diffusers `DownBlock2D` (attention = false) and `CrossAttnDownBlock2D` (attention = true). */
class DownBlockBase extends Module<[Tensor, Tensor, CrossAttentionInputs], DownBlockOutput> implements DownBlock {
  readonly resnets: ModuleList<ResnetBlock2D>;
  readonly attentions: ModuleList<Transformer2DModel> | null;
  readonly downsamplers: ModuleList<Downsample2D> | null;

  constructor(inChannels: number, outChannels: number, addDownsample: boolean, downsamplePadding: number, withAttention: boolean, o: BlockOptions) {
    super(placement(o));
    const p = this.options;
    const n = o.numLayers;
    // registered as diffusers does (attentions before resnets), so namedParameters() follows the state dict
    this.attentions = withAttention
      ? this.child("attentions", new ModuleList(Array.from({ length: n }, (_, i) => transformer(outChannels, i, o, this.constructor.name)), p))
      : null;
    this.resnets = this.child("resnets", new ModuleList(Array.from({ length: n }, (_, i) => resnet(i === 0 ? inChannels : outChannels, outChannels, o)), p));
    this.downsamplers = addDownsample
      ? this.child("downsamplers", new ModuleList([new Downsample2D(outChannels, outChannels, downsamplePadding, p)], p))
      : null;
  }

  /** x [B, Cin, H, W] -> hidden [B, Cout, H', W'] and one skip per resnet (+ the downsampled state). */
  forward(x: Tensor, temb: Tensor, ctx: CrossAttentionInputs): DownBlockOutput {
    return tidy(() => {
      const skips: Tensor[] = [];
      let h = x;
      for (let i = 0; i < this.resnets.length; i++) {
        h = this.resnets.at(i).call(h, temb);
        if (this.attentions) h = swap(h, this.attentions.at(i).call(h, ctx));
        skips.push(h);
      }
      if (this.downsamplers) {
        for (const d of this.downsamplers) h = d.call(h);
        skips.push(h);
      }
      return { hidden: h, skips };
    });
  }
}

export class DownBlock2D extends DownBlockBase {
  constructor(inChannels: number, outChannels: number, addDownsample: boolean, downsamplePadding: number, o: BlockOptions) {
    super(inChannels, outChannels, addDownsample, downsamplePadding, false, o);
  }
}

export class CrossAttnDownBlock2D extends DownBlockBase {
  constructor(inChannels: number, outChannels: number, addDownsample: boolean, downsamplePadding: number, o: BlockOptions) {
    super(inChannels, outChannels, addDownsample, downsamplePadding, true, o);
  }
}

/** diffusers `UNetMidBlock2DCrossAttn`: resnets.0, then (attentions.i, resnets.i+1) pairs. */
export class UNetMidBlock2DCrossAttn extends Module<[Tensor, Tensor, CrossAttentionInputs], Tensor> {
  readonly attentions: ModuleList<Transformer2DModel>;
  readonly resnets: ModuleList<ResnetBlock2D>;

  constructor(channels: number, outputScaleFactor: number, o: BlockOptions) {
    super(placement(o));
    const p = this.options;
    const n = o.numLayers;
    // diffusers registers attentions before resnets
    this.attentions = this.child("attentions", new ModuleList(Array.from({ length: n }, (_, i) => transformer(channels, i, o, "UNetMidBlock2DCrossAttn")), p));
    this.resnets = this.child("resnets", new ModuleList(Array.from({ length: n + 1 }, () => resnet(channels, channels, o, outputScaleFactor)), p));
  }

  /** [B, C, H, W] -> [B, C, H, W]. */
  forward(x: Tensor, temb: Tensor, ctx: CrossAttentionInputs): Tensor {
    return tidy(() => {
      let h = this.resnets.at(0).call(x, temb);
      for (let i = 0; i < this.attentions.length; i++) {
        h = swap(h, this.attentions.at(i).call(h, ctx));
        h = swap(h, this.resnets.at(i + 1).call(h, temb));
      }
      return h;
    });
  }
}

/** diffusers `UpBlock2D` (attention = false) and `CrossAttnUpBlock2D` (attention = true). */
class UpBlockBase extends Module<[Tensor, Tensor[], Tensor, CrossAttentionInputs, ([number, number] | null)?], Tensor> implements UpBlock {
  readonly resnets: ModuleList<ResnetBlock2D>;
  readonly attentions: ModuleList<Transformer2DModel> | null;
  readonly upsamplers: ModuleList<Upsample2D> | null;

  /**
   * inChannels: width of the down block this mirrors (its last skip), prevOutputChannels: width of the
   * incoming hidden state; layer i's resnet sees (i = 0 ? prev : out) + (last layer ? in : out) channels.
   */
  constructor(inChannels: number, outChannels: number, prevOutputChannels: number, addUpsample: boolean, withAttention: boolean, o: BlockOptions) {
    super(placement(o));
    const p = this.options;
    const n = o.numLayers;
    const resnets = Array.from({ length: n }, (_, i) => {
      const skip = i === n - 1 ? inChannels : outChannels;
      const hidden = i === 0 ? prevOutputChannels : outChannels;
      return resnet(hidden + skip, outChannels, o);
    });
    this.attentions = withAttention
      ? this.child("attentions", new ModuleList(Array.from({ length: n }, (_, i) => transformer(outChannels, i, o, this.constructor.name)), p))
      : null;
    this.resnets = this.child("resnets", new ModuleList(resnets, p));
    this.upsamplers = addUpsample ? this.child("upsamplers", new ModuleList([new Upsample2D(outChannels, outChannels, p)], p)) : null;
  }

  /**
   * x [B, Cprev, H, W]; skips: this block's skip connections in down order (consumed from the end);
   * upsampleSize: the upsampler's output [H, W] when the next skip's size is not exactly 2× (odd sizes).
   */
  forward(x: Tensor, skips: Tensor[], temb: Tensor, ctx: CrossAttentionInputs, upsampleSize: [number, number] | null = null): Tensor {
    if (skips.length !== this.resnets.length)
      throw new Error(`${this.constructor.name}: expected ${this.resnets.length} skip connections, got ${skips.length}`);
    return tidy(() => {
      let h = x;
      for (let i = 0; i < this.resnets.length; i++) {
        const skip = skips[skips.length - 1 - i]!;
        const joined = cat([h, skip], 1); // [B, Ch + Cskip, H, W]
        if (h !== x) h.dispose();
        h = swap(joined, this.resnets.at(i).call(joined, temb));
        if (this.attentions) h = swap(h, this.attentions.at(i).call(h, ctx));
      }
      if (this.upsamplers) for (const u of this.upsamplers) h = swap(h, u.call(h, upsampleSize));
      return h;
    });
  }
}

export class UpBlock2D extends UpBlockBase {
  constructor(inChannels: number, outChannels: number, prevOutputChannels: number, addUpsample: boolean, o: BlockOptions) {
    super(inChannels, outChannels, prevOutputChannels, addUpsample, false, o);
  }
}

export class CrossAttnUpBlock2D extends UpBlockBase {
  constructor(inChannels: number, outChannels: number, prevOutputChannels: number, addUpsample: boolean, o: BlockOptions) {
    super(inChannels, outChannels, prevOutputChannels, addUpsample, true, o);
  }
}
