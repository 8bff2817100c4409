// cudart_state.h -- what the emulated libcudart's sources share (cudart.cpp and any kernels/emu/cudart_*.cpp,
// linked into one libcudart.so): the device's memory state (allocations, the last error) and its lock, the
// checks every API call makes (valid_stream, device_range), and the interface of the stream engine
// (cudart_streams.cpp: queues, events, the one synchronisation point). Internal: not a CUDA API.
#pragma once
#ifdef BD_REAL_CUDA_HEADERS
#include <cuda_runtime_api.h>  // signature check only (scripts/build-kernels.ts, -fsyntax-only)
#include "api/cudart_values.h"
#else
#include "api/cudart.h"
#endif
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <atomic>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>


namespace bdemu_rt {
struct State {
  std::recursive_mutex mu;  // recursive: helpers lock too
  std::map<uintptr_t, size_t> device, pinned;  // start -> bytes (pinned: cudaHostAlloc / cudaHostRegister)
  std::set<uintptr_t> freeing;                 // device allocations whose cudaFreeAsync is queued
  size_t used = 0, peak = 0, release_threshold = 0;
  std::atomic<cudaError_t> last{cudaSuccess};  // set by stream threads too
};
typedef std::lock_guard<std::recursive_mutex> Lock;
inline State& S() {  // never destroyed: stream threads may still run while the process exits
  static State* s = new State;
  return *s;
}
inline double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
inline size_t capacity() {  // read on every call: the C environment is what a test can change (ffi/libc.ts setCEnv)
  const char* e = getenv("BD_EMU_MEMORY_BYTES");
  unsigned long long v = e ? strtoull(e, nullptr, 10) : 0;
  return v ? (size_t)v : (size_t)8 << 30;
}
inline int env_int(const char* name, int fallback) {
  const char* e = getenv(name);
  return e && *e ? atoi(e) : fallback;
}
// BD_EMU_COMPUTE_CAPABILITY "major.minor" (default 8.0)
inline void compute_capability(int* major, int* minor) {
  const char* e = getenv("BD_EMU_COMPUTE_CAPABILITY");
  *major = 8, *minor = 0;
  if (e && *e) sscanf(e, "%d.%d", major, minor);
}
inline uint64_t g_syncs = 0;  // host synchronisations so far
inline void count_sync() {
  Lock g(S().mu);
  ++g_syncs;
}
inline cudaError_t fail(cudaError_t e) {
  S().last = e;
  return e;
}
#define CHECK(cond, err) \
  if (!(cond)) return fail(err)

// The allocation of `m` that contains [p, p + n), or m.end().
inline std::map<uintptr_t, size_t>::iterator find_range(std::map<uintptr_t, size_t>& m, const void* p, size_t n) {
  uintptr_t a = (uintptr_t)p;
  auto it = m.upper_bound(a);
  if (it == m.begin()) return m.end();
  --it;
  return a - it->first + n <= it->second ? it : m.end();
}
inline bool is_device(const void* p) { return find_range(S().device, p, 0) != S().device.end(); }
inline bool device_range(const void* p, size_t n) { return find_range(S().device, p, n) != S().device.end(); }
inline bool is_pinned(const void* p, size_t n) { return find_range(S().pinned, p, n) != S().pinned.end(); }

// ---------------------------------------------------------------- the stream engine (cudart_streams.cpp)
// How stream work runs, from BD_EMU_STREAMS at the device's first use: Async (default; a thread per stream),
// Sync (at once on the calling thread) or Seeded (one scheduler, a seeded PRNG picks the next ready queue head).
enum class Mode { Async, Sync, Seeded };
Mode mode();
struct Queue;
// A point in one stream's order: done once the queue has completed item `seq` (a null queue is always done).
struct Ticket {
  std::shared_ptr<Queue> q;
  uint64_t seq = 0;
};
// 0, cudaStreamLegacy (1), cudaStreamPerThread (2), or a live created stream
bool valid_stream(cudaStream_t s);
// Queue run(arg) on stream st in order (drop(arg) afterwards, may be null); *at receives its place in the stream.
// An invalid stream drops arg and is cudaErrorInvalidResourceHandle; in Sync mode run's error is returned.
cudaError_t submit(cudaStream_t st, const char* what, int (*run)(void*), void* arg, void (*drop)(void*),
                   Ticket* at = nullptr);
// What a synchronising call waits for: the whole device, or one point of one stream.
struct Target {
  bool device = false;
  Ticket t;
};
// The one place the host waits for the device (cudaDeviceSynchronize, cudaStreamSynchronize,
// cudaEventSynchronize, cudaMemcpy, D2H cudaMemcpyAsync to pageable memory, cudaFree...): counts a host
// synchronisation when `counted`, waits, and returns the first error raised by executed work since the last
// report (then cleared), or cudaErrorNotReady when the target waits for a held stream (bdemu_stream_hold).
cudaError_t synchronize(const char* api, const Target& target, bool counted);
inline cudaError_t synchronize_device(const char* api, bool counted) { return synchronize(api, Target{true, {}}, counted); }
// The execution error not yet reported by a synchronisation (cudaGetLastError clears it too).
cudaError_t take_work_error(bool clear);
// Whether a valid stream orders itself with the legacy stream (created without cudaStreamNonBlocking).
bool stream_blocking(cudaStream_t s);

// ---------------------------------------------------------------- stream capture (cudart_graphs.cpp)
// Number of capture sequences under way (submit() consults the capture state only when it is not 0).
inline std::atomic<int> g_captures{0};
// Work submitted to `st` while a capture is under way: recorded into the capture when `st` captures (an
// invalidated capture drops it and answers cudaErrorStreamCaptureInvalidated), refused with
// cudaErrorStreamCaptureImplicit when `st` is the legacy stream and a blocking stream captures (that capture is
// invalidated). Returns false when the work is not the capture's business (queue it as usual); else *r is the answer.
bool capture_intercept(cudaStream_t st, const char* what, int (*run)(void*), void* arg, void (*drop)(void*), cudaError_t* r);
// A "potentially unsafe" call (cudaMalloc, cudaFree, cudaMemcpy, cudaDeviceSynchronize, cudaHostAlloc...) under
// the capture-mode rules of cudaThreadExchangeStreamCaptureMode: cudaErrorStreamCaptureUnsupported (and the
// captures that prohibit it invalidated) when prohibited, else cudaSuccess.
cudaError_t capture_check_unsafe(const char* api);
// A call never permitted on a capturing stream (synchronising or querying it, a copy with pageable host memory,
// stream-ordered allocation): cudaErrorStreamCaptureUnsupported with the capture invalidated, or cudaSuccess when
// `st` does not capture.
cudaError_t capture_check_stream(cudaStream_t st, const char* api);
// cudaEventRecord(ev, st): remembers whether the event's latest record is inside a capture sequence; true when it
// is (the record is then part of the capture, not queued).
bool capture_event_recorded(cudaEvent_t ev, cudaStream_t st);
// cudaEventQuery / cudaEventSynchronize: cudaErrorCapturedEvent when ev was last recorded in a capture.
cudaError_t capture_check_event(cudaEvent_t ev);
// cudaStreamWaitEvent(st, ev) while captures are under way: *handled says the capture decided (answer returned).
cudaError_t capture_wait_event(cudaStream_t st, cudaEvent_t ev, bool recorded, bool* handled);
// cudaStreamDestroy / cudaEventDestroy: forget the handle (a new stream or event may get the same address).
void capture_stream_destroyed(cudaStream_t st);
void capture_event_destroyed(cudaEvent_t ev);

}  // namespace bdemu_rt
