// Symbol table of cuBLAS (libcublas, CUDA 11+; the emulated one in kernels/build/emu): handles bound to a
// stream, math mode, and the two GEMMs the CUDA backend uses with float32 accumulation. The exported names are
// the *_v2 ones (cublas_v2.h maps cublasCreate etc. to them).

import { makeCheck, type NativeLibrary, type StatusCheck, type SymbolTable } from "./bind.ts";

const S = "i32"; // cublasStatus_t

export const CUBLAS = {
  cublasCreate_v2: { args: ["ptr"], returns: S },
  cublasDestroy_v2: { args: ["ptr"], returns: S },
  cublasGetVersion_v2: { args: ["ptr", "ptr"], returns: S },
  cublasGetProperty: { args: ["i32", "ptr"], returns: S, optional: true }, // (MAJOR_VERSION=0 | MINOR=1 | PATCH=2, *value)
  cublasSetStream_v2: { args: ["ptr", "ptr"], returns: S },
  cublasGetStream_v2: { args: ["ptr", "ptr"], returns: S },
  cublasSetMathMode: { args: ["ptr", "i32"], returns: S },
  cublasGetMathMode: { args: ["ptr", "ptr"], returns: S },
  cublasSetWorkspace_v2: { args: ["ptr", "ptr", "u64"], returns: S, optional: true },
  cublasGetStatusName: { args: ["i32"], returns: "cstring", optional: true },
  cublasGetStatusString: { args: ["i32"], returns: "cstring", optional: true },
  // (handle, transa, transb, m, n, k, alpha*, A, Atype, lda, B, Btype, ldb, beta*, C, Ctype, ldc, computeType, algo)
  cublasGemmEx: {
    args: ["ptr", "i32", "i32", "i32", "i32", "i32", "ptr", "ptr", "i32", "i32", "ptr", "i32", "i32", "ptr", "ptr", "i32", "i32", "i32", "i32"],
    returns: S,
  },
  // as cublasGemmEx with strideA after lda, strideB after ldb, strideC and batchCount after ldc (strides: long long)
  cublasGemmStridedBatchedEx: {
    args: [
      "ptr", "i32", "i32", "i32", "i32", "i32", "ptr", "ptr", "i32", "i32", "i64", "ptr", "i32", "i32", "i64", "ptr",
      "ptr", "i32", "i32", "i64", "i32", "i32", "i32",
    ],
    returns: S,
  },
} as const satisfies SymbolTable;

export type Cublas = NativeLibrary<typeof CUBLAS>;

export const cublasOperation = { N: 0, T: 1, C: 2 } as const;
/** cudaDataType (library_types.h). */
export const cudaDataType = { R_32F: 0, R_16F: 2, R_16BF: 14 } as const;
export const cublasComputeType = { F32: 68, F32_PEDANTIC: 69, F32_FAST_TF32: 77 } as const;
export const cublasMath = { default: 0, tensorOp: 1, pedantic: 2, tf32TensorOp: 3 } as const;
export const cublasGemmAlgo = { default: -1, defaultTensorOp: 99 } as const;
export const cublasStatus = { success: 0, notInitialized: 1, allocFailed: 3, invalidValue: 7, notSupported: 15 } as const;

/** cublasStatus_t names (cuBLAS and cuBLASLt share the type), for libraries without cublasGetStatusName. */
export const CUBLAS_STATUS_NAMES: Record<number, string> = {
  0: "CUBLAS_STATUS_SUCCESS",
  1: "CUBLAS_STATUS_NOT_INITIALIZED",
  3: "CUBLAS_STATUS_ALLOC_FAILED",
  7: "CUBLAS_STATUS_INVALID_VALUE",
  8: "CUBLAS_STATUS_ARCH_MISMATCH",
  11: "CUBLAS_STATUS_MAPPING_ERROR",
  13: "CUBLAS_STATUS_EXECUTION_FAILED",
  14: "CUBLAS_STATUS_INTERNAL_ERROR",
  15: "CUBLAS_STATUS_NOT_SUPPORTED",
  16: "CUBLAS_STATUS_LICENSE_ERROR",
};

export function cublasCheck(lib: Cublas): StatusCheck {
  const s = lib.symbols;
  return makeCheck("cuBLAS", (status) => ({
    name: (lib.has("cublasGetStatusName") ? s.cublasGetStatusName(status) : null) ?? CUBLAS_STATUS_NAMES[status] ?? `cublasStatus ${status}`,
    message: (lib.has("cublasGetStatusString") ? s.cublasGetStatusString(status) : null) ?? "see the cuBLAS documentation",
  }));
}
