// Small host → device uploads without a host synchronisation: the per-step scalars of a denoising loop (the
// sinusoidal time embedding, SDXL's micro-conditioning) are a few KiB each, and the staging ring of streams.ts
// would wait for a busy slot's event (cudaEventSynchronize) to reuse it. Here each upload of at most
// SMALL_UPLOAD_BYTES takes the next bytes of one pinned arena (bump allocation, wrapping), is copied on the compute
// stream (ordered with the kernels that use it, so no cross-stream wait either), and records an event. Before
// bytes are reused their region's event is *queried* (cudaEventQuery does not block); when a region is still in
// flight the upload returns false and the caller takes the staged path. With a 1 MiB arena that happens only
// when more than 1 MiB of small uploads are queued ahead of the device.

import { toArrayBuffer, type Pointer } from "bun:ffi";
import type { CudaLibraries } from "../../../ffi/cuda/index.ts";
import { cudaError, cudaMemcpyKind } from "../../../ffi/cuda/cudart.ts";

export const SMALL_UPLOAD_BYTES = 64 << 10;
const ARENA_BYTES = 1 << 20;
const ALIGN = 256;

/** What this needs of streams.ts's CudaStreams (not imported: streams.ts imports this file). */
interface Streams {
  readonly compute: number;
  createEvent(): number;
  record(event: number, stream: number): void;
}

interface Region {
  start: number;
  end: number;
  event: number;
}

export class SmallUploads {
  private base = 0;
  private bytes: Uint8Array | null = null;
  private head = 0;
  /** Regions in allocation order whose copies may still be in flight. */
  private readonly inFlight: Region[] = [];
  private readonly spareEvents: number[] = [];
  /** Uploads taken here / declined because the arena was still in flight (tests). */
  readonly stats = { uploads: 0, declined: 0 };

  constructor(
    private readonly libs: CudaLibraries,
    private readonly streams: Streams,
  ) {}

  private arena(): Uint8Array {
    if (this.bytes) return this.bytes;
    const out = new BigUint64Array(1);
    this.libs.check(this.libs.cudart.symbols.cudaMallocHost(out, ARENA_BYTES), "cudaMallocHost", `${ARENA_BYTES} bytes of pinned small-upload arena`);
    this.base = Number(out[0]);
    return (this.bytes = new Uint8Array(toArrayBuffer(this.base as Pointer, 0, ARENA_BYTES)));
  }

  /**
   * Retire regions overlapping [start, end): they are the oldest (the arena is a ring), and their events complete
   * in order (one stream), so the front is queried until none overlaps; false when one is still in flight.
   */
  private free(start: number, end: number): boolean {
    const rt = this.libs.cudart.symbols;
    while (this.inFlight.some((r) => r.start < end && r.end > start)) {
      const r = this.inFlight[0]!;
      const st = rt.cudaEventQuery(r.event);
      if (st === cudaError.notReady) return false;
      this.libs.check(st, "cudaEventQuery", "small upload region");
      this.inFlight.shift();
      this.spareEvents.push(r.event);
    }
    return true;
  }

  /** device[dst, dst + src.length) = src on the compute stream; false if it must take the staged path. */
  upload(dst: number, src: Uint8Array): boolean {
    const n = src.byteLength;
    if (n === 0 || n > SMALL_UPLOAD_BYTES) return false;
    const arena = this.arena();
    const size = Math.ceil(n / ALIGN) * ALIGN;
    let start = this.head;
    if (start + size > ARENA_BYTES) start = 0;
    if (!this.free(start, start + size)) {
      this.stats.declined++;
      return false;
    }
    arena.set(src, start);
    const rt = this.libs.cudart.symbols;
    const compute = this.streams.compute;
    this.libs.check(rt.cudaMemcpyAsync(dst, this.base + start, n, cudaMemcpyKind.hostToDevice, compute), "cudaMemcpyAsync", `upload of ${n} bytes`);
    const event = this.spareEvents.pop() ?? this.streams.createEvent();
    this.streams.record(event, compute);
    this.inFlight.push({ start, end: start + size, event });
    this.head = start + size;
    this.stats.uploads++;
    return true;
  }
}
