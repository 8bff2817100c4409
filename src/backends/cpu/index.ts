// The CPU backend: the reference every other backend is tested against, and the fallback
// when no GPU is present. Data movement lives here; each op family has its own file. Code outside
// the backend reaches it through this file only: the backend object, and the GEMM and SIMD controls
// that benchmarks and `info` report.

import type { Backend, TensorView } from "../backend.ts";
import { dtypeBytes } from "../../core/dtype.ts";
import { allocateCpu, borrowCpu, cpuAvailableMemory, cpuMemory } from "./allocator.ts";
import { decodeRaw, encodeRaw, rawOf, readRaw, stridedCopy, storageBytes } from "./strided.ts";
import { numel } from "../../core/shape.ts";
import { binary, binaryScalar, unary, where } from "./elementwise.ts";
import { reduce, reduceWithIndices, softmax } from "./reduce.ts";
import { matmul } from "./matmul.ts";
import { composedLinear } from "../linear-composed.ts";
import { conv2d, invalidateConvWeights } from "./conv.ts";
import { attention } from "./attention.ts";
import { groupNorm, layerNorm } from "./norm.ts";
import { upsampleNearest2d } from "./resample.ts";
import { argsort, gather, indexSelect, scatterAdd } from "./indexing.ts";

export { gemmBackendName, setGemmBackend, setGemmThreads, sgemm } from "./gemm.ts";
export { softmaxSimd } from "./softmax-simd.ts";

function copy(src: TensorView, dst: TensorView): void {
  if (numel(dst.shape) === 0) return;
  invalidateConvWeights(dst.storage); // dst may be a conv weight being (re)loaded in place
  if (src.dtype === dst.dtype) {
    stridedCopy(rawOf(src), src.offset, src.strides, rawOf(dst), dst.offset, dst.strides, dst.shape);
    return;
  }
  const values = decodeRaw(readRaw(src), src.dtype);
  const raw = encodeRaw(values, dst.dtype);
  const contiguous: number[] = [];
  let s = 1;
  for (let i = dst.shape.length - 1; i >= 0; i--) {
    contiguous[i] = s;
    s *= dst.shape[i]!;
  }
  stridedCopy(raw, 0, contiguous, rawOf(dst), dst.offset, dst.strides, dst.shape);
}

function fill(dst: TensorView, value: number): void {
  const n = numel(dst.shape);
  if (n === 0) return;
  invalidateConvWeights(dst.storage);
  const one = encodeRaw(Float64Array.of(value), dst.dtype);
  const raw = rawOf(dst);
  // Broadcast the single encoded element over dst's shape through a zero-stride source.
  stridedCopy(one, 0, dst.shape.map(() => 0), raw, dst.offset, dst.strides, dst.shape);
}

export const cpuBackend: Backend = {
  device: "cpu",
  memory: cpuMemory,
  availableMemory: cpuAvailableMemory,
  allocate: allocateCpu,
  fromHostBytes(bytes, borrow) {
    if (borrow) return borrowCpu(bytes);
    const s = allocateCpu(bytes.byteLength);
    (s.handle as Uint8Array).set(bytes);
    return s;
  },
  toHostBytes(src) {
    const bytes = storageBytes(src);
    const size = dtypeBytes(src.dtype);
    return bytes.subarray(src.offset * size, (src.offset + numel(src.shape)) * size);
  },
  copy,
  fill,
  unary,
  binary,
  binaryScalar,
  where,
  reduce,
  reduceWithIndices,
  softmax,
  matmul,
  /** matmul into out, then bias and activation in place (the reference for every backend's fused linear). */
  linear: (x, w, bias, out, act) => composedLinear(cpuBackend, x, w, bias, out, act),
  conv2d,
  attention,
  groupNorm,
  layerNorm,
  upsampleNearest2d,
  indexSelect,
  gather,
  scatterAdd,
  argsort,
};
