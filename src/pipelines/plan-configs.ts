// The models a memory plan is made for, without weights: a known architecture shipped with the package
// (assets/configs/<name>.json: SD 1.x, SD 2.x and SDXL base, the resolved configs of the real-size models)
// or a diffusers model folder, of which only model_index.json and the components' config.json are read.
// The dtypes follow the loader: the UNet and text encoders in the requested dtype, the VAE too, except an
// SDXL VAE with force_upcast, which the SDXL pipeline keeps in float32 under float16.

import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { parsePythonJson } from "../io/python-json.ts";
import type { DType } from "../tensor/index.ts";
import { ModelFolderError } from "../io/model-folder.ts";
import { TEXT_ENCODER_CLASSES, componentDir, pipelineKind, readModelIndex } from "./loading.ts";
import type { PlanModels } from "./plan.ts";

export const KNOWN_ARCHITECTURES = ["sd15", "sd21", "sdxl"] as const;
export type KnownArchitecture = (typeof KNOWN_ARCHITECTURES)[number];

const CONFIG_DIR = path.join(import.meta.dir, "..", "..", "assets", "configs");

interface ArchitectureFile {
  description: string;
  pipeline: "sd" | "sdxl";
  unet: Record<string, unknown>;
  vae: Record<string, unknown>;
  text_encoders: { name: string; projection: boolean; config: Record<string, unknown> }[];
}

/** The plan models of a known architecture in `dtype`. */
export function knownPlanModels(name: string, dtype: DType): PlanModels & { description: string } {
  if (!(KNOWN_ARCHITECTURES as readonly string[]).includes(name))
    throw new RangeError(`unknown architecture ${JSON.stringify(name)}; known: ${KNOWN_ARCHITECTURES.join(", ")} (or pass a model folder)`);
  const a = JSON.parse(readFileSync(path.join(CONFIG_DIR, `${name}.json`), "utf8")) as ArchitectureFile;
  return {
    description: a.description,
    unet: a.unet,
    vae: a.vae,
    textEncoders: a.text_encoders.map((t) => ({ name: t.name, config: t.config, projection: t.projection })),
    dtype,
    vaeDtype: vaeDtype(a.pipeline, a.vae, dtype),
  };
}

/** The plan models of a diffusers pipeline folder (configs only; weights are not opened). */
export function folderPlanModels(dir: string, dtype: DType): PlanModels & { description: string } {
  const index = readModelIndex(dir);
  const kind = pipelineKind(index.className);
  if (!kind) throw new ModelFolderError(index.dir, `model_index.json names ${index.className}; plans are made for Stable Diffusion and SDXL pipelines`);
  const config = (name: string, allowed: readonly string[], optional = false): Record<string, unknown> | null => {
    const d = componentDir(index, name, allowed, optional);
    if (!d) return null;
    const file = path.join(d, "config.json");
    if (!existsSync(file)) throw new ModelFolderError(index.dir, `${name}/config.json is missing; re-download the ${name}/ folder`);
    try {
      return parsePythonJson(readFileSync(file, "utf8")) as Record<string, unknown>;
    } catch (e) {
      throw new ModelFolderError(index.dir, `cannot parse ${name}/config.json: ${(e as Error).message}`);
    }
  };
  const unet = config("unet", ["UNet2DConditionModel"])!;
  const vae = config("vae", ["AutoencoderKL"])!;
  const encoders: PlanModels["textEncoders"] = [];
  const te1 = config("text_encoder", TEXT_ENCODER_CLASSES, kind === "sdxl");
  if (te1) encoders.push({ name: "text_encoder", config: te1, projection: false });
  if (kind === "sdxl") {
    const te2 = config("text_encoder_2", ["CLIPTextModelWithProjection"], true);
    if (te2) encoders.push({ name: "text_encoder_2", config: te2, projection: true });
  }
  return { description: `${index.className} at ${index.dir}`, unet, vae, textEncoders: encoders, dtype, vaeDtype: vaeDtype(kind, vae, dtype) };
}

function vaeDtype(kind: "sd" | "sdxl", vae: Record<string, unknown>, dtype: DType): DType {
  return kind === "sdxl" && dtype === "float16" && vae.force_upcast !== false ? "float32" : dtype;
}
