// `bun-diffusion generate`: text to image from the command line. The main thread checks everything it
// can before the model loads (option syntax, --out as a file or folder where files can be created,
// --steps against the scheduler that will run, one seed per image of a batch), then runs load +
// generation in a worker (generate-worker.ts) and keeps the signals and the files: Ctrl-C once
// prints "stopping…" and the run stops at the next module call; twice ends the process at once
// (exit code 130 either way, nothing written). The pipeline class comes from model_index.json (SD
// 1.x/2.x or SDXL); progress (steps, it/s, ETA) goes to stderr; the PNGs (with A1111 "parameters")
// are written atomically by the main thread (outputs.ts) and their paths printed on stdout.

import { type Command, InvalidArgumentError, Option } from "commander";
import { pipelineKind, readModelIndex } from "../pipelines/index.ts";
import { SCHEDULER_NAMES } from "../schedulers/index.ts";
import { handleInterrupts } from "./interrupt.ts";
import { resolveOutTarget } from "./out-target.ts";
import { writeOutputs } from "./outputs.ts";
import { finite, multipleOf8, positiveInt } from "./arguments.ts";
import { batchSeeds, checkSteps, checkTome } from "./preflight.ts";
import { progressReporter } from "./progress.ts";
import type { GenerationRequest, WorkerMessage } from "./worker-protocol.ts";

export { progressReporter } from "./progress.ts";

