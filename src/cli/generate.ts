// `bun-diffusion generate`: text to image from the command line. Options are checked before the
// model loads (numbers, sizes, scheduler names, device, dtype, --out), the pipeline class comes from
// model_index.json (SD 1.x/2.x or SDXL), a progress bar shows steps, it/s and ETA on a TTY (plain
// lines otherwise, on stderr), and the PNGs (with A1111 "parameters") are written atomically to
// --out: a file for one image, or a directory (created) of NNNNN-seed.png files numbered after the
// ones already there. The written paths go to stdout. Ctrl-C aborts between steps and writes nothing.

import { mkdirSync, readdirSync } from "node:fs";
import path from "node:path";
import { type Command, InvalidArgumentError, Option } from "commander";
import type { GeneratedImage } from "../io/image.ts";
import { AbortError, GenerateOptionsError, formatFeatures, loadPipeline, pipelineKind, readModelIndex } from "../pipelines/index.ts";
import { SCHEDULER_NAMES } from "../schedulers/index.ts";
import type { DType, DeviceSpec } from "../tensor/index.ts";

export interface GenerateCliOptions {
  model: string;
  prompt: string;
  negative?: string;
  prompt2?: string;
  steps?: number;
  cfg?: number;
  seed?: number | number[];
  width?: number;
  height?: number;
  scheduler?: string;
  batch: number;
  out: string;
  device: DeviceSpec;
  dtype: DType;
  clipSkip?: number;
  longPrompt?: "truncate" | "chunked";
  variant?: string;
  attention?: "fused" | "naive" | "chunked";
}

const IMAGE_EXT = /\.(png|jpe?g|webp)$/i;

function positiveInt(what: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError(`expected a positive integer for ${what}`);
    return n;
  };
}

function multipleOf8(v: string): number {
  const n = positiveInt("the size")(v);
  if (n % 8 !== 0) throw new InvalidArgumentError(`must be a multiple of 8 (try ${Math.max(8, Math.round(n / 8) * 8)})`);
  return n;
}

function finite(v: string): number {
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n)) throw new InvalidArgumentError("expected a number");
  return n;
}

/** "42" → 42; "1,2,3" → one seed per image. */
function seeds(v: string): number | number[] {
  const parts = v.split(",").map((s) => s.trim());
  const list = parts.map((s) => {
    const n = Number(s);
    if (!/^\d+$/.test(s) || !Number.isSafeInteger(n)) throw new InvalidArgumentError("expected a non-negative integer seed, or a comma-separated list (one per image)");
    return n;
  });
  return list.length === 1 ? list[0]! : list;
}

/** Where each image goes: the --out file, or NNNNN-seed.png in the --out directory after the highest number there. */
export function outputPaths(out: string, images: readonly GeneratedImage[]): string[] {
  if (IMAGE_EXT.test(out)) return [out];
  mkdirSync(out, { recursive: true });
  let next = 0;
  for (const f of readdirSync(out)) {
    const m = /^(\d{5,})-/.exec(f);
    if (m) next = Math.max(next, Number(m[1]) + 1);
  }
  return images.map((img, i) => path.join(out, `${String(next + i).padStart(5, "0")}-${img.parameters?.seed ?? "noseed"}.png`));
}

/** A progress display: a `\r`-redrawn bar on a TTY, plain lines (about every 10 %) otherwise. */
export function progressReporter(stream: NodeJS.WriteStream = process.stderr) {
  const tty = Boolean(stream.isTTY);
  let first = 0;
  return {
    update(step: number, total: number, elapsedMs: number): void {
      if (step === 1) first = elapsedMs; // steady-state rate: from the end of the first step
      const done = step - 1;
      const rate = done > 0 ? (done * 1000) / Math.max(1, elapsedMs - first) : 1000 / Math.max(1, elapsedMs);
      const eta = (total - step) / rate;
      const stats = `${rate.toFixed(2)} it/s, ETA ${formatSeconds(eta)}`;
      if (tty) {
        const width = 30;
        const filled = Math.round((step / total) * width);
        const bar = "=".repeat(Math.max(0, filled - 1)) + (filled > 0 ? (step === total ? "=" : ">") : "") + " ".repeat(width - filled);
        stream.write(`\r  step ${String(step).padStart(String(total).length)}/${total} [${bar}] ${stats}   `);
        if (step === total) stream.write("\n");
      } else if (step === 1 || step === total || Math.floor((step * 10) / total) > Math.floor(((step - 1) * 10) / total))
        stream.write(`step ${step}/${total} (${stats})\n`); // about every 10 %
    },
  };
}

function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return "?";
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)}s`;
  return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, "0")}s`;
}

