// The VAE's public surface: AutoencoderKL and its config, the latent distribution, and the
// encoder / decoder / block modules (for hooks and tests).

export {
  AutoencoderKL,
  type AutoencoderKLEncodeOutput,
  type AutoencoderKLForwardOptions,
  type AutoencoderKLFromPretrainedOptions,
  renameLegacyVaeKey,
} from "./autoencoder-kl.ts";
export { AUTOENCODER_KL_DEFAULTS, type AutoencoderKLConfig, ConfigError, parseAutoencoderKLConfig, vaeScaleFactor } from "./config.ts";
export { type VaeTilingOptions } from "./tiling.ts";
export { DiagonalGaussianDistribution, type GeneratorArg } from "./distribution.ts";
export { Encoder } from "./encoder.ts";
export { Decoder } from "./decoder.ts";
export { DownEncoderBlock2D, Downsample2D, ResnetBlock2D, UNetMidBlock2D, UpDecoderBlock2D, Upsample2D, VAE_NORM_EPS } from "./blocks.ts";
