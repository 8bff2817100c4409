// cublas.cpp -- the emulated libcublas: handles, streams, math mode, and cublasGemmEx /
// cublasGemmStridedBatchedEx for CUDA_R_32F / CUDA_R_16F / CUDA_R_16BF inputs with float32 compute, delegated to
// OpenBLAS's column-major cblas_sgemm (16-bit operands are widened to float32 first, C is rounded back once).
// Arguments are validated as cuBLAS documents (CUBLAS_STATUS_INVALID_VALUE for bad sizes / leading dimensions /
// operations, CUBLAS_STATUS_NOT_SUPPORTED for unsupported type combinations). Beyond cuBLAS, every matrix range
// (ld, stride and batch included) must lie inside one device allocation: where a GPU would read garbage or
// fault, this returns CUBLAS_STATUS_EXECUTION_FAILED and says why on stderr. TF32 as on sm_80+: float32
// operands are rounded to TF32 (half.h tf32_round) under CUBLAS_COMPUTE_32F_FAST_TF32, or under CUBLAS_COMPUTE_32F
// when the handle's math mode is CUBLAS_TF32_TENSOR_OP_MATH; accumulation stays float32.
#ifdef BD_REAL_CUDA_HEADERS
#include <cublas_v2.h>  // signature check only
#include "api/cublas_values.h"
#else
#include "api/cublas.h"
#endif
#include <algorithm>
#include <cstdio>
#include <vector>
#include "blas.h"
#include "half.h"

struct cublasContext {
  cudaStream_t stream = nullptr;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
};

namespace {
size_t elem_size(cudaDataType t) { return t == CUDA_R_32F ? 4 : 2; }
// A column-major rows x cols matrix with leading dimension ld spans ld * (cols - 1) + rows elements.
size_t span(int rows, int cols, int ld) { return rows && cols ? (size_t)ld * (cols - 1) + rows : 0; }
void widen(const void* src, cudaDataType t, size_t n, std::vector<float>& out, bool tf32 = false) {
  out.resize(n);
  const uint16_t* h = (const uint16_t*)src;
  if (t == CUDA_R_32F && tf32) for (size_t i = 0; i < n; ++i) out[i] = cuda_emu::tf32_round(((const float*)src)[i]);
  else if (t == CUDA_R_32F) std::copy((const float*)src, (const float*)src + n, out.begin());
  else if (t == CUDA_R_16F) for (size_t i = 0; i < n; ++i) out[i] = cuda_emu::f16_to_f32(h[i]);
  else for (size_t i = 0; i < n; ++i) out[i] = cuda_emu::bf16_to_f32(h[i]);
}
// Rounds the m x n matrix (leading dimension ldc) back into C; the gaps between columns stay untouched.
void narrow(const float* src, void* dst, cudaDataType t, int m, int n, int ldc) {
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      size_t o = (size_t)j * ldc + i;
      if (t == CUDA_R_32F) ((float*)dst)[o] = src[o];
      else if (t == CUDA_R_16F) ((uint16_t*)dst)[o] = cuda_emu::f32_to_f16(src[o]);
      else ((uint16_t*)dst)[o] = cuda_emu::f32_to_bf16(src[o]);
    }
}
bool in_device(const char* what, const void* p, size_t bytes, const char* fn) {
  if (!bytes || bdemu_device_range(p, bytes) == 0) return true;
  fprintf(stderr, "bun-diffusion emulated cuBLAS: %s: %s [%p, +%zu bytes) is not inside one device allocation\n", fn,
          what, p, bytes);
  return false;
}

