// AutoencoderKL (diffusers models/autoencoders/autoencoder_kl.py): encoder -> quant_conv ->
// DiagonalGaussianDistribution; post_quant_conv -> decoder. decode() applies NO scaling factor, as
// diffusers: pipelines divide latents by `scalingFactor` (and add `shiftFactor`) themselves, and use
// `forceUpcast` to run the VAE in float32. fromPretrained() loads a diffusers component folder; older
// checkpoints that name the mid-block attention `query/key/value/proj_attn` load too (renamed on load,
// as diffusers' _convert_deprecated_attention_blocks does). As diffusers' model, it carries the
// memory switches: enableSlicing() (a batch one image at a time, slicing.ts) and enableTiling() (inputs
// larger than a tile are encoded / decoded tile by tile with blended overlaps, tiling.ts; with
// `seamless: true` the decode runs layer by layer over tiles and equals the untiled decode,
// seamless-decode.ts, while the encode stays diffusers' blended tiled encode).

import { type DType, type Device, type Tensor, tidy } from "../../tensor/index.ts";
import { DIFFUSERS_WEIGHTS, loadPretrained, type PretrainedOptions } from "../../io/model-folder.ts";
import type { AttnProcessor } from "../../nn/attention.ts";
import type { AttentionKind } from "../../nn/attention-dispatch.ts";
import { type AttnProcessorChoice, attnProcessors, setAttentionKind, setAttnProcessor } from "../../nn/attention-processors.ts";
import { Conv2d } from "../../nn/layers.ts";
import { type LoadReport, type LoadStateDictOptions, Module, type ModuleOptions, type StateDictSource } from "../../nn/module.ts";
import { type AutoencoderKLConfig, parseAutoencoderKLConfig, vaeScaleFactor } from "./config.ts";
import { Decoder } from "./decoder.ts";
import { DiagonalGaussianDistribution, type GeneratorArg } from "./distribution.ts";
import { Encoder } from "./encoder.ts";
import { seamlessDecode } from "./seamless-decode.ts";
import { slicedApply } from "./slicing.ts";
import { type VaeTilingOptions, checkTilingOptions, decodeGeometry, encodeGeometry, encodedLength, tiledApply } from "./tiling.ts";

export interface AutoencoderKLEncodeOutput {
  latentDist: DiagonalGaussianDistribution;
}

export interface AutoencoderKLForwardOptions {
  /** Decode a sample of the latent distribution instead of its mode (diffusers sample_posterior). */
  samplePosterior?: boolean;
  generator?: GeneratorArg;
}

export interface AutoencoderKLFromPretrainedOptions extends Omit<PretrainedOptions, "weightsNames"> {
  device?: Device;
  dtype?: DType;
  variant?: string;
  /** Attention implementation of the mid-block attentions' default processor (default "fused"). */
  attention?: AttentionKind;
}

/**
 * The deprecated AttentionBlock's parameter names -> Attention's (diffusers
 * ModelMixin._convert_deprecated_attention_blocks, applied to the VAE mid-block attentions, the
 * modules built with `_from_deprecated_attn_block`). group_norm keeps its name; the old q/k/v/proj
 * were nn.Linear too ([C, C] weights), so no reshape is needed.
 */
const LEGACY_ATTENTION = /^((?:encoder|decoder)\.mid_block\.attentions\.\d+)\.(query|key|value|proj_attn)\.(weight|bias)$/;
const LEGACY_NAMES: Record<string, string> = { query: "to_q", key: "to_k", value: "to_v", proj_attn: "to_out.0" };

export function renameLegacyVaeKey(key: string): string {
  const m = LEGACY_ATTENTION.exec(key);
  return m ? `${m[1]}.${LEGACY_NAMES[m[2]!]}.${m[3]}` : key;
}

/** forward: image [B, C, H, W] -> reconstruction [B, C, H, W] (encode, mode or sample, decode). */
export class AutoencoderKL extends Module<[Tensor, AutoencoderKLForwardOptions?], Tensor> {
  readonly config: AutoencoderKLConfig;
  readonly encoder: Encoder;
  readonly decoder: Decoder;
  readonly quant_conv: Conv2d | null;
  readonly post_quant_conv: Conv2d | null;
  #useSlicing = false;
  #useTiling = false;
  #tiling: VaeTilingOptions;

