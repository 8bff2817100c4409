// Scheduler configuration with diffusers' JSON keys (scheduler_config.json), each class's own
// defaults (diffusers v0.31 `__init__` signatures) and `from_config` resolution, with validation
// that names the offending field. A leaf of the scheduler layer: it imports no other file here.

export type BetaSchedule = "linear" | "scaled_linear" | "squaredcos_cap_v2";
export type PredictionType = "epsilon" | "v_prediction" | "sample";
export type TimestepSpacing = "linspace" | "leading" | "trailing";

/** The union of the keys our scheduler classes read; a real config may carry others (ignored). */
export interface SchedulerConfig {
  _class_name?: string;
  _diffusers_version?: string;
  num_train_timesteps: number;
  beta_start: number;
  beta_end: number;
  beta_schedule: BetaSchedule;
  trained_betas: number[] | null;
  prediction_type: PredictionType;
  timestep_spacing: TimestepSpacing;
  steps_offset: number;
  // DDIM / PNDM / LCM
  clip_sample?: boolean;
  clip_sample_range?: number;
  set_alpha_to_one?: boolean;
  thresholding?: boolean;
  dynamic_thresholding_ratio?: number;
  sample_max_value?: number;
  rescale_betas_zero_snr?: boolean;
  skip_prk_steps?: boolean;
  // sigma schedules (Euler, LMS, DPM-Solver, UniPC)
  use_karras_sigmas?: boolean;
  use_exponential_sigmas?: boolean;
  use_beta_sigmas?: boolean;
  use_lu_lambdas?: boolean;
  sigma_min?: number | null;
  sigma_max?: number | null;
  interpolation_type?: "linear" | "log_linear";
  timestep_type?: "discrete" | "continuous";
  final_sigmas_type?: "zero" | "sigma_min";
  // multistep solvers
  solver_order?: number;
  algorithm_type?: "dpmsolver++" | "dpmsolver" | "sde-dpmsolver++";
  solver_type?: "midpoint" | "heun" | "bh1" | "bh2";
  lower_order_final?: boolean;
  euler_at_final?: boolean;
  lambda_min_clipped?: number;
  variance_type?: string | null;
  predict_x0?: boolean;
  disable_corrector?: number[];
  solver_p?: unknown;
  // LCM
  original_inference_steps?: number;
  timestep_scaling?: number;
  [key: string]: unknown;
}

export class SchedulerConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SchedulerConfigError";
  }
}

/** Keys every class shares, with diffusers' defaults (DDPM-style linear 1e-4 … 0.02). */
const COMMON = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear",
  trained_betas: null,
  prediction_type: "epsilon",
  steps_offset: 0,
} as const;

const THRESHOLDING = { thresholding: false, dynamic_thresholding_ratio: 0.995, sample_max_value: 1.0 } as const;

/** Each class's `__init__` defaults in diffusers v0.31 (only these keys are read from a config). */
export const CLASS_DEFAULTS: Record<string, Record<string, unknown>> = {
  DDIMScheduler: {
    ...COMMON,
    clip_sample: true,
    set_alpha_to_one: true,
    ...THRESHOLDING,
    clip_sample_range: 1.0,
    timestep_spacing: "leading",
    rescale_betas_zero_snr: false,
  },
  PNDMScheduler: { ...COMMON, skip_prk_steps: false, set_alpha_to_one: false, timestep_spacing: "leading" },
  LMSDiscreteScheduler: {
    ...COMMON,
    use_karras_sigmas: false,
    use_exponential_sigmas: false,
    use_beta_sigmas: false,
    timestep_spacing: "linspace",
  },
  EulerDiscreteScheduler: {
    ...COMMON,
    interpolation_type: "linear",
    use_karras_sigmas: false,
    use_exponential_sigmas: false,
    use_beta_sigmas: false,
    sigma_min: null,
    sigma_max: null,
    timestep_spacing: "linspace",
    timestep_type: "discrete",
    rescale_betas_zero_snr: false,
    final_sigmas_type: "zero",
  },
  EulerAncestralDiscreteScheduler: { ...COMMON, timestep_spacing: "linspace", rescale_betas_zero_snr: false },
  DPMSolverMultistepScheduler: {
    ...COMMON,
    solver_order: 2,
    ...THRESHOLDING,
    algorithm_type: "dpmsolver++",
    solver_type: "midpoint",
    lower_order_final: true,
    euler_at_final: false,
    use_karras_sigmas: false,
    use_exponential_sigmas: false,
    use_beta_sigmas: false,
    use_lu_lambdas: false,
    final_sigmas_type: "zero",
    lambda_min_clipped: -Infinity,
    variance_type: null,
    timestep_spacing: "linspace",
    rescale_betas_zero_snr: false,
  },
  UniPCMultistepScheduler: {
    ...COMMON,
    solver_order: 2,
    ...THRESHOLDING,
    predict_x0: true,
    solver_type: "bh2",
    lower_order_final: true,
    disable_corrector: [],
    solver_p: null,
    use_karras_sigmas: false,
    use_exponential_sigmas: false,
    use_beta_sigmas: false,
    timestep_spacing: "linspace",
    final_sigmas_type: "zero",
    rescale_betas_zero_snr: false,
  },
  LCMScheduler: {
    ...COMMON,
    beta_start: 0.00085,
    beta_end: 0.012,
    beta_schedule: "scaled_linear",
    original_inference_steps: 50,
    clip_sample: false,
    clip_sample_range: 1.0,
    set_alpha_to_one: true,
    ...THRESHOLDING,
    timestep_spacing: "leading",
    timestep_scaling: 10.0,
    rescale_betas_zero_snr: false,
  },
};

