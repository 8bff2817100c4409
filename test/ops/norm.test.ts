// Normalisation and resampling ops (groupNorm with/without affine and fused SiLU, layerNorm, nearest
// interpolation by size and by scale factor, ×2 upsampling) on every test device and float dtype, table-driven
// against float64 references on the exact stored inputs; the nearest index rule is re-derived here from torch's
// UpSample.h; shape errors; memory returning to its start.

import { beforeAll, describe, expect, test } from "bun:test";
import { cpuBackend } from "../../src/backends/cpu/index.ts";
import { tidy } from "../../src/tensor/scope.ts";
import type { DType } from "../../src/core/dtype.ts";
import { Tensor } from "../../src/tensor/tensor.ts";
import { groupNorm, interpolateNearest, layerNorm, upsampleNearest2x } from "../../src/tensor/ops/norm.ts";
import { FLOAT_DTYPES, expectClose, randomTensor, testDevices, tolerance, values } from "../helpers/op-harness.ts";

let liveAtStart = 0;
beforeAll(() => {
  liveAtStart = cpuBackend.memory.live;
});

// ---- references -------------------------------------------------------------------------------

/** Normalise `n` values at x[off] with population variance into out, then the affine transform per element. */
function normalize(x: Float64Array, off: number, n: number, eps: number, out: Float64Array, affine: (i: number, y: number) => number): void {
  let mean = 0;
  for (let i = 0; i < n; i++) mean += x[off + i]!;
  mean /= n;
  let v = 0;
  for (let i = 0; i < n; i++) v += (x[off + i]! - mean) ** 2;
  v /= n;
  const r = 1 / Math.sqrt(v + eps);
  for (let i = 0; i < n; i++) out[off + i] = affine(i, (x[off + i]! - mean) * r);
}

const silu = (y: number) => y / (1 + Math.exp(-y));

function refGroupNorm(
  x: Float64Array, shape: number[], groups: number, w: Float64Array | null, b: Float64Array | null, eps: number, useSilu: boolean,
): Float64Array {
  const [N, C] = shape as [number, number];
  const S = x.length / (N * C);
  const cg = C / groups;
  const out = new Float64Array(x.length);
  for (let n = 0; n < N; n++)
    for (let g = 0; g < groups; g++)
      normalize(x, (n * C + g * cg) * S, cg * S, eps, out, (i, y) => {
        const c = g * cg + Math.floor(i / S);
        const z = y * (w ? w[c]! : 1) + (b ? b[c]! : 0);
        return useSilu ? silu(z) : z;
      });
  return out;
}

function refLayerNorm(x: Float64Array, normSize: number, w: Float64Array | null, b: Float64Array | null, eps: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let off = 0; off < x.length; off += normSize)
    normalize(x, off, normSize, eps, out, (i, y) => y * (w ? w[i]! : 1) + (b ? b[i]! : 0));
  return out;
}

/**
 * torch's legacy nearest source index (aten/src/ATen/native/UpSample.h, nearest_idx): identity for equal sizes,
 * dst >> 1 for doubling, else min(floor(float(dst) · scale), in − 1) with scale = float(1 / scale_factor) when a
 * scale factor was given, float(in) / out otherwise (all in float32).
 */
function torchNearest(dst: number, inSize: number, outSize: number, scaleFactor?: number): number {
  if (outSize === inSize) return dst;
  if (outSize === 2 * inSize) return dst >> 1;
  const scale = scaleFactor !== undefined ? Math.fround(1 / scaleFactor) : Math.fround(Math.fround(inSize) / Math.fround(outSize));
  return Math.min(Math.floor(Math.fround(Math.fround(dst) * scale)), inSize - 1);
}

function refNearest(x: Float64Array, shape: number[], OH: number, OW: number, sf?: [number, number]): Float64Array {
  const [N, C, H, W] = shape as [number, number, number, number];
  const out = new Float64Array(N * C * OH * OW);
  let q = 0;
  for (let p = 0; p < N * C; p++)
    for (let oh = 0; oh < OH; oh++) {
      const ih = torchNearest(oh, H, OH, sf?.[0]);
      for (let ow = 0; ow < OW; ow++) out[q++] = x[(p * H + ih) * W + torchNearest(ow, W, OW, sf?.[1])]!;
    }
  return out;
}

