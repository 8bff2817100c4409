// half.h -- IEEE binary16 and bfloat16 <-> float32 conversions (round to nearest even; NaN -> canonical NaN, as
// cuda_fp16.h / cuda_bf16.h), for the emulated kernels (cuda_types.h) and the cuBLAS / cuDNN shims.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace cuda_emu {
inline uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
inline float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
inline uint16_t f32_to_f16(float f) {
  uint32_t x = f2u(f), sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return 0x7fffu;                  // NaN -> canonical NaN, as cuda_fp16
  if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  // >= 65520 rounds to infinity
  if (ax < 0x38800000u)                                 // below 2^-14: subnormal; x * 2^24 is exact, rint is RNE
    return (uint16_t)(sign | (uint32_t)rintf(u2f(ax) * 16777216.0f));
  uint32_t r = ax - 0x38000000u;  // rebias the exponent (127 - 15) << 23
  r += 0xfffu + ((r >> 13) & 1u);  // round the 13 dropped bits to nearest even
  return (uint16_t)(sign | (r >> 13));
}
inline float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0) return u2f(f2u((float)m * 5.9604644775390625e-8f) | sign);  // m * 2^-24, exact
  if (e == 31) return u2f(sign | 0x7f800000u | (m << 13));
  return u2f(sign | ((e + 112u) << 23) | (m << 13));
}
inline uint16_t f32_to_bf16(float f) {
  uint32_t x = f2u(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;
  return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}
inline float bf16_to_f32(uint16_t b) { return u2f((uint32_t)b << 16); }
// TF32 (what sm_80+ tensor cores read for float32 operands): float32 with a 10-bit mantissa, rounded to nearest
// with ties away from zero as PTX cvt.rna.tf32.f32; NaN and infinity pass through. The shims apply it to the
// operands of a float32 GEMM / convolution whose math mode allows TF32.
inline float tf32_round(float f) {
  uint32_t x = f2u(f);
  if ((x & 0x7f800000u) == 0x7f800000u) return f;
  return u2f((x + 0x1000u) & ~0x1fffu);
}
}  // namespace cuda_emu
