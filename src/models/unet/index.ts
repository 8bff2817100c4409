// The UNet's public surface: UNet2DConditionModel, its config (parse, defaults, per-level values) and
// the building blocks (for hooks such as ToMe and offload that address them by class).

export { UNet2DConditionModel, timestepValues, type UNetForwardOptions, type UNetFromPretrainedOptions, type UNetOptions } from "./unet2d-condition.ts";
export { ConfigError, UNET_CONFIG_DEFAULTS, parseUNetConfig, unetLevels, type UNet2DConditionConfig, type UNetLevels } from "./config.ts";
export { CrossAttnDownBlock2D, CrossAttnUpBlock2D, DownBlock2D, UNetMidBlock2DCrossAttn, UpBlock2D } from "./blocks.ts";
export { Downsample2D, ResnetBlock2D, Upsample2D } from "./resnet.ts";
export { BasicTransformerBlock, Transformer2DModel } from "./transformer.ts";
export { TimestepEmbedding, Timesteps, sinusoidalEmbedding } from "./embeddings.ts";
