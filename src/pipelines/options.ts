// generate() options shared by the SD and SDXL pipelines, and their validation: every check runs
// before anything is allocated, and a bad option throws a GenerateOptionsError naming the option,
// the value and what is allowed. validateCommon() turns the options into a resolved run (prompt
// lists, batch sizes, image and latent sizes, guidance, generators). An unknown option key is an
// error with a "did you mean" suggestion (option-keys.ts): JavaScript callers have no type check.

import type { GeneratedImage } from "../io/image.ts";
import { Tensor, TorchGenerator } from "../tensor/index.ts";
import { GenerateOptionsError } from "./errors.ts";
import { unknownKey, unknownKeyMessage } from "./option-keys.ts";
import { type SchedulerOption, schedulerOptionProblem } from "./scheduler-choice.ts";

export type OutputType = "image" | "latent" | "tensor";
export const OUTPUT_TYPES: readonly OutputType[] = ["image", "latent", "tensor"];

export interface StepInfo {
  /** The timestep just denoised. */
  timestep: number;
  /** The latents after this step [B, C, h, w]; valid only during the call (clone to keep them). */
  latents: Tensor;
  /** Milliseconds since generate() started. */
  elapsedMs: number;
}

/** Called after each denoising step; `step` counts completed steps (1 … total). May return a promise. */
export type OnStep = (step: number, total: number, info: StepInfo) => void | Promise<void>;

export interface GenerateOptions {
  /** One prompt or one per batch item (or pass promptEmbeds instead). */
  prompt?: string | string[];
  /** One for all prompts or one per prompt; default none ("" for SD; zeros for SDXL when the model says so). */
  negativePrompt?: string | string[];
  /** Denoising steps; default 50 (diffusers'). */
  steps?: number;
  /** Classifier-free guidance scale; default 7.5; ≤ 1 disables guidance (one UNet row per image). */
  guidanceScale?: number;
  /** diffusers' guidance_rescale φ (arXiv:2305.08891 §3.4), in [0, 1]; default 0. */
  guidanceRescale?: number;
  /** Image size in pixels, multiples of 8; default UNet sample_size × VAE scale factor. */
  width?: number;
  height?: number;
  /** Images per prompt; default 1. */
  numImagesPerPrompt?: number;
  /**
   * A seed for one torch-compatible CPU generator that draws the whole batch (as diffusers with
   * `generator=torch.Generator("cpu").manual_seed(seed)`), or one seed per image (a list of
   * generators). Default: a random seed, reported in the image parameters.
   */
  seed?: number | number[];
  /** A generator to draw from instead of a seed (its state advances). */
  generator?: TorchGenerator;
  /** Initial noise [B·n, C, h, w] (multiplied by the scheduler's init_noise_sigma, as diffusers). */
  latents?: Tensor;
  /** Precomputed text embeddings [B, S, D] instead of prompt. */
  promptEmbeds?: Tensor;
  negativePromptEmbeds?: Tensor;
  /** Skip the last k CLIP layers (diffusers' clip_skip). */
  clipSkip?: number;
  /** Scheduler short name or instance; default the model's scheduler (or the one given to fromPretrained). */
  scheduler?: SchedulerOption;
  /** DDIM's η (ignored by other schedulers); default 0. */
  eta?: number;
  /** "image" (default): images; "latent": the final latents; "tensor": images and the [B, 3, H, W] tensor in [0, 1]. */
  outputType?: OutputType;
  onStep?: OnStep;
  /**
   * Checked before every module call (prompt encoding, each step, decoding) and between steps: on
   * abort everything is freed and an AbortError is thrown.
   */
  signal?: AbortSignal;
  /** Prompts over 75 tokens: "truncate" (default, warns once) or "chunked" (75-token chunks, embeddings concatenated). */
  longPrompt?: "truncate" | "chunked";
  /**
   * When to check the latents for NaN/Inf: "end" (default: one reduction after the last step), "step"
   * (after every step: names the first bad step; on CUDA each check waits for the device), or false
   * (no checks). Non-finite values throw a NonFiniteError instead of returning a black image; the
   * decoded image is checked too unless this is false.
   */
  checkFinite?: CheckFinite;
}

export type CheckFinite = "end" | "step" | false;
export const CHECK_FINITE: readonly CheckFinite[] = ["end", "step", false];

