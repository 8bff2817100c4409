// cuda_emu.h -- CUDA emulation: compile CUDA kernel source with g++ and run it on the CPU (ARCHITECTURE.md
// decision 4). Adapted from ../shared/prototypes/cuda-emu (see its README for measurements).
//
// Each CUDA thread is a user-level fiber; a block's fibers run cooperatively on one OS thread; blocks are
// spread over a small pool of OS threads (CUDA_EMU_WORKERS, default: all CPUs).
//   __syncthreads()               -> block barrier (fiber switch)
//   __shfl_*_sync / __ballot_sync -> warp collective: every lane in `mask` publishes a pointer to its
//                                    operands, the last to arrive performs the exchange for all (works for
//                                    divergent per-warp code; masks are honoured)
//   __shared__                    -> static thread_local (one copy per worker; a worker runs one block at a time)
//   dynamic shared memory         -> CUDA_DYNAMIC_SHARED(T, name)
//   kernel launch                 -> cuda_compat::launch_kernel(k, grid, block, smem, stream, args...)
// A deadlock (threads waiting on barriers that cannot complete) is reported as launch error 719 with a
// message (cuda_emu::last_error_msg) instead of hanging; CUDA_EMU_STRICT=1 also flags threads that exit while
// others wait in __syncthreads. Context switch: a small x86-64 routine; elsewhere (or with -DCUDA_EMU_UCONTEXT)
// glibc makecontext/swapcontext, 10-15x slower.
//
// Shared-library rules (Bun dlopens the result): no initial-exec TLS -- build with -fPIC -mtls-dialect=gnu2;
// the running fiber is found from the stack pointer, not from a thread_local.
//
// Checking mode (-DCUDA_EMU_CHECK, the kernels/build/emu-check variant; kernels/emu/check.h): kernels are compiled
// with -fsanitize=thread instrumentation whose callbacks (kernels/emu/check.cpp) check every load and store;
// everything of the emulator itself is CUDA_EMU_UNCHECKED. The hooks here: block barrier epochs
// (Block::epoch), warp-collective history (WarpState::coll_*, Fiber::coll_id), and the checker's view of a
// launch (cuda_emu_check_launch / _block / _enter / _leave).
#pragma once
#ifndef CUDA_EMU_H
#define CUDA_EMU_H

#include "cuda_types.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>
#include <sys/mman.h>
#include <pthread.h>
#if !defined(__x86_64__) && !defined(CUDA_EMU_UCONTEXT)
#define CUDA_EMU_UCONTEXT 1
#endif
#ifdef CUDA_EMU_UCONTEXT
#include <ucontext.h>
#endif
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define CUDA_EMU_ASAN 1
#endif

#define CUDA_EMU 1
#ifdef CUDA_EMU_CHECK
#include "check.h"
#define CUDA_EMU_UNCHECKED __attribute__((no_sanitize_thread))
// atomics are checked against allocations (memcheck) but are never shared-memory hazards (racecheck)
#define CUDA_EMU_CHECK_ATOMIC(p, bytes) cuda_emu_check_access(p, bytes, CUDA_EMU_ACCESS_ATOMIC)
#define CUDA_EMU_CHECK_READ(p, bytes) cuda_emu_check_access(p, bytes, CUDA_EMU_ACCESS_READ)
#else
#define CUDA_EMU_UNCHECKED
#define CUDA_EMU_CHECK_ATOMIC(p, bytes) ((void)0)
#define CUDA_EMU_CHECK_READ(p, bytes) ((void)0)
#endif
#define __shared__ static thread_local
#define __launch_bounds__(...)
#define __noinline__ __attribute__((noinline))
#define warpSize 32
#define CUDA_DYNAMIC_SHARED(T, name) T* name = reinterpret_cast<T*>(::cuda_emu::cur()->block->dyn_smem)

