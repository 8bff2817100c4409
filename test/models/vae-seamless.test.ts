// Seamless tiled VAE decode (enableTiling({ seamless: true }), models/vae/seamless-decode.ts): on every
// test device, each golden VAE case's tiled-decode input decodes equal to the golden untiled decode
// (1e-4 relative: float32 rounding only, convolutions summed in another order) and unlike the blended
// tiles; an odd, non-square latent equals our own untiled decode; the device peak stays bounded by the
// tile (a real-size SDXL VAE planned on meta at 2048² and 4096²); switching back gives plain tiling and
// the untiled decode bit for bit; live bytes return to the start.

import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import path from "node:path";
import { AutoencoderKL } from "../../src/models/vae/index.ts";
import { type Device, type Tensor, empty, measureMemory, memoryStats, randn, tidy } from "../../src/tensor/index.ts";
import { goldenCases, goldenTensor, maxError, openGolden } from "../helpers/golden.ts";
import { testDevices } from "../helpers/op-harness.ts";
import { goldenDir } from "../helpers/paths.ts";

const cases = goldenCases("vae").filter((e) => e.tensors["tiled_decode/z"] && e.tensors["tiled_decode/untiled_out"] && e.meta.tiling);
const f32 = (t: Tensor) => t.to({ device: "cpu" }).toTypedArray() as Float32Array;
const rel = (a: Tensor, b: Tensor) => {
  const { maxAbs, maxRef } = maxError(f32(a), f32(b));
  return maxAbs / maxRef;
};
const TOL = 1e-4; // float32: the same arithmetic as the untiled decode, only summation orders differ

function tilingOf(meta: Record<string, unknown>) {
  const t = meta.tiling as Record<string, number>;
  return { tileSampleMinSize: t.tile_sample_min_size!, tileLatentMinSize: t.tile_latent_min_size!, tileOverlapFactor: t.tile_overlap_factor! };
}

test("the golden folder has tiled VAE decode cases", () => expect(cases.length).toBeGreaterThan(0));

describe.each(testDevices())("seamless decode on %s", (device: Device) => {
  for (const entry of cases)
    test(`${entry.file}: equals the untiled decode (golden), unlike the blended tiles; odd sizes; switches restore bit for bit`, () => {
      const live0 = memoryStats(device).live;
      const vae = AutoencoderKL.fromPretrained(path.join(goldenDir, entry.meta.model!), { device });
      const t = tilingOf(entry.meta);
      tidy(() => {
        const f = openGolden(entry.file);
        const z = goldenTensor(f, "tiled_decode/z", "float32").to(device);
        const L = vae.config.latent_channels;
        const odd = randn([1, L, 2 * t.tileLatentMinSize + 3, t.tileLatentMinSize + 5], { seed: 7 }).to(device); // non-square, not tile multiples
        const untiledOdd = vae.decode(odd);
        vae.enableTiling(t);
        const blended = vae.decode(z);
        vae.enableTiling({ ...t, seamless: true });
        expect(vae.tiling.seamless).toBe(true);
        const out = vae.decode(z);
        expect(out.device).toBe(device);
        const e = rel(out, goldenTensor(f, "tiled_decode/untiled_out"));
        const eOdd = rel(vae.decode(odd), untiledOdd);
        console.log(`${entry.file} on ${device}: seamless vs untiled max rel ${e.toExponential(2)}; odd ${odd.shape.slice(2).join("×")} ${eOdd.toExponential(2)}`);
        expect(e).toBeLessThanOrEqual(TOL);
        expect(eOdd).toBeLessThanOrEqual(TOL);
        expect(rel(blended, goldenTensor(f, "tiled_decode/untiled_out"))).toBeGreaterThan(100 * TOL); // the seams it removes
        vae.enableTiling(t); // plain tiling again
        expect(maxError(f32(vae.decode(z)), f32(blended)).maxAbs).toBe(0);
        vae.disableTiling();
        expect(maxError(f32(vae.decode(odd)), f32(untiledOdd)).maxAbs).toBe(0);
      });
      vae.dispose();
      expect(memoryStats(device).live).toBe(live0);
    });
});

