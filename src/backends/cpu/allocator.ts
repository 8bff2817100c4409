// CPU allocator: ArrayBuffers counted in the CPU MemoryTracker, so tests can assert that live
// bytes return to their starting value. Borrowed host bytes (memory-mapped weights) are not
// counted: they belong to the file mapping, not to us.

import { Storage } from "../../core/storage.ts";
import { MemoryTracker } from "../../core/memory-stats.ts";
import { OutOfMemoryError } from "../../core/errors.ts";

export const cpuMemory = new MemoryTracker("cpu");

/** Largest single CPU allocation we attempt (ArrayBuffer limit in JSC is well above this). */
const MAX_BYTES = 2 ** 40;

export function allocateCpu(byteLength: number): Storage {
  if (byteLength > MAX_BYTES) throw new OutOfMemoryError("cpu", byteLength, cpuMemory.live, null);
  // Round up to 8 bytes so every dtype view of the buffer is aligned.
  const size = Math.max(8, Math.ceil(byteLength / 8) * 8);
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(new ArrayBuffer(size), 0, byteLength);
  } catch {
    throw new OutOfMemoryError("cpu", byteLength, cpuMemory.live, null);
  }
  cpuMemory.onAlloc(byteLength);
  return new Storage("cpu", byteLength, bytes, () => cpuMemory.onFree(byteLength));
}

/** Wrap host bytes without copying (caller guarantees they outlive the storage). */
export function borrowCpu(bytes: Uint8Array): Storage {
  return new Storage("cpu", bytes.byteLength, bytes, null);
}
