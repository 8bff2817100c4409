// Linear-algebra ops (matmul, mm, bmm, linear, conv2d) on every test device and float dtype, table-driven against
// float64 naive references computed from the exact stored input values: attention-sized matmuls, broadcast batch
// dims, 1-D operands, transposed and strided views, K = 0; convs with padding, stride, dilation, groups, 1×1,
// non-square kernels, "same" padding, the tap-GEMM and unfold paths and one SD-sized conv checked at sampled
// positions; the CPU's repacked-weight cache (hits, invalidation by copy/fill, clearConvWeightCache, LRU bound);
// shape/dtype errors; memory returning to its start (the cache is not allocator memory).

import { beforeAll, describe, expect, test } from "bun:test";
import { cpuBackend } from "../../src/backends/cpu/index.ts";
import { clearConvWeightCache, convWeightCacheStats, setConvWeightCacheLimit } from "../../src/backends/cpu/conv.ts";
import { tidy } from "../../src/tensor/scope.ts";
import { tensor } from "../../src/tensor/creation.ts";
import type { DType } from "../../src/core/dtype.ts";
import type { Device } from "../../src/core/device.ts";
import { Tensor } from "../../src/tensor/tensor.ts";
import { bmm, conv2d, linear, matmul, mm, type Conv2dOptions } from "../../src/tensor/ops/linalg.ts";
import { FLOAT_DTYPES, expectClose, randomTensor, testDevices, tolerance, values } from "../helpers/op-harness.ts";

let liveAtStart = 0;
beforeAll(() => {
  liveAtStart = cpuBackend.memory.live;
});

// ---- references -----------------------------------------------------------------------------

/** Logical values (row-major) of `view`, a view of a contiguous tensor whose values are `base`. */
function viewValues(view: Tensor, base: Float64Array): Float64Array {
  const n = view.numel;
  const out = new Float64Array(n);
  const idx = new Array<number>(view.ndim).fill(0);
  for (let i = 0; i < n; i++) {
    let off = view.offset;
    for (let d = 0; d < view.ndim; d++) off += idx[d]! * view.strides[d]!;
    out[i] = base[off]!;
    for (let d = view.ndim - 1; d >= 0; d--) {
      if (++idx[d]! < view.shape[d]!) break;
      idx[d] = 0;
    }
  }
  return out;
}

function strides(shape: readonly number[]): number[] {
  const s: number[] = [];
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

/** torch.matmul in float64 over row-major values: 1-D promotion/squeeze and broadcast batch dims. */
function refMatmul(a: Float64Array, aShape: readonly number[], b: Float64Array, bShape: readonly number[]): { v: Float64Array; shape: number[] } {
  const as = aShape.length === 1 ? [1, aShape[0]!] : aShape.slice();
  const bs = bShape.length === 1 ? [bShape[0]!, 1] : bShape.slice();
  const M = as[as.length - 2]!;
  const K = as[as.length - 1]!;
  const N = bs[bs.length - 1]!;
  const ab = as.slice(0, -2);
  const bb = bs.slice(0, -2);
  const nb = Math.max(ab.length, bb.length);
  const batch: number[] = [];
  for (let i = 0; i < nb; i++) {
    const x = ab[i - (nb - ab.length)] ?? 1;
    const y = bb[i - (nb - bb.length)] ?? 1;
    batch.push(Math.max(x, y));
  }
  const nBatch = batch.reduce((p, q) => p * q, 1);
  const out = new Float64Array(nBatch * M * N);
  const aSt = strides(ab);
  const bSt = strides(bb);
  for (let bi = 0; bi < nBatch; bi++) {
    // batch index -> per-operand batch offsets (broadcast dims of size 1 stay at 0)
    let rem = bi;
    let ao = 0;
    let bo = 0;
    for (let d = nb - 1; d >= 0; d--) {
      const i = rem % batch[d]!;
      rem = Math.floor(rem / batch[d]!);
      const da = d - (nb - ab.length);
      const db = d - (nb - bb.length);
      if (da >= 0 && ab[da]! > 1) ao += i * aSt[da]!;
      if (db >= 0 && bb[db]! > 1) bo += i * bSt[db]!;
    }
    for (let m = 0; m < M; m++)
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += a[(ao * M + m) * K + k]! * b[(bo * K + k) * N + n]!;
        out[(bi * M + m) * N + n] = s;
      }
  }
  const shape = [...batch, M, N];
  if (bShape.length === 1) shape.pop();
  if (aShape.length === 1) shape.splice(shape.length - (bShape.length === 1 ? 1 : 2), 1);
  return { v: out, shape };
}

