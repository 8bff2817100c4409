// `bun-diffusion generate` end to end as a subprocess on the shipped shapes-64 model: the PNG's size
// and embedded A1111 parameters, its pixels against diffusers' golden image for the same prompt,
// seed and sampler (the model's own DDIM, 20 steps), folder output with NNNNN-seed.png numbering
// (one seed per image of a batch, each reproducible alone; numbers claimed atomically by concurrent
// runs), progress output; bad options, bad --out targets and step counts the scheduler refuses exit
// non-zero with a clear message before the model loads and write nothing; Ctrl-C inside a step stops
// within seconds (exit 130, nothing written) and a second Ctrl-C quits at once; the CUDA message
// names the lowest failing layer first; the TTY progress bar.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
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

/** The same, without blocking (for concurrent runs). */
async function cliAsync(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = Bun.spawn([process.execPath, main, "generate", ...args], { cwd: projectRoot, stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  return { code: await p.exited, stdout, stderr };
}

/** 8-bit RGB pixels of a PNG. */
async function pixels(file: string): Promise<Buffer> {
  return (await sharp(readFileSync(file)).raw().toBuffer({ resolveWithObject: true })).data;
}

const LOADED = /loaded SD model/;

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
    expect(r.stderr).toMatch(/loaded SD model \S+ on cpu \(float32: default on cpu\)/); // no --dtype: the device's default, with why
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

  test("--tome installs Token Merging: printed as a feature and carried in the PNG parameters", () => {
    const out = path.join(tmp, "tome.png");
    const r = cli("--model", model, "--prompt", "a red circle", "--steps", "2", "--seed", "1", "--tome", "0.5", "--out", out);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/features: tokenMerging\(mode=tome ratio=0\.5 /);
    expect(readPngText(new Uint8Array(readFileSync(out))).parameters!).toMatch(/Features: tokenMerging\(mode=tome ratio=0\.5 /);
  }, 60_000);

  test("--vae-slicing and --vae-tiling install the VAE features: printed and carried in the PNG parameters", () => {
    const out = path.join(tmp, "vae.png");
    const r = cli("--model", model, "--prompt", "a red circle", "--steps", "2", "--seed", "1", "--width", "128", "--height", "128", "--vae-slicing", "--vae-tiling", "--out", out);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/features: vaeSlicing; vaeTiling\(tileSize=\d+ overlap=[\d.]+\)/);
    expect(readPngText(new Uint8Array(readFileSync(out))).parameters!).toMatch(/Features: vaeSlicing; vaeTiling\(/);
  }, 60_000);

  test("--vae-tiling-seamless installs seamless VAE tiling: printed and carried in the PNG parameters", () => {
    const out = path.join(tmp, "vae-seamless.png");
    const r = cli("--model", model, "--prompt", "a red circle", "--steps", "2", "--seed", "1", "--width", "128", "--height", "128", "--vae-tiling-seamless", "--out", out);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/features: vaeTiling\(tileSize=\d+ overlap=[\d.]+ seamless=true\)/);
    expect(readPngText(new Uint8Array(readFileSync(out))).parameters!).toMatch(/Features: vaeTiling\(tileSize=\d+ overlap=[\d.]+ seamless=true\)/);
  }, 60_000);

  test("--deepcache and --fuse-qkv install the speed features: printed and carried in the PNG parameters", () => {
    const out = path.join(tmp, "speed.png");
    const r = cli("--model", model, "--prompt", "a red circle", "--steps", "3", "--seed", "1", "--deepcache", "3", "--fuse-qkv", "--out", out);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/features: deepCache\(interval=3 branchId=0\); fusedQkv\(/);
    expect(readPngText(new Uint8Array(readFileSync(out))).parameters!).toMatch(/Features: deepCache\(interval=3 branchId=0\); fusedQkv\(/);
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

  test("a folder --out gets NNNNN-seed.png files, numbered after the ones already there", () => {
    const dir = path.join(tmp, "outputs", "nested") + "/";
    const a = cli("--model", model, "--prompt", "a green triangle on a white background", "--steps", "2", "--seed", "7", "--batch", "2", "--out", dir);
    expect(a.code).toBe(0);
    const b = cli("--model", model, "--prompt", "a green triangle on a white background", "--steps", "2", "--seed", "3,4", "--batch", "2", "--out", dir);
    expect(b.code).toBe(0);
    expect(readdirSync(dir).sort()).toEqual(["00000-7.png", "00001-8.png", "00002-3.png", "00003-4.png"]);
    expect(b.stdout.trim().split("\n")).toEqual([path.join(dir, "00002-3.png"), path.join(dir, "00003-4.png")]);
  }, 60_000);

  const bad: [string, string[], RegExp][] = [
    ["width not a multiple of 8", ["--width", "65"], /--width <px>' argument '65' is invalid\. must be a multiple of 8/],
    ["steps 0", ["--steps", "0"], /--steps <n>' argument '0' is invalid\. expected a positive integer/],
    ["unknown scheduler", ["--scheduler", "heun"], /Allowed choices are ddim, pndm, lms, euler, euler_a, dpmpp_2m, dpmpp_2m_karras, unipc, lcm/],
    ["non-numeric cfg", ["--cfg", "lots"], /--cfg <scale>' argument 'lots' is invalid\. expected a number/],
    ["unknown attention kind", ["--attention", "flash"], /Allowed choices are fused, naive, chunked/],
    ["DeepCache interval not a positive integer", ["--deepcache", "0"], /--deepcache <interval>' argument '0' is invalid\. expected a positive integer/],
    ["Token Merging ratio out of range", ["--tome", "0.9"], /--tome 0\.9: ratio must be a number in \[0, 0\.75\]/],
    ["one file for several images", ["--batch", "2"], /--out .*x\.png: names one file but --batch 2 makes 2 images; pass a folder/],
    ["seed list length", ["--seed", "1,2"], /--seed: has 2 seeds for 1 image/],
    ["steps beyond the model's scheduler", ["--steps", "5000"], /error: --steps 5000 is not allowed by the model's scheduler \(DDIMScheduler\): .*must be an integer from 1 to num_train_timesteps .*; pick a step count it allows, or another --scheduler/],
    ["steps the chosen scheduler refuses", ["--steps", "1", "--scheduler", "pndm"], /error: --steps 1 is not allowed by --scheduler pndm: .*must be an integer from 2 to num_train_timesteps/],
  ];
  for (const [what, args, message] of bad) {
    test(`bad option: ${what} → non-zero exit, clear message, model never loaded, nothing written`, () => {
      const dir = path.join(tmp, `bad-${what.replace(/\W+/g, "-")}`);
      mkdirSync(dir);
      const r = cli("--model", model, "--prompt", "a red circle", "--out", path.join(dir, "x.png"), ...args);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toMatch(LOADED);
      expect(r.stdout).toBe("");
      expect(readdirSync(dir)).toEqual([]);
    }, 30_000);
  }

  test("bad --out targets fail before the model loads, naming --out and the fix, and create nothing", () => {
    const base = path.join(tmp, "bad-out");
    mkdirSync(path.join(base, "taken.png"), { recursive: true }); // a folder named like a file
    writeFileSync(path.join(base, "file"), "not a folder");
    const cases: [string, RegExp][] = [
      [path.join(base, "missing", "x.png"), /--out .*missing\/x\.png: the folder .*missing does not exist; create it \(mkdir -p .*missing\)/],
      ["/proc/x.png", /--out \/proc\/x\.png: cannot create files in \/proc \(.+\); pick a folder you can write to/],
      ["/sys/x.png", /--out \/sys\/x\.png: cannot create files in \/sys \(.+\); pick a folder you can write to/],
      ["/dev/null", /--out \/dev\/null: exists and is not a regular file/],
      [path.join(base, "taken.png"), /--out .*taken\.png: is an existing folder; to write numbered images into it, end it with \/ /],
      [path.join(base, "file", "x.png"), /--out .*file\/x\.png: .*file is a file, not a folder/],
      [path.join(base, "file") + "/", /--out .*file\/: .*file is a file, not a folder/],
      [path.join(base, "x.gif"), /--out .*x\.gif: bun-diffusion writes PNG images only \("\.gif" is not supported\); name a \.png file \(.*x\.png\), or a folder ending with \//],
      [path.join(base, "noext"), /--out .*noext: is neither a \.png file nor an existing folder; write .*noext\.png for one image, or .*noext\/ for a folder/],
    ];
    for (const [out, message] of cases) {
      const r = cli("--model", model, "--prompt", "a red circle", "--steps", "2", "--out", out);
      expect(r.code, out).toBe(1);
      expect(r.stderr, out).toMatch(message);
      expect(r.stderr, out).not.toMatch(LOADED);
      expect(r.stderr, out).not.toMatch(/\.tmp|ENOENT|EACCES/); // no internal temp file, no raw errno text
    }
    expect(readdirSync(base).sort()).toEqual(["file", "taken.png"]); // nothing created: no x.gif/, noext/, missing/
    expect(readdirSync(path.join(base, "taken.png"))).toEqual([]);
    expect(existsSync("/proc/x.png") || existsSync("/sys/x.png")).toBe(false);
  }, 60_000);

  test("a batch gets one seed per image (seed, seed+1): each file's seed reproduces that image alone", async () => {
    const dir = path.join(tmp, "batch") + "/";
    const prompt = "a blue square on a yellow background";
    const b = cli("--model", model, "--prompt", prompt, "--steps", "3", "--seed", "7", "--batch", "2", "--out", dir);
    expect(b.code).toBe(0);
    expect(readdirSync(dir).sort()).toEqual(["00000-7.png", "00001-8.png"]);
    const batch = [await pixels(path.join(dir, "00000-7.png")), await pixels(path.join(dir, "00001-8.png"))];
    expect(batch[0]!.equals(batch[1]!)).toBe(false);
    for (const [i, seed] of [7, 8].entries()) {
      const text = readPngText(new Uint8Array(readFileSync(path.join(dir, `0000${i}-${seed}.png`)))).parameters!;
      expect(text).toContain(`Seed: ${seed},`);
      expect(text).not.toContain("Batch size"); // not drawn by one generator: the seed alone reproduces it
      const alone = path.join(tmp, `alone-${seed}.png`);
      const r = cli("--model", model, "--prompt", prompt, "--steps", "3", "--seed", String(seed), "--out", alone);
      expect(r.code).toBe(0);
      expect((await pixels(alone)).equals(batch[i]!)).toBe(true);
    }
  }, 90_000);

  test("two concurrent runs into one folder never take one number", async () => {
    const dir = path.join(tmp, "concurrent") + "/";
    const args = ["--model", model, "--prompt", "a red circle", "--steps", "2", "--batch", "2", "--out", dir];
    const [a, b] = await Promise.all([cliAsync(...args, "--seed", "100"), cliAsync(...args, "--seed", "200")]);
    expect([a.code, b.code]).toEqual([0, 0]);
    const files = readdirSync(dir).sort();
    expect(files.map((f) => f.slice(0, 5))).toEqual(["00000", "00001", "00002", "00003"]);
    expect(files.map((f) => f.slice(6)).sort()).toEqual(["100.png", "101.png", "200.png", "201.png"]);
    expect([...a.stdout.trim().split("\n"), ...b.stdout.trim().split("\n")].map((p) => path.basename(p)).sort()).toEqual(files);
  }, 60_000);

  test("writers in several processes released at once claim distinct numbers and leave no claim or temp files", async () => {
    const dir = path.join(tmp, "claims");
    mkdirSync(dir);
    const start = Date.now() + 1500; // every writer waits for this instant, then writes 6 images
    const script = `
      import { writeOutputs } from "./src/cli/outputs.ts";
      while (Date.now() < ${start}) {}
      const images = Array.from({ length: 6 }, (_, i) => ({ png: new Uint8Array([process.pid & 255, i]), seed: i }));
      console.log(JSON.stringify(writeOutputs({ kind: "folder", dir: ${JSON.stringify(dir)} }, images)));`;
    const procs = Array.from({ length: 4 }, () => Bun.spawn([process.execPath, "-e", script], { cwd: projectRoot, stdout: "pipe", stderr: "pipe" }));
    const outs = await Promise.all(procs.map(async (p) => ({ code: await p.exited, out: await new Response(p.stdout).text(), err: await new Response(p.stderr).text() })));
    for (const o of outs) expect(o.code, o.err).toBe(0);
    const files = readdirSync(dir).sort();
    expect(files.length).toBe(24); // no .claim, no .tmp
    expect(files.map((f) => f.slice(0, 5))).toEqual(Array.from({ length: 24 }, (_, i) => String(i).padStart(5, "0")));
    expect(outs.flatMap((o) => JSON.parse(o.out) as string[]).length).toBe(24);
  }, 60_000);

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

describe("interrupts", () => {
  test("Ctrl-C inside a step: \"stopping\", exit 130 within seconds, the step cut short, nothing written", async () => {
    const dir = path.join(tmp, "interrupted") + "/";
    mkdirSync(dir);
    // 512×512 on shapes-64: one step takes several seconds on the CPU
    const p = Bun.spawn([process.execPath, main, "generate", "--model", model, "--prompt", "a red circle", "--steps", "5", "--width", "512", "--height", "512", "--seed", "1", "--out", dir], {
      cwd: projectRoot,
      stdout: "pipe",
      stderr: "pipe",
    });
    const guard = setTimeout(() => p.kill("SIGKILL"), 90_000);
    let stderr = "";
    let sigintAt = 0;
    const decoder = new TextDecoder();
    for await (const chunk of p.stderr) {
      stderr += decoder.decode(chunk, { stream: true });
      if (!sigintAt && stderr.includes("features:")) {
        sigintAt = -1;
        setTimeout(() => {
          sigintAt = performance.now();
          p.kill("SIGINT");
        }, 2000); // the generation has started: text encoding takes milliseconds, a step seconds
      }
    }
    const code = await p.exited;
    const secondsAfterSigint = (performance.now() - sigintAt) / 1000;
    clearTimeout(guard);
    expect(sigintAt, stderr).toBeGreaterThan(0);
    expect(code, stderr).toBe(130);
    expect(stderr).toContain("stopping…");
    expect(stderr).toMatch(/aborted: generation aborted during step [1-5] of 5; nothing was written/); // cut short inside a step
    expect(stderr).not.toContain("step 5/5");
    expect(secondsAfterSigint).toBeLessThan(15);
    expect(await new Response(p.stdout).text()).toBe("");
    expect(readdirSync(dir)).toEqual([]); // no PNG, no temp file
    console.log(`Ctrl-C inside a 512×512 step: exited ${secondsAfterSigint.toFixed(1)} s after SIGINT`);
  }, 120_000);

  test("the main thread's handler: the first SIGINT raises the shared flag and keeps running, the second exits 130 at once even with a busy worker", async () => {
    const busy = path.join(tmp, "busy-worker.ts");
    writeFileSync(busy, "postMessage('busy'); for (;;) {}\n");
    const script = `
      import { handleInterrupts } from "./src/cli/interrupt.ts";
      const i = handleInterrupts();
      const w = new Worker(${JSON.stringify(busy)});
      w.onmessage = () => console.error("ready");
      const flag = new Int32Array(i.buffer);
      const t = setInterval(() => { if (Atomics.load(flag, 0) === 1) { console.error("flag raised, still running"); clearInterval(t); } }, 20);
      setInterval(() => {}, 1000);`;
    const p = Bun.spawn([process.execPath, "-e", script], { cwd: projectRoot, stdout: "pipe", stderr: "pipe" });
    const guard = setTimeout(() => p.kill("SIGKILL"), 60_000);
    let stderr = "";
    let sent = 0;
    const decoder = new TextDecoder();
    for await (const chunk of p.stderr) {
      stderr += decoder.decode(chunk, { stream: true });
      if (sent === 0 && stderr.includes("ready")) {
        sent = 1;
        p.kill("SIGINT");
      } else if (sent === 1 && stderr.includes("flag raised, still running")) {
        sent = 2;
        p.kill("SIGINT");
      }
    }
    const code = await p.exited;
    clearTimeout(guard);
    expect(stderr).toContain("stopping… (Ctrl-C again to quit at once)");
    expect(stderr).toContain("flag raised, still running");
    expect(stderr).toContain("quit; nothing was written");
    expect(code).toBe(130);
    expect(p.signalCode).toBeNull(); // it exited (130), it was not killed
  }, 90_000);
});

describe("--device cuda without a usable CUDA stack", () => {
  test("the lowest failing layer (driver, runtime) comes first, the missing libraries after it", async () => {
    const { discoverCuda } = await import("../../ffi/cuda/discover.ts");
    const { cudaStackFacts, describeCudaStack } = await import("../../src/backends/cuda/diagnose.ts");
    const empty = mkdtempSync(path.join(tmpdir(), "bd-no-cuda-"));
    try {
      const env = { PATH: process.env.PATH, HOME: empty, BD_CUDA_LIB_DIR: empty, BD_KERNELS_LIB: path.join(empty, "none.so") };
      const lower = describeCudaStack(cudaStackFacts(discoverCuda({ env })));
      if (!lower) return console.log("this machine's driver and device work: no lower layer to report first");
      const p = Bun.spawnSync([process.execPath, main, "generate", "--model", model, "--prompt", "x", "--device", "cuda", "--out", path.join(empty, "x.png")], {
        cwd: projectRoot,
        env,
        stdout: "pipe",
        stderr: "pipe",
      });
      const stderr = p.stderr.toString();
      expect(p.exitCode).toBe(1);
      expect(stderr).toStartWith(`error: device "cuda" is not available: ${lower.message}\n`);
      expect(stderr).toMatch(/driver/);
      const libs = stderr.indexOf("not found. Looked in");
      if (libs >= 0) expect(stderr.indexOf("Once that works, these are still missing:")).toBeLessThan(libs);
      expect(existsSync(path.join(empty, "x.png"))).toBe(false);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  }, 60_000);
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
