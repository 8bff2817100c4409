// The pipeline features "vaeSlicing" and "vaeTiling" (diffusers pipe.enable_vae_slicing /
// enable_vae_tiling): switches on the pipeline's AutoencoderKL (models/vae: enableSlicing, enableTiling).
// Each install returns the remover, which puts the VAE's previous switch and tile settings back.

import type { AutoencoderKL, VaeTilingOptions } from "../models/vae/index.ts";

export interface VaeTilingFeatureOptions {
  /** Image tile size in pixels, a multiple of the VAE scale factor (default: the VAE's config sample_size). */
  tileSize?: number;
  /** Fraction of a tile overlapping its neighbour, 0 ≤ overlap < 1 (default 0.25). */
  overlap?: number;
  /** Decode layer by layer over tiles, equal to the untiled decode (no seams; the encode stays blended). */
  seamless?: boolean;
}

/** The VAE tile settings for the feature options (errors name the option). */
export function resolveVaeTiling(vae: AutoencoderKL, opts: VaeTilingFeatureOptions): VaeTilingOptions {
  for (const k of Object.keys(opts))
    if (k !== "tileSize" && k !== "overlap" && k !== "seamless")
      throw new TypeError(`enableVaeTiling: unknown option ${JSON.stringify(k)} (tileSize, overlap, seamless)`);
  const d = vae.defaultTiling();
  const f = vae.scaleFactor;
  const tileSize = opts.tileSize ?? d.tileSampleMinSize;
  if (!Number.isInteger(tileSize) || tileSize < f || tileSize % f !== 0)
    throw new RangeError(`enableVaeTiling: tileSize must be a positive multiple of the VAE scale factor ${f} (pixels), got ${tileSize}`);
  const overlap = opts.overlap ?? d.tileOverlapFactor;
  if (typeof overlap !== "number" || !(overlap >= 0 && overlap < 1)) throw new RangeError(`enableVaeTiling: overlap must be in [0, 1), got ${overlap}`);
  const seamless = opts.seamless ?? false;
  if (typeof seamless !== "boolean") throw new TypeError(`enableVaeTiling: seamless must be true or false, got ${JSON.stringify(seamless)}`);
  return { tileSampleMinSize: tileSize, tileLatentMinSize: tileSize / f, tileOverlapFactor: overlap, ...(seamless ? { seamless } : {}) };
}

/** Turn tiling on with `t`; the remover restores the previous state. */
export function installVaeTiling(vae: AutoencoderKL, t: VaeTilingOptions): () => void {
  const was = { on: vae.useTiling, tiling: vae.tiling };
  vae.enableTiling(t);
  return () => {
    vae.enableTiling(was.tiling);
    if (!was.on) vae.disableTiling();
  };
}

/** Turn slicing on; the remover restores the previous state. */
export function installVaeSlicing(vae: AutoencoderKL): () => void {
  const was = vae.useSlicing;
  vae.enableSlicing();
  return () => (was ? vae.enableSlicing() : vae.disableSlicing());
}
