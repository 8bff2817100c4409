// cuBLASLt plans for the CUDA backend's linear layers (linalg.ts): one cuBLASLt handle per process, made on first
// use, and per problem — dtype, TF32 policy, epilogue, operand ops and leading dims, sizes, strided batch, and the
// byte alignment of each pointer (an algorithm is only valid for pointers as aligned as the ones it was chosen for)
// — one matmul descriptor, three layouts (C is D) and the heuristic's algorithm, built once and reused, so a step
// only sets the bias pointer and calls cublasLtMatmul. Whether cuBLASLt is used at all: `ltUnavailable()`
// (BD_CUDA_LINEAR=cublas turns it off; a missing libcublasLt falls back with its reason).

import { cublasComputeType, cublasOperation, cudaDataType } from "../../../ffi/cuda/cublas.ts";
import {
  LT_HEURISTIC_RESULT_BYTES, LT_HEURISTIC_STATE, LT_HEURISTIC_WORKSPACE, ltEpilogue, ltLayout, ltMatmulDesc, ltPreference,
  ltSetI32, ltSetI64, ltSetU32, ltSetU64,
} from "../../../ffi/cuda/cublaslt.ts";
import type { DType } from "../../core/dtype.ts";
import type { CudaContext } from "./context.ts";

/** The largest workspace an algorithm may ask for (allocated per call from the caching allocator when asked). */
export const LT_MAX_WORKSPACE = 4 * 2 ** 20;

/** One linear GEMM in cuBLASLt's column-major terms: D[m, n] = op(A)[m, k] · op(B)[k, n] (+ bias[m]). */
export interface LtProblem {
  dtype: DType;
  m: number;
  n: number;
  k: number;
  opA: number;
  lda: number;
  opB: number;
  ldb: number;
  /** Strided batch: count, and B's and D's batch strides (A, the weight, is broadcast: stride 0). */
  batch: number;
  strideB: number;
  strideD: number;
  epilogue: number;
  /** Byte alignments (≤ 256) of the A, B, D and bias pointers. */
  alignA: number;
  alignB: number;
  alignD: number;
  /** The bias pointer (0: none) and its alignment: the heuristic reads the pointer to judge its alignment. */
  bias: number;
  alignBias: number;
}

export interface LtPlan {
  desc: number;
  a: number;
  b: number;
  d: number;
  /** The algorithm (cublasLtMatmulAlgo_t, 64 bytes), passed to every cublasLtMatmul. */
  algo: Uint8Array;
  workspace: number;
  /** The bias pointer the descriptor holds now (linear sets it per call when another layer of the shape runs). */
  bias: number;
  /** For error messages: the cuBLASLt parameters. */
  text: string;
}

const DATA_TYPE: Partial<Record<DType, number>> = { float32: cudaDataType.R_32F, float16: cudaDataType.R_16F, bfloat16: cudaDataType.R_16BF };
const EPILOGUE_NAME: Record<number, string> = { [ltEpilogue.default]: "DEFAULT", [ltEpilogue.bias]: "BIAS", [ltEpilogue.gelu]: "GELU", [ltEpilogue.geluBias]: "GELU_BIAS" };

let handleOf: { ctx: CudaContext; handle: number } | null = null;
const plans = new Map<string, LtPlan>();
const out64 = new BigUint64Array(1);

/** Why linear layers do not use cuBLASLt here, or null when they do. */
export function ltUnavailable(c: CudaContext, env: Readonly<Record<string, string | undefined>> = process.env): string | null {
  if (env.BD_CUDA_LINEAR === "cublas") return "BD_CUDA_LINEAR=cublas";
  if (!c.libs.cublasLt) return c.libs.cublasLtMissing ?? "libcublasLt not loaded";
  return null;
}