// One validated GEMM as stream work (bdemu_stream_submit): alpha and beta are read at call time (host pointer
// mode), the matrices when the stream reaches it.
struct GemmJob {
  cublasOperation_t ta, tb;
  int m, n, k;
  float al, be;
  const void* A;
  cudaDataType at;
  int lda;
  long long sa;
  const void* B;
  cudaDataType bt;
  int ldb;
  long long sb;
  void* C;
  cudaDataType ct;
  int ldc;
  long long sc;
  int batch;
  bool tf32;
  size_t na, nb, nc;
  static int run(void* p) {
    static_cast<GemmJob*>(p)->compute();
    return 0;
  }
  static void drop(void* p) { delete static_cast<GemmJob*>(p); }
  void compute() const {
    std::vector<float> fa, fb, fc;
    for (int i = 0; i < batch; ++i) {
      const char* a = (const char*)A + (size_t)i * sa * elem_size(at);
      const char* b = (const char*)B + (size_t)i * sb * elem_size(bt);
      char* c = (char*)C + (size_t)i * sc * elem_size(ct);
      if (be != 0.f) widen(c, ct, nc, fc);
      else fc.assign(nc, 0.f);  // beta = 0: C is not read (NaN there does not propagate), as cuBLAS
      if (k == 0) {
        for (float& v : fc) v *= be;
      } else {
        widen(a, at, na, fa, tf32);
        widen(b, bt, nb, fb, tf32);
        bdemu::sgemm()(bdemu::CblasColMajor, ta == CUBLAS_OP_N ? bdemu::CblasNoTrans : bdemu::CblasTrans,
                       tb == CUBLAS_OP_N ? bdemu::CblasNoTrans : bdemu::CblasTrans, m, n, k, al, fa.data(), lda,
                       fb.data(), ldb, be, fc.data(), ldc);
      }
      narrow(fc.data(), c, ct, m, n, ldc);
    }
  }
};

cublasStatus_t gemm(const char* fn, cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                    const void* alpha, const void* A, cudaDataType at, int lda, long long sa, const void* B,
                    cudaDataType bt, int ldb, long long sb, const void* beta, void* C, cudaDataType ct, int ldc,
                    long long sc, int batch, cublasComputeType_t compute) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  auto op_ok = [](cublasOperation_t o) { return o == CUBLAS_OP_N || o == CUBLAS_OP_T || o == CUBLAS_OP_C; };
  if (!op_ok(ta) || !op_ok(tb) || m < 0 || n < 0 || k < 0 || batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
  int rows_a = ta == CUBLAS_OP_N ? m : k, cols_a = ta == CUBLAS_OP_N ? k : m;  // A as stored
  int rows_b = tb == CUBLAS_OP_N ? k : n, cols_b = tb == CUBLAS_OP_N ? n : k;
  if (lda < std::max(1, rows_a) || ldb < std::max(1, rows_b) || ldc < std::max(1, m)) return CUBLAS_STATUS_INVALID_VALUE;
  // cublasGemmEx's type table for float32 compute: 16-bit A = B with C of that type or float32 under COMPUTE_32F
  // (or _PEDANTIC); float32 A = B = C also under the _FAST_* compute types
  bool c32 = compute == CUBLAS_COMPUTE_32F || compute == CUBLAS_COMPUTE_32F_PEDANTIC;
  bool fast = compute == CUBLAS_COMPUTE_32F_FAST_16F || compute == CUBLAS_COMPUTE_32F_FAST_16BF ||
              compute == CUBLAS_COMPUTE_32F_FAST_TF32;
  bool half_ok = (at == CUDA_R_16F || at == CUDA_R_16BF) && (ct == at || ct == CUDA_R_32F) && c32;
  bool f32_ok = at == CUDA_R_32F && ct == CUDA_R_32F && (c32 || fast);
  if (bt != at || !(half_ok || f32_ok)) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (!alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
  if (m == 0 || n == 0 || batch == 0) return CUBLAS_STATUS_SUCCESS;
  if (!bdemu::sgemm()) return CUBLAS_STATUS_NOT_INITIALIZED;
  float al = *(const float*)alpha, be = *(const float*)beta;
  bool tf32 = at == CUDA_R_32F && (compute == CUBLAS_COMPUTE_32F_FAST_TF32 ||
                                   (compute == CUBLAS_COMPUTE_32F && (h->math & 0xf) == CUBLAS_TF32_TENSOR_OP_MATH));
  size_t na = span(rows_a, cols_a, lda), nb = span(rows_b, cols_b, ldb), nc = span(m, n, ldc);
  auto whole = [&](size_t one, long long stride, cudaDataType t) {  // bytes from the first to the last batch's end
    return one ? ((size_t)std::max(0LL, stride) * (batch - 1) + one) * elem_size(t) : 0;
  };
  if (sa < 0 || sb < 0 || sc < 0 || !in_device("A", A, whole(na, sa, at), fn) || !in_device("B", B, whole(nb, sb, bt), fn) ||
      !in_device("C", C, whole(nc, sc, ct), fn))
    return CUBLAS_STATUS_EXECUTION_FAILED;
  auto* job = new GemmJob{ta, tb, m, n, k, al, be, A, at, lda, sa, B, bt, ldb, sb, C, ct, ldc, sc, batch, tf32, na, nb, nc};
  int e = bdemu_stream_submit(h->stream, fn, &GemmJob::run, job, &GemmJob::drop);
  return e ? CUBLAS_STATUS_EXECUTION_FAILED : CUBLAS_STATUS_SUCCESS;
}
}  // namespace

