// The real kernels library: nvcc builds kernels/*.cu for sm_75/80/86/89/90 + PTX without errors, the result
// loads through bun:ffi, exports every launcher of ffi/cuda/kernels.ts and matches its ABI. A full build takes
// about 75 s on 2 cores (cached afterwards), so it runs only with BD_TEST_NVCC=1 and when nvcc exists; CI can
// instead run `bun scripts/build-kernels.ts --real-only` as its own step.

import { describe, expect, test } from "bun:test";
import { openLibrary } from "../../ffi/cuda/bind.ts";
import { findCudaToolkit, KERNELS_BUILD_DIR } from "../../ffi/cuda/discover.ts";
import { KERNELS, checkKernelAbi } from "../../ffi/cuda/kernels.ts";
import { buildKernels } from "../../scripts/build-kernels.ts";
import { StridedParams } from "../../ffi/cuda/kernels.ts";

const wanted = process.env.BD_TEST_NVCC === "1";
const toolkit = wanted ? findCudaToolkit() : null;
if (!wanted) console.warn("[test/cuda] nvcc build test skipped: set BD_TEST_NVCC=1 to compile the real kernels (~75 s on 2 cores)");
else if (!toolkit) console.warn("[test/cuda] nvcc build test skipped: nvcc not found");

describe.skipIf(!toolkit)("real kernels library (nvcc)", () => {
  test("compiles for every architecture, loads, and matches ffi/cuda/kernels.ts", async () => {
    const report = await buildKernels({ emu: false, real: true });
    expect(report.errors).toEqual([]);
    expect(report.ok).toBe(true);
    if (report.spills.length) console.warn(`[test/cuda] ptxas spills:\n  ${report.spills.join("\n  ")}`);
    const lib = openLibrary("kernels", `${KERNELS_BUILD_DIR}/libbdkernels.so`, KERNELS); // throws if a launcher is missing
    expect(checkKernelAbi(lib.symbols.bdk_abi!() as string | null, "libbdkernels.so")).toEqual({ version: 1, emulated: false });
    // without a GPU a launch fails cleanly (no driver / no device); with one it succeeds
    const status = lib.symbols.bdk_fill_f32!(new StridedParams().set([0], [[1]]), null, 0, null);
    expect(status).toBe(0); // empty: returns before touching the device
  }, 900_000);
});
