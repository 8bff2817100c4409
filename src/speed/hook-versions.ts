// Hook versions: a counter per module that changes whenever a forward hook or wrapper is registered on it or
// removed, so that a cached computation (a captured CUDA graph, cuda-graph.ts) can tell "the same number of
// hooks" from "the same hooks". Module keeps its hooks private; the three register methods of Module.prototype
// are wrapped once (trackHookVersions) to count registrations and removals — every hook goes through them.

import { type HookHandle, Module } from "../nn/module.ts";

const versions = new WeakMap<Module, number>();
let tracking = false;

/** How often hooks of `m` were registered or removed since tracking started (0: never). */
export function hookVersion(m: Module): number {
  return versions.get(m) ?? 0;
}

const bump = (m: Module) => versions.set(m, (versions.get(m) ?? 0) + 1);

/** Start counting (idempotent). Hooks registered before keep their count in Module.hookCount. */
export function trackHookVersions(): void {
  if (tracking) return;
  tracking = true;
  const proto = Module.prototype as unknown as Record<string, (this: Module, fn: unknown) => HookHandle>;
  for (const name of ["registerForwardPreHook", "registerForwardPostHook", "registerForwardWrapper"]) {
    const original = proto[name]!;
    proto[name] = function (this: Module, fn: unknown): HookHandle {
      const h = original.call(this, fn);
      bump(this);
      let removed = false;
      return {
        remove: () => {
          h.remove();
          if (!removed) bump(this);
          removed = true;
        },
      };
    };
  }
}
