// DPMSolverMultistepScheduler: multistep DPM-Solver (Lu et al. 2022, arXiv:2206.00927) and
// DPM-Solver++ (Lu et al. 2022, arXiv:2211.01095), exponential integrators of the diffusion ODE
// in λ = log(α/σ) that reuse previous model outputs instead of extra evaluations; "DPM++ 2M" is
// algorithm_type "dpmsolver++" with solver_order 2 (midpoint), optionally on Karras σ's. Also
// DPM-Solver (noise prediction), the SDE variant "sde-dpmsolver++" (Gonzalez et al. 2023), Heun
// second-order corrections and third order; lower-order final steps for stability. Int timesteps.

import { roundHalfEven, add32, sub32, mul32, div32, sqrt32, sq32, log32, exp32 } from "../core/float32.ts";
import { type Tensor, tidy } from "../tensor/index.ts";
import { SchedulerConfigError, rejectTrue, requireOneOf } from "./config.ts";
import { MultistepScheduler } from "./multistep-scheduler.ts";
import { alphaSigma } from "./multistep-output.ts";
import { type Scheduler, type StepOptions, type StepOutput, asFloat32, castTo, drawNoise, retain } from "./scheduler.ts";
import { finalSigma, interpIndex, karrasSigmas, logSigmas, npLinspace, sigmaToT, solverTimesteps, trainSigmas } from "./schedule.ts";

export class DPMSolverMultistepScheduler extends MultistepScheduler implements Scheduler {
  constructor(config: Record<string, unknown> = {}, overrides: Record<string, unknown> = {}) {
    super({ className: "DPMSolverMultistepScheduler", config, overrides, predictionTypes: ["epsilon", "v_prediction", "sample"] });
    const cfg = this.config;
    // diffusers maps these legacy names onto supported ones.
    if (cfg.algorithm_type === ("deis" as string)) cfg.algorithm_type = "dpmsolver++";
    if (["logrho", "bh1", "bh2"].includes(cfg.solver_type as string)) cfg.solver_type = "midpoint";
    requireOneOf(this.className, cfg, "algorithm_type", ["dpmsolver++", "dpmsolver", "sde-dpmsolver++"]);
    requireOneOf(this.className, cfg, "solver_type", ["midpoint", "heun"]);
    requireOneOf(this.className, cfg, "solver_order", [1, 2, 3]);
    requireOneOf(this.className, cfg, "final_sigmas_type", ["zero", "sigma_min"]);
    requireOneOf(this.className, cfg, "variance_type", [null]);
    rejectTrue(this.className, cfg, "use_exponential_sigmas", "use_beta_sigmas");
    if (cfg.use_karras_sigmas && cfg.use_lu_lambdas)
      throw new SchedulerConfigError(`${this.className}: use_karras_sigmas and use_lu_lambdas cannot both be true`);
    if (cfg.algorithm_type === "dpmsolver" && cfg.final_sigmas_type === "zero")
      throw new SchedulerConfigError(`${this.className}: final_sigmas_type="zero" is not supported for algorithm_type="dpmsolver"; use "sigma_min"`);
  }

  /** DPM-Solver++ (and its SDE variant) integrates the data prediction x_0, DPM-Solver the noise prediction ε. */
  protected predictsData(): boolean {
    return this.config.algorithm_type !== "dpmsolver";
  }

