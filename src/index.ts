// bun-diffusion: Stable Diffusion text-to-image for Bun. The package entry point re-exports
// the public API of each layer: pipelines, schedulers, models, tokenizer, nn, images, tensors.

export * from "./tensor/index.ts";
export { getBackend, hasBackend } from "./backends/registry.ts";
export {
  StableDiffusionPipeline,
  StableDiffusionXLPipeline,
  DiffusionPipeline,
  loadPipeline,
  AbortError,
  GenerateOptionsError,
  NonFiniteError,
  PipelineBusyError,
  DEMO_MODEL_DIR,
  type CheckFinite,
  type AnyPipeline,
  type GenerateOptions,
  type GenerateResult,
  type StableDiffusionXLGenerateOptions,
  type OnStep,
  type StepInfo,
  type OutputType,
  type PipelineLoadOptions,
  type VaeTilingFeatureOptions,
  MetaModels,
  planMemory,
  knownPlanModels,
  folderPlanModels,
  KNOWN_ARCHITECTURES,
  type MemoryPlan,
  type PhasePlan,
  type PlanRequest,
  type PlanModels,
  type OffloadStrategy,
} from "./pipelines/index.ts";
export { schedulerFromConfig, schedulerByName, SCHEDULER_NAMES, type Scheduler } from "./schedulers/index.ts";
export { UNet2DConditionModel } from "./models/unet/index.ts";
export { AutoencoderKL, type VaeTilingOptions } from "./models/vae/index.ts";
export { CLIPTextModel, CLIPTextModelWithProjection } from "./models/clip.ts";
export { CLIPTokenizer } from "./tokenizer/clip-tokenizer.ts";
export { Module } from "./nn/module.ts";
export { registerAttention, unregisterAttention, attentionKinds, type AttentionKind, type AttentionFn } from "./nn/attention-dispatch.ts";
export { Attention, AttnProcessorDefault, type AttnProcessor } from "./nn/attention.ts";
export { setAttnProcessor, attnProcessors, setAttentionKind, type AttnProcessorChoice } from "./nn/attention-processors.ts";
export {
  applyTokenMerging,
  removeTokenMerging,
  tokenMergingOf,
  TokenMergingOptionError,
  type TokenMergingOptions,
  type ToMeOptions,
  type ToDoOptions,
  type TokenMergingHandle,
} from "./tome/index.ts";
export {
  applyDeepCache,
  removeDeepCache,
  deepCacheOf,
  DeepCacheOptionError,
  type DeepCacheOptions,
  type DeepCacheHandle,
  fuseQkvProjections,
  unfuseQkvProjections,
  fusedQkvOf,
  FusedQkvProcessor,
  type FuseQkvOptions,
  type FusedQkvHandle,
  applyChannelsLast,
  removeChannelsLast,
  channelsLastOf,
  type ChannelsLastHandle,
  applyCudaGraphs,
  removeCudaGraphs,
  cudaGraphsOf,
  type CudaGraphHandle,
  type CudaGraphStats,
} from "./speed/index.ts";
export { cudaCapturer } from "./pipelines/cuda-graph-feature.ts";
export { GeneratedImage, formatParameters, parseParameters, type GenerationParameters, type ParsedParameters } from "./io/image.ts";
export { openSafetensors, writeSafetensors } from "./io/safetensors.ts";
export { openCheckpoint } from "./io/safetensors-index.ts";
export { saveTensors, entryToTensor } from "./io/tensor-io.ts";
export {
  initCuda, cudaAvailable, cudaEmptyCache, cudaSynchronize, CudaUnavailableError, setCudaAllowTf32, cudaAllowTf32,
} from "./backends/cuda/index.ts";
export { resolveDevice } from "./backends/select.ts";
