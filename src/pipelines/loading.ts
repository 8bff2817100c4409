// Reading a diffusers pipeline folder: model_index.json (the pipeline class, each component's
// [library, class] or [null, null], and pipeline config such as force_zeros_for_empty_prompt), the
// local Hugging Face cache layout (models--org--name/ resolved to its snapshot), component checks
// with errors that name the folder and say what to do, and the scheduler config; the load options
// both pipelines take and the checks (device through backends/select.ts's resolveDevice: "auto" =
// CUDA when it initialises, else the CPU with one notice) and partial-failure cleanup their loaders share.

import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { resolveDevice } from "../backends/select.ts";
import { choosePipelineDtype } from "./default-dtype.ts";
import { ModelFolderError } from "../io/model-folder.ts";
import { parsePythonJson } from "../io/python-json.ts";
import type { DType, DeviceSpec } from "../tensor/index.ts";
import { SCHEDULER_CLASSES, SCHEDULER_NAMES } from "../schedulers/index.ts";
import { type AttentionKind, getAttention } from "../nn/attention-dispatch.ts";
import { unknownKey, unknownKeyMessage } from "./option-keys.ts";

/** A component entry of model_index.json: [library, class], or null for [null, null] / absent. */
export type ComponentSpec = { library: string; className: string } | null;

export interface ModelIndex {
  /** The resolved folder (a Hugging Face cache repo folder becomes its snapshot). */
  dir: string;
  /** `_class_name`, e.g. "StableDiffusionPipeline". */
  className: string;
  components: Record<string, ComponentSpec>;
  /** Every non-component key (force_zeros_for_empty_prompt, requires_safety_checker, ...). */
  config: Record<string, unknown>;
}

export type PipelineKind = "sd" | "sdxl";

/** Pipeline classes whose components we can run text-to-image with, by kind. */
const PIPELINE_KINDS: Record<string, PipelineKind> = {
  StableDiffusionPipeline: "sd",
  StableDiffusionImg2ImgPipeline: "sd",
  StableDiffusionXLPipeline: "sdxl",
  StableDiffusionXLImg2ImgPipeline: "sdxl",
};

export const SD_PIPELINE_CLASSES = Object.keys(PIPELINE_KINDS).filter((k) => PIPELINE_KINDS[k] === "sd");
export const SDXL_PIPELINE_CLASSES = Object.keys(PIPELINE_KINDS).filter((k) => PIPELINE_KINDS[k] === "sdxl");

/** "sd", "sdxl", or null for a pipeline class we do not run. */
export function pipelineKind(className: string): PipelineKind | null {
  return PIPELINE_KINDS[className] ?? null;
}

/**
 * The folder that holds model_index.json: `dir` itself, or for a Hugging Face cache repo folder
 * (models--org--name with refs/ and snapshots/) the snapshot that refs/main points at (else the only
 * or newest snapshot).
 */
export function resolveModelDir(dir: string): string {
  const folder = path.resolve(dir);
  if (!existsSync(folder)) throw new ModelFolderError(folder, "does not exist; pass the folder of a diffusers pipeline (the one holding model_index.json)");
  if (!statSync(folder).isDirectory())
    throw new ModelFolderError(
      folder,
      "is a file, not a folder; single-file checkpoints (.safetensors/.ckpt) are not supported here: pass a diffusers pipeline folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/)",
    );
  if (existsSync(path.join(folder, "model_index.json"))) return folder;
  const snapshots = path.join(folder, "snapshots");
  if (existsSync(snapshots) && statSync(snapshots).isDirectory()) {
    const ref = path.join(folder, "refs", "main");
    if (existsSync(ref)) {
      const hash = readFileSync(ref, "utf8").trim();
      if (existsSync(path.join(snapshots, hash, "model_index.json"))) return path.join(snapshots, hash);
    }
    const candidates = readdirSync(snapshots)
      .map((s) => path.join(snapshots, s))
      .filter((s) => existsSync(path.join(s, "model_index.json")))
      .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
    if (candidates.length) return candidates[0]!;
  }
  return folder;
}

