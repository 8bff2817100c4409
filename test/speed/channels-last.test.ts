// Channels-last on the golden models, on the CPU and the CUDA device (the emulated one without a GPU):
// - every golden UNet (SD 1.5, SD 2, SDXL tiny models; cases discovered from the tensor names, shapes and batch sizes
//   read from the files) with applyChannelsLast against the golden output within 1e-5·max|ref| (the golden README's
//   single-module tolerance: channels-last changes only the order of float32 summations — cuDNN's NHWC algorithms,
//   the NHWC GroupNorm kernel — and never the accumulation precision) and against the NCHW run of the same model
//   within the same bound; removal restores the NCHW outputs bit for bit (only the weights' order changed back);
// - the golden VAE decodes likewise;
// - transposing copies on the CUDA device (src/backends/cuda/layout-copies.ts): a channels-last UNet step makes
//   exactly the two at its boundary (the latent in, the prediction out), while the NCHW step of the same model makes
//   more (the transformers' token transposes), so the count does see transposes where they happen;
// - model CPU offload installed after channels-last uploads the channels-last weights;
// - live bytes return to their start.

import { describe, expect, test } from "bun:test";
import path from "node:path";
import { hasBackend } from "../../src/backends/registry.ts";
import { layoutConversionCount, resetLayoutConversionCount } from "../../src/backends/cuda/layout-copies.ts";
import type { Device } from "../../src/core/device.ts";
import { UNet2DConditionModel } from "../../src/models/unet/index.ts";
import { AutoencoderKL } from "../../src/models/vae/index.ts";
import { Conv2d } from "../../src/nn/layers.ts";
import { installModelOffload } from "../../src/offload/index.ts";
import { applyChannelsLast, channelsLastOf } from "../../src/speed/index.ts";
import { type Tensor, tidy } from "../../src/tensor/index.ts";
import { type GoldenEntry, goldenCases, goldenTensor, maxError, openGolden } from "../helpers/golden.ts";
import { goldenDir } from "../helpers/paths.ts";
import { expectLiveBytesReturn } from "../helpers/op-harness.ts";

const DEVICES: Device[] = hasBackend("cuda") ? ["cpu", "cuda"] : ["cpu"];
expectLiveBytesReturn(DEVICES);

const f32 = (t: Tensor) => t.toFloat32Array();
const rel = (a: Tensor, b: Tensor) => {
  const { maxAbs, maxRef } = maxError(f32(a), f32(b));
  return maxAbs / maxRef;
};
const UNET_INPUTS = ["sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids"];

/** Case prefixes of a golden UNet file ("case0", …), from its tensor names. */
function unetCases(entry: GoldenEntry): string[] {
  const cases: string[] = [];
  for (const name of Object.keys(entry.tensors)) {
    const [c, rest] = name.split("/") as [string, string];
    if (![...UNET_INPUTS, "out"].includes(rest)) throw new Error(`${entry.file}: golden tensor ${name} is not known to this test`);
    if (!cases.includes(c)) cases.push(c);
  }
  return cases;
}

/** One case's inputs on `device` and its float32 reference. */
function unetCase(entry: GoldenEntry, c: string, device: Device) {
  const f = openGolden(entry.file);
  const get = (n: string) => (entry.tensors[`${c}/${n}`] ? goldenTensor(f, `${c}/${n}`).to(device) : null);
  return {
    args: [get("sample")!, get("timestep")!, get("encoder_hidden_states")!] as const,
    extra: { textEmbeds: get("text_embeds"), timeIds: get("time_ids") },
    ref: goldenTensor(f, `${c}/out`),
  };
}

