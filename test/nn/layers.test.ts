// Layers and feed-forward blocks against float64 references: Linear, Conv2d (stride, padding,
// groups), GroupNorm (+ fused SiLU), LayerNorm, Embedding, activation names, diffusers FeedForward
// (GEGLU / GELU / ApproximateGELU; names net.0.proj and net.2) and CLIP's MLP.

import { describe, expect, test } from "bun:test";
import { CLIPMLP, FeedForward } from "../../src/nn/feed-forward.ts";
import { Conv2d, Embedding, GroupNorm, LayerNorm, Linear, activation } from "../../src/nn/layers.ts";
import type { Module } from "../../src/nn/module.ts";
import { type Tensor, memoryStats, tensor, tidy } from "../../src/tensor/index.ts";
import { prng } from "../helpers/op-harness.ts";

function randomize(m: Module, seed = 3): Map<string, Float32Array> {
  const r = prng(seed);
  const vals = new Map(m.namedParameters().map(([k, p]) => [k, Float32Array.from({ length: p.numel }, () => r() - 0.5)]));
  tidy(() => m.loadStateDict(new Map([...vals].map(([k, v]) => [k, tensor(v, { shape: m.getParameter(k).shape as number[] })]))));
  return vals;
}

function rand(n: number, seed: number): Float32Array {
  const r = prng(seed);
  return Float32Array.from({ length: n }, () => r() * 2 - 1);
}

function expectClose(actual: Tensor, ref: ArrayLike<number>, tol = 1e-5): void {
  const a = actual.toTypedArray() as Float32Array;
  expect(a.length).toBe(ref.length);
  let maxRef = 1;
  for (let i = 0; i < ref.length; i++) maxRef = Math.max(maxRef, Math.abs(ref[i]!));
  for (let i = 0; i < ref.length; i++) if (!(Math.abs(a[i]! - ref[i]!) <= tol * maxRef)) throw new Error(`element ${i}: ${a[i]} vs ${ref[i]}`);
}

function linRef(x: ArrayLike<number>, rows: number, inF: number, w: ArrayLike<number>, outF: number, b?: ArrayLike<number>): Float64Array {
  const y = new Float64Array(rows * outF);
  for (let r = 0; r < rows; r++)
    for (let o = 0; o < outF; o++) {
      let acc = b ? b[o]! : 0;
      for (let i = 0; i < inF; i++) acc += x[r * inF + i]! * w[o * inF + i]!;
      y[r * outF + o] = acc;
    }
  return y;
}

