// Token downsampling (ToDo): torch's nearest-exact index rule, the ToDo processor on one self-attention module
// against attention computed naively in float64 on the downsampled keys/values (queries at full resolution), on the
// CPU and the CUDA device — tolerance 1e-5·max(1, max|ref|): float32 GEMMs and the fused online softmax against a
// float64 reference, as test/nn/attention.test.ts — and applyTokenMerging({ mode: "todo" }) on the UNets: where it
// installs (attn1 of the chosen levels, keeping the attention kind), factor 1 = no ToDo bit for bit, removal restores
// the processors and outputs bit for bit, SDXL's first attention level counts as depth 1.

import { describe, expect, test } from "bun:test";
import path from "node:path";
import { UNet2DConditionModel } from "../../src/models/unet/index.ts";
import { Attention, AttnProcessorDefault } from "../../src/nn/attention.ts";
import type { Module } from "../../src/nn/module.ts";
import { memoryStats, tensor, tidy } from "../../src/tensor/index.ts";
import { applyTokenMerging, removeTokenMerging } from "../../src/tome/index.ts";
import { ToDoProcessor, downsampleTokens, nearestExactIndex } from "../../src/tome/todo.ts";
import { goldenCases, goldenTensor, maxError, openGolden } from "../helpers/golden.ts";
import { prng, testDevices } from "../helpers/op-harness.ts";
import { goldenDir } from "../helpers/paths.ts";

function randomize(m: Module, seed: number): void {
  const r = prng(seed);
  tidy(() => {
    m.loadStateDict(new Map(m.namedParameters().map(([k, p]) => [k, tensor(Float32Array.from({ length: p.numel }, () => r() - 0.5), { shape: p.shape as number[] })])));
  });
}

/** x [rows, inF] · Wᵀ (+ b) in float64. */
function linearRef(x: ArrayLike<number>, rows: number, inF: number, w: ArrayLike<number>, outF: number, b?: ArrayLike<number>): Float64Array {
  const out = new Float64Array(rows * outF);
  for (let i = 0; i < rows; i++)
    for (let o = 0; o < outF; o++) {
      let s = b ? b[o]! : 0;
      for (let k = 0; k < inF; k++) s += x[i * inF + k]! * w[o * inF + k]!;
      out[i * outF + o] = s;
    }
  return out;
}

describe("nearest-exact", () => {
  test("torch's nearest-exact source indices (src = min(⌊(dst + ½)·in/out⌋, in − 1))", () => {
    expect(Array.from(nearestExactIndex(8, 4))).toEqual([1, 3, 5, 7]);
    expect(Array.from(nearestExactIndex(7, 3))).toEqual([1, 3, 5]);
    expect(Array.from(nearestExactIndex(5, 2))).toEqual([1, 3]);
    expect(Array.from(nearestExactIndex(4, 4))).toEqual([0, 1, 2, 3]);
    expect(Array.from(nearestExactIndex(3, 1))).toEqual([1]);
  });
});

describe("ToDo processor", () => {
  for (const device of testDevices())
    test(`on ${device}: q from every token, k/v from the nearest-exact ⌊h/2⌋×⌊w/2⌋ grid = naive float64 attention`, () => {
      const [B, h, w, C, H, Dh, factor] = [2, 6, 5, 16, 2, 8, 2];
      const [nh, nw] = [Math.floor(h / factor), Math.floor(w / factor)];
      const N = h * w;
      const live0 = memoryStats(device).live;
      const a = new Attention(C, { heads: H, dimHead: Dh, device });
      randomize(a, 3);
      const r = prng(9);
      const xa = Float32Array.from({ length: B * N * C }, () => r() * 2 - 1);
      const y = tidy(() => {
        a.setProcessor(new ToDoProcessor(new AttnProcessorDefault("fused"), { size: [h, w] }, factor, 1));
        return a.call(tensor(xa, { shape: [B, N, C], device })).toFloat32Array();
      });
      // reference: token (i, j) of the small grid is token (hi[i], wi[j]) of the full one
      const [hi, wi] = [nearestExactIndex(h, nh), nearestExactIndex(w, nw)];
      const kvIn = new Float64Array(B * nh * nw * C);
      for (let b = 0; b < B; b++)
        for (let i = 0; i < nh; i++)
          for (let j = 0; j < nw; j++)
            for (let c = 0; c < C; c++) kvIn[((b * nh + i) * nw + j) * C + c] = xa[(b * N + hi[i]! * w + wi[j]!) * C + c]!;
      const p = (k: string) => a.getParameter(k).value.toFloat32Array();
      const Nk = nh * nw;
      const q = linearRef(xa, B * N, C, p("to_q.weight"), H * Dh);
      const k = linearRef(kvIn, B * Nk, C, p("to_k.weight"), H * Dh);
      const v = linearRef(kvIn, B * Nk, C, p("to_v.weight"), H * Dh);
      const o = new Float64Array(B * N * H * Dh);
      for (let b = 0; b < B; b++)
        for (let hd = 0; hd < H; hd++)
          for (let i = 0; i < N; i++) {
            const s = new Float64Array(Nk);
            let m = -Infinity;
            for (let j = 0; j < Nk; j++) {
              let d = 0;
              for (let t = 0; t < Dh; t++) d += q[(b * N + i) * H * Dh + hd * Dh + t]! * k[(b * Nk + j) * H * Dh + hd * Dh + t]!;
              s[j] = d * Dh ** -0.5;
              m = Math.max(m, s[j]!);
            }
            let z = 0;
            for (let j = 0; j < Nk; j++) z += (s[j] = Math.exp(s[j]! - m));
            for (let t = 0; t < Dh; t++) {
              let acc = 0;
              for (let j = 0; j < Nk; j++) acc += s[j]! * v[(b * Nk + j) * H * Dh + hd * Dh + t]!;
              o[(b * N + i) * H * Dh + hd * Dh + t] = acc / z;
            }
          }
      const ref = linearRef(o, B * N, H * Dh, p("to_out.0.weight"), C, p("to_out.0.bias"));
      const e = maxError(y, ref);
      expect(y.length).toBe(B * N * C);
      expect(e.maxAbs).toBeLessThanOrEqual(1e-5 * Math.max(1, e.maxRef));
      a.dispose();
      expect(memoryStats(device).live).toBe(live0);
    });

  test("downsampleTokens keeps the selected tokens exactly; factor 1 / no latent size / cross-attention pass through", () => {
    tidy(() => {
      const x = tensor(Float32Array.from({ length: 1 * 12 * 2 }, (_, i) => i), { shape: [1, 12, 2] }); // a 3×4 grid
      const d = downsampleTokens(x, 3, 4, 1, 2); // rows [1], cols [1, 3]
      expect(Array.from(d.toFloat32Array())).toEqual([10, 11, 14, 15]);
      const a = new Attention(2, { heads: 1, dimHead: 2 });
      randomize(a, 1);
      const plain = a.call(x).toFloat32Array();
      for (const proc of [new ToDoProcessor(new AttnProcessorDefault(), { size: [3, 4] }, 1, 1), new ToDoProcessor(new AttnProcessorDefault(), { size: null }, 2, 1)]) {
        a.setProcessor(proc);
        expect(a.call(x).toFloat32Array()).toEqual(plain);
      }
      a.dispose();
    });
  });
});

