// Weight bytes resident on the compute device in each phase of a run, per offload strategy (the
// memory planner's weights model, plan.ts):
//   - "none": every component's weights, all the time;
//   - "model" (whole components move in pipeline order, the previous one goes back): the running
//     component's weights — the largest text encoder while prompts are encoded, the UNet while
//     denoising, the VAE while decoding;
//   - "sequential" (each leaf module's own weights are uploaded before its forward and released after,
//     with a bounded look-ahead of the next leaves' uploads): the largest window of one leaf plus the
//     following leaves (in forward order) whose bytes fit in `prefetchBytes`.
// A leaf here is any module that owns parameters directly (Linear, Conv2d, GroupNorm, embeddings…);
// its own bytes exclude its children's.

import type { Module } from "../nn/module.ts";

export type OffloadStrategy = "none" | "model" | "sequential";

export type WeightsByPhase = Record<"text encoding" | "denoising" | "decoding", number>;

interface Components {
  unet: Module;
  vae: Module;
  textEncoders: readonly { model: Module }[];
}

/** The weights resident in each phase under `strategy`. */
export function residentWeights(c: Components, strategy: OffloadStrategy, prefetchBytes = 0): WeightsByPhase {
  const encoders = c.textEncoders.map((t) => t.model);
  if (strategy === "none") {
    const all = [...encoders, c.unet, c.vae].reduce((a, m) => a + m.parameterBytes(), 0);
    return { "text encoding": all, denoising: all, decoding: all };
  }
  if (strategy === "model")
    return {
      "text encoding": Math.max(0, ...encoders.map((m) => m.parameterBytes())),
      denoising: c.unet.parameterBytes(),
      decoding: c.vae.parameterBytes(),
    };
  return {
    "text encoding": Math.max(0, ...encoders.map((m) => sequentialWindow(leafBytes(m), prefetchBytes))),
    denoising: sequentialWindow(leafBytes(c.unet), prefetchBytes),
    decoding: sequentialWindow(leafBytes(c.vae), prefetchBytes),
  };
}

/** Each parameter-owning module's own parameter bytes, in registration (forward) order. */
export function leafBytes(root: Module): number[] {
  const out: number[] = [];
  for (const [, m] of root.namedModules()) {
    let own = m.parameterBytes();
    for (const [, child] of m.namedChildren()) own -= child.parameterBytes();
    if (own > 0) out.push(own);
  }
  return out;
}

/** The most bytes resident at once: one leaf plus the following leaves that fit in the look-ahead. */
export function sequentialWindow(leaves: readonly number[], prefetchBytes: number): number {
  let best = 0;
  for (let i = 0; i < leaves.length; i++) {
    let sum = leaves[i]!;
    let ahead = 0;
    for (let j = i + 1; j < leaves.length && ahead + leaves[j]! <= prefetchBytes; j++) ahead += leaves[j]!;
    sum += ahead;
    if (sum > best) best = sum;
  }
  return best;
}
