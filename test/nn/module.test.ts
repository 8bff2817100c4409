// Module: registration names equal checkpoint keys, construction on meta allocates nothing,
// strict loading reports missing / unexpected / mis-shaped keys together (and loads nothing),
// dtype conversion on load (F32 -> F16/BF16, F16/BF16 -> F32, unaligned mapped bytes), rename /
// ignore, materialising a meta module, hooks, to(), and dispose returning CPU live bytes to start.

import { describe, expect, test } from "bun:test";
import { parseSafetensors, serializeSafetensors, type TensorInput } from "../../src/io/safetensors.ts";
import { FeedForward } from "../../src/nn/feed-forward.ts";
import { Attention } from "../../src/nn/attention.ts";
import { Linear, LayerNorm } from "../../src/nn/layers.ts";
import { LoadStateDictError, Module, ModuleList, type ModuleOptions } from "../../src/nn/module.ts";
import { type Tensor, cat, memoryStats, resetPeakMemory, tensor, tidy } from "../../src/tensor/index.ts";
import { f32ArrayToBf16, f32ArrayToF16, roundBf16, roundF16 } from "../../src/core/half.ts";

/** A tiny transformer-ish block: names as diffusers' BasicTransformerBlock uses them. */
class Block extends Module<[Tensor], Tensor> {
  readonly norm1: LayerNorm;
  readonly attn1: Attention;
  readonly ff: FeedForward;
  constructor(dim: number, opts: ModuleOptions) {
    super(opts);
    this.norm1 = this.child("norm1", new LayerNorm(dim, opts));
    this.attn1 = this.child("attn1", new Attention(dim, { ...opts, heads: 2, dimHead: dim / 2 }));
    this.ff = this.child("ff", new FeedForward(dim, { ...opts, mult: 2 }));
  }
  forward(x: Tensor): Tensor {
    return tidy(() => this.ff.call(this.attn1.call(this.norm1.call(x))));
  }
}

class Toy extends Module<[Tensor], Tensor> {
  readonly proj_in: Linear;
  readonly transformer_blocks: ModuleList<Block>;
  constructor(opts: ModuleOptions = {}) {
    super(opts);
    this.proj_in = this.child("proj_in", new Linear(3, 8, opts));
    this.transformer_blocks = this.child("transformer_blocks", new ModuleList([new Block(8, opts), new Block(8, opts)], opts));
  }
  forward(x: Tensor): Tensor {
    return tidy(() => {
      let h = this.proj_in.call(x);
      for (const b of this.transformer_blocks) h = b.call(h);
      return h;
    });
  }
}

const BLOCK_KEYS = [
  "norm1.weight",
  "norm1.bias",
  "attn1.to_q.weight",
  "attn1.to_k.weight",
  "attn1.to_v.weight",
  "attn1.to_out.0.weight",
  "attn1.to_out.0.bias",
  "ff.net.0.proj.weight",
  "ff.net.0.proj.bias",
  "ff.net.2.weight",
  "ff.net.2.bias",
];

/** Deterministic values for every parameter of `m`, as F32 bytes by key. */
function fakeWeights(m: Module, seed = 1): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  let s = seed;
  for (const [k, p] of m.namedParameters()) {
    const v = new Float32Array(p.numel);
    for (let i = 0; i < v.length; i++) v[i] = Math.sin((s += 1.37)) * 0.5 + 1e-3 * i;
    out.set(k, v);
  }
  return out;
}

/** A parsed in-memory safetensors file holding `weights` stored as `dtype`. */
function source(m: Module, weights: Map<string, Float32Array>, dtype: "F32" | "F16" | "BF16" = "F32", shift = 0) {
  const tensors: Record<string, TensorInput> = {};
  const shapes = new Map(m.namedParameters().map(([k, p]) => [k, [...p.shape]]));
  for (const [k, v] of weights) {
    const data = dtype === "F32" ? v : dtype === "F16" ? f32ArrayToF16(v) : f32ArrayToBf16(v);
    tensors[k] = { dtype, shape: shapes.get(k)!, data };
  }
  const bytes = serializeSafetensors(tensors);
  if (!shift) return parseSafetensors(bytes, "<toy>");
  // The same file image starting at an odd address: every tensor's bytes are unaligned.
  const shifted = new Uint8Array(bytes.length + shift);
  shifted.set(bytes, shift);
  return parseSafetensors(shifted.subarray(shift), "<toy-unaligned>");
}

function values(t: Tensor): number[] {
  return Array.from(t.toTypedArray() as Float32Array);
}

