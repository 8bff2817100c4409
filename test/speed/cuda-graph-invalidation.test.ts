// A captured UNet graph is never replayed after something that changes the computation: on the emulated device, the
// golden SD 1.5 UNet with graph steps is called under a sequence of states — plain, a forward hook, fused QKV, a
// different attention processor, a larger batch, the pipeline's feature key — and in each the
// output must be bit-identical to the eager call in the same state (computed first, without graphs), with a new
// capture (an invalidation of the previous graph) on every change and pure replays (one launch each) in between.
// Features a graph cannot replay (DeepCache, ToMe with or without useRand) run eagerly; a capture that fails (a hook that
// downloads, one that uploads) falls back to eager, says why, and is not retried for that key. Live bytes return to the start.

import { describe, expect, test } from "bun:test";
import path from "node:path";
import { cudaContext, cudaGraphLaunches } from "../../src/backends/cuda/index.ts";
import { hasBackend } from "../../src/backends/registry.ts";
import { UNet2DConditionModel } from "../../src/models/unet/index.ts";
import { AttnProcessorDefault } from "../../src/nn/attention.ts";
import { cudaCapturer } from "../../src/pipelines/cuda-graph-feature.ts";
import { applyCudaGraphs, applyDeepCache, fuseQkvProjections } from "../../src/speed/index.ts";
import { type Tensor, cat, memoryStats, tensor, tidy } from "../../src/tensor/index.ts";
import { applyTokenMerging, removeTokenMerging } from "../../src/tome/index.ts";
import { goldenCases, goldenTensor, openGolden } from "../helpers/golden.ts";
import { goldenDir } from "../helpers/paths.ts";

const HAS_EMU = hasBackend("cuda") && cudaContext().libs.emulated;
const bits = (t: Tensor) => Array.from(new Uint32Array(t.toFloat32Array().buffer));