// ---- group norm -------------------------------------------------------------------------------

interface GroupNormCase {
  name: string;
  shape: number[];
  groups: number;
  affine: boolean;
  silu: boolean;
  eps?: number;
  float32Only?: boolean;
}

const GROUP_NORM_CASES: GroupNormCase[] = [
  { name: "SD [2,320,64,64] groups 32 affine", shape: [2, 320, 64, 64], groups: 32, affine: true, silu: false, float32Only: true },
  { name: "SD [2,320,64,64] groups 32 affine + silu", shape: [2, 320, 64, 64], groups: 32, affine: true, silu: true, float32Only: true },
  { name: "[2,64,7,9] groups 8 affine", shape: [2, 64, 7, 9], groups: 8, affine: true, silu: false },
  { name: "[2,64,7,9] groups 16 affine + silu", shape: [2, 64, 7, 9], groups: 16, affine: true, silu: true },
  { name: "[2,64,7,9] groups 8 no affine", shape: [2, 64, 7, 9], groups: 8, affine: false, silu: false },
  { name: "[2,64,7,9] groups 16 no affine + silu", shape: [2, 64, 7, 9], groups: 16, affine: false, silu: true },
  { name: "[3,6,5] (1-D spatial) groups 3, eps 1e-6", shape: [3, 6, 5], groups: 3, affine: true, silu: false, eps: 1e-6 },
  { name: "[2,4] (no spatial dims) groups 2", shape: [2, 4], groups: 2, affine: true, silu: false },
  { name: "[1,3,5,7] groups 1 affine + silu (odd group size)", shape: [1, 3, 5, 7], groups: 1, affine: true, silu: true },
  // groups of 66246 elements: larger than the SIMD path holds at once (streamed), odd spatial size
  { name: "[1,4,181,183] groups 2 affine + silu (large groups)", shape: [1, 4, 181, 183], groups: 2, affine: true, silu: true, float32Only: true },
  { name: "[1,4,181,183] groups 2 no affine (large groups)", shape: [1, 4, 181, 183], groups: 2, affine: false, silu: false, float32Only: true },
];

describe("groupNorm", () => {
  for (const device of testDevices())
    for (const dtype of FLOAT_DTYPES)
      for (const [i, c] of GROUP_NORM_CASES.entries()) {
        if (c.float32Only && dtype !== "float32") continue;
        test(`${c.name} ${dtype} ${device}`, () => {
          tidy(() => {
            const C = c.shape[1]!;
            // an offset mean checks that the variance does not cancel catastrophically
            const X = randomTensor(c.shape, dtype, device, 10 + i, 2, 4);
            const Wt = c.affine ? randomTensor([C], dtype, device, 20 + i, 0.5, 1.5) : null;
            const Bs = c.affine ? randomTensor([C], dtype, device, 30 + i) : null;
            const eps = c.eps ?? 1e-5;
            const y = groupNorm(X.t, c.groups, Wt?.t, Bs?.t, eps, { silu: c.silu });
            expect(y.shape).toEqual(c.shape);
            expect(y.dtype).toBe(dtype);
            const ref = refGroupNorm(X.v, c.shape, c.groups, Wt?.v ?? null, Bs?.v ?? null, eps, c.silu);
            // statistics accumulate over the group's elements (float32 on GPUs), then one rounding to the dtype
            const groupSize = X.v.length / (c.shape[0]! * c.groups);
            expectClose(values(y), ref, tolerance(dtype, groupSize), `${c.name} ${dtype} ${device}`);
          });
        });
      }

  test("strided input", () => {
    tidy(() => {
      const X = randomTensor([4, 2, 5, 6], "float32", "cpu", 77); // used as [2,4,5,6]
      const xv = X.t.permute(1, 0, 2, 3);
      const xs = Float64Array.from(values(xv));
      const ref = refGroupNorm(xs, [2, 4, 5, 6], 2, null, null, 1e-5, false);
      expectClose(values(groupNorm(xv, 2)), ref, tolerance("float32", 60), "permuted input");
    });
  });
});

// ---- layer norm -------------------------------------------------------------------------------

interface LayerNormCase {
  name: string;
  shape: number[];
  normalized: number[] | number;
  weight: boolean;
  bias: boolean;
}

