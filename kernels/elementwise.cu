// elementwise.cu -- unary math and activations, binary ops (tensor ⊕ tensor broadcast through strides, tensor ⊕
// scalar), where(), and GEGLU. Float dtypes compute in float32 and round once when stored; integer dtypes
// compute exactly in int64. Op codes: BD_UNARY_OPS / BD_BINARY_OPS in common.cuh (mirrored in TypeScript).
//
// Launchers (all return a cudaError_t; `p` points to a host bd::Strided whose operand order is given):
//   bdk_unary_<t>(op, p{out, x}, out, x, p0, p1, stream)         t: f32 f16 bf16 i32 i64 u8. logical_not writes
//       bool (u8); integer inputs accept only neg abs relu square floor ceil round sign logical_not clamp.
//   bdk_binary_<t>(op, p{out, a, b}, out, a, b, stream)          comparisons and logical ops write bool (u8);
//       integer div is rejected (true division gives float32: convert first).
//   bdk_binary_scalar_<t>(op, p{out, a}, out, a, scalar, scalar_first, stream)   op(a, s) or op(s, a).
//   bdk_where_<t>(p{out, cond, a, b}, out, cond(u8), a, b, stream)               bit-exact select.
//   bdk_geglu_<t>(out, x, rows, inner, tanh_approx, stream)      x: contiguous [rows, 2·inner] = [a | gate];
//       out [rows, inner] = a · gelu(gate) (diffusers GEGLU; tanh_approx = gelu(approximate="tanh")).
#include "common.cuh"

namespace bd {
// ================================================================ kernels
BD_HD float gelu_erf(float x) {  // x·Φ(x); the negative side through erfc keeps tiny results accurate
  return x >= 0.f ? 0.5f * x * (1.f + erff(x * 0.70710678118654752f)) : 0.5f * x * erfcf(-x * 0.70710678118654752f);
}
BD_HD float gelu_tanh(float x) { return 0.5f * x * (1.f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x))); }

BD_HD float unary_f(int op, float x, float p0, float p1) {
  switch (op) {
    case unary::neg: return -x;
    case unary::exp: return expf(x);
    case unary::log: return logf(x);
    case unary::sqrt: return sqrtf(x);
    case unary::rsqrt: return 1.f / sqrtf(x);
    case unary::abs: return fabsf(x);
    case unary::sigmoid: return 1.f / (1.f + expf(-x));
    case unary::tanh: return tanhf(x);
    case unary::silu: return x / (1.f + expf(-x));
    case unary::gelu: return gelu_erf(x);
    case unary::gelu_tanh: return gelu_tanh(x);
    case unary::quick_gelu: return x / (1.f + expf(-1.702f * x));
    case unary::sin: return sinf(x);
    case unary::cos: return cosf(x);
    case unary::relu: return x > 0.f || x != x ? x : 0.f;  // NaN stays NaN, as torch
    case unary::square: return x * x;
    case unary::reciprocal: return 1.f / x;
    case unary::floor: return floorf(x);
    case unary::ceil: return ceilf(x);
    case unary::round: return rintf(x);  // half to even
    case unary::sign: return x > 0.f ? 1.f : x < 0.f ? -1.f : x;
    case unary::logical_not: return x == 0.f ? 1.f : 0.f;
    case unary::clamp: {  // min(max(x, lo), hi): NaN propagates; lo > hi gives hi
      float y = x < p0 ? p0 : x;
      return y > p1 ? p1 : y;
    }
  }
  return x;
}
BD_HD bool unary_int_ok(int op) {
  return op == unary::neg || op == unary::abs || op == unary::relu || op == unary::square || op == unary::floor ||
         op == unary::ceil || op == unary::round || op == unary::sign || op == unary::logical_not || op == unary::clamp;
}
BD_HD int64_t unary_i(int op, int64_t x, float p0, float p1) {
  switch (op) {
    case unary::neg: return -x;
    case unary::abs: return x < 0 ? -x : x;
    case unary::relu: return x > 0 ? x : 0;
    case unary::square: return x * x;
    case unary::sign: return (x > 0) - (x < 0);
    case unary::logical_not: return x == 0;
    case unary::clamp: {  // bounds are float (±inf when absent)
      double y = (double)x;
      if (y < p0) y = p0;
      if (y > p1) y = p1;
      return y == (double)x ? x : (int64_t)y;
    }
  }
  return x;  // floor / ceil / round of an integer
}

