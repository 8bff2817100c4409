// api/cudnn_values.h -- enum values of the cuDNN 9 legacy convolution API (cudnn_graph.h, cudnn_ops.h,
// cudnn_cnn.h) used by the emulated libcudnn, as X-macro lists; abi_check.cpp compares them with the real
// headers when present. Source: the cuDNN 9 API reference (cudnnStatus_t -- renumbered in 9.0: 0 / 1xxx init /
// 2xxx bad parameter / 3xxx not supported / 4xxx internal / 5xxx execution --, cudnnDataType_t,
// cudnnTensorFormat_t, cudnnConvolutionMode_t, cudnnMathType_t, cudnnConvolutionFwdAlgo_t,
// cudnnDeterminism_t). ffi never relies on status numbers (cuDNN 8 used 0..14): any non-zero status is an error
// described by cudnnGetErrorString.
#pragma once

#define BD_CUDNN_STATUS(X)                                                                      \
  X(CUDNN_STATUS_SUCCESS, 0) X(CUDNN_STATUS_NOT_INITIALIZED, 1001) X(CUDNN_STATUS_BAD_PARAM, 2000) \
  X(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, 2002) X(CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED, 2004)     \
  X(CUDNN_STATUS_NOT_SUPPORTED, 3000) X(CUDNN_STATUS_INTERNAL_ERROR, 4000) X(CUDNN_STATUS_EXECUTION_FAILED, 5000)
#define BD_CUDNN_DATA_TYPES(X) \
  X(CUDNN_DATA_FLOAT, 0) X(CUDNN_DATA_DOUBLE, 1) X(CUDNN_DATA_HALF, 2) X(CUDNN_DATA_INT8, 3) X(CUDNN_DATA_INT32, 4) X(CUDNN_DATA_BFLOAT16, 9)
#define BD_CUDNN_FORMATS(X) X(CUDNN_TENSOR_NCHW, 0) X(CUDNN_TENSOR_NHWC, 1) X(CUDNN_TENSOR_NCHW_VECT_C, 2)
#define BD_CUDNN_CONV_MODES(X) X(CUDNN_CONVOLUTION, 0) X(CUDNN_CROSS_CORRELATION, 1)
#define BD_CUDNN_MATH(X) \
  X(CUDNN_DEFAULT_MATH, 0) X(CUDNN_TENSOR_OP_MATH, 1) X(CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION, 2) X(CUDNN_FMA_MATH, 3)
#define BD_CUDNN_FWD_ALGOS(X)                                                                                  \
  X(CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, 0) X(CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, 1)        \
  X(CUDNN_CONVOLUTION_FWD_ALGO_GEMM, 2) X(CUDNN_CONVOLUTION_FWD_ALGO_DIRECT, 3) X(CUDNN_CONVOLUTION_FWD_ALGO_FFT, 4) \
  X(CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING, 5) X(CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD, 6)                       \
  X(CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED, 7) X(CUDNN_CONVOLUTION_FWD_ALGO_COUNT, 8)
#define BD_CUDNN_DETERMINISM(X) X(CUDNN_NON_DETERMINISTIC, 0) X(CUDNN_DETERMINISTIC, 1)
