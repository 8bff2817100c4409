// Where the CUDA libraries are: the one place that searches for libcudart, libcublas, libcudnn, libcublasLt
// (optional: linear layers with epilogues when present) and our kernels library, and for the CUDA toolkit (nvcc) that builds kernels. Order: $BD_CUDA_LIB_DIR, $CUDA_HOME /
// $CUDA_PATH, /usr/local/cuda, the `ldconfig -p` cache, then the nvidia/*/lib folders of Python site-packages
// (PyTorch's wheels ship cuBLAS and cuDNN there, so a machine with PyTorch needs nothing more).
// BD_CUDA_EMULATE=1 points everything at the emulated device in kernels/build/emu/ (ARCHITECTURE.md decision 4);
// with BD_EMU_CHECK=memcheck,racecheck (or one of them) its kernels library is the check variant in
// kernels/build/emu-check/ (ARCHITECTURE.md decision 18; the checks apply to the emulated device only).
// A failed search names every place it looked and what to install.

import { existsSync, readdirSync, realpathSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";

export type CudaLibrary = "cudart" | "cublas" | "cudnn" | "cublasLt" | "kernels";
/** The libraries device "cuda" cannot work without; cublasLt is used when found (the cuBLAS path otherwise). */
export type RequiredCudaLibrary = Exclude<CudaLibrary, "cublasLt">;
export const OPTIONAL_LIBRARIES: readonly CudaLibrary[] = ["cublasLt"];
type Env = Readonly<Record<string, string | undefined>>;

/** The project root (this file is ffi/cuda/discover.ts). */
export const PROJECT_ROOT = resolve(import.meta.dir, "../..");
export const KERNELS_BUILD_DIR = join(PROJECT_ROOT, "kernels", "build");
export const EMULATED_DIR = join(KERNELS_BUILD_DIR, "emu");
/** The emulated kernels built for the checking mode (memcheck / racecheck). */
export const EMULATED_CHECK_DIR = join(KERNELS_BUILD_DIR, "emu-check");

export type EmuChecker = "memcheck" | "racecheck";
const EMU_CHECKERS: readonly EmuChecker[] = ["memcheck", "racecheck"];
/** The checkers BD_EMU_CHECK asks for ("memcheck", "racecheck", comma-separated), or null when it is unset or empty. */
export function emuCheckers(env: Env = process.env): EmuChecker[] | null {
  const v = env.BD_EMU_CHECK?.trim();
  if (!v) return null;
  const names = v.split(",").map((s) => s.trim()).filter(Boolean);
  const bad = names.filter((n) => !EMU_CHECKERS.includes(n as EmuChecker));
  if (bad.length)
    throw new Error(`BD_EMU_CHECK=${v}: unknown checker ${bad.map((b) => `"${b}"`).join(", ")}; use memcheck, racecheck or memcheck,racecheck (or unset it)`);
  return [...new Set(names as EmuChecker[])];
}

/** File names per library, preferred first (CUDA 13, 12, 11; cuDNN 9, 8). */
export const LIBRARY_FILES: Record<CudaLibrary, readonly string[]> = {
  cudart: ["libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0"],
  cublas: ["libcublas.so", "libcublas.so.13", "libcublas.so.12", "libcublas.so.11"],
  cudnn: ["libcudnn.so", "libcudnn.so.9", "libcudnn.so.8"],
  cublasLt: ["libcublasLt.so", "libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so.11"],
  kernels: ["libbdkernels.so"],
};
/** The site-packages folder (nvidia/<pkg>/lib) of each library in NVIDIA's pip wheels. */
const WHEEL_PACKAGE: Partial<Record<CudaLibrary, string>> = { cudart: "cuda_runtime", cublas: "cublas", cudnn: "cudnn", cublasLt: "cublas" };

const INSTALL_HINT: Record<CudaLibrary, string> = {
  cudart:
    "install the NVIDIA driver and the CUDA runtime (the CUDA toolkit from https://developer.nvidia.com/cuda-downloads, " +
    "`apt-get install cuda-cudart-12-x`, or `pip install nvidia-cuda-runtime-cu12`)",
  cublas: "install cuBLAS (part of the CUDA toolkit; or `pip install nvidia-cublas-cu12`, which PyTorch's CUDA wheels include)",
  cublasLt: "install cuBLASLt (libcublasLt ships beside libcublas in the CUDA toolkit and in `pip install nvidia-cublas-cu12`)",
  cudnn: "install cuDNN 8 or 9 (https://developer.nvidia.com/cudnn, or `pip install nvidia-cudnn-cu12`, which PyTorch's CUDA wheels include)",
  kernels: "build it with `bun scripts/build-kernels.ts` (needs nvcc from the CUDA toolkit), or set BD_KERNELS_LIB to a prebuilt libbdkernels.so",
};

export interface LibraryLocation {
  library: CudaLibrary;
  /** The file found, or null. */
  path: string | null;
  /** Which rule found it ("BD_CUDA_LIB_DIR", "CUDA_HOME", "ldconfig", "site-packages", ...). */
  source: string | null;
  /** Every place looked at, in order, as "rule: folder". */
  searched: string[];
}

export interface CudaDiscovery {
  emulated: boolean;
  libraries: Record<CudaLibrary, LibraryLocation>;
  /** libcuda.so.1 (the driver) when the ldconfig cache or a standard folder has it; always null when emulated. */
  driver: string | null;
}

/** `ldconfig -p` as a map from file name to paths (memoised: the cache does not change during a run). */
let ldcache: Map<string, string[]> | undefined;
export function ldconfigCache(): Map<string, string[]> {
  if (ldcache) return ldcache;
  ldcache = new Map();
  for (const exe of ["ldconfig", "/sbin/ldconfig", "/usr/sbin/ldconfig"]) {
    try {
      const r = Bun.spawnSync([exe, "-p"], { stdout: "pipe", stderr: "ignore" });
      if (r.exitCode !== 0) continue;
      for (const line of r.stdout.toString().split("\n")) {
        const m = /^\s*(\S+)\s+\(([^)]*)\)\s+=>\s+(\S+)/.exec(line);
        if (!m || (process.arch === "x64" && !m[2]!.includes("x86-64"))) continue;
        const list = ldcache.get(m[1]!) ?? [];
        list.push(m[3]!);
        ldcache.set(m[1]!, list);
      }
      break;
    } catch {
      // not on this system
    }
  }
  return ldcache;
}

