// Backend registry: maps a device to the backend that computes on it. The CPU and meta
// backends are always present; the CUDA backend registers itself when it is loaded.

import type { Device } from "../core/device.ts";
import { TensorError } from "../core/errors.ts";
import type { Backend } from "./backend.ts";
import { cpuBackend } from "./cpu/index.ts";
import { metaBackend } from "./meta/index.ts";

const backends = new Map<Device, Backend>([
  ["cpu", cpuBackend],
  ["meta", metaBackend],
]);

export function registerBackend(backend: Backend): void {
  backends.set(backend.device, backend);
  lastDevice = null;
}

export function hasBackend(device: Device): boolean {
  return backends.has(device);
}

// The last lookup, remembered: every op asks, nearly always for the same device.
let lastDevice: Device | null = null;
let lastBackend: Backend | null = null;

export function getBackend(device: Device): Backend {
  if (device === lastDevice) return lastBackend!;
  const b = backends.get(device);
  if (!b) {
    throw new TensorError(
      device === "cuda"
        ? 'the CUDA backend is not loaded: call initCuda() (or use device "auto" to fall back to the CPU)'
        : `no backend for device "${device}"`,
    );
  }
  lastDevice = device;
  lastBackend = b;
  return b;
}
