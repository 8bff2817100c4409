// UniPCMultistepScheduler: the unified predictor–corrector framework of Zhao et al. 2023
// (arXiv:2302.04867). Each step first corrects the sample just reached with the new model output
// (UniC, which costs no extra model call), then predicts the next one (UniP); both are
// exponential integrators in λ = log(α/σ) whose coefficients ρ solve a small Vandermonde-like
// system in the step ratios r_k, with B(h) = h ("bh1") or e^h − 1 ("bh2"). Data prediction
// (predict_x0) as diffusers' default; lower-order warm-up and final steps. Int timesteps.

import { roundHalfEven, f32, sub32, mul32, div32, sq32, expm1_32 } from "../core/float32.ts";
import { type Tensor, tidy } from "../tensor/index.ts";
import { SchedulerConfigError, requireOneOf } from "./config.ts";
import { MultistepScheduler } from "./multistep-scheduler.ts";
import { alphaSigma } from "./multistep-output.ts";
import { type Scheduler, type StepOptions, type StepOutput, asFloat32, castTo, retain } from "./scheduler.ts";
import { finalSigma, interpIndex, karrasSigmas, logSigmas, sigmaToT, solverTimesteps, trainSigmas } from "./schedule.ts";

/**
 * Solve A x = b in float32 as torch.linalg.solve does on the CPU for a row-major A: LAPACK's LU
 * (partial pivoting, first maximum on ties, multipliers scaled by the pivot's reciprocal) of
 * Aᵀ — the row-major buffer read column-major — then the transposed solves Uᵀ y = b, Lᵀ z = y
 * and the row interchanges in reverse, as sgetrs with trans = 'T' (reference BLAS order).
 */
export function solveF32(A: number[][], rhs: number[]): number[] {
  const n = rhs.length;
  const M = A.map((_, r) => A.map((row) => f32(row[r]!))); // Aᵀ
  const ipiv: number[] = [];
  for (let k = 0; k < n; k++) {
    let p = k;
    for (let r = k + 1; r < n; r++) if (Math.abs(M[r]![k]!) > Math.abs(M[p]![k]!)) p = r;
    if (M[p]![k] === 0) throw new Error("UniPC: singular coefficient matrix");
    ipiv.push(p);
    [M[k], M[p]] = [M[p]!, M[k]!];
    const inv = div32(1, M[k]![k]!);
    for (let r = k + 1; r < n; r++) {
      const l = (M[r]![k] = mul32(M[r]![k]!, inv));
      for (let c = k + 1; c < n; c++) M[r]![c] = sub32(M[r]![c]!, mul32(l, M[k]![c]!));
    }
  }
  const x = rhs.map(f32);
  for (let i = 0; i < n; i++) {
    let t = x[i]!;
    for (let k = 0; k < i; k++) t = sub32(t, mul32(M[k]![i]!, x[k]!));
    x[i] = div32(t, M[i]![i]!);
  }
  for (let i = n - 1; i >= 0; i--) {
    let t = x[i]!;
    for (let k = i + 1; k < n; k++) t = sub32(t, mul32(M[k]![i]!, x[k]!));
    x[i] = t;
  }
  for (let k = n - 1; k >= 0; k--) {
    const p = ipiv[k]!;
    [x[k], x[p]] = [x[p]!, x[k]!];
  }
  return x;
}

/** torch.pow(x, k) for a small integer k (0 → 1, 1 → x, 2 → x·x, 3 → x·x·x). */
function powInt32(x: number, k: number): number {
  if (k === 0) return 1;
  if (k === 1) return x;
  if (k === 2) return sq32(x);
  if (k === 3) return mul32(sq32(x), x);
  return f32(x ** k);
}

export class UniPCMultistepScheduler extends MultistepScheduler implements Scheduler {
  /** The sample the last predictor started from (what the next corrector corrects from). */
  private lastSample: Tensor | null = null;
  private thisOrder = 1;

