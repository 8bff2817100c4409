// CPU allocator: ArrayBuffers counted in the CPU MemoryTracker, so tests can assert that live
// bytes return to their starting value. Borrowed host bytes (memory-mapped weights) are not
// counted: they belong to the file mapping, not to us. A failed allocation (JavaScriptCore's
// RangeError, or a request over its 4 GiB ArrayBuffer maximum) is an OutOfMemoryError. The memory
// available for new tensors is the kernel's MemAvailable (os.freemem), capped by the process's
// memory limit (cgroup) when Bun reports one; swap is not counted.

import os from "node:os";
import type { DeviceMemory } from "../backend.ts";
import { Storage } from "../../core/storage.ts";
import { MemoryTracker } from "../../core/memory-stats.ts";
import { MAX_HOST_BUFFER_BYTES, hostOutOfMemory, setHostLiveBytes } from "../../core/host-memory.ts";

export const cpuMemory = new MemoryTracker("cpu");
setHostLiveBytes(() => cpuMemory.live);

export function allocateCpu(byteLength: number): Storage {
  if (byteLength > MAX_HOST_BUFFER_BYTES) throw hostOutOfMemory(byteLength, "a CPU tensor");
  // Round up to 8 bytes so every dtype view of the buffer is aligned.
  const size = Math.max(8, Math.ceil(byteLength / 8) * 8);
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(new ArrayBuffer(size), 0, byteLength);
  } catch (e) {
    if (e instanceof RangeError) throw hostOutOfMemory(byteLength, "a CPU tensor");
    throw e;
  }
  cpuMemory.onAlloc(byteLength);
  return new Storage("cpu", byteLength, bytes, () => cpuMemory.onFree(byteLength));
}

/** Wrap host bytes without copying (caller guarantees they outlive the storage). */
export function borrowCpu(bytes: Uint8Array): Storage {
  return new Storage("cpu", bytes.byteLength, bytes, null);
}

type ProcessMemory = { constrainedMemory?: () => number; availableMemory?: () => number };

/** Memory the CPU backend can still allocate (see the header). */
export function cpuAvailableMemory(): DeviceMemory {
  const p = process as unknown as ProcessMemory;
  let available = os.freemem();
  let total = os.totalmem();
  const limit = p.constrainedMemory?.() ?? 0; // 0 or the host's total when there is no cgroup limit
  if (limit > 0 && limit < total) total = limit;
  const processAvailable = p.availableMemory?.();
  if (typeof processAvailable === "number" && processAvailable > 0) available = Math.min(available, processAvailable);
  return {
    available,
    total,
    maxAllocation: MAX_HOST_BUFFER_BYTES,
    source: "free memory: MemAvailable within the process memory limit, swap not counted",
  };
}
