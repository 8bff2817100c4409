// copy.cu -- data movement between strided views: same-dtype copy (bit-exact; contiguous(), cat, slice
// assignment), dtype conversion (casts), and fill. Casts: float -> float rounds to nearest even; float -> integer
// truncates toward zero (NaN -> 0, saturating at the int64 range, then wrapping to the target width as C and
// JavaScript typed arrays do); -> bool is `value != 0`.
//
// Launchers (`p` points to a host bd::Strided; operands in the order given):
//   bdk_copy_<t>(p{out, in}, out, in, stream)            t: f32 f16 bf16 i32 i64 u8 (bool: u8)
//   bdk_cast_<s>_<d>(p{out, in}, out, in, stream)        s: f32 f16 bf16 i32 i64 u8, d: the same or bool
//   bdk_fill_<t>(p{out}, out, value, stream)             value (double) converted to t on the host
#include "common.cuh"

namespace bd {
// ================================================================ kernels
template <class D, bool ToBool, class S>
BD_HD D convert(S v) {
  if constexpr (ToBool) {
    if constexpr (is_float_v<S>) return (D)(to_f32(v) != 0.f);
    else return (D)(v != 0);
  } else if constexpr (is_float_v<D>) {
    if constexpr (is_float_v<S>) return from_f32<D>(to_f32(v));
    else return from_f32<D>((float)v);
  } else if constexpr (is_float_v<S>) {
    float f = to_f32(v);
    int64_t i = f != f ? 0 : f >= 9.2233715e18f ? INT64_MAX : f <= -9.2233715e18f ? INT64_MIN : (int64_t)f;
    return (D)i;
  } else {
    return (D)v;
  }
}

template <class U>
__global__ void copy_kernel(Strided p, U* __restrict__ out, const U* __restrict__ in) {
  for_each_strided<2>(p, [&](const int64_t* off) { out[off[0]] = in[off[1]]; });
}
template <class S, class D, bool ToBool>
__global__ void cast_kernel(Strided p, D* __restrict__ out, const S* __restrict__ in) {
  for_each_strided<2>(p, [&](const int64_t* off) { out[off[0]] = convert<D, ToBool>(in[off[1]]); });
}
template <class U>
__global__ void fill_kernel(Strided p, U* __restrict__ out, U value) {
  for_each_strided<1>(p, [&](const int64_t* off) { out[off[0]] = value; });
}

// ================================================================ launchers
template <class T>
int copy_launch(const Strided* pp, void* out, const void* in, cudaStream_t st) {
  typedef typename uint_of<sizeof(T)>::type U;
  if (!pp) return cudaErrorInvalidValue;
  Strided p = *pp;
  if (!prepare(p, 2)) return cudaErrorInvalidValue;
  if (p.numel == 0) return cudaSuccess;
  return launch_kernel(copy_kernel<U>, dim3(grid_for(p.numel, kThreads)), dim3(kThreads), 0, st, p, (U*)out, (const U*)in);
}
template <class S, class D, bool ToBool>
int cast_launch(const Strided* pp, void* out, const void* in, cudaStream_t st) {
  if (!pp) return cudaErrorInvalidValue;
  Strided p = *pp;
  if (!prepare(p, 2)) return cudaErrorInvalidValue;
  if (p.numel == 0) return cudaSuccess;
  return launch_kernel(cast_kernel<S, D, ToBool>, dim3(grid_for(p.numel, kThreads)), dim3(kThreads), 0, st, p, (D*)out,
                       (const S*)in);
}
template <class T>
int fill_launch(const Strided* pp, void* out, double value, cudaStream_t st) {
  typedef typename uint_of<sizeof(T)>::type U;
  if (!pp) return cudaErrorInvalidValue;
  Strided p = *pp;
  if (!prepare(p, 1)) return cudaErrorInvalidValue;
  if (p.numel == 0) return cudaSuccess;
  T v;
  if constexpr (is_float_v<T>) v = from_f32<T>((float)value);
  else v = (T)(int64_t)value;
  U bits;
  memcpy(&bits, &v, sizeof bits);
  return launch_kernel(fill_kernel<U>, dim3(grid_for(p.numel, kThreads)), dim3(kThreads), 0, st, p, (U*)out, bits);
}
}  // namespace bd

using bd::Strided;
#define BD_COPY_EXPORTS(tag, T)                                                                                 \
  BDK_API int bdk_copy_##tag(const Strided* p, void* out, const void* in, cudaStream_t st) {                    \
    return bd::copy_launch<T>(p, out, in, st);                                                                  \
  }                                                                                                             \
  BDK_API int bdk_fill_##tag(const Strided* p, void* out, double value, cudaStream_t st) {                      \
    return bd::fill_launch<T>(p, out, value, st);                                                               \
  }                                                                                                             \
  BDK_API int bdk_cast_##tag##_bool(const Strided* p, void* out, const void* in, cudaStream_t st) {             \
    return bd::cast_launch<T, uint8_t, true>(p, out, in, st);                                                   \
  }
BD_ALL_TYPES(BD_COPY_EXPORTS)

#define BD_CAST_EXPORT(s, S, d, D)                                                                              \
  BDK_API int bdk_cast_##s##_##d(const Strided* p, void* out, const void* in, cudaStream_t st) {                \
    return bd::cast_launch<S, D, false>(p, out, in, st);                                                        \
  }
#define BD_CAST_FROM(s, S) \
  BD_CAST_EXPORT(s, S, f32, float) BD_CAST_EXPORT(s, S, f16, bd::f16) BD_CAST_EXPORT(s, S, bf16, bd::bf16) \
  BD_CAST_EXPORT(s, S, i32, int32_t) BD_CAST_EXPORT(s, S, i64, int64_t) BD_CAST_EXPORT(s, S, u8, uint8_t)
BD_ALL_TYPES(BD_CAST_FROM)
