// cublaslt.cpp -- the emulated libcublasLt: handles, matmul descriptors, matrix layouts, preferences, the algorithm
// heuristic and cublasLtMatmul with the DEFAULT, BIAS, GELU and GELU_BIAS epilogues, for CUDA_R_32F / CUDA_R_16F /
// CUDA_R_16BF inputs under CUBLAS_COMPUTE_32F (or _FAST_TF32 for float32) with float32 scale type. D = epilogue(
// alpha·op(A)·op(B) + beta·C [+ bias]) is computed in float32: OpenBLAS's column-major cblas_sgemm on the widened
// operands, then alpha/beta, the bias (broadcast over D's columns) and GELU in float32, and one rounding to D's
// type. The GELU of cuBLASLt's epilogue is the tanh approximation 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) (the
// form PyTorch fuses into it: only gelu(approximate="tanh") maps onto CUBLASLT_EPILOGUE_GELU), written here as the
// kernels' gelu_tanh is. Arguments are validated as the cuBLASLt API reference documents: attribute buffers of the
// wrong size or unknown attributes are CUBLAS_STATUS_INVALID_VALUE; so are shapes that do not chain (op(A) m×k,
// op(B) k×n, C and D m×n), leading dimensions below the rows, differing batch counts and a bias epilogue without a
// bias pointer; type combinations outside cublasLtMatmul's table (A ≠ B, C ≠ D, 16-bit inputs with another 16-bit
// output, a scale type other than float32, a bias type other than D's or float32) and epilogues or orders this
// emulation does not run are CUBLAS_STATUS_NOT_SUPPORTED. Each refusal says why on stderr. As the cuBLAS shim, every
// matrix range must lie inside one device allocation (CUBLAS_STATUS_EXECUTION_FAILED otherwise). cublasLtMatmul is
// stream work (bdemu_stream_submit): descriptors, layouts, alpha and beta are copied at call time.
#include "api/cublaslt.h"
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>
#include "blas.h"
#include "half.h"

struct cublasLtContext {
  int unused = 0;
};
struct bdLtMatmulDesc {
  cublasComputeType_t compute;
  cudaDataType scale;
  int32_t pointer_mode = CUBLASLT_POINTER_MODE_HOST;
  int32_t transa = CUBLAS_OP_N, transb = CUBLAS_OP_N, transc = CUBLAS_OP_N;
  uint32_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  const void* bias = nullptr;
  int64_t bias_batch_stride = 0;
  int32_t bias_type = -1;  // unset: D's type
};
struct bdLtLayout {
  uint32_t type;
  int32_t order = CUBLASLT_ORDER_COL;
  uint64_t rows, cols;
  int64_t ld;
  int32_t batch = 1;
  int64_t batch_stride = 0;
};
struct bdLtPreference {
  uint32_t search_mode = 0;
  uint64_t max_workspace = 0;
  uint32_t align[4] = {256, 256, 256, 256};  // A, B, C, D: cuBLASLt's default minimum alignments
};

