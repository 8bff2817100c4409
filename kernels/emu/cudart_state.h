// cudart_state.h -- what the emulated libcudart's sources share (cudart.cpp and any kernels/emu/cudart_*.cpp,
// linked into one libcudart.so): the device's state (allocations, streams, events, the last error), its lock,
// and the checks every API call makes (valid_stream, event_of, device_range). Internal: not a CUDA API.
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
#include <iterator>
#include <map>
#include <mutex>
#include <set>
#include <thread>


namespace bdemu_rt {
struct Event {
  unsigned flags;
  bool recorded;
  uint64_t seq;
  double ms;
};
struct State {
  std::recursive_mutex mu;  // recursive: helpers lock too
  std::map<uintptr_t, size_t> device, pinned;  // start -> bytes (pinned: cudaHostAlloc / cudaHostRegister)
  std::set<uintptr_t> streams, events;
  size_t used = 0, peak = 0, release_threshold = 0;
  uint64_t event_seq = 0;
  cudaError_t last = cudaSuccess;
};
typedef std::lock_guard<std::recursive_mutex> Lock;
inline State& S() {
  static State s;
  return s;
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
inline bool valid_stream(cudaStream_t s) {  // 0, cudaStreamLegacy (1), cudaStreamPerThread (2), or created
  Lock g(S().mu);
  return (uintptr_t)s <= 2 || S().streams.count((uintptr_t)s);
}
inline Event* event_of(cudaEvent_t e) {
  Lock g(S().mu);
  return S().events.count((uintptr_t)e) ? (Event*)e : nullptr;
}

}  // namespace bdemu_rt