/** Parse `dir`/model_index.json (after resolveModelDir); an index already read is returned as it is. */
export function readModelIndex(dir: string | ModelIndex): ModelIndex {
  if (typeof dir !== "string") return dir;
  const folder = resolveModelDir(dir);
  const file = path.join(folder, "model_index.json");
  if (!existsSync(file)) {
    const hasUnet = existsSync(path.join(folder, "unet"));
    throw new ModelFolderError(
      folder,
      "has no model_index.json, so it is not a diffusers pipeline folder" +
        (hasUnet
          ? " (it has unet/: add the model_index.json that came with the model)"
          : "; pass the folder that holds model_index.json, unet/, vae/, text_encoder/, tokenizer/ and scheduler/ " +
            "(in a Hugging Face cache: .../models--org--name or its snapshots/<hash>)"),
    );
  }
  let json: unknown;
  try {
    json = parsePythonJson(readFileSync(file, "utf8"));
  } catch (e) {
    throw new ModelFolderError(folder, `cannot parse model_index.json: ${(e as Error).message}`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) throw new ModelFolderError(folder, "model_index.json is not a JSON object");
  const obj = json as Record<string, unknown>;
  const className = obj._class_name;
  if (typeof className !== "string") throw new ModelFolderError(folder, "model_index.json has no _class_name");
  const components: Record<string, ComponentSpec> = {};
  const config: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(obj)) {
    if (key.startsWith("_")) continue;
    if (Array.isArray(value) && value.length === 2) {
      const [library, cls] = value as [unknown, unknown];
      components[key] = typeof library === "string" && typeof cls === "string" ? { library, className: cls } : null;
    } else config[key] = value;
  }
  return { dir: folder, className, components, config };
}

/**
 * Check a component's class and return its folder, or null when model_index.json lists it as
 * [null, null] (or not at all) and `optional` is set. Errors name the folder and the fix.
 */
export function componentDir(index: ModelIndex, name: string, allowed: readonly string[], optional = false): string | null {
  const spec = index.components[name];
  if (!spec) {
    if (optional) return null;
    throw new ModelFolderError(
      index.dir,
      `model_index.json has no "${name}" component, which ${index.className} needs (expected ${allowed.join(" or ")}); ` +
        "re-download the full pipeline folder",
    );
  }
  if (!allowed.includes(spec.className))
    throw new ModelFolderError(
      index.dir,
      `component "${name}" is a ${spec.library}.${spec.className}; bun-diffusion supports ${allowed.join(", ")} there`,
    );
  const dir = path.join(index.dir, name);
  if (!existsSync(dir)) throw new ModelFolderError(index.dir, `model_index.json lists "${name}" (${spec.className}) but the ${name}/ folder is missing; re-download it`);
  return dir;
}

/** The scheduler's config (scheduler/scheduler_config.json), with `_class_name` from model_index.json when the file lacks it. */
export function readSchedulerConfig(index: ModelIndex): Record<string, unknown> {
  const spec = index.components.scheduler;
  const file = path.join(index.dir, "scheduler", "scheduler_config.json");
  if (!existsSync(file))
    throw new ModelFolderError(index.dir, "has no scheduler/scheduler_config.json; the pipeline needs it for the noise schedule (re-download the scheduler/ folder)");
  let json: unknown;
  try {
    json = parsePythonJson(readFileSync(file, "utf8"));
  } catch (e) {
    throw new ModelFolderError(index.dir, `cannot parse scheduler/scheduler_config.json: ${(e as Error).message}`);
  }
  const cfg = { ...(json as Record<string, unknown>) };
  cfg._class_name ??= spec?.className;
  return cfg;
}

/** Whether the model's own scheduler class can be built (otherwise a scheduler name must be chosen). */
export function isSupportedSchedulerClass(name: unknown): boolean {
  return typeof name === "string" && SCHEDULER_CLASSES.includes(name);
}

/** The folder name shown as "Model" in image parameters (a cache snapshot shows its repo name). */
export function modelDisplayName(dir: string): string {
  const parts = path.resolve(dir).split(path.sep);
  const i = parts.lastIndexOf("snapshots");
  if (i > 0 && parts[i - 1]!.startsWith("models--")) return parts[i - 1]!.slice("models--".length).replace(/--/g, "/");
  return parts[parts.length - 1]!;
}

