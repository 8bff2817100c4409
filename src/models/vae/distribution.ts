// DiagonalGaussianDistribution (diffusers autoencoders/vae.py): the VAE encoder's latent
// distribution from its moments [B, 2C, H, W] = (mean, logvar) along channels, logvar clamped to
// [-30, 20], std = exp(0.5·logvar), var = exp(logvar); sample(generator) = mean + std·ε with ε drawn
// as diffusers' randn_tensor draws it (torch-compatible CPU generator, one draw of the full shape,
// or one draw of shape [1, …] per sample when given a list of generators), and mode() = mean.
//
// Ownership: the distribution owns its tensors (they survive tidy scopes on their own) and is itself
// scope-tracked like a tensor: created inside tidy() and not returned, it is disposed with the scope;
// otherwise call dispose(). mean/std/logvar/var are borrowed views — do not dispose them.

import { type Tensor, type TorchGenerator, add, cat, clamp, exp, keep, mul, randn, tidy, zerosLike } from "../../tensor/index.ts";
import { track } from "../../tensor/scope.ts";

/** One generator for the whole batch, or one per sample (diffusers accepts both). */
export type GeneratorArg = TorchGenerator | readonly TorchGenerator[] | null | undefined;

export class DiagonalGaussianDistribution {
  /** The encoder's moments [B, 2C, H, W] (quant_conv output). */
  readonly parameters: Tensor;
  readonly mean: Tensor; // [B, C, H, W]
  readonly logvar: Tensor; // [B, C, H, W], clamped to [-30, 20]
  readonly std: Tensor; // exp(0.5·logvar)
  readonly var: Tensor; // exp(logvar)
  readonly deterministic: boolean;
  #disposed = false;

  /** Takes ownership of `parameters`. `deterministic` makes std and var zero (sample() = mean). */
  constructor(parameters: Tensor, opts: { deterministic?: boolean } = {}) {
    if (parameters.ndim < 2 || parameters.shape[1]! % 2 !== 0)
      throw new Error(`DiagonalGaussianDistribution: moments must be [B, 2C, ...], got [${parameters.shape.join(", ")}]`);
    this.deterministic = opts.deterministic ?? false;
    const C = parameters.shape[1]! / 2;
    const t = tidy(() => {
      const mean = parameters.narrow(1, 0, C).contiguous(); // torch.chunk(parameters, 2, dim=1)
      const logvar = clamp(parameters.narrow(1, C, C), -30, 20);
      const std = this.deterministic ? zerosLike(mean) : exp(mul(logvar, 0.5));
      const variance = this.deterministic ? zerosLike(mean) : exp(logvar);
      return { mean, logvar, std, variance };
    });
    this.parameters = keep(parameters);
    this.mean = keep(t.mean);
    this.logvar = keep(t.logvar);
    this.std = keep(t.std);
    this.var = keep(t.variance);
    track(this);
  }

  /**
   * mean + std·ε, ε ~ N(0, 1) in the distribution's dtype, drawn on the CPU from `generator` (the
   * process default generator when none) and moved to the distribution's device, as diffusers'
   * randn_tensor with a CPU generator. A list of generators draws each sample's ε from its own.
   * (float32 ε is exactly torch's; for half dtypes ε is the float32 draw rounded once.)
   */
  sample(generator?: GeneratorArg): Tensor {
    this.#check();
    const shape = this.mean.shape;
    const opts = { dtype: this.mean.dtype, device: this.mean.device };
    return tidy(() => {
      let eps: Tensor;
      if (Array.isArray(generator) && generator.length > 1) {
        const B = shape[0]!;
        if (generator.length !== B)
          throw new Error(`DiagonalGaussianDistribution.sample: ${generator.length} generators for a batch of ${B}`);
        eps = cat(generator.map((g) => randn([1, ...shape.slice(1)], { ...opts, generator: g })), 0);
      } else {
        const g = Array.isArray(generator) ? generator[0] : (generator as TorchGenerator | null | undefined);
        eps = randn(shape, { ...opts, ...(g ? { generator: g } : {}) });
      }
      return add(this.mean, mul(this.std, eps)); // [B, C, H, W]
    });
  }

  /** The mean (a new reference the caller disposes). */
  mode(): Tensor {
    this.#check();
    return this.mean.contiguous();
  }

  get isDisposed(): boolean {
    return this.#disposed;
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const t of [this.parameters, this.mean, this.logvar, this.std, this.var]) t.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  #check(): void {
    if (this.#disposed) throw new Error("DiagonalGaussianDistribution: used after dispose()");
  }
}