extern "C" {
cublasStatus_t cublasCreate_v2(cublasHandle_t* h) {
  if (!h) return CUBLAS_STATUS_INVALID_VALUE;
  if (!bdemu::sgemm()) {
    fprintf(stderr, "bun-diffusion emulated cuBLAS: cblas_sgemm not found; install OpenBLAS (apt-get install "
                    "libopenblas0) or set BD_OPENBLAS_LIB\n");
    return CUBLAS_STATUS_NOT_INITIALIZED;
  }
  *h = new cublasContext();
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy_v2(cublasHandle_t h) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGetVersion_v2(cublasHandle_t h, int* version) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!version) return CUBLAS_STATUS_INVALID_VALUE;
  *version = 130000;  // major * 10000 + minor * 100 + patch
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGetProperty(libraryPropertyType type, int* value) {
  if (!value || type < MAJOR_VERSION || type > PATCH_LEVEL) return CUBLAS_STATUS_INVALID_VALUE;
  *value = type == MAJOR_VERSION ? 13 : 0;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream_v2(cublasHandle_t h, cudaStream_t s) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  h->stream = s;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGetStream_v2(cublasHandle_t h, cudaStream_t* s) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!s) return CUBLAS_STATUS_INVALID_VALUE;
  *s = h->stream;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t mode) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  if ((mode & ~CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION) > CUBLAS_TF32_TENSOR_OP_MATH) return CUBLAS_STATUS_INVALID_VALUE;
  h->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGetMathMode(cublasHandle_t h, cublasMath_t* mode) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!mode) return CUBLAS_STATUS_INVALID_VALUE;
  *mode = h->math;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t h, void*, size_t) {
  return h ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}
#define BD_STATUS_NAME(name, value, text) \
  case name: return #name;
#define BD_STATUS_TEXT(name, value, text) \
  case name: return text;
const char* cublasGetStatusName(cublasStatus_t s) {
  switch (s) { BD_CUBLAS_STATUS(BD_STATUS_NAME) }
  return "CUBLAS_STATUS_UNKNOWN";
}
const char* cublasGetStatusString(cublasStatus_t s) {
  switch (s) { BD_CUBLAS_STATUS(BD_STATUS_TEXT) }
  return "unknown error";
}
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void* alpha, const void* A, cudaDataType at, int lda, const void* B, cudaDataType bt,
                            int ldb, const void* beta, void* C, cudaDataType ct, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t) {
  return gemm("cublasGemmEx", h, ta, tb, m, n, k, alpha, A, at, lda, 0, B, bt, ldb, 0, beta, C, ct, ldc, 0, 1, compute);
}
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void* alpha, const void* A, cudaDataType at, int lda,
                                          long long int sa, const void* B, cudaDataType bt, int ldb, long long int sb,
                                          const void* beta, void* C, cudaDataType ct, int ldc, long long int sc,
                                          int batch, cublasComputeType_t compute, cublasGemmAlgo_t) {
  return gemm("cublasGemmStridedBatchedEx", h, ta, tb, m, n, k, alpha, A, at, lda, sa, B, bt, ldb, sb, beta, C, ct, ldc,
              sc, batch, compute);
}
}  // extern "C"
