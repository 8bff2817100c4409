// The emulated device's checking mode (kernels/emu/check.cpp, BD_EMU_CHECK; ARCHITECTURE.md decision 18): the
// seeded kernels of check_seeded.cu, built here as a check-variant library. Each checker must report its fault --
// with the kernel, block, thread, address, access size and kind, and the allocation or the other thread -- and fail
// the launch, while the correct twin passes silently; with the checker off the broken kernel is not reported.
// Expected addresses, offsets and thread indices are computed from each case's sizes.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, renameSync } from "node:fs";
import { join } from "node:path";
import { openLibrary } from "../../ffi/cuda/bind.ts";
import { EMULATED_DIR, KERNELS_BUILD_DIR, PROJECT_ROOT } from "../../ffi/cuda/discover.ts";
import { setCEnv, unsetCEnv } from "../../ffi/libc.ts";
import { EMU_CHECK_FLAGS, EMU_FLAGS, checkSources } from "../../scripts/build-kernels.ts";
import { Device, HAS_GXX, emulatedCuda } from "./setup.ts";
import type { CudaLibraries } from "../../ffi/cuda/index.ts";

const SYMBOLS = {
  t_shifted_read: { args: ["u64", "u64", "i32", "ptr"], returns: "i32" },
  t_shifted_write: { args: ["u64", "u64", "i32", "ptr"], returns: "i32" },
  t_atomic_count: { args: ["u64", "i32", "i32", "ptr"], returns: "i32" },
  t_neighbour: { args: ["u64", "u64", "i32", "i32", "i32", "i32", "i32", "ptr"], returns: "i32" },
  t_broadcast_total: { args: ["u64", "u64", "i32", "i32", "ptr"], returns: "i32" },
  t_warp_swap: { args: ["u64", "u64", "i32", "ptr"], returns: "i32" },
  bdk_last_error: { args: [], returns: "cstring" },
} as const;
const LAUNCH_FAILURE = 719; // cudaErrorLaunchFailure, as a kernel stopped by compute-sanitizer
const hex = (p: number | bigint) => `0x${p.toString(16)}`;

/** Builds test/cuda/check_seeded.cu as a check-variant library (cached by the hash of its inputs). */
async function buildSeeded(): Promise<string> {
  const dir = join(KERNELS_BUILD_DIR, "obj", "test");
  mkdirSync(dir, { recursive: true });
  // the seeded kernels and kernels/abi.cu (bdk_last_error)
  const sources = ["test/cuda/check_seeded.cu", "kernels/abi.cu"].map((f) => join(PROJECT_ROOT, f));
  const headers = ["kernels/common.cuh", ...["cuda_emu.h", "cuda_types.h", "half.h", "check.h", "check_symbols.h", "cudart_check.h"].map((f) => `kernels/emu/${f}`)];
  const hash = new Bun.CryptoHasher("sha256");
  for (const f of [...sources, ...headers.map((h) => join(PROJECT_ROOT, h)), ...checkSources(), join(EMULATED_DIR, "libcudart.so")]) hash.update(readFileSync(f));
  hash.update([...EMU_FLAGS, ...EMU_CHECK_FLAGS].join(" "));
  const lib = join(dir, `libcheck_seeded-${hash.digest("hex").slice(0, 16)}.so`);
  if (existsSync(lib)) return lib;
  const objs = sources.map((_, i) => `${lib}.${i}.o`), tmp = `${lib}.tmp-${process.pid}`;
  const include = ["-I", join(PROJECT_ROOT, "kernels")];
  const steps = [
    ...sources.map((src, i) => ["g++", ...EMU_FLAGS, ...EMU_CHECK_FLAGS, "-x", "c++", ...include, "-c", src, "-o", objs[i]!]),
    // the checker uninstrumented; -z defs: every callback the instrumentation calls is defined
    ["g++", "-shared", "-pthread", ...EMU_FLAGS, "-DCUDA_EMU_CHECK=1", "-Wl,-z,defs", ...include, ...objs, ...checkSources(), "-o", tmp,
      "-L", EMULATED_DIR, "-l:libcudart.so", `-Wl,-rpath,${EMULATED_DIR}`, "-ldl"],
  ];
  for (const cmd of steps) {
    const cc = Bun.spawn(cmd, { stderr: "pipe" });
    if ((await cc.exited) !== 0) throw new Error(`${cmd.join(" ")}\n${await new Response(cc.stderr).text()}`);
  }
  renameSync(tmp, lib);
  return lib;
}

