// Channels-last tensors on every test device (the CPU; CUDA — the emulated device without a GPU — where loaded): the
// logical shape stays [N, C, H, W], only the storage is NHWC. Per op, the channels-last run is compared with the
// row-major run of the same values, and its output's memory format is checked:
// - conv2d (cuDNN NHWC descriptors and KRSC filters on CUDA) for 1×1 and 3×3, stride 2, padding, groups, dilation and
//   odd sizes, float32 / float16 / bfloat16, each against a float64 reference: both layouts accumulate in float32 in
//   an order of their own and round once, so each is within the rounding of one stored value plus float32
//   accumulation over the K = C/g·kh·kw products (`tolerance(dtype, K)`);
// - GroupNorm (the NHWC kernel on CUDA) with SiLU and the per-channel addend, small and split groups: the same
//   float32 statistics summed in another order, so the layouts agree within 4e-5 (decision 21's statistics bound)
//   plus two half-ulps of the dtype (each output rounded once); on the CPU the reference path reads either layout
//   into the same order, so the results are equal bit for bit;
// - nearest upsampling (whole factors and an odd size), concatenation along channels, element-wise ops with
//   per-channel broadcasts and scalars, and Tensor.to across devices and dtypes: data movement or the same
//   per-element arithmetic, equal bit for bit.
// Live bytes return to their start on every device.

import { describe, expect, test } from "bun:test";
import { hasChannelsLastStrides } from "../../src/core/memory-format.ts";
import type { DType } from "../../src/core/dtype.ts";
import type { Device } from "../../src/core/device.ts";
import {
  type Tensor, add, cat, conv2d, groupNorm, interpolateNearest, mul, silu, tensor, toMemoryFormat, upsampleNearest2x,
} from "../../src/tensor/index.ts";
import { FLOAT_DTYPES, HALF_ULP, expectClose, expectLiveBytesReturn, randomValues, testDevices, tolerance, values } from "../helpers/op-harness.ts";

const DEVICES = testDevices();
expectLiveBytesReturn(DEVICES);


function make(shape: number[], dtype: DType, device: Device, seed: number, lo = -1, hi = 1): { nchw: Tensor; nhwc: Tensor; v: Float64Array } {
  const v = randomValues(shape.reduce((a, b) => a * b, 1), dtype, seed, lo, hi);
  const nchw = tensor(v, { shape, dtype, device });
  return { nchw, nhwc: toMemoryFormat(nchw, "channelsLast"), v };
}

function bitsEqual(a: Tensor, b: Tensor, label: string): void {
  const x = values(a);
  const y = values(b);
  expect(x.length, label).toBe(y.length);
  for (let i = 0; i < x.length; i++) if (!Object.is(x[i], y[i])) throw new Error(`${label}: element ${i} is ${x[i]} vs ${y[i]}`);
}

/** float64 cross-correlation of NCHW values (torch's conv2d). */
function convRef(x: Float64Array, xs: number[], w: Float64Array, ws: number[], b: Float64Array, s: number, p: number, d: number, g: number) {
  const [N, C, H, W] = xs as [number, number, number, number];
  const [O, cg, kh, kw] = ws as [number, number, number, number];
  const OH = Math.floor((H + 2 * p - d * (kh - 1) - 1) / s) + 1;
  const OW = Math.floor((W + 2 * p - d * (kw - 1) - 1) / s) + 1;
  const out = new Float64Array(N * O * OH * OW);
  const og = O / g;
  for (let n = 0; n < N; n++)
    for (let o = 0; o < O; o++)
      for (let oh = 0; oh < OH; oh++)
        for (let ow = 0; ow < OW; ow++) {
          let acc = b[o]!;
          const c0 = Math.floor(o / og) * cg;
          for (let c = 0; c < cg; c++)
            for (let r = 0; r < kh; r++)
              for (let q = 0; q < kw; q++) {
                const ih = oh * s - p + r * d, iw = ow * s - p + q * d;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                acc += x[((n * C + c0 + c) * H + ih) * W + iw]! * w[((o * cg + c) * kh + r) * kw + q]!;
              }
          out[((n * O + o) * OH + oh) * OW + ow] = acc;
        }
  return out;
}

const CONVS = [
  { name: "3×3 pad 1", x: [2, 8, 9, 7], w: [16, 8, 3, 3], s: 1, p: 1, d: 1, g: 1 },
  { name: "1×1", x: [1, 12, 5, 6], w: [8, 12, 1, 1], s: 1, p: 0, d: 1, g: 1 },
  { name: "3×3 stride 2 pad 1, odd size", x: [1, 6, 11, 13], w: [10, 6, 3, 3], s: 2, p: 1, d: 1, g: 1 },
  { name: "3×3 groups 2, no padding", x: [2, 8, 6, 5], w: [6, 4, 3, 3], s: 1, p: 0, d: 1, g: 2 },
  { name: "3×3 dilation 2 pad 2", x: [1, 4, 9, 9], w: [4, 4, 3, 3], s: 1, p: 2, d: 2, g: 1 },
];

