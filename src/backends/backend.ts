// The backend contract: what a device must compute. Shape, dtype and broadcasting logic
// lives once in src/tensor/ops; a backend receives already-checked views (storage, dtype,
// shape, element strides, offset) and writes into an output it did not allocate.
//
// Conventions every method follows:
// - `out` is a fresh, contiguous tensor of the right shape and dtype unless stated otherwise. conv2d, groupNorm and
//   upsampleNearest2d may get a dense channels-last `out` (core/memory-format.ts: the op layer keeps an input's
//   memory format); element-wise ops on channels-last tensors receive views permuted to storage order instead.
// - Inputs may be arbitrary strided views (stride 0 = broadcast) unless stated otherwise.
// - Floating-point work is done in float32 (or wider) and rounded to the output dtype once.

import type { DType } from "../core/dtype.ts";
import type { Device } from "../core/device.ts";
import type { MemoryTracker } from "../core/memory-stats.ts";
import type { Storage } from "../core/storage.ts";

/** The layout of a tensor as a backend sees it. `Tensor` satisfies this structurally. */
export interface TensorView {
  readonly storage: Storage;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  readonly offset: number;
}

export type UnaryOp =
  | "neg"
  | "exp"
  | "log"
  | "sqrt"
  | "rsqrt"
  | "abs"
  | "sigmoid"
  | "tanh"
  | "silu"
  | "gelu" // erf form
  | "gelu_tanh"
  | "quick_gelu" // x * sigmoid(1.702 x)
  | "sin"
  | "cos"
  | "relu"
  | "square"
  | "reciprocal"
  | "floor"
  | "ceil"
  | "round" // half to even, as torch.round
  | "sign"
  | "logical_not"
  | "clamp"; // p0 = min, p1 = max (±Infinity when absent)

export type BinaryOp =
  | "add"
  | "sub"
  | "mul"
  | "div"
  | "pow"
  | "maximum"
  | "minimum"
  | "eq"
  | "ne"
  | "lt"
  | "le"
  | "gt"
  | "ge"
  | "logical_and"
  | "logical_or";

/** The activation a backend's `linear` may fuse: none, or gelu(approximate="tanh"). */
export type LinearActivation = "none" | "gelu_tanh";

export type ReduceOp = "sum" | "mean" | "max" | "min" | "argmax" | "argmin" | "var" | "prod";

export interface Conv2dParams {
  stride: [number, number];
  padding: [number, number];
  dilation: [number, number];
  groups: number;
}

/** Memory a device can still give: what generate() checks a predicted need against. */
export interface DeviceMemory {
  /** Bytes that can be allocated now (including what the allocator caches for reuse). */
  available: number;
  /** The device's (or the process's) total memory. */
  total: number;
  /** The largest single allocation possible, or null when only `available` limits it. */
  maxAllocation: number | null;
  /** Where the numbers come from, for messages ("free memory (MemAvailable)", "cudaMemGetInfo …"). */
  source: string;
}

export interface Backend {
  readonly device: Device;
  readonly memory: MemoryTracker;
  /** What can still be allocated; absent on backends that hold no memory (meta). */
  availableMemory?(): DeviceMemory;

  /**
   * Why this device cannot hold tensors of `dtype` (e.g. bfloat16 on a GPU before compute capability 8.0), or
   * null; absent when every dtype is supported. Checked whenever a tensor is allocated or moved there.
   */
  dtypeProblem?(dtype: DType): string | null;

  /** Allocate uninitialised storage. Throws OutOfMemoryError when it cannot. */
  allocate(byteLength: number): Storage;
  /** Storage holding a copy of host bytes, or (CPU, `borrow`) wrapping them without a copy. */
  fromHostBytes(bytes: Uint8Array, borrow: boolean): Storage;
  /** Host bytes of a contiguous view (the CPU returns a view of its own storage: copy before keeping or writing). */
  toHostBytes(src: TensorView): Uint8Array;

  /** dst[...] = src[...] for same-shape views, any strides, converting dtype when they differ. */
  copy(src: TensorView, dst: TensorView): void;
  /** Set every element of a (possibly strided) view to `value`. */
  fill(dst: TensorView, value: number): void;

  unary(op: UnaryOp, x: TensorView, out: TensorView, p0?: number, p1?: number): void;
  /** a and b have out's shape (broadcast views). Comparison ops write bool. */
  binary(op: BinaryOp, a: TensorView, b: TensorView, out: TensorView): void;
  /** op(a, scalar), or op(scalar, a) when `scalarFirst`. */
  binaryScalar(op: BinaryOp, a: TensorView, scalar: number, out: TensorView, scalarFirst: boolean): void;
  /** out = cond ? a : b; all of out's shape. */
  where(cond: TensorView, a: TensorView, b: TensorView, out: TensorView): void;