describe.skipIf(!HAS_GXX)("emulated device checking mode: seeded faults", () => {
  let t: ReturnType<typeof openLibrary<typeof SYMBOLS>>["symbols"];
  let cu: CudaLibraries;
  let dev: Device;
  const saved = process.env.BD_EMU_CHECK;

  beforeAll(async () => {
    cu = await emulatedCuda();
    dev = new Device(cu);
    t = openLibrary("check seeded", await buildSeeded(), SYMBOLS).symbols;
  });
  afterAll(() => {
    dev.freeAll();
    if (saved === undefined) unsetCEnv("BD_EMU_CHECK");
    else setCEnv("BD_EMU_CHECK", saved);
  });

  /** Sets BD_EMU_CHECK in the C environment (read by every launch and by cudaFree); null unsets it. */
  const checks = (v: string | null) => (v === null ? unsetCEnv("BD_EMU_CHECK") : setCEnv("BD_EMU_CHECK", v));
  /** A launch's status, or the next synchronisation's when the launch was queued (stream work). */
  const status = (s: number) => (s !== 0 ? s : cu.cudart.symbols.cudaDeviceSynchronize() as number);
  const lastError = () => String(t.bdk_last_error() ?? "");
  const upload = (a: Float32Array | Int32Array) => dev.upload(a);
  const ramp = (n: number) => Float32Array.from({ length: n }, (_, i) => i + 1);
  /** Block and thread of linear index i for the 64-thread blocks the seeded launchers use. */
  const at = (i: number) => `block (${Math.floor(i / 64)},0,0), thread (${i % 64},0,0)`;

  test("memcheck: a read one element past the end names kernel, thread, address, size and the allocation; the twin passes", () => {
    const n = 100;
    const x = upload(ramp(n)), out = dev.malloc(4 * n);
    checks("memcheck");
    expect(status(t.t_shifted_read(out, x, n - 1, null))).toBe(0);
    const got = dev.download(out, new Float32Array(n - 1));
    expect(Array.from(got)).toEqual(Array.from(ramp(n).subarray(1)));
    expect(status(t.t_shifted_read(out, x, n, null))).toBe(LAUNCH_FAILURE);
    expect(lastError()).toBe(
      `memcheck: invalid global read of 4 bytes at ${hex(x + 4 * n)} in kernel shifted_read(float*, float const*, int), ${at(n - 1)}: ` +
        `0 bytes past the end of the ${4 * n}-byte device allocation at ${hex(x)} (offset ${4 * n})`,
    );
    // without memcheck the same launch is not reported (it reads the allocation's padding)
    for (const off of [null, "racecheck"]) {
      checks(off);
      expect(status(t.t_shifted_read(out, x, n, null))).toBe(0);
    }
  });

  test("memcheck: a write one element past the end is reported (and not performed); the twin passes", () => {
    const n = 70;
    const x = upload(ramp(n)), out = dev.malloc(4 * n);
    checks("memcheck,racecheck");
    expect(status(t.t_shifted_write(out, x, n - 1, null))).toBe(0);
    expect(Array.from(dev.download(out, new Float32Array(n))).slice(1)).toEqual(Array.from(ramp(n - 1)));
    expect(status(t.t_shifted_write(out, x, n, null))).toBe(LAUNCH_FAILURE);
    expect(lastError()).toBe(
      `memcheck: invalid global write of 4 bytes at ${hex(out + 4 * n)} in kernel shifted_write(float*, float const*, int), ${at(n - 1)}: ` +
        `0 bytes past the end of the ${4 * n}-byte device allocation at ${hex(out)} (offset ${4 * n})`,
    );
  });

  test("memcheck: atomics are checked against allocations too", () => {
    const slots = 16, n = 64;
    const counts = upload(new Int32Array(slots));
    checks("memcheck");
    expect(status(t.t_atomic_count(counts, n, slots, null))).toBe(0);
    expect(Array.from(dev.download(counts, new Int32Array(slots)))).toEqual(new Array(slots).fill(n / slots));
    expect(status(t.t_atomic_count(counts, n, slots + 1, null))).toBe(LAUNCH_FAILURE);
    // thread `slots` is the first to touch counts[slots]
    expect(lastError()).toBe(
      `memcheck: invalid global atomic of 4 bytes at ${hex(counts + 4 * slots)} in kernel atomic_count(int*, int, int), ${at(slots)}: ` +
        `0 bytes past the end of the ${4 * slots}-byte device allocation at ${hex(counts)} (offset ${4 * slots})`,
    );
  });

  test("memcheck: a read of freed memory is a use after free, and freed addresses are not handed out again", () => {
    const n = 32; // one block: thread 0 is the first to read
    const x = upload(ramp(n + 1)), out = dev.malloc(4 * n);
    checks("memcheck");
    expect(status(t.t_shifted_read(out, x, n, null))).toBe(0); // the twin: read before the free
    dev.free(x);
    const again = dev.malloc(4 * (n + 1));
    expect(again).not.toBe(x); // quarantined
    expect(status(t.t_shifted_read(out, x, n, null))).toBe(LAUNCH_FAILURE);
    expect(lastError()).toBe(
      `memcheck: use after free: global read of 4 bytes at ${hex(x + 4)} in kernel shifted_read(float*, float const*, int), ${at(0)}: ` +
        `inside the ${4 * (n + 1)}-byte freed allocation at ${hex(x)} (offset 4) (freed before the launch)`,
    );
  });

  test("memcheck: dynamic shared memory past the launch's size is reported", () => {
    const threads = 64;
    const x = upload(ramp(threads)), out = dev.malloc(4 * threads);
    checks("memcheck");
    expect(status(t.t_neighbour(out, x, threads, 1, 1, 1, threads, null))).toBe(0);
    expect(status(t.t_neighbour(out, x, threads, 1, 1, 1, threads - 1, null))).toBe(LAUNCH_FAILURE);
    const smem = 4 * (threads - 1);
    expect(lastError()).toBe(
      `memcheck: invalid shared write of 4 bytes at dynamic shared memory offset ${smem} in kernel neighbour(float*, float const*, int, int, int), ` +
        `block (0,0,0), thread (${threads - 1},0,0): the launch has ${smem} bytes of dynamic shared memory`,
    );
  });

  test("racecheck: a missing __syncthreads between warps is a hazard on dynamic shared memory; with it, none", () => {
    const threads = 64, offset = 32; // warp 0 reads what warp 1 stages
    const x = upload(ramp(threads)), out = dev.malloc(4 * threads);
    checks("racecheck");
    expect(status(t.t_neighbour(out, x, threads, 1, 1, offset, threads, null))).toBe(0);
    expect(Array.from(dev.download(out, new Float32Array(threads)))).toEqual(Array.from({ length: threads }, (_, i) => ((i + offset) % threads) + 1));
    expect(status(t.t_neighbour(out, x, threads, 0, 1, offset, threads, null))).toBe(LAUNCH_FAILURE);
    const msg = lastError();
    // thread 0 (warp 0) read s[32] before thread 32 (warp 1) wrote it
    expect(msg).toMatch(
      new RegExp(`^racecheck: WAR hazard on dynamic shared memory offset ${4 * offset} \\(4 bytes at 0x[0-9a-f]+\\) in kernel neighbour\\(float\\*, float const\\*, int, int, int\\), ` +
        `block \\(0,0,0\\): thread \\(${offset},0,0\\) writes where thread \\(0,0,0\\) read, with no __syncthreads between$`),
    );
    checks("memcheck"); // memcheck alone does not see hazards
    expect(status(t.t_neighbour(out, x, threads, 0, 1, offset, threads, null))).toBe(0);
  });

  test("racecheck: a static __shared__ scalar read before the barrier that publishes it; atomics are not hazards", () => {
    const threads = 64;
    const xs = ramp(threads), x = upload(xs), out = dev.malloc(4 * (threads + 1));
    checks("memcheck,racecheck");
    expect(status(t.t_broadcast_total(out, x, threads, 1, null))).toBe(0);
    const total = xs.reduce((a, b) => a + b, 0);
    expect(Array.from(dev.download(out, new Float32Array(threads + 1)))).toEqual([...new Array(threads).fill(total), threads]);
    expect(status(t.t_broadcast_total(out, x, threads, 0, null))).toBe(LAUNCH_FAILURE);
    expect(lastError()).toMatch(
      /^racecheck: RAW hazard on static __shared__ broadcast_total\(float\*, float const\*, int\)::total\+0 \(4 bytes at 0x[0-9a-f]+\) in kernel broadcast_total\(float\*, float const\*, int\), block \(0,0,0\): thread \(1,0,0\) reads where thread \(0,0,0\) wrote, with no __syncthreads between and no __syncwarp or warp collective of both lanes \(warp 0\)$/,
    );
  });

  test("racecheck: a missing __syncwarp inside one warp is a hazard; with it, none", () => {
    const x = upload(ramp(32)), out = dev.malloc(4 * 32);
    checks("racecheck");
    expect(status(t.t_warp_swap(out, x, 1, null))).toBe(0);
    expect(Array.from(dev.download(out, new Float32Array(32)))).toEqual(Array.from({ length: 32 }, (_, l) => (l ^ 1) + 1));
    expect(status(t.t_warp_swap(out, x, 0, null))).toBe(LAUNCH_FAILURE);
    // lane 0 read s[1] before lane 1 wrote it
    expect(lastError()).toMatch(
      /^racecheck: WAR hazard on static __shared__ warp_swap\(float\*, float const\*, int\)::s\+4 \(4 bytes at 0x[0-9a-f]+\) in kernel warp_swap\(float\*, float const\*, int\), block \(0,0,0\): thread \(1,0,0\) writes where thread \(0,0,0\) read, with no __syncthreads between and no __syncwarp or warp collective of both lanes \(warp 0\)$/,
    );
  });

  test("an unknown checker name fails the launch with a message saying what to use", () => {
    const x = upload(ramp(4)), out = dev.malloc(16);
    checks("memcheck,leakcheck");
    expect(status(t.t_shifted_read(out, x, 3, null))).toBe(LAUNCH_FAILURE);
    expect(lastError()).toBe("BD_EMU_CHECK=memcheck,leakcheck: unknown checker 'leakcheck' (use memcheck, racecheck or memcheck,racecheck)");
  });
});
