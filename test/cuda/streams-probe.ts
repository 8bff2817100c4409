// Child process of test/cuda/streams.test.ts: drives the emulated libcudart's streams directly (the mode,
// BD_EMU_STREAMS, is read once per process, so each mode needs its own process) and prints one JSON object of
// what it observed. Device memory of the emulated device is host memory, so a buffer is read straight through
// its pointer: that shows what has run so far, without a synchronisation ordering anything.
//   bun test/cuda/streams-probe.ts ordering   — the ordering scenarios below
//   bun test/cuda/streams-probe.ts race N     — N unordered memset pairs on two streams: who wrote each byte last
//   bun test/cuda/streams-probe.ts pipeline D — a tiny SD 1.5 pipeline (made in folder D) on the emulated CUDA
//                                               backend, plain, with model offload and with sequential offload (prefetching): image hashes

import { toArrayBuffer } from "bun:ffi";
import { join } from "node:path";
import { openLibrary } from "../../ffi/cuda/bind.ts";
import { EMULATED_DIR } from "../../ffi/cuda/discover.ts";

const NON_BLOCKING = 1;
const D2D = 3;
const rt = openLibrary("emulated cudart", join(EMULATED_DIR, "libcudart.so"), {
  cudaMalloc: { args: ["ptr", "u64"], returns: "i32" },
  cudaFree: { args: ["ptr"], returns: "i32" },
  cudaMemsetAsync: { args: ["ptr", "i32", "u64", "ptr"], returns: "i32" },
  cudaMemcpyAsync: { args: ["ptr", "ptr", "u64", "i32", "ptr"], returns: "i32" },
  cudaStreamCreateWithFlags: { args: ["ptr", "u32"], returns: "i32" },
  cudaStreamDestroy: { args: ["ptr"], returns: "i32" },
  cudaStreamSynchronize: { args: ["ptr"], returns: "i32" },
  cudaStreamQuery: { args: ["ptr"], returns: "i32" },
  cudaStreamWaitEvent: { args: ["ptr", "ptr", "u32"], returns: "i32" },
  cudaEventCreateWithFlags: { args: ["ptr", "u32"], returns: "i32" },
  cudaEventDestroy: { args: ["ptr"], returns: "i32" },
  cudaEventRecord: { args: ["ptr", "ptr"], returns: "i32" },
  cudaEventQuery: { args: ["ptr"], returns: "i32" },
  cudaEventSynchronize: { args: ["ptr"], returns: "i32" },
  cudaEventElapsedTime: { args: ["ptr", "ptr", "ptr"], returns: "i32" },
  cudaDeviceSynchronize: { args: [], returns: "i32" },
  cudaGetLastError: { args: [], returns: "i32" },
  bdemu_stream_mode: { args: [], returns: "cstring" },
  bdemu_stream_hold: { args: ["ptr", "i32"], returns: "i32" },
}).symbols;

const out = new BigUint64Array(1);
function ok(status: number, what: string): void {
  if (status !== 0) throw new Error(`${what} returned ${status}`);
}
function malloc(bytes: number): number {
  ok(rt.cudaMalloc(out, bytes), "cudaMalloc");
  return Number(out[0]);
}
function stream(flags = NON_BLOCKING): number {
  ok(rt.cudaStreamCreateWithFlags(out, flags), "cudaStreamCreateWithFlags");
  return Number(out[0]);
}
function event(flags = 0): number {
  ok(rt.cudaEventCreateWithFlags(out, flags), "cudaEventCreateWithFlags");
  return Number(out[0]);
}
const N = 256; // bytes per buffer: a memset or a copy of it is one item
const byte = (p: number) => new Uint8Array(toArrayBuffer(p as never, 0, N))[N - 1]!;
const set = (p: number, v: number, s: number) => ok(rt.cudaMemsetAsync(p, v, N, s), "cudaMemsetAsync");
const copy = (dst: number, src: number, s: number) => ok(rt.cudaMemcpyAsync(dst, src, N, D2D, s), "cudaMemcpyAsync");
const hold = (s: number, on: boolean) => rt.bdemu_stream_hold(s, on ? 1 : 0);

