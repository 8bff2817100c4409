// NaN/Inf checks of a run: one cheap reduction (x·0 summed is 0 for finite x and NaN as soon as one
// value is NaN or ±Inf, in any dtype and without overflow), and the likely causes named in the
// NonFiniteError from what the run was doing.

import type { DType, Tensor } from "../tensor/index.ts";
import { tidy } from "../tensor/index.ts";

/** Whether every value of `t` is finite (one elementwise op, one reduction, one host read). */
export function allFinite(t: Tensor): boolean {
  return tidy(() => t.mul(0).sum().item()) === 0;
}

export interface NonFiniteContext {
  dtype: DType;
  vaeDtype: DType;
  guidanceScale: number;
  /** Whether the text conditioning itself is non-finite (null when not checked). */
  conditioningBad: boolean | null;
  /** Whether the caller's latents were non-finite (null when none were given). */
  givenLatentsBad: boolean | null;
  where: "latents" | "image";
}

/** The likely causes of non-finite values, most likely first. */
export function nonFiniteCauses(c: NonFiniteContext): string[] {
  const out: string[] = [];
  if (c.givenLatentsBad) out.push("the latents passed in options.latents already contain NaN/Inf");
  if (c.conditioningBad)
    out.push("the text embeddings are already NaN/Inf: the text encoder's weights are corrupt (or overflow in float16); re-download the model or load it as float32");
  if (Math.abs(c.guidanceScale) > 1e4) out.push(`guidanceScale ${c.guidanceScale} is far outside the usual 1–20 and overflows the guided noise`);
  const half = c.where === "image" ? c.vaeDtype : c.dtype;
  if (half === "float16")
    out.push(
      c.where === "image"
        ? 'float16 overflow in the VAE decode (common with SD VAEs in float16): load with dtype "bfloat16" or "float32"'
        : 'float16 overflow in the UNet: load with dtype "bfloat16" or "float32"',
    );
  out.push(
    c.where === "image"
      ? "corrupt VAE weights (NaN/Inf in the checkpoint): re-download the model"
      : "corrupt UNet weights (NaN/Inf in the checkpoint): re-download the model; checkFinite: \"step\" names the first bad step",
  );
  return out;
}
