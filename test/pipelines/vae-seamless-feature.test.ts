// The "vaeTiling" feature with `seamless: true` on a tiny random SD 1.x pipeline (test/helpers/tiny-pipelines.ts):
// listed with seamless=true and carried by the image parameters; the image equals the untiled run within
// float32 rounding (1e-4 relative); an unknown or non-boolean option is refused; removing restores bit for bit.

import { beforeAll, expect, test } from "bun:test";
import type { StableDiffusionPipeline } from "../../src/pipelines/index.ts";
import { memoryStats } from "../../src/tensor/index.ts";
import { maxError } from "../helpers/golden.ts";
import { useTinyPipelines } from "../helpers/tiny-pipelines.ts";

let sd: StableDiffusionPipeline;
const tiny = useTinyPipelines("vae-seamless", { sd15: 21, sdxl: 22 });
beforeAll(() => void ({ sd } = tiny));

const RUN = { prompt: "a red circle", steps: 2, seed: 9, width: 64, height: 48 } as const; // latents 16×12 > the 8-latent tile

async function pixels(): Promise<Float32Array> {
  const r = await sd.generate({ ...RUN, outputType: "tensor" });
  const p = r.tensor!.toFloat32Array();
  r.tensor!.dispose();
  return p;
}

test("vaeTiling seamless: listed, recorded in the image parameters, equal to the untiled run; removal restores", async () => {
  const live0 = memoryStats("cpu").live;
  const plain = await pixels();
  expect(() => sd.enableVaeTiling({ seamless: "yes" as unknown as boolean })).toThrow("seamless must be true or false");
  expect(sd.features()).toEqual([]);
  sd.enableVaeTiling({ seamless: true });
  const d = sd.vae.defaultTiling();
  expect(sd.features()).toEqual([{ name: "vaeTiling", options: { tileSize: d.tileSampleMinSize, overlap: 0.25, seamless: true } }]);
  expect(sd.vae.tiling.seamless).toBe(true);
  const seamless = await pixels();
  const { maxAbs, maxRef } = maxError(seamless, plain);
  console.log(`seamless vs untiled run: max |Δ| ${maxAbs.toExponential(2)} of max ${maxRef.toFixed(3)}`);
  expect(maxAbs).toBeLessThanOrEqual(1e-4 * maxRef); // float32 summation order only
  const imgs = (await sd.generate(RUN)).images;
  expect(imgs[0]!.parameters!.extra!.Features).toBe(`vaeTiling(tileSize=${d.tileSampleMinSize} overlap=0.25 seamless=true)`);
  expect(sd.disableVaeTiling()).toBe(true);
  expect(sd.vae.useTiling).toBe(false);
  expect(sd.vae.tiling).toEqual(d);
  expect(maxError(await pixels(), plain).maxAbs).toBe(0);
  expect(memoryStats("cpu").live).toBe(live0);
});
