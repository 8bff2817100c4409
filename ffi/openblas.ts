// OpenBLAS bindings through bun:ffi: cblas_sgemm and the openblas_* thread/introspection calls, plus library
// discovery and load-time configuration (OPENBLAS_CORETYPE from CPU flags, OPENBLAS_NUM_THREADS).
//
// Debian's libopenblas0 0.3.21 is a DYNAMIC_ARCH build that does not recognise newer CPUs and falls back to
// slow SSE3 "Prescott" kernels (26–33 GFLOP/s vs ~150 per core on 1024³ here). OpenBLAS reads its
// environment in a load-time constructor, and Bun's process.env does not reach the C environment (see
// ffi/libc.ts), so we setenv through libc BEFORE dlopen. A user-set OPENBLAS_CORETYPE is respected.
// cblas_sgemm_batch does not exist in 0.3.21; callers loop over cblas_sgemm.

import { dlopen, FFIType, type Pointer } from "bun:ffi";
import { getCEnv, setCEnv } from "./libc.ts";
import { cpuInfo } from "./cpuid.ts";

/** CBLAS enum values (cblas.h). */
export const CblasRowMajor = 101;
export const CblasColMajor = 102;
export const CblasNoTrans = 111;
export const CblasTrans = 112;

const SYMBOLS = {
  // void cblas_sgemm(order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc); blasint = int32
  cblas_sgemm: {
    args: [
      FFIType.i32, FFIType.i32, FFIType.i32, FFIType.i32, FFIType.i32, FFIType.i32, FFIType.f32,
      FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.i32, FFIType.f32, FFIType.ptr, FFIType.i32,
    ],
    returns: FFIType.void,
  },
  openblas_set_num_threads: { args: [FFIType.i32], returns: FFIType.void },
  openblas_get_num_threads: { args: [], returns: FFIType.i32 },
  openblas_get_corename: { args: [], returns: FFIType.cstring },
  openblas_get_config: { args: [], returns: FFIType.cstring },
} as const;

export interface OpenBlas {
  /** The path or name that dlopen accepted. */
  readonly path: string;
  /** Raw cblas_sgemm; pointers are byte addresses (ptr(typedArray, byteOffset)). */
  readonly sgemm: (
    order: number, transA: number, transB: number, M: number, N: number, K: number, alpha: number,
    A: Pointer, lda: number, B: Pointer, ldb: number, beta: number, C: Pointer, ldc: number,
  ) => void;
  setNumThreads(n: number): void;
  getNumThreads(): number;
  /** Kernel family in use, e.g. "SkylakeX", "Haswell", "Prescott". */
  corename(): string;
  /** Build configuration string, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY SkylakeX MAX_THREADS=64". */
  config(): string;
}

export interface OpenBlasStatus {
  loaded: boolean;
  path?: string;
  corename?: string;
  threads?: number;
  config?: string;
  /** OPENBLAS_CORETYPE as set before loading, and whether we chose it ("auto") or the user did. */
  coretype?: { value: string; source: "user" | "auto" };
  /** Why it did not load, and what to install. */
  reason?: string;
}

/** Default search order after $BD_OPENBLAS_LIB. */
export const OPENBLAS_CANDIDATES: readonly string[] = [
  "libopenblas.so.0",
  "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
  "libopenblas.so",
  "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
];

/**
 * OPENBLAS_CORETYPE for a set of CPU flags: AVX-512 (F+BW+VL+DQ) → "SkylakeX", AVX2+FMA → "Haswell",
 * otherwise undefined (let OpenBLAS detect). Exposed for tests.
 */
export function coreTypeForFlags(flags: ReadonlySet<string>): string | undefined {
  if (["avx512f", "avx512bw", "avx512vl", "avx512dq"].every((f) => flags.has(f))) return "SkylakeX";
  if (flags.has("avx2") && flags.has("fma")) return "Haswell";
  return undefined;
}

let cached: OpenBlas | null | undefined;
let status: OpenBlasStatus = { loaded: false, reason: "not loaded yet" };

/** Set the load-time environment OpenBLAS reads in its constructor. Returns the coretype decision. */
function configureEnvironment(): OpenBlasStatus["coretype"] {
  let coretype: OpenBlasStatus["coretype"];
  // A value set in the shell is in the C environment; one set from JS only in process.env — honour both.
  const userCore = getCEnv("OPENBLAS_CORETYPE") ?? process.env.OPENBLAS_CORETYPE;
  if (userCore) {
    setCEnv("OPENBLAS_CORETYPE", userCore);
    coretype = { value: userCore, source: "user" };
  } else {
    const auto = coreTypeForFlags(cpuInfo().flags);
    if (auto && setCEnv("OPENBLAS_CORETYPE", auto)) coretype = { value: auto, source: "auto" };
  }
  // OpenBLAS's own precedence: OPENBLAS_NUM_THREADS > GOTO_NUM_THREADS > OMP_NUM_THREADS.
  const threadVars = ["OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"];
  for (const v of threadVars) {
    const js = process.env[v];
    if (getCEnv(v) === undefined && js !== undefined) setCEnv(v, js); // set from JS only: pass it on
  }
  if (threadVars.every((v) => getCEnv(v) === undefined)) {
    setCEnv("OPENBLAS_NUM_THREADS", String(cpuInfo().cpus));
  }
  return coretype;
}

function load(): OpenBlas | null {
  const coretype = configureEnvironment();
  const env = process.env.BD_OPENBLAS_LIB;
  const candidates = env ? [env, ...OPENBLAS_CANDIDATES] : [...OPENBLAS_CANDIDATES];
  const errors: string[] = [];
  for (const path of candidates) {
    let lib: ReturnType<typeof dlopen<typeof SYMBOLS>>;
    try {
      lib = dlopen(path, SYMBOLS);
    } catch (e) {
      errors.push(`${path}: ${(e as Error).message.split("\n")[0]}`);
      continue;
    }
    const s = lib.symbols;
    const blas: OpenBlas = {
      path,
      sgemm: s.cblas_sgemm as OpenBlas["sgemm"],
      setNumThreads: (n) => s.openblas_set_num_threads(Math.max(1, Math.floor(n))),
      getNumThreads: () => s.openblas_get_num_threads(),
      corename: () => String(s.openblas_get_corename()).trim(),
      config: () => String(s.openblas_get_config()).trim(),
    };
    status = {
      loaded: true,
      path,
      corename: blas.corename(),
      threads: blas.getNumThreads(),
      config: blas.config(),
      coretype,
    };
    return blas;
  }
  status = {
    loaded: false,
    coretype,
    reason:
      `OpenBLAS not found (tried ${errors.join("; ")}). The CPU backend falls back to a slower TypeScript ` +
      `GEMM. Install it with \`apt-get install libopenblas0\` (Debian/Ubuntu) or point BD_OPENBLAS_LIB at ` +
      `libopenblas.so.`,
  };
  return null;
}

/** The loaded OpenBLAS, or null when unavailable (lazy; the first call configures the environment and loads). */
export function getOpenBlas(): OpenBlas | null {
  if (cached === undefined) cached = load();
  return cached;
}

/** Load state for `bun-diffusion info`. Does not trigger loading. */
export function openBlasStatus(): OpenBlasStatus {
  if (cached) return { ...status, threads: cached.getNumThreads() };
  return { ...status };
}