describe("Module names and construction", () => {
  test("namedParameters paths are the checkpoint keys, in torch order", () => {
    const m = new Toy({ device: "meta" });
    const keys = m.namedParameters().map(([k]) => k);
    expect(keys).toEqual([
      "proj_in.weight",
      "proj_in.bias",
      ...BLOCK_KEYS.map((k) => `transformer_blocks.0.${k}`),
      ...BLOCK_KEYS.map((k) => `transformer_blocks.1.${k}`),
    ]);
    expect(m.getParameter("transformer_blocks.1.ff.net.0.proj.weight").shape).toEqual([32, 8]); // GEGLU: 2·inner
    expect(m.getSubmodule("transformer_blocks.0.attn1.to_out.0")).toBeInstanceOf(Linear);
    expect(() => m.getSubmodule("transformer_blocks.7")).toThrow(/transformer_blocks\.7/);
    m.dispose();
  });

  test("meta construction allocates no CPU memory and counts parameters and bytes", () => {
    const cpu0 = memoryStats("cpu").live;
    const meta0 = memoryStats("meta").live;
    const m = new Toy({ device: "meta", dtype: "float16" });
    expect(memoryStats("cpu").live).toBe(cpu0);
    const n = m.numParameters();
    expect(n).toBe(m.parameters().reduce((a, p) => a + p.numel, 0));
    expect(m.parameterBytes()).toBe(2 * n);
    expect(memoryStats("meta").live - meta0).toBe(2 * n);
    m.dispose();
    expect(memoryStats("meta").live).toBe(meta0);
  });

  test("modules built inside tidy() keep their parameters", () => {
    const m = tidy(() => new Linear(2, 2));
    expect(m.weight.value.isDisposed).toBe(false);
    m.dispose();
  });
});

describe("loadStateDict", () => {
  test("strict mode lists every missing, unexpected and mis-shaped key in one error and loads nothing", () => {
    const m = new Toy();
    const w = fakeWeights(m);
    const good = new Map([...w].map(([k, v]) => [k, tensor(v, { shape: m.getParameter(k).shape as number[] })]));
    const before = values(m.proj_in.weight.value);
    const bad = new Map(good);
    bad.delete("transformer_blocks.1.attn1.to_k.weight");
    bad.set("transformer_blocks.0.attn1.to_k.bias", tensor([1, 2, 3]));
    bad.set("proj_in.weight", tensor(new Float32Array(8 * 4), { shape: [8, 4] }));
    let err: unknown;
    try {
      m.loadStateDict(bad);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LoadStateDictError);
    const msg = (err as Error).message;
    expect(msg).toContain("missing keys (1): transformer_blocks.1.attn1.to_k.weight");
    expect(msg).toContain("unexpected keys (1): transformer_blocks.0.attn1.to_k.bias");
    expect(msg).toContain("proj_in.weight expected [8, 3] got [8, 4]");
    const r = (err as LoadStateDictError).report;
    expect(r.missing).toEqual(["transformer_blocks.1.attn1.to_k.weight"]);
    expect(r.unexpected).toEqual(["transformer_blocks.0.attn1.to_k.bias"]);
    expect(r.mismatched).toEqual([{ key: "proj_in.weight", expected: [8, 3], got: [8, 4] }]);
    // nothing was loaded (the check runs before any copy)
    const after = values(m.proj_in.weight.value);
    expect(after.every((v, i) => Object.is(v, before[i]))).toBe(true);

    const report = m.loadStateDict(bad, { strict: false });
    expect(report.loaded).toBe(m.parameters().length - 2); // all but the missing and the mis-shaped
    expect(values(m.getParameter("transformer_blocks.0.ff.net.2.bias").value)).toEqual(Array.from(w.get("transformer_blocks.0.ff.net.2.bias")!));
    for (const t of [...good.values(), ...bad.values()]) t.dispose();
    m.dispose();
  });

  test("rename and ignore map source keys", () => {
    const m = new Linear(2, 3);
    const src = new Map([
      ["model.w", tensor([[1, 2], [3, 4], [5, 6]])],
      ["model.b", tensor([7, 8, 9])],
      ["model.position_ids", tensor([0, 1, 2])],
    ]);
    const r = m.loadStateDict(src, {
      rename: (k) => (k === "model.w" ? "weight" : k === "model.b" ? "bias" : k),
      ignore: [/position_ids$/],
    });
    expect(r).toEqual({ missing: [], unexpected: [], mismatched: [], loaded: 2 });
    expect(values(m.weight.value)).toEqual([1, 2, 3, 4, 5, 6]);
    for (const t of src.values()) t.dispose();
    m.dispose();
  });

  for (const [stored, dtype, round] of [
    ["F32", "float16", roundF16],
    ["F32", "bfloat16", roundBf16],
    ["F16", "float32", roundF16],
    ["BF16", "float32", roundBf16],
    ["F16", "bfloat16", (x: number) => roundBf16(roundF16(x))],
  ] as const) {
    for (const shift of [0, 1]) {
      test(`converts ${stored} -> ${dtype} on load${shift ? " from unaligned bytes" : ""}`, () => {
        const m = new Toy({ dtype });
        const w = fakeWeights(m, 3);
        const live0 = memoryStats("cpu").live;
        m.loadStateDict(source(m, w, stored, shift));
        expect(memoryStats("cpu").live).toBe(live0); // values went into the existing storage
        for (const [k, p] of m.namedParameters()) {
          expect(p.dtype).toBe(dtype);
          const want = Array.from(w.get(k)!, (x) => round(x));
          expect(values(p.value)).toEqual(want);
        }
        m.dispose();
      });
    }
  }

  test("a meta module is materialised parameter by parameter: live = weights, peak ≤ weights + one tensor", () => {
    const m = new Toy({ device: "meta", dtype: "float16" });
    const w = fakeWeights(m, 5);
    const src = source(m, w, "F32");
    const live0 = memoryStats("cpu").live;
    resetPeakMemory("cpu");
    m.loadStateDict(src, { device: "cpu", dtype: "float16" });
    const bytes = m.parameterBytes();
    const largest = Math.max(...m.parameters().map((p) => p.numel * 4));
    expect(memoryStats("cpu").live - live0).toBe(bytes);
    expect(memoryStats("cpu").peak - live0).toBeLessThanOrEqual(bytes + largest);
    expect(m.device).toBe("cpu");
    expect(m.transformer_blocks.at(1).ff.device).toBe("cpu");
    expect(values(m.proj_in.bias!.value)).toEqual(Array.from(w.get("proj_in.bias")!, roundF16));
    // and it runs
    const x = tensor([[[0.1, 0.2, 0.3]]], { dtype: "float16" });
    const y = m.call(x);
    expect(y.shape).toEqual([1, 1, 8]);
    x.dispose();
    y.dispose();
    m.dispose();
    expect(memoryStats("cpu").live).toBe(live0);
  });

  test("a meta module loaded without a device only checks names and shapes", () => {
    const m = new Toy({ device: "meta" });
    const src = source(m, fakeWeights(m));
    const r = m.loadStateDict(src);
    expect(r.missing.length + r.unexpected.length + r.mismatched.length).toBe(0);
    expect(m.parameters().every((p) => p.device === "meta")).toBe(true);
    m.dispose();
  });
});