BD_HD float binary_f(int op, float a, float b) {
  switch (op) {
    case binary::add: return a + b;
    case binary::sub: return a - b;
    case binary::mul: return a * b;
    case binary::div: return a / b;
    case binary::pow: return powf(a, b);
    case binary::maximum: return a != a || b != b ? a + b : (a > b ? a : b);  // NaN propagates
    case binary::minimum: return a != a || b != b ? a + b : (a < b ? a : b);
    case binary::eq: return a == b;
    case binary::ne: return a != b;
    case binary::lt: return a < b;
    case binary::le: return a <= b;
    case binary::gt: return a > b;
    case binary::ge: return a >= b;
    case binary::logical_and: return a != 0.f && b != 0.f;
    case binary::logical_or: return a != 0.f || b != 0.f;
  }
  return 0.f;
}
BD_HD int64_t ipow(int64_t a, int64_t b) {
  if (b < 0) return a == 1 ? 1 : a == -1 ? (b & 1 ? -1 : 1) : 0;
  int64_t r = 1;
  for (; b; b >>= 1, a *= a)
    if (b & 1) r *= a;
  return r;
}
BD_HD int64_t binary_i(int op, int64_t a, int64_t b) {
  switch (op) {
    case binary::add: return a + b;
    case binary::sub: return a - b;
    case binary::mul: return a * b;
    case binary::pow: return ipow(a, b);
    case binary::maximum: return a > b ? a : b;
    case binary::minimum: return a < b ? a : b;
    case binary::eq: return a == b;
    case binary::ne: return a != b;
    case binary::lt: return a < b;
    case binary::le: return a <= b;
    case binary::gt: return a > b;
    case binary::ge: return a >= b;
    case binary::logical_and: return a != 0 && b != 0;
    case binary::logical_or: return a != 0 || b != 0;
  }
  return 0;
}
BD_HD bool writes_bool(int op) { return op >= binary::eq; }

// ---------------------------------------------------------------- the index plan of a launch
// Every kernel here walks its operands through one plan, built on the host from the prepared bd::Strided:
// - vector path (V > 1 elements per thread, 16 bytes of the widest operand): the innermost merged dim has stride 1
//   for the output and stride 1 (read as one 16-byte word per V elements) or 0 (one element in every lane) for
//   each input; every stride-1 operand's pointer is aligned to its V elements and its outer strides are multiples of
//   V; the inner length is a multiple of V, except for a 1-D walk, where the last n mod V elements are a scalar
//   tail. This covers contiguous tensors, tensor ⊕ scalar, per-channel bias [C] / [B,C,1,1] over [B,C,H,W] (inner
//   dim H·W) and [C] / [B,1,C] over [B,N,C] (inner dim C).
// - scalar path (V = 1): any strides; also where a pointer, an inner length or a stride is not aligned.
// Both paths find an element's offsets with precomputed FastDiv per dim (no integer division per element) and
// compute each element with the same function, so they agree bit for bit. More than 2^31 − 1 elements: the scalar
// path with 64-bit division.
struct Plan {
  Strided p;               // with V > 1: the inner dim counted in vectors (shape / V, strides · V)
  FastDiv div[kMaxDims];   // of p.shape[d], d ≥ 1
  int32_t width;           // V: elements per thread (1 = the scalar path)
  int32_t vec_mask;        // bit a: operand a is read as vectors along the inner dim (else one element per lane)
  int32_t wide;            // more than 2^31 − 1 elements: 64-bit index math
  int64_t count;           // vectors (or elements) walked through p
  int64_t tail, tail_at;   // 1-D only: elements after the last full vector, and the first one's index
};

static int last_width = 0;  // V of the most recent elementwise launch (bdk_elementwise_last_width, for tests)

