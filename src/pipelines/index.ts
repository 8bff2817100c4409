// The pipeline layer's public surface: StableDiffusionPipeline, StableDiffusionXLPipeline,
// loadPipeline() (picks the class from model_index.json's _class_name), their options and results,
// and the errors they throw.

import { ModelFolderError } from "../io/model-folder.ts";
import { type ModelIndex, type PipelineLoadOptions, checkLoadOptions, pipelineKind, readModelIndex } from "./loading.ts";
import { StableDiffusionPipeline } from "./stable-diffusion.ts";
import { StableDiffusionXLPipeline } from "./stable-diffusion-xl.ts";

export { StableDiffusionPipeline, StableDiffusionXLPipeline };
export { type StableDiffusionXLGenerateOptions } from "./stable-diffusion-xl.ts";
export { DiffusionPipeline } from "./pipeline.ts";
export { type GenerateOptions, type GenerateResult, type OnStep, type OutputType, type StepInfo } from "./options.ts";
export { AbortError, GenerateOptionsError } from "./errors.ts";
export { type PipelineLoadOptions, type PipelineKind, type ModelIndex, pipelineKind, readModelIndex, readSchedulerConfig } from "./loading.ts";
export { type ActiveFeature, type FeatureHooks, formatFeatures } from "./features.ts";
export { type VaeTilingFeatureOptions } from "./vae-features.ts";
export { type SchedulerOption, samplerName } from "./scheduler-choice.ts";
export { rescaleNoiseCfg } from "./denoise.ts";
export { NonFiniteError, PipelineBusyError } from "./errors.ts";
export { DEMO_MODEL_DIR } from "./demo-model.ts";
export { type CheckFinite } from "./options.ts";
export { MetaModels, type MemoryPlan, type OffloadStrategy, type PhaseName, type PhasePlan, type PlanModels, type PlanRequest, planMemory } from "./plan.ts";
export { KNOWN_ARCHITECTURES, type KnownArchitecture, folderPlanModels, knownPlanModels } from "./plan-configs.ts";

export type AnyPipeline = StableDiffusionPipeline | StableDiffusionXLPipeline;

/** Load a pipeline folder as the class its model_index.json names (SD 1.x/2.x or SDXL). */
export async function loadPipeline(modelDir: string | ModelIndex, opts: PipelineLoadOptions = {}): Promise<AnyPipeline> {
  checkLoadOptions(opts, "loadPipeline()");
  const index = readModelIndex(modelDir); // model_index.json is read once: the loaders take the parsed index
  const kind = pipelineKind(index.className);
  if (kind === "sd") return StableDiffusionPipeline.fromPretrained(index, opts);
  if (kind === "sdxl") return StableDiffusionXLPipeline.fromPretrained(index, opts);
  throw new ModelFolderError(
    index.dir,
    `holds a ${index.className}, which bun-diffusion does not run; supported: StableDiffusionPipeline (SD 1.x / 2.x) and StableDiffusionXLPipeline`,
  );
}
