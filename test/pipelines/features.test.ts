// The pipeline feature registry on tiny random SD 1.x and SDXL pipelines (scripts/make-tiny-model.ts):
// features() lists what is active with its options; the attention kind is the pipeline's (every
// Attention processor of the UNet and VAE and every text-encoder layer follow it; another pipeline
// keeps its own) and shows in image parameters; enabling twice replaces; removing gives the
// unfeatured output bit for bit; custom features installed through installFeature() compose with
// hooks of every kind; an install's afterRun runs after every generate(), failed ones included; a failing
// install leaves nothing active; dispose() removes every feature; an
// unknown attention kind fails before any weight is read; CPU live bytes return to the start.

import { beforeAll, describe, expect, test } from "bun:test";
import path from "node:path";
import { CLIPAttention } from "../../src/models/clip.ts";
import { Attention, AttnProcessorDefault } from "../../src/nn/attention.ts";
import type { Module } from "../../src/nn/module.ts";
import { StableDiffusionPipeline, StableDiffusionXLPipeline, formatFeatures } from "../../src/pipelines/index.ts";
import { type Tensor, memoryStats } from "../../src/tensor/index.ts";
import { useTinyPipelines } from "../helpers/tiny-pipelines.ts";

let tmp: string;
let sd: StableDiffusionPipeline;
let xl: StableDiffusionXLPipeline;

const tiny = useTinyPipelines("features", { sd15: 3, sdxl: 4 });
beforeAll(() => void ({ tmp, sd, xl } = tiny));

const RUN = { prompt: "a red circle", negativePrompt: "blurry", steps: 2, seed: 5 } as const;

/** The final latents of a short run (the caller disposes). */
async function latents(pipe: StableDiffusionPipeline | StableDiffusionXLPipeline): Promise<Tensor> {
  return (await pipe.generate({ ...RUN, outputType: "latent" })).latents!;
}

/** Every attention kind in use under a model (diffusers Attention processors and CLIP layers). */
function kinds(m: Module): Set<string | null> {
  const out = new Set<string | null>();
  for (const [, a] of m.namedModules()) {
    if (a instanceof Attention) out.add(a.attentionKind);
    if (a instanceof CLIPAttention) out.add(a.attentionKind);
  }
  return out;
}

function maxRelDiff(a: Tensor, b: Tensor): number {
  const x = a.toFloat32Array();
  const y = b.toFloat32Array();
  let d = 0;
  let s = 0;
  for (let i = 0; i < x.length; i++) {
    d = Math.max(d, Math.abs(x[i]! - y[i]!));
    s = Math.max(s, Math.abs(y[i]!));
  }
  return d / s;
}

describe("attention kind per pipeline", () => {
  test("setAttentionKind reaches every model, is listed and carried by the images; fused again = bit for bit", async () => {
    expect(sd.features()).toEqual([]);
    expect(sd.attentionKind).toBe("fused");
    const plain = await latents(sd);

    sd.setAttentionKind("naive");
    expect(sd.features()).toEqual([{ name: "attention", options: { kind: "naive" } }]);
    for (const m of [sd.unet, sd.vae, sd.textEncoder!]) expect(kinds(m)).toEqual(new Set(["naive"]));
    for (const m of [xl.unet, xl.vae, xl.textEncoder!, xl.textEncoder2!]) expect(kinds(m)).toEqual(new Set(["fused"])); // the other pipeline keeps its own
    const naive = await latents(sd);
    // naive vs fused: both float32 softmax and accumulation, differing in summation order only
    expect(maxRelDiff(naive, plain)).toBeLessThan(1e-4);

    // enabling again replaces: one entry, the new options
    sd.setAttentionKind("chunked", { queryChunk: 3, keyChunk: 5 });
    expect(sd.features()).toEqual([{ name: "attention", options: { kind: "chunked", queryChunk: 3, keyChunk: 5 } }]);
    expect(kinds(sd.unet)).toEqual(new Set(["chunked"]));
    const { images } = await sd.generate({ ...RUN });
    expect(images[0]!.parameters!.extra!.Features).toBe("attention(kind=chunked queryChunk=3 keyChunk=5)");
    expect(formatFeatures(sd.features())).toBe("attention(kind=chunked queryChunk=3 keyChunk=5)");

    sd.setAttentionKind("fused");
    expect(sd.features()).toEqual([]);
    for (const m of [sd.unet, sd.vae, sd.textEncoder!]) expect(kinds(m)).toEqual(new Set(["fused"]));
    const again = await latents(sd);
    expect(again.equals(plain)).toBe(true);
    const { images: imgs } = await sd.generate({ ...RUN });
    expect(imgs[0]!.parameters!.extra!.Features).toBeUndefined();
    for (const t of [plain, naive, again]) t.dispose();
  }, 60_000);

  test("SDXL: both text encoders follow; an unknown kind fails and changes nothing", async () => {
    xl.setAttentionKind("chunked");
    for (const m of [xl.unet, xl.vae, xl.textEncoder!, xl.textEncoder2!]) expect(kinds(m)).toEqual(new Set(["chunked"]));
    expect(() => xl.setAttentionKind("no-such-kind")).toThrow(/unknown attention kind "no-such-kind"/);
    expect(xl.features()).toEqual([{ name: "attention", options: { kind: "chunked" } }]);
    xl.setAttentionKind("fused");
    expect(kinds(xl.unet)).toEqual(new Set(["fused"]));
  });

  test("the attention load option; an unknown kind fails before any weight is read", async () => {
    const p = await StableDiffusionPipeline.fromPretrained(path.join(tmp, "sd15"), { attention: "naive" });
    try {
      expect(p.features()).toEqual([{ name: "attention", options: { kind: "naive" } }]);
      expect(kinds(p.textEncoder!)).toEqual(new Set(["naive"]));
    } finally {
      p.dispose();
    }
    const before = memoryStats("cpu").live;
    await expect(StableDiffusionPipeline.fromPretrained(path.join(tmp, "sd15"), { attention: "nope" })).rejects.toThrow(/unknown attention kind "nope"/);
    expect(memoryStats("cpu").live).toBe(before);
  });

  test("another feature's processors are kept when the attention kind changes", () => {
    const custom = { name: "custom", process: new AttnProcessorDefault("naive").process };
    const [first] = [...sd.unet.attnProcessors().keys()];
    sd.unet.setAttnProcessor((name, a) => (name === first ? custom : a.processor));
    sd.setAttentionKind("chunked");
    expect(sd.unet.attnProcessors().get(first!)).toBe(custom);
    sd.setAttentionKind("fused");
    expect(sd.unet.attnProcessors().get(first!)).toBe(custom);
    sd.unet.setAttnProcessor(null);
  });
});

