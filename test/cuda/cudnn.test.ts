// The emulated cuDNN through ffi/cuda/cudnn.ts: cross-correlation forward convolution against a float64
// reference (stride, padding, dilation, groups; NCHW and NHWC; float32 / float16 / bfloat16; alpha / beta), the
// algorithm queries and workspace rule, and rejection of what cuDNN rejects.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { ALGO_PERF, cudnnConvolutionFwdAlgo as ALGO, cudnnConvolutionMode, cudnnDataType, cudnnMathType, cudnnTensorFormat } from "../../ffi/cuda/cudnn.ts";
import type { CudaLibraries } from "../../ffi/cuda/index.ts";
import { BUILD_TIMEOUT, Device, EPS, type FLOAT_TAGS, HAS_GXX, decode, emulatedCuda, encode, errorRatio, random } from "./setup.ts";

type DT = (typeof FLOAT_TAGS)[number];
const DTYPE: Record<DT, number> = { f32: cudnnDataType.float, f16: cudnnDataType.half, bf16: cudnnDataType.bfloat16 };
const enc = (v: Float64Array, dt: DT) => encode(v, dt).host;

interface Conv {
  N: number; C: number; H: number; W: number; K: number; R: number; S: number;
  pad: [number, number]; stride: [number, number]; dil: [number, number]; groups: number;
}
const outSize = (c: Conv): [number, number] => [
  Math.floor((c.H + 2 * c.pad[0] - ((c.R - 1) * c.dil[0] + 1)) / c.stride[0]) + 1,
  Math.floor((c.W + 2 * c.pad[1] - ((c.S - 1) * c.dil[1] + 1)) / c.stride[1]) + 1,
];
/** NCHW x, KCRS w -> NCHW y (cross-correlation, as torch.nn.functional.conv2d), float64. */
function convRef(c: Conv, x: Float64Array, w: Float64Array): Float64Array {
  const [OH, OW] = outSize(c);
  const Cg = c.C / c.groups, Kg = c.K / c.groups;
  const y = new Float64Array(c.N * c.K * OH * OW);
  for (let n = 0; n < c.N; n++)
    for (let k = 0; k < c.K; k++)
      for (let oh = 0; oh < OH; oh++)
        for (let ow = 0; ow < OW; ow++) {
          let s = 0;
          for (let ci = 0; ci < Cg; ci++)
            for (let r = 0; r < c.R; r++)
              for (let q = 0; q < c.S; q++) {
                const ih = oh * c.stride[0] - c.pad[0] + r * c.dil[0], iw = ow * c.stride[1] - c.pad[1] + q * c.dil[1];
                if (ih < 0 || ih >= c.H || iw < 0 || iw >= c.W) continue;
                const cin = Math.floor(k / Kg) * Cg + ci;
                s += x[((n * c.C + cin) * c.H + ih) * c.W + iw]! * w[((k * Cg + ci) * c.R + r) * c.S + q]!;
              }
          y[((n * c.K + k) * OH + oh) * OW + ow] = s;
        }
  return y;
}
/** [a, b, c, d] row-major -> [a, c, d, b] (NCHW -> NHWC, KCRS -> KRSC). */
function toLast(v: Float64Array, [a, b, c, d]: number[]): Float64Array {
  const o = new Float64Array(v.length);
  for (let i = 0; i < a; i++) for (let j = 0; j < b; j++) for (let k = 0; k < c; k++) for (let l = 0; l < d; l++)
    o[((i * c + k) * d + l) * b + j] = v[((i * b + j) * c + k) * d + l]!;
  return o;
}

