// Stream capture and CUDA graphs on the emulated runtime (kernels/emu/cudart_graphs.cpp), through ffi/cuda: work
// submitted to a capturing stream is recorded, not run; a launch replays it (as often as asked, reading memory as
// it is at the launch) as one piece of stream work; and the calls a GPU forbids during capture fail with CUDA's
// errors and invalidate the capture, so that code that captures here captures on a GPU.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cudaError, cudaMemcpyKind, cudaStreamCaptureMode, cudaStreamCaptureStatus, cudaStreamNonBlocking } from "../../ffi/cuda/cudart.ts";
import type { CudaLibraries } from "../../ffi/cuda/index.ts";
import { BUILD_TIMEOUT, Device, HAS_GXX, emulatedCuda } from "./setup.ts";

describe.skipIf(!HAS_GXX)("emulated stream capture and CUDA graphs", () => {
  let cu: CudaLibraries;
  let dev: Device;
  let rt: CudaLibraries["cudart"]["symbols"];
  const out = new BigUint64Array(1);
  const i32 = new Int32Array(1);
  const N = 64; // floats per buffer

  beforeAll(async () => {
    cu = await emulatedCuda();
    dev = new Device(cu);
    rt = cu.cudart.symbols;
  }, BUILD_TIMEOUT);
  afterAll(() => dev?.freeAll());

  const ok = (st: number, fn: string) => cu.check(st, fn);
  function stream(flags = cudaStreamNonBlocking): number {
    ok(rt.cudaStreamCreateWithFlags(out, flags), "cudaStreamCreateWithFlags");
    return Number(out[0]);
  }
  function status(s: number): number {
    ok(rt.cudaStreamIsCapturing!(s, i32), "cudaStreamIsCapturing");
    return i32[0]!;
  }
  /** End the capture of s, expecting `want`; returns the graph handle (0 when none). */
  function endCapture(s: number, want: number = cudaError.success): number {
    expect(rt.cudaStreamEndCapture!(s, out)).toBe(want);
    rt.cudaGetLastError();
    return Number(out[0]);
  }
  const launches = () => Number(rt.bdemu_graph_launch_count!());

  test("captured work runs only when launched, every launch reads memory as it is then, one launch is one piece of stream work", () => {
    const s = stream();
    const src = dev.upload(Float32Array.from({ length: N }, (_, i) => i));
    const dst = dev.upload(new Float32Array(N));
    expect(status(s)).toBe(cudaStreamCaptureStatus.none);
    ok(rt.cudaStreamBeginCapture!(s, cudaStreamCaptureMode.global), "cudaStreamBeginCapture");
    expect(status(s)).toBe(cudaStreamCaptureStatus.active);
    ok(rt.cudaMemcpyAsync(dst, src, N * 4, cudaMemcpyKind.deviceToDevice, s), "cudaMemcpyAsync");
    ok(rt.cudaMemsetAsync(dst, 0, 8, s), "cudaMemsetAsync"); // dst[0] = dst[1] = 0
    const graph = endCapture(s);
    expect(graph).not.toBe(0);
    expect(status(s)).toBe(cudaStreamCaptureStatus.none);
    const n = new BigUint64Array(1);
    ok(rt.cudaGraphGetNodes!(graph, null, n), "cudaGraphGetNodes");
    expect(Number(n[0])).toBe(2);
    ok(rt.cudaStreamSynchronize(s), "cudaStreamSynchronize");
    expect(Array.from(dev.download(dst, new Float32Array(N)))).toEqual(Array<number>(N).fill(0)); // nothing ran

    ok(rt.cudaGraphInstantiate!(out, graph, 0n), "cudaGraphInstantiate");
    const exec = Number(out[0]);
    ok(rt.cudaGraphDestroy!(graph), "cudaGraphDestroy"); // the executable keeps its nodes
    const before = launches();
    for (const base of [100, 200]) {
      dev.download(src, new Float32Array(N)); // (a synchronisation, so the upload below is ordered)
      ok(rt.cudaMemcpy(src, Float32Array.from({ length: N }, (_, i) => base + i), N * 4, cudaMemcpyKind.hostToDevice), "cudaMemcpy");
      ok(rt.cudaGraphLaunch!(exec, s), "cudaGraphLaunch");
      ok(rt.cudaStreamSynchronize(s), "cudaStreamSynchronize");
      const got = dev.download(dst, new Float32Array(N));
      expect(Array.from(got)).toEqual(Array.from({ length: N }, (_, i) => (i < 2 ? 0 : base + i)));
    }
    expect(launches() - before).toBe(2);
    ok(rt.cudaGraphExecDestroy!(exec), "cudaGraphExecDestroy");
    expect(rt.cudaGraphLaunch!(exec, s)).toBe(cudaError.invalidValue); // destroyed
    rt.cudaGetLastError();
    ok(rt.cudaStreamDestroy(s), "cudaStreamDestroy");
  });

  test("a graph launched on a capturing stream is recorded as a child graph and runs with its parent", () => {
    const s = stream();
    const a = dev.upload(new Float32Array(N).fill(3));
    const b = dev.upload(new Float32Array(N));
    ok(rt.cudaStreamBeginCapture!(s, cudaStreamCaptureMode.global), "cudaStreamBeginCapture");
    ok(rt.cudaMemcpyAsync(b, a, N * 4, cudaMemcpyKind.deviceToDevice, s), "cudaMemcpyAsync");
    const inner = endCapture(s);
    ok(rt.cudaGraphInstantiate!(out, inner, 0n), "cudaGraphInstantiate");
    const innerExec = Number(out[0]);
    ok(rt.cudaStreamBeginCapture!(s, cudaStreamCaptureMode.global), "cudaStreamBeginCapture");
    ok(rt.cudaGraphLaunch!(innerExec, s), "cudaGraphLaunch"); // recorded, not run
    ok(rt.cudaMemsetAsync(a, 0, N * 4, s), "cudaMemsetAsync");
    const outer = endCapture(s);
    ok(rt.cudaStreamSynchronize(s), "cudaStreamSynchronize");
    expect(dev.download(b, new Float32Array(N))[0]).toBe(0);
    ok(rt.cudaGraphInstantiate!(out, outer, 0n), "cudaGraphInstantiate");
    const outerExec = Number(out[0]);
    ok(rt.cudaGraphLaunch!(outerExec, s), "cudaGraphLaunch");
    ok(rt.cudaStreamSynchronize(s), "cudaStreamSynchronize");
    expect(dev.download(b, new Float32Array(N))[0]).toBe(3); // copied before a was cleared
    expect(dev.download(a, new Float32Array(N))[0]).toBe(0);
    for (const e of [innerExec, outerExec]) ok(rt.cudaGraphExecDestroy!(e), "cudaGraphExecDestroy");
    for (const g of [inner, outer]) ok(rt.cudaGraphDestroy!(g), "cudaGraphDestroy");
    ok(rt.cudaStreamDestroy(s), "cudaStreamDestroy");
  });

  // Each case: a call a GPU refuses while `s` captures in `mode`, the error it returns, and whether the capture is
  // invalidated by it (cudaStreamEndCapture then fails with cudaErrorStreamCaptureInvalidated and returns no graph).
  const host = new Float32Array(N);
  const refused: { name: string; mode: keyof typeof cudaStreamCaptureMode; call: (s: number, d: number) => number; want: number }[] = [
    { name: "cudaMalloc (global mode)", mode: "global", call: () => rt.cudaMalloc(out, 256), want: cudaError.streamCaptureUnsupported },
    { name: "cudaMalloc (thread-local mode)", mode: "threadLocal", call: () => rt.cudaMalloc(out, 256), want: cudaError.streamCaptureUnsupported },
    { name: "cudaFree", mode: "global", call: (_s, d) => rt.cudaFree(d), want: cudaError.streamCaptureUnsupported },
    { name: "cudaMallocHost", mode: "global", call: () => rt.cudaMallocHost(out, 256), want: cudaError.streamCaptureUnsupported },
    { name: "cudaMemcpy (synchronous)", mode: "global", call: (_s, d) => rt.cudaMemcpy(host, d, 16, cudaMemcpyKind.deviceToHost), want: cudaError.streamCaptureUnsupported },
    { name: "cudaDeviceSynchronize", mode: "global", call: () => rt.cudaDeviceSynchronize(), want: cudaError.streamCaptureUnsupported },
    { name: "cudaStreamSynchronize of the capturing stream (relaxed mode too)", mode: "relaxed", call: (s) => rt.cudaStreamSynchronize(s), want: cudaError.streamCaptureUnsupported },
    { name: "cudaStreamQuery of the capturing stream", mode: "relaxed", call: (s) => rt.cudaStreamQuery(s), want: cudaError.streamCaptureUnsupported },
    { name: "cudaMemcpyAsync from pageable host memory", mode: "relaxed", call: (s, d) => rt.cudaMemcpyAsync(d, host, 16, cudaMemcpyKind.hostToDevice, s), want: cudaError.streamCaptureUnsupported },
    { name: "cudaMemcpyAsync to pageable host memory", mode: "relaxed", call: (s, d) => rt.cudaMemcpyAsync(host, d, 16, cudaMemcpyKind.deviceToHost, s), want: cudaError.streamCaptureUnsupported },
    { name: "cudaFreeAsync on the capturing stream", mode: "relaxed", call: (s, d) => rt.cudaFreeAsync!(d, s), want: cudaError.streamCaptureUnsupported },
  ];
  for (const r of refused)
    test(`refused during capture: ${r.name} → ${r.want}, capture invalidated`, () => {
      const s = stream();
      const d = dev.malloc(256);
      ok(rt.cudaStreamBeginCapture!(s, cudaStreamCaptureMode[r.mode]), "cudaStreamBeginCapture");
      let ended = false;
      try {
        ok(rt.cudaMemsetAsync(d, 0, 256, s), "cudaMemsetAsync");
        expect(r.call(s, d)).toBe(r.want);
        expect(rt.cudaGetLastError()).toBe(r.want);
        expect(status(s)).toBe(cudaStreamCaptureStatus.invalidated);
        expect(String(rt.bdemu_capture_error!())).toContain(r.name.split(" ")[0]!);
        expect(rt.cudaMemsetAsync(d, 0, 256, s)).toBe(cudaError.streamCaptureInvalidated); // later work is dropped
        ended = true;
        expect(endCapture(s, cudaError.streamCaptureInvalidated)).toBe(0);
      } finally {
        if (!ended) rt.cudaStreamEndCapture!(s, out), rt.cudaGetLastError(); // a failed case leaves no capture behind
      }
      expect(status(s)).toBe(cudaStreamCaptureStatus.none); // the stream is usable again
      ok(rt.cudaStreamSynchronize(s), "cudaStreamSynchronize");
      ok(rt.cudaStreamDestroy(s), "cudaStreamDestroy");
    });

  test("relaxed mode permits cudaMalloc / cudaFree during capture; the capture stays valid", () => {
    const s = stream();
    const d = dev.malloc(256);
    ok(rt.cudaStreamBeginCapture!(s, cudaStreamCaptureMode.relaxed), "cudaStreamBeginCapture");
    ok(rt.cudaMemsetAsync(d, 1, 256, s), "cudaMemsetAsync");
    ok(rt.cudaMalloc(out, 256), "cudaMalloc");
    ok(rt.cudaFree(Number(out[0])), "cudaFree");
    const g = endCapture(s);
    expect(g).not.toBe(0);
    ok(rt.cudaGraphDestroy!(g), "cudaGraphDestroy");
    ok(rt.cudaStreamDestroy(s), "cudaStreamDestroy");
  });

  test("cudaThreadExchangeStreamCaptureMode: a relaxed thread mode permits unsafe calls during a global capture", () => {
    const s = stream();
    ok(rt.cudaStreamBeginCapture!(s, cudaStreamCaptureMode.global), "cudaStreamBeginCapture");
    const mode = new Int32Array([cudaStreamCaptureMode.relaxed]);
    ok(rt.cudaThreadExchangeStreamCaptureMode!(mode), "cudaThreadExchangeStreamCaptureMode");
    expect(mode[0]).toBe(cudaStreamCaptureMode.global); // the previous mode
    ok(rt.cudaMalloc(out, 256), "cudaMalloc");
    ok(rt.cudaFree(Number(out[0])), "cudaFree");
    ok(rt.cudaThreadExchangeStreamCaptureMode!(mode), "cudaThreadExchangeStreamCaptureMode"); // restore global
    expect(status(s)).toBe(cudaStreamCaptureStatus.active);
    expect(rt.cudaMalloc(out, 256)).toBe(cudaError.streamCaptureUnsupported);
    rt.cudaGetLastError();
    expect(endCapture(s, cudaError.streamCaptureInvalidated)).toBe(0);
    ok(rt.cudaStreamDestroy(s), "cudaStreamDestroy");
  });

  test("the legacy stream: no capture on it; its work while a blocking stream captures is cudaErrorStreamCaptureImplicit", () => {
    expect(rt.cudaStreamBeginCapture!(0, cudaStreamCaptureMode.global)).toBe(cudaError.streamCaptureUnsupported);
    rt.cudaGetLastError();
    const d = dev.malloc(256);
    const nonBlocking = stream();
    ok(rt.cudaStreamBeginCapture!(nonBlocking, cudaStreamCaptureMode.relaxed), "cudaStreamBeginCapture");
    ok(rt.cudaMemset(d, 0, 256), "cudaMemset"); // a non-blocking capture does not involve the legacy stream
    ok(rt.cudaStreamIsCapturing!(0, i32), "cudaStreamIsCapturing");
    const g = endCapture(nonBlocking);
    ok(rt.cudaGraphDestroy!(g), "cudaGraphDestroy");
    const blocking = stream(0);
    ok(rt.cudaStreamBeginCapture!(blocking, cudaStreamCaptureMode.relaxed), "cudaStreamBeginCapture");
    expect(rt.cudaStreamIsCapturing!(0, i32)).toBe(cudaError.streamCaptureImplicit); // nothing invalidated by a query
    rt.cudaGetLastError();
    expect(status(blocking)).toBe(cudaStreamCaptureStatus.active);
    expect(rt.cudaMemset(d, 0, 256)).toBe(cudaError.streamCaptureImplicit);
    rt.cudaGetLastError();
    expect(status(blocking)).toBe(cudaStreamCaptureStatus.invalidated);
    expect(endCapture(blocking, cudaError.streamCaptureInvalidated)).toBe(0);
    for (const s of [nonBlocking, blocking]) ok(rt.cudaStreamDestroy(s), "cudaStreamDestroy");
  });

  test("events: recorded inside the capture (query is cudaErrorCapturedEvent), waits across the capture boundary are refused", () => {
    const s = stream();
    const other = stream();
    ok(rt.cudaEventCreateWithFlags(out, 0), "cudaEventCreateWithFlags");
    const inside = Number(out[0]);
    ok(rt.cudaEventCreateWithFlags(out, 0), "cudaEventCreateWithFlags");
    const outside = Number(out[0]);
    ok(rt.cudaEventRecord(outside, other), "cudaEventRecord");
    ok(rt.cudaStreamBeginCapture!(s, cudaStreamCaptureMode.global), "cudaStreamBeginCapture");
    ok(rt.cudaEventRecord(inside, s), "cudaEventRecord");
    expect(rt.cudaEventQuery(inside)).toBe(cudaError.capturedEvent);
    rt.cudaGetLastError();
    ok(rt.cudaStreamWaitEvent(s, inside, 0), "cudaStreamWaitEvent"); // within the capture: in order
    expect(status(s)).toBe(cudaStreamCaptureStatus.active);
    expect(rt.cudaStreamWaitEvent(other, inside, 0)).toBe(cudaError.notSupported); // cross-stream capture: not emulated
    rt.cudaGetLastError();
    expect(String(rt.bdemu_capture_error!())).toContain("cross-stream capture");
    expect(endCapture(s, cudaError.streamCaptureInvalidated)).toBe(0);
    ok(rt.cudaEventQuery(inside), "cudaEventQuery"); // the capture's records left with it

    ok(rt.cudaStreamBeginCapture!(s, cudaStreamCaptureMode.global), "cudaStreamBeginCapture");
    expect(rt.cudaStreamWaitEvent(s, outside, 0)).toBe(cudaError.streamCaptureIsolation);
    rt.cudaGetLastError();
    expect(endCapture(s, cudaError.streamCaptureInvalidated)).toBe(0);
    for (const e of [inside, outside]) ok(rt.cudaEventDestroy(e), "cudaEventDestroy");
    for (const x of [s, other]) ok(rt.cudaStreamDestroy(x), "cudaStreamDestroy");
  });

  test("capture state errors: begin twice, end without a capture, end from another thread is checked by mode", () => {
    const s = stream();
    expect(rt.cudaStreamEndCapture!(s, out)).toBe(cudaError.illegalState);
    rt.cudaGetLastError();
    expect(rt.cudaStreamBeginCapture!(s, 7)).toBe(cudaError.invalidValue);
    rt.cudaGetLastError();
    ok(rt.cudaStreamBeginCapture!(s, cudaStreamCaptureMode.global), "cudaStreamBeginCapture");
    expect(rt.cudaStreamBeginCapture!(s, cudaStreamCaptureMode.global)).toBe(cudaError.illegalState);
    rt.cudaGetLastError();
    const g = endCapture(s); // an empty capture is a valid (empty) graph
    const n = new BigUint64Array(1);
    ok(rt.cudaGraphGetNodes!(g, null, n), "cudaGraphGetNodes");
    expect(Number(n[0])).toBe(0);
    expect(rt.cudaGraphInstantiate!(out, g, 1n << 40n)).toBe(cudaError.invalidValue); // unknown flag
    rt.cudaGetLastError();
    ok(rt.cudaGraphDestroy!(g), "cudaGraphDestroy");
    expect(rt.cudaGraphDestroy!(g)).toBe(cudaError.invalidValue);
    rt.cudaGetLastError();
    ok(rt.cudaStreamDestroy(s), "cudaStreamDestroy");
  });
});
