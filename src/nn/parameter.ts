// Parameter: a named module weight whose tensor can be replaced (loading onto another device or
// dtype, `Module.to()`); the previous tensor is disposed. Code reads `.value` at forward time. An optional
// access hook (setAccessHook, one per parameter, removable) runs on every read of `.value`: offload uses it to
// bring in weights that a parent's forward reads directly without calling the owning module.

import { type DType, type Device, type Tensor, dtypeBytes, keep } from "../tensor/index.ts";

/** A named, replaceable parameter tensor. */
export class Parameter {
  #value: Tensor;
  #onAccess: ((p: Parameter) => void) | null = null;

  constructor(value: Tensor) {
    this.#value = keep(value);
  }

  get value(): Tensor {
    if (this.#onAccess) this.#onAccess(this);
    return this.#value;
  }

  /** Run `fn` before every read of `.value` until the handle is removed; one hook per parameter. */
  setAccessHook(fn: (p: Parameter) => void): { remove(): void } {
    if (this.#onAccess) throw new Error("Parameter.setAccessHook: this parameter already has an access hook (remove it first)");
    this.#onAccess = fn;
    return { remove: () => void (this.#onAccess === fn && (this.#onAccess = null)) };
  }

  get shape(): readonly number[] {
    return this.#value.shape;
  }

  get dtype(): DType {
    return this.#value.dtype;
  }

  get device(): Device {
    return this.#value.device;
  }

  get numel(): number {
    return this.#value.numel;
  }

  /** Bytes of the parameter's storage in its current dtype. */
  get byteLength(): number {
    return this.#value.numel * dtypeBytes(this.#value.dtype);
  }

  /** Install a new tensor of the same shape; the previous one is disposed. */
  replace(t: Tensor): void {
    if (t.shape.length !== this.shape.length || t.shape.some((d, i) => d !== this.shape[i]))
      throw new Error(`Parameter.replace: shape [${t.shape.join(", ")}] differs from [${this.shape.join(", ")}]`);
    if (t === this.#value) return;
    const old = this.#value;
    this.#value = keep(t);
    old.dispose();
  }

  dispose(): void {
    this.#value.dispose();
  }
}
