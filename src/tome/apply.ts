// applyTokenMerging / removeTokenMerging on a UNet, through hooks only (no model code changes):
//
// ToMe (tomesd's patched BasicTransformerBlock.forward):
//   - a forward pre-hook on the UNet records the latent size of each call (tomesd's hook_tome_model);
//   - a forward wrapper on every BasicTransformerBlock computes the matching from the block input x [B, N, C]
//     (tomesd's compute_merge: downsample level, grid, r = ⌊N·ratio⌋, random or fixed dst) and holds it while the
//     block's own forward runs;
//   - a forward pre-hook on attn1 (attn2, ff when mergeCrossattn / mergeMlp) merges its input — the norm output,
//     exactly where tomesd applies m_a(norm1(x)) — and a post-hook unmerges its output before the block adds the
//     residual: x + u_a(attn1(m_a(norm1(x)))). The hooks work with whatever attention processor is installed.
// ToDo: a ToDoProcessor (todo.ts) on attn1 of the blocks at the chosen levels, wrapping the previous processor.
//
// Applying again replaces the previous installation; removing takes every hook off and puts the previous
// processors back, so the UNet computes bit for bit as before.

import type { BasicTransformerBlock, UNet2DConditionModel } from "../models/unet/index.ts";
import type { AttnProcessor } from "../nn/attention.ts";
import type { HookHandle, Module } from "../nn/module.ts";
import type { Tensor } from "../tensor/index.ts";
import { TorchGenerator } from "../tensor/random/torch-normal.ts";
import { type TokenMatch, bipartiteSoftMatching } from "./bipartite.ts";
import { autoMaxDownsample, tokenGrid, transformerBlockSites } from "./levels.ts";
import { type ResolvedToMe, type ResolvedTokenMerging, type TokenMergingOptions, resolveTokenMergingOptions } from "./options.ts";
import { partitionIndices, partitionTensors, randomDstChoice } from "./partition.ts";
import { type LatentSize, ToDoProcessor } from "./todo.ts";

/** What applyTokenMerging installed. */
export interface TokenMergingHandle {
  /** The options with defaults filled in. */
  readonly options: Readonly<ResolvedTokenMerging>;
  /** The downsample bound in use ("auto" resolved; for ToDo the bound maxDepth gives). */
  readonly maxDownsample: number;
  /** Paths of the transformer blocks that can be merged / downsampled (those at or above the bound). */
  readonly blocks: readonly string[];
  /** Time spent computing matchings, merging and unmerging since applied (ms, host clock; ToMe only). */
  readonly timing: { matchMs: number; mergeMs: number; unmergeMs: number; calls: number };
  /** removeTokenMerging(unet) for this installation. */
  remove(): void;
}

interface Installed {
  handle: TokenMergingHandle;
  undo: () => void;
}

const installed = new WeakMap<UNet2DConditionModel, Installed>();

/** The installation on `unet`, or null. */
export function tokenMergingOf(unet: UNet2DConditionModel): TokenMergingHandle | null {
  return installed.get(unet)?.handle ?? null;
}

/** Take token merging / downsampling off `unet`; false when none was installed. */
export function removeTokenMerging(unet: UNet2DConditionModel): boolean {
  const i = installed.get(unet);
  if (!i) return false;
  installed.delete(unet);
  i.undo();
  return true;
}

