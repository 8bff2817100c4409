// cudart_graphs.cpp -- stream capture and CUDA graphs in the emulated libcudart ("Stream Capture" and "Graph
// Management" in the CUDA Runtime API reference), with the rules a GPU enforces, so that code that captures on
// the emulated device captures on a GPU:
//   - cudaStreamBeginCapture(stream, mode) puts a created stream or cudaStreamPerThread (not the legacy stream:
//     cudaErrorStreamCaptureUnsupported) in capture mode; the work submitted to it from then on
//     (bdemu_stream_submit: launches, async copies and memsets, cuBLAS / cuDNN calls, graph launches) is recorded,
//     not run, with its arguments (a job's run(arg) is replayable: it does not consume arg; drop(arg) runs when the
//     last graph or executable holding the node goes). cudaStreamEndCapture returns the graph.
//   - while a capture is under way a "potentially unsafe" call -- cudaMalloc, cudaFree, cudaMallocHost /
//     cudaHostAlloc, cudaFreeHost, cudaMemcpy, cudaDeviceSynchronize -- is refused with
//     cudaErrorStreamCaptureUnsupported under the rules of cudaThreadExchangeStreamCaptureMode (thread mode global:
//     refused if this thread has a non-relaxed capture under way or another thread a global one; thread-local:
//     only the former; relaxed: never), and the capture(s) that prohibit it are invalidated;
//   - never permitted on a capturing stream, in any mode (cudaErrorStreamCaptureUnsupported, capture invalidated):
//     cudaStreamSynchronize / cudaStreamQuery of it, cudaMemcpyAsync with pageable host memory on it (a GPU cannot
//     replay a staged pageable copy), cudaMallocAsync / cudaFreeAsync on it (graph memory nodes are not emulated);
//   - work on the legacy stream while a blocking stream captures: cudaErrorStreamCaptureImplicit, that capture is
//     invalidated; cudaStreamIsCapturing(legacy) then answers cudaErrorStreamCaptureImplicit (nothing invalidated);
//   - events: a record on a capturing stream is part of the capture; cudaEventQuery / cudaEventSynchronize of an
//     event last recorded there is cudaErrorCapturedEvent; a capturing stream waiting on an event recorded outside
//     its capture is cudaErrorStreamCaptureIsolation (invalidated). Cross-stream capture (another stream waiting on
//     an event recorded in the capture, which joins it to the capture on a GPU) is not emulated: that wait is
//     refused with cudaErrorNotSupported and the capture invalidated;
//   - work submitted to an invalidated capture is dropped (cudaErrorStreamCaptureInvalidated); its
//     cudaStreamEndCapture returns cudaErrorStreamCaptureInvalidated and a null graph, and ends the capture;
//     cudaStreamEndCapture of a non-relaxed capture from another thread is cudaErrorStreamCaptureWrongThread;
//     bdemu_capture_error() says why the latest capture was invalidated (tests, error messages).
//   - cudaGraphInstantiate(exec, graph, flags) (CUDA 12+ signature) shares the graph's nodes, so the graph may be
//     destroyed afterwards; cudaGraphLaunch(exec, stream) is ONE piece of stream work that runs every node in
//     capture order (one stream was captured, so that order is the graph's); a launch on a capturing stream is
//     recorded like any other work (a child graph). bdemu_graph_launch_count() counts launches (tests).
#include <thread>
#include <vector>
#include "cudart_state.h"

