// Helpers shared by the op files: device agreement, output allocation, broadcasting inputs
// to a common shape, and the dtype rules of binary ops.

import type { Backend } from "../../backends/backend.ts";
import { getBackend } from "../../backends/registry.ts";
import { type DType, isFloat } from "../../core/dtype.ts";
import type { Device } from "../../core/device.ts";
import { TensorError } from "../../core/errors.ts";
import { broadcastShapes, shapeEquals } from "../../core/shape.ts";
import { Tensor } from "../tensor.ts";

/** The one device all tensor arguments live on; throws naming the op and devices otherwise. */
export function commonDevice(op: string, ...ts: (Tensor | null | undefined)[]): Device {
  let device: Device | null = null;
  for (const t of ts) {
    if (!t) continue;
    if (t.isDisposed) throw new TensorError(`${op}: an argument was disposed`);
    if (device === null) device = t.device;
    else if (t.device !== device)
      throw new TensorError(`${op}: tensors are on different devices (${device} and ${t.device}); move them with .to(device)`);
  }
  if (device === null) throw new TensorError(`${op}: no tensor arguments`);
  return device;
}

export function backendFor(op: string, ...ts: (Tensor | null | undefined)[]): Backend {
  return getBackend(commonDevice(op, ...ts));
}

/** Require identical dtypes (no silent promotion between float widths). */
export function sameDType(op: string, ...ts: Tensor[]): DType {
  const d = ts[0]!.dtype;
  for (const t of ts)
    if (t.dtype !== d)
      throw new TensorError(`${op}: dtype mismatch (${ts.map((x) => x.dtype).join(" vs ")}); convert one with .to(dtype)`);
  return d;
}

export function requireFloat(op: string, t: Tensor): void {
  if (!isFloat(t.dtype)) throw new TensorError(`${op}: needs a floating-point tensor, got ${t.describe()}`);
}

/** Expand each tensor to the broadcast shape of all; returns new views (caller disposes). */
export function broadcastTo(op: string, ...ts: Tensor[]): { shape: number[]; views: Tensor[] } {
  let shape: number[];
  try {
    shape = broadcastShapes(...ts.map((t) => t.shape));
  } catch (e) {
    throw new TensorError(`${op}: ${(e as Error).message}`);
  }
  return { shape, views: ts.map((t) => (shapeEquals(t.shape, shape) ? t.reshape(t.shape) : t.expand(shape))) };
}

/** Run fn with temporary views and dispose them afterwards. */
export function withViews<T>(views: Tensor[], fn: (...v: Tensor[]) => T): T {
  try {
    return fn(...views);
  } finally {
    for (const v of views) v.dispose();
  }
}

export function disposeAll(...ts: (Tensor | null | undefined)[]): void {
  for (const t of ts) t?.dispose();
}

export { Tensor };
