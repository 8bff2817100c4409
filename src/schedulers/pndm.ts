// PNDMScheduler: pseudo numerical methods for diffusion models (Liu et al. 2022,
// arXiv:2202.09778) in its PLMS form (skip_prk_steps, as Stable Diffusion's config sets): a
// 4th-order linear multistep combination of past ε predictions (eq. 12) pushed through the
// transfer function φ of eq. (9). The first timestep is repeated: the second model call, at the
// same t, refines the first step (a 2nd-order Heun-like start). Full F-PNDM (Runge–Kutta warm-up,
// skip_prk_steps false) is implemented as well. AlphaScheduler holds the ᾱ table and add_noise.

import { roundHalfEven, f32, add32, sub32, mul32, div32, sqrt32 } from "../core/float32.ts";
import { type Tensor, tidy } from "../tensor/index.ts";
import { AlphaScheduler } from "./alpha-scheduler.ts";
import { type Scheduler, type StepOptions, type StepOutput, asFloat32, castTo, retain } from "./scheduler.ts";
import { spacedTimesteps } from "./schedule.ts";

export class PNDMScheduler extends AlphaScheduler implements Scheduler {
  private readonly pndmOrder = 4;
  /** Past model outputs e_θ (newest last), at most 4. */
  private ets: Tensor[] = [];
  /** The sample the current (PLMS warm-up or RK) step started from. */
  private curSample: Tensor | null = null;
  /** Runge–Kutta accumulation of model outputs (F-PNDM only). */
  private curModelOutput: Tensor | null = null;
  private counter = 0;
  private prkTimesteps: number[] = [];

  constructor(config: Record<string, unknown> = {}, overrides: Record<string, unknown> = {}) {
    super({ className: "PNDMScheduler", config, overrides, predictionTypes: ["epsilon", "v_prediction"] });
  }

  /** At least 2 steps: PLMS repeats the first timestep and steps from the second. */
  protected override inferenceStepLimits(): { min: number; max: number } {
    return { ...super.inferenceStepLimits(), min: 2 };
  }

  setTimesteps(numInferenceSteps: number): void {
    this.checkInferenceSteps(numInferenceSteps);
    const { num_train_timesteps: T, timestep_spacing, steps_offset } = this.config;
    this.numInferenceSteps = numInferenceSteps;
    // Ascending base schedule.
    const base = spacedTimesteps(timestep_spacing, T, numInferenceSteps, steps_offset).map((t) => roundHalfEven(t)).reverse();
    if (this.config.skip_prk_steps) {
      // PLMS: [t_n, t_{n-1}, t_{n-1}, t_{n-2}, …, t_1]: the second-largest step is taken twice.
      this.prkTimesteps = [];
      this.timesteps = [...base.slice(0, -1), ...base.slice(-2, -1), ...base.slice(-1)].reverse();
    } else {
      // F-PNDM: 4 Runge–Kutta steps (3 model calls each at t, t − δ/2, t − δ/2, t − δ) on the
      // largest timesteps, then PLMS from the rest.
      const half = Math.floor(Math.floor(T / numInferenceSteps) / 2);
      const last = base.slice(-this.pndmOrder);
      const prk: number[] = [];
      for (const t of last) prk.push(t, t + half);
      const repeated: number[] = [];
      for (const t of prk.slice(0, -1)) repeated.push(t, t);
      this.prkTimesteps = repeated.slice(1, -1).reverse();
      this.timesteps = [...this.prkTimesteps, ...base.slice(0, -3).reverse()];
    }
    this.reset();
  }

  protected override clearHistory(): void {
    for (const e of this.ets) e.dispose();
    this.ets = [];
    this.curSample?.dispose();
    this.curSample = null;
    this.curModelOutput?.dispose();
    this.curModelOutput = null;
    this.counter = 0;
  }

  step(modelOutput: Tensor, t: number, sample: Tensor, _opts: StepOptions = {}): StepOutput {
    this.requireTimesteps();
    const prevSample =
      this.counter < this.prkTimesteps.length && !this.config.skip_prk_steps
        ? this.stepPrk(modelOutput, t, sample)
        : this.stepPlms(modelOutput, t, sample);
    this.counter++;
    return { prevSample: castTo(prevSample, modelOutput.dtype) };
  }

