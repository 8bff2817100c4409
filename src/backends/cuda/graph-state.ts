// Whether a CUDA-graph capture is under way on the compute stream, for the backend's code paths that a capture
// cannot record: host ↔ device transfers (an upload copies host bytes that a replay would not copy again; a download
// synchronises, which a capturing stream refuses) and the deferred index-bounds flags (a replay would raise a flag
// in a slot the host no longer watches). They call refuseDuringCapture() first and throw an error naming the
// operation instead of failing later with a CUDA status or replaying wrong values. Set by graph.ts.

let capturing: string | null = null;

/** graph.ts: the label of the capture under way, or null. */
export function setCapturing(label: string | null): void {
  capturing = label;
}

/** The label of the capture under way on the compute stream, or null. */
export function capturingLabel(): string | null {
  return capturing;
}

/** Throw when a capture is under way: `what` cannot be part of a CUDA graph. */
export function refuseDuringCapture(what: string): void {
  if (capturing === null) return;
  throw new Error(
    `CUDA graph capture of ${capturing}: ${what} cannot be captured (a replay would not repeat it); ` +
      "move it out of the captured function (compute it before and copy it into a static input tensor)",
  );
}
