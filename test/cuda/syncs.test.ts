// No host synchronisation inside a UNet step: the emulated runtime counts every blocking call
// (cudaDeviceSynchronize, cudaStreamSynchronize, cudaEventSynchronize, synchronous cudaMemcpy; bdemu_sync_count),
// and a denoising step of the golden SD 1.5 and SDXL tiny UNets, called as the pipelines call it (timestep as a
// number, SDXL's time ids as a host tensor), makes none. Index bounds are checked through deferred device flags:
// the op does not synchronise, the next synchronisation point reports the op that raised the error, and running
// out of slots forces one synchronous check.

import { describe, expect, test } from "bun:test";
import path from "node:path";
import { cudaContext } from "../../src/backends/cuda/context.ts";
import { cudaSynchronize } from "../../src/backends/cuda/index.ts";
import { hasBackend } from "../../src/backends/registry.ts";
import { UNet2DConditionModel } from "../../src/models/unet/index.ts";
import { indexSelect, tensor, tidy } from "../../src/tensor/index.ts";
import { goldenCases, goldenTensor, openGolden } from "../helpers/golden.ts";
import { goldenDir } from "../helpers/paths.ts";

const HAS_EMU = hasBackend("cuda") && cudaContext().libs.emulated;

function syncs(): number {
  return Number(cudaContext().rt.bdemu_sync_count!());
}

describe.skipIf(!HAS_EMU)("host synchronisations on the emulated device", () => {
  for (const kind of ["sd15", "sdxl"])
    test(`a ${kind} UNet step makes no host synchronisation`, () => {
      const entry = goldenCases("unet").find((e) => e.file.includes(kind));
      expect(entry, `a golden ${kind} UNet`).toBeDefined();
      const unet = UNet2DConditionModel.fromPretrained(path.join(goldenDir, entry!.meta.model!), { device: "cuda" });
      try {
        tidy(() => {
          const f = openGolden(entry!.file);
          const c = Object.keys(entry!.tensors)[0]!.split("/")[0]!;
          const get = (n: string) => (entry!.tensors[`${c}/${n}`] ? goldenTensor(f, `${c}/${n}`, "float32") : null);
          const sample = get("sample")!.to("cuda");
          const ehs = get("encoder_hidden_states")!.to("cuda");
          const textEmbeds = get("text_embeds")?.to("cuda") ?? null;
          const timeIds = get("time_ids"); // on the host, as the SDXL pipeline passes them
          expect(kind === "sdxl" ? timeIds !== null : timeIds === null).toBe(true);
          for (const step of [999, 981]) {
            const before = syncs();
            const out = unet.call(sample, step, ehs, { textEmbeds, timeIds });
            expect(syncs() - before, `step ${step}`).toBe(0);
            expect(Number.isFinite(out.toFloat32Array()[0]!)).toBe(true); // the download is a synchronisation
            expect(syncs() - before).toBeGreaterThan(0);
          }
        });
      } finally {
        unet.dispose();
      }
    });

  test("an out-of-range index: no synchronisation at the op, reported at the next one naming the op", () => {
    const c = cudaContext();
    tidy(() => {
      const x = tensor(Float32Array.from({ length: 12 }, (_, i) => i), { shape: [4, 3], device: "cuda" });
      const bad = tensor(Int32Array.from([1, 7]), { device: "cuda" });
      const good = tensor(Int32Array.from([3, 0]), { device: "cuda" });
      const before = syncs();
      indexSelect(x, 0, good);
      indexSelect(x, 0, bad);
      expect(syncs()).toBe(before);
      expect(c.errors.outstanding).toBe(2);
      expect(() => cudaSynchronize()).toThrow(
        "indexSelect: index 7 is out of range for dim 0 of size 4 (int32[2] index) [raised on the device, reported at the next synchronisation]",
      );
      expect(c.errors.outstanding).toBe(0);
      expect(Array.from(indexSelect(x, 0, good).toFloat32Array())).toEqual([9, 10, 11, 0, 1, 2]); // cleared: no stale report
      const forced = c.errors.forcedChecks;
      for (let i = 0; i < 257; i++) indexSelect(x, 0, good).dispose();
      expect(c.errors.forcedChecks).toBe(forced + 1);
      cudaSynchronize();
    });
  });
});
