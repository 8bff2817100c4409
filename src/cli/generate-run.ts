// The generation half of `bun-diffusion generate`, run inside the worker: load the pipeline,
// generate each image with its own seed, encode the PNGs and post them to the main thread, which
// writes them. The user's Ctrl-C
// arrives as a shared flag (Atomics): a forward pre-hook on every module of the pipeline's models
// turns it into an abort of the run's AbortSignal, so generate() stops at the next module call (its
// own module-call check) and frees everything. Nothing is written here.

import type { HookHandle } from "../nn/module.ts";
import { AbortError, GenerateOptionsError, formatFeatures, loadPipeline, pipelineKind, readModelIndex } from "../pipelines/index.ts";
import { INTERRUPT_FLAG, type GenerationRequest, type WorkerMessage } from "./worker-protocol.ts";

/** generate() option names → CLI flags in messages. */
export function cliName(option: string): string {
  const map: Record<string, string> = { guidanceScale: "cfg", negativePrompt: "negative", numImagesPerPrompt: "batch", longPrompt: "long-prompt", clipSkip: "clip-skip" };
  return map[option] ?? option.replace(/^--/, "");
}

/** Run one request; every outcome is posted (the last message is "images" or "error"). */
export async function runGeneration(o: GenerationRequest, post: (m: WorkerMessage, transfer?: ArrayBuffer[]) => void): Promise<void> {
  const flag = new Int32Array(o.interrupt);
  const interrupted = () => Atomics.load(flag, INTERRUPT_FLAG) !== 0;
  const log = (line: string) => post({ type: "log", line });
  let pipe: Awaited<ReturnType<typeof loadPipeline>> | undefined;
  const hooks: HookHandle[] = [];
  try {
    const index = readModelIndex(o.model);
    const kind = pipelineKind(index.className);
    const t0 = performance.now();
    pipe = await loadPipeline(index, { device: o.device, dtype: o.dtype, variant: o.variant, attention: o.attention, onNotice: (m) => log(`notice: ${m}`) });
    log(`loaded ${kind === "sdxl" ? "SDXL" : "SD"} model ${pipe.modelName} on ${pipe.device} (${pipe.dtype}${pipe.dtypeReason === "given" ? "" : `: ${pipe.dtypeReason}`}) in ${((performance.now() - t0) / 1000).toFixed(1)}s`);
    if (o.tome !== undefined) pipe.enableTokenMerging({ ratio: o.tome });
    if (o.deepcache !== undefined) pipe.enableDeepCache({ interval: o.deepcache });
    if (o.fuseQkv) pipe.fuseQkvProjections();
    if (o.vaeSlicing) pipe.enableVaeSlicing();
    if (o.vaeTiling || o.vaeTilingSeamless) pipe.enableVaeTiling(o.vaeTilingSeamless ? { seamless: true } : {});
    if (o.offload === "model") pipe.enableModelCpuOffload();
    if (o.offload === "sequential") pipe.enableSequentialCpuOffload();
    // one generate() per image below: the budget is for a single image at the requested size
    if (o.offload === "auto") log(`offload: ${pipe.enableOffload({ maxVram: "auto", width: o.width, height: o.height, cfg: o.cfg === undefined || o.cfg > 1 }).reason}`);
    const features = pipe.features();
    log(`features: ${features.length ? formatFeatures(features) : "none"}`);
    const controller = new AbortController();
    const reason = new Error("interrupted (Ctrl-C)");
    const poll = () => {
      if (!controller.signal.aborted && interrupted()) controller.abort(reason);
    };
    poll();
    // registered before generate() installs its own check, so both run at the same module call
    for (const model of pipe.models()) for (const [, m] of model.namedModules()) hooks.push(m.registerForwardPreHook(poll));
    const started = performance.now();
    // One generate() per image, each with its own seed: an image of a batch is then computed exactly as
    // a run of that seed alone (batched CPU kernels may pick other algorithms for other batch sizes,
    // which can move a pixel by one), so the seed in its file name reproduces it bit for bit.
    const seeds = Array.isArray(o.seed) ? o.seed : [o.seed];
    const encoded: { png: Uint8Array; seed?: number }[] = [];
    for (const [i, seed] of seeds.entries()) {
      const { images } = await pipe.generate({
        prompt: o.prompt,
        negativePrompt: o.negative,
        ...(o.prompt2 !== undefined ? { prompt2: o.prompt2 } : {}),
        steps: o.steps,
        guidanceScale: o.cfg,
        seed,
        width: o.width,
        height: o.height,
        scheduler: o.scheduler,
        clipSkip: o.clipSkip,
        longPrompt: o.longPrompt,
        signal: controller.signal,
        onStep: (step, total) => {
          post({ type: "progress", step: i * total + step, total: seeds.length * total, elapsedMs: performance.now() - started });
          poll();
        },
      });
      for (const img of images) encoded.push({ png: await img.toBuffer("png"), seed: img.parameters?.seed });
    }
    post({ type: "images", images: encoded, seconds: (performance.now() - started) / 1000 }, encoded.map((e) => e.png.buffer as ArrayBuffer));
  } catch (e) {
    const err = e as Error;
    if (err instanceof AbortError) post({ type: "error", kind: "abort", message: err.message });
    else if (err instanceof GenerateOptionsError) post({ type: "error", kind: "options", message: `--${cliName(err.option)}: ${err.detail}` });
    else post({ type: "error", kind: "other", message: err?.message ?? String(e) });
  } finally {
    for (const h of hooks) h.remove();
    pipe?.dispose();
  }
}
