// Fused QKV projections (diffusers' fuse_qkv_projections / FusedAttnProcessor2_0) as an attention processor:
// at install the processor concatenates the module's to_q, to_k, to_v weights (self-attention: [3·inner, C])
// or to_k, to_v (cross-attention: [2·inner, cross]) — and their biases — into one weight it owns (tensor ops
// only), runs one GEMM per call and splits the result with views (narrow on the last dim). The projections'
// own parameters become row views of the fused weight (their old tensors are released), so the bytes are held
// once: fusing costs no memory beyond one module's weights while it is being fused. On removal each parameter
// gets a contiguous copy of its rows again (bit for bit) and the fused weight is freed.
// The output equals the unfused one within float32 rounding: the GEMM's N changes, so the BLAS kernel may
// block (and so sum) differently; measured differences are in the tests.
//
// Cross-attention K/V cache (on by default): the keys and values of encoder_hidden_states are the same at
// every step of a run, so the processor keeps them per encoder tensor (keyed on the tensor object: the
// pipeline builds one conditioning tensor per generate() — CFG rows batched in it — and passes it at every
// step). Entries are dropped once their key tensor has been disposed (checked at each call and by clear(),
// which the pipeline feature runs after each generate()). The cached tensors are what a recomputation would
// produce (same GEMM, same inputs), so results are bit for bit those without the cache. The key is the
// identity, not the contents: a caller who writes into a live encoder tensor in place must clear() first.
// Weights are captured at install: fuse again after changing a module's weights.
//
// The processor keeps the attention kind (and options) of the default processor it replaces; modules with
// another processor (another feature's) are left as they are. setAttentionKind() on a model does not reach
// fused modules (unfuse, set the kind, fuse again); the pipeline's setAttentionKind() does exactly that.

import { Attention, type AttentionCallOptions, type AttnProcessor, AttnProcessorDefault } from "../nn/attention.ts";
import type { AttentionKind, AttentionOptions } from "../nn/attention-dispatch.ts";
import { attentionModules } from "../nn/attention-processors.ts";
import type { Module } from "../nn/module.ts";
import type { Parameter } from "../nn/parameter.ts";
import { type Tensor, cat, keep, linear, tidy } from "../tensor/index.ts";

export interface FuseQkvOptions {
  /** Keep the cross-attention K/V of each encoder tensor for the rest of its run (default true). */
  cacheCrossAttention?: boolean;
}

/** Counters of one processor (or summed over a handle's processors). */
export interface FusedQkvStats {
  /** Calls of the processor. */
  calls: number;
  /** Cross-attention K/V computed (one GEMM each) and served from the cache. */
  kvComputed: number;
  kvReused: number;
}

export class FusedQkvProcessor implements AttnProcessor {
  readonly name = "fusedQkv";
  /** Self-attention: [to_q; to_k; to_v] [3·inner, C]; cross-attention: [to_k; to_v] [2·inner, cross]. */
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  readonly inner: number;
  readonly stats: FusedQkvStats = { calls: 0, kvComputed: 0, kvReused: 0 };
  readonly #cross: boolean;
  readonly #kv = new Map<Tensor, { kv: Tensor; k: Tensor; v: Tensor }>();
  /** The projections' parameters and the row views of the fused tensors they hold while fused. */
  readonly #views: { param: Parameter; view: Tensor }[] = [];
  #disposed = false;

  constructor(
    attn: Attention,
    readonly kind: AttentionKind = "fused",
    readonly options: Readonly<Partial<AttentionOptions>> = {},
    readonly cacheCrossAttention = true,
  ) {
    this.#cross = attn.isCrossAttention;
    const lin = this.#cross ? [attn.to_k, attn.to_v] : [attn.to_q, attn.to_k, attn.to_v];
    this.inner = attn.to_k.weight.value.shape[0]!;
    this.weight = keep(cat(lin.map((l) => l.weight.value), 0)); // [n·inner, in]
    const biases = lin.map((l) => l.bias?.value ?? null);
    this.bias = biases.every((b) => b !== null) ? keep(cat(biases as Tensor[], 0)) : null; // [n·inner]
    if (!this.bias && biases.some((b) => b !== null)) {
      this.weight.dispose();
      throw new Error("FusedQkvProcessor: to_q/to_k/to_v disagree on bias");
    }
    // the parameters hold rows of the fused tensors from now on (their own storage is released)
    lin.forEach((l, j) => {
      const rows = [[l.weight, this.weight.narrow(0, j * this.inner, this.inner)] as const];
      if (this.bias) rows.push([l.bias!, this.bias.narrow(0, j * this.inner, this.inner)] as const);
      for (const [param, view] of rows) {
        param.replace(view);
        this.#views.push({ param, view });
      }
    });
  }

