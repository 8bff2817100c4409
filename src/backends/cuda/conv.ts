// CUDA conv2d through cuDNN's forward convolution (NCHW, cross-correlation as torch, float32 compute; tensor-op
// math for float16/bfloat16; float32 under the context's allowTf32 policy: CUDNN_FMA_MATH when off, so no TF32,
// CUDNN_DEFAULT_MATH when on). The math type of the algorithm cuDNN returns is set on the convolution descriptor
// before it runs (a float32 plan without TF32 takes only FMA-math entries, or forces FMA math on the first usable). Per distinct shape (dtype, x, w, stride, padding, dilation, groups) the descriptors
// and the algorithm are made once and cached: cudnnGetConvolutionForwardAlgorithm_v7's ranking, first algorithm
// whose workspace is at most BD_CUDNN_WORKSPACE_MB (default 1024) — or, with BD_CUDNN_BENCHMARK=1 on a real GPU,
// cudnnFindConvolutionForwardAlgorithmEx's measured ranking. The workspace comes from our caching allocator for
// each call. The layout is the output's: a channels-last output (the op layer allocates one when x or w is
// channels-last) runs NHWC — x, y described as CUDNN_TENSOR_NHWC and the filter as NHWC (KRSC), the layout of
// cuDNN's tensor-core kernels for float16/bfloat16 — with x and w converted to channels-last first where they are not
// (pipelines convert the weights once: src/speed/channels-last.ts); any other output runs NCHW, strided inputs and
// weights copied contiguous first. The bias is added by the broadcast binary kernel in place (out += bias viewed as
// [1, O, 1, 1]; on channels-last storage that is the vector path's per-channel inner run).

import type { Conv2dParams, TensorView } from "../backend.ts";
import { ALGO_PERF, cudnnConvolutionMode, cudnnDataType, cudnnMathType, cudnnTensorFormat } from "../../../ffi/cuda/cudnn.ts";
import { type DType, dtypeBytes } from "../../core/dtype.ts";
import { hasChannelsLastStrides, memoryFormatOf } from "../../core/memory-format.ts";
import { isContiguous, numel } from "../../core/shape.ts";
import { cudaContext, describe, dptr, requireDType, temp, type CudaContext, type Temp } from "./context.ts";
import { binary, copy } from "./elementwise.ts";
import { channelsLastAs, contiguousAs } from "./dense-views.ts";

const DATA_TYPE: Partial<Record<DType, number>> = { float32: cudnnDataType.float, float16: cudnnDataType.half, bfloat16: cudnnDataType.bfloat16 };
const ONE = new Float32Array([1]);
const ZERO = new Float32Array([0]);
const MAX_PLANS = 256;
const WORKSPACE_LIMIT = (Number(process.env.BD_CUDNN_WORKSPACE_MB) || 1024) * 2 ** 20;
const BENCHMARK = process.env.BD_CUDNN_BENCHMARK === "1";

interface Plan {
  x: number;
  w: number;
  y: number;
  conv: number;
  algo: number;
  workspace: number;
}
const plans = new Map<string, Plan>();

/** Number of cached convolution plans (tests). */
export function convPlanCount(): number {
  return plans.size;
}

function destroyPlan(c: CudaContext, p: Plan): void {
  const s = c.libs.cudnn.symbols;
  s.cudnnDestroyTensorDescriptor(p.x);
  s.cudnnDestroyTensorDescriptor(p.y);
  s.cudnnDestroyFilterDescriptor(p.w);
  s.cudnnDestroyConvolutionDescriptor(p.conv);
}

/** Drop every cached plan (their descriptors are destroyed). */
export function clearConvPlans(): void {
  const c = cudaContext();
  for (const p of plans.values()) destroyPlan(c, p);
  plans.clear();
}

/** Whether conv2d writes `out` in NHWC: a dense channels-last output that is not also row-major. */
const isNhwc = (out: TensorView) => memoryFormatOf(out) === "channelsLast";

/** v in the layout the plan reads: itself when it already is, else a dense copy to free. */
function denseAs(v: TensorView, nhwc: boolean): { view: TensorView; temp: Temp | null } {
  return nhwc ? channelsLastAs(v) : contiguousAs(v);
}

