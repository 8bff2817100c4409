// cudart.cpp -- the emulated libcudart (ARCHITECTURE.md decision 4): the subset of the CUDA runtime API that
// ffi/cuda/cudart.ts binds, on host memory, for one device named "bun-diffusion emulated device".
//   - device memory: 256-byte aligned host allocations, tracked so that frees, copies and the cuBLAS / cuDNN
//     shims can check pointers and ranges (a bad pointer is cudaErrorInvalidValue, as the real runtime);
//     new allocations are filled with 0xFF bytes (NaN as f32/f16/bf16, -1 as integers) to expose reads of
//     uninitialised memory; the capacity is BD_EMU_MEMORY_BYTES (default 8 GiB) so out-of-memory paths run.
//   - streams run asynchronously (cudart_streams.cpp: a queue per stream drained by its own thread, ordered only
//     by events, stream waits, synchronisations and the legacy default stream's rules); BD_EMU_STREAMS, read at
//     the device's first use, is "async" (default), "sync" (work runs at once on the caller) or "seeded:<N>" (a
//     deterministic interleaving drawn from a PRNG seeded with N, for reproducing an ordering bug).
//   - copies and memsets follow CUDA's API synchronization behavior: cudaMemcpy is synchronous on the legacy
//     stream; cudaMemcpyAsync from pageable host memory stages the bytes before it returns, to pageable host
//     memory it waits for the copy; to / from pinned memory (cudaHostAlloc, cudaHostRegister) the host bytes
//     are read / written when the stream reaches the copy. cudaMemset is queued on the legacy stream. cudaFree
//     synchronises the device; cudaFreeAsync frees when its stream reaches it (the memory is not reused before).
//     Arguments are checked at the call (an error is returned at once); a copy whose memory was freed in between
//     fails when it executes and is reported by the next synchronisation.
//   - errors set the sticky-free "last error" as the real runtime does (cudaGetLastError / PeekAtLastError).
//   - what a test can change through the C environment (read on every call; ffi/libc.ts setCEnv):
//     BD_EMU_DRIVER_VERSION / BD_EMU_RUNTIME_VERSION (default 13000 each, as cudaDriverGetVersion /
//     cudaRuntimeGetVersion report them) and BD_EMU_COMPUTE_CAPABILITY ("8.0" by default, e.g. "7.5").
//   - stream capture and CUDA graphs (cudart_graphs.cpp): the calls a capture forbids are refused here as on a GPU
//     (cudaMalloc, cudaFree, cudaMemcpy, pinned allocation; pageable async copies and stream-ordered allocation
//     on a capturing stream).
//   - host synchronisations are counted (cudaDeviceSynchronize, cudaStreamSynchronize, cudaEventSynchronize,
//     cudaMemcpy, which is synchronous, and cudaMemcpyAsync to pageable host memory, which waits):
//     bdemu_sync_count() returns the count (tests).
// Exports bdemu_device_range() for the other shims (libcublas / libcudnn link to this library); the streams'
// exports (bdemu_stream_submit, through which every stream's work runs) are in cudart_streams.cpp.
// BD_EMU_CHECK=memcheck quarantines freed device memory (cudart_check.cpp).
#include "cudart_state.h"
#include "cudart_check.h"

