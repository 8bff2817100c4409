// The one adapter between runtime-neutral symbol tables (cudart.ts, cublas.ts, cudnn.ts, kernels.ts) and
// bun:ffi: opens a library, binds the table's symbols (optional ones may be missing), and turns non-zero status
// codes into named errors. A Deno adapter would reimplement openLibrary() over Deno.dlopen; the tables stay.

import { dlopen, FFIType } from "bun:ffi";

/** C types a table may use. "ptr" covers device pointers (numbers), host buffers (typed arrays) and NULL. */
export type CType = "void" | "i32" | "u32" | "i64" | "u64" | "f32" | "f64" | "ptr" | "cstring";

export interface SymbolSpec {
  readonly args: readonly CType[];
  readonly returns: CType;
  /** Absent in some versions of the library: bound when present, `has(name)` says which. */
  readonly optional?: boolean;
}
export type SymbolTable = Readonly<Record<string, SymbolSpec>>;

/** What a bound function accepts and returns, per C type. */
export type ArgValue = number | bigint | NodeJS.TypedArray | null;
type Ret<T extends CType> = T extends "void"
  ? undefined
  : T extends "cstring"
    ? string | null
    : T extends "i64" | "u64"
      ? number | bigint
      : T extends "ptr"
        ? number | null
        : number;
export type BoundSymbols<T extends SymbolTable> = { readonly [K in keyof T]: (...args: ArgValue[]) => Ret<T[K]["returns"]> };

export interface NativeLibrary<T extends SymbolTable> {
  /** The path dlopen accepted. */
  readonly path: string;
  readonly symbols: BoundSymbols<T>;
  /** False for an optional symbol this library lacks. */
  has(name: keyof T & string): boolean;
  close(): void;
}

/** dlopen failed (file missing, a dependency missing, or a required symbol absent). */
export class CudaLibraryLoadError extends Error {
  constructor(readonly library: string, readonly path: string, readonly reason: string) {
    super(`cannot load ${library} from ${path}: ${reason}`);
    this.name = "CudaLibraryLoadError";
  }
}

/** A CUDA / cuBLAS / cuDNN / kernel call returned an error status. */
export class CudaError extends Error {
  constructor(
    readonly library: string,
    /** The C function that failed, e.g. "cudaMalloc". */
    readonly fn: string,
    readonly status: number,
    /** The status's name, e.g. "cudaErrorMemoryAllocation". */
    readonly statusName: string,
    /** The library's message for it, e.g. "out of memory". */
    readonly detail: string,
    readonly context?: string,
  ) {
    super(`${fn} failed: ${statusName} (${status}): ${detail}${context ? ` [${context}]` : ""}`);
    this.name = "CudaError";
  }
}

export type StatusDescriber = (status: number) => { name: string; message: string };
/** check(status, "cudaMalloc", "1024 bytes") throws a CudaError unless status is 0. */
export type StatusCheck = (status: number, fn: string, context?: string) => void;

export function makeCheck(library: string, describe: StatusDescriber): StatusCheck {
  return (status, fn, context) => {
    if (status === 0) return;
    const { name, message } = describe(status);
    throw new CudaError(library, fn, status, name, message, context);
  };
}

const FFI: Record<CType, FFIType> = {
  void: FFIType.void,
  i32: FFIType.i32,
  u32: FFIType.u32,
  i64: FFIType.i64,
  u64: FFIType.u64_fast, // size_t results as numbers when they fit
  f32: FFIType.f32,
  f64: FFIType.f64,
  ptr: FFIType.ptr,
  cstring: FFIType.cstring,
};

function toBun(specs: Record<string, SymbolSpec>) {
  const out: Record<string, { args: FFIType[]; returns: FFIType }> = {};
  for (const [name, s] of Object.entries(specs)) out[name] = { args: s.args.map((a) => FFI[a]), returns: FFI[s.returns] };
  return out;
}

/** Open `path` and bind every symbol of `table`; `library` names it in errors ("cudart", "cuBLAS", ...). */
export function openLibrary<T extends SymbolTable>(library: string, path: string, table: T): NativeLibrary<T> {
  const required: Record<string, SymbolSpec> = {};
  const optional: string[] = [];
  for (const [name, spec] of Object.entries(table)) {
    if (spec.optional) optional.push(name);
    else required[name] = spec;
  }
  let lib: { symbols: Record<string, unknown>; close(): void };
  try {
    lib = dlopen(path, toBun(required));
  } catch (e) {
    throw new CudaLibraryLoadError(library, path, (e as Error).message.split("\n")[0]!);
  }
  const symbols: Record<string, unknown> = { ...lib.symbols };
  const extra: { close(): void }[] = [];
  for (const name of optional) {
    try {
      const one = dlopen(path, toBun({ [name]: table[name]! })); // dlopen is refcounted: the same mapping
      symbols[name] = one.symbols[name];
      extra.push(one);
    } catch {
      // absent in this version
    }
  }
  return {
    path,
    symbols: symbols as BoundSymbols<T>,
    has: (name) => typeof symbols[name] === "function",
    close() {
      for (const e of extra) e.close();
      lib.close();
    },
  };
}