function makePlan(c: CudaContext, key: string, dtype: number, x: TensorView, w: TensorView, out: TensorView, p: Conv2dParams, op: string, nhwc: boolean, heuristicOnly = false): Plan {
  const s = c.libs.cudnn.symbols;
  const ck = (st: number, fn: string) => c.libs.cudnnCheck(st, fn, op);
  const h = new BigUint64Array(1);
  const made = () => Number(h[0]);
  const [N, C, H, W] = x.shape as [number, number, number, number];
  const [O, cg, kh, kw] = w.shape as [number, number, number, number];
  const [, , OH, OW] = out.shape as [number, number, number, number];
  ck(s.cudnnCreateTensorDescriptor(h), "cudnnCreateTensorDescriptor");
  const xd = made();
  ck(s.cudnnCreateTensorDescriptor(h), "cudnnCreateTensorDescriptor");
  const yd = made();
  ck(s.cudnnCreateFilterDescriptor(h), "cudnnCreateFilterDescriptor");
  const wd = made();
  ck(s.cudnnCreateConvolutionDescriptor(h), "cudnnCreateConvolutionDescriptor");
  const cd = made();
  const plan: Plan = { x: xd, w: wd, y: yd, conv: cd, algo: 0, workspace: 0 };
  try {
    const format = nhwc ? cudnnTensorFormat.NHWC : cudnnTensorFormat.NCHW; // NHWC filters are KRSC
    ck(s.cudnnSetTensor4dDescriptor(xd, format, dtype, N, C, H, W), "cudnnSetTensor4dDescriptor");
    ck(s.cudnnSetTensor4dDescriptor(yd, format, dtype, N, O, OH, OW), "cudnnSetTensor4dDescriptor");
    ck(s.cudnnSetFilter4dDescriptor(wd, dtype, format, O, cg, kh, kw), "cudnnSetFilter4dDescriptor");
    ck(s.cudnnSetConvolution2dDescriptor(cd, p.padding[0], p.padding[1], p.stride[0], p.stride[1], p.dilation[0], p.dilation[1],
      cudnnConvolutionMode.crossCorrelation, cudnnDataType.float), "cudnnSetConvolution2dDescriptor");
    if (p.groups !== 1) ck(s.cudnnSetConvolutionGroupCount(cd, p.groups), "cudnnSetConvolutionGroupCount");
    const strictF32 = dtype === cudnnDataType.float && !c.allowTf32;
    const math = dtype !== cudnnDataType.float ? cudnnMathType.tensorOp : strictF32 ? cudnnMathType.fma : cudnnMathType.default;
    ck(s.cudnnSetConvolutionMathType(cd, math), "cudnnSetConvolutionMathType");
    const perf = new Uint8Array(ALGO_PERF.bytes * 8);
    const count = new Int32Array(1);
    if (BENCHMARK && !c.libs.emulated && !heuristicOnly) {
      const ws = temp([Math.min(WORKSPACE_LIMIT, 256 * 2 ** 20)], "uint8");
      try {
        ck(s.cudnnFindConvolutionForwardAlgorithmEx(c.cudnn, xd, dptr(x), wd, dptr(w), cd, yd, dptr(out), 8, count, perf, dptr(ws), ws.shape[0]!),
          "cudnnFindConvolutionForwardAlgorithmEx");
      } finally {
        ws.free();
      }
    } else {
      ck(s.cudnnGetConvolutionForwardAlgorithm_v7(c.cudnn, xd, wd, cd, yd, 8, count, perf), "cudnnGetConvolutionForwardAlgorithm_v7");
    }
    const view = new DataView(perf.buffer);
    let chosen = -1;
    let chosenMath: number = math;
    // usable entries in cuDNN's order; without TF32 a float32 plan prefers entries whose math type is FMA
    for (const fmaOnly of strictF32 ? [true, false] : [false]) {
      for (let i = 0; i < count[0]! && chosen < 0; i++) {
        const at = i * ALGO_PERF.bytes;
        const memory = Number(view.getBigUint64(at + ALGO_PERF.memory, true));
        const entryMath = view.getInt32(at + ALGO_PERF.mathType, true);
        if (view.getInt32(at + ALGO_PERF.status, true) !== 0 || memory > WORKSPACE_LIMIT || (fmaOnly && entryMath !== cudnnMathType.fma)) continue;
        chosen = view.getInt32(at + ALGO_PERF.algo, true);
        chosenMath = strictF32 ? cudnnMathType.fma : entryMath;
        plan.algo = chosen;
      }
    }
    if (chosen >= 0) ck(s.cudnnSetConvolutionMathType(cd, chosenMath), "cudnnSetConvolutionMathType");
    if (chosen < 0) throw new Error(`conv2d: cuDNN offers no usable algorithm for ${op} (within a ${WORKSPACE_LIMIT >> 20} MiB workspace)`);
    const need = new BigUint64Array(1);
    ck(s.cudnnGetConvolutionForwardWorkspaceSize(c.cudnn, xd, wd, cd, yd, chosen, need), "cudnnGetConvolutionForwardWorkspaceSize");
    plan.workspace = Number(need[0]);
  } catch (e) {
    destroyPlan(c, plan);
    throw e;
  }
  if (heuristicOnly) return plan; // the caller destroys it: a measured ranking may still replace it
  if (plans.size >= MAX_PLANS) clearConvPlans();
  plans.set(key, plan);
  return plan;
}

