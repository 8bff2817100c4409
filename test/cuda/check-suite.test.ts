// The checking mode in CI (ARCHITECTURE.md decision 18): runs the kernel and backend test files below in a child
// `bun test` on the emulated device with BD_EMU_CHECK=memcheck,racecheck, and fails with the child's output when a
// test fails or a checker reports anything ("[bd-emu-check] ..." on stderr, even inside a test that expected an
// error). Also shows the backend's error path: a real launcher given a too-short buffer becomes a CudaError that
// names the launcher and carries memcheck's report naming the kernel. One child `bun test`, so the suite's
// summary lines stay the last ones (.ci/run reads them).

import { beforeAll, describe, expect, test } from "bun:test";
import { PROJECT_ROOT } from "../../ffi/cuda/discover.ts";
import { buildKernels } from "../../scripts/build-kernels.ts";
import { HAS_GXX } from "./setup.ts";

/** Kernel tests (test/cuda) and the CUDA-backend op tests: ~45 s under the checks on a 2-core machine. */
export const CHECKED_FILES = [
  "test/cuda/kernels-elementwise.test.ts",
  "test/cuda/kernels-ops.test.ts",
  "test/cuda/mma.test.ts",
  "test/cuda/backend.test.ts",
  "test/backends/attention-tc.test.ts",
  "test/ops/attention.test.ts",
  "test/ops/norm.test.ts",
  "test/ops/reduce.test.ts",
];
const env = { ...process.env, BD_CUDA_EMULATE: "1", BD_EMU_CHECK: "memcheck,racecheck" };

// a fill of 17 floats into a 16-float allocation, through the backend's launch check and its next synchronisation
const BAD_FILL = `
import { initCuda, cudaSynchronize } from "./src/backends/cuda/index.ts";
import { cudaContext, check, stridedParams } from "./src/backends/cuda/context.ts";
initCuda({ emulate: true });
const c = cudaContext(), out = new BigUint64Array(1);
c.libs.check(c.libs.cudart.symbols.cudaMalloc(out, 64), "cudaMalloc");
const p = stridedParams().set([17], [[1]]);
try {
  check(c.k.bdk_fill_f32(p, Number(out[0]), 1, c.streams.compute), "bdk_fill_f32", "fill");
  cudaSynchronize();
  console.log("NO ERROR");
} catch (e) {
  console.log(String(e.message));
}
`;
const REPORT = /memcheck: invalid global write of 4 bytes at 0x[0-9a-f]+ in kernel bd::fill_kernel<unsigned int>\(bd::Strided, unsigned int\*, unsigned int\), block \(0,0,0\), thread \(16,0,0\): 0 bytes past the end of the 64-byte device allocation/;
const run = (extra: Record<string, string>) =>
  Bun.spawnSync(["bun", "-e", BAD_FILL], { cwd: PROJECT_ROOT, env: { ...env, ...extra }, stdout: "pipe", stderr: "pipe" }).stdout.toString();

describe.skipIf(!HAS_GXX)("emulated device checking mode in CI", () => {
  // the check variant of the emulated kernels (cached by its inputs' hash; the test command builds it up front)
  beforeAll(async () => {
    const r = await buildKernels({ emu: true, real: false, check: true });
    if (!r.ok) throw new Error(`building the checking mode's kernels failed:\n${r.errors.join("\n")}`);
  });

  test("a launcher's bad write reaches the backend as an error naming the kernel and the fault", () => {
    // streams run asynchronously: the launch is queued, the next synchronisation reports the failed work
    const queued = run({ BD_EMU_STREAMS: "async" });
    expect(queued).toMatch(/^cudaStreamSynchronize failed: cudaErrorLaunchFailure/);
    expect(queued).toContain("kernel launch on stream");
    expect(queued).toMatch(REPORT);
    // run at once (BD_EMU_STREAMS=sync): the launch itself fails, and the error names our launcher too
    const inline = run({ BD_EMU_STREAMS: "sync" });
    expect(inline).toContain("bdk_fill_f32");
    expect(inline).toMatch(REPORT);
    // without the checks the same call passes (it writes the allocation's padding)
    expect(run({ BD_EMU_CHECK: "" }).trim()).toBe("NO ERROR");
  });

  test("kernel and backend tests pass under memcheck and racecheck with no report", async () => {
    const child = Bun.spawn(["bun", "test", "--timeout", "120000", ...CHECKED_FILES], { cwd: PROJECT_ROOT, env, stdout: "pipe", stderr: "pipe" });
    const [out, err] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text()]);
    const code = await child.exited;
    const all = out + err;
    const reports = all.split("\n").filter((l) => l.startsWith("[bd-emu-check]"));
    const failed = /^ *(\d+) fail$/m.exec(all)?.[1];
    if (code !== 0 || reports.length || failed !== "0") throw new Error(`checked run (exit ${code}, ${reports.length} reports):\n${all.slice(-20000)}`);
    expect(Number(/^ *(\d+) pass$/m.exec(all)?.[1])).toBeGreaterThan(0);
  });
});
