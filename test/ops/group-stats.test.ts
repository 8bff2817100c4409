// GroupNorm split into statistics and application (groupStatistics, mergeGroupStatistics,
// groupNormWithStatistics) on every test device: statistics of pieces merged equal the float64
// statistics of the whole; applying the whole's statistics to each piece and joining equals groupNorm of
// the whole (with SiLU, affine and not, float32 and float16); shapes on meta; errors; no bytes left.

import { describe, expect, test } from "bun:test";
import {
  type Device, type GroupStatistics, cat, disposeGroupStatistics, empty, groupNorm, groupNormWithStatistics, groupStatistics,
  memoryStats, mergeGroupStatistics, tidy,
} from "../../src/tensor/index.ts";
import { expectClose, randomTensor, testDevices, tolerance, values } from "../helpers/op-harness.ts";

/** float64 per-(n, g) mean and M2 of values v of shape [N, C, H, W]. */
function reference(v: Float64Array, [N, C, H, W]: number[], G: number): { mean: number[]; m2: number[] } {
  const per = (C / G) * H * W;
  const mean: number[] = [];
  const m2: number[] = [];
  for (let i = 0; i < N * G; i++) {
    const part = v.subarray(i * per, (i + 1) * per);
    const m = part.reduce((a, b) => a + b, 0) / per;
    mean.push(m);
    m2.push(part.reduce((a, b) => a + (b - m) ** 2, 0));
  }
  return { mean, m2 };
}

const SHAPE = [2, 6, 7, 5]; // N, C, H, W: odd sizes, pieces of unequal height
const G = 3;
const CUTS = [3, 1, 3]; // row counts of the pieces along H

describe.each(testDevices())("group statistics on %s", (device: Device) => {
  test("merged piece statistics equal the whole's (float64 reference); applying them equals groupNorm", () => {
    const live0 = memoryStats(device).live;
    tidy(() => {
      const { t: x, v } = randomTensor(SHAPE, "float32", device, 11, -2, 3); // offset mean: M2 must not cancel
      const ref = reference(v, SHAPE, G);
      const pieces = x.split(CUTS, 2);
      let acc: GroupStatistics | null = null;
      for (const p of pieces) {
        const s = groupStatistics(p, G);
        acc = acc ? mergeGroupStatistics(acc, s) : s;
      }
      expect(acc!.count).toBe((SHAPE[1]! / G) * SHAPE[2]! * SHAPE[3]!);
      const per = acc!.count;
      // float32 sums over `per` elements: the op-harness reduction tolerance
      expectClose(values(acc!.mean), ref.mean, tolerance("float32", per), "mean");
      expectClose(values(acc!.m2), ref.m2, { atol: 1e-4, rtol: tolerance("float32", per).rtol }, "m2");
      const w = randomTensor([SHAPE[1]!], "float32", device, 12).t;
      const b = randomTensor([SHAPE[1]!], "float32", device, 13).t;
      for (const [weight, bias, silu] of [[w, b, true], [null, null, false]] as const) {
        const whole = values(groupNorm(x, G, weight, bias, 1e-6, { silu }));
        const joined = values(cat(pieces.map((p) => groupNormWithStatistics(p, G, acc!, weight, bias, 1e-6, { silu })), 2));
        // the same formula evaluated in float32 in another order: a few ulps of values of order 1
        expectClose(joined, whole, tolerance("float32", 8), `silu=${silu}`);
      }
    });
    expect(memoryStats(device).live).toBe(live0);
  });

  test("float16 input: statistics in float32, the result rounded once to float16", () => {
    tidy(() => {
      const { t: x } = randomTensor(SHAPE, "float16", device, 21);
      const s = groupStatistics(x, G);
      expect(s.mean.dtype).toBe("float32");
      const y = groupNormWithStatistics(x, G, s, null, null, 1e-6);
      expect(y.dtype).toBe("float16");
      expectClose(values(y), values(groupNorm(x, G, null, null, 1e-6)), tolerance("float16", 4), "float16");
    });
  });
});

test("meta: shapes only; bad groups and statistics shapes are refused with the expected shape named", () => {
  tidy(() => {
    const x = empty([1, 8, 4, 4], { device: "meta" });
    const s = groupStatistics(x, 4);
    expect(s.mean.shape).toEqual([1, 4]);
    expect(s.m2.device).toBe("meta");
    expect(groupNormWithStatistics(x, 4, s).shape).toEqual([1, 8, 4, 4]);
    expect(() => groupStatistics(x, 3)).toThrow("not divisible into 3 groups");
    expect(() => groupNormWithStatistics(x, 2, s)).toThrow("statistics must be [1, 2]");
    expect(() => mergeGroupStatistics(s, groupStatistics(empty([2, 8, 4, 4], { device: "meta" }), 4))).toThrow("shapes differ");
    disposeGroupStatistics(s);
  });
});
