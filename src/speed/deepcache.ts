// DeepCache (Ma et al. 2023, "DeepCache: Accelerating Diffusion Models for Free"; horseee/DeepCache's
// extension/deepcache.py) on a UNet, through forward wrappers only (no model code changes).
//
// Branches. The down path produces a stack of skip connections: index 0 is conv_in's output, then one per
// down layer in order (resnet j with its attention j, then the block's downsampler). `branchId` b names
// the skip connection the shallow path keeps: on a skipped step
//   - a down layer runs iff the skip it produces has index ≤ b;
//   - the mid block never runs;
//   - an up resnet (with its attention) runs iff the skip it consumes has index ≤ b; an up block's
//     upsampler runs iff its block's last resnet runs (it consumes the block's shallowest skip);
//   - everything else returns what it returned on the last full step (the cached deep features: the
//     input of the deepest running up resnet is the output of the skipped up layer before it).
// For SD 1.x/2.x/SDXL (layers_per_block 2: three skips per level) this is exactly DeepCache's
// (cache_block_id, cache_layer_id) = (⌊b/3⌋, b mod 3); b = 0 keeps conv_in → up_blocks[-1].resnets[-1]
// → conv_out only. Other layouts (the demo model: layers_per_block 1) number their skips the same way.
//
// Hooks. A wrapper on the UNet decides per call whether it is a full step: calls are counted per
// encoder_hidden_states tensor (one per generate() run: the pipeline builds it once and passes the same
// tensor each step, CFG rows included), and call k is full when k mod interval = 0 (or when the sample's
// shape changed or no full pass completed yet). UNet calls are counted, not scheduler steps: a scheduler
// that evaluates the UNet twice in a step (PNDM's first step, Heun-type) gets ⌈calls/interval⌉ full passes.
// Wrappers on the "frontier" modules — skipped modules whose parent still runs — call next() and keep a
// view of the output on full steps, and return a fresh view of it without calling next() on skipped steps. Deeper skipped modules are never called. A run's cache
// is freed when its encoder_hidden_states tensor has been disposed (checked at each UNet call and by
// clear(), which the pipeline feature calls after each generate()), or by remove().

import type { UNet2DConditionModel } from "../models/unet/index.ts";
import type { HookHandle, Module, ModuleList } from "../nn/module.ts";
import { type Tensor, keep } from "../tensor/index.ts";

export interface DeepCacheOptions {
  /** Run the whole UNet every `interval` calls (1 = every call: no caching). Default 3. */
  interval?: number;
  /** The skip connection the shallow path keeps (see the header); 0 = the shallowest. Default 0. */
  branchId?: number;
}

export class DeepCacheOptionError extends Error {
  override name = "DeepCacheOptionError";
}

export interface DeepCacheHandle {
  readonly interval: number;
  readonly branchId: number;
  /** Number of skip connections of this UNet: valid branch ids are 0 … branches − 1. */
  readonly branches: number;
  /** Paths of the modules whose outputs are cached (the frontier of the skipped part). */
  readonly cachedModules: readonly string[];
  /** UNet calls since applied, and how many of them ran the whole UNet. */
  readonly stats: { calls: number; fullPasses: number };
  /** Free the caches of runs whose encoder_hidden_states tensor was disposed (all of them with `all`). */
  clear(all?: boolean): void;
  /** removeDeepCache(unet) for this installation. */
  remove(): void;
}

type Cached = Tensor | { hidden: Tensor; skips: Tensor[] };

interface RunState {
  calls: number;
  shapeKey: string;
  /** Whether the last full pass completed (every frontier output cached). */
  ready: boolean;
  cache: Map<Module, Cached>;
}

const installed = new WeakMap<UNet2DConditionModel, DeepCacheHandle>();

export function resolveDeepCacheOptions(opts: DeepCacheOptions = {}): Required<DeepCacheOptions> {
  const interval = opts.interval ?? 3;
  const branchId = opts.branchId ?? 0;
  if (!Number.isInteger(interval) || interval < 1) throw new DeepCacheOptionError(`DeepCache: interval must be an integer ≥ 1, got ${interval}`);
  if (!Number.isInteger(branchId) || branchId < 0) throw new DeepCacheOptionError(`DeepCache: branchId must be an integer ≥ 0, got ${branchId}`);
  return { interval, branchId };
}

/** Optional children of a down/up block (CrossAttn* blocks have attentions; all but one level resample). */
interface BlockParts {
  readonly resnets: ModuleList<Module>;
  readonly attentions?: ModuleList<Module> | null;
  readonly downsamplers?: ModuleList<Module> | null;
}

