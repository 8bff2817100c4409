// Ctrl-C for `bun-diffusion generate`, owned by the main thread (the worker may be inside a step for
// minutes): the first SIGINT prints "stopping…" and raises the shared interrupt flag, which the
// worker's module hooks see at the next module call; the second ends the process at once with exit
// code 130. Files are written synchronously by the main thread, so neither can cut a write short.

import { INTERRUPT_FLAG } from "./worker-protocol.ts";

export interface CliInterrupt {
  /** The shared flag, for the worker. */
  readonly buffer: SharedArrayBuffer;
  /** Whether the user asked to stop. */
  readonly requested: boolean;
  /** Remove the signal handler. */
  dispose(): void;
}

/** Install the SIGINT handler; `beforeMessage` runs first (e.g. to end a half-drawn progress bar). */
export function handleInterrupts(beforeMessage: () => void = () => {}): CliInterrupt {
  const buffer = new SharedArrayBuffer(4);
  const flag = new Int32Array(buffer);
  let count = 0;
  const onSigint = () => {
    count++;
    beforeMessage();
    if (count === 1) {
      Atomics.store(flag, INTERRUPT_FLAG, 1);
      process.stderr.write("stopping… (Ctrl-C again to quit at once)\n");
      return;
    }
    process.stderr.write("quit; nothing was written\n");
    process.exit(130);
  };
  process.on("SIGINT", onSigint);
  return {
    buffer,
    get requested() {
      return count > 0;
    },
    dispose: () => void process.off("SIGINT", onSigint),
  };
}
