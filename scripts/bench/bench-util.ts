// Small helpers shared by the benchmark scripts: wall-clock timing of host work (CPU benchmarks), medians and
// rounding for the printed JSON, command-line options and the --device choice.

import { cudaAvailable, initCuda } from "../../src/backends/cuda/index.ts";

/** Median milliseconds of fn (one warm-up, then ≥ 3 runs and ≥ minSeconds). */
export function time(fn: () => void, minSeconds: number): { ms: number; reps: number } {
  fn();
  const times: number[] = [];
  const start = performance.now();
  while (times.length < 3 || performance.now() - start < minSeconds * 1000) {
    const t = performance.now();
    fn();
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return { ms: times[times.length >> 1]!, reps: times.length };
}

/** Median of xs (the upper one of the middle two for an even count, as time() takes it); NaN when empty. */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

/** x rounded to `digits` decimals. */
export function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** x rounded to `digits` significant digits (0 stays 0). */
export function sig(x: number, digits = 4): number {
  if (x === 0 || !Number.isFinite(x)) return x;
  return Number(x.toPrecision(digits));
}

/** The value after `name` in `args` (`--steps 20` → "20"), or undefined when `name` is absent. */
export function cliOption(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

/** A `--device` value (default "cpu"); "cuda" initialises the CUDA backend (a GPU, or the emulated device with
 * BD_CUDA_EMULATE=1) or throws saying why there is none. */
export function benchDevice(value: string | undefined): "cpu" | "cuda" {
  const device = value ?? "cpu";
  if (device !== "cpu" && device !== "cuda") throw new Error(`--device: cpu or cuda, got ${device}`);
  if (device === "cuda") {
    const a = cudaAvailable();
    if (!a.ok) throw new Error(`--device cuda: no CUDA device (real, or the emulated one with BD_CUDA_EMULATE=1): ${a.reason}`);
    initCuda();
  }
  return device;
}
