// `bun-diffusion plan` runs as a subprocess: a known architecture or a model folder (configs only), text and
// JSON output that agree with the library's planMemory, and flag errors that name the flag.

import { expect, test } from "bun:test";
import path from "node:path";
import { MetaModels, folderPlanModels, knownPlanModels, planMemory } from "../../src/pipelines/index.ts";
import { projectRoot } from "../helpers/paths.ts";

const cli = (...args: string[]) => {
  const r = Bun.spawnSync([process.execPath, path.join(projectRoot, "src/cli/main.ts"), "plan", ...args], { cwd: projectRoot });
  return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
};

test("--config sd15 --json: the library's plan, phase by phase", () => {
  const r = cli("--config", "sd15", "--dtype", "float16", "--width", "768", "--height", "512", "--batch", "2", "--offload", "model", "--json");
  expect(r.code).toBe(0);
  const got = JSON.parse(r.out);
  const m = new MetaModels(knownPlanModels("sd15", "float16"));
  try {
    const want = planMemory(m, { width: 768, height: 512, batch: 2, offload: "model" });
    expect(got.phases).toEqual(want.phases);
    expect([got.width, got.height, got.batch, got.offload, got.dtype]).toEqual([768, 512, 2, "model", "float16"]);
  } finally {
    m.dispose();
  }
});

test("--model DIR plans the demo model from its configs, with features; text output names each phase", () => {
  const dir = path.join(projectRoot, "assets/shapes-64");
  const r = cli("--model", dir, "--tome", "0.5", "--attention", "naive", "--vae-tiling");
  expect(r.code).toBe(0);
  expect(r.out).toMatch(/attention naive, offload none, ToMe 0.5, VAE tiling/);
  for (const ph of ["text encoding", "denoising", "decoding"]) expect(r.out).toMatch(new RegExp(`^${ph}\\s+\\S+`, "m"));
  const m = new MetaModels(folderPlanModels(dir, "float32"));
  try {
    const want = planMemory(m, { width: 64, height: 64, tome: { ratio: 0.5 }, attention: "naive", vaeTiling: true });
    const json = JSON.parse(cli("--model", dir, "--tome", "0.5", "--attention", "naive", "--vae-tiling", "--json").out);
    expect(json.phases).toEqual(want.phases);
  } finally {
    m.dispose();
  }
});

test("flag errors name the flag and the fix", () => {
  expect(cli("--config", "sd15", "--model", "x").err).toMatch(/give either --model DIR or --config sd15\|sd21\|sdxl/);
  expect(cli().err).toMatch(/give either --model DIR or --config/);
  expect(cli("--config", "sd3").err).toMatch(/--config.*sd3.*(sd15|choices)/s);
  expect(cli("--config", "sd15", "--width", "500").err).toMatch(/multiple of 8/);
  expect(cli("--config", "sd15", "--tome", "0.99").err).toMatch(/--tome|ratio/);
  expect(cli("--model", "/nonexistent/folder").err).toMatch(/does not exist/);
  for (const r of [cli("--config", "sd15", "--model", "x"), cli("--model", "/nonexistent/folder")]) expect(r.code).toBe(1);
});