function ordering(): Record<string, unknown> {
  const r: Record<string, unknown> = { mode: rt.bdemu_stream_mode() };
  const x = malloc(N), y = malloc(N);
  const A = stream(), B = stream(), C = stream(0); // two non-blocking streams, one blocking
  const R = stream(); // resets both buffers between scenarios (never held)
  const reset = () => {
    set(x, 0, R), set(y, 0, R);
    ok(rt.cudaStreamSynchronize(R), "cudaStreamSynchronize");
  };

  // one stream runs its items in order
  set(x, 7, A), copy(y, x, A), set(x, 1, A);
  r.inOrder = { status: rt.cudaStreamSynchronize(A), x: byte(x), y: byte(y) };

  r.holdStatus = hold(A, true);
  hold(A, false);
  if (r.holdStatus !== 0) {
    // sync mode: work cannot wait (so nothing below can be observed); it has run when its call returns
    set(x, 12, B);
    r.immediate = byte(x);
    return r;
  }

  // no event between A and B: B's copy does not wait for A's memset (a missing wait is a wrong result)
  reset();
  hold(A, true);
  set(x, 1, A), copy(y, x, B);
  const missingSync = rt.cudaStreamSynchronize(B), missingY = byte(y), heldX = byte(x);
  hold(A, false);
  r.missingWait = { syncB: missingSync, y: missingY, xWhileHeld: heldX, syncA: rt.cudaStreamSynchronize(A), x: byte(x) };

  // an event recorded on A and waited on by B orders B's copy after A's memset
  reset();
  const ev = event();
  hold(A, true);
  set(x, 2, A);
  ok(rt.cudaEventRecord(ev, A), "cudaEventRecord");
  ok(rt.cudaStreamWaitEvent(B, ev, 0), "cudaStreamWaitEvent");
  copy(y, x, B);
  const held = { queryB: rt.cudaStreamQuery(B), queryEvent: rt.cudaEventQuery(ev), syncB: rt.cudaStreamSynchronize(B), syncEvent: rt.cudaEventSynchronize(ev), y: byte(y) };
  hold(A, false);
  r.eventWait = { held, syncB: rt.cudaStreamSynchronize(B), y: byte(y), queryEvent: rt.cudaEventQuery(ev) };

  // waiting on an event never recorded waits for nothing
  reset();
  const never = event();
  hold(A, true);
  set(x, 9, A);
  ok(rt.cudaStreamWaitEvent(B, never, 0), "cudaStreamWaitEvent");
  copy(y, x, B);
  const neverSync = rt.cudaStreamSynchronize(B), neverY = byte(y);
  hold(A, false);
  r.neverRecorded = { syncB: neverSync, y: neverY, syncA: rt.cudaStreamSynchronize(A) };

  // a stream wait uses the event's record as of the call; a later record does not move it
  reset();
  hold(A, true);
  set(x, 3, A);
  ok(rt.cudaEventRecord(ev, A), "cudaEventRecord");
  ok(rt.cudaStreamWaitEvent(B, ev, 0), "cudaStreamWaitEvent");
  ok(rt.cudaEventRecord(ev, C), "cudaEventRecord"); // re-recorded on another stream, after the wait
  copy(y, x, B);
  const asOfCall = rt.cudaStreamSynchronize(B); // still waits for A's record: A is held
  hold(A, false);
  r.waitAsOfCall = { heldSyncB: asOfCall, syncB: rt.cudaStreamSynchronize(B), y: byte(y) };

  // the legacy default stream waits for blocking streams, not for non-blocking ones
  reset();
  hold(C, true);
  set(x, 4, C);
  copy(y, x, 0);
  const legacyHeld = rt.cudaStreamSynchronize(0);
  hold(C, false);
  const legacyBlocking = { heldSync: legacyHeld, sync: rt.cudaStreamSynchronize(0), y: byte(y) };
  reset();
  hold(A, true);
  set(x, 5, A);
  copy(y, x, 0);
  const legacyNb = { sync: rt.cudaStreamSynchronize(0), y: byte(y) };
  hold(A, false);
  ok(rt.cudaStreamSynchronize(A), "cudaStreamSynchronize");
  // and a blocking stream waits for the legacy stream's earlier work
  reset();
  hold(0, true);
  set(x, 6, 0);
  copy(y, x, C);
  const blockingHeld = rt.cudaStreamSynchronize(C);
  hold(0, false);
  r.legacy = { blocking: legacyBlocking, nonBlocking: legacyNb, blockingWaitsForLegacy: { heldSync: blockingHeld, sync: rt.cudaStreamSynchronize(C), y: byte(y) } };

  // a device synchronisation waits for every stream; a held one makes it cudaErrorNotReady
  hold(B, true);
  set(x, 8, B);
  const deviceHeld = rt.cudaDeviceSynchronize();
  hold(B, false);
  r.device = { heldSync: deviceHeld, sync: rt.cudaDeviceSynchronize(), x: byte(x) };
  rt.cudaGetLastError(); // the NotReady answers above set the last error

  // a destroyed stream still runs what it had queued (its hold goes with it)
  const D = stream();
  hold(D, true);
  set(x, 10, D);
  const destroyStatus = rt.cudaStreamDestroy(D);
  r.destroyed = { status: destroyStatus, sync: rt.cudaDeviceSynchronize(), x: byte(x) };

  // timing events: end − start ≥ 0 once both completed
  const e0 = event(), e1 = event();
  ok(rt.cudaEventRecord(e0, A), "cudaEventRecord");
  set(x, 11, A), copy(y, x, A);
  ok(rt.cudaEventRecord(e1, A), "cudaEventRecord");
  ok(rt.cudaEventSynchronize(e1), "cudaEventSynchronize");
  const ms = new Float32Array(1);
  r.elapsed = { status: rt.cudaEventElapsedTime(ms, e0, e1), ms: ms[0] };

  for (const e of [ev, never, e0, e1]) ok(rt.cudaEventDestroy(e), "cudaEventDestroy");
  for (const s of [A, B, C, R]) ok(rt.cudaStreamDestroy(s), "cudaStreamDestroy");
  ok(rt.cudaFree(x), "cudaFree");
  ok(rt.cudaFree(y), "cudaFree");
  return r;
}

