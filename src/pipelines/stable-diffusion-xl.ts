// StableDiffusionXLPipeline (diffusers v0.31 semantics): two CLIP encoders whose hidden states
// (penultimate by default) are concatenated along features, the pooled text_embeds of the second
// encoder, `force_zeros_for_empty_prompt` (no negative prompt → zero negative embeddings),
// micro-conditioning add_time_ids = (original_size, crops_coords_top_left, target_size), and the
// VAE kept in float32 when the model is float16 and the VAE config says force_upcast. The shared
// flow (latents, batched-CFG denoising, decode) is DiffusionPipeline's.

import { ModelFolderError } from "../io/model-folder.ts";
import { CLIPTextModel, CLIPTextModelWithProjection } from "../models/clip.ts";
import { UNet2DConditionModel } from "../models/unet/index.ts";
import { AutoencoderKL } from "../models/vae/index.ts";
import { type Tensor, cat, tensor, tidy, zerosLike } from "../tensor/index.ts";
import { CLIPTokenizer } from "../tokenizer/clip-tokenizer.ts";
import type { UNetConditioning } from "./denoise.ts";
import { GenerateOptionsError } from "./errors.ts";
import {
  type ModelIndex,
  type PipelineLoadOptions,
  checkLoadOptions,
  SDXL_PIPELINE_CLASSES,
  TEXT_ENCODER_CLASSES,
  TOKENIZER_CLASSES,
  componentDir,
  loadAll,
  modelDisplayName,
  pipelineKind,
  prepareLoad,
  readModelIndex,
} from "./loading.ts";
import {
  GENERATE_OPTION_KEYS,
  type GenerateOptions,
  type ModelFacts,
  type ResolvedRun,
  matchBatch,
  sizePair,
  tensorOption,
  textList,
} from "./options.ts";
import { DiffusionPipeline, type PipelineParts } from "./pipeline.ts";
import { type TextEncoder, chunksNeeded, encodeRows, repeatPerImage, tokenRows } from "./prompt-encoding.ts";

export interface StableDiffusionXLGenerateOptions extends GenerateOptions {
  /** Prompt(s) for the second tokenizer/encoder; default the prompt. */
  prompt2?: string | string[];
  negativePrompt2?: string | string[];
  /** [B, P] pooled embeddings (required with promptEmbeds / negativePromptEmbeds). */
  pooledPromptEmbeds?: Tensor;
  negativePooledPromptEmbeds?: Tensor;
  /** Micro-conditioning [height, width] / [top, left] in pixels; defaults (height, width), (0, 0), (height, width). */
  originalSize?: [number, number];
  cropsCoordsTopLeft?: [number, number];
  targetSize?: [number, number];
  /** Negative micro-conditioning (used when negativeOriginalSize and negativeTargetSize are given). */
  negativeOriginalSize?: [number, number];
  negativeCropsCoordsTopLeft?: [number, number];
  negativeTargetSize?: [number, number];
}

/** The keys SDXL adds to GenerateOptions (the compiler keeps this list complete and exact). */
const SDXL_KEYS = {
  prompt2: true,
  negativePrompt2: true,
  pooledPromptEmbeds: true,
  negativePooledPromptEmbeds: true,
  originalSize: true,
  cropsCoordsTopLeft: true,
  targetSize: true,
  negativeOriginalSize: true,
  negativeCropsCoordsTopLeft: true,
  negativeTargetSize: true,
} satisfies Record<Exclude<keyof StableDiffusionXLGenerateOptions, keyof GenerateOptions>, true>;
const SDXL_OPTION_KEYS: readonly string[] = [...GENERATE_OPTION_KEYS, ...Object.keys(SDXL_KEYS)];
/** The SDXL-only keys, as the SD pipeline names them when it is given one. */
export const SDXL_ONLY_OPTION_KEYS: readonly string[] = Object.keys(SDXL_KEYS);

interface SdxlRun {
  prompts2: string[] | null;
  negatives2: string[] | null;
  /** add_time_ids rows (6 values each) for the positive and negative halves. */
  timeIds: number[];
  negativeTimeIds: number[];
}

export class StableDiffusionXLPipeline extends DiffusionPipeline<StableDiffusionXLGenerateOptions, SdxlRun> {
  /** The first encoder/tokenizer (absent in refiner-style folders). */
  readonly textEncoder: CLIPTextModel | null;
  readonly tokenizer: CLIPTokenizer | null;
  readonly textEncoder2: CLIPTextModelWithProjection | null;
  readonly tokenizer2: CLIPTokenizer | null;
  /** model_index.json's force_zeros_for_empty_prompt (diffusers' default: true). */
  readonly forceZerosForEmptyPrompt: boolean;

