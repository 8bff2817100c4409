// Device selection for user-facing options: "cpu", "meta", "cuda" (initialises the CUDA backend or throws saying
// why: no GPU, no driver, missing libraries with the places searched and what to install), and "auto" (CUDA when it
// initialises, else the CPU with one console notice per process saying why).

import type { Device, DeviceSpec } from "../core/device.ts";
import { hasBackend } from "./registry.ts";
import { CudaUnavailableError, initCuda } from "./cuda/index.ts";

export interface ResolveDeviceOptions {
  /** Where the one "auto" notice goes (default console.warn). */
  notice?: (message: string) => void;
}

let noticeGiven = false;
/** Why "auto" could not initialise CUDA (first line of the error), once it tried. */
let autoFailure: string | null = null;

function cudaIndex(spec: string): number | null {
  if (spec === "cuda") return 0;
  const m = /^cuda:(\d+)$/.exec(spec);
  return m ? Number(m[1]) : null;
}

/** The device for `spec`; "cuda" / "cuda:N" initialise CUDA (throwing a clear error), "auto" falls back to the CPU. */
export function resolveDevice(spec: DeviceSpec | `cuda:${number}` = "auto", opts: ResolveDeviceOptions = {}): Device {
  if (spec === "cpu" || spec === "meta") return spec;
  const index = cudaIndex(spec);
  if (index !== null) {
    if (hasBackend("cuda") && index === 0) return "cuda";
    try {
      initCuda({ device: index });
    } catch (e) {
      throw new Error(`device "${spec}" is not available: ${(e as Error).message}`, { cause: e });
    }
    return "cuda";
  }
  if (spec === "auto") {
    if (hasBackend("cuda")) return "cuda";
    if (autoFailure === null)
      try {
        initCuda();
        return "cuda";
      } catch (e) {
        // not retried: the libraries and devices do not change during a run
        autoFailure = e instanceof CudaUnavailableError ? e.summary : (e as Error).message.split("\n")[0]!;
      }
    if (!noticeGiven) {
      noticeGiven = true;
      (opts.notice ?? ((m: string) => console.warn(m)))(`[bun-diffusion] device "auto": CUDA is not available (${autoFailure}); running on the CPU`);
    }
    return "cpu";
  }
  throw new TypeError(`unknown device ${JSON.stringify(spec)}; expected "cpu", "cuda", "cuda:N", "meta" or "auto"`);
}
