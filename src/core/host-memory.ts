// Host (JavaScript heap) allocations outside the CPU allocator: scratch and host copies made with
// typed arrays (random draws, host copies of tensors, kernel scratch, image bytes). JavaScriptCore
// signals a failed typed-array allocation with a RangeError ("Out of memory", also for any single
// buffer over its ArrayBuffer maximum); hostAlloc turns that into our OutOfMemoryError naming what
// was being allocated, so no failure reaches the caller as the engine's raw error.

import { OutOfMemoryError, formatBytes } from "./errors.ts";

/**
 * The largest single ArrayBuffer JavaScriptCore allocates: 4 GiB (measured on Bun 1.4.5:
 * `new ArrayBuffer(2 ** 32)` succeeds, `2 ** 32 + 8` throws; test/backends/cpu/host-memory.test.ts
 * keeps it true). One CPU tensor therefore holds at most this many bytes.
 */
export const MAX_HOST_BUFFER_BYTES = 2 ** 32;

let liveBytes: () => number = () => 0;

/** The CPU allocator reports its live bytes through this (for error messages). */
export function setHostLiveBytes(probe: () => number): void {
  liveBytes = probe;
}

/** Run `make` (which allocates about `bytes` bytes of typed arrays); a RangeError becomes an OutOfMemoryError. */
export function hostAlloc<T>(bytes: number, what: string, make: () => T): T {
  try {
    return make();
  } catch (e) {
    if (e instanceof RangeError) throw hostOutOfMemory(bytes, what);
    throw e;
  }
}

/** The OutOfMemoryError for a host buffer of `bytes` that could not be allocated. */
export function hostOutOfMemory(bytes: number, what: string): OutOfMemoryError {
  const tooBig = bytes > MAX_HOST_BUFFER_BYTES;
  return new OutOfMemoryError(
    "cpu",
    bytes,
    liveBytes(),
    null,
    tooBig
      ? `${what}: one host buffer holds at most ${formatBytes(MAX_HOST_BUFFER_BYTES)} (JavaScriptCore's ArrayBuffer maximum); lower the resolution or batch size`
      : `${what}: the JavaScript heap could not allocate it; free tensors you no longer need, lower the resolution or batch size`,
  );
}
