// CUDA matmul through cuBLAS (cublasGemmEx / cublasGemmStridedBatchedEx), float32 compute for every dtype (16-bit
// inputs use tensor cores; float32 uses TF32 tensor cores only under the context's allowTf32, context.ts). cuBLAS is column-major; a
// row-major C[M, N] = A[M, K]·B[K, N] is the column-major Cᵀ[N, M] = Bᵀ·Aᵀ, so cuBLAS gets m = N, n = M, k = K with
// B in the first operand slot and A in the second. Each operand is passed as it lies: a row-major view (unit
// column stride) is its own transpose in column-major terms (op N, ld = row stride), a transposed view (unit row
// stride, e.g. weight.T in linear) is op T with ld = its column stride; only views that are neither are copied.
// Batch dims (out's, contiguous; a and b broadcast with stride 0) are merged where all three operands allow;
// the innermost merged batch dim becomes the strided batch (stride 0 = broadcast), outer ones a loop.
// linear (x·wᵀ + bias, then gelu_tanh when asked) is ONE cublasLtMatmul where cuBLASLt is present: epilogue DEFAULT,
// BIAS or GELU_BIAS (GELU without bias), float32 compute, the bias added and the activation applied to the float32
// result before its one rounding; x's leading dims fold into the GEMM's columns (one batch) or, when their strides do
// not fold, become the strided batch. Without cuBLASLt (or with BD_CUDA_LINEAR=cublas) it is the cuBLAS GEMM into
// the output and the bias / activation kernels in place (composedLinear). Plans are cached per shape (lt-plans.ts).

import type { LinearActivation, TensorView } from "../backend.ts";
import { composedLinear } from "../linear-composed.ts";
import { cublasComputeType, cublasGemmAlgo, cublasOperation, cudaDataType } from "../../../ffi/cuda/cublas.ts";
import { ltEpilogue, ltMatmulDesc, ltSetU64 } from "../../../ffi/cuda/cublaslt.ts";
import type { DType } from "../../core/dtype.ts";
import { numel } from "../../core/shape.ts";
import { cudaContext, describe, dptr, requireDType, temp, type Temp } from "./context.ts";
import { binary, copy, fill, unary } from "./elementwise.ts";
import { alignmentOf, ltHandle, ltPlan, ltUnavailable } from "./lt-plans.ts";

const DATA_TYPE: Partial<Record<DType, number>> = { float32: cudaDataType.R_32F, float16: cudaDataType.R_16F, bfloat16: cudaDataType.R_16BF };
const ONE = new Float32Array([1]);
const ZERO = new Float32Array([0]);

/** How cuBLAS reads a [R, C] matrix with strides (sr, sc): op and leading dim, or null when it must be copied. */
interface Operand {
  op: number;
  ld: number;
}
/**
 * The matrix as the *transposed* operand cuBLAS needs (we pass Xᵀ in column-major): unit column stride → the
 * memory already is Xᵀ column-major (op N, ld = sr); unit row stride → it is X column-major (op T, ld = sc).
 */
function asTransposed(R: number, C: number, sr: number, sc: number): Operand | null {
  if ((C === 1 || sc === 1) && (R === 1 || sr >= Math.max(1, C))) return { op: cublasOperation.N, ld: R === 1 ? Math.max(1, C) : sr };
  if ((R === 1 || sr === 1) && (C === 1 || sc >= Math.max(1, R))) return { op: cublasOperation.T, ld: C === 1 ? Math.max(1, R) : sc };
  return null;
}