describe.each(DEVICES)("channels-last golden models on %s", (device) => {
  for (const entry of goldenCases("unet"))
    test(`${entry.file}: UNet channels-last = golden = NCHW (1e-5·max|ref|); removal restores NCHW bit for bit`, () => {
      const model = UNet2DConditionModel.fromPretrained(path.join(goldenDir, entry.meta.model!), { device });
      try {
        const cases = unetCases(entry);
        expect(cases.length).toBeGreaterThan(0);
        for (const c of cases)
          tidy(() => {
            const x = unetCase(entry, c, device);
            const nchw = model.call(...x.args, x.extra);
            const h = applyChannelsLast(model);
            expect(h.convolutions).toBeGreaterThan(0);
            const nhwc = model.call(...x.args, x.extra);
            h.remove();
            expect(channelsLastOf(model)).toBe(null);
            const again = model.call(...x.args, x.extra);
            expect(nhwc.memoryFormat).toBe("contiguous"); // converted back at the boundary
            expect(nhwc.shape).toEqual(x.ref.shape);
            const vsGolden = rel(nhwc, x.ref);
            const vsNchw = rel(nhwc, nchw);
            console.log(`${device} ${entry.file} ${c} (B=${x.args[0].shape[0]}): channels-last vs golden ${vsGolden.toExponential(2)}, vs NCHW ${vsNchw.toExponential(2)}`);
            expect(vsGolden).toBeLessThanOrEqual(1e-5);
            expect(vsNchw).toBeLessThanOrEqual(1e-5);
            expect(Buffer.from(f32(again).buffer).equals(Buffer.from(f32(nchw).buffer))).toBe(true);
          });
      } finally {
        model.dispose();
      }
    });

  for (const entry of goldenCases("vae").filter((e) => e.tensors["decode/z"] && e.tensors["decode/out"]))
    test(`${entry.file}: VAE decode channels-last = golden (1e-5·max|ref|)`, () => {
      const vae = AutoencoderKL.fromPretrained(path.join(goldenDir, entry.meta.model!), { device });
      const h = applyChannelsLast(vae);
      try {
        tidy(() => {
          const f = openGolden(entry.file);
          const z = goldenTensor(f, "decode/z", "float32").to(device);
          const out = vae.decode(z);
          const r = rel(out, goldenTensor(f, "decode/out", "float32"));
          console.log(`${device} ${entry.file}: channels-last decode vs golden ${r.toExponential(2)}`);
          expect(out.memoryFormat).toBe("contiguous");
          expect(r).toBeLessThanOrEqual(1e-5);
        });
      } finally {
        h.remove();
        vae.dispose();
      }
    });
});

describe.skipIf(!hasBackend("cuda"))("channels-last layout on the CUDA device", () => {
  for (const entry of goldenCases("unet"))
    test(`${entry.file}: a channels-last step transposes only at its boundary; the NCHW step transposes more`, () => {
      const model = UNet2DConditionModel.fromPretrained(path.join(goldenDir, entry.meta.model!), { device: "cuda" });
      try {
        const c = unetCases(entry)[0]!;
        const count = () =>
          tidy(() => {
            const x = unetCase(entry, c, "cuda");
            resetLayoutConversionCount();
            model.call(...x.args, x.extra);
            return layoutConversionCount();
          });
        const nchw = count();
        const h = applyChannelsLast(model);
        const nhwc = count();
        h.remove();
        console.log(`${entry.file}: layout conversions per step: NCHW ${nchw}, channels-last ${nhwc}`);
        expect(nhwc).toBe(2); // sample → NHWC, prediction → NCHW
        expect(nchw).toBeGreaterThan(nhwc);
      } finally {
        model.dispose();
      }
    });

  test("model offload installed after channels-last uploads the channels-last weights", () => {
    const entry = goldenCases("unet")[0]!;
    const model = UNet2DConditionModel.fromPretrained(path.join(goldenDir, entry.meta.model!), { device: "cuda" });
    const h = applyChannelsLast(model);
    const offload = installModelOffload([model], "cuda");
    const seen: string[] = [];
    const hooks = model.namedModules().filter(([, m]) => m instanceof Conv2d && (m as Conv2d).weight.shape[2]! > 1).map(([name, m]) =>
      m.registerForwardPreHook(() => {
        const w = (m as Conv2d).weight.value;
        seen.push(`${name}: ${w.device} ${w.memoryFormat}`);
      }),
    );
    try {
      expect(model.parameters().every((p) => p.device === "cpu")).toBe(true);
      tidy(() => {
        const x = unetCase(entry, unetCases(entry)[0]!, "cuda");
        model.call(...x.args, x.extra);
      });
      expect(seen.length).toBeGreaterThan(0);
      for (const s of seen) expect(s).toEndWith(": cuda channelsLast");
    } finally {
      for (const k of hooks) k.remove();
      offload.endRun();
      offload.remove();
      h.remove();
      model.dispose();
    }
  });
});
