// Public memory statistics per device: what tests and benchmarks read to prove that every
// tensor was released and to report peak usage.

import { getBackend, hasBackend } from "../backends/registry.ts";
import type { Device } from "../core/device.ts";
import type { MemoryStats } from "../core/memory-stats.ts";

export type { MemoryStats };

/** { live, peak, reserved, allocations } of a device's allocator (all zero for a device not loaded). */
export function memoryStats(device: Device = "cpu"): MemoryStats {
  if (!hasBackend(device)) return { live: 0, peak: 0, reserved: 0, allocations: 0 };
  return getBackend(device).memory.snapshot();
}

/** Start a new peak measurement from the current live bytes. */
export function resetPeakMemory(device: Device = "cpu"): void {
  if (hasBackend(device)) getBackend(device).memory.resetPeak();
}