namespace cuda_emu {

constexpr int kDone = 0, kRunnable = 1, kWaitBar = 2, kWaitWarp = 3, kNotStarted = 4;

struct Block;
struct Fiber {
  void* sp = nullptr;  // saved stack pointer (asm switch)
#ifdef CUDA_EMU_UCONTEXT
  ucontext_t uc;
#endif
  char* stack_lo = nullptr;  // usable stack [stack_lo, stack_hi), assigned when the thread starts
  char* stack_hi = nullptr;
  int stack_id = -1;
  Block* block = nullptr;
  uint3 tid;
  int state = kDone;
  int lane = 0, warp = 0;
  uint32_t coll_mask = 0;  // warp-collective bookkeeping
  void (*coll_fn)(void** ptrs, uint32_t group) = nullptr;
  void* asan_fake = nullptr;
  uint32_t coll_id = 0;  // id of the last warp collective this thread completed (WarpState::coll_count)
};

struct WarpState {
  uint32_t valid = 0;    // lanes that exist in this warp
  uint32_t exited = 0;   // lanes that have returned
  uint32_t waiting = 0;  // lanes parked in a warp collective
  void* ptrs[32];
  // completed collectives: ids 1..coll_count; the lane masks of the last kCollHistory (racecheck orders by them)
  static constexpr uint32_t kCollHistory = 64;
  uint32_t coll_count = 0;
  uint32_t coll_mask[kCollHistory];
};

struct Block {
  uint3 bidx;
  dim3 bdim, gdim;
  Fiber* fibers = nullptr;
  int n = 0, ndone = 0, bar_arrived = 0;
  std::vector<WarpState> warps;
  void (*body)(void*) = nullptr;  // type-erased kernel call
  void* body_arg = nullptr;
  void* sched_sp = nullptr;
  void* sched_fake = nullptr;
  const void* sched_bottom = nullptr;  // OS-thread stack bounds (for ASan)
  size_t sched_size = 0;
#ifdef CUDA_EMU_UCONTEXT
  ucontext_t sched_uc;
#endif
  void* dyn_smem = nullptr;
  size_t smem = 0;     // bytes of dynamic shared memory of this launch
  uint32_t epoch = 0;  // +1 at every block start and __syncthreads release (per worker, never reused)
  // A thread gets a stack when it starts; a thread that finishes without ever having blocked hands its stack
  // straight to the next unstarted thread ("chaining"), so sync-free kernels cost ~1 call per thread.
  char** stack_lo = nullptr;
  char** stack_hi = nullptr;
  int* free_stacks = nullptr;
  int nfree = 0;
  int error = 0;
  char errmsg[1024];
};

// Every fiber stack is kStackSize-aligned and keeps the running thread's Fiber* in its lowest usable word,
// so the current fiber is found from the stack pointer (a thread_local would need a __tls_get_addr call).
#ifndef CUDA_EMU_STACK_SIZE
#define CUDA_EMU_STACK_SIZE (64 * 1024)
#endif
constexpr uintptr_t kStackSize = CUDA_EMU_STACK_SIZE;
constexpr uintptr_t kGuard = 4096;
static_assert((kStackSize & (kStackSize - 1)) == 0, "stack size must be a power of two");
inline Fiber*& fiber_slot(uintptr_t any_addr_in_stack) {
  return *reinterpret_cast<Fiber**>((any_addr_in_stack & ~(kStackSize - 1)) + kGuard);
}
__attribute__((always_inline)) inline Fiber* cur() {
  uintptr_t sp;
#if defined(__x86_64__)
  __asm__("movq %%rsp, %0" : "=r"(sp));  // not volatile: CSE/hoisting allowed
#else
  sp = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
#endif
  return fiber_slot(sp);
}

}  // namespace cuda_emu

#define threadIdx (::cuda_emu::cur()->tid)
#define blockIdx (::cuda_emu::cur()->block->bidx)
#define blockDim (::cuda_emu::cur()->block->bdim)
#define gridDim (::cuda_emu::cur()->block->gdim)

// ---------------------------------------------------------------- context switch (x86-64)
#ifndef CUDA_EMU_UCONTEXT
extern "C" void cuda_emu_switch(void** save_sp, void* new_sp);
extern "C" void cuda_emu_fiber_entry();
// Weak and hidden, so every translation unit may carry a copy. Kernels never change rounding modes, so the
// (slow, serialising) MXCSR / x87 control word save is skipped.
__asm__(R"(
  .text
  .weak cuda_emu_switch
  .hidden cuda_emu_switch
  .type cuda_emu_switch,@function
cuda_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  popq %rcx
  jmp *%rcx
  .size cuda_emu_switch,.-cuda_emu_switch

  .weak cuda_emu_fiber_entry
  .hidden cuda_emu_fiber_entry
  .type cuda_emu_fiber_entry,@function
cuda_emu_fiber_entry:
  movq %rbx, %rdi
  callq *%r12
  ud2
  .size cuda_emu_fiber_entry,.-cuda_emu_fiber_entry
)");
#endif