/** Python site-packages folders in the usual places (system, /usr/local, user, virtualenv, conda). */
export function sitePackages(env: Env = process.env): string[] {
  const bases = ["/usr/lib", "/usr/local/lib", join(env.HOME ?? homedir(), ".local/lib"), "/opt/conda/lib"];
  for (const v of [env.VIRTUAL_ENV, env.CONDA_PREFIX]) if (v) bases.unshift(join(v, "lib"));
  const out: string[] = [];
  for (const base of bases) {
    let entries: string[];
    try {
      entries = readdirSync(base).filter((e) => /^python3(\.\d+)?$/.test(e));
    } catch {
      continue;
    }
    for (const py of entries)
      for (const kind of ["site-packages", "dist-packages"]) {
        const dir = join(base, py, kind);
        if (existsSync(dir)) out.push(dir);
      }
  }
  return out;
}

const arch = process.arch === "arm64" ? "sbsa-linux" : "x86_64-linux";
const toolkitLibDirs = (root: string) => [join(root, "lib64"), join(root, "lib"), join(root, "targets", arch, "lib")];

/** Folders to search, in order, as [rule, folder]. */
function searchDirs(library: CudaLibrary, env: Env): [string, string][] {
  const dirs: [string, string][] = [];
  for (const d of (env.BD_CUDA_LIB_DIR ?? "").split(":").filter(Boolean)) dirs.push(["BD_CUDA_LIB_DIR", d]);
  if (library === "kernels") {
    dirs.push(["kernels/build", KERNELS_BUILD_DIR]);
    return dirs;
  }
  for (const v of ["CUDA_HOME", "CUDA_PATH"]) if (env[v]) for (const d of toolkitLibDirs(env[v]!)) dirs.push([v, d]);
  for (const d of toolkitLibDirs("/usr/local/cuda")) dirs.push(["/usr/local/cuda", d]);
  return dirs;
}

function locate(library: CudaLibrary, env: Env): LibraryLocation {
  const files = LIBRARY_FILES[library];
  const searched: string[] = [];
  const found = (path: string, source: string): LibraryLocation => ({ library, path, source, searched });
  if (library === "kernels" && env.BD_KERNELS_LIB) {
    searched.push(`BD_KERNELS_LIB: ${env.BD_KERNELS_LIB}`);
    if (existsSync(env.BD_KERNELS_LIB)) return found(env.BD_KERNELS_LIB, "BD_KERNELS_LIB");
  }
  for (const [rule, dir] of searchDirs(library, env)) {
    searched.push(`${rule}: ${dir}`);
    for (const f of files) if (existsSync(join(dir, f))) return found(join(dir, f), rule);
  }
  if (library === "kernels") return { library, path: null, source: null, searched };
  searched.push(`ldconfig cache: ${files.join(", ")}`);
  for (const f of files) {
    const hit = ldconfigCache().get(f)?.find((p) => existsSync(p));
    if (hit) return found(hit, "ldconfig");
  }
  for (const sp of sitePackages(env)) {
    const dirs = [join(sp, "nvidia", WHEEL_PACKAGE[library]!, "lib"), join(sp, "torch", "lib")];
    for (const dir of dirs) {
      searched.push(`site-packages: ${dir}`);
      for (const f of files) if (existsSync(join(dir, f))) return found(join(dir, f), "site-packages");
    }
  }
  return { library, path: null, source: null, searched };
}

export interface DiscoverOptions {
  /** Use the emulated device (default: BD_CUDA_EMULATE=1 in `env`). */
  emulate?: boolean;
  env?: Env;
}

export function isEmulated(env: Env = process.env): boolean {
  return env.BD_CUDA_EMULATE === "1" || env.BD_CUDA_EMULATE === "true";
}

