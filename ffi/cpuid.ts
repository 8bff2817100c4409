// CPU feature detection for native-library configuration: the ISA flags of this machine (x86 "flags",
// arm "Features" from /proc/cpuinfo on Linux), its model name, and the number of usable CPUs.
// Parsing /proc/cpuinfo is enough here: the kernel reports exactly the features it enables (e.g. avx512*
// only when the OS saves the ZMM state), which is what a library's kernels need.

import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";

export interface CpuInfo {
  /** Lower-case feature flags, e.g. "avx2", "fma", "avx512f"; empty when unknown. */
  flags: ReadonlySet<string>;
  /** "Intel(R) Xeon(R) ..." or undefined. */
  model?: string;
  /** CPUs this process may use (affinity-aware). */
  cpus: number;
}

let cached: CpuInfo | undefined;

/** Parse the text of /proc/cpuinfo (first processor block that has flags). Exposed for tests. */
export function parseCpuInfo(text: string): { flags: Set<string>; model?: string } {
  let flags: Set<string> | undefined;
  let model: string | undefined;
  for (const line of text.split("\n")) {
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    const key = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (!flags && (key === "flags" || key === "features")) {
      flags = new Set(value.toLowerCase().split(/\s+/).filter((f) => f.length > 0));
    } else if (model === undefined && (key === "model name" || key === "cpu model")) {
      model = value;
    }
    if (flags && model !== undefined) break;
  }
  return { flags: flags ?? new Set(), model };
}

/** This machine's CPU features (cached). Never throws: unknown platforms give an empty flag set. */
export function cpuInfo(): CpuInfo {
  if (cached) return cached;
  let parsed: { flags: Set<string>; model?: string } = { flags: new Set() };
  try {
    parsed = parseCpuInfo(readFileSync("/proc/cpuinfo", "utf8"));
  } catch {
    // not Linux, or /proc unavailable
  }
  let cpus = 1;
  try {
    cpus = Math.max(1, availableParallelism());
  } catch {
    cpus = Math.max(1, navigator.hardwareConcurrency || 1);
  }
  cached = { flags: parsed.flags, model: parsed.model, cpus };
  return cached;
}

/** True when every named flag is present. */
export function hasCpuFlags(...names: string[]): boolean {
  const { flags } = cpuInfo();
  return names.every((n) => flags.has(n));
}