describe("ToDo on UNets", () => {
  const unetEntry = (model: string) => goldenCases("unet").find((e) => e.meta.model?.split("/").includes(model))!;
  const inputs = (model: string) => {
    const e = unetEntry(model);
    const f = openGolden(e.file);
    const c = Object.keys(e.tensors)[0]!.split("/")[0]!;
    const get = (n: string) => (e.tensors[`${c}/${n}`] ? goldenTensor(f, `${c}/${n}`) : null);
    return { sample: get("sample")!, t: get("timestep")!, ehs: get("encoder_hidden_states")!, extra: { textEmbeds: get("text_embeds"), timeIds: get("time_ids") } };
  };

  test("sd15: attn1 of level 0 only (maxDepth 1), the kind kept; factor 1 = no ToDo; removal restores bit for bit", () => {
    const live0 = memoryStats("cpu").live;
    const unet = UNet2DConditionModel.fromPretrained(path.join(goldenDir, unetEntry("sd15").meta.model!), { attention: "naive" });
    tidy(() => {
      const x = inputs("sd15");
      const run = () => unet.call(x.sample, x.t, x.ehs, x.extra).toFloat32Array();
      const before = new Map(unet.attnProcessors());
      const vanilla = run();
      applyTokenMerging(unet, { mode: "todo", factor: 1 });
      expect(run()).toEqual(vanilla);
      const h = applyTokenMerging(unet, { mode: "todo" });
      expect(h.maxDownsample).toBe(1);
      const todo = [...unet.attnProcessors()].filter(([, p]) => p.name === "todo").map(([k]) => k);
      expect(todo.length).toBeGreaterThan(0);
      const last = unet.up_blocks.length - 1;
      expect(todo.every((k) => /\.attn1$/.test(k) && (k.startsWith("down_blocks.0.") || k.startsWith(`up_blocks.${last}.`)))).toBe(true);
      for (const k of todo) expect(((unet.attnProcessors().get(k) as ToDoProcessor).inner as AttnProcessorDefault).kind).toBe("naive");
      const out = run();
      expect(out.every(Number.isFinite)).toBe(true);
      expect(maxError(out, vanilla).maxAbs).toBeGreaterThan(0);
      removeTokenMerging(unet);
      for (const [k, p] of unet.attnProcessors()) expect(p).toBe(before.get(k)!);
      expect(run()).toEqual(vanilla);
    });
    unet.dispose();
    expect(memoryStats("cpu").live).toBe(live0);
  });

  test("sdxl: depth 1 is the first level with attention (downsample 2)", () => {
    const unet = UNet2DConditionModel.fromPretrained(path.join(goldenDir, unetEntry("sdxl").meta.model!));
    tidy(() => {
      const x = inputs("sdxl");
      const vanilla = unet.call(x.sample, x.t, x.ehs, x.extra).toFloat32Array();
      const h = applyTokenMerging(unet, { mode: "todo" });
      expect(h.maxDownsample).toBe(2);
      expect([...unet.attnProcessors().values()].some((p) => p.name === "todo")).toBe(true);
      const out = unet.call(x.sample, x.t, x.ehs, x.extra).toFloat32Array();
      expect(maxError(out, vanilla).maxAbs).toBeGreaterThan(0);
      removeTokenMerging(unet);
    });
    unet.dispose();
  });
});
