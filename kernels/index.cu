// index.cu -- index_select, gather and scatter_add (torch semantics; indices int32 or int64). Out-of-range
// indices cannot throw on a GPU: when `bad` (a device long long[2], a slot of the deferred error flags of
// src/backends/cuda/deferred-errors.ts) is not null they set bad[0] = 1 and bad[1] = the offending index (one of
// them, when several are), gather and index_select write 0 there and scatter_add skips the element; the host
// reads the flags at its next synchronisation. Values move as raw elements (bit-exact);
// scatter_add accumulates atomically in the output dtype (16-bit floats round at every add, as torch's CUDA
// scatter_add), so its order of additions is not deterministic.
//
// Launchers (`p` points to a host bd::Strided over the INDEX shape):
//   bdk_index_select_<t>(out, x, index, outer, dim_size, inner, n_index, index_i64, bad, stream)
//       x: contiguous [outer, dim_size, inner]; index: [n_index]; out: contiguous [outer, n_index, inner]
//   bdk_gather_<t>(p{out, index, x with stride 0 at dim}, out, x, index, x_dim_stride, dim_size, index_i64, bad, stream)
//   bdk_scatter_add_<t>(p{out with stride 0 at dim, index, src}, out, index, src, out_dim_stride, dim_size,
//       index_i64, bad, stream)          t: f32 f16 bf16 i32 i64 (scatter_add); + u8 (index_select, gather)
//   bdk_scatter_add_lines_<t>(p{out with stride 0 at dim, index, src} over the index shape with dim set to 1, out,
//       index, src, n, index_dim_stride, src_dim_stride, out_dim_stride, dim_size, index_i64, bad, stream)
//       t: f32 f16 bf16 i32 i64. Deterministic scatter_add: one thread per line along dim adds its n elements in
//       index order without atomics (lines never share an output element), so float sums are reproducible and
//       equal the CPU backend's sequential float32 order. Parallelism = number of lines (numel(index) / n).
#include "common.cuh"

namespace bd {
__device__ __forceinline__ void raise_bad(long long* bad, int64_t index) {
  if (bad) bad[1] = (long long)index, bad[0] = 1;
}
// ================================================================ kernels
template <class U, class I>
__global__ void index_select_kernel(U* __restrict__ out, const U* __restrict__ x, const I* __restrict__ idx, int64_t outer,
                                    int64_t dim, int64_t inner, int64_t nidx, long long* bad) {
  int64_t n = outer * nidx * inner, step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
    int64_t k = i % inner, t = i / inner, j = t % nidx, o = t / nidx, s = (int64_t)idx[j];
    if (s < 0 || s >= dim) {
      out[i] = 0;
      raise_bad(bad, s);
    } else {
      out[i] = x[(o * dim + s) * inner + k];
    }
  }
}

template <class U, class I>
__global__ void gather_kernel(Strided p, U* __restrict__ out, const U* __restrict__ x, const I* __restrict__ idx,
                              int64_t dim_stride, int64_t dim, long long* bad) {
  for_each_strided<3>(p, [&](const int64_t* off) {
    int64_t s = (int64_t)idx[off[1]];
    if (s < 0 || s >= dim) {
      out[off[0]] = 0;
      raise_bad(bad, s);
    } else {
      out[off[0]] = x[off[2] + s * dim_stride];
    }
  });
}

