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
  expect(Object.keys(cuda.libraries).sort()).toEqual(["cublas", "cudart", "cudnn", "kernels"]);
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
});

test("text output names the GEMM backend", () => {
  const r = Bun.spawnSync([process.execPath, path.join(projectRoot, "src/cli/main.ts"), "info"], { cwd: projectRoot });
  expect(r.exitCode).toBe(0);
  expect(r.stdout.toString()).toMatch(/backend cpu\s+GEMM: (openblas|typescript)/);
});
