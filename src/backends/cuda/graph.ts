// CUDA graphs of the CUDA backend: capture a function's device work on the compute stream once, replay it with one
// cudaGraphLaunch. captureCudaGraph(label, fn):
//
//   1. warm-up: fn() runs eagerly with a fresh GraphPool current (allocator.ts), so every block it allocates is the
//      pool's, and every first-use side effect (cuDNN algorithm search, cuBLASLt plans, pinned arenas, the deferred
//      error flags' buffers) happens outside the capture; its result is disposed;
//   2. capture: the pool is sealed (no cudaMalloc: a global-mode capture forbids it) and fn() runs again between
//      cudaStreamBeginCapture(compute, global) and cudaStreamEndCapture; nothing executes; the backend refuses what a
//      graph cannot hold (uploads, downloads, deferred flags: graph-state.ts). Its result tensors are the graph's
//      outputs: they stay allocated and are (re)written by every launch;
//   3. cudaGraphInstantiate (CUDA 12+ signature).
//
// A capture failure (a CUDA error, a refused transfer) ends the capture, frees what it made and throws an Error
// naming the label and the cause (on the emulated device with the runtime's reason). CudaGraphExec.launch()
// queues a replay on the compute stream; dispose() destroys the graph, frees the outputs and gives the pool's
// blocks to the shared cache. Graphs need cudart 12.0+ (cudaGraphsUnsupported() says why not).

import { cudaStreamCaptureMode } from "../../../ffi/cuda/cudart.ts";
import { GraphPool } from "./allocator.ts";
import { cudaContext, hasCudaContext } from "./context.ts";
import { setCapturing } from "./graph-state.ts";

/** Why CUDA graphs cannot be used with the loaded runtime, or null when they can. */
export function cudaGraphsUnsupported(): string | null {
  if (!hasCudaContext()) return "the CUDA backend is not initialised";
  const rt = cudaContext().rt;
  if (!rt.cudaStreamBeginCapture || !rt.cudaGraphInstantiate || !rt.cudaGraphLaunch) return "the CUDA runtime has no graph API";
  const v = new Int32Array(1);
  if (rt.cudaRuntimeGetVersion(v) !== 0 || v[0]! < 12000)
    return `CUDA graphs need CUDA runtime 12.0 or newer (cudaGraphInstantiate's flags signature); the loaded runtime is ${Math.floor(v[0]! / 1000)}.${(v[0]! % 1000) / 10}`;
  return null;
}

/** cudaGraphLaunch calls so far (the emulated runtime counts them; null on a GPU). */
export function cudaGraphLaunches(): number | null {
  const f = cudaContext().rt.bdemu_graph_launch_count;
  return f ? Number(f()) : null;
}

/** What the capture's results are to this file: things to free with the graph (tensors). */
interface Owned {
  dispose(): void;
  readonly isDisposed: boolean;
}

/** An instantiated graph with its outputs and its memory pool. */
export class CudaGraphExec<T> {
  #exec: number;
  #graph: number;
  #disposed = false;

  constructor(
    readonly label: string,
    exec: number,
    graph: number,
    /** The capture's result: device tensors every launch writes. */
    readonly outputs: T,
    readonly pool: GraphPool,
    /** Nodes in the graph (kernels, copies, library calls). */
    readonly nodes: number,
    private readonly owned: Owned[],
  ) {
    this.#exec = exec;
    this.#graph = graph;
  }

  get isDisposed(): boolean {
    return this.#disposed;
  }