__device__ __forceinline__ void atomic_add(float* p, float v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(int32_t* p, int32_t v) { atomicAdd((int*)p, (int)v); }
__device__ __forceinline__ void atomic_add(int64_t* p, int64_t v) {
  atomicAdd((unsigned long long*)p, (unsigned long long)v);  // two's complement: the same bits as a signed add
}
// 16-bit floats: compare-and-swap on the aligned 32-bit word that holds the element (works on every arch).
template <class T>
__device__ __forceinline__ void atomic_add16(T* p, float v) {
  unsigned* word = (unsigned*)((uintptr_t)p & ~(uintptr_t)3);
  unsigned shift = ((uintptr_t)p & 2) ? 16 : 0, old = *word, assumed;
  do {
    assumed = old;
    unsigned short h = (unsigned short)(assumed >> shift);
    if constexpr (std::is_same<T, f16>::value) h = __half_as_ushort(__float2half_rn(__half2float(__ushort_as_half(h)) + v));
    else h = __bfloat16_as_ushort(__float2bfloat16_rn(__bfloat162float(__ushort_as_bfloat16(h)) + v));
    old = atomicCAS(word, assumed, (assumed & ~(0xffffu << shift)) | ((unsigned)h << shift));
  } while (old != assumed);
}
__device__ __forceinline__ void atomic_add(f16* p, f16 v) { atomic_add16(p, __half2float(v)); }
__device__ __forceinline__ void atomic_add(bf16* p, bf16 v) { atomic_add16(p, __bfloat162float(v)); }

template <class T, class I>
__global__ void scatter_add_kernel(Strided p, T* out, const I* __restrict__ idx, const T* __restrict__ src,
                                   int64_t dim_stride, int64_t dim, long long* bad) {
  for_each_strided<3>(p, [&](const int64_t* off) {
    int64_t s = (int64_t)idx[off[1]];
    if (s < 0 || s >= dim) {
      raise_bad(bad, s);
    } else {
      atomic_add(out + off[0] + s * dim_stride, src[off[2]]);
    }
  });
}

template <class T, class I>
__global__ void scatter_add_lines_kernel(Strided p, T* out, const I* __restrict__ idx, const T* __restrict__ src, int64_t n,
                                         int64_t idx_ds, int64_t src_ds, int64_t out_ds, int64_t dim, long long* bad) {
  for_each_strided<3>(p, [&](const int64_t* off) {
    T* o = out + off[0];
    const I* ix = idx + off[1];
    const T* sv = src + off[2];
    for (int64_t j = 0; j < n; ++j) {
      int64_t s = (int64_t)ix[j * idx_ds];
      if (s < 0 || s >= dim) {
        raise_bad(bad, s);
        continue;
      }
      T* d = o + s * out_ds;
      if constexpr (is_float_v<T>) *d = from_f32<T>(to_f32(*d) + to_f32(sv[j * src_ds]));
      else *d = (T)((int64_t)*d + (int64_t)sv[j * src_ds]);
    }
  });
}

// ================================================================ launchers
template <class T>
int index_select_launch(void* out, const void* x, const void* idx, int64_t outer, int64_t dim, int64_t inner,
                        int64_t nidx, int i64, long long* bad, cudaStream_t st) {
  typedef typename uint_of<sizeof(T)>::type U;
  if (outer < 0 || dim < 0 || inner < 0 || nidx < 0) return cudaErrorInvalidValue;
  int64_t n = outer * nidx * inner;
  if (n == 0) return cudaSuccess;
  dim3 grid(grid_for(n, kThreads)), block(kThreads);
  if (i64)
    return launch_kernel(index_select_kernel<U, int64_t>, grid, block, 0, st, (U*)out, (const U*)x, (const int64_t*)idx,
                         outer, dim, inner, nidx, bad);
  return launch_kernel(index_select_kernel<U, int32_t>, grid, block, 0, st, (U*)out, (const U*)x, (const int32_t*)idx,
                       outer, dim, inner, nidx, bad);
}
template <class T>
int gather_launch(const Strided* pp, void* out, const void* x, const void* idx, int64_t dim_stride, int64_t dim, int i64,
                  long long* bad, cudaStream_t st) {
  typedef typename uint_of<sizeof(T)>::type U;
  if (!pp || dim < 0) return cudaErrorInvalidValue;
  Strided p = *pp;
  if (!prepare(p, 3)) return cudaErrorInvalidValue;
  if (p.numel == 0) return cudaSuccess;
  dim3 grid(grid_for(p.numel, kThreads)), block(kThreads);
  if (i64)
    return launch_kernel(gather_kernel<U, int64_t>, grid, block, 0, st, p, (U*)out, (const U*)x, (const int64_t*)idx,
                         dim_stride, dim, bad);
  return launch_kernel(gather_kernel<U, int32_t>, grid, block, 0, st, p, (U*)out, (const U*)x, (const int32_t*)idx,
                       dim_stride, dim, bad);
}
template <class T>
int scatter_add_launch(const Strided* pp, void* out, const void* idx, const void* src, int64_t dim_stride, int64_t dim,
                       int i64, long long* bad, cudaStream_t st) {
  if (!pp || dim < 0) return cudaErrorInvalidValue;
  Strided p = *pp;
  if (!prepare(p, 3)) return cudaErrorInvalidValue;
  if (p.numel == 0) return cudaSuccess;
  dim3 grid(grid_for(p.numel, kThreads)), block(kThreads);
  if (i64)
    return launch_kernel(scatter_add_kernel<T, int64_t>, grid, block, 0, st, p, (T*)out, (const int64_t*)idx,
                         (const T*)src, dim_stride, dim, bad);
  return launch_kernel(scatter_add_kernel<T, int32_t>, grid, block, 0, st, p, (T*)out, (const int32_t*)idx,
                       (const T*)src, dim_stride, dim, bad);
}
template <class T>
int scatter_add_lines_launch(const Strided* pp, void* out, const void* idx, const void* src, int64_t n, int64_t idx_ds,
                             int64_t src_ds, int64_t out_ds, int64_t dim, int i64, long long* bad, cudaStream_t st) {
  if (!pp || dim < 0 || n < 0) return cudaErrorInvalidValue;
  Strided p = *pp;
  if (!prepare(p, 3)) return cudaErrorInvalidValue;
  if (p.numel == 0 || n == 0) return cudaSuccess;
  dim3 grid(grid_for(p.numel, kThreads)), block(kThreads);
  if (i64)
    return launch_kernel(scatter_add_lines_kernel<T, int64_t>, grid, block, 0, st, p, (T*)out, (const int64_t*)idx,
                         (const T*)src, n, idx_ds, src_ds, out_ds, dim, bad);
  return launch_kernel(scatter_add_lines_kernel<T, int32_t>, grid, block, 0, st, p, (T*)out, (const int32_t*)idx,
                       (const T*)src, n, idx_ds, src_ds, out_ds, dim, bad);
}
}  // namespace bd

