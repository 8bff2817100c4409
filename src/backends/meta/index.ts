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
  conv2d: nothing,
  attention: nothing,
  groupNorm: nothing,
  layerNorm: nothing,
  upsampleNearest2d: nothing,
  indexSelect: nothing,
  gather: nothing,
  scatterAdd: nothing,
  argsort: nothing,
};