namespace {
void why(const char* fn, const char* msg) { fprintf(stderr, "bun-diffusion emulated cuBLASLt: %s: %s\n", fn, msg); }

// Copies an attribute value of exactly sizeof(T) bytes (cuBLASLt checks the size).
template <typename T>
bool take(T& dst, const void* buf, size_t size) {
  if (!buf || size != sizeof(T)) return false;
  memcpy(&dst, buf, sizeof(T));
  return true;
}
size_t elem_size(uint32_t t) { return t == CUDA_R_32F ? 4 : 2; }
bool float_type(uint32_t t) { return t == CUDA_R_32F || t == CUDA_R_16F || t == CUDA_R_16BF; }
size_t span(uint64_t rows, uint64_t cols, int64_t ld) { return rows && cols ? (size_t)ld * (cols - 1) + rows : 0; }
float load(const void* p, uint32_t t, size_t i) {
  if (t == CUDA_R_32F) return ((const float*)p)[i];
  uint16_t h = ((const uint16_t*)p)[i];
  return t == CUDA_R_16F ? cuda_emu::f16_to_f32(h) : cuda_emu::bf16_to_f32(h);
}
void store(void* p, uint32_t t, size_t i, float v) {
  if (t == CUDA_R_32F) ((float*)p)[i] = v;
  else if (t == CUDA_R_16F) ((uint16_t*)p)[i] = cuda_emu::f32_to_f16(v);
  else ((uint16_t*)p)[i] = cuda_emu::f32_to_bf16(v);
}
float gelu_tanh(float x) { return 0.5f * x * (1.f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x))); }
bool in_device(const char* what, const void* p, size_t bytes, const char* fn) {
  if (!bytes || bdemu_device_range(p, bytes) == 0) return true;
  fprintf(stderr, "bun-diffusion emulated cuBLASLt: %s: %s [%p, +%zu bytes) is not inside one device allocation\n", fn,
          what, p, bytes);
  return false;
}

// The validated problem of one (descriptor, layouts) combination, shared by the heuristic and the matmul.
struct Problem {
  bdLtMatmulDesc desc;
  bdLtLayout a, b, c, d;
  uint64_t m, n, k;
  bool tf32;
  uint32_t bias_type;
};