using namespace bdemu_rt;
namespace {
cudaError_t device_alloc(void** p, size_t size) {
  CHECK(p, cudaErrorInvalidValue);
  State& s = S();
  Lock g(s.mu);
  *p = nullptr;
  if (size == 0) return cudaSuccess;
  CHECK(s.used + size <= capacity(), cudaErrorMemoryAllocation);
  size_t bytes = (size + 255) & ~(size_t)255;
  void* q = aligned_alloc(256, bytes);
  CHECK(q, cudaErrorMemoryAllocation);
  memset(q, 0xFF, bytes);
  s.device[(uintptr_t)q] = size;
  s.used += size;
  if (s.used > s.peak) s.peak = s.used;
  *p = q;
  return cudaSuccess;
}
cudaError_t device_free(void* p) {
  State& s = S();
  Lock g(s.mu);
  if (!p) return cudaSuccess;
  auto it = s.device.find((uintptr_t)p);
  CHECK(it != s.device.end(), cudaErrorInvalidValue);
  s.used -= it->second;
  size_t size = it->second;
  s.device.erase(it);
  if (!quarantine(p, size)) free(p);  // BD_EMU_CHECK=memcheck keeps freed ranges to recognise use after free
  return cudaSuccess;
}
// Checks a copy's arguments (under the lock): a device side must lie inside one allocation, a host side must not
// be device memory (swapped arguments). *to_dev / *from_dev say which sides are device memory.
cudaError_t check_copy(void* dst, const void* src, size_t n, cudaMemcpyKind kind, bool* to_dev, bool* from_dev) {
  CHECK(kind >= cudaMemcpyHostToHost && kind <= cudaMemcpyDefault, cudaErrorInvalidMemcpyDirection);
  bool dev_dst = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  bool dev_src = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (kind == cudaMemcpyDefault) dev_dst = is_device(dst), dev_src = is_device(src);
  *to_dev = dev_dst, *from_dev = dev_src;
  if (n == 0) return cudaSuccess;
  CHECK(dst && src, cudaErrorInvalidValue);
  CHECK(dev_dst ? device_range(dst, n) : !is_device(dst), cudaErrorInvalidValue);
  CHECK(dev_src ? device_range(src, n) : !is_device(src), cudaErrorInvalidValue);
  return cudaSuccess;
}
// A copy as stream work: the device sides are checked again when it executes (an async free may have run).
struct CopyJob {
  void* dst;
  const void* src;
  size_t n;
  bool to_dev, from_dev;
  void* staged;  // pageable source bytes copied at the call (freed with the job)
  static int run(void* a) {
    auto* j = (CopyJob*)a;
    {
      Lock g(S().mu);
      if ((j->to_dev && !device_range(j->dst, j->n)) || (j->from_dev && !device_range(j->src, j->n)))
        return cudaErrorIllegalAddress;
    }
    memmove(j->dst, j->staged ? j->staged : j->src, j->n);
    return cudaSuccess;
  }
  static void drop(void* a) {
    free(((CopyJob*)a)->staged);
    delete (CopyJob*)a;
  }
};
struct SetJob {
  void* p;
  int value;
  size_t n;
  static int run(void* a) {
    auto* j = (SetJob*)a;
    {
      Lock g(S().mu);
      if (!device_range(j->p, j->n)) return cudaErrorIllegalAddress;
    }
    memset(j->p, j->value, j->n);
    return cudaSuccess;
  }
  static void drop(void* a) { delete (SetJob*)a; }
};
// cudaMemcpy(Async) on `st`; `sync`: the call returns once the copy is done (cudaMemcpy).
cudaError_t queue_copy(void* dst, const void* src, size_t n, cudaMemcpyKind kind, cudaStream_t st, bool sync) {
  bool to_dev, from_dev, pageable_src, pageable_dst;
  {
    Lock g(S().mu);
    if (cudaError_t e = check_copy(dst, src, n, kind, &to_dev, &from_dev)) return e;
    pageable_src = !from_dev && !is_pinned(src, n);
    pageable_dst = !to_dev && !is_pinned(dst, n);
  }
  CHECK(valid_stream(st), cudaErrorInvalidResourceHandle);
  if (sync) {
    if (cudaError_t e = capture_check_unsafe("cudaMemcpy")) return e;
  } else if (pageable_src || pageable_dst) {  // a GPU cannot replay a copy staged through pageable memory
    if (cudaError_t e = capture_check_stream(st, "cudaMemcpyAsync with pageable host memory")) return e;
  }
  if (n == 0) return cudaSuccess;
  void* staged = nullptr;
  if (pageable_src && !sync) {  // staged: the caller may reuse its buffer as soon as the call returns
    staged = malloc(n);
    CHECK(staged, cudaErrorMemoryAllocation);
    memcpy(staged, src, n);
  }
  Ticket at;
  auto* job = new CopyJob{dst, src, n, to_dev, from_dev, staged};
  if (cudaError_t e = submit(st, sync ? "cudaMemcpy" : "cudaMemcpyAsync", &CopyJob::run, job, &CopyJob::drop, &at)) return e;
  if (sync) return synchronize("cudaMemcpy", Target{false, at}, true);
  if (pageable_dst) return synchronize("cudaMemcpyAsync to pageable host memory", Target{false, at}, true);
  return cudaSuccess;
}
cudaError_t queue_set(void* p, int value, size_t n, cudaStream_t st) {
  {
    Lock g(S().mu);
    if (n == 0) return cudaSuccess;
    CHECK(device_range(p, n), cudaErrorInvalidValue);
  }
  return submit(st, "cudaMemset", &SetJob::run, new SetJob{p, value, n}, &SetJob::drop);
}
}  // namespace

