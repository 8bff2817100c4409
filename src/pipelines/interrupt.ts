// Aborting inside a step: for the duration of one generate() call that has an AbortSignal, a forward
// pre-hook on every module of the pipeline's models checks the signal, so an abort is honoured at the
// next module call (one layer), not at the next step boundary. The check is armed only while this
// run's own synchronous work runs (prompt encoding, each denoising step, decoding): two runs that
// share the models interleave only at awaits, so one run's abort never stops another run's calls.
// Nothing here is process-wide; removing the check removes its hooks (nn keeps no pipeline state).

import type { HookHandle, Module } from "../nn/module.ts";
import { AbortError } from "./errors.ts";

export class ModuleAbortCheck {
  readonly #signal: AbortSignal;
  readonly #total: number;
  readonly #handles: HookHandle[] = [];
  #armed = false;
  #during = "";
  #completed = 0;

  /** Install the check on every module of `models` (their descendants included). */
  constructor(models: readonly Module[], signal: AbortSignal, total: number) {
    this.#signal = signal;
    this.#total = total;
    const check = (): void => {
      if (this.#armed && signal.aborted) {
        this.#armed = false; // the error unwinds through outer modules' calls: throw it once
        throw new AbortError(this.#completed, total, signal.reason, this.#during);
      }
    };
    try {
      for (const model of models) for (const [, m] of model.namedModules()) this.#handles.push(m.registerForwardPreHook(check));
    } catch (e) {
      this.remove();
      throw e;
    }
  }

  /**
   * Run `fn` (synchronous work of this run) with the check armed; `during` names it in the AbortError
   * ("step 3 of 20"), `completed` is the number of finished steps. Aborted already: throws at once.
   */
  run<T>(during: string, completed: number, fn: () => T): T {
    if (this.#signal.aborted) throw new AbortError(completed, this.#total, this.#signal.reason, during);
    this.#during = during;
    this.#completed = completed;
    this.#armed = true;
    try {
      return fn();
    } finally {
      this.#armed = false;
    }
  }

  /** Remove every hook (idempotent). */
  remove(): void {
    for (const h of this.#handles.splice(0)) h.remove();
  }
}

/** Run `fn` under `check` when there is one, else directly. */
export function interruptible<T>(check: ModuleAbortCheck | undefined, during: string, completed: number, fn: () => T): T {
  return check ? check.run(during, completed, fn) : fn();
}
