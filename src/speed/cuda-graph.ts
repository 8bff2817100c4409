// CUDA-graph UNet steps (the analogue of torch.compile's "reduce-overhead"): a forward wrapper on the UNet captures
// one UNet call per input signature into a graph on first use and, on later calls with the same signature, copies
// the call's inputs into the graph's static input tensors, replays the graph with one launch and returns a copy of
// its output — no JavaScript module code runs for a replayed step. The capture itself is the backend's (a
// GraphCapturer: src/backends/cuda/graph.ts through the pipeline); this file only uses tensor ops.
//
// Static inputs: sample, encoder_hidden_states, SDXL's text_embeds, LCM's timestep_cond, the attention mask — copied
// device to device before each launch. The timestep stays a host scalar: the UNet turns it into a sinusoidal
// embedding on the host (Timesteps, uploaded each call), which a graph cannot repeat, so while capturing, the
// UNet's `time_proj` (and SDXL's `add_time_proj` of the host time ids) return views of static float32 tensors,
// and before each launch the runner computes those embeddings on the host (the same Timesteps code) and copies
// them in (a pinned-staging upload outside the capture). The result is bit-identical to the eager call.
//
// The signature ("key") of a call: the inputs' shapes and dtypes, and the state of the UNet that shapes its
// computation — the pipeline's feature key (stateKey()), every module's hooks (count and version: hook-versions.ts)
// and attention processor, and the
// device storage of every parameter (offload, reloading or a dtype change moves them). A call whose key differs from
// the graph's destroys the graph (its memory returns to the allocator) and captures a new one; so a captured
// graph is never replayed after a feature changed. With fused QKV's per-run cross-attention K/V cache the key also
// holds the identity of the caller's encoder_hidden_states (the cache is filled from the static copy at capture).
// A call the runner cannot capture (not on the capturer's device, unknown options) runs eagerly; a capture that
// fails is reported once (stats.fallbacks) and that key runs eagerly from then on.
//
// Conflicts (cudaGraphConflict): DeepCache (its wrappers choose full or shallow steps on the host per call: a
// replay would run none of them) and ToMe (partition indices built and uploaded on the host per call — with useRand
// a fresh random choice — and gathers checked through deferred flags: none of it can be replayed) are not
// captured; sequential offload uploads weights inside the step's hooks.

import type { Device } from "../core/device.ts";
import { type UNet2DConditionModel, type UNetForwardOptions, timestepValues } from "../models/unet/index.ts";
import type { HookHandle, Module } from "../nn/module.ts";
import { type Tensor, copyInto, empty, keep, tidy } from "../tensor/index.ts";
import { tokenMergingOf } from "../tome/index.ts";
import { deepCacheOf } from "./deepcache.ts";
import { fusedQkvOf } from "./fused-qkv.ts";
import { hookVersion, trackHookVersions } from "./hook-versions.ts";

/** A captured graph as the backend returns it. */
export interface CapturedGraph<T> {
  /** The capture's result: tensors every launch rewrites. */
  readonly outputs: T;
  /** Nodes in the graph (kernels, copies, library calls). */
  readonly nodes: number;
  launch(): void;
  dispose(): void;
}

/** What the runner needs from a backend that can capture graphs. */
export interface GraphCapturer {
  readonly device: Device;
  /** Warm up `fn` eagerly, capture it, instantiate it (src/backends/cuda/graph.ts captureCudaGraph). */
  capture<T>(label: string, fn: () => T, onWarmup?: (result: T) => void): CapturedGraph<T>;
}

export interface CudaGraphStats {
  /** Graphs captured. */
  captures: number;
  /** Calls answered by one graph launch. */
  replays: number;
  /** Calls run eagerly (another device, options a graph does not cover, or a key whose capture failed). */
  eager: number;
  /** Graphs destroyed because a call's key differed (shape, dtype, feature, hook, weights). */
  invalidations: number;
  /** Capture failures, one line each (that key then runs eagerly). */
  fallbacks: string[];
}

export interface CudaGraphHandle {
  readonly stats: CudaGraphStats;
  /** The live graph's node count (null: none captured now). */
  readonly nodes: number | null;
  /** Destroy the captured graph (it is captured again on the next call). */
  reset(): void;
  /** Destroy the graph and remove the wrappers. */
  remove(): void;
}

export interface CudaGraphOptions {
  /** The pipeline's features that change the computation, as a string (a change destroys the graph). */
  stateKey?: () => string;
  /** Why the pipeline's features cannot be captured now (e.g. sequential offload), or null; checked per call. */
  conflict?: () => string | null;
}

