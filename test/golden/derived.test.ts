// The golden drivers are general: a derived golden folder (test/golden/derive.ts: batch-2/3 UNet cases
// with 1-d per-sample timesteps, batch-2 pipelines with SDXL micro-conditioning written out, reordered
// text-encoder rows, a non-square VAE decode) is built in a temp dir from the golden folder, and every
// registered driver that runs on the CPU and drives one of its entries is run on it in a subprocess
// (`bun test <files>` with BD_GOLDEN_DIR=<tmp>), together with the coverage test. They must pass and
// must have run: a passing test per derived entry (a todo per pending one) and no failures. The child gets the
// test command's per-test timeout (Bun 1.4 keeps a preload's default timeout for its first file only).

import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { type GoldenEntry, goldenIndex } from "../helpers/golden.ts";
import { parsePythonJson } from "../../src/io/python-json.ts";
import { goldenDir, projectRoot, requireDir } from "../helpers/paths.ts";
import { type DerivedFile, buildDerivedGolden } from "./derive.ts";
import { GOLDEN_DRIVERS, pendingReason } from "./registry.ts";

let tmp = "";
let derived: DerivedFile[] = [];
let index: GoldenEntry[] = [];

beforeAll(async () => {
  requireDir(goldenDir, "the golden folder");
  tmp = mkdtempSync(path.join(tmpdir(), "bd-derived-golden-"));
  derived = await buildDerivedGolden(goldenDir, tmp);
  index = (parsePythonJson(await Bun.file(path.join(tmp, "index.json")).text()) as { files: GoldenEntry[] }).files;
});
afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

test("the derived folder really differs from its source: batch sizes, 1-d timesteps, row orders, shapes, sdxl_extra", () => {
  for (const d of derived) console.log(`derived ${d.file}: ${d.how}`);
  const source = new Map(goldenIndex().map((e) => [e.file, e]));
  const shape = (e: GoldenEntry | undefined, n: string) => JSON.stringify(e?.tensors[n]?.shape);
  const unet = index.filter((e) => e.file.startsWith("unet/"));
  expect(unet.length).toBeGreaterThan(0);
  for (const e of unet) expect(Object.keys(e.tensors).some((n) => n.endsWith("/timestep") && e.tensors[n]!.shape.length === 1 && e.tensors[n]!.shape[0]! > 1), e.file).toBe(true);
  const pipes = index.filter((e) => e.file.startsWith("pipeline/"));
  expect(pipes.length).toBeGreaterThan(0);
  for (const e of pipes) expect(e.tensors.prompt_embeds!.shape[0], e.file).toBe(2 * source.get(e.file)!.tensors.prompt_embeds!.shape[0]!);
  expect(pipes.some((e) => Object.keys((e.meta.sdxl_extra ?? {}) as object).length > 0)).toBe(true);
  const texts = index.filter((e) => e.file.startsWith("text_encoder/"));
  for (const e of texts) expect(shape(e, "input_ids"), e.file).not.toBe(shape(source.get(e.file), "input_ids"));
  const vaes = index.filter((e) => e.file.startsWith("vae/"));
  for (const e of vaes) expect(shape(e, "decode/z"), e.file).not.toBe(shape(source.get(e.file), "decode/z"));
});

test("every CPU golden driver passes on the derived folder and runs its cases", () => {
  const files = GOLDEN_DRIVERS.filter((d) => d.device === undefined && index.some(d.match)).map((d) => d.file);
  files.push("test/golden/coverage.test.ts");
  const started = performance.now();
  const r = Bun.spawnSync([process.execPath, "test", "--timeout", "120000", ...files], {
    cwd: projectRoot,
    env: { ...process.env, BD_GOLDEN_DIR: tmp, BD_TEST_DEVICES: "cpu" }, // CPU only: the CUDA driver is not among them
    stdout: "pipe",
    stderr: "pipe",
  });
  const out = `${r.stdout.toString()}\n${r.stderr.toString()}`;
  const count = (what: string) => Number(new RegExp(`^\\s*(\\d+) ${what}$`, "m").exec(out)?.[1] ?? NaN);
  console.log(`derived golden run (${files.join(", ")}): ${count("pass")} pass, ${count("fail")} fail in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  if (r.exitCode !== 0) console.log(out.split("\n").filter((l) => l.startsWith("(fail)") || /error/i.test(l)).join("\n"));
  expect(r.exitCode).toBe(0);
  expect(count("fail")).toBe(0);
  expect(count("pass")).toBeGreaterThan(0);
  expect(out).not.toMatch(/^\s*0 pass$/m);
  // each derived entry was really exercised: a passing test names it (a todo for a pending one)
  const lines = out.split("\n");
  for (const e of index) {
    const mark = pendingReason(e) === null ? "(pass)" : "(todo)";
    expect(lines.some((l) => l.startsWith(mark) && l.includes(e.file)), `${mark} ${e.file}`).toBe(true);
  }
}, 180_000);
