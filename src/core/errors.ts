// Error classes of the tensor layer. Messages name the operation, shapes and dtypes involved
// and, where there is one, the fix.

export class TensorError extends Error {
  override name = "TensorError";
}

/**
 * Raised when a device allocator cannot satisfy a request, or (with `message`) when a run is refused
 * up front because its predicted need exceeds the memory available (then `requestedBytes` is the
 * need and `limitBytes` the memory available).
 */
export class OutOfMemoryError extends Error {
  override name = "OutOfMemoryError";
  constructor(
    readonly device: string,
    readonly requestedBytes: number,
    readonly liveBytes: number,
    readonly limitBytes: number | null,
    advice = "free tensors you no longer need (dispose / tidy), lower the batch size or resolution, or enable model offload, VAE tiling or token merging",
    message?: string,
  ) {
    super(
      message ??
        `out of memory on ${device}: tried to allocate ${formatBytes(requestedBytes)} with ${formatBytes(liveBytes)} live` +
          (limitBytes !== null ? ` of ${formatBytes(limitBytes)}` : "") +
          `; ${advice}`,
    );
  }
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}