describe("hooks", () => {
  test("pre-hooks may replace arguments, post-hooks the output; remove() unregisters", () => {
    const m = new Linear(2, 1, { bias: false });
    const wt = tensor([[1, 10]]);
    m.loadStateDict(new Map([["weight", wt]]));
    wt.dispose();
    const calls: string[] = [];
    const h1 = m.registerForwardPreHook((mod, [x]) => {
      calls.push(`pre:${mod === m}`);
      return [tidy(() => x.mul(2))];
    });
    const h2 = m.registerForwardPostHook((_mod, args, out) => {
      calls.push(`post:${args.length}`);
      const r = out.add(1);
      out.dispose();
      args[0].dispose(); // the pre-hook's replacement argument
      return r;
    });
    const x = tensor([[1, 2]]);
    const y = m.call(x);
    expect(values(y)).toEqual([2 * (1 + 20) + 1]);
    expect(calls).toEqual(["pre:true", "post:1"]);
    y.dispose();
    h1.remove();
    h2.remove();
    h2.remove(); // idempotent
    const z = m.call(x);
    expect(values(z)).toEqual([21]);
    expect(calls.length).toBe(2);
    // forward() bypasses hooks by design
    const h3 = m.registerForwardPostHook(() => {
      throw new Error("hook ran");
    });
    const f = m.forward(x);
    expect(() => tidy(() => m.call(x))).toThrow("hook ran"); // tidy releases the output a throwing hook left
    h3.remove();
    for (const t of [x, z, f]) t.dispose();
    m.dispose();
  });
});