/** Every key of GenerateOptions (the compiler keeps this list complete and exact). */
const GENERATE_KEYS = {
  prompt: true,
  negativePrompt: true,
  steps: true,
  guidanceScale: true,
  guidanceRescale: true,
  width: true,
  height: true,
  numImagesPerPrompt: true,
  seed: true,
  generator: true,
  latents: true,
  promptEmbeds: true,
  negativePromptEmbeds: true,
  clipSkip: true,
  scheduler: true,
  eta: true,
  outputType: true,
  onStep: true,
  signal: true,
  longPrompt: true,
  checkFinite: true,
} satisfies Record<keyof GenerateOptions, true>;
export const GENERATE_OPTION_KEYS: readonly string[] = Object.keys(GENERATE_KEYS);

export interface GenerateResult {
  /** One per generated image (empty for outputType "latent"). */
  images: GeneratedImage[];
  /** The final latents [B, C, h, w] (outputType "latent"); the caller owns and disposes it. */
  latents?: Tensor;
  /** The images as [B, 3, H, W] in [0, 1] (outputType "tensor"); the caller owns and disposes it. */
  tensor?: Tensor;
}

/** What validation needs to know about the loaded model. */
export interface ModelFacts {
  /** UNet in_channels (latent channels). */
  latentChannels: number;
  /** UNet cross_attention_dim (the text embedding width). */
  crossAttentionDim: number;
  /** UNet sample_size (latent pixels) and the VAE's downscale factor. */
  sampleSize: number;
  vaeScaleFactor: number;
  /** Guidance-distilled UNets (time_cond_proj_dim) never use CFG. */
  guidanceEmbedded: boolean;
  /** Hidden layers of each text encoder present (for clipSkip). */
  textEncoderLayers: number[];
  /** Whether prompts can be tokenized (tokenizer and text encoder present). */
  canEncodePrompts: boolean;
}

export type Seeds =
  /** One generator draws the whole batch; `seed` is what produced it (undefined for a user generator). */
  | { kind: "single"; seed: number | undefined; generator: TorchGenerator }
  /** One generator per image. */
  | { kind: "list"; seeds: number[]; generators: TorchGenerator[] };

export interface ResolvedRun {
  /** Prompt texts (null when promptEmbeds were given). */
  prompts: string[] | null;
  /** Negative texts, one per prompt (null: none given). */
  negatives: string[] | null;
  /** Prompts (B), images per prompt (n), images (B·n). */
  batch: number;
  perPrompt: number;
  total: number;
  steps: number;
  guidanceScale: number;
  guidanceRescale: number;
  /** Whether CFG runs (guidance > 1 and the UNet has no guidance embedding). */
  cfg: boolean;
  width: number;
  height: number;
  /** [B·n, C, h, w] */
  latentShape: [number, number, number, number];
  seeds: Seeds;
  clipSkip: number | undefined;
  eta: number;
  outputType: OutputType;
  chunked: boolean;
  checkFinite: CheckFinite;
}

function fail(option: string, message: string): never {
  throw new GenerateOptionsError(option, message);
}