extern "C" {
// ---------------------------------------------------------------- for the other shims
__attribute__((visibility("default"))) int bdemu_device_range(const void* p, size_t bytes) {
  Lock g(S().mu);
  return device_range(p, bytes) ? 0 : 1;
}
// ---------------------------------------------------------------- for tests (not a CUDA API)
unsigned long long bdemu_sync_count(void) {
  Lock g(S().mu);
  return g_syncs;
}

// ---------------------------------------------------------------- device, versions, errors
cudaError_t cudaGetDeviceCount(int* count) {
  CHECK(count, cudaErrorInvalidValue);
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  CHECK(device == 0, cudaErrorInvalidDevice);
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  CHECK(device, cudaErrorInvalidValue);
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp* prop, int device) {
  CHECK(prop, cudaErrorInvalidValue);
  CHECK(device == 0, cudaErrorInvalidDevice);
  memset(prop, 0, sizeof *prop);
  snprintf(prop->name, sizeof prop->name, "bun-diffusion emulated device");
  prop->totalGlobalMem = capacity();
  prop->sharedMemPerBlock = 48 << 10;
  prop->regsPerBlock = 65536;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  prop->maxThreadsDim[0] = prop->maxThreadsDim[1] = 1024, prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 2147483647, prop->maxGridSize[1] = prop->maxGridSize[2] = 65535;
  compute_capability(&prop->major, &prop->minor);
  prop->multiProcessorCount = (int)std::thread::hardware_concurrency();
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* value, enum cudaDeviceAttr attr, int device) {
  CHECK(value, cudaErrorInvalidValue);
  CHECK(device == 0, cudaErrorInvalidDevice);
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: case cudaDevAttrMaxBlockDimX: *value = 1024; break;
    case cudaDevAttrMaxGridDimX: *value = 2147483647; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = 48 << 10; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = 227 << 10; break;
    case cudaDevAttrWarpSize: *value = 32; break;
    case cudaDevAttrMultiProcessorCount: *value = (int)std::thread::hardware_concurrency(); break;
    case cudaDevAttrComputeCapabilityMajor: { int mi; compute_capability(value, &mi); break; }
    case cudaDevAttrComputeCapabilityMinor: { int ma; compute_capability(&ma, value); break; }
    case cudaDevAttrMaxThreadsPerMultiProcessor: *value = 2048; break;
    case cudaDevAttrL2CacheSize: *value = 4 << 20; break;
    case cudaDevAttrClockRate: case cudaDevAttrMemoryClockRate: *value = 1000000; break;  // kHz
    case cudaDevAttrGlobalMemoryBusWidth: *value = 64; break;
    case cudaDevAttrCanMapHostMemory: case cudaDevAttrUnifiedAddressing: case cudaDevAttrMemoryPoolsSupported:
      *value = 1;
      break;
    default: *value = 0;
  }
  return cudaSuccess;
}
cudaError_t cudaDeviceReset(void) {
  synchronize_device("cudaDeviceReset", false);
  State& s = S();
  Lock g(s.mu);
  for (auto& [p, n] : s.device) free((void*)p);
  s.device.clear();
  s.freeing.clear();
  s.used = 0;
  release_quarantine();
  return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int* v) {
  CHECK(v, cudaErrorInvalidValue);
  *v = env_int("BD_EMU_DRIVER_VERSION", 13000);
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* v) {
  CHECK(v, cudaErrorInvalidValue);
  *v = env_int("BD_EMU_RUNTIME_VERSION", 13000);
  return cudaSuccess;
}
#define BD_ERROR_STRING(name, value, text) \
  case name: return text;