// vmax: elements per 16 bytes of the widest operand; elem[a]: operand a's element size; ptr[a]: its address.
inline Plan make_plan(const Strided& p, int vmax, const void* const* ptr, const int* elem) {
  Plan f;
  f.p = p;
  f.vec_mask = 0;
  f.wide = p.numel > 0x7fffffff;
  f.count = p.numel;
  f.tail = f.tail_at = 0;
  int V = vmax;
  const int nd = p.ndim, in = nd - 1;
  if (f.wide || nd == 0 || p.shape[in] < V) V = 1;
  for (int a = 0; a < p.nargs && V > 1; ++a) {
    int64_t s = p.stride[a][in];
    if (s == 0 && a > 0) continue;  // broadcast along the inner dim
    if (s != 1 || ((uintptr_t)ptr[a] % (uintptr_t)(V * elem[a])) != 0) V = 1;
    for (int d = 0; d < in && V > 1; ++d)
      if (p.stride[a][d] % V != 0) V = 1;
  }
  if (V > 1 && nd > 1 && p.shape[in] % V != 0) V = 1;
  if (V > 1) {
    int64_t vecs = p.shape[in] / V;
    f.tail = p.shape[in] - vecs * V;  // nonzero only in 1-D
    f.tail_at = vecs * V;
    f.p.shape[in] = vecs;
    for (int a = 0; a < p.nargs; ++a) {
      if (p.stride[a][in] == 1) f.vec_mask |= 1 << a;
      f.p.stride[a][in] *= V;
    }
    f.count = p.numel / p.shape[in] * vecs;
  }
  for (int d = 0; d < kMaxDims; ++d) f.div[d].init(d < nd && f.p.shape[d] > 0 && f.p.shape[d] <= 0x7fffffff ? (uint32_t)f.p.shape[d] : 1);
  f.width = last_width = V;
  return f;
}

// Element offsets of walk index i (< 2^31) through the plan, by FastDiv.
template <int N>
__device__ __forceinline__ void plan_offsets(const Plan& f, uint32_t i, int64_t (&off)[N]) {
#pragma unroll
  for (int a = 0; a < N; ++a) off[a] = 0;
  for (int d = f.p.ndim - 1; d > 0; --d) {
    uint32_t q = f.div[d].div(i), r = i - q * f.div[d].d;
    i = q;
#pragma unroll
    for (int a = 0; a < N; ++a) off[a] += (int64_t)r * f.p.stride[a][d];
  }
  if (f.p.ndim > 0) {
#pragma unroll
    for (int a = 0; a < N; ++a) off[a] += (int64_t)i * f.p.stride[a][0];
  }
}

template <int L> using lanes_t = std::integral_constant<int, L>;
// Grid-stride walk: body(lanes_t<L>, off) handles L consecutive inner elements from element offsets off[N]
// (L = V on the vector path, 1 on the scalar path and the tail).
template <int V, int N, class F>
__device__ __forceinline__ void plan_walk(const Plan& f, F body) {
  int64_t off[N];
  if constexpr (V == 1) {
    if (f.wide) {
      uint64_t step = (uint64_t)gridDim.x * blockDim.x;
      for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (uint64_t)f.p.numel; i += step) {
        offsets_of<N, uint64_t>(f.p, i, off);
        body(lanes_t<1>(), off);
      }
      return;
    }
  }
  const uint32_t n = (uint32_t)f.count, total = n + (uint32_t)f.tail, step = gridDim.x * blockDim.x;
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += step) {
    if (V > 1 && i >= n) {  // 1-D tail: stride 1 for vector operands, 0 for broadcast ones
      int64_t e = f.tail_at + (i - n);
#pragma unroll
      for (int a = 0; a < N; ++a) off[a] = (f.vec_mask >> a & 1) ? e : 0;
      body(lanes_t<1>(), off);
    } else {
      plan_offsets<N>(f, i, off);
      body(lanes_t<V>(), off);
    }
  }
}
inline unsigned plan_grid(const Plan& f) { return grid_for(f.count + f.tail, kThreads); }

