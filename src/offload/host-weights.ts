// HostWeights: the host-memory home of a set of parameters for offloading. Each parameter's tensor is copied to
// the CPU once (install) and kept there; "upload" installs a device copy made from that host tensor
// (Parameter.replace, so model code keeps reading `.value`), "release" installs a view of the host tensor again,
// which disposes the device copy. remove() puts a device copy back for good and frees the host copies. Only
// public tensor APIs are used: Tensor.to moves bytes through the backend's host→device path (the CUDA backend's
// pinned staging ring on its copy stream).

import type { Parameter } from "../nn/parameter.ts";
import { type Device, type Tensor, keep } from "../tensor/index.ts";

export class HostWeights {
  readonly #host = new Map<Parameter, Tensor>();
  readonly #device: Device;

  /** Take `params` (currently on `device`) into host memory; their device copies are freed. */
  constructor(params: Iterable<Parameter>, device: Device) {
    this.#device = device;
    for (const p of params) {
      if (this.#host.has(p)) continue;
      const host = keep(p.value.to("cpu"));
      this.#host.set(p, host);
      p.replace(host.to("cpu")); // a view of the host copy; the device tensor is disposed
    }
  }

  has(p: Parameter): boolean {
    return this.#host.has(p);
  }

  /** Bytes of `params` (as stored on the host). */
  bytes(params: Iterable<Parameter>): number {
    let n = 0;
    for (const p of params) n += p.byteLength;
    return n;
  }

  /** Put device copies of `params` in place (those already on the device are left alone). */
  upload(params: Iterable<Parameter>): void {
    for (const p of params) {
      const host = this.#host.get(p);
      if (host && p.device !== this.#device) p.replace(host.to(this.#device));
    }
  }

  /** Free the device copies of `params`: each reads its host copy again. */
  release(params: Iterable<Parameter>): void {
    for (const p of params) {
      const host = this.#host.get(p);
      if (host && p.device !== "cpu") p.replace(host.to("cpu"));
    }
  }

  /** Return every parameter to the device for good and free the host copies. */
  restore(): void {
    for (const [p, host] of this.#host) {
      if (p.device !== this.#device) p.replace(host.to(this.#device));
      host.dispose();
    }
    this.#host.clear();
  }
}

/** The parameters a module owns itself (not its children's). */
export function ownParameters(m: { namedParameters(prefix?: string): [string, Parameter][]; namedChildren(): [string, { parameters(): Parameter[] }][] }): Parameter[] {
  const fromChildren = new Set<Parameter>();
  for (const [, c] of m.namedChildren()) for (const p of c.parameters()) fromChildren.add(p);
  return m.namedParameters().map(([, p]) => p).filter((p) => !fromChildren.has(p));
}
