// api/cublas_values.h -- enum values of cuBLAS (cublas_api.h, CUDA 11+; library_types.h for cudaDataType) used by
// the emulated libcublas, as X-macro lists; abi_check.cpp compares them with the real headers when present.
// Source: the cuBLAS documentation, sections cublasStatus_t, cublasOperation_t, cublasMath_t,
// cublasComputeType_t, cublasGemmAlgo_t, and cudaDataType_t (https://docs.nvidia.com/cuda/cublas/).
#pragma once

// X(name, value, cublasGetStatusString text)
#define BD_CUBLAS_STATUS(X)                                                                 \
  X(CUBLAS_STATUS_SUCCESS, 0, "success")                                                    \
  X(CUBLAS_STATUS_NOT_INITIALIZED, 1, "the library was not initialized")                    \
  X(CUBLAS_STATUS_ALLOC_FAILED, 3, "the resource allocation failed")                        \
  X(CUBLAS_STATUS_INVALID_VALUE, 7, "an invalid numeric value was used as an argument")     \
  X(CUBLAS_STATUS_ARCH_MISMATCH, 8, "an absent device architectural feature is required")   \
  X(CUBLAS_STATUS_MAPPING_ERROR, 11, "an access to GPU memory space failed")                \
  X(CUBLAS_STATUS_EXECUTION_FAILED, 13, "the GPU program failed to execute")                \
  X(CUBLAS_STATUS_INTERNAL_ERROR, 14, "an internal operation failed")                       \
  X(CUBLAS_STATUS_NOT_SUPPORTED, 15, "the functionality requested is not supported")        \
  X(CUBLAS_STATUS_LICENSE_ERROR, 16, "error detected trying to check the license")
#define BD_CUBLAS_OPERATIONS(X) X(CUBLAS_OP_N, 0) X(CUBLAS_OP_T, 1) X(CUBLAS_OP_C, 2)
#define BD_CUBLAS_MATH(X)                                                                                 \
  X(CUBLAS_DEFAULT_MATH, 0) X(CUBLAS_TENSOR_OP_MATH, 1) X(CUBLAS_PEDANTIC_MATH, 2)                        \
  X(CUBLAS_TF32_TENSOR_OP_MATH, 3) X(CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION, 16)
#define BD_CUBLAS_COMPUTE(X)                                                                              \
  X(CUBLAS_COMPUTE_16F, 64) X(CUBLAS_COMPUTE_16F_PEDANTIC, 65) X(CUBLAS_COMPUTE_32F, 68)                  \
  X(CUBLAS_COMPUTE_32F_PEDANTIC, 69) X(CUBLAS_COMPUTE_32F_FAST_16F, 74) X(CUBLAS_COMPUTE_32F_FAST_16BF, 75) \
  X(CUBLAS_COMPUTE_32F_FAST_TF32, 77) X(CUBLAS_COMPUTE_64F, 70) X(CUBLAS_COMPUTE_64F_PEDANTIC, 71)        \
  X(CUBLAS_COMPUTE_32I, 72) X(CUBLAS_COMPUTE_32I_PEDANTIC, 73)
#define BD_CUBLAS_ALGOS(X) X(CUBLAS_GEMM_DEFAULT, -1) X(CUBLAS_GEMM_DEFAULT_TENSOR_OP, 99)
#define BD_CUDA_DATA_TYPES(X) \
  X(CUDA_R_32F, 0) X(CUDA_R_64F, 1) X(CUDA_R_16F, 2) X(CUDA_R_8I, 3) X(CUDA_R_32I, 10) X(CUDA_R_16BF, 14)