using bd::Strided;
#define BD_SELECT_EXPORTS(tag, T)                                                                                \
  BDK_API int bdk_index_select_##tag(void* out, const void* x, const void* idx, int64_t outer, int64_t dim,      \
                                     int64_t inner, int64_t nidx, int i64, long long* bad, cudaStream_t st) {          \
    return bd::index_select_launch<T>(out, x, idx, outer, dim, inner, nidx, i64, bad, st);                       \
  }                                                                                                              \
  BDK_API int bdk_gather_##tag(const Strided* p, void* out, const void* x, const void* idx, int64_t dim_stride,  \
                               int64_t dim, int i64, long long* bad, cudaStream_t st) {                                \
    return bd::gather_launch<T>(p, out, x, idx, dim_stride, dim, i64, bad, st);                                  \
  }
BD_ALL_TYPES(BD_SELECT_EXPORTS)

#define BD_SCATTER_EXPORTS(tag, T)                                                                              \
  BDK_API int bdk_scatter_add_##tag(const Strided* p, void* out, const void* idx, const void* src,              \
                                    int64_t dim_stride, int64_t dim, int i64, long long* bad, cudaStream_t st) {      \
    return bd::scatter_add_launch<T>(p, out, idx, src, dim_stride, dim, i64, bad, st);                          \
  }                                                                                                             \
  BDK_API int bdk_scatter_add_lines_##tag(const Strided* p, void* out, const void* idx, const void* src,        \
                                          int64_t n, int64_t idx_ds, int64_t src_ds, int64_t out_ds,            \
                                          int64_t dim, int i64, long long* bad, cudaStream_t st) {                    \
    return bd::scatter_add_lines_launch<T>(p, out, idx, src, n, idx_ds, src_ds, out_ds, dim, i64, bad, st);     \
  }
BD_FLOAT_TYPES(BD_SCATTER_EXPORTS)
BD_SCATTER_EXPORTS(i32, int32_t)
BD_SCATTER_EXPORTS(i64, int64_t)
