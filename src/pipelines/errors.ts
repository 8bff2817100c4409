// Errors of the pipeline layer: GenerateOptionsError for options rejected before any work (the
// message names the option, the value and what is allowed), AbortError for a generation stopped
// through its AbortSignal (between steps or, through the module-call check of interrupt.ts, inside one),
// NonFiniteError for a run whose latents or image became NaN/Inf, and PipelineBusyError for dispose()
// while generate() calls are running. Everything a failed generate() allocated has been freed when its
// error is thrown.

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

/**
 * The latents (or the decoded image) of a run contain NaN or Inf; no image is returned. `step` is the
 * step after which the check found them (`total` + 1 for the decoded image; with checkFinite "end" a
 * bad latent is only found after the last step).
 */
export class NonFiniteError extends Error {
  override name = "NonFiniteError";
  constructor(
    readonly where: "latents" | "image",
    readonly step: number,
    readonly total: number,
    /** What to look at, most likely first. */
    readonly causes: string[],
  ) {
    super(
      (where === "image"
        ? `the decoded image contains NaN or Inf (the latents were finite after step ${total} of ${total})`
        : `the latents contain NaN or Inf after step ${step} of ${total}`) +
        `; no image was produced. Likely causes: ${causes.join("; ")}`,
    );
  }
}

/** dispose() was called while generate() calls were running on the pipeline. */
export class PipelineBusyError extends Error {
  override name = "PipelineBusyError";
  constructor(readonly running: number) {
    super(
      `dispose(): ${running} generate() call${running === 1 ? " is" : "s are"} still running on this pipeline; nothing was disposed. ` +
        "Await the call (to stop it early, abort it through its signal and await the rejection), then dispose()",
    );
  }
}