/** Find every library (nothing is loaded). */
export function discoverCuda(opts: DiscoverOptions = {}): CudaDiscovery {
  const env = opts.env ?? process.env;
  const emulated = opts.emulate ?? isEmulated(env);
  const names: CudaLibrary[] = ["cudart", "cublas", "cudnn", "cublasLt", "kernels"];
  const libraries = {} as Record<CudaLibrary, LibraryLocation>;
  if (emulated) {
    const checked = emuCheckers(env) !== null;
    for (const library of names) {
      const dir = library === "kernels" && checked ? EMULATED_CHECK_DIR : EMULATED_DIR;
      const path = join(dir, LIBRARY_FILES[library][0]!);
      const ok = existsSync(path);
      const rule = dir === EMULATED_DIR ? "BD_CUDA_EMULATE" : "BD_EMU_CHECK";
      libraries[library] = { library, path: ok ? path : null, source: ok ? rule : null, searched: [`${rule}: ${dir}`] };
    }
    return { emulated, libraries, driver: null };
  }
  for (const library of names) libraries[library] = locate(library, env);
  const driver =
    ldconfigCache().get("libcuda.so.1")?.find((p) => existsSync(p)) ??
    ["/usr/lib/x86_64-linux-gnu/libcuda.so.1", "/usr/lib64/libcuda.so.1", "/usr/lib/wsl/lib/libcuda.so.1"].find((p) => existsSync(p)) ??
    null;
  return { emulated, libraries, driver };
}

/** Some library could not be found; the message lists where we looked and what to install. */
export class CudaNotFoundError extends Error {
  constructor(readonly missing: LibraryLocation[], readonly emulated: boolean) {
    super(
      missing
        .map((m) => {
          const how = emulated
            ? m.source === null && m.searched[0]?.startsWith("BD_EMU_CHECK")
              ? "build the checked emulated kernels with `bun scripts/build-kernels.ts --emu-only --emu-check` (needs g++)"
              : "build the emulated device with `bun scripts/build-kernels.ts --emu-only` (needs g++)"
            : INSTALL_HINT[m.library];
          return `${m.library} (${LIBRARY_FILES[m.library].join(" | ")}) not found. Looked in:\n  ${m.searched.join("\n  ")}\nTo fix: ${how}` +
            (emulated ? "" : ", or point BD_CUDA_LIB_DIR at the folder that has it.");
        })
        .join("\n") + (emulated ? "" : "\nWithout a GPU, BD_CUDA_EMULATE=1 runs the CUDA backend on the emulated device."),
    );
    this.name = "CudaNotFoundError";
  }
}

/** The paths of `names`, or a CudaNotFoundError naming every missing one. */
export function requireLibraries<N extends CudaLibrary>(d: CudaDiscovery, names: readonly N[]): Record<N, string> {
  const missing = names.map((n) => d.libraries[n]).filter((l) => !l.path);
  if (missing.length) throw new CudaNotFoundError(missing, d.emulated);
  return Object.fromEntries(names.map((n) => [n, d.libraries[n].path!])) as Record<N, string>;
}

// ---- the toolkit (for building kernels)

export interface CudaToolkit {
  nvcc: string;
  /** The toolkit root (with include/ and lib64/). */
  root: string;
  /** e.g. "13.0" */
  version: string;
}

/** nvcc and its toolkit root ($BD_NVCC, nvcc on PATH, $CUDA_HOME/bin, /usr/local/cuda/bin), or null; BD_NVCC=none: null. */
export function findCudaToolkit(env: Env = process.env): CudaToolkit | null {
  if (env.BD_NVCC === "none") return null;
  const candidates = [env.BD_NVCC, Bun.which("nvcc", { PATH: env.PATH ?? "" }) ?? undefined, env.CUDA_HOME && join(env.CUDA_HOME, "bin/nvcc"),
    env.CUDA_PATH && join(env.CUDA_PATH, "bin/nvcc"), "/usr/local/cuda/bin/nvcc"];
  for (const nvcc of candidates) {
    if (!nvcc || !existsSync(nvcc)) continue;
    const v = Bun.spawnSync([nvcc, "--version"], { stdout: "pipe", stderr: "pipe" });
    const version = /release (\d+\.\d+)/.exec(v.stdout.toString())?.[1];
    if (v.exitCode !== 0 || !version) continue;
    // nvcc may be a wrapper script: ask it where it lives (_HERE_ in --dryrun), else use its real path
    const dry = Bun.spawnSync([nvcc, "--dryrun", "-x", "cu", "-c", "/dev/null", "-o", "/dev/null"], { stdout: "pipe", stderr: "pipe" });
    const here = /_HERE_=(\S+)/.exec(dry.stdout.toString() + dry.stderr.toString())?.[1];
    const roots = [here && dirname(here), dirname(dirname(realpathSync(nvcc))), env.CUDA_HOME, "/usr/local/cuda"];
    const root = roots.find((r) => r && existsSync(join(r, "include", "cuda_runtime_api.h")));
    if (root) return { nvcc, root, version };
  }
  return null;
}
