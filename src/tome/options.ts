// Options of token merging (tomesd's apply_patch arguments, camel-cased) and of token downsampling (ToDo), their
// defaults and validation. Every error names the option, the value and the fix; unknown keys (typos such as
// `max_downsample`) are errors too, since an ignored option would silently change the image.

/** ToMe (tomesd): merge similar tokens before attention / MLP and copy them back afterwards. */
export interface ToMeOptions {
  mode?: "tome";
  /** Fraction of the tokens merged away: r = ⌊N·ratio⌋, in [0, 1 − 1/(sx·sy)] (default 0.5). */
  ratio?: number;
  /**
   * Merge in blocks whose token grid is downsampled at most this much from the latent (tomesd's 1, 2, 4, 8), or
   * "auto" (default): the highest-resolution level that has transformer blocks (1 for SD 1.x/2.x, 2 for SDXL).
   */
  maxDownsample?: number | "auto";
  /** Stride of the dst grid in x and y (default 2, 2): one dst token per sy×sx cell. */
  sx?: number;
  sy?: number;
  /** Pick each cell's dst token at random (default true); off for odd batches, as tomesd. */
  useRand?: boolean;
  /** Merge for self-attention (default true), cross-attention (false), the feed-forward (false). */
  mergeAttn?: boolean;
  mergeCrossattn?: boolean;
  mergeMlp?: boolean;
  /** Seed of the generator of the random dst choice (default torch's default seed, 67280421310721). */
  seed?: number | bigint;
}

/** ToDo (Smith et al. 2024): self-attention keys/values from a nearest-exact downsampled token grid. */
export interface ToDoOptions {
  mode: "todo";
  /** Downsampling factor of the key/value grid per axis (default 2). */
  factor?: number;
  /**
   * Resolution levels downsampled, counted from the highest-resolution level with transformer blocks (default 1:
   * that level only; 2 adds the next one).
   */
  maxDepth?: number;
}

export type TokenMergingOptions = ToMeOptions | ToDoOptions;

export interface ResolvedToMe {
  mode: "tome";
  ratio: number;
  maxDownsample: number | "auto";
  sx: number;
  sy: number;
  useRand: boolean;
  mergeAttn: boolean;
  mergeCrossattn: boolean;
  mergeMlp: boolean;
  seed: number | bigint;
}

export interface ResolvedToDo {
  mode: "todo";
  factor: number;
  maxDepth: number;
}

export type ResolvedTokenMerging = ResolvedToMe | ResolvedToDo;

/** torch's default CPU generator seed. */
export const DEFAULT_TOME_SEED = 67280421310721n;

const TOME_KEYS = ["mode", "ratio", "maxDownsample", "sx", "sy", "useRand", "mergeAttn", "mergeCrossattn", "mergeMlp", "seed"];
const TODO_KEYS = ["mode", "factor", "maxDepth"];

export class TokenMergingOptionError extends Error {
  constructor(
    readonly option: string,
    message: string,
  ) {
    super(`token merging: ${message}`);
    this.name = "TokenMergingOptionError";
  }
}

const fail = (option: string, msg: string): never => {
  throw new TokenMergingOptionError(option, msg);
};

function positiveInteger(option: string, v: unknown, hint: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1) fail(option, `${option} must be a positive integer, got ${JSON.stringify(v)}; ${hint}`);
  return v as number;
}

function boolean(option: string, v: unknown): boolean {
  if (typeof v !== "boolean") fail(option, `${option} must be true or false, got ${JSON.stringify(v)}`);
  return v as boolean;
}

function checkKeys(o: object, known: string[], mode: string): void {
  for (const k of Object.keys(o))
    if (!known.includes(k) && (o as Record<string, unknown>)[k] !== undefined)
      fail(k, `unknown option "${k}" for mode "${mode}"; the options are ${known.join(", ")}`);
}

/** Defaults filled in and every value checked. */
export function resolveTokenMergingOptions(opts: TokenMergingOptions = {}): ResolvedTokenMerging {
  if (opts === null || typeof opts !== "object") fail("options", `options must be an object, got ${JSON.stringify(opts)}`);
  const mode = opts.mode ?? "tome";
  if (mode === "todo") {
    const o = opts as ToDoOptions;
    checkKeys(o, TODO_KEYS, mode);
    const factor = positiveInteger("factor", o.factor ?? 2, "use 2 (ToDo's default) or another integer ≥ 1 (1 = off)");
    const maxDepth = positiveInteger("maxDepth", o.maxDepth ?? 1, "use 1 (the highest-resolution attention level only) or 2");
    return { mode, factor, maxDepth };
  }
  if (mode !== "tome") return fail("mode", `mode must be "tome" or "todo", got ${JSON.stringify(mode)}`);
  const o = opts as ToMeOptions;
  checkKeys(o, TOME_KEYS, mode);
  const sx = positiveInteger("sx", o.sx ?? 2, "the dst stride in x is usually 2");
  const sy = positiveInteger("sy", o.sy ?? 2, "the dst stride in y is usually 2");
  const ratio = o.ratio ?? 0.5;
  const maxRatio = 1 - 1 / (sx * sy);
  if (typeof ratio !== "number" || !(ratio >= 0 && ratio <= maxRatio))
    fail(
      "ratio",
      `ratio must be a number in [0, ${maxRatio}] (1 − 1/(sx·sy) for sx=${sx}, sy=${sy}: only src tokens can merge), got ${JSON.stringify(ratio)}; ` +
        `lower the ratio (≤ 0.5 recommended)${maxRatio < 0.75 ? " or raise sx / sy" : ""}`,
    );
  const md = o.maxDownsample ?? "auto";
  if (md !== "auto" && (typeof md !== "number" || !Number.isInteger(md) || md < 1))
    fail("maxDownsample", `maxDownsample must be "auto" or a positive integer (1, 2, 4 or 8 as in tomesd), got ${JSON.stringify(md)}`);
  const seed = o.seed ?? DEFAULT_TOME_SEED;
  if (!(typeof seed === "bigint" || (typeof seed === "number" && Number.isSafeInteger(seed))))
    fail("seed", `seed must be an integer (number or bigint), got ${JSON.stringify(String(seed))}`);
  return {
    mode,
    ratio,
    maxDownsample: md,
    sx,
    sy,
    useRand: boolean("useRand", o.useRand ?? true),
    mergeAttn: boolean("mergeAttn", o.mergeAttn ?? true),
    mergeCrossattn: boolean("mergeCrossattn", o.mergeCrossattn ?? false),
    mergeMlp: boolean("mergeMlp", o.mergeMlp ?? false),
    seed,
  };
}