export interface PipelineLoadOptions {
  /** "cpu" (default), "cuda", or "auto" (CUDA when loaded, else the CPU with one notice). */
  device?: DeviceSpec;
  /**
   * Compute dtype of the UNet and text encoders: "float32", "float16", "bfloat16". Default: bfloat16 on CUDA devices
   * of compute capability ≥ 8.0, float16 on older ones, float32 on the CPU (default-dtype.ts; `pipe.dtypeReason`).
   */
  dtype?: DType;
  /** Weights variant, e.g. "fp16" for diffusion_pytorch_model.fp16.safetensors. */
  variant?: string;
  /** Default scheduler name for generate() (else the model's own scheduler). */
  scheduler?: string;
  /** Receives notices such as the "auto" device fallback; default console.warn. */
  onNotice?: (message: string) => void;
  /** Attention implementation of every model (default "fused"); see DiffusionPipeline.setAttentionKind. */
  attention?: AttentionKind;
}

/** Every key of PipelineLoadOptions (the compiler keeps this list complete and exact). */
const LOAD_KEYS = { device: true, dtype: true, variant: true, scheduler: true, onNotice: true, attention: true } satisfies Record<
  keyof PipelineLoadOptions,
  true
>;
export const LOAD_OPTION_KEYS: readonly string[] = Object.keys(LOAD_KEYS);

/**
 * Reject load options that are not an object or have a key we do not know (JavaScript callers have
 * no type check), before anything is read: `what` names the function in the message.
 */
export function checkLoadOptions(opts: unknown, what: string): void {
  if (typeof opts !== "object" || opts === null || Array.isArray(opts)) throw new Error(`${what}: the options must be an object, got ${opts === null ? "null" : typeof opts}`);
  const u = unknownKey(opts, LOAD_OPTION_KEYS);
  if (u) throw new Error(`"${u.key}" ${unknownKeyMessage(u, what, LOAD_OPTION_KEYS)}`);
}

export const TEXT_ENCODER_CLASSES = ["CLIPTextModel"];
export const TOKENIZER_CLASSES = ["CLIPTokenizer", "CLIPTokenizerFast"];

/** Checks shared by both pipelines' loaders; returns the device and scheduler config. */
export function prepareLoad(index: ModelIndex, opts: PipelineLoadOptions) {
  const given = opts.dtype;
  if (given !== undefined && !["float32", "float16", "bfloat16"].includes(given))
    throw new Error(`dtype "${given}" is not supported for pipelines; use "float32", "float16" or "bfloat16"`);
  if (opts.scheduler !== undefined && !SCHEDULER_NAMES.includes(opts.scheduler))
    throw new Error(`unknown scheduler "${opts.scheduler}"; valid names: ${SCHEDULER_NAMES.join(", ")}`);
  if (opts.attention !== undefined) getAttention(opts.attention); // an unknown kind fails before any weight is read
  const schedulerConfig = readSchedulerConfig(index);
  if (opts.scheduler === undefined && !isSupportedSchedulerClass(schedulerConfig._class_name))
    throw new ModelFolderError(
      index.dir,
      `the model's scheduler ${String(schedulerConfig._class_name)} is not supported; pass a scheduler name (${SCHEDULER_NAMES.join(", ")}) ` +
        "to fromPretrained({ scheduler }) or generate({ scheduler }) (the CLI: --scheduler)",
    );
  if (opts.device === "meta") throw new Error('device "meta" holds shapes only and cannot generate images; use "cpu", "cuda" or "auto"');
  const device = resolveDevice(opts.device ?? "cpu", { notice: opts.onNotice });
  const { dtype, reason: dtypeReason } = choosePipelineDtype(device, given);
  return { dtype, dtypeReason, device, schedulerConfig };
}

/** Load modules in order; on failure dispose what was loaded and rethrow. */
export function loadAll<T extends Record<string, { dispose(): void } | null>>(loaders: { [K in keyof T]: () => T[K] }): T {
  const done: Partial<T> = {};
  try {
    for (const key of Object.keys(loaders) as (keyof T)[]) done[key] = loaders[key]();
    return done as T;
  } catch (e) {
    for (const m of Object.values(done)) (m as { dispose(): void } | null)?.dispose();
    throw e;
  }
}