  constructor(config: Record<string, unknown> = {}, overrides: Record<string, unknown> = {}) {
    super({ className: "UniPCMultistepScheduler", config, overrides, predictionTypes: ["epsilon", "v_prediction", "sample"] });
    const cfg = this.config;
    if (["midpoint", "heun", "logrho"].includes(cfg.solver_type as string)) cfg.solver_type = "bh2";
    requireOneOf(this.className, cfg, "solver_type", ["bh1", "bh2"]);
    requireOneOf(this.className, cfg, "final_sigmas_type", ["zero", "sigma_min"]);
    if (!Number.isInteger(cfg.solver_order) || cfg.solver_order! < 1)
      throw new SchedulerConfigError(`${this.className}: solver_order=${JSON.stringify(cfg.solver_order)} must be a positive integer`);
    requireOneOf(this.className, cfg, "solver_p", [null, undefined]);
    requireOneOf(this.className, cfg, "use_exponential_sigmas", [false]);
    requireOneOf(this.className, cfg, "use_beta_sigmas", [false]);
    if (!Array.isArray(cfg.disable_corrector))
      throw new SchedulerConfigError(`${this.className}: disable_corrector=${JSON.stringify(cfg.disable_corrector)} must be a list of step indices`);
  }

  /** predict_x0 (diffusers' default): UniPC integrates the data prediction x_0, else ε. */
  protected predictsData(): boolean {
    return Boolean(this.config.predict_x0);
  }

  setTimesteps(numInferenceSteps: number): void {
    const cfg = this.config;
    const T = cfg.num_train_timesteps;
    this.checkInferenceSteps(numInferenceSteps);
    let timesteps = solverTimesteps(cfg.timestep_spacing, T, T, numInferenceSteps, cfg.steps_offset);
    const train = trainSigmas(this.alphasCumprod);
    let sigmas: number[];
    let sigmaLast: number;
    if (cfg.use_karras_sigmas) {
      sigmas = karrasSigmas(train[0]!, train[T - 1]!, numInferenceSteps);
      const logSig = logSigmas(train);
      timesteps = sigmas.map((s) => roundHalfEven(sigmaToT(s, logSig)));
      sigmaLast = cfg.final_sigmas_type === "sigma_min" ? sigmas[sigmas.length - 1]! : 0;
    } else {
      sigmas = timesteps.map((t) => interpIndex(t, train));
      sigmaLast = finalSigma(cfg.final_sigmas_type, this.alphasCumprod);
    }
    this.setSchedule(timesteps, sigmas, sigmaLast);
  }

  protected override clearHistory(): void {
    super.clearHistory();
    this.lastSample?.dispose();
    this.lastSample = null;
    this.thisOrder = 1;
  }

  step(modelOutput: Tensor, t: number, sample: Tensor, _opts: StepOptions = {}): StepOutput {
    this.requireTimesteps();
    const cfg = this.config;
    const i = this.currentIndex(t);
    const useCorrector = i > 0 && !cfg.disable_corrector!.includes(i - 1) && this.lastSample !== null;
    const out = tidy(() => {
      let x = asFloat32(sample);
      const m = asFloat32(modelOutput);
      const converted = this.convertOutput(m, x, i);
      // UniC: correct x_t with the model output just computed at it.
      if (useCorrector) x = this.uniC(i, converted, this.lastSample!, this.thisOrder);
      this.pushModelOutput(retain(converted));
      const order = cfg.lower_order_final ? Math.min(cfg.solver_order!, this.timesteps.length - i) : cfg.solver_order!;
      this.thisOrder = Math.min(order, this.lowerOrderNums + 1);
      this.lastSample?.dispose();
      this.lastSample = retain(x);
      // UniP: predict x_{t−1}.
      return { prevSample: castTo(this.uniP(i, x, this.thisOrder), modelOutput.dtype) };
    });
    this.advance(i);
    return out;
  }

  /**
   * The coefficient system shared by UniP and UniC: rows r_k^{q−1}, and b_q = q!·φ_{q+1}(hh)·hh/B(h)
   * built from h·φ_k recursions (hh = −h for data prediction).
   */
  private coefficients(h: number, rks: number[], order: number): { R: number[][]; b: number[]; hPhi1: number; Bh: number } {
    const hh = this.config.predict_x0 ? -h : h;
    const hPhi1 = expm1_32(hh);
    let hPhiK = sub32(div32(hPhi1, hh), 1);
    let factorial = 1;
    const Bh = this.config.solver_type === "bh1" ? hh : expm1_32(hh);
    const R: number[][] = [];
    const b: number[] = [];
    for (let q = 1; q <= order; q++) {
      R.push(rks.map((r) => powInt32(r, q - 1)));
      b.push(div32(mul32(hPhiK, factorial), Bh));
      factorial *= q + 1;
      hPhiK = sub32(div32(hPhiK, hh), f32(1 / factorial));
    }
    return { R, b, hPhi1, Bh };
  }

