// Symbol table of cuBLASLt (libcublasLt, CUDA 11.8+; the emulated one in kernels/build/emu): handles, matmul
// descriptors with their attributes (transposes, epilogue, bias pointer and type), matrix layouts (incl. strided
// batches), matmul preferences (workspace limit), the algorithm heuristic and cublasLtMatmul. Enum values are
// cublasLt.h's as the cuBLASLt API reference lists them (kernels/emu/api/cublaslt.h names the source); status,
// operation, compute and data types are cuBLAS's (cublas.ts). Attributes are set from small typed arrays of the
// attribute's exact C size (cuBLASLt checks it): ltSet* below.

import { CUBLAS_STATUS_NAMES } from "./cublas.ts";
import { makeCheck, type NativeLibrary, type StatusCheck, type SymbolTable } from "./bind.ts";

const S = "i32"; // cublasStatus_t

export const CUBLASLT = {
  cublasLtCreate: { args: ["ptr"], returns: S },
  cublasLtDestroy: { args: ["ptr"], returns: S },
  cublasLtGetVersion: { args: [], returns: "u64" },
  cublasLtGetStatusName: { args: ["i32"], returns: "cstring", optional: true },
  cublasLtGetStatusString: { args: ["i32"], returns: "cstring", optional: true },
  // (desc*, cublasComputeType_t, scale cudaDataType)
  cublasLtMatmulDescCreate: { args: ["ptr", "i32", "i32"], returns: S },
  cublasLtMatmulDescDestroy: { args: ["ptr"], returns: S },
  // (desc, attr, buf, sizeInBytes)
  cublasLtMatmulDescSetAttribute: { args: ["ptr", "i32", "ptr", "u64"], returns: S },
  // (layout*, cudaDataType, rows u64, cols u64, ld i64)
  cublasLtMatrixLayoutCreate: { args: ["ptr", "i32", "u64", "u64", "i64"], returns: S },
  cublasLtMatrixLayoutDestroy: { args: ["ptr"], returns: S },
  cublasLtMatrixLayoutSetAttribute: { args: ["ptr", "i32", "ptr", "u64"], returns: S },
  cublasLtMatmulPreferenceCreate: { args: ["ptr"], returns: S },
  cublasLtMatmulPreferenceDestroy: { args: ["ptr"], returns: S },
  cublasLtMatmulPreferenceSetAttribute: { args: ["ptr", "i32", "ptr", "u64"], returns: S },
  // (handle, desc, A, B, C, D layouts, preference, requestedAlgoCount, results[], returnAlgoCount*)
  cublasLtMatmulAlgoGetHeuristic: { args: ["ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "i32", "ptr", "ptr"], returns: S },
  // (handle, desc, alpha*, A, Adesc, B, Bdesc, beta*, C, Cdesc, D, Ddesc, algo*, workspace, workspaceBytes, stream)
  cublasLtMatmul: {
    args: ["ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "u64", "ptr"],
    returns: S,
  },
} as const satisfies SymbolTable;

export type CublasLt = NativeLibrary<typeof CUBLASLT>;

/** cublasLtMatmulDescAttributes_t, with the attribute's C type in the comment. */
export const ltMatmulDesc = {
  computeType: 0, // int32
  scaleType: 1, // int32
  pointerMode: 2, // int32
  transA: 3, // int32 (cublasOperation_t)
  transB: 4, // int32
  epilogue: 7, // uint32 (cublasLtEpilogue_t)
  biasPointer: 8, // const void*
  biasBatchStride: 10, // int64
  biasDataType: 26, // int32 (cudaDataType; CUDA 11.8+)
} as const;
/** cublasLtMatrixLayoutAttribute_t. */
export const ltLayout = { type: 0, order: 1, rows: 2, cols: 3, ld: 4, batchCount: 5 /* int32 */, stridedBatchOffset: 6 /* int64 */ } as const;
/** cublasLtMatmulPreferenceAttributes_t. */
export const ltPreference = {
  searchMode: 0,
  maxWorkspaceBytes: 1, // uint64
  minAlignmentA: 5, // uint32 bytes (default 256)
  minAlignmentB: 6,
  minAlignmentC: 7,
  minAlignmentD: 8,
} as const;
/** cublasLtEpilogue_t (GELU is the tanh approximation). */
export const ltEpilogue = { default: 1, bias: 4, gelu: 32, geluBias: 36 } as const;
/** sizeof(cublasLtMatmulHeuristicResult_t) and its field offsets (algo is the first 64 bytes). */
export const LT_HEURISTIC_RESULT_BYTES = 96;
export const LT_HEURISTIC_WORKSPACE = 64;
export const LT_HEURISTIC_STATE = 72;

const i32 = new Int32Array(1);
const u32 = new Uint32Array(1);
const i64 = new BigInt64Array(1);
const u64 = new BigUint64Array(1);

type Setter = (obj: number, attr: number, buf: NodeJS.TypedArray, size: number) => number;
/** Set an int32 attribute (the setter is the table's *SetAttribute of the object's kind). */
export function ltSetI32(set: Setter, obj: number, attr: number, v: number): number {
  i32[0] = v;
  return set(obj, attr, i32, 4);
}
export function ltSetU32(set: Setter, obj: number, attr: number, v: number): number {
  u32[0] = v;
  return set(obj, attr, u32, 4);
}
export function ltSetI64(set: Setter, obj: number, attr: number, v: number): number {
  i64[0] = BigInt(v);
  return set(obj, attr, i64, 8);
}
/** uint64 values and pointers (a device pointer is 8 bytes). */
export function ltSetU64(set: Setter, obj: number, attr: number, v: number): number {
  u64[0] = BigInt(v);
  return set(obj, attr, u64, 8);
}


export function cublasLtCheck(lib: CublasLt): StatusCheck {
  const s = lib.symbols;
  return makeCheck("cuBLASLt", (status) => ({
    name: (lib.has("cublasLtGetStatusName") ? s.cublasLtGetStatusName(status) : null) ?? CUBLAS_STATUS_NAMES[status] ?? `cublasStatus ${status}`,
    message: (lib.has("cublasLtGetStatusString") ? s.cublasLtGetStatusString(status) : null) ?? "see the cuBLASLt documentation",
  }));
}
