// bfloat16 before compute capability 8.0: cuBLAS and cuDNN reject it on Turing (sm_75), so creating or moving a
// model to bfloat16 on such a device fails at once with an error that names float16 (Backend.dtypeProblem), not
// with a status code mid-generation. The emulated device reports the capability BD_EMU_COMPUTE_CAPABILITY sets in
// the C environment (read on every query).

import { afterEach, describe, expect, test } from "bun:test";
import { setCEnv, unsetCEnv } from "../../ffi/libc.ts";
import { hasBackend } from "../../src/backends/registry.ts";
import { Linear } from "../../src/nn/layers.ts";
import { empty, memoryStats, zeros } from "../../src/tensor/index.ts";

const HAS_CUDA = hasBackend("cuda");

describe.skipIf(!HAS_CUDA)("bfloat16 needs compute capability 8.0", () => {
  afterEach(() => unsetCEnv("BD_EMU_COMPUTE_CAPABILITY"));

  test("on a 7.5 device: creating, loading into or moving to bfloat16 fails naming float16; float16 works", () => {
    const live = memoryStats("cuda").live;
    setCEnv("BD_EMU_COMPUTE_CAPABILITY", "7.5");
    const message = /bfloat16 needs an NVIDIA GPU of compute capability 8\.0 or newer.*is 7\.5: use dtype "float16"/;
    expect(() => new Linear(4, 3, { device: "cuda", dtype: "bfloat16" })).toThrow(message);
    const m = new Linear(4, 3, { device: "cuda", dtype: "float16" });
    expect(() => m.to("bfloat16")).toThrow(message);
    m.dispose();
    const cpu = zeros([2, 2], { dtype: "bfloat16" });
    expect(() => cpu.to("cuda")).toThrow(message);
    cpu.dispose();
    expect(memoryStats("cuda").live).toBe(live);
  });

  test("on 8.0 (the default) bfloat16 is fine", () => {
    const t = empty([2], { device: "cuda", dtype: "bfloat16" });
    expect(t.dtype).toBe("bfloat16");
    t.dispose();
  });
});
