// Speed features for the UNet, installed through hooks and attention processors (no model code changes):
// DeepCache (deepcache.ts), fused QKV projections with a per-run cross-attention K/V cache (fused-qkv.ts) and
// channels-last (NHWC) convolutions and activations (channels-last.ts) and CUDA-graph UNet steps (cuda-graph.ts,
// with the backend's capture injected).

export {
  type DeepCacheHandle,
  DeepCacheOptionError,
  type DeepCacheOptions,
  applyDeepCache,
  deepCacheOf,
  deepCachePlan,
  removeDeepCache,
  resolveDeepCacheOptions,
} from "./deepcache.ts";
export {
  type FuseQkvOptions,
  type FusedQkvHandle,
  FusedQkvProcessor,
  type FusedQkvStats,
  fuseQkvProjections,
  fusedQkvOf,
  unfuseQkvProjections,
} from "./fused-qkv.ts";
export { type ChannelsLastHandle, applyChannelsLast, channelsLastOf, removeChannelsLast } from "./channels-last.ts";
export {
  type CapturedGraph,
  type CudaGraphHandle,
  type CudaGraphOptions,
  type CudaGraphStats,
  type GraphCapturer,
  applyCudaGraphs,
  cudaGraphConflict,
  cudaGraphsOf,
  removeCudaGraphs,
} from "./cuda-graph.ts";
