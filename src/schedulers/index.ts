// Scheduler construction: schedulerFromConfig(config) dispatches on diffusers' `_class_name`
// (as scheduler_config.json names it), schedulerByName(name, baseConfig) builds a sampler by its
// short name the way users swap schedulers in diffusers (`Cls.from_config(pipe.scheduler.config)`).

import { SchedulerConfigError } from "./config.ts";
import { DDIMScheduler } from "./ddim.ts";
import { DPMSolverMultistepScheduler } from "./dpm-solver-multistep.ts";
import { EulerAncestralDiscreteScheduler } from "./euler-ancestral.ts";
import { EulerDiscreteScheduler } from "./euler.ts";
import { LCMScheduler } from "./lcm.ts";
import { LMSDiscreteScheduler } from "./lms.ts";
import { PNDMScheduler } from "./pndm.ts";
import type { Scheduler } from "./scheduler.ts";
import { UniPCMultistepScheduler } from "./unipc.ts";

export * from "./scheduler.ts";
export * from "./config.ts";
export * from "./betas.ts";
export {
  DDIMScheduler,
  DPMSolverMultistepScheduler,
  EulerAncestralDiscreteScheduler,
  EulerDiscreteScheduler,
  LCMScheduler,
  LMSDiscreteScheduler,
  PNDMScheduler,
  UniPCMultistepScheduler,
};

type Ctor = new (config?: Record<string, unknown>, overrides?: Record<string, unknown>) => Scheduler;

const CLASSES: Record<string, Ctor> = {
  DDIMScheduler,
  PNDMScheduler,
  LMSDiscreteScheduler,
  EulerDiscreteScheduler,
  EulerAncestralDiscreteScheduler,
  DPMSolverMultistepScheduler,
  UniPCMultistepScheduler,
  LCMScheduler,
};

/** Short names → class and the overrides that define the sampler. */
const NAMES: Record<string, { cls: string; overrides?: Record<string, unknown> }> = {
  ddim: { cls: "DDIMScheduler" },
  pndm: { cls: "PNDMScheduler" },
  lms: { cls: "LMSDiscreteScheduler" },
  euler: { cls: "EulerDiscreteScheduler" },
  euler_a: { cls: "EulerAncestralDiscreteScheduler" },
  dpmpp_2m: { cls: "DPMSolverMultistepScheduler", overrides: { algorithm_type: "dpmsolver++", solver_order: 2 } },
  dpmpp_2m_karras: {
    cls: "DPMSolverMultistepScheduler",
    overrides: { algorithm_type: "dpmsolver++", solver_order: 2, use_karras_sigmas: true },
  },
  unipc: { cls: "UniPCMultistepScheduler" },
  lcm: { cls: "LCMScheduler" },
};

/** The scheduler short names schedulerByName accepts. */
export const SCHEDULER_NAMES: readonly string[] = Object.keys(NAMES);

/** The diffusers class names schedulerFromConfig accepts. */
export const SCHEDULER_CLASSES: readonly string[] = Object.keys(CLASSES);

/**
 * Build the scheduler a diffusers scheduler_config.json describes (`_class_name` picks the class;
 * unknown keys are ignored, missing ones take the class's defaults). `overrides` win over config.
 */
export function schedulerFromConfig(config: Record<string, unknown>, overrides: Record<string, unknown> = {}): Scheduler {
  const name = (overrides._class_name ?? config._class_name) as unknown;
  if (typeof name !== "string")
    throw new SchedulerConfigError(`scheduler config has no _class_name; expected one of ${SCHEDULER_CLASSES.join(", ")}`);
  const Cls = CLASSES[name];
  if (!Cls) throw new SchedulerConfigError(`unsupported scheduler class "${name}"; supported: ${SCHEDULER_CLASSES.join(", ")}`);
  return new Cls(config, overrides);
}

/**
 * A scheduler by short name ("ddim", "pndm", "lms", "euler", "euler_a", "dpmpp_2m",
 * "dpmpp_2m_karras", "unipc", "lcm") built from a model's scheduler config like diffusers'
 * `Cls.from_config(pipe.scheduler.config)`: the keys the class knows, its defaults for the rest.
 */
export function schedulerByName(name: string, baseConfig: Record<string, unknown> = {}, overrides: Record<string, unknown> = {}): Scheduler {
  const entry = NAMES[name];
  if (!entry) throw new SchedulerConfigError(`unknown scheduler "${name}"; valid names: ${SCHEDULER_NAMES.join(", ")}`);
  return new CLASSES[entry.cls]!(baseConfig, { ...entry.overrides, ...overrides });
}
