// cudnn.cpp -- the emulated libcudnn: handles, 4-d tensor / filter / convolution descriptors (NCHW, NHWC and
// explicit strides), algorithm queries, and cudnnConvolutionForward for float / half / bfloat16 data with float32
// compute, as im2col + OpenBLAS cblas_sgemm per (image, group); y = alpha · conv(x, w) + beta · y (y is not read
// when beta = 0). It follows cuDNN's documented rules and rejects what cuDNN rejects: unset descriptors, negative
// sizes, non-positive strides or dilations, x / w / y data types that differ, input channels != filter channels ×
// groups, output channels not a multiple of groups, a filter larger than the padded input, a y descriptor that
// does not match cudnnGetConvolution2dForwardOutputDim, and a workspace smaller than the algorithm needs.
// cudnnGetLastErrorString says which rule failed. Algorithms: IMPLICIT_GEMM needs no workspace;
// IMPLICIT_PRECOMP_GEMM and GEMM use the caller's workspace for the im2col matrix; the others are
// CUDNN_STATUS_NOT_SUPPORTED here. TF32 as on sm_80+: float data under any math type but CUDNN_FMA_MATH
// (CUDNN_DEFAULT_MATH allows TF32 for float32 on Ampere and later) has x and w rounded to TF32 (half.h).
#ifdef BD_REAL_CUDA_HEADERS
#include <cudnn.h>  // signature check only
#include "api/cudnn_values.h"
#else
#include "api/cudnn.h"
#endif
#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <vector>
#include "blas.h"
#include "half.h"

struct cudnnContext {
  cudaStream_t stream = nullptr;
};
struct cudnnTensorStruct {
  bool set = false;
  cudnnDataType_t dt = CUDNN_DATA_FLOAT;
  int n = 0, c = 0, h = 0, w = 0;
  long long ns = 0, cs = 0, hs = 0, ws = 0;  // element strides
};
struct cudnnFilterStruct {
  bool set = false;
  cudnnDataType_t dt = CUDNN_DATA_FLOAT;
  cudnnTensorFormat_t fmt = CUDNN_TENSOR_NCHW;  // NCHW: [K, C, R, S]; NHWC: [K, R, S, C]
  int k = 0, c = 0, h = 0, w = 0;
};
struct cudnnConvolutionStruct {
  bool set = false;
  int ph = 0, pw = 0, u = 1, v = 1, dh = 1, dw = 1, groups = 1;
  cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
  cudnnDataType_t compute = CUDNN_DATA_FLOAT;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
};

namespace {
char g_last[512];
cudnnStatus_t fail(cudnnStatus_t s, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_last, sizeof g_last, fmt, ap);
  va_end(ap);
  return s;
}
bool dtype_ok(cudnnDataType_t t) { return t == CUDNN_DATA_FLOAT || t == CUDNN_DATA_HALF || t == CUDNN_DATA_BFLOAT16; }
bool known_dtype(cudnnDataType_t t) { return t >= CUDNN_DATA_FLOAT && t <= 21; }
size_t dsize(cudnnDataType_t t) { return t == CUDNN_DATA_FLOAT ? 4 : 2; }
float load(const void* p, cudnnDataType_t t, size_t i) {
  if (t == CUDNN_DATA_FLOAT) return ((const float*)p)[i];
  uint16_t h = ((const uint16_t*)p)[i];
  return t == CUDNN_DATA_HALF ? cuda_emu::f16_to_f32(h) : cuda_emu::bf16_to_f32(h);
}
void store(void* p, cudnnDataType_t t, size_t i, float v) {
  if (t == CUDNN_DATA_FLOAT) ((float*)p)[i] = v;
  else ((uint16_t*)p)[i] = t == CUDNN_DATA_HALF ? cuda_emu::f32_to_f16(v) : cuda_emu::f32_to_bf16(v);
}
size_t tensor_bytes(const cudnnTensorStruct& t) {  // from the first element to one past the last
  if (!t.n || !t.c || !t.h || !t.w) return 0;
  return ((t.n - 1) * t.ns + (t.c - 1) * t.cs + (t.h - 1) * t.hs + (t.w - 1) * t.ws + 1) * dsize(t.dt);
}