  constructor(
    parts: PipelineParts,
    encoders: {
      textEncoder: CLIPTextModel | null;
      tokenizer: CLIPTokenizer | null;
      textEncoder2: CLIPTextModelWithProjection | null;
      tokenizer2: CLIPTokenizer | null;
    },
    forceZerosForEmptyPrompt = true,
  ) {
    super(parts);
    this.textEncoder = encoders.textEncoder;
    this.tokenizer = encoders.tokenizer;
    this.textEncoder2 = encoders.textEncoder2;
    this.tokenizer2 = encoders.tokenizer2;
    this.forceZerosForEmptyPrompt = forceZerosForEmptyPrompt;
    // one truncation warning per pipeline, whichever tokenizer notices first
    let warned = false;
    const tokenizers = [this.tokenizer, this.tokenizer2].filter((t) => t !== null);
    const original = tokenizers.map((t) => t.onWarning);
    tokenizers.forEach((t, i) => {
      t.onWarning = (m) => {
        if (warned) return;
        warned = true;
        original[i]!(m);
      };
    });
  }

  /** Load a diffusers StableDiffusionXLPipeline folder (or a Hugging Face cache folder of one). */
  static async fromPretrained(modelDir: string | ModelIndex, opts: PipelineLoadOptions = {}): Promise<StableDiffusionXLPipeline> {
    checkLoadOptions(opts, "StableDiffusionXLPipeline.fromPretrained()");
    const index = readModelIndex(modelDir);
    const kind = pipelineKind(index.className);
    if (kind !== "sdxl")
      throw new ModelFolderError(
        index.dir,
        kind === "sd"
          ? `is an SD 1.x/2.x model (${index.className}); load it with StableDiffusionPipeline.fromPretrained() or loadPipeline()`
          : `holds a ${index.className}; StableDiffusionXLPipeline loads ${SDXL_PIPELINE_CLASSES.join(" / ")} folders`,
      );
    const { dtype, dtypeReason, device, schedulerConfig } = prepareLoad(index, opts);
    const unetDir = componentDir(index, "unet", ["UNet2DConditionModel"])!;
    const vaeDir = componentDir(index, "vae", ["AutoencoderKL"])!;
    const te1Dir = componentDir(index, "text_encoder", TEXT_ENCODER_CLASSES, true);
    const tok1Dir = componentDir(index, "tokenizer", TOKENIZER_CLASSES, true);
    const te2Dir = componentDir(index, "text_encoder_2", ["CLIPTextModelWithProjection"], true);
    const tok2Dir = componentDir(index, "tokenizer_2", TOKENIZER_CLASSES, true);
    // tokenizers first: they allocate no tensors, so a bad tokenizer fails before any weight is loaded
    const tokenizer = tok1Dir ? CLIPTokenizer.fromPretrained(tok1Dir) : null;
    const tokenizer2 = tok2Dir ? CLIPTokenizer.fromPretrained(tok2Dir) : null;
    const load = { device, dtype, variant: opts.variant };
    const m = loadAll({
      unet: () => UNet2DConditionModel.fromPretrained(unetDir, load),
      vae: () => {
        const vae = AutoencoderKL.fromPretrained(vaeDir, load);
        // diffusers upcasts a float16 VAE with force_upcast for every decode; we keep it in float32
        return vae.forceUpcast && dtype === "float16" ? vae.to("float32") : vae;
      },
      textEncoder: () => (te1Dir ? CLIPTextModel.fromPretrained(te1Dir, load) : null),
      textEncoder2: () => (te2Dir ? CLIPTextModelWithProjection.fromPretrained(te2Dir, load) : null),
    });
    const force = index.config.force_zeros_for_empty_prompt;
    const pipe = new StableDiffusionXLPipeline(
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
      {
        textEncoder: m.textEncoder,
        tokenizer,
        textEncoder2: m.textEncoder2,
        tokenizer2,
      },
      force === undefined ? true : Boolean(force),
    );
    if (opts.attention) pipe.setAttentionKind(opts.attention);
    return pipe;
  }

  /** The (encoder, tokenizer) pairs prompts go through, in diffusers' order. */
  private encoderPairs(): [TextEncoder, CLIPTokenizer][] {
    const pairs: [TextEncoder, CLIPTokenizer][] = [];
    if (this.textEncoder && this.tokenizer) pairs.push([this.textEncoder, this.tokenizer]);
    if (this.textEncoder2 && this.tokenizer2) pairs.push([this.textEncoder2, this.tokenizer2]);
    return pairs;
  }

  protected override optionKeys(): readonly string[] {
    return SDXL_OPTION_KEYS;
  }

