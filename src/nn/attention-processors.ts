// Processors of every Attention module under a model, as diffusers' set_attn_processor /
// attn_processors: setAttnProcessor(root, p | (name, module) => p) installs one processor everywhere
// or one chosen per module (null = the default), attnProcessors(root) lists them by module path, and
// setAttentionKind(root, kind, options) installs the default processor with an attention kind.

import type { AttentionKind, AttentionOptions } from "./attention-dispatch.ts";
import { Attention, type AttnProcessor, AttnProcessorDefault } from "./attention.ts";
import type { Module } from "./module.ts";

/** A processor for every module, or a function choosing one per module (path, module). */
export type AttnProcessorChoice = AttnProcessor | null | ((name: string, module: Attention) => AttnProcessor | null);

/** The Attention modules under `root` with their dotted paths, in registration order. */
export function attentionModules(root: Module): [string, Attention][] {
  return root.namedModules().filter((e): e is [string, Attention] => e[1] instanceof Attention);
}

/** Install processors on every Attention under `root`; returns how many modules were set. */
export function setAttnProcessor(root: Module, choice: AttnProcessorChoice): number {
  const mods = attentionModules(root);
  // choose every processor first, so a throwing chooser leaves the model as it was
  const chosen = mods.map(([name, m]) => (typeof choice === "function" ? choice(name, m) : choice));
  mods.forEach(([, m], i) => m.setProcessor(chosen[i]!));
  return mods.length;
}

/** Module path -> its processor, for every Attention under `root`. */
export function attnProcessors(root: Module): Map<string, AttnProcessor> {
  return new Map(attentionModules(root).map(([name, m]) => [name, m.processor]));
}

/** The default processor with `kind` on every Attention under `root` (null kind: "fused"). */
export function setAttentionKind(root: Module, kind: AttentionKind | null, options: Partial<AttentionOptions> = {}): number {
  return setAttnProcessor(root, kind === null && !Object.keys(options).length ? null : new AttnProcessorDefault(kind ?? "fused", options));
}
