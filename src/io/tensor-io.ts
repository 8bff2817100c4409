// Tensors to and from safetensors: a TensorEntry (zero-copy bytes of a mapped file) becomes a
// Tensor on any device and dtype, converting on upload; a set of tensors is saved atomically.

import { TensorError } from "../core/errors.ts";
import type { DType } from "../core/dtype.ts";
import type { Device } from "../core/device.ts";
import { fromRaw } from "../tensor/creation.ts";
import type { Tensor } from "../tensor/tensor.ts";
import {
  type TensorEntry,
  type TensorInput,
  copyAligned,
  fromDType,
  isAligned,
  requireDType,
  writeSafetensors,
} from "./safetensors.ts";

export interface EntryToTensorOptions {
  dtype?: DType;
  device?: Device;
}

/**
 * A tensor holding an entry's values. The bytes are copied once into device memory (CPU: one
 * aligned copy; the mapping itself is never modified), then converted when `dtype` differs.
 */
export function entryToTensor(entry: TensorEntry, opts: EntryToTensorOptions = {}): Tensor {
  const stored = requireDType(entry.dtype, `tensor "${entry.name}"`);
  const bytes = isAligned(entry) ? entry.data : copyAligned(entry);
  const t = fromRaw(bytes, entry.shape, stored, opts.device ?? "cpu");
  if (!opts.dtype || opts.dtype === stored) return t;
  try {
    return t.to(opts.dtype);
  } finally {
    t.dispose();
  }
}

/** Save tensors to a .safetensors file (written to a temporary name, then renamed). */
export async function saveTensors(path: string, tensors: Record<string, Tensor>, metadata?: Record<string, string>): Promise<void> {
  const inputs: Record<string, TensorInput> = {};
  for (const [name, t] of Object.entries(tensors)) {
    if (t.device === "meta") throw new TensorError(`saveTensors: "${name}" is a meta tensor and has no values`);
    const raw = t.toRawArray();
    inputs[name] = { dtype: fromDType(t.dtype), shape: [...t.shape], data: raw };
  }
  await writeSafetensors(path, inputs, metadata);
}