  /** One Runge–Kutta stage of F-PNDM (eq. 13): weights 1/6, 1/3, 1/3, 1/6. */
  private stepPrk(modelOutput: Tensor, t: number, sample: Tensor): Tensor {
    const T = this.config.num_train_timesteps;
    const n = this.numInferenceSteps!;
    const diffToPrev = this.counter % 2 ? 0 : Math.floor(Math.floor(T / n) / 2);
    const prevT = t - diffToPrev;
    const stageT = this.prkTimesteps[Math.floor(this.counter / 4) * 4]!;
    return tidy(() => {
      let m = asFloat32(modelOutput);
      const phase = this.counter % 4;
      const accumulate = (w: number) => {
        const term = m.mul(f32(w));
        const next = this.curModelOutput ? this.curModelOutput.add(term) : term;
        this.curModelOutput?.dispose();
        this.curModelOutput = retain(next);
      };
      if (phase === 0) {
        accumulate(1 / 6);
        this.pushEt(m);
        this.curSample?.dispose();
        this.curSample = retain(asFloat32(sample));
      } else if (phase === 1 || phase === 2) {
        accumulate(1 / 3);
      } else {
        m = this.curModelOutput!.add(m.mul(f32(1 / 6)));
        this.curModelOutput?.dispose();
        this.curModelOutput = null;
      }
      const x = this.curSample ?? asFloat32(sample);
      return this.prevSample(x, stageT, prevT, m);
    });
  }

  /** Pseudo linear multistep (eq. 12) with the warm-up of crowsonkb's PLMS for SD. */
  private stepPlms(modelOutput: Tensor, t: number, sample: Tensor): Tensor {
    if (!this.config.skip_prk_steps && this.ets.length < 3)
      throw new Error("PNDMScheduler: PLMS steps need the Runge–Kutta warm-up first (use the full timestep list)");
    const delta = Math.floor(this.config.num_train_timesteps / this.numInferenceSteps!);
    let prevT = t - delta;
    return tidy(() => {
      const m = asFloat32(modelOutput);
      let x = asFloat32(sample);
      if (this.counter !== 1) {
        this.pushEt(m);
      } else {
        // The repeated first timestep: step from the same start again, now with the averaged ε.
        prevT = t;
        t = t + delta;
      }
      const e = this.ets;
      const k = e.length;
      let eps: Tensor;
      if (k === 1 && this.counter === 0) {
        eps = m;
        this.curSample?.dispose();
        this.curSample = retain(x);
      } else if (k === 1 && this.counter === 1) {
        eps = m.add(e[0]!).div(2);
        x = this.curSample!;
        this.curSample = null;
        x = keepLocal(x);
      } else if (k === 2) {
        eps = e[1]!.mul(3).sub(e[0]!).div(2);
      } else if (k === 3) {
        eps = e[2]!.mul(23).sub(e[1]!.mul(16)).add(e[0]!.mul(5)).div(12);
      } else {
        eps = e[3]!.mul(55).sub(e[2]!.mul(59)).add(e[1]!.mul(37)).sub(e[0]!.mul(9)).mul(f32(1 / 24));
      }
      return this.prevSample(x, t, prevT, eps);
    });
  }

  /** Remember a model output; keep the 4 newest (the PLMS window). */
  private pushEt(m: Tensor): void {
    this.ets.push(retain(m));
    while (this.ets.length > this.pndmOrder) this.ets.shift()!.dispose();
  }

  /**
   * x_{t−δ} = φ(x_t, e_θ, t, t−δ) of eq. (9):
   * √(ᾱ_{t−δ}/ᾱ_t) x_t − (ᾱ_{t−δ} − ᾱ_t) e_θ / (ᾱ_t √(1−ᾱ_{t−δ}) + √(ᾱ_t (1−ᾱ_t) ᾱ_{t−δ})).
   */
  private prevSample(x: Tensor, t: number, prevT: number, eps: Tensor): Tensor {
    const a = this.alphaProd(t);
    const aPrev = this.alphaProd(prevT);
    const b = sub32(1, a);
    const bPrev = sub32(1, aPrev);
    eps = this.predictEpsilon(eps, x, a); // v-prediction: ε = √ᾱ v + √(1−ᾱ) x
    const sampleCoeff = sqrt32(div32(aPrev, a));
    const denom = add32(mul32(a, sqrt32(bPrev)), sqrt32(mul32(mul32(a, b), aPrev)));
    return x.mul(sampleCoeff).sub(eps.mul(sub32(aPrev, a)).div(denom));
  }
}

/** A remembered tensor that leaves the history: let the enclosing tidy free it after use. */
function keepLocal(t: Tensor): Tensor {
  const v = t.reshape(t.shape);
  t.dispose();
  return v;
}