cublasStatus_t validate(const char* fn, cublasLtHandle_t h, const bdLtMatmulDesc* desc, const bdLtLayout* A,
                        const bdLtLayout* B, const bdLtLayout* C, const bdLtLayout* D, Problem& p) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!desc || !A || !B || !C || !D) return why(fn, "a descriptor or layout is NULL"), CUBLAS_STATUS_INVALID_VALUE;
  p.desc = *desc;
  p.a = *A, p.b = *B, p.c = *C, p.d = *D;
  for (const bdLtLayout* l : {A, B, C, D})
    if (l->order != CUBLASLT_ORDER_COL)
      return why(fn, "only CUBLASLT_ORDER_COL layouts are emulated"), CUBLAS_STATUS_NOT_SUPPORTED;
  if (desc->transc != CUBLAS_OP_N) return why(fn, "TRANSC must be CUBLAS_OP_N"), CUBLAS_STATUS_NOT_SUPPORTED;
  if (desc->pointer_mode != CUBLASLT_POINTER_MODE_HOST)
    return why(fn, "only CUBLASLT_POINTER_MODE_HOST is emulated"), CUBLAS_STATUS_NOT_SUPPORTED;
  auto op_ok = [](int32_t o) { return o == CUBLAS_OP_N || o == CUBLAS_OP_T; };
  if (!op_ok(desc->transa) || !op_ok(desc->transb))
    return why(fn, "TRANSA/TRANSB must be CUBLAS_OP_N or CUBLAS_OP_T"), CUBLAS_STATUS_INVALID_VALUE;
  // op(A) is m x k, op(B) k x n, C and D m x n
  p.m = D->rows, p.n = D->cols;
  p.k = desc->transa == CUBLAS_OP_N ? A->cols : A->rows;
  uint64_t am = desc->transa == CUBLAS_OP_N ? A->rows : A->cols;
  uint64_t bk = desc->transb == CUBLAS_OP_N ? B->rows : B->cols, bn = desc->transb == CUBLAS_OP_N ? B->cols : B->rows;
  if (am != p.m || bk != p.k || bn != p.n || C->rows != p.m || C->cols != p.n) {
    char msg[256];
    snprintf(msg, sizeof msg,
             "shapes do not chain: op(A) %llux%llu, op(B) %llux%llu, C %llux%llu, D %llux%llu (need m x k, k x n, m x n)",
             (unsigned long long)am, (unsigned long long)p.k, (unsigned long long)bk, (unsigned long long)bn,
             (unsigned long long)C->rows, (unsigned long long)C->cols, (unsigned long long)p.m, (unsigned long long)p.n);
    return why(fn, msg), CUBLAS_STATUS_INVALID_VALUE;
  }
  for (const bdLtLayout* l : {A, B, C, D})
    if (l->ld < (int64_t)std::max<uint64_t>(1, l->rows) || l->batch < 1 || l->batch_stride < 0) {
      char msg[200];
      snprintf(msg, sizeof msg, "layout %s: leading dimension %lld is below its %llu rows (or batch count %d / stride %lld is invalid)",
               l == A ? "A" : l == B ? "B" : l == C ? "C" : "D", (long long)l->ld, (unsigned long long)l->rows,
               l->batch, (long long)l->batch_stride);
      return why(fn, msg), CUBLAS_STATUS_INVALID_VALUE;
    }
  if (A->batch != D->batch || B->batch != D->batch || C->batch != D->batch)
    return why(fn, "the batch counts of A, B, C and D differ"), CUBLAS_STATUS_INVALID_VALUE;
  // cublasLtMatmul's type table for CUBLAS_COMPUTE_32F with scale type float32: A = B of 16F/16BF with C = D of that
  // type or float32, or all float32 (also under _FAST_TF32)
  bool c32 = desc->compute == CUBLAS_COMPUTE_32F || desc->compute == CUBLAS_COMPUTE_32F_PEDANTIC;
  bool fast = desc->compute == CUBLAS_COMPUTE_32F_FAST_TF32;
  uint32_t at = A->type, dt = D->type;
  bool half_ok = (at == CUDA_R_16F || at == CUDA_R_16BF) && (dt == at || dt == CUDA_R_32F) && c32;
  bool f32_ok = at == CUDA_R_32F && dt == CUDA_R_32F && (c32 || fast);
  if (desc->scale != CUDA_R_32F || B->type != at || C->type != dt || !float_type(at) || !float_type(dt) ||
      !(half_ok || f32_ok)) {
    char msg[200];
    snprintf(msg, sizeof msg,
             "unsupported type combination: compute %d, scale %d, A %u, B %u, C %u, D %u (cudaDataType values)",
             (int)desc->compute, (int)desc->scale, at, B->type, C->type, dt);
    return why(fn, msg), CUBLAS_STATUS_NOT_SUPPORTED;
  }
  p.tf32 = fast;
  uint32_t e = desc->epilogue;
  if (e != CUBLASLT_EPILOGUE_DEFAULT && e != CUBLASLT_EPILOGUE_BIAS && e != CUBLASLT_EPILOGUE_GELU &&
      e != CUBLASLT_EPILOGUE_GELU_BIAS)
    return why(fn, "only the DEFAULT, BIAS, GELU and GELU_BIAS epilogues are emulated"), CUBLAS_STATUS_NOT_SUPPORTED;
  p.bias_type = desc->bias_type < 0 ? dt : (uint32_t)desc->bias_type;
  if (e & CUBLASLT_EPILOGUE_BIAS) {
    if (!desc->bias) return why(fn, "a BIAS epilogue needs CUBLASLT_MATMUL_DESC_BIAS_POINTER"), CUBLAS_STATUS_INVALID_VALUE;
    if (p.bias_type != dt && p.bias_type != CUDA_R_32F)
      return why(fn, "the bias type must be D's type or CUDA_R_32F"), CUBLAS_STATUS_NOT_SUPPORTED;
  }
  return CUBLAS_STATUS_SUCCESS;
}

