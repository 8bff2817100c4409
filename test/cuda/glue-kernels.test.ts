// The glue kernels' fast paths on the CUDA device (the emulated one without a GPU): elementwise ops on the 16-byte
// vector path against the scalar path, bit for bit (same per-element arithmetic; aligned, misaligned and odd-length
// operands, float32 / float16 / bfloat16), which path each layout takes (bdk_elementwise_last_width), broadcast
// shapes (per-channel bias over NCHW, [B,1,C] / [C] over [B,N,C], scalars, strided views) against exact references,
// and the split GroupNorm (partial statistics merged over blocks) against float64 at a large group and odd ones.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cudaContext } from "../../src/backends/cuda/context.ts";
import { hasBackend } from "../../src/backends/registry.ts";
import type { DType } from "../../src/core/dtype.ts";
import { type Tensor, add, groupNorm, memoryStats, mul, silu, tensor, where } from "../../src/tensor/index.ts";
import { randomValues, roundTo, values } from "../helpers/op-harness.ts";

const HAS_CUDA = hasBackend("cuda");
const FLOATS: DType[] = ["float32", "float16", "bfloat16"];
const BYTES: Record<string, number> = { float32: 4, float16: 2, bfloat16: 2 };

/** Elements per thread of the last elementwise launch (1 = the scalar path). */
const lastWidth = () => cudaContext().k.bdk_elementwise_last_width!() as number;

/** The bits of a result (float16 / bfloat16 read back as float32, which maps their values one to one). */
function bits(t: Tensor): Uint32Array {
  const a = t.toTypedArray();
  return new Uint32Array(Float32Array.from(a as ArrayLike<number>).buffer);
}

/** A device tensor holding `v` at element `offset` of a larger buffer (offset 1: not 16-byte aligned). */
function at(v: Float64Array, shape: number[], dtype: DType, offset: number): { t: Tensor; base: Tensor } {
  const buf = new Float64Array(v.length + offset + 8);
  buf.set(v, offset);
  const base = tensor(buf, { dtype, device: "cuda" });
  const flat = base.narrow(0, offset, v.length);
  const t = flat.reshape(shape);
  flat.dispose();
  return { t, base };
}

/** `v` (logically [rows, cols]) held transposed: a [rows, cols] view with strides [1, rows] (the strided path). */
function transposed(v: Float64Array, rows: number, cols: number, dtype: DType): { t: Tensor; base: Tensor } {
  const tv = new Float64Array(v.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) tv[c * rows + r] = v[r * cols + c]!;
  const base = tensor(tv, { shape: [cols, rows], dtype, device: "cuda" });
  return { t: base.transpose(0, 1), base };
}

let live0 = 0;
beforeAll(() => {
  if (HAS_CUDA) live0 = memoryStats("cuda").live;
});
afterAll(() => {
  if (HAS_CUDA) expect(memoryStats("cuda").live).toBe(live0);
});

describe.skipIf(!HAS_CUDA)("elementwise: vector and scalar paths", () => {
  // rows × cols with cols = 8·k + 3: the 1-D walk has a tail; 1-D lengths that are and are not multiples of 8
  const ROWS = 7, COLS = 67;
  const N = ROWS * COLS; // 469 = 58·8 + 5
  const ops: { name: string; run: (a: Tensor, b: Tensor, c: Tensor) => Tensor }[] = [
    { name: "add", run: (a, b) => add(a, b) },
    { name: "mul", run: (a, b) => mul(a, b) },
    { name: "silu", run: (a) => silu(a) },
    { name: "add scalar", run: (a) => add(a, 0.3) },
    { name: "where", run: (a, b, c) => where(c, a, b) },
  ];
  for (const dtype of FLOATS)
    for (const op of ops)
      test(`${op.name} ${dtype}: aligned (vector), misaligned and transposed (scalar) operands agree bit for bit`, () => {
        const va = randomValues(N, dtype, 11, -4, 4);
        const vb = randomValues(N, dtype, 12, -4, 4);
        const vc = Float64Array.from(randomValues(N, "float32", 13), (x) => +(x > 0));
        const shape = [ROWS, COLS];
        const mk = (layout: "aligned" | "misaligned" | "transposed") => {
          const made = [va, vb].map((v) => (layout === "transposed" ? transposed(v, ROWS, COLS, dtype) : at(v, shape, dtype, layout === "aligned" ? 0 : 1)));
          const c = tensor(vc, { shape, dtype: "bool", device: "cuda" });
          return { a: made[0]!.t, b: made[1]!.t, c, free: () => [...made.flatMap((m) => [m.t, m.base]), c].forEach((t) => t.dispose()) };
        };
        const results: Record<string, Uint32Array> = {};
        const widths: Record<string, number> = {};
        for (const layout of ["aligned", "misaligned", "transposed"] as const) {
          const m = mk(layout);
          const r = op.run(m.a, m.b, m.c);
          widths[layout] = lastWidth();
          results[layout] = bits(r);
          r.dispose();
          m.free();
        }
        // a contiguous [7, 67] walks as 1-D: 16 bytes per thread and a 5-element tail
        expect(widths.aligned).toBe(16 / BYTES[dtype]!);
        expect(widths.misaligned).toBe(1);
        expect(widths.transposed).toBe(1);
        expect(results.misaligned).toEqual(results.aligned!);
        expect(results.transposed).toEqual(results.aligned!);
      });

  test("odd lengths below, at and above one vector: every element written once (add, float16)", () => {
    for (const n of [1, 7, 8, 9, 15, 17, 1023]) {
      const va = randomValues(n, "float16", n, -2, 2), vb = randomValues(n, "float16", n + 1, -2, 2);
      const a = tensor(va, { dtype: "float16", device: "cuda" }), b = tensor(vb, { dtype: "float16", device: "cuda" });
      const r = add(a, b);
      expect(lastWidth()).toBe(n >= 8 ? 8 : 1);
      expect(Array.from(values(r))).toEqual(Array.from(va, (x, i) => roundTo("float16", Math.fround(x + vb[i]!))));
      [a, b, r].forEach((t) => t.dispose());
    }
  });
});