/** The process's cuBLASLt handle (one per CUDA context; made on first use). */
export function ltHandle(c: CudaContext): number {
  if (handleOf?.ctx === c) return handleOf.handle;
  const lt = c.libs.cublasLt!;
  c.libs.cublasLtCheck(lt.symbols.cublasLtCreate(out64), "cublasLtCreate");
  plans.clear();
  handleOf = { ctx: c, handle: Number(out64[0]) };
  return handleOf.handle;
}

/** The byte alignment of a device address, capped at 256 (cuBLASLt's default minimum). */
export function alignmentOf(ptr: number): number {
  const r = ptr % 256;
  return r === 0 ? 256 : r & -r;
}

function keyOf(p: LtProblem, tf32: boolean): string {
  return `${p.dtype}|${tf32 ? 1 : 0}|${p.epilogue}|${p.opA}|${p.lda}|${p.opB}|${p.ldb}|${p.m}|${p.n}|${p.k}|${p.batch}|${p.strideB}|${p.strideD}|${p.alignA}|${p.alignB}|${p.alignD}|${p.alignBias}`;
}

/** Plans kept at most (distinct linear shapes; SD 1.5 at one size has a few dozen); more empties the cache. */
const MAX_PLANS = 4096;

function dropPlans(c: CudaContext): void {
  const s = c.libs.cublasLt!.symbols;
  for (const p of plans.values()) {
    s.cublasLtMatmulDescDestroy(p.desc);
    for (const l of new Set([p.a, p.b, p.d])) s.cublasLtMatrixLayoutDestroy(l);
  }
  plans.clear();
}

/** Number of cached plans (tests). */
export function ltPlanCount(): number {
  return plans.size;
}