// One cublasLtMatmul as stream work: the problem (descriptor and layouts) and alpha/beta copied at call time.
struct LtJob {
  Problem p;
  float alpha, beta;
  const void *A, *B, *C;
  void* D;
  static int run(void* j) {
    static_cast<LtJob*>(j)->compute();
    return 0;
  }
  static void drop(void* j) { delete static_cast<LtJob*>(j); }
  void widen(const void* src, const bdLtLayout& l, std::vector<float>& out) const {
    size_t n = span(l.rows, l.cols, l.ld);
    out.resize(n);
    for (size_t i = 0; i < n; ++i) {
      float v = load(src, l.type, i);
      out[i] = p.tf32 ? cuda_emu::tf32_round(v) : v;
    }
  }
  void compute() const {
    std::vector<float> fa, fb, acc;
    const size_t m = p.m, n = p.n, k = p.k;
    for (int bi = 0; bi < p.d.batch; ++bi) {
      const char* a = (const char*)A + (size_t)bi * p.a.batch_stride * elem_size(p.a.type);
      const char* b = (const char*)B + (size_t)bi * p.b.batch_stride * elem_size(p.b.type);
      const char* c = (const char*)C + (size_t)bi * p.c.batch_stride * elem_size(p.c.type);
      char* d = (char*)D + (size_t)bi * p.d.batch_stride * elem_size(p.d.type);
      acc.assign(m * n, 0.f);  // op(A)·op(B), column-major with ld = m
      if (k > 0) {
        widen(a, p.a, fa);
        widen(b, p.b, fb);
        bdemu::sgemm()(bdemu::CblasColMajor, p.desc.transa == CUBLAS_OP_N ? bdemu::CblasNoTrans : bdemu::CblasTrans,
                       p.desc.transb == CUBLAS_OP_N ? bdemu::CblasNoTrans : bdemu::CblasTrans, (int)m, (int)n, (int)k,
                       1.f, fa.data(), (int)p.a.ld, fb.data(), (int)p.b.ld, 0.f, acc.data(), (int)m);
      }
      const char* bias = (const char*)p.desc.bias + (size_t)bi * p.desc.bias_batch_stride * elem_size(p.bias_type);
      bool add_bias = p.desc.epilogue & CUBLASLT_EPILOGUE_BIAS, gelu = p.desc.epilogue & CUBLASLT_EPILOGUE_GELU;
      for (size_t j = 0; j < n; ++j)
        for (size_t i = 0; i < m; ++i) {
          float v = alpha * acc[j * m + i];
          if (beta != 0.f) v += beta * load(c, p.c.type, j * p.c.ld + i);  // beta = 0: C is not read, as cuBLASLt
          if (add_bias) v += load(bias, p.bias_type, i);
          if (gelu) v = gelu_tanh(v);
          store(d, p.d.type, j * p.d.ld + i, v);
        }
    }
  }
};

size_t whole(const bdLtLayout& l) {  // bytes from the first batch's first element to the last batch's end
  size_t one = span(l.rows, l.cols, l.ld);
  return one ? ((size_t)l.batch_stride * (l.batch - 1) + one) * elem_size(l.type) : 0;
}
}  // namespace

