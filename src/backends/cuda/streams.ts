// Streams, events and host↔device transfers of the CUDA backend. Kernels, cuBLAS and cuDNN run on the compute
// stream; uploads and downloads run on the copy stream through a ring of pinned (page-locked) staging buffers, so
// host bytes of any origin (a memory-mapped safetensors file, a typed array) reach the device with DMA and the
// next chunk is staged while the previous one is in flight:
//
//   upload:   compute → event → copy waits (the destination may be memory whose previous use is still queued);
//             per chunk: wait for the slot's last copy, memcpy host → slot, cudaMemcpyAsync slot → device on copy,
//             record the slot's event; finally compute waits for the copy stream. Returns without waiting for
//             the device: the source bytes were copied into the ring. Uploads of at most 64 KiB go through
//             small-uploads.ts instead (compute stream, no blocking wait for a slot).
//   download: copy waits for compute; chunks device → slot on copy; the host drains slot i while chunk i+1 is in
//             flight. Synchronous (returns the bytes): a synchronisation point, so the deferred device errors
//             (deferred-errors.ts) are read back on compute before it and checked after it.
//
// Neither can be part of a CUDA graph: both refuse while a capture is under way (graph-state.ts).
//
// Ring: BD_CUDA_STAGING_BYTES per slot (default 8 MiB), 2 slots, allocated on first use with cudaMallocHost and
// read / written from JavaScript through a zero-copy ArrayBuffer over the pinned memory.

import { toArrayBuffer, type Pointer } from "bun:ffi";
import type { CudaLibraries } from "../../../ffi/cuda/index.ts";
import { cudaEventDisableTiming, cudaMemcpyKind, cudaStreamNonBlocking } from "../../../ffi/cuda/cudart.ts";
import { refuseDuringCapture } from "./graph-state.ts";
import { SmallUploads } from "./small-uploads.ts";

type Rt = CudaLibraries["cudart"]["symbols"];

export class CudaStreams {
  readonly compute: number;
  readonly copy: number;
  private readonly rt: Rt;
  private readonly out = new BigUint64Array(1);
  /** Spare events for one-off "b waits for a" orderings. */
  private readonly spare: number[] = [];
  /** Events recorded so far (tests: ordering is visible). */
  recorded = 0;

  constructor(private readonly libs: CudaLibraries) {
    this.rt = libs.cudart.symbols;
    this.compute = this.createStream();
    this.copy = this.createStream();
  }