interface ConvRef {
  stride: [number, number];
  padTop: number;
  padLeft: number;
  dilation: [number, number];
  groups: number;
}

/** One output element of torch's conv2d (cross-correlation) in float64. */
function convAt(
  x: Float64Array, xShape: number[], w: Float64Array, wShape: number[], bias: Float64Array | null, p: ConvRef,
  n: number, o: number, oh: number, ow: number,
): number {
  const [, C, H, W] = xShape as [number, number, number, number];
  const [O, cg, kh, kw] = wShape as [number, number, number, number];
  const og = O / p.groups;
  const g = Math.floor(o / og);
  let s = bias ? bias[o]! : 0;
  for (let c = 0; c < cg; c++)
    for (let i = 0; i < kh; i++) {
      const ih = oh * p.stride[0] - p.padTop + i * p.dilation[0];
      if (ih < 0 || ih >= H) continue;
      for (let j = 0; j < kw; j++) {
        const iw = ow * p.stride[1] - p.padLeft + j * p.dilation[1];
        if (iw < 0 || iw >= W) continue;
        s += x[((n * C + g * cg + c) * H + ih) * W + iw]! * w[((o * cg + c) * kh + i) * kw + j]!;
      }
    }
  return s;
}

function refConv(
  x: Float64Array, xShape: number[], w: Float64Array, wShape: number[], bias: Float64Array | null, p: ConvRef, OH: number, OW: number,
): Float64Array {
  const N = xShape[0]!;
  const O = wShape[0]!;
  const out = new Float64Array(N * O * OH * OW);
  let q = 0;
  for (let n = 0; n < N; n++)
    for (let o = 0; o < O; o++)
      for (let oh = 0; oh < OH; oh++) for (let ow = 0; ow < OW; ow++) out[q++] = convAt(x, xShape, w, wShape, bias, p, n, o, oh, ow);
  return out;
}

/**
 * tolerance(dtype, K) assumes the partial sums of a K-term float32 accumulation are of order 1; their rounding
 * errors actually scale with the partial sums, which are of the order of the result's RMS (≈ √K/3 for
 * uniform [-1, 1] inputs). Scale the absolute part by that RMS (at least 1).
 */
function accTolerance(dtype: DType, K: number, ref: ArrayLike<number>): { atol: number; rtol: number } {
  let sq = 0;
  for (let i = 0; i < ref.length; i++) sq += ref[i]! * ref[i]!;
  const rms = ref.length ? Math.sqrt(sq / ref.length) : 0;
  const t = tolerance(dtype, K);
  return { atol: t.atol * Math.max(1, rms), rtol: t.rtol };
}

// ---- matmul -----------------------------------------------------------------------------------

interface MatmulCase {
  name: string;
  a: number[]; // shape of the contiguous base tensor
  b: number[];
  aView?: (t: Tensor) => Tensor; // the operand actually passed (a view of the base)
  bView?: (t: Tensor) => Tensor;
  float32Only?: boolean; // large: the float64 reference costs too much to repeat per dtype
}

