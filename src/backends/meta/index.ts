// The meta backend: storages with a size but no bytes, and ops that compute nothing. Models
// built on "meta" have every parameter name and shape without allocating weights, and a
// pipeline run on meta answers "how much memory would this need" from the tracker's peak.

import type { Backend } from "../backend.ts";
import { MemoryTracker } from "../../core/memory-stats.ts";
import { Storage } from "../../core/storage.ts";
import { TensorError } from "../../core/errors.ts";

const metaMemory = new MemoryTracker("meta");

function allocate(byteLength: number): Storage {
  metaMemory.onAlloc(byteLength);
  return new Storage("meta", byteLength, null, () => metaMemory.onFree(byteLength));
}

const nothing = (): void => {};

/**
 * The backend whose own allocations meta models while planning (null: none): an op whose backend reports scratch
 * bytes (conv2dScratchBytes) allocates and frees that much here, so a meta peak includes the target's workspaces.
 */
let scratchModel: Backend | null = null;

/** Model `b`'s op scratch on meta while `fn` runs (nests; restored afterwards). */
export function withMetaScratchModel<T>(b: Backend | null, fn: () => T): T {
  const was = scratchModel;
  scratchModel = b;
  try {
    return fn();
  } finally {
    scratchModel = was;
  }
}

function transient(bytes: number): void {
  if (bytes <= 0) return;
  metaMemory.onAlloc(bytes);
  metaMemory.onFree(bytes);
}

export const metaBackend: Backend = {
  device: "meta",
  memory: metaMemory,
  allocate,
  fromHostBytes: (bytes) => allocate(bytes.byteLength),
  toHostBytes: () => {
    throw new TensorError("meta tensors have no values; move real data to a device with .to(\"cpu\")");
  },
  copy: nothing,
  fill: nothing,
  unary: nothing,
  binary: nothing,
  binaryScalar: nothing,
  where: nothing,
  reduce: nothing,
  softmax: nothing,
  matmul: nothing,
  linear: nothing,
  conv2d: (x, w, _bias, out, p) => transient(scratchModel?.conv2dScratchBytes?.(x, w, out, p) ?? 0),
  attention: nothing,
  groupNorm: nothing,
  layerNorm: nothing,
  upsampleNearest2d: nothing,
  indexSelect: nothing,
  gather: nothing,
  scatterAdd: nothing,
  argsort: nothing,
};