  private createStream(): number {
    this.libs.check(this.rt.cudaStreamCreateWithFlags(this.out, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    return Number(this.out[0]);
  }

  /** A new event without timing (cheapest to record and wait on). */
  createEvent(timing = false): number {
    this.libs.check(this.rt.cudaEventCreateWithFlags(this.out, timing ? 0 : cudaEventDisableTiming), "cudaEventCreateWithFlags");
    return Number(this.out[0]);
  }

  record(event: number, stream: number): void {
    this.libs.check(this.rt.cudaEventRecord(event, stream), "cudaEventRecord");
    this.recorded++;
  }

  /** `waiter` runs its later work only after everything queued on `stream` so far. */
  wait(waiter: number, stream: number): void {
    if (waiter === stream) return;
    const ev = this.spare.pop() ?? this.createEvent();
    try {
      this.record(ev, stream);
      this.libs.check(this.rt.cudaStreamWaitEvent(waiter, ev, 0), "cudaStreamWaitEvent");
    } finally {
      this.spare.push(ev); // re-recording later does not affect a wait already queued
    }
  }

  synchronize(stream: number): void {
    this.libs.check(this.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  }

  eventSynchronize(event: number): void {
    this.libs.check(this.rt.cudaEventSynchronize(event), "cudaEventSynchronize");
  }
}

interface Slot {
  ptr: number;
  bytes: Uint8Array;
  event: number;
  /** A copy from / to this slot was queued and not yet waited for. */
  busy: boolean;
}

/** Ring of pinned host buffers for uploads and downloads on the copy stream. */
export class PinnedStaging {
  private slots: Slot[] | null = null;
  private next = 0;
  /** Bytes moved each way (tests, benchmarks). */
  readonly stats = { uploads: 0, uploadBytes: 0, downloads: 0, downloadBytes: 0, chunks: 0 };
  /** Checked around each download (the context sets it). */
  deferred: { queueReadback(): void; verify(): void } | null = null;
  readonly small: SmallUploads;

  constructor(
    private readonly libs: CudaLibraries,
    private readonly streams: CudaStreams,
    readonly slotBytes = Number(process.env.BD_CUDA_STAGING_BYTES) || 8 << 20,
    readonly slotCount = 2,
  ) {
    this.small = new SmallUploads(libs, streams);
  }

  private ring(): Slot[] {
    if (this.slots) return this.slots;
    const rt = this.libs.cudart.symbols;
    const out = new BigUint64Array(1);
    const slots: Slot[] = [];
    for (let i = 0; i < this.slotCount; i++) {
      this.libs.check(rt.cudaMallocHost(out, this.slotBytes), "cudaMallocHost", `${this.slotBytes} bytes of pinned staging`);
      const ptr = Number(out[0]);
      slots.push({ ptr, bytes: new Uint8Array(toArrayBuffer(ptr as Pointer, 0, this.slotBytes)), event: this.streams.createEvent(), busy: false });
    }
    return (this.slots = slots);
  }

  private slot(): Slot {
    const ring = this.ring();
    const s = ring[this.next]!;
    this.next = (this.next + 1) % ring.length;
    if (s.busy) {
      this.streams.eventSynchronize(s.event);
      s.busy = false;
    }
    return s;
  }

  /** device[dst, dst + src.length) = src, in stream order before later compute work. */
  upload(dst: number, src: Uint8Array): void {
    const n = src.byteLength;
    if (n === 0) return;
    refuseDuringCapture(`a host → device upload of ${n} bytes`);
    if (this.small.upload(dst, src)) {
      this.stats.uploads++;
      this.stats.uploadBytes += n;
      return;
    }
    const rt = this.libs.cudart.symbols;
    const { compute, copy } = this.streams;
    this.streams.wait(copy, compute);
    for (let off = 0; off < n; off += this.slotBytes) {
      const len = Math.min(this.slotBytes, n - off);
      const s = this.slot();
      s.bytes.set(src.subarray(off, off + len));
      this.libs.check(rt.cudaMemcpyAsync(dst + off, s.ptr, len, cudaMemcpyKind.hostToDevice, copy), "cudaMemcpyAsync", `upload of ${len} bytes`);
      this.streams.record(s.event, copy);
      s.busy = true;
      this.stats.chunks++;
    }
    this.streams.wait(compute, copy);
    this.stats.uploads++;
    this.stats.uploadBytes += n;
  }

  /** Host copy of device[src, src + n), after all compute work queued so far. */
  download(src: number, n: number, into = new Uint8Array(n)): Uint8Array {
    if (n === 0) return into;
    refuseDuringCapture(`a device → host download of ${n} bytes (a synchronisation)`);
    const rt = this.libs.cudart.symbols;
    const { compute, copy } = this.streams;
    this.deferred?.queueReadback();
    this.streams.wait(copy, compute);
    const pending: { s: Slot; off: number; len: number }[] = [];
    const drain = () => {
      const p = pending.shift()!;
      this.streams.eventSynchronize(p.s.event);
      p.s.busy = false;
      into.set(p.s.bytes.subarray(0, p.len), p.off);
    };
    for (let off = 0; off < n; off += this.slotBytes) {
      if (pending.length === this.slotCount) drain();
      const len = Math.min(this.slotBytes, n - off);
      const s = this.slot();
      this.libs.check(rt.cudaMemcpyAsync(s.ptr, src + off, len, cudaMemcpyKind.deviceToHost, copy), "cudaMemcpyAsync", `download of ${len} bytes`);
      this.streams.record(s.event, copy);
      s.busy = true;
      pending.push({ s, off, len });
      this.stats.chunks++;
    }
    while (pending.length) drain();
    this.stats.downloads++;
    this.stats.downloadBytes += n;
    this.deferred?.verify();
    return into;
  }
}
