// cudart.cpp -- the emulated libcudart (ARCHITECTURE.md decision 4): the subset of the CUDA runtime API that
// ffi/cuda/cudart.ts binds, on host memory, for one device named "bun-diffusion emulated device".
//   - device memory: 256-byte aligned host allocations, tracked so that frees, copies and the cuBLAS / cuDNN
//     shims can check pointers and ranges (a bad pointer is cudaErrorInvalidValue, as the real runtime);
//     new allocations are filled with 0xFF bytes (NaN as f32/f16/bf16, -1 as integers) to expose reads of
//     uninitialised memory; the capacity is BD_EMU_MEMORY_BYTES (default 8 GiB) so out-of-memory paths run.
//   - streams run synchronously (work is complete when a call returns); events record their order and a host
//     timestamp, so cudaEventElapsedTime measures host time between the two records.
//   - errors set the sticky-free "last error" as the real runtime does (cudaGetLastError / PeekAtLastError).
//   - what a test can change through the C environment (read on every call; ffi/libc.ts setCEnv):
//     BD_EMU_DRIVER_VERSION / BD_EMU_RUNTIME_VERSION (default 13000 each, as cudaDriverGetVersion /
//     cudaRuntimeGetVersion report them) and BD_EMU_COMPUTE_CAPABILITY ("8.0" by default, e.g. "7.5").
//   - host synchronisations are counted (cudaDeviceSynchronize, cudaStreamSynchronize, cudaEventSynchronize,
//     cudaMemcpy, which is synchronous): bdemu_sync_count() returns the count (tests).
// BD_EMU_CHECK=memcheck quarantines freed device memory (cudart_check.cpp).
// Exports bdemu_device_range() for the other shims (libcublas / libcudnn link to this library) and
// bdemu_stream_submit(), through which every stream's work runs (libbdkernels links to this library too).
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
cudaError_t copy(void* dst, const void* src, size_t n, cudaMemcpyKind kind) {
  State& s = S();
  Lock g(s.mu);
  CHECK(kind >= cudaMemcpyHostToHost && kind <= cudaMemcpyDefault, cudaErrorInvalidMemcpyDirection);
  if (n == 0) return cudaSuccess;
  CHECK(dst && src, cudaErrorInvalidValue);
  bool dev_dst = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  bool dev_src = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (kind == cudaMemcpyDefault) dev_dst = is_device(dst), dev_src = is_device(src);
  // a device side must lie inside one allocation; a host side must not be device memory (swapped arguments)
  CHECK(dev_dst ? device_range(dst, n) : !is_device(dst), cudaErrorInvalidValue);
  CHECK(dev_src ? device_range(src, n) : !is_device(src), cudaErrorInvalidValue);
  memmove(dst, src, n);
  return cudaSuccess;
}
cudaError_t set(void* p, int value, size_t n) {
  State& s = S();
  Lock g(s.mu);
  if (n == 0) return cudaSuccess;
  CHECK(device_range(p, n), cudaErrorInvalidValue);
  memset(p, value, n);
  return cudaSuccess;
}
}  // namespace

