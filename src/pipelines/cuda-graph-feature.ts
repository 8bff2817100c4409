// The "cudaGraphs" pipeline feature: CUDA-graph UNet steps (src/speed/cuda-graph.ts) with the CUDA backend's
// capture (src/backends/cuda/graph.ts) — pipe.enableCudaGraphs() / disableCudaGraphs(). On by default on CUDA
// (a replayed step is bit-identical to the eager one); an explicit call on another device is an error naming it.
// The features it cannot combine with are refused by name, in both orders of enabling (pipeline.ts).

import { captureCudaGraph, cudaGraphsUnsupported } from "../backends/cuda/index.ts";
import type { Device } from "../core/device.ts";
import type { UNet2DConditionModel } from "../models/unet/index.ts";
import { type CudaGraphHandle, type GraphCapturer, applyCudaGraphs, cudaGraphConflict } from "../speed/index.ts";

/** The CUDA backend as the step runner's capturer. */
export const cudaCapturer: GraphCapturer = { device: "cuda", capture: captureCudaGraph };

/** Why CUDA graphs cannot run on `device` now, or null. */
export function cudaGraphsProblem(device: Device): string | null {
  if (device !== "cuda")
    return `CUDA graphs capture CUDA work; this pipeline runs on "${device}" (there is nothing to capture there: graphs are a CUDA-only speed-up)`;
  return cudaGraphsUnsupported();
}

/** Pipeline features that conflict with graphs, by name (null: none active). */
export function cudaGraphFeatureConflict(unet: UNet2DConditionModel, active: (name: string) => boolean): string | null {
  if (active("sequentialCpuOffload")) return "sequential CPU offload is active (it uploads weights inside the step's hooks, which a replayed graph would not run)";
  return cudaGraphConflict(unet);
}

/** Install graph steps on the pipeline's UNet. */
export function installCudaGraphs(unet: UNet2DConditionModel, stateKey: () => string, conflict: () => string | null): CudaGraphHandle {
  return applyCudaGraphs(unet, cudaCapturer, { stateKey, conflict });
}
