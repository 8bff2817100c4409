// The noise schedule every scheduler starts from: betas (linear, scaled_linear, squaredcos_cap_v2
// or trained) → alphas → ᾱ (alphas_cumprod), computed the way torch computes them in float32 on
// the CPU (torch.linspace's kernel, torch.cumprod's float64 accumulator), plus zero-terminal-SNR
// rescaling (Lin et al. 2023).

import { fma32, f32, sub32, sqrt32 } from "../core/float32.ts";
import type { SchedulerConfig } from "./config.ts";

/**
 * torch.linspace(start, end, steps, dtype=float32) as torch's CPU kernel computes it: float32
 * start/end/step, the symmetric formula (start + i·step below the midpoint, end − (n−1−i)·step
 * above) with the multiply-add contracted to one FMA, and vectorised runs of 8 lanes that step
 * from the run's first value (base + k·step). This reproduces torch's betas bit for bit.
 */
export function torchLinspaceF32(start: number, end: number, steps: number): Float32Array {
  const out = new Float32Array(steps);
  if (steps === 0) return out;
  if (steps === 1) {
    out[0] = f32(start);
    return out;
  }
  const s = f32(start);
  const e = f32(end);
  const step = f32(sub32(e, s) / (steps - 1));
  const half = Math.floor(steps / 2);
  const scalar = (i: number): number => (i < half ? fma32(step, i, s) : fma32(-step, steps - i - 1, e));
  const VEC = 8;
  let i = 0;
  for (; i + 2 * VEC <= steps; i += 2 * VEC) {
    for (const base of [i, i + VEC]) {
      const b = scalar(base);
      out[base] = b;
      for (let k = 1; k < VEC; k++) out[base + k] = fma32(k, step, b);
    }
  }
  for (; i < steps; i++) out[i] = scalar(i);
  return out;
}

/** GLIDE's cosine schedule (Nichol & Dhariwal 2021, eq. 17): β_i = min(1 − ᾱ(t_{i+1})/ᾱ(t_i), 0.999). */
function betasForAlphaBar(n: number, maxBeta = 0.999): Float32Array {
  const alphaBar = (t: number) => Math.cos(((t + 0.008) / 1.008) * Math.PI / 2) ** 2;
  const betas = new Float32Array(n);
  for (let i = 0; i < n; i++) betas[i] = Math.min(1 - alphaBar((i + 1) / n) / alphaBar(i / n), maxBeta);
  return betas;
}

/** The betas of a config, float32 as torch holds them. */
export function betasFor(cfg: SchedulerConfig): Float32Array {
  const n = cfg.num_train_timesteps;
  if (cfg.trained_betas) return Float32Array.from(cfg.trained_betas);
  switch (cfg.beta_schedule) {
    case "linear":
      return torchLinspaceF32(cfg.beta_start, cfg.beta_end, n);
    case "scaled_linear": {
      // Latent diffusion's schedule: linear in √β, then squared (x ** 2 is x·x in torch).
      const r = torchLinspaceF32(Math.sqrt(cfg.beta_start), Math.sqrt(cfg.beta_end), n);
      return r.map((x) => x * x);
    }
    case "squaredcos_cap_v2":
      return betasForAlphaBar(n);
  }
}

/** torch.cumprod on a float32 CPU tensor: the running product is kept in float64, each output rounded. */
export function cumprodF32(x: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  let acc = 1;
  for (let i = 0; i < x.length; i++) {
    acc *= x[i]!;
    out[i] = acc;
  }
  return out;
}

/**
 * Zero terminal SNR (Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps are
 * Flawed", Algorithm 1): shift √ᾱ so the last step is pure noise, rescale so the first is
 * unchanged, and recover the betas. Float32 like diffusers' torch code.
 */
export function rescaleZeroTerminalSnr(betas: Float32Array): Float32Array {
  const n = betas.length;
  const alphas = betas.map((b) => sub32(1, b));
  const sqrtAc = cumprodF32(alphas).map((a) => sqrt32(a));
  const a0 = sqrtAc[0]!;
  const aT = sqrtAc[n - 1]!;
  const scale = f32(a0 / sub32(a0, aT));
  const alphaBar = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const shifted = sub32(sqrtAc[i]!, aT);
    const scaled = f32(shifted * scale);
    alphaBar[i] = scaled * scaled;
  }
  const out = new Float32Array(n);
  out[0] = sub32(1, alphaBar[0]!);
  for (let i = 1; i < n; i++) out[i] = sub32(1, f32(alphaBar[i]! / alphaBar[i - 1]!));
  return out;
}

/** ᾱ_t = Π_{s≤t} (1 − β_s), after optional zero-terminal-SNR rescaling of the betas. */
export function alphasCumprodFor(cfg: SchedulerConfig): Float32Array {
  let betas = betasFor(cfg);
  if (cfg.rescale_betas_zero_snr) betas = rescaleZeroTerminalSnr(betas);
  return cumprodF32(betas.map((b) => sub32(1, b)));
}