  /**
   * Reduce over `dims` (sorted, unique). `out` has x's shape with those dims set to 1
   * (keepdim layout; the op layer squeezes). `correction` is used by "var" (1 = unbiased).
   */
  reduce(op: ReduceOp, x: TensorView, dims: readonly number[], out: TensorView, correction: number): void;
  /**
   * Optional: max (or min) over `dim` with the (first) index of each extreme in one pass; values has x's dtype,
   * indices int64, both in the keepdim layout. Must equal reduce("max"/"min") and reduce("argmax"/"argmin").
   * Backends without it get the two reductions.
   */
  reduceWithIndices?(op: "max" | "min", x: TensorView, dim: number, values: TensorView, indices: TensorView): void;
  /** Softmax (or log-softmax) over the last dimension. */
  softmax(x: TensorView, out: TensorView, log: boolean): void;

  /**
   * out[..., M, N] = a[..., M, K] @ b[..., K, N]. Batch dims of a and b equal out's (broadcast
   * views with stride 0 allowed); the last two dims of a and b may be any strides.
   */
  matmul(a: TensorView, b: TensorView, out: TensorView): void;
  /**
   * The linear layer in one call: out[..., M, N] = act(x[..., M, K] · w[N, K]ᵀ + bias[N]), bias and activation
   * applied to the float32 result before its one rounding where the backend fuses them (CUDA: a cuBLASLt epilogue),
   * else in out in place (`composedLinear`). x: ≥ 2-D, any strides; w and bias: any strides; out contiguous with x's
   * leading dims. act "gelu_tanh" is gelu(approximate="tanh"), the only activation cuBLASLt's GELU epilogue computes.
   */
  linear(x: TensorView, w: TensorView, bias: TensorView | null, out: TensorView, act: LinearActivation): void;
  /**
   * conv2d of [N, C, H, W] views, cross-correlation as torch. w: [O, C/groups, kh, kw]; bias: [O] or null. out is
   * row-major or dense channels-last (the op layer's choice when x or w is channels-last).
   */
  conv2d(x: TensorView, w: TensorView, bias: TensorView | null, out: TensorView, p: Conv2dParams): void;
  /**
   * Device bytes conv2d would allocate through this backend's allocator besides its output (workspaces, contiguous
   * copies) for these views; only shapes, strides and dtypes are read, so the views may be meta's. The memory
   * planner uses it to model this backend on "meta". Absent: none (e.g. the CPU's scratch lives outside the allocator).
   */
  conv2dScratchBytes?(x: TensorView, w: TensorView, out: TensorView, p: Conv2dParams): number;
  /**
   * Fused scaled dot-product attention: out = softmax(scale·q·kᵀ + mask)·v, computed blockwise with an online
   * softmax (no [Sq, Sk] score matrix). q [B, H, Sq, D], k [B, H, Sk, D], v [B, H, Sk, Dv]: one float dtype, any
   * strides (the views of permuted [B, S, H·D] projections are read in place where the backend can).
   * out [B, H, Sq, Dv]: contiguous, q's dtype. mask: null, or a [B, H, Sq, Sk] view (stride 0 on broadcast dims),
   * additive when float, a keep-mask when bool/uint8 (false = -inf). causal: query i attends keys j ≤ i (top-left
   * aligned), on top of the mask. Scores, softmax statistics and the accumulator are float32 (or wider) for every
   * dtype; the output is rounded once. A row with no visible key (all -inf, or Sk = 0) gives 0, not NaN.
   */
  attention(q: TensorView, k: TensorView, v: TensorView, out: TensorView, scale: number, mask: TensorView | null, causal: boolean): void;

  /**
   * x: [N, C, ...]; per (n, group) statistics in fp32; optional fused SiLU after the affine. add: null, or an [N, C]
   * view (any strides): the values normalised are x + add[n, c] rounded to x's dtype — what a separate broadcast add
   * would store (diffusers' norm2(h + temb[:, :, None, None])) — and the sum is not stored.
   */
  groupNorm(
    x: TensorView, weight: TensorView | null, bias: TensorView | null, groups: number, eps: number, out: TensorView, silu: boolean,
    add?: TensorView | null,
  ): void;
  /** Normalise over the trailing `normSize` elements of each row. */
  layerNorm(x: TensorView, weight: TensorView | null, bias: TensorView | null, normSize: number, eps: number, out: TensorView): void;
  /** Nearest-neighbour resize of the last two dims (torch "nearest": src = floor(dst * in / out)). */
  upsampleNearest2d(x: TensorView, out: TensorView): void;

  /** out = x.index_select(dim, index); index is 1-D int32/int64. */
  indexSelect(x: TensorView, dim: number, index: TensorView, out: TensorView): void;
  /** out = torch.gather(x, dim, index); out has index's shape. */
  gather(x: TensorView, dim: number, index: TensorView, out: TensorView): void;
  /** out (holding a copy of the base) += src scattered along dim at index (torch scatter_add). */
  scatterAdd(out: TensorView, dim: number, index: TensorView, src: TensorView): void;
  /** Indices (int64) that sort x along its last dim; stable. */
  argsort(x: TensorView, descending: boolean, out: TensorView): void;
}
