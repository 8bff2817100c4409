// LMSDiscreteScheduler: linear multistep sampling in σ (k-diffusion's sample_lms, after Karras et
// al. 2022): x_{i+1} = x_i + Σ_j c_j d_{i−j}, with d = (x − x_0)/σ the ODE derivative and c_j the
// integral over [σ_i, σ_{i+1}] of the Lagrange basis polynomial through the last `order` σ's
// (Adams–Bashforth on a non-uniform grid). diffusers integrates with scipy.integrate.quad; we
// evaluate the same 21-point Gauss–Kronrod rule QUADPACK's QAGS applies first (exact for these
// polynomials of degree ≤ 3; QAGS accepts it at once), adaptively bisecting if its error estimate
// were ever too large. The integrand is evaluated in float32 as diffusers' torch code does.
// SigmaScheduler builds the σ tables (linear interpolation or Karras σ's).

import { f32, sub32, mul32, div32 } from "../core/float32.ts";
import { type Tensor, tidy } from "../tensor/index.ts";
import { rejectTrue } from "./config.ts";
import { type Scheduler, type StepOptions, type StepOutput, asFloat32, castTo, retain } from "./scheduler.ts";
import { SigmaScheduler } from "./sigma-scheduler.ts";

// 21-point Kronrod abscissae (descending; the last is the centre) and weights, and the weights of
// the embedded 10-point Gauss rule (at the odd-indexed abscissae), from QUADPACK's dqk21.
const XGK = [
  0.995657163025808080735527280689003, 0.973906528517171720077964012084452, 0.930157491355708226001207180059508,
  0.865063366688984510732096688423493, 0.780817726586416897063717578345042, 0.679409568299024406234327365114874,
  0.562757134668604683339000099272694, 0.433395394129247190799265943165784, 0.294392862701460198131126603103866,
  0.14887433898163121088482600112972, 0,
];
const WGK = [
  0.011694638867371874278064396062192, 0.03255816230796472747881897245939, 0.05475589657435199603138130024458,
  0.07503967481091995276704314091619, 0.093125454583697605535065465083366, 0.109387158802297641899210590325805,
  0.123491976262065851077208292235995, 0.134709217311473325928054001771707, 0.142775938577060080797094273138717,
  0.147739104901338491374841515972068, 0.149445554002916905664936468389821,
];
const WG = [
  0.066671344308688137593568809893332, 0.149451349150580593145776339657697, 0.219086362515982043995534934228163,
  0.269266719309996355091226921569469, 0.295524224714752870173892994651338,
];
const EPMACH = 2.220446049250313e-16;
const UFLOW = 2.2250738585072014e-308;

/**
 * QUADPACK dqk21 on [a, b]: the Kronrod result and QUADPACK's error estimate, summing in the same
 * order (Gauss nodes first, then the Kronrod-only nodes) so results match scipy's bit for bit.
 */
function qk21(f: (x: number) => number, a: number, b: number): { result: number; abserr: number; resabs: number } {
  const centr = 0.5 * (a + b);
  const hlgth = 0.5 * (b - a);
  const dhlgth = Math.abs(hlgth);
  const fc = f(centr);
  let resg = 0;
  let resk = WGK[10]! * fc;
  let resabs = Math.abs(resk);
  const fv1 = new Array<number>(10);
  const fv2 = new Array<number>(10);
  /** f at centr ∓ hlgth·XGK[k], remembered for resasc, added to the Kronrod sums; returns f₁ + f₂. */
  const node = (k: number): number => {
    const absc = hlgth * XGK[k]!;
    const v1 = (fv1[k] = f(centr - absc));
    const v2 = (fv2[k] = f(centr + absc));
    const fsum = v1 + v2;
    resk += WGK[k]! * fsum;
    resabs += WGK[k]! * (Math.abs(v1) + Math.abs(v2));
    return fsum;
  };
  for (let j = 1; j <= 5; j++) resg += WG[j - 1]! * node(2 * j - 1); // Gauss nodes: Fortran 2j, 0-based
  for (let j = 1; j <= 5; j++) node(2 * j - 2); // Kronrod-only nodes: Fortran 2j−1, 0-based
  const reskh = resk * 0.5;
  let resasc = WGK[10]! * Math.abs(fc - reskh);
  for (let j = 0; j < 10; j++) resasc += WGK[j]! * (Math.abs(fv1[j]! - reskh) + Math.abs(fv2[j]! - reskh));
  const result = resk * hlgth;
  resabs *= dhlgth;
  resasc *= dhlgth;
  let abserr = Math.abs((resk - resg) * hlgth);
  if (resasc !== 0 && abserr !== 0) abserr = resasc * Math.min(1, (200 * abserr / resasc) ** 1.5);
  if (resabs > UFLOW / (50 * EPMACH)) abserr = Math.max(EPMACH * 50 * resabs, abserr);
  return { result, abserr, resabs };
}