extern "C" {
cublasStatus_t cublasLtCreate(cublasLtHandle_t* h) {
  if (!h) return CUBLAS_STATUS_INVALID_VALUE;
  if (!bdemu::sgemm()) {
    why("cublasLtCreate", "cblas_sgemm not found; install OpenBLAS (apt-get install libopenblas0) or set BD_OPENBLAS_LIB");
    return CUBLAS_STATUS_NOT_INITIALIZED;
  }
  *h = new cublasLtContext();
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}
size_t cublasLtGetVersion(void) { return 130000; }  // major * 10000 + minor * 100 + patch, as cuBLAS
#define BD_STATUS_NAME(name, value, text) \
  case name: return #name;
#define BD_STATUS_TEXT(name, value, text) \
  case name: return text;
const char* cublasLtGetStatusName(cublasStatus_t s) {
  switch (s) { BD_CUBLAS_STATUS(BD_STATUS_NAME) }
  return "CUBLAS_STATUS_UNKNOWN";
}
const char* cublasLtGetStatusString(cublasStatus_t s) {
  switch (s) { BD_CUBLAS_STATUS(BD_STATUS_TEXT) }
  return "unknown error";
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* desc, cublasComputeType_t compute, cudaDataType scale) {
  if (!desc) return CUBLAS_STATUS_INVALID_VALUE;
  *desc = new bdLtMatmulDesc{compute, scale};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc) {
  delete desc;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr,
                                              const void* buf, size_t size) {
  if (!d) return CUBLAS_STATUS_INVALID_VALUE;
  bool ok = false;
  int32_t i32;
  switch (attr) {
    case CUBLASLT_MATMUL_DESC_COMPUTE_TYPE: ok = take(i32, buf, size) && ((d->compute = (cublasComputeType_t)i32), true); break;
    case CUBLASLT_MATMUL_DESC_SCALE_TYPE: ok = take(i32, buf, size) && ((d->scale = (cudaDataType)i32), true); break;
    case CUBLASLT_MATMUL_DESC_POINTER_MODE: ok = take(d->pointer_mode, buf, size); break;
    case CUBLASLT_MATMUL_DESC_TRANSA: ok = take(d->transa, buf, size); break;
    case CUBLASLT_MATMUL_DESC_TRANSB: ok = take(d->transb, buf, size); break;
    case CUBLASLT_MATMUL_DESC_TRANSC: ok = take(d->transc, buf, size); break;
    case CUBLASLT_MATMUL_DESC_EPILOGUE: ok = take(d->epilogue, buf, size); break;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: ok = take(d->bias, buf, size); break;
    case CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE: ok = take(d->bias_batch_stride, buf, size); break;
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: ok = take(d->bias_type, buf, size); break;
  }
  if (!ok) why("cublasLtMatmulDescSetAttribute", "unknown attribute, NULL buffer or a size that is not the attribute's");
  return ok ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* l, cudaDataType type, uint64_t rows, uint64_t cols,
                                          int64_t ld) {
  if (!l) return CUBLAS_STATUS_INVALID_VALUE;
  *l = new bdLtLayout{(uint32_t)type, CUBLASLT_ORDER_COL, rows, cols, ld};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
  delete l;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t attr,
                                                const void* buf, size_t size) {
  if (!l) return CUBLAS_STATUS_INVALID_VALUE;
  bool ok = false;
  switch (attr) {
    case CUBLASLT_MATRIX_LAYOUT_TYPE: ok = take(l->type, buf, size); break;
    case CUBLASLT_MATRIX_LAYOUT_ORDER: ok = take(l->order, buf, size); break;
    case CUBLASLT_MATRIX_LAYOUT_ROWS: ok = take(l->rows, buf, size); break;
    case CUBLASLT_MATRIX_LAYOUT_COLS: ok = take(l->cols, buf, size); break;
    case CUBLASLT_MATRIX_LAYOUT_LD: ok = take(l->ld, buf, size); break;
    case CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT: ok = take(l->batch, buf, size); break;
    case CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET: ok = take(l->batch_stride, buf, size); break;
  }
  if (!ok) why("cublasLtMatrixLayoutSetAttribute", "unknown attribute, NULL buffer or a size that is not the attribute's");
  return ok ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* p) {
  if (!p) return CUBLAS_STATUS_INVALID_VALUE;
  *p = new bdLtPreference();
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
  delete p;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t attr, const void* buf,
                                                    size_t size) {
  if (!p) return CUBLAS_STATUS_INVALID_VALUE;
  bool ok = false;
  switch (attr) {
    case CUBLASLT_MATMUL_PREF_SEARCH_MODE: ok = take(p->search_mode, buf, size); break;
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES: ok = take(p->max_workspace, buf, size); break;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES: ok = take(p->align[0], buf, size); break;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES: ok = take(p->align[1], buf, size); break;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES: ok = take(p->align[2], buf, size); break;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES: ok = take(p->align[3], buf, size); break;
  }
  if (!ok) why("cublasLtMatmulPreferenceSetAttribute", "unknown attribute, NULL buffer or a size that is not the attribute's");
  return ok ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}

// One algorithm (the emulation has one way to compute), needing no workspace: data[0] = 1 (its id), data[1..4] = the
// pointer alignments of A, B, C, D it was chosen for (the preference's minimums). A GPU algorithm chosen for an
// alignment may fail or misread with a less aligned pointer; cublasLtMatmul here refuses such a call.
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t A,
                                              cublasLtMatrixLayout_t B, cublasLtMatrixLayout_t C,
                                              cublasLtMatrixLayout_t D, cublasLtMatmulPreference_t pref, int requested,
                                              cublasLtMatmulHeuristicResult_t results[], int* returned) {
  const char* fn = "cublasLtMatmulAlgoGetHeuristic";
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (requested <= 0 || !results || !returned || !pref)
    return why(fn, "requestedAlgoCount must be > 0 with a preference, a results array and returnAlgoCount"),
           CUBLAS_STATUS_INVALID_VALUE;
  Problem p;
  cublasStatus_t st = validate(fn, h, desc, A, B, C, D, p);
  if (st != CUBLAS_STATUS_SUCCESS) return st;
  memset(&results[0], 0, sizeof(results[0]));
  results[0].algo.data[0] = 1;
  for (int i = 0; i < 4; ++i) results[0].algo.data[1 + i] = pref->align[i];
  results[0].workspaceSize = 0;
  results[0].state = CUBLAS_STATUS_SUCCESS;
  results[0].wavesCount = 1.f;
  *returned = 1;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t desc, const void* alpha, const void* A,
                              cublasLtMatrixLayout_t Ad, const void* B, cublasLtMatrixLayout_t Bd, const void* beta,
                              const void* C, cublasLtMatrixLayout_t Cd, void* D, cublasLtMatrixLayout_t Dd,
                              const cublasLtMatmulAlgo_t* algo, void* workspace, size_t workspaceSize,
                              cudaStream_t stream) {
  const char* fn = "cublasLtMatmul";
  Problem p;
  cublasStatus_t st = validate(fn, h, desc, Ad, Bd, Cd, Dd, p);
  if (st != CUBLAS_STATUS_SUCCESS) return st;
  if (!alpha || !beta) return why(fn, "alpha and beta must not be NULL"), CUBLAS_STATUS_INVALID_VALUE;
  if (algo && algo->data[0] != 1) return why(fn, "the algorithm was not returned by the heuristic"), CUBLAS_STATUS_INVALID_VALUE;
  if (algo) {
    const void* ptrs[4] = {A, B, C, D};
    for (int i = 0; i < 4; ++i)
      if (algo->data[1 + i] && (uintptr_t)ptrs[i] % algo->data[1 + i]) {
        char msg[160];
        snprintf(msg, sizeof msg, "pointer %c (%p) is not aligned to the %llu bytes the algorithm was chosen for", "ABCD"[i],
                 ptrs[i], (unsigned long long)algo->data[1 + i]);
        return why(fn, msg), CUBLAS_STATUS_INVALID_VALUE;
      }
  }
  if (p.m == 0 || p.n == 0) return CUBLAS_STATUS_SUCCESS;
  float al = *(const float*)alpha, be = *(const float*)beta;
  bool bias = p.desc.epilogue & CUBLASLT_EPILOGUE_BIAS;
  size_t bias_bytes = bias ? ((size_t)p.desc.bias_batch_stride * (p.d.batch - 1) + p.m) * elem_size(p.bias_type) : 0;
  if (!in_device("A", A, p.k ? whole(p.a) : 0, fn) || !in_device("B", B, p.k ? whole(p.b) : 0, fn) ||
      !in_device("C", C, be != 0.f ? whole(p.c) : 0, fn) || !in_device("D", D, whole(p.d), fn) ||
      !in_device("bias", p.desc.bias, bias_bytes, fn))
    return CUBLAS_STATUS_EXECUTION_FAILED;
  auto* job = new LtJob{p, al, be, A, B, C, D};
  int e = bdemu_stream_submit(stream, fn, &LtJob::run, job, &LtJob::drop);
  return e ? CUBLAS_STATUS_EXECUTION_FAILED : CUBLAS_STATUS_SUCCESS;
}
}  // extern "C"
