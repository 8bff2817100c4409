// Token merging for the UNet: ToMe (tomesd parity: bipartite soft matching, merge before attention, unmerge by
// copy) and ToDo (token downsampling of self-attention keys/values), installed through hooks and processors.

export { applyTokenMerging, removeTokenMerging, tokenMergingOf, type TokenMergingHandle } from "./apply.ts";
export {
  DEFAULT_TOME_SEED,
  type ResolvedToDo,
  type ResolvedToMe,
  type ResolvedTokenMerging,
  type ToDoOptions,
  type ToMeOptions,
  TokenMergingOptionError,
  type TokenMergingOptions,
  resolveTokenMergingOptions,
} from "./options.ts";
export { type MatchIndices, type MergeMode, TokenMatch, bipartiteSoftMatching } from "./bipartite.ts";
export { type Partition, type PartitionIndices, cellCount, partitionIndices, partitionTensors, randomDstChoice } from "./partition.ts";
export { type TransformerBlockSite, autoMaxDownsample, tokenGrid, transformerBlockSites } from "./levels.ts";
export { type LatentSize, ToDoProcessor, downsampleTokens, nearestExactIndex } from "./todo.ts";
export { torchUnstableArgsort } from "./torch-sort.ts";
