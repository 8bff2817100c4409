#!/usr/bin/env bun
// Builds our CUDA kernels from the same kernels/*.cu twice (ARCHITECTURE.md decisions 2 and 4):
//   real:     nvcc, one object per .cu with SASS for sm_75/80/86/89/90 and, where this nvcc supports them
//             (`nvcc --list-gpu-code`), sm_100/sm_120, plus PTX of the newest of them for later GPUs (explicit
//             -gencode); spill warnings (-Xptxas -warn-spills) reported; linked against the *shared* CUDA runtime
//             (-cudart shared: libcudart.so.<major> is NEEDED, so the process has one runtime, the one
//             ffi/cuda/discover.ts found and loaded first) -> kernels/build/libbdkernels.so
//   emulated: g++ against kernels/emu (CPU fibers) -> kernels/build/emu/libbdkernels.so, plus the shim libraries
//             libcudart.so, libcublas.so, libcudnn.so, libcublasLt.so in the same folder (BD_CUDA_EMULATE=1 uses them)
//   checked:  the emulated kernels again with the checking mode's instrumentation (EMU_CHECK_FLAGS) and the
//             checker kernels/emu/check*.cpp -> kernels/build/emu-check/libbdkernels.so (BD_EMU_CHECK selects it;
//             ARCHITECTURE.md decision 18); built when BD_EMU_CHECK is set or with --emu-check
// Every object and library is rebuilt only when its inputs (sources, headers, flags, compiler) change: a hash
// of them is stored beside each output. Without nvcc only the emulated build runs, and says so. With the CUDA
// headers at hand the shims are also checked against them (abi_check.cpp and a compile of each shim against the
// real header). Shared libraries are checked for static TLS, which Bun cannot dlopen.
//
// Usage: bun scripts/build-kernels.ts [--emu-only | --real-only] [--emu-check] [--force] [--jobs N] [--json]

import { createHash } from "node:crypto";
import { availableParallelism } from "node:os";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { EMULATED_CHECK_DIR, EMULATED_DIR, KERNELS_BUILD_DIR, PROJECT_ROOT, emuCheckers, findCudaToolkit, type CudaToolkit } from "../ffi/cuda/discover.ts";

const KERNELS = join(PROJECT_ROOT, "kernels");
const EMU_SRC = join(KERNELS, "emu");
/** SASS targets: every nvcc that builds us has these. */
export const ARCHS = [75, 80, 86, 89, 90];
/** Added where `nvcc --list-gpu-code` offers them (CUDA 12.8+: Blackwell data-centre and consumer parts). */
export const OPTIONAL_ARCHS = [100, 120];

/** The SASS architectures this nvcc builds: ARCHS plus the OPTIONAL_ARCHS it lists. */
export function targetArchs(nvcc: string): number[] {
  const r = Bun.spawnSync([nvcc, "--list-gpu-code"], { stdout: "pipe", stderr: "pipe" });
  const listed = new Set(r.exitCode === 0 ? r.stdout.toString().split(/\s+/).filter((c) => /^sm_\d+$/.test(c)).map((c) => Number(c.slice(3))) : []);
  return [...ARCHS, ...OPTIONAL_ARCHS.filter((a) => listed.has(a))];
}
/** -gencode flags: SASS for each arch, PTX of the newest (JIT-compiled by drivers for GPUs newer than all of them). */
export function gencodeFlags(archs: readonly number[]): string[] {
  const newest = Math.max(...archs);
  return [...archs.flatMap((a) => ["-gencode", `arch=compute_${a},code=sm_${a}`]), "-gencode", `arch=compute_${newest},code=compute_${newest}`];
}

/** g++ flags of the emulated kernels (x86-64; elsewhere also -DCUDA_EMU_UCONTEXT). */
export const EMU_FLAGS = ["-std=c++17", "-O2", "-fPIC", "-mtls-dialect=gnu2", "-fvisibility=hidden", "-Wall", "-Wno-unknown-pragmas", "-Wno-unused-parameter",
  ...(process.arch !== "x64" ? ["-DCUDA_EMU_UCONTEXT"] : [])];