// ---------------------------------------------------------------- element functions (both paths)
template <class T, class O>
BD_HD O unary_elem(int op, T x, float p0, float p1) {
  if constexpr (is_float_v<T>) return from_f32<O>(unary_f(op, to_f32(x), p0, p1));
  else return (O)unary_i(op, (int64_t)x, p0, p1);
}
// mode 0: a ⊕ b; 1: a ⊕ scalar; 2: scalar ⊕ a (b unused in modes 1 and 2)
template <class T, class O>
BD_HD O binary_elem(int op, int mode, float sf, int64_t si, T a, T b) {
  if constexpr (is_float_v<T>) {
    float x = to_f32(a), y = mode == 0 ? to_f32(b) : sf;
    return from_f32<O>(mode == 2 ? binary_f(op, y, x) : binary_f(op, x, y));
  } else {
    int64_t x = (int64_t)a, y = mode == 0 ? (int64_t)b : si;
    return (O)(mode == 2 ? binary_i(op, y, x) : binary_i(op, x, y));
  }
}

// ---------------------------------------------------------------- kernels (V = 1: the scalar path)
template <class T, class O, int V>
__global__ void unary_kernel(Plan f, int op, float p0, float p1, O* __restrict__ out, const T* __restrict__ x) {
  plan_walk<V, 2>(f, [&](auto lanes, const int64_t* off) {
    constexpr int L = decltype(lanes)::value;
    T xv[L];
    O ov[L];
    load_lanes<L>(x + off[1], f.vec_mask & 2, xv);
#pragma unroll
    for (int k = 0; k < L; ++k) ov[k] = unary_elem<T, O>(op, xv[k], p0, p1);
    store_lanes<L>(out + off[0], ov);
  });
}

template <class T, class O, int V>
__global__ void binary_kernel(Plan f, int op, int mode, double scalar, O* __restrict__ out, const T* __restrict__ a,
                              const T* __restrict__ b) {
  const float sf = (float)scalar;  // as the CPU backend: a scalar meets a float tensor as a float32 value
  const int64_t si = (int64_t)scalar;
  plan_walk<V, 3>(f, [&](auto lanes, const int64_t* off) {
    constexpr int L = decltype(lanes)::value;
    T av[L], bv[L];
    O ov[L];
    load_lanes<L>(a + off[1], f.vec_mask & 2, av);
    if (mode == 0) {
      load_lanes<L>(b + off[2], f.vec_mask & 4, bv);
    } else {
#pragma unroll
      for (int k = 0; k < L; ++k) bv[k] = av[k];  // unused in modes 1 and 2
    }
#pragma unroll
    for (int k = 0; k < L; ++k) ov[k] = binary_elem<T, O>(op, mode, sf, si, av[k], bv[k]);
    store_lanes<L>(out + off[0], ov);
  });
}

template <class U, int V>
__global__ void where_kernel(Plan f, U* __restrict__ out, const uint8_t* __restrict__ cond, const U* __restrict__ a,
                             const U* __restrict__ b) {
  plan_walk<V, 4>(f, [&](auto lanes, const int64_t* off) {
    constexpr int L = decltype(lanes)::value;
    uint8_t cv[L];
    U av[L], bv[L], ov[L];
    load_lanes<L>(cond + off[1], f.vec_mask & 2, cv);
    load_lanes<L>(a + off[2], f.vec_mask & 4, av);
    load_lanes<L>(b + off[3], f.vec_mask & 8, bv);
#pragma unroll
    for (int k = 0; k < L; ++k) ov[k] = cv[k] ? av[k] : bv[k];
    store_lanes<L>(out + off[0], ov);
  });
}

template <class T, int V>
__global__ void geglu_kernel(Plan f, int tanh_approx, T* __restrict__ out, const T* __restrict__ a,
                             const T* __restrict__ gate) {
  plan_walk<V, 3>(f, [&](auto lanes, const int64_t* off) {
    constexpr int L = decltype(lanes)::value;
    T av[L], gv[L], ov[L];
    load_lanes<L>(a + off[1], f.vec_mask & 2, av);
    load_lanes<L>(gate + off[2], f.vec_mask & 4, gv);
#pragma unroll
    for (int k = 0; k < L; ++k) {
      float g = to_f32(gv[k]);
      ov[k] = from_f32<T>(to_f32(av[k]) * (tanh_approx ? gelu_tanh(g) : gelu_erf(g)));
    }
    store_lanes<L>(out + off[0], ov);
  });
}

