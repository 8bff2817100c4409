// Scaled dot-product attention on [B, H, S, D] tensors and the registry of attention functions.
// Three implementations are built in:
//   "fused"   (the default) the backend's fused kernel, `backend.attention`: per (b, h), query blocks ×
//             key blocks with an online softmax in one pass, no score tensor, q/k/v read as they lie.
//             Peak memory = the output (+ the backend's bounded scratch).
//   "naive"   materialises the scores [B, H, Sq, Sk] -> softmax -> @ v. Peak O(B·H·Sq·Sk).
//   "chunked" the same online softmax as "fused" built from generic tensor ops (query blocks and, inside
//             each, key blocks; running max m and sum l, rescaled as FlashAttention does), so peak memory
//             is O(B·H·cq·ck) + output; a backend-independent reference of the fused kernel.
// Others (CUDA kernels, ToMe-aware variants) register under a name with registerAttention(). There is
// no process-wide default: a call names its `kind` (default "fused"); modules take theirs from their
// attention processor (nn/attention.ts), models and pipelines set it per instance.
//
// Semantics (as torch's F.scaled_dot_product_attention): out = softmax(q·kᵀ·scale + mask) · v with
// scale = D^-0.5 by default; `mask` is additive (float, broadcastable to [B, H, Sq, Sk]) or a bool
// keep-mask (true = attend); `causal` lets query i attend keys j ≤ i (top-left aligned). Scores and
// softmax statistics are float32 for every input dtype ("fused" and "chunked" always, so `upcast` is
// implied; "naive" when `upcast` or when the input is float32); the output has q's dtype. A row whose
// keys are all masked with -inf gives 0 in "fused" and "chunked" (FlashAttention's convention) and NaN
// in "naive" (torch's softmax).

import {
  type Tensor,
  TensorError,
  add,
  cat,
  div,
  eq,
  exp,
  full,
  fusedAttention,
  matmul,
  max,
  maximum,
  mul,
  softmax,
  sub,
  sum,
  tensor,
  where,
  checkAttentionShapes,
} from "../tensor/index.ts";

/** Built-in kinds; any registered name is accepted too. */
export type AttentionKind = "fused" | "naive" | "chunked" | (string & {});

export interface AttentionOptions {
  /** Multiplier of q·kᵀ (default D^-0.5). */
  scale?: number;
  /** Additive float mask or bool keep-mask, broadcastable to [B, H, Sq, Sk]. */
  mask?: Tensor | null;
  /** Query i attends keys j ≤ i. */
  causal?: boolean;
  /** Compute the scores and softmax of half-precision inputs in float32 (diffusers upcast_attention / upcast_softmax). */
  upcast?: boolean;
  /** Registry name (default "fused"). */
  kind?: AttentionKind;
  /** "chunked": query rows per block (default: chosen so one score block stays under scoreBlockBytes). */
  queryChunk?: number;
  /** "chunked": keys per block (default 1024). */
  keyChunk?: number;
  /** "chunked": byte budget of one float32 score block [B, H, cq, ck] (default 16 MiB). */
  scoreBlockBytes?: number;
}

/** An attention implementation: q [B, H, Sq, D], k [B, H, Sk, D], v [B, H, Sk, Dv] -> [B, H, Sq, Dv]. */
export type AttentionFn = (q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions & { scale: number }) => Tensor;

const registry = new Map<string, AttentionFn>();
const BUILT_IN = ["fused", "naive", "chunked"];

/** Register (or replace) an attention implementation under `name`. */
export function registerAttention(name: string, fn: AttentionFn): void {
  registry.set(name, fn);
}

export function unregisterAttention(name: string): void {
  if (BUILT_IN.includes(name)) throw new Error(`attention "${name}" is built in and cannot be removed`);
  registry.delete(name);
}

export function attentionKinds(): string[] {
  return [...registry.keys()];
}

export function getAttention(kind: AttentionKind): AttentionFn {
  const fn = registry.get(kind);
  if (!fn) throw new Error(`unknown attention kind ${JSON.stringify(kind)}; registered: ${attentionKinds().join(", ")}`);
  return fn;
}

/** softmax(q·kᵀ·scale + mask)·v with the chosen implementation; see the file header for semantics. */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  checkAttentionShapes("attention", q, k, v, opts.mask ?? null);
  const scale = opts.scale ?? 1 / Math.sqrt(q.shape[3]!);
  return getAttention(opts.kind ?? "fused")(q, k, v, { ...opts, scale });
}