const MATMUL_CASES: MatmulCase[] = [
  { name: "attention scores [2,8,97,40]@[2,8,40,77]", a: [2, 8, 97, 40], b: [2, 8, 40, 77] },
  { name: "q @ k.T [1,4,77,64]@[1,4,97,64].T", a: [1, 4, 77, 64], b: [1, 4, 97, 64], bView: (t) => t.transpose(-1, -2) },
  { name: "attention values [2,2,97,97]@[2,2,97,80]", a: [2, 2, 97, 97], b: [2, 2, 97, 80] },
  { name: "[2,1025,160]@[2,160,77]", a: [2, 1025, 160], b: [2, 160, 77] },
  { name: "[1025,64]@[64,1025]", a: [1025, 64], b: [64, 1025], float32Only: true },
  { name: "broadcast 2-D rhs [8,97,40]@[40,33]", a: [8, 97, 40], b: [40, 33] },
  { name: "broadcast batch [2,1,5,6]@[3,6,7]", a: [2, 1, 5, 6], b: [3, 6, 7] },
  { name: "broadcast lhs [5,6]@[4,6,3]", a: [5, 6], b: [4, 6, 3] },
  { name: "dot [40]@[40]", a: [40], b: [40] },
  { name: "vector-matrix [40]@[40,7]", a: [40], b: [40, 7] },
  { name: "matrix-vector [5,40]@[40]", a: [5, 40], b: [40] },
  { name: "batched matrix-vector [3,5,40]@[40]", a: [3, 5, 40], b: [40] },
  { name: "vector-batched [40]@[2,40,7]", a: [40], b: [2, 40, 7] },
  { name: "a.T [40,97].T @ [40,33]", a: [40, 97], b: [40, 33], aView: (t) => t.T },
  { name: "a.T @ b.T", a: [64, 19], b: [23, 64], aView: (t) => t.T, bView: (t) => t.T },
  { name: "batched a.T [3,40,17].T @ [3,40,9]", a: [3, 40, 17], b: [3, 40, 9], aView: (t) => t.transpose(1, 2) },
  { name: "narrowed columns (ld > K)", a: [10, 50], b: [40, 12], aView: (t) => t.narrow(1, 5, 40) },
  { name: "every other row (row stride 2K)", a: [12, 40], b: [40, 6], aView: (t) => t.slice(0, 0, 12, 2) },
  { name: "inner stride 2 (materialised)", a: [6, 80], b: [40, 6], aView: (t) => t.slice(1, 0, 80, 2) },
  { name: "permuted batch (non-uniform batch strides)", a: [4, 3, 5, 8], b: [3, 4, 8, 6], aView: (t) => t.permute(1, 0, 2, 3) },
  { name: "expanded rhs batch [3,5,8]@[1,8,4].expand(3,8,4)", a: [3, 5, 8], b: [1, 8, 4], bView: (t) => t.expand(3, 8, 4) },
  { name: "expanded rows of b (stride-0 row, materialised)", a: [5, 4], b: [1, 6], bView: (t) => t.expand(4, 6) },
  { name: "K = 0 [3,0]@[0,4]", a: [3, 0], b: [0, 4] },
  { name: "M = 0 [2,0,5]@[2,5,3]", a: [2, 0, 5], b: [2, 5, 3] },
];

function runMatmul(c: MatmulCase, dtype: DType, device: Device, seed: number): void {
  tidy(() => {
    const A = randomTensor(c.a, dtype, device, seed);
    const B = randomTensor(c.b, dtype, device, seed + 1);
    const av = c.aView ? c.aView(A.t) : A.t;
    const bv = c.bView ? c.bView(B.t) : B.t;
    const ref = refMatmul(viewValues(av, A.v), av.shape, viewValues(bv, B.v), bv.shape);
    const y = matmul(av, bv);
    expect(y.shape).toEqual(ref.shape);
    expect(y.dtype).toBe(dtype);
    expect(y.device).toBe(device);
    const K = av.shape[av.ndim - 1]!;
    // float32 accumulation over K terms, one rounding to the storage dtype
    expectClose(values(y), ref.v, accTolerance(dtype, K, ref.v), `${c.name} ${dtype} ${device}`);
  });
}

describe("matmul", () => {
  for (const device of testDevices())
    for (const dtype of FLOAT_DTYPES)
      for (const [i, c] of MATMUL_CASES.entries()) {
        if (c.float32Only && dtype !== "float32") continue;
        test(`${c.name} ${dtype} ${device}`, () => runMatmul(c, dtype, device, 100 + i));
      }

  test("method form and mm/bmm agree with matmul", () => {
    tidy(() => {
      const A = randomTensor([3, 7, 5], "float32", "cpu", 1);
      const B = randomTensor([3, 5, 4], "float32", "cpu", 2);
      const ref = refMatmul(A.v, [3, 7, 5], B.v, [3, 5, 4]);
      expectClose(values(A.t.matmul(B.t)), ref.v, tolerance("float32", 5), "method matmul");
      expectClose(values(bmm(A.t, B.t)), ref.v, tolerance("float32", 5), "bmm");
      expectClose(values(A.t.bmm(B.t)), ref.v, tolerance("float32", 5), "method bmm");
      const a2 = A.t.select(0, 1);
      const b2 = B.t.select(0, 1);
      const ref2 = refMatmul(viewValues(a2, A.v), [7, 5], viewValues(b2, B.v), [5, 4]);
      expectClose(values(mm(a2, b2)), ref2.v, tolerance("float32", 5), "mm");
      expectClose(values(a2.mm(b2)), ref2.v, tolerance("float32", 5), "method mm");
    });
  });

  test("K = 0 gives zeros (not uninitialised memory)", () => {
    tidy(() => {
      const y = matmul(tensor(new Float32Array(0), { shape: [2, 0] }), tensor(new Float32Array(0), { shape: [0, 3] }));
      expect(y.toArray()).toEqual([
        [0, 0, 0],
        [0, 0, 0],
      ]);
    });
  });
});

