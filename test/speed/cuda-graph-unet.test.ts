// CUDA-graph UNet steps on the emulated device (src/speed/cuda-graph.ts over src/backends/cuda/graph.ts), for every
// golden UNet (index.json's unet/ cases: shapes, timesteps and inputs come from the data): the first call captures
// one graph, every call after it is exactly one graph launch, and every output is bit-identical to the eager call
// with the same inputs (the same kernels on the same values: no tolerance). Removing the feature frees the graph,
// its static inputs and outputs: the allocator's live bytes return to where they started.

import { describe, expect, test } from "bun:test";
import path from "node:path";
import { cudaContext, cudaGraphLaunches } from "../../src/backends/cuda/index.ts";
import { hasBackend } from "../../src/backends/registry.ts";
import { UNet2DConditionModel } from "../../src/models/unet/index.ts";
import { cudaCapturer } from "../../src/pipelines/cuda-graph-feature.ts";
import { applyCudaGraphs } from "../../src/speed/index.ts";
import { type Tensor, memoryStats, tidy } from "../../src/tensor/index.ts";
import { goldenCases, goldenTensor, openGolden } from "../helpers/golden.ts";
import { goldenDir } from "../helpers/paths.ts";

const HAS_EMU = hasBackend("cuda") && cudaContext().libs.emulated;

/** The bits of a float32 output (NaN-exact comparison). */
const bits = (t: Tensor) => Array.from(new Uint32Array(t.toFloat32Array().buffer));

describe.skipIf(!HAS_EMU)("CUDA-graph UNet steps on the emulated device", () => {
  for (const entry of goldenCases("unet"))
    test(`${entry.file}: replayed steps are one graph launch each and bit-identical to eager steps`, () => {
      const unet = UNet2DConditionModel.fromPretrained(path.join(goldenDir, entry.meta.model!), { device: "cuda" });
      try {
        const f = openGolden(entry.file);
        const names = [...new Set(Object.keys(entry.tensors).map((k) => k.split("/")[0]!))];
        const cases = names.map((c) => {
          const get = (n: string) => (entry.tensors[`${c}/${n}`] ? goldenTensor(f, `${c}/${n}`, "float32") : null);
          return tidy(() => {
            const t = get("timestep")!;
            const timestep = t.item(); // a host scalar, as the pipelines pass it
            t.dispose();
            return {
              timestep,
              sample: get("sample")!.to("cuda"),
              ehs: get("encoder_hidden_states")!.to("cuda"),
              textEmbeds: get("text_embeds")?.to("cuda") ?? null,
              timeIds: get("time_ids"), // on the host, as the SDXL pipeline passes them
            };
          });
        });
        try {
          const call = (c: (typeof cases)[number]) => tidy(() => bits(unet.call(c.sample, c.timestep, c.ehs, { textEmbeds: c.textEmbeds, timeIds: c.timeIds })));
          const eager = cases.map(call);
          const live = memoryStats("cuda").live;
          const h = applyCudaGraphs(unet, cudaCapturer);
          try {
            for (let round = 0; round < 2; round++)
              for (let i = 0; i < cases.length; i++) {
                const before = cudaGraphLaunches()!;
                const got = call(cases[i]!);
                expect(h.stats.fallbacks).toEqual([]);
                expect(cudaGraphLaunches()! - before, `case ${i} round ${round}: one launch`).toBe(1);
                expect(got, `case ${i} round ${round}: bit-identical to the eager step`).toEqual(eager[i]!);
              }
            expect(h.stats.captures).toBe(1); // the golden cases share their shapes
            expect(h.stats.replays).toBe(2 * cases.length);
            expect(h.nodes!).toBeGreaterThan(0);
          } finally {
            h.remove();
          }
          expect(memoryStats("cuda").live).toBe(live);
          expect(h.nodes).toBeNull();
        } finally {
          for (const c of cases) for (const t of [c.sample, c.ehs, c.textEmbeds, c.timeIds]) t?.dispose();
        }
      } finally {
        unet.dispose();
      }
    });
});