  /** λ of the step's endpoints and the ratios r_k = (λ_{s_k} − λ_{s_0})/h with D1_k = (m_k − m_0)/r_k. */
  private differences(sIdx: (k: number) => number, lambdaS0: number, h: number, order: number): { rks: number[]; D1s: Tensor[] } {
    const m0 = this.history(0);
    const rks: number[] = [];
    const D1s: Tensor[] = [];
    for (let k = 1; k < order; k++) {
      const mk = this.history(k);
      const rk = div32(sub32(alphaSigma(this.sigmas[sIdx(k)]!).lambda, lambdaS0), h);
      rks.push(rk);
      D1s.push(mk.sub(m0).div(rk));
    }
    rks.push(1);
    return { rks, D1s };
  }

  /** Σ_k ρ_k D1_k (diffusers' einsum "k,bkc...->bc..."). */
  private static weighted(rhos: number[], D1s: Tensor[]): Tensor | null {
    let acc: Tensor | null = null;
    D1s.forEach((d, k) => {
      const term = d.mul(rhos[k]!);
      acc = acc ? acc.add(term) : term;
    });
    return acc;
  }

  /** UniP-p (B(h) form): x_t = σ_t/σ_s0 x − α_t hφ_1 m_0 − α_t B(h) Σ ρ_k D1_k (data prediction). */
  private uniP(i: number, x: Tensor, order: number): Tensor {
    const t = alphaSigma(this.sigmas[i + 1]!);
    const s0 = alphaSigma(this.sigmas[i]!);
    const h = sub32(t.lambda, s0.lambda);
    const { rks, D1s } = this.differences((k) => i - k, s0.lambda, h, order);
    const { R, b, hPhi1, Bh } = this.coefficients(h, rks, order);
    const m0 = this.history(0);
    let rhos: number[] = [];
    if (D1s.length > 0) rhos = order === 2 ? [0.5] : solveF32(R.slice(0, -1).map((row) => row.slice(0, -1)), b.slice(0, -1));
    const predX0 = this.config.predict_x0;
    const base = predX0
      ? x.mul(div32(t.sigmaT, s0.sigmaT)).sub(m0.mul(mul32(t.alpha, hPhi1)))
      : x.mul(div32(t.alpha, s0.alpha)).sub(m0.mul(mul32(t.sigmaT, hPhi1)));
    const res = UniPCMultistepScheduler.weighted(rhos, D1s);
    if (!res) return base;
    return base.sub(res.mul(mul32(predX0 ? t.alpha : t.sigmaT, Bh)));
  }

  /** UniC-p: the corrected x_t from the step x_{s0} → x_t just taken, using the new output m_t. */
  private uniC(i: number, mT: Tensor, last: Tensor, order: number): Tensor {
    const t = alphaSigma(this.sigmas[i]!);
    const s0 = alphaSigma(this.sigmas[i - 1]!);
    const h = sub32(t.lambda, s0.lambda);
    const { rks, D1s } = this.differences((k) => i - (k + 1), s0.lambda, h, order);
    const { R, b, hPhi1, Bh } = this.coefficients(h, rks, order);
    const m0 = this.history(0);
    const rhos = order === 1 ? [0.5] : solveF32(R, b);
    const predX0 = this.config.predict_x0;
    const base = predX0
      ? last.mul(div32(t.sigmaT, s0.sigmaT)).sub(m0.mul(mul32(t.alpha, hPhi1)))
      : last.mul(div32(t.alpha, s0.alpha)).sub(m0.mul(mul32(t.sigmaT, hPhi1)));
    const D1t = mT.sub(m0).mul(rhos[rhos.length - 1]!);
    const corr = UniPCMultistepScheduler.weighted(rhos.slice(0, -1), D1s);
    const total = corr ? corr.add(D1t) : D1t;
    return base.sub(total.mul(mul32(predX0 ? t.alpha : t.sigmaT, Bh)));
  }
}
