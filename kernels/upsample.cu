// upsample.cu -- nearest-neighbour resize of the last two dims with torch's legacy "nearest" rule (as the CPU
// backend's nearestIndex): identity when sizes match, dst >> 1 when doubling, otherwise
// min(floor(dst · scale), in - 1) in float32 with scale = float(in / out). Raw elements move, so every dtype is
// bit-exact.
//
// Launcher:
//   bdk_upsample_nearest2d_<t>(out, x, planes, H, W, OH, OW, stream)    x: contiguous [planes, H, W];
//       out: contiguous [planes, OH, OW]; t: f32 f16 bf16 i32 i64 u8
#include "common.cuh"

namespace bd {
// ================================================================ kernels
BD_HD int64_t nearest_src(int64_t dst, int64_t in, int64_t out, float scale) {
  if (out == in) return dst;
  if (out == 2 * in) return dst >> 1;
  int64_t s = (int64_t)floorf((float)dst * scale);
  return s < in - 1 ? s : in - 1;
}

template <class U>
__global__ void upsample_nearest2d_kernel(U* __restrict__ out, const U* __restrict__ x, int64_t planes, int64_t H,
                                          int64_t W, int64_t OH, int64_t OW, float sh, float sw) {
  int64_t n = planes * OH * OW, step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
    int64_t ow = i % OW, t = i / OW, oh = t % OH, pl = t / OH;
    out[i] = x[(pl * H + nearest_src(oh, H, OH, sh)) * W + nearest_src(ow, W, OW, sw)];
  }
}

// ================================================================ launchers
template <class T>
int upsample_launch(void* out, const void* x, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW,
                    cudaStream_t st) {
  typedef typename uint_of<sizeof(T)>::type U;
  if (planes < 0 || H <= 0 || W <= 0 || OH < 0 || OW < 0) return cudaErrorInvalidValue;
  int64_t n = planes * OH * OW;
  if (n == 0) return cudaSuccess;
  float sh = (float)((double)H / (double)OH), sw = (float)((double)W / (double)OW);  // Math.fround(in / out)
  return launch_kernel(upsample_nearest2d_kernel<U>, dim3(grid_for(n, kThreads)), dim3(kThreads), 0, st, (U*)out,
                       (const U*)x, planes, H, W, OH, OW, sh, sw);
}
}  // namespace bd

#define BD_UPSAMPLE_EXPORTS(tag, T)                                                                             \
  BDK_API int bdk_upsample_nearest2d_##tag(void* out, const void* x, int64_t planes, int64_t H, int64_t W,      \
                                           int64_t OH, int64_t OW, cudaStream_t st) {                           \
    return bd::upsample_launch<T>(out, x, planes, H, W, OH, OW, st);                                            \
  }
BD_ALL_TYPES(BD_UPSAMPLE_EXPORTS)
