// The pipeline features "vaeSlicing" and "vaeTiling" on tiny random SD 1.x and SDXL pipelines
// (test/helpers/tiny-pipelines.ts): listed by features() with their options and carried by the image
// parameters; a sliced batch equals the unsliced one; a tiled run's image equals the VAE's own tiled
// decode of the same latents; removing restores the output bit for bit; options are checked before
// anything changes; the memory prediction follows the switches and bounds a sliced, tiled run's peak; dispose() removes them; the decode's CPU
// peak drops with slicing (batch of 4) and with tiling (a 32×32 latent, 6 × 6 tiles); CPU live bytes return to
// the start (also checked by the fixture's afterAll).

import { afterEach, beforeAll, describe, expect, test } from "bun:test";
import path from "node:path";
import { decodeLatents } from "../../src/pipelines/decode.ts";
import { StableDiffusionPipeline, StableDiffusionXLPipeline } from "../../src/pipelines/index.ts";
import { type Tensor, memoryStats, randn, resetPeakMemory, tidy } from "../../src/tensor/index.ts";
import { maxError } from "../helpers/golden.ts";
import { useTinyPipelines } from "../helpers/tiny-pipelines.ts";

let tmp: string;
let sd: StableDiffusionPipeline;
let xl: StableDiffusionXLPipeline;

const tiny = useTinyPipelines("vae-features", { sd15: 11, sdxl: 12 });
beforeAll(() => void ({ tmp, sd, xl } = tiny));
afterEach(() => {
  // a failed test leaves no feature behind for the next one
  for (const p of [sd, xl]) {
    p.disableVaeSlicing();
    p.disableVaeTiling();
  }
});

const RUN = { prompt: "a red circle", negativePrompt: "blurry", steps: 2, seed: 9 } as const;
type Pipe = StableDiffusionPipeline | StableDiffusionXLPipeline;

/** The image tensor [B, 3, H, W] (in [0, 1]) of a short run as a Float32Array. */
async function run(pipe: Pipe, extra: { width?: number; height?: number; numImagesPerPrompt?: number } = {}): Promise<{ pixels: Float32Array }> {
  const r = await pipe.generate({ ...RUN, ...extra, outputType: "tensor" });
  const pixels = r.tensor!.toFloat32Array();
  r.tensor!.dispose();
  return { pixels };
}

async function latentsOf(pipe: Pipe, extra: { width?: number; height?: number; numImagesPerPrompt?: number }): Promise<Tensor> {
  return (await pipe.generate({ ...RUN, ...extra, outputType: "latent" })).latents!;
}

/** Peak CPU bytes above the live bytes at the start while decoding `z` with `pipe`'s VAE. */
function decodePeak(pipe: Pipe, z: Tensor): number {
  const live0 = memoryStats("cpu").live;
  resetPeakMemory("cpu");
  tidy(() => void decodeLatents(pipe.vae, z));
  expect(memoryStats("cpu").live).toBe(live0);
  return memoryStats("cpu").peak - live0;
}

describe("vaeSlicing", () => {
  test("listed and carried by the images; a batch of 3 equals the unsliced batch; removing restores bit for bit", async () => {
    const live0 = memoryStats("cpu").live;
    const opts = { numImagesPerPrompt: 3 };
    const plain = await run(sd, opts);
    sd.enableVaeSlicing();
    expect(sd.features()).toEqual([{ name: "vaeSlicing", options: {} }]);
    expect(sd.vae.useSlicing).toBe(true);
    const sliced = await run(sd, opts);
    const imgs = (await sd.generate(RUN)).images;
    expect(imgs[0]!.parameters!.extra!.Features).toBe("vaeSlicing");
    const { maxAbs } = maxError(sliced.pixels, plain.pixels);
    console.log(`vaeSlicing: max|sliced − batched| over [0, 1] pixels ${maxAbs.toExponential(2)}`);
    // batched CPU kernels may choose another convolution algorithm for another batch size (architecture
    // decision 13): float32 summation order only, ≤ 1e-5·max of the VAE output, which is ≤ 1 after clamping
    expect(maxAbs).toBeLessThanOrEqual(1e-5);
    expect(sd.disableVaeSlicing()).toBe(true);
    expect(sd.disableVaeSlicing()).toBe(false);
    expect(sd.features()).toEqual([]);
    expect(sd.vae.useSlicing).toBe(false);
    expect(maxError((await run(sd, opts)).pixels, plain.pixels).maxAbs).toBe(0);
    expect(memoryStats("cpu").live).toBe(live0);
  });

  test("decode peak CPU memory of a batch of 4 drops with slicing", () => {
    const z = randn([4, sd.vae.config.latent_channels, 16, 16], { seed: 1 }); // 64×64 px images
    try {
      const full = decodePeak(sd, z);
      sd.enableVaeSlicing();
      const sliced = decodePeak(sd, z);
      sd.disableVaeSlicing();
      console.log(`vaeSlicing peak, batch of 4 at 64×64: ${full} -> ${sliced} bytes (${((1 - sliced / full) * 100).toFixed(0)}% less)`);
      expect(sliced).toBeLessThan(0.6 * full); // one image's activations instead of four (+ the output)
    } finally {
      sd.disableVaeSlicing();
      z.dispose();
    }
  });
});

