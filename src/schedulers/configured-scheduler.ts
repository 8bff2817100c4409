// ConfiguredScheduler: what every scheduler class here starts from — its diffusers class name,
// the resolved configuration (from_config semantics: the class's keys from config/overrides, its
// defaults for the rest, prediction_type checked against the types the class supports) and the
// ᾱ table. The family bases (AlphaScheduler, SigmaScheduler, MultistepScheduler) extend it.

import { type PredictionType, type SchedulerConfig, requireOneOf, resolveConfig } from "./config.ts";
import { BaseScheduler } from "./scheduler.ts";

/** The constructor arguments of a scheduler class, with what the class itself fixes. */
export interface SchedulerSetup {
  /** diffusers' class name: picks the defaults (CLASS_DEFAULTS) and names the class in errors. */
  className: string;
  config: Record<string, unknown>;
  overrides: Record<string, unknown>;
  /** The prediction types the class supports. */
  predictionTypes: readonly PredictionType[];
}

export abstract class ConfiguredScheduler extends BaseScheduler {
  readonly className: string;
  /** The resolved configuration: diffusers' JSON keys, the class's defaults filled in. */
  readonly config: SchedulerConfig;
  /** ᾱ_t for t = 0 … num_train_timesteps-1, float32 values. */
  readonly alphasCumprod: Float32Array;

  protected constructor(setup: SchedulerSetup, alphasCumprodOf: (cfg: SchedulerConfig) => Float32Array) {
    super();
    this.className = setup.className;
    this.config = resolveConfig(setup.className, setup.config, setup.overrides);
    requireOneOf(setup.className, this.config, "prediction_type", setup.predictionTypes);
    this.alphasCumprod = alphasCumprodOf(this.config);
  }
}
