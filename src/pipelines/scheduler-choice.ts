// Which scheduler a generation uses: the model's own (scheduler_config.json), one chosen by short
// name and built from the model's config as diffusers users swap schedulers
// (`Cls.from_config(pipe.scheduler.config)`), or a Scheduler instance the caller owns. Also the
// A1111-style sampler name written into image parameters.
//
// A scheduler holds one run's state (timesteps, step index, multistep history), so a Scheduler
// instance serves one generate() call at a time, across all pipelines: a second call that passes an
// instance in use is refused with a GenerateOptionsError before anything is allocated. (Cloning
// would not work for user classes, which are duck-typed.) After the call the instance is reset() and
// can be passed again.

import { type Scheduler, SCHEDULER_NAMES, schedulerByName, schedulerFromConfig } from "../schedulers/index.ts";
import { GenerateOptionsError } from "./errors.ts";

/** Scheduler instances a generate() call is using now. */
const inUse = new WeakSet<object>();

/** A scheduler short name ("ddim", "euler", ...) or a Scheduler instance. */
export type SchedulerOption = string | Scheduler;

/** Whether `s` looks like a Scheduler instance (duck-typed: user classes are welcome). */
export function isSchedulerInstance(s: unknown): s is Scheduler {
  return (
    typeof s === "object" &&
    s !== null &&
    typeof (s as Scheduler).setTimesteps === "function" &&
    typeof (s as Scheduler).step === "function" &&
    typeof (s as Scheduler).scaleModelInput === "function"
  );
}

/** Why a scheduler option is invalid, or null when it is fine. */
export function schedulerOptionProblem(s: unknown): string | null {
  if (s === undefined || isSchedulerInstance(s)) return null;
  if (typeof s === "string") return SCHEDULER_NAMES.includes(s) ? null : `unknown scheduler "${s}"; valid names: ${SCHEDULER_NAMES.join(", ")}`;
  return `expected a scheduler name (${SCHEDULER_NAMES.join(", ")}) or a Scheduler instance, got ${typeof s}`;
}

/**
 * The scheduler for one generation and whether the pipeline owns it (and must dispose it). `name`
 * (or else `defaultName`) builds a fresh one from `modelConfig`; no name uses the model's class.
 */
export function pickScheduler(
  option: SchedulerOption | undefined,
  modelConfig: Record<string, unknown>,
  defaultName?: string,
): { scheduler: Scheduler; owned: boolean } {
  if (isSchedulerInstance(option)) return { scheduler: option, owned: false };
  const name = option ?? defaultName;
  if (name !== undefined) return { scheduler: schedulerByName(name, modelConfig), owned: true };
  return { scheduler: schedulerFromConfig(modelConfig), owned: true };
}

/**
 * pickScheduler for one generate() call: a caller's instance is marked in use until `release()`
 * (which resets it); an owned one is disposed by `release()`. Throws when the instance is in use.
 */
export function acquireScheduler(
  option: SchedulerOption | undefined,
  modelConfig: Record<string, unknown>,
  defaultName?: string,
): { scheduler: Scheduler; owned: boolean; release: () => void } {
  const { scheduler, owned } = pickScheduler(option, modelConfig, defaultName);
  if (owned) return { scheduler, owned, release: () => scheduler.dispose() };
  if (inUse.has(scheduler))
    throw new GenerateOptionsError(
      "scheduler",
      `this ${scheduler.className} instance is in use by another generate() call that has not finished; a scheduler holds one run's ` +
        "state (timesteps, step index, history), so concurrent calls need their own: pass a scheduler name, or pipe.createScheduler(name) per call",
    );
  inUse.add(scheduler);
  return {
    scheduler,
    owned,
    release: () => {
      inUse.delete(scheduler);
      scheduler.reset();
    },
  };
}

const SAMPLER_NAMES: Record<string, string> = {
  DDIMScheduler: "DDIM",
  PNDMScheduler: "PLMS",
  LMSDiscreteScheduler: "LMS",
  EulerDiscreteScheduler: "Euler",
  EulerAncestralDiscreteScheduler: "Euler a",
  DPMSolverMultistepScheduler: "DPM++ 2M",
  UniPCMultistepScheduler: "UniPC",
  LCMScheduler: "LCM",
};

/** The sampler as A1111 names it ("Euler a", "DPM++ 2M Karras", ...); the class name otherwise. */
export function samplerName(s: Scheduler): string {
  const base = SAMPLER_NAMES[s.className] ?? s.className;
  return s.config.use_karras_sigmas ? `${base} Karras` : base;
}
