// Feed-forward blocks: diffusers' FeedForward (`net.0` = GELU / GEGLU / ApproximateGELU input
// projection, `net.1` dropout, `net.2` output Linear) with its activation modules, and CLIP's MLP
// (`fc1` -> activation -> `fc2`) as transformers names it.

import { type Tensor, chunk, gelu, mul, quickGelu, tidy } from "../tensor/index.ts";
import { Linear, activation } from "./layers.ts";
import { Identity, Module, ModuleList, type ModuleOptions } from "./module.ts";

/** diffusers `GELU`: proj Linear(dim, inner) then gelu (exact or tanh approximation). */
export class GELU extends Module<[Tensor], Tensor> {
  readonly proj: Linear;
  constructor(dimIn: number, dimOut: number, readonly approximate: "none" | "tanh" = "none", opts: ModuleOptions & { bias?: boolean } = {}) {
    super(opts);
    this.proj = this.child("proj", new Linear(dimIn, dimOut, opts));
  }
  forward(x: Tensor): Tensor {
    return tidy(() => gelu(this.proj.call(x), this.approximate));
  }
}

/** diffusers `GEGLU`: proj Linear(dim, 2·inner) -> (a, gate) halves -> a · gelu(gate). */
export class GEGLU extends Module<[Tensor], Tensor> {
  readonly proj: Linear;
  constructor(dimIn: number, dimOut: number, opts: ModuleOptions & { bias?: boolean } = {}) {
    super(opts);
    this.proj = this.child("proj", new Linear(dimIn, dimOut * 2, opts));
  }
  forward(x: Tensor): Tensor {
    return tidy(() => {
      const [a, gate] = chunk(this.proj.call(x), 2, -1) as [Tensor, Tensor]; // [..., inner] views of [..., 2·inner]
      return mul(a, gelu(gate));
    });
  }
}

/** diffusers `ApproximateGELU`: proj Linear(dim, inner) then x·sigmoid(1.702·x). */
export class ApproximateGELU extends Module<[Tensor], Tensor> {
  readonly proj: Linear;
  constructor(dimIn: number, dimOut: number, opts: ModuleOptions & { bias?: boolean } = {}) {
    super(opts);
    this.proj = this.child("proj", new Linear(dimIn, dimOut, opts));
  }
  forward(x: Tensor): Tensor {
    return tidy(() => quickGelu(this.proj.call(x)));
  }
}

export type FeedForwardActivation = "geglu" | "gelu" | "gelu-approximate" | "geglu-approximate";

export interface FeedForwardOptions extends ModuleOptions {
  /** Output width (default dim). */
  dimOut?: number;
  /** inner = dim · mult unless innerDim is given (default 4). */
  mult?: number;
  innerDim?: number;
  /** Default "geglu" (diffusers' default; SD UNets use it). */
  activationFn?: FeedForwardActivation;
  bias?: boolean;
}

/** diffusers `FeedForward`: net.0 (activation with input projection), net.1 (dropout), net.2 Linear(inner, dimOut). */
export class FeedForward extends Module<[Tensor], Tensor> {
  readonly net: ModuleList<Module<[Tensor], Tensor>>;

  constructor(dim: number, opts: FeedForwardOptions = {}) {
    super(opts);
    const inner = opts.innerDim ?? Math.trunc(dim * (opts.mult ?? 4));
    const dimOut = opts.dimOut ?? dim;
    const lin = { ...this.options, bias: opts.bias ?? true };
    const act = opts.activationFn ?? "geglu";
    let first: Module<[Tensor], Tensor>;
    switch (act) {
      case "geglu":
        first = new GEGLU(dim, inner, lin);
        break;
      case "gelu":
        first = new GELU(dim, inner, "none", lin);
        break;
      case "gelu-approximate":
        first = new GELU(dim, inner, "tanh", lin);
        break;
      case "geglu-approximate":
        first = new ApproximateGELU(dim, inner, lin);
        break;
      default:
        throw new Error(`FeedForward: unsupported activation_fn ${JSON.stringify(act)}`);
    }
    this.net = this.child("net", new ModuleList<Module<[Tensor], Tensor>>([first, new Identity<Tensor>(), new Linear(inner, dimOut, lin)], this.options));
  }

  forward(x: Tensor): Tensor {
    // [..., dim] -> [..., inner] -> [..., dimOut]; net.1 (dropout) is the identity at inference
    return tidy(() => this.net.at(2).call(this.net.at(0).call(x)));
  }
}

/** transformers `CLIPMLP`: fc1 Linear(hidden, intermediate) -> hidden_act -> fc2 Linear(intermediate, hidden). */
export class CLIPMLP extends Module<[Tensor], Tensor> {
  readonly fc1: Linear;
  readonly fc2: Linear;
  readonly #act: (x: Tensor) => Tensor;

  constructor(hiddenSize: number, intermediateSize: number, hiddenAct: string, opts: ModuleOptions = {}) {
    super(opts);
    this.#act = activation(hiddenAct);
    this.fc1 = this.child("fc1", new Linear(hiddenSize, intermediateSize, this.options));
    this.fc2 = this.child("fc2", new Linear(intermediateSize, hiddenSize, this.options));
  }

  forward(x: Tensor): Tensor {
    // [B, S, hidden] -> [B, S, intermediate] -> [B, S, hidden]
    return tidy(() => this.fc2.call(this.#act(this.fc1.call(x))));
  }
}