using namespace bdemu_rt;
namespace {
struct Node {
  const char* what;
  int (*run)(void*);
  void* arg;
  void (*drop)(void*);
};
// The nodes of one captured sequence, shared by the graph and its executables (and by queued launches).
struct Body {
  std::vector<Node> nodes;
  ~Body() {
    for (Node& n : nodes)
      if (n.drop) n.drop(n.arg);
  }
};
struct Graph {
  std::shared_ptr<Body> body;
};
struct Exec {
  std::shared_ptr<Body> body;
};
struct Capture {
  uintptr_t stream;
  bool blocking;
  cudaStreamCaptureMode mode;
  std::thread::id thread;
  bool invalidated = false;
  unsigned long long id;
  std::shared_ptr<Body> body = std::make_shared<Body>();
};
struct Graphs {
  std::mutex mu;  // taken after the stream engine's lock, never before it
  std::map<uintptr_t, std::shared_ptr<Capture>> capturing;  // by stream handle (the legacy stream is 0)
  std::map<uintptr_t, unsigned long long> captured_events;  // event -> id of the capture of its latest record
  std::set<uintptr_t> graphs, execs;
  unsigned long long next_id = 1, launches = 0;
  std::string message;  // why the latest capture was invalidated
};
Graphs& G() {  // never destroyed (queued launches may run while the process exits)
  static Graphs* g = new Graphs;
  return *g;
}
typedef std::lock_guard<std::mutex> GLock;
thread_local cudaStreamCaptureMode t_mode = cudaStreamCaptureModeGlobal;

uintptr_t handle_of(cudaStream_t st) {
  uintptr_t h = (uintptr_t)st;
  return h == 1 ? 0 : h;  // cudaStreamLegacy is the legacy default stream
}
std::shared_ptr<Capture> capture_of(uintptr_t h) {  // under G().mu
  auto it = G().capturing.find(h);
  return it == G().capturing.end() ? nullptr : it->second;
}
void invalidate(Capture& c, const std::string& why) {  // under G().mu
  if (!c.invalidated) G().message = why;
  c.invalidated = true;
}
std::string stream_text(uintptr_t h) {
  if (h == 0) return "the legacy default stream";
  if (h == 2) return "cudaStreamPerThread";
  char b[48];
  snprintf(b, sizeof b, "stream 0x%llx", (unsigned long long)h);
  return b;
}
int run_body(void* a) {
  const Body& b = **(std::shared_ptr<Body>*)a;
  for (const Node& n : b.nodes)
    if (int e = n.run ? n.run(n.arg) : 0) return e;
  return cudaSuccess;
}
void drop_body(void* a) { delete (std::shared_ptr<Body>*)a; }
}  // namespace

