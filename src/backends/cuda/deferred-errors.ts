// Deferred device-side errors: kernels that find bad input they cannot throw on (out-of-range indices, kernels/
// index.cu) raise a flag in a slot of one persistent device array instead of the host reading a flag back after
// every launch (a synchronisation per index op). Each checked launch takes the next slot and records what it was
// (op, shapes); at the backend's next synchronisation point (a download, cudaSynchronize) the used slots are
// copied to pinned host memory on the compute stream *before* that sync, checked after it, and cleared in stream
// order. A raised slot becomes an Error naming the op that raised it and the offending index, thrown from the sync
// point. Slots run out only after SLOTS checked launches without a sync; the next launch then checks
// synchronously first. A checked launch cannot be part of a CUDA graph (graph-state.ts).
//
// Slot layout (kernels/index.cu raise_bad): long long[2] = { raised (0 / 1), offending index }.

import { toArrayBuffer, type Pointer } from "bun:ffi";
import type { CudaLibraries } from "../../../ffi/cuda/index.ts";
import { cudaMemcpyKind } from "../../../ffi/cuda/cudart.ts";
import { refuseDuringCapture } from "./graph-state.ts";

const SLOTS = 256;
const SLOT_BYTES = 16;

interface Pending {
  op: string;
  /** "for dim 0 of size 4": where the index had to lie. */
  range: string;
}

export class DeferredErrors {
  private device = 0;
  private host: BigInt64Array | null = null;
  private readonly pending: Pending[] = [];
  /** Slots whose readback is queued (the first `queued` of pending). */
  private queued = 0;
  /** Synchronous checks forced by running out of slots (tests). */
  forcedChecks = 0;

  constructor(
    private readonly libs: CudaLibraries,
    private readonly compute: number,
    private readonly synchronize: () => void,
  ) {}

  private ensure(): void {
    if (this.device) return;
    const rt = this.libs.cudart.symbols;
    const out = new BigUint64Array(1);
    this.libs.check(rt.cudaMalloc(out, SLOTS * SLOT_BYTES), "cudaMalloc", "deferred error flags");
    this.device = Number(out[0]);
    this.libs.check(rt.cudaMemsetAsync(this.device, 0, SLOTS * SLOT_BYTES, this.compute), "cudaMemsetAsync", "deferred error flags");
    this.libs.check(rt.cudaMallocHost(out, SLOTS * SLOT_BYTES), "cudaMallocHost", "deferred error flags");
    this.host = new BigInt64Array(toArrayBuffer(Number(out[0]) as Pointer, 0, SLOTS * SLOT_BYTES));
  }

  /** The device address of a fresh slot for one launch of `op`; its error, if raised, names op and range. */
  slot(op: string, range: string): number {
    refuseDuringCapture(`${op} (its index bounds are checked through a deferred device flag that a replay would raise unseen)`);
    this.ensure();
    if (this.pending.length === SLOTS) {
      this.forcedChecks++;
      this.queueReadback();
      this.synchronize();
      this.verify();
    }
    this.pending.push({ op, range });
    return this.device + (this.pending.length - 1) * SLOT_BYTES;
  }

  /** Queue the copy of every used slot to the host on the compute stream (before a synchronisation). */
  queueReadback(): void {
    this.queued = this.pending.length;
    if (!this.queued) return;
    const rt = this.libs.cudart.symbols;
    this.libs.check(rt.cudaMemcpyAsync(this.host!, this.device, this.queued * SLOT_BYTES, cudaMemcpyKind.deviceToHost, this.compute),
      "cudaMemcpyAsync", "deferred error flags readback");
    this.libs.check(rt.cudaMemsetAsync(this.device, 0, this.queued * SLOT_BYTES, this.compute), "cudaMemsetAsync", "deferred error flags reset");
  }

  /** After the synchronisation: throw the first raised error among the slots read back, and free them. */
  verify(): void {
    const n = this.queued;
    if (!n) return;
    this.queued = 0;
    const done = this.pending.splice(0, n);
    const host = this.host!;
    const raised: string[] = [];
    for (let i = 0; i < n; i++)
      if (host[2 * i] !== 0n) raised.push(`${done[i]!.op}: index ${host[2 * i + 1]} is out of range ${done[i]!.range}`);
    if (raised.length === 0) return;
    const more = raised.length > 1 ? ` (and ${raised.length - 1} more launch${raised.length > 2 ? "es" : ""}: ${raised.slice(1).join("; ")})` : "";
    throw new Error(`${raised[0]}${more} [raised on the device, reported at the next synchronisation]`);
  }

  /** Slots taken since the last check (tests). */
  get outstanding(): number {
    return this.pending.length;
  }
}
