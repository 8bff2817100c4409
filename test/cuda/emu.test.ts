// The CUDA emulator itself (kernels/emu/cuda_emu.h): test kernels in emu_selftest.cu, built here with the
// emulated build's flags, check warp collectives under divergence, dynamic shared memory and atomics, and that
// a deadlock or a bad launch configuration becomes a launch error with a message instead of a hang. Launches are
// stream work (null stream, host pointers): results are read after cudaDeviceSynchronize, and an error raised while
// a kernel runs is reported by that synchronisation.

import { beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, renameSync } from "node:fs";
import { join } from "node:path";
import { openLibrary } from "../../ffi/cuda/bind.ts";
import { EMULATED_DIR, KERNELS_BUILD_DIR, PROJECT_ROOT } from "../../ffi/cuda/discover.ts";
import { HAS_GXX } from "./setup.ts";

const SYMBOLS = {
  t_halves: { args: ["ptr", "ptr"], returns: "i32" },
  t_block_sum: { args: ["ptr", "ptr", "i32", "ptr"], returns: "i32" },
  t_divergent_barrier: { args: ["ptr", "ptr"], returns: "i32" },
  t_barrier_vs_shuffle: { args: ["ptr", "ptr"], returns: "i32" },
  t_bad_config: { args: ["ptr", "ptr"], returns: "i32" },
  bdk_last_error: { args: [], returns: "cstring" },
  // the emulated libcudart the library links to
  cudaDeviceSynchronize: { args: [], returns: "i32" },
  cudaGetLastError: { args: [], returns: "i32" },
  bdemu_work_error: { args: [], returns: "cstring" },
} as const;

describe.skipIf(!HAS_GXX)("CUDA emulator", () => {
  let t: ReturnType<typeof openLibrary<typeof SYMBOLS>>["symbols"];

  beforeAll(async () => {
    const dir = join(KERNELS_BUILD_DIR, "obj", "test");
    mkdirSync(dir, { recursive: true });
    const inputs = ["test/cuda/emu_selftest.cu", "kernels/abi.cu", "kernels/common.cuh", ...["cuda_emu.h", "cuda_types.h", "half.h"].map((f) => `kernels/emu/${f}`)];
    const hash = new Bun.CryptoHasher("sha256");
    for (const f of inputs) hash.update(readFileSync(join(PROJECT_ROOT, f)));
    // launches are stream work of the emulated libcudart (bdemu_stream_submit), which the library links to
    const runtime = join(EMULATED_DIR, "libcudart.so");
    if (!existsSync(runtime)) throw new Error(`${runtime} is missing: build the kernels first (bun scripts/build-kernels.ts --emu-only)`);
    hash.update(readFileSync(runtime));
    const lib = join(dir, `libemu_selftest-${hash.digest("hex").slice(0, 16)}.so`); // rebuilt only when an input changes
    if (!existsSync(lib)) {
      const tmp = `${lib}.tmp-${process.pid}`;
      const cc = Bun.spawn(["g++", "-std=c++17", "-O1", "-fPIC", "-shared", "-mtls-dialect=gnu2", "-x", "c++", "-I", join(PROJECT_ROOT, "kernels"),
        ...inputs.slice(0, 2).map((f) => join(PROJECT_ROOT, f)), "-o", tmp, "-pthread", "-L", EMULATED_DIR, "-l:libcudart.so", `-Wl,-rpath,${EMULATED_DIR}`], { stderr: "pipe" });
      if ((await cc.exited) !== 0) throw new Error(await new Response(cc.stderr).text());
      renameSync(tmp, lib);
    }
    t = openLibrary("emu selftest", lib, SYMBOLS).symbols;
  });

  test("half-warps shuffle independently; ballots see the whole warp", () => {
    const out = new Int32Array(192);
    expect(t.t_halves(out, null)).toBe(0);
    expect(t.cudaDeviceSynchronize()).toBe(0);
    const low = 120, high = 2 * (16 * 16 + 120); // Σ lanes 0..15, and Σ 2·lanes 16..31
    expect(Array.from(out.subarray(0, 32))).toEqual(Array.from({ length: 32 }, (_, l) => (l < 16 ? low : high) + 1000));
  });

  test("grid-stride block reduction with dynamic shared memory and atomicAdd", () => {
    const x = Float32Array.from({ length: 1025 }, (_, i) => (i % 7) - 3);
    const out = new Float32Array(1);
    expect(t.t_block_sum(x, out, x.length, null)).toBe(0);
    expect(t.cudaDeviceSynchronize()).toBe(0);
    expect(out[0]).toBe(x.reduce((a, b) => a + b, 0));
  });

  test("deadlocks and bad configurations are launch errors with a message, not hangs", () => {
    const out = new Float32Array(64);
    // an execution error: the launch is queued (0); the next synchronisation reports it once, naming the work
    // (BD_EMU_STREAMS=sync runs the work inside the launch, which then returns the error)
    const queued = process.env.BD_EMU_STREAMS !== "sync";
    expect(t.t_barrier_vs_shuffle(out, null)).toBe(queued ? 0 : 719);
    if (queued) expect(t.cudaDeviceSynchronize()).toBe(719); // cudaErrorLaunchFailure
    expect(t.bdk_last_error()).toMatch(/deadlock in block \(0,0,0\): 32 threads in __syncthreads \(first tid 0\), 32 in warp collectives/);
    expect(t.bdemu_work_error()).toMatch(/^kernel launch on the legacy default stream failed: cudaErrorLaunchFailure$/);
    expect(t.cudaDeviceSynchronize()).toBe(0);
    expect(t.cudaGetLastError()).toBe(719); // also the last error, cleared by reading
    expect(t.cudaGetLastError()).toBe(0);
    // threads that exit satisfy a pending barrier (as on Volta and later), unless CUDA_EMU_STRICT=1
    const strict = process.env.CUDA_EMU_STRICT === "1";
    expect(t.t_divergent_barrier(out, null)).toBe(queued || !strict ? 0 : 719);
    expect(t.cudaDeviceSynchronize()).toBe(queued && strict ? 719 : 0);
    if (strict) expect(t.bdk_last_error()).toMatch(/strict: thread \(32,0,0\) exited while 32 threads wait in __syncthreads/);
    t.cudaGetLastError();
    // a configuration error is returned by the launch itself
    expect(t.t_bad_config(out, null)).toBe(9); // cudaErrorInvalidConfiguration: 2048 threads per block
    expect(t.bdk_last_error()).toMatch(/invalid launch configuration: grid \(1,1,1\) block \(2048,1,1\)/);
    expect(t.cudaGetLastError()).toBe(9);
  });
});
