// generate() under bad input, on tiny random SD 1.x / SDXL pipelines (scripts/make-tiny-model.ts):
// impossible sizes are refused before any allocation with an OutOfMemoryError naming the need, the
// memory available and a size that fits, and the prediction bounds a real run's peak; host
// allocations beyond JavaScriptCore's limits are OutOfMemoryErrors, never RangeErrors; NaN weights or
// an absurd guidance scale give a NonFiniteError (the step, the likely cause), never a black image;
// a Scheduler instance serves one call at a time; dispose() during a run is refused and the run
// completes; unknown option keys are errors with a "did you mean". CPU live bytes return to the start.

import { beforeAll, describe, expect, test } from "bun:test";
import path from "node:path";
import { MAX_HOST_BUFFER_BYTES } from "../../src/core/host-memory.ts";
import type { Module } from "../../src/nn/module.ts";
import {
  GenerateOptionsError,
  StableDiffusionPipeline,
  StableDiffusionXLPipeline,
  loadPipeline,
} from "../../src/pipelines/index.ts";
import { NonFiniteError, PipelineBusyError } from "../../src/pipelines/errors.ts";
import { editDistance, suggestKey } from "../../src/pipelines/option-keys.ts";
import { schedulerByName } from "../../src/schedulers/index.ts";
import { OutOfMemoryError, type Tensor, copyInto, empty, full, memoryAvailable, memoryStats, randn, resetPeakMemory } from "../../src/tensor/index.ts";
import { useTinyPipelines } from "../helpers/tiny-pipelines.ts";

let tmp: string;
let sd: StableDiffusionPipeline; // tiny random SD 1.x: 32×32 images, 4×4×4 latents
let xl: StableDiffusionXLPipeline;

const tiny = useTinyPipelines("robust", { sd15: 11, sdxl: 12 });
beforeAll(() => void ({ tmp, sd, xl } = tiny));

const RUN = { prompt: "a red circle", steps: 2, seed: 3, scheduler: "ddim" } as const;

/** Counts forward calls of a module (removed by the returned function). */
function countCalls(m: Module): { count: () => number; remove: () => void } {
  let n = 0;
  const h = m.registerForwardPreHook(() => void n++);
  return { count: () => n, remove: () => h.remove() };
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected the promise to reject");
}

function latentValues(t: Tensor): Float32Array {
  const v = t.toFloat32Array();
  t.dispose();
  return v;
}

