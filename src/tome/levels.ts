// Where the transformer blocks of a UNet sit: each BasicTransformerBlock with its module path and resolution level
// (down_blocks.i → i, mid_block → the deepest level, up_blocks.j → deepest − j), the "auto" downsample bound (the
// highest-resolution level that has blocks, as 2^level), and tomesd's per-call rule that derives a block's token
// grid from the UNet input's latent size: downsample = ⌈√(⌊H·W / N⌋)⌉, grid = ⌈W / ds⌉ × ⌈H / ds⌉.

import { BasicTransformerBlock, type UNet2DConditionModel } from "../models/unet/index.ts";

export interface TransformerBlockSite {
  readonly path: string;
  readonly block: BasicTransformerBlock;
  /** Resolution level: the grid is the latent downsampled 2^level times. */
  readonly level: number;
}

/** Every BasicTransformerBlock under the UNet, in module order, with its level. */
export function transformerBlockSites(unet: UNet2DConditionModel): TransformerBlockSite[] {
  const deepest = unet.down_blocks.length - 1;
  const out: TransformerBlockSite[] = [];
  for (const [path, m] of unet.namedModules()) {
    if (!(m instanceof BasicTransformerBlock)) continue;
    const down = /^down_blocks\.(\d+)\./.exec(path);
    const up = /^up_blocks\.(\d+)\./.exec(path);
    const level = down ? Number(down[1]) : up ? deepest - Number(up[1]) : path.startsWith("mid_block.") ? deepest : null;
    if (level === null) throw new Error(`token merging: transformer block ${path} is in no down, mid or up block`);
    out.push({ path, block: m, level });
  }
  return out;
}

/** 2^(lowest level with transformer blocks): the downsample of the highest-resolution attention level. */
export function autoMaxDownsample(sites: readonly TransformerBlockSite[]): number {
  if (!sites.length) throw new Error("token merging: this UNet has no transformer blocks to merge in");
  return 2 ** Math.min(...sites.map((s) => s.level));
}

/** tomesd's compute_merge geometry for N tokens of a UNet called on an H×W latent. */
export function tokenGrid(latentH: number, latentW: number, tokens: number): { downsample: number; h: number; w: number } {
  const downsample = Math.ceil(Math.sqrt(Math.floor((latentH * latentW) / tokens)));
  return { downsample, h: Math.ceil(latentH / downsample), w: Math.ceil(latentW / downsample) };
}