describe.skipIf(!HAS_CUDA)("elementwise: broadcast shapes", () => {
  // add is exact to reference: float32 sum of the stored values, rounded to the dtype (the kernel's arithmetic)
  const cases: { name: string; x: number[]; y: number[]; vector: boolean }[] = [
    { name: "per-channel bias [1,C,1,1] over [B,C,H,W]", x: [2, 24, 8, 8], y: [1, 24, 1, 1], vector: true },
    { name: "per-sample bias [B,C,1,1] over [B,C,H,W]", x: [2, 24, 8, 8], y: [2, 24, 1, 1], vector: true },
    { name: "[B,1,C] over [B,N,C]", x: [2, 33, 40], y: [2, 1, 40], vector: true },
    { name: "[C] over [B,N,C]", x: [2, 33, 40], y: [40], vector: true },
    { name: "scalar tensor [1] over [B,N,C]", x: [2, 33, 40], y: [1], vector: true },
    { name: "odd spatial (H·W = 35): per-channel bias on the scalar path", x: [2, 5, 5, 7], y: [1, 5, 1, 1], vector: false },
    { name: "odd channels [B,1,C] with C = 13", x: [3, 4, 13], y: [3, 1, 13], vector: false },
    { name: "row broadcast [B,C,1,W]", x: [2, 3, 5, 16], y: [2, 3, 1, 16], vector: true },
  ];
  const index = (shape: number[], i: number, into: number[]) => {
    // the broadcast operand's linear index of output element i
    let rem = i, off = 0, stride = 1;
    const ys = into.length;
    const strides = new Array<number>(ys);
    for (let d = ys - 1; d >= 0; d--) {
      strides[d] = into[d] === 1 ? 0 : stride;
      stride *= into[d]!;
    }
    for (let d = shape.length - 1; d >= 0; d--) {
      const k = rem % shape[d]!;
      rem = Math.floor(rem / shape[d]!);
      const yd = d - (shape.length - ys);
      if (yd >= 0) off += k * strides[yd]!;
    }
    return off;
  };
  for (const dtype of FLOATS)
    for (const c of cases)
      test(`${c.name} ${dtype}: exact, ${c.vector ? "vector" : "scalar"} path`, () => {
        const nx = c.x.reduce((a, b) => a * b, 1), ny = c.y.reduce((a, b) => a * b, 1);
        const vx = randomValues(nx, dtype, 21, -3, 3), vy = randomValues(ny, dtype, 22, -3, 3);
        const x = tensor(vx, { shape: c.x, dtype, device: "cuda" }), y = tensor(vy, { shape: c.y, dtype, device: "cuda" });
        for (const [first, second] of [[x, y], [y, x]] as const) {
          const r = add(first, second);
          expect(lastWidth() > 1).toBe(c.vector);
          const want = Array.from(vx, (v, i) => roundTo(dtype, Math.fround(v + vy[index(c.x, i, c.y)]!)));
          expect(Array.from(values(r))).toEqual(want);
          r.dispose();
        }
        x.dispose();
        y.dispose();
      });

  test("a permuted operand with a broadcast one (general strided path) is exact", () => {
    const [B, C, H, W] = [2, 6, 5, 8];
    const vx = randomValues(B * C * H * W, "float32", 31, -3, 3), vy = randomValues(C, "float32", 32, -3, 3);
    const base = tensor(vx, { shape: [B, H, W, C], device: "cuda" }); // NHWC storage
    const x = base.permute([0, 3, 1, 2]); // [B, C, H, W] view
    const y = tensor(vy, { shape: [1, C, 1, 1], device: "cuda" });
    const r = add(x, y);
    expect(lastWidth()).toBe(1);
    const want = new Array<number>(B * C * H * W);
    for (let b = 0; b < B; b++)
      for (let c = 0; c < C; c++)
        for (let h = 0; h < H; h++)
          for (let w = 0; w < W; w++) want[((b * C + c) * H + h) * W + w] = Math.fround(vx[((b * H + h) * W + w) * C + c]! + vy[c]!);
    expect(Array.from(values(r))).toEqual(want);
    [base, x, y, r].forEach((t) => t.dispose());
  });
});