describe("vaeTiling", () => {
  test("listed with its options; the image equals the VAE's tiled decode of the same latents (SD and SDXL); removing restores bit for bit", async () => {
    for (const pipe of [sd, xl] as Pipe[]) {
      const live0 = memoryStats("cpu").live;
      const size = { width: 64, height: 48 }; // latents 16×12 > the tiny VAE's 8-latent tile
      const z = await latentsOf(pipe, size);
      const plain = await run(pipe, size);
      const d = pipe.vae.defaultTiling();
      pipe.enableVaeTiling({ overlap: 0.5 });
      expect(pipe.features()).toEqual([{ name: "vaeTiling", options: { tileSize: d.tileSampleMinSize, overlap: 0.5 } }]);
      expect(pipe.vae.tiling).toEqual({ ...d, tileOverlapFactor: 0.5 });
      const tiled = await run(pipe, size);
      const imgs = (await pipe.generate({ ...RUN, ...size })).images;
      expect(imgs[0]!.parameters!.extra!.Features).toBe(`vaeTiling(tileSize=${d.tileSampleMinSize} overlap=0.5)`);
      const vaeTiled = tidy(() => decodeLatents(pipe.vae, z).toFloat32Array());
      expect(maxError(tiled.pixels, vaeTiled).maxAbs).toBe(0);
      expect(maxError(tiled.pixels, plain.pixels).maxAbs).toBeGreaterThan(1e-3); // tiling really happened
      pipe.enableVaeTiling(); // again: replaces, defaults
      expect(pipe.features()).toEqual([{ name: "vaeTiling", options: { tileSize: d.tileSampleMinSize, overlap: 0.25 } }]);
      expect(pipe.disableVaeTiling()).toBe(true);
      expect(pipe.vae.useTiling).toBe(false);
      expect(pipe.vae.tiling).toEqual(d); // the VAE's state before the feature
      expect(maxError((await run(pipe, size)).pixels, plain.pixels).maxAbs).toBe(0);
      z.dispose();
      expect(memoryStats("cpu").live).toBe(live0);
    }
  });

  test("bad options are refused before anything changes; slicing and tiling compose", async () => {
    const f = sd.vae.scaleFactor;
    expect(() => sd.enableVaeTiling({ tileSize: f + 1 })).toThrow(RangeError);
    expect(() => sd.enableVaeTiling({ overlap: 1 })).toThrow(RangeError);
    expect(() => sd.enableVaeTiling({ tileSise: 64 } as never)).toThrow(/unknown option "tileSise"/);
    expect(sd.features()).toEqual([]);
    expect(sd.vae.useTiling).toBe(false);
    sd.enableVaeTiling({ tileSize: 4 * f });
    sd.enableVaeSlicing();
    expect(sd.features().map((x) => x.name)).toEqual(["vaeTiling", "vaeSlicing"]);
    expect(sd.vae.tiling.tileLatentMinSize).toBe(4);
    const both = await run(sd, { width: 48, height: 48, numImagesPerPrompt: 2 });
    expect(both.pixels.length).toBe(2 * 3 * 48 * 48);
    sd.disableVaeSlicing();
    sd.disableVaeTiling();
    expect(sd.features()).toEqual([]);
  });

  test("decode peak CPU memory of a large latent drops with tiling; the memory prediction follows the switch", () => {
    const z = randn([1, sd.vae.config.latent_channels, 32, 32], { seed: 2 }); // 128×128 px: 6 × 6 tiles of 8 latents (stride 6)
    try {
      const shape = { prompt: "x", width: 32 * sd.vae.scaleFactor, height: 32 * sd.vae.scaleFactor, steps: 2 };
      const predicted = sd.predictMemory(shape);
      const full = decodePeak(sd, z);
      sd.enableVaeTiling();
      const tiled = decodePeak(sd, z);
      const predictedTiled = sd.predictMemory(shape);
      sd.disableVaeTiling();
      console.log(
        `vaeTiling peak, 128×128 px (32×32 latents, 8-latent tiles): ${full} -> ${tiled} bytes (${((1 - tiled / full) * 100).toFixed(0)}% less); ` +
          `predicted run need ${predicted.device} -> ${predictedTiled.device} (${predicted.phase} -> ${predictedTiled.phase})`,
      );
      expect(tiled).toBeLessThan(0.5 * full); // one tile's activations + the output instead of the whole image's
      expect(predictedTiled.device).toBeLessThan(predicted.device);
      expect(sd.predictMemory(shape)).toEqual(predicted); // cached per switch state
    } finally {
      sd.disableVaeTiling();
      z.dispose();
    }
  });
});

test("with slicing and tiling on, the prediction still bounds a run's tracked peak", async () => {
  sd.enableVaeTiling();
  sd.enableVaeSlicing();
  const opts = { ...RUN, width: 128, height: 96, numImagesPerPrompt: 2 };
  const before = memoryStats("cpu").live;
  resetPeakMemory("cpu");
  const r = await sd.generate({ ...opts, outputType: "tensor" });
  const peak = memoryStats("cpu").peak - before;
  r.tensor!.dispose();
  const need = sd.predictMemory(opts);
  console.log(`sliced + tiled run 2 × 128×96: tracked peak ${peak}, predicted ${need.device} (${need.phase})`);
  expect(need.device).toBeGreaterThanOrEqual(peak);
  expect(need.device).toBeLessThan(8 * peak); // the planner's allowances stay modest (as test/pipelines/robustness.test.ts)
});

test("dispose() removes both features (the VAE's switches are off again)", async () => {
  const pipe = await StableDiffusionPipeline.fromPretrained(path.join(tmp, "sd15"));
  const vae = pipe.vae;
  pipe.enableVaeSlicing();
  pipe.enableVaeTiling();
  expect(vae.useSlicing && vae.useTiling).toBe(true);
  pipe.dispose();
  expect(vae.useSlicing || vae.useTiling).toBe(false);
  expect(() => pipe.enableVaeSlicing()).toThrow(/disposed/);
});