// ---- linear -----------------------------------------------------------------------------------

interface LinearCase {
  name: string;
  x: number[];
  out: number;
  bias: boolean;
}

const LINEAR_CASES: LinearCase[] = [
  { name: "[2,77,768] -> 320 with bias", x: [2, 77, 768], out: 320, bias: true },
  { name: "[2,77,768] -> 320 without bias", x: [2, 77, 768], out: 320, bias: false },
  { name: "[97,40] -> 33 with bias", x: [97, 40], out: 33, bias: true },
  { name: "1-D [40] -> 7 with bias", x: [40], out: 7, bias: true },
];

describe("linear", () => {
  for (const device of testDevices())
    for (const dtype of FLOAT_DTYPES)
      for (const [i, c] of LINEAR_CASES.entries())
        test(`${c.name} ${dtype} ${device}`, () => {
          tidy(() => {
            const inF = c.x[c.x.length - 1]!;
            const X = randomTensor(c.x, dtype, device, 200 + i);
            const Wt = randomTensor([c.out, inF], dtype, device, 300 + i);
            const Bs = c.bias ? randomTensor([c.out], dtype, device, 400 + i) : null;
            const y = linear(X.t, Wt.t, Bs?.t);
            // reference: x @ W.T (+ b)
            const wT = new Float64Array(inF * c.out);
            for (let o = 0; o < c.out; o++) for (let k = 0; k < inF; k++) wT[k * c.out + o] = Wt.v[o * inF + k]!;
            const ref = refMatmul(X.v, c.x, wT, [inF, c.out]);
            if (Bs) for (let q = 0; q < ref.v.length; q++) ref.v[q]! += Bs.v[q % c.out]!;
            expect(y.shape).toEqual([...c.x.slice(0, -1), c.out]);
            // the product is rounded to the dtype, then the bias added and rounded again: allow two roundings
            const tol = accTolerance(dtype, inF, ref.v);
            expectClose(values(y), ref.v, c.bias ? { atol: 2 * tol.atol, rtol: 2 * tol.rtol } : tol, `${c.name} ${dtype} ${device}`);
          });
        });
});

// ---- conv2d -----------------------------------------------------------------------------------

interface ConvCase {
  name: string;
  x: number[];
  w: number[];
  bias?: boolean; // default true
  opts: Conv2dOptions;
}