namespace bdemu_rt {
bool capture_intercept(cudaStream_t st, const char* what, int (*run)(void*), void* arg, void (*drop)(void*), cudaError_t* r) {
  uintptr_t h = handle_of(st);
  {
    GLock g(G().mu);
    if (std::shared_ptr<Capture> c = capture_of(h)) {
      if (!c->invalidated) {
        c->body->nodes.push_back(Node{what, run, arg, drop});
        *r = cudaSuccess;
        return true;
      }
      *r = cudaErrorStreamCaptureInvalidated;
    } else if (h == 0) {
      bool implicit = false;
      for (auto& [s, c] : G().capturing)
        if (c->blocking) invalidate(*c, std::string(what) + " on the legacy default stream while blocking " + stream_text(s) + " captures"), implicit = true;
      if (!implicit) return false;
      *r = cudaErrorStreamCaptureImplicit;
    } else {
      return false;
    }
  }
  if (drop) drop(arg);
  fail(*r);
  return true;
}

cudaError_t capture_check_unsafe(const char* api) {
  if (!g_captures.load()) return cudaSuccess;
  GLock g(G().mu);
  if (t_mode == cudaStreamCaptureModeRelaxed) return cudaSuccess;
  std::thread::id me = std::this_thread::get_id();
  bool refused = false;
  for (auto& [s, c] : G().capturing) {
    bool mine = c->thread == me && c->mode != cudaStreamCaptureModeRelaxed;
    bool others_global = t_mode == cudaStreamCaptureModeGlobal && c->thread != me && c->mode == cudaStreamCaptureModeGlobal;
    if (mine || others_global) invalidate(*c, std::string(api) + " while " + stream_text(s) + " captures"), refused = true;
  }
  return refused ? fail(cudaErrorStreamCaptureUnsupported) : cudaSuccess;
}

cudaError_t capture_check_stream(cudaStream_t st, const char* api) {
  if (!g_captures.load()) return cudaSuccess;
  GLock g(G().mu);
  std::shared_ptr<Capture> c = capture_of(handle_of(st));
  if (!c) return cudaSuccess;
  invalidate(*c, std::string(api) + " on capturing " + stream_text(c->stream));
  return fail(cudaErrorStreamCaptureUnsupported);
}

bool capture_event_recorded(cudaEvent_t ev, cudaStream_t st) {
  GLock g(G().mu);
  std::shared_ptr<Capture> c = capture_of(handle_of(st));
  if (c) G().captured_events[(uintptr_t)ev] = c->id;
  else G().captured_events.erase((uintptr_t)ev);
  return c != nullptr;
}

cudaError_t capture_check_event(cudaEvent_t ev) {
  GLock g(G().mu);
  return G().captured_events.count((uintptr_t)ev) ? fail(cudaErrorCapturedEvent) : cudaSuccess;
}

cudaError_t capture_wait_event(cudaStream_t st, cudaEvent_t ev, bool recorded, bool* handled) {
  GLock g(G().mu);
  *handled = false;
  std::shared_ptr<Capture> c = capture_of(handle_of(st));
  auto ce = G().captured_events.find((uintptr_t)ev);
  if (ce != G().captured_events.end()) {
    *handled = true;
    if (c && c->id == ce->second) return cudaSuccess;  // one stream per capture: already in order
    for (auto& [s, other] : G().capturing)
      if (other->id == ce->second)
        invalidate(*other, "cudaStreamWaitEvent: " + stream_text(handle_of(st)) + " waits on an event recorded in the capture of " +
                               stream_text(s) + " (cross-stream capture, which joins it to the capture on a GPU, is not emulated)");
    return fail(cudaErrorNotSupported);
  }
  if (c && recorded) {
    *handled = true;
    invalidate(*c, "cudaStreamWaitEvent: capturing " + stream_text(c->stream) + " waits on an event recorded outside its capture");
    return fail(cudaErrorStreamCaptureIsolation);
  }
  return cudaSuccess;
}

void capture_stream_destroyed(cudaStream_t st) {
  GLock g(G().mu);
  if (G().capturing.erase(handle_of(st))) --g_captures;
}
void capture_event_destroyed(cudaEvent_t ev) {
  GLock g(G().mu);
  G().captured_events.erase((uintptr_t)ev);
}
}  // namespace bdemu_rt