extern "C" {
// ---------------------------------------------------------------- for the other shims
__attribute__((visibility("default"))) int bdemu_device_range(const void* p, size_t bytes) {
  Lock g(S().mu);
  return device_range(p, bytes) ? 0 : 1;
}
// ---------------------------------------------------------------- stream work (not a CUDA API)
// Every piece of work issued to a stream -- kernel launches (libbdkernels, cuda_emu.h launch_kernel), async
// copies and memsets, the cuBLAS / cuDNN shims' calls -- goes through here: `run(arg)` performs it and returns
// a cudaError_t, `drop(arg)` (may be null) releases `arg` once the work is done or discarded. `what` names the
// work in reports. Today the work runs at once on the calling thread (streams are synchronous).
__attribute__((visibility("default"))) int bdemu_stream_submit(cudaStream_t st, const char* what, int (*run)(void*), void* arg,
                                                                void (*drop)(void*)) {
  (void)what;
  if (!valid_stream(st)) {
    if (drop) drop(arg);
    return fail(cudaErrorInvalidResourceHandle);
  }
  int e = run(arg);
  if (drop) drop(arg);
  if (e != cudaSuccess) fail((cudaError_t)e);
  return e;
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
cudaError_t cudaDeviceSynchronize(void) {
  count_sync();
  return cudaSuccess;
}
cudaError_t cudaDeviceReset(void) {
  State& s = S();
  Lock g(s.mu);
  for (auto& [p, n] : s.device) free((void*)p);
  s.device.clear();
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
cudaError_t cudaGetLastError(void) {
  cudaError_t e = S().last;
  S().last = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError(void) { return S().last; }

// ---------------------------------------------------------------- memory
cudaError_t cudaMalloc(void** p, size_t size) { return device_alloc(p, size); }
cudaError_t cudaFree(void* p) { return device_free(p); }
cudaError_t cudaMallocAsync(void** p, size_t size, cudaStream_t st) {
  CHECK(valid_stream(st), cudaErrorInvalidResourceHandle);
  return device_alloc(p, size);
}
cudaError_t cudaFreeAsync(void* p, cudaStream_t st) {
  CHECK(valid_stream(st), cudaErrorInvalidResourceHandle);
  return device_free(p);
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
  *p = size ? aligned_alloc(4096, (size + 4095) & ~(size_t)4095) : nullptr;
  CHECK(*p || !size, cudaErrorMemoryAllocation);
  Lock g(S().mu);
  if (*p) S().pinned[(uintptr_t)*p] = size;
  return cudaSuccess;
}
cudaError_t cudaMallocHost(void** p, size_t size) { return cudaHostAlloc(p, size, cudaHostAllocDefault); }
cudaError_t cudaFreeHost(void* p) {
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
  count_sync();
  return copy(dst, src, n, kind);
}
namespace {
struct CopyJob {
  void* dst;
  const void* src;
  size_t n;
  cudaMemcpyKind kind;
};
struct SetJob {
  void* p;
  int value;
  size_t n;
};
void drop_copy(void* j) { delete (CopyJob*)j; }
void drop_set(void* j) { delete (SetJob*)j; }
}  // namespace
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, enum cudaMemcpyKind kind, cudaStream_t st) {
  auto run = +[](void* a) -> int { auto* j = (CopyJob*)a; return copy(j->dst, j->src, j->n, j->kind); };
  return (cudaError_t)bdemu_stream_submit(st, "cudaMemcpyAsync", run, new CopyJob{dst, src, n, kind}, drop_copy);
}
cudaError_t cudaMemset(void* p, int value, size_t n) { return set(p, value, n); }  // async for device memory
cudaError_t cudaMemsetAsync(void* p, int value, size_t n, cudaStream_t st) {
  auto run = +[](void* a) -> int { auto* j = (SetJob*)a; return set(j->p, j->value, j->n); };
  return (cudaError_t)bdemu_stream_submit(st, "cudaMemsetAsync", run, new SetJob{p, value, n}, drop_set);
}

// ---------------------------------------------------------------- streams and events
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* st, unsigned int flags) {
  CHECK(st && flags <= cudaStreamNonBlocking, cudaErrorInvalidValue);
  *st = (cudaStream_t)malloc(16);  // a unique address; streams carry no state when synchronous
  Lock g(S().mu);
  S().streams.insert((uintptr_t)*st);
  return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t* st) { return cudaStreamCreateWithFlags(st, cudaStreamDefault); }
cudaError_t cudaStreamDestroy(cudaStream_t st) {
  Lock g(S().mu);
  CHECK(S().streams.erase((uintptr_t)st), cudaErrorInvalidResourceHandle);
  free(st);
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t st) {
  CHECK(valid_stream(st), cudaErrorInvalidResourceHandle);
  count_sync();
  return cudaSuccess;
}
cudaError_t cudaStreamQuery(cudaStream_t st) {
  CHECK(valid_stream(st), cudaErrorInvalidResourceHandle);
  return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t st, cudaEvent_t ev, unsigned int) {
  CHECK(valid_stream(st) && event_of(ev), cudaErrorInvalidResourceHandle);
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* ev, unsigned int flags) {
  CHECK(ev && flags <= (cudaEventBlockingSync | cudaEventDisableTiming | 0x04), cudaErrorInvalidValue);
  Event* e = new Event{flags, false, 0, 0.0};
  Lock g(S().mu);
  S().events.insert((uintptr_t)e);
  *ev = (cudaEvent_t)e;
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* ev) { return cudaEventCreateWithFlags(ev, cudaEventDefault); }
cudaError_t cudaEventDestroy(cudaEvent_t ev) {
  Lock g(S().mu);
  CHECK(S().events.erase((uintptr_t)ev), cudaErrorInvalidResourceHandle);
  delete (Event*)ev;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t ev, cudaStream_t st) {
  Lock g(S().mu);
  Event* e = event_of(ev);
  CHECK(e && valid_stream(st), cudaErrorInvalidResourceHandle);
  e->recorded = true;
  e->seq = ++S().event_seq;
  e->ms = now_ms();
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t ev) {
  CHECK(event_of(ev), cudaErrorInvalidResourceHandle);
  count_sync();
  return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t ev) {
  CHECK(event_of(ev), cudaErrorInvalidResourceHandle);
  return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  CHECK(ms, cudaErrorInvalidValue);
  Event *a = event_of(start), *b = event_of(end);
  // as the real runtime: both recorded, neither created with cudaEventDisableTiming
  CHECK(a && b && a->recorded && b->recorded, cudaErrorInvalidResourceHandle);
  CHECK(!((a->flags | b->flags) & cudaEventDisableTiming), cudaErrorInvalidResourceHandle);
  *ms = (float)(b->ms - a->ms);
  return cudaSuccess;
}
}  // extern "C"