namespace cuda_emu {

[[noreturn]] void fiber_main(Fiber* f);
CUDA_EMU_UNCHECKED inline bool strict_mode() {  // exited threads do NOT satisfy a pending __syncthreads
  static const bool s = [] { const char* e = getenv("CUDA_EMU_STRICT"); return e && atoi(e) != 0; }();
  return s;
}

CUDA_EMU_UNCHECKED inline void fiber_init(Fiber* f) {
#ifdef CUDA_EMU_UCONTEXT
  getcontext(&f->uc);
  f->uc.uc_stack.ss_sp = f->stack_lo + 64;  // keep the Fiber* slot
  f->uc.uc_stack.ss_size = f->stack_hi - f->stack_lo - 64;
  f->uc.uc_link = nullptr;
  uintptr_t p = reinterpret_cast<uintptr_t>(f);  // makecontext takes int arguments: pass the pointer as two
  makecontext(&f->uc, (void (*)())+[](unsigned lo, unsigned hi) {
    fiber_main(reinterpret_cast<Fiber*>((uintptr_t(hi) << 32) | lo));
  }, 2, unsigned(p & 0xffffffffu), unsigned(p >> 32));
#else
  uintptr_t top = reinterpret_cast<uintptr_t>(f->stack_hi) & ~uintptr_t(15);
  uint64_t* sp = reinterpret_cast<uint64_t*>(top - 128);
  sp[0] = 0;
  sp[1] = sp[2] = sp[3] = 0;                                                // r15 r14 r13
  sp[4] = reinterpret_cast<uint64_t>(+[](Fiber* ff) { fiber_main(ff); });  // r12: entry function
  sp[5] = reinterpret_cast<uint64_t>(f);                                    // rbx: its argument
  sp[6] = 0;                                                                // rbp
  sp[7] = reinterpret_cast<uint64_t>(&cuda_emu_fiber_entry);                // return address
  f->sp = sp;
#endif
}

// AddressSanitizer must be told about every stack switch; with it, out-of-bounds accesses in kernels are caught.
CUDA_EMU_UNCHECKED inline void asan_before(void** fake_save, Block* b, Fiber* to) {
#ifdef CUDA_EMU_ASAN
  if (to) __sanitizer_start_switch_fiber(fake_save, to->stack_lo, to->stack_hi - to->stack_lo);
  else __sanitizer_start_switch_fiber(fake_save, b->sched_bottom, b->sched_size);
#else
  (void)fake_save, (void)b, (void)to;
#endif
}
CUDA_EMU_UNCHECKED inline void asan_after(void* fake) {
#ifdef CUDA_EMU_ASAN
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
  (void)fake;
#endif
}

CUDA_EMU_UNCHECKED inline Fiber* start_fiber(Block* b, Fiber* g) {
  int sid = b->free_stacks[--b->nfree];
  g->stack_id = sid;
  g->stack_lo = b->stack_lo[sid];
  g->stack_hi = b->stack_hi[sid];
#ifdef CUDA_EMU_ASAN
  ASAN_UNPOISON_MEMORY_REGION(g->stack_lo, g->stack_hi - g->stack_lo);  // stale frames of a finished thread
#endif
  fiber_slot(reinterpret_cast<uintptr_t>(g->stack_lo)) = g;
  fiber_init(g);
  g->state = kRunnable;
  return g;
}
// Next fiber to run after `from` (starting unstarted threads on a free stack); nullptr = end of the round.
// Warp-affine order: first the other lanes of the current warp, so a warp runs through consecutive shuffles
// while its stacks are hot in L1; then the following warps.
CUDA_EMU_UNCHECKED inline Fiber* next_ready(Block* b, Fiber* from) {
  if (b->error) return nullptr;
  Fiber* end = b->fibers + b->n;
  if (from > b->fibers) {
    Fiber* wbeg = b->fibers + ((from - 1)->warp << 5);
    Fiber* wend = std::min(wbeg + 32, end);
    for (Fiber* g = from; g < wend; ++g) {
      if (g->state == kRunnable) return g;
      if (g->state == kNotStarted) return start_fiber(b, g);
    }
    for (Fiber* g = wbeg; g < from; ++g)
      if (g->state == kRunnable) return g;
    from = wend;
  }
  for (Fiber* g = from; g < end; ++g) {
    if (g->state == kRunnable) return g;
    if (g->state == kNotStarted) return start_fiber(b, g);
  }
  return nullptr;
}
// Park the current fiber and run the next ready one directly: one context switch per resume.
CUDA_EMU_UNCHECKED inline void yield_to_sched(Fiber* f) {
  Block* b = f->block;
  Fiber* nx = next_ready(b, f + 1);
#ifdef CUDA_EMU_UCONTEXT
  swapcontext(&f->uc, nx ? &nx->uc : &b->sched_uc);
#else
  asan_before(&f->asan_fake, b, nx);
  cuda_emu_switch(&f->sp, nx ? nx->sp : b->sched_sp);
  asan_after(f->asan_fake);
#endif
}

// ---------------------------------------------------------------- block barrier
CUDA_EMU_UNCHECKED inline void release_barrier(Block* b) {
  b->bar_arrived = 0;
  ++b->epoch;
  for (int i = 0; i < b->n; ++i)
    if (b->fibers[i].state == kWaitBar) b->fibers[i].state = kRunnable;
}
CUDA_EMU_UNCHECKED inline void syncthreads() {
  Fiber* f = cur();
  Block* b = f->block;
  if (++b->bar_arrived == b->n - b->ndone) {
    release_barrier(b);  // last to arrive: release everybody and go on
  } else {
    f->state = kWaitBar;
    yield_to_sched(f);
  }
}

// ---------------------------------------------------------------- warp collectives
// Try to complete the collective that lane `lane` is parked in.
CUDA_EMU_UNCHECKED inline bool try_complete(Block* b, WarpState& w, Fiber* base, int lane) {
  Fiber& me = base[lane];
  uint32_t need = me.coll_mask & w.valid & ~w.exited;
  if ((w.waiting & need) != need) return false;
  for (uint32_t m = need; m; m &= m - 1) {
    Fiber& o = base[__builtin_ctz(m)];
    if (o.coll_fn != me.coll_fn || o.coll_mask != me.coll_mask) {
      b->error = 1;
      snprintf(b->errmsg, sizeof b->errmsg, "warp %d: lanes %d and %d are in different warp collectives (mask %08x vs %08x)",
               me.warp, lane, (int)__builtin_ctz(m), me.coll_mask, o.coll_mask);
      return false;
    }
  }
  me.coll_fn(w.ptrs, need);
  w.waiting &= ~need;
  uint32_t id = ++w.coll_count;
  w.coll_mask[id % WarpState::kCollHistory] = need;
  for (uint32_t m = need; m; m &= m - 1) {
    Fiber& o = base[__builtin_ctz(m)];
    o.state = kRunnable;
    o.coll_id = id;
  }
  return true;
}
// Every lane in `mask` calls this with a pointer to its own operand record; `fn(ptrs, group)` runs once, when
// all non-exited lanes of `mask` have arrived.
CUDA_EMU_UNCHECKED inline void warp_collective(uint32_t mask, void* my, void (*fn)(void**, uint32_t)) {
  Fiber* f = cur();
  Block* b = f->block;
  WarpState& w = b->warps[f->warp];
  f->coll_mask = mask;
  f->coll_fn = fn;
  w.ptrs[f->lane] = my;
  w.waiting |= 1u << f->lane;
  f->state = kWaitWarp;
  if (!(mask >> f->lane & 1u)) {
    b->error = 1;
    snprintf(b->errmsg, sizeof b->errmsg, "lane %d calls a *_sync op with mask %08x that excludes itself", f->lane, mask);
  }
  if (!try_complete(b, w, b->fibers + f->warp * 32, f->lane)) yield_to_sched(f);
}

template <class T>
struct ShflRec {
  T val;
  int src;  // source lane
  T out;
};
template <class T>
CUDA_EMU_UNCHECKED void shfl_combine(void** ptrs, uint32_t group) {
  for (uint32_t m = group; m; m &= m - 1) {
    auto* r = static_cast<ShflRec<T>*>(ptrs[__builtin_ctz(m)]);
    int s = r->src;
    r->out = (s >= 0 && s < 32 && (group >> s & 1u)) ? static_cast<ShflRec<T>*>(ptrs[s])->val : r->val;
  }
}
template <class T>
inline T shfl_generic(uint32_t mask, T v, int src) {
  ShflRec<T> r{v, src, v};
  warp_collective(mask, &r, &shfl_combine<T>);
  return r.out;
}
struct VoteRec {
  int pred;
  uint32_t out;
};
CUDA_EMU_UNCHECKED inline void ballot_combine(void** ptrs, uint32_t group) {
  uint32_t bal = 0;
  for (uint32_t m = group; m; m &= m - 1)
    if (static_cast<VoteRec*>(ptrs[__builtin_ctz(m)])->pred) bal |= 1u << __builtin_ctz(m);
  for (uint32_t m = group; m; m &= m - 1) static_cast<VoteRec*>(ptrs[__builtin_ctz(m)])->out = bal;
}
CUDA_EMU_UNCHECKED inline void nop_combine(void**, uint32_t) {}

// ---------------------------------------------------------------- fiber main
CUDA_EMU_UNCHECKED inline void thread_exit(Block* b, Fiber* f) {
  f->state = kDone;
  b->ndone++;
  WarpState& w = b->warps[f->warp];
  w.exited |= 1u << f->lane;
  if (b->bar_arrived > 0 && strict_mode() && !b->error) {
    b->error = 3;
    snprintf(b->errmsg, sizeof b->errmsg,
             "strict: thread (%u,%u,%u) exited while %d threads wait in __syncthreads (divergent barrier)", f->tid.x,
             f->tid.y, f->tid.z, b->bar_arrived);
  }
  // our exit may complete a pending block barrier or warp collective
  if (b->bar_arrived > 0 && b->bar_arrived == b->n - b->ndone) release_barrier(b);
  Fiber* base = b->fibers + f->warp * 32;
  for (uint32_t m = w.waiting; m; m &= m - 1)
    if (try_complete(b, w, base, __builtin_ctz(m))) break;
}

CUDA_EMU_UNCHECKED [[noreturn]] inline void fiber_main(Fiber* f) {
  asan_after(nullptr);
  Block* b = f->block;
  for (;;) {
    b->body(b->body_arg);
    thread_exit(b, f);
    // chaining: run the next unstarted thread right here, on this stack, without a context switch
    Fiber* nx = f + 1;
    if (b->error || nx >= b->fibers + b->n || nx->state != kNotStarted) break;
    nx->stack_id = f->stack_id;
    nx->stack_lo = f->stack_lo;
    nx->stack_hi = f->stack_hi;
    fiber_slot(reinterpret_cast<uintptr_t>(nx->stack_lo)) = nx;
    f->stack_id = -1;
    nx->state = kRunnable;
    f = nx;
  }
  Fiber* nx = next_ready(b, f + 1);  // picked before our stack is freed (it must not be reused under us)
  b->free_stacks[b->nfree++] = f->stack_id;  // still running on it, but only until the switch below
  f->stack_id = -1;
#ifdef CUDA_EMU_UCONTEXT
  setcontext(nx ? &nx->uc : &b->sched_uc);
#else
  void* dummy;
  asan_before(nullptr, b, nx);  // nullptr: this fiber's frames are dead
  cuda_emu_switch(&dummy, nx ? nx->sp : b->sched_sp);
#endif
  __builtin_unreachable();
}

// A checker's report ends the block at once: the thread that made the bad access never resumes (its access is not
// performed), and run_block returns the block's error.
CUDA_EMU_UNCHECKED [[noreturn]] inline void abandon_thread(Block* b) {
#ifdef CUDA_EMU_UCONTEXT
  setcontext(&b->sched_uc);
#else
  void* dummy;
  asan_before(nullptr, b, nullptr);
  cuda_emu_switch(&dummy, b->sched_sp);
#endif
  __builtin_unreachable();
}

// ---------------------------------------------------------------- per-OS-thread state: fibers, stacks, dynamic smem
struct Worker {
  std::vector<Fiber> fibers;
  std::vector<char*> slo, shi;
  std::vector<int> freelist;
  size_t nstacks = 0;
  std::vector<unsigned char> dyn;
  Block blk;
  char* map_base = nullptr;
  size_t map_len = 0;
  CUDA_EMU_UNCHECKED ~Worker() {
    if (map_base) munmap(map_base, map_len);
  }
  CUDA_EMU_UNCHECKED void ensure(int n, size_t smem) {
    if ((size_t)n > nstacks) {
      if (map_base) munmap(map_base, map_len);
      nstacks = n;
      map_len = (nstacks + 1) * kStackSize;  // +1: room to align
      map_base = static_cast<char*>(
          mmap(nullptr, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
      if (map_base == MAP_FAILED) { perror("cuda_emu mmap"); abort(); }
      char* stacks = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(map_base) + kStackSize - 1) & ~(kStackSize - 1));
      fibers.assign(n, Fiber{});
      slo.assign(n, nullptr);
      shi.assign(n, nullptr);
      freelist.assign(n, 0);
      for (int i = 0; i < n; ++i) {
        char* lo = stacks + i * kStackSize;
        mprotect(lo, kGuard, PROT_NONE);  // guard page: stack overflow -> SIGSEGV
        slo[i] = lo + kGuard;              // first word: the Fiber* slot (see cur())
        // stagger stack tops so the hot top-of-stack lines of different fibers do not alias in the cache
        shi[i] = lo + kStackSize - ((i * 320) % 4096);
      }
    }
    if (dyn.size() < smem + 16) dyn.resize(smem + 16);
  }
};
inline thread_local std::unique_ptr<Worker> t_worker;
CUDA_EMU_UNCHECKED inline Worker& worker() {
  if (!t_worker) t_worker.reset(new Worker());
  return *t_worker;
}

// Runs one block to completion; returns 0 or an error code (message in b.errmsg).
CUDA_EMU_UNCHECKED inline int run_block(const uint3& bid, const dim3& grid, const dim3& bdim, size_t smem, void (*body)(void*), void* arg) {
  Worker& W = worker();
  int n = bdim.x * bdim.y * bdim.z;
  W.ensure(n, smem);
  Block& b = W.blk;
  b.fibers = W.fibers.data();
  b.n = n;
  b.ndone = 0;
  b.bar_arrived = 0;
  b.body = body;
  b.body_arg = arg;
  b.dyn_smem = W.dyn.data();
  b.smem = smem;
  ++b.epoch;
  b.stack_lo = W.slo.data();
  b.stack_hi = W.shi.data();
  b.free_stacks = W.freelist.data();
  b.nfree = 0;
  for (int i = n - 1; i >= 0; --i) b.free_stacks[b.nfree++] = i;
  b.error = 0;
#ifdef CUDA_EMU_ASAN
  if (!b.sched_bottom) {
    pthread_attr_t at;
    void* lo;
    size_t sz;
    pthread_getattr_np(pthread_self(), &at);
    pthread_attr_getstack(&at, &lo, &sz);
    pthread_attr_destroy(&at);
    b.sched_bottom = lo;
    b.sched_size = sz;
  }
#endif
  b.warps.assign((n + 31) / 32, WarpState{});
  b.bidx = bid;
  b.bdim = bdim;
  b.gdim = grid;
  uint3 t = make_uint3(0, 0, 0);
  for (int i = 0; i < n; ++i) {
    Fiber& f = b.fibers[i];
    f.block = &b;
    f.tid = t;
    if (++t.x == bdim.x) { t.x = 0; if (++t.y == bdim.y) { t.y = 0; ++t.z; } }
    f.lane = i & 31;
    f.warp = i >> 5;
    f.state = kNotStarted;
    f.stack_id = -1;
    f.coll_id = 0;
    b.warps[f.warp].valid |= 1u << f.lane;
  }
#ifdef CUDA_EMU_CHECK
  cuda_emu_check_block(&b, W.dyn.size());
#endif
  while (b.ndone < n && !b.error) {
    if (Fiber* f = next_ready(&b, b.fibers)) {  // start a round
#ifdef CUDA_EMU_CHECK
      cuda_emu_check_enter();  // from here until the switch back, the block's threads run: check their accesses
#endif
#ifdef CUDA_EMU_UCONTEXT
      swapcontext(&b.sched_uc, &f->uc);
#else
      asan_before(&b.sched_fake, &b, f);
      cuda_emu_switch(&b.sched_sp, f->sp);
      asan_after(b.sched_fake);
#endif
#ifdef CUDA_EMU_CHECK
      cuda_emu_check_leave();
#endif
      continue;
    }
    if (b.error) break;
    // nobody runnable: threads wait on barriers that can never complete
    int nb = 0, nwp = 0, first_bar = -1, first_warp = -1;
    for (int i = 0; i < n; ++i) {
      if (b.fibers[i].state == kWaitBar && nb++ == 0) first_bar = i;
      if (b.fibers[i].state == kWaitWarp && nwp++ == 0) first_warp = i;
    }
    b.error = 2;
    snprintf(b.errmsg, sizeof b.errmsg,
             "deadlock in block (%u,%u,%u): %d threads in __syncthreads (first tid %d), %d in warp collectives "
             "(first tid %d), %d exited",
             bid.x, bid.y, bid.z, nb, first_bar, nwp, first_warp, b.ndone);
  }
  return b.error;
}

// ---------------------------------------------------------------- worker pool
class Pool {
 public:
  CUDA_EMU_UNCHECKED static Pool& get() {
    static Pool p;
    return p;
  }
  // Runs job(worker_index) on `nthreads` threads (the caller is one of them).
  template <class F>
  CUDA_EMU_UNCHECKED void run(int nthreads, F&& job) {
    std::lock_guard<std::mutex> launch_lock(launch_mu_);
    nthreads = std::max(1, std::min<int>(nthreads, size()));
    {
      std::lock_guard<std::mutex> g(mu_);
      job_ = [&job](int i) CUDA_EMU_UNCHECKED { job(i); };
      active_ = nthreads - 1;
      pending_ = nthreads - 1;
      ++gen_;
    }
    cv_.notify_all();
    job(0);
    std::unique_lock<std::mutex> g(mu_);
    done_cv_.wait(g, [&]() CUDA_EMU_UNCHECKED { return pending_ == 0; });
  }
  CUDA_EMU_UNCHECKED int size() const { return (int)threads_.size() + 1; }

