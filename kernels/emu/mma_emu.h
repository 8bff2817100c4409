// mma_emu.h -- the emulated twins of kernels/mma.cuh (included from there under CUDA_EMU): tensor-core mma.sync as a
// warp collective with the PTX ISA fragment layout, cp.async as a synchronous copy, and cudaFuncSetAttribute for
// the launchers that opt in to more than 48 KB of dynamic shared memory (the emulator's limit is a fixed 227 KB).
// The combines run as emulator code (CUDA_EMU_UNCHECKED); in the checking mode ldmatrix reports each lane's row read.
//
// tc::ldmatrix_x4_trans: the row addresses of all 32 lanes gathered the same way (see below).
// tc::mma_m16n8k16<T>: all 32 lanes publish their a[4], b[2], c[4] registers (cuda_emu::warp_collective: the last
// lane to arrive runs the combine for the warp); the combine scatters them into A[16][16], B[16][8] (element (k, n))
// and C[16][8] by the documented layout (g = lane >> 2, t = lane % 4):
//   a[0] = A[g][2t..2t+1], a[1] = A[g+8][2t..], a[2] = A[g][2t+8..], a[3] = A[g+8][2t+8..]  (low half = lower col)
//   b[0] = B[2t..2t+1][g], b[1] = B[2t+8..2t+9][g]
//   c[0..1] = C[g][2t..2t+1], c[2..3] = C[g+8][2t..2t+1]
// computes D = A·B + C with every product (exact in fp32 for 16-bit inputs) summed in fp32 in k order onto C (the
// hardware's internal order and rounding differ in the last bits), and hands each lane its d[4] by the C layout. A
// partial warp (mask ≠ all lanes alive) is a launch error, as mma.sync.aligned requires the whole warp.
#pragma once
#include <string.h>

namespace tc {
template <class T> struct always_false { static constexpr bool value = false; };

template <class T>
inline uint32_t pack2(T lo, T hi) {
  uint16_t l, h;
  memcpy(&l, &lo, 2);
  memcpy(&h, &hi, 2);
  return (uint32_t)l | ((uint32_t)h << 16);
}

namespace emu {
struct MmaRec {
  const uint32_t* a;
  const uint32_t* b;
  const float* c;
  float d[4];
};
template <class T>
CUDA_EMU_UNCHECKED inline float half_at(uint32_t r, int hi) {
  uint16_t h = (uint16_t)(hi ? r >> 16 : r & 0xffffu);
  T v;
  memcpy(&v, &h, 2);
  return bd::to_f32(v);
}
template <class T>
CUDA_EMU_UNCHECKED void mma_combine(void** ptrs, uint32_t group) {
  if (group != 0xffffffffu) {
    ::cuda_emu::Fiber* f = ::cuda_emu::cur();
    f->block->error = 4;
    snprintf(f->block->errmsg, sizeof f->block->errmsg, "mma.sync.aligned with a partial warp (lanes %08x): all 32 lanes must execute it", group);
    for (uint32_t m = group; m; m &= m - 1) {
      auto* r = static_cast<MmaRec*>(ptrs[__builtin_ctz(m)]);
      for (int i = 0; i < 4; ++i) r->d[i] = __builtin_nanf("");
    }
    return;
  }
  float A[16][16], B[16][8], C[16][8];
  for (int lane = 0; lane < 32; ++lane) {
    const auto* r = static_cast<const MmaRec*>(ptrs[lane]);
    const int g = lane >> 2, t = lane & 3;
    for (int h = 0; h < 2; ++h) {
      A[g][2 * t + h] = half_at<T>(r->a[0], h);
      A[g + 8][2 * t + h] = half_at<T>(r->a[1], h);
      A[g][2 * t + 8 + h] = half_at<T>(r->a[2], h);
      A[g + 8][2 * t + 8 + h] = half_at<T>(r->a[3], h);
      B[2 * t + h][g] = half_at<T>(r->b[0], h);
      B[2 * t + 8 + h][g] = half_at<T>(r->b[1], h);
      C[g][2 * t + h] = r->c[h];
      C[g + 8][2 * t + h] = r->c[2 + h];
    }
  }
  for (int lane = 0; lane < 32; ++lane) {
    auto* r = static_cast<MmaRec*>(ptrs[lane]);
    const int g = lane >> 2, t = lane & 3;
    for (int q = 0; q < 4; ++q) {
      const int i = g + (q >> 1) * 8, j = 2 * t + (q & 1);
      float s = C[i][j];
      for (int k = 0; k < 16; ++k) s += A[i][k] * B[k][j];
      r->d[q] = s;
    }
  }
}
}  // namespace emu

template <class T>
inline void mma_m16n8k16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4]) {
  static_assert(std::is_same<T, bd::f16>::value || std::is_same<T, bd::bf16>::value, "mma_m16n8k16: f16 or bf16 inputs");
  emu::MmaRec r{a, b, c, {0.f, 0.f, 0.f, 0.f}};  // d may alias c: results are copied out after the collective
  ::cuda_emu::warp_collective(0xffffffffu, &r, &emu::mma_combine<T>);
  for (int i = 0; i < 4; ++i) d[i] = r.d[i];
}

