// Devices: where a tensor's storage lives. "cpu" is the reference backend, "cuda" the GPU
// backend, "meta" holds shapes only (memory planning and weightless model construction).

export type DeviceType = "cpu" | "cuda" | "meta";
export type Device = DeviceType;
/** What users may pass: a device, or "auto" (CUDA when available, else the CPU with one notice). */
export type DeviceSpec = Device | "auto" | "cuda:0";

export const DEVICES: readonly DeviceType[] = ["cpu", "cuda", "meta"];

export function parseDevice(spec: string): Device {
  if (spec === "cpu" || spec === "meta" || spec === "cuda") return spec;
  if (spec === "cuda:0") return "cuda";
  throw new TypeError(`unknown device ${JSON.stringify(spec)}; expected "cpu", "cuda", "meta" or "auto"`);
}
