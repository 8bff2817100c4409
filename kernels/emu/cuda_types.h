// cuda_types.h -- the CUDA base types kernel sources see when compiled by g++ (CUDA emulation), so that the
// emulated build needs no CUDA toolkit: dim3/uint3, cudaStream_t, the launch error codes, and storage-only
// __half / __nv_bfloat16 with the conversion functions kernels use (round-to-nearest-even, as cuda_fp16.h and
// cuda_bf16.h). Kernels compute in float and convert at load/store, so no half arithmetic is provided.
#pragma once
#include "half.h"

#ifndef __host__
#define __host__
#define __device__
#define __global__
#define __constant__
#define __forceinline__ inline __attribute__((always_inline))
#endif

struct uint3 {
  unsigned x, y, z;
};
inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return {x, y, z}; }
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};

typedef struct CUstream_st* cudaStream_t;
// The subset of enum cudaError (driver_types.h) that launches can return.
enum cudaError {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorLaunchFailure = 719,
};
typedef enum cudaError cudaError_t;

// ---- 16-bit floats (storage types; bit layouts of IEEE binary16 and bfloat16)
struct __half {
  uint16_t bits_;
};
struct __nv_bfloat16 {
  uint16_t bits_;
};


inline float __half2float(__half h) { return cuda_emu::f16_to_f32(h.bits_); }
inline __half __float2half_rn(float f) { return {cuda_emu::f32_to_f16(f)}; }
inline __half __float2half(float f) { return __float2half_rn(f); }
inline unsigned short __half_as_ushort(__half h) { return h.bits_; }
inline __half __ushort_as_half(unsigned short u) { return {u}; }
inline float __bfloat162float(__nv_bfloat16 b) { return cuda_emu::bf16_to_f32(b.bits_); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return {cuda_emu::f32_to_bf16(f)}; }
inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.bits_; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return {u}; }
