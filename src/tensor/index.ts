// The tensor layer's public surface: the Tensor class with every op attached as a method,
// creation functions, functional ops, memory scopes and statistics.

export { Tensor, viewStrides, type NestedArray } from "./tensor.ts";
export { type DType, DTYPES, dtypeBytes, isFloat, isHalf, isInteger } from "../core/dtype.ts";
export { type Device, type DeviceSpec, parseDevice } from "../core/device.ts";
export { TensorError, OutOfMemoryError, formatBytes } from "../core/errors.ts";
export { tidy, keep } from "./scope.ts";
export { memoryStats, resetPeakMemory, memoryAvailable, measureMemory, planAs, type MemoryStats, type DeviceMemory } from "./memory.ts";
export * from "./creation.ts";
export * from "./ops/elementwise.ts";
export * from "./ops/reduce.ts";
export * from "./ops/linalg.ts";
export * from "./ops/norm.ts";
export * from "./ops/shape-ops.ts";
export * from "./ops/indexing.ts";
export * from "./ops/attention.ts";
export * from "./ops/copy.ts";
export * from "./ops/group-stats.ts";
export { toMemoryFormat } from "./ops/memory-format.ts";
export { type MemoryFormat, channelsLastStrides, memoryFormatOf } from "../core/memory-format.ts";
