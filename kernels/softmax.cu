// softmax.cu -- softmax and log-softmax over the last dim of a contiguous [rows, cols] tensor, float32 math:
// subtract the row max, exponentiate, normalise. A row that is entirely -inf gives NaN, as torch.
//
// Launcher:
//   bdk_softmax_<t>(out, x, rows, cols, log, stream)     t: f32 f16 bf16; out may alias x
#include "common.cuh"

namespace bd {
// ================================================================ kernels
template <class T>
__global__ void __launch_bounds__(1024) softmax_kernel(T* out, const T* x, int64_t rows, int64_t cols, int log) {
  __shared__ float red[32];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * cols;
    T* yr = out + row * cols;
    float m = -INFINITY;
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) m = Max()(m, to_f32(xr[i]));
    m = block_max(m, red);
    float s = 0.f;
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) s += expf(to_f32(xr[i]) - m);
    s = block_sum(s, red);
    if (log) {
      float ls = logf(s);
      for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) yr[i] = from_f32<T>(to_f32(xr[i]) - m - ls);
    } else {
      float inv = 1.f / s;
      for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) yr[i] = from_f32<T>(expf(to_f32(xr[i]) - m) * inv);
    }
  }
}

// ================================================================ launchers
template <class T>
int softmax_launch(void* out, const void* x, int64_t rows, int64_t cols, int log, cudaStream_t st) {
  if (rows < 0 || cols < 0) return cudaErrorInvalidValue;
  if (rows == 0 || cols == 0) return cudaSuccess;
  return launch_kernel(softmax_kernel<T>, dim3(grid_for(rows, 1)), dim3(threads_for_row(cols)), 0, st, (T*)out,
                       (const T*)x, rows, cols, log);
}
}  // namespace bd

#define BD_SOFTMAX_EXPORTS(tag, T)                                                                             \
  BDK_API int bdk_softmax_##tag(void* out, const void* x, int64_t rows, int64_t cols, int log, cudaStream_t st) { \
    return bd::softmax_launch<T>(out, x, rows, cols, log, st);                                                 \
  }
BD_FLOAT_TYPES(BD_SOFTMAX_EXPORTS)