/** Why `unet`'s active features cannot be captured, or null. */
export function cudaGraphConflict(unet: UNet2DConditionModel): string | null {
  if (deepCacheOf(unet)) return "DeepCache is active (its full and shallow steps are chosen on the host per call; a replayed graph would always run the captured one)";
  if (tokenMergingOf(unet)?.options.mode === "tome")
    return "ToMe token merging is active (it builds its partition indices on the host per call — with useRand a new random choice — and checks gather indices through deferred device flags; a replayed graph would repeat neither)";
  return null;
}

const FORWARD_OPTIONS = new Set(["textEmbeds", "timeIds", "timestepCond", "encoderAttentionMask"]);
const ids = new WeakMap<object, number>();
let nextId = 1;
function idOf(o: object): number {
  let i = ids.get(o);
  if (i === undefined) ids.set(o, (i = nextId++));
  return i;
}
const sig = (t: Tensor | null | undefined) => (t ? `${t.dtype}[${t.shape.join(",")}]@${t.device}` : "-");

interface Live {
  /** The signature of the calls it replays (as computed after the capture). */
  key: string;
  graph: CapturedGraph<Tensor>;
  sample: Tensor;
  ehs: Tensor;
  textEmbeds: Tensor | null;
  timestepCond: Tensor | null;
  mask: Tensor | null;
  /** time_proj's output [B, C0] float32, and SDXL's add_time_proj output [B·6, d]. */
  tproj: Tensor;
  addProj: Tensor | null;
}

/** Values whose bits differ between two tensors of one shape and dtype (0: identical, NaN payloads included). */
function differingValues(a: Tensor, b: Tensor): number {
  const bitsOf = (t: Tensor) => {
    const r = t.toRawArray();
    return r instanceof Float32Array ? new Uint32Array(r.buffer, r.byteOffset, r.length) : r;
  };
  const x = bitsOf(a);
  const y = bitsOf(b);
  let n = 0;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) n++;
  return n;
}

const installed = new WeakMap<UNet2DConditionModel, CudaGraphHandle>();

/** The installation on `unet`, or null. */
export function cudaGraphsOf(unet: UNet2DConditionModel): CudaGraphHandle | null {
  return installed.get(unet) ?? null;
}