  process(attn: Attention, hidden: Tensor, encoder: Tensor | null, call: AttentionCallOptions): Tensor {
    if (this.#disposed) throw new Error("FusedQkvProcessor: used after dispose()");
    this.stats.calls++;
    const i = this.inner;
    const x = attn.prepareInput(hidden); // [B, Sq, C]
    let q: Tensor;
    let k: Tensor;
    let v: Tensor;
    if (!this.#cross) {
      if (encoder) return UNFUSED.process(attn, hidden, encoder, call); // a self-attention module given keys elsewhere
      const qkv = linear(x, this.weight, this.bias); // [B, Sq, 3·inner]
      q = attn.splitHeads(qkv.narrow(-1, 0, i)); // [B, H, Sq, Dh]
      k = attn.splitHeads(qkv.narrow(-1, i, i));
      v = attn.splitHeads(qkv.narrow(-1, 2 * i, i));
    } else {
      q = attn.splitHeads(attn.to_q.call(x)); // [B, H, Sq, Dh]
      const ctx = encoder ?? x;
      const hit = encoder && this.cacheCrossAttention ? this.#lookup(encoder) : null;
      if (hit) {
        this.stats.kvReused++;
        ({ k, v } = hit);
      } else {
        this.stats.kvComputed++;
        const kv = linear(ctx, this.weight, this.bias); // [B, Sk, 2·inner]
        k = attn.splitHeads(kv.narrow(-1, 0, i)); // [B, H, Sk, Dh]
        v = attn.splitHeads(kv.narrow(-1, i, i));
        if (encoder && this.cacheCrossAttention) this.#kv.set(encoder, { kv: keep(kv), k: keep(k), v: keep(v) });
      }
    }
    const o = attn.attend(q, k, v, call, this.kind, this.options); // [B, H, Sq, Dh]
    return attn.finishOutput(attn.to_out.at(0).call(attn.mergeHeads(o)), hidden); // hidden's layout
  }

  #lookup(encoder: Tensor): { k: Tensor; v: Tensor } | null {
    this.clear(false);
    return this.#kv.get(encoder) ?? null;
  }

  /** Cached K/V entries (one per live encoder tensor seen). */
  get cachedEntries(): number {
    return this.#kv.size;
  }

  /** Drop the K/V of encoder tensors that were disposed (every entry with `all`). */
  clear(all = false): void {
    for (const [key, e] of this.#kv)
      if (all || key.isDisposed) {
        e.k.dispose();
        e.v.dispose();
        e.kv.dispose();
        this.#kv.delete(key);
      }
  }

  /** Give the projections their own (contiguous) weights back, then free the fused weight and the cache. */
  dispose(): void {
    if (this.#disposed) return;
    this.clear(true);
    for (const { param, view } of this.#views) if (param.value === view) param.replace(view.clone()); // a replaced one is the replacer's
    this.#views.length = 0;
    this.weight.dispose();
    this.bias?.dispose();
    this.#disposed = true;
  }
}

const UNFUSED = new AttnProcessorDefault("fused");

export interface FusedQkvHandle {
  /** Paths of the fused modules (under each root, as given) and of those left alone (another processor). */
  readonly fused: readonly string[];
  readonly skipped: readonly string[];
  readonly processors: readonly FusedQkvProcessor[];
  /** Counters summed over the processors. */
  stats(): FusedQkvStats;
  /** clear(all) on every processor. */
  clear(all?: boolean): void;
  /** Put the previous processors back (where ours is still installed) and free the fused weights. */
  remove(): void;
}

const installed = new WeakMap<Module, FusedQkvHandle>();

/** Fuse the projections of every Attention under each root whose processor is the default one. */
export function fuseQkvProjections(roots: Module | readonly Module[], opts: FuseQkvOptions = {}): FusedQkvHandle {
  const list = Array.isArray(roots) ? (roots as readonly Module[]) : [roots as Module];
  for (const r of list) unfuseQkvProjections(r);
  const cache = opts.cacheCrossAttention ?? true;
  const fused: string[] = [];
  const skipped: string[] = [];
  const done: [Attention, AttnProcessorDefault, FusedQkvProcessor][] = [];
  tidy(() => {
    for (const root of list)
      for (const [path, m] of attentionModules(root)) {
        const prev = m.processor;
        if (!(prev instanceof AttnProcessorDefault)) {
          skipped.push(path);
          continue;
        }
        const p = new FusedQkvProcessor(m, prev.kind, prev.options, cache);
        done.push([m, prev, p]);
        fused.push(path);
      }
  });
  for (const [m, , p] of done) m.setProcessor(p);
  const processors = done.map(([, , p]) => p);
  const handle: FusedQkvHandle = {
    fused,
    skipped,
    processors,
    stats: () => {
      const s: FusedQkvStats = { calls: 0, kvComputed: 0, kvReused: 0 };
      for (const p of processors) {
        s.calls += p.stats.calls;
        s.kvComputed += p.stats.kvComputed;
        s.kvReused += p.stats.kvReused;
      }
      return s;
    },
    clear: (all = false) => {
      for (const p of processors) p.clear(all);
    },
    remove: () => {
      if (!list.some((r) => installed.get(r) === handle)) return;
      for (const [m, prev, p] of done) {
        if (m.processor === p) m.setProcessor(prev);
        p.dispose();
      }
      for (const r of list) if (installed.get(r) === handle) installed.delete(r);
    },
  };
  for (const r of list) installed.set(r, handle);
  return handle;
}

/** Unfuse what fuseQkvProjections installed under `root`; false when nothing was. */
export function unfuseQkvProjections(root: Module): boolean {
  const h = installed.get(root);
  if (!h) return false;
  h.remove();
  return true;
}

/** The active fusion of `root`, or null. */
export function fusedQkvOf(root: Module): FusedQkvHandle | null {
  return installed.get(root) ?? null;
}