  constructor(config: AutoencoderKLConfig | Record<string, unknown>, opts: ModuleOptions = {}, where?: string) {
    super(opts);
    this.config = parseAutoencoderKLConfig(config, where);
    const o = this.options;
    const L = this.config.latent_channels;
    this.encoder = this.child("encoder", new Encoder(this.config, o));
    this.decoder = this.child("decoder", new Decoder(this.config, o));
    this.quant_conv = this.config.use_quant_conv ? this.child("quant_conv", new Conv2d(2 * L, 2 * L, 1, o)) : null;
    this.post_quant_conv = this.config.use_post_quant_conv ? this.child("post_quant_conv", new Conv2d(L, L, 1, o)) : null;
    this.#tiling = this.defaultTiling();
  }

  // ---- memory switches (diffusers enable_tiling / enable_slicing) ---------------------------

  /** diffusers' defaults: tiles of config.sample_size px and sample_size / 2^(levels − 1) latents, overlap 0.25. */
  defaultTiling(): VaeTilingOptions {
    const ss = this.config.sample_size;
    const sample = Array.isArray(ss) ? ss[0]! : ss;
    return {
      tileSampleMinSize: sample,
      tileLatentMinSize: Math.trunc(sample / 2 ** (this.config.block_out_channels.length - 1)),
      tileOverlapFactor: 0.25,
    };
  }

  /** Tiled encode / decode for inputs larger than a tile; options not given take defaultTiling()'s values. */
  enableTiling(opts: Partial<VaeTilingOptions> = {}): void {
    const t = { ...this.defaultTiling(), ...opts };
    checkTilingOptions(t);
    this.#tiling = t;
    this.#useTiling = true;
  }

  /** Back to one-piece encode / decode (the tile settings are kept, as diffusers does). */
  disableTiling(): void {
    this.#useTiling = false;
  }

  /** A batch is encoded / decoded one image at a time. */
  enableSlicing(): void {
    this.#useSlicing = true;
  }

  disableSlicing(): void {
    this.#useSlicing = false;
  }

  get useTiling(): boolean {
    return this.#useTiling;
  }

  get useSlicing(): boolean {
    return this.#useSlicing;
  }

  /** The tile settings (in effect while useTiling). */
  get tiling(): Readonly<VaeTilingOptions> {
    return { ...this.#tiling };
  }

  /** Latents are multiplied by it after encoding, divided by it before decode (by the pipeline). */
  get scalingFactor(): number {
    return this.config.scaling_factor;
  }

  /** Subtracted from latents before scaling (null: none). */
  get shiftFactor(): number | null {
    return this.config.shift_factor;
  }

  /** The model should run in float32 even in a float16 pipeline (SDXL's VAE overflows in fp16). */
  get forceUpcast(): boolean {
    return this.config.force_upcast;
  }

  /** Image-to-latent size ratio (8 for SD and SDXL). */
  get scaleFactor(): number {
    return vaeScaleFactor(this.config);
  }

  /** image [B, in_channels, H, W] (in [-1, 1]) -> the latent distribution over [B, latent_channels, H/f, W/f]. */
  encode(x: Tensor): AutoencoderKLEncodeOutput {
    this.#checkInput("encode", x, this.config.in_channels);
    return tidy(() => {
      const moments = this.#useSlicing && x.shape[0]! > 1 ? slicedApply(x, (s) => this.#encodeMoments(s)) : this.#encodeMoments(x);
      return { latentDist: new DiagonalGaussianDistribution(moments) };
    });
  }

  /** diffusers _encode: x [B, C, H, W] -> moments [B, 2L, H/f, W/f], tiled when x exceeds a tile. */
  #encodeMoments(x: Tensor): Tensor {
    const t = this.#tiling;
    if (this.#useTiling && (x.shape[3]! > t.tileSampleMinSize || x.shape[2]! > t.tileSampleMinSize)) {
      const levels = this.config.block_out_channels.length - 1;
      return tiledApply(x, encodeGeometry(t), (tile) => this.#encodeMoments1(tile), (n) => encodedLength(n, levels));
    }
    return this.#encodeMoments1(x);
  }

  #encodeMoments1(x: Tensor): Tensor {
    return tidy(() => {
      const h = this.encoder.call(x); // [B, 2L, H/f, W/f]
      return this.quant_conv ? this.quant_conv.call(h) : h;
    });
  }