describe("sizes are checked against the memory available before anything is allocated", () => {
  for (const [name, pipe] of [["SD", () => sd], ["SDXL", () => xl]] as const)
    test(`${name} at 100000 × 100000: OutOfMemoryError naming the need, the memory available and a size that fits`, async () => {
      const p = pipe();
      const unet = countCalls(p.unet);
      const cpu0 = memoryStats("cpu");
      const e = await rejection(p.generate({ ...RUN, width: 100000, height: 100000 }));
      expect(e).toBeInstanceOf(OutOfMemoryError);
      expect(e.message).toMatch(/^generate\(\) at 100000×100000 \(1 image, float32\): it needs about [\d.]+ TiB on cpu \(peak while decoding\) but [\d.]+ [GMT]iB is available \(free memory/);
      expect(e.message).toMatch(/one cpu buffer holds at most 4\.00 GiB/);
      expect(e.message).toMatch(/the largest square size that fits is \d+×\d+/);
      const oom = e as OutOfMemoryError;
      expect(oom.requestedBytes).toBeGreaterThan(2 ** 40);
      expect(oom.limitBytes).toBeGreaterThan(0); // the memory available when the run was checked
      // nothing was allocated and the UNet never ran
      expect(memoryStats("cpu").live).toBe(cpu0.live);
      expect(memoryStats("cpu").allocations).toBe(cpu0.allocations);
      expect(unet.count()).toBe(0);
      unet.remove();
      // the suggested size is accepted by the prediction
      const side = Number(/fits is (\d+)×/.exec(e.message)![1]);
      const need = p.predictMemory({ ...RUN, width: side, height: side });
      expect(need.device).toBeLessThanOrEqual(memoryAvailable("cpu")!.available);
    });

  test("a wide image over the buffer limit is refused the same way; 16384² too", async () => {
    for (const [width, height] of [[65536, 4096], [16384, 16384]] as const) {
      const e = await rejection(sd.generate({ ...RUN, width, height }));
      expect(e).toBeInstanceOf(OutOfMemoryError);
      expect(e.message).toContain(`generate() at ${width}×${height}`);
    }
  });

  test("a normal size is unaffected, and the prediction bounds the run's tracked peak", async () => {
    const before = memoryStats("cpu").live;
    resetPeakMemory("cpu");
    const { images } = await sd.generate({ ...RUN });
    const peak = memoryStats("cpu").peak - before;
    expect(images.length).toBe(1);
    const need = sd.predictMemory({ ...RUN });
    expect(need.phase).toBe("decoding");
    expect(need.device).toBeGreaterThanOrEqual(peak);
    // the allowances (scheduler copies, 2× the largest tensor for scratch, host image bytes) stay modest
    expect(need.device).toBeLessThan(8 * peak);
  });

  test("the prediction is cached per shape and fast, and allocates nothing on the CPU", () => {
    const cpu0 = memoryStats("cpu");
    const t0 = performance.now();
    const a = sd.predictMemory({ ...RUN, width: 512, height: 512 });
    const cold = performance.now() - t0;
    const t1 = performance.now();
    const b = sd.predictMemory({ ...RUN, width: 512, height: 512 });
    const warm = performance.now() - t1;
    expect(b).toEqual(a);
    // generous bounds for a shared 2-core machine (measured: ~30 ms cold, < 0.1 ms cached; SD 1.5 at 512²: ~45–120 ms cold)
    expect(cold).toBeLessThan(2000);
    expect(warm).toBeLessThan(50);
    expect(memoryStats("cpu")).toEqual(cpu0);
  });
});

describe("host allocations fail as OutOfMemoryError", () => {
  test("JavaScriptCore's ArrayBuffer maximum is still the one the allocator assumes", () => {
    expect(() => new ArrayBuffer(MAX_HOST_BUFFER_BYTES + 8)).toThrow(RangeError);
  });

  test("a CPU tensor over the buffer maximum, and a random draw too big for the heap", () => {
    const cpu0 = memoryStats("cpu").live;
    expect(() => empty([2 ** 31], { dtype: "float32" })).toThrow(OutOfMemoryError);
    expect(() => empty([2 ** 31], { dtype: "float32" })).toThrow(/one host buffer holds at most 4\.00 GiB/);
    expect(() => randn([2 ** 31], { seed: 1 })).toThrow(OutOfMemoryError);
    expect(memoryStats("cpu").live).toBe(cpu0);
  });
});

describe("NaN and Inf never become an image", () => {
  /** A fresh pipeline whose parameter `key` of `part` is set to `value` everywhere. */
  async function poisoned(part: "unet" | "vae" | "textEncoder", match: RegExp, value: number): Promise<StableDiffusionPipeline> {
    const pipe = await StableDiffusionPipeline.fromPretrained(path.join(tmp, "sd15"));
    const m = pipe[part]!;
    const [, p] = m.namedParameters().find(([k]) => match.test(k))!;
    const bad = full([...p.value.shape], value, { dtype: p.value.dtype });
    copyInto(p.value, bad);
    bad.dispose();
    return pipe;
  }

  test("NaN UNet weights: NonFiniteError after the last step (default), or after step 1 with checkFinite: \"step\"", async () => {
    const pipe = await poisoned("unet", /^conv_out\.bias$/, NaN);
    const cpu0 = memoryStats("cpu").live;
    const decoder = countCalls(pipe.vae.decoder);
    const e = await rejection(pipe.generate({ ...RUN, steps: 3 }));
    expect(e).toBeInstanceOf(NonFiniteError);
    expect(e.message).toMatch(/^the latents contain NaN or Inf after step 3 of 3; no image was produced/);
    expect(e.message).toContain("corrupt UNet weights");
    expect((e as NonFiniteError).step).toBe(3);
    const s = await rejection(pipe.generate({ ...RUN, steps: 3, checkFinite: "step" }));
    expect((s as NonFiniteError).step).toBe(1);
    expect(decoder.count()).toBe(0); // nothing was decoded
    expect(memoryStats("cpu").live).toBe(cpu0);
    // checkFinite: false opts out: the NaN latents come back as they are
    const r = await pipe.generate({ ...RUN, outputType: "latent", checkFinite: false });
    expect(latentValues(r.latents!).every(Number.isNaN)).toBe(true);
    decoder.remove();
    pipe.dispose();
  });

  test("NaN VAE weights: the decoded image is checked (NonFiniteError, not a black image)", async () => {
    const pipe = await poisoned("vae", /^decoder\.conv_out\.bias$/, NaN);
    const cpu0 = memoryStats("cpu").live;
    const e = await rejection(pipe.generate({ ...RUN }));
    expect(e).toBeInstanceOf(NonFiniteError);
    expect((e as NonFiniteError).where).toBe("image");
    expect(e.message).toMatch(/^the decoded image contains NaN or Inf/);
    expect(e.message).toContain("corrupt VAE weights");
    expect(memoryStats("cpu").live).toBe(cpu0);
    // Inf is caught too, although the clamp would have turned it into white
    pipe.dispose();
    const inf = await poisoned("vae", /^decoder\.conv_out\.bias$/, Infinity);
    expect(await rejection(inf.generate({ ...RUN }))).toBeInstanceOf(NonFiniteError);
    inf.dispose();
  });

  test("NaN text encoder weights: the cause named is the text encoder", async () => {
    const pipe = await poisoned("textEncoder", /final_layer_norm\.bias$/, NaN);
    const e = await rejection(pipe.generate({ ...RUN }));
    expect(e).toBeInstanceOf(NonFiniteError);
    expect((e as NonFiniteError).causes[0]).toMatch(/text embeddings are already NaN\/Inf: the text encoder's weights/);
    pipe.dispose();
  });

  test("guidanceScale 1e308: NonFiniteError naming the guidance scale", async () => {
    const cpu0 = memoryStats("cpu").live;
    const e = await rejection(sd.generate({ ...RUN, guidanceScale: 1e308 }));
    expect(e).toBeInstanceOf(NonFiniteError);
    expect((e as NonFiniteError).causes[0]).toContain("guidanceScale 1e+308 is far outside the usual 1–20");
    expect(memoryStats("cpu").live).toBe(cpu0);
  });

  test("checkFinite takes only \"end\", \"step\" or false", async () => {
    const e = await rejection(sd.generate({ ...RUN, checkFinite: "always" as never }));
    expect(e).toBeInstanceOf(GenerateOptionsError);
    expect((e as GenerateOptionsError).option).toBe("checkFinite");
  });
});

describe("concurrent use", () => {
  test("a Scheduler instance in use is refused by a second call; the first matches the sequential result", async () => {
    const reference = latentValues((await sd.generate({ ...RUN, outputType: "latent" })).latents!);
    const s = schedulerByName("ddim", { ...sd.schedulerConfig });
    const unet = countCalls(sd.unet);
    const first = sd.generate({ ...RUN, scheduler: s, outputType: "latent" });
    const second = await rejection(sd.generate({ ...RUN, scheduler: s, outputType: "latent" }));
    expect(second).toBeInstanceOf(GenerateOptionsError);
    expect(second.message).toMatch(/^scheduler: this DDIMScheduler instance is in use by another generate\(\) call/);
    // the SDXL pipeline shares the rule: the instance is in use, whatever pipeline runs it
    expect(await rejection(xl.generate({ ...RUN, scheduler: s }))).toBeInstanceOf(GenerateOptionsError);
    expect(latentValues((await first).latents!)).toEqual(reference);
    expect(unet.count()).toBe(RUN.steps); // the refused calls never reached the UNet
    unet.remove();
    // free again after the call
    expect(latentValues((await sd.generate({ ...RUN, scheduler: s, outputType: "latent" })).latents!)).toEqual(reference);
    s.dispose();
  });

  test("concurrent calls with their own schedulers match the sequential results", async () => {
    const a = { ...RUN, seed: 1, outputType: "latent" } as const;
    const b = { ...RUN, seed: 2, scheduler: "euler_a", steps: 3, outputType: "latent" } as const;
    const seqA = latentValues((await sd.generate(a)).latents!);
    const seqB = latentValues((await sd.generate(b)).latents!);
    const [ra, rb] = await Promise.all([sd.generate(a), sd.generate(b)]);
    expect(latentValues(ra.latents!)).toEqual(seqA);
    expect(latentValues(rb.latents!)).toEqual(seqB);
  });

  test("dispose() during generate() throws a PipelineBusyError and changes nothing; the run completes", async () => {
    const pipe = await StableDiffusionPipeline.fromPretrained(path.join(tmp, "sd15"));
    const cpu0 = memoryStats("cpu").live;
    const running = pipe.generate({ ...RUN, steps: 3 });
    expect(() => pipe.dispose()).toThrow(PipelineBusyError);
    expect(() => pipe.dispose()).toThrow(/1 generate\(\) call is still running on this pipeline; nothing was disposed/);
    const { images } = await running;
    expect(images.length).toBe(1);
    expect(memoryStats("cpu").live).toBe(cpu0); // the run freed what it allocated
    pipe.dispose(); // now it disposes
    expect((await rejection(pipe.generate({ ...RUN }))).message).toMatch(/this pipeline was disposed/);
  });
});

describe("unknown option keys", () => {
  const cases: [Record<string, unknown>, string, string | null][] = [
    [{ prompt: "x", guidance_scale: 7 }, "guidance_scale", "guidanceScale"],
    [{ prompt: "x", numInferenceSteps: 2 }, "numInferenceSteps", "steps"],
    [{ prompt: "x", num_inference_steps: 2 }, "num_inference_steps", "steps"],
    [{ prompt: "x", stpes: 2 }, "stpes", "steps"],
    [{ prompt: "x", negative_prompt: "y" }, "negative_prompt", "negativePrompt"],
    [{ prompt: "x", frobnicate: 1 }, "frobnicate", null],
  ];
  for (const [opts, key, suggestion] of cases)
    test(`generate({ ${key} }) → GenerateOptionsError${suggestion ? ` suggesting ${suggestion}` : ""}`, async () => {
      const unet = countCalls(sd.unet);
      const e = await rejection(sd.generate(opts as never));
      expect(e).toBeInstanceOf(GenerateOptionsError);
      expect((e as GenerateOptionsError).option).toBe(key);
      expect(e.message).toStartWith(`${key}: is not an option of generate()`);
      if (suggestion) expect(e.message).toContain(`did you mean "${suggestion}"?`);
      else expect(e.message).not.toContain("did you mean");
      expect(unet.count()).toBe(0);
      unet.remove();
    });

  test("a step count the scheduler refuses is a GenerateOptionsError naming steps, before any tensor work", async () => {
    const live = memoryStats("cpu").live;
    const e = await rejection(sd.generate({ ...RUN, steps: 1_000_000 }));
    expect(e).toBeInstanceOf(GenerateOptionsError);
    expect((e as GenerateOptionsError).option).toBe("steps");
    expect(e.message).toMatch(/numInferenceSteps=1000000 must be an integer from 1 to num_train_timesteps/);
    expect(memoryStats("cpu").live).toBe(live);
  });

  test("an SDXL option on an SD pipeline is named as such", async () => {
    const e = await rejection(sd.generate({ prompt: "x", prompt2: "y" } as never));
    expect(e.message).toBe("prompt2: is an option of StableDiffusionXLPipeline only; this model is SD 1.x/2.x (a StableDiffusionPipeline)");
    // left undefined it means "not given" (options built for either pipeline); an undefined typo still fails
    const r = await sd.generate({ ...RUN, prompt2: undefined, pooledPromptEmbeds: undefined, outputType: "latent" } as never);
    r.latents!.dispose();
    const typo = await rejection(sd.generate({ prompt: "x", stpes: undefined } as never));
    expect(typo.message).toContain('did you mean "steps"?');
  });

  test("SDXL accepts its own keys and suggests them", async () => {
    const e = await rejection(xl.generate({ prompt: "x", prompt_2: "y" } as never));
    expect(e.message).toContain('did you mean "prompt2"?');
    const r = await xl.generate({ ...RUN, prompt2: "y", outputType: "latent" });
    r.latents!.dispose();
  });

  test("load options: fromPretrained and loadPipeline reject unknown keys before reading anything", async () => {
    const missing = path.join(tmp, "does-not-exist");
    await expect(StableDiffusionPipeline.fromPretrained(missing, { torch_dtype: "float16" } as never)).rejects.toThrow(
      /^"torch_dtype" is not an option of StableDiffusionPipeline\.fromPretrained\(\); did you mean "dtype"\?/,
    );
    await expect(StableDiffusionXLPipeline.fromPretrained(missing, { devise: "cpu" } as never)).rejects.toThrow(/did you mean "device"\?/);
    await expect(loadPipeline(missing, { attn_implementation: "naive" } as never)).rejects.toThrow(/loadPipeline\(\); did you mean "attention"\?/);
    await expect(loadPipeline(missing, null as never)).rejects.toThrow(/the options must be an object/);
  });

  test("edit distance and suggestions", () => {
    expect(editDistance("kitten", "sitting")).toBe(3);
    expect(editDistance("stpes", "steps")).toBe(1); // a transposition counts once
    expect(editDistance("Steps", "steps")).toBe(0);
    expect(suggestKey("guidanceScal", ["guidanceScale", "steps"])).toBe("guidanceScale");
    expect(suggestKey("xyz", ["guidanceScale", "steps", "eta"])).toBeNull();
  });
});
