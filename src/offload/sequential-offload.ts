// Sequential CPU offload: every module that owns parameters itself (a "leaf": Linear, Conv2d, GroupNorm,
// embeddings…) keeps its weights in host memory; a forward wrapper uploads its own weights just before its forward
// and releases them after. With prefetch, the leaves that follow it in registration order (the planner's forward
// order, src/pipelines/plan-weights.ts) whose cumulative bytes fit in `prefetchBytes` are uploaded too before its
// forward runs, so their host → device copies are queued on the backend's copy stream behind the current work
// (CUDA: pinned staging ring, the compute stream waits on the copy stream's event before it reads them) and are
// already there when their turn comes. Resident bytes are therefore at most
//   max over leaves i of (bytes(i) + the following leaves that fit in prefetchBytes)
// which is exactly plan-weights.ts `sequentialWindow` (plus, briefly, a leaf whose weights a parent reads directly). A leaf entered out of order (a module called twice, DeepCache
// skipping blocks) works: leaves outside the new window are released first, so the bound holds on any call order.

import type { HookHandle, Module } from "../nn/module.ts";
import type { Parameter } from "../nn/parameter.ts";
import type { Device } from "../tensor/index.ts";
import { HostWeights, ownParameters } from "./host-weights.ts";

export interface SequentialOffloadOptions {
  /** Upload the following leaves' weights while the current one computes (default true). */
  prefetch: boolean;
  /** Look-ahead bound in bytes for prefetch. */
  prefetchBytes: number;
}

export interface SequentialOffloadHandle {
  /** Release every prefetched / resident leaf (end of a generate() call). */
  endRun(): void;
  /** Bytes of leaf weights on the device now. */
  readonly residentBytes: number;
  remove(): void;
}

interface Leaf {
  module: Module;
  params: Parameter[];
  bytes: number;
  /** Index in its component's leaf list. */
  index: number;
  siblings: Leaf[];
}

export function installSequentialOffload(components: readonly Module[], device: Device, opts: SequentialOffloadOptions): SequentialOffloadHandle {
  const all: Parameter[] = [];
  const leaves: Leaf[] = [];
  const seen = new Set<Module>();
  for (const c of components) {
    if (seen.has(c)) continue;
    seen.add(c);
    const list: Leaf[] = [];
    for (const [, m] of c.namedModules()) {
      const params = ownParameters(m);
      if (!params.length) continue;
      list.push({ module: m, params, bytes: params.reduce((a, p) => a + p.byteLength, 0), index: list.length, siblings: list });
      all.push(...params);
    }
    leaves.push(...list);
  }
  const weights = new HostWeights(all, device);
  const resident = new Set<Leaf>();
  let residentBytes = 0;
  const bring = (l: Leaf) => {
    if (resident.has(l)) return;
    weights.upload(l.params);
    resident.add(l);
    residentBytes += l.bytes;
  };
  const drop = (l: Leaf) => {
    if (!resident.delete(l)) return;
    weights.release(l.params);
    residentBytes -= l.bytes;
  };
  /** The leaf and the following ones whose bytes fit in the look-ahead. */
  const windowOf = (l: Leaf): Leaf[] => {
    const w = [l];
    if (!opts.prefetch) return w;
    let ahead = 0;
    for (let j = l.index + 1; j < l.siblings.length && ahead + l.siblings[j]!.bytes <= opts.prefetchBytes; j++) {
      ahead += l.siblings[j]!.bytes;
      w.push(l.siblings[j]!);
    }
    return w;
  };
  // a parent's forward may read a leaf's weights without calling it (CLIP's position embedding): the read brings the
  // leaf in; it goes at the next leaf's entry (outside that window) or at the end of the run
  const leafOf = new Map<Parameter, Leaf>();
  for (const l of leaves) for (const p of l.params) leafOf.set(p, l);
  const access: { remove(): void }[] = [];
  for (const [p, l] of leafOf) access.push(p.setAccessHook(() => void (p.device === "cpu" && bring(l))));
  /** Leaves whose forward is running (a leaf with parameter-owning children stays resident through theirs). */
  const active = new Set<Leaf>();
  const handles: HookHandle[] = [];
  for (const l of leaves)
    handles.push(
      l.module.registerForwardWrapper((_m, args, next) => {
        const w = windowOf(l);
        const keepSet = new Set(w);
        for (const r of [...resident]) if (!keepSet.has(r) && !active.has(r)) drop(r); // release first: the bound holds
        for (const x of w) bring(x); // w[0] = l; the rest is the prefetch, queued on the copy stream
        active.add(l);
        try {
          return next(...args);
        } finally {
          active.delete(l);
          drop(l);
        }
      }),
    );
  return {
    endRun() {
      for (const r of [...resident]) drop(r);
    },
    get residentBytes() {
      return residentBytes;
    },
    remove() {
      for (const h of [...handles, ...access]) h.remove();
      handles.length = access.length = 0;
      for (const r of [...resident]) drop(r);
      weights.restore();
    },
  };
}