  /** latents [B, latent_channels, h, w] (already divided by scalingFactor) -> image [B, out_channels, h·f, w·f]. */
  decode(z: Tensor): Tensor {
    this.#checkInput("decode", z, this.config.latent_channels);
    return this.#useSlicing && z.shape[0]! > 1 ? slicedApply(z, (s) => this.#decodeOne(s)) : this.#decodeOne(z);
  }

  /** diffusers _decode: z [B, L, h, w] -> [B, C, h·f, w·f], tiled when z exceeds a tile. */
  #decodeOne(z: Tensor): Tensor {
    const t = this.#tiling;
    if (this.#useTiling && (z.shape[3]! > t.tileLatentMinSize || z.shape[2]! > t.tileLatentMinSize)) {
      if (t.seamless === true) return this.seamlessDecode(z).image;
      const f = this.scaleFactor;
      return tiledApply(z, decodeGeometry(t), (tile) => this.#decode1(tile), (n) => n * f);
    }
    return this.#decode1(z);
  }

  /**
   * The seamless tiled decode of z [B, L, h, w] (tiles of tiling.tileLatentMinSize latents; seamless-decode.ts),
   * whatever the switches, with the device peak of its tile steps; decode() uses it when tiling is seamless.
   */
  seamlessDecode(z: Tensor): { image: Tensor; devicePeak: number } {
    this.#checkInput("decode", z, this.config.latent_channels);
    return seamlessDecode(this, z, { tileLatent: this.#tiling.tileLatentMinSize });
  }

  #decode1(z: Tensor): Tensor {
    return tidy(() => {
      const zq = this.post_quant_conv ? this.post_quant_conv.call(z) : z;
      const out = this.decoder.call(zq);
      if (zq !== z) zq.dispose();
      return out;
    });
  }

  forward(x: Tensor, call: AutoencoderKLForwardOptions = {}): Tensor {
    return tidy(() => {
      const { latentDist } = this.encode(x);
      const z = call.samplePosterior ? latentDist.sample(call.generator) : latentDist.mode();
      latentDist.dispose();
      return this.decode(z);
    });
  }

  /** loadStateDict that also accepts the deprecated mid-block attention names (query, key, value, proj_attn). */
  override loadStateDict(source: StateDictSource, opts: LoadStateDictOptions = {}): LoadReport {
    const outer = opts.rename;
    const rename = (k: string): string | null => {
      const r = outer ? outer(k) : k;
      return r === null ? null : renameLegacyVaeKey(r);
    };
    return super.loadStateDict(source, { ...opts, rename });
  }

  /** Install an attention processor on every Attention module, or one per module chosen by (path, module). */
  setAttnProcessor(choice: AttnProcessorChoice): void {
    setAttnProcessor(this, choice);
  }

  /** Module path -> processor of every Attention module. */
  attnProcessors(): Map<string, AttnProcessor> {
    return attnProcessors(this);
  }

  /** Load a diffusers component folder (config.json + diffusion_pytorch_model[.variant].safetensors or a sharded index). */
  static fromPretrained(dir: string, opts: AutoencoderKLFromPretrainedOptions = {}): AutoencoderKL {
    const { attention, ...rest } = opts;
    return loadPretrained(
      dir,
      (json, o, files) => {
        const vae = new AutoencoderKL(json, o, files.configPath);
        if (attention) setAttentionKind(vae, attention);
        return vae;
      },
      { ...rest, weightsNames: [DIFFUSERS_WEIGHTS] },
    );
  }

  #checkInput(op: string, x: Tensor, channels: number): void {
    if (x.ndim !== 4 || x.shape[1] !== channels)
      throw new Error(`AutoencoderKL.${op}: expected [B, ${channels}, H, W], got [${x.shape.join(", ")}]`);
    if (x.dtype !== this.dtype)
      throw new Error(`AutoencoderKL.${op}: input dtype ${x.dtype} differs from the model's ${this.dtype} (convert with x.to("${this.dtype}"))`);
  }
}
