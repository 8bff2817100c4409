// Module: the base class of every layer and model. Provides explicit registration of named
// parameters and children (so `namedParameters()` paths equal diffusers/transformers checkpoint
// keys), construction on a device + dtype (on "meta" nothing is allocated), strict state-dict
// loading with dtype conversion tensor by tensor, forward pre/post hooks, and disposal.
//
// Defining a module:
//
//   class Linear extends Module<[Tensor], Tensor> {
//     readonly weight: Parameter;
//     constructor(inF: number, outF: number, opts: ModuleOptions = {}) {
//       super(opts);
//       this.weight = this.param("weight", [outF, inF]);       // [out, in]
//     }
//     forward(x: Tensor): Tensor { return linear(x, this.weight.value); }
//   }
//
// Children are registered with `this.child("to_q", new Linear(..., this.options))`; lists with
// `ModuleList` (children "0", "1", ...). Property names are the checkpoint names (`this.to_q`).
//
// Calling: subclasses implement `forward(...)`; callers use `module.call(...)`, which runs the
// forward pre-hooks (may replace the arguments), the forward wrappers around `forward`, then the
// post-hooks (may replace the output). A wrapper receives `next` and may call it zero, one or many
// times (tiling, block-level token merging, offload); wrappers nest in registration order, the first
// registered outermost. Every hook kind runs in registration order and is removed by its handle.
// Calling `forward` directly bypasses hooks — model code always uses `call` on children.
//
// Parameters are held by `Parameter` objects whose tensor (`.value`) can be replaced (loading onto
// another device, `to()`), so code reads `this.weight.value` at forward time, never caches it.
//
// Weightless construction: `new Model(cfg, { device: "meta" })` allocates nothing (real-size
// manifests, memory planning); `loadStateDict(source, { device: "cpu", dtype })` then materialises
// it one parameter at a time. A module already on a real device is filled in place instead.

import { type DType, type Device, type Tensor, empty } from "../tensor/index.ts";
import { Parameter } from "./parameter.ts";
import { type LoadReport, type LoadStateDictOptions, type StateDictSource, isTensorSource, loadParameters } from "./state-dict.ts";

export { Parameter } from "./parameter.ts";
export { type LoadReport, type LoadStateDictOptions, LoadStateDictError, type StateDictSource } from "./state-dict.ts";

/** Where and in which dtype a module allocates its parameters. */
export interface ModuleOptions {
  device?: Device;
  dtype?: DType;
}

export function resolveModuleOptions(opts: ModuleOptions = {}): Required<ModuleOptions> {
  return { device: opts.device ?? "cpu", dtype: opts.dtype ?? "float32" };
}

type AnyHook = (...a: any[]) => any;

export interface HookHandle {
  /** Unregister the hook. Idempotent. */
  remove(): void;
}

/** Runs before forward; returning an array replaces the arguments. */
export type ForwardPreHook<M, Args extends unknown[]> = (module: M, args: Args) => Args | void;
/** Runs after forward; returning a value (not undefined) replaces the output. */
export type ForwardPostHook<M, Args extends unknown[], Out> = (module: M, args: Args, output: Out) => Out | void;
/** Runs around forward: `next` runs the inner wrappers and forward; call it any number of times. */
export type ForwardWrapper<M, Args extends unknown[], Out> = (module: M, args: Args, next: (...args: Args) => Out) => Out;

// The defaults accept any forward signature (containers such as ModuleList hold mixed children).
export abstract class Module<Args extends unknown[] = any[], Out = any> {
  #device: Device;
  #dtype: DType;
  readonly #params = new Map<string, Parameter>();
  readonly #children = new Map<string, Module>();
  // Stored untyped so that Module<[Tensor], Tensor> stays assignable to Module (hook types are
  // checked at registration).
  #pre: AnyHook[] = [];
  #post: AnyHook[] = [];
  #wrap: AnyHook[] = [];

  constructor(opts: ModuleOptions = {}) {
    const o = resolveModuleOptions(opts);
    this.#device = o.device;
    this.#dtype = o.dtype;
  }

  /** Device the module's parameters were created on (or last moved / loaded to). */
  get device(): Device {
    return this.#device;
  }

  /** Compute dtype: the dtype parameters are created and loaded in. */
  get dtype(): DType {
    return this.#dtype;
  }