/** The parsed flags: the worker's request (worker-protocol.ts) before seeds are assigned, plus --out. */
export interface GenerateCliOptions extends Omit<GenerationRequest, "seed" | "interrupt"> {
  /** One seed, or one per image; default random. */
  seed?: number | number[];
  out: string;
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

/** A failure with the exit code to end with (1: an error, 130: interrupted). */
class RunFailure extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

/**
 * Check, generate in a worker, write; returns the written paths. Throws RunFailure (interrupted or
 * failed in the worker) or the error of a check (before the model loads).
 */
export async function runGenerate(o: GenerateCliOptions, log: (line: string) => void = (l) => console.error(l)): Promise<string[]> {
  const seed = batchSeeds(o.seed, o.batch);
  const target = resolveOutTarget(o.out, o.batch);
  const index = readModelIndex(o.model);
  if (!pipelineKind(index.className))
    throw new Error(`${index.dir} holds a ${index.className}; bun-diffusion generates with StableDiffusionPipeline and StableDiffusionXLPipeline folders`);
  checkSteps(index, o.steps, o.scheduler);
  checkTome(o.tome);
  checkOffload(o);

  const progress = progressReporter();
  const interrupt = handleInterrupts(() => progress.interrupt());
  const { out: _out, ...rest } = o;
  const request: GenerationRequest = { ...rest, seed, interrupt: interrupt.buffer };
  const worker = new Worker(new URL("./generate-worker.ts", import.meta.url).href);
  try {
    const result = await new Promise<Extract<WorkerMessage, { type: "images" }>>((resolve, reject) => {
      worker.onmessage = (e: MessageEvent<WorkerMessage>) => {
        const m = e.data;
        if (m.type === "log") log(m.line);
        else if (m.type === "progress") progress.update(m.step, m.total, m.elapsedMs);
        else if (m.type === "images") resolve(m);
        else reject(new RunFailure(m.kind === "abort" ? `aborted: ${m.message}; nothing was written` : `error: ${m.message}`, m.kind === "abort" ? 130 : 1));
      };
      worker.onerror = (e: ErrorEvent) => reject(new RunFailure(`error: the generation worker failed: ${e.message}`, 1));
      worker.postMessage(request);
    });
    progress.interrupt();
    if (interrupt.requested) throw new RunFailure("aborted: stopped after the last step; nothing was written", 130);
    const paths = writeOutputs(target, result.images);
    const seeds = result.images.map((i) => i.seed);
    log(`generated ${result.images.length} image(s) in ${result.seconds.toFixed(1)}s (seed ${seeds.length > 1 ? seeds.join(", ") : seeds[0]})`);
    return paths;
  } finally {
    worker.terminate();
    interrupt.dispose();
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
    .option("--seed <n>", "seed (default random); image i of a batch gets seed+i; a comma-separated list gives one seed per image", seeds)
    .option("-W, --width <px>", "image width, a multiple of 8 (default: the model's)", multipleOf8)
    .option("-H, --height <px>", "image height, a multiple of 8 (default: the model's)", multipleOf8)
    .addOption(new Option("--scheduler <name>", "sampler (default: the model's own)").choices([...SCHEDULER_NAMES]))
    .option("-b, --batch <n>", "images to generate", positiveInt("--batch"), 1)
    .option("-o, --out <file-or-dir>", "output .png file (one image), or a folder ending with / or existing (NNNNN-seed.png files; created when missing)", "outputs/")
    .addOption(new Option("--device <device>", "where to run").choices(["cpu", "cuda", "auto"]).default("cpu"))
    .addOption(
      new Option("--dtype <dtype>", "compute dtype (default: bfloat16 on CUDA compute capability ≥ 8.0, float16 below, float32 on the CPU)").choices([
        "float32", "float16", "bfloat16",
      ]),
    )
    .option("--clip-skip <n>", "skip the last n CLIP layers (diffusers' clip_skip)", positiveInt("--clip-skip"))
    .addOption(new Option("--long-prompt <mode>", "prompts over 75 tokens").choices(["truncate", "chunked"]))
    .option("--variant <name>", 'weights variant, e.g. "fp16"')
    .addOption(
      new Option("--tome <ratio>", "Token Merging (tomesd): merge this share of the tokens in the highest-resolution attention level, e.g. 0.5").argParser(finite),
    )
    .option("--deepcache <interval>", "DeepCache: run the whole UNet every <interval> steps and only its shallow branch in between (e.g. 3)", positiveInt("--deepcache"))
    .option("--fuse-qkv", "fused q/k/v projections, and the prompt's cross-attention keys/values computed once per image (on by default on CUDA unless --offload)")
    .option("--vae-slicing", "decode the batch one image at a time (less memory for --batch > 1)")
    .option("--vae-tiling", "decode in overlapping tiles of the VAE's sample size, as diffusers (less memory for large images)")
    .option("--vae-tiling-seamless", "decode tile by tile layer by layer, equal to the untiled decode (no seams; activations kept in host memory)")
    .addOption(
      new Option("--offload <strategy>", 'CPU offload (CUDA): "model" moves whole components to the GPU in turn, "sequential" each layer\'s weights with prefetch, "auto" the cheapest that fits the free GPU memory (the planner\'s choice is printed)').choices(["none", "model", "sequential", "auto"]),
    )
    .addOption(
      new Option("--attention <kind>", 'attention implementation: "fused" (default; the backend\'s blockwise kernel), "naive" (materialised scores), "chunked" (online softmax from tensor ops)').choices(["fused", "naive", "chunked"]),
    )
    .action(async (opts: GenerateCliOptions) => {
      try {
        const paths = await runGenerate(opts);
        for (const p of paths) console.log(p);
      } catch (e) {
        const err = e as Error;
        if (err instanceof RunFailure) {
          console.error(err.message);
          process.exitCode = err.exitCode;
        } else {
          console.error(`error: ${err.message}`);
          process.exitCode = 1;
        }
      }
    });
}

/** --offload needs a CUDA device and does not combine with --fuse-qkv: say so before the model loads. */
function checkOffload(o: GenerateCliOptions): void {
  if (!o.offload || o.offload === "none") return;
  if (o.device === "cpu")
    throw new Error(`--offload ${o.offload} needs --device cuda: on the CPU the weights already live in host memory (drop --offload)`);
  if (o.fuseQkv) throw new Error(`--offload ${o.offload} and --fuse-qkv do not combine (fused QKV's concatenated weights are not offloaded); drop one of them`);
}