describe.each(DEVICES)("channels-last ops on %s", (device) => {
  for (const dtype of FLOAT_DTYPES) {
    test.each(CONVS)(`conv2d $name, ${dtype}: NHWC and NCHW both within float32 accumulation of float64`, (c) => {
      const x = make(c.x, dtype, device, 11);
      const w = make(c.w, dtype, device, 12, -0.5, 0.5);
      const b = make([c.w[0]!, 1, 1], dtype, device, 13); // [O] through a 3-D maker, then flattened
      const bias = b.nchw.reshape([c.w[0]!]);
      const opts = { stride: c.s, padding: c.p, dilation: c.d, groups: c.g };
      const yRow = conv2d(x.nchw, w.nchw, bias, opts);
      const yNhwc = conv2d(x.nhwc, w.nhwc, bias, opts);
      const yMixed = conv2d(x.nchw, w.nhwc, bias, opts); // a channels-last weight makes the output channels-last (torch)
      try {
        expect(yRow.memoryFormat).toBe("contiguous");
        expect(yNhwc.memoryFormat).toBe("channelsLast");
        // a [O, C, 1, 1] weight is row-major and channels-last at once (memoryFormat "contiguous"): the input decides
        expect(yMixed.memoryFormat).toBe(c.w[2]! * c.w[3]! > 1 ? "channelsLast" : "contiguous");
        const ref = convRef(x.v, c.x, w.v, c.w, b.v, c.s, c.p, c.d, c.g);
        const K = (c.w[1]! * c.w[2]! * c.w[3]!);
        const tol = tolerance(dtype, K);
        expectClose(values(yRow), ref, tol, "NCHW");
        expectClose(values(yNhwc), ref, tol, "NHWC");
        expectClose(values(yMixed), ref, tol, "NCHW input, KRSC weight");
      } finally {
        for (const t of [x.nchw, x.nhwc, w.nchw, w.nhwc, b.nchw, b.nhwc, bias, yRow, yNhwc, yMixed]) t.dispose();
      }
    });

    test.each<{ name: string; shape: number[]; G: number }>([
      { name: "small groups [2, 12, 5, 7] G 3", shape: [2, 12, 5, 7], G: 3 },
      { name: "split groups [2, 20, 48, 48] G 2 (23040 per group)", shape: [2, 20, 48, 48], G: 2 },
      { name: "one channel per group [1, 6, 4, 3] G 6", shape: [1, 6, 4, 3], G: 6 },
    ])(`groupNorm $name, ${dtype}: NHWC = NCHW within the statistics' rounding`, (c) => {
      const [N, C] = c.shape as [number, number];
      const x = make(c.shape, dtype, device, 21, -3, 3);
      const w = tensor(randomValues(C, dtype, 22, 0.5, 1.5), { dtype, device });
      const b = tensor(randomValues(C, dtype, 23, -0.5, 0.5), { dtype, device });
      const t = tensor(randomValues(N * C, dtype, 24, -2, 2), { shape: [N, C], dtype, device });
      try {
        for (const o of [{}, { silu: true }, { add: t }, { silu: true, add: t }]) {
          const label = `${device} ${dtype} ${JSON.stringify(Object.keys(o))}`;
          const row = groupNorm(x.nchw, c.G, w, b, 1e-5, o);
          const nhwc = groupNorm(x.nhwc, c.G, w, b, 1e-5, o);
          try {
            expect(nhwc.memoryFormat, label).toBe("channelsLast");
            if (device === "cpu") bitsEqual(nhwc, row, label);
            else expectClose(values(nhwc), values(row), { atol: 4e-5, rtol: 2 * HALF_ULP[dtype]! }, label);
          } finally {
            row.dispose();
            nhwc.dispose();
          }
        }
      } finally {
        for (const z of [x.nchw, x.nhwc, w, b, t]) z.dispose();
      }
    });

    test(`upsampling, concatenation, element-wise ops and .to keep NHWC, ${dtype}: equal bit for bit`, () => {
      const x = make([2, 6, 5, 3], dtype, device, 31);
      const s = make([2, 4, 5, 3], dtype, device, 32);
      const bias = tensor(randomValues(6, dtype, 33), { shape: [1, 6, 1, 1], dtype, device });
      const bias3 = bias.reshape([6, 1, 1]);
      const made: Tensor[] = [x.nchw, x.nhwc, s.nchw, s.nhwc, bias, bias3];
      const pair = (label: string, f: (a: Tensor, b: Tensor) => Tensor) => {
        const r = f(x.nchw, s.nchw);
        const l = f(x.nhwc, s.nhwc);
        made.push(r, l);
        expect(l.memoryFormat, label).toBe("channelsLast");
        expect(hasChannelsLastStrides(l.shape, l.strides), label).toBe(true);
        bitsEqual(l, r, label);
      };
      try {
        pair("upsample ×2", (a) => upsampleNearest2x(a));
        pair("upsample to an odd size", (a) => interpolateNearest(a, { size: [11, 7] }));
        pair("upsample ×3 × ×2", (a) => interpolateNearest(a, { size: [15, 6] }));
        pair("cat along channels", (a, b) => cat([a, b], 1));
        pair("cat along the batch", (a) => cat([a, a], 0));
        pair("add NHWC + NHWC", (a) => add(a, a));
        pair("add per-channel bias [1, C, 1, 1]", (a) => add(a, bias));
        pair("add per-channel bias [C]", (a) => add(a, bias3));
        pair("silu", (a) => silu(a));
        pair("mul by a scalar", (a) => mul(a, 0.5));
        const other: Device = device === "cpu" ? (DEVICES.find((d) => d !== "cpu") ?? "cpu") : "cpu";
        pair(`to(${other}) and back`, (a) => {
          const m = a.to(other);
          try {
            expect(m.memoryFormat).toBe(a.memoryFormat);
            return m.to(device);
          } finally {
            m.dispose();
          }
        });
        if (dtype !== "float32") pair("to(float32)", (a) => a.to("float32"));
      } finally {
        for (const t of made) t.dispose();
      }
    });
  }
});
