// The registry of a pipeline's optional features. A feature is installed by `pipe.enableX(opts)`
// (hooks, processors or model switches; the install function returns the function that removes it)
// and removed by `pipe.disableX()`; enabling an active feature again replaces it (the old one is
// removed first); `features()` lists what is active with its options, in the order enabled; the
// pipeline's dispose() removes everything (last enabled first). An install function may instead return
// { remove, afterRun }: afterRun runs when each generate() call ends (after its tensors are freed), for
// features that hold per-run state (DeepCache's feature cache, the cross-attention K/V cache); afterDenoise runs
// when the denoising loop ends, before decoding (CUDA graphs give their memory back there). formatFeatures() is the one-line
// form the CLI prints and image parameters carry ("Features: name(k=v k=v); other(...)").

/** An active feature as pipe.features() reports it. */
export interface ActiveFeature {
  readonly name: string;
  readonly options: Readonly<Record<string, unknown>>;
}

/** What an install function may return instead of its remover. */
export interface FeatureHooks {
  remove: () => void;
  /** Runs when each generate() call of the pipeline ends, success or not. */
  afterRun?: () => void;
  /** Runs when each generate() call's denoising loop ends (before decoding), success or not. */
  afterDenoise?: () => void;
}

interface Installed extends ActiveFeature, FeatureHooks {}

export class PipelineFeatures {
  #active: Installed[] = [];

  /**
   * Install `name` with `options`: an active feature of that name is removed first, then `install`
   * runs and returns its remover. If `install` throws, the feature is not active (the previous one
   * stays removed: its replacement was asked for).
   */
  enable(name: string, options: Record<string, unknown>, install: () => (() => void) | FeatureHooks): void {
    this.disable(name);
    const r = install();
    const hooks = typeof r === "function" ? { remove: r } : r;
    this.#active.push({ name, options: Object.freeze({ ...options }), ...hooks });
  }

  /** Run every feature's afterRun (in the order enabled; every one runs, the first error is rethrown). */
  afterRun(): void {
    this.#each((f) => f.afterRun?.());
  }

  /** Run every feature's afterDenoise (as afterRun). */
  afterDenoise(): void {
    this.#each((f) => f.afterDenoise?.());
  }

  #each(fn: (f: Installed) => void): void {
    let first: unknown = null;
    for (const f of this.#active.slice()) {
      try {
        fn(f);
      } catch (e) {
        first ??= e;
      }
    }
    if (first !== null) throw first;
  }

  /** Remove `name`; false when it was not active. */
  disable(name: string): boolean {
    const i = this.#active.findIndex((f) => f.name === name);
    if (i < 0) return false;
    const [f] = this.#active.splice(i, 1);
    f!.remove();
    return true;
  }

  has(name: string): boolean {
    return this.#active.some((f) => f.name === name);
  }

  /** What is active, in the order enabled. */
  list(): ActiveFeature[] {
    return this.#active.map(({ name, options }) => ({ name, options }));
  }

  /** Remove every feature, last enabled first; every remover runs even if one throws (the first error is rethrown). */
  clear(): void {
    let first: unknown = null;
    while (this.#active.length) {
      const f = this.#active.pop()!;
      try {
        f.remove();
      } catch (e) {
        first ??= e;
      }
    }
    if (first !== null) throw first;
  }
}

/** "name(k=v k=v); other" — no commas, so it fits one A1111 "Key: value" field. */
export function formatFeatures(features: readonly ActiveFeature[]): string {
  return features
    .map((f) => {
      const opts = Object.entries(f.options)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => `${k}=${formatValue(v)}`);
      return opts.length ? `${f.name}(${opts.join(" ")})` : f.name;
    })
    .join("; ");
}

function formatValue(v: unknown): string {
  const s = typeof v === "string" ? v : JSON.stringify(v) ?? String(v);
  return /[\s,;()=]/.test(s) ? JSON.stringify(s).replace(/,/g, "\\u002c") : s;
}
