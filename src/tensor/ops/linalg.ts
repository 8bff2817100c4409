// Linear-algebra ops with torch semantics: matmul (1-D dot, 1-D promotion and squeeze, broadcast batch dims),
// mm, bmm, linear (x @ weight.T + bias, weight [out, in] as torch) and conv2d (NCHW; stride, padding incl.
// "same"/"valid", dilation, groups). Shapes and dtypes are checked here once, with messages naming the op and
// shapes; the backend receives views (broadcast batch dims have stride 0, transposes are strided views, no copies).
// Tensor methods: matmul, mm, bmm.

import type { Conv2dParams, LinearActivation } from "../../backends/backend.ts";
import { TensorError } from "../../core/errors.ts";
import { broadcastShapes, formatShape } from "../../core/shape.ts";
import { Tensor, backendFor, disposeAll, requireFloat, sameDType } from "./common.ts";
import { memoryFormatOf } from "../../core/memory-format.ts";
import { toMemoryFormat } from "./memory-format.ts";

declare module "../tensor.ts" {
  interface Tensor {
    /** torch.matmul(this, other). */
    matmul(other: Tensor): Tensor;
    /** 2-D matrix product (torch.mm). */
    mm(other: Tensor): Tensor;
    /** Batched 3-D matrix product without broadcasting (torch.bmm). */
    bmm(other: Tensor): Tensor;
  }
}

/** out[..., M, N] = a[..., M, K] @ b[..., K, N] for ≥2-D views whose batch dims already equal `batch`. */
function batchedMatmul(op: string, a: Tensor, b: Tensor, batch: number[]): Tensor {
  const M = a.shape[a.ndim - 2]!;
  const N = b.shape[b.ndim - 1]!;
  const backend = backendFor(op, a, b);
  const out = Tensor.empty([...batch, M, N], a.dtype, a.device);
  // An operand whose batch dims already equal `batch` is passed as it is (the same view expand would make).
  const av = hasBatch(a, batch) ? a : a.expand([...batch, M, a.shape[a.ndim - 1]!]);
  const bv = hasBatch(b, batch) ? b : b.expand([...batch, b.shape[b.ndim - 2]!, N]);
  try {
    backend.matmul(av, bv, out);
  } catch (e) {
    out.dispose();
    throw e;
  } finally {
    if (av !== a) av.dispose();
    if (bv !== b) bv.dispose();
  }
  return out;
}

/** Whether t's dims before the last two equal `batch`. */
function hasBatch(t: Tensor, batch: readonly number[]): boolean {
  if (t.ndim !== batch.length + 2) return false;
  for (let i = 0; i < batch.length; i++) if (t.shape[i] !== batch[i]) return false;
  return true;
}

function checkOperands(op: string, a: Tensor, b: Tensor): void {
  backendFor(op, a, b);
  requireFloat(op, a);
  sameDType(op, a, b);
}

/**
 * torch.matmul: 1-D × 1-D is a dot product (0-d result); a 1-D left operand is treated as a row [1, K] and a
 * 1-D right operand as a column [K, 1], the added dim removed from the result; leading (batch) dims broadcast.
 */
export function matmul(a: Tensor, b: Tensor): Tensor {
  checkOperands("matmul", a, b);
  if (a.ndim === 0 || b.ndim === 0)
    throw new TensorError(`matmul: both arguments need at least 1 dimension, got ${formatShape(a.shape)} @ ${formatShape(b.shape)}`);
  const K = a.shape[a.ndim - 1]!;
  const Kb = b.ndim === 1 ? b.shape[0]! : b.shape[b.ndim - 2]!;
  if (K !== Kb)
    throw new TensorError(
      `matmul: inner dimensions do not match: ${formatShape(a.shape)} @ ${formatShape(b.shape)} (${K} vs ${Kb})`,
    );
  const a2 = a.ndim === 1 ? a.unsqueeze(0) : a; // [1, K]
  const b2 = b.ndim === 1 ? b.unsqueeze(1) : b; // [K, 1]
  try {
    let batch: number[];
    try {
      batch = broadcastShapes(a2.shape.slice(0, -2), b2.shape.slice(0, -2));
    } catch {
      throw new TensorError(`matmul: batch dimensions of ${formatShape(a.shape)} and ${formatShape(b.shape)} cannot be broadcast together`);
    }
    const out = batchedMatmul("matmul", a2, b2, batch);
    if (a.ndim > 1 && b.ndim > 1) return out;
    // drop the promoted dims: [..., 1, N] -> [..., N]; [..., M, 1] -> [..., M]; dot -> []
    const shape = out.shape.slice();
    if (b.ndim === 1) shape.pop();
    if (a.ndim === 1) shape.splice(shape.length - (b.ndim === 1 ? 1 : 2), 1);
    try {
      return out.reshape(shape);
    } finally {
      out.dispose();
    }
  } finally {
    if (a2 !== a) a2.dispose();
    if (b2 !== b) b2.dispose();
  }
}

