// abi_check.cpp -- compiled (never linked) by scripts/build-kernels.ts when real CUDA / cuBLAS / cuDNN headers
// are on the include path: every enum value the shims use must equal the real library's, and the layout of the
// structs that cross the ABI must match. The shims' function signatures are checked separately by compiling each
// shim against the real header (-DBD_REAL_CUDA_HEADERS), where a differing signature is a conflicting declaration.
#include <stddef.h>
#include "api/cublas_values.h"
#include "api/cudart_values.h"
#include "api/cudnn_values.h"
#define BD_SAME(name, value, ...) static_assert((long long)(name) == (long long)(value), #name " differs from the real header");

#if __has_include(<cuda_runtime_api.h>)
#include <cuda_runtime_api.h>
BD_CUDART_ERRORS(BD_SAME)
BD_CUDART_MEMCPY_KINDS(BD_SAME)
BD_CUDART_DEVICE_ATTRS(BD_SAME)
BD_CUDART_POOL_ATTRS(BD_SAME)
BD_CUDART_CAPTURE(BD_SAME)
BD_CUDART_FLAGS(BD_SAME)
static_assert(offsetof(cudaDeviceProp, name) == 0, "cudaDeviceProp.name");
// ffi/cuda/cudart.ts PROP_TOTAL_GLOBAL_MEM (the same since CUDA 10, when uuid / luid were added before it)
static_assert(offsetof(cudaDeviceProp, totalGlobalMem) == 288, "cudaDeviceProp.totalGlobalMem is not at byte 288");
#define BD_API_TYPES_ONLY
namespace bd_min {
#include "api/cudart.h"  // our declarations, in a namespace, to compare struct layouts
}
static_assert(sizeof(bd_min::cudaDeviceProp) == sizeof(cudaDeviceProp), "cudaDeviceProp size");
static_assert(offsetof(bd_min::cudaDeviceProp, totalGlobalMem) == offsetof(cudaDeviceProp, totalGlobalMem), "totalGlobalMem");
static_assert(offsetof(bd_min::cudaDeviceProp, major) == offsetof(cudaDeviceProp, major), "major");
static_assert(offsetof(bd_min::cudaDeviceProp, multiProcessorCount) == offsetof(cudaDeviceProp, multiProcessorCount), "multiProcessorCount");
#endif

#if __has_include(<cublas_api.h>)
#include <cublas_api.h>
BD_CUBLAS_STATUS(BD_SAME)
BD_CUBLAS_OPERATIONS(BD_SAME)
BD_CUBLAS_MATH(BD_SAME)
BD_CUBLAS_COMPUTE(BD_SAME)
BD_CUBLAS_ALGOS(BD_SAME)
BD_CUDA_DATA_TYPES(BD_SAME)
#endif

#if __has_include(<cublasLt.h>)
#include <cublasLt.h>
#define BD_CUBLASLT_VALUES_ONLY
#include "api/cublaslt.h"
BD_CUBLASLT_MATMUL_DESC(BD_SAME)
BD_CUBLASLT_LAYOUT(BD_SAME)
BD_CUBLASLT_PREFERENCE(BD_SAME)
BD_CUBLASLT_ORDER(BD_SAME)
BD_CUBLASLT_POINTER_MODE(BD_SAME)
BD_CUBLASLT_EPILOGUE(BD_SAME)
// ffi/cuda/cublaslt.ts reads the heuristic result at these offsets
static_assert(sizeof(cublasLtMatmulAlgo_t) == 64, "cublasLtMatmulAlgo_t size");
static_assert(sizeof(cublasLtMatmulHeuristicResult_t) == 96, "cublasLtMatmulHeuristicResult_t size");
static_assert(offsetof(cublasLtMatmulHeuristicResult_t, workspaceSize) == 64, "workspaceSize offset");
static_assert(offsetof(cublasLtMatmulHeuristicResult_t, state) == 72, "state offset");
#endif

#if __has_include(<cudnn.h>)
#include <cudnn.h>
BD_CUDNN_STATUS(BD_SAME)
BD_CUDNN_DATA_TYPES(BD_SAME)
BD_CUDNN_FORMATS(BD_SAME)
BD_CUDNN_CONV_MODES(BD_SAME)
BD_CUDNN_MATH(BD_SAME)
BD_CUDNN_FWD_ALGOS(BD_SAME)
BD_CUDNN_DETERMINISM(BD_SAME)
static_assert(sizeof(cudnnConvolutionFwdAlgoPerf_t) == 48, "cudnnConvolutionFwdAlgoPerf_t size");
static_assert(offsetof(cudnnConvolutionFwdAlgoPerf_t, memory) == 16, "cudnnConvolutionFwdAlgoPerf_t.memory");
#endif
