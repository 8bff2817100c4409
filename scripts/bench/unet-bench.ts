// The UNet of a real-size architecture with random weights, and its inputs, for the benchmarks that time denoising
// steps (ladder.ts, offload-steps.ts, tome-table.ts): built on "meta" from assets/configs (the shipped resolved
// configs of SD 1.5, SD 2.1, SDXL), filled by random-weights.ts, moved to the device; inputs drawn from fixed seeds
// in the model's dtype, SDXL's added conditioning included (time ids stay on the host, as the pipeline keeps them).

import { UNet2DConditionModel } from "../../src/models/unet/index.ts";
import { knownPlanModels } from "../../src/pipelines/index.ts";
import { type DType, type Device, type Tensor, randn, tensor, tidy } from "../../src/tensor/index.ts";
import { fillRandom } from "./random-weights.ts";

/** A real-size UNet ("sd15", "sd21", "sdxl") with random weights on `device` in `dtype`. */
export function randomUNet(arch: string, device: Device, dtype: DType): UNet2DConditionModel {
  const unet = new UNet2DConditionModel(knownPlanModels(arch, dtype).unet, { device: "meta" });
  fillRandom(unet);
  unet.to({ device, dtype });
  return unet;
}

export interface UNetInputs {
  sample: Tensor; // [rows, C, h, w]
  encoderHiddenStates: Tensor; // [rows, 77, cross]
  textEmbeds: Tensor | null; // SDXL: [rows, pooled]
  timeIds: Tensor | null; // SDXL: [rows, 6] on the host
  dispose(): void;
}

/** Inputs of one UNet call at `px` pixels with `rows` batch rows (2 per image under CFG). */
export function unetInputs(unet: UNet2DConditionModel, px: number, rows: number, seed = 3): UNetInputs {
  const cfg = unet.config;
  const device = unet.device;
  const dtype = unet.dtype;
  const h = px / 8;
  const cross = Array.isArray(cfg.cross_attention_dim) ? cfg.cross_attention_dim[0]! : cfg.cross_attention_dim;
  const draw = (shape: number[], s: number) => tidy(() => randn(shape, { seed: s }).to({ device, dtype })); // the CPU draw is freed
  const sdxl = cfg.addition_embed_type === "text_time";
  const pooled = sdxl ? (cfg.projection_class_embeddings_input_dim as number) - 6 * (cfg.addition_time_embed_dim as number) : 0;
  const ids = new Float32Array(rows * 6);
  for (let r = 0; r < rows; r++) ids.set([px, px, 0, 0, px, px], r * 6);
  const x = {
    sample: draw([rows, cfg.in_channels, h, h], seed),
    encoderHiddenStates: draw([rows, 77, cross], seed + 1),
    textEmbeds: sdxl ? draw([rows, pooled], seed + 2) : null,
    timeIds: sdxl ? tensor(ids, { shape: [rows, 6] }) : null,
    dispose: () => {
      for (const t of [x.sample, x.encoderHiddenStates, x.textEmbeds, x.timeIds]) t?.dispose();
    },
  };
  return x;
}

/** One UNet call on `x` at `timestep` (the output is returned; the caller frees it or runs this in tidy()). */
export function unetCall(unet: UNet2DConditionModel, x: UNetInputs, timestep: number): Tensor {
  return unet.call(x.sample, timestep, x.encoderHiddenStates, x.textEmbeds ? { textEmbeds: x.textEmbeds, timeIds: x.timeIds } : {});
}