  setTimesteps(numInferenceSteps: number): void {
    const cfg = this.config;
    const T = cfg.num_train_timesteps;
    this.checkInferenceSteps(numInferenceSteps);
    // Clip the λ range (cosine schedules): the last usable timestep has λ_t >= lambda_min_clipped.
    const lambdas = Array.from(this.alphasCumprod, (a) => sub32(log32(sqrt32(a)), log32(sqrt32(sub32(1, a))))).reverse();
    const clippedIdx = lambdas.filter((l) => l < cfg.lambda_min_clipped!).length;
    const lastTimestep = T - clippedIdx;
    let timesteps = solverTimesteps(cfg.timestep_spacing, lastTimestep, T, numInferenceSteps, cfg.steps_offset);
    const train = trainSigmas(this.alphasCumprod);
    let sigmas: number[];
    if (cfg.use_karras_sigmas) {
      // Karras ρ = 7 levels between σ_min and σ_max, mapped back to (rounded) training timesteps.
      sigmas = karrasSigmas(train[0]!, train[T - 1]!, numInferenceSteps);
      const logSig = logSigmas(train);
      timesteps = sigmas.map((s) => sigmaToT(s, logSig));
      if (cfg.beta_schedule !== "squaredcos_cap_v2") timesteps = timesteps.map(roundHalfEven);
    } else if (cfg.use_lu_lambdas) {
      // Lu et al.'s uniform-λ schedule: log σ evenly spaced between its extremes.
      const logSig = logSigmas(train);
      const hi = logSig[T - 1]!;
      const lo = logSig[0]!;
      sigmas = npLinspace(0, 1, numInferenceSteps).map((r) => Math.exp(hi + r * (lo - hi)));
      timesteps = sigmas.map((s) => sigmaToT(s, logSig));
      if (cfg.beta_schedule !== "squaredcos_cap_v2") timesteps = timesteps.map(roundHalfEven);
    } else {
      sigmas = timesteps.map((t) => interpIndex(t, train));
    }
    this.setSchedule(timesteps, sigmas, finalSigma(cfg.final_sigmas_type, this.alphasCumprod));
  }

  step(modelOutput: Tensor, t: number, sample: Tensor, opts: StepOptions = {}): StepOutput {
    this.requireTimesteps();
    const cfg = this.config;
    const i = this.currentIndex(t);
    const n = this.timesteps.length;
    // Lower-order steps at the end improve stability for few steps (and a zero final σ).
    const lowerOrderFinal =
      i === n - 1 && (cfg.euler_at_final! || (cfg.lower_order_final! && n < 15) || cfg.final_sigmas_type === "zero");
    const lowerOrderSecond = i === n - 2 && cfg.lower_order_final! && n < 15;
    const out = tidy(() => {
      const x = asFloat32(sample);
      const m = asFloat32(modelOutput);
      this.pushModelOutput(retain(this.convertOutput(m, x, i)));
      const noise = cfg.algorithm_type === "sde-dpmsolver++" ? drawNoise(opts, m) : null;
      let prev: Tensor;
      if (cfg.solver_order === 1 || this.lowerOrderNums < 1 || lowerOrderFinal) prev = this.firstOrder(i, x, noise);
      else if (cfg.solver_order === 2 || this.lowerOrderNums < 2 || lowerOrderSecond) prev = this.secondOrder(i, x, noise);
      else prev = this.thirdOrder(i, x, noise);
      return { prevSample: castTo(prev, modelOutput.dtype) };
    });
    this.advance(i);
    return out;
  }

  /** First order (= DDIM in λ): x_t = σ_t/σ_s x − α_t (e^{−h} − 1) D_0 for DPM-Solver++. */
  private firstOrder(i: number, x: Tensor, noise: Tensor | null): Tensor {
    const t = alphaSigma(this.sigmas[i + 1]!);
    const s = alphaSigma(this.sigmas[i]!);
    const h = sub32(t.lambda, s.lambda);
    const D0 = this.history(0);
    switch (this.config.algorithm_type) {
      case "dpmsolver++":
        return x.mul(div32(t.sigmaT, s.sigmaT)).sub(D0.mul(mul32(t.alpha, sub32(exp32(-h), 1))));
      case "dpmsolver":
        return x.mul(div32(t.alpha, s.alpha)).sub(D0.mul(mul32(t.sigmaT, sub32(exp32(h), 1))));
      default: {
        const e2h = exp32(mul32(-2, h));
        return x
          .mul(mul32(div32(t.sigmaT, s.sigmaT), exp32(-h)))
          .add(D0.mul(mul32(t.alpha, sub32(1, e2h))))
          .add(noise!.mul(mul32(t.sigmaT, sqrt32(sub32(1, e2h)))));
      }
    }
  }