test("real-size SDXL VAE on meta: the seamless device peak is set by the tile, far below the untiled peak, and grows only by the attention's keys and values", () => {
  const manifest = JSON.parse(readFileSync(path.join(goldenDir, "manifests", "sdxl_vae.json"), "utf8")) as { resolved_config: Record<string, unknown> };
  const vae = new AutoencoderKL(manifest.resolved_config, { device: "meta" });
  const L = vae.config.latent_channels;
  const f = vae.scaleFactor;
  const tile = vae.defaultTiling().tileLatentMinSize; // SDXL: 1024-px tiles, 128 latents
  vae.enableTiling({ seamless: true });
  const plan = (px: number) =>
    tidy(() => {
      const z = empty([1, L, px / f, px / f], { device: "meta" });
      const untiled = measureMemory("meta", () => void vae.decoder.call(z)).peak;
      const { devicePeak } = vae.seamlessDecode(z);
      return { untiled, devicePeak };
    });
  const [a, b] = [plan(2048), plan(4096)];
  const C = vae.config.block_out_channels.at(-1)!;
  const kvGrowth = 2 * C * ((4096 / f) ** 2 - (2048 / f) ** 2) * 4; // float32 keys + values over the extra latent pixels
  console.log(`SDXL VAE on meta, ${tile}-latent tiles: seamless device peak 2048² ${a.devicePeak} B, 4096² ${b.devicePeak} B; untiled 4096² ${b.untiled} B`);
  // every step but the attention has tiles of the same size at both sizes; its keys and values grow
  expect(b.devicePeak - a.devicePeak).toBeLessThanOrEqual(kvGrowth);
  expect(b.devicePeak).toBeLessThan(b.untiled / 10);
  expect(b.devicePeak).toBeLessThan(8 * 2 ** 30);
  vae.dispose();
});

test.skipIf(!testDevices().includes("cuda"))("cuda: the measured device peak of the seamless decode is bounded by the tile, below the untiled decode's, and falls further behind as the image grows", () => {
  const entry = cases[0]!;
  const vae = AutoencoderKL.fromPretrained(path.join(goldenDir, entry.meta.model!), { device: "cuda" });
  const t = tilingOf(entry.meta);
  const L = vae.config.latent_channels;
  const peaks = (side: number) =>
    tidy(() => {
      const z = randn([1, L, side, side], { seed: 5 }).to("cuda");
      const untiled = measureMemory("cuda", () => tidy(() => void vae.decode(z))).peak;
      vae.enableTiling({ ...t, seamless: true });
      const image = vae.config.out_channels * (side * vae.scaleFactor) ** 2 * 4; // the returned float32 image
      const seamless = measureMemory("cuda", () => tidy(() => void vae.decode(z))).peak - image;
      vae.disableTiling();
      return { untiled, seamless };
    });
  const [a, b] = [peaks(2 * t.tileLatentMinSize), peaks(4 * t.tileLatentMinSize)];
  console.log(`cuda peaks, ${t.tileLatentMinSize}-latent tiles: ${2 * t.tileLatentMinSize}² untiled ${a.untiled} B, seamless ${a.seamless} B; ${4 * t.tileLatentMinSize}² untiled ${b.untiled} B, seamless ${b.seamless} B (without the output image)`);
  expect(b.seamless).toBeLessThan(b.untiled / 2);
  // 4× the pixels: the untiled peak grows ~4×, the seamless one only by the attention's keys and values
  const C = vae.config.block_out_channels.at(-1)!;
  expect(b.seamless - a.seamless).toBeLessThanOrEqual(2 * C * ((4 * t.tileLatentMinSize) ** 2 - (2 * t.tileLatentMinSize) ** 2) * 4);
  vae.dispose();
});
