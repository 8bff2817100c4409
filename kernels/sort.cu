// sort.cu -- argsort along the last dim of a contiguous [rows, n] tensor: int64 indices that sort each row,
// stable in both directions (equal values keep their original order), NaN above every number (first when
// descending), as the CPU backend's argsort. Each element's position is its rank, counted against the whole
// row: rank(i) = #{j : x[j] before x[i]} + #{j < i : x[j] equal to x[i]}. O(n²) per row, which is cheap for
// the token-count rows it serves (ToMe's similarity ranks, n ≤ a few thousand) and needs no shared memory or
// synchronisation (one grid-stride loop; all threads of a warp read the same x[j], a broadcast).
//
// Launcher:
//   bdk_argsort_<t>(out, x, rows, n, descending, stream)    t: f32 f16 bf16 i32 i64 u8; out: int64 [rows, n]
#include "common.cuh"

namespace bd {
// ================================================================ kernels
// Three-way comparison with NaN greatest (floats compare as float32, integers exactly).
template <class T>
BD_HD int compare_keys(T a, T b) {
  if constexpr (is_float_v<T>) {
    float x = to_f32(a), y = to_f32(b);
    bool xn = x != x, yn = y != y;
    if (xn || yn) return xn == yn ? 0 : xn ? 1 : -1;
    return x < y ? -1 : x > y ? 1 : 0;
  } else {
    return a < b ? -1 : a > b ? 1 : 0;
  }
}

template <class T>
__global__ void argsort_rank_kernel(int64_t* __restrict__ out, const T* __restrict__ x, int64_t rows, int64_t n,
                                    int descending) {
  const int64_t total = rows * n, step = (int64_t)gridDim.x * blockDim.x;
  const int sign = descending ? -1 : 1;
  for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += step) {
    const int64_t r = idx / n, i = idx - r * n;
    const T* xr = x + r * n;
    const T xi = xr[i];
    int64_t rank = 0;
    for (int64_t j = 0; j < n; ++j) {
      int c = sign * compare_keys(xr[j], xi);
      rank += c < 0 || (c == 0 && j < i);
    }
    out[r * n + rank] = i;
  }
}

// ================================================================ launchers
template <class T>
int argsort_launch(void* out, const void* x, int64_t rows, int64_t n, int descending, cudaStream_t st) {
  if (rows < 0 || n < 0) return cudaErrorInvalidValue;
  if (rows == 0 || n == 0) return cudaSuccess;
  return launch_kernel(argsort_rank_kernel<T>, dim3(grid_for(rows * n, kThreads)), dim3(kThreads), 0, st,
                       (int64_t*)out, (const T*)x, rows, n, descending);
}
}  // namespace bd

#define BD_ARGSORT_EXPORTS(tag, T)                                                                              \
  BDK_API int bdk_argsort_##tag(void* out, const void* x, int64_t rows, int64_t n, int descending,              \
                                cudaStream_t st) {                                                              \
    return bd::argsort_launch<T>(out, x, rows, n, descending, st);                                              \
  }
BD_ALL_TYPES(BD_ARGSORT_EXPORTS)
