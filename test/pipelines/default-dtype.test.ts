// The pipeline's default dtype (src/pipelines/default-dtype.ts): bfloat16 on CUDA compute capability ≥ 8.0, float16
// below, float32 on the CPU; an explicit dtype always wins; the reason is on the pipeline. Both sides of the CUDA rule
// run on the emulated device, whose capability BD_EMU_COMPUTE_CAPABILITY sets (default 8.0), with the shapes-64 demo model.

import { afterEach, describe, expect, test } from "bun:test";
import path from "node:path";
import { setCEnv, unsetCEnv } from "../../ffi/libc.ts";
import { hasBackend } from "../../src/backends/registry.ts";
import { cudaDefaultDtype } from "../../src/pipelines/default-dtype.ts";
import { loadPipeline } from "../../src/pipelines/index.ts";
import { memoryStats } from "../../src/tensor/index.ts";
import { projectRoot } from "../helpers/paths.ts";

const SHAPES = path.join(projectRoot, "assets", "shapes-64");

describe("default pipeline dtype", () => {
  afterEach(() => unsetCEnv("BD_EMU_COMPUTE_CAPABILITY"));

  test("the rule: bfloat16 from compute capability 8.0, float16 below", () => {
    for (const [major, minor, dtype] of [[7, 5, "float16"], [7, 0, "float16"], [8, 0, "bfloat16"], [8, 6, "bfloat16"], [9, 0, "bfloat16"], [12, 0, "bfloat16"]] as const) {
      const c = cudaDefaultDtype(major, minor);
      expect(c.dtype).toBe(dtype);
      expect(c.reason).toContain(`${major}.${minor}`);
    }
  });

  test("on the CPU: float32, and an explicit dtype wins", async () => {
    const pipe = await loadPipeline(SHAPES);
    expect([pipe.dtype, pipe.dtypeReason]).toEqual(["float32", "default on cpu"]);
    pipe.dispose();
    const half = await loadPipeline(SHAPES, { dtype: "bfloat16" });
    expect([half.dtype, half.dtypeReason]).toEqual(["bfloat16", "given"]);
    half.dispose();
  });

  test.skipIf(!hasBackend("cuda"))("on CUDA: bfloat16 at 8.0, float16 at 7.5; an explicit dtype wins on both; nothing left on the device", async () => {
    const live = memoryStats("cuda").live;
    const bf = await loadPipeline(SHAPES, { device: "cuda" });
    expect(bf.dtype).toBe("bfloat16");
    expect(bf.dtypeReason).toBe("default for CUDA compute capability 8.0 ≥ 8.0");
    expect(bf.unet.parameters().every((p) => p.dtype === "bfloat16")).toBe(true);
    const { images } = await bf.generate({ prompt: "a red circle", steps: 2, width: 64, height: 64, seed: 1 });
    expect(images.length).toBe(1);
    bf.dispose();
    const f32 = await loadPipeline(SHAPES, { device: "cuda", dtype: "float32" });
    expect([f32.dtype, f32.dtypeReason]).toEqual(["float32", "given"]);
    f32.dispose();
    setCEnv("BD_EMU_COMPUTE_CAPABILITY", "7.5");
    const h = await loadPipeline(SHAPES, { device: "cuda" });
    expect([h.dtype, h.dtypeReason]).toEqual(["float16", "default for CUDA compute capability 7.5 < 8.0, which has no bfloat16"]);
    h.dispose();
    await expect(loadPipeline(SHAPES, { device: "cuda", dtype: "bfloat16" })).rejects.toThrow(/use dtype "float16"/);
    expect(memoryStats("cuda").live).toBe(live);
  });
});
