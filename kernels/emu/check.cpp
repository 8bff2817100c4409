// check.cpp -- the checking mode of the emulated device (ARCHITECTURE.md decision 18; the interface is check.h):
// memcheck and racecheck for kernels compiled with -fsanitize=thread instrumentation (this file defines the
// __tsan_* callbacks; it is itself compiled without instrumentation and linked into the check variant of a kernels
// library). A report ends the launch with cudaErrorLaunchFailure (as a kernel that compute-sanitizer stops), is
// the launch's error message (bdk_last_error) and is printed to stderr as "[bd-emu-check] <report>".
//
// memcheck: an access that is not the thread's own stack, shared memory, emulator bookkeeping or a global of this
//   library must lie inside one live device allocation (or pinned host memory) of the snapshot taken when the
//   launch started. Otherwise it is reported with the kernel, block, thread, address, size and kind, and the
//   nearest allocation (start, size, offset); an access inside a quarantined free (cudart_check.cpp) is a use
//   after free. Accesses past the dynamic shared memory size of the launch are reported as well.
// racecheck: each byte of shared memory (dynamic, and static __shared__ in the worker's TLS block) remembers its
//   last writer and up to two readers of the current barrier interval (Block::epoch). Two different threads of an
//   interval, at least one writing, are a hazard (RAW / WAR / WAW) unless they are lanes of one warp that both
//   completed one warp collective (__syncwarp, shuffle, vote, mma) between the two accesses (WarpState history).
//   Atomics are not hazards.
#include "cuda_emu.h"
#include "check_symbols.h"
#include "cudart_check.h"

#include <dlfcn.h>
#include <link.h>

#include <cinttypes>
#include <cstdarg>
#include <string>
#include <vector>

using namespace cuda_emu;