const CONV_CASES: ConvCase[] = [
  { name: "3×3 pad 1 [2,4,16,16]->6", x: [2, 4, 16, 16], w: [6, 4, 3, 3], opts: { padding: 1 } },
  { name: "Downsample2D stride 2 pad 1", x: [2, 4, 16, 16], w: [8, 4, 3, 3], opts: { stride: 2, padding: 1 } },
  { name: "stride 2 odd input", x: [1, 3, 15, 13], w: [5, 3, 3, 3], opts: { stride: 2, padding: 1 } },
  { name: "1×1 direct", x: [2, 8, 9, 11], w: [5, 8, 1, 1], opts: {} },
  { name: "1×1 with padding", x: [1, 4, 5, 5], w: [3, 4, 1, 1], opts: { padding: 1 } },
  { name: "1×1 stride 2", x: [1, 4, 7, 6], w: [3, 4, 1, 1], opts: { stride: 2 } },
  { name: "groups=2", x: [2, 4, 10, 10], w: [6, 2, 3, 3], opts: { padding: 1, groups: 2 } },
  { name: "depthwise", x: [1, 6, 9, 9], w: [6, 1, 3, 3], opts: { padding: 1, groups: 6 } },
  { name: "depthwise multiplier 2", x: [1, 3, 8, 7], w: [6, 1, 3, 3], opts: { padding: 1, groups: 3 } },
  { name: "dilation 2", x: [1, 3, 12, 12], w: [4, 3, 3, 3], opts: { padding: 2, dilation: 2 } },
  { name: "non-square kernel, stride [2,1], padding [1,2]", x: [1, 3, 9, 14], w: [5, 3, 3, 5], opts: { stride: [2, 1], padding: [1, 2] } },
  { name: "padding [0,2] no bias", x: [2, 3, 6, 5], w: [4, 3, 3, 3], bias: false, opts: { padding: [0, 2] } },
  { name: "no padding, no bias", x: [1, 5, 8, 8], w: [7, 5, 3, 3], bias: false, opts: {} },
  { name: 'padding "same" even kernel (asymmetric)', x: [1, 3, 8, 9], w: [4, 3, 4, 2], opts: { padding: "same" } },
  { name: 'padding "same" dilation 2', x: [1, 3, 8, 9], w: [4, 3, 3, 3], opts: { padding: "same", dilation: 2 } },
  { name: 'padding "valid"', x: [1, 3, 8, 9], w: [4, 3, 3, 3], opts: { padding: "valid" } },
  { name: "tap GEMMs [1,64,12,10]->48 3×3", x: [1, 64, 12, 10], w: [48, 64, 3, 3], opts: { padding: 1 } },
  { name: "tap GEMMs groups 2, batch 2, no bias", x: [2, 64, 8, 8], w: [16, 32, 3, 3], bias: false, opts: { padding: 1, groups: 2 } },
  { name: "tap GEMMs dilation 2 padding [2,1]", x: [1, 32, 9, 11], w: [8, 32, 3, 2], opts: { padding: [2, 1], dilation: 2 } },
  { name: "tap GEMMs no padding", x: [1, 32, 7, 6], w: [5, 32, 3, 3], opts: {} },
  { name: "tap GEMMs Downsample2D stride 2 pad 1, odd size", x: [1, 32, 9, 11], w: [8, 32, 3, 3], opts: { stride: 2, padding: 1 } },
  { name: "tap GEMMs stride [2,3] dilation 2 padding [1,2]", x: [1, 32, 10, 13], w: [6, 32, 3, 2], opts: { stride: [2, 3], padding: [1, 2], dilation: 2 } },
  { name: "tap GEMMs groups 2 stride 2 batch 2", x: [2, 64, 8, 7], w: [8, 32, 3, 3], opts: { stride: 2, padding: 1, groups: 2 } },
  // many channels on a small image: the unfold path (input unfolded by tap, weights as they lie)
  { name: "unfold [2,96,4,5]->64 3×3", x: [2, 96, 4, 5], w: [64, 96, 3, 3], opts: { padding: 1 } },
  { name: "unfold groups 2 stride 2 batch 2", x: [2, 64, 6, 5], w: [128, 32, 3, 3], opts: { stride: 2, padding: 1, groups: 2 } },
  { name: "unfold dilation 2 padding [2,1] 3×2 no bias", x: [1, 48, 5, 6], w: [96, 48, 3, 2], bias: false, opts: { padding: [2, 1], dilation: 2 } },
];

/** The reference padding (top, left) and output size for torch's conv2d options. */
function convGeometry(x: number[], w: number[], o: Conv2dOptions): { p: ConvRef; OH: number; OW: number } {
  const two = (v: number | [number, number] | undefined, d: number): [number, number] => (v === undefined ? [d, d] : typeof v === "number" ? [v, v] : v);
  const stride = two(o.stride, 1);
  const dilation = two(o.dilation, 1);
  const [H, W] = [x[2]!, x[3]!];
  const [kh, kw] = [w[2]!, w[3]!];
  let pad: [number, number, number, number]; // top, bottom, left, right
  if (o.padding === "same") {
    const th = dilation[0] * (kh - 1);
    const tw = dilation[1] * (kw - 1);
    pad = [Math.floor(th / 2), th - Math.floor(th / 2), Math.floor(tw / 2), tw - Math.floor(tw / 2)];
  } else if (o.padding === "valid" || o.padding === undefined) pad = [0, 0, 0, 0];
  else {
    const p = two(o.padding, 0);
    pad = [p[0], p[0], p[1], p[1]];
  }
  const OH = Math.floor((H + pad[0] + pad[1] - dilation[0] * (kh - 1) - 1) / stride[0]) + 1;
  const OW = Math.floor((W + pad[2] + pad[3] - dilation[1] * (kw - 1) - 1) / stride[1]) + 1;
  return { p: { stride, padTop: pad[0], padLeft: pad[2], dilation, groups: o.groups ?? 1 }, OH, OW };
}

