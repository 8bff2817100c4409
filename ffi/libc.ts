// libc bindings through bun:ffi: setenv / getenv / unsetenv on the C environment of this process.
//
// Why: Bun's `process.env` is a JavaScript-side copy. Assigning to it does NOT reach the C `environ`
// that a library loaded later with dlopen reads through getenv() (checked on Bun 1.4.5: after
// `process.env.X = "1"`, libc getenv("X") returns NULL). Native libraries that read their settings at load
// time (OpenBLAS: OPENBLAS_CORETYPE, OPENBLAS_NUM_THREADS) must be configured here, before they are opened.

import { dlopen, FFIType, CString, type Pointer } from "bun:ffi";

const CANDIDATES: readonly string[] = [
  "libc.so.6", // glibc (Linux)
  "libc.musl-x86_64.so.1",
  "libc.musl-aarch64.so.1",
  "libc.so",
  "/usr/lib/libSystem.B.dylib", // macOS
];

const SYMBOLS = {
  setenv: { args: [FFIType.cstring, FFIType.cstring, FFIType.i32], returns: FFIType.i32 },
  getenv: { args: [FFIType.cstring], returns: FFIType.ptr },
  unsetenv: { args: [FFIType.cstring], returns: FFIType.i32 },
} as const;

type LibcSymbols = ReturnType<typeof dlopen<typeof SYMBOLS>>["symbols"];

let cached: LibcSymbols | null | undefined;

function libc(): LibcSymbols | null {
  if (cached !== undefined) return cached;
  cached = null;
  for (const name of CANDIDATES) {
    try {
      cached = dlopen(name, SYMBOLS).symbols;
      break;
    } catch {
      // try the next name
    }
  }
  return cached;
}

/** NUL-terminated UTF-8 bytes for a C string argument. */
function cstr(s: string): Buffer {
  return Buffer.from(s + "\0", "utf8");
}

/** True when libc could be opened (setenv and friends work). */
export function libcAvailable(): boolean {
  return libc() !== null;
}

/** getenv() as the C side sees it; undefined when unset or libc is unavailable. */
export function getCEnv(name: string): string | undefined {
  const lc = libc();
  if (!lc) return undefined;
  const p = lc.getenv(cstr(name)) as Pointer | null;
  return p ? new CString(p).toString() : undefined;
}

/**
 * setenv() on the C environment, and mirror the value into `process.env` so both views agree.
 * With overwrite=false an existing C value is kept. Returns false when libc is unavailable or setenv fails.
 */
export function setCEnv(name: string, value: string, overwrite = true): boolean {
  const lc = libc();
  if (!lc) return false;
  if (lc.setenv(cstr(name), cstr(value), overwrite ? 1 : 0) !== 0) return false;
  const now = getCEnv(name);
  if (now !== undefined) process.env[name] = now;
  return true;
}

/** unsetenv() on the C environment and delete from `process.env`. */
export function unsetCEnv(name: string): boolean {
  const lc = libc();
  delete process.env[name];
  if (!lc) return false;
  return lc.unsetenv(cstr(name)) === 0;
}
