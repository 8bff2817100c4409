// Measured allocator peaks of one generate() call per phase, as the memory planner splits a run: text
// encoding (from the call until the UNet's first forward), denoising (until the VAE decoder starts) and
// decoding (the rest). Hooks on the UNet and the VAE's decoder reset the device's peak at each boundary.

import type { AnyPipeline } from "../../src/pipelines/index.ts";
import type { Device } from "../../src/core/device.ts";
import { memoryStats, resetPeakMemory } from "../../src/tensor/index.ts";

export interface MeasuredRun {
  /** Peak live bytes in each phase (weights included), in the planner's phase order. */
  phases: Record<"text encoding" | "denoising" | "decoding", number>;
  /** Live bytes before and after the call. */
  liveBefore: number;
  liveAfter: number;
}

/** Run `generate` with the per-phase peaks of `device` recorded. */
export async function measurePhases(pipe: AnyPipeline, device: Device, generate: () => Promise<unknown>): Promise<MeasuredRun> {
  const peaks: number[] = [];
  const mark = () => {
    peaks.push(memoryStats(device).peak);
    resetPeakMemory(device);
  };
  const liveBefore = memoryStats(device).live;
  resetPeakMemory(device);
  const h1 = pipe.unet.registerForwardPreHook(() => void (peaks.length === 0 && mark()));
  const h2 = pipe.vae.getSubmodule("decoder").registerForwardPreHook(() => void (peaks.length === 1 && mark()));
  try {
    await generate();
    mark();
  } finally {
    h1.remove();
    h2.remove();
  }
  if (peaks.length !== 3) throw new Error(`expected 3 phases, saw ${peaks.length} boundaries`);
  return {
    phases: { "text encoding": peaks[0]!, denoising: peaks[1]!, decoding: peaks[2]! },
    liveBefore,
    liveAfter: memoryStats(device).live,
  };
}