/**
 * Added for the check variant's kernel objects: g++'s ThreadSanitizer *instrumentation* (a call before every load and
 * store, to callbacks that kernels/emu/check.cpp defines; no TSan runtime is linked), without function entry/exit calls.
 */
export const EMU_CHECK_FLAGS = ["-DCUDA_EMU_CHECK=1", "-fsanitize=thread", "--param", "tsan-instrument-func-entry-exit=0"];
/** The checker, linked uninstrumented into every check-variant library: kernels/emu/check*.cpp. */
export const checkSources = (): string[] => listFiles(join(PROJECT_ROOT, "kernels", "emu"), ".cpp").filter((f) => basename(f).startsWith("check"));

export interface BuildOptions {
  emu?: boolean;
  real?: boolean;
  /** Also the check variant of the emulated kernels (default: BD_EMU_CHECK is set). */
  check?: boolean;
  force?: boolean;
  /** Compilations in parallel (default min(2, CPUs)). */
  jobs?: number;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}
export interface BuildStep {
  target: string;
  action: "built" | "cached" | "failed" | "checked";
  seconds: number;
  detail?: string;
}
export interface BuildReport {
  ok: boolean;
  steps: BuildStep[];
  /** ptxas spill warnings, "file.cu: function: N bytes spill stores, M bytes spill loads". */
  spills: string[];
  /** What was skipped and why (no nvcc, no headers to check against). */
  notes: string[];
  errors: string[];
  toolkit: CudaToolkit | null;
  seconds: number;
}

const sha = (...parts: (string | Uint8Array)[]) => {
  const h = createHash("sha256");
  for (const p of parts) h.update(p).update("\0");
  return h.digest("hex").slice(0, 24);
};
const read = (p: string) => (existsSync(p) ? readFileSync(p, "utf8") : "");
const listFiles = (dir: string, ext: string) => readdirSync(dir).filter((f) => f.endsWith(ext)).sort().map((f) => join(dir, f));
/** The sources of an emulated shim library: kernels/emu/<name>.cpp and any kernels/emu/<name>_*.cpp. */
const shimSources = (name: string) => listFiles(EMU_SRC, ".cpp").filter((f) => basename(f) === `${name}.cpp` || basename(f).startsWith(`${name}_`));