#define BD_ERROR_NAME(name, value, text) \
  case name: return #name;
const char* cudaGetErrorString(cudaError_t e) {
  switch ((int)e) { BD_CUDART_ERRORS(BD_ERROR_STRING) }
  return "unrecognized error code";
}
const char* cudaGetErrorName(cudaError_t e) {
  switch ((int)e) { BD_CUDART_ERRORS(BD_ERROR_NAME) }
  return "cudaErrorUnknown";
}
// An error raised by executed work is reported once: by these or by the next synchronisation, whichever is first.
cudaError_t cudaGetLastError(void) {
  take_work_error(true);
  return S().last.exchange(cudaSuccess);
}
cudaError_t cudaPeekAtLastError(void) { return S().last; }

// ---------------------------------------------------------------- memory
cudaError_t cudaMalloc(void** p, size_t size) {
  if (cudaError_t e = capture_check_unsafe("cudaMalloc")) return e;
  return device_alloc(p, size);
}
// Synchronises the device first (as the real cudaFree), so no queued work still uses the memory; the free
// happens even when that reports an execution error (which is returned).
cudaError_t cudaFree(void* p) {
  if (cudaError_t e = capture_check_unsafe("cudaFree")) return e;
  {
    Lock g(S().mu);
    CHECK(!S().freeing.count((uintptr_t)p), cudaErrorInvalidValue);  // its cudaFreeAsync is queued
  }
  cudaError_t pending = synchronize_device("cudaFree", false);
  cudaError_t e = device_free(p);
  return e != cudaSuccess ? e : pending;
}
cudaError_t cudaMallocAsync(void** p, size_t size, cudaStream_t st) {
  CHECK(valid_stream(st), cudaErrorInvalidResourceHandle);
  if (cudaError_t e = capture_check_stream(st, "cudaMallocAsync")) return e;  // graph memory nodes: not emulated
  return device_alloc(p, size);
}
cudaError_t cudaFreeAsync(void* p, cudaStream_t st) {
  {
    Lock g(S().mu);
    if (!p) return cudaSuccess;
    CHECK(S().device.count((uintptr_t)p) && !S().freeing.count((uintptr_t)p), cudaErrorInvalidValue);
    CHECK(valid_stream(st), cudaErrorInvalidResourceHandle);
    if (cudaError_t e = capture_check_stream(st, "cudaFreeAsync")) return e;  // graph memory nodes: not emulated
    S().freeing.insert((uintptr_t)p);
  }
  // stream-ordered: the memory stays allocated (not reusable) until the stream reaches the free
  auto run = +[](void* a) -> int {
    Lock g(S().mu);
    S().freeing.erase((uintptr_t)a);
    return device_free(a);
  };
  return submit(st, "cudaFreeAsync", run, p, nullptr);
}
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total) {
  CHECK(free_bytes && total, cudaErrorInvalidValue);
  Lock g(S().mu);
  *total = capacity();
  *free_bytes = S().used < *total ? *total - S().used : 0;
  return cudaSuccess;
}
static int default_pool;  // the handle of device 0's default pool
cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* pool, int device) {
  CHECK(pool, cudaErrorInvalidValue);
  CHECK(device == 0, cudaErrorInvalidDevice);
  *pool = (cudaMemPool_t)&default_pool;
  return cudaSuccess;
}
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, enum cudaMemPoolAttr attr, void* value) {
  CHECK(pool == (cudaMemPool_t)&default_pool && value, cudaErrorInvalidValue);
  Lock g(S().mu);
  if (attr == cudaMemPoolAttrReleaseThreshold) S().release_threshold = *(uint64_t*)value;
  else if (attr == cudaMemPoolAttrReservedMemHigh || attr == cudaMemPoolAttrUsedMemHigh) S().peak = S().used;  // reset
  else return fail(cudaErrorInvalidValue);
  return cudaSuccess;
}
cudaError_t cudaMemPoolGetAttribute(cudaMemPool_t pool, enum cudaMemPoolAttr attr, void* value) {
  CHECK(pool == (cudaMemPool_t)&default_pool && value, cudaErrorInvalidValue);
  Lock g(S().mu);
  uint64_t* v = (uint64_t*)value;
  switch (attr) {
    case cudaMemPoolAttrReleaseThreshold: *v = S().release_threshold; break;
    case cudaMemPoolAttrReservedMemCurrent: case cudaMemPoolAttrUsedMemCurrent: *v = S().used; break;
    case cudaMemPoolAttrReservedMemHigh: case cudaMemPoolAttrUsedMemHigh: *v = S().peak; break;
    default: return fail(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}
cudaError_t cudaMemPoolTrimTo(cudaMemPool_t pool, size_t) {
  CHECK(pool == (cudaMemPool_t)&default_pool, cudaErrorInvalidValue);
  return cudaSuccess;
}
cudaError_t cudaHostAlloc(void** p, size_t size, unsigned int) {
  CHECK(p, cudaErrorInvalidValue);
  if (cudaError_t e = capture_check_unsafe("cudaHostAlloc")) return e;
  *p = size ? aligned_alloc(4096, (size + 4095) & ~(size_t)4095) : nullptr;
  CHECK(*p || !size, cudaErrorMemoryAllocation);
  Lock g(S().mu);
  if (*p) S().pinned[(uintptr_t)*p] = size;
  return cudaSuccess;
}
cudaError_t cudaMallocHost(void** p, size_t size) {
  if (cudaError_t e = capture_check_unsafe("cudaMallocHost")) return e;
  return cudaHostAlloc(p, size, cudaHostAllocDefault);
}
cudaError_t cudaFreeHost(void* p) {
  if (cudaError_t e = capture_check_unsafe("cudaFreeHost")) return e;
  Lock g(S().mu);
  if (!p) return cudaSuccess;
  CHECK(S().pinned.erase((uintptr_t)p), cudaErrorInvalidValue);
  free(p);
  return cudaSuccess;
}
cudaError_t cudaHostRegister(void* p, size_t size, unsigned int) {
  CHECK(p && size, cudaErrorInvalidValue);
  Lock g(S().mu);
  auto& m = S().pinned;
  auto next = m.lower_bound((uintptr_t)p);
  bool overlaps = (next != m.end() && next->first < (uintptr_t)p + size) ||
                  (next != m.begin() && std::prev(next)->first + std::prev(next)->second > (uintptr_t)p);
  CHECK(!overlaps, cudaErrorHostMemoryAlreadyRegistered);
  CHECK(!is_device(p), cudaErrorInvalidValue);
  m[(uintptr_t)p] = size;
  return cudaSuccess;
}
cudaError_t cudaHostUnregister(void* p) {
  Lock g(S().mu);
  CHECK(S().pinned.erase((uintptr_t)p), cudaErrorHostMemoryNotRegistered);
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t n, enum cudaMemcpyKind kind) {
  return queue_copy(dst, src, n, kind, 0, true);
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, enum cudaMemcpyKind kind, cudaStream_t st) {
  return queue_copy(dst, src, n, kind, st, false);
}
cudaError_t cudaMemset(void* p, int value, size_t n) { return queue_set(p, value, n, 0); }  // async for device memory
cudaError_t cudaMemsetAsync(void* p, int value, size_t n, cudaStream_t st) { return queue_set(p, value, n, st); }
}  // extern "C"