// ldmatrix .x4 .trans: lane l publishes the address of row l % 8 of matrix l / 8; each lane receives, per matrix
// i, (M_i[2(l%4)][l/4], M_i[2(l%4)+1][l/4]) packed low / high.
namespace emu {
struct LdmRec {
  const uint16_t* row;
  uint32_t r[4];
};
CUDA_EMU_UNCHECKED inline void ldmatrix_trans_combine(void** ptrs, uint32_t group) {
  if (group != 0xffffffffu) {
    ::cuda_emu::Fiber* f = ::cuda_emu::cur();
    f->block->error = 4;
    snprintf(f->block->errmsg, sizeof f->block->errmsg, "ldmatrix.sync.aligned with a partial warp (lanes %08x)", group);
    return;
  }
  for (int lane = 0; lane < 32; ++lane) {
    auto* me = static_cast<LdmRec*>(ptrs[lane]);
    const int t = lane & 3, g = lane >> 2;
    for (int i = 0; i < 4; ++i) {
      const uint16_t lo = static_cast<LdmRec*>(ptrs[8 * i + 2 * t])->row[g];
      const uint16_t hi = static_cast<LdmRec*>(ptrs[8 * i + 2 * t + 1])->row[g];
      me->r[i] = (uint32_t)lo | ((uint32_t)hi << 16);
    }
  }
}
}  // namespace emu
inline void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem_row) {
  if (reinterpret_cast<uintptr_t>(smem_row) & 15) {
    ::cuda_emu::Fiber* f = ::cuda_emu::cur();
    f->block->error = 4;
    snprintf(f->block->errmsg, sizeof f->block->errmsg, "ldmatrix: row address %p is not 16-byte aligned", smem_row);
  }
  CUDA_EMU_CHECK_READ(smem_row, 16);  // the warp reads this lane's 16-byte row (racecheck sees it as this lane's read)
  emu::LdmRec rec{static_cast<const uint16_t*>(smem_row), {0, 0, 0, 0}};
  ::cuda_emu::warp_collective(0xffffffffu, &rec, &emu::ldmatrix_trans_combine);
  for (int i = 0; i < 4; ++i) r[i] = rec.r[i];
}

inline void cp_async16(void* smem_dst, const void* gmem_src, int src_bytes) {
  if (src_bytes) memcpy(smem_dst, gmem_src, 16);
  else memset(smem_dst, 0, 16);
}
inline void cp_async_commit() {}
template <int N>
inline void cp_async_wait() {}
}  // namespace tc

// ---- host: the dynamic shared memory opt-in (cudart's signature; the emulator launches up to 227 KB anyway)
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
template <class... P>
inline cudaError_t cudaFuncSetAttribute(void (*)(P...), cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 || value > 227 * 1024) return cudaErrorInvalidValue;
  return cudaSuccess;
}
