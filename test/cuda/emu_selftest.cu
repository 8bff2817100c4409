// Kernels that exercise the CUDA emulator itself (kernels/emu/cuda_emu.h), built by emu.test.ts with g++:
// divergent per-half-warp shuffles, ballots, dynamic shared memory, a grid-stride block reduction with atomics,
// and two bugs the emulator must report as launch errors instead of hanging.
#include "common.cuh"

__global__ void halves(int* out) {  // each half-warp reduces on its own with its own mask
  int lane = threadIdx.x & 31, v = lane;
  unsigned mask = lane < 16 ? 0x0000ffffu : 0xffff0000u;
  if (lane >= 16) v *= 2;
  for (int o = 8; o > 0; o >>= 1) v += __shfl_xor_sync(mask, v, o);
  unsigned bal = __ballot_sync(0xffffffffu, lane & 1);
  out[blockIdx.x * blockDim.x + threadIdx.x] = v + (bal == 0xaaaaaaaau ? 1000 : 0);
}
__global__ void block_sum(const float* x, float* out, int n) {  // dynamic shared memory + atomics
  CUDA_DYNAMIC_SHARED(float, red);
  float acc = 0.f;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) acc += x[i];
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, o);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    float s = 0.f;
    for (int w = 0; w < (int)(blockDim.x >> 5); ++w) s += red[w];
    atomicAdd(out, s);
  }
}
__global__ void divergent_barrier(float* out) {  // BUG: __syncthreads reached by half the block
  __shared__ float s[64];
  if (threadIdx.x < 32) {
    s[threadIdx.x] = 1.f;
    __syncthreads();
  }
  out[threadIdx.x] = s[threadIdx.x & 31];
}
__global__ void barrier_vs_shuffle(float* out) {  // BUG: half a warp in a barrier, the other half in a shuffle
  float v = threadIdx.x;
  if ((threadIdx.x & 31) < 16) __syncthreads();
  out[threadIdx.x] = v + __shfl_xor_sync(0xffffffffu, v, 16);
}

BDK_API int t_halves(int* out, cudaStream_t st) { return launch_kernel(halves, dim3(3), dim3(64), 0, st, out); }
BDK_API int t_block_sum(const float* x, float* out, int n, cudaStream_t st) {
  return launch_kernel(block_sum, dim3(5), dim3(96), 3 * sizeof(float), st, x, out, n);
}
BDK_API int t_divergent_barrier(float* out, cudaStream_t st) { return launch_kernel(divergent_barrier, dim3(1), dim3(64), 0, st, out); }
BDK_API int t_barrier_vs_shuffle(float* out, cudaStream_t st) { return launch_kernel(barrier_vs_shuffle, dim3(1), dim3(64), 0, st, out); }
BDK_API int t_bad_config(float* out, cudaStream_t st) { return launch_kernel(divergent_barrier, dim3(1), dim3(2048), 0, st, out); }
