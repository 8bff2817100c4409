// norm.cu -- group_norm (optionally fused with SiLU) and layer_norm, as torch.nn.functional: population
// variance, y = (x - mean) / sqrt(var + eps) · weight + bias. Statistics are two-pass in float32 (mean, then
// Σ(x - mean)²), one block per (sample, group) or per row; weight and bias have x's dtype and may be null.
//
// Launchers:
//   bdk_group_norm_<t>(out, x, weight, bias, N, C, S, groups, eps, silu, stream)   x, out: contiguous [N, C, S]
//       (S = product of the spatial dims); weight, bias: [C] or null; C % groups == 0.
//   bdk_layer_norm_<t>(out, x, weight, bias, rows, cols, eps, stream)              x, out: contiguous [rows, cols];
//       weight, bias: [cols] or null.
#include "common.cuh"

namespace bd {
// ================================================================ kernels
// Mean and 1/sqrt(var + eps) of x[0, n), block-wide (every thread gets both).
template <class T>
__device__ __forceinline__ void block_stats(const T* x, int64_t n, float eps, float* red, float& mean, float& rstd) {
  float s = 0.f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += to_f32(x[i]);
  mean = block_sum(s, red) / (float)n;
  float q = 0.f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    float d = to_f32(x[i]) - mean;
    q += d * d;
  }
  rstd = 1.f / sqrtf(block_sum(q, red) / (float)n + eps);
}

template <class T>  // at most 512 threads: under the 64-register cap of 1024 threads it spills
__global__ void __launch_bounds__(512) group_norm_kernel(T* out, const T* x, const T* w, const T* b, int64_t N, int64_t C, int64_t S,
                                  int groups, float eps, int silu) {
  __shared__ float red[32];
  int64_t cg = C / groups, len = cg * S;
  for (int64_t ng = blockIdx.x; ng < N * groups; ng += gridDim.x) {
    int64_t c0 = (ng % groups) * cg, base = ((ng / groups) * C + c0) * S;
    float mean, rstd;
    block_stats(x + base, len, eps, red, mean, rstd);
    for (int64_t k = 0; k < cg; ++k) {  // channel by channel: y = x·scale + shift folds mean, rstd, weight, bias
      int64_t c = c0 + k, off = base + k * S;
      float scale = rstd * (w ? to_f32(w[c]) : 1.f), shift = (b ? to_f32(b[c]) : 0.f) - mean * scale;
      for (int64_t i = threadIdx.x; i < S; i += blockDim.x) {
        float y = to_f32(x[off + i]) * scale + shift;
        out[off + i] = from_f32<T>(silu ? y / (1.f + expf(-y)) : y);
      }
    }
  }
}

template <class T>
__global__ void __launch_bounds__(1024) layer_norm_kernel(T* out, const T* x, const T* w, const T* b, int64_t rows, int64_t cols, float eps) {
  __shared__ float red[32];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * cols;
    float mean, rstd;
    block_stats(xr, cols, eps, red, mean, rstd);
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
      float y = (to_f32(xr[i]) - mean) * rstd;
      if (w) y *= to_f32(w[i]);
      if (b) y += to_f32(b[i]);
      out[row * cols + i] = from_f32<T>(y);
    }
  }
}

// ================================================================ launchers
template <class T>
int group_norm_launch(void* out, const void* x, const void* w, const void* b, int64_t N, int64_t C, int64_t S,
                      int groups, float eps, int silu, cudaStream_t st) {
  if (N < 0 || C < 0 || S < 0 || groups <= 0 || C % groups != 0) return cudaErrorInvalidValue;
  if (N == 0 || C == 0 || S == 0) return cudaSuccess;
  return launch_kernel(group_norm_kernel<T>, dim3(grid_for(N * groups, 1)), dim3(threads_for_row(C / groups * S, 512)), 0,
                       st, (T*)out, (const T*)x, (const T*)w, (const T*)b, N, C, S, groups, eps, silu);
}
template <class T>
int layer_norm_launch(void* out, const void* x, const void* w, const void* b, int64_t rows, int64_t cols, float eps,
                      cudaStream_t st) {
  if (rows < 0 || cols < 0) return cudaErrorInvalidValue;
  if (rows == 0 || cols == 0) return cudaSuccess;
  return launch_kernel(layer_norm_kernel<T>, dim3(grid_for(rows, 1)), dim3(threads_for_row(cols)), 0, st, (T*)out,
                       (const T*)x, (const T*)w, (const T*)b, rows, cols, eps);
}
}  // namespace bd

#define BD_NORM_EXPORTS(tag, T)                                                                                  \
  BDK_API int bdk_group_norm_##tag(void* out, const void* x, const void* w, const void* b, int64_t N, int64_t C, \
                                   int64_t S, int groups, float eps, int silu, cudaStream_t st) {                \
    return bd::group_norm_launch<T>(out, x, w, b, N, C, S, groups, eps, silu, st);                               \
  }                                                                                                              \
  BDK_API int bdk_layer_norm_##tag(void* out, const void* x, const void* w, const void* b, int64_t rows,         \
                                   int64_t cols, float eps, cudaStream_t st) {                                   \
    return bd::layer_norm_launch<T>(out, x, w, b, rows, cols, eps, st);                                          \
  }
BD_FLOAT_TYPES(BD_NORM_EXPORTS)