struct Shape {  // a validated forward convolution
  int N, C, H, W, K, Cg, R, S, G, OH, OW;
  size_t col_bytes() const { return (size_t)Cg * R * S * OH * OW * sizeof(float); }
};
cudnnStatus_t output_dim(const cudnnConvolutionStruct* cd, const cudnnTensorStruct* x, const cudnnFilterStruct* w, Shape& s) {
  if (!cd || !x || !w) return fail(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, "a descriptor is null");
  if (!cd->set || !x->set || !w->set) return fail(CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED, "a descriptor was never set");
  s = {x->n, x->c, x->h, x->w, w->k, w->c, w->h, w->w, cd->groups, 0, 0};
  if (s.C != s.Cg * s.G)
    return fail(CUDNN_STATUS_BAD_PARAM, "x has %d channels but the filter has %d per group x %d groups", s.C, s.Cg, s.G);
  if (s.K % s.G) return fail(CUDNN_STATUS_BAD_PARAM, "%d output channels are not a multiple of %d groups", s.K, s.G);
  int eh = (s.R - 1) * cd->dh + 1, ew = (s.S - 1) * cd->dw + 1;  // dilated filter extent
  if (eh > s.H + 2 * cd->ph || ew > s.W + 2 * cd->pw)
    return fail(CUDNN_STATUS_BAD_PARAM, "the %dx%d (dilated) filter is larger than the padded %dx%d input", eh, ew,
                s.H + 2 * cd->ph, s.W + 2 * cd->pw);
  s.OH = 1 + (s.H + 2 * cd->ph - eh) / cd->u;
  s.OW = 1 + (s.W + 2 * cd->pw - ew) / cd->v;
  return CUDNN_STATUS_SUCCESS;
}
// Everything cudnnConvolutionForward checks before running.
cudnnStatus_t validate(const cudnnTensorStruct* x, const cudnnFilterStruct* w, const cudnnConvolutionStruct* cd,
                       const cudnnTensorStruct* y, Shape& s) {
  if (cudnnStatus_t st = output_dim(cd, x, w, s)) return st;
  if (!y) return fail(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, "yDesc is null");
  if (!y->set) return fail(CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED, "yDesc was never set");
  if (x->dt != w->dt || x->dt != y->dt) return fail(CUDNN_STATUS_BAD_PARAM, "x, w and y have different data types");
  if (y->n != s.N || y->c != s.K || y->h != s.OH || y->w != s.OW)
    return fail(CUDNN_STATUS_BAD_PARAM, "y is %dx%dx%dx%d but the convolution gives %dx%dx%dx%d", y->n, y->c, y->h, y->w,
                s.N, s.K, s.OH, s.OW);
  bool cfg = (x->dt == CUDNN_DATA_FLOAT && cd->compute == CUDNN_DATA_FLOAT) ||
             (x->dt == CUDNN_DATA_HALF && (cd->compute == CUDNN_DATA_HALF || cd->compute == CUDNN_DATA_FLOAT)) ||
             (x->dt == CUDNN_DATA_BFLOAT16 && cd->compute == CUDNN_DATA_FLOAT);
  if (!dtype_ok(x->dt) || !cfg)
    return fail(CUDNN_STATUS_NOT_SUPPORTED, "data type %d with compute type %d is not supported", x->dt, cd->compute);
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t workspace_for(cudnnConvolutionFwdAlgo_t algo, const Shape& s, size_t* bytes) {
  if (algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM) *bytes = 0;
  else if (algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM || algo == CUDNN_CONVOLUTION_FWD_ALGO_GEMM)
    *bytes = s.col_bytes();
  else return fail(CUDNN_STATUS_NOT_SUPPORTED, "algorithm %d is not emulated", algo);
  return CUDNN_STATUS_SUCCESS;
}
bool in_device(const char* what, const void* p, size_t bytes) {
  if (!bytes || bdemu_device_range(p, bytes) == 0) return true;
  fail(CUDNN_STATUS_EXECUTION_FAILED, "%s [%p, +%zu bytes) is not inside one device allocation", what, p, bytes);
  fprintf(stderr, "bun-diffusion emulated cuDNN: %s\n", g_last);
  return false;
}

void run(const Shape& s, const cudnnConvolutionStruct& cd, const cudnnTensorStruct& xd, const void* x,
         const cudnnFilterStruct& wd, const void* w, const cudnnTensorStruct& yd, void* y, float alpha, float beta,
         float* col) {
  const int P = s.OH * s.OW, CRS = s.Cg * s.R * s.S, Kg = s.K / s.G;
  const bool tf32 = xd.dt == CUDNN_DATA_FLOAT && cd.math != CUDNN_FMA_MATH;
  auto operand = [tf32](float v) { return tf32 ? cuda_emu::tf32_round(v) : v; };
  std::vector<float> wf((size_t)s.K * CRS), out((size_t)Kg * P);
  for (int k = 0; k < s.K; ++k)  // dense [K, Cg, R, S] float
    for (int c = 0; c < s.Cg; ++c)
      for (int r = 0; r < s.R; ++r)
        for (int q = 0; q < s.S; ++q) {
          size_t src = wd.fmt == CUDNN_TENSOR_NCHW ? (((size_t)k * s.Cg + c) * s.R + r) * s.S + q
                                                    : (((size_t)k * s.R + r) * s.S + q) * s.Cg + c;
          wf[(((size_t)k * s.Cg + c) * s.R + r) * s.S + q] = operand(load(w, wd.dt, src));
        }
  for (int n = 0; n < s.N; ++n)
    for (int g = 0; g < s.G; ++g) {
      // im2col: col[(c·R + r)·S + q][oh·OW + ow] = x[n, g·Cg + c, ih, iw] (0 in the padding)
      for (int c = 0; c < s.Cg; ++c)
        for (int r = 0; r < s.R; ++r)
          for (int q = 0; q < s.S; ++q) {
            int rr = cd.mode == CUDNN_CONVOLUTION ? s.R - 1 - r : r, qq = cd.mode == CUDNN_CONVOLUTION ? s.S - 1 - q : q;
            float* row = col + (((size_t)c * s.R + r) * s.S + q) * P;
            for (int oh = 0; oh < s.OH; ++oh)
              for (int ow = 0; ow < s.OW; ++ow) {
                int ih = oh * cd.u - cd.ph + rr * cd.dh, iw = ow * cd.v - cd.pw + qq * cd.dw;
                bool in = ih >= 0 && ih < s.H && iw >= 0 && iw < s.W;
                row[oh * s.OW + ow] =
                    in ? operand(load(x, xd.dt, n * xd.ns + (g * s.Cg + c) * xd.cs + ih * xd.hs + iw * xd.ws)) : 0.f;
              }
          }
      // out (column-major P x Kg) = col (P x CRS, ld P) · w_g (CRS x Kg, ld CRS)
      bdemu::sgemm()(bdemu::CblasColMajor, bdemu::CblasNoTrans, bdemu::CblasNoTrans, P, Kg, CRS, 1.f, col, P,
                     wf.data() + (size_t)g * Kg * CRS, CRS, 0.f, out.data(), P);
      for (int k = 0; k < Kg; ++k)
        for (int p = 0; p < P; ++p) {
          size_t o = n * yd.ns + (g * Kg + k) * yd.cs + (p / s.OW) * yd.hs + (p % s.OW) * yd.ws;
          float v = alpha * out[(size_t)k * P + p];
          store(y, yd.dt, o, beta != 0.f ? v + beta * load(y, yd.dt, o) : v);
        }
    }
}

// One validated convolution as stream work (bdemu_stream_submit): the descriptors, alpha and beta are copied at
// call time (as cuDNN reads them), the tensors are read when the stream reaches it.
struct ConvJob {
  Shape s;
  cudnnConvolutionStruct cd;
  cudnnTensorStruct xd, yd;
  cudnnFilterStruct wd;
  const void* x;
  const void* w;
  void* y;
  float alpha, beta;
  float* col;  // the workspace, or null: a buffer of its own
  static int run(void* p) {
    auto* j = static_cast<ConvJob*>(p);
    std::vector<float> own;
    if (!j->col) own.resize(j->s.col_bytes() / sizeof(float));
    ::run(j->s, j->cd, j->xd, j->x, j->wd, j->w, j->yd, j->y, j->alpha, j->beta, j->col ? j->col : own.data());
    return 0;
  }
  static void drop(void* p) { delete static_cast<ConvJob*>(p); }
};

// `now`: compute on the calling thread (cudnnFind* blocks the host and times each algorithm) instead of on the
// handle's stream.
cudnnStatus_t forward(cudnnHandle_t h, const void* alpha, const cudnnTensorStruct* xd, const void* x,
                      const cudnnFilterStruct* wd, const void* w, const cudnnConvolutionStruct* cd,
                      cudnnConvolutionFwdAlgo_t algo, void* ws, size_t ws_bytes, const void* beta,
                      const cudnnTensorStruct* yd, void* y, bool now = false) {
  if (!h) return fail(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, "handle is null");
  if (!alpha || !beta || !x || !w || !y) return fail(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, "a data pointer is null");
  Shape s;
  size_t need = 0;
  if (cudnnStatus_t st = validate(xd, wd, cd, yd, s)) return st;
  if (cudnnStatus_t st = workspace_for(algo, s, &need)) return st;
  if (ws_bytes < need || (need && !ws))
    return fail(CUDNN_STATUS_BAD_PARAM, "algorithm %d needs %zu workspace bytes, got %zu", algo, need, ws_bytes);
  if (!bdemu::sgemm()) return fail(CUDNN_STATUS_NOT_INITIALIZED, "cblas_sgemm not found (install libopenblas0)");
  size_t wbytes = (size_t)s.K * s.Cg * s.R * s.S * dsize(wd->dt);
  if (!in_device("x", x, tensor_bytes(*xd)) || !in_device("w", w, wbytes) || !in_device("y", y, tensor_bytes(*yd)) ||
      !in_device("workspace", ws, need))
    return CUDNN_STATUS_EXECUTION_FAILED;
  if ((size_t)s.N * s.K * s.OH * s.OW == 0) return CUDNN_STATUS_SUCCESS;
  auto* job = new ConvJob{s, *cd, *xd, *yd, *wd, x, w, y, *(const float*)alpha, *(const float*)beta, need ? (float*)ws : nullptr};
  if (now) {
    ConvJob::run(job);
    ConvJob::drop(job);
    return CUDNN_STATUS_SUCCESS;
  }
  if (bdemu_stream_submit(h->stream, "cudnnConvolutionForward", &ConvJob::run, job, &ConvJob::drop))
    return fail(CUDNN_STATUS_EXECUTION_FAILED, "the convolution's stream work failed");
  return CUDNN_STATUS_SUCCESS;
}
const cudnnConvolutionFwdAlgo_t kAlgos[] = {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
                                            CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, CUDNN_CONVOLUTION_FWD_ALGO_GEMM};
}  // namespace