  /** Queue one replay on the compute stream. */
  launch(): void {
    if (this.#disposed) throw new Error(`internal: the CUDA graph of ${this.label} was disposed`);
    const c = cudaContext();
    c.libs.check(c.rt.cudaGraphLaunch!(this.#exec, c.stream), "cudaGraphLaunch", this.label);
  }

  /** Destroy the graph, free its outputs and release its pool (queued launches still complete). */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    const c = cudaContext();
    try {
      c.libs.check(c.rt.cudaGraphExecDestroy!(this.#exec), "cudaGraphExecDestroy", this.label);
      c.libs.check(c.rt.cudaGraphDestroy!(this.#graph), "cudaGraphDestroy", this.label);
    } finally {
      for (const t of this.owned) t.dispose();
      // stream order keeps the blocks safe for later work on the compute stream, after the queued launches
      c.allocator.releasePool(this.pool);
    }
  }
}

/** Device tensors reachable from a result (arrays, plain objects), for ownership. */
function tensorsOf(value: unknown, into: Owned[] = []): Owned[] {
  if (value === null || typeof value !== "object") return into;
  if (typeof (value as Owned).dispose === "function" && "isDisposed" in (value as object)) {
    into.push(value as Owned);
    return into;
  }
  for (const v of Array.isArray(value) ? value : Object.values(value as object)) tensorsOf(v, into);
  return into;
}

/** The runtime's reason for an invalidated capture (emulated device), for error messages. */
function captureReason(): string {
  const m = cudaContext().rt.bdemu_capture_error?.() as string | null | undefined;
  return m ? ` (emulated runtime: ${m})` : "";
}

/**
 * Warm up, capture and instantiate fn (see the header). fn must make the same device work and allocations on every
 * call and return the tensors the graph writes; it runs twice here and never again (launch() replays it).
 * onWarmup sees the warm-up's result before it is freed (e.g. to keep a copy the first launch is compared with).
 */
export function captureCudaGraph<T>(label: string, fn: () => T, onWarmup?: (result: T) => void): CudaGraphExec<T> {
  const why = cudaGraphsUnsupported();
  if (why) throw new Error(`CUDA graph of ${label}: ${why}`);
  const c = cudaContext();
  const rt = c.rt;
  const pool = new GraphPool(c.stream, label);
  const out = new BigUint64Array(1);
  try {
    // 1. warm-up (eager, in the pool)
    const warm = c.allocator.withPool(pool, fn);
    try {
      onWarmup?.(warm); // outside the pool: what it keeps is not the graph's memory
    } finally {
      for (const t of tensorsOf(warm)) t.dispose();
    }
    // 2. capture (sealed pool)
    let result: T;
    let graph = 0;
    pool.sealed = true;
    c.libs.check(rt.cudaStreamBeginCapture!(c.stream, cudaStreamCaptureMode.global), "cudaStreamBeginCapture", label);
    setCapturing(label);
    try {
      result = c.allocator.withPool(pool, fn);
    } catch (e) {
      setCapturing(null);
      rt.cudaStreamEndCapture!(c.stream, out);
      if (out[0]) rt.cudaGraphDestroy!(Number(out[0]));
      rt.cudaGetLastError(); // the capture's error is reported here, not by a later call
      const err = new Error(`CUDA graph capture of ${label} failed: ${(e as Error).message}${captureReason()}`);
      err.cause = e;
      throw err;
    } finally {
      setCapturing(null);
      pool.sealed = false;
    }
    const owned = tensorsOf(result);
    const st = rt.cudaStreamEndCapture!(c.stream, out);
    graph = Number(out[0]);
    if (st !== 0) {
      for (const t of owned) t.dispose();
      rt.cudaGetLastError();
      throw new Error(`CUDA graph capture of ${label} failed: cudaStreamEndCapture returned ${rt.cudaGetErrorName(st)}${captureReason()}`);
    }
    const nodes = new BigUint64Array(1);
    try {
      c.libs.check(rt.cudaGraphGetNodes!(graph, null, nodes), "cudaGraphGetNodes", label);
      c.libs.check(rt.cudaGraphInstantiate!(out, graph, 0n), "cudaGraphInstantiate", label);
    } catch (e) {
      rt.cudaGraphDestroy!(graph);
      for (const t of owned) t.dispose();
      throw e;
    }
    return new CudaGraphExec(label, Number(out[0]), graph, result, pool, Number(nodes[0]), owned);
  } catch (e) {
    c.allocator.releasePool(pool); // blocks still live (a tensor the warm-up kept) return to the shared cache when freed
    throw e;
  }
}
