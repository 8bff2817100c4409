// The basic layers, with torch's parameter names and shapes: Linear, Conv2d, GroupNorm,
// LayerNorm, Embedding; and activation(name), which maps the activation names found in
// diffusers / transformers configs to tensor ops.

import {
  type Tensor,
  conv2d,
  gelu,
  groupNorm,
  indexSelect,
  layerNorm,
  linear,
  quickGelu,
  relu,
  silu,
  tidy,
} from "../tensor/index.ts";
import { Module, type ModuleOptions, type Parameter } from "./module.ts";

export interface LinearOptions extends ModuleOptions {
  bias?: boolean;
}

/** y = x @ weight.T + bias; weight [out, in], bias [out]. */
export class Linear extends Module<[Tensor], Tensor> {
  readonly weight: Parameter;
  readonly bias: Parameter | null;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    opts: LinearOptions = {},
  ) {
    super(opts);
    this.weight = this.param("weight", [outFeatures, inFeatures]);
    this.bias = (opts.bias ?? true) ? this.param("bias", [outFeatures]) : null;
  }

  forward(x: Tensor): Tensor {
    // [..., in] -> [..., out]
    return linear(x, this.weight.value, this.bias?.value);
  }
}

export interface Conv2dLayerOptions extends ModuleOptions {
  stride?: number | [number, number];
  padding?: number | [number, number];
  dilation?: number | [number, number];
  groups?: number;
  bias?: boolean;
}

/** NCHW convolution; weight [out, in/groups, kh, kw], bias [out]. */
export class Conv2d extends Module<[Tensor], Tensor> {
  readonly weight: Parameter;
  readonly bias: Parameter | null;
  readonly stride: number | [number, number];
  readonly padding: number | [number, number];
  readonly dilation: number | [number, number];
  readonly groups: number;

  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    kernelSize: number | [number, number],
    opts: Conv2dLayerOptions = {},
  ) {
    super(opts);
    this.stride = opts.stride ?? 1;
    this.padding = opts.padding ?? 0;
    this.dilation = opts.dilation ?? 1;
    this.groups = opts.groups ?? 1;
    if (inChannels % this.groups !== 0 || outChannels % this.groups !== 0)
      throw new Error(`Conv2d: channels ${inChannels} -> ${outChannels} are not divisible by groups ${this.groups}`);
    const [kh, kw] = typeof kernelSize === "number" ? [kernelSize, kernelSize] : kernelSize;
    this.weight = this.param("weight", [outChannels, inChannels / this.groups, kh, kw]);
    this.bias = (opts.bias ?? true) ? this.param("bias", [outChannels]) : null;
  }

  forward(x: Tensor): Tensor {
    // [N, C, H, W] -> [N, O, H', W']
    return conv2d(x, this.weight.value, this.bias?.value, {
      stride: this.stride,
      padding: this.padding,
      dilation: this.dilation,
      groups: this.groups,
    });
  }
}

export interface GroupNormOptions extends ModuleOptions {
  eps?: number;
  affine?: boolean;
}

/**
 * Group normalisation over [N, C, ...]; weight/bias [C]. `forward(x, true)` fuses a SiLU after it;
 * `forward(x, silu, add)` normalises x + add for a per-channel addend [N, C] without storing the sum.
 */
export class GroupNorm extends Module<[Tensor, boolean?, (Tensor | null)?], Tensor> {
  readonly weight: Parameter | null;
  readonly bias: Parameter | null;
  readonly eps: number;

  constructor(
    readonly numGroups: number,
    readonly numChannels: number,
    opts: GroupNormOptions = {},
  ) {
    super(opts);
    if (numChannels % numGroups !== 0) throw new Error(`GroupNorm: ${numChannels} channels are not divisible into ${numGroups} groups`);
    this.eps = opts.eps ?? 1e-5;
    const affine = opts.affine ?? true;
    this.weight = affine ? this.param("weight", [numChannels]) : null;
    this.bias = affine ? this.param("bias", [numChannels]) : null;
  }

  forward(x: Tensor, silu = false, add: Tensor | null = null): Tensor {
    return groupNorm(x, this.numGroups, this.weight?.value, this.bias?.value, this.eps, { silu, add });
  }
}

export interface LayerNormOptions extends ModuleOptions {
  eps?: number;
  elementwiseAffine?: boolean;
  /** Learnable bias (torch ≥ 2.1 `bias=`); default true. */
  bias?: boolean;
}

/** Layer normalisation over the last dim; weight/bias [dim]. */
export class LayerNorm extends Module<[Tensor], Tensor> {
  readonly weight: Parameter | null;
  readonly bias: Parameter | null;
  readonly eps: number;

  constructor(
    readonly dim: number,
    opts: LayerNormOptions = {},
  ) {
    super(opts);
    this.eps = opts.eps ?? 1e-5;
    const affine = opts.elementwiseAffine ?? true;
    this.weight = affine ? this.param("weight", [dim]) : null;
    this.bias = affine && (opts.bias ?? true) ? this.param("bias", [dim]) : null;
  }

  forward(x: Tensor): Tensor {
    return layerNorm(x, this.dim, this.weight?.value, this.bias?.value, this.eps);
  }
}

/** A lookup table: ids [...] (int32/int64) -> rows of weight [num, dim], i.e. [..., dim]. */
export class Embedding extends Module<[Tensor], Tensor> {
  readonly weight: Parameter;

  constructor(
    readonly numEmbeddings: number,
    readonly embeddingDim: number,
    opts: ModuleOptions = {},
  ) {
    super(opts);
    this.weight = this.param("weight", [numEmbeddings, embeddingDim]);
  }

  forward(ids: Tensor): Tensor {
    return tidy(() => indexSelect(this.weight.value, 0, ids.reshape([-1])).reshape([...ids.shape, this.embeddingDim])); // [N, dim] -> [..., dim]
  }
}

export type ActivationName =
  | "gelu"
  | "gelu_tanh"
  | "gelu_new"
  | "gelu_pytorch_tanh"
  | "gelu-approximate"
  | "quick_gelu"
  | "silu"
  | "swish"
  | "relu";

const ACTIVATIONS: Record<ActivationName, (x: Tensor) => Tensor> = {
  gelu: (x) => gelu(x),
  gelu_tanh: (x) => gelu(x, "tanh"),
  gelu_new: (x) => gelu(x, "tanh"),
  gelu_pytorch_tanh: (x) => gelu(x, "tanh"),
  "gelu-approximate": (x) => gelu(x, "tanh"),
  quick_gelu: quickGelu,
  silu,
  swish: silu,
  relu,
};

/** The activation function for a config name (transformers' ACT2FN / diffusers' get_activation names). */
export function activation(name: string): (x: Tensor) => Tensor {
  const f = (ACTIVATIONS as Record<string, (x: Tensor) => Tensor>)[name];
  if (!f) throw new Error(`unsupported activation ${JSON.stringify(name)}; expected one of ${Object.keys(ACTIVATIONS).join(", ")}`);
  return f;
}
