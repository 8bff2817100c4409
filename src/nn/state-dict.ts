// State-dict loading: copy a checkpoint's tensors into a module's parameters by key, converting
// stored F32/F16/BF16 to each parameter's dtype straight from the (memory-mapped) source bytes, one
// tensor at a time, so at most one converted tensor exists beyond the final weights. In strict mode
// (default) every key is checked first and one LoadStateDictError reports all problems (its message
// lists the first 20 and the counts; `.report` has every one); nothing is loaded then. Parameters on "meta" are only checked (or re-created on meta in another dtype);
// with a target device / dtype each parameter not already there is replaced by a new tensor.

import { type DType, type Device, type Tensor, borrowRaw, copyInto, empty } from "../tensor/index.ts";
import { type TensorEntry, type TensorSource, requireDType } from "../io/safetensors.ts";
import type { Parameter } from "./parameter.ts";

export interface LoadStateDictOptions {
  /** Throw when any key is missing, unexpected or mis-shaped (default true). Nothing is loaded then. */
  strict?: boolean;
  /** Map a source key to the module's key; return null to drop the key silently. */
  rename?: (key: string) => string | null;
  /** Source keys (after rename) that are skipped silently: exact names or patterns. */
  ignore?: readonly (string | RegExp)[];
  /**
   * Materialise parameters on this device / in this dtype: each parameter not already there is
   * replaced by a new tensor (the old one, e.g. a meta placeholder, is disposed). Without these,
   * values are converted into the existing storage; parameters on "meta" are only checked.
   */
  device?: Device;
  dtype?: DType;
}

export interface LoadReport {
  missing: string[];
  unexpected: string[];
  mismatched: { key: string; expected: number[]; got: number[] }[];
  /** Number of parameters that received values. */
  loaded: number;
}

/** Thrown by a strict load; lists every missing, unexpected and mis-shaped key. */
/** How many problems a LoadStateDictError message lists (the full lists stay on `.report`). */
export const LOAD_ERROR_LIST_LIMIT = 20;

export class LoadStateDictError extends Error {
  override name = "LoadStateDictError";
  constructor(
    readonly where: string,
    /** Every missing, unexpected and mis-shaped key. */
    readonly report: LoadReport,
  ) {
    const { missing, unexpected, mismatched } = report;
    const total = missing.length + unexpected.length + mismatched.length;
    let budget = LOAD_ERROR_LIST_LIMIT;
    const take = <T>(items: readonly T[], show: (t: T) => string, sep: string): string => {
      const shown = items.slice(0, Math.max(0, budget));
      budget -= shown.length;
      const rest = items.length - shown.length;
      return shown.map(show).join(sep) + (rest > 0 ? `${shown.length ? sep : ""}… ${rest} more` : "");
    };
    const lines = [
      `${where}: the checkpoint does not match the module (${total} problem${total === 1 ? "" : "s"}` +
        (total > LOAD_ERROR_LIST_LIMIT ? `; the first ${LOAD_ERROR_LIST_LIMIT} are listed, every one is on error.report` : "") +
        ")",
    ];
    if (missing.length) lines.push(`  missing keys (${missing.length}): ${take(missing, (k) => k, ", ")}`);
    if (unexpected.length) lines.push(`  unexpected keys (${unexpected.length}): ${take(unexpected, (k) => k, ", ")}`);
    if (mismatched.length)
      lines.push(
        `  mis-shaped keys (${mismatched.length}): ` +
          take(mismatched, (m) => `${m.key} expected [${m.expected.join(", ")}] got [${m.got.join(", ")}]`, "; "),
      );
    if (total > LOAD_ERROR_LIST_LIMIT)
      lines.push("  this many problems usually means the config (config.json) is not the one of this checkpoint: check that the folder's files belong together");
    super(lines.join("\n"));
  }
}

/** What a load reads from: a safetensors file / sharded checkpoint, or tensors by name. */
export type StateDictSource = TensorSource | ReadonlyMap<string, Tensor>;

export function isTensorSource(s: StateDictSource): s is TensorSource {
  return typeof (s as TensorSource).entries === "function" && typeof (s as TensorSource).names === "function";
}

/**
 * Load `params` (checkpoint key → parameter) from `source`; `where` names the module or file in
 * errors. Returns what was missing, unexpected, mis-shaped and loaded.
 */
export function loadParameters(params: ReadonlyMap<string, Parameter>, source: StateDictSource, opts: LoadStateDictOptions, where: string): LoadReport {
  const strict = opts.strict ?? true;
  const report: LoadReport = { missing: [], unexpected: [], mismatched: [], loaded: 0 };
  const plan: [Parameter, string][] = [];
  const seen = new Map<string, string>();
  for (const [srcKey, shape] of sourceShapes(source)) {
    const key = opts.rename ? opts.rename(srcKey) : srcKey;
    if (key === null || isIgnored(key, opts.ignore)) continue;
    const p = params.get(key);
    if (!p) {
      report.unexpected.push(srcKey);
      continue;
    }
    const prev = seen.get(key);
    if (prev !== undefined) throw new Error(`loadStateDict: source keys "${prev}" and "${srcKey}" both map to "${key}"`);
    seen.set(key, srcKey);
    if (shape.length !== p.shape.length || shape.some((d, i) => d !== p.shape[i])) {
      report.mismatched.push({ key, expected: [...p.shape], got: [...shape] });
      continue;
    }
    plan.push([p, srcKey]);
  }
  for (const key of params.keys()) if (!seen.has(key)) report.missing.push(key);
  if (strict && (report.missing.length || report.unexpected.length || report.mismatched.length)) throw new LoadStateDictError(where, report);

  for (const [p, srcKey] of plan) {
    loadParameter(p, source, srcKey, opts.device, opts.dtype);
    report.loaded++;
  }
  return report;
}

function isIgnored(key: string, ignore: readonly (string | RegExp)[] | undefined): boolean {
  return !!ignore && ignore.some((i) => (typeof i === "string" ? i === key : i.test(key)));
}

/** Key → shape of every tensor in the source, in source order, without reading data. */
function sourceShapes(source: StateDictSource): [string, readonly number[]][] {
  if (isTensorSource(source)) return source.names().map((n) => [n, source.get(n).shape]);
  return [...source].map(([k, t]) => [k, t.shape]);
}

/** A CPU tensor over a checkpoint entry's bytes without copying them (borrowed storage). */
function entryTensor(entry: TensorEntry, where: string): Tensor {
  const dtype = requireDType(entry.dtype, `${where}: tensor "${entry.name}"`);
  return borrowRaw(entry.data, entry.shape, dtype);
}

/** Load one parameter from the source, converting dtype / materialising on `device` as needed. */
function loadParameter(p: Parameter, source: StateDictSource, key: string, device?: Device, dtype?: DType): void {
  const targetDevice = device ?? p.device;
  const targetDType = dtype ?? p.dtype;
  const replace = targetDevice !== p.device || targetDType !== p.dtype;
  if (targetDevice === "meta") {
    if (replace) p.replace(empty(p.shape, { device: "meta", dtype: targetDType }));
    return; // meta holds no values: names and shapes were checked
  }
  const owned = isTensorSource(source);
  const src = owned ? entryTensor(source.get(key), source.path) : (source.get(key) as Tensor);
  try {
    const dst = replace ? empty(p.shape, { device: targetDevice, dtype: targetDType }) : p.value;
    try {
      copyInto(dst, src);
    } catch (e) {
      if (replace) dst.dispose();
      throw e;
    }
    if (replace) p.replace(dst);
  } finally {
    if (owned) src.dispose();
  }
}
