// Public memory statistics per device: what tests and benchmarks read to prove that every
// tensor was released and to report peak usage; the memory a device can still give; and
// measureMemory(), which runs a function (on "meta": shapes only) and reports its peak.

import type { DeviceMemory } from "../backends/backend.ts";
import { withMetaScratchModel } from "../backends/meta/index.ts";
import { getBackend, hasBackend } from "../backends/registry.ts";
import type { Device } from "../core/device.ts";
import type { MemoryStats } from "../core/memory-stats.ts";

export type { MemoryStats, DeviceMemory };

/** { live, peak, reserved, allocations } of a device's allocator (all zero for a device not loaded). */
export function memoryStats(device: Device = "cpu"): MemoryStats {
  if (!hasBackend(device)) return { live: 0, peak: 0, reserved: 0, allocations: 0 };
  return getBackend(device).memory.snapshot();
}

/** Start a new peak measurement from the current live bytes. */
export function resetPeakMemory(device: Device = "cpu"): void {
  if (hasBackend(device)) getBackend(device).memory.resetPeak();
}

/** What `device` can still allocate (null for a device not loaded or one that holds no memory, e.g. meta). */
export function memoryAvailable(device: Device = "cpu"): DeviceMemory | null {
  if (!hasBackend(device)) return null;
  return getBackend(device).availableMemory?.() ?? null;
}

/**
 * Run `fn` and report the highest live bytes above the starting point on `device` while it ran
 * (`peak`) and its largest single allocation (`largest`). The device's own peak statistics are
 * restored afterwards, so a measurement does not disturb the caller's.
 */
export function measureMemory<T>(device: Device, fn: () => T): { result: T; peak: number; largest: number } {
  const m = getBackend(device).memory;
  const [peak0, largest0, live0] = [m.peak, m.largest, m.live];
  m.peak = m.live;
  m.largest = 0;
  try {
    const result = fn();
    return { result, peak: m.peak - live0, largest: m.largest };
  } finally {
    m.peak = Math.max(peak0, m.live);
    m.largest = largest0;
  }
}

/**
 * Run `fn` on "meta" (shapes only) as if for `target`: ops that allocate their own scratch on `target` (cuDNN
 * workspaces, contiguous copies) allocate that much on meta too, so `measureMemory("meta", …)` inside `fn`
 * predicts `target`'s allocator peak. A target that is not loaded (or the CPU, whose scratch lives outside its
 * allocator) adds nothing.
 */
export function planAs<T>(target: Device, fn: () => T): T {
  return withMetaScratchModel(target !== "meta" && hasBackend(target) ? getBackend(target) : null, fn);
}
