// DeepCache's branch plan on the real-size SD 1.5, SD 2.1 and SDXL UNets (built on "meta" from the golden
// manifests): for every branch id, the modules our plan caches are exactly the ones horseee/DeepCache's
// extension (DeepCacheSDHelper) skips while their parent block runs, with its numbering reimplemented here:
// (cache_block_id, cache_layer_id) = (⌊b/3⌋, b mod 3); down layers numbered (block i, layer j) with the
// downsampler at layer len(resnets); up blocks numbered from the top (block n−1−k, layer L−1−j); skipped when
// block > cache_block, or the mid block, or (same block and layer ≥ cache_layer (down) / > cache_layer (up)).

import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import path from "node:path";
import { UNet2DConditionModel } from "../../src/models/unet/index.ts";
import type { Module } from "../../src/nn/module.ts";
import { deepCachePlan } from "../../src/speed/index.ts";
import { goldenDir } from "../helpers/paths.ts";

type Kind = "down" | "mid" | "up";

/** The paths DeepCache's wrappers skip while their parent runs, for branch b. */
function referenceFrontier(unet: UNet2DConditionModel, b: number): string[] {
  const block = Math.floor(b / 3);
  const layer = b % 3;
  const skip = (bi: number, li: number, kind: Kind) =>
    bi > block || kind === "mid" || (bi === block && (kind === "down" ? li >= layer : li > layer));
  const out: string[] = [];
  const n = unet.up_blocks.length;
  const parts = (m: Module) => m as Module & { resnets: { length: number }; attentions?: unknown; downsamplers?: unknown };
  for (let i = 0; i < unet.down_blocks.length; i++) {
    const blk = parts(unet.down_blocks.at(i));
    if (skip(i, 0, "down")) {
      out.push(`down_blocks.${i}`);
      continue;
    }
    for (let j = 0; j < blk.resnets.length; j++)
      if (skip(i, j, "down")) out.push(`down_blocks.${i}.resnets.${j}`, ...(blk.attentions ? [`down_blocks.${i}.attentions.${j}`] : []));
    if (blk.downsamplers && skip(i, blk.resnets.length, "down")) out.push(`down_blocks.${i}.downsamplers.0`);
  }
  out.push("mid_block");
  for (let k = 0; k < n; k++) {
    const blk = parts(unet.up_blocks.at(k));
    const L = blk.resnets.length;
    if (skip(n - 1 - k, 0, "up")) {
      out.push(`up_blocks.${k}`);
      continue;
    }
    for (let j = 0; j < L; j++)
      if (skip(n - 1 - k, L - 1 - j, "up")) out.push(`up_blocks.${k}.resnets.${j}`, ...(blk.attentions ? [`up_blocks.${k}.attentions.${j}`] : []));
  }
  return out;
}

describe("DeepCache plan on the real-size UNets", () => {
  for (const [name, skips] of [
    ["sd15_unet", 12],
    ["sd21_unet", 12],
    ["sdxl_base_unet", 9],
  ] as const) {
    test(`${name}: ${skips} branches; every branch caches what DeepCache skips under its parent`, () => {
      const json = JSON.parse(readFileSync(path.join(goldenDir, "manifests", `${name}.json`), "utf8")) as { resolved_config: Record<string, unknown> };
      const unet = new UNet2DConditionModel(json.resolved_config, { device: "meta" });
      const p = deepCachePlan(unet, 0);
      expect(p.branches).toBe(skips);
      for (let b = 0; b < skips; b++) expect({ b, paths: deepCachePlan(unet, b).frontier.map(([q]) => q) }).toEqual({ b, paths: referenceFrontier(unet, b) });
      unet.dispose();
    });
  }
});