extern "C" {
// ---------------------------------------------------------------- for tests (not a CUDA API)
// cudaGraphLaunch calls that queued a launch so far.
__attribute__((visibility("default"))) unsigned long long bdemu_graph_launch_count(void) {
  GLock g(G().mu);
  return G().launches;
}
// Why the most recent capture was invalidated, e.g. "cudaMalloc while stream 0x... captures" ("" when none was).
__attribute__((visibility("default"))) const char* bdemu_capture_error(void) {
  static std::string m;
  GLock g(G().mu);
  m = G().message;
  return m.c_str();
}

// ---------------------------------------------------------------- stream capture
cudaError_t cudaStreamBeginCapture(cudaStream_t st, enum cudaStreamCaptureMode mode) {
  CHECK(mode == cudaStreamCaptureModeGlobal || mode == cudaStreamCaptureModeThreadLocal || mode == cudaStreamCaptureModeRelaxed,
        cudaErrorInvalidValue);
  CHECK(valid_stream(st), cudaErrorInvalidResourceHandle);
  uintptr_t h = handle_of(st);
  CHECK(h != 0, cudaErrorStreamCaptureUnsupported);  // the legacy stream cannot capture
  bool blocking = stream_blocking(st);
  GLock g(G().mu);
  CHECK(!capture_of(h), cudaErrorIllegalState);
  auto c = std::make_shared<Capture>();
  c->stream = h, c->blocking = blocking, c->mode = mode, c->thread = std::this_thread::get_id(), c->id = G().next_id++;
  G().capturing[h] = c;
  ++g_captures;
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t st, cudaGraph_t* graph) {
  CHECK(graph, cudaErrorInvalidValue);
  *graph = nullptr;
  GLock g(G().mu);
  std::shared_ptr<Capture> c = capture_of(handle_of(st));
  CHECK(c, cudaErrorIllegalState);  // not capturing
  CHECK(c->mode == cudaStreamCaptureModeRelaxed || c->thread == std::this_thread::get_id(), cudaErrorStreamCaptureWrongThread);
  G().capturing.erase(c->stream);
  --g_captures;
  for (auto it = G().captured_events.begin(); it != G().captured_events.end();)  // their records leave with the capture
    it = it->second == c->id ? G().captured_events.erase(it) : std::next(it);
  CHECK(!c->invalidated, cudaErrorStreamCaptureInvalidated);  // the recorded nodes are dropped with c
  auto* gr = new Graph{c->body};
  G().graphs.insert((uintptr_t)gr);
  *graph = (cudaGraph_t)gr;
  return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t st, enum cudaStreamCaptureStatus* status) {
  CHECK(status, cudaErrorInvalidValue);
  CHECK(valid_stream(st), cudaErrorInvalidResourceHandle);
  GLock g(G().mu);
  uintptr_t h = handle_of(st);
  if (h == 0)
    for (auto& [s, c] : G().capturing)
      CHECK(!c->blocking, cudaErrorStreamCaptureImplicit);
  std::shared_ptr<Capture> c = capture_of(h);
  *status = !c ? cudaStreamCaptureStatusNone : c->invalidated ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}

cudaError_t cudaThreadExchangeStreamCaptureMode(enum cudaStreamCaptureMode* mode) {
  CHECK(mode && (*mode == cudaStreamCaptureModeGlobal || *mode == cudaStreamCaptureModeThreadLocal || *mode == cudaStreamCaptureModeRelaxed),
        cudaErrorInvalidValue);
  std::swap(*mode, t_mode);
  return cudaSuccess;
}

// ---------------------------------------------------------------- graphs
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long flags) {
  CHECK(exec, cudaErrorInvalidValue);
  CHECK((flags & ~15ull) == 0, cudaErrorInvalidValue);  // cudaGraphInstantiateFlag* (1, 2, 4, 8)
  GLock g(G().mu);
  CHECK(G().graphs.count((uintptr_t)graph), cudaErrorInvalidValue);
  auto* e = new Exec{((Graph*)graph)->body};
  G().execs.insert((uintptr_t)e);
  *exec = (cudaGraphExec_t)e;
  return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t st) {
  std::shared_ptr<Body>* body;
  {
    GLock g(G().mu);
    CHECK(G().execs.count((uintptr_t)exec), cudaErrorInvalidValue);
    body = new std::shared_ptr<Body>(((Exec*)exec)->body);
  }
  cudaError_t e = submit(st, "cudaGraphLaunch", &run_body, body, &drop_body);
  if (e == cudaSuccess) {
    GLock g(G().mu);
    ++G().launches;
  }
  return e;
}

// A launch still queued completes (it holds the nodes).
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  GLock g(G().mu);
  CHECK(G().execs.erase((uintptr_t)exec), cudaErrorInvalidValue);
  delete (Exec*)exec;
  return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  GLock g(G().mu);
  CHECK(G().graphs.erase((uintptr_t)graph), cudaErrorInvalidValue);
  delete (Graph*)graph;
  return cudaSuccess;
}

// The nodes in capture order: their count in *numNodes when nodes is null, else up to *numNodes handles.
cudaError_t cudaGraphGetNodes(cudaGraph_t graph, cudaGraphNode_t* nodes, size_t* numNodes) {
  CHECK(numNodes, cudaErrorInvalidValue);
  GLock g(G().mu);
  CHECK(G().graphs.count((uintptr_t)graph), cudaErrorInvalidValue);
  std::vector<Node>& v = ((Graph*)graph)->body->nodes;
  if (!nodes) {
    *numNodes = v.size();
    return cudaSuccess;
  }
  size_t n = std::min(*numNodes, v.size());
  for (size_t i = 0; i < n; ++i) nodes[i] = (cudaGraphNode_t)&v[i];
  for (size_t i = n; i < *numNodes; ++i) nodes[i] = nullptr;
  *numNodes = n;
  return cudaSuccess;
}
}  // extern "C"
