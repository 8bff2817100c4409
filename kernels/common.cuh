// common.cuh -- the one header every kernels/*.cu includes. Under nvcc it is plain CUDA; under g++ it pulls in
// the CPU emulator (kernels/emu/cuda_emu.h), so the same sources build the real library and the emulated one.
// Also: dtype load/store in float, the strided-operand params struct (mirrored in ffi/cuda/kernels.ts), grid
// sizing for grid-stride loops, block reductions, and the op-code lists shared with TypeScript.
//
// Rules for kernel sources (emulator constraints): launch only through launch_kernel; dynamic shared memory
// only through CUDA_DYNAMIC_SHARED; warp communication only through *_sync intrinsics with exact masks; every
// live thread reaches each __syncthreads; no initialisers on __shared__ variables; inline PTX only inside a
// wrapper that has an emulated twin (as the prototype's tc::mma_m16n8k16, due with the attention kernels).
#pragma once
#include <stdint.h>
#include <string.h>
#include <type_traits>
#include <utility>

#if defined(__CUDACC__)
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#define CUDA_DYNAMIC_SHARED(T, name)                               \
  extern __shared__ __align__(16) unsigned char bd_dyn_smem_raw_[]; \
  T* name = reinterpret_cast<T*>(bd_dyn_smem_raw_)
namespace cuda_compat {
template <class... P, class... A>
inline cudaError_t launch_kernel(void (*k)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t st, A&&... a) {
  k<<<grid, block, smem, st>>>(std::forward<A>(a)...);
  return cudaGetLastError();
}
}  // namespace cuda_compat
#else
#include "emu/cuda_emu.h"
#endif

using cuda_compat::launch_kernel;
#define BDK_API extern "C" __attribute__((visibility("default")))
#define BD_HD __host__ __device__ __forceinline__

// ---------------------------------------------------------------- op codes (order = ffi/cuda/kernels.ts)
#define BD_UNARY_OPS(X)                                                                                       \
  X(neg) X(exp) X(log) X(sqrt) X(rsqrt) X(abs) X(sigmoid) X(tanh) X(silu) X(gelu) X(gelu_tanh) X(quick_gelu) \
  X(sin) X(cos) X(relu) X(square) X(reciprocal) X(floor) X(ceil) X(round) X(sign) X(logical_not) X(clamp)
#define BD_BINARY_OPS(X) \
  X(add) X(sub) X(mul) X(div) X(pow) X(maximum) X(minimum) X(eq) X(ne) X(lt) X(le) X(gt) X(ge) X(logical_and) X(logical_or)