  /** `{ device, dtype }` to pass down to children. */
  get options(): Required<ModuleOptions> {
    return { device: this.#device, dtype: this.#dtype };
  }

  // ---- registration -------------------------------------------------------------------------

  /** Register an uninitialised parameter of `shape` (dtype defaults to the module's). */
  protected param(name: string, shape: readonly number[], opts: { dtype?: DType } = {}): Parameter {
    checkName(name, this);
    if (this.#params.has(name) || this.#children.has(name))
      throw new Error(`${this.constructor.name}: "${name}" is already registered`);
    const p = new Parameter(empty(shape, { dtype: opts.dtype ?? this.#dtype, device: this.#device }));
    this.#params.set(name, p);
    return p;
  }

  /** Register a child module under `name`; returns it for assignment to a property. */
  protected child<M extends Module>(name: string, module: M): M {
    checkName(name, this);
    if (this.#params.has(name) || this.#children.has(name))
      throw new Error(`${this.constructor.name}: "${name}" is already registered`);
    this.#children.set(name, module);
    return module;
  }

  // ---- forward and hooks --------------------------------------------------------------------

  /** The computation. Call it through `call(...)` so hooks run. */
  abstract forward(...args: Args): Out;

  /** Run pre-hooks, the wrappers around forward, post-hooks (each kind in registration order). */
  call(...args: Args): Out {
    let a = args;
    if (this.#pre.length)
      for (const h of this.#pre.slice()) {
        const r = h(this, a);
        if (r !== undefined) a = r;
      }
    let out = this.#wrap.length ? this.#wrapped(this.#wrap.slice(), 0, a) : this.forward(...a);
    if (this.#post.length)
      for (const h of this.#post.slice()) {
        const r = h(this, a, out);
        if (r !== undefined) out = r;
      }
    return out;
  }

  /** wrappers[i] around wrappers[i + 1] … around forward. */
  #wrapped(wrappers: AnyHook[], i: number, args: Args): Out {
    if (i === wrappers.length) return this.forward(...args);
    return wrappers[i]!(this, args, (...next: Args) => this.#wrapped(wrappers, i + 1, next));
  }

  registerForwardPreHook(fn: ForwardPreHook<this, Args>): HookHandle {
    const entry: AnyHook = (m, a) => fn(m, a); // a distinct entry, so registering fn twice needs two removes
    this.#pre.push(entry);
    return { remove: () => void (this.#pre = this.#pre.filter((h) => h !== entry)) };
  }

  registerForwardPostHook(fn: ForwardPostHook<this, Args, Out>): HookHandle {
    const entry: AnyHook = (m, a, o) => fn(m, a, o);
    this.#post.push(entry);
    return { remove: () => void (this.#post = this.#post.filter((h) => h !== entry)) };
  }

  registerForwardWrapper(fn: ForwardWrapper<this, Args, Out>): HookHandle {
    const entry: AnyHook = (m, a, next) => fn(m, a, next);
    this.#wrap.push(entry);
    return { remove: () => void (this.#wrap = this.#wrap.filter((h) => h !== entry)) };
  }

  /** Number of hooks of every kind registered on this module (0 = calls run forward alone). */
  get hookCount(): number {
    return this.#pre.length + this.#wrap.length + this.#post.length;
  }

  // ---- traversal --------------------------------------------------------------------------

  /** Direct children in registration order. */
  namedChildren(): [string, Module][] {
    return [...this.#children];
  }

  /** This module and every descendant, pre-order, with dotted paths ("" for this one). */
  namedModules(prefix = ""): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [name, c] of this.#children) out.push(...c.namedModules(prefix ? `${prefix}.${name}` : name));
    return out;
  }

  /** Every parameter with its checkpoint key: own parameters first, then children's (torch order). */
  namedParameters(prefix = ""): [string, Parameter][] {
    const out: [string, Parameter][] = [];
    for (const [path, m] of this.namedModules(prefix))
      for (const [name, p] of m.#params) out.push([path ? `${path}.${name}` : name, p]);
    return out;
  }

  parameters(): Parameter[] {
    return this.namedParameters().map(([, p]) => p);
  }

  /** The descendant at a dotted path ("" = this module); throws naming the missing part. */
  getSubmodule(path: string): Module {
    let m: Module = this;
    if (path === "") return m;
    for (const part of path.split(".")) {
      const c = m.#children.get(part);
      if (!c) throw new Error(`${this.constructor.name}: no submodule "${path}" ("${part}" not found)`);
      m = c;
    }
    return m;
  }

  getParameter(key: string): Parameter {
    const i = key.lastIndexOf(".");
    const owner = this.getSubmodule(i < 0 ? "" : key.slice(0, i));
    const p = owner.#params.get(key.slice(i + 1));
    if (!p) throw new Error(`${this.constructor.name}: no parameter "${key}"`);
    return p;
  }

  numParameters(): number {
    let n = 0;
    for (const p of this.parameters()) n += p.numel;
    return n;
  }

  /** Bytes held by parameters in their current dtypes (also on meta, where nothing is allocated). */
  parameterBytes(): number {
    let n = 0;
    for (const p of this.parameters()) n += p.byteLength;
    return n;
  }

  /** The parameter tensors by key (the live tensors, not copies). */
  stateDict(): Map<string, Tensor> {
    return new Map(this.namedParameters().map(([k, p]) => [k, p.value]));
  }

  // ---- loading ----------------------------------------------------------------------------

  /**
   * Copy values from a checkpoint into the parameters, converting stored F32/F16/BF16 to each
   * parameter's dtype straight from the (memory-mapped) source bytes, one tensor at a time, so
   * at most one converted tensor exists beyond the final weights. In strict mode (default) every
   * key is checked first and one LoadStateDictError lists all problems; nothing is loaded then.
   */
  loadStateDict(source: StateDictSource, opts: LoadStateDictOptions = {}): LoadReport {
    const where = isTensorSource(source) ? source.path : this.constructor.name;
    const report = loadParameters(new Map(this.namedParameters()), source, opts, where);
    if (opts.device) this.#setPlacement(opts.device, undefined);
    if (opts.dtype) this.#setPlacement(undefined, opts.dtype);
    return report;
  }

  // ---- placement and lifetime --------------------------------------------------------------

  /** Move / convert every parameter (one at a time; each old tensor is disposed). */
  to(target: Device | DType | { device?: Device; dtype?: DType }): this {
    const t = typeof target === "string" ? (isDeviceName(target) ? { device: target } : { dtype: target as DType }) : target;
    for (const p of this.parameters()) {
      const device = t.device ?? p.device;
      const dtype = t.dtype ?? p.dtype;
      if (device !== p.device || dtype !== p.dtype) p.replace(p.value.to({ device, dtype }));
    }
    this.#setPlacement(t.device, t.dtype);
    return this;
  }

  #setPlacement(device: Device | undefined, dtype: DType | undefined): void {
    for (const [, m] of this.namedModules()) {
      if (device) m.#device = device;
      if (dtype) m.#dtype = dtype;
    }
  }

  /** Dispose every parameter of this module and its descendants. */
  dispose(): void {
    for (const p of this.parameters()) p.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** An ordered list of child modules named "0", "1", ... (checkpoint paths like `layers.3.fc1`). */
export class ModuleList<M extends Module = Module> extends Module<never[], never> {
  readonly #items: M[] = [];

  constructor(items: Iterable<M> = [], opts: ModuleOptions = {}) {
    super(opts);
    for (const m of items) this.push(m);
  }

  push(m: M): M {
    this.child(String(this.#items.length), m);
    this.#items.push(m);
    return m;
  }

  at(i: number): M {
    const m = this.#items.at(i);
    if (!m) throw new RangeError(`ModuleList: index ${i} out of range (length ${this.#items.length})`);
    return m;
  }

  get length(): number {
    return this.#items.length;
  }

  [Symbol.iterator](): Iterator<M> {
    return this.#items[Symbol.iterator]();
  }

  forward(): never {
    throw new Error("ModuleList has no forward; iterate over its items");
  }
}

/** A module without parameters that returns its input (placeholder for torch's Dropout at inference). */
export class Identity<T = Tensor> extends Module<[T], T> {
  forward(x: T): T {
    return x;
  }
}

// ---- helpers ----------------------------------------------------------------------------------

function checkName(name: string, m: Module): void {
  if (!name || name.includes(".")) throw new Error(`${m.constructor.name}: invalid name "${name}" (non-empty, no dots)`);
}

function isDeviceName(s: string): s is Device {
  return s === "cpu" || s === "cuda" || s === "meta";
}