/** Load, generate, save; returns the written paths. Errors propagate (the command prints them). */
export async function runGenerate(o: GenerateCliOptions, log: (line: string) => void = (l) => console.error(l)): Promise<string[]> {
  if (IMAGE_EXT.test(o.out) && o.batch > 1)
    throw new GenerateOptionsError("--out", `${o.out} names one file but --batch ${o.batch} makes ${o.batch} images; pass a directory`);
  if (Array.isArray(o.seed) && o.seed.length !== o.batch)
    throw new GenerateOptionsError("--seed", `has ${o.seed.length} seeds for ${o.batch} image(s); give one seed or one per image`);
  const index = readModelIndex(o.model);
  const kind = pipelineKind(index.className);
  if (!kind) throw new Error(`${index.dir} holds a ${index.className}; bun-diffusion generates with StableDiffusionPipeline and StableDiffusionXLPipeline folders`);
  const t0 = performance.now();
  const pipe = await loadPipeline(index, {
    device: o.device,
    dtype: o.dtype,
    variant: o.variant,
    attention: o.attention,
    onNotice: (m) => log(`notice: ${m}`),
  });
  const controller = new AbortController();
  const onSigint = () => controller.abort();
  process.once("SIGINT", onSigint);
  try {
    log(`loaded ${kind === "sdxl" ? "SDXL" : "SD"} model ${pipe.modelName} on ${pipe.device} (${pipe.dtype}) in ${((performance.now() - t0) / 1000).toFixed(1)}s`);
    const features = pipe.features();
    log(`features: ${features.length ? formatFeatures(features) : "none"}`);
    const progress = progressReporter();
    const started = performance.now();
    const { images } = await pipe.generate({
      prompt: o.prompt,
      negativePrompt: o.negative,
      ...(o.prompt2 !== undefined ? { prompt2: o.prompt2 } : {}),
      steps: o.steps,
      guidanceScale: o.cfg,
      seed: o.seed,
      width: o.width,
      height: o.height,
      scheduler: o.scheduler,
      numImagesPerPrompt: o.batch,
      clipSkip: o.clipSkip,
      longPrompt: o.longPrompt,
      signal: controller.signal,
      onStep: (step, total, info) => progress.update(step, total, info.elapsedMs),
    });
    const paths = outputPaths(o.out, images);
    for (let i = 0; i < images.length; i++) await images[i]!.save(paths[i]!);
    log(`generated ${images.length} image(s) in ${((performance.now() - started) / 1000).toFixed(1)}s (seed ${images[0]?.parameters?.seed})`);
    return paths;
  } finally {
    process.off("SIGINT", onSigint);
    pipe.dispose();
  }
}

/** Register `generate` on the program. */
export function registerGenerate(program: Command): void {
  program
    .command("generate")
    .description("generate images from a text prompt and write PNGs")
    .requiredOption("-m, --model <dir>", "diffusers pipeline folder (model_index.json, unet/, vae/, ...) or a Hugging Face cache folder of one")
    .requiredOption("-p, --prompt <text>", "what to draw")
    .option("-n, --negative <text>", "negative prompt")
    .option("--prompt2 <text>", "SDXL: prompt for the second text encoder (default: --prompt)")
    .option("-s, --steps <n>", "denoising steps (default 50)", positiveInt("--steps"))
    .option("-g, --cfg <scale>", "classifier-free guidance scale (default 7.5; ≤ 1 disables guidance)", finite)
    .option("--seed <n>", "seed (default random); a comma-separated list gives one seed per image", seeds)
    .option("-W, --width <px>", "image width, a multiple of 8 (default: the model's)", multipleOf8)
    .option("-H, --height <px>", "image height, a multiple of 8 (default: the model's)", multipleOf8)
    .addOption(new Option("--scheduler <name>", "sampler (default: the model's own)").choices([...SCHEDULER_NAMES]))
    .option("-b, --batch <n>", "images to generate", positiveInt("--batch"), 1)
    .option("-o, --out <file-or-dir>", "output .png file (one image) or directory (NNNNN-seed.png files)", "outputs")
    .addOption(new Option("--device <device>", "where to run").choices(["cpu", "cuda", "auto"]).default("cpu"))
    .addOption(new Option("--dtype <dtype>", "compute dtype").choices(["float32", "float16", "bfloat16"]).default("float32"))
    .option("--clip-skip <n>", "skip the last n CLIP layers (diffusers' clip_skip)", positiveInt("--clip-skip"))
    .addOption(new Option("--long-prompt <mode>", "prompts over 75 tokens").choices(["truncate", "chunked"]))
    .option("--variant <name>", 'weights variant, e.g. "fp16"')
    .addOption(
      new Option("--attention <kind>", 'attention implementation: "fused" (default; the backend\'s blockwise kernel), "naive" (materialised scores), "chunked" (online softmax from tensor ops)').choices(["fused", "naive", "chunked"]),
    )
    .action(async (opts: GenerateCliOptions) => {
      try {
        const paths = await runGenerate(opts);
        for (const p of paths) console.log(p);
      } catch (e) {
        const err = e as Error;
        if (err instanceof AbortError) {
          console.error(`\naborted: ${err.message}; nothing was written`);
          process.exitCode = 130;
        } else {
          console.error(`error: ${err instanceof GenerateOptionsError ? `--${cliName(err.option)}: ${err.detail}` : err.message}`);
          process.exitCode = 1;
        }
      }
    });
}

/** generate() option names → CLI flags in messages. */
function cliName(option: string): string {
  const map: Record<string, string> = { guidanceScale: "cfg", negativePrompt: "negative", numImagesPerPrompt: "batch", longPrompt: "long-prompt", clipSkip: "clip-skip" };
  return map[option] ?? option.replace(/^--/, "");
}