/**
 * diffusers' `Cls.from_config(config, **overrides)`: the keys of `config` (then `overrides`) that
 * the class knows, the class's defaults for the rest; then type and value checks.
 */
export function resolveConfig(
  className: string,
  config: Record<string, unknown> = {},
  overrides: Record<string, unknown> = {},
): SchedulerConfig {
  const defaults = CLASS_DEFAULTS[className];
  if (!defaults) throw new SchedulerConfigError(`unknown scheduler class "${className}"; known: ${Object.keys(CLASS_DEFAULTS).join(", ")}`);
  const out: Record<string, unknown> = { _class_name: className };
  for (const [key, value] of Object.entries(defaults)) {
    const given = key in overrides ? overrides[key] : key in config ? config[key] : undefined;
    out[key] = given === undefined ? cloneDefault(value) : given;
  }
  validateCommon(className, out);
  return out as SchedulerConfig;
}

function cloneDefault(v: unknown): unknown {
  return Array.isArray(v) ? v.slice() : v;
}

/** Throw naming the class, field and value unless `value` is one of `allowed`. */
export function requireOneOf(className: string, cfg: Record<string, unknown>, key: string, allowed: readonly unknown[]): void {
  const v = cfg[key];
  if (!allowed.includes(v))
    throw new SchedulerConfigError(
      `${className}: ${key}=${JSON.stringify(v)} is not supported; expected one of ${allowed.map((a) => JSON.stringify(a)).join(", ")}`,
    );
}

/** Throw naming the field when a feature flag we do not implement is switched on. */
export function rejectTrue(className: string, cfg: Record<string, unknown>, ...keys: string[]): void {
  for (const key of keys)
    if (cfg[key] === true) throw new SchedulerConfigError(`${className}: ${key}=true is not supported by bun-diffusion`);
}

function validateCommon(className: string, cfg: Record<string, unknown>): void {
  const n = cfg.num_train_timesteps;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 2)
    throw new SchedulerConfigError(`${className}: num_train_timesteps=${JSON.stringify(n)} must be an integer >= 2`);
  for (const key of ["beta_start", "beta_end"])
    if (typeof cfg[key] !== "number" || !Number.isFinite(cfg[key]))
      throw new SchedulerConfigError(`${className}: ${key}=${JSON.stringify(cfg[key])} must be a finite number`);
  if (!Number.isInteger(cfg.steps_offset)) throw new SchedulerConfigError(`${className}: steps_offset=${JSON.stringify(cfg.steps_offset)} must be an integer`);
  if (cfg.trained_betas !== null) {
    const tb = cfg.trained_betas;
    if (!Array.isArray(tb) || tb.length !== n || !tb.every((b) => typeof b === "number"))
      throw new SchedulerConfigError(`${className}: trained_betas must be null or ${n} numbers`);
  } else {
    requireOneOf(className, cfg, "beta_schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"]);
  }
  requireOneOf(className, cfg, "timestep_spacing", ["linspace", "leading", "trailing"]);
  if ("thresholding" in cfg) rejectTrue(className, cfg, "thresholding");
}