describe.skipIf(!HAS_CUDA)("GroupNorm split over blocks", () => {
  /** float64 group norm of the stored values (population variance), affine per channel. */
  function reference(v: Float64Array, [N, C, S]: number[], G: number, w: Float64Array, b: Float64Array, eps: number): Float64Array {
    const out = new Float64Array(v.length);
    const len = (C! / G) * S!;
    for (let g0 = 0; g0 < N! * G; g0++) {
      const o = g0 * len;
      let m = 0;
      for (let i = 0; i < len; i++) m += v[o + i]!;
      m /= len;
      let q = 0;
      for (let i = 0; i < len; i++) q += (v[o + i]! - m) ** 2;
      const r = 1 / Math.sqrt(q / len + eps);
      for (let i = 0; i < len; i++) {
        const c = Math.floor((o + i) / S!) % C!;
        out[o + i] = (v[o + i]! - m) * r * w[c]! + b[c]!;
      }
    }
    return out;
  }

  test("the SD 1.5 shape [2, 320, 64, 64], 32 groups, is 640 pieces (not 64 blocks); small groups are not split", () => {
    const ws = (N: number, C: number, S: number, G: number) => Number(cudaContext().k.bdk_group_norm_workspace!(N, C, S, G));
    expect(ws(2, 320, 64 * 64, 32)).toBe(640 * 8); // one float (mean, M2) pair per piece
    expect(ws(2, 1280, 8 * 8, 32)).toBe(0); // 40 channels × 64: one block per group
    expect(ws(1, 7, 3, 2)).toBeLessThan(0); // 7 channels in 2 groups
  });

  // Tolerance: the statistics are float32, so the mean carries about 2^-24·|mean| of rounding, which the
  // normalisation divides by σ: at mean 100, σ 0.58 that is ≈ 1e-5 of output (measured 1.7e-5 worst; ≤ 4e-7 where
  // |mean| ≲ σ). Allowed: 4e-5 absolute plus the output's rounding to its dtype (half an ulp relative).
  const HALF_ULP: Record<string, number> = { float32: 2 ** -24, float16: 2 ** -11, bfloat16: 2 ** -8 };
  const cases: { name: string; shape: number[]; G: number; lo: number; hi: number }[] = [
    { name: "64×64 spatial × 10 channels per group", shape: [2, 20, 64, 64], G: 2, lo: -3, hi: 5 },
    { name: "large mean (100 ± 1): no cancellation", shape: [1, 10, 64, 64], G: 1, lo: 99, hi: 101 },
    { name: "odd: 3 channels × 61·67 (one piece per channel)", shape: [1, 9, 61, 67], G: 3, lo: -2, hi: 2 },
    { name: "odd: 2 channels × 97·89 (3 pieces per channel, a short last one)", shape: [1, 2, 97, 89], G: 1, lo: -2, hi: 2 },
    { name: "small odd group (not split): [3, 6, 5, 7] in 3 groups", shape: [3, 6, 5, 7], G: 3, lo: -2, hi: 2 },
  ];
  for (const c of cases)
    for (const dtype of FLOATS)
      test(`${c.name} ${dtype}: within 4e-5 + half an ulp of float64`, () => {
        const [N, C] = c.shape as [number, number];
        const S = c.shape.slice(2).reduce((a, b) => a * b, 1);
        const vx = randomValues(N * C * S, dtype, 41, c.lo, c.hi);
        const vw = randomValues(C, dtype, 42, 0.5, 1.5), vb = randomValues(C, dtype, 43, -0.5, 0.5);
        const x = tensor(vx, { shape: c.shape, dtype, device: "cuda" });
        const w = tensor(vw, { dtype, device: "cuda" }), b = tensor(vb, { dtype, device: "cuda" });
        const y = groupNorm(x, c.G, w, b, 1e-5);
        const ref = reference(vx, [N, C, S], c.G, vw, vb, 1e-5);
        const got = values(y);
        let worst = 0;
        for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(got[i]! - ref[i]!) / (4e-5 + HALF_ULP[dtype]! * Math.abs(ref[i]!)));
        expect(worst).toBeLessThanOrEqual(1);
        [x, w, b, y].forEach((t) => t.dispose());
      });
});
