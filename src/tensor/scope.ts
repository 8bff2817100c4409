// Memory scopes (ARCHITECTURE decision 1): tidy(fn) disposes every tensor created inside fn
// except those it returns (or marks with keep); scopes nest. A FinalizationRegistry only
// warns about storages garbage-collected while a tensor (or view) of them was never disposed.

export interface Disposable {
  dispose(): void;
  readonly isDisposed: boolean;
}

// A scope is an array, not a Set: tracking is one push per tensor on the hot path (docs/architecture.md, "Host
// overhead"). keep() does not search the scopes; a scope skips kept tensors when it ends. An entry may repeat
// (a tensor returned from a nested scope and tracked again); dispose() is idempotent.
const scopes: Disposable[][] = [];
const kept = new WeakSet<Disposable>();

/** Called by every new tensor: it belongs to the innermost open scope, if any. */
export function track(t: Disposable): void {
  const n = scopes.length;
  if (n > 0) scopes[n - 1]!.push(t);
}

/** Exempt a tensor from the scopes it was created in (the caller now owns it). */
export function keep<T extends Disposable>(t: T): T {
  kept.add(t);
  return t;
}

function collect(value: unknown, into: Set<Disposable>, seen: Set<unknown>): void {
  if (value === null || typeof value !== "object" || seen.has(value)) return;
  seen.add(value);
  if (isDisposable(value)) {
    into.add(value);
    return;
  }
  if (Array.isArray(value)) {
    for (const v of value) collect(v, into, seen);
  } else if (value instanceof Map) {
    for (const v of value.values()) collect(v, into, seen);
  } else if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collect(v, into, seen);
  }
}

function isDisposable(v: object): v is Disposable {
  return typeof (v as Disposable).dispose === "function" && "isDisposed" in v;
}

/** The disposables reachable from a tidy result; a lone disposable (the common case) without the walk. */
function survivorsOf(result: unknown): Set<Disposable> | Disposable | null {
  if (result === null || typeof result !== "object") return null;
  if (isDisposable(result)) return result;
  const into = new Set<Disposable>();
  collect(result, into, new Set());
  return into;
}

/**
 * Run fn; dispose the tensors it created except those reachable from its result (through
 * arrays, plain objects and Maps) and those passed to keep(). Returned tensors move to the
 * enclosing scope. fn must be synchronous: an async scope could not know when to end.
 */
export function tidy<T>(fn: () => T): T {
  const scope: Disposable[] = [];
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    scopes.pop();
    for (const t of scope) t.dispose();
    throw e;
  }
  scopes.pop();
  if (result instanceof Promise) {
    for (const t of scope) t.dispose();
    throw new TypeError("tidy(fn): fn must be synchronous (it returned a Promise); use explicit dispose() in async code");
  }
  const survivors = survivorsOf(result);
  const parent = scopes[scopes.length - 1];
  for (const t of scope) {
    const survives = survivors !== null && (survivors === t || (survivors instanceof Set && survivors.has(t)));
    if (survives || kept.has(t)) {
      if (parent && !kept.has(t)) parent.push(t);
    } else t.dispose();
  }
  return result;
}

/** Number of open tidy scopes (for tests). */
export function scopeDepth(): number {
  return scopes.length;
}

let leakWarned = false;
/** What a leak warning names: dtype, shape, device (formatted only when a warning is shown). */
type LeakInfo = readonly [string, readonly number[], string];
const leakRegistry = new FinalizationRegistry<LeakInfo>(([dtype, shape, device]) => {
  if (leakWarned || process.env.BD_NO_LEAK_WARNING) return;
  leakWarned = true;
  const description = `${dtype}[${shape.join(", ")}] on ${device}`;
  console.warn(
    `bun-diffusion: a tensor (${description}) was garbage-collected without dispose(); its device memory was counted as live ` +
      "until now. Wrap temporary work in tidy(() => ...) or call dispose(). (Shown once.)",
  );
});

/** Warn once if `owner` is garbage-collected before unwatchLeak(owner); the owner is its own unregister token. */
export function watchForLeak(owner: object, dtype: string, shape: readonly number[], device: string): void {
  leakRegistry.register(owner, [dtype, shape, device], owner);
}

export function unwatchLeak(owner: object): void {
  leakRegistry.unregister(owner);
}
