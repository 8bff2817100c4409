// The denoising loop shared by the pipelines (diffusers' __call__ step 8): for each timestep, one
// batched UNet call with rows [negative…, positive…] under classifier-free guidance,
// noise = uncond + g·(cond − uncond), optional guidance rescale (rescale_noise_cfg), then
// scheduler.step. Each step's temporaries are freed inside tidy; only the current latents live
// between steps. Between steps: onStep, the event loop gets a turn, and the AbortSignal is checked
// (on abort the latents are freed and an AbortError is thrown); inside a step the module-call check
// (interrupt.ts), when given, stops at the next module call and the step's tidy frees its temporaries.

import type { UNet2DConditionModel } from "../models/unet/index.ts";
import type { Scheduler, StepOptions } from "../schedulers/index.ts";
import { type Tensor, arange, cat, exp, tensor, tidy } from "../tensor/index.ts";
import { NonFiniteError, throwIfAborted } from "./errors.ts";
import { allFinite } from "./finite.ts";
import type { CheckFinite, OnStep } from "./options.ts";
import { type ModuleAbortCheck, interruptible } from "./interrupt.ts";

/** Conditioning of the UNet call, already batched as the UNet receives it ([2B·n] rows under CFG). */
export interface UNetConditioning {
  /** [rows, S, D] */
  encoderHiddenStates: Tensor;
  /** SDXL: pooled text embeddings [rows, P] and micro-conditioning [rows, 6]. */
  textEmbeds?: Tensor;
  timeIds?: Tensor;
  /** Guidance-distilled UNets (LCM): w-embedding [B·n, time_cond_proj_dim]. */
  timestepCond?: Tensor;
}

export interface DenoiseOptions {
  unet: UNet2DConditionModel;
  scheduler: Scheduler;
  cond: UNetConditioning;
  cfg: boolean;
  guidanceScale: number;
  guidanceRescale: number;
  /** What scheduler.step gets besides its tensors (generator, eta). */
  stepOptions: StepOptions;
  onStep?: OnStep;
  signal?: AbortSignal;
  /** The run's module-call abort check (armed around each step). */
  interrupt?: ModuleAbortCheck;
  /** performance.now() when generate() started (for StepInfo.elapsedMs). */
  startedAt: number;
  /** When to check the latents for NaN/Inf (default "end"). */
  checkFinite?: CheckFinite;
  /** The likely causes named when the check fails (called only then). */
  explainNonFinite?: () => string[];
}

/**
 * rescale_noise_cfg (Lin et al. 2023, arXiv:2305.08891 §3.4): scale the guided prediction to the
 * per-sample std of the text-conditioned one, then blend: φ·rescaled + (1 − φ)·guided.
 */
export function rescaleNoiseCfg(noiseCfg: Tensor, noiseText: Tensor, phi: number): Tensor {
  return tidy(() => {
    const dims = [...Array(noiseText.ndim).keys()].slice(1);
    const stdText = noiseText.std(dims, { keepdim: true }); // [B, 1, 1, 1], unbiased as torch.std
    const stdCfg = noiseCfg.std(dims, { keepdim: true });
    const rescaled = noiseCfg.mul(stdText.div(stdCfg));
    return rescaled.mul(phi).add(noiseCfg.mul(1 - phi));
  });
}

/**
 * get_guidance_scale_embedding (LCM): sinusoidal embedding of w·1000 for each w, [len(w), dim],
 * sin half then cos half (a zero column appended when dim is odd).
 */
export function guidanceScaleEmbedding(w: number[], dim: number): Tensor {
  return tidy(() => {
    const half = Math.floor(dim / 2);
    const scale = Math.fround(Math.fround(Math.log(10000)) / (half - 1)); // float32, as torch computes it
    const freqs = exp(arange(0, half, 1, { dtype: "float32" }).mul(-scale)); // [half]
    const ws = tensor(Float32Array.from(w, (x) => x * 1000), { shape: [w.length, 1] }); // [N, 1]
    const emb = ws.mul(freqs.reshape([1, half])); // [N, half]
    const parts = [emb.sin(), emb.cos()];
    if (dim % 2 === 1) parts.push(emb.narrow(1, 0, 1).mul(0)); // zero pad column
    return cat(parts, 1); // [N, dim]
  });
}

/** Run the loop from `latents` (consumed: freed when no longer needed); returns the final latents. */
export async function denoise(latents: Tensor, o: DenoiseOptions): Promise<Tensor> {
  const { unet, scheduler, cond, cfg } = o;
  const timesteps = scheduler.timesteps.slice();
  const total = timesteps.length;
  let x = latents;
  try {
    throwIfAborted(o.signal, 0, total);
    for (let i = 0; i < total; i++) {
      const t = timesteps[i]!;
      const next = interruptible(o.interrupt, `step ${i + 1} of ${total}`, i, () => tidy(() => {
        const input = cfg ? cat([x, x], 0) : x; // [rows, C, h, w]
        const scaled = scheduler.scaleModelInput(input, t);
        const out = unet.call(scaled, t, cond.encoderHiddenStates, {
          textEmbeds: cond.textEmbeds ?? null,
          timeIds: cond.timeIds ?? null,
          timestepCond: cond.timestepCond ?? null,
        });
        let noise = out;
        if (cfg) {
          const [uncond, text] = out.chunk(2, 0) as [Tensor, Tensor];
          noise = uncond.add(text.sub(uncond).mul(o.guidanceScale));
          if (o.guidanceRescale > 0) noise = rescaleNoiseCfg(noise, text, o.guidanceRescale);
        }
        return scheduler.step(noise, t, x, o.stepOptions).prevSample; // other outputs are freed here
      }));
      x.dispose();
      x = next;
      const check = o.checkFinite ?? "end";
      if ((check === "step" || (check === "end" && i + 1 === total)) && !allFinite(x))
        throw new NonFiniteError("latents", i + 1, total, o.explainNonFinite?.() ?? []);
      if (o.onStep) await o.onStep(i + 1, total, { timestep: t, latents: x, elapsedMs: performance.now() - o.startedAt });
      if (i + 1 < total) {
        await new Promise<void>((resolve) => setImmediate(resolve)); // let timers and signals fire
        throwIfAborted(o.signal, i + 1, total);
      }
    }
    return x;
  } catch (e) {
    x.dispose();
    throw e;
  }
}