/** The modules to cache for branch b (skipped on a shallow step while their parent runs), with paths. */
export function deepCachePlan(unet: UNet2DConditionModel, b: number): { branches: number; frontier: [string, Module][] } {
  const frontier: [string, Module][] = [];
  let produced = 0; // skip index of the last skip produced (conv_in: 0)
  for (let i = 0; i < unet.down_blocks.length; i++) {
    const block = unet.down_blocks.at(i) as Module & BlockParts;
    const layers: [string, Module][][] = [];
    for (let j = 0; j < block.resnets.length; j++) {
      const l: [string, Module][] = [[`down_blocks.${i}.resnets.${j}`, block.resnets.at(j)]];
      if (block.attentions) l.push([`down_blocks.${i}.attentions.${j}`, block.attentions.at(j)]);
      layers.push(l);
    }
    if (block.downsamplers) layers.push([...block.downsamplers].map((d, k) => [`down_blocks.${i}.downsamplers.${k}`, d] as [string, Module]));
    const runs = layers.map(() => ++produced <= b);
    if (!runs.some(Boolean)) frontier.push([`down_blocks.${i}`, block]);
    else layers.forEach((l, k) => void (!runs[k] && frontier.push(...l)));
  }
  const branches = produced + 1;
  if (b >= branches) throw new DeepCacheOptionError(`DeepCache: branchId must be below ${branches} (this UNet's skip connections), got ${b}`);
  if (unet.mid_block) frontier.push(["mid_block", unet.mid_block]);
  let remaining = branches; // skips left on the stack
  for (let k = 0; k < unet.up_blocks.length; k++) {
    const block = unet.up_blocks.at(k) as Module & BlockParts;
    const L = block.resnets.length;
    const runs = Array.from({ length: L }, (_, j) => remaining - 1 - j <= b); // resnet j consumes skip remaining−1−j
    remaining -= L;
    if (!runs.some(Boolean)) {
      frontier.push([`up_blocks.${k}`, block]);
      continue;
    }
    for (let j = 0; j < L; j++) {
      if (runs[j]) continue;
      frontier.push([`up_blocks.${k}.resnets.${j}`, block.resnets.at(j)]);
      if (block.attentions) frontier.push([`up_blocks.${k}.attentions.${j}`, block.attentions.at(j)]);
    }
  }
  return { branches, frontier };
}

const viewOf = (t: Tensor): Tensor => t.reshape(t.shape);

function cacheOf(out: Cached): Cached {
  if (!("skips" in out)) return keep(viewOf(out));
  const skips = out.skips.map((s) => keep(viewOf(s)));
  const at = out.skips.indexOf(out.hidden); // the block's hidden is also its last skip: keep the identity
  return { hidden: at >= 0 ? skips[at]! : keep(viewOf(out.hidden)), skips };
}

function replay(c: Cached): Cached {
  if (!("skips" in c)) return viewOf(c);
  const skips = c.skips.map(viewOf);
  const at = c.skips.indexOf(c.hidden);
  return { hidden: at >= 0 ? skips[at]! : viewOf(c.hidden), skips };
}

function disposeCached(c: Cached): void {
  if (!("skips" in c)) return c.dispose();
  for (const s of c.skips) s.dispose();
  c.hidden.dispose(); // idempotent when it is one of the skips
}

function disposeRun(st: RunState): void {
  for (const c of st.cache.values()) disposeCached(c);
  st.cache.clear();
  st.ready = false;
}

/** Install DeepCache on `unet` (replacing a previous installation). */
export function applyDeepCache(unet: UNet2DConditionModel, opts: DeepCacheOptions = {}): DeepCacheHandle {
  const { interval, branchId } = resolveDeepCacheOptions(opts);
  const { branches, frontier } = deepCachePlan(unet, branchId); // throws before anything changes
  removeDeepCache(unet);
  const runs = new Map<Tensor, RunState>();
  const stats = { calls: 0, fullPasses: 0 };
  let current: { st: RunState; full: boolean } | null = null;
  const sweep = (all: boolean) => {
    for (const [key, st] of runs)
      if (all || key.isDisposed) {
        disposeRun(st);
        runs.delete(key);
      }
  };
  const hooks: HookHandle[] = [];
  hooks.push(
    unet.registerForwardWrapper((_m, args, next) => {
      const [sample, , ehs] = args;
      sweep(false);
      const shapeKey = `${sample.shape.join(",")}/${sample.dtype}/${sample.device}`;
      let st = runs.get(ehs);
      if (!st) runs.set(ehs, (st = { calls: 0, shapeKey, ready: false, cache: new Map() }));
      const full = interval === 1 || st.calls % interval === 0 || !st.ready || st.shapeKey !== shapeKey;
      st.calls++;
      stats.calls++;
      if (full) {
        stats.fullPasses++;
        st.shapeKey = shapeKey;
        st.ready = false;
      }
      const outer = current;
      current = { st, full };
      try {
        const out = next(...args);
        if (full && interval > 1) st.ready = true;
        return out;
      } finally {
        current = outer;
      }
    }),
  );
  for (const [, mod] of frontier)
    hooks.push(
      mod.registerForwardWrapper((m: Module, args: unknown[], next: (...a: unknown[]) => Cached) => {
        const c = current;
        if (!c) return next(...args); // called outside a UNet call
        if (c.full) {
          const out = next(...args);
          if (interval > 1) {
            const old = c.st.cache.get(m);
            if (old) disposeCached(old);
            c.st.cache.set(m, cacheOf(out));
          }
          return out;
        }
        const cached = c.st.cache.get(m);
        if (!cached) throw new Error("DeepCache: no cached output on a shallow step (internal error)");
        return replay(cached);
      }),
    );
  const handle: DeepCacheHandle = {
    interval,
    branchId,
    branches,
    cachedModules: frontier.map(([p]) => p),
    stats,
    clear: (all = false) => sweep(all),
    remove: () => {
      if (installed.get(unet) !== handle) return;
      for (const h of hooks) h.remove();
      sweep(true);
      installed.delete(unet);
    },
  };
  installed.set(unet, handle);
  return handle;
}

/** Take DeepCache off `unet` (freeing its caches); false when it was not installed. */
export function removeDeepCache(unet: UNet2DConditionModel): boolean {
  const h = installed.get(unet);
  if (!h) return false;
  h.remove();
  return true;
}

/** The active DeepCache installation of `unet`, or null. */
export function deepCacheOf(unet: UNet2DConditionModel): DeepCacheHandle | null {
  return installed.get(unet) ?? null;
}
