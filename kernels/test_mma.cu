// test_mma.cu -- test entries that pin the tensor-core fragment layout of kernels/mma.cuh (used by
// test/cuda/mma.test.ts on the emulated device and on any GPU): one warp loads its registers from row-major A and
// B by the documented m16n8k16 layout, runs tc::mma_m16n8k16 once and stores D by the C layout. With A, B chosen
// so that every output element depends on distinct elements, a wrong lane / register / half assignment anywhere
// (in the wrapper, the emulation or this loader) changes the result.
//
// Launchers:
//   bdk_test_ldmatrix_trans(out, m, stream)   out: u32 [32, 4] (lane, register); m: u16 [4, 8, 8] (matrix, row, col);
//                                          one ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16
//   bdk_test_mma_<t>(d, a, b, c, stream)   t: f16 bf16; d, c: float [16, 8]; a: T [16, 16] (row, k); b: T [16, 8]
//                                          (k, n); all row-major device memory; d = a·b + c
#include "mma.cuh"

namespace bd {
// ================================================================ kernels
template <class T>
__global__ void __launch_bounds__(32) test_mma_kernel(float* d, const T* a, const T* b, const float* c) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  if constexpr (std::is_same<T, bf16>::value) {
    __trap();  // no bf16 mma.sync before sm_80; the launcher refuses such a device
  } else
#endif
  {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    uint32_t ra[4], rb[2];
    ra[0] = tc::pack2(a[g * 16 + 2 * t], a[g * 16 + 2 * t + 1]);
    ra[1] = tc::pack2(a[(g + 8) * 16 + 2 * t], a[(g + 8) * 16 + 2 * t + 1]);
    ra[2] = tc::pack2(a[g * 16 + 2 * t + 8], a[g * 16 + 2 * t + 9]);
    ra[3] = tc::pack2(a[(g + 8) * 16 + 2 * t + 8], a[(g + 8) * 16 + 2 * t + 9]);
    rb[0] = tc::pack2(b[(2 * t) * 8 + g], b[(2 * t + 1) * 8 + g]);
    rb[1] = tc::pack2(b[(2 * t + 8) * 8 + g], b[(2 * t + 9) * 8 + g]);
    float rc[4] = {c[g * 8 + 2 * t], c[g * 8 + 2 * t + 1], c[(g + 8) * 8 + 2 * t], c[(g + 8) * 8 + 2 * t + 1]};
    float rd[4];
    tc::mma_m16n8k16<T>(rd, ra, rb, rc);
    d[g * 8 + 2 * t] = rd[0];
    d[g * 8 + 2 * t + 1] = rd[1];
    d[(g + 8) * 8 + 2 * t] = rd[2];
    d[(g + 8) * 8 + 2 * t + 1] = rd[3];
  }
}

// ldmatrix .x4 .trans: matrices m [4][8][8] (16-bit, row-major) staged in shared memory with a row stride of 24
// elements; lane l passes row l % 8 of matrix l / 8; out [32 lanes][4] registers.
__global__ void __launch_bounds__(32) test_ldmatrix_kernel(uint32_t* out, const uint16_t* m) {
  CUDA_DYNAMIC_SHARED(uint16_t, tile);  // [32 rows][24]
  const int lane = threadIdx.x & 31;
  for (int e = 0; e < 8; ++e) tile[lane * 24 + e] = m[lane * 8 + e];  // row `lane` = matrix lane / 8, row lane % 8
  __syncwarp();
  uint32_t r[4];
  tc::ldmatrix_x4_trans(r, tile + lane * 24);
  for (int i = 0; i < 4; ++i) out[lane * 4 + i] = r[i];
}

// ================================================================ launchers
template <class T>
int test_mma_launch(float* d, const void* a, const void* b, const float* c, cudaStream_t st) {
  if (!d || !a || !b || !c) return cudaErrorInvalidValue;
  if (std::is_same<T, bf16>::value && tc::device_cc_major() < 8) return cudaErrorInvalidValue;
  return launch_kernel(test_mma_kernel<T>, dim3(1), dim3(32), 0, st, d, (const T*)a, (const T*)b, c);
}
}  // namespace bd

BDK_API int bdk_test_ldmatrix_trans(uint32_t* out, const uint16_t* m, cudaStream_t st) {
  if (!out || !m) return cudaErrorInvalidValue;
  return launch_kernel(bd::test_ldmatrix_kernel, dim3(1), dim3(32), 32 * 24 * sizeof(uint16_t), st, out, m);
}
BDK_API int bdk_test_mma_f16(float* d, const void* a, const void* b, const float* c, cudaStream_t st) {
  return bd::test_mma_launch<bd::f16>(d, a, b, c, st);
}
BDK_API int bdk_test_mma_bf16(float* d, const void* a, const void* b, const float* c, cudaStream_t st) {
  return bd::test_mma_launch<bd::bf16>(d, a, b, c, st);
}
