// The worker thread of `bun-diffusion generate`: receives one GenerationRequest, runs it
// (generate-run.ts) and posts the outcome. The main thread owns signals and files; this thread may
// be busy inside a step for minutes, which is why the interrupt is shared memory, not a message.

import { runGeneration } from "./generate-run.ts";
import type { GenerationRequest, WorkerMessage } from "./worker-protocol.ts";

declare const self: Worker;

self.onmessage = (e: MessageEvent<GenerationRequest>) => {
  void runGeneration(e.data, (m: WorkerMessage, transfer?: ArrayBuffer[]) => self.postMessage(m, transfer ?? []));
};
