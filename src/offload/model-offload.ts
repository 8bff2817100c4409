// Model CPU offload: whole components live in host memory and move to the compute device when any of their
// modules starts a forward; the component that ran before goes back to the host (its device copy freed). A
// forward pre-hook sits on every module of every component, not only on the root, because pipelines call
// submodules directly (vae.decode → decoder / post_quant_conv without vae.call): whatever actually runs brings its
// component in. Consecutive calls of the resident component (the UNet across steps) cost one Map lookup.
// endRun() sends the resident component back so that device live bytes return to where they were.

import type { HookHandle, Module } from "../nn/module.ts";
import type { Device } from "../tensor/index.ts";
import { HostWeights } from "./host-weights.ts";

export interface ModelOffloadHandle {
  /** The component whose weights are on the device now (null: none). */
  readonly resident: Module | null;
  /** Send the resident component back to the host (end of a generate() call). */
  endRun(): void;
  /** Remove the hooks and put every component back on the device. */
  remove(): void;
}

/** Offload `components` (pipeline order) from `device` to host memory, moving one in at a time. */
export function installModelOffload(components: readonly Module[], device: Device): ModelOffloadHandle {
  const weights = new Map<Module, HostWeights>();
  const owner = new Map<Module, Module>();
  const handles: HookHandle[] = [];
  let resident: Module | null = null;
  try {
    for (const c of components) {
      if (weights.has(c)) continue;
      weights.set(c, new HostWeights(c.parameters(), device));
      for (const [, m] of c.namedModules()) owner.set(m, c);
    }
    const enter = (m: Module) => {
      const c = owner.get(m)!;
      if (c === resident) return;
      if (resident) weights.get(resident)!.release(resident.parameters());
      resident = null;
      weights.get(c)!.upload(c.parameters());
      resident = c;
    };
    for (const m of owner.keys()) handles.push(m.registerForwardPreHook((mod) => void enter(mod)));
  } catch (e) {
    for (const h of handles) h.remove();
    for (const w of weights.values()) w.restore();
    throw e;
  }
  const endRun = () => {
    if (resident) weights.get(resident)!.release(resident.parameters());
    resident = null;
  };
  return {
    get resident() {
      return resident;
    },
    endRun,
    remove() {
      for (const h of handles) h.remove();
      handles.length = 0;
      resident = null;
      for (const w of weights.values()) w.restore();
      weights.clear();
    },
  };
}