describe("conv2d", () => {
  for (const device of testDevices())
    for (const dtype of FLOAT_DTYPES)
      for (const [i, c] of CONV_CASES.entries())
        test(`${c.name} ${dtype} ${device}`, () => {
          tidy(() => {
            const X = randomTensor(c.x, dtype, device, 500 + i);
            const Wt = randomTensor(c.w, dtype, device, 600 + i);
            const Bs = c.bias === false ? null : randomTensor([c.w[0]!], dtype, device, 700 + i);
            const { p, OH, OW } = convGeometry(c.x, c.w, c.opts);
            const y = conv2d(X.t, Wt.t, Bs?.t ?? null, c.opts);
            expect(y.shape).toEqual([c.x[0]!, c.w[0]!, OH, OW]);
            expect(y.dtype).toBe(dtype);
            const ref = refConv(X.v, c.x, Wt.v, c.w, Bs?.v ?? null, p, OH, OW);
            const K = c.w[1]! * c.w[2]! * c.w[3]!;
            // float32 accumulation over Cg·kh·kw terms (+ bias), one rounding to the storage dtype
            expectClose(values(y), ref, accTolerance(dtype, K + 1, ref), `${c.name} ${dtype} ${device}`);
          });
        });

  test("strided (non-contiguous) input and unbatched [C,H,W] input", () => {
    tidy(() => {
      const X = randomTensor([4, 2, 9, 8], "float32", "cpu", 801); // used as [2,4,9,8] via a permute
      const Wt = randomTensor([3, 4, 3, 3], "float32", "cpu", 802);
      const xv = X.t.permute(1, 0, 2, 3);
      const xs = viewValues(xv, X.v);
      const { p, OH, OW } = convGeometry([2, 4, 9, 8], [3, 4, 3, 3], { padding: 1 });
      const ref = refConv(xs, [2, 4, 9, 8], Wt.v, [3, 4, 3, 3], null, p, OH, OW);
      expectClose(values(conv2d(xv, Wt.t, null, { padding: 1 })), ref, tolerance("float32", 36), "permuted input");
      const x0 = xv.select(0, 0); // [4, 9, 8]
      const y0 = conv2d(x0, Wt.t, null, { padding: 1 });
      expect(y0.shape).toEqual([3, OH, OW]);
      expectClose(values(y0), ref.subarray(0, 3 * OH * OW), tolerance("float32", 36), "unbatched input");
    });
  });

  test("SD-sized 3×3 [1,320,64,64] -> 320 float32 at sampled positions", () => {
    for (const device of testDevices())
      tidy(() => {
        const xShape = [1, 320, 64, 64];
        const wShape = [320, 320, 3, 3];
        const X = randomTensor(xShape, "float32", device, 901);
        const Wt = randomTensor(wShape, "float32", device, 902, -0.05, 0.05);
        const Bs = randomTensor([320], "float32", device, 903);
        const y = conv2d(X.t, Wt.t, Bs.t, { padding: 1 });
        expect(y.shape).toEqual([1, 320, 64, 64]);
        const yv = y.toFloat32Array();
        const p: ConvRef = { stride: [1, 1], padTop: 1, padLeft: 1, dilation: [1, 1], groups: 1 };
        // borders, corners and a pseudo-random interior sample
        const positions: [number, number, number][] = [];
        for (const o of [0, 1, 159, 319]) for (const [h, w] of [[0, 0], [0, 63], [63, 0], [63, 63], [0, 31], [31, 0], [32, 32]]) positions.push([o, h!, w!]);
        let s = 12345;
        for (let k = 0; k < 200; k++) {
          s = (s * 1103515245 + 12345) >>> 0;
          positions.push([s % 320, (s >>> 9) % 64, (s >>> 15) % 64]);
        }
        const got: number[] = [];
        const want: number[] = [];
        for (const [o, h, w] of positions) {
          got.push(yv[(o * 64 + h) * 64 + w]!);
          want.push(convAt(X.v, xShape, Wt.v, wShape, Bs.v, p, 0, o, h, w));
        }
        // float32 accumulation over 2880 terms
        expectClose(got, want, accTolerance("float32", 2880, want), `SD conv ${device}`);
      });
  });
});