  protected modelFacts(): ModelFacts {
    const encoders = [this.textEncoder, this.textEncoder2].filter((e) => e !== null);
    return {
      ...this.baseFacts(),
      textEncoderLayers: encoders.map((e) => e.config.num_hidden_layers),
      canEncodePrompts:
        this.textEncoder2 !== null &&
        this.tokenizer2 !== null &&
        (this.textEncoder === null) === (this.tokenizer === null),
    };
  }

  protected validateExtra(o: StableDiffusionXLGenerateOptions, run: ResolvedRun): SdxlRun {
    const fail = (option: string, message: string): never => {
      throw new GenerateOptionsError(option, message);
    };
    const prompts2 = matchBatch("prompt2", textList("prompt2", o.prompt2), run.batch, "prompt");
    if (prompts2 && o.promptEmbeds) fail("prompt2", "give either prompt2 or promptEmbeds, not both");
    const negatives2 = matchBatch("negativePrompt2", textList("negativePrompt2", o.negativePrompt2), run.batch, "prompt");
    if (negatives2 && o.negativePromptEmbeds) fail("negativePrompt2", "give either negativePrompt2 or negativePromptEmbeds, not both");
    const zeroNegative = o.negativePrompt === undefined && this.forceZerosForEmptyPrompt;
    if (run.cfg && !o.negativePromptEmbeds && !zeroNegative && !this.encoderPairs().length)
      fail("negativePromptEmbeds", "are required for guidance: this model folder has no tokenizer/text encoder to encode the negative prompt");
    const pooled = tensorOption("pooledPromptEmbeds", o.pooledPromptEmbeds, 2, "[B, P]");
    const negPooled = tensorOption("negativePooledPromptEmbeds", o.negativePooledPromptEmbeds, 2, "[B, P]");
    if (o.promptEmbeds && !pooled) fail("pooledPromptEmbeds", "is required with promptEmbeds (the text_embeds of the second encoder)");
    if (o.negativePromptEmbeds && !negPooled) fail("negativePooledPromptEmbeds", "is required with negativePromptEmbeds");
    const projDim = this.textEncoder2?.config.projection_dim ?? pooled?.shape[1];
    for (const [name, t] of [
      ["pooledPromptEmbeds", pooled],
      ["negativePooledPromptEmbeds", negPooled],
    ] as const) {
      if (!t) continue;
      if (t.shape[0] !== run.batch) fail(name, `has ${t.shape[0]} rows but the batch has ${run.batch} prompts`);
      if (projDim !== undefined && t.shape[1] !== projDim) fail(name, `width ${t.shape[1]} is not the text projection width ${projDim}`);
    }
    // add_time_ids: (original_size, crops_coords_top_left, target_size); the UNet's add_embedding must fit
    const size: [number, number] = [run.height, run.width];
    const ids = [...(sizePair("originalSize", o.originalSize) ?? size), ...(sizePair("cropsCoordsTopLeft", o.cropsCoordsTopLeft) ?? [0, 0]), ...(sizePair("targetSize", o.targetSize) ?? size)];
    const nOrig = sizePair("negativeOriginalSize", o.negativeOriginalSize);
    const nCrop = sizePair("negativeCropsCoordsTopLeft", o.negativeCropsCoordsTopLeft) ?? [0, 0];
    const nTarget = sizePair("negativeTargetSize", o.negativeTargetSize);
    const negIds = nOrig && nTarget ? [...nOrig, ...nCrop, ...nTarget] : ids;
    const c = this.unet.config;
    if (c.addition_embed_type !== "text_time")
      throw new Error(`${this.modelName}: the UNet has addition_embed_type ${String(c.addition_embed_type)}, not SDXL's "text_time"`);
    const passed = (c.addition_time_embed_dim ?? 0) * ids.length + (projDim ?? 0);
    if (passed !== c.projection_class_embeddings_input_dim)
      throw new Error(
        `${this.modelName}: the UNet's add_embedding takes ${c.projection_class_embeddings_input_dim} features but addition_time_embed_dim ` +
          `${c.addition_time_embed_dim} × ${ids.length} + text projection ${projDim} = ${passed}; the model's config is inconsistent`,
      );
    return { prompts2, negatives2, timeIds: ids, negativeTimeIds: negIds };
  }

