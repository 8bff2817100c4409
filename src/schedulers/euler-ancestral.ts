// EulerAncestralDiscreteScheduler: ancestral sampling with Euler steps (k-diffusion's
// sample_euler_ancestral, after Karras et al. 2022 and Song et al. 2021): each step splits the
// move from σ_i to σ_{i+1} into a deterministic Euler step down to σ_down and fresh noise of
// σ_up, with σ_up² = σ_{i+1}² (σ_i² − σ_{i+1}²)/σ_i² and σ_down² = σ_{i+1}² − σ_up².
// Draws noise at every step (through the step's NoiseSource). SigmaScheduler builds the σ
// tables (linear interpolation only, as diffusers' class). Timesteps are float32 values.

import { div32, mul32, sqrt32, sq32, sub32 } from "../core/float32.ts";
import { type Tensor, tidy } from "../tensor/index.ts";
import { type Scheduler, type StepOptions, type StepOutput, asFloat32, castTo, drawNoise } from "./scheduler.ts";
import { SigmaScheduler } from "./sigma-scheduler.ts";

export class EulerAncestralDiscreteScheduler extends SigmaScheduler implements Scheduler {
  constructor(config: Record<string, unknown> = {}, overrides: Record<string, unknown> = {}) {
    super({ className: "EulerAncestralDiscreteScheduler", config, overrides, predictionTypes: ["epsilon", "v_prediction"] });
  }

  step(modelOutput: Tensor, t: number, sample: Tensor, opts: StepOptions = {}): StepOutput {
    this.requireTimesteps();
    const i = this.currentIndex(t);
    const sigma = this.sigmas[i]!;
    const sigmaTo = this.sigmas[i + 1]!;
    const sigmaUp = sqrt32(div32(mul32(sq32(sigmaTo), sub32(sq32(sigma), sq32(sigmaTo))), sq32(sigma)));
    const sigmaDown = sqrt32(sub32(sq32(sigmaTo), sq32(sigmaUp)));
    const out = tidy(() => {
      const x = asFloat32(sample);
      const m = asFloat32(modelOutput);
      // 1. x_0 from ε or v.
      const x0 = this.predictOriginal(m, x, sigma);
      // 2. d = (x − x_0)/σ; Euler step to σ_down; 3. add σ_up · z.
      const d = x.sub(x0).div(sigma);
      const dt = sub32(sigmaDown, sigma);
      const prev = x.add(d.mul(dt)).add(drawNoise(opts, m).mul(sigmaUp));
      return { prevSample: castTo(prev, modelOutput.dtype), predOriginalSample: x0 };
    });
    this.stepIndex = i + 1;
    return out;
  }
}
