// Model folders in the diffusers / transformers on-disk layout: loadComponent() finds a component's
// config.json and its weights (a single .safetensors file, a sharded `*.safetensors.index.json`, or
// the `variant` forms such as `diffusion_pytorch_model.fp16.safetensors`) and opens them; errors
// name the folder and what is missing (and say that .bin / .ckpt pickles must be converted).
// loadPretrained() is the memory-conscious load path every model's fromPretrained uses: build the
// module on "meta" (no memory), then materialise it parameter by parameter from the mapped file.

import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import type { DType } from "../core/dtype.ts";
import type { Device } from "../core/device.ts";
import { parsePythonJson } from "./python-json.ts";
import type { TensorSource } from "./safetensors.ts";
import { openCheckpoint } from "./safetensors-index.ts";

/** transformers' weights file (text encoders). */
export const TRANSFORMERS_WEIGHTS = "model.safetensors";
/** diffusers' weights file (UNet, VAE). */
export const DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors";

export interface LoadComponentOptions {
  /** Weights file names to try in order (default: diffusers' then transformers'). */
  weightsNames?: readonly string[];
  /** e.g. "fp16": looks for `<name>.fp16.safetensors` / `<name>.safetensors.index.fp16.json`. */
  variant?: string;
  /** Config file name (default "config.json"). */
  configName?: string;
}

export interface ComponentFiles {
  dir: string;
  configPath: string;
  /** The parsed config.json. */
  config: Record<string, unknown>;
  /** The opened weights file or sharded index. */
  weightsPath: string;
  source: TensorSource;
}

/** A problem with a model folder; the message names the folder. */
export class ModelFolderError extends Error {
  override name = "ModelFolderError";
  constructor(
    readonly dir: string,
    problem: string,
  ) {
    super(`${dir}: ${problem}`);
  }
}

/** diffusers' _add_variant: "a.safetensors" + "fp16" -> "a.fp16.safetensors". */
export function addVariant(name: string, variant?: string): string {
  if (!variant) return name;
  const parts = name.split(".");
  return [...parts.slice(0, -1), variant, parts[parts.length - 1]].join(".");
}

/** The file names tried for one weights name: the single file, then its sharded index. */
export function weightCandidates(weightsName: string, variant?: string): string[] {
  return [addVariant(weightsName, variant), addVariant(`${weightsName}.index.json`, variant)];
}

const PICKLE = /\.(bin|ckpt|pt|pth|pkl)$/;

/** Find and open a component's config and weights. */
export function loadComponent(dir: string, opts: LoadComponentOptions = {}): ComponentFiles {
  const folder = path.resolve(dir);
  if (!existsSync(folder) || !statSync(folder).isDirectory()) throw new ModelFolderError(folder, "is not a folder (model component not found)");
  const configPath = path.join(folder, opts.configName ?? "config.json");
  if (!existsSync(configPath)) throw new ModelFolderError(folder, `has no ${opts.configName ?? "config.json"}; is this a model component folder?`);
  let config: Record<string, unknown>;
  try {
    const json = parsePythonJson(readFileSync(configPath, "utf8")); // Python may write NaN / Infinity
    if (typeof json !== "object" || json === null || Array.isArray(json)) throw new Error("not a JSON object");
    config = json as Record<string, unknown>;
  } catch (e) {
    throw new ModelFolderError(folder, `cannot parse ${path.basename(configPath)}: ${(e as Error).message}`);
  }
  const weightsPath = findWeights(folder, opts);
  return { dir: folder, configPath, config, weightsPath, source: openCheckpoint(weightsPath) };
}

/** The path of the weights file / index to use; throws a ModelFolderError explaining what is there. */
export function findWeights(folder: string, opts: LoadComponentOptions = {}): string {
  const names = opts.weightsNames ?? [DIFFUSERS_WEIGHTS, TRANSFORMERS_WEIGHTS];
  const tried: string[] = [];
  for (const n of names)
    for (const c of weightCandidates(n, opts.variant)) {
      tried.push(c);
      if (existsSync(path.join(folder, c))) return path.join(folder, c);
    }
  const files = readdirSync(folder);
  const lines = [`no weights found (looked for ${tried.join(", ")})`];
  if (opts.variant) {
    const plain = names.flatMap((n) => weightCandidates(n)).filter((c) => files.includes(c));
    if (plain.length) lines.push(`variant "${opts.variant}" is absent but ${plain.join(", ")} exists: omit the variant to load it`);
  }
  const other = files.filter((f) => f.endsWith(".safetensors") || f.endsWith(".safetensors.index.json"));
  if (other.length) lines.push(`other safetensors files here: ${other.join(", ")}`);
  const pickles = files.filter((f) => PICKLE.test(f));
  if (pickles.length)
    lines.push(
      `found ${pickles.join(", ")}: PyTorch pickle checkpoints (.bin/.ckpt/.pt) are not supported (unsafe to load); ` +
        "convert them to safetensors first (e.g. with diffusers/transformers save_pretrained(safe_serialization=True))",
    );
  throw new ModelFolderError(folder, lines.join("; "));
}

/** What loadPretrained needs of a module (structural, so io/ does not import nn/). */
export interface LoadableModule {
  loadStateDict(
    source: TensorSource,
    opts: { strict?: boolean; device?: Device; dtype?: DType; ignore?: readonly (string | RegExp)[] },
  ): unknown;
  dispose(): void;
}

export interface PretrainedOptions extends LoadComponentOptions {
  device?: Device;
  dtype?: DType;
  /** Default true: every checkpoint key must match a parameter and vice versa. */
  strict?: boolean;
  /** Checkpoint keys to skip (e.g. transformers' `position_ids` buffer). */
  ignore?: readonly (string | RegExp)[];
}

/**
 * Memory-conscious load: `build(config)` constructs the module on "meta" (nothing allocated), the
 * strict key/shape check runs before any allocation, then each parameter is created on `device` in
 * `dtype` and filled from the memory-mapped bytes, one at a time: at most one converted tensor
 * exists beyond the final weights. The module is disposed if loading fails.
 */
export function loadPretrained<M extends LoadableModule>(
  dir: string,
  build: (config: Record<string, unknown>, opts: { device: Device; dtype: DType }, files: ComponentFiles) => M,
  opts: PretrainedOptions = {},
): M {
  const files = loadComponent(dir, opts);
  const dtype = opts.dtype ?? "float32";
  const module = build(files.config, { device: "meta", dtype }, files);
  try {
    module.loadStateDict(files.source, { strict: opts.strict ?? true, device: opts.device ?? "cpu", dtype, ignore: opts.ignore });
  } catch (e) {
    module.dispose();
    throw e;
  }
  return module;
}
