// mma.cuh -- the tensor-core and async-copy wrappers (the only inline PTX in kernels/), each with an emulated twin
// in kernels/emu/mma_emu.h that the g++ build uses (common.cuh's rule: no inline PTX outside such a wrapper).
//
//   tc::mma_m16n8k16<T>(d, a, b, c)   D[16×8] = A[16×16] · B[16×8] + C, T = f16 | bf16 inputs, fp32 accumulators:
//                                      mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32 on sm_80+;
//                                      f16 on sm_75 as two m16n8k8 (same fragments, k = 0..7 then 8..15); bf16 on
//                                      sm_75 is a compile-time error (no such instruction; callers compile that path
//                                      out and their launchers refuse bf16 before 8.0).
//   tc::pack2<T>(lo, hi)              two 16-bit values into one fragment register (lo = the lower column / k index)
//   tc::ldmatrix_x4_trans(r, row)     ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 (sm_75+): lane l passes the
//                                      shared address of row l % 8 of 8×8 matrix l / 8 (8 contiguous 16-bit elements,
//                                      16-byte aligned); r[i] = matrix i transposed into the fragment pattern: low half
//                                      M_i[2(l % 4)][l / 4], high half M_i[2(l % 4) + 1][l / 4] — a B fragment of
//                                      mma (k = matrix row) read from a row-major [k][n] tile
//   tc::cp_async16(dst, src, bytes)   16-byte global → shared copy, the last 16 − bytes zero-filled (bytes ∈ {0, 16}):
//                                      cp.async.cg on sm_80+, a plain 16-byte load/store before, a memcpy emulated
//   tc::cp_async_commit() / tc::cp_async_wait<N>()   cp.async.commit_group / wait_group N (no-ops where the copy is
//                                      synchronous)
//
// Fragment layout (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type"; per lane, groupID g =
// lane >> 2, threadID_in_group t = lane % 4; each register holds two 16-bit elements, the lower column / k in the
// low half):
//   A (16×16, row-major):  a[0] = A[g][2t, 2t+1]      a[1] = A[g+8][2t, 2t+1]
//                          a[2] = A[g][2t+8, 2t+9]    a[3] = A[g+8][2t+8, 2t+9]
//   B (16×8, "col": element (k, n)):  b[0] = B[2t, 2t+1][g]    b[1] = B[2t+8, 2t+9][g]
//   C / D (16×8 fp32):     c[0], c[1] = C[g][2t, 2t+1]     c[2], c[3] = C[g+8][2t, 2t+1]
// m16n8k8 (sm_75 f16) uses a[0], a[1] and b[0] of the same pattern, which is why k = 0..7 of m16n8k16 is exactly
// one m16n8k8 and k = 8..15 (a[2], a[3], b[1]) the other. Pinned by kernels/test_mma.cu + test/cuda/mma.test.ts.
#pragma once
#include "common.cuh"

#if defined(CUDA_EMU)
#include "emu/mma_emu.h"
#else
namespace tc {
template <class T> struct always_false { static constexpr bool value = false; };

template <class T>
__device__ __forceinline__ uint32_t pack2(T lo, T hi) {
  uint16_t l, h;
  memcpy(&l, &lo, 2);
  memcpy(&h, &hi, 2);
  return (uint32_t)l | ((uint32_t)h << 16);
}

template <class T>
__device__ __forceinline__ void mma_m16n8k16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4]) {
  static_assert(std::is_same<T, bd::f16>::value || std::is_same<T, bd::bf16>::value, "mma_m16n8k16: f16 or bf16 inputs");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (std::is_same<T, bd::f16>::value)
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
  else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 750
  if constexpr (std::is_same<T, bd::f16>::value) {
    // k = 0..7 with (a[0], a[1], b[0]), then k = 8..15 with (a[2], a[3], b[1]) accumulating onto the first result
    float t0, t1, t2, t3;
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%7,%8,%9,%10};\n"
                 : "=f"(t0), "=f"(t1), "=f"(t2), "=f"(t3)
                 : "r"(a[0]), "r"(a[1]), "r"(b[0]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%7,%8,%9,%10};\n"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[2]), "r"(a[3]), "r"(b[1]), "f"(t0), "f"(t1), "f"(t2), "f"(t3));
  } else {
    static_assert(always_false<T>::value, "bf16 mma.sync needs sm_80: compile the bf16 path out for sm_75 (see attention_tc.cu)");
  }
#elif defined(__CUDA_ARCH__)
  static_assert(always_false<T>::value, "mma.sync m16n8k16 / m16n8k8 need sm_75 or newer");
#endif
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem_row) {
  const unsigned addr = (unsigned)__cvta_generic_to_shared(smem_row);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// 16-byte global → shared copy with zero fill of the bytes not read (src_bytes 0 or 16).
__device__ __forceinline__ void cp_async16(void* smem_dst, const void* gmem_src, int src_bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned dst = (unsigned)__cvta_generic_to_shared(smem_dst);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem_src), "r"(src_bytes));
#else
  uint4 v = make_uint4(0, 0, 0, 0);
  if (src_bytes) v = *reinterpret_cast<const uint4*>(gmem_src);
  *reinterpret_cast<uint4*>(smem_dst) = v;
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}
}  // namespace tc
#endif

namespace tc {
// Compute capability major of the current device (cached per device): launchers refuse what a device cannot run
// (bf16 mma before 8.0). The emulated device runs every path.
inline int device_cc_major() {
#if defined(__CUDACC__)
  static int cache[64];
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) dev = 0;
  if (!cache[dev]) {
    int v = 0;
    cudaDeviceGetAttribute(&v, cudaDevAttrComputeCapabilityMajor, dev);
    cache[dev] = v > 0 ? v : 1;
  }
  return cache[dev];
#else
  return 8;
#endif
}
}  // namespace tc