const erf = (x: number): number => {
  // Abramowitz–Stegun 7.1.26 is too coarse; use a series / continued fraction good to 1e-12.
  const t = Math.abs(x);
  if (t < 3) {
    let sum = t;
    let term = t;
    for (let n = 1; n < 100; n++) {
      term *= (-t * t) / n;
      sum += term / (2 * n + 1);
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  let f = 0;
  for (let n = 60; n >= 1; n--) f = n / 2 / (t + f);
  return Math.sign(x) * (1 - Math.exp(-t * t) / Math.sqrt(Math.PI) / (t + f));
};
const geluRef = (x: number) => 0.5 * x * (1 + erf(x / Math.SQRT2));
const quickGeluRef = (x: number) => x / (1 + Math.exp(-1.702 * x));

describe("layers", () => {
  test("Linear with and without bias", () => {
    const live0 = memoryStats("cpu").live;
    for (const bias of [true, false]) {
      const m = new Linear(5, 3, { bias });
      expect(m.namedParameters().map(([k]) => k)).toEqual(bias ? ["weight", "bias"] : ["weight"]);
      const w = randomize(m);
      const x = rand(2 * 4 * 5, 1);
      tidy(() => expectClose(m.call(tensor(x, { shape: [2, 4, 5] })), linRef(x, 8, 5, w.get("weight")!, 3, w.get("bias"))));
      m.dispose();
    }
    expect(memoryStats("cpu").live).toBe(live0);
  });

  test("Conv2d: weight [out, in/groups, kh, kw], stride 2, padding 1, groups 2", () => {
    const [N, C, O, H, W, G] = [1, 4, 6, 5, 7, 2];
    const m = new Conv2d(C, O, 3, { stride: 2, padding: 1, groups: G });
    expect(m.weight.shape).toEqual([O, C / G, 3, 3]);
    const p = randomize(m);
    const w = p.get("weight")!;
    const b = p.get("bias")!;
    const x = rand(N * C * H * W, 2);
    const Ho = Math.floor((H + 2 - 3) / 2) + 1;
    const Wo = Math.floor((W + 2 - 3) / 2) + 1;
    const ref = new Float64Array(O * Ho * Wo);
    const cg = C / G;
    for (let o = 0; o < O; o++)
      for (let i = 0; i < Ho; i++)
        for (let j = 0; j < Wo; j++) {
          let acc = b[o]!;
          const g = Math.floor(o / (O / G));
          for (let c = 0; c < cg; c++)
            for (let ki = 0; ki < 3; ki++)
              for (let kj = 0; kj < 3; kj++) {
                const y = i * 2 - 1 + ki;
                const xx = j * 2 - 1 + kj;
                if (y < 0 || y >= H || xx < 0 || xx >= W) continue;
                acc += x[(g * cg + c) * H * W + y * W + xx]! * w[((o * cg + c) * 3 + ki) * 3 + kj]!;
              }
          ref[(o * Ho + i) * Wo + j] = acc;
        }
    tidy(() => expectClose(m.call(tensor(x, { shape: [N, C, H, W] })), ref));
    m.dispose();
  });

  test("GroupNorm (+ fused SiLU) and LayerNorm", () => {
    const gn = new GroupNorm(2, 6, { eps: 1e-6 });
    const p = randomize(gn);
    const x = rand(2 * 6 * 3, 4);
    const ref = new Float64Array(x.length);
    for (let n = 0; n < 2; n++)
      for (let g = 0; g < 2; g++) {
        const idx: number[] = [];
        for (let c = g * 3; c < g * 3 + 3; c++) for (let s = 0; s < 3; s++) idx.push((n * 6 + c) * 3 + s);
        const mean = idx.reduce((a, i) => a + x[i]!, 0) / idx.length;
        const v = idx.reduce((a, i) => a + (x[i]! - mean) ** 2, 0) / idx.length;
        for (const i of idx) {
          const c = Math.floor(i / 3) % 6;
          ref[i] = ((x[i]! - mean) / Math.sqrt(v + 1e-6)) * p.get("weight")![c]! + p.get("bias")![c]!;
        }
      }
    tidy(() => {
      const xt = tensor(x, { shape: [2, 6, 3] });
      expectClose(gn.call(xt), ref);
      expectClose(gn.call(xt, true), Array.from(ref, (v) => v / (1 + Math.exp(-v))));
    });
    const ln = new LayerNorm(6, { eps: 1e-5 });
    const q = randomize(ln, 9);
    const lref = new Float64Array(x.length);
    for (let r = 0; r < 6; r++) {
      const row = x.subarray(r * 6, r * 6 + 6);
      const mean = row.reduce((a, b) => a + b, 0) / 6;
      const v = row.reduce((a, b) => a + (b - mean) ** 2, 0) / 6;
      for (let i = 0; i < 6; i++) lref[r * 6 + i] = ((row[i]! - mean) / Math.sqrt(v + 1e-5)) * q.get("weight")![i]! + q.get("bias")![i]!;
    }
    tidy(() => expectClose(ln.call(tensor(x, { shape: [6, 6] })), lref));
    const plain = new LayerNorm(4, { elementwiseAffine: false, device: "meta" });
    const noBias = new LayerNorm(4, { bias: false, device: "meta" });
    expect(plain.numParameters()).toBe(0);
    expect(noBias.namedParameters().map(([k]) => k)).toEqual(["weight"]);
    noBias.dispose();
    gn.dispose();
    ln.dispose();
  });

  test("Embedding looks rows up for int64 and int32 ids of any shape", () => {
    const e = new Embedding(10, 3);
    const w = randomize(e).get("weight")!;
    for (const dtype of ["int64", "int32"] as const)
      tidy(() => {
        const ids = tensor([[1, 9], [0, 1]], { dtype });
        const y = e.call(ids);
        expect(y.shape).toEqual([2, 2, 3]);
        expectClose(y, [1, 9, 0, 1].flatMap((i) => Array.from(w.subarray(i * 3, i * 3 + 3))), 0);
      });
    e.dispose();
  });

  test("activation names", () => {
    const x = rand(50, 5).map((v) => v * 4);
    tidy(() => {
      const t = tensor(x);
      expectClose(activation("gelu")(t), Array.from(x, geluRef));
      expectClose(activation("quick_gelu")(t), Array.from(x, quickGeluRef));
      expectClose(activation("silu")(t), Array.from(x, (v) => v / (1 + Math.exp(-v))));
      const tanhGelu = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
      expectClose(activation("gelu_pytorch_tanh")(t), Array.from(x, tanhGelu));
    });
    expect(() => activation("mish")).toThrow(/unsupported activation "mish"/);
  });
});

describe("feed-forward", () => {
  test("FeedForward GEGLU: net.0.proj [2·inner, dim] -> a·gelu(gate) -> net.2", () => {
    const [dim, inner, rows] = [8, 16, 6];
    const ff = new FeedForward(dim, { mult: 2 });
    expect(ff.namedParameters().map(([k, p]) => `${k}:${p.shape.join("x")}`)).toEqual([
      `net.0.proj.weight:${2 * inner}x${dim}`,
      `net.0.proj.bias:${2 * inner}`,
      `net.2.weight:${dim}x${inner}`,
      `net.2.bias:${dim}`,
    ]);
    const p = randomize(ff);
    const x = rand(rows * dim, 6);
    const h = linRef(x, rows, dim, p.get("net.0.proj.weight")!, 2 * inner, p.get("net.0.proj.bias")!);
    const act = new Float64Array(rows * inner);
    for (let r = 0; r < rows; r++) for (let i = 0; i < inner; i++) act[r * inner + i] = h[r * 2 * inner + i]! * geluRef(h[r * 2 * inner + inner + i]!);
    const ref = linRef(act, rows, inner, p.get("net.2.weight")!, dim, p.get("net.2.bias")!);
    tidy(() => expectClose(ff.call(tensor(x, { shape: [2, 3, dim] })), ref));
    ff.dispose();
  });

  test("FeedForward gelu / geglu-approximate and CLIP MLP", () => {
    const [dim, rows] = [4, 3];
    const x = rand(rows * dim, 7);
    for (const [fn, ref] of [
      ["gelu", geluRef],
      ["geglu-approximate", quickGeluRef],
    ] as const) {
      const ff = new FeedForward(dim, { activationFn: fn, innerDim: 5, dimOut: 3 });
      const p = randomize(ff);
      const h = linRef(x, rows, dim, p.get("net.0.proj.weight")!, 5, p.get("net.0.proj.bias")!).map(ref);
      tidy(() => expectClose(ff.call(tensor(x, { shape: [rows, dim] })), linRef(h, rows, 5, p.get("net.2.weight")!, 3, p.get("net.2.bias")!)));
      ff.dispose();
    }
    const mlp = new CLIPMLP(dim, 6, "quick_gelu");
    expect(mlp.namedParameters().map(([k]) => k)).toEqual(["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]);
    const p = randomize(mlp);
    const h = linRef(x, rows, dim, p.get("fc1.weight")!, 6, p.get("fc1.bias")!).map(quickGeluRef);
    tidy(() => expectClose(mlp.call(tensor(x, { shape: [rows, dim] })), linRef(h, rows, 6, p.get("fc2.weight")!, dim, p.get("fc2.bias")!)));
    mlp.dispose();
  });
});
