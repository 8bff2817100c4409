// Attention: the "naive" and "chunked" (online-softmax) implementations agree with each other and
// with a float64 reference on odd sizes (seq 97 and 1025, head dims 40/64/80/160, tail blocks);
// masks (additive with -inf, bool, causal) and fully masked rows; float16 inputs; chunked's and
// fused's peak memory is far below naive's for 4096-token self-attention; the registry ("fused", the
// backend kernel tested in test/ops/attention.test.ts, is what a call without a kind uses); attention
// processors (the default processor's kind per module, custom processors per module path, removal
// restoring the default bit for bit); and diffusers' Attention module (self, cross, 4-D VAE form;
// every built-in kind) against a float64 reference.
//
// Tolerance: both implementations compute in float32, differing only in summation order and in
// the online rescaling, so each one's error against float64 comes from float32 rounding of the
// D-term dot products (scaled by exp's sensitivity) and of the Sk-term weighted sums. The chunked
// error must stay within 2 × the naive error (FlashAttention's criterion) plus one float32 ulp of
// the largest output, and the two must agree to within the sum of their errors. Observed errors
// are 1e-6..4e-6 for outputs of magnitude ~1.

import { describe, expect, test } from "bun:test";
import { Attention, type AttnProcessor, AttnProcessorDefault } from "../../src/nn/attention.ts";
import { attentionKinds, registerAttention, scaledDotProductAttention, unregisterAttention } from "../../src/nn/attention-dispatch.ts";
import { attnProcessors, setAttentionKind, setAttnProcessor } from "../../src/nn/attention-processors.ts";
import { Module } from "../../src/nn/module.ts";
import { type Tensor, memoryStats, resetPeakMemory, tensor, tidy } from "../../src/tensor/index.ts";
import { prng } from "../helpers/op-harness.ts";

function rand(n: number, seed: number, amp = 1): Float32Array {
  const r = prng(seed);
  return Float32Array.from({ length: n }, () => (r() * 2 - 1) * amp);
}

/**
 * float64 attention over [BH, S, D] row-major arrays; `bias(b, i, j)` is an additive mask
 * (-Infinity allowed). Fully masked rows give 0 (the convention the chunked kernel follows).
 */
function reference(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  BH: number,
  Sq: number,
  Sk: number,
  D: number,
  Dv: number,
  scale: number,
  bias?: (b: number, i: number, j: number) => number,
): Float64Array {
  const out = new Float64Array(BH * Sq * Dv);
  const s = new Float64Array(Sk);
  for (let b = 0; b < BH; b++)
    for (let i = 0; i < Sq; i++) {
      let m = -Infinity;
      for (let j = 0; j < Sk; j++) {
        let acc = 0;
        for (let d = 0; d < D; d++) acc += q[(b * Sq + i) * D + d]! * k[(b * Sk + j) * D + d]!;
        s[j] = acc * scale + (bias ? bias(b, i, j) : 0);
        if (s[j]! > m) m = s[j]!;
      }
      if (m === -Infinity) continue;
      let l = 0;
      for (let j = 0; j < Sk; j++) l += s[j] = Math.exp(s[j]! - m);
      for (let d = 0; d < Dv; d++) {
        let acc = 0;
        for (let j = 0; j < Sk; j++) acc += s[j]! * v[(b * Sk + j) * Dv + d]!;
        out[(b * Sq + i) * Dv + d] = acc / l;
      }
    }
  return out;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let e = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    e = Number.isNaN(d) ? Infinity : Math.max(e, d);
  }
  return e;
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

function run(q: Tensor, k: Tensor, v: Tensor, kind: string, extra: object = {}): Float32Array {
  return tidy(() => scaledDotProductAttention(q, k, v, { kind, ...extra }).toTypedArray() as Float32Array);
}

/** Check naive and chunked against the float64 reference with the tolerance of the file header. */
function checkPair(label: string, naive: Float32Array, chunked: Float32Array, ref: Float64Array): void {
  const eN = maxAbsDiff(naive, ref);
  const eC = maxAbsDiff(chunked, ref);
  const ulp = 2 ** -23 * Math.max(1, maxAbs(ref));
  console.log(`${label}: |naive-f64| ${eN.toExponential(2)}  |chunked-f64| ${eC.toExponential(2)}  |chunked-naive| ${maxAbsDiff(chunked, naive).toExponential(2)}`);
  expect(eN, `${label}: naive vs float64`).toBeLessThan(1e-5 * Math.max(1, maxAbs(ref)));
  expect(eC, `${label}: chunked vs float64`).toBeLessThanOrEqual(2 * eN + ulp);
  expect(maxAbsDiff(chunked, naive), `${label}: chunked vs naive`).toBeLessThanOrEqual(eN + eC + ulp);
}