#define BD_REDUCE_OPS(X) X(sum) X(mean) X(max) X(min) X(argmax) X(argmin) X(var) X(prod)
#define BD_ENUM_ITEM(n) n,
namespace bd {
namespace unary { enum { BD_UNARY_OPS(BD_ENUM_ITEM) count }; }
namespace binary { enum { BD_BINARY_OPS(BD_ENUM_ITEM) count }; }
namespace reduce { enum { BD_REDUCE_OPS(BD_ENUM_ITEM) count }; }

// ---------------------------------------------------------------- dtypes: compute in float, store in T
typedef __half f16;
typedef __nv_bfloat16 bf16;
template <class T> struct is_half_or_bf16 { static constexpr bool value = false; };
template <> struct is_half_or_bf16<f16> { static constexpr bool value = true; };
template <> struct is_half_or_bf16<bf16> { static constexpr bool value = true; };
template <class T>
constexpr bool is_float_v = is_half_or_bf16<T>::value || std::is_same<T, float>::value;

BD_HD float to_f32(float v) { return v; }
BD_HD float to_f32(f16 v) { return __half2float(v); }
BD_HD float to_f32(bf16 v) { return __bfloat162float(v); }
template <class T> BD_HD T from_f32(float v) { return (T)v; }
template <> BD_HD f16 from_f32<f16>(float v) { return __float2half_rn(v); }
template <> BD_HD bf16 from_f32<bf16>(float v) { return __float2bfloat16_rn(v); }

// Dtype tags of the exported launchers (bdk_<op>_<tag>); bool uses the u8 launchers.
#define BD_FLOAT_TYPES(X) X(f32, float) X(f16, bd::f16) X(bf16, bd::bf16)
#define BD_ALL_TYPES(X) BD_FLOAT_TYPES(X) X(i32, int32_t) X(i64, int64_t) X(u8, uint8_t)

// Unsigned integer of each width: data movement (copy, where, gather, upsample) is bit-exact per width.
template <int Bytes> struct uint_of;
template <> struct uint_of<1> { typedef uint8_t type; };
template <> struct uint_of<2> { typedef uint16_t type; };
template <> struct uint_of<4> { typedef uint32_t type; };
template <> struct uint_of<8> { typedef unsigned long long type; };

// ---------------------------------------------------------------- strided operands
// Up to kMaxArgs operands (out first) of one logical shape, each with its own element strides (0 =
// broadcast); pointers are passed separately, already offset. Filled by TypeScript (ndim, shape, stride);
// prepare() sets nargs/numel and merges dims. Layout is part of the ABI (see bdk_abi()).
constexpr int kMaxDims = 8, kMaxArgs = 4;
struct Strided {
  int32_t ndim;   // 0 (a scalar) .. kMaxDims
  int32_t nargs;  // operands in use (set by the launcher)
  int64_t numel;  // set by prepare()
  int64_t shape[kMaxDims];
  int64_t stride[kMaxArgs][kMaxDims];
};

// Validates and simplifies: drops size-1 dims, merges neighbours that are contiguous for every operand (a
// contiguous tensor becomes 1-D). Returns false for an invalid descriptor.
inline bool prepare(Strided& p, int nargs) {
  if (p.ndim < 0 || p.ndim > kMaxDims) return false;
  p.nargs = nargs;
  int64_t numel = 1;
  int nd = 0;
  for (int d = 0; d < p.ndim; ++d) {
    int64_t s = p.shape[d];
    if (s < 0) return false;
    numel *= s;
    if (s == 1) continue;
    bool merge = nd > 0;
    for (int a = 0; a < nargs && merge; ++a) merge = p.stride[a][nd - 1] == p.stride[a][d] * s;
    if (merge) {
      p.shape[nd - 1] *= s;
      for (int a = 0; a < nargs; ++a) p.stride[a][nd - 1] = p.stride[a][d];
    } else {
      p.shape[nd] = s;
      for (int a = 0; a < nargs; ++a) p.stride[a][nd] = p.stride[a][d];
      ++nd;
    }
  }
  p.ndim = nd;
  p.numel = numel;
  return true;
}

// Element offsets of linear index i (row-major over p.shape) for the first N operands.
template <int N, class I>
__device__ __forceinline__ void offsets_of(const Strided& p, I i, int64_t (&off)[N]) {
#pragma unroll
  for (int a = 0; a < N; ++a) off[a] = 0;
  for (int d = p.ndim - 1; d > 0; --d) {
    I s = (I)p.shape[d], q = i / s, r = i - q * s;
    i = q;
#pragma unroll
    for (int a = 0; a < N; ++a) off[a] += (int64_t)r * p.stride[a][d];
  }
  if (p.ndim > 0) {
#pragma unroll
    for (int a = 0; a < N; ++a) off[a] += (int64_t)i * p.stride[a][0];
  }
}
// Grid-stride loop over all elements: f(off[N]); 32-bit index math when the count allows.
template <int N, class F>
__device__ __forceinline__ void for_each_strided(const Strided& p, F f) {
  int64_t off[N];
  if (p.numel <= 0x7fffffff) {
    uint32_t n = (uint32_t)p.numel, step = gridDim.x * blockDim.x;
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
      offsets_of<N, uint32_t>(p, i, off);
      f(off);
    }
  } else {
    uint64_t step = (uint64_t)gridDim.x * blockDim.x;
    for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (uint64_t)p.numel; i += step) {
      offsets_of<N, uint64_t>(p, i, off);
      f(off);
    }
  }
}

// ---------------------------------------------------------------- fast index math and 16-byte vectors
// n / d for 32-bit n < 2^31 by a multiply-high, an add and a shift (Granlund & Montgomery 1994, as CUTLASS's
// FastDivmod): shift = ceil(log2 d), mul = floor(2^32 · (2^shift − d) / d) + 1. Built on the host per divisor.
struct FastDiv {
  uint32_t d, mul, shift;
  inline void init(uint32_t divisor) {
    d = divisor;
    shift = 0;
    while (shift < 31 && (1u << shift) < divisor) ++shift;
    mul = (uint32_t)((((uint64_t)1 << 32) * (((uint64_t)1 << shift) - divisor)) / divisor + 1);
  }
  BD_HD uint32_t div(uint32_t n) const { return ((uint32_t)(((uint64_t)n * mul) >> 32) + n) >> shift; }
};

