// Channels-last on the CUDA device (the emulated one without a GPU), below the op tests of test/ops/channels-last:
// - element-wise ops on NHWC operands — NHWC ⊕ NHWC, NHWC ⊕ per-channel bias [C] / [B, C, 1, 1], NHWC ⊕ scalar —
//   take the 16-byte vector path (bdk_elementwise_last_width) and are exact, where the same NHWC storage seen with
//   an odd channel count takes the scalar path;
// - the NHWC GroupNorm kernel (kernels/norm_nhwc.cu) against float64 at a split group whose mean is far from zero
//   (100 ± 1: the two-pass statistics' hard case) and at odd sizes: within 4e-5 + half an ulp, decision 21's bound
//   for the NCHW kernel;
// - the layout-conversion count (src/backends/cuda/layout-copies.ts) counts NCHW ↔ NHWC and [B, C, L] ↔ [B, L, C]
//   copies and nothing else (order-keeping copies, broadcasts, attention's head merge);
// - convolutions of the two layouts use separate cuDNN plans.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cudaContext } from "../../src/backends/cuda/context.ts";
import { convPlanCount } from "../../src/backends/cuda/conv.ts";
import { isLayoutConversion } from "../../src/backends/cuda/layout-copies.ts";
import { hasBackend } from "../../src/backends/registry.ts";
import { channelsLastStrides } from "../../src/core/memory-format.ts";
import { contiguousStrides } from "../../src/core/shape.ts";
import type { DType } from "../../src/core/dtype.ts";
import { type Tensor, add, conv2d, groupNorm, memoryStats, mul, tensor, toMemoryFormat } from "../../src/tensor/index.ts";
import { randomValues, roundTo, values } from "../helpers/op-harness.ts";

const HAS_CUDA = hasBackend("cuda");
const FLOATS: DType[] = ["float32", "float16", "bfloat16"];
const lastWidth = () => cudaContext().k.bdk_elementwise_last_width!() as number;
const HALF_ULP: Record<string, number> = { float32: 2 ** -24, float16: 2 ** -11, bfloat16: 2 ** -8 };

let live0 = 0;
beforeAll(() => {
  if (HAS_CUDA) live0 = memoryStats("cuda").live;
});
afterAll(() => {
  if (HAS_CUDA) expect(memoryStats("cuda").live).toBe(live0);
});

describe("layout-conversion count", () => {
  const s = [2, 8, 5, 3];
  const nchw = contiguousStrides(s);
  const nhwc = channelsLastStrides(s);
  test("counts NCHW ↔ NHWC and [B, C, L] ↔ [B, L, C]", () => {
    expect(isLayoutConversion(s, nchw, nhwc)).toBe(true);
    expect(isLayoutConversion(s, nhwc, nchw)).toBe(true);
    expect(isLayoutConversion([1, 8, 5, 3], contiguousStrides([1, 8, 5, 3]), channelsLastStrides([1, 8, 5, 3]))).toBe(true); // batch 1
    expect(isLayoutConversion([2, 8, 15], [120, 1, 8], contiguousStrides([2, 8, 15]))).toBe(true); // tokens [B, L, C] viewed as [B, C, L]
  });
  test("does not count order-keeping copies, broadcasts or other permutations", () => {
    expect(isLayoutConversion(s, nchw, nchw)).toBe(false);
    expect(isLayoutConversion(s, nhwc, nhwc)).toBe(false);
    // a narrow of an NHWC tensor with 12 channels into an NHWC one of 8 (a concatenation's part)
    expect(isLayoutConversion(s, [5 * 3 * 12, 1, 3 * 12, 12], nhwc)).toBe(false);
    expect(isLayoutConversion(s, [0, 1, 0, 0], nhwc)).toBe(false); // per-channel broadcast
    expect(isLayoutConversion(s, [0, 1, 0, 0], nchw)).toBe(false);
    // attention's head merge: [B, H, S, D] → [B, S, H, D] storage
    const h = [2, 4, 16, 8];
    expect(isLayoutConversion([2, 16, 4, 8], [512, 8, 128, 1], contiguousStrides([2, 16, 4, 8]))).toBe(false);
    expect(isLayoutConversion(h, contiguousStrides(h), contiguousStrides(h))).toBe(false);
  });
});

describe.skipIf(!HAS_CUDA)("element-wise ops on NHWC storage", () => {
  for (const dtype of FLOATS)
    test(`${dtype}: NHWC ⊕ NHWC, ⊕ per-channel bias and ⊕ scalar take the vector path and are exact`, () => {
      const shape = [2, 16, 3, 5];
      const [, C] = shape as [number, number];
      const n = shape.reduce((a, b) => a * b, 1);
      const va = randomValues(n, dtype, 41, -3, 3), vb = randomValues(n, dtype, 42, -3, 3), vc = randomValues(C, dtype, 43, -3, 3);
      const a0 = tensor(va, { shape, dtype, device: "cuda" }), b0 = tensor(vb, { shape, dtype, device: "cuda" });
      const a = toMemoryFormat(a0, "channelsLast"), b = toMemoryFormat(b0, "channelsLast");
      const bias = tensor(vc, { shape: [1, C, 1, 1], dtype, device: "cuda" });
      const bias1 = bias.reshape([C, 1, 1]);
      const made: Tensor[] = [a0, b0, a, b, bias, bias1];
      const perChannel = (i: number) => Math.floor(i / (shape[2]! * shape[3]!)) % C;
      try {
        const check = (r: Tensor, want: (i: number) => number, label: string) => {
          made.push(r);
          expect(lastWidth(), label).toBeGreaterThan(1);
          expect(r.memoryFormat, label).toBe("channelsLast");
          expect(Array.from(values(r)), label).toEqual(Array.from({ length: n }, (_, i) => want(i)));
        };
        check(add(a, b), (i) => roundTo(dtype, Math.fround(va[i]! + vb[i]!)), "NHWC + NHWC");
        check(add(a, bias), (i) => roundTo(dtype, Math.fround(va[i]! + vc[perChannel(i)]!)), "NHWC + [1, C, 1, 1]");
        check(add(bias1, a), (i) => roundTo(dtype, Math.fround(vc[perChannel(i)]! + va[i]!)), "[C, 1, 1] + NHWC");
        check(mul(a, 0.5), (i) => roundTo(dtype, Math.fround(va[i]! * 0.5)), "NHWC · scalar");
      } finally {
        for (const t of made) t.dispose();
      }
    });
});