 private:
  CUDA_EMU_UNCHECKED Pool() {
    int n = 0;
    if (const char* s = getenv("CUDA_EMU_WORKERS")) n = atoi(s);
    if (n <= 0) n = std::max(1u, std::thread::hardware_concurrency());
    for (int i = 1; i < n; ++i) threads_.emplace_back([this, i]() CUDA_EMU_UNCHECKED { loop(i); });
  }
  CUDA_EMU_UNCHECKED ~Pool() {
    {
      std::lock_guard<std::mutex> g(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  CUDA_EMU_UNCHECKED void loop(int idx) {
    uint64_t seen = 0;
    for (;;) {
      std::function<void(int)> job;
      {
        std::unique_lock<std::mutex> g(mu_);
        cv_.wait(g, [&]() CUDA_EMU_UNCHECKED { return stop_ || gen_ != seen; });
        if (stop_) return;
        seen = gen_;
        if (idx > active_) continue;
        job = job_;
      }
      job(idx);
      std::lock_guard<std::mutex> g(mu_);
      if (--pending_ == 0) done_cv_.notify_all();
    }
  }
  std::vector<std::thread> threads_;
  std::mutex mu_, launch_mu_;
  std::condition_variable cv_, done_cv_;
  std::function<void(int)> job_;
  uint64_t gen_ = 0;
  int active_ = 0, pending_ = 0;
  bool stop_ = false;
};

constexpr size_t kErrorMessageBytes = sizeof(Block::errmsg);
CUDA_EMU_UNCHECKED inline char* last_error_msg() {
  static char m[kErrorMessageBytes];
  return m;
}

// A launch configuration the device cannot run (the message says which); checked when the launch is issued.
inline bool bad_config(dim3 grid, dim3 block, size_t smem) {
  uint64_t nblocks = (uint64_t)grid.x * grid.y * grid.z;
  uint64_t nthr = (uint64_t)block.x * block.y * block.z;
  if (nthr != 0 && nthr <= 1024 && nblocks != 0 && smem <= 227 * 1024) return false;
  snprintf(last_error_msg(), kErrorMessageBytes, "invalid launch configuration: grid (%u,%u,%u) block (%u,%u,%u) smem %zu", grid.x,
           grid.y, grid.z, block.x, block.y, block.z, smem);
  return true;
}

// Runs kernel k over the grid with its arguments `args` (one copy, shared read-only by all threads).
template <class... P>
CUDA_EMU_UNCHECKED int launch_tuple(void (*k)(P...), dim3 grid, dim3 block, size_t smem, std::tuple<std::decay_t<P>...>& args) {
  struct Ctx {
    void (*k)(P...);
    std::tuple<std::decay_t<P>...>* args;
  } ctx{k, &args};
  auto body = +[](void* p) CUDA_EMU_UNCHECKED {
    auto* c = static_cast<Ctx*>(p);
    auto fn = c->k;  // a local: std::apply (checked code in the checking mode) reads it on the thread's stack
    std::apply(fn, *c->args);
  };
  uint64_t nblocks = (uint64_t)grid.x * grid.y * grid.z;
  if (bad_config(grid, block, smem)) return cudaErrorInvalidConfiguration;
#ifdef CUDA_EMU_CHECK
  // the kernel (named in reports) and its argument tuple (the threads read it: not a device access)
  if (cuda_emu_check_launch(reinterpret_cast<const void*>(k), &args, sizeof args, last_error_msg(), kErrorMessageBytes))
    return cudaErrorLaunchFailure;
#endif
  std::atomic<uint64_t> next{0};
  std::atomic<int> err{0};
  Pool::get().run((int)std::min<uint64_t>(nblocks, Pool::get().size()), [&](int) CUDA_EMU_UNCHECKED {
    for (;;) {
      uint64_t i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= nblocks || err.load(std::memory_order_relaxed)) break;
      uint3 bid = make_uint3(i % grid.x, (i / grid.x) % grid.y, i / ((uint64_t)grid.x * grid.y));
      if (run_block(bid, grid, block, smem, body, &ctx)) {
        int z = 0;
        if (err.compare_exchange_strong(z, 1)) memcpy(last_error_msg(), worker().blk.errmsg, kErrorMessageBytes);
      }
    }
  });
#ifdef CUDA_EMU_CHECK
  cuda_emu_check_launch_end();
#endif
  return err.load() ? cudaErrorLaunchFailure : cudaSuccess;
}

template <class... P, class... A>
CUDA_EMU_UNCHECKED int launch(void (*k)(P...), dim3 grid, dim3 block, size_t smem, A&&... a) {
  std::tuple<std::decay_t<P>...> args(std::forward<A>(a)...);
  return launch_tuple(k, grid, block, smem, args);
}

// A launch as stream work (bdemu_stream_submit): the kernel, its configuration and a copy of its arguments.
template <class... P>
struct LaunchJob {
  void (*k)(P...);
  dim3 grid, block;
  size_t smem;
  std::tuple<std::decay_t<P>...> args;
  CUDA_EMU_UNCHECKED static int run(void* p) {
    auto* j = static_cast<LaunchJob*>(p);
    return launch_tuple(j->k, j->grid, j->block, j->smem, j->args);
  }
  CUDA_EMU_UNCHECKED static void drop(void* p) { delete static_cast<LaunchJob*>(p); }
};

template <class T>
CUDA_EMU_UNCHECKED T atomic_rmw(T* p, T v, T (*op)(T, T)) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8);
  CUDA_EMU_CHECK_ATOMIC(p, sizeof(T));
  using U = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  U* q = reinterpret_cast<U*>(p);
  U old = __atomic_load_n(q, __ATOMIC_RELAXED), nw;
  T o, r;
  do {
    memcpy(&o, &old, sizeof(T));
    r = op(o, v);
    memcpy(&nw, &r, sizeof(T));
  } while (!__atomic_compare_exchange_n(q, &old, nw, true, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
  return o;
}

}  // namespace cuda_emu

// ================================================================ CUDA device API
CUDA_EMU_UNCHECKED inline void __syncthreads() { ::cuda_emu::syncthreads(); }
CUDA_EMU_UNCHECKED inline void __syncwarp(unsigned mask = 0xffffffffu) { ::cuda_emu::warp_collective(mask, nullptr, &::cuda_emu::nop_combine); }
CUDA_EMU_UNCHECKED inline unsigned __activemask() {
  auto* f = ::cuda_emu::cur();
  auto& w = f->block->warps[f->warp];
  return w.valid & ~w.exited;  // approximation: no notion of convergence
}
CUDA_EMU_UNCHECKED inline unsigned __ballot_sync(unsigned mask, int pred) {
  ::cuda_emu::VoteRec r{pred, 0};
  ::cuda_emu::warp_collective(mask, &r, &::cuda_emu::ballot_combine);
  return r.out;
}
inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
inline int __all_sync(unsigned mask, int pred) { return (__ballot_sync(mask, pred) & mask & __activemask()) == (mask & __activemask()); }

// Source-lane computation as PTX shfl.sync (segments of `width` lanes).
template <class T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  int lane = ::cuda_emu::cur()->lane;
  return ::cuda_emu::shfl_generic(mask, v, (lane & ~(width - 1)) + (src & (width - 1)));
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lm, int width = 32) {
  int lane = ::cuda_emu::cur()->lane, j = lane ^ lm;
  return ::cuda_emu::shfl_generic(mask, v, j > (lane | (width - 1)) ? lane : j);
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned d, int width = 32) {
  int lane = ::cuda_emu::cur()->lane, j = lane + (int)d;
  return ::cuda_emu::shfl_generic(mask, v, j > (lane | (width - 1)) ? lane : j);
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned d, int width = 32) {
  int lane = ::cuda_emu::cur()->lane, j = lane - (int)d;
  return ::cuda_emu::shfl_generic(mask, v, j < (lane & ~(width - 1)) ? lane : j);
}

CUDA_EMU_UNCHECKED inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
CUDA_EMU_UNCHECKED inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }

