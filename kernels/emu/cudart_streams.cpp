// cudart_streams.cpp -- the emulated device's stream engine (part of the emulated libcudart): a queue per stream,
// events, and the one synchronisation point, with CUDA's ordering rules ("Stream synchronization behavior" and
// "API synchronization behavior" in the CUDA Runtime API reference):
//   - every piece of stream work (bdemu_stream_submit: launches, async copies and memsets, cuBLAS / cuDNN calls,
//     event records, stream waits, stream-ordered frees) is an item of its stream's queue; a queue runs its items
//     one at a time, in order. Queues are ordered against each other only by
//       * events: cudaEventRecord queues a marker that completes the event when reached; cudaStreamWaitEvent
//         makes the stream wait for the event's most recent record as of the call (none: no wait);
//       * the legacy default stream (0 / cudaStreamLegacy): an item on it waits for everything queued before it
//         on every blocking stream (created without cudaStreamNonBlocking; cudaStreamPerThread is one), and an
//         item on a blocking stream waits for everything queued before it on the legacy stream;
//       * host synchronisations (synchronize()).
//   - BD_EMU_STREAMS, read at the device's first use, picks how queues run:
//       "async" (default)  each queue is drained by its own thread, so work overlaps the host and other streams
//                          as on a GPU: a missing event, stream wait or synchronisation is a wrong result;
//       "sync"             each item runs at once on the calling thread (errors are returned by the call);
//       "seeded:<N>"       no threads: the host runs the queues when it waits (a synchronisation runs items until
//                          its target is done, a query runs one), each time taking the head of a ready queue
//                          drawn by a PRNG seeded with N. The same program and seed give the same interleaving.
//   - errors raised while executing work become the last error (cudaGetLastError) and are returned, once, by the
//     next synchronising call; work_message() / bdemu_work_error() says which work failed on which stream.
//   - event timing: a marker takes the host time when it executes (Async, Sync) or when it is recorded (Seeded,
//     where execution time measures the schedule, not the work); cudaEventElapsedTime subtracts the two.
//   - stream capture (cudart_graphs.cpp): while a stream captures, its work is recorded instead of queued, and the
//     calls a capture forbids are refused there (the hooks below call into that file).
//   - bdemu_stream_hold(stream, on) (tests, not a CUDA API): a held queue starts no item until released, so a
//     test can make "the other stream has not run yet" happen deterministically in Async and Seeded modes.
#include <condition_variable>
#include <deque>
#include <string>
#include <vector>
#include "cudart_state.h"