async function run(cmd: string[]): Promise<{ code: number; output: string }> {
  const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", cwd: PROJECT_ROOT });
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  return { code: await p.exited, output: (out + err).trim() };
}
async function version(cmd: string[]): Promise<string> {
  const r = await run(cmd).catch(() => ({ code: 1, output: "" }));
  return r.code === 0 ? r.output : "";
}
async function inParallel<T>(items: T[], jobs: number, fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(jobs, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

class Builder {
  readonly report: BuildReport = { ok: true, steps: [], spills: [], notes: [], errors: [], toolkit: null, seconds: 0 };
  /** The emulated libcudart's build key: libbdkernels links to it, so it relinks when the runtime changes. */
  private cudartKey = "";
  constructor(private readonly opts: BuildOptions) {}
  log(line: string) {
    this.opts.log?.(line);
  }

  /** Runs `cmd` to produce `out` unless `out` exists with the same key; writes via a temp file (atomic). */
  async produce(target: string, out: string, key: string, cmd: (tmp: string) => string[]): Promise<{ cached: boolean; output: string } | null> {
    const stamp = `${out}.hash`;
    if (!this.opts.force && existsSync(out) && read(stamp) === key) {
      this.report.steps.push({ target, action: "cached", seconds: 0 });
      return { cached: true, output: "" };
    }
    const tmp = `${out}.tmp-${process.pid}`;
    const t0 = performance.now();
    const r = await run(cmd(tmp));
    const seconds = +((performance.now() - t0) / 1000).toFixed(2);
    if (r.code !== 0) {
      rmSync(tmp, { force: true });
      this.report.ok = false;
      this.report.errors.push(`${target}: ${cmd(tmp).join(" ")}\n${r.output}`);
      this.report.steps.push({ target, action: "failed", seconds });
      this.log(`failed  ${target} (${seconds}s)\n${r.output}`);
      return null;
    }
    renameSync(tmp, out);
    writeFileSync(stamp, key);
    this.report.steps.push({ target, action: "built", seconds });
    this.log(`built   ${target} (${seconds}s)`);
    return { cached: false, output: r.output };
  }

  /** Bun cannot dlopen a library that needs static TLS ("cannot allocate memory in static TLS block"). */
  async checkTls(lib: string): Promise<void> {
    const r = await run(["readelf", "-d", lib]).catch(() => null);
    if (r && r.code === 0 && r.output.includes("STATIC_TLS")) {
      this.report.ok = false;
      this.report.errors.push(`${lib} needs static TLS (initial-exec); build with -fPIC -mtls-dialect=gnu2`);
    }
  }

  /** The real library must need the shared runtime (libcudart.so.<major>), not carry a static copy. */
  async checkSharedRuntime(lib: string): Promise<void> {
    const r = await run(["readelf", "-d", lib]).catch(() => null);
    if (r && r.code === 0 && !/NEEDED.*\[libcudart\.so\.\d+\]/.test(r.output)) {
      this.report.ok = false;
      this.report.errors.push(`${lib} does not link the shared CUDA runtime (no libcudart.so.<major> in its NEEDED entries); link with -cudart shared`);
    }
  }

  async emulated(jobs: number, headers: string, shimHeaders: string, checkHeaders: string): Promise<void> {
    const gxx = await version(["g++", "--version"]);
    if (!gxx) {
      this.report.ok = false;
      this.report.errors.push("g++ not found: the emulated device needs a C++17 compiler (apt-get install g++)");
      return;
    }
    const objDir = join(KERNELS_BUILD_DIR, "obj", "emu");
    const keys = await this.emulatedObjects(gxx, jobs, headers, objDir, EMU_FLAGS, "emu");
    if (!this.report.ok) return;
    // shims: libcudart first (the other shims and libbdkernels link to it and find it through $ORIGIN)
    const shimFlags = ["-std=c++17", "-O2", "-fPIC", "-shared", "-mtls-dialect=gnu2", "-Wall", "-Wno-unused-parameter", "-pthread"];
    // [library name, source name]: libcublasLt.so is built from kernels/emu/cublaslt.cpp
    for (const [name, src] of [["cudart", "cudart"], ["cublas", "cublas"], ["cudnn", "cudnn"], ["cublasLt", "cublaslt"]] as const) {
      const srcs = shimSources(src);
      const out = join(EMULATED_DIR, `lib${name}.so`);
      const deps = name === "cudart" ? [] : ["-L", EMULATED_DIR, "-l:libcudart.so", "-Wl,-rpath,$ORIGIN", "-ldl"];
      deps.push(`-Wl,--version-script,${exportsFile(`${name === "cudart" ? "cuda*; bdemu_*;" : name + "*;"}`)}`);
      const key = sha(gxx, shimFlags.join(" "), deps.join(" "), ...srcs.map((f) => readFileSync(f)), shimHeaders);
      if ((await this.produce(`emu/lib${name}.so`, out, key, (tmp) => ["g++", ...shimFlags, `-Wl,-soname,lib${name}.so`, ...srcs, "-o", tmp, ...deps])) === null) return;
      await this.checkTls(out);
      if (name === "cudart") this.cudartKey = key;
    }
    const objs = listFiles(KERNELS, ".cu").map((s) => join(objDir, basename(s, ".cu") + ".o"));
    const lib = join(EMULATED_DIR, "libbdkernels.so");
    // linked to the emulated libcudart (as the real library needs the shared runtime): launches go to its streams
    const link = ["-shared", "-pthread", "-Wl,-soname,libbdkernels.so", `-Wl,--version-script,${exportsFile("bdk_*;")}`];
    const runtime = ["-L", EMULATED_DIR, "-l:libcudart.so", "-Wl,-rpath,$ORIGIN"];
    if ((await this.produce("emu/libbdkernels.so", lib, sha(gxx, link.join(" "), runtime.join(" "), this.cudartKey, ...keys), (tmp) => ["g++", ...link, ...objs, "-o", tmp, ...runtime])) !== null)
      await this.checkTls(lib);
    if (this.report.ok && this.opts.check) await this.emulatedCheck(gxx, jobs, checkHeaders);
  }

  /** Compiles every kernels/*.cu with g++ and `flags` into `objDir`; returns the objects' build keys. */
  async emulatedObjects(gxx: string, jobs: number, headers: string, objDir: string, flags: readonly string[], label: string): Promise<string[]> {
    mkdirSync(objDir, { recursive: true });
    const keys: string[] = [];
    const sources = listFiles(KERNELS, ".cu");
    await inParallel(sources, jobs, async (src) => {
      const obj = join(objDir, basename(src, ".cu") + ".o");
      const key = sha(gxx, flags.join(" "), readFileSync(src), headers);
      keys[sources.indexOf(src)] = key;
      await this.produce(`${label}/${basename(src)}`, obj, key, (tmp) => ["g++", ...flags, "-x", "c++", "-I", KERNELS, "-c", src, "-o", tmp]);
    });
    return keys;
  }

  /** The check variant (ARCHITECTURE.md decision 18): instrumented kernels + the checker, on the emulated libcudart. */
  async emulatedCheck(gxx: string, jobs: number, headers: string): Promise<void> {
    const objDir = join(KERNELS_BUILD_DIR, "obj", "emu-check");
    const keys = await this.emulatedObjects(gxx, jobs, headers, objDir, [...EMU_FLAGS, ...EMU_CHECK_FLAGS], "emu-check");
    if (!this.report.ok) return;
    mkdirSync(EMULATED_CHECK_DIR, { recursive: true });
    const objs = listFiles(KERNELS, ".cu").map((s) => join(objDir, basename(s, ".cu") + ".o"));
    const checker = checkSources();
    const lib = join(EMULATED_CHECK_DIR, "libbdkernels.so");
    // -z defs: every instrumentation callback the compiler emitted must be defined by the checker
    const link = ["-shared", "-pthread", "-DCUDA_EMU_CHECK=1", ...EMU_FLAGS, "-Wl,-z,defs", "-Wl,-soname,libbdkernels.so", `-Wl,--version-script,${exportsFile("bdk_*;")}`];
    const runtime = ["-L", EMULATED_DIR, "-l:libcudart.so", "-Wl,-rpath,$ORIGIN/../emu", "-ldl"];
    const key = sha(gxx, link.join(" "), runtime.join(" "), this.cudartKey, headers, ...checker.map((f) => readFileSync(f)), ...keys);
    if ((await this.produce("emu-check/libbdkernels.so", lib, key, (tmp) => ["g++", ...link, "-I", KERNELS, ...objs, ...checker, "-o", tmp, ...runtime])) !== null)
      await this.checkTls(lib);
  }

  /** The shims against the real headers, when present: enum values (abi_check.cpp) and signatures. */
  async abiCheck(headers: string): Promise<void> {
    const roots = [this.report.toolkit?.root, process.env.CUDA_HOME, process.env.CUDA_PATH, "/usr/local/cuda"].filter(Boolean) as string[];
    const include = roots.map((r) => join(r, "include")).find((d) => existsSync(join(d, "cuda_runtime_api.h")));
    if (!include) {
      this.report.notes.push("CUDA headers not found: the shims were not checked against cuda_runtime_api.h");
      return;
    }
    const found = (h: string) => [include, "/usr/include"].some((d) => existsSync(join(d, h)));
    const checks: [string, string[]][] = [["abi_check.cpp", []], ...shimSources("cudart").map((f): [string, string[]] => [basename(f), ["-DBD_REAL_CUDA_HEADERS"]])];
    if (found("cublas_v2.h")) checks.push(["cublas.cpp", ["-DBD_REAL_CUDA_HEADERS"]]);
    else this.report.notes.push("cublas_v2.h not found: the cuBLAS shim's signatures were not checked (its values are documented)");
    if (!found("cublasLt.h")) this.report.notes.push("cublasLt.h not found: the cuBLASLt shim's values were not checked (their source is in kernels/emu/api/cublaslt.h)");
    if (found("cudnn.h")) checks.push(["cudnn.cpp", ["-DBD_REAL_CUDA_HEADERS"]]);
    else this.report.notes.push("cudnn.h not found: the cuDNN shim's signatures were not checked (its values are documented)");
    const stampDir = join(KERNELS_BUILD_DIR, "obj", "emu");
    for (const [file, defs] of checks) {
      const src = join(EMU_SRC, file);
      const stamp = join(stampDir, `check-${file}.ok`);
      const key = sha(include, defs.join(" "), readFileSync(src), headers);
      await this.produce(`check ${file} vs ${include}`, stamp, key, (tmp) => ["sh", "-c", `g++ -std=c++17 -fsyntax-only ${defs.join(" ")} -I "${include}" "${src}" && : > "${tmp}"`]);
    }
  }

  async real(tk: CudaToolkit, jobs: number, headers: string): Promise<void> {
    const nvccVersion = await version([tk.nvcc, "--version"]);
    const objDir = join(KERNELS_BUILD_DIR, "obj", "real");
    mkdirSync(objDir, { recursive: true });
    const threads = Math.max(1, Math.min(2, Math.floor(availableParallelism() / jobs)));
    const archs = targetArchs(tk.nvcc);
    const flags = ["-std=c++17", "-O3", "--threads", String(threads), "-Xcompiler", "-fPIC,-fvisibility=hidden", "-Xptxas", "-warn-spills", ...gencodeFlags(archs)];
    const sources = listFiles(KERNELS, ".cu");
    const keys: string[] = [];
    await inParallel(sources, jobs, async (src) => {
      const obj = join(objDir, basename(src, ".cu") + ".o");
      const key = sha(nvccVersion, flags.filter((f, i) => flags[i - 1] !== "--threads").join(" "), readFileSync(src), headers);
      keys[sources.indexOf(src)] = key;
      const r = await this.produce(`real/${basename(src)}`, obj, key, (tmp) => [tk.nvcc, ...flags, "-I", KERNELS, "-c", src, "-o", tmp]);
      // ptxas warnings are kept beside the object, so a cached build reports them too
      if (r) {
        if (!r.cached) writeFileSync(`${obj}.log`, r.output);
        for (const line of read(`${obj}.log`).split("\n"))
          if (/spill/i.test(line)) this.report.spills.push(`${basename(src)}: ${demangle(line.trim())}`);
      }
    });
    if (!this.report.ok) return;
    const objs = sources.map((s) => join(objDir, basename(s, ".cu") + ".o"));
    const lib = join(KERNELS_BUILD_DIR, "libbdkernels.so");
    // the shared runtime: a static one (nvcc's default) would be a second runtime beside the libcudart that
    // discovery loads, and one that needs a driver of this toolkit's version even when the loaded one would not
    const link = ["-shared", "-cudart", "shared", "-Xlinker", "-soname=libbdkernels.so"];
    if ((await this.produce("libbdkernels.so (sm_" + archs.join("/") + " + PTX, shared cudart)", lib, sha(nvccVersion, link.join(" "), ...keys), (tmp) => [tk.nvcc, ...link, ...objs, "-o", tmp])) !== null) {
      await this.checkTls(lib);
      await this.checkSharedRuntime(lib);
    }
  }
}

/** A linker version script exporting only `globals` (the API), so inlined C++ library symbols stay local. */
function exportsFile(globals: string): string {
  const path = join(KERNELS_BUILD_DIR, "obj", `exports-${sha(globals)}.map`);
  if (!existsSync(path)) writeFileSync(path, `{ global: ${globals} local: *; };\n`);
  return path;
}

function demangle(line: string): string {
  return line.replace(/'(_Z\w+)'/g, (m, sym: string) => {
    const r = Bun.spawnSync(["c++filt", sym], { stdout: "pipe" });
    return r.exitCode === 0 ? `'${r.stdout.toString().trim()}'` : m;
  });
}

/** Build what `opts` asks for (both by default); never throws for compile errors (see report.errors). */
export async function buildKernels(opts: BuildOptions = {}): Promise<BuildReport> {
  const t0 = performance.now();
  const jobs = Math.max(1, opts.jobs ?? Math.min(2, availableParallelism()));
  const b = new Builder({ ...opts, check: opts.check ?? emuCheckers() !== null });
  const wantEmu = opts.emu ?? true;
  const wantReal = opts.real ?? true;
  mkdirSync(EMULATED_DIR, { recursive: true });
  // what each build includes: the real kernels kernels/*.cuh; the emulated ones also the emulator; the shims their API headers
  const digest = (files: string[]) => sha(...files.map((f) => readFileSync(f)));
  // every kernels/*.cuh (common.cuh, mma.cuh) and, for the emulated build, the emulator headers (mma_emu.h included)
  const kernelHeaders = listFiles(KERNELS, ".cuh");
  // the checker's headers (check*.h) only matter to the check variant (cuda_emu.h includes them under CUDA_EMU_CHECK)
  const isCheckHeader = (f: string) => basename(f).startsWith("check");
  const emuHeaders = digest([...kernelHeaders, ...listFiles(EMU_SRC, ".h").filter((f) => !isCheckHeader(f))]);
  const checkHeaders = digest([...kernelHeaders, ...listFiles(EMU_SRC, ".h")]);
  const shimHeaders = digest([...listFiles(join(EMU_SRC, "api"), ".h"), join(EMU_SRC, "blas.h"), join(EMU_SRC, "half.h"), ...listFiles(EMU_SRC, ".h").filter((f) => basename(f).startsWith("cudart_"))]);
  b.report.toolkit = findCudaToolkit();
  if (wantEmu) {
    await b.emulated(jobs, emuHeaders, shimHeaders, checkHeaders);
    if (b.report.ok) await b.abiCheck(shimHeaders);
  }
  if (wantReal) {
    if (b.report.toolkit) await b.real(b.report.toolkit, jobs, digest(kernelHeaders));
    else if (opts.real === true && opts.emu === false) {
      b.report.ok = false;
      b.report.errors.push("nvcc not found (looked at $BD_NVCC, PATH, $CUDA_HOME/bin, /usr/local/cuda/bin): install the CUDA toolkit to build the real kernels");
    } else b.report.notes.push("nvcc not found: built only the emulated library (install the CUDA toolkit for the real one)");
  }
  b.report.seconds = +((performance.now() - t0) / 1000).toFixed(2);
  return b.report;
}

if (import.meta.main) {
  const args = process.argv.slice(2);
  const flag = (f: string) => args.includes(f);
  const jobsAt = args.indexOf("--jobs");
  const unknown = args.filter((a, i) => !["--emu-only", "--real-only", "--emu-check", "--force", "--json", "--jobs"].includes(a) && args[i - 1] !== "--jobs");
  if (unknown.length || (flag("--emu-only") && flag("--real-only"))) {
    console.error("usage: bun scripts/build-kernels.ts [--emu-only | --real-only] [--emu-check] [--force] [--jobs N] [--json]");
    process.exit(2);
  }
  const json = flag("--json");
  const report = await buildKernels({
    emu: !flag("--real-only"),
    real: flag("--emu-only") ? false : flag("--real-only") ? true : undefined,
    check: flag("--emu-check") || undefined,
    force: flag("--force"),
    jobs: jobsAt >= 0 ? Number(args[jobsAt + 1]) : undefined,
    log: json ? undefined : (l) => console.log(`[build-kernels] ${l}`),
  });
  if (json) console.log(JSON.stringify(report, null, 2));
  else {
    const built = report.steps.filter((s) => s.action === "built").length;
    const cached = report.steps.filter((s) => s.action === "cached").length;
    for (const n of report.notes) console.log(`[build-kernels] note: ${n}`);
    for (const s of report.spills) console.log(`[build-kernels] spill: ${s}`);
    if (report.toolkit && !flag("--emu-only")) console.log(`[build-kernels] nvcc ${report.toolkit.version} at ${report.toolkit.nvcc} (${report.spills.length} spill warnings)`);
    for (const e of report.errors) console.log(`[build-kernels] error: ${e}`);
    console.log(`[build-kernels] ${report.ok ? "ok" : "FAILED"}: ${built} built, ${cached} up to date, ${report.seconds}s`);
  }
  process.exit(report.ok ? 0 : 1);
}
