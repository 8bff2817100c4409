// reduce.cu -- reductions of a contiguous [outer, r, inner] view over its middle dim r (r = the last dim when
// inner = 1; any run of adjacent dims otherwise), float32 accumulation. Semantics as the CPU backend: max/min
// propagate NaN; argmax/argmin return the first index of the extreme (a NaN counts as the extreme); var divides
// by max(0, r - correction); an empty reduction gives sum 0, prod 1, arg* 0, everything else NaN.
//
// Launcher:
//   bdk_reduce_<t>(op, out, x, outer, r, inner, correction, stream)     t: f32 f16 bf16; op: BD_REDUCE_OPS
//       out: contiguous [outer, inner] of t, or of int64 for argmax/argmin.
// inner = 1 runs one block per row (tree reduction); inner > 1 one thread per output column (coalesced loads).
#include "common.cuh"

namespace bd {
// ================================================================ kernels
struct Prod {
  BD_HD float operator()(float a, float b) const { return a * b; }
};
// Is (v, i) a better extreme than (bv, bi)? sign = 1 for max, -1 for min.
BD_HD bool better(float sign, float v, long long i, float bv, long long bi) {
  bool vn = v != v, bn = bv != bv;
  if (vn || bn) return vn && (!bn || i < bi);
  float a = sign * v, b = sign * bv;
  return a > b || (a == b && i < bi);
}
template <class O>
BD_HD void store_index(O* p, long long i) {  // only the int64 outputs of argmax/argmin take indices
  if constexpr (std::is_same<O, int64_t>::value) *p = i;
}
BD_HD float empty_result(int op) {
  return op == reduce::sum ? 0.f : op == reduce::prod ? 1.f : (op == reduce::argmax || op == reduce::argmin) ? 0.f : NAN;
}

// Block-wide arg-extreme of (v, i) pairs; every thread gets the winner's index.
__device__ __forceinline__ long long block_arg(float sign, float v, long long i, float* red, long long* redi) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    float ov = __shfl_xor_sync(0xffffffffu, v, o);
    long long oi = __shfl_xor_sync(0xffffffffu, i, o);
    if (better(sign, ov, oi, v, i)) v = ov, i = oi;
  }
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v, redi[threadIdx.x >> 5] = i;
  __syncthreads();
  v = red[0], i = redi[0];
  for (int w = 1; w < (int)(blockDim.x >> 5); ++w)
    if (better(sign, red[w], redi[w], v, i)) v = red[w], i = redi[w];
  __syncthreads();
  return i;
}

// (1024, 1): with the minimum-blocks hint sm_100's ptxas (CUDA 13.0) allocates without the 4-byte spill it
// makes under __launch_bounds__(1024) alone; the other architectures build the same either way
template <class T, class O>
__global__ void __launch_bounds__(1024, 1) reduce_rows_kernel(int op, O* __restrict__ out, const T* __restrict__ x, int64_t rows, int64_t r,
                                   float correction) {
  __shared__ float red[32];
  __shared__ long long redi[32];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * r;
    float res;
    if (r == 0) {
      res = empty_result(op);
    } else if (op == reduce::argmax || op == reduce::argmin) {
      float sign = op == reduce::argmax ? 1.f : -1.f, bv = NAN;
      long long bi = -1;
      for (int64_t i = threadIdx.x; i < r; i += blockDim.x) {
        float v = to_f32(xr[i]);
        if (bi < 0 || better(sign, v, i, bv, bi)) bv = v, bi = i;
      }
      if (bi < 0) bi = 0x7fffffffffffffffLL, bv = sign * -INFINITY;  // idle thread: loses every comparison
      long long w = block_arg(sign, bv, bi, red, redi);
      if (threadIdx.x == 0) store_index(out + row, w);
      continue;
    } else if (op == reduce::max || op == reduce::min) {
      float sign = op == reduce::max ? 1.f : -1.f, m = -INFINITY;
      for (int64_t i = threadIdx.x; i < r; i += blockDim.x) m = Max()(m, sign * to_f32(xr[i]));
      res = sign * block_max(m, red);
    } else if (op == reduce::prod) {
      float pr = 1.f;
      for (int64_t i = threadIdx.x; i < r; i += blockDim.x) pr *= to_f32(xr[i]);
      res = block_reduce(pr, red, Prod());
    } else {  // sum, mean, var
      float s = 0.f;
      for (int64_t i = threadIdx.x; i < r; i += blockDim.x) s += to_f32(xr[i]);
      s = block_sum(s, red);
      res = op == reduce::sum ? s : s / (float)r;
      if (op == reduce::var) {  // second pass: squared deviations from the mean
        float q = 0.f;
        for (int64_t i = threadIdx.x; i < r; i += blockDim.x) {
          float d = to_f32(xr[i]) - res;
          q += d * d;
        }
        float div = (float)r - correction;
        res = block_sum(q, red) / (div > 0.f ? div : 0.f);
      }
    }
    if (threadIdx.x == 0) out[row] = from_f32<O>(res);
  }
}