/** `n` bytes, each memset by two streams with nothing ordering them: the last writer of each byte (1 or 2). */
function race(n: number): Record<string, unknown> {
  const w = malloc(n);
  const P = stream(), Q = stream();
  for (let i = 0; i < n; i++) {
    ok(rt.cudaMemsetAsync(w + i, 1, 1, P), "cudaMemsetAsync");
    ok(rt.cudaMemsetAsync(w + i, 2, 1, Q), "cudaMemsetAsync");
  }
  ok(rt.cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  const last = Array.from(new Uint8Array(toArrayBuffer(w as never, 0, n))).join("");
  for (const s of [P, Q]) ok(rt.cudaStreamDestroy(s), "cudaStreamDestroy");
  ok(rt.cudaFree(w), "cudaFree");
  return { mode: rt.bdemu_stream_mode(), last };
}

async function pipeline(dir: string): Promise<Record<string, unknown>> {
  const { loadPipeline } = await import("../../src/pipelines/index.ts");
  const { memoryStats } = await import("../../src/tensor/index.ts");
  const pipe = await loadPipeline(dir, { device: "cuda", dtype: "float32" });
  const hash = async () => {
    const r = await pipe.generate({ prompt: "a red circle", width: 64, height: 64, steps: 3, seed: 3, scheduler: "ddim", outputType: "tensor" });
    const px = r.tensor!.toFloat32Array();
    r.tensor!.dispose();
    return new Bun.CryptoHasher("sha256").update(px).digest("hex");
  };
  try {
    const plain = await hash(); // the CUDA defaults: channels-last, fused QKV, CUDA-graph steps
    pipe.enableModelCpuOffload(); // uploads on the copy stream, ordered against compute by events (fused QKV steps aside)
    const modelOffload = await hash();
    const features = pipe.features().map((f) => f.name);
    pipe.enableSequentialCpuOffload({ prefetch: true }); // per-module uploads inside the step, prefetched on copy
    const sequentialOffload = await hash();
    return { mode: rt.bdemu_stream_mode(), plain, modelOffload, sequentialOffload, features: [features, pipe.features().map((f) => f.name)] };
  } finally {
    pipe.dispose();
    if (memoryStats("cuda").live !== 0) console.error(`live CUDA bytes after dispose: ${memoryStats("cuda").live}`);
  }
}

const [what, arg] = process.argv.slice(2);
const result = what === "ordering" ? ordering() : what === "race" ? race(Number(arg)) : what === "pipeline" ? await pipeline(arg!) : null;
if (!result) throw new Error(`usage: bun test/cuda/streams-probe.ts ordering | race N | pipeline DIR (got ${what})`);
console.log(JSON.stringify(result));