const LAYER_NORM_CASES: LayerNormCase[] = [
  { name: "CLIP [2,77,768] affine", shape: [2, 77, 768], normalized: 768, weight: true, bias: true },
  { name: "[3,97,40] affine", shape: [3, 97, 40], normalized: [40], weight: true, bias: true },
  { name: "[3,97,40] without weight and bias", shape: [3, 97, 40], normalized: 40, weight: false, bias: false },
  { name: "[3,97,40] weight only", shape: [3, 97, 40], normalized: 40, weight: true, bias: false },
  { name: "[3,97,40] over the last two dims", shape: [3, 97, 40], normalized: [97, 40], weight: true, bias: true },
  { name: "[5,13,37] (odd size) affine", shape: [5, 13, 37], normalized: 37, weight: true, bias: true },
  { name: "[5,13,37] (odd size) bias only", shape: [5, 13, 37], normalized: 37, weight: false, bias: true },
  { name: "[3,20001] rows longer than a block", shape: [3, 20001], normalized: 20001, weight: true, bias: true },
];

describe("layerNorm", () => {
  for (const device of testDevices())
    for (const dtype of FLOAT_DTYPES)
      for (const [i, c] of LAYER_NORM_CASES.entries())
        test(`${c.name} ${dtype} ${device}`, () => {
          tidy(() => {
            const ns = typeof c.normalized === "number" ? [c.normalized] : c.normalized;
            const normSize = ns.reduce((a, b) => a * b, 1);
            const X = randomTensor(c.shape, dtype, device, 40 + i, -3, 5);
            const Wt = c.weight ? randomTensor(ns, dtype, device, 50 + i, 0.5, 1.5) : null;
            const Bs = c.bias ? randomTensor(ns, dtype, device, 60 + i) : null;
            const y = layerNorm(X.t, c.normalized, Wt?.t, Bs?.t);
            expect(y.shape).toEqual(c.shape);
            const ref = refLayerNorm(X.v, normSize, Wt?.v ?? null, Bs?.v ?? null, 1e-5);
            // statistics over normSize elements, one rounding to the dtype
            expectClose(values(y), ref, tolerance(dtype, normSize), `${c.name} ${dtype} ${device}`);
          });
        });
});

// ---- nearest resampling -----------------------------------------------------------------------

interface NearestCase {
  name: string;
  shape: number[];
  size?: [number, number];
  scaleFactor?: number | [number, number];
  out: [number, number];
}

const NEAREST_CASES: NearestCase[] = [
  { name: "size 5×7 -> 11×13", shape: [2, 3, 5, 7], size: [11, 13], out: [11, 13] },
  { name: "size 8×8 -> 3×5 (downsampling)", shape: [1, 2, 8, 8], size: [3, 5], out: [3, 5] },
  { name: "size 6×5 -> 12×5 (doubling rows, identity columns)", shape: [1, 2, 6, 5], size: [12, 5], out: [12, 5] },
  { name: "size 7×3 -> 21×10", shape: [1, 1, 7, 3], size: [21, 10], out: [21, 10] },
  { name: "scaleFactor 2", shape: [2, 3, 5, 7], scaleFactor: 2, out: [10, 14] },
  { name: "scaleFactor 3", shape: [1, 2, 4, 5], scaleFactor: 3, out: [12, 15] },
  { name: "scaleFactor 2.3 (1/2.3 differs from in/out)", shape: [1, 2, 5, 7], scaleFactor: 2.3, out: [11, 16] },
  { name: "scaleFactor [1.5, 0.5]", shape: [1, 2, 5, 8], scaleFactor: [1.5, 0.5], out: [7, 4] },
];