template <class T>
CUDA_EMU_UNCHECKED inline T atomicAdd(T* p, T v) {
  if constexpr (std::is_integral_v<T>) {
    CUDA_EMU_CHECK_ATOMIC(p, sizeof(T));
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
  } else return ::cuda_emu::atomic_rmw<T>(p, v, +[](T a, T b) { return T(a + b); });
}
template <class T>
CUDA_EMU_UNCHECKED inline T atomicMax(T* p, T v) { return ::cuda_emu::atomic_rmw<T>(p, v, +[](T a, T b) { return a > b ? a : b; }); }
template <class T>
CUDA_EMU_UNCHECKED inline T atomicMin(T* p, T v) { return ::cuda_emu::atomic_rmw<T>(p, v, +[](T a, T b) { return a < b ? a : b; }); }
template <class T>
CUDA_EMU_UNCHECKED inline T atomicExch(T* p, T v) { return ::cuda_emu::atomic_rmw<T>(p, v, +[](T, T b) { return b; }); }
template <class T>
CUDA_EMU_UNCHECKED inline T atomicCAS(T* p, T cmp, T v) {
  CUDA_EMU_CHECK_ATOMIC(p, sizeof(T));
  __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return cmp;
}

// ---- intrinsics and the CUDA math overloads that <cmath> lacks in the global namespace
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline float __int_as_float(int x) { float f; memcpy(&f, &x, 4); return f; }
inline int __float_as_int(float f) { int x; memcpy(&x, &f, 4); return x; }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __saturatef(float a) { return a < 0.f ? 0.f : (a > 1.f ? 1.f : a); }
inline float rsqrtf(float a) { return 1.f / sqrtf(a); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
template <class T>
inline T __ldg(const T* p) { return *p; }

// ---------------------------------------------------------------- host-side compat
extern "C" int bdemu_stream_submit(cudaStream_t st, const char* what, int (*run)(void*), void* arg, void (*drop)(void*));
extern "C" int bdemu_fail(int e);
namespace cuda_compat {
// A launch is work on its stream (the emulated libcudart's bdemu_stream_submit decides when it runs); a bad
// configuration is returned by the launch itself, as on a GPU; errors while it runs, by the next synchronisation.
template <class... P, class... A>
inline cudaError_t launch_kernel(void (*k)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t st, A&&... a) {
  if (::cuda_emu::bad_config(grid, block, smem)) return (cudaError_t)bdemu_fail(cudaErrorInvalidConfiguration);
  using Job = ::cuda_emu::LaunchJob<P...>;
  Job* j = new Job{k, grid, block, smem, std::tuple<std::decay_t<P>...>(std::forward<A>(a)...)};
  return (cudaError_t)bdemu_stream_submit(st, "kernel launch", &Job::run, j, &Job::drop);
}
}  // namespace cuda_compat

#endif  // CUDA_EMU_H
