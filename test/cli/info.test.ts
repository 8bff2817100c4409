// `bun-diffusion info` runs as a subprocess and reports the runtime, backends and libraries.

import { expect, test } from "bun:test";
import path from "node:path";
import { projectRoot } from "../helpers/paths.ts";

test("info --json reports runtime, CPU backend and OpenBLAS status", () => {
  const r = Bun.spawnSync([process.execPath, path.join(projectRoot, "src/cli/main.ts"), "info", "--json"], { cwd: projectRoot });
  expect(r.exitCode).toBe(0);
  const info = JSON.parse(r.stdout.toString());
  expect(info.package.name).toBe("bun-diffusion");
  expect(info.runtime.bun).toBe(Bun.version);
  expect(typeof info.backends.cpu.gemm).toBe("string");
  expect(info.backends.meta).toBe(true);
  const ob = info.libraries.openblas;
  // Either it loaded (and says from where), or it says why not and what to install.
  if (ob.loaded) expect(ob.path).toBeTruthy();
  else expect(ob.reason).toMatch(/libopenblas0/);
});

test("info reports the CUDA environment: libraries with where they were found or where we looked", () => {
  const r = Bun.spawnSync([process.execPath, path.join(projectRoot, "src/cli/main.ts"), "info", "--json"], { cwd: projectRoot });
  const cuda = JSON.parse(r.stdout.toString()).cuda;
  expect(Object.keys(cuda.libraries).sort()).toEqual(["cublas", "cublasLt", "cudart", "cudnn", "kernels"]);
  expect(cuda.libraries.cublasLt.optional).toBe(true); // linear layers fall back to cuBLAS without it
  for (const lib of Object.values(cuda.libraries) as { path: string | null; searched?: string[] }[]) {
    if (!lib.path) expect(lib.searched!.length).toBeGreaterThan(0);
  }
  expect(cuda.available).toBe(cuda.devices.length > 0 && cuda.problems.length === 0);
});

test("with BD_CUDA_EMULATE=1 info reports the emulated device", () => {
  const r = Bun.spawnSync([process.execPath, path.join(projectRoot, "src/cli/main.ts"), "info"], {
    cwd: projectRoot,
    env: { ...process.env, BD_CUDA_EMULATE: "1" },
  });
  expect(r.exitCode).toBe(0);
  expect(r.stdout.toString()).toMatch(/backend cuda available \(emulated device\)/);
  expect(r.stdout.toString()).toMatch(/cublas\s+\S+emu\/libcublas\.so/);
  expect(r.stdout.toString()).toMatch(/cublasLt\s+\S+emu\/libcublasLt\.so/);
  expect(r.stdout.toString()).toMatch(/linear\s+cuBLASLt matmul with bias \/ GELU\(tanh\) epilogues/);
  expect(r.stdout.toString()).toMatch(/sm 8\.0.*pipelines default to bfloat16/);
  const off = Bun.spawnSync([process.execPath, path.join(projectRoot, "src/cli/main.ts"), "info"], {
    cwd: projectRoot,
    env: { ...process.env, BD_CUDA_EMULATE: "1", BD_CUDA_LINEAR: "cublas", BD_EMU_COMPUTE_CAPABILITY: "7.5" },
  });
  expect(off.stdout.toString()).toMatch(/linear\s+cuBLAS GEMM \+ bias kernel \(BD_CUDA_LINEAR=cublas\)/);
  expect(off.stdout.toString()).toMatch(/sm 7\.5.*pipelines default to float16/);
});

test("text output names the GEMM backend", () => {
  const r = Bun.spawnSync([process.execPath, path.join(projectRoot, "src/cli/main.ts"), "info"], { cwd: projectRoot });
  expect(r.exitCode).toBe(0);
  expect(r.stdout.toString()).toMatch(/backend cpu\s+GEMM: (openblas|typescript)/);
});