namespace {
constexpr int kMemcheck = 1, kRacecheck = 2;

// ---------------------------------------------------------------- this library: loaded segments and TLS size
struct Module {
  std::vector<std::pair<uintptr_t, uintptr_t>> segments;  // [lo, hi) of each PT_LOAD: host globals and constants
  size_t tls_bytes = 0;                                    // PT_TLS memory size: the static __shared__ variables
};
bool in_module(const dl_phdr_info* info, uintptr_t addr) {
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const auto& ph = info->dlpi_phdr[i];
    uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
    if (ph.p_type == PT_LOAD && addr - lo < ph.p_memsz) return true;
  }
  return false;
}
const Module& module() {
  static const Module m = [] {
    Module r;
    dl_iterate_phdr(
        [](dl_phdr_info* info, size_t, void* out) -> int {
          if (!in_module(info, reinterpret_cast<uintptr_t>(&module))) return 0;
          auto* mod = static_cast<Module*>(out);
          for (int i = 0; i < info->dlpi_phnum; ++i) {
            const auto& ph = info->dlpi_phdr[i];
            if (ph.p_type == PT_LOAD) mod->segments.push_back({info->dlpi_addr + ph.p_vaddr, info->dlpi_addr + ph.p_vaddr + ph.p_memsz});
            if (ph.p_type == PT_TLS) mod->tls_bytes = ph.p_memsz;
          }
          return 1;
        },
        &r);
    return r;
  }();
  return m;
}
}  // namespace
// A variable of this library's TLS block whose offset in the block the symbol table gives: the calling thread's
// instance of the block starts at its address minus that offset. (dl_iterate_phdr's dlpi_tls_data is null for a
// thread whose TLS vector has not caught up with later dlopens.)
extern "C" CUDA_EMU_CHECK_API thread_local char bdemu_check_tls_anchor = 0;
namespace {
uintptr_t tls_block() {
  size_t offset = cuda_emu_check::tls_offset("bdemu_check_tls_anchor");
  return offset == SIZE_MAX ? 0 : reinterpret_cast<uintptr_t>(&bdemu_check_tls_anchor) - offset;
}

// ---------------------------------------------------------------- the launch (read-only while its grid runs)
struct Launch {
  int mode = 0;
  const void* kernel = nullptr;
  uintptr_t args_lo = 0, args_bytes = 0;
  std::vector<bdemu_check_alloc> valid, freed;  // live device allocations + pinned host memory; quarantined frees
} g;

// ---------------------------------------------------------------- per worker thread
struct Access {
  uint32_t epoch;  // Block::epoch of the access (0: none)
  uint16_t tid;    // linear thread index in the block
  uint32_t coll;   // the thread's Fiber::coll_id at the access
};
struct Cell {
  Access w, r1, r2;  // last write; two readers of different threads
};
struct Shadow {
  uintptr_t lo = 0, bytes = 0;  // the shared memory it mirrors
  std::vector<Cell> cells;
};
struct Checker {  // one per worker thread
  bool active = false;
  Block* b = nullptr;
  uintptr_t fib_lo = 0, fib_bytes = 0, warp_lo = 0, warp_bytes = 0;
  uintptr_t hit_lo = 0, hit_bytes = 0;  // the allocation of the last device access
  size_t smem = 0;                       // usable bytes of the dynamic shared memory (dyn.lo ...)
  Shadow dyn, tls;                       // dynamic shared memory; the TLS block (static __shared__)
};
thread_local Checker* t_worker_check = nullptr;

inline uintptr_t stack_pointer() {
  uintptr_t sp;
#if defined(__x86_64__)
  __asm__ volatile("movq %%rsp, %0" : "=r"(sp));
#else
  sp = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
#endif
  return sp;
}

// ---------------------------------------------------------------- reports
void appendf(std::string& s, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void appendf(std::string& s, const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  s += buf;
}
const char* kind_name(int kind) { return kind == CUDA_EMU_ACCESS_WRITE ? "write" : kind == CUDA_EMU_ACCESS_ATOMIC ? "atomic" : "read"; }
std::string thread_of(const Block* b, int tid) {
  const uint3& t = b->fibers[tid].tid;
  std::string s;
  appendf(s, "(%u,%u,%u)", t.x, t.y, t.z);
  return s;
}
// Fails the block with `report` and leaves the current thread for good (check.h: the access is not performed).
[[noreturn]] void report(Block* b, const std::string& what) {
  std::string r = what;
  fprintf(stderr, "[bd-emu-check] %s\n", r.c_str());
  if (!b->error) {
    b->error = 5;
    snprintf(b->errmsg, sizeof b->errmsg, "%s", r.c_str());
  }
  t_worker_check->active = false;
  abandon_thread(b);
}
std::string where(const Block* b, int tid) {
  std::string s;
  appendf(s, "in kernel %s, block (%u,%u,%u), thread %s", cuda_emu_check::kernel_name(g.kernel).c_str(), b->bidx.x, b->bidx.y,
          b->bidx.z, thread_of(b, tid).c_str());
  return s;
}

// ---------------------------------------------------------------- memcheck
const bdemu_check_alloc* containing(const std::vector<bdemu_check_alloc>& v, uintptr_t a, size_t n) {
  size_t lo = 0, hi = v.size();  // first entry with start > a
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (v[mid].start <= a) lo = mid + 1;
    else hi = mid;
  }
  if (lo == 0) return nullptr;
  const bdemu_check_alloc& c = v[lo - 1];
  return a - c.start + n <= c.size ? &c : nullptr;
}
std::string relation(uintptr_t a, const bdemu_check_alloc& c) {
  std::string s;
  const char* what = c.kind == BDEMU_ALLOC_FREED ? "freed" : c.kind == BDEMU_ALLOC_PINNED ? "pinned host" : "device";
  if (a < c.start) appendf(s, "%" PRIuPTR " bytes before the start of", c.start - a);
  else if (a >= c.start + c.size) appendf(s, "%" PRIuPTR " bytes past the end of", a - (c.start + c.size));
  else appendf(s, "inside");
  appendf(s, " the %zu-byte %s allocation at 0x%" PRIxPTR " (offset %" PRIdPTR ")", c.size, what, c.start, (intptr_t)(a - c.start));
  return s;
}
[[noreturn]] void report_memory(Checker& w, uintptr_t a, size_t n, int kind) {
  Block* b = w.b;
  int tid = (int)(cur() - b->fibers);
  std::string s;
  if (const bdemu_check_alloc* f = containing(g.freed, a, 1)) {
    appendf(s, "memcheck: use after free: global %s of %zu bytes at 0x%" PRIxPTR " %s: %s (freed before the launch)", kind_name(kind), n, a,
            where(b, tid).c_str(), relation(a, *f).c_str());
    report(b, s);
  }
  const bdemu_check_alloc* near = nullptr;
  uintptr_t best = UINTPTR_MAX;
  for (const auto* v : {&g.valid, &g.freed})
    for (const bdemu_check_alloc& c : *v) {
      uintptr_t d = a < c.start ? c.start - a : a >= c.start + c.size ? a - (c.start + c.size) : 0;
      if (c.kind != BDEMU_ALLOC_PINNED && d < best) best = d, near = &c;
    }
  appendf(s, "memcheck: invalid global %s of %zu bytes at 0x%" PRIxPTR " %s: ", kind_name(kind), n, a, where(b, tid).c_str());
  if (near) s += relation(a, *near);
  else s += "there is no device allocation";
  report(b, s);
}
bool host_memory(const Checker& w, uintptr_t a) {  // emulator bookkeeping and this library's globals
  if (a - w.warp_lo < w.warp_bytes || a - g.args_lo < g.args_bytes) return true;
  for (const auto& [lo, hi] : module().segments)
    if (a - lo < hi - lo) return true;
  return false;
}

// ---------------------------------------------------------------- racecheck
// Whether the earlier access `p` (same barrier interval) is ordered before the current thread's access.
bool ordered(const Block* b, const Access& p, const Fiber* me, int tid) {
  if (p.tid == tid) return true;
  if ((p.tid >> 5) != (tid >> 5)) return false;  // other warps: only __syncthreads orders them
  const WarpState& ws = b->warps[tid >> 5];
  uint32_t both = (1u << (p.tid & 31)) | (1u << (tid & 31));
  if (me->coll_id <= p.coll) return false;
  if (ws.coll_count - p.coll >= WarpState::kCollHistory) return true;  // history gone: assume ordered (no false report)
  for (uint32_t id = p.coll + 1; id <= me->coll_id; ++id)
    if ((ws.coll_mask[id % WarpState::kCollHistory] & both) == both) return true;
  return false;
}
[[noreturn]] void report_hazard(Checker& w, const Shadow& sh, uintptr_t a, size_t n, const char* hazard, int tid, const Access& other) {
  Block* b = w.b;
  std::string s, region;
  if (&sh == &w.dyn) appendf(region, "dynamic shared memory offset %" PRIuPTR, a - sh.lo);
  else region = "static __shared__ " + cuda_emu_check::tls_variable(a - sh.lo);
  const bool write = hazard[0] != 'R';
  appendf(s, "racecheck: %s hazard on %s (%zu bytes at 0x%" PRIxPTR ") in kernel %s, block (%u,%u,%u): thread %s %s where thread %s %s, with no __syncthreads between",
          hazard, region.c_str(), n, a, cuda_emu_check::kernel_name(g.kernel).c_str(), b->bidx.x, b->bidx.y, b->bidx.z, thread_of(b, tid).c_str(),
          write ? "writes" : "reads", thread_of(b, other.tid).c_str(), hazard[2] == 'R' && hazard[0] == 'W' ? "read" : "wrote");
  if ((other.tid >> 5) == (tid >> 5)) appendf(s, " and no __syncwarp or warp collective of both lanes (warp %d)", tid >> 5);
  report(b, s);
}
void shared_access(Checker& w, Shadow& sh, uintptr_t a, size_t n, int kind) {
  if (&sh == &w.dyn && a + n > sh.lo + w.smem && (g.mode & kMemcheck)) {
    Block* b = w.b;
    int tid = (int)(cur() - b->fibers);
    std::string s;
    appendf(s, "memcheck: invalid shared %s of %zu bytes at dynamic shared memory offset %" PRIuPTR " %s: the launch has %zu bytes of dynamic shared memory",
            kind_name(kind), n, a - sh.lo, where(b, tid).c_str(), w.smem);
    report(b, s);
  }
  if (!(g.mode & kRacecheck) || kind == CUDA_EMU_ACCESS_ATOMIC) return;
  Block* b = w.b;
  const Fiber* me = cur();
  const int tid = (int)(me - b->fibers);
  const uint32_t epoch = b->epoch;
  const Access now{epoch, (uint16_t)tid, me->coll_id};
  size_t end = std::min<size_t>(a - sh.lo + n, sh.cells.size());
  for (size_t i = a - sh.lo; i < end; ++i) {
    Cell& c = sh.cells[i];
    const bool wv = c.w.epoch == epoch, r1v = c.r1.epoch == epoch, r2v = c.r2.epoch == epoch;
    if (kind == CUDA_EMU_ACCESS_WRITE) {
      if (wv && !ordered(b, c.w, me, tid)) report_hazard(w, sh, a, n, "WAW", tid, c.w);
      if (r1v && !ordered(b, c.r1, me, tid)) report_hazard(w, sh, a, n, "WAR", tid, c.r1);
      if (r2v && !ordered(b, c.r2, me, tid)) report_hazard(w, sh, a, n, "WAR", tid, c.r2);
      c.w = now;
      c.r1.epoch = c.r2.epoch = 0;  // the readers are ordered before this write
    } else {
      if (wv && !ordered(b, c.w, me, tid)) report_hazard(w, sh, a, n, "RAW", tid, c.w);
      if (!r1v || c.r1.tid == tid) c.r1 = now;
      else if (!r2v || c.r2.tid == tid) c.r2 = now;
    }
  }
}

// ---------------------------------------------------------------- every access
inline void on_access(const void* p, size_t n, int kind) {
  Checker* w = t_worker_check;
  if (__builtin_expect(!w || !w->active, 1)) return;  // host code of the library, or the emulator between rounds
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (((a ^ stack_pointer()) & ~(kStackSize - 1)) == 0) return;  // the thread's own stack
  if (a - w->fib_lo < w->fib_bytes || a - reinterpret_cast<uintptr_t>(w->b) < sizeof(Block)) return;  // threadIdx, blockIdx, ...
  if (a - w->dyn.lo < w->dyn.bytes) return shared_access(*w, w->dyn, a, n, kind);
  if (a - w->tls.lo < w->tls.bytes) return shared_access(*w, w->tls, a, n, kind);
  if (!(g.mode & kMemcheck)) return;
  if (a - w->hit_lo + n <= w->hit_bytes) return;
  if (const bdemu_check_alloc* c = containing(g.valid, a, n)) {
    w->hit_lo = c->start, w->hit_bytes = c->size;
    return;
  }
  if (host_memory(*w, a)) return;
  report_memory(*w, a, n, kind);
}
}  // namespace