describe("conv2d repacked-weight cache (CPU)", () => {
  // [1,32,20,18] -> 8: the image is large next to the weights, so the tap-GEMM path with cached weights runs
  const xShape = [1, 32, 20, 18];
  const wShape = [8, 32, 3, 3];
  const geo = convGeometry(xShape, wShape, { padding: 1 });
  const ref = (x: Float64Array, w: Float64Array) => refConv(x, xShape, w, wShape, null, geo.p, geo.OH, geo.OW);
  const tol = (r: Float64Array) => accTolerance("float32", 32 * 9, r);

  test("a second call with the same weight hits the cache and gives identical results", () => {
    tidy(() => {
      const X = randomTensor(xShape, "float32", "cpu", 31);
      const W = randomTensor(wShape, "float32", "cpu", 32);
      const s0 = convWeightCacheStats();
      const a = values(conv2d(X.t, W.t, null, { padding: 1 }));
      const s1 = convWeightCacheStats();
      expect(s1.misses).toBe(s0.misses + 1);
      const b = values(conv2d(X.t, W.t, null, { padding: 1 }));
      expect(convWeightCacheStats().hits).toBe(s1.hits + 1);
      expect(b).toEqual(a);
      expectClose(a, ref(X.v, W.v), tol(ref(X.v, W.v)), "cached conv");
      // a different view of the same storage (a narrowed weight) is a different entry: its result equals that of
      // a contiguous copy of the same 4 filters (the same GEMM shapes, so bit for bit; BLAS kernels may round an
      // M = 4 product differently from the first 4 rows of an M = 8 one, so the full result is not the reference)
      const W4 = W.t.narrow(0, 0, 4);
      const misses = convWeightCacheStats().misses;
      const c = values(conv2d(X.t, W4, null, { padding: 1 }));
      expect(convWeightCacheStats().misses).toBe(misses + 1);
      expect(c).toEqual(values(conv2d(X.t, W4.contiguous(), null, { padding: 1 })));
    });
  });

  test("writes through the backend (copy, fill: loadStateDict's route) invalidate the entry", () => {
    tidy(() => {
      const X = randomTensor(xShape, "float32", "cpu", 33);
      const W = randomTensor(wShape, "float32", "cpu", 34);
      conv2d(X.t, W.t, null, { padding: 1 });
      const W2 = randomTensor(wShape, "float32", "cpu", 35);
      cpuBackend.copy(W2.t, W.t); // in place, as loadStateDict does
      expectClose(values(conv2d(X.t, W.t, null, { padding: 1 })), ref(X.v, W2.v), tol(ref(X.v, W2.v)), "after copy");
      cpuBackend.fill(W.t, 0.5);
      const half = new Float64Array(W.v.length).fill(0.5);
      expectClose(values(conv2d(X.t, W.t, null, { padding: 1 })), ref(X.v, half), tol(ref(X.v, half)), "after fill");
    });
  });

  test("bytes written directly into a weight's storage are honoured after clearConvWeightCache()", () => {
    tidy(() => {
      const X = randomTensor(xShape, "float32", "cpu", 36);
      const W = randomTensor(wShape, "float32", "cpu", 37);
      conv2d(X.t, W.t, null, { padding: 1 });
      const bytes = W.t.storage.handle as Uint8Array;
      const f = new Float32Array(bytes.buffer, bytes.byteOffset, W.v.length);
      const W2 = randomTensor(wShape, "float32", "cpu", 38);
      f.set(Float32Array.from(W2.v));
      clearConvWeightCache();
      expect(convWeightCacheStats().entries).toBe(0);
      expectClose(values(conv2d(X.t, W.t, null, { padding: 1 })), ref(X.v, W2.v), tol(ref(X.v, W2.v)), "after clear");
    });
  });

  test("the cache is bounded (LRU) and holds no entry for a released storage", () => {
    const prev = convWeightCacheStats().limit;
    try {
      clearConvWeightCache();
      const entry = 8 * 32 * 9 * 4; // bytes of one repacked weight
      setConvWeightCacheLimit(2 * entry);
      tidy(() => {
        const X = randomTensor(xShape, "float32", "cpu", 39);
        const Ws = [40, 41, 42].map((seed) => randomTensor(wShape, "float32", "cpu", seed));
        for (const W of Ws) conv2d(X.t, W.t, null, { padding: 1 });
        const s = convWeightCacheStats();
        expect(s.entries).toBe(2);
        expect(s.bytes).toBe(2 * entry);
        // the first weight was evicted: using it again is a miss
        conv2d(X.t, Ws[0]!.t, null, { padding: 1 });
        expect(convWeightCacheStats().misses).toBe(s.misses + 1);
        Ws[1]!.t.dispose(); // released: swept at the next insertion
        conv2d(X.t, randomTensor(wShape, "float32", "cpu", 43).t, null, { padding: 1 });
        expect(convWeightCacheStats().entries).toBe(2);
      });
      setConvWeightCacheLimit(0);
      expect(convWeightCacheStats().entries).toBe(0);
    } finally {
      setConvWeightCacheLimit(prev);
    }
  });
});