/** Install graph capture and replay on `unet` (replacing a previous installation). */
export function applyCudaGraphs(unet: UNet2DConditionModel, capturer: GraphCapturer, opts: CudaGraphOptions = {}): CudaGraphHandle {
  installed.get(unet)?.remove();
  trackHookVersions();
  const stats: CudaGraphStats = { captures: 0, replays: 0, eager: 0, invalidations: 0, fallbacks: [] };
  const failed = new Set<string>();
  let live: Live | null = null;
  const drop = () => {
    if (!live) return;
    const l = live;
    live = null;
    l.graph.dispose();
    for (const t of [l.sample, l.ehs, l.textEmbeds, l.timestepCond, l.mask, l.tproj, l.addProj]) t?.dispose();
  };

  const stateOf = (ehs: Tensor): string => {
    const parts: string[] = [opts.stateKey?.() ?? ""];
    for (const [path, m] of unet.namedModules()) {
      if (m.hookCount) parts.push(`${path}#${m.hookCount}.${hookVersion(m)}`);
      const p = (m as Module & { processor?: object | null }).processor;
      if (p) parts.push(`${path}@${idOf(p)}`);
    }
    for (const p of unet.parameters()) {
      const v = p.value; // no access hook here: sequential offload, which sets them, conflicts (opts.conflict)
      parts.push(`${v.dtype}${v.isDisposed ? "x" : idOf(v.storage)}`);
    }
    if (fusedQkvOf(unet)?.processors.some((p) => p.cacheCrossAttention)) parts.push(`ehs${idOf(ehs)}`);
    return parts.join(";");
  };

  const hostTimeEmbedding = (timestep: number | Tensor, B: number): Tensor => {
    const t = timestepValues(timestep, B) as number[];
    return unet.time_proj.forward(t, "cpu"); // [B, C0] float32, as the eager call computes it
  };
  const hostAddEmbedding = (timeIds: Tensor): Tensor => unet.add_time_proj!.forward(timeIds.toFloat32Array(), "cpu"); // [B·6, d]

  const capture = (key: string, sample: Tensor, timestep: number | Tensor, ehs: Tensor, o: UNetForwardOptions, next: (...a: Parameters<UNet2DConditionModel["forward"]>) => Tensor): { live: Live; warm: Tensor } => {
    const B = sample.shape[0]!;
    const statics: Tensor[] = [];
    const like = (t: Tensor | null | undefined) => {
      if (!t) return null;
      const s = keep(empty(t.shape, { dtype: t.dtype, device: sample.device }));
      statics.push(s);
      copyInto(s, t);
      return s;
    };
    const hooks: HookHandle[] = [];
    let warm: Tensor | null = null; // the eager warm-up's output, which the first replay must equal bit for bit
    try {
      const s = { sample: like(sample)!, ehs: like(ehs)!, textEmbeds: like(o.textEmbeds), timestepCond: like(o.timestepCond), mask: like(o.encoderAttentionMask) };
      const tproj = like(tidy(() => hostTimeEmbedding(timestep, B)))!;
      const hostIds = o.timeIds ? keep(o.timeIds.to("cpu")) : null; // the UNet reads time ids on the host
      if (hostIds) statics.push(hostIds);
      const addProj = hostIds && unet.add_time_proj ? like(tidy(() => hostAddEmbedding(hostIds))) : null;
      hooks.push(unet.time_proj.registerForwardWrapper(() => tproj.reshape(tproj.shape)));
      if (addProj) hooks.push(unet.add_time_proj!.registerForwardWrapper(() => addProj.reshape(addProj.shape)));
      const graph = capturer.capture(
        `a UNet step (${sig(sample)}, encoder_hidden_states ${sig(ehs)})`,
        () => keep(next(s.sample, timestep, s.ehs, { textEmbeds: s.textEmbeds, timeIds: hostIds, timestepCond: s.timestepCond, encoderAttentionMask: s.mask })),
        (out) => void (warm = keep(out.clone())),
      );
      hostIds?.dispose();
      stats.captures++;
      return { live: { key, graph, ...s, tproj, addProj }, warm: warm! };
    } catch (e) {
      for (const t of statics) t.dispose();
      (warm as Tensor | null)?.dispose();
      throw e;
    } finally {
      for (const h of hooks) h.remove();
    }
  };

  const wrapper = unet.registerForwardWrapper((_m, args, next) => {
    const [sample, timestep, ehs, o = {}] = args;
    const covered = sample.device === capturer.device && ehs.device === capturer.device && Object.keys(o).every((k) => FORWARD_OPTIONS.has(k) || o[k as keyof UNetForwardOptions] == null);
    if (!covered || cudaGraphConflict(unet) || opts.conflict?.()) {
      stats.eager++;
      return next(...args);
    }
    const keyNow = () => [sig(sample), sig(ehs), sig(o.textEmbeds), o.timeIds ? `[${o.timeIds.shape.join(",")}]` : "-", sig(o.timestepCond), sig(o.encoderAttentionMask), stateOf(ehs)].join("|");
    const key = keyNow();
    if (failed.has(key)) {
      stats.eager++;
      return next(...args);
    }
    if (live && live.key !== key) {
      drop();
      stats.invalidations++;
    }
    let warm: Tensor | null = null;
    if (!live) {
      try {
        ({ live, warm } = capture(key, sample, timestep, ehs, o, next));
        live.key = keyNow(); // the capture's own time_proj wrappers, registered and removed, moved hook versions on
      } catch (e) {
        failed.add(key).add(keyNow()); // (as the next call computes it: the capture moved hook versions on)
        stats.fallbacks.push((e as Error).message);
        stats.eager++;
        return next(...args);
      }
    }
    const l: Live = live;
    tidy(() => {
      copyInto(l.sample, sample);
      copyInto(l.ehs, ehs);
      if (l.textEmbeds) copyInto(l.textEmbeds, o.textEmbeds!);
      if (l.timestepCond) copyInto(l.timestepCond, o.timestepCond!);
      if (l.mask) copyInto(l.mask, o.encoderAttentionMask!);
      copyInto(l.tproj, hostTimeEmbedding(timestep, sample.shape[0]!));
      if (l.addProj) copyInto(l.addProj, hostAddEmbedding(o.timeIds!));
    });
    l.graph.launch();
    stats.replays++;
    const out = l.graph.outputs.clone(); // [B, out_channels, H, W], the caller's to free
    if (warm) {
      // first launch of a new graph: its output must be the eager step's, bit for bit (two downloads, once per graph)
      const w = warm;
      const differ = differingValues(w, out);
      if (differ) {
        failed.add(key).add(l.key);
        stats.fallbacks.push(`the replayed graph of a UNet step (${sig(sample)}) differs from the eager step in ${differ} of ${out.numel} values; that shape runs eagerly`);
        stats.replays--;
        stats.eager++;
        w.dispose();
        out.dispose();
        drop();
        return next(...args);
      }
      w.dispose();
    }
    return out;
  });

  const handle: CudaGraphHandle = {
    stats,
    get nodes() {
      return live?.graph.nodes ?? null;
    },
    reset: drop,
    remove() {
      if (installed.get(unet) !== handle) return;
      installed.delete(unet);
      wrapper.remove();
      drop();
    },
  };
  installed.set(unet, handle);
  return handle;
}

/** Take graph capture off `unet`; false when it was not installed. */
export function removeCudaGraphs(unet: UNet2DConditionModel): boolean {
  const h = installed.get(unet);
  if (!h) return false;
  h.remove();
  return true;
}