/** Dispose every argument (null-safe). */
function drop(...ts: (Tensor | null | undefined)[]): void {
  for (const t of ts) t?.dispose();
}

/** An additive float32 mask of `mask`'s block [.., q0:q0+nq, k0:k0+nk] (bool keep-masks become 0 / -inf). */
function maskBlock(mask: Tensor, q0: number, nq: number, k0: number, nk: number): Tensor {
  let m = mask;
  const views: Tensor[] = [];
  if (m.ndim >= 2 && m.shape[m.ndim - 2] !== 1) views.push((m = m.narrow(-2, q0, nq)));
  if (m.ndim >= 1 && m.shape[m.ndim - 1] !== 1) views.push((m = m.narrow(-1, k0, nk)));
  try {
    if (m.dtype === "bool" || m.dtype === "uint8") return where(m, 0, -Infinity).to("float32");
    return m.to("float32");
  } finally {
    drop(...views);
  }
}

/** [nq, nk] float32 block of the causal mask: 0 where key j ≤ query i, -inf above the diagonal. */
function causalBlock(q0: number, nq: number, k0: number, nk: number, device: Tensor["device"]): Tensor {
  const data = new Float32Array(nq * nk);
  for (let i = 0; i < nq; i++)
    for (let j = 0; j < nk; j++) if (k0 + j > q0 + i) data[i * nk + j] = -Infinity;
  return tensor(data, { shape: [nq, nk], dtype: "float32", device });
}

/** x -> float32 (a new reference either way). */
function f32(x: Tensor): Tensor {
  return x.to("float32");
}

// ---- fused (the backend's kernel) ------------------------------------------------------------

/** The tensor layer's fused op (dtype, device and mask checks there; the backend computes). */
const fused: AttentionFn = (q, k, v, opts) => fusedAttention(q, k, v, { scale: opts.scale, mask: opts.mask ?? null, causal: opts.causal === true });

// ---- naive ------------------------------------------------------------------------------------

const naive: AttentionFn = (q, k, v, opts) => {
  const Sq = q.shape[2]!;
  const Sk = k.shape[2]!;
  // upcast: q·kᵀ in float32; otherwise in the input dtype (rounded once), then float32 from here on.
  const up = opts.upcast === true && q.dtype !== "float32";
  const qc = up ? f32(q) : q;
  const kc = up ? f32(k) : k;
  const kt = kc.transpose(-2, -1); // [B, H, D, Sk]
  const raw = matmul(qc, kt); // [B, H, Sq, Sk]
  if (up) drop(qc, kc);
  drop(kt);
  const raw32 = f32(raw);
  drop(raw);
  let s = mul(raw32, opts.scale);
  drop(raw32);
  if (opts.mask) {
    const m = maskBlock(opts.mask, 0, Sq, 0, Sk);
    const t = add(s, m);
    drop(s, m);
    s = t;
  }
  if (opts.causal) {
    const m = causalBlock(0, Sq, 0, Sk, q.device);
    const t = add(s, m);
    drop(s, m);
    s = t;
  }
  const p = softmax(s, -1); // [B, H, Sq, Sk] float32
  drop(s);
  const pv = p.to(v.dtype);
  drop(p);
  const out = matmul(pv, v); // [B, H, Sq, Dv]
  drop(pv);
  if (out.dtype === q.dtype) return out;
  try {
    return out.to(q.dtype);
  } finally {
    out.dispose();
  }
};

// ---- chunked (online softmax) ---------------------------------------------------------------

/** Default block sizes: keys in blocks of 1024; query rows so that one f32 score block ≤ budget. */
export function chunkSizes(B: number, H: number, Sq: number, Sk: number, opts: AttentionOptions = {}): { cq: number; ck: number } {
  const ck = Math.max(1, Math.min(Sk, opts.keyChunk ?? 1024));
  const budget = opts.scoreBlockBytes ?? 16 * 2 ** 20;
  const cq = Math.max(1, Math.min(Sq, opts.queryChunk ?? Math.max(16, Math.floor(budget / (4 * B * H * ck)))));
  return { cq, ck };
}