/** The cached plan of `p` under the context's TF32 policy, built (descriptors + heuristic) on first use. */
export function ltPlan(c: CudaContext, p: LtProblem): LtPlan {
  const tf32 = p.dtype === "float32" && c.allowTf32;
  const key = keyOf(p, tf32);
  const hit = plans.get(key);
  if (hit) return hit;
  const handle = ltHandle(c);
  const s = c.libs.cublasLt!.symbols;
  const check = c.libs.cublasLtCheck;
  const type = DATA_TYPE[p.dtype];
  if (type === undefined) throw new Error(`internal: cuBLASLt linear of ${p.dtype}`);
  const text =
    `cuBLASLt m=${p.m} n=${p.n} k=${p.k} ${p.dtype} opA=${p.opA === cublasOperation.T ? "T" : "N"} lda=${p.lda} ` +
    `opB=${p.opB === cublasOperation.T ? "T" : "N"} ldb=${p.ldb} batch=${p.batch} epilogue=${EPILOGUE_NAME[p.epilogue]}${tf32 ? " tf32" : ""}`;
  const made: (() => void)[] = [];
  try {
    // float32 compute for every dtype (16-bit inputs on tensor cores); float32 inputs as TF32 only when allowed
    const compute = tf32 ? cublasComputeType.F32_FAST_TF32 : cublasComputeType.F32;
    check(s.cublasLtMatmulDescCreate(out64, compute, cudaDataType.R_32F), "cublasLtMatmulDescCreate", text);
    const desc = Number(out64[0]);
    made.push(() => s.cublasLtMatmulDescDestroy(desc));
    const setD = s.cublasLtMatmulDescSetAttribute as (o: number, a: number, b: NodeJS.TypedArray, n: number) => number;
    check(ltSetI32(setD, desc, ltMatmulDesc.transA, p.opA), "cublasLtMatmulDescSetAttribute", `TRANSA; ${text}`);
    check(ltSetI32(setD, desc, ltMatmulDesc.transB, p.opB), "cublasLtMatmulDescSetAttribute", `TRANSB; ${text}`);
    check(ltSetU32(setD, desc, ltMatmulDesc.epilogue, p.epilogue), "cublasLtMatmulDescSetAttribute", `EPILOGUE; ${text}`);
    if (p.epilogue & ltEpilogue.bias) {
      check(ltSetI32(setD, desc, ltMatmulDesc.biasDataType, type), "cublasLtMatmulDescSetAttribute", `BIAS_DATA_TYPE; ${text}`);
      check(ltSetU64(setD, desc, ltMatmulDesc.biasPointer, p.bias), "cublasLtMatmulDescSetAttribute", `BIAS_POINTER; ${text}`);
    }
    const setL = s.cublasLtMatrixLayoutSetAttribute as (o: number, a: number, b: NodeJS.TypedArray, n: number) => number;
    const layout = (rows: number, cols: number, ld: number, stride: number): number => {
      check(s.cublasLtMatrixLayoutCreate(out64, type, rows, cols, ld), "cublasLtMatrixLayoutCreate", text);
      const l = Number(out64[0]);
      made.push(() => s.cublasLtMatrixLayoutDestroy(l));
      if (p.batch > 1) {
        check(ltSetI32(setL, l, ltLayout.batchCount, p.batch), "cublasLtMatrixLayoutSetAttribute", `BATCH_COUNT; ${text}`);
        check(ltSetI64(setL, l, ltLayout.stridedBatchOffset, stride), "cublasLtMatrixLayoutSetAttribute", `STRIDED_BATCH_OFFSET; ${text}`);
      }
      return l;
    };
    // stored shapes: op N reads the matrix as it is (rows × cols of op(X)), op T its transpose
    const a = p.opA === cublasOperation.N ? layout(p.m, p.k, p.lda, 0) : layout(p.k, p.m, p.lda, 0);
    const b = p.opB === cublasOperation.N ? layout(p.k, p.n, p.ldb, p.strideB) : layout(p.n, p.k, p.ldb, p.strideB);
    const d = layout(p.m, p.n, p.m, p.strideD);
    check(s.cublasLtMatmulPreferenceCreate(out64), "cublasLtMatmulPreferenceCreate", text);
    const pref = Number(out64[0]);
    try {
      const setP = s.cublasLtMatmulPreferenceSetAttribute as (o: number, a: number, b: NodeJS.TypedArray, n: number) => number;
      check(ltSetU64(setP, pref, ltPreference.maxWorkspaceBytes, LT_MAX_WORKSPACE), "cublasLtMatmulPreferenceSetAttribute", text);
      check(ltSetU32(setP, pref, ltPreference.minAlignmentA, p.alignA), "cublasLtMatmulPreferenceSetAttribute", text);
      check(ltSetU32(setP, pref, ltPreference.minAlignmentB, p.alignB), "cublasLtMatmulPreferenceSetAttribute", text);
      check(ltSetU32(setP, pref, ltPreference.minAlignmentC, p.alignD), "cublasLtMatmulPreferenceSetAttribute", text);
      check(ltSetU32(setP, pref, ltPreference.minAlignmentD, p.alignD), "cublasLtMatmulPreferenceSetAttribute", text);
      const results = new Uint8Array(LT_HEURISTIC_RESULT_BYTES);
      const count = new Int32Array(1);
      check(s.cublasLtMatmulAlgoGetHeuristic(handle, desc, a, b, d, d, pref, 1, results, count), "cublasLtMatmulAlgoGetHeuristic", text);
      const view = new DataView(results.buffer);
      const state = view.getInt32(LT_HEURISTIC_STATE, true);
      if (count[0]! < 1) check(15, "cublasLtMatmulAlgoGetHeuristic", `no algorithm for ${text}`); // CUBLAS_STATUS_NOT_SUPPORTED
      check(state, "cublasLtMatmulAlgoGetHeuristic", `result state; ${text}`);
      const plan: LtPlan = { desc, a, b, d, algo: results.slice(0, 64), workspace: Number(view.getBigUint64(LT_HEURISTIC_WORKSPACE, true)), bias: p.bias, text };
      if (plans.size >= MAX_PLANS) dropPlans(c);
      plans.set(key, plan);
      return plan;
    } finally {
      s.cublasLtMatmulPreferenceDestroy(pref);
    }
  } catch (e) {
    for (const undo of made.reverse()) undo();
    throw e;
  }
}
