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

test("text output names the GEMM backend", () => {
  const r = Bun.spawnSync([process.execPath, path.join(projectRoot, "src/cli/main.ts"), "info"], { cwd: projectRoot });
  expect(r.exitCode).toBe(0);
  expect(r.stdout.toString()).toMatch(/backend cpu\s+GEMM: (openblas|typescript)/);
});
