// embedding.cu -- sinusoidal timestep embedding, as diffusers' get_timestep_embedding: for k < half = dim / 2,
// freq_k = exp(-ln(max_period) · k / (half - downscale_freq_shift)) (float32, in torch's operation order),
// arg = scale · t · freq_k; out = [sin(arg) | cos(arg)], or [cos | sin] with flip_sin_to_cos; an odd dim gets a
// zero last column.
//
// Launcher:
//   bdk_timestep_embedding_<t>(out, timesteps, n, dim, flip_sin_to_cos, downscale_freq_shift, scale, max_period,
//                              stream)     timesteps: float32 [n] (device); out: contiguous [n, dim] of t
#include <math.h>
#include "common.cuh"

namespace bd {
// ================================================================ kernels
template <class T>
__global__ void timestep_embedding_kernel(T* __restrict__ out, const float* __restrict__ t, int64_t n, int64_t dim,
                                          int flip, float shift, float scale, float neg_log_period) {
  int64_t half = dim / 2, total = n * dim, step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += step) {
    int64_t row = i / dim, c = i - row * dim;
    if (c >= 2 * half) {
      out[i] = from_f32<T>(0.f);
      continue;
    }
    bool first = c < half, use_cos = flip ? first : !first;
    float e = neg_log_period * (float)(first ? c : c - half);
    e = e / ((float)half - shift);
    float arg = scale * (t[row] * expf(e));
    out[i] = from_f32<T>(use_cos ? cosf(arg) : sinf(arg));
  }
}

// ================================================================ launchers
template <class T>
int timestep_embedding_launch(void* out, const float* t, int64_t n, int64_t dim, int flip, float shift, float scale,
                              float max_period, cudaStream_t st) {
  if (n < 0 || dim < 0 || !(max_period > 0.f)) return cudaErrorInvalidValue;
  if (n == 0 || dim == 0) return cudaSuccess;
  float nl = (float)-log((double)max_period);  // Python's -math.log(max_period), then float32
  return launch_kernel(timestep_embedding_kernel<T>, dim3(grid_for(n * dim, kThreads)), dim3(kThreads), 0, st, (T*)out,
                       t, n, dim, flip, shift, scale, nl);
}
}  // namespace bd

#define BD_EMBEDDING_EXPORTS(tag, T)                                                                            \
  BDK_API int bdk_timestep_embedding_##tag(void* out, const float* t, int64_t n, int64_t dim, int flip,         \
                                           float shift, float scale, float max_period, cudaStream_t st) {       \
    return bd::timestep_embedding_launch<T>(out, t, n, dim, flip, shift, scale, max_period, st);                \
  }
BD_FLOAT_TYPES(BD_EMBEDDING_EXPORTS)