// A word of B bytes (B = 1, 2, 4, 8, 16) loaded or stored in one access; the pointer must be B-aligned.
template <int B> struct word_of;
template <> struct word_of<1> { typedef uint8_t type; };
template <> struct word_of<2> { typedef uint16_t type; };
template <> struct word_of<4> { typedef uint32_t type; };
#if defined(__CUDACC__)
template <> struct word_of<8> { typedef uint2 type; };
template <> struct word_of<16> { typedef uint4 type; };
#else
struct alignas(8) bd_word8 { uint32_t x, y; };
struct alignas(16) bd_word16 { uint32_t x, y, z, w; };
template <> struct word_of<8> { typedef bd_word8 type; };
template <> struct word_of<16> { typedef bd_word16 type; };
#endif
// L elements of T at p: one access of L·sizeof(T) bytes (p aligned to it) when `vec`, else p[0] in every lane.
template <int L, class T>
__device__ __forceinline__ void load_lanes(const T* p, bool vec, T (&v)[L]) {
  if (L > 1 && vec) {
    typedef typename word_of<L * sizeof(T)>::type W;
    W w = *reinterpret_cast<const W*>(p);
    memcpy(v, &w, sizeof(W));
  } else {
    T s = p[0];
#pragma unroll
    for (int k = 0; k < L; ++k) v[k] = s;
  }
}
template <int L, class T>
__device__ __forceinline__ void store_lanes(T* p, const T (&v)[L]) {
  typedef typename word_of<L * sizeof(T)>::type W;
  W w;
  memcpy(&w, v, sizeof(W));
  *reinterpret_cast<W*>(p) = w;
}

// ---------------------------------------------------------------- launch geometry
inline int multiprocessors() {
#if defined(__CUDACC__)
  static int cache[64];
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) dev = 0;
  if (!cache[dev]) {
    int v = 0;
    cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev);
    cache[dev] = v > 0 ? v : 1;
  }
  return cache[dev];
#else
  return cuda_emu::Pool::get().size();
#endif
}
// Blocks for a grid-stride loop over `items` with `per_block` items per block per iteration: enough to fill
// the GPU a few times over, and few when emulated (each emulated thread costs ~10 ns to start).
inline unsigned grid_for(int64_t items, int64_t per_block) {
  int64_t need = (items + per_block - 1) / per_block;
#if defined(__CUDACC__)
  int64_t cap = (int64_t)multiprocessors() * 8;
#else
  int64_t cap = (int64_t)multiprocessors() * 2;
#endif
  return (unsigned)(need < 1 ? 1 : need < cap ? need : cap);
}
// Threads for one block per row of `cols` elements: a power of two in [32, max_threads], ~4 elements per thread
// (kernels launched this way declare __launch_bounds__(max_threads)).
inline int threads_for_row(int64_t cols, int max_threads = 1024) {
  int t = 32;
  while (t < max_threads && (int64_t)t * 4 < cols) t *= 2;
  return t;
}
constexpr int kThreads = 256;  // elementwise block size

// ---------------------------------------------------------------- reductions (blockDim.x multiple of 32)
// Block-wide reduction with a commutative op, returned to every thread; `red` is a __shared__ float[32]. Every
// thread combines the warp partials in the same order, so all get the same value.
template <class F>
__device__ __forceinline__ float block_reduce(float v, float* red, F op) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  float r = red[0];
  for (int w = 1; w < (int)(blockDim.x >> 5); ++w) r = op(r, red[w]);
  __syncthreads();  // red is reused by the next call
  return r;
}
struct Add {
  BD_HD float operator()(float a, float b) const { return a + b; }
};
struct Max {  // NaN propagates
  BD_HD float operator()(float a, float b) const { return a != a ? a : b != b ? b : (a > b ? a : b); }
};
__device__ __forceinline__ float block_sum(float v, float* red) { return block_reduce(v, red, Add()); }
__device__ __forceinline__ float block_max(float v, float* red) { return block_reduce(v, red, Max()); }
}  // namespace bd
