// api/cublaslt.h -- the subset of cuBLASLt (cublasLt.h) that the emulated libcublasLt implements and
// ffi/cuda/cublaslt.ts binds: handles, matmul descriptors, matrix layouts, matmul preferences, the algorithm
// heuristic and cublasLtMatmul. Status, operation, compute and data types are cuBLAS's (api/cublas.h).
// Values: cublasLt.h of CUDA 11/12/13 as the cuBLAS documentation lists them ("cuBLASLt API reference" at
// https://docs.nvidia.com/cuda/cublas/#using-the-cublaslt-api: cublasLtMatmulDescAttributes_t,
// cublasLtMatrixLayoutAttribute_t, cublasLtOrder_t, cublasLtEpilogue_t, cublasLtMatmulPreferenceAttributes_t,
// cublasLtMatmulAlgo_t, cublasLtMatmulHeuristicResult_t). BIAS_DATA_TYPE (26) exists since CUDA 11.8. The
// attribute's C type (its exact byte size, checked by the Set functions) is the third field.
#pragma once
#include <stddef.h>
#include <stdint.h>

// X(name, value, C type of the attribute's value)
#define BD_CUBLASLT_MATMUL_DESC(X)                                                                              \
  X(CUBLASLT_MATMUL_DESC_COMPUTE_TYPE, 0, int32_t) X(CUBLASLT_MATMUL_DESC_SCALE_TYPE, 1, int32_t)               \
  X(CUBLASLT_MATMUL_DESC_POINTER_MODE, 2, int32_t) X(CUBLASLT_MATMUL_DESC_TRANSA, 3, int32_t)                   \
  X(CUBLASLT_MATMUL_DESC_TRANSB, 4, int32_t) X(CUBLASLT_MATMUL_DESC_TRANSC, 5, int32_t)                         \
  X(CUBLASLT_MATMUL_DESC_EPILOGUE, 7, uint32_t) X(CUBLASLT_MATMUL_DESC_BIAS_POINTER, 8, const void*)            \
  X(CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE, 10, int64_t) X(CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, 26, int32_t)
#define BD_CUBLASLT_LAYOUT(X)                                                                                  \
  X(CUBLASLT_MATRIX_LAYOUT_TYPE, 0, uint32_t) X(CUBLASLT_MATRIX_LAYOUT_ORDER, 1, int32_t)                       \
  X(CUBLASLT_MATRIX_LAYOUT_ROWS, 2, uint64_t) X(CUBLASLT_MATRIX_LAYOUT_COLS, 3, uint64_t)                       \
  X(CUBLASLT_MATRIX_LAYOUT_LD, 4, int64_t) X(CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, 5, int32_t)                    \
  X(CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, 6, int64_t)
#define BD_CUBLASLT_PREFERENCE(X)                                                                             \
  X(CUBLASLT_MATMUL_PREF_SEARCH_MODE, 0, uint32_t) X(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, 1, uint64_t)    \
  X(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, 5, uint32_t) X(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, 6, uint32_t) \
  X(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, 7, uint32_t) X(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, 8, uint32_t)
#define BD_CUBLASLT_ORDER(X) X(CUBLASLT_ORDER_COL, 0) X(CUBLASLT_ORDER_ROW, 1)
#define BD_CUBLASLT_POINTER_MODE(X) X(CUBLASLT_POINTER_MODE_HOST, 0) X(CUBLASLT_POINTER_MODE_DEVICE, 1)
#define BD_CUBLASLT_EPILOGUE(X)                                                                              \
  X(CUBLASLT_EPILOGUE_DEFAULT, 1) X(CUBLASLT_EPILOGUE_RELU, 2) X(CUBLASLT_EPILOGUE_BIAS, 4)                   \
  X(CUBLASLT_EPILOGUE_RELU_BIAS, 6) X(CUBLASLT_EPILOGUE_GELU, 32) X(CUBLASLT_EPILOGUE_GELU_AUX, 160)          \
  X(CUBLASLT_EPILOGUE_GELU_BIAS, 36) X(CUBLASLT_EPILOGUE_GELU_AUX_BIAS, 164)