namespace bdemu_rt {
struct Event;
struct Item {
  const char* what;
  int (*run)(void*);  // null: a marker or a stream wait (only ordering)
  void* arg;
  void (*drop)(void*);
  std::vector<Ticket> deps;  // must be done before the item starts
  uint64_t seq;
  std::shared_ptr<Event> marker;  // an event record: stamps the event when reached
  uint64_t gen;
};
struct Queue {
  uintptr_t handle;
  bool blocking;
  std::deque<Item> items;  // not started yet
  uint64_t submitted = 0, completed = 0;
  bool closing = false, held = false;
};
struct Event {
  unsigned flags;
  Ticket last;  // the most recent record (q null: never recorded)
  uint64_t gen = 0;
  double ms = 0;
};

namespace {
struct Engine {
  std::mutex mu;
  std::condition_variable changed;  // an item completed, was queued, or a hold was released
  Mode mode = Mode::Async;
  uint64_t rng = 0;
  std::shared_ptr<Queue> legacy, per_thread;
  std::vector<std::shared_ptr<Queue>> queues;  // creation order (Seeded picks by index); destroyed ones until drained
  std::map<uintptr_t, std::shared_ptr<Queue>> created;
  std::map<uintptr_t, std::shared_ptr<Event>> events;
  int running = 0;  // items executing now
  cudaError_t work_error = cudaSuccess;
  std::string work_message;
  Engine();
  std::shared_ptr<Queue> add_queue(uintptr_t handle, bool blocking);
};
Engine& E() {  // never destroyed (queue threads outlive static destruction at exit)
  static Engine* e = new Engine;
  return *e;
}
typedef std::unique_lock<std::mutex> ULock;

bool done(const Ticket& t) { return !t.q || t.q->completed >= t.seq; }
bool ready(const Queue& q) {
  if (q.items.empty() || q.held) return false;
  for (const Ticket& t : q.items.front().deps)
    if (!done(t)) return false;
  return true;
}
bool any_ready() {
  for (auto& q : E().queues)
    if (ready(*q)) return true;
  return false;
}
std::string stream_name(const Queue& q) {
  if (q.handle == 0) return "the legacy default stream";
  if (q.handle == 2) return "cudaStreamPerThread";
  char b[48];
  snprintf(b, sizeof b, "stream 0x%llx", (unsigned long long)q.handle);
  return b;
}
void name_failure(const Queue& q, const char* what, int err) {  // under the lock
  E().work_message = std::string(what) + " on " + stream_name(q) + " failed: " + cudaGetErrorName((cudaError_t)err);
}
void retire(const std::shared_ptr<Queue>& q) {  // a destroyed, drained queue leaves the list
  auto& v = E().queues;
  for (size_t i = 0; i < v.size(); ++i)
    if (v[i] == q) v.erase(v.begin() + i);
}
// Runs the head of q (ready) with the lock released; completes it under the lock.
void execute_front(Queue& q, ULock& lk) {
  Engine& e = E();
  Item it = std::move(q.items.front());
  q.items.pop_front();
  ++e.running;
  lk.unlock();
  int err = it.run ? it.run(it.arg) : cudaSuccess;
  if (it.drop) it.drop(it.arg);
  double t = now_ms();
  lk.lock();
  --e.running;
  q.completed = it.seq;
  if (it.marker && it.marker->gen == it.gen && e.mode != Mode::Seeded) it.marker->ms = t;
  if (err != cudaSuccess) {
    S().last = (cudaError_t)err;
    if (e.work_error == cudaSuccess) e.work_error = (cudaError_t)err, name_failure(q, it.what, err);
  }
  e.changed.notify_all();
}
void worker(std::shared_ptr<Queue> q) {
  Engine& e = E();
  ULock lk(e.mu);
  for (;;) {
    e.changed.wait(lk, [&] { return ready(*q) || (q->closing && q->items.empty()); });
    if (q->items.empty()) break;
    execute_front(*q, lk);
  }
  retire(q);
  e.changed.notify_all();
}
uint64_t next_random() {  // splitmix64
  uint64_t z = (E().rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
// Seeded mode: run the head of one ready queue, drawn by the PRNG; false when none is ready.
bool step(ULock& lk) {
  Engine& e = E();
  std::vector<std::shared_ptr<Queue>> r;
  for (auto& q : e.queues)
    if (ready(*q)) r.push_back(q);
  if (r.empty()) return false;
  std::shared_ptr<Queue> q = r[next_random() % r.size()];
  execute_front(*q, lk);
  if (q->closing && q->items.empty()) retire(q);
  return true;
}

Engine::Engine() {
  const char* m = getenv("BD_EMU_STREAMS");
  std::string s = m ? m : "";
  if (s.empty() || s == "async") mode = Mode::Async;
  else if (s == "sync") mode = Mode::Sync;
  else if (s.rfind("seeded:", 0) == 0 && s.size() > 7 && s.find_first_not_of("0123456789", 7) == std::string::npos)
    mode = Mode::Seeded, rng = strtoull(s.c_str() + 7, nullptr, 10);
  else {
    fprintf(stderr, "bun-diffusion emulated cudart: BD_EMU_STREAMS=\"%s\" is not async, sync or seeded:<N> (e.g. seeded:1); using async\n", s.c_str());
    mode = Mode::Async;
  }
  legacy = add_queue(0, true);
  per_thread = add_queue(2, true);
}
std::shared_ptr<Queue> Engine::add_queue(uintptr_t handle, bool blocking) {
  auto q = std::make_shared<Queue>();
  q->handle = handle, q->blocking = blocking;
  queues.push_back(q);
  if (mode == Mode::Async) std::thread(worker, q).detach();
  return q;
}
std::shared_ptr<Queue> queue_of(cudaStream_t st) {  // under the lock
  Engine& e = E();
  uintptr_t h = (uintptr_t)st;
  if (h <= 1) return e.legacy;
  if (h == 2) return e.per_thread;
  auto it = e.created.find(h);
  return it == e.created.end() ? nullptr : it->second;
}
// Queue an item on q under CUDA's legacy-stream rules (under the lock).
uint64_t enqueue(Queue& q, Item&& it) {
  Engine& e = E();
  if (&q == e.legacy.get()) {
    for (auto& b : e.queues)
      if (b->blocking && b != e.legacy && b->submitted > b->completed) it.deps.push_back({b, b->submitted});
  } else if (q.blocking && e.legacy->submitted > e.legacy->completed) {
    it.deps.push_back({e.legacy, e.legacy->submitted});
  }
  it.seq = ++q.submitted;
  q.items.push_back(std::move(it));
  if (e.mode == Mode::Async) e.changed.notify_all();
  return q.submitted;
}
}  // namespace

Mode mode() { return E().mode; }

bool valid_stream(cudaStream_t st) {
  ULock lk(E().mu);
  return queue_of(st) != nullptr;
}

cudaError_t submit(cudaStream_t st, const char* what, int (*run)(void*), void* arg, void (*drop)(void*), Ticket* at) {
  if (g_captures.load()) {  // recorded into a capture instead (cudart_graphs.cpp)
    cudaError_t r;
    if (capture_intercept(st, what, run, arg, drop, &r)) return r;
  }
  Engine& e = E();
  ULock lk(e.mu);
  std::shared_ptr<Queue> q = queue_of(st);
  if (!q) {
    lk.unlock();
    if (drop) drop(arg);
    return fail(cudaErrorInvalidResourceHandle);
  }
  if (e.mode == Mode::Sync) {  // runs now: the item is queued and completed at once
    uint64_t seq = ++q->submitted;
    lk.unlock();
    int err = run ? run(arg) : cudaSuccess;
    if (drop) drop(arg);
    lk.lock();
    q->completed = seq;
    if (err != cudaSuccess) name_failure(*q, what, err);
    if (at) *at = Ticket{q, seq};
    return err != cudaSuccess ? fail((cudaError_t)err) : cudaSuccess;
  }
  uint64_t seq = enqueue(*q, Item{what, run, arg, drop, {}, 0, nullptr, 0});
  if (at) *at = Ticket{q, seq};
  return cudaSuccess;
}

bool stream_blocking(cudaStream_t st) {
  ULock lk(E().mu);
  std::shared_ptr<Queue> q = queue_of(st);
  return q && q->blocking;
}

cudaError_t take_work_error(bool clear) {
  Engine& e = E();
  ULock lk(e.mu);
  cudaError_t r = e.work_error;
  if (clear) e.work_error = cudaSuccess;
  return r;
}

cudaError_t synchronize(const char* api, const Target& target, bool counted) {
  (void)api;  // names the call for checks made here (e.g. one that refuses to synchronise a capturing stream)
  if (counted) count_sync();
  Engine& e = E();
  ULock lk(e.mu);
  auto target_done = [&] {
    if (!target.device) return done(target.t);
    for (auto& q : e.queues)
      if (q->completed < q->submitted) return false;
    return true;
  };
  bool stuck = false;
  if (e.mode == Mode::Seeded) {
    while (!target_done())
      if (!step(lk)) {
        stuck = true;
        break;
      }
  } else {
    e.changed.wait(lk, [&] { return target_done() || (e.running == 0 && !any_ready()); });
    stuck = !target_done();
  }
  if (stuck) return fail(cudaErrorNotReady);  // only a held stream can block the target
  cudaError_t r = e.work_error;
  e.work_error = cudaSuccess;
  return r != cudaSuccess ? fail(r) : cudaSuccess;
}
}  // namespace bdemu_rt

using namespace bdemu_rt;
namespace {
// Seeded mode: a query lets the device make progress (one item), so polling loops terminate.
void query_step(ULock& lk) {
  if (E().mode == Mode::Seeded) step(lk);
}
std::shared_ptr<Event> event_of(cudaEvent_t ev) {  // under the lock
  auto it = E().events.find((uintptr_t)ev);
  return it == E().events.end() ? nullptr : it->second;
}
}  // namespace

extern "C" {
// ---------------------------------------------------------------- stream work (not a CUDA API)
// Every piece of work issued to a stream -- kernel launches (libbdkernels, cuda_emu.h launch_kernel), async
// copies and memsets, the cuBLAS / cuDNN shims' calls -- goes through here: `run(arg)` performs it and returns
// a cudaError_t, `drop(arg)` (may be null) releases `arg` once the work is done or discarded. `what` names the
// work in reports. The work runs when its stream reaches it (see the header of this file).
__attribute__((visibility("default"))) int bdemu_stream_submit(cudaStream_t st, const char* what, int (*run)(void*), void* arg,
                                                                void (*drop)(void*)) {
  return submit(st, what, run, arg, drop);
}
// For launch errors found before the work is queued (a bad configuration): sets the last error, returns it.
__attribute__((visibility("default"))) int bdemu_fail(int e) { return fail((cudaError_t)e); }
// Which work raised the most recent execution error, e.g. "kernel launch on stream 0x… failed:
// cudaErrorLaunchFailure" ("" when none has failed).
__attribute__((visibility("default"))) const char* bdemu_work_error(void) {
  static std::string m;
  ULock lk(E().mu);
  m = E().work_message;
  return m.c_str();
}
// cudaStreamSynchronize for the other shims' blocking calls (cudnnFind*), without the CUDA headers' types.
__attribute__((visibility("default"))) int bdemu_stream_synchronize(cudaStream_t st) { return cudaStreamSynchronize(st); }
// "async", "sync" or "seeded" (tests).
__attribute__((visibility("default"))) const char* bdemu_stream_mode(void) {
  return E().mode == Mode::Async ? "async" : E().mode == Mode::Sync ? "sync" : "seeded";
}
// Tests: hold (on = 1) or release (0) a stream's queue; cudaErrorNotSupported in Sync mode, where work cannot wait.
__attribute__((visibility("default"))) int bdemu_stream_hold(cudaStream_t st, int on) {
  Engine& e = E();
  ULock lk(e.mu);
  if (e.mode == Mode::Sync) return fail(cudaErrorNotSupported);
  std::shared_ptr<Queue> q = queue_of(st);
  if (!q) return fail(cudaErrorInvalidResourceHandle);
  q->held = on != 0;
  e.changed.notify_all();
  return cudaSuccess;
}

// ---------------------------------------------------------------- streams
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* st, unsigned int flags) {
  CHECK(st && flags <= cudaStreamNonBlocking, cudaErrorInvalidValue);
  Engine& e = E();
  ULock lk(e.mu);
  auto* handle = malloc(16);  // a unique address
  e.created[(uintptr_t)handle] = e.add_queue((uintptr_t)handle, !(flags & cudaStreamNonBlocking));
  *st = (cudaStream_t)handle;
  return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t* st) { return cudaStreamCreateWithFlags(st, cudaStreamDefault); }
// Returns at once; work already queued on the stream still runs (the queue leaves when drained).
cudaError_t cudaStreamDestroy(cudaStream_t st) {
  Engine& e = E();
  ULock lk(e.mu);
  auto it = e.created.find((uintptr_t)st);
  CHECK(it != e.created.end(), cudaErrorInvalidResourceHandle);
  std::shared_ptr<Queue> q = it->second;
  e.created.erase(it);
  capture_stream_destroyed(st);
  free(st);
  q->closing = true;
  q->held = false;
  if (e.mode != Mode::Async && q->items.empty()) retire(q);
  e.changed.notify_all();
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t st) {
  Ticket t;
  {
    ULock lk(E().mu);
    std::shared_ptr<Queue> q = queue_of(st);
    CHECK(q, cudaErrorInvalidResourceHandle);
    t = Ticket{q, q->submitted};
  }
  if (cudaError_t e = capture_check_stream(st, "cudaStreamSynchronize")) return e;
  return synchronize("cudaStreamSynchronize", Target{false, t}, true);
}
cudaError_t cudaStreamQuery(cudaStream_t st) {
  ULock lk(E().mu);
  std::shared_ptr<Queue> q = queue_of(st);
  CHECK(q, cudaErrorInvalidResourceHandle);
  if (cudaError_t e = capture_check_stream(st, "cudaStreamQuery")) return e;
  query_step(lk);
  return q->completed < q->submitted ? cudaErrorNotReady : cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t st, cudaEvent_t ev, unsigned int flags) {
  Engine& e = E();
  ULock lk(e.mu);
  std::shared_ptr<Queue> q = queue_of(st);
  std::shared_ptr<Event> x = event_of(ev);
  CHECK(q && x, cudaErrorInvalidResourceHandle);
  CHECK(flags == 0, cudaErrorInvalidValue);
  if (g_captures.load()) {  // inside or across a capture sequence (cudart_graphs.cpp)
    bool handled;
    cudaError_t r = capture_wait_event(st, ev, x->last.q != nullptr, &handled);
    if (handled) return r;
  }
  if (done(x->last) || x->last.q == q) return cudaSuccess;  // nothing to wait for (a queue is in order)
  Item it{"cudaStreamWaitEvent", nullptr, nullptr, nullptr, {x->last}, 0, nullptr, 0};
  enqueue(*q, std::move(it));
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) {
  if (cudaError_t e = capture_check_unsafe("cudaDeviceSynchronize")) return e;
  return synchronize_device("cudaDeviceSynchronize", true);
}

// ---------------------------------------------------------------- events
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* ev, unsigned int flags) {
  CHECK(ev && flags <= (cudaEventBlockingSync | cudaEventDisableTiming | 0x04), cudaErrorInvalidValue);
  auto x = std::make_shared<Event>();
  x->flags = flags;
  ULock lk(E().mu);
  E().events[(uintptr_t)x.get()] = x;
  *ev = (cudaEvent_t)x.get();
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* ev) { return cudaEventCreateWithFlags(ev, cudaEventDefault); }
// A record still queued completes (its marker keeps the event alive).
cudaError_t cudaEventDestroy(cudaEvent_t ev) {
  ULock lk(E().mu);
  CHECK(E().events.erase((uintptr_t)ev), cudaErrorInvalidResourceHandle);
  capture_event_destroyed(ev);
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t ev, cudaStream_t st) {
  Engine& e = E();
  ULock lk(e.mu);
  std::shared_ptr<Event> x = event_of(ev);
  std::shared_ptr<Queue> q = queue_of(st);
  CHECK(x && q, cudaErrorInvalidResourceHandle);
  if (capture_event_recorded(ev, st)) return cudaSuccess;  // part of the capture (cudart_graphs.cpp)
  uint64_t gen = ++x->gen;
  if (e.mode == Mode::Seeded) x->ms = now_ms();
  if (e.mode == Mode::Sync) {  // complete at once
    x->last = Ticket{q, ++q->submitted};
    q->completed = q->submitted;
    x->ms = now_ms();
    return cudaSuccess;
  }
  uint64_t seq = enqueue(*q, Item{"cudaEventRecord", nullptr, nullptr, nullptr, {}, 0, x, gen});
  x->last = Ticket{q, seq};
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t ev) {
  Ticket t;
  {
    ULock lk(E().mu);
    std::shared_ptr<Event> x = event_of(ev);
    CHECK(x, cudaErrorInvalidResourceHandle);
    t = x->last;
  }
  if (cudaError_t e = capture_check_event(ev)) return e;
  return synchronize("cudaEventSynchronize", Target{false, t}, true);
}
cudaError_t cudaEventQuery(cudaEvent_t ev) {
  ULock lk(E().mu);
  std::shared_ptr<Event> x = event_of(ev);
  CHECK(x, cudaErrorInvalidResourceHandle);
  if (cudaError_t e = capture_check_event(ev)) return e;
  query_step(lk);
  return done(x->last) ? cudaSuccess : cudaErrorNotReady;
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  CHECK(ms, cudaErrorInvalidValue);
  ULock lk(E().mu);
  std::shared_ptr<Event> a = event_of(start), b = event_of(end);
  // as the real runtime: both recorded, neither created with cudaEventDisableTiming, both completed
  CHECK(a && b && a->last.q && b->last.q, cudaErrorInvalidResourceHandle);
  CHECK(!((a->flags | b->flags) & cudaEventDisableTiming), cudaErrorInvalidResourceHandle);
  CHECK(done(a->last) && done(b->last), cudaErrorNotReady);
  *ms = (float)(b->ms - a->ms);
  return cudaSuccess;
}
}  // extern "C"
