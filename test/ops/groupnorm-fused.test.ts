// The fused GroupNorm variants on every test device and float dtype, against the unfused op sequence they replace
// (diffusers' ResnetBlock2D: silu(norm2(h + temb[:, :, None, None]))): groupNorm(x, { add }) equals
// groupNorm(add(x, t)) bit for bit (the sum is rounded as the add stores it); with SiLU it differs from
// silu(groupNorm(add(x, t))) only by the rounding of the normalised intermediate. Shapes cover split groups
// (64×64 spatial × 10 channels per group on CUDA) and small odd ones; the addend's accepted forms, its shape error,
// the meta device's allocations (the sum is never stored), and memory returning to its start.

import { describe, expect, test } from "bun:test";
import type { DType } from "../../src/core/dtype.ts";
import type { Device } from "../../src/core/device.ts";
import { type Tensor, add, empty, groupNorm, memoryStats, resetPeakMemory, silu, tensor, zeros } from "../../src/tensor/index.ts";
import { FLOAT_DTYPES, HALF_ULP, expectLiveBytesReturn, randomValues, testDevices, values } from "../helpers/op-harness.ts";

const DEVICES = testDevices();
expectLiveBytesReturn(DEVICES);

/** Half the smallest subnormal: the absolute rounding of values below the normal range (float16: |v| < 6.1e-5). */
const HALF_SUB: Record<string, number> = { float32: 2 ** -150, float16: 2 ** -25, bfloat16: 2 ** -134 };

const CASES: { name: string; shape: number[]; G: number }[] = [
  { name: "[2, 20, 64, 64] in 2 groups (10 channels × 4096 per group)", shape: [2, 20, 64, 64], G: 2 },
  { name: "odd [3, 6, 5, 7] in 3 groups", shape: [3, 6, 5, 7], G: 3 },
  { name: "odd [1, 4, 97, 89] in 2 groups", shape: [1, 4, 97, 89], G: 2 },
];

function inputs(shape: number[], dtype: DType, device: Device) {
  const [N, C] = shape as [number, number];
  const n = shape.reduce((a, b) => a * b, 1);
  const x = tensor(randomValues(n, dtype, 51, -3, 3), { shape, dtype, device });
  const t = tensor(randomValues(N * C, dtype, 52, -2, 2), { shape: [N, C], dtype, device });
  const w = tensor(randomValues(C, dtype, 53, 0.5, 1.5), { dtype, device });
  const b = tensor(randomValues(C, dtype, 54, -0.5, 0.5), { dtype, device });
  const t4 = t.reshape([N, C, ...shape.slice(2).map(() => 1)]);
  return { x, t, t4, w, b, free: () => [x, t, t4, w, b].forEach((v) => v.dispose()) };
}

const bitsOf = (t: Tensor) => new Uint32Array(Float32Array.from(values(t)).buffer);

describe("groupNorm with a fused per-channel addend", () => {
  for (const device of DEVICES)
    for (const dtype of FLOAT_DTYPES)
      for (const c of CASES)
        test(`${c.name} ${dtype} ${device}: equals add-then-groupNorm bit for bit; with SiLU within the intermediate's rounding`, () => {
          const { x, t, t4, w, b, free } = inputs(c.shape, dtype, device);
          const sum = add(x, t4);
          const unfused = groupNorm(sum, c.G, w, b, 1e-6);
          const fused = groupNorm(x, c.G, w, b, 1e-6, { add: t });
          expect(bitsOf(fused)).toEqual(bitsOf(unfused));
          // silu(n) rounded vs silu(n before its rounding): |Δ| ≤ max|silu'| (1.1)·½ulp(n) + ½ulp of each output,
          // plus the float32 SiLU's own error (≤ 4 float32 ulp on the CPU's SIMD path); below the normal range each of
          // the three roundings is absolute (half the smallest subnormal)
          const us = silu(unfused);
          const fs = groupNorm(x, c.G, w, b, 1e-6, { add: t, silu: true });
          const [n, u, f] = [values(unfused), values(us), values(fs)];
          const h = HALF_ULP[dtype]!;
          let worst = 0;
          for (let i = 0; i < u.length; i++) {
            const tol = h * (1.1 * Math.abs(n[i]!) + 2 * Math.abs(u[i]!)) + 8 * 2 ** -24 * Math.abs(u[i]!) + 3.3 * HALF_SUB[dtype]!;
            worst = Math.max(worst, Math.abs(f[i]! - u[i]!) / tol);
          }
          expect(worst).toBeLessThanOrEqual(1);
          [sum, unfused, fused, us, fs].forEach((v) => v.dispose());
          free();
        });

  for (const device of DEVICES)
    test(`${device}: the addend as [N, C], [N, C, 1, 1] and [1, C] (broadcast over N) gives the same result`, () => {
      const { x, t, t4, w, b, free } = inputs([2, 8, 6, 5], "float32", device);
      const t1 = t.narrow(0, 1, 1); // [1, C]: sample 1's addend for both samples
      const z = zeros([2, 8], { device });
      const t1n = add(t1, z); // the same, materialised as [N, C]
      const a = groupNorm(x, 4, w, b, 1e-6, { add: t, silu: true });
      const a4 = groupNorm(x, 4, w, b, 1e-6, { add: t4, silu: true });
      const a1 = groupNorm(x, 4, w, b, 1e-6, { add: t1 });
      const a1n = groupNorm(x, 4, w, b, 1e-6, { add: t1n });
      expect(bitsOf(a4)).toEqual(bitsOf(a));
      expect(bitsOf(a1)).toEqual(bitsOf(a1n));
      [t1, z, t1n, a, a4, a1, a1n].forEach((v) => v.dispose());
      free();
    });

  test("an addend of another shape is refused, naming the shapes and the fix", () => {
    const { x, w, b, free } = inputs([2, 8, 6, 5], "float32", "cpu");
    const bad = tensor(new Float64Array(2 * 8 * 6), { shape: [2, 8, 6, 1] });
    expect(() => groupNorm(x, 4, w, b, 1e-6, { add: bad })).toThrow(
      "groupNorm: add must be a per-channel addend [2, 8] or [2, 8, 1, 1] (N may be 1) for input [2, 8, 6, 5], got [2, 8, 6, 1]; add other shapes with add() first",
    );
    bad.dispose();
    free();
  });

  test("on meta the fused call allocates only its output (the unfused sequence also holds the sum)", () => {
    const shape = [2, 320, 64, 64];
    const [x, t] = [empty(shape, { device: "meta", dtype: "float16" }), empty([2, 320], { device: "meta", dtype: "float16" })];
    const peakOf = (fn: () => Tensor[]) => {
      const start = memoryStats("meta").live;
      resetPeakMemory("meta");
      fn().forEach((v) => v.dispose());
      return memoryStats("meta").peak - start;
    };
    const bytes = x.byteLength;
    expect(peakOf(() => [groupNorm(x, 32, null, null, 1e-6, { add: t, silu: true })])).toBe(bytes);
    const t4 = t.reshape([2, 320, 1, 1]);
    expect(peakOf(() => {
      const s = add(x, t4);
      const y = groupNorm(s, 32, null, null, 1e-6, { silu: true });
      return [s, y];
    })).toBe(2 * bytes);
    [x, t, t4].forEach((v) => v.dispose());
  });
});
