// Seeded faults for the emulated device's checking mode (kernels/emu/check.cpp; test/cuda/check.test.ts builds
// this file as a check-variant library): each broken kernel has a correct twin that differs only in the fault.
//   memcheck:  a read one element past the end, a write one element past the end, an atomic past the end,
//              a read of freed memory (the test frees the buffer first), dynamic shared memory past its size
//   racecheck: a missing __syncthreads between warps (dynamic shared memory), a static __shared__ scalar read
//              before the barrier that publishes it, a missing __syncwarp inside one warp; atomics are not hazards
#include "common.cuh"

// out[i] = x[i + 1] for i < count: count = n reads x[n], one element past the end (the twin: count = n - 1)
__global__ void shifted_read(float* out, const float* x, int count) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < count) out[i] = x[i + 1];
}
// out[i + 1] = x[i] for i < count: count = n writes out[n] (the twin: count = n - 1)
__global__ void shifted_write(float* out, const float* x, int count) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < count) out[i + 1] = x[i];
}
// counts[i % slots] += 1 with atomics; `slots` larger than the buffer's count goes past its end
__global__ void atomic_count(int* counts, int n, int slots) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) atomicAdd(&counts[i % slots], 1);
}
// each thread stages x in dynamic shared memory (every `stride`-th float), then reads the value of thread
// (t + offset) % threads; `sync` = the __syncthreads between the two
__global__ void neighbour(float* out, const float* x, int sync, int stride, int offset) {
  CUDA_DYNAMIC_SHARED(float, s);
  int t = threadIdx.x, n = blockDim.x;
  s[t * stride] = x[t];
  if (sync) __syncthreads();
  out[t] = s[((t + offset) % n) * stride];
}
// thread 0 publishes a total in a static __shared__ scalar; every thread reads it (after __syncthreads if `sync`)
__global__ void broadcast_total(float* out, const float* x, int sync) {
  __shared__ float total;
  __shared__ int hits;
  if (threadIdx.x == 0) {
    float s = 0.f;
    for (int i = 0; i < (int)blockDim.x; ++i) s += x[i];
    total = s;
    hits = 0;
  }
  if (sync) __syncthreads();
  atomicAdd(&hits, 1);  // every thread, no barrier between: atomics are not hazards
  out[threadIdx.x] = total;
  __syncthreads();
  if (threadIdx.x == 0) out[blockDim.x] = (float)hits;
}
// one warp: each lane stages x, then reads lane ^ 1's value (after __syncwarp if `sync`)
__global__ void warp_swap(float* out, const float* x, int sync) {
  __shared__ float s[32];
  int lane = threadIdx.x & 31;
  s[lane] = x[lane];
  if (sync) __syncwarp();
  out[lane] = s[lane ^ 1];
}

BDK_API int t_shifted_read(float* out, const float* x, int count, cudaStream_t st) {
  return launch_kernel(shifted_read, dim3((count + 63) / 64), dim3(64), 0, st, out, x, count);
}
BDK_API int t_shifted_write(float* out, const float* x, int count, cudaStream_t st) {
  return launch_kernel(shifted_write, dim3((count + 63) / 64), dim3(64), 0, st, out, x, count);
}
BDK_API int t_atomic_count(int* counts, int n, int slots, cudaStream_t st) {
  return launch_kernel(atomic_count, dim3((n + 63) / 64), dim3(64), 0, st, counts, n, slots);
}
// smem_floats: the dynamic shared memory of the launch, in floats (stride · threads needed)
BDK_API int t_neighbour(float* out, const float* x, int threads, int sync, int stride, int offset, int smem_floats, cudaStream_t st) {
  return launch_kernel(neighbour, dim3(1), dim3(threads), smem_floats * sizeof(float), st, out, x, sync, stride, offset);
}
BDK_API int t_broadcast_total(float* out, const float* x, int threads, int sync, cudaStream_t st) {
  return launch_kernel(broadcast_total, dim3(1), dim3(threads), 0, st, out, x, sync);
}
BDK_API int t_warp_swap(float* out, const float* x, int sync, cudaStream_t st) {
  return launch_kernel(warp_swap, dim3(1), dim3(32), 0, st, out, x, sync);
}
