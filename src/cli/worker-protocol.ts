// The messages between the CLI's main thread and its generation worker (generate-worker.ts). The
// main thread sends one request with the checked options and the shared interrupt flag; the worker
// answers with log lines and progress while it works and ends with exactly one "images" or "error".

import type { DType, DeviceSpec } from "../tensor/index.ts";

/** What the worker needs to load the model and generate (options already checked by the main thread). */
export interface GenerationRequest {
  model: string;
  prompt: string;
  negative?: string;
  prompt2?: string;
  steps?: number;
  cfg?: number;
  /** One seed for a single image, one per image for a batch (A1111: seed, seed+1, …). */
  seed: number | number[];
  width?: number;
  height?: number;
  scheduler?: string;
  batch: number;
  device: DeviceSpec;
  /** Absent: the pipeline's default for the device (src/pipelines/default-dtype.ts). */
  dtype?: DType;
  clipSkip?: number;
  longPrompt?: "truncate" | "chunked";
  variant?: string;
  attention?: "fused" | "naive" | "chunked";
  /** Token Merging ratio (tomesd's `ratio`), checked before the model loads. */
  tome?: number;
  /** DeepCache interval: the whole UNet every n steps, the shallow branch in between (pipe.enableDeepCache). */
  deepcache?: number;
  /** One GEMM for q/k/v, cross-attention K/V once per run (pipe.fuseQkvProjections). */
  fuseQkv?: boolean;
  /** Decode the batch one image at a time (pipe.enableVaeSlicing). */
  vaeSlicing?: boolean;
  /** Decode in overlapping tiles of the VAE's sample size (pipe.enableVaeTiling). */
  vaeTiling?: boolean;
  /** CPU offload strategy (pipe.enableModelCpuOffload / enableSequentialCpuOffload; "auto": pipe.enableOffload); "none" or absent: off. */
  offload?: "none" | "model" | "sequential" | "auto";
  /** Seamless VAE tiling: layer by layer over tiles, equal to the untiled decode (pipe.enableVaeTiling({ seamless: true })). */
  vaeTilingSeamless?: boolean;
  /** Int32Array over a SharedArrayBuffer: [0] becomes 1 when the user asks to stop (Ctrl-C). */
  interrupt: SharedArrayBuffer;
}

export type WorkerMessage =
  | { type: "log"; line: string }
  | { type: "progress"; step: number; total: number; elapsedMs: number }
  | { type: "images"; images: { png: Uint8Array; seed?: number }[]; seconds: number }
  | { type: "error"; kind: "abort" | "options" | "other"; message: string };

/** Index of the interrupt flag in the shared Int32Array. */
export const INTERRUPT_FLAG = 0;