export function matmul(a: TensorView, b: TensorView, out: TensorView): void {
  if (numel(out.shape) === 0) return;
  requireDType("matmul", a.dtype, b, out);
  const nd = out.shape.length;
  const M = out.shape[nd - 2]!;
  const N = out.shape[nd - 1]!;
  const K = a.shape[nd - 1]!;
  if (K === 0) return fill(out, 0);
  const type = DATA_TYPE[a.dtype];
  if (type === undefined) throw new Error(`internal: CUDA matmul of ${a.dtype}`);
  const temps: Temp[] = [];
  try {
    // operands cuBLAS cannot read as they lie are copied contiguous (shape kept, broadcast dims materialised)
    const prep = (v: TensorView, R: number, C: number): [TensorView, Operand] => {
      const o = asTransposed(R, C, v.strides[nd - 2]!, v.strides[nd - 1]!);
      if (o) return [v, o];
      const t = temp(v.shape, v.dtype);
      temps.push(t);
      copy(v, t);
      return [t, asTransposed(R, C, t.strides[nd - 2]!, t.strides[nd - 1]!)!];
    };
    const [av, ao] = prep(a, M, K); // becomes cuBLAS's B (= Aᵀ, K x M)
    const [bv, bo] = prep(b, K, N); // becomes cuBLAS's A (= Bᵀ, N x K)
    // batch dims: merge where a, b and out all allow; drop size-1 dims
    const dims: { n: number; sa: number; sb: number; so: number }[] = [];
    for (let d = 0; d < nd - 2; d++) {
      const n = out.shape[d]!;
      if (n === 1) continue;
      const cur = { n, sa: av.strides[d]!, sb: bv.strides[d]!, so: out.strides[d]! };
      const last = dims[dims.length - 1];
      if (last && last.sa === cur.sa * n && last.sb === cur.sb * n && last.so === cur.so * n) {
        last.n *= n;
        last.sa = cur.sa;
        last.sb = cur.sb;
        last.so = cur.so;
      } else dims.push(cur);
    }
    const inner = dims.pop() ?? { n: 1, sa: 0, sb: 0, so: M * N };
    const outerCount = dims.reduce((p, d) => p * d.n, 1);
    const c = cudaContext();
    const s = c.libs.cublas.symbols;
    const bytes = a.dtype === "float32" ? 4 : 2;
    const compute = a.dtype === "float32" && c.allowTf32 ? cublasComputeType.F32_FAST_TF32 : cublasComputeType.F32;
    const algo = a.dtype === "float32" ? cublasGemmAlgo.default : cublasGemmAlgo.defaultTensorOp;
    const idx = new Array<number>(dims.length).fill(0);
    for (let o = 0; o < outerCount; o++) {
      let offA = 0, offB = 0, offO = 0;
      for (let d = 0; d < dims.length; d++) {
        offA += idx[d]! * dims[d]!.sa;
        offB += idx[d]! * dims[d]!.sb;
        offO += idx[d]! * dims[d]!.so;
      }
      const pa = dptr(bv) + offB * bytes; // cuBLAS A = our B
      const pb = dptr(av) + offA * bytes; // cuBLAS B = our A
      const pc = dptr(out) + offO * bytes;
      const st = inner.n === 1
        ? s.cublasGemmEx(c.cublas, bo.op, ao.op, N, M, K, ONE, pa, type, bo.ld, pb, type, ao.ld, ZERO, pc, type, N, compute, algo)
        : s.cublasGemmStridedBatchedEx(c.cublas, bo.op, ao.op, N, M, K, ONE, pa, type, bo.ld, inner.sb, pb, type, ao.ld, inner.sa, ZERO, pc,
            type, N, inner.so, inner.n, compute, algo);
      if (st !== 0) c.libs.cublasCheck(st, inner.n === 1 ? "cublasGemmEx" : "cublasGemmStridedBatchedEx", `matmul: ${describe(a, b, out)}`);
      for (let d = dims.length - 1; d >= 0; d--) {
        if (++idx[d]! < dims[d]!.n) break;
        idx[d] = 0;
      }
    }
  } finally {
    for (const t of temps) t.free();
  }
}

const COMPOSED = { matmul, binary, unary };

/**
 * Rows of x[..., R, K] (all dims but the last) as one strided batch of row blocks: [batch, batchStride, rows,
 * rowStride], or null when the leading dims fold into neither one nor two strides.
 */
function rowBlocks(x: TensorView): [number, number, number, number] | null {
  const nd = x.shape.length;
  const groups: { n: number; s: number }[] = [];
  for (let d = nd - 2; d >= 0; d--) {
    const n = x.shape[d]!;
    if (n === 1) continue;
    const last = groups[groups.length - 1];
    if (last && last.s * last.n === x.strides[d]) last.n *= n;
    else groups.push({ n, s: x.strides[d]! });
  }
  if (groups.length === 0) return [1, 0, 1, x.shape[nd - 1]!];
  if (groups.length === 1) return [1, 0, groups[0]!.n, groups[0]!.s];
  if (groups.length === 2) return [groups[1]!.n, groups[1]!.s, groups[0]!.n, groups[0]!.s];
  return null;
}