export function conv2d(x: TensorView, w: TensorView, bias: TensorView | null, out: TensorView, p: Conv2dParams): void {
  if (numel(out.shape) === 0) return;
  requireDType("conv2d", x.dtype, w, bias, out);
  const c = cudaContext();
  const dtype = DATA_TYPE[x.dtype];
  if (dtype === undefined) throw new Error(`internal: CUDA conv2d of ${x.dtype}`);
  const op = `conv2d ${describe(x, w, bias, out)} stride ${p.stride.join("x")} padding ${p.padding.join("x")} dilation ${p.dilation.join("x")} groups ${p.groups}`;
  const nhwc = isNhwc(out);
  // an output in neither layout (not made by the op layer) is computed NCHW into a temporary
  const y = nhwc || isContiguous(out.shape, out.strides) ? null : temp(out.shape, out.dtype);
  const yv = y ?? out;
  const xc = denseAs(x, nhwc);
  const wc = denseAs(w, nhwc);
  try {
    const key = planKey(c, x, w, p, nhwc);
    const plan = plans.get(key) ?? makePlan(c, key, dtype, xc.view, wc.view, yv, p, op + (nhwc ? " (NHWC)" : ""), nhwc);
    const ws = plan.workspace > 0 ? temp([plan.workspace], "uint8") : null;
    try {
      const st = c.libs.cudnn.symbols.cudnnConvolutionForward(c.cudnn, ONE, plan.x, dptr(xc.view), plan.w, dptr(wc.view), plan.conv, plan.algo,
        ws ? dptr(ws) : null, plan.workspace, ZERO, plan.y, dptr(yv));
      if (st !== 0) c.libs.cudnnCheck(st, "cudnnConvolutionForward", op);
    } finally {
      ws?.free();
    }
    if (y) copy(y, out);
  } finally {
    xc.temp?.free();
    wc.temp?.free();
    y?.free();
  }
  if (bias) {
    const O = out.shape[1]!;
    const b = { storage: bias.storage, dtype: bias.dtype, offset: bias.offset, shape: out.shape, strides: [0, bias.strides[0]!, 0, 0] };
    if (O > 0) binary("add", out, b, out);
  }
}

function planKey(c: CudaContext, x: TensorView, w: TensorView, p: Conv2dParams, nhwc: boolean): string {
  return `${x.dtype}|${c.allowTf32 ? "tf32" : ""}|${nhwc ? "nhwc" : "nchw"}|${x.shape.join(",")}|${w.shape.join(",")}|${p.stride.join(",")}|${p.padding.join(",")}|${p.dilation.join(",")}|${p.groups}`;
}

/**
 * Device bytes conv2d allocates besides its output for these shapes (the memory planner's model of this backend,
 * used on "meta"): the chosen algorithm's workspace plus contiguous copies of strided inputs. Only shapes,
 * strides and dtypes of the views are read. With BD_CUDNN_BENCHMARK=1 a shape not yet run is answered from
 * cuDNN's heuristic ranking (the measured one needs real buffers).
 */
export function conv2dScratchBytes(x: TensorView, w: TensorView, out: TensorView, p: Conv2dParams): number {
  if (numel(out.shape) === 0) return 0;
  const dtype = DATA_TYPE[x.dtype];
  if (dtype === undefined) return 0;
  const c = cudaContext();
  const nhwc = isNhwc(out);
  const key = planKey(c, x, w, p, nhwc);
  let plan = plans.get(key);
  let workspace: number;
  if (plan) workspace = plan.workspace;
  else {
    plan = makePlan(c, key, dtype, x, w, out, p, `conv2d ${describe(x, w, null, out)} (planning)`, nhwc, BENCHMARK);
    workspace = plan.workspace;
    if (BENCHMARK) destroyPlan(c, plan);
  }
  const dense = (v: TensorView) => (nhwc ? hasChannelsLastStrides(v.shape, v.strides) : isContiguous(v.shape, v.strides));
  const copyBytes = (v: TensorView) => (dense(v) ? 0 : numel(v.shape) * dtypeBytes(v.dtype));
  return workspace + copyBytes(x) + copyBytes(w) + (nhwc || isContiguous(out.shape, out.strides) ? 0 : copyBytes(out));
}
