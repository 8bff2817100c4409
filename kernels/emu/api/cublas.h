// api/cublas.h -- the subset of the cuBLAS v2 API (cublas_api.h) that the emulated libcublas implements and
// ffi/cuda/cublas.ts binds. Exported names are the library's own: cublasCreate etc. are macros for the *_v2
// symbols in cublas_v2.h, so the *_v2 names are what a dlopen user sees.
#pragma once
#include <stddef.h>
#include "cublas_values.h"

#ifndef BD_ENUM_VALUE
#define BD_ENUM_VALUE(name, value, ...) name = value,
#endif
typedef enum { BD_CUBLAS_STATUS(BD_ENUM_VALUE) } cublasStatus_t;
typedef enum { BD_CUBLAS_OPERATIONS(BD_ENUM_VALUE) } cublasOperation_t;
typedef enum { BD_CUBLAS_MATH(BD_ENUM_VALUE) } cublasMath_t;
typedef enum { BD_CUBLAS_COMPUTE(BD_ENUM_VALUE) } cublasComputeType_t;
typedef enum { BD_CUBLAS_ALGOS(BD_ENUM_VALUE) } cublasGemmAlgo_t;
typedef enum cudaDataType_t { BD_CUDA_DATA_TYPES(BD_ENUM_VALUE) } cudaDataType;
typedef enum libraryPropertyType_t { MAJOR_VERSION, MINOR_VERSION, PATCH_LEVEL } libraryPropertyType;
typedef struct CUstream_st* cudaStream_t;
struct cublasContext;
typedef struct cublasContext* cublasHandle_t;

#ifdef __cplusplus
extern "C" {
#endif
cublasStatus_t cublasCreate_v2(cublasHandle_t* handle);
cublasStatus_t cublasDestroy_v2(cublasHandle_t handle);
cublasStatus_t cublasGetVersion_v2(cublasHandle_t handle, int* version);
cublasStatus_t cublasGetProperty(libraryPropertyType type, int* value);
cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t streamId);
cublasStatus_t cublasGetStream_v2(cublasHandle_t handle, cudaStream_t* streamId);
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode);
cublasStatus_t cublasGetMathMode(cublasHandle_t handle, cublasMath_t* mode);
cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t handle, void* workspace, size_t workspaceSizeInBytes);
const char* cublasGetStatusName(cublasStatus_t status);
const char* cublasGetStatusString(cublasStatus_t status);
cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k,
                            const void* alpha, const void* A, cudaDataType Atype, int lda, const void* B,
                            cudaDataType Btype, int ldb, const void* beta, void* C, cudaDataType Ctype, int ldc,
                            cublasComputeType_t computeType, cublasGemmAlgo_t algo);
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                          int m, int n, int k, const void* alpha, const void* A, cudaDataType Atype,
                                          int lda, long long int strideA, const void* B, cudaDataType Btype, int ldb,
                                          long long int strideB, const void* beta, void* C, cudaDataType Ctype, int ldc,
                                          long long int strideC, int batchCount, cublasComputeType_t computeType,
                                          cublasGemmAlgo_t algo);
#ifdef __cplusplus
}
#endif
