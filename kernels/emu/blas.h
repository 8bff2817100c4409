// blas.h -- cblas_sgemm for the cuBLAS and cuDNN shims, loaded at first use from OpenBLAS (Debian
// libopenblas0; BD_OPENBLAS_LIB overrides) so the shims build without BLAS headers. Column-major cblas_sgemm
// has exactly cuBLAS's op / ld / stride semantics, so the shim cannot share a misunderstanding with our code.
// The TypeScript side loads OpenBLAS first (ffi/openblas.ts) to set OPENBLAS_CORETYPE; dlopen then returns
// that same instance.
#pragma once
#include <dlfcn.h>
#include <cstdlib>

namespace bdemu {
enum { CblasColMajor = 102, CblasNoTrans = 111, CblasTrans = 112 };
typedef void (*sgemm_fn)(int order, int ta, int tb, int m, int n, int k, float alpha, const float* a, int lda,
                         const float* b, int ldb, float beta, float* c, int ldc);
inline sgemm_fn sgemm() {
  static sgemm_fn f = []() -> sgemm_fn {
    const char* names[] = {getenv("BD_OPENBLAS_LIB"), "libopenblas.so.0", "libopenblas.so",
                           "/usr/lib/x86_64-linux-gnu/libopenblas.so.0", "/usr/lib/aarch64-linux-gnu/libopenblas.so.0"};
    for (const char* n : names)
      if (void* h = n ? dlopen(n, RTLD_NOW | RTLD_LOCAL) : nullptr)
        if (void* s = dlsym(h, "cblas_sgemm")) return (sgemm_fn)s;
    return nullptr;
  }();
  return f;
}
}  // namespace bdemu

// From the emulated libcudart: 0 when [p, p + bytes) lies inside one device allocation.
extern "C" int bdemu_device_range(const void* p, size_t bytes);
// the emulated libcudart's stream work queue: run(arg) performs the work (returns a cudaError_t), drop(arg) frees arg
extern "C" int bdemu_stream_submit(cudaStream_t st, const char* what, int (*run)(void*), void* arg, void (*drop)(void*));
// cudaStreamSynchronize of the emulated libcudart (for calls that block the host, e.g. cudnnFind*)
extern "C" int bdemu_stream_synchronize(cudaStream_t st);