describe.skipIf(!HAS_CUDA)("NHWC GroupNorm kernel against float64", () => {
  function reference(v: Float64Array, [N, C, S]: number[], G: number, w: Float64Array, b: Float64Array, eps: number, silu: boolean): Float64Array {
    const out = new Float64Array(v.length);
    const cg = C! / G;
    for (let n = 0; n < N!; n++)
      for (let g = 0; g < G; g++) {
        let sum = 0;
        for (let c = g * cg; c < (g + 1) * cg; c++) for (let s = 0; s < S!; s++) sum += v[(n * C! + c) * S! + s]!;
        const mean = sum / (cg * S!);
        let q = 0;
        for (let c = g * cg; c < (g + 1) * cg; c++) for (let s = 0; s < S!; s++) q += (v[(n * C! + c) * S! + s]! - mean) ** 2;
        const rstd = 1 / Math.sqrt(q / (cg * S!) + eps);
        for (let c = g * cg; c < (g + 1) * cg; c++)
          for (let s = 0; s < S!; s++) {
            const i = (n * C! + c) * S! + s;
            const y = (v[i]! - mean) * rstd * w[c]! + b[c]!;
            out[i] = silu ? y / (1 + Math.exp(-y)) : y;
          }
      }
    return out;
  }
  for (const c of [
    { name: "split [1, 32, 40, 40] G 4 at mean 100 ± 1", shape: [1, 32, 40, 40], G: 4, lo: 99, hi: 101 },
    { name: "odd [3, 6, 7, 5] G 2", shape: [3, 6, 7, 5], G: 2, lo: -3, hi: 3 },
    { name: "split, one wide group [2, 640, 4, 4] G 1 (pieces of whole pixels)", shape: [2, 640, 4, 4], G: 1, lo: -3, hi: 3 },
  ])
    for (const dtype of FLOATS)
      test(`${c.name}, ${dtype}: within 4e-5 + half an ulp`, () => {
        const [N, C, H, W] = c.shape as [number, number, number, number];
        const n = N * C * H * W;
        const v = randomValues(n, dtype, 61, c.lo, c.hi), w = randomValues(C, dtype, 62, 0.5, 1.5), b = randomValues(C, dtype, 63, -0.5, 0.5);
        const x0 = tensor(v, { shape: c.shape, dtype, device: "cuda" });
        const x = toMemoryFormat(x0, "channelsLast");
        const wt = tensor(w, { dtype, device: "cuda" }), bt = tensor(b, { dtype, device: "cuda" });
        try {
          for (const silu of [false, true]) {
            const y = groupNorm(x, c.G, wt, bt, 1e-5, { silu });
            try {
              expect(y.memoryFormat).toBe("channelsLast");
              const ref = reference(v, [N, C, H * W], c.G, w, b, 1e-5, silu);
              const got = values(y);
              for (let i = 0; i < n; i++) {
                const bound = 4e-5 + HALF_ULP[dtype]! * Math.abs(ref[i]!) * 2;
                if (!(Math.abs(got[i]! - ref[i]!) <= bound)) throw new Error(`element ${i}: ${got[i]} vs ${ref[i]} (bound ${bound}, silu ${silu})`);
              }
            } finally {
              y.dispose();
            }
          }
        } finally {
          for (const t of [x0, x, wt, bt]) t.dispose();
        }
      });
});

describe.skipIf(!HAS_CUDA)("convolution plans", () => {
  test("NHWC and NCHW convolutions of one shape use separate cuDNN plans", () => {
    const x = tensor(randomValues(2 * 4 * 6 * 6, "float32", 71), { shape: [2, 4, 6, 6], device: "cuda" });
    const w = tensor(randomValues(8 * 4 * 9, "float32", 72), { shape: [8, 4, 3, 3], device: "cuda" });
    const xl = toMemoryFormat(x, "channelsLast"), wl = toMemoryFormat(w, "channelsLast");
    const before = convPlanCount();
    const a = conv2d(x, w, null, { padding: 1 });
    const afterNchw = convPlanCount();
    const b = conv2d(xl, wl, null, { padding: 1 });
    try {
      expect(afterNchw - before).toBeLessThanOrEqual(1); // 0 when an earlier test planned this shape
      expect(convPlanCount()).toBe(afterNchw + 1);
      expect(b.memoryFormat).toBe("channelsLast");
    } finally {
      for (const t of [x, w, xl, wl, a, b]) t.dispose();
    }
  });
});
