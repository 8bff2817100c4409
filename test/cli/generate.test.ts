// `bun-diffusion generate` end to end as a subprocess on the shipped shapes-64 model: the PNG's size
// and embedded A1111 parameters, its pixels against diffusers' golden image for the same prompt,
// seed and sampler (the model's own DDIM, 20 steps), directory output with NNNNN-seed.png numbering,
// progress output; bad options exit non-zero with a clear message and write nothing; the TTY
// progress bar.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import sharp from "sharp";
import { progressReporter } from "../../src/cli/generate.ts";
import { readPngText } from "../../src/io/png-text.ts";
import { openSafetensors } from "../../src/io/safetensors.ts";
import { entryToTensor } from "../../src/io/tensor-io.ts";
import { projectRoot, sharedDir } from "../helpers/paths.ts";

const main = path.join(projectRoot, "src", "cli", "main.ts");
const model = path.join(projectRoot, "assets", "shapes-64");
let tmp: string;

function cli(...args: string[]): { code: number; stdout: string; stderr: string } {
  const p = Bun.spawnSync([process.execPath, main, "generate", ...args], { cwd: projectRoot, stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode ?? -1, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

beforeAll(() => {
  tmp = mkdtempSync(path.join(tmpdir(), "bd-cli-"));
});

afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

describe("bun-diffusion generate", () => {
  test("writes the PNG of the README command: 64×64, A1111 parameters, diffusers' pixels", async () => {
    const out = path.join(tmp, "x.png");
    const t0 = performance.now();
    const r = cli("--model", model, "--prompt", "a red circle on a blue background", "--steps", "20", "--seed", "0", "--out", out);
    const seconds = (performance.now() - t0) / 1000;
    expect(r.stderr).not.toMatch(/error/);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(out);
    expect(r.stderr).toMatch(/step 20\/20 \(.*it\/s, ETA/); // plain progress lines when not on a TTY
    console.log(`CLI demo run (20 steps, process start to PNG): ${seconds.toFixed(1)} s`);

    const png = new Uint8Array(readFileSync(out));
    const meta = await sharp(png).metadata();
    expect([meta.format, meta.width, meta.height, meta.channels]).toEqual(["png", 64, 64, 3]);
    const text = readPngText(png).parameters!;
    expect(text.split("\n")[0]).toBe("a red circle on a blue background");
    for (const field of ["Steps: 20", "Sampler: DDIM", "CFG scale: 7.5", "Seed: 0", "Size: 64x64", "Model: shapes-64"]) expect(text).toContain(field);

    // diffusers' image for this prompt, seed and scheduler (golden ddim/p0), as 8-bit RGB
    const golden = openSafetensors(path.join(sharedDir, "models", "shapes-64", "golden.safetensors"));
    const ref = entryToTensor(golden.get("ddim/p0/image"));
    const v = ref.toFloat32Array(); // [1, 3, 64, 64]
    ref.dispose();
    const { data } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    let worst = 0;
    for (let c = 0; c < 3; c++) for (let i = 0; i < 64 * 64; i++) worst = Math.max(worst, Math.abs(data[i * 3 + c]! - v[c * 4096 + i]! * 255));
    expect(worst).toBeLessThanOrEqual(1); // rounding only
  }, 60_000);

  test("--attention sets the pipeline's attention kind: printed as a feature and carried in the PNG parameters", async () => {
    const out = path.join(tmp, "attn.png");
    const r = cli("--model", model, "--prompt", "a red circle", "--steps", "2", "--seed", "1", "--attention", "chunked", "--out", out);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("features: attention(kind=chunked)");
    const text = readPngText(new Uint8Array(readFileSync(out))).parameters!;
    expect(text).toContain("Features: attention(kind=chunked)");
    const plain = cli("--model", model, "--prompt", "a red circle", "--steps", "2", "--seed", "1", "--out", path.join(tmp, "plain.png"));
    expect(plain.stderr).toContain("features: none");
    expect(readPngText(new Uint8Array(readFileSync(path.join(tmp, "plain.png")))).parameters!).not.toContain("Features:");
  }, 60_000);

  test("a directory --out gets NNNNN-seed.png files, numbered after the ones already there", () => {
    const dir = path.join(tmp, "outputs", "nested");
    const a = cli("--model", model, "--prompt", "a green triangle on a white background", "--steps", "2", "--seed", "7", "--batch", "2", "--out", dir);
    expect(a.code).toBe(0);
    const b = cli("--model", model, "--prompt", "a green triangle on a white background", "--steps", "2", "--seed", "3,4", "--batch", "2", "--out", dir);
    expect(b.code).toBe(0);
    expect(readdirSync(dir).sort()).toEqual(["00000-7.png", "00001-7.png", "00002-3.png", "00003-4.png"]);
    expect(b.stdout.trim().split("\n")).toEqual([path.join(dir, "00002-3.png"), path.join(dir, "00003-4.png")]);
  }, 60_000);

  const bad: [string, string[], RegExp][] = [
    ["width not a multiple of 8", ["--width", "65"], /--width <px>' argument '65' is invalid\. must be a multiple of 8/],
    ["steps 0", ["--steps", "0"], /--steps <n>' argument '0' is invalid\. expected a positive integer/],
    ["unknown scheduler", ["--scheduler", "heun"], /Allowed choices are ddim, pndm, lms, euler, euler_a, dpmpp_2m, dpmpp_2m_karras, unipc, lcm/],
    ["non-numeric cfg", ["--cfg", "lots"], /--cfg <scale>' argument 'lots' is invalid\. expected a number/],
    ["unknown attention kind", ["--attention", "flash"], /Allowed choices are fused, naive, chunked/],
    ["one file for several images", ["--batch", "2"], /names one file but --batch 2 makes 2 images; pass a directory/],
    ["seed list length", ["--seed", "1,2"], /--seed: has 2 seeds for 1 image/],
    ["cuda without a usable CUDA setup", ["--device", "cuda"], /device "cuda" is not available: ./],
  ];
  for (const [what, args, message] of bad) {
    test(`bad option: ${what} → non-zero exit, clear message, nothing written`, () => {
      const dir = path.join(tmp, `bad-${what.replace(/\W+/g, "-")}`);
      const out = path.join(dir, "x.png");
      const r = cli("--model", model, "--prompt", "a red circle", "--out", out, ...args);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(message);
      expect(r.stdout).toBe("");
      expect(existsSync(dir)).toBe(false);
    }, 30_000);
  }

  test("a folder that is not a pipeline → non-zero exit naming model_index.json", () => {
    const r = cli("--model", tmp, "--prompt", "x", "--out", path.join(tmp, "y.png"));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/has no model_index\.json/);
    expect(existsSync(path.join(tmp, "y.png"))).toBe(false);
  });

  test("--device auto falls back to the CPU with one notice", () => {
    const r = cli("--model", model, "--prompt", "a red circle", "--steps", "2", "--device", "auto", "--out", path.join(tmp, "auto.png"));
    expect(r.code).toBe(0);
    expect(r.stderr.match(/notice: .*running on the CPU/g)?.length).toBe(1);
  }, 30_000);
});

describe("progress display", () => {
  test("on a TTY: one line redrawn with \\r, steps, it/s and ETA; a newline at the end", () => {
    let written = "";
    const stream = { isTTY: true, write: (s: string) => ((written += s), true) } as unknown as NodeJS.WriteStream;
    const p = progressReporter(stream);
    for (let i = 1; i <= 4; i++) p.update(i, 4, i * 100);
    expect(written.split("\r").length).toBe(5);
    expect(written).toContain("step 4/4 [==============================] 10.00 it/s, ETA 0.0s");
    expect(written).toMatch(/step 2\/4 \[=+> +\]/);
    expect(written.endsWith("\n")).toBe(true);
    expect(written.slice(0, -1)).not.toContain("\n");
  });
});