/** Install ToMe (default) or ToDo ({ mode: "todo" }) on `unet`, replacing a previous installation. */
export function applyTokenMerging(unet: UNet2DConditionModel, opts: TokenMergingOptions = {}): TokenMergingHandle {
  const o = resolveTokenMergingOptions(opts); // throws before anything changes
  const sites = transformerBlockSites(unet);
  const base = autoMaxDownsample(sites);
  removeTokenMerging(unet);
  const latent: LatentSize = { size: null };
  const hooks: HookHandle[] = [];
  const restore: (() => void)[] = [];
  const timing = { matchMs: 0, mergeMs: 0, unmergeMs: 0, calls: 0 };
  const undo = () => {
    for (const h of hooks.splice(0)) h.remove();
    for (const r of restore.splice(0).reverse()) r();
  };
  let maxDownsample: number;
  try {
    hooks.push(
      unet.registerForwardPreHook((_m, args) => {
        const s = args[0].shape;
        latent.size = [s[2]!, s[3]!];
      }),
    );
    if (o.mode === "todo") {
      maxDownsample = base * 2 ** (o.maxDepth - 1);
      for (const { block, level } of sites) {
        if (2 ** level > maxDownsample || block.attn1.isCrossAttention) continue;
        const prev: AttnProcessor = block.attn1.processor;
        block.attn1.setProcessor(new ToDoProcessor(prev, latent, o.factor, maxDownsample));
        restore.push(() => block.attn1.setProcessor(prev));
      }
    } else {
      maxDownsample = o.maxDownsample === "auto" ? base : o.maxDownsample;
      const gen = new TorchGenerator(o.seed);
      for (const { block } of sites) installToMe(block, o, maxDownsample, latent, gen, timing, hooks);
    }
  } catch (e) {
    undo();
    throw e;
  }
  const handle: TokenMergingHandle = {
    options: Object.freeze({ ...o }),
    maxDownsample,
    blocks: sites.filter((s) => 2 ** s.level <= maxDownsample).map((s) => s.path),
    timing,
    remove: () => {
      if (installed.get(unet)?.handle === handle) removeTokenMerging(unet);
    },
  };
  installed.set(unet, { handle, undo });
  return handle;
}

type Timing = TokenMergingHandle["timing"];

/** The block wrapper computing the matching and the merge/unmerge hooks on the chosen children. */
function installToMe(
  block: BasicTransformerBlock,
  o: ResolvedToMe,
  maxDownsample: number,
  latent: LatentSize,
  gen: TorchGenerator,
  timing: Timing,
  hooks: HookHandle[],
): void {
  let current: TokenMatch | null = null;
  hooks.push(
    block.registerForwardWrapper((_b, args, next) => {
      const match = computeMatch(args[0], o, maxDownsample, latent, gen, timing);
      if (!match) return next(...args);
      current = match;
      try {
        return next(...args);
      } finally {
        current = null;
        match.dispose();
      }
    }),
  );
  const targets: Module[] = [];
  if (o.mergeAttn) targets.push(block.attn1);
  if (o.mergeCrossattn && block.attn2) targets.push(block.attn2);
  if (o.mergeMlp) targets.push(block.ff);
  for (const t of targets) {
    let merged: Tensor | null = null;
    hooks.push(
      t.registerForwardPreHook((_m, args: unknown[]) => {
        if (!current) return;
        const t0 = performance.now();
        merged = current.merge(args[0] as Tensor); // [B, N − r, C]
        timing.mergeMs += performance.now() - t0;
        return [merged, ...args.slice(1)];
      }),
      t.registerForwardPostHook((_m, _args, out: unknown) => {
        if (!current) return;
        const t0 = performance.now();
        const full = current.unmerge(out as Tensor); // [B, N, C]
        (out as Tensor).dispose();
        merged?.dispose();
        merged = null;
        timing.unmergeMs += performance.now() - t0;
        return full;
      }),
    );
  }
}

/** tomesd's compute_merge for one block call: null when this block is not merged. */
function computeMatch(x: Tensor, o: ResolvedToMe, maxDownsample: number, latent: LatentSize, gen: TorchGenerator, timing: Timing): TokenMatch | null {
  if (!latent.size || x.ndim !== 3) return null;
  const [B, N] = x.shape as [number, number];
  const g = tokenGrid(latent.size[0], latent.size[1], N);
  if (!(g.downsample >= 1) || g.downsample > maxDownsample || g.h * g.w !== N) return null;
  const r = Math.floor(N * o.ratio);
  if (r <= 0) return null;
  const t0 = performance.now();
  // an odd batch cannot hold cond and uncond halves: tomesd turns the random choice off there
  const useRand = B % 2 === 1 ? false : o.useRand;
  const choice = useRand ? randomDstChoice(gen, g.w, g.h, o.sx, o.sy) : null;
  const part = partitionTensors(partitionIndices(g.w, g.h, o.sx, o.sy, choice), x.device);
  try {
    return bipartiteSoftMatching(x, part, r);
  } finally {
    part.aIdx.dispose();
    part.bIdx.dispose();
    timing.matchMs += performance.now() - t0;
    timing.calls++;
  }
}