const show = (v: unknown): string => {
  if (typeof v === "string") return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(show).join(", ")}]`;
  return String(v);
};

/** A list of strings from a string or string array option (null when absent). */
export function textList(option: string, v: unknown): string[] | null {
  if (v === undefined || v === null) return null;
  if (typeof v === "string") return [v];
  if (Array.isArray(v) && v.length > 0 && v.every((s) => typeof s === "string")) return v as string[];
  return fail(option, `expected a string or a non-empty array of strings, got ${Array.isArray(v) ? "an array with non-strings or no items" : typeof v}`);
}

/** Broadcast a secondary text list (negatives, prompt2) to `batch` items. */
export function matchBatch(option: string, list: string[] | null, batch: number, against: string): string[] | null {
  if (list === null) return null;
  if (list.length === 1) return Array<string>(batch).fill(list[0]!);
  if (list.length !== batch) fail(option, `has ${list.length} entries but ${against} has ${batch}; give one ${option} or one per prompt`);
  return list;
}

export function positiveInt(option: string, v: unknown, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1) fail(option, `must be a positive integer, got ${show(v)}`);
  return v;
}

export function finiteNumber(option: string, v: unknown, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== "number" || !Number.isFinite(v)) fail(option, `must be a finite number, got ${show(v)}`);
  return v;
}

/** A live Tensor of `ndim` dims (or undefined). */
export function tensorOption(option: string, v: unknown, ndim: number, what: string): Tensor | undefined {
  if (v === undefined) return undefined;
  if (!(v instanceof Tensor)) fail(option, `must be a Tensor ${what}, got ${typeof v}`);
  if (v.isDisposed) fail(option, "the tensor was disposed");
  if (v.ndim !== ndim) fail(option, `must be ${what}, got [${v.shape.join(", ")}]`);
  if (!v.isFloatingPoint) fail(option, `must be a floating-point tensor, got ${v.dtype}`);
  return v;
}

/** An image-size pair such as SDXL's originalSize: [a, b] of finite non-negative numbers. */
export function sizePair(option: string, v: unknown): [number, number] | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.length !== 2 || !v.every((x) => typeof x === "number" && Number.isFinite(x) && x >= 0))
    fail(option, `must be a pair [height, width] (or [top, left]) of non-negative numbers, got ${show(v)}`);
  return [v[0] as number, v[1] as number];
}

function seedValue(option: string, v: unknown): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) fail(option, `seeds must be non-negative integers (up to 2^53 - 1), got ${show(v)}`);
  return v;
}

/** A fresh random 32-bit seed (what A1111 and most UIs draw). */
export function randomSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0]!;
}

/**
 * Check every option shared by the pipelines and resolve them against the model. Throws a
 * GenerateOptionsError before any tensor is allocated.
 */
export function validateCommon(
  o: GenerateOptions,
  facts: ModelFacts,
  knownKeys: readonly string[] = GENERATE_OPTION_KEYS,
  /** Keys of other pipelines' generate(), with what to say about them. */
  foreignKeys: Readonly<Record<string, string>> = {},
): ResolvedRun {
  if (typeof o !== "object" || o === null) fail("options", "generate() takes an options object");
  // An option of the other pipeline left undefined means "not given" (code shared by SD and SDXL callers); a typo is flagged even when undefined.
  const given = Object.fromEntries(Object.entries(o).filter(([k, v]) => v !== undefined || !Object.hasOwn(foreignKeys, k)));
  const unknown = unknownKey(given, knownKeys);
  if (unknown)
    fail(unknown.key, Object.hasOwn(foreignKeys, unknown.key) ? foreignKeys[unknown.key]! : unknownKeyMessage(unknown, "generate()", knownKeys));
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) fail("signal", "must be an AbortSignal");
  if (o.onStep !== undefined && typeof o.onStep !== "function") fail("onStep", `must be a function, got ${typeof o.onStep}`);

  // prompts
  const prompts = textList("prompt", o.prompt);
  const promptEmbeds = tensorOption("promptEmbeds", o.promptEmbeds, 3, "[B, S, D]");
  const negativeEmbeds = tensorOption("negativePromptEmbeds", o.negativePromptEmbeds, 3, "[B, S, D]");
  if (prompts && promptEmbeds) fail("prompt", "give either prompt or promptEmbeds, not both");
  if (!prompts && !promptEmbeds) fail("prompt", "a prompt (or promptEmbeds) is required");
  if (prompts && !facts.canEncodePrompts)
    fail("prompt", "this model folder has no tokenizer/text encoder (model_index.json lists them as null); pass promptEmbeds instead");
  const batch = prompts ? prompts.length : promptEmbeds!.shape[0]!;
  if (batch < 1) fail("promptEmbeds", "has an empty batch");
  const negativesRaw = textList("negativePrompt", o.negativePrompt);
  if (negativesRaw && negativeEmbeds) fail("negativePrompt", "give either negativePrompt or negativePromptEmbeds, not both");
  const negatives = matchBatch("negativePrompt", negativesRaw, batch, prompts ? "prompt" : "promptEmbeds");
  for (const [name, t] of [
    ["promptEmbeds", promptEmbeds],
    ["negativePromptEmbeds", negativeEmbeds],
  ] as const)
    if (t && t.shape[2] !== facts.crossAttentionDim)
      fail(name, `width ${t.shape[2]} does not match the UNet's cross_attention_dim ${facts.crossAttentionDim}`);
  if (negativeEmbeds && !promptEmbeds) fail("negativePromptEmbeds", "needs promptEmbeds too (or pass negativePrompt with a text prompt)");
  if (promptEmbeds && negativeEmbeds && promptEmbeds.shape.some((d, i) => d !== negativeEmbeds.shape[i]))
    fail(
      "negativePromptEmbeds",
      `shape [${negativeEmbeds.shape.join(", ")}] must equal promptEmbeds' [${promptEmbeds.shape.join(", ")}]`,
    );
  if (o.longPrompt !== undefined && o.longPrompt !== "truncate" && o.longPrompt !== "chunked")
    fail("longPrompt", `must be "truncate" or "chunked", got ${show(o.longPrompt)}`);

  // numbers
  const steps = positiveInt("steps", o.steps, 50);
  const guidanceScale = finiteNumber("guidanceScale", o.guidanceScale, 7.5);
  const guidanceRescale = finiteNumber("guidanceRescale", o.guidanceRescale, 0);
  if (guidanceRescale < 0 || guidanceRescale > 1) fail("guidanceRescale", `must be in [0, 1], got ${guidanceRescale}`);
  const eta = finiteNumber("eta", o.eta, 0);
  if (eta < 0) fail("eta", `must be ≥ 0, got ${eta}`);
  const perPrompt = positiveInt("numImagesPerPrompt", o.numImagesPerPrompt, 1);
  const total = batch * perPrompt;
  if (o.clipSkip !== undefined) {
    const c = o.clipSkip;
    const layers = Math.min(...facts.textEncoderLayers);
    if (typeof c !== "number" || !Number.isInteger(c) || c < 0) fail("clipSkip", `must be a non-negative integer, got ${show(c)}`);
    if (facts.textEncoderLayers.length && c >= layers) fail("clipSkip", `${c} skips too many of the text encoder's ${layers} layers`);
  }

  // sizes
  const f = facts.vaeScaleFactor;
  const fromLatents = tensorOption("latents", o.latents, 4, "[B, C, h, w]");
  const defaultH = fromLatents ? fromLatents.shape[2]! * f : facts.sampleSize * f;
  const defaultW = fromLatents ? fromLatents.shape[3]! * f : facts.sampleSize * f;
  const width = positiveInt("width", o.width, defaultW);
  const height = positiveInt("height", o.height, defaultH);
  const step = Math.max(8, f);
  if (width % step !== 0) fail("width", `must be a multiple of ${step}, got ${width} (try ${Math.max(step, Math.round(width / step) * step)})`);
  if (height % step !== 0) fail("height", `must be a multiple of ${step}, got ${height} (try ${Math.max(step, Math.round(height / step) * step)})`);
  const latentShape: [number, number, number, number] = [total, facts.latentChannels, height / f, width / f];
  if (fromLatents && fromLatents.shape.some((d, i) => d !== latentShape[i]))
    fail("latents", `shape [${fromLatents.shape.join(", ")}] does not match the expected [${latentShape.join(", ")}] (B·n, channels, height/${f}, width/${f})`);

  // seeds
  let seeds: Seeds;
  if (o.seed !== undefined && o.generator !== undefined) fail("seed", "give either seed or generator, not both");
  if (o.generator !== undefined) {
    if (!(o.generator instanceof TorchGenerator)) fail("generator", "must be a TorchGenerator");
    seeds = { kind: "single", seed: undefined, generator: o.generator };
  } else if (Array.isArray(o.seed)) {
    const list = o.seed.map((s) => seedValue("seed", s));
    if (list.length !== total)
      fail("seed", `has ${list.length} seeds but ${total} images are generated (${batch} prompt(s) × ${perPrompt}); give one seed or one per image`);
    seeds = { kind: "list", seeds: list, generators: list.map((s) => new TorchGenerator(s)) };
  } else {
    const s = o.seed === undefined ? randomSeed() : seedValue("seed", o.seed);
    seeds = { kind: "single", seed: s, generator: new TorchGenerator(s) };
  }

  // the rest
  const problem = schedulerOptionProblem(o.scheduler);
  if (problem) fail("scheduler", problem);
  const outputType = o.outputType ?? "image";
  if (!OUTPUT_TYPES.includes(outputType)) fail("outputType", `must be one of ${OUTPUT_TYPES.map(show).join(", ")}, got ${show(outputType)}`);
  const checkFinite = o.checkFinite ?? "end";
  if (!CHECK_FINITE.includes(checkFinite)) fail("checkFinite", `must be "end", "step" or false, got ${show(checkFinite)}`);

  return {
    prompts,
    negatives,
    batch,
    perPrompt,
    total,
    steps,
    guidanceScale,
    guidanceRescale,
    cfg: guidanceScale > 1 && !facts.guidanceEmbedded,
    width,
    height,
    latentShape,
    seeds,
    clipSkip: o.clipSkip,
    eta,
    outputType,
    chunked: o.longPrompt === "chunked",
    checkFinite,
  };
}
