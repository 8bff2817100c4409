// Latents → images: undo the latent scaling (÷ scaling_factor, + shift_factor; or the per-channel
// latents_mean/latents_std of VAEs that define them, as diffusers' SDXL pipeline), VAE decode in
// the VAE's own dtype, an optional NaN/Inf check of its output, then diffusers' postprocess
// (x/2 + 0.5).clamp(0, 1); and the [B, 3, H, W]
// result as GeneratedImages with their generation parameters.

import { type GenerationParameters, GeneratedImage } from "../io/image.ts";
import type { AutoencoderKL } from "../models/vae/index.ts";
import { type Tensor, tensor, tidy } from "../tensor/index.ts";
import { allFinite } from "./finite.ts";

/** The latents the VAE decodes: z / scaling_factor (+ shift_factor), in the VAE's dtype and device. */
export function unscaleLatents(vae: AutoencoderKL, latents: Tensor): Tensor {
  return tidy(() => {
    const z = latents.to({ dtype: vae.dtype, device: vae.device });
    const { latents_mean: mean, latents_std: std } = vae.config;
    if (mean && std) {
      const C = latents.shape[1]!;
      const col = (v: number[]) => tensor(Float32Array.from(v), { shape: [1, C, 1, 1], dtype: vae.dtype, device: vae.device });
      return z.mul(col(std)).div(vae.scalingFactor).add(col(mean)); // [B, C, h, w]
    }
    const scaled = z.div(vae.scalingFactor);
    return vae.shiftFactor === null ? scaled : scaled.add(vae.shiftFactor);
  });
}

/**
 * Decoded images [B, 3, H, W] with values in [0, 1]. With `onNonFinite`, the VAE output is checked
 * before the clamp (which would turn Inf into white and hide it) and `onNonFinite` is called (and
 * must throw) when it holds NaN or Inf.
 */
export function decodeLatents(vae: AutoencoderKL, latents: Tensor, onNonFinite?: () => never): Tensor {
  return tidy(() => {
    const raw = vae.decode(unscaleLatents(vae, latents)); // [B, 3, H, W], about [-1, 1]
    if (onNonFinite && raw.device !== "meta" && !allFinite(raw)) onNonFinite();
    return raw.div(2).add(0.5).clamp(0, 1);
  });
}

/** One GeneratedImage per batch row of `images` [B, 3, H, W] in [0, 1]. */
export function toGeneratedImages(images: Tensor, parameters: (i: number) => GenerationParameters): GeneratedImage[] {
  const out: GeneratedImage[] = [];
  for (let i = 0; i < images.shape[0]!; i++) {
    const row = images.select(0, i); // [3, H, W]
    try {
      out.push(GeneratedImage.fromTensor(row, parameters(i)));
    } finally {
      row.dispose();
    }
  }
  return out;
}