// ---------------------------------------------------------------- check.h
int cuda_emu_check_launch(const void* kernel, const void* args, size_t args_bytes, char* msg, size_t msg_bytes) {
  g.mode = 0;
  if (const char* e = getenv("BD_EMU_CHECK")) {
    std::string v = e;
    for (size_t at = 0; at <= v.size();) {
      size_t comma = std::min(v.find(',', at), v.size());
      std::string name = v.substr(at, comma - at);
      if (name == "memcheck") g.mode |= kMemcheck;
      else if (name == "racecheck") g.mode |= kRacecheck;
      else if (!name.empty()) {
        snprintf(msg, msg_bytes, "BD_EMU_CHECK=%s: unknown checker '%s' (use memcheck, racecheck or memcheck,racecheck)", e, name.c_str());
        return 1;
      }
      at = comma + 1;
    }
  }
  g.kernel = kernel;
  g.args_lo = reinterpret_cast<uintptr_t>(args), g.args_bytes = args_bytes;
  g.valid.clear(), g.freed.clear();
  if (g.mode & kMemcheck) {
    std::vector<bdemu_check_alloc> all(256);
    long n = bdemu_check_allocations(all.data(), (long)all.size());
    while (n > (long)all.size()) {  // the table grew: a larger buffer
      all.resize(n);
      n = bdemu_check_allocations(all.data(), (long)all.size());
    }
    all.resize(n);
    for (const auto& c : all)
      if (c.start) (c.kind == BDEMU_ALLOC_FREED ? g.freed : g.valid).push_back(c);
  }
  return 0;
}
void cuda_emu_check_launch_end() {
  g.kernel = nullptr;
  g.args_bytes = 0;
}
void cuda_emu_check_block(Block* b, size_t dyn_capacity) {
  Checker*& w = t_worker_check;
  if (!w) {
    w = new Checker();  // one per worker thread, for the life of the thread's library
    w->tls.lo = tls_block();
    w->tls.bytes = w->tls.lo ? module().tls_bytes : 0;
  }
  w->b = b;
  w->fib_lo = reinterpret_cast<uintptr_t>(b->fibers), w->fib_bytes = sizeof(Fiber) * b->n;
  w->warp_lo = reinterpret_cast<uintptr_t>(b->warps.data()), w->warp_bytes = sizeof(WarpState) * b->warps.size();
  w->dyn.lo = reinterpret_cast<uintptr_t>(b->dyn_smem), w->dyn.bytes = dyn_capacity;
  w->smem = b->smem;
  w->hit_lo = w->hit_bytes = 0;  // the snapshot may have changed
  if (g.mode & kRacecheck) {
    // cells of older epochs are stale by construction (Block::epoch only grows on a worker)
    if (w->dyn.cells.size() < dyn_capacity) w->dyn.cells.resize(dyn_capacity, Cell{});
    if (w->tls.cells.size() < w->tls.bytes) w->tls.cells.resize(w->tls.bytes, Cell{});
  }
}
void cuda_emu_check_enter() {
  if (t_worker_check && t_worker_check->b && g.mode) t_worker_check->active = true;
}
void cuda_emu_check_leave() {
  if (t_worker_check) t_worker_check->active = false;
}
void cuda_emu_check_access(const void* p, size_t bytes, int kind) { on_access(p, bytes, kind); }

