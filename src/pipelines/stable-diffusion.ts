// StableDiffusionPipeline (SD 1.x / 2.x text-to-image, diffusers v0.31 semantics):
// fromPretrained() reads a diffusers pipeline folder (model_index.json → unet, vae, text_encoder,
// tokenizer, scheduler; safety checker and feature extractor are not used), and generate() encodes
// the prompt with CLIP (last_hidden_state, or clip-skip through the final LayerNorm), then runs the
// shared flow of DiffusionPipeline: latents, batched-CFG denoising, VAE decode, images.

import { ModelFolderError } from "../io/model-folder.ts";
import { CLIPTextModel } from "../models/clip.ts";
import { UNet2DConditionModel } from "../models/unet/index.ts";
import { AutoencoderKL } from "../models/vae/index.ts";
import { type Tensor, cat, tidy } from "../tensor/index.ts";
import { CLIPTokenizer } from "../tokenizer/clip-tokenizer.ts";
import type { UNetConditioning } from "./denoise.ts";
import { GenerateOptionsError } from "./errors.ts";
import {
  type ModelIndex,
  type PipelineLoadOptions,
  checkLoadOptions,
  SD_PIPELINE_CLASSES,
  TEXT_ENCODER_CLASSES,
  TOKENIZER_CLASSES,
  componentDir,
  loadAll,
  modelDisplayName,
  pipelineKind,
  prepareLoad,
  readModelIndex,
} from "./loading.ts";
import type { GenerateOptions, ModelFacts, ResolvedRun } from "./options.ts";
import { DiffusionPipeline, type PipelineParts } from "./pipeline.ts";
import { SDXL_ONLY_OPTION_KEYS } from "./stable-diffusion-xl.ts";
import { chunksNeeded, encodeRows, repeatPerImage, tokenRows } from "./prompt-encoding.ts";

const SDXL_FOREIGN: Readonly<Record<string, string>> = Object.fromEntries(
  SDXL_ONLY_OPTION_KEYS.map((k) => [k, `is an option of StableDiffusionXLPipeline only; this model is SD 1.x/2.x (a StableDiffusionPipeline)`]),
);

export class StableDiffusionPipeline extends DiffusionPipeline<GenerateOptions, null> {
  readonly textEncoder: CLIPTextModel | null;
  readonly tokenizer: CLIPTokenizer | null;

  constructor(
    parts: PipelineParts,
    textEncoder: CLIPTextModel | null,
    tokenizer: CLIPTokenizer | null,
  ) {
    super(parts);
    this.textEncoder = textEncoder;
    this.tokenizer = tokenizer;
  }

  /** Load a diffusers StableDiffusionPipeline folder (or a Hugging Face cache folder of one). */
  static async fromPretrained(modelDir: string | ModelIndex, opts: PipelineLoadOptions = {}): Promise<StableDiffusionPipeline> {
    checkLoadOptions(opts, "StableDiffusionPipeline.fromPretrained()");
    const index = readModelIndex(modelDir);
    const kind = pipelineKind(index.className);
    if (kind !== "sd")
      throw new ModelFolderError(
        index.dir,
        kind === "sdxl"
          ? `is an SDXL model (${index.className}); load it with StableDiffusionXLPipeline.fromPretrained() or loadPipeline()`
          : `holds a ${index.className}; StableDiffusionPipeline loads ${SD_PIPELINE_CLASSES.join(" / ")} folders`,
      );
    const { dtype, dtypeReason, device, schedulerConfig } = prepareLoad(index, opts);
    const unetDir = componentDir(index, "unet", ["UNet2DConditionModel"])!;
    const vaeDir = componentDir(index, "vae", ["AutoencoderKL"])!;
    const teDir = componentDir(index, "text_encoder", TEXT_ENCODER_CLASSES, true);
    const tokDir = componentDir(index, "tokenizer", TOKENIZER_CLASSES, true);
    // the tokenizer first: it allocates no tensors, so a bad tokenizer fails before any weight is loaded
    const tokenizer = tokDir ? CLIPTokenizer.fromPretrained(tokDir) : null;
    const load = { device, dtype, variant: opts.variant };
    const m = loadAll({
      unet: () => UNet2DConditionModel.fromPretrained(unetDir, load),
      vae: () => AutoencoderKL.fromPretrained(vaeDir, load),
      textEncoder: () => (teDir ? CLIPTextModel.fromPretrained(teDir, load) : null),
    });
    const pipe = new StableDiffusionPipeline(
      {
        modelDir: index.dir,
        modelName: modelDisplayName(index.dir),
        device,
        dtype,
        dtypeReason,
        unet: m.unet,
        vae: m.vae,
        schedulerConfig,
        defaultScheduler: opts.scheduler,
      },
      m.textEncoder,
      tokenizer,
    );
    if (opts.attention) pipe.setAttentionKind(opts.attention);
    return pipe;
  }

  protected override foreignOptionKeys(): Readonly<Record<string, string>> {
    return SDXL_FOREIGN;
  }

  protected modelFacts(): ModelFacts {
    return {
      ...this.baseFacts(),
      textEncoderLayers: this.textEncoder ? [this.textEncoder.config.num_hidden_layers] : [],
      canEncodePrompts: this.textEncoder !== null && this.tokenizer !== null,
    };
  }

  protected validateExtra(o: GenerateOptions, run: ResolvedRun): null {
    if (run.cfg && !o.negativePromptEmbeds && !(this.textEncoder && this.tokenizer))
      throw new GenerateOptionsError(
        "negativePromptEmbeds",
        "are required for guidance: this model folder has no tokenizer/text encoder to encode the negative prompt",
      );
    return null;
  }

  protected encode(o: GenerateOptions, run: ResolvedRun): UNetConditioning {
    return tidy(() => {
      const te = this.textEncoder;
      const tok = this.tokenizer;
      const place = { device: this.device, dtype: this.dtype };
      const L = tok?.modelMaxLength ?? 77;
      // positive [B, S, D]
      let chunks = 1;
      if (run.chunked && run.prompts) chunks = chunksNeeded(tok!, [...run.prompts, ...(run.negatives ?? [])]);
      const pos = o.promptEmbeds
        ? o.promptEmbeds.to(place)
        : encodeRows(te!, tokenRows(tok!, run.prompts!, { chunked: run.chunked, minChunks: chunks }), {
            kind: "final",
            clipSkip: run.clipSkip,
          }).hidden;
      const posRows = repeatPerImage(pos, run.perPrompt); // [B·n, S, D]
      if (!run.cfg) return { encoderHiddenStates: posRows };
      // negative [B, S, D]: given, or encoded like diffusers (to the positive's length; no clip skip)
      let neg: Tensor;
      if (o.negativePromptEmbeds) neg = o.negativePromptEmbeds.to(place);
      else {
        const S = pos.shape[1]!;
        const texts = run.negatives ?? Array<string>(run.batch).fill("");
        const rows =
          run.chunked || S > L
            ? tokenRows(tok!, texts, { chunked: true, minChunks: Math.ceil(S / L) })
            : tokenRows(tok!, texts, { maxLength: S });
        neg = encodeRows(te!, rows, { kind: "final" }).hidden; // validateExtra ensured te and tok
      }
      const negRows = repeatPerImage(neg, run.perPrompt);
      return { encoderHiddenStates: cat([negRows, posRows], 0) }; // [2·B·n, S, D]
    });
  }

  protected modules() {
    return [this.unet, this.vae, this.textEncoder].filter((m) => m !== null);
  }
}