describe.skipIf(!HAS_EMU)("CUDA-graph UNet steps are captured again after every change", () => {
  test("hooks, processors, fused QKV, batch size and the feature key each invalidate the graph; results stay bit-identical", () => {
    const entry = goldenCases("unet").find((e) => e.file.includes("sd15"))!;
    const unet = UNet2DConditionModel.fromPretrained(path.join(goldenDir, entry.meta.model!), { device: "cuda" });
    const f = openGolden(entry.file);
    const c = Object.keys(entry.tensors)[0]!.split("/")[0]!;
    const sample = tidy(() => goldenTensor(f, `${c}/sample`, "float32").to("cuda"));
    const ehs = tidy(() => goldenTensor(f, `${c}/encoder_hidden_states`, "float32").to("cuda"));
    const t = tidy(() => goldenTensor(f, `${c}/timestep`, "float32").item());
    const live = memoryStats("cuda").live;
    let key = "";
    // each state: how to enter and leave it, and the inputs of its call
    const states: { name: string; enter: () => () => void; batch: number }[] = [
      { name: "plain", enter: () => () => {}, batch: 1 },
      { name: "a forward hook on conv_out", enter: () => { const h = unet.conv_out.registerForwardPostHook((_m, _a, out) => out.mul(2)); return () => h.remove(); }, batch: 1 },
      { name: "fused QKV (with its per-run K/V cache)", enter: () => { const h = fuseQkvProjections(unet); return () => h.remove(); }, batch: 1 },
      { name: "the naive attention processor", enter: () => { unet.setAttnProcessor(new AttnProcessorDefault("naive")); return () => unet.setAttnProcessor(new AttnProcessorDefault("fused")); }, batch: 1 },
      { name: "batch 2", enter: () => () => {}, batch: 2 },
      { name: "another feature key", enter: () => { key = "fusedQkv"; return () => void (key = ""); }, batch: 1 },
    ];
    const call = (batch: number) => tidy(() => bits(unet.call(batch === 1 ? sample : cat([sample, sample], 0), t, batch === 1 ? ehs : cat([ehs, ehs], 0))));
    try {
      const eager = states.map((s) => {
        const leave = s.enter();
        try {
          return call(s.batch);
        } finally {
          leave();
        }
      });
      const h = applyCudaGraphs(unet, cudaCapturer, { stateKey: () => key });
      try {
        let captures = 0;
        for (let round = 0; round < 2; round++)
          for (let i = 0; i < states.length; i++) {
            const s = states[i]!;
            const leave = s.enter();
            try {
              for (let rep = 0; rep < 2; rep++) {
                const before = cudaGraphLaunches()!;
                expect(call(s.batch), `${s.name}, round ${round}, call ${rep}`).toEqual(eager[i]!);
                expect(h.stats.fallbacks).toEqual([]);
                expect(cudaGraphLaunches()! - before, `${s.name}: one launch`).toBe(1);
              }
            } finally {
              leave();
            }
            captures++;
            expect(h.stats.captures, `${s.name}: captured anew`).toBe(captures);
            expect(h.stats.invalidations).toBe(captures - 1);
          }
        expect(h.stats.fallbacks).toEqual([]);
        expect(h.stats.eager).toBe(0);
      } finally {
        h.remove();
      }
      expect(memoryStats("cuda").live).toBe(live);
    } finally {
      for (const x of [sample, ehs]) x.dispose();
      unet.dispose();
    }
  });

  test("DeepCache and ToMe run eagerly; a capture that fails falls back to eager once per key, saying why", () => {
    const entry = goldenCases("unet").find((e) => e.file.includes("sd15"))!;
    const unet = UNet2DConditionModel.fromPretrained(path.join(goldenDir, entry.meta.model!), { device: "cuda" });
    const f = openGolden(entry.file);
    const c = Object.keys(entry.tensors)[0]!.split("/")[0]!;
    const sample = tidy(() => goldenTensor(f, `${c}/sample`, "float32").to("cuda"));
    const ehs = tidy(() => goldenTensor(f, `${c}/encoder_hidden_states`, "float32").to("cuda"));
    const live = memoryStats("cuda").live;
    const call = (x: Tensor = sample, e: Tensor = ehs) => tidy(() => bits(unet.call(x, 500, e)));
    try {
      const h = applyCudaGraphs(unet, cudaCapturer);
      try {
        const launches = cudaGraphLaunches()!;
        const dc = applyDeepCache(unet, { interval: 2 });
        call();
        call();
        dc.remove();
        const [x2, e2] = tidy(() => [cat([sample, sample], 0), cat([ehs, ehs], 0)]);
        for (const useRand of [true, false]) {
          const tome = applyTokenMerging(unet, { ratio: 0.5, useRand });
          call(x2, e2); // (useRand applies to even batches)
          tome.remove();
        }
        x2!.dispose();
        e2!.dispose();
        expect(cudaGraphLaunches()! - launches).toBe(0);
        expect(h.stats.eager).toBe(4);

        // a hook on time_proj too: the capture's own time_proj wrapper moves its hook version, which must not make
        // the failed key look new (it would be captured, and fail, again on every call)
        const onTimeProj = unet.time_proj.registerForwardPreHook(() => {});
        const reading = unet.conv_out.registerForwardPostHook((_m, _a, out) => void out.toFloat32Array()); // a download inside the step
        const ref = call(); // (the graph runner first: its fallback is eager)
        expect(h.stats.fallbacks.length).toBe(1);
        expect(h.stats.fallbacks[0]).toMatch(/CUDA graph capture of a UNet step .* a device → host download of \d+ bytes .* cannot be captured/);
        expect(call()).toEqual(ref); // not retried: eager again
        expect(h.stats.fallbacks.length).toBe(1);
        expect(cudaGraphLaunches()! - launches).toBe(0);
        reading.remove();
        onTimeProj.remove();
        expect(call()).toEqual(ref); // without the hook: captured (the hook changed nothing but reads)
        expect(cudaGraphLaunches()! - launches).toBe(1);
        const uploading = unet.conv_out.registerForwardPostHook((_m, _a, out) => out.add(tensor([0.5], { device: "cuda" }))); // an upload inside the step
        const ref2 = call();
        expect(h.stats.fallbacks[1]).toMatch(/a host → device upload of 4 bytes cannot be captured/);
        expect(call()).toEqual(ref2);
        uploading.remove();
        expect(cudaGraphLaunches()! - launches).toBe(1);
      } finally {
        h.remove();
      }
      expect(memoryStats("cuda").live).toBe(live);
    } finally {
      for (const x of [sample, ehs]) x.dispose();
      unet.dispose();
    }
  });
});