describe("naive vs chunked vs float64", () => {
  for (const S of [97, 1025])
    for (const D of [40, 64, 80, 160]) {
      test(`self-attention S=${S} D=${D}`, () => {
        const B = 1;
        const H = S > 500 ? 1 : 2;
        const n = B * H * S * D;
        // |q|,|k| up to 3: scores spread over tens of units, so the softmax is far from uniform.
        const qa = rand(n, S * 7 + D, 3);
        const ka = rand(n, S * 11 + D, 3);
        const va = rand(n, S * 13 + D);
        const [q, k, v] = [qa, ka, va].map((a) => tensor(a, { shape: [B, H, S, D] })) as [Tensor, Tensor, Tensor];
        const ref = reference(qa, ka, va, B * H, S, S, D, D, D ** -0.5);
        const nv = run(q, k, v, "naive");
        // blocks of 60 queries x 100 keys: several blocks with ragged tails in both directions
        const cv = run(q, k, v, "chunked", { queryChunk: 60, keyChunk: 100 });
        checkPair(`S=${S} D=${D}`, nv, cv, ref);
        // default block sizes too (one key block for S ≤ 1024, two for 1025)
        const cd = run(q, k, v, "chunked");
        expect(maxAbsDiff(cd, ref)).toBeLessThanOrEqual(2 * maxAbsDiff(nv, ref) + 2 ** -23);
        for (const t of [q, k, v]) t.dispose();
      });
    }

  test("cross-attention shapes (Sq 97, Sk 77, Dv ≠ D) and a custom scale", () => {
    const [B, H, Sq, Sk, D, Dv] = [2, 3, 97, 77, 40, 24];
    const qa = rand(B * H * Sq * D, 1, 2);
    const ka = rand(B * H * Sk * D, 2, 2);
    const va = rand(B * H * Sk * Dv, 3);
    const q = tensor(qa, { shape: [B, H, Sq, D] });
    const k = tensor(ka, { shape: [B, H, Sk, D] });
    const v = tensor(va, { shape: [B, H, Sk, Dv] });
    const ref = reference(qa, ka, va, B * H, Sq, Sk, D, Dv, 0.3);
    checkPair("cross", run(q, k, v, "naive", { scale: 0.3 }), run(q, k, v, "chunked", { scale: 0.3, queryChunk: 32, keyChunk: 30 }), ref);
    for (const t of [q, k, v]) t.dispose();
  });
});