// ---------------------------------------------------------------- the instrumentation's callbacks
#define BD_TSAN_SIZED(n)                                                                                       \
  extern "C" CUDA_EMU_CHECK_API void __tsan_read##n(void* p) { on_access(p, n, CUDA_EMU_ACCESS_READ); }        \
  extern "C" CUDA_EMU_CHECK_API void __tsan_write##n(void* p) { on_access(p, n, CUDA_EMU_ACCESS_WRITE); }      \
  extern "C" CUDA_EMU_CHECK_API void __tsan_unaligned_read##n(void* p) { on_access(p, n, CUDA_EMU_ACCESS_READ); } \
  extern "C" CUDA_EMU_CHECK_API void __tsan_unaligned_write##n(void* p) { on_access(p, n, CUDA_EMU_ACCESS_WRITE); }
BD_TSAN_SIZED(1)
BD_TSAN_SIZED(2)
BD_TSAN_SIZED(4)
BD_TSAN_SIZED(8)
BD_TSAN_SIZED(16)
extern "C" CUDA_EMU_CHECK_API void __tsan_read_range(void* p, size_t n) { on_access(p, n, CUDA_EMU_ACCESS_READ); }
extern "C" CUDA_EMU_CHECK_API void __tsan_write_range(void* p, size_t n) { on_access(p, n, CUDA_EMU_ACCESS_WRITE); }
extern "C" CUDA_EMU_CHECK_API void __tsan_init() {}  // the instrumentation's module constructor calls it
extern "C" CUDA_EMU_CHECK_API void __tsan_vptr_update(void** slot, void* value) {}  // host code: std::thread's destructor
