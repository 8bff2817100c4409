// abi.cu -- self-description of the kernels library, checked by TypeScript before first use: the layout of
// bd::Strided and the op-code order (ffi/cuda/kernels.ts mirrors both), and whether this build is emulated.
//
//   const char* bdk_abi()             "bdk 1;emulated=0|1;strided=<size>,<ndim>,<nargs>,<numel>,<shape>,<stride>;
//                                      dims=8;args=4;unary=neg,...;binary=add,...;reduce=sum,..."
//   const char* bdk_last_error()      emulator: message of the last failed launch (deadlock, bad configuration)
//   int bdk_cudart_version()          the CUDA runtime version the library was built against (CUDART_VERSION,
//                                     e.g. 13000; its libcudart.so.<major> is NEEDED); 0 for the emulated build
#include <stddef.h>
#include <stdio.h>
#include "common.cuh"

#define BD_NAME_ITEM(n) #n ","
BDK_API const char* bdk_abi() {
  static char buf[1024];
  if (!buf[0]) {
    using bd::Strided;
#ifdef CUDA_EMU
    const int emulated = 1;
#else
    const int emulated = 0;
#endif
    // op lists end in "," -- TypeScript splits and drops the empty tail
    snprintf(buf, sizeof buf, "bdk 1;emulated=%d;strided=%zu,%zu,%zu,%zu,%zu,%zu;dims=%d;args=%d;unary=%s;binary=%s;reduce=%s",
             emulated, sizeof(Strided), offsetof(Strided, ndim), offsetof(Strided, nargs), offsetof(Strided, numel),
             offsetof(Strided, shape), offsetof(Strided, stride), bd::kMaxDims, bd::kMaxArgs,
             BD_UNARY_OPS(BD_NAME_ITEM), BD_BINARY_OPS(BD_NAME_ITEM), BD_REDUCE_OPS(BD_NAME_ITEM));
  }
  return buf;
}

BDK_API const char* bdk_last_error() {
#ifdef CUDA_EMU
  return cuda_emu::last_error_msg();
#else
  return "";
#endif
}

BDK_API int bdk_cudart_version() {
#if defined(CUDA_EMU) || !defined(CUDART_VERSION)
  return 0;
#else
  return CUDART_VERSION;
#endif
}
