// The automatic memory strategy (pipe.enableOffload({ maxVram })): the cheapest configuration whose planned peak
// (plan.ts) fits a device-memory budget, in order of cost — no offload, model offload, sequential offload with
// prefetch — each tried with VAE tiling as well when the decode is the phase that does not fit. It says what it
// chose and why, and the same ladder names the options that would fit in an out-of-memory message.

import { formatBytes } from "../core/errors.ts";
import type { MemoryPlan, OffloadStrategy, PlanRequest } from "./plan.ts";

export interface OffloadCandidate {
  offload: OffloadStrategy;
  vaeTiling: boolean;
  peak: number;
  peakPhase: string;
}

export interface OffloadChoice extends OffloadCandidate {
  /** The bytes the plans were held to. */
  budget: number;
  /** The call(s) that enable the choice, e.g. "enableModelCpuOffload()" or "no offload". */
  description?: string;
  /** Every configuration planned, in the order tried. */
  tried: OffloadCandidate[];
  /** One sentence: what was chosen and why. */
  reason: string;
}

const STRATEGIES: OffloadStrategy[] = ["none", "model", "sequential"];

/** The call a candidate is enabled with (for messages). */
export function describeCandidate(c: Pick<OffloadCandidate, "offload" | "vaeTiling">): string {
  const parts: string[] = [];
  if (c.offload === "model") parts.push("enableModelCpuOffload()");
  if (c.offload === "sequential") parts.push("enableSequentialCpuOffload()");
  if (c.vaeTiling) parts.push("enableVaeTiling()");
  return parts.length ? parts.join(" + ") : "no offload";
}

/**
 * The first configuration whose plan fits `budget` bytes, or null when none does. `plan` makes the plan of the run
 * with the given overrides (offload, vaeTiling); `base` is the run's own VAE tiling (kept on when already on).
 */
export function chooseOffload(plan: (o: Partial<PlanRequest>) => MemoryPlan, budget: number, base: { vaeTiling: boolean }): OffloadChoice | null {
  const tried: OffloadCandidate[] = [];
  const attempt = (offload: OffloadStrategy, vaeTiling: boolean) => {
    const p = plan({ offload, vaeTiling });
    const c = { offload, vaeTiling, peak: p.peak, peakPhase: p.peakPhase };
    tried.push(c);
    return c;
  };
  for (const offload of STRATEGIES) {
    let c = attempt(offload, base.vaeTiling);
    if (c.peak > budget && c.peakPhase === "decoding" && !base.vaeTiling) c = attempt(offload, true);
    if (c.peak <= budget) {
      const skipped = tried.filter((t) => t !== c);
      const why = skipped.length
        ? `${skipped.map((t) => `${describeCandidate(t)} needs ${formatBytes(t.peak)}`).join(", ")}; `
        : "";
      return { ...c, budget, tried, reason: `${describeCandidate(c)}: ${why}this needs ${formatBytes(c.peak)} (peak while ${c.peakPhase}) of the ${formatBytes(budget)} budget` };
    }
  }
  return null;
}

/** "enableModelCpuOffload() fits in 3.1 GiB" for the cheapest configuration that fits, or what the smallest needs. */
export function offloadAdvice(plan: (o: Partial<PlanRequest>) => MemoryPlan, budget: number, base: { vaeTiling: boolean }, current: OffloadStrategy): string | null {
  const choice = chooseOffload(plan, budget, base);
  if (choice && (choice.offload !== current || choice.vaeTiling !== base.vaeTiling))
    return `${describeCandidate(choice)} fits in ${formatBytes(choice.peak)}`;
  if (!choice) {
    const least = plan({ offload: "sequential", vaeTiling: true });
    return `even enableSequentialCpuOffload() + enableVaeTiling() needs ${formatBytes(least.peak)}`;
  }
  return null;
}

/** pipe.enableOffload's options. */
export interface OffloadRequest {
  /** The device bytes the pipeline may use, or "auto": the memory available now plus the weights it holds. */
  maxVram: number | "auto";
  /** The run the budget is for (defaults: the model's native size, one image, guidance on). */
  width?: number;
  height?: number;
  batch?: number;
  cfg?: boolean;
}

/** Check enableOffload's options and fill in the run's defaults. */
export function resolveOffloadRequest(o: OffloadRequest, nativeSize: number): Required<OffloadRequest> {
  if (o === null || typeof o !== "object") throw new Error('enableOffload: pass { maxVram: bytes | "auto" }');
  const known = new Set(["maxVram", "width", "height", "batch", "cfg"]);
  for (const k of Object.keys(o)) if (!known.has(k)) throw new Error(`enableOffload: unknown option "${k}" (options: ${[...known].join(", ")})`);
  const v = o.maxVram;
  if (v !== "auto" && (typeof v !== "number" || !Number.isFinite(v) || v <= 0))
    throw new Error(`enableOffload: maxVram must be a positive number of bytes or "auto", got ${JSON.stringify(v)}`);
  const size = (name: "width" | "height") => {
    const x = o[name] ?? nativeSize;
    if (!Number.isInteger(x) || x <= 0 || x % 8 !== 0) throw new Error(`enableOffload: ${name} must be a positive multiple of 8, got ${JSON.stringify(x)}`);
    return x;
  };
  const batch = o.batch ?? 1;
  if (!Number.isInteger(batch) || batch <= 0) throw new Error(`enableOffload: batch must be a positive integer, got ${JSON.stringify(batch)}`);
  if (o.cfg !== undefined && typeof o.cfg !== "boolean") throw new Error(`enableOffload: cfg must be true or false, got ${JSON.stringify(o.cfg)}`);
  return { maxVram: v, width: size("width"), height: size("height"), batch, cfg: o.cfg ?? true };
}