  /** Second order multistep: D_1 = (m_0 − m_1)/r_0 with r_0 = h_0/h (midpoint or Heun weights). */
  private secondOrder(i: number, x: Tensor, noise: Tensor | null): Tensor {
    const t = alphaSigma(this.sigmas[i + 1]!);
    const s0 = alphaSigma(this.sigmas[i]!);
    const s1 = alphaSigma(this.sigmas[i - 1]!);
    const m0 = this.history(0);
    const m1 = this.history(1);
    const h = sub32(t.lambda, s0.lambda);
    const h0 = sub32(s0.lambda, s1.lambda);
    const r0 = div32(h0, h);
    const D0 = m0;
    const D1 = m0.sub(m1).mul(div32(1, r0));
    const heun = this.config.solver_type === "heun";
    switch (this.config.algorithm_type) {
      case "dpmsolver++": {
        const c = mul32(t.alpha, sub32(exp32(-h), 1));
        const base = x.mul(div32(t.sigmaT, s0.sigmaT)).sub(D0.mul(c));
        if (!heun) return base.sub(D1.mul(mul32(0.5, c)));
        return base.add(D1.mul(mul32(t.alpha, add32(div32(sub32(exp32(-h), 1), h), 1))));
      }
      case "dpmsolver": {
        const c = mul32(t.sigmaT, sub32(exp32(h), 1));
        const base = x.mul(div32(t.alpha, s0.alpha)).sub(D0.mul(c));
        if (!heun) return base.sub(D1.mul(mul32(0.5, c)));
        return base.sub(D1.mul(mul32(t.sigmaT, sub32(div32(sub32(exp32(h), 1), h), 1))));
      }
      default: {
        const e2h = exp32(mul32(-2, h));
        const c = mul32(t.alpha, sub32(1, e2h));
        const base = x.mul(mul32(div32(t.sigmaT, s0.sigmaT), exp32(-h))).add(D0.mul(c));
        const withD1 = heun
          ? base.add(D1.mul(mul32(t.alpha, add32(div32(sub32(1, e2h), mul32(-2, h)), 1))))
          : base.add(D1.mul(mul32(0.5, c)));
        return withD1.add(noise!.mul(mul32(t.sigmaT, sqrt32(sub32(1, e2h)))));
      }
    }
  }

  /** Third order multistep with the two divided differences D_1, D_2. */
  private thirdOrder(i: number, x: Tensor, noise: Tensor | null): Tensor {
    const t = alphaSigma(this.sigmas[i + 1]!);
    const s0 = alphaSigma(this.sigmas[i]!);
    const s1 = alphaSigma(this.sigmas[i - 1]!);
    const s2 = alphaSigma(this.sigmas[i - 2]!);
    const [m0, m1, m2] = [this.history(0), this.history(1), this.history(2)];
    const h = sub32(t.lambda, s0.lambda);
    const r0 = div32(sub32(s0.lambda, s1.lambda), h);
    const r1 = div32(sub32(s1.lambda, s2.lambda), h);
    const D0 = m0;
    const D1_0 = m0.sub(m1).mul(div32(1, r0));
    const D1_1 = m1.sub(m2).mul(div32(1, r1));
    const diff = D1_0.sub(D1_1);
    const D1 = D1_0.add(diff.mul(div32(r0, add32(r0, r1))));
    const D2 = diff.mul(div32(1, add32(r0, r1)));
    const hh = sq32(h);
    switch (this.config.algorithm_type) {
      case "dpmsolver++": {
        const em = sub32(exp32(-h), 1);
        return x
          .mul(div32(t.sigmaT, s0.sigmaT))
          .sub(D0.mul(mul32(t.alpha, em)))
          .add(D1.mul(mul32(t.alpha, add32(div32(em, h), 1))))
          .sub(D2.mul(mul32(t.alpha, sub32(div32(add32(em, h), hh), 0.5))));
      }
      case "dpmsolver": {
        const ep = sub32(exp32(h), 1);
        return x
          .mul(div32(t.alpha, s0.alpha))
          .sub(D0.mul(mul32(t.sigmaT, ep)))
          .sub(D1.mul(mul32(t.sigmaT, sub32(div32(ep, h), 1))))
          .sub(D2.mul(mul32(t.sigmaT, sub32(div32(sub32(ep, h), hh), 0.5))));
      }
      default: {
        const e2h = exp32(mul32(-2, h));
        const om = sub32(1, e2h);
        return x
          .mul(mul32(div32(t.sigmaT, s0.sigmaT), exp32(-h)))
          .add(D0.mul(mul32(t.alpha, om)))
          .add(D1.mul(mul32(t.alpha, add32(div32(om, mul32(-2, h)), 1))))
          .add(D2.mul(mul32(t.alpha, sub32(div32(sub32(om, mul32(2, h)), sq32(mul32(2, h))), 0.5))))
          .add(noise!.mul(mul32(t.sigmaT, sqrt32(om))));
      }
    }
  }
}