describe("nearest interpolation", () => {
  for (const device of testDevices())
    for (const dtype of FLOAT_DTYPES) {
      test(`upsampleNearest2x [2,3,5,7] ${dtype} ${device}`, () => {
        tidy(() => {
          const X = randomTensor([2, 3, 5, 7], dtype, device, 90);
          const y = upsampleNearest2x(X.t);
          expect(y.shape).toEqual([2, 3, 10, 14]);
          expect(y.dtype).toBe(dtype);
          // a copy of stored values: exact
          expectClose(values(y), refNearest(X.v, [2, 3, 5, 7], 10, 14), { atol: 0, rtol: 0 }, `2x ${dtype}`);
        });
      });
      for (const [i, c] of NEAREST_CASES.entries())
        test(`${c.name} ${dtype} ${device}`, () => {
          tidy(() => {
            const X = randomTensor(c.shape, dtype, device, 100 + i);
            const y = interpolateNearest(X.t, c.size ? { size: c.size } : { scaleFactor: c.scaleFactor! });
            expect(y.shape).toEqual([c.shape[0]!, c.shape[1]!, ...c.out]);
            const sf = c.scaleFactor === undefined ? undefined : typeof c.scaleFactor === "number" ? ([c.scaleFactor, c.scaleFactor] as [number, number]) : c.scaleFactor;
            expectClose(values(y), refNearest(X.v, c.shape, c.out[0], c.out[1], sf), { atol: 0, rtol: 0 }, `${c.name} ${dtype}`);
          });
        });
    }

  test("strided input and integer dtypes are copied exactly", () => {
    tidy(() => {
      const X = randomTensor([3, 2, 4, 5], "float32", "cpu", 7);
      const xv = X.t.permute(1, 0, 2, 3); // [2, 3, 4, 5]
      const y = upsampleNearest2x(xv);
      expectClose(values(y), refNearest(Float64Array.from(values(xv)), [2, 3, 4, 5], 8, 10), { atol: 0, rtol: 0 }, "permuted");
      const xi = X.t.to("int32");
      const yi = interpolateNearest(xi, { size: [5, 9] });
      expect(yi.dtype).toBe("int32");
      expectClose(values(yi), refNearest(values(xi), [3, 2, 4, 5], 5, 9), { atol: 0, rtol: 0 }, "int32");
    });
  });
});

// ---- errors -----------------------------------------------------------------------------------

describe("shape errors", () => {
  const z = (s: number[], dtype: DType = "float32") => Tensor.empty(s, dtype, "cpu");
  test("groupNorm", () => {
    tidy(() => {
      expect(() => groupNorm(z([2, 30, 4, 4]), 32)).toThrow(/groupNorm: 30 channels of \[2, 30, 4, 4\] are not divisible into 32 groups/);
      expect(() => groupNorm(z([2, 32, 4, 4]), 8, z([16]))).toThrow(/groupNorm: weight must have shape \[32\]/);
      expect(() => groupNorm(z([2, 32, 4, 4]), 8, z([32]), z([32, 1]))).toThrow(/groupNorm: bias must have shape \[32\]/);
      expect(() => groupNorm(z([32]), 8)).toThrow(/input must be \[N, C, \.\.\.\]/);
      expect(() => groupNorm(z([2, 32, 4, 4]), 8, z([32], "float16"))).toThrow(/dtype mismatch/);
    });
  });
  test("layerNorm", () => {
    tidy(() => {
      expect(() => layerNorm(z([2, 77, 768]), 512)).toThrow(/layerNorm: normalizedShape \[512\] does not match the trailing dims of input \[2, 77, 768\]/);
      expect(() => layerNorm(z([2, 77, 768]), 768, z([512]))).toThrow(/layerNorm: weight must have shape \[768\]/);
      expect(() => layerNorm(z([2, 77, 768]), [2, 77, 768, 1])).toThrow(/does not match/);
    });
  });
  test("interpolateNearest", () => {
    tidy(() => {
      expect(() => interpolateNearest(z([2, 3, 4]), { size: [8, 8] })).toThrow(/must be 4-D/);
      expect(() => interpolateNearest(z([1, 3, 4, 4]), {})).toThrow(/exactly one of size and scaleFactor/);
      expect(() => interpolateNearest(z([1, 3, 4, 4]), { size: [8, 8], scaleFactor: 2 })).toThrow(/exactly one/);
      expect(() => interpolateNearest(z([1, 3, 4, 4]), { size: [0, 8] })).toThrow(/positive integers/);
      expect(() => interpolateNearest(z([1, 3, 4, 4]), { scaleFactor: 0.1 })).toThrow(/empty output/);
      expect(() => upsampleNearest2x(z([3, 4, 4]))).toThrow(/must be 4-D/);
    });
  });
});

test("CPU memory returns to its starting value", () => {
  expect(cpuBackend.memory.live).toBe(liveAtStart);
});