/**
 * For each query block Q (rows q0..q0+nq) the state is m (running row max), l (running sum of
 * exp(s - m)) and acc (running Σ exp(s - m)·v), all float32. For each key block:
 *   s     = Q·Kᵀ·scale + mask                                  [B, H, nq, nk]
 *   m'    = max(m, rowmax(s))
 *   ref   = m' where finite, else 0  — a row with every key so far masked (-inf) has m' = -inf;
 *           using 0 as the reference keeps exp(s - ref) = exp(-inf) = 0 instead of NaN.
 *   p     = exp(s - ref);  alpha = exp(m - ref)  (m = -inf on the first block -> alpha = 0)
 *   l     = alpha·l + rowsum(p);  acc = alpha·acc + p·V;  m = m'
 * and finally out = acc / l, with l = 0 (a fully masked row) giving 0. Tail blocks are simply
 * narrower (narrow views); under `causal`, key blocks entirely above the diagonal are skipped.
 */
const chunked: AttentionFn = (q, k, v, opts) => {
  const [B, H, Sq] = q.shape as [number, number, number, number];
  const Sk = k.shape[2]!;
  const { cq, ck } = chunkSizes(B, H, Sq, Sk, opts);
  const outs: Tensor[] = [];
  try {
    for (let q0 = 0; q0 < Sq; q0 += cq) {
      const nq = Math.min(cq, Sq - q0);
      outs.push(chunkedQueryBlock(q, k, v, opts, q0, nq, ck));
    }
    if (outs.length === 1) return outs.pop()!;
    return cat(outs, 2); // [B, H, Sq, Dv]
  } finally {
    drop(...outs);
  }
};

function chunkedQueryBlock(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions & { scale: number }, q0: number, nq: number, ck: number): Tensor {
  const [B, H] = q.shape as [number, number];
  const Sk = k.shape[2]!;
  const Dv = v.shape[3]!;
  const qv = q.narrow(2, q0, nq);
  const q32 = f32(qv);
  drop(qv);
  const qs = mul(q32, opts.scale); // [B, H, nq, D] pre-scaled (one multiply per block, not per key block)
  drop(q32);
  let m = full([B, H, nq, 1], -Infinity, { dtype: "float32", device: q.device });
  let l = full([B, H, nq, 1], 0, { dtype: "float32", device: q.device });
  let acc = full([B, H, nq, Dv], 0, { dtype: "float32", device: q.device });
  const kEnd = opts.causal ? Math.min(Sk, q0 + nq) : Sk; // causal: keys beyond the block's last row are all masked
  try {
    for (let k0 = 0; k0 < kEnd; k0 += ck) {
      const nk = Math.min(ck, kEnd - k0);
      const kb = k.narrow(2, k0, nk);
      const k32 = f32(kb);
      drop(kb);
      const kt = k32.transpose(-2, -1); // [B, H, D, nk]
      let s = matmul(qs, kt); // [B, H, nq, nk]
      drop(k32, kt);
      if (opts.mask) {
        const mb = maskBlock(opts.mask, q0, nq, k0, nk);
        const t = add(s, mb);
        drop(s, mb);
        s = t;
      }
      if (opts.causal && k0 + nk - 1 > q0) {
        const cb = causalBlock(q0, nq, k0, nk, q.device);
        const t = add(s, cb);
        drop(s, cb);
        s = t;
      }
      const bm = max(s, -1, true); // [B, H, nq, 1]
      const mNew = maximum(m, bm);
      drop(bm);
      const dead = eq(mNew, -Infinity);
      const ref = where(dead, 0, mNew); // finite reference max
      drop(dead);
      const sd = sub(s, ref);
      drop(s);
      const p = exp(sd); // [B, H, nq, nk]
      drop(sd);
      const md = sub(m, ref);
      const alpha = exp(md); // [B, H, nq, 1]
      drop(md, ref, m);
      m = mNew;
      const rs = sum(p, -1, true);
      const la = mul(l, alpha);
      drop(l);
      l = add(la, rs);
      drop(la, rs);
      const vb = v.narrow(2, k0, nk);
      const v32 = f32(vb);
      drop(vb);
      const pv = matmul(p, v32); // [B, H, nq, Dv]
      drop(p, v32);
      const aa = mul(acc, alpha);
      drop(acc, alpha);
      acc = add(aa, pv);
      drop(aa, pv);
    }
    const zero = eq(l, 0);
    const lSafe = where(zero, 1, l); // fully masked rows: acc = 0, divide by 1 -> 0
    drop(zero);
    const o = div(acc, lSafe);
    drop(lSafe);
    if (o.dtype === q.dtype) return o;
    try {
      return o.to(q.dtype);
    } finally {
      o.dispose();
    }
  } finally {
    drop(qs, m, l, acc);
  }
}

registerAttention("fused", fused);
registerAttention("naive", naive);
registerAttention("chunked", chunked);