describe("masks", () => {
  const [B, H, S, D] = [2, 2, 97, 40];
  const n = B * H * S * D;
  const qa = rand(n, 21, 2);
  const ka = rand(n, 22, 2);
  const va = rand(n, 23);

  test("additive mask with -inf entries, broadcast over heads", () => {
    const r = prng(5);
    // [B, 1, S, S]: random finite biases, ~30% -inf
    const ma = Float32Array.from({ length: B * S * S }, () => (r() < 0.3 ? -Infinity : r() * 4 - 2));
    const bias = (bh: number, i: number, j: number) => ma[(Math.floor(bh / H) * S + i) * S + j]!;
    tidy(() => {
      const [q, k, v] = [qa, ka, va].map((a) => tensor(a, { shape: [B, H, S, D] })) as [Tensor, Tensor, Tensor];
      const mask = tensor(ma, { shape: [B, 1, S, S] });
      const ref = reference(qa, ka, va, B * H, S, S, D, D, D ** -0.5, bias);
      checkPair("additive mask", run(q, k, v, "naive", { mask }), run(q, k, v, "chunked", { mask, queryChunk: 40, keyChunk: 33 }), ref);
    });
  });

  test("bool keep-mask [B, 1, 1, S] and causal", () => {
    const keep = Array.from({ length: B * S }, (_, i) => (i % S) < (i < S ? 60 : 97)); // row 0: 60 tokens, row 1: all
    tidy(() => {
      const [q, k, v] = [qa, ka, va].map((a) => tensor(a, { shape: [B, H, S, D] })) as [Tensor, Tensor, Tensor];
      const mask = tensor(keep, { shape: [B, 1, 1, S], dtype: "bool" });
      const padBias = (bh: number, _i: number, j: number) => (keep[Math.floor(bh / H) * S + j] ? 0 : -Infinity);
      checkPair(
        "bool mask",
        run(q, k, v, "naive", { mask }),
        run(q, k, v, "chunked", { mask, queryChunk: 40, keyChunk: 33 }),
        reference(qa, ka, va, B * H, S, S, D, D, D ** -0.5, padBias),
      );
      const causal = (_bh: number, i: number, j: number) => (j > i ? -Infinity : 0);
      checkPair(
        "causal",
        run(q, k, v, "naive", { causal: true }),
        run(q, k, v, "chunked", { causal: true, queryChunk: 40, keyChunk: 33 }),
        reference(qa, ka, va, B * H, S, S, D, D, D ** -0.5, causal),
      );
    });
  });

  for (const kind of ["chunked", "fused"])
    test(`fully masked rows: ${kind} gives 0 (not NaN), other rows are unaffected`, () => {
      tidy(() => {
        const [q, k, v] = [qa, ka, va].map((a) => tensor(a, { shape: [B, H, S, D] })) as [Tensor, Tensor, Tensor];
        // query rows 10..19 of every batch see no key at all; keys 50.. are masked for everyone
        const ma = new Float32Array(S * S);
        for (let i = 0; i < S; i++) for (let j = 0; j < S; j++) if ((i >= 10 && i < 20) || j >= 50) ma[i * S + j] = -Infinity;
        const mask = tensor(ma, { shape: [S, S] });
        const out = run(q, k, v, kind, { mask, queryChunk: 16, keyChunk: 32 });
        expect(out.every((x) => Number.isFinite(x))).toBe(true);
        const ref = reference(qa, ka, va, B * H, S, S, D, D, D ** -0.5, (_b, i, j) => ma[i * S + j]!);
        for (let bh = 0; bh < B * H; bh++)
          for (let i = 10; i < 20; i++) for (let d = 0; d < D; d++) expect(out[(bh * S + i) * D + d]).toBe(0);
        expect(maxAbsDiff(out, ref)).toBeLessThan(1e-5);
      });
    });
});

test("float16 inputs: chunked and fused (float32 statistics) match naive to float16 rounding", () => {
  const [B, H, S, D] = [1, 2, 97, 64];
  const n = B * H * S * D;
  const arrays = [rand(n, 31, 2), rand(n, 32, 2), rand(n, 33)];
  tidy(() => {
    const [q, k, v] = arrays.map((a) => tensor(a, { shape: [B, H, S, D], dtype: "float16" })) as [Tensor, Tensor, Tensor];
    const a = tidy(() => scaledDotProductAttention(q, k, v, { kind: "naive", upcast: true }));
    const c = tidy(() => scaledDotProductAttention(q, k, v, { kind: "chunked", queryChunk: 40, keyChunk: 30 }));
    const f = tidy(() => scaledDotProductAttention(q, k, v, { kind: "fused" }));
    for (const t of [a, c, f]) expect(t.dtype).toBe("float16");
    // All compute in float32 from identical float16 inputs; outputs differ by at most ~1 float16 ulp (2^-11 relative).
    expect(maxAbsDiff(a.toTypedArray() as Float32Array, c.toTypedArray() as Float32Array)).toBeLessThanOrEqual(2 ** -10);
    expect(maxAbsDiff(a.toTypedArray() as Float32Array, f.toTypedArray() as Float32Array)).toBeLessThanOrEqual(2 ** -10);
  });
});

test("chunked and fused peak memory is far below naive for 4096-token self-attention (B=1, H=2, D=40)", () => {
  const [B, H, S, D] = [1, 2, 4096, 40];
  const q = tensor(rand(B * H * S * D, 41), { shape: [B, H, S, D] });
  const peaks: Record<string, number> = {};
  for (const kind of ["naive", "chunked", "fused"]) {
    const live0 = memoryStats("cpu").live;
    resetPeakMemory("cpu");
    const o = scaledDotProductAttention(q, q, q, { kind });
    peaks[kind] = memoryStats("cpu").peak - live0;
    o.dispose();
    expect(memoryStats("cpu").live).toBe(live0);
  }
  const scores = B * H * S * S * 4; // one float32 score matrix: 128 MiB
  console.log(
    `4096 tokens: naive peak ${(peaks.naive! / 2 ** 20).toFixed(1)} MiB, chunked peak ${(peaks.chunked! / 2 ** 20).toFixed(1)} MiB, fused peak ${(peaks.fused! / 2 ** 20).toFixed(1)} MiB`,
  );
  expect(peaks.naive!).toBeGreaterThanOrEqual(scores);
  expect(peaks.chunked!).toBeLessThan(scores / 3);
  expect(peaks.fused!).toBe(B * H * S * D * 4); // the output only: the kernel's scratch is not allocator memory
  q.dispose();
}, 60_000); // naive materialises 2 × 128 MiB of scores: ~4 s alone on 2 cores, more on a loaded machine