describe("forward wrappers", () => {
  /** A Toy model with deterministic weights. */
  function toy(): Toy {
    const m = new Toy();
    const w = fakeWeights(m, 7);
    const shapes = new Map(m.namedParameters().map(([k, p]) => [k, [...p.shape]]));
    const src = new Map([...w].map(([k, v]) => [k, tensor(v, { shape: shapes.get(k)! })]));
    m.loadStateDict(src);
    for (const t of src.values()) t.dispose();
    return m;
  }
  const input = () => tensor(Float32Array.from({ length: 2 * 5 * 3 }, (_, i) => Math.cos(i * 0.7)), { shape: [2, 5, 3] }); // [B, S, 3]

  test("a wrapper may call forward zero, one or many times; nesting follows registration order", () => {
    const m = new Linear(2, 1, { bias: false });
    const wt = tensor([[1, 10]]);
    m.loadStateDict(new Map([["weight", wt]]));
    wt.dispose();
    const order: string[] = [];
    const x = tensor([[1, 2]]);
    // zero: the wrapper answers by itself
    const skip = m.registerForwardWrapper(() => tensor([[-1]]));
    const y0 = m.call(x);
    expect(values(y0)).toEqual([-1]);
    skip.remove();
    // many: forward twice, outputs summed; an inner wrapper doubles the input
    const outer = m.registerForwardWrapper((_m, args, next) => {
      order.push("outer");
      const a = next(...args);
      const b = next(...args);
      const r = a.add(b);
      a.dispose();
      b.dispose();
      return r;
    });
    const inner = m.registerForwardWrapper((_m, [t], next) => {
      order.push("inner");
      const d = t.mul(2);
      try {
        return next(d);
      } finally {
        d.dispose();
      }
    });
    const pre = m.registerForwardPreHook(() => void order.push("pre"));
    const post = m.registerForwardPostHook(() => void order.push("post"));
    const y = m.call(x);
    expect(values(y)).toEqual([2 * (2 * 21)]);
    expect(order).toEqual(["pre", "outer", "inner", "inner", "post"]);
    expect(m.hookCount).toBe(4);
    for (const h of [outer, inner, pre, post]) h.remove();
    expect(m.hookCount).toBe(0);
    const z = m.call(x);
    expect(values(z)).toEqual([21]);
    for (const t of [x, y0, y, z]) t.dispose();
    m.dispose();
  });

  test("every hook kind composes on a model, and once removed the output equals the unhooked run bit for bit", () => {
    const before = memoryStats("cpu").live;
    const m = toy();
    const x = input();
    const plain = m.call(x);
    const rowsSeen: number[] = [];
    // A tiling-like wrapper on proj_in: the batch one row at a time, joined again.
    const tile = m.proj_in.registerForwardWrapper((_m, [t], next) =>
      tidy(() => {
        const rows: Tensor[] = [];
        for (let b = 0; b < t.shape[0]!; b++) {
          rowsSeen.push(b);
          rows.push(next(t.narrow(0, b, 1)));
        }
        return cat(rows, 0);
      }),
    );
    const pre = m.transformer_blocks.at(1).registerForwardPreHook((_m, [h]) => [h]); // returns the same argument
    const post = m.transformer_blocks.at(0).registerForwardPostHook(() => undefined); // observes only
    const hooked = m.call(x);
    expect(rowsSeen).toEqual([0, 1]);
    // Row-wise projection equals the batched one to float rounding (GEMM shapes differ per row).
    const scale = Math.max(...values(plain).map(Math.abs));
    values(hooked).forEach((v, i) => expect(Math.abs(v - values(plain)[i]!)).toBeLessThanOrEqual(1e-5 * scale));
    for (const h of [tile, pre, post]) h.remove();
    const after = m.call(x);
    expect(after.equals(plain)).toBe(true);
    for (const t of [x, plain, hooked, after]) t.dispose();
    m.dispose();
    expect(memoryStats("cpu").live).toBe(before);
  });
});

describe("placement and lifetime", () => {
  test("to(dtype) converts every parameter; dispose returns CPU live bytes to the start", () => {
    const live0 = memoryStats("cpu").live;
    const m = new Toy();
    const w = fakeWeights(m, 7);
    m.loadStateDict(source(m, w));
    expect(memoryStats("cpu").live - live0).toBe(m.numParameters() * 4);
    m.to("bfloat16");
    expect(m.dtype).toBe("bfloat16");
    expect(m.parameters().every((p) => p.dtype === "bfloat16")).toBe(true);
    expect(memoryStats("cpu").live - live0).toBe(m.numParameters() * 2);
    expect(values(m.proj_in.weight.value)).toEqual(Array.from(w.get("proj_in.weight")!, roundBf16));
    const x = tensor([[[0.5, -0.5, 1]]], { dtype: "bfloat16" });
    const y = m.call(x);
    expect(y.shape).toEqual([1, 1, 8]);
    x.dispose();
    y.dispose();
    m.dispose();
    expect(memoryStats("cpu").live).toBe(live0);
  });
});
