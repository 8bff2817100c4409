// The offload layer's public surface: model CPU offload (whole components move to the device in pipeline order)
// and sequential CPU offload (each parameter-owning module's weights are uploaded around its forward, with a
// bounded prefetch look-ahead), both installed as removable forward hooks; the pipelines layer installs them.

import type { Device } from "../tensor/index.ts";
import type { SequentialOffloadOptions } from "./sequential-offload.ts";

export { HostWeights, ownParameters } from "./host-weights.ts";
export { type ModelOffloadHandle, installModelOffload } from "./model-offload.ts";
export { type SequentialOffloadHandle, type SequentialOffloadOptions, installSequentialOffload } from "./sequential-offload.ts";

/**
 * Default prefetch look-ahead of sequential offload: 64 MiB, a few UNet blocks' weights of SD 1.5 in float16 (its
 * largest leaves are ~6.5 MB convolutions and 10 MB feed-forward projections), so the copy stream stays ahead of the
 * compute stream while the resident window stays a small fraction of the ≤ 1 GB target.
 */
export const DEFAULT_PREFETCH_BYTES = 64 << 20;

export const CPU_OFFLOAD_ERROR = "CPU offload needs a CUDA device: on the CPU the weights already live in host memory";

/** Raise the clear error for offload on a device whose weights are already host memory. */
export function assertOffloadDevice(device: Device, method: string): void {
  if (device === "cpu") throw new Error(`${method}: ${CPU_OFFLOAD_ERROR}`);
  if (device === "meta") throw new Error(`${method}: a meta pipeline holds no weights to offload (plan({ offload }) models offload instead)`);
}

/** Resolve and check enableSequentialCpuOffload's options. */
export function resolveSequentialOptions(opts: { prefetch?: boolean; prefetchBytes?: number } = {}): SequentialOffloadOptions {
  const known = new Set(["prefetch", "prefetchBytes"]);
  for (const k of Object.keys(opts))
    if (!known.has(k)) throw new Error(`enableSequentialCpuOffload: unknown option "${k}" (options: prefetch, prefetchBytes)`);
  if (opts.prefetch !== undefined && typeof opts.prefetch !== "boolean")
    throw new Error(`enableSequentialCpuOffload: prefetch must be true or false, got ${JSON.stringify(opts.prefetch)}`);
  const prefetch = opts.prefetch ?? true;
  const b = opts.prefetchBytes;
  if (b !== undefined && (typeof b !== "number" || !Number.isInteger(b) || b < 0))
    throw new Error(`enableSequentialCpuOffload: prefetchBytes must be a whole number of bytes ≥ 0, got ${JSON.stringify(b)}`);
  if (b !== undefined && b > 0 && !prefetch)
    throw new Error(`enableSequentialCpuOffload: prefetchBytes ${b} given with prefetch: false; drop one of them`);
  return { prefetch, prefetchBytes: prefetch ? (b ?? DEFAULT_PREFETCH_BYTES) : 0 };
}
