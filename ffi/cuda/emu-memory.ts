// The emulated device's memory capacity: `BD_CUDA_EMU_MEMORY` (a size such as "2GiB", "512MiB", "1.5GB" or plain
// bytes) sets how much the emulated cudart lets cudaMalloc take and what cudaMemGetInfo reports, so out-of-memory
// paths, the automatic offload choice and the memory planner are tested without a GPU. The emulated cudart reads
// the C environment variable BD_EMU_MEMORY_BYTES on every call (default 8 GiB); this file turns the readable
// form into it. A malformed value is an error naming the variable and the accepted forms.

import { setCEnv, unsetCEnv } from "../libc.ts";

const UNITS: Record<string, number> = {
  "": 1, b: 1,
  k: 1e3, kb: 1e3, m: 1e6, mb: 1e6, g: 1e9, gb: 1e9, t: 1e12, tb: 1e12,
  kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40,
};

/** Bytes of a size such as "2GiB", "512 MiB", "1.5GB", "4096"; throws a RangeError naming `what` otherwise. */
export function parseByteSize(text: string, what = "size"): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  const bytes = m && unit !== undefined ? Math.floor(Number(m[1]) * unit) : NaN;
  if (!(bytes > 0) || !Number.isSafeInteger(bytes))
    throw new RangeError(`${what}: ${JSON.stringify(text)} is not a size; use bytes or a number with KiB/MiB/GiB (or KB/MB/GB), e.g. "2GiB"`);
  return bytes;
}

/** Set the emulated device's capacity (a size as parseByteSize takes it, or bytes); null restores the default. */
export function setEmulatedMemoryLimit(size: string | number | null): void {
  if (size === null) {
    unsetCEnv("BD_EMU_MEMORY_BYTES");
    return;
  }
  const bytes = typeof size === "number" ? size : parseByteSize(size, "BD_CUDA_EMU_MEMORY");
  if (!(Number.isSafeInteger(bytes) && bytes > 0)) throw new RangeError(`emulated memory limit must be a positive number of bytes, got ${size}`);
  if (!setCEnv("BD_EMU_MEMORY_BYTES", String(bytes))) throw new Error("cannot set BD_EMU_MEMORY_BYTES: libc's setenv is not reachable through bun:ffi");
}

/** Apply BD_CUDA_EMU_MEMORY from the process environment, when set (loadCuda does, for the emulated device). */
export function applyEmulatedMemoryEnv(): void {
  const v = process.env.BD_CUDA_EMU_MEMORY;
  if (v !== undefined && v !== "") setEmulatedMemoryLimit(v);
}
