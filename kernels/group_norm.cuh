// group_norm.cuh -- what the NCHW (norm.cu) and NHWC (norm_nhwc.cu) GroupNorm kernels share: the fused addend,
// SiLU, Chan et al.'s merge of partial statistics, and the split path's second pass that merges a group's
// per-piece (mean, M2) partials in a fixed order.
#pragma once
#include "common.cuh"

namespace bd {
// x + a rounded to T (the value the unfused add would have stored), or x.
template <class T>
BD_HD float plus(T x, const T* add, int64_t nc) {
  return add ? to_f32(from_f32<T>(to_f32(x) + to_f32(add[nc]))) : to_f32(x);
}
BD_HD float silu_f(float y) { return y / (1.f + expf(-y)); }

// Chan et al.: (n, mean, M2) ∪= (nb, mb, m2b).
BD_HD void chan_merge(float& n, float& mean, float& m2, float nb, float mb, float m2b) {
  float t = n + nb;
  if (nb == 0.f) return;
  float d = mb - mean, f = nb / t;
  mean += d * f;
  m2 += m2b + d * d * n * f;
  n = t;
}

// Warp 0 merges `parts` partials ws[2·(first + j)] = (mean, M2) of count(j) elements each (lane l takes partials
// l, l + 32, …, then a fixed shuffle tree) and lane 0 stores the group's mean and 1/sqrt(var + eps) in st[0..1].
// The order depends on the sizes only, so every block of a group gets the same statistics. Other warps: nothing.
template <class Count>
__device__ __forceinline__ void merge_group_partials(const float* ws, int64_t first, int64_t parts, Count count, float eps,
                                                     float* st) {
  if (threadIdx.x >= 32) return;
  float n = 0.f, mean = 0.f, m2 = 0.f;
  for (int64_t j = threadIdx.x; j < parts; j += 32) chan_merge(n, mean, m2, (float)count(j), ws[2 * (first + j)], ws[2 * (first + j) + 1]);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    float nb = __shfl_down_sync(0xffffffffu, n, o), mb = __shfl_down_sync(0xffffffffu, mean, o),
          m2b = __shfl_down_sync(0xffffffffu, m2, o);
    chan_merge(n, mean, m2, nb, mb, m2b);
  }
  if (threadIdx.x == 0) st[0] = mean, st[1] = 1.f / sqrtf(m2 / n + eps);
}
}  // namespace bd