/**
 * ∫_a^b f with scipy.integrate.quad's tolerances (epsabs 1.49e-8, epsrel as given): one 21-point
 * Gauss–Kronrod pass like QAGS, then bisection of the worst interval until the summed error
 * estimate meets the tolerance (no extrapolation: our integrands are smooth polynomials).
 */
export function integrate(f: (x: number) => number, a: number, b: number, epsrel = 1e-4, epsabs = 1.49e-8, limit = 50): number {
  const first = qk21(f, a, b);
  const bound = (r: number) => Math.max(epsabs, epsrel * Math.abs(r));
  if (first.abserr === 0 || (first.abserr <= bound(first.result) && first.abserr !== first.resabs) || limit === 1) return first.result;
  let parts = [{ a, b, ...first }];
  for (let k = 1; k < limit; k++) {
    const total = parts.reduce((s, p) => s + p.result, 0);
    const err = parts.reduce((s, p) => s + p.abserr, 0);
    if (err <= bound(total)) return total;
    parts.sort((p, q) => q.abserr - p.abserr);
    const worst = parts.shift()!;
    const mid = 0.5 * (worst.a + worst.b);
    parts = [...parts, { a: worst.a, b: mid, ...qk21(f, worst.a, mid) }, { a: mid, b: worst.b, ...qk21(f, mid, worst.b) }];
  }
  return parts.reduce((s, p) => s + p.result, 0);
}

export class LMSDiscreteScheduler extends SigmaScheduler implements Scheduler {
  /** Past ODE derivatives d (newest last), at most `order`. */
  private derivatives: Tensor[] = [];

  constructor(config: Record<string, unknown> = {}, overrides: Record<string, unknown> = {}) {
    super({ className: "LMSDiscreteScheduler", config, overrides, predictionTypes: ["epsilon", "v_prediction", "sample"] });
    rejectTrue(this.className, this.config, "use_exponential_sigmas", "use_beta_sigmas");
  }

  protected override clearHistory(): void {
    for (const d of this.derivatives) d.dispose();
    this.derivatives = [];
  }

  /**
   * c_j = ∫_{σ_i}^{σ_{i+1}} Π_{k≠j} (τ − σ_{i−k})/(σ_{i−j} − σ_{i−k}) dτ, the integrand in float32
   * (diffusers multiplies 0-d float32 tensors; τ is rounded to float32 first).
   */
  lmsCoefficient(order: number, i: number, j: number): number {
    const s = this.sigmas;
    const basis = (tau: number): number => {
      let prod = 1;
      const t32 = f32(tau);
      for (let k = 0; k < order; k++) {
        if (k === j) continue;
        prod = mul32(prod, div32(sub32(t32, s[i - k]!), sub32(s[i - j]!, s[i - k]!)));
      }
      return prod;
    };
    return integrate(basis, s[i]!, s[i + 1]!, 1e-4);
  }

  step(modelOutput: Tensor, t: number, sample: Tensor, opts: StepOptions & { order?: number } = {}): StepOutput {
    this.requireTimesteps();
    const i = this.currentIndex(t);
    const sigma = this.sigmas[i]!;
    const maxOrder = opts.order ?? 4;
    const out = tidy(() => {
      const x = asFloat32(sample);
      const m = asFloat32(modelOutput);
      // 1. x_0 from the model's parameterisation; 2. the ODE derivative d = (x − x_0)/σ.
      const x0 = this.predictOriginal(m, x, sigma);
      this.derivatives.push(retain(x.sub(x0).div(sigma)));
      while (this.derivatives.length > maxOrder) this.derivatives.shift()!.dispose();
      // 3. coefficients of the available order; 4. x_{i+1} = x_i + Σ_j c_j d_{i−j}.
      const order = Math.min(i + 1, maxOrder);
      const coeffs = Array.from({ length: order }, (_, j) => this.lmsCoefficient(order, i, j));
      const ds = this.derivatives;
      let sum: Tensor | null = null;
      for (let j = 0; j < Math.min(order, ds.length); j++) {
        const term = ds[ds.length - 1 - j]!.mul(coeffs[j]!);
        sum = sum ? sum.add(term) : term;
      }
      const prev = x.add(sum!);
      return { prevSample: castTo(prev, modelOutput.dtype), predOriginalSample: x0 };
    });
    this.stepIndex = i + 1;
    return out;
  }
}