describe.skipIf(!HAS_GXX)("emulated cuDNN", () => {
  let cu: CudaLibraries;
  let dev: Device;
  let s: CudaLibraries["cudnn"]["symbols"];
  let handle = 0;
  const out = new BigUint64Array(1);
  const made = () => Number(out[0]);
  const descs: (() => void)[] = [];

  const tensor = (dt: number, fmt: number, dims: number[]) => {
    cu.cudnnCheck(s.cudnnCreateTensorDescriptor(out), "cudnnCreateTensorDescriptor");
    const d = made();
    descs.push(() => s.cudnnDestroyTensorDescriptor(d));
    cu.cudnnCheck(s.cudnnSetTensor4dDescriptor(d, fmt, dt, dims[0]!, dims[1]!, dims[2]!, dims[3]!), "cudnnSetTensor4dDescriptor");
    return d;
  };
  const filter = (dt: number, fmt: number, dims: number[]) => {
    cu.cudnnCheck(s.cudnnCreateFilterDescriptor(out), "cudnnCreateFilterDescriptor");
    const d = made();
    descs.push(() => s.cudnnDestroyFilterDescriptor(d));
    cu.cudnnCheck(s.cudnnSetFilter4dDescriptor(d, dt, fmt, dims[0]!, dims[1]!, dims[2]!, dims[3]!), "cudnnSetFilter4dDescriptor");
    return d;
  };
  const convolution = (c: Conv, compute: number = cudnnDataType.float) => {
    cu.cudnnCheck(s.cudnnCreateConvolutionDescriptor(out), "cudnnCreateConvolutionDescriptor");
    const d = made();
    descs.push(() => s.cudnnDestroyConvolutionDescriptor(d));
    cu.cudnnCheck(s.cudnnSetConvolution2dDescriptor(d, c.pad[0], c.pad[1], c.stride[0], c.stride[1], c.dil[0], c.dil[1],
      cudnnConvolutionMode.crossCorrelation, compute), "cudnnSetConvolution2dDescriptor");
    cu.cudnnCheck(s.cudnnSetConvolutionGroupCount(d, c.groups), "cudnnSetConvolutionGroupCount");
    // FMA math, as the backend's float32 policy without TF32: CUDNN_DEFAULT_MATH allows TF32 on sm_80+, which
    // the shim emulates by rounding float operands (test/cuda/numerics.test.ts checks that mode)
    cu.cudnnCheck(s.cudnnSetConvolutionMathType(d, cudnnMathType.fma), "cudnnSetConvolutionMathType");
    return d;
  };

  beforeAll(async () => {
    cu = await emulatedCuda();
    dev = new Device(cu);
    s = cu.cudnn.symbols;
    cu.cudnnCheck(s.cudnnCreate(out), "cudnnCreate");
    handle = made();
    cu.cudnnCheck(s.cudnnSetStream(handle, null), "cudnnSetStream");
  }, BUILD_TIMEOUT);
  afterAll(() => {
    for (const d of descs) d();
    if (handle) s.cudnnDestroy(handle);
    dev?.freeAll();
  });

  /** Runs one convolution through the heuristically chosen algorithm and compares with convRef. */
  function check(c: Conv, dt: DT, layout: "NCHW" | "NHWC", alpha = 1, beta = 0) {
    const [OH, OW] = outSize(c);
    const x = decode(enc(random(c.N * c.C * c.H * c.W, 11), dt), dt);
    const w = decode(enc(random(c.K * (c.C / c.groups) * c.R * c.S, 12), dt), dt);
    const y0 = decode(enc(random(c.N * c.K * OH * OW, 13), dt), dt);
    const nhwc = layout === "NHWC";
    const fmt = nhwc ? cudnnTensorFormat.NHWC : cudnnTensorFormat.NCHW;
    const xd = tensor(DTYPE[dt], fmt, [c.N, c.C, c.H, c.W]);
    const wd = filter(DTYPE[dt], fmt, [c.K, c.C / c.groups, c.R, c.S]);
    const cd = convolution(c);
    const dims = new Int32Array(4);
    cu.cudnnCheck(s.cudnnGetConvolution2dForwardOutputDim(cd, xd, wd, dims.subarray(0, 1), dims.subarray(1, 2), dims.subarray(2, 3), dims.subarray(3, 4)),
      "cudnnGetConvolution2dForwardOutputDim");
    expect(Array.from(dims)).toEqual([c.N, c.K, OH, OW]);
    const yd = tensor(DTYPE[dt], fmt, [c.N, c.K, OH, OW]);
    const perf = new Uint8Array(ALGO_PERF.bytes * 8);
    const count = new Int32Array(1);
    cu.cudnnCheck(s.cudnnGetConvolutionForwardAlgorithm_v7(handle, xd, wd, cd, yd, 8, count, perf), "cudnnGetConvolutionForwardAlgorithm_v7");
    const view = new DataView(perf.buffer);
    const algo = view.getInt32(ALGO_PERF.algo, true);
    const need = new BigUint64Array(1);
    cu.cudnnCheck(s.cudnnGetConvolutionForwardWorkspaceSize(handle, xd, wd, cd, yd, algo, need), "cudnnGetConvolutionForwardWorkspaceSize");
    expect(Number(view.getBigUint64(ALGO_PERF.memory, true))).toBe(Number(need[0]));
    const ws = need[0] ? dev.malloc(Number(need[0])) : 0;
    const shape = (dimsOf: number[], v: Float64Array) => (nhwc ? toLast(v, dimsOf) : v);
    const px = dev.upload(enc(shape([c.N, c.C, c.H, c.W], x), dt));
    const pw = dev.upload(enc(shape([c.K, c.C / c.groups, c.R, c.S], w), dt));
    const py = dev.upload(enc(shape([c.N, c.K, OH, OW], y0), dt));
    cu.cudnnCheck(s.cudnnConvolutionForward(handle, new Float32Array([alpha]), xd, px, wd, pw, cd, algo, ws, need[0]!, new Float32Array([beta]), yd, py),
      "cudnnConvolutionForward");
    const got = decode(dev.download(py, enc(new Float64Array(y0.length), dt)), dt);
    const conv = convRef(c, x, w);
    const ref = shape([c.N, c.K, OH, OW], conv.map((v, i) => alpha * v + beta * y0[i]!));
    expect(errorRatio(got, ref, 1e-4, 2 * EPS[dt])).toBeLessThanOrEqual(1);
  }

  const base: Conv = { N: 2, C: 4, H: 9, W: 11, K: 6, R: 3, S: 3, pad: [1, 1], stride: [1, 1], dil: [1, 1], groups: 1 };
  for (const dt of ["f32", "f16", "bf16"] as const) {
    test(`${dt} 3x3, pad 1 (NCHW)`, () => check(base, dt, "NCHW"));
    test(`${dt} stride 2, asymmetric pad, dilation 2x1, 2 groups (NCHW)`, () =>
      check({ ...base, pad: [2, 0], stride: [2, 2], dil: [2, 1], groups: 2 }, dt, "NCHW"));
    test(`${dt} depthwise (groups = channels), 5x1 filter (NHWC)`, () =>
      check({ ...base, K: 4, R: 5, S: 1, pad: [2, 0], groups: 4 }, dt, "NHWC"));
  }
  test("alpha and beta blend with y (NHWC, stride 3, 1x1)", () =>
    check({ ...base, R: 1, S: 1, pad: [0, 0], stride: [3, 2] }, "f32", "NHWC", 0.5, 2));

  test("FindEx runs and ranks every emulated algorithm", () => {
    const xd = tensor(cudnnDataType.float, 0, [1, 2, 5, 5]);
    const wd = filter(cudnnDataType.float, 0, [3, 2, 3, 3]);
    const cd = convolution({ ...base, C: 2, K: 3 });
    const yd = tensor(cudnnDataType.float, 0, [1, 3, 5, 5]);
    const perf = new Uint8Array(ALGO_PERF.bytes * 8);
    const count = new Int32Array(1);
    const ws = 4 * 2 * 9 * 25;
    cu.cudnnCheck(s.cudnnFindConvolutionForwardAlgorithmEx(handle, xd, dev.upload(new Float32Array(50)), wd, dev.upload(new Float32Array(54)), cd, yd,
      dev.malloc(4 * 75), 8, count, perf, dev.malloc(ws), ws), "cudnnFindConvolutionForwardAlgorithmEx");
    const v = new DataView(perf.buffer);
    const algos = Array.from({ length: count[0]! }, (_, i) => v.getInt32(i * ALGO_PERF.bytes + ALGO_PERF.algo, true));
    expect(algos.sort()).toEqual([ALGO.implicitGemm, ALGO.implicitPrecompGemm, ALGO.gemm]);
    for (let i = 0; i < count[0]!; i++) {
      expect(v.getInt32(i * ALGO_PERF.bytes + ALGO_PERF.status, true)).toBe(0);
      expect(v.getFloat32(i * ALGO_PERF.bytes + ALGO_PERF.time, true)).toBeGreaterThanOrEqual(0);
    }
  });

  test("rejects what cuDNN rejects, with a message", () => {
    const BAD = 2000, NOT_SUPPORTED = 3000;
    const d = new Int32Array(4);
    const outDim = (cd: number, xd: number, wd: number) => s.cudnnGetConvolution2dForwardOutputDim(cd, xd, wd, d, d.subarray(1), d.subarray(2), d.subarray(3));
    const f32 = cudnnDataType.float;
    const xd = tensor(f32, 0, [1, 4, 8, 8]);
    expect(outDim(convolution(base), xd, filter(f32, 0, [6, 3, 3, 3]))).toBe(BAD); // 4 input channels vs 3 per group
    expect(outDim(convolution({ ...base, groups: 4 }), xd, filter(f32, 0, [6, 1, 3, 3]))).toBe(BAD); // 6 outputs, 4 groups
    expect(outDim(convolution({ ...base, pad: [0, 0] }), xd, filter(f32, 0, [6, 4, 9, 3]))).toBe(BAD); // filter taller than input
    expect(() => cu.cudnnCheck(outDim(convolution(base), xd, filter(f32, 0, [6, 2, 3, 3])), "cudnnGetConvolution2dForwardOutputDim")).toThrow(
      "cudnnGetConvolution2dForwardOutputDim failed: CUDNN_STATUS_BAD_PARAM (2000): x has 4 channels but the filter has 2 per group x 1 groups",
    );
    cu.cudnnCheck(s.cudnnCreateConvolutionDescriptor(out), "cudnnCreateConvolutionDescriptor");
    const raw = made();
    descs.push(() => s.cudnnDestroyConvolutionDescriptor(raw));
    expect(s.cudnnSetConvolution2dDescriptor(raw, -1, 0, 1, 1, 1, 1, 1, f32)).toBe(BAD); // negative padding
    expect(s.cudnnSetConvolution2dDescriptor(raw, 0, 0, 0, 1, 1, 1, 1, f32)).toBe(BAD); // zero stride
    expect(s.cudnnSetConvolution2dDescriptor(raw, 0, 0, 1, 1, 1, 0, 1, f32)).toBe(BAD); // zero dilation
    expect(s.cudnnSetConvolution2dDescriptor(raw, 0, 0, 1, 1, 1, 1, 7, f32)).toBe(BAD); // no such mode
    expect(s.cudnnSetConvolutionGroupCount(raw, 0)).toBe(BAD);
    expect(outDim(raw, xd, filter(f32, 0, [6, 4, 3, 3]))).toBe(2004); // never set: CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED
    cu.cudnnCheck(s.cudnnCreateTensorDescriptor(out), "cudnnCreateTensorDescriptor");
    const t = made();
    descs.push(() => s.cudnnDestroyTensorDescriptor(t));
    expect(s.cudnnSetTensor4dDescriptor(t, 0, f32, -1, 1, 1, 1)).toBe(BAD);

    // cudnnConvolutionForward: y must have the output shape, data types must match, the workspace must suffice
    const wd = filter(f32, 0, [6, 4, 3, 3]);
    const cd = convolution(base);
    const px = dev.malloc(4 * 256), pw = dev.malloc(4 * 216), py = dev.malloc(4 * 384);
    const one = new Float32Array([1]), zero = new Float32Array([0]);
    const fwd = (y: number, algo: number, ws = 0, wsBytes = 0, x = xd) => s.cudnnConvolutionForward(handle, one, x, px, wd, pw, cd, algo, ws, wsBytes, zero, y, py);
    expect(fwd(tensor(f32, 0, [1, 6, 8, 8]), ALGO.implicitGemm)).toBe(0);
    expect(fwd(tensor(f32, 0, [1, 6, 7, 8]), ALGO.implicitGemm)).toBe(BAD);
    expect(fwd(tensor(cudnnDataType.half, 0, [1, 6, 8, 8]), ALGO.implicitGemm)).toBe(BAD);
    expect(fwd(tensor(f32, 0, [1, 6, 8, 8]), ALGO.gemm, dev.malloc(64), 64)).toBe(BAD); // needs 4·36·64 bytes
    expect(fwd(tensor(f32, 0, [1, 6, 8, 8]), ALGO.fft)).toBe(NOT_SUPPORTED);
    const bf = tensor(cudnnDataType.bfloat16, 0, [1, 4, 8, 8]);
    const halfCompute = convolution(base, cudnnDataType.half);
    expect(s.cudnnConvolutionForward(handle, one, bf, px, filter(cudnnDataType.bfloat16, 0, [6, 4, 3, 3]), pw, halfCompute, 0, 0, 0, zero,
      tensor(cudnnDataType.bfloat16, 0, [1, 6, 8, 8]), py)).toBe(NOT_SUPPORTED); // bfloat16 data needs float compute
  });
});
