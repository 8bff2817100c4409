// EulerDiscreteScheduler: Euler's method on the probability-flow ODE in σ (Karras et al. 2022,
// arXiv:2206.00364, Algorithm 2; k-diffusion's sample_euler), as diffusers' EulerDiscreteScheduler:
// σ from the training ᾱ, interpolated at the (float) timesteps, or Karras's ρ = 7 levels mapped
// back to fractional timesteps (SigmaScheduler builds the tables); optional stochastic churn.
// Timesteps are float32 values.

import { f32, mul32, sqrt32, sq32, sub32 } from "../core/float32.ts";
import { type Tensor, tidy } from "../tensor/index.ts";
import { rejectTrue, requireOneOf } from "./config.ts";
import { type Scheduler, type StepOptions, type StepOutput, asFloat32, castTo, drawNoise } from "./scheduler.ts";
import { SigmaScheduler } from "./sigma-scheduler.ts";

export class EulerDiscreteScheduler extends SigmaScheduler implements Scheduler {
  constructor(config: Record<string, unknown> = {}, overrides: Record<string, unknown> = {}) {
    super({ className: "EulerDiscreteScheduler", config, overrides, predictionTypes: ["epsilon", "v_prediction", "sample"] });
    const cfg = this.config;
    requireOneOf(this.className, cfg, "interpolation_type", ["linear", "log_linear"]);
    requireOneOf(this.className, cfg, "timestep_type", ["discrete"]);
    requireOneOf(this.className, cfg, "final_sigmas_type", ["zero", "sigma_min"]);
    rejectTrue(this.className, cfg, "use_exponential_sigmas", "use_beta_sigmas");
  }

  step(modelOutput: Tensor, t: number, sample: Tensor, opts: StepOptions = {}): StepOutput {
    this.requireTimesteps();
    const i = this.currentIndex(t);
    const sigma = this.sigmas[i]!;
    const sChurn = opts.sChurn ?? 0;
    const sTmin = opts.sTmin ?? 0;
    const sTmax = opts.sTmax ?? Infinity;
    const sNoise = opts.sNoise ?? 1;
    // γ = min(s_churn/N, √2 − 1) inside [s_tmin, s_tmax]: raise σ to σ̂ = σ(1 + γ) by adding noise.
    const gamma = sTmin <= sigma && sigma <= sTmax ? Math.min(sChurn / (this.sigmas.length - 1), 2 ** 0.5 - 1) : 0;
    const sigmaHat = mul32(sigma, f32(gamma + 1));
    const out = tidy(() => {
      let x = asFloat32(sample);
      const m = asFloat32(modelOutput);
      if (gamma > 0) {
        const eps = drawNoise(opts, m).mul(f32(sNoise));
        x = x.add(eps.mul(sqrt32(sub32(sq32(sigmaHat), sq32(sigma)))));
      }
      // 1. denoised x_0 from the model's parameterisation.
      const x0 = this.predictOriginal(m, x, sigma, sigmaHat);
      // 2. ODE derivative d = (x − x_0)/σ̂, 3. Euler step to σ_{i+1}.
      const d = x.sub(x0).div(sigmaHat);
      const dt = sub32(this.sigmas[i + 1]!, sigmaHat);
      const prev = x.add(d.mul(dt));
      return { prevSample: castTo(prev, modelOutput.dtype), predOriginalSample: x0 };
    });
    this.stepIndex = i + 1;
    return out;
  }
}