// ================================================================ launchers
// Elements per 16 bytes of the widest of the operand sizes.
constexpr int vec_of(int widest) { return 16 / widest; }

template <class T, class O>
int unary_run(const Plan& f, int op, float p0, float p1, void* out, const void* x, cudaStream_t st) {
  constexpr int V = vec_of(sizeof(T) > sizeof(O) ? sizeof(T) : sizeof(O));
  dim3 grid(plan_grid(f)), block(kThreads);
  if (f.width > 1)
    return launch_kernel(unary_kernel<T, O, V>, grid, block, 0, st, f, op, p0, p1, (O*)out, (const T*)x);
  return launch_kernel(unary_kernel<T, O, 1>, grid, block, 0, st, f, op, p0, p1, (O*)out, (const T*)x);
}
template <class T>
int unary_launch(int op, const Strided* pp, void* out, const void* x, float p0, float p1, cudaStream_t st) {
  if (!pp || op < 0 || op >= unary::count || (!is_float_v<T> && !unary_int_ok(op))) return cudaErrorInvalidValue;
  Strided p = *pp;
  if (!prepare(p, 2)) return cudaErrorInvalidValue;
  if (p.numel == 0) return cudaSuccess;
  const bool to_bool = op == unary::logical_not;
  const int osz = to_bool ? 1 : (int)sizeof(T), elem[2] = {osz, (int)sizeof(T)};
  const void* ptr[2] = {out, x};
  Plan f = make_plan(p, vec_of(osz > (int)sizeof(T) ? osz : (int)sizeof(T)), ptr, elem);
  return to_bool ? unary_run<T, uint8_t>(f, op, p0, p1, out, x, st) : unary_run<T, T>(f, op, p0, p1, out, x, st);
}

template <class T, class O>
int binary_run(const Plan& f, int op, int mode, double s, void* out, const void* a, const void* b, cudaStream_t st) {
  constexpr int V = vec_of(sizeof(T) > sizeof(O) ? sizeof(T) : sizeof(O));
  dim3 grid(plan_grid(f)), block(kThreads);
  if (f.width > 1)
    return launch_kernel(binary_kernel<T, O, V>, grid, block, 0, st, f, op, mode, s, (O*)out, (const T*)a, (const T*)b);
  return launch_kernel(binary_kernel<T, O, 1>, grid, block, 0, st, f, op, mode, s, (O*)out, (const T*)a, (const T*)b);
}
template <class T>
int binary_launch(int op, const Strided* pp, int nargs, int mode, void* out, const void* a, const void* b, double s,
                  cudaStream_t st) {
  if (!pp || op < 0 || op >= binary::count || (!is_float_v<T> && op == binary::div)) return cudaErrorInvalidValue;
  Strided p = *pp;
  if (!prepare(p, nargs)) return cudaErrorInvalidValue;
  if (nargs == 2)
    for (int d = 0; d < kMaxDims; ++d) p.stride[2][d] = 0;
  if (p.numel == 0) return cudaSuccess;
  const bool to_bool = writes_bool(op);
  const int osz = to_bool ? 1 : (int)sizeof(T), elem[3] = {osz, (int)sizeof(T), (int)sizeof(T)};
  const void* ptr[3] = {out, a, b};
  Plan f = make_plan(p, vec_of(osz > (int)sizeof(T) ? osz : (int)sizeof(T)), ptr, elem);
  return to_bool ? binary_run<T, uint8_t>(f, op, mode, s, out, a, b, st) : binary_run<T, T>(f, op, mode, s, out, a, b, st);
}

