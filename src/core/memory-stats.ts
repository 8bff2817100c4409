// Per-device allocator statistics: live bytes (held by tensors), peak live bytes since the
// last reset, and reserved bytes (held by the allocator, live or cached). Every memory test
// and benchmark reads these.

import type { Device } from "./device.ts";

export interface MemoryStats {
  live: number;
  peak: number;
  reserved: number;
  /** number of live allocations */
  allocations: number;
}

export class MemoryTracker {
  live = 0;
  peak = 0;
  reserved = 0;
  allocations = 0;
  /** The largest single allocation since the last resetPeak (not part of the snapshot). */
  largest = 0;

  constructor(readonly device: Device) {}

  onAlloc(bytes: number, reservedDelta = bytes): void {
    this.live += bytes;
    this.allocations++;
    this.reserved += reservedDelta;
    if (this.live > this.peak) this.peak = this.live;
    if (bytes > this.largest) this.largest = bytes;
  }

  onFree(bytes: number, reservedDelta = bytes): void {
    this.live -= bytes;
    this.allocations--;
    this.reserved -= reservedDelta;
  }

  snapshot(): MemoryStats {
    return { live: this.live, peak: this.peak, reserved: this.reserved, allocations: this.allocations };
  }

  resetPeak(): void {
    this.peak = this.live;
    this.largest = 0;
  }
}