describe("registry and attention processors", () => {
  test("built-in kinds: fused (used when a call names none), naive, chunked; built-ins cannot be removed", () => {
    expect(attentionKinds()).toEqual(expect.arrayContaining(["fused", "naive", "chunked"]));
    for (const k of ["fused", "naive", "chunked"]) expect(() => unregisterAttention(k)).toThrow(/built in/);
    const m = new Attention(8, { heads: 2, dimHead: 4, device: "meta" });
    expect(m.processor).toBeInstanceOf(AttnProcessorDefault);
    expect(m.attentionKind).toBe("fused");
    m.dispose();
  });

  class Wrap extends Module<[Tensor], Tensor> {
    readonly attn: Attention;
    readonly attn2: Attention;
    constructor() {
      super();
      this.attn = this.child("attn", new Attention(8, { heads: 2, dimHead: 4 }));
      this.attn2 = this.child("attn2", new Attention(8, { heads: 2, dimHead: 4 }));
    }
    forward(x: Tensor): Tensor {
      return tidy(() => this.attn2.call(this.attn.call(x)));
    }
  }

  test("the attention kind is per module: set on a model, per module path, unknown kinds fail at once", () => {
    const seen: string[] = [];
    registerAttention("spy", (q, k, v, opts) => {
      seen.push(`spy scale=${opts.scale.toFixed(3)}`);
      return scaledDotProductAttention(q, k, v, { ...opts, kind: "naive" });
    });
    const m = new Wrap();
    const other = new Wrap(); // a second model keeps its own kind
    randomize(m);
    randomize(other);
    const x = tensor(rand(2 * 5 * 8, 9), { shape: [2, 5, 8] });
    try {
      expect(setAttentionKind(m, "spy")).toBe(2);
      const a = tidy(() => m.call(x).toTypedArray() as Float32Array);
      expect(seen).toEqual(["spy scale=0.500", "spy scale=0.500"]);
      const o = tidy(() => other.call(x).toTypedArray() as Float32Array); // fused: spy not called
      expect(seen.length).toBe(2);
      expect(maxAbsDiff(a, o)).toBeLessThan(1e-6); // naive vs fused, float32 summation order only
      setAttentionKind(m, "chunked", { queryChunk: 2, keyChunk: 3 });
      expect([...attnProcessors(m).values()].map((p) => (p as AttnProcessorDefault).kind)).toEqual(["chunked", "chunked"]);
      const b = tidy(() => m.call(x).toTypedArray() as Float32Array);
      expect(seen.length).toBe(2);
      expect(maxAbsDiff(a, b)).toBeLessThan(1e-6);
      setAttnProcessor(m, (name) => (name === "attn2" ? new AttnProcessorDefault("spy") : null));
      expect(m.attn.attentionKind).toBe("fused");
      expect(m.attn2.attentionKind).toBe("spy");
      tidy(() => void m.call(x));
      expect(seen.length).toBe(3);
      expect(() => setAttentionKind(m, "missing")).toThrow(/unknown attention kind "missing"/);
      expect(m.attn2.attentionKind).toBe("spy"); // nothing changed
      const chooserFails = () =>
        setAttnProcessor(m, (name) => {
          if (name === "attn2") throw new Error("no processor for attn2");
          return new AttnProcessorDefault("naive");
        });
      expect(chooserFails).toThrow("no processor for attn2");
      expect(m.attn.attentionKind).toBe("fused"); // a failing chooser changes no module
    } finally {
      unregisterAttention("spy");
      x.dispose();
      m.dispose();
      other.dispose();
    }
    expect(attentionKinds()).not.toContain("spy");
  });

  test("a custom processor computes from the module's weights; removing it restores the default bit for bit", () => {
    const live0 = memoryStats("cpu").live;
    const m = new Wrap();
    randomize(m);
    const x = tensor(rand(2 * 5 * 8, 4), { shape: [2, 5, 8] });
    const plain = tidy(() => m.call(x));
    // A recording processor that also scales the attention output: proves the processor, not the module, computes.
    const calls: { name: string; q: number[] }[] = [];
    const recording = (name: string): AttnProcessor => ({
      name: "recording",
      process(attn, hidden, encoder, call) {
        const xin = attn.prepareInput(hidden);
        const ctx = encoder ?? xin;
        const q = attn.splitHeads(attn.to_q.call(xin));
        calls.push({ name, q: [...q.shape] });
        const o = attn.attend(q, attn.splitHeads(attn.to_k.call(ctx)), attn.splitHeads(attn.to_v.call(ctx)), call);
        return attn.finishOutput(attn.to_out.at(0).call(attn.mergeHeads(o)).mul(0), hidden);
      },
    });
    setAttnProcessor(m, (name) => recording(name));
    expect([...attnProcessors(m).entries()].map(([k, p]) => `${k}:${p.name}`)).toEqual(["attn:recording", "attn2:recording"]);
    const hooked = tidy(() => m.call(x));
    expect(calls.map((c) => c.name)).toEqual(["attn", "attn2"]);
    expect(calls[0]!.q).toEqual([2, 2, 5, 4]); // [B, H, S, Dh]
    expect(Math.max(...(hooked.toTypedArray() as Float32Array).map(Math.abs))).toBe(0); // attn2's output zeroed by the processor
    setAttnProcessor(m, null);
    const after = tidy(() => m.call(x));
    expect(after.equals(plain)).toBe(true);
    for (const t of [x, plain, hooked, after]) t.dispose();
    m.dispose();
    expect(memoryStats("cpu").live).toBe(live0);
  });
});

