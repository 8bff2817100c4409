// Test preload (bunfig.toml [test] preload): registers the devices the table-driven tests run on besides the CPU
// (testDevices() in test/helpers/op-harness.ts). A real CUDA device is used when one initialises; otherwise the
// emulated device is built (scripts/build-kernels.ts --emu-only, cached) and used, so every op test also runs
// through the CUDA backend on machines without a GPU. BD_TEST_DEVICES=cpu keeps the tests on the CPU only.
// Without g++ the emulated device cannot be built: one notice, and the tests run on the CPU.
// It also sets a 120 s default per-test timeout (golden and model tests run real models on a 2-core CI machine),
// which Bun 1.4 keeps for the first test file only: the test command (`bash scripts/bd.sh test`, `bun run test`)
// passes --timeout 120000, which holds for every file (test/architecture/test-timeouts.test.ts says why files must
// not set their own).

import { setDefaultTimeout } from "bun:test";
import { buildKernels } from "../scripts/build-kernels.ts";
import { cudaAvailable, initCuda } from "../src/backends/cuda/index.ts";

async function registerCuda(): Promise<void> {
  if (process.env.BD_TEST_DEVICES === "cpu") return;
  if (process.env.BD_CUDA_EMULATE !== "1" && cudaAvailable({ emulate: false }).ok) {
    initCuda({ emulate: false });
    return;
  }
  if (!Bun.which("g++")) {
    console.warn("[preload] g++ not found: the emulated CUDA device cannot be built, so tests run on the CPU only (apt-get install g++)");
    return;
  }
  const r = await buildKernels({ emu: true, real: false });
  if (!r.ok) throw new Error(`[preload] building the emulated CUDA device failed:\n${r.errors.join("\n")}`);
  initCuda({ emulate: true });
}

setDefaultTimeout(120_000);
await registerCuda();
