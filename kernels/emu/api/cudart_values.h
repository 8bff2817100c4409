// api/cudart_values.h -- enum values of the CUDA runtime API used by the emulated libcudart, as X-macro lists:
// api/cudart.h builds its enums from them and abi_check.cpp compares each with the real headers.
#pragma once

// X(name, value, cudaGetErrorString text)
#define BD_CUDART_ERRORS(X)                                                                             \
  X(cudaSuccess, 0, "no error")                                                                         \
  X(cudaErrorInvalidValue, 1, "invalid argument")                                                       \
  X(cudaErrorMemoryAllocation, 2, "out of memory")                                                      \
  X(cudaErrorInitializationError, 3, "initialization error")                                            \
  X(cudaErrorInvalidConfiguration, 9, "invalid configuration argument")                                 \
  X(cudaErrorInvalidDevicePointer, 17, "invalid device pointer")                                        \
  X(cudaErrorInvalidMemcpyDirection, 21, "invalid copy direction for memcpy")                           \
  X(cudaErrorInsufficientDriver, 35, "CUDA driver version is insufficient for CUDA runtime version")    \
  X(cudaErrorNoDevice, 100, "no CUDA-capable device is detected")                                       \
  X(cudaErrorInvalidDevice, 101, "invalid device ordinal")                                              \
  X(cudaErrorNoKernelImageForDevice, 209, "no kernel image is available for execution on the device")   \
  X(cudaErrorInvalidResourceHandle, 400, "invalid resource handle")                                     \
  X(cudaErrorIllegalState, 401, "the operation cannot be performed in the present state")               \
  X(cudaErrorNotReady, 600, "device not ready")                                                         \
  X(cudaErrorIllegalAddress, 700, "an illegal memory access was encountered")                           \
  X(cudaErrorHostMemoryAlreadyRegistered, 712, "part or all of the requested memory range is already mapped") \
  X(cudaErrorHostMemoryNotRegistered, 713, "pointer does not correspond to a registered memory region") \
  X(cudaErrorLaunchFailure, 719, "unspecified launch failure")                                          \
  X(cudaErrorNotSupported, 801, "operation not supported")                                              \
  X(cudaErrorStreamCaptureUnsupported, 900, "operation not permitted when stream is capturing")         \
  X(cudaErrorStreamCaptureInvalidated, 901, "operation failed due to a previous error during capture")  \
  X(cudaErrorStreamCaptureMerge, 902, "operation would result in a merge of separate capture sequences") \
  X(cudaErrorStreamCaptureUnmatched, 903, "capture was not ended in the same stream as it began")       \
  X(cudaErrorStreamCaptureUnjoined, 904, "capturing stream has unjoined work")                          \
  X(cudaErrorStreamCaptureIsolation, 905, "dependency created on uncaptured work in another stream")    \
  X(cudaErrorStreamCaptureImplicit, 906, "operation would make the legacy stream depend on a capturing blocking stream") \
  X(cudaErrorCapturedEvent, 907, "operation not permitted on an event last recorded in a capturing stream") \
  X(cudaErrorStreamCaptureWrongThread, 908, "attempt to terminate a thread-local capture sequence from another thread") \
  X(cudaErrorUnknown, 999, "unknown error")

#define BD_CUDART_MEMCPY_KINDS(X)                                                                       \
  X(cudaMemcpyHostToHost, 0) X(cudaMemcpyHostToDevice, 1) X(cudaMemcpyDeviceToHost, 2)                  \
  X(cudaMemcpyDeviceToDevice, 3) X(cudaMemcpyDefault, 4)
#define BD_CUDART_DEVICE_ATTRS(X)                                                                       \
  X(cudaDevAttrMaxThreadsPerBlock, 1) X(cudaDevAttrMaxBlockDimX, 2) X(cudaDevAttrMaxGridDimX, 5)        \
  X(cudaDevAttrMaxSharedMemoryPerBlock, 8) X(cudaDevAttrWarpSize, 10) X(cudaDevAttrClockRate, 13)       \
  X(cudaDevAttrMultiProcessorCount, 16) X(cudaDevAttrCanMapHostMemory, 19)                              \
  X(cudaDevAttrMemoryClockRate, 36) X(cudaDevAttrGlobalMemoryBusWidth, 37) X(cudaDevAttrL2CacheSize, 38) \
  X(cudaDevAttrMaxThreadsPerMultiProcessor, 39) X(cudaDevAttrUnifiedAddressing, 41)                    \
  X(cudaDevAttrComputeCapabilityMajor, 75) X(cudaDevAttrComputeCapabilityMinor, 76)                    \
  X(cudaDevAttrMaxSharedMemoryPerBlockOptin, 97) X(cudaDevAttrMemoryPoolsSupported, 115)
#define BD_CUDART_POOL_ATTRS(X)                                                                         \
  X(cudaMemPoolAttrReleaseThreshold, 4) X(cudaMemPoolAttrReservedMemCurrent, 5)                         \
  X(cudaMemPoolAttrReservedMemHigh, 6) X(cudaMemPoolAttrUsedMemCurrent, 7) X(cudaMemPoolAttrUsedMemHigh, 8)
#define BD_CUDART_CAPTURE(X)                                                                            \
  X(cudaStreamCaptureModeGlobal, 0) X(cudaStreamCaptureModeThreadLocal, 1) X(cudaStreamCaptureModeRelaxed, 2) \
  X(cudaStreamCaptureStatusNone, 0) X(cudaStreamCaptureStatusActive, 1) X(cudaStreamCaptureStatusInvalidated, 2)
#define BD_CUDART_FLAGS(X)                                                                              \
  X(cudaStreamDefault, 0x00) X(cudaStreamNonBlocking, 0x01) X(cudaEventDefault, 0x00)                   \
  X(cudaEventBlockingSync, 0x01) X(cudaEventDisableTiming, 0x02) X(cudaHostAllocDefault, 0x00)          \
  X(cudaHostRegisterDefault, 0x00)
