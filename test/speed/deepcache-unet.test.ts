// DeepCache on the golden UNets (models/sd15, sd2, sdxl: layers_per_block 2, the real architectures' layout at
// toy width), every branch id: a shallow call on the same inputs as the full call before it replays exactly the
// features that call computed, so its output must equal the full output bit for bit — which checks the wiring of
// each branch (a wrong module cached or a skip consumed out of place changes the output or fails on shapes);
// at another timestep the shallow output differs from the full UNet's (the deep part really was skipped: its
// inner modules are not called); interval 1 equals the plain UNet bit for bit; removal restores it and frees the
// cache (live bytes back).

import { describe, expect, test } from "bun:test";
import path from "node:path";
import { UNet2DConditionModel } from "../../src/models/unet/index.ts";
import { applyDeepCache, deepCachePlan } from "../../src/speed/index.ts";
import { memoryStats, tidy } from "../../src/tensor/index.ts";
import { goldenCases, goldenTensor, openGolden } from "../helpers/golden.ts";
import { goldenDir } from "../helpers/paths.ts";

describe("DeepCache on the golden UNets, every branch", () => {
  for (const entry of goldenCases("unet")) {
    test(`${entry.file}: shallow = full on equal inputs, ≠ at another timestep; interval 1 = plain; removal restores`, () => {
      const live0 = memoryStats("cpu").live;
      const model = UNet2DConditionModel.fromPretrained(path.join(goldenDir, entry.meta.model!));
      const f = openGolden(entry.file);
      const get = (n: string) => (entry.tensors[`case0/${n}`] ? goldenTensor(f, `case0/${n}`) : null);
      const [sample, ehs] = [get("sample")!, get("encoder_hidden_states")!];
      const extra = { textEmbeds: get("text_embeds"), timeIds: get("time_ids") };
      const run = (t: number) => tidy(() => model.call(sample, t, ehs, extra).toFloat32Array());
      const mid = model.mid_block!.resnets.at(0);
      let midCalls = 0;
      const counter = mid.registerForwardPreHook(() => void midCalls++);
      const plain500 = run(500);
      const plain300 = run(300);

      const one = applyDeepCache(model, { interval: 1 });
      expect([run(500), run(300)]).toEqual([plain500, plain300]);
      one.remove();

      const { branches } = deepCachePlan(model, 0);
      for (let b = 0; b < branches; b++) {
        const h = applyDeepCache(model, { interval: 3, branchId: b });
        midCalls = 0;
        const full = run(500); // call 0: full
        const same = run(500); // call 1: shallow, same inputs
        const other = run(300); // call 2: shallow, another timestep
        expect({ b, midCalls }).toEqual({ b, midCalls: 1 });
        expect(full).toEqual(plain500);
        expect(same.every((v, i) => v === full[i]), `branch ${b}: shallow on equal inputs`).toBe(true);
        expect(other.some((v, i) => v !== plain300[i]), `branch ${b}: shallow at t=300 differs from the full UNet`).toBe(true);
        h.remove();
      }
      counter.remove();
      expect(model.hookCount).toBe(0);
      expect(run(500)).toEqual(plain500);
      for (const t of [sample, ehs, ...Object.values(extra)]) t?.dispose();
      model.dispose();
      expect(memoryStats("cpu").live).toBe(live0);
    });
  }
});