// BD_CUBLASLT_VALUES_ONLY: the value lists alone (abi_check.cpp compares them with a real cublasLt.h)
#ifndef BD_CUBLASLT_VALUES_ONLY
#include "cublas.h"
typedef enum { BD_CUBLASLT_MATMUL_DESC(BD_ENUM_VALUE) } cublasLtMatmulDescAttributes_t;
typedef enum { BD_CUBLASLT_LAYOUT(BD_ENUM_VALUE) } cublasLtMatrixLayoutAttribute_t;
typedef enum { BD_CUBLASLT_PREFERENCE(BD_ENUM_VALUE) } cublasLtMatmulPreferenceAttributes_t;
typedef enum { BD_CUBLASLT_ORDER(BD_ENUM_VALUE) } cublasLtOrder_t;
typedef enum { BD_CUBLASLT_POINTER_MODE(BD_ENUM_VALUE) } cublasLtPointerMode_t;
typedef enum { BD_CUBLASLT_EPILOGUE(BD_ENUM_VALUE) } cublasLtEpilogue_t;

// Semi-opaque structs: their sizes are the real header's (the caller allocates the algorithm and the results).
typedef struct { uint64_t data[8]; } cublasLtMatmulAlgo_t;
typedef struct {
  cublasLtMatmulAlgo_t algo;
  size_t workspaceSize;
  cublasStatus_t state;
  float wavesCount;
  int reserved[4];
} cublasLtMatmulHeuristicResult_t;  // 96 bytes: algo 0, workspaceSize 64, state 72, wavesCount 76
struct cublasLtContext;
typedef struct cublasLtContext* cublasLtHandle_t;
struct bdLtMatmulDesc;
typedef struct bdLtMatmulDesc* cublasLtMatmulDesc_t;
struct bdLtLayout;
typedef struct bdLtLayout* cublasLtMatrixLayout_t;
struct bdLtPreference;
typedef struct bdLtPreference* cublasLtMatmulPreference_t;

#ifdef __cplusplus
extern "C" {
#endif
cublasStatus_t cublasLtCreate(cublasLtHandle_t* lightHandle);
cublasStatus_t cublasLtDestroy(cublasLtHandle_t lightHandle);
size_t cublasLtGetVersion(void);
const char* cublasLtGetStatusName(cublasStatus_t status);
const char* cublasLtGetStatusString(cublasStatus_t status);
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* matmulDesc, cublasComputeType_t computeType,
                                        cudaDataType scaleType);
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t matmulDesc);
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t matmulDesc, cublasLtMatmulDescAttributes_t attr,
                                              const void* buf, size_t sizeInBytes);
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* matLayout, cudaDataType type, uint64_t rows,
                                          uint64_t cols, int64_t ld);
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t matLayout);
cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t matLayout, cublasLtMatrixLayoutAttribute_t attr,
                                                const void* buf, size_t sizeInBytes);
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* pref);
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref);
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr, const void* buf,
                                                    size_t sizeInBytes);
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t lightHandle, cublasLtMatmulDesc_t operationDesc,
                                              cublasLtMatrixLayout_t Adesc, cublasLtMatrixLayout_t Bdesc,
                                              cublasLtMatrixLayout_t Cdesc, cublasLtMatrixLayout_t Ddesc,
                                              cublasLtMatmulPreference_t preference, int requestedAlgoCount,
                                              cublasLtMatmulHeuristicResult_t heuristicResultsArray[],
                                              int* returnAlgoCount);
cublasStatus_t cublasLtMatmul(cublasLtHandle_t lightHandle, cublasLtMatmulDesc_t computeDesc, const void* alpha,
                              const void* A, cublasLtMatrixLayout_t Adesc, const void* B, cublasLtMatrixLayout_t Bdesc,
                              const void* beta, const void* C, cublasLtMatrixLayout_t Cdesc, void* D,
                              cublasLtMatrixLayout_t Ddesc, const cublasLtMatmulAlgo_t* algo, void* workspace,
                              size_t workspaceSizeInBytes, cudaStream_t stream);
#ifdef __cplusplus
}
#endif
#endif  // BD_CUBLASLT_VALUES_ONLY