const ONE_F = new Float32Array([1]);
const ZERO_F = new Float32Array([0]);

let ltMatmuls = 0;
/** cublasLtMatmul calls made so far (tests: which path the linear layers took). */
export function ltMatmulCount(): number {
  return ltMatmuls;
}

export function linear(x: TensorView, w: TensorView, bias: TensorView | null, out: TensorView, act: LinearActivation): void {
  if (numel(out.shape) === 0) return;
  requireDType("linear", x.dtype, w, bias, out);
  const c = cudaContext();
  const [N, K] = w.shape as [number, number];
  if (K === 0 || ltUnavailable(c) !== null) return composedLinear(COMPOSED, x, w, bias, out, act);
  const temps: Temp[] = [];
  try {
    const contiguous = (v: TensorView): Temp => {
      const t = temp(v.shape, v.dtype);
      temps.push(t);
      copy(v, t);
      return t;
    };
    let xv: TensorView = x;
    let blocks = rowBlocks(x);
    let xo = blocks && asTransposed(blocks[2], K, blocks[3], x.strides[x.shape.length - 1]!); // cuBLASLt's B = xᵀ
    if (!blocks || !xo) {
      xv = contiguous(x);
      blocks = rowBlocks(xv)!;
      xo = asTransposed(blocks[2], K, blocks[3], 1)!;
    }
    const [batch, strideX, rows] = blocks;
    let wv: TensorView = w;
    let wo = asTransposed(K, N, w.strides[1]!, w.strides[0]!); // cuBLASLt's A: op(A) = w [N, K] (our B = wᵀ [K, N])
    if (!wo) {
      wv = contiguous(w);
      wo = asTransposed(K, N, 1, K)!;
    }
    const bv = bias && bias.shape[0]! > 1 && bias.strides[0] !== 1 ? contiguous(bias) : bias; // cuBLASLt's bias is packed
    const epilogue = bias ? (act === "gelu_tanh" ? ltEpilogue.geluBias : ltEpilogue.bias) : act === "gelu_tanh" ? ltEpilogue.gelu : ltEpilogue.default;
    const pa = dptr(wv), pb = dptr(xv), pd = dptr(out), pbias = bv ? dptr(bv) : 0;
    const plan = ltPlan(c, {
      dtype: x.dtype, m: N, n: rows, k: K, opA: wo.op, lda: wo.ld, opB: xo.op, ldb: xo.ld, batch, strideB: strideX, strideD: rows * N,
      epilogue, alignA: alignmentOf(pa), alignB: alignmentOf(pb), alignD: alignmentOf(pd), bias: pbias, alignBias: pbias ? alignmentOf(pbias) : 0,
    });
    const lt = c.libs.cublasLt!.symbols;
    const context = () => `linear: ${describe(x, w, bias, out)}; ${plan.text}`;
    if (pbias && plan.bias !== pbias) {
      // the plan's descriptor is shared by every layer of this shape: point it at this layer's bias
      const setD = lt.cublasLtMatmulDescSetAttribute as (o: number, a: number, b: NodeJS.TypedArray, n: number) => number;
      const st = ltSetU64(setD, plan.desc, ltMatmulDesc.biasPointer, pbias);
      if (st !== 0) c.libs.cublasLtCheck(st, "cublasLtMatmulDescSetAttribute", `BIAS_POINTER; ${context()}`);
      plan.bias = pbias;
    }
    let ws = 0;
    if (plan.workspace > 0) {
      const t = temp([plan.workspace], "uint8");
      temps.push(t);
      ws = dptr(t);
    }
    const st = lt.cublasLtMatmul(ltHandle(c), plan.desc, ONE_F, pa, plan.a, pb, plan.b, ZERO_F, pd, plan.d, pd, plan.d, plan.algo, ws, plan.workspace, c.stream);
    if (st !== 0) c.libs.cublasLtCheck(st, "cublasLtMatmul", context());
    ltMatmuls++;
  } finally {
    for (const t of temps) t.free();
  }
}