extern "C" {
size_t cudnnGetVersion(void) { return 90100; }  // 9.1.0: major * 10000 + minor * 100 + patch
#define BD_STATUS_NAME(name, value) \
  case name: return #name;
const char* cudnnGetErrorString(cudnnStatus_t s) {
  switch (s) { BD_CUDNN_STATUS(BD_STATUS_NAME) }
  return "CUDNN_STATUS_UNKNOWN";
}
void cudnnGetLastErrorString(char* message, size_t max_size) {
  if (message && max_size) snprintf(message, max_size, "%s", g_last);
}
cudnnStatus_t cudnnCreate(cudnnHandle_t* h) {
  if (!h) return fail(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, "handle pointer is null");
  *h = new cudnnContext();
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroy(cudnnHandle_t h) {
  delete h;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetStream(cudnnHandle_t h, cudaStream_t s) {
  if (!h) return fail(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, "handle is null");
  h->stream = s;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetStream(cudnnHandle_t h, cudaStream_t* s) {
  if (!h || !s) return fail(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, "handle or stream pointer is null");
  *s = h->stream;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t* d) {
  if (!d) return fail(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, "descriptor pointer is null");
  *d = new cudnnTensorStruct();
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetTensor4dDescriptorEx(cudnnTensorDescriptor_t d, cudnnDataType_t dt, int n, int c, int h, int w,
                                           int ns, int cs, int hs, int ws) {
  if (!d) return fail(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, "descriptor is null");
  if (!known_dtype(dt) || n < 0 || c < 0 || h < 0 || w < 0 || ns < 0 || cs < 0 || hs < 0 || ws < 0)
    return fail(CUDNN_STATUS_BAD_PARAM, "bad tensor: data type %d, dims %d %d %d %d, strides %d %d %d %d", dt, n, c, h, w,
                ns, cs, hs, ws);
  *d = {true, dt, n, c, h, w, ns, cs, hs, ws};
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t d, cudnnTensorFormat_t fmt, cudnnDataType_t dt, int n,
                                         int c, int h, int w) {
  if (fmt == CUDNN_TENSOR_NCHW) return cudnnSetTensor4dDescriptorEx(d, dt, n, c, h, w, c * h * w, h * w, w, 1);
  if (fmt == CUDNN_TENSOR_NHWC) return cudnnSetTensor4dDescriptorEx(d, dt, n, c, h, w, h * w * c, 1, w * c, c);
  return fail(CUDNN_STATUS_BAD_PARAM, "tensor format %d is not NCHW or NHWC", fmt);
}
cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t d) {
  delete d;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t* d) {
  if (!d) return fail(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, "descriptor pointer is null");
  *d = new cudnnFilterStruct();
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t d, cudnnDataType_t dt, cudnnTensorFormat_t fmt, int k,
                                         int c, int h, int w) {
  if (!d) return fail(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, "descriptor is null");
  if (!known_dtype(dt) || (fmt != CUDNN_TENSOR_NCHW && fmt != CUDNN_TENSOR_NHWC) || k < 0 || c < 0 || h < 0 || w < 0)
    return fail(CUDNN_STATUS_BAD_PARAM, "bad filter: data type %d, format %d, dims %d %d %d %d", dt, fmt, k, c, h, w);
  *d = {true, dt, fmt, k, c, h, w};
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t d) {
  delete d;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t* d) {
  if (!d) return fail(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, "descriptor pointer is null");
  *d = new cudnnConvolutionStruct();
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t d, int ph, int pw, int u, int v, int dh,
                                              int dw, cudnnConvolutionMode_t mode, cudnnDataType_t compute) {
  if (!d) return fail(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, "descriptor is null");
  if (ph < 0 || pw < 0 || u <= 0 || v <= 0 || dh <= 0 || dw <= 0 ||
      (mode != CUDNN_CONVOLUTION && mode != CUDNN_CROSS_CORRELATION) || !known_dtype(compute))
    return fail(CUDNN_STATUS_BAD_PARAM, "bad convolution: pad %d %d, stride %d %d, dilation %d %d, mode %d", ph, pw, u, v,
                dh, dw, mode);
  d->set = true;
  d->ph = ph, d->pw = pw, d->u = u, d->v = v, d->dh = dh, d->dw = dw, d->mode = mode, d->compute = compute;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolutionGroupCount(cudnnConvolutionDescriptor_t d, int groups) {
  if (!d) return fail(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, "descriptor is null");
  if (groups < 1) return fail(CUDNN_STATUS_BAD_PARAM, "group count %d < 1", groups);
  d->groups = groups;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t d, cudnnMathType_t m) {
  if (!d) return fail(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, "descriptor is null");
  if (m < CUDNN_DEFAULT_MATH || m > CUDNN_FMA_MATH) return fail(CUDNN_STATUS_BAD_PARAM, "math type %d", m);
  d->math = m;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t d) {
  delete d;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(const cudnnConvolutionDescriptor_t cd, const cudnnTensorDescriptor_t x,
                                                    const cudnnFilterDescriptor_t w, int* n, int* c, int* h, int* wo) {
  Shape s;
  if (!n || !c || !h || !wo) return fail(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, "an output pointer is null");
  if (cudnnStatus_t st = output_dim(cd, x, w, s)) return st;
  *n = s.N, *c = s.K, *h = s.OH, *wo = s.OW;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(cudnnHandle_t h, const cudnnTensorDescriptor_t x,
                                                      const cudnnFilterDescriptor_t w,
                                                      const cudnnConvolutionDescriptor_t cd,
                                                      const cudnnTensorDescriptor_t y, cudnnConvolutionFwdAlgo_t algo,
                                                      size_t* bytes) {
  Shape s;
  if (!h || !bytes) return fail(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, "handle or size pointer is null");
  if (cudnnStatus_t st = validate(x, w, cd, y, s)) return st;
  return workspace_for(algo, s, bytes);
}
cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(cudnnHandle_t h, const cudnnTensorDescriptor_t x,
                                                     const cudnnFilterDescriptor_t w,
                                                     const cudnnConvolutionDescriptor_t cd,
                                                     const cudnnTensorDescriptor_t y, const int requested, int* returned,
                                                     cudnnConvolutionFwdAlgoPerf_t* perf) {
  Shape s;
  if (!h || !returned || !perf) return fail(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, "a pointer argument is null");
  if (requested < 1) return fail(CUDNN_STATUS_BAD_PARAM, "requestedAlgoCount %d < 1", requested);
  if (cudnnStatus_t st = validate(x, w, cd, y, s)) return st;
  *returned = std::min(requested, (int)(sizeof kAlgos / sizeof kAlgos[0]));
  for (int i = 0; i < *returned; ++i) {  // heuristic order; time is not measured (-1)
    perf[i] = {kAlgos[i], CUDNN_STATUS_SUCCESS, -1.f, 0, CUDNN_DETERMINISTIC, cd->math, {0, 0, 0}};
    workspace_for(kAlgos[i], s, &perf[i].memory);
  }
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnFindConvolutionForwardAlgorithmEx(cudnnHandle_t h, const cudnnTensorDescriptor_t xd, const void* x,
                                                     const cudnnFilterDescriptor_t wd, const void* w,
                                                     const cudnnConvolutionDescriptor_t cd,
                                                     const cudnnTensorDescriptor_t yd, void* y, const int requested,
                                                     int* returned, cudnnConvolutionFwdAlgoPerf_t* perf, void* ws,
                                                     size_t ws_bytes) {
  Shape s;
  if (!h || !returned || !perf) return fail(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, "a pointer argument is null");
  if (requested < 1) return fail(CUDNN_STATUS_BAD_PARAM, "requestedAlgoCount %d < 1", requested);
  if (cudnnStatus_t st = validate(xd, wd, cd, yd, s)) return st;
  // blocking, as cuDNN's: x and w are read, y written, after the work queued on the handle's stream
  if (bdemu_stream_synchronize(h->stream) != 0)
    return fail(CUDNN_STATUS_EXECUTION_FAILED, "earlier work on the handle's stream failed");
  std::vector<cudnnConvolutionFwdAlgoPerf_t> res;
  const float one = 1.f, zero = 0.f;
  for (cudnnConvolutionFwdAlgo_t a : kAlgos) {  // runs each algorithm once (y is overwritten, as cuDNN may)
    cudnnConvolutionFwdAlgoPerf_t p = {a, CUDNN_STATUS_SUCCESS, -1.f, 0, CUDNN_DETERMINISTIC, cd->math, {0, 0, 0}};
    workspace_for(a, s, &p.memory);
    auto t0 = std::chrono::steady_clock::now();
    p.status = p.memory > ws_bytes ? CUDNN_STATUS_BAD_PARAM
                                   : forward(h, &one, xd, x, wd, w, cd, a, ws, ws_bytes, &zero, yd, y, true);
    if (p.status == CUDNN_STATUS_SUCCESS)
      p.time = std::chrono::duration<float, std::milli>(std::chrono::steady_clock::now() - t0).count();
    res.push_back(p);
  }
  std::stable_sort(res.begin(), res.end(), [](const auto& a, const auto& b) {
    return (a.status == CUDNN_STATUS_SUCCESS) > (b.status == CUDNN_STATUS_SUCCESS) ||
           (a.status == b.status && a.time < b.time);
  });
  *returned = std::min(requested, (int)res.size());
  std::copy(res.begin(), res.begin() + *returned, perf);
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t h, const void* alpha, const cudnnTensorDescriptor_t xd, const void* x,
                                      const cudnnFilterDescriptor_t wd, const void* w,
                                      const cudnnConvolutionDescriptor_t cd, cudnnConvolutionFwdAlgo_t algo, void* ws,
                                      size_t ws_bytes, const void* beta, const cudnnTensorDescriptor_t yd, void* y) {
  return forward(h, alpha, xd, x, wd, w, cd, algo, ws, ws_bytes, beta, yd, y);
}
}  // extern "C"
