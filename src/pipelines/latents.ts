// Initial latents and step noise as diffusers draws them with CPU generators (randn_tensor): one
// generator draws the whole [B, C, h, w] batch in one call; a list of generators draws one [1, C, h, w]
// row each. Values are drawn as float32 on the CPU, then converted and moved to the compute device.
// User-supplied latents are used as given. Either way they are multiplied by the scheduler's
// init_noise_sigma (prepare_latents).

import type { NoiseSource } from "../schedulers/index.ts";
import { type DType, type Device, type Tensor, cat, randn, tidy } from "../tensor/index.ts";
import type { Seeds } from "./options.ts";

/** randn_tensor(shape, generator(s)) as float32 on the CPU, then in `dtype` on `device`. */
export function drawNoise(seeds: Seeds, shape: readonly number[], dtype: DType, device: Device): Tensor {
  return tidy(() => {
    let x: Tensor;
    if (seeds.kind === "single") x = randn([...shape], { generator: seeds.generator, dtype: "float32" });
    else {
      if (shape[0] !== seeds.generators.length)
        throw new Error(`drawNoise: ${seeds.generators.length} generators for a batch of ${shape[0]}`);
      const row = [1, ...shape.slice(1)];
      x = cat(seeds.generators.map((generator) => randn(row, { generator, dtype: "float32" })), 0); // [B, ...]
    }
    return x.dtype === dtype && x.device === device ? x : x.to({ dtype, device });
  });
}

/** The scheduler's noise source for ancestral / stochastic steps: the same generator(s) as the latents. */
export function stepNoise(seeds: Seeds): NoiseSource {
  return (shape, like) => drawNoise(seeds, shape, like.dtype, like.device);
}

/** prepare_latents: `latents` (or fresh noise) in the compute dtype/device, times init_noise_sigma. */
export function prepareLatents(
  seeds: Seeds,
  shape: readonly number[],
  dtype: DType,
  device: Device,
  initNoiseSigma: number,
  latents?: Tensor,
): Tensor {
  return tidy(() => {
    const x = latents ? latents.to({ dtype, device }) : drawNoise(seeds, shape, dtype, device);
    return initNoiseSigma === 1 ? x : x.mul(initNoiseSigma);
  });
}