template <class T>
int where_launch(const Strided* pp, void* out, const void* cond, const void* a, const void* b, cudaStream_t st) {
  typedef typename uint_of<sizeof(T)>::type U;
  constexpr int V = vec_of(sizeof(T));
  if (!pp) return cudaErrorInvalidValue;
  Strided p = *pp;
  if (!prepare(p, 4)) return cudaErrorInvalidValue;
  if (p.numel == 0) return cudaSuccess;
  const int elem[4] = {(int)sizeof(T), 1, (int)sizeof(T), (int)sizeof(T)};
  const void* ptr[4] = {out, cond, a, b};
  Plan f = make_plan(p, V, ptr, elem);
  dim3 grid(plan_grid(f)), block(kThreads);
  if (f.width > 1)
    return launch_kernel(where_kernel<U, V>, grid, block, 0, st, f, (U*)out, (const uint8_t*)cond, (const U*)a, (const U*)b);
  return launch_kernel(where_kernel<U, 1>, grid, block, 0, st, f, (U*)out, (const uint8_t*)cond, (const U*)a, (const U*)b);
}

template <class T>
int geglu_launch(void* out, const void* x, int64_t rows, int64_t inner, int tanh_approx, cudaStream_t st) {
  constexpr int V = vec_of(sizeof(T));
  if (rows < 0 || inner < 0) return cudaErrorInvalidValue;
  if (rows == 0 || inner == 0) return cudaSuccess;
  Strided p = {};
  p.ndim = 2;
  p.shape[0] = rows, p.shape[1] = inner;
  p.stride[0][0] = inner, p.stride[0][1] = 1;
  p.stride[1][0] = p.stride[2][0] = 2 * inner, p.stride[1][1] = p.stride[2][1] = 1;
  prepare(p, 3);
  const T* xa = (const T*)x;
  const int elem[3] = {(int)sizeof(T), (int)sizeof(T), (int)sizeof(T)};
  const void* ptr[3] = {out, xa, xa + inner};
  Plan f = make_plan(p, V, ptr, elem);
  dim3 grid(plan_grid(f)), block(kThreads);
  if (f.width > 1)
    return launch_kernel(geglu_kernel<T, V>, grid, block, 0, st, f, tanh_approx, (T*)out, xa, xa + inner);
  return launch_kernel(geglu_kernel<T, 1>, grid, block, 0, st, f, tanh_approx, (T*)out, xa, xa + inner);
}
}  // namespace bd

using bd::Strided;
#define BD_EW_EXPORTS(tag, T)                                                                                     \
  BDK_API int bdk_unary_##tag(int op, const Strided* p, void* out, const void* x, float p0, float p1,              \
                              cudaStream_t st) {                                                                   \
    return bd::unary_launch<T>(op, p, out, x, p0, p1, st);                                                         \
  }                                                                                                                \
  BDK_API int bdk_binary_##tag(int op, const Strided* p, void* out, const void* a, const void* b, cudaStream_t st) { \
    return bd::binary_launch<T>(op, p, 3, 0, out, a, b, 0.0, st);                                                  \
  }                                                                                                                \
  BDK_API int bdk_binary_scalar_##tag(int op, const Strided* p, void* out, const void* a, double s, int scalar_first, \
                                      cudaStream_t st) {                                                           \
    return bd::binary_launch<T>(op, p, 2, scalar_first ? 2 : 1, out, a, nullptr, s, st);                           \
  }                                                                                                                \
  BDK_API int bdk_where_##tag(const Strided* p, void* out, const void* cond, const void* a, const void* b,          \
                              cudaStream_t st) {                                                                   \
    return bd::where_launch<T>(p, out, cond, a, b, st);                                                            \
  }
BD_ALL_TYPES(BD_EW_EXPORTS)

#define BD_GEGLU_EXPORTS(tag, T)                                                                                  \
  BDK_API int bdk_geglu_##tag(void* out, const void* x, int64_t rows, int64_t inner, int tanh_approx, cudaStream_t st) { \
    return bd::geglu_launch<T>(out, x, rows, inner, tanh_approx, st);                                              \
  }
BD_FLOAT_TYPES(BD_GEGLU_EXPORTS)

// Elements per thread of the most recent elementwise launch from this library: V > 1 = the 16-byte vector path,
// 1 = the scalar path (a diagnostic for tests and benchmarks; not synchronised across host threads).
BDK_API int bdk_elementwise_last_width() { return bd::last_width; }
