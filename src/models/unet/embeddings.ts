// Time embeddings of the UNet, as diffusers' embeddings.py: the sinusoidal timestep embedding
// (get_timestep_embedding, computed in float32 step by step as torch does), the parameter-free
// `Timesteps` module (time_proj, add_time_proj) and `TimestepEmbedding` (linear_1 → act → linear_2,
// with the optional cond_proj / post_act of LCM-style configs).

import { type Device, Tensor, add, empty, tensor, tidy } from "../../tensor/index.ts";
import { Linear, activation } from "../../nn/layers.ts";
import { Module, type ModuleOptions } from "../../nn/module.ts";

const f32 = Math.fround;

export interface SinusoidalOptions {
  /** Output [cos, sin] instead of [sin, cos]. */
  flipSinToCos?: boolean;
  /** Frequencies are exp(−ln(maxPeriod)·i / (half − shift)). */
  downscaleFreqShift?: number;
  scale?: number;
  maxPeriod?: number;
}

/**
 * diffusers get_timestep_embedding for timesteps t (any numbers; read as float32): [N, dim] float32,
 * row n = [sin(t·f), cos(t·f)] (or flipped), f_i = exp(−ln(maxPeriod)·i / (half − shift)), zero-padded
 * when dim is odd. Each step is rounded to float32 where torch computes in float32.
 */
export function sinusoidalEmbedding(timesteps: ArrayLike<number>, dim: number, opts: SinusoidalOptions = {}): Float32Array {
  const { flipSinToCos = false, downscaleFreqShift = 1, scale = 1, maxPeriod = 10000 } = opts;
  const half = Math.floor(dim / 2);
  const negLog = f32(-Math.log(maxPeriod));
  const denom = f32(half - downscaleFreqShift);
  const freqs = new Float32Array(half);
  for (let i = 0; i < half; i++) freqs[i] = f32(Math.exp(f32(f32(negLog * i) / denom))); // exponent in float32, then exp
  const out = new Float32Array(timesteps.length * dim);
  for (let n = 0; n < timesteps.length; n++) {
    const t = f32(timesteps[n]!);
    const row = n * dim;
    const sinAt = flipSinToCos ? row + half : row;
    const cosAt = flipSinToCos ? row : row + half;
    for (let i = 0; i < half; i++) {
      const arg = scale === 1 ? f32(t * freqs[i]!) : f32(scale * f32(t * freqs[i]!));
      out[sinAt + i] = Math.sin(arg);
      out[cosAt + i] = Math.cos(arg);
    }
  }
  return out;
}

/** diffusers `Timesteps`: no parameters; timesteps [N] (tensor or numbers) -> [N, numChannels] float32. */
export class Timesteps extends Module<[Tensor | ArrayLike<number>, Device?], Tensor> {
  constructor(
    readonly numChannels: number,
    readonly flipSinToCos: boolean,
    readonly downscaleFreqShift: number,
    opts: ModuleOptions = {},
  ) {
    super(opts);
  }

  /** The result lies on `device` (default: the timesteps tensor's device, else "cpu"). */
  forward(timesteps: Tensor | ArrayLike<number>, device?: Device): Tensor {
    const isTensor = timesteps instanceof Tensor;
    const t = timesteps as Tensor;
    if (isTensor && t.ndim !== 1) throw new Error(`Timesteps: expected a 1-D tensor of timesteps, got [${t.shape.join(", ")}]`);
    const dev = device ?? (isTensor ? t.device : "cpu");
    const n = isTensor ? t.shape[0]! : (timesteps as ArrayLike<number>).length;
    if (dev === "meta" || (isTensor && t.device === "meta")) return empty([n, this.numChannels], { device: dev });
    const values = isTensor ? t.toFloat32Array() : (timesteps as ArrayLike<number>);
    const data = sinusoidalEmbedding(values, this.numChannels, { flipSinToCos: this.flipSinToCos, downscaleFreqShift: this.downscaleFreqShift });
    return tensor(data, { shape: [n, this.numChannels], device: dev }); // [N, C]
  }
}

export interface TimestepEmbeddingOptions extends ModuleOptions {
  actFn?: string;
  /** Output width (default timeEmbedDim). */
  outDim?: number;
  postActFn?: string | null;
  /** Width of an extra condition added to the input through `cond_proj` (LCM `time_cond_proj_dim`). */
  condProjDim?: number | null;
}

/** diffusers `TimestepEmbedding`: [B, in] -> linear_1 -> act -> linear_2 (-> post_act) -> [B, out]. */
export class TimestepEmbedding extends Module<[Tensor, (Tensor | null)?], Tensor> {
  readonly linear_1: Linear;
  readonly cond_proj: Linear | null;
  readonly linear_2: Linear;
  readonly #act: (x: Tensor) => Tensor;
  readonly #postAct: ((x: Tensor) => Tensor) | null;

  constructor(inChannels: number, timeEmbedDim: number, opts: TimestepEmbeddingOptions = {}) {
    super(opts);
    const o = this.options;
    this.linear_1 = this.child("linear_1", new Linear(inChannels, timeEmbedDim, o));
    this.cond_proj = opts.condProjDim ? this.child("cond_proj", new Linear(opts.condProjDim, inChannels, { ...o, bias: false })) : null;
    this.#act = activation(opts.actFn ?? "silu");
    this.linear_2 = this.child("linear_2", new Linear(timeEmbedDim, opts.outDim ?? timeEmbedDim, o));
    this.#postAct = opts.postActFn ? activation(opts.postActFn) : null;
  }

  forward(sample: Tensor, condition: Tensor | null = null): Tensor {
    return tidy(() => {
      let x = sample; // [B, in]
      if (condition) {
        if (!this.cond_proj) throw new Error("TimestepEmbedding: a condition was passed but the config has no time_cond_proj_dim");
        x = add(x, this.cond_proj.call(condition));
      }
      const y = this.linear_2.call(this.#act(this.linear_1.call(x))); // [B, out]
      return this.#postAct ? this.#postAct(y) : y;
    });
  }
}
