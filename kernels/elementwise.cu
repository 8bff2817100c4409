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

template <class T, class O>
__global__ void unary_kernel(Strided p, int op, float p0, float p1, O* __restrict__ out, const T* __restrict__ x) {
  for_each_strided<2>(p, [&](const int64_t* off) {
    if constexpr (is_float_v<T>) out[off[0]] = from_f32<O>(unary_f(op, to_f32(x[off[1]]), p0, p1));
    else out[off[0]] = (O)unary_i(op, (int64_t)x[off[1]], p0, p1);
  });
}

// mode 0: a ⊕ b; 1: a ⊕ scalar; 2: scalar ⊕ a (b unused in modes 1 and 2)
template <class T, class O>
__global__ void binary_kernel(Strided p, int op, int mode, double scalar, O* __restrict__ out, const T* __restrict__ a,
                              const T* __restrict__ b) {
  const float sf = (float)scalar;  // as the CPU backend: a scalar meets a float tensor as a float32 value
  const int64_t si = (int64_t)scalar;
  for_each_strided<3>(p, [&](const int64_t* off) {
    if constexpr (is_float_v<T>) {
      float x = to_f32(a[off[1]]), y = mode == 0 ? to_f32(b[off[2]]) : sf;
      out[off[0]] = from_f32<O>(mode == 2 ? binary_f(op, y, x) : binary_f(op, x, y));
    } else {
      int64_t x = (int64_t)a[off[1]], y = mode == 0 ? (int64_t)b[off[2]] : si;
      out[off[0]] = (O)(mode == 2 ? binary_i(op, y, x) : binary_i(op, x, y));
    }
  });
}

template <class U>
__global__ void where_kernel(Strided p, U* __restrict__ out, const uint8_t* __restrict__ cond, const U* __restrict__ a,
                             const U* __restrict__ b) {
  for_each_strided<4>(p, [&](const int64_t* off) { out[off[0]] = cond[off[1]] ? a[off[2]] : b[off[3]]; });
}

template <class T>
__global__ void geglu_kernel(Strided p, int tanh_approx, T* __restrict__ out, const T* __restrict__ a,
                             const T* __restrict__ gate) {
  for_each_strided<3>(p, [&](const int64_t* off) {
    float g = to_f32(gate[off[2]]);
    out[off[0]] = from_f32<T>(to_f32(a[off[1]]) * (tanh_approx ? gelu_tanh(g) : gelu_erf(g)));
  });
}

// ================================================================ launchers
template <class T>
int unary_launch(int op, const Strided* pp, void* out, const void* x, float p0, float p1, cudaStream_t st) {
  if (!pp || op < 0 || op >= unary::count || (!is_float_v<T> && !unary_int_ok(op))) return cudaErrorInvalidValue;
  Strided p = *pp;
  if (!prepare(p, 2)) return cudaErrorInvalidValue;
  if (p.numel == 0) return cudaSuccess;
  dim3 grid(grid_for(p.numel, kThreads)), block(kThreads);
  if (op == unary::logical_not)
    return launch_kernel(unary_kernel<T, uint8_t>, grid, block, 0, st, p, op, p0, p1, (uint8_t*)out, (const T*)x);
  return launch_kernel(unary_kernel<T, T>, grid, block, 0, st, p, op, p0, p1, (T*)out, (const T*)x);
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
  dim3 grid(grid_for(p.numel, kThreads)), block(kThreads);
  if (writes_bool(op))
    return launch_kernel(binary_kernel<T, uint8_t>, grid, block, 0, st, p, op, mode, s, (uint8_t*)out, (const T*)a,
                         (const T*)b);
  return launch_kernel(binary_kernel<T, T>, grid, block, 0, st, p, op, mode, s, (T*)out, (const T*)a, (const T*)b);
}

template <class T>
int where_launch(const Strided* pp, void* out, const void* cond, const void* a, const void* b, cudaStream_t st) {
  typedef typename uint_of<sizeof(T)>::type U;
  if (!pp) return cudaErrorInvalidValue;
  Strided p = *pp;
  if (!prepare(p, 4)) return cudaErrorInvalidValue;
  if (p.numel == 0) return cudaSuccess;
  return launch_kernel(where_kernel<U>, dim3(grid_for(p.numel, kThreads)), dim3(kThreads), 0, st, p, (U*)out,
                       (const uint8_t*)cond, (const U*)a, (const U*)b);
}

template <class T>
int geglu_launch(void* out, const void* x, int64_t rows, int64_t inner, int tanh_approx, cudaStream_t st) {
  if (rows < 0 || inner < 0) return cudaErrorInvalidValue;
  if (rows == 0 || inner == 0) return cudaSuccess;
  Strided p = {};
  p.ndim = 2;
  p.shape[0] = rows, p.shape[1] = inner;
  p.stride[0][0] = inner, p.stride[0][1] = 1;
  p.stride[1][0] = p.stride[2][0] = 2 * inner, p.stride[1][1] = p.stride[2][1] = 1;
  prepare(p, 3);
  const T* xa = (const T*)x;
  return launch_kernel(geglu_kernel<T>, dim3(grid_for(p.numel, kThreads)), dim3(kThreads), 0, st, p, tanh_approx,
                       (T*)out, xa, xa + inner);
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