/** torch.mm: [M, K] @ [K, N]. */
export function mm(a: Tensor, b: Tensor): Tensor {
  checkOperands("mm", a, b);
  if (a.ndim !== 2 || b.ndim !== 2)
    throw new TensorError(`mm: expects two 2-D tensors, got ${formatShape(a.shape)} @ ${formatShape(b.shape)}`);
  if (a.shape[1] !== b.shape[0])
    throw new TensorError(`mm: inner dimensions do not match: ${formatShape(a.shape)} @ ${formatShape(b.shape)} (${a.shape[1]} vs ${b.shape[0]})`);
  return batchedMatmul("mm", a, b, []);
}

/** torch.bmm: [B, M, K] @ [B, K, N] (no broadcasting). */
export function bmm(a: Tensor, b: Tensor): Tensor {
  checkOperands("bmm", a, b);
  if (a.ndim !== 3 || b.ndim !== 3)
    throw new TensorError(`bmm: expects two 3-D tensors, got ${formatShape(a.shape)} @ ${formatShape(b.shape)}`);
  if (a.shape[0] !== b.shape[0])
    throw new TensorError(`bmm: batch sizes do not match: ${formatShape(a.shape)} @ ${formatShape(b.shape)} (${a.shape[0]} vs ${b.shape[0]})`);
  if (a.shape[2] !== b.shape[1])
    throw new TensorError(`bmm: inner dimensions do not match: ${formatShape(a.shape)} @ ${formatShape(b.shape)} (${a.shape[2]} vs ${b.shape[1]})`);
  return batchedMatmul("bmm", a, b, [a.shape[0]!]);
}

/**
 * torch.nn.functional.linear: x[..., in] @ weight[out, in].T (+ bias[out]), then `activation` ("gelu_tanh":
 * gelu(approximate="tanh")). One backend call: the transpose is a strided view the GEMM reads as it lies, leading
 * dims of x fold into the GEMM's M, and bias and activation are fused into the GEMM where the backend can (CUDA:
 * cuBLASLt epilogues), else applied in the output in place — no intermediate tensor either way.
 */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null, activation: LinearActivation = "none"): Tensor {
  const op = "linear";
  const backend = backendFor(op, x, weight, bias);
  requireFloat(op, x);
  sameDType(op, x, weight, ...(bias ? [bias] : []));
  if (weight.ndim !== 2) throw new TensorError(`linear: weight must be 2-D [out, in], got ${formatShape(weight.shape)}`);
  if (x.ndim < 1) throw new TensorError(`linear: input needs at least 1 dimension, got ${formatShape(x.shape)}`);
  const [outF, inF] = weight.shape as [number, number];
  if (x.shape[x.ndim - 1] !== inF)
    throw new TensorError(`linear: input ${formatShape(x.shape)} has ${x.shape[x.ndim - 1]} features, weight ${formatShape(weight.shape)} expects ${inF}`);
  if (bias && (bias.ndim !== 1 || bias.shape[0] !== outF))
    throw new TensorError(`linear: bias must have shape [${outF}] for weight ${formatShape(weight.shape)}, got ${formatShape(bias.shape)}`);
  if (activation !== "none" && activation !== "gelu_tanh")
    throw new TensorError(`linear: activation must be "none" or "gelu_tanh", got ${JSON.stringify(activation)}`);
  const x2 = x.ndim === 1 ? x.unsqueeze(0) : x; // [1, in]
  const out = Tensor.empty([...x2.shape.slice(0, -1), outF], x.dtype, x.device);
  try {
    backend.linear(x2, weight, bias ?? null, out, activation);
  } catch (e) {
    out.dispose();
    throw e;
  } finally {
    if (x2 !== x) x2.dispose();
  }
  if (x.ndim > 1) return out;
  try {
    return out.reshape([outF]);
  } finally {
    out.dispose();
  }
}

export interface Conv2dOptions {
  stride?: number | [number, number];
  /** Per-side zero padding (symmetric in each dim), or "valid" (none) / "same" (output size = input size; stride 1). */
  padding?: number | [number, number] | "same" | "valid";
  dilation?: number | [number, number];
  groups?: number;
}

function pair(op: string, name: string, v: number | [number, number], min: number): [number, number] {
  if (typeof v !== "number" && !(Array.isArray(v) && v.length === 2))
    throw new TensorError(`${op}: ${name} must be a number or a pair, got ${JSON.stringify(v)}`);
  const p: [number, number] = typeof v === "number" ? [v, v] : [v[0], v[1]];
  for (const x of p)
    if (!Number.isInteger(x) || x < min) throw new TensorError(`${op}: ${name} must be integers ≥ ${min}, got ${JSON.stringify(v)}`);
  return p;
}

