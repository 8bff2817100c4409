// cudart_check.cpp -- the emulated libcudart's side of the checking mode (ARCHITECTURE.md decision 18;
// cudart_check.h): the allocation table snapshot that each checked launch takes, and the quarantine of freed device
// memory while BD_EMU_CHECK names memcheck. A quarantined range keeps its addresses (the block stays allocated, its
// whole pages are handed back to the OS with MADV_DONTNEED) so no later allocation reuses them; the oldest ranges
// are released once the quarantine holds more than kQuarantineRanges ranges or kQuarantineBytes bytes.
#include "cudart_state.h"
#include "cudart_check.h"

#include <algorithm>
#include <deque>
#include <vector>
#include <sys/mman.h>
#include <unistd.h>

namespace bdemu_rt {
namespace {
constexpr size_t kQuarantineRanges = 16384;
constexpr size_t kQuarantineBytes = (size_t)16 << 30;  // address space only: the pages are released
struct Quarantine {
  std::map<uintptr_t, size_t> ranges;  // start -> bytes requested
  std::deque<uintptr_t> order;         // oldest first
  size_t bytes = 0;
};
Quarantine& Q() {
  static Quarantine q;
  return q;
}
bool memcheck_on() {  // read on every call, as the kernels library reads it at every launch
  const char* e = getenv("BD_EMU_CHECK");
  return e && strstr(e, "memcheck");
}
void release_oldest() {
  Quarantine& q = Q();
  uintptr_t p = q.order.front();
  q.order.pop_front();
  auto it = q.ranges.find(p);
  q.bytes -= it->second;
  q.ranges.erase(it);
  free((void*)p);
}
}  // namespace

bool quarantine(void* p, size_t size) {
  if (!memcheck_on()) return false;
  Lock g(S().mu);
  Quarantine& q = Q();
  const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), a = (uintptr_t)p;
  uintptr_t lo = (a + page - 1) & ~(page - 1), hi = (a + size) & ~(page - 1);
  if (hi > lo) madvise((void*)lo, hi - lo, MADV_DONTNEED);  // whole pages inside the block only
  q.ranges[a] = size;
  q.order.push_back(a);
  q.bytes += size;
  while (q.order.size() > kQuarantineRanges || q.bytes > kQuarantineBytes) release_oldest();
  return true;
}
void release_quarantine() {
  Lock g(S().mu);
  while (!Q().order.empty()) release_oldest();
}
}  // namespace bdemu_rt

using namespace bdemu_rt;
extern "C" __attribute__((visibility("default"))) long bdemu_check_allocations(bdemu_check_alloc* out, long cap) {
  Lock g(S().mu);
  std::vector<bdemu_check_alloc> all;
  all.reserve(S().device.size() + S().pinned.size() + Q().ranges.size());
  for (auto& [p, n] : S().device) all.push_back({p, n, BDEMU_ALLOC_DEVICE});
  for (auto& [p, n] : Q().ranges) all.push_back({p, n, BDEMU_ALLOC_FREED});
  for (auto& [p, n] : S().pinned) all.push_back({p, n, BDEMU_ALLOC_PINNED});
  std::sort(all.begin(), all.end(), [](const bdemu_check_alloc& x, const bdemu_check_alloc& y) { return x.start < y.start; });
  for (long i = 0; i < cap && i < (long)all.size(); ++i) out[i] = all[i];
  return (long)all.size();
}