/** Load deterministic values in [-0.5, 0.5) into every parameter. */
function randomize(m: Module): void {
  const r = prng(17);
  tidy(() => {
    const values = new Map(m.namedParameters().map(([k, p]) => [k, tensor(Float32Array.from({ length: p.numel }, () => r() - 0.5), { shape: p.shape as number[] })]));
    m.loadStateDict(values);
  });
}

function paramValues(m: Module, key: string): Float32Array {
  return m.getParameter(key).value.toTypedArray() as Float32Array;
}

/** y[b, s, :] = x[b, s, :] @ W.T + bias, float64. */
function linearRef(x: ArrayLike<number>, rows: number, inF: number, w: Float32Array, outF: number, bias?: Float32Array): Float64Array {
  const y = new Float64Array(rows * outF);
  for (let r = 0; r < rows; r++)
    for (let o = 0; o < outF; o++) {
      let acc = bias ? bias[o]! : 0;
      for (let i = 0; i < inF; i++) acc += x[r * inF + i]! * w[o * inF + i]!;
      y[r * outF + o] = acc;
    }
  return y;
}

/** [B, S, H·Dh] -> [B·H, S, Dh] */
function heads(x: Float64Array, B: number, S: number, H: number, Dh: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let b = 0; b < B; b++)
    for (let s = 0; s < S; s++) for (let h = 0; h < H; h++) for (let d = 0; d < Dh; d++) out[((b * H + h) * S + s) * Dh + d] = x[(b * S + s) * H * Dh + h * Dh + d]!;
  return out;
}

function unheads(x: Float64Array, B: number, S: number, H: number, Dh: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let b = 0; b < B; b++)
    for (let s = 0; s < S; s++) for (let h = 0; h < H; h++) for (let d = 0; d < Dh; d++) out[(b * S + s) * H * Dh + h * Dh + d] = x[((b * H + h) * S + s) * Dh + d]!;
  return out;
}