// ---- errors -----------------------------------------------------------------------------------

describe("shape and dtype errors", () => {
  test("matmul / mm / bmm", () => {
    tidy(() => {
      const z = (...s: number[]) => Tensor.empty(s, "float32", "cpu");
      expect(() => matmul(z(2, 3), z(4, 5))).toThrow(/matmul: inner dimensions do not match: \[2, 3\] @ \[4, 5\] \(3 vs 4\)/);
      expect(() => matmul(z(3), z(4))).toThrow(/inner dimensions/);
      expect(() => matmul(z(2, 2, 3), z(3, 3, 4))).toThrow(/matmul: batch dimensions of \[2, 2, 3\] and \[3, 3, 4\] cannot be broadcast/);
      expect(() => matmul(tensor(1), z(3))).toThrow(/at least 1 dimension/);
      expect(() => matmul(z(2, 3), Tensor.empty([3, 2], "float16", "cpu"))).toThrow(/dtype mismatch/);
      expect(() => matmul(Tensor.empty([2, 3], "int32", "cpu"), Tensor.empty([3, 2], "int32", "cpu"))).toThrow(/floating-point/);
      expect(() => mm(z(2, 3, 4), z(4, 5))).toThrow(/mm: expects two 2-D tensors/);
      expect(() => mm(z(2, 3), z(4, 5))).toThrow(/mm: inner dimensions/);
      expect(() => bmm(z(2, 3, 4), z(3, 4, 5))).toThrow(/bmm: batch sizes do not match/);
      expect(() => bmm(z(3, 4), z(4, 5))).toThrow(/bmm: expects two 3-D tensors/);
      expect(() => bmm(z(2, 3, 4), z(2, 5, 6))).toThrow(/bmm: inner dimensions/);
    });
  });

  test("linear", () => {
    tidy(() => {
      const z = (...s: number[]) => Tensor.empty(s, "float32", "cpu");
      expect(() => linear(z(2, 5), z(3, 4))).toThrow(/linear: input \[2, 5\] has 5 features, weight \[3, 4\] expects 4/);
      expect(() => linear(z(2, 4), z(3, 4), z(4))).toThrow(/linear: bias must have shape \[3\]/);
      expect(() => linear(z(2, 4), z(4))).toThrow(/weight must be 2-D/);
    });
  });

  test("conv2d", () => {
    tidy(() => {
      const z = (...s: number[]) => Tensor.empty(s, "float32", "cpu");
      expect(() => conv2d(z(1, 4, 8, 8), z(6, 3, 3, 3))).toThrow(/conv2d: input \[1, 4, 8, 8\] has 4 channels but weight \[6, 3, 3, 3\] with groups=1 expects 3/);
      expect(() => conv2d(z(1, 4, 8, 8), z(5, 2, 3, 3), null, { groups: 2 })).toThrow(/5 output channels .* not divisible by groups=2/);
      expect(() => conv2d(z(1, 4, 8, 8), z(6, 4, 3, 3), z(5))).toThrow(/bias must have shape \[6\]/);
      expect(() => conv2d(z(4, 8, 8, 1, 1), z(6, 4, 3, 3))).toThrow(/input must be 4-D/);
      expect(() => conv2d(z(1, 4, 8, 8), z(6, 4, 3))).toThrow(/weight must be 4-D/);
      expect(() => conv2d(z(1, 4, 2, 2), z(6, 4, 3, 3))).toThrow(/larger than the padded input/);
      expect(() => conv2d(z(1, 4, 8, 8), z(6, 4, 3, 3), null, { stride: 0 })).toThrow(/stride must be integers ≥ 1/);
      expect(() => conv2d(z(1, 4, 8, 8), z(6, 4, 3, 3), null, { padding: "same", stride: 2 })).toThrow(/"same" needs stride 1/);
      expect(() => conv2d(z(1, 4, 8, 8), Tensor.empty([6, 4, 3, 3], "bfloat16", "cpu"))).toThrow(/dtype mismatch/);
    });
  });
});

test("CPU memory returns to its starting value", () => {
  expect(cpuBackend.memory.live).toBe(liveAtStart);
});