/**
 * torch.nn.functional.conv2d on NCHW input [N, C, H, W] (or unbatched [C, H, W]) with weight
 * [O, C/groups, kh, kw] and optional bias [O].
 */
export function conv2d(x: Tensor, weight: Tensor, bias?: Tensor | null, opts: Conv2dOptions = {}): Tensor {
  const op = "conv2d";
  const backend = backendFor(op, x, weight, bias);
  requireFloat(op, x);
  sameDType(op, x, weight, ...(bias ? [bias] : []));
  if (x.ndim === 3) {
    const xb = x.unsqueeze(0);
    try {
      const y = conv2d(xb, weight, bias, opts);
      try {
        return y.squeeze(0);
      } finally {
        y.dispose();
      }
    } finally {
      xb.dispose();
    }
  }
  if (x.ndim !== 4) throw new TensorError(`conv2d: input must be 4-D [N, C, H, W] (or 3-D [C, H, W]), got ${formatShape(x.shape)}`);
  if (weight.ndim !== 4) throw new TensorError(`conv2d: weight must be 4-D [O, C/groups, kh, kw], got ${formatShape(weight.shape)}`);
  const groups = opts.groups ?? 1;
  if (!Number.isInteger(groups) || groups < 1) throw new TensorError(`conv2d: groups must be a positive integer, got ${groups}`);
  const [N, C, H, W] = x.shape as [number, number, number, number];
  const [O, cg, kh, kw] = weight.shape as [number, number, number, number];
  if (C !== cg * groups)
    throw new TensorError(
      `conv2d: input ${formatShape(x.shape)} has ${C} channels but weight ${formatShape(weight.shape)} with groups=${groups} expects ${cg * groups}`,
    );
  if (O % groups !== 0)
    throw new TensorError(`conv2d: ${O} output channels of weight ${formatShape(weight.shape)} are not divisible by groups=${groups}`);
  if (bias && (bias.ndim !== 1 || bias.shape[0] !== O))
    throw new TensorError(`conv2d: bias must have shape [${O}] for weight ${formatShape(weight.shape)}, got ${formatShape(bias.shape)}`);
  const stride = pair(op, "stride", opts.stride ?? 1, 1);
  const dilation = pair(op, "dilation", opts.dilation ?? 1, 1);
  const padOpt = opts.padding ?? 0;
  // "same" with an odd total padding pads one more on the bottom/right, as torch: pad by the larger half on both
  // sides and drop the extra leading output row/column.
  let padding: [number, number];
  let trim: [number, number] = [0, 0];
  if (padOpt === "valid") padding = [0, 0];
  else if (padOpt === "same") {
    if (stride[0] !== 1 || stride[1] !== 1) throw new TensorError(`conv2d: padding="same" needs stride 1, got stride ${JSON.stringify(opts.stride)}`);
    const total = [dilation[0] * (kh - 1), dilation[1] * (kw - 1)];
    padding = [Math.ceil(total[0]! / 2), Math.ceil(total[1]! / 2)];
    trim = [total[0]! % 2, total[1]! % 2];
  } else padding = pair(op, "padding", padOpt, 0);
  const OH = Math.floor((H + 2 * padding[0] - dilation[0] * (kh - 1) - 1) / stride[0]) + 1;
  const OW = Math.floor((W + 2 * padding[1] - dilation[1] * (kw - 1) - 1) / stride[1]) + 1;
  if (OH <= 0 || OW <= 0)
    throw new TensorError(
      `conv2d: kernel ${kh}×${kw} (dilation ${dilation.join("×")}) is larger than the padded input ${H + 2 * padding[0]}×${W + 2 * padding[1]} of ${formatShape(x.shape)}`,
    );
  const p: Conv2dParams = { stride, padding, dilation, groups };
  // channels-last output when the input or the weight is (torch's cudnn_conv_suggest_memory_format)
  const format = memoryFormatOf(x) === "channelsLast" || memoryFormatOf(weight) === "channelsLast" ? "channelsLast" : "contiguous";
  const out = Tensor.empty([N, O, OH, OW], x.dtype, x.device, format);
  try {
    backend.conv2d(x, weight, bias ?? null, out, p);
  } catch (e) {
    out.dispose();
    throw e;
  }
  if (trim[0] === 0 && trim[1] === 0) return out;
  const rows = out.narrow(2, trim[0], OH - trim[0]);
  const v = rows.narrow(3, trim[1], OW - trim[1]);
  try {
    return toMemoryFormat(v, format);
  } finally {
    disposeAll(v, rows, out);
  }
}

Tensor.prototype.matmul = function (this: Tensor, other: Tensor): Tensor {
  return matmul(this, other);
};
Tensor.prototype.mm = function (this: Tensor, other: Tensor): Tensor {
  return mm(this, other);
};
Tensor.prototype.bmm = function (this: Tensor, other: Tensor): Tensor {
  return bmm(this, other);
};