describe("diffusers Attention module", () => {
  test("names: to_q/k/v without bias, to_out.0 with bias; cross_attention_dim sizes to_k/to_v", () => {
    const a = new Attention(320, { crossAttentionDim: 768, heads: 8, dimHead: 40, device: "meta" });
    expect(a.namedParameters().map(([k, p]) => `${k}:${p.shape.join("x")}`)).toEqual([
      "to_q.weight:320x320",
      "to_k.weight:320x768",
      "to_v.weight:320x768",
      "to_out.0.weight:320x320",
      "to_out.0.bias:320",
    ]);
    const vae = new Attention(64, { heads: 1, dimHead: 64, bias: true, normNumGroups: 32, residualConnection: true, device: "meta" });
    expect(vae.namedParameters().map(([k]) => k)).toEqual([
      "group_norm.weight",
      "group_norm.bias",
      "to_q.weight",
      "to_q.bias",
      "to_k.weight",
      "to_k.bias",
      "to_v.weight",
      "to_v.bias",
      "to_out.0.weight",
      "to_out.0.bias",
    ]);
    a.dispose();
    vae.dispose();
  });

  for (const kind of ["naive", "chunked", "fused"])
    test(`cross-attention matches a float64 reference (${kind})`, () => {
      const [B, S, Sk, C, X, H, Dh] = [2, 5, 7, 8, 6, 2, 4];
      const a = new Attention(C, { crossAttentionDim: X, heads: H, dimHead: Dh });
      randomize(a);
      a.setProcessor(new AttnProcessorDefault(kind, { queryChunk: 2, keyChunk: 3 }));
      const xa = rand(B * S * C, 1);
      const ea = rand(B * Sk * X, 2);
      const x = tensor(xa, { shape: [B, S, C] });
      const e = tensor(ea, { shape: [B, Sk, X] });
      const y = tidy(() => a.call(x, e).toTypedArray() as Float32Array);
      const q = heads(linearRef(xa, B * S, C, paramValues(a, "to_q.weight"), H * Dh), B, S, H, Dh);
      const k = heads(linearRef(ea, B * Sk, X, paramValues(a, "to_k.weight"), H * Dh), B, Sk, H, Dh);
      const v = heads(linearRef(ea, B * Sk, X, paramValues(a, "to_v.weight"), H * Dh), B, Sk, H, Dh);
      const o = unheads(reference(q, k, v, B * H, S, Sk, Dh, Dh, Dh ** -0.5), B, S, H, Dh);
      const ref = linearRef(o, B * S, H * Dh, paramValues(a, "to_out.0.weight"), C, paramValues(a, "to_out.0.bias"));
      expect(maxAbsDiff(y, ref)).toBeLessThan(1e-5 * Math.max(1, maxAbs(ref)));
      for (const t of [x, e]) t.dispose();
      a.dispose();
    });

  test("VAE form: 4-D input, group norm, residual connection and output rescale", () => {
    const [B, C, Hh, W] = [1, 8, 3, 5];
    const a = new Attention(C, { heads: 1, dimHead: C, bias: true, normNumGroups: 2, residualConnection: true, rescaleOutputFactor: 2 });
    randomize(a);
    const xa = rand(B * C * Hh * W, 3);
    const x = tensor(xa, { shape: [B, C, Hh, W] });
    const y = tidy(() => a.call(x).toTypedArray() as Float32Array);
    // reference: tokens [HW, C]; group norm over (channels of a group × all positions)
    const S = Hh * W;
    const tokens = new Float64Array(S * C);
    for (let c = 0; c < C; c++) for (let s = 0; s < S; s++) tokens[s * C + c] = xa[c * S + s]!;
    const gw = paramValues(a, "group_norm.weight");
    const gb = paramValues(a, "group_norm.bias");
    const normed = new Float64Array(S * C);
    for (let g = 0; g < 2; g++) {
      let mean = 0;
      let sq = 0;
      for (let c = g * 4; c < g * 4 + 4; c++) for (let s = 0; s < S; s++) mean += tokens[s * C + c]!;
      mean /= 4 * S;
      for (let c = g * 4; c < g * 4 + 4; c++) for (let s = 0; s < S; s++) sq += (tokens[s * C + c]! - mean) ** 2;
      const inv = 1 / Math.sqrt(sq / (4 * S) + 1e-5);
      for (let c = g * 4; c < g * 4 + 4; c++) for (let s = 0; s < S; s++) normed[s * C + c] = (tokens[s * C + c]! - mean) * inv * gw[c]! + gb[c]!;
    }
    const proj = (key: string) => linearRef(normed, S, C, paramValues(a, `${key}.weight`), C, paramValues(a, `${key}.bias`));
    const o = reference(proj("to_q"), proj("to_k"), proj("to_v"), 1, S, S, C, C, C ** -0.5);
    const out = linearRef(o, S, C, paramValues(a, "to_out.0.weight"), C, paramValues(a, "to_out.0.bias"));
    const ref = new Float64Array(C * S);
    for (let c = 0; c < C; c++) for (let s = 0; s < S; s++) ref[c * S + s] = (out[s * C + c]! + xa[c * S + s]!) / 2;
    expect(maxAbsDiff(y, ref)).toBeLessThan(1e-5 * Math.max(1, maxAbs(ref)));
    x.dispose();
    a.dispose();
  });
});