  protected encode(o: StableDiffusionXLGenerateOptions, run: ResolvedRun, x: SdxlRun): UNetConditioning {
    return tidy(() => {
      const place = { device: this.device, dtype: this.dtype };
      const pairs = this.encoderPairs();
      const L = this.tokenizer2?.modelMaxLength ?? 77;
      // positive: hidden states of every encoder concatenated along features [B, S, D1 + D2], pooled [B, P]
      let pos: Tensor;
      let pooled: Tensor;
      if (o.promptEmbeds) {
        pos = o.promptEmbeds.to(place);
        pooled = o.pooledPromptEmbeds!.to(place);
      } else {
        const texts = [run.prompts!, x.prompts2 ?? run.prompts!]; // zipped with the encoders, as diffusers
        const all = [...texts.flat(), ...(run.negatives ?? []), ...(x.negatives2 ?? [])];
        const chunks = run.chunked ? Math.max(...pairs.map(([, tok]) => chunksNeeded(tok, all))) : 1;
        const layer = { kind: "hidden" as const, fromEnd: (run.clipSkip ?? 0) + 2 }; // "2": SDXL indexes from the penultimate layer
        const outs = pairs.map(([enc, tok], i) =>
          encodeRows(enc, tokenRows(tok, texts[i]!, { chunked: run.chunked, minChunks: chunks }), layer),
        );
        pos = cat(outs.map((e) => e.hidden), -1);
        pooled = outs[outs.length - 1]!.pooled; // the last (projection) encoder's text_embeds
      }
      const rows = (t: Tensor) => repeatPerImage(t, run.perPrompt);
      // host scalars stay on the host: the UNet reads the ids on the host every step (sinusoidal embedding), so a
      // CPU tensor (in the compute dtype, rounded as before) costs no device synchronisation per step
      const idsRow = (v: number[]) => tensor(Float32Array.from(v), { shape: [1, 6], dtype: this.dtype, device: "cpu" });
      // add_time_ids.repeat(B·n, 1) as diffusers: [neg, pos] rows tiled (the same rows unless negative sizes differ)
      const tile = (t: Tensor) => t.unsqueeze(0).expand([run.total, ...t.shape]).reshape([run.total * t.shape[0]!, 6]);
      if (!run.cfg) return { encoderHiddenStates: rows(pos), textEmbeds: rows(pooled), timeIds: tile(idsRow(x.timeIds)) };

      let neg: Tensor;
      let negPooled: Tensor;
      const zeroOut = o.negativePrompt === undefined && this.forceZerosForEmptyPrompt;
      if (o.negativePromptEmbeds) {
        neg = o.negativePromptEmbeds.to(place);
        negPooled = o.negativePooledPromptEmbeds!.to(place);
      } else if (zeroOut) {
        neg = zerosLike(pos);
        negPooled = zerosLike(pooled);
      } else {
        const negs = run.negatives ?? Array<string>(run.batch).fill("");
        const texts = [negs, x.negatives2 ?? negs];
        const S = pos.shape[1]!;
        const outs = pairs.map(([enc, tok], i) => {
          const t = texts[i]!; // with one encoder diffusers' zip pairs it with the first texts
          const rowsOf = run.chunked || S > L ? tokenRows(tok, t, { chunked: true, minChunks: Math.ceil(S / L) }) : tokenRows(tok, t, { maxLength: S });
          return encodeRows(enc, rowsOf, { kind: "hidden", fromEnd: 2 }); // diffusers: negatives ignore clip_skip
        });
        neg = cat(outs.map((e) => e.hidden), -1);
        negPooled = outs[outs.length - 1]!.pooled;
      }
      return {
        encoderHiddenStates: cat([rows(neg), rows(pos)], 0), // [2·B·n, S, D]
        textEmbeds: cat([rows(negPooled), rows(pooled)], 0), // [2·B·n, P]
        timeIds: tile(cat([idsRow(x.negativeTimeIds), idsRow(x.timeIds)], 0)), // [2·B·n, 6]
      };
    });
  }

  protected override extraParameters(o: StableDiffusionXLGenerateOptions, run: ResolvedRun, x: SdxlRun, i: number) {
    const p = Math.floor(i / run.perPrompt);
    const extra: Record<string, string | number> = {};
    if (x.prompts2) extra["Prompt 2"] = x.prompts2[p]!;
    if (x.negatives2) extra["Negative prompt 2"] = x.negatives2[p]!;
    if (o.originalSize) extra["Original size"] = `${o.originalSize[1]}x${o.originalSize[0]}`;
    if (o.cropsCoordsTopLeft) extra["Crop top left"] = `${o.cropsCoordsTopLeft[0]},${o.cropsCoordsTopLeft[1]}`;
    if (o.targetSize) extra["Target size"] = `${o.targetSize[1]}x${o.targetSize[0]}`;
    return extra;
  }

  protected modules() {
    return [this.unet, this.vae, this.textEncoder, this.textEncoder2].filter((m) => m !== null);
  }
}
