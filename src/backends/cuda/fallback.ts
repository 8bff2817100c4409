// Host round trips: the few op/dtype combinations without kernels (integer reductions, byte-wise scatter_add,
// head dims beyond the attention kernel's) run on the CPU backend. Each use says why at its call site; all are
// rare in a diffusion pipeline and small. Also the byte transfers behind the backend's toHostBytes.

import type { TensorView } from "../backend.ts";
import { cpuBackend } from "../cpu/index.ts";
import { dtypeBytes } from "../../core/dtype.ts";
import { contiguousStrides, isContiguous, numel } from "../../core/shape.ts";
import { cudaContext, dptr, temp } from "./context.ts";
import { copy } from "./elementwise.ts";

/** Host bytes of a view's logical elements in row-major order (synchronous). */
export function downloadView(v: TensorView): Uint8Array {
  const n = numel(v.shape) * dtypeBytes(v.dtype);
  if (isContiguous(v.shape, v.strides)) return cudaContext().staging.download(dptr(v), n);
  const t = temp(v.shape, v.dtype);
  try {
    copy(v, t);
    return cudaContext().staging.download(dptr(t), n);
  } finally {
    t.free();
  }
}

/** dst (any strides) = host bytes of its logical elements in row-major order. */
export function uploadInto(dst: TensorView, bytes: Uint8Array): void {
  if (isContiguous(dst.shape, dst.strides)) return cudaContext().staging.upload(dptr(dst), bytes);
  const t = temp(dst.shape, dst.dtype);
  try {
    cudaContext().staging.upload(dptr(t), bytes);
    copy(t, dst);
  } finally {
    t.free();
  }
}

/**
 * Run a CPU backend computation on host copies of `inputs` (null stays null) and write its `outputs` back. The CPU
 * outputs start as copies of the device outputs (for ops that read them, like scatterAdd).
 */
export function viaCpu(
  inputs: (TensorView | null)[], outputs: TensorView[], fn: (ins: (TensorView | null)[], outs: TensorView[]) => void,
): void {
  const made: TensorView[] = [];
  const host = (v: TensorView): TensorView => {
    const storage = cpuBackend.fromHostBytes(downloadView(v), false);
    const h = { storage, dtype: v.dtype, shape: v.shape, strides: contiguousStrides(v.shape), offset: 0 };
    made.push(h);
    return h;
  };
  try {
    const ins = inputs.map((v) => (v ? host(v) : null));
    const outs = outputs.map(host);
    fn(ins, outs);
    outputs.forEach((o, i) => uploadInto(o, cpuBackend.toHostBytes(outs[i]!)));
  } finally {
    for (const h of made) h.storage.release();
  }
}