describe("installFeature", () => {
  test("features compose with hooks of every kind, list in order, replace on re-enable, and remove bit for bit", async () => {
    const plain = await latents(sd);
    const log: string[] = [];
    let installs = 0;
    const stepCounter = (label: string) => () => {
      installs++;
      // a wrapper that runs the UNet once and records it
      const h = sd.unet.registerForwardWrapper((_m, args, next) => {
        log.push(label);
        return next(...args);
      });
      return () => h.remove();
    };
    sd.installFeature("counter", { label: "a" }, stepCounter("a"));
    sd.installFeature("observer", {}, () => {
      const pre = sd.unet.registerForwardPreHook(() => void log.push("pre"));
      const post = sd.unet.registerForwardPostHook(() => void log.push("post"));
      return () => {
        pre.remove();
        post.remove();
      };
    });
    sd.setAttentionKind("naive");
    expect(sd.features().map((f) => f.name)).toEqual(["counter", "observer", "attention"]);
    sd.installFeature("counter", { label: "b" }, stepCounter("b")); // replaces "a": removed, then re-added last
    expect(sd.features()).toEqual([
      { name: "observer", options: {} },
      { name: "attention", options: { kind: "naive" } },
      { name: "counter", options: { label: "b" } },
    ]);
    expect(sd.unet.hookCount).toBe(3);
    const hooked = await latents(sd);
    // every UNet call (one batched CFG call per model evaluation): pre-hook, the wrapper, post-hook
    expect(log.length % 3).toBe(0);
    expect(log.length).toBeGreaterThanOrEqual(3 * RUN.steps);
    for (let i = 0; i < log.length; i += 3) expect(log.slice(i, i + 3)).toEqual(["pre", "b", "post"]);
    expect(installs).toBe(2);

    // a failing install: not active, nothing left behind
    expect(() =>
      sd.installFeature("broken", {}, () => {
        throw new Error("cannot install");
      }),
    ).toThrow("cannot install");
    expect(sd.features().map((f) => f.name)).not.toContain("broken");

    expect(sd.removeFeature("counter")).toBe(true);
    expect(sd.removeFeature("counter")).toBe(false);
    expect(sd.removeFeature("observer")).toBe(true);
    sd.setAttentionKind("fused");
    expect(sd.features()).toEqual([]);
    expect(sd.unet.hookCount).toBe(0);
    const after = await latents(sd);
    expect(after.equals(plain)).toBe(true);
    for (const t of [plain, hooked, after]) t.dispose();
  }, 60_000);

  test("an install returning { remove, afterRun }: afterRun runs once when each generate() ends (failed runs too), after the run's tensors are freed", async () => {
    const seen: { live: number; ehsDisposed: boolean }[] = [];
    let ehs: Tensor | null = null;
    const live0 = memoryStats("cpu").live;
    sd.installFeature("perRun", {}, () => {
      const h = sd.unet.registerForwardPreHook((_m, args) => void (ehs = args[2]));
      return { remove: () => h.remove(), afterRun: () => void seen.push({ live: memoryStats("cpu").live, ehsDisposed: ehs?.isDisposed ?? false }) };
    });
    expect(sd.features()).toEqual([{ name: "perRun", options: {} }]);
    const out = await latents(sd);
    expect(seen).toEqual([{ live: live0 + out.numel * 4, ehsDisposed: true }]); // only the returned float32 latents are live
    out.dispose();
    await expect(sd.generate({ ...RUN, steps: 2, onStep: () => { throw new Error("stop here"); } })).rejects.toThrow("stop here");
    expect(seen.length).toBe(2);
    expect(seen[1]).toEqual({ live: live0, ehsDisposed: true });
    expect(sd.removeFeature("perRun")).toBe(true);
    (await latents(sd)).dispose();
    expect(seen.length).toBe(2); // removed: no longer called
  }, 60_000);

  test("dispose() removes every feature, last enabled first; a disposed pipeline takes none", async () => {
    const p = await StableDiffusionPipeline.fromPretrained(path.join(tmp, "sd15"));
    const removed: string[] = [];
    p.installFeature("one", {}, () => () => void removed.push("one"));
    p.installFeature("two", {}, () => () => void removed.push("two"));
    p.setAttentionKind("chunked");
    p.dispose();
    expect(removed).toEqual(["two", "one"]);
    expect(p.features()).toEqual([]);
    expect(() => p.installFeature("three", {}, () => () => {})).toThrow(/disposed/);
    expect(() => p.setAttentionKind("naive")).toThrow(/disposed/);
  });
});
