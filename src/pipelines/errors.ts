// Errors of the pipeline layer: GenerateOptionsError for options rejected before any work (the
// message names the option, the value and what is allowed) and AbortError for a generation stopped
// through its AbortSignal (everything it allocated has been freed when it is thrown), between steps or,
// through the module-call check (interrupt.ts), inside one.

/** A generate() option is invalid; thrown before anything is allocated or computed. */
export class GenerateOptionsError extends Error {
  override name = "GenerateOptionsError";
  constructor(
    /** The option at fault, as generate() names it (e.g. "width", "seed"). */
    readonly option: string,
    /** What is wrong, without the option name. */
    readonly detail: string,
  ) {
    super(`${option}: ${detail}`);
  }
}

/**
 * generate() was stopped through options.signal; `step` steps had completed. `during` names the work
 * that was cut short at a module call ("prompt encoding", "step 3 of 20", "decoding"); undefined when
 * the abort was seen between steps.
 */
export class AbortError extends Error {
  override name = "AbortError";
  constructor(
    readonly step: number,
    readonly total: number,
    reason?: unknown,
    readonly during?: string,
  ) {
    super(
      during !== undefined
        ? `generation aborted during ${during}`
        : step === 0
          ? "generation aborted before the first step"
          : `generation aborted after step ${step} of ${total}`,
      { cause: reason },
    );
  }
}

/** Throw an AbortError when `signal` has fired. */
export function throwIfAborted(signal: AbortSignal | undefined, step: number, total: number): void {
  if (signal?.aborted) throw new AbortError(step, total, signal.reason);
}