template <class T, class O>
__global__ void reduce_cols_kernel(int op, O* __restrict__ out, const T* __restrict__ x, int64_t outer, int64_t r,
                                   int64_t inner, float correction) {
  int64_t n = outer * inner, step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += step) {
    int64_t o = idx / inner, j = idx - o * inner;
    const T* xc = x + o * r * inner + j;  // xc[k * inner], k < r
    float res = empty_result(op);
    if (r > 0 && (op == reduce::argmax || op == reduce::argmin || op == reduce::max || op == reduce::min)) {
      float sign = op == reduce::argmax || op == reduce::max ? 1.f : -1.f, bv = to_f32(xc[0]);
      int64_t bi = 0;
      for (int64_t k = 1; k < r; ++k) {
        float v = to_f32(xc[k * inner]);
        if (better(sign, v, k, bv, bi)) bv = v, bi = k;
      }
      if (op == reduce::argmax || op == reduce::argmin) {
        store_index(out + idx, bi);
        continue;
      }
      res = bv;
    } else if (r > 0 && op == reduce::prod) {
      res = 1.f;
      for (int64_t k = 0; k < r; ++k) res *= to_f32(xc[k * inner]);
    } else if (r > 0) {
      float s = 0.f;
      for (int64_t k = 0; k < r; ++k) s += to_f32(xc[k * inner]);
      res = op == reduce::sum ? s : s / (float)r;
      if (op == reduce::var) {
        float q = 0.f;
        for (int64_t k = 0; k < r; ++k) {
          float d = to_f32(xc[k * inner]) - res;
          q += d * d;
        }
        float div = (float)r - correction;
        res = q / (div > 0.f ? div : 0.f);
      }
    }
    out[idx] = from_f32<O>(res);
  }
}

// ================================================================ launchers
template <class T, class O>
int reduce_launch2(int op, void* out, const void* x, int64_t outer, int64_t r, int64_t inner, float correction,
                   cudaStream_t st) {
  if (inner == 1) {
    int threads = threads_for_row(r);
    return launch_kernel(reduce_rows_kernel<T, O>, dim3(grid_for(outer, 1)), dim3(threads), 0, st, op, (O*)out,
                         (const T*)x, outer, r, correction);
  }
  return launch_kernel(reduce_cols_kernel<T, O>, dim3(grid_for(outer * inner, kThreads)), dim3(kThreads), 0, st, op,
                       (O*)out, (const T*)x, outer, r, inner, correction);
}
template <class T>
int reduce_launch(int op, void* out, const void* x, int64_t outer, int64_t r, int64_t inner, float correction,
                  cudaStream_t st) {
  if (op < 0 || op >= reduce::count || outer < 0 || r < 0 || inner < 0) return cudaErrorInvalidValue;
  if (outer == 0 || inner == 0) return cudaSuccess;
  if (op == reduce::argmax || op == reduce::argmin)
    return reduce_launch2<T, int64_t>(op, out, x, outer, r, inner, correction, st);
  return reduce_launch2<T, T>(op, out, x, outer, r, inner, correction, st);
}
}  // namespace bd

#define BD_REDUCE_EXPORTS(tag, T)                                                                               \
  BDK_API int bdk_reduce_##tag(int op, void* out, const void* x, int64_t outer, int64_t r, int64_t inner,       \
                               float correction, cudaStream_t st) {                                             \
    return bd::reduce_launch<T>(op, out, x, outer, r, inner, correction, st);                                   \
  }
BD_FLOAT_TYPES(BD_REDUCE_EXPORTS)
