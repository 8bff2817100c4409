// The fused attention op (`backend.attention`, the dispatcher's "fused" kind) on every test device and float dtype
// against a float64 reference computed from the exact stored inputs: odd sizes (seq 97 and 1025, head dims 40, 64,
// 80, 160), cross-attention (Sk = 77, Dv ≠ D), q/k/v as the strided views of permuted [B, S, H, D] projections and
// with a non-unit last stride, additive (float32 / float16) and bool masks broadcast from [B, 1, 1, Sk], [B, 1, Sq,
// Sk] and [Sq, Sk], causal with Sq ≠ Sk, fully masked rows (0, not NaN), Sk = 0, NaN propagation; on the CPU also
// small block sizes (ragged query and key tails, several key blocks with the online rescale) with and without the
// WebAssembly SIMD softmax; the fast exps; and CPU live bytes returning to their start (the kernel's scratch is not
// allocator memory). Checks that need the WebAssembly SIMD module are skipped, saying why, where it does not
// load (BD_CPU_SIMD=0), instead of passing without running.
//
// Tolerance (FlashAttention's criterion): |fused − f64| ≤ 2·|naive − f64| + 1 ulp of the output dtype at
// max(1, max|ref|), where "naive" is the materialising implementation in the same precision (float32 scores and
// softmax: the "naive" kind with upcast, so its error is the float32 rounding of the D-term dot products, the
// softmax and the Sk-term weighted sums, then the one rounding to float16/bfloat16). The fused kernel differs in
// summation order, the online rescale, scale folded into the GEMM and a 1-ulp exp; the slack covers a tie in the
// final rounding. Observed ratios |fused − f64| / |naive − f64| are about 0.5–1.2 for float32.

import { beforeAll, describe, expect, test } from "bun:test";
import { cpuBackend } from "../../src/backends/cpu/index.ts";
import { attention as cpuAttention, attentionExp } from "../../src/backends/cpu/attention.ts";
import { softmaxSimd } from "../../src/backends/cpu/softmax-simd.ts";
import { scaledDotProductAttention } from "../../src/nn/attention-dispatch.ts";
import type { DType } from "../../src/core/dtype.ts";
import type { Device } from "../../src/core/device.ts";
import { type Tensor, empty, memoryStats, resetPeakMemory, tensor, tidy } from "../../src/tensor/index.ts";
import { FLOAT_DTYPES, randomValues, testDevices, values } from "../helpers/op-harness.ts";

/** Whether the WebAssembly SIMD module loaded (BD_CPU_SIMD=0 or a runtime without SIMD: it does not). */
const HAS_SIMD = softmaxSimd() !== null;
const NO_SIMD = " (skipped: no WebAssembly SIMD module here — BD_CPU_SIMD=0 or the runtime lacks SIMD)";

let liveAtStart = 0;
beforeAll(() => {
  liveAtStart = cpuBackend.memory.live;
});

type Bias = (b: number, h: number, i: number, j: number) => number;

/**
 * float64 attention over row-major [B, H, S, D] values; `bias` is additive (-Infinity allowed), `causal` masks
 * j > i. Rows with no visible key give 0 (the fused kernel's convention).
 */
function reference(
  q: Float64Array, k: Float64Array, v: Float64Array, B: number, H: number, Sq: number, Sk: number, D: number, Dv: number,
  scale: number, bias?: Bias, causal = false,
): Float64Array {
  const out = new Float64Array(B * H * Sq * Dv);
  const s = new Float64Array(Sk);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++) {
      const bh = b * H + h;
      for (let i = 0; i < Sq; i++) {
        let m = -Infinity;
        for (let j = 0; j < Sk; j++) {
          let acc = 0;
          for (let d = 0; d < D; d++) acc += q[(bh * Sq + i) * D + d]! * k[(bh * Sk + j) * D + d]!;
          s[j] = acc * scale + (bias ? bias(b, h, i, j) : 0) + (causal && j > i ? -Infinity : 0);
          if (s[j]! > m) m = s[j]!;
        }
        if (m === -Infinity) continue;
        let l = 0;
        for (let j = 0; j < Sk; j++) l += s[j] = Math.exp(s[j]! - m);
        for (let d = 0; d < Dv; d++) {
          let acc = 0;
          for (let j = 0; j < Sk; j++) acc += s[j]! * v[(bh * Sk + j) * Dv + d]!;
          out[(bh * Sq + i) * Dv + d] = acc / l;
        }
      }
    }
  return out;
}

/**
 * A [B, H, S, D] tensor holding `vals` (row-major [B, H, S, D]) laid out as the Attention module makes it: a
 * contiguous [B, S, H, D] projection viewed through transpose(1, 2) (strides [S·H·D, D, H·D, 1]). With
 * `lastStrided`, a [B, H, D, S] tensor viewed through transpose(2, 3) instead (last stride S).
 */
function headsView(vals: Float64Array, shape: [number, number, number, number], dtype: DType, device: Device, lastStrided = false): Tensor {
  const [B, H, S, D] = shape;
  const data = new Float64Array(vals.length);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let s = 0; s < S; s++)
        for (let d = 0; d < D; d++) {
          const src = vals[((b * H + h) * S + s) * D + d]!;
          if (lastStrided) data[((b * H + h) * D + d) * S + s] = src;
          else data[((b * S + s) * H + h) * D + d] = src;
        }
  return tidy(() => {
    const base = tensor(data, { shape: lastStrided ? [B, H, D, S] : [B, S, H, D], dtype, device });
    return lastStrided ? base.transpose(2, 3) : base.transpose(1, 2);
  });
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

/** max |a − e| over the rows (of width `w`) for which keep(row) holds; NaN counts as Infinity. */
function rowError(a: ArrayLike<number>, e: ArrayLike<number>, w: number, keep: (row: number) => boolean = () => true): number {
  let err = 0;
  for (let i = 0; i < e.length; i++) {
    if (!keep(Math.floor(i / w))) continue;
    const d = Math.abs(a[i]! - e[i]!);
    err = Number.isNaN(d) ? Infinity : Math.max(err, d);
  }
  return err;
}

const ULP: Record<string, number> = { float32: 2 ** -23, float16: 2 ** -10, bfloat16: 2 ** -7 };

interface Case {
  name: string;
  B: number;
  H: number;
  Sq: number;
  Sk: number;
  D: number;
  Dv?: number;
  scale?: number;
  causal?: boolean;
  lastStrided?: boolean;
  /** Builds the mask tensor (device, q dtype) and its float64 bias; rows it fully masks are checked to be 0. */
  mask?: (dtype: DType, device: Device) => { t: Tensor; bias: Bias };
  dtypes?: DType[];
}

/** Additive [B, 1, Sq, Sk] float mask: random biases, ~30% -inf, and query rows 3..5 fully masked. */
function additiveMask(B: number, Sq: number, Sk: number, maskDtype?: DType) {
  return (dtype: DType, device: Device) => {
    const md = maskDtype ?? dtype;
    const r = randomValues(B * Sq * Sk, md, 77, 0, 1);
    const vals = Float64Array.from(r, (x, n) => {
      const i = Math.floor(n / Sk) % Sq;
      return (i >= 3 && i < 6) || x < 0.3 ? -Infinity : Math.round((x * 4 - 2) * 64) / 64; // exact in every dtype
    });
    return { t: tensor(vals, { shape: [B, 1, Sq, Sk], dtype: md, device }), bias: (b: number, _h: number, i: number, j: number) => vals[(b * Sq + i) * Sk + j]! };
  };
}

/** Bool keep-mask [B, 1, 1, Sk]: batch 0 sees its first 60 keys, the others all (a text padding mask). */
function keyPaddingMask(B: number, Sk: number) {
  return (_dtype: DType, device: Device) => {
    const keep = Array.from({ length: B * Sk }, (_, n) => n >= Sk || n % Sk < 60);
    return { t: tensor(keep, { shape: [B, 1, 1, Sk], dtype: "bool", device }), bias: (b: number, _h: number, _i: number, j: number) => (keep[b * Sk + j] ? 0 : -Infinity) };
  };
}

const ALL = FLOAT_DTYPES;
const CASES: Case[] = [
  ...[40, 64, 80, 160].map((D) => ({ name: `self S=97 D=${D}`, B: 2, H: 2, Sq: 97, Sk: 97, D, dtypes: D === 40 ? ALL : ["float32" as DType] })),
  ...[40, 64, 80, 160].map((D) => ({ name: `self S=1025 D=${D}`, B: 1, H: 1, Sq: 1025, Sk: 1025, D, dtypes: D === 80 ? ALL : ["float32" as DType] })),
  { name: "cross Sq=97 Sk=77 Dv=24 scale 0.3", B: 2, H: 3, Sq: 97, Sk: 77, D: 40, Dv: 24, scale: 0.3, dtypes: ALL },
  { name: "cross Sq=1025 Sk=77", B: 1, H: 2, Sq: 1025, Sk: 77, D: 64 },
  { name: "non-unit last stride", B: 2, H: 2, Sq: 97, Sk: 77, D: 40, lastStrided: true, dtypes: ALL },
  { name: "additive float mask [B,1,Sq,Sk] with -inf and fully masked rows", B: 2, H: 2, Sq: 97, Sk: 83, D: 40, mask: additiveMask(2, 97, 83), dtypes: ALL },
  { name: "additive float16 mask, float16 inputs", B: 2, H: 2, Sq: 97, Sk: 83, D: 64, mask: additiveMask(2, 97, 83, "float16"), dtypes: ["float16"] },
  { name: "bool key-padding mask [B,1,1,Sk]", B: 2, H: 2, Sq: 97, Sk: 77, D: 40, mask: keyPaddingMask(2, 77), dtypes: ALL },
  { name: "causal Sq=Sk=97", B: 1, H: 2, Sq: 97, Sk: 97, D: 40, causal: true, dtypes: ALL },
  { name: "causal Sq=150 Sk=97", B: 1, H: 2, Sq: 150, Sk: 97, D: 40, causal: true },
  { name: "causal Sq=97 Sk=150 + key padding", B: 2, H: 1, Sq: 97, Sk: 150, D: 64, causal: true, mask: keyPaddingMask(2, 150) },
];

/** Inputs, float64 reference and the rows the mask leaves without a key. */
function prepare(c: Case, dtype: DType, device: Device) {
  const Dv = c.Dv ?? c.D;
  const scale = c.scale ?? c.D ** -0.5;
  // |q|, |k| ≤ 2: scores spread over several units, so the softmax is far from uniform
  const qv = randomValues(c.B * c.H * c.Sq * c.D, dtype, 1 + c.Sq + c.D, -2, 2);
  const kv = randomValues(c.B * c.H * c.Sk * c.D, dtype, 2 + c.Sk + c.D, -2, 2);
  const vv = randomValues(c.B * c.H * c.Sk * Dv, dtype, 3 + c.Sk + Dv);
  const q = headsView(qv, [c.B, c.H, c.Sq, c.D], dtype, device, c.lastStrided);
  const k = headsView(kv, [c.B, c.H, c.Sk, c.D], dtype, device, c.lastStrided);
  const v = headsView(vv, [c.B, c.H, c.Sk, Dv], dtype, device, c.lastStrided);
  const m = c.mask?.(dtype, device) ?? null;
  const ref = reference(qv, kv, vv, c.B, c.H, c.Sq, c.Sk, c.D, Dv, scale, m?.bias, c.causal);
  // rows with no visible key: the reference leaves them 0
  const dead = new Set<number>();
  if (m)
    for (let b = 0; b < c.B; b++)
      for (let h = 0; h < c.H; h++)
        for (let i = 0; i < c.Sq; i++) {
          let any = false;
          for (let j = 0; j < c.Sk && !any; j++) any = m.bias(b, h, i, j) !== -Infinity && !(c.causal && j > i);
          if (!any) dead.add((b * c.H + h) * c.Sq + i);
        }
  return { q, k, v, mask: m?.t ?? null, ref, dead, Dv, scale };
}

function check(label: string, dtype: DType, got: Float64Array, naive: Float64Array, ref: Float64Array, Dv: number, dead: Set<number>): void {
  const live = (row: number) => !dead.has(row);
  const eN = rowError(naive, ref, Dv, live); // naive gives NaN on dead rows (torch's softmax); compare the others
  const eF = rowError(got, ref, Dv);
  const slack = ULP[dtype]! * Math.max(1, maxAbs(ref));
  if (process.env.BD_TEST_VERBOSE) console.log(`${label}: |fused-f64| ${eF.toExponential(2)}  |naive-f64| ${eN.toExponential(2)}`);
  expect(eN, `${label}: naive vs float64 sanity`).toBeLessThan(dtype === "float32" ? 1e-4 : 0.05);
  expect(eF, `${label}: fused vs float64 (naive ${eN.toExponential(2)})`).toBeLessThanOrEqual(2 * eN + slack);
  for (const row of dead) for (let d = 0; d < Dv; d++) expect(got[row * Dv + d], `${label}: fully masked row ${row}`).toBe(0);
}

describe("fused attention vs float64 (tolerance: 2 × naive error + 1 ulp)", () => {
  for (const device of testDevices())
    for (const c of CASES)
      for (const dtype of c.dtypes ?? ["float32"])
        test(`${c.name} ${dtype} ${device}`, () => {
          tidy(() => {
            const { q, k, v, mask, ref, dead, Dv, scale } = prepare(c, dtype, device);
            const opts = { scale, mask, causal: c.causal === true };
            const out = scaledDotProductAttention(q, k, v, { ...opts, kind: "fused" });
            expect(out.shape).toEqual([c.B, c.H, c.Sq, Dv]);
            expect(out.dtype).toBe(dtype);
            expect(out.isContiguous).toBe(true);
            const naive = values(scaledDotProductAttention(q, k, v, { ...opts, kind: "naive", upcast: true }));
            check(`${c.name} ${dtype} ${device}`, dtype, values(out), naive, ref, Dv, dead);
          });
        });
});

describe("CPU kernel: block sizes, tails and the SIMD / JavaScript softmax", () => {
  const blockCases: [string, Case][] = [
    ["self", CASES.find((c) => c.name === "self S=97 D=64")!],
    ["mask", CASES.find((c) => c.name.startsWith("additive float mask"))!],
    ["causal", CASES.find((c) => c.name === "causal Sq=150 Sk=97")!],
    ["causal + padding", CASES.find((c) => c.name.startsWith("causal Sq=97 Sk=150"))!],
    ["cross", CASES.find((c) => c.name.startsWith("cross Sq=97"))!],
  ];
  for (const [label, c] of blockCases)
    for (const dtype of ["float32", "bfloat16"] as DType[])
      for (const simd of [true, false])
        for (const [queryBlock, keyBlock] of [[16, 13], [33, 50], [97, 8]])
          test.skipIf(simd && !HAS_SIMD)(`${label} ${dtype} blocks ${queryBlock}×${keyBlock} ${simd ? `simd${HAS_SIMD ? "" : NO_SIMD}` : "js"}`, () => {
            tidy(() => {
              const { q, k, v, mask, ref, dead, Dv, scale } = prepare(c, dtype, "cpu");
              const out = empty([c.B, c.H, c.Sq, Dv], { dtype });
              const m = mask?.expand([c.B, c.H, c.Sq, c.Sk]) ?? null;
              cpuAttention(q, k, v, out, scale, m, c.causal === true, { queryBlock, keyBlock, simd });
              const naive = values(scaledDotProductAttention(q, k, v, { scale, mask, causal: c.causal === true, kind: "naive", upcast: true }));
              check(`${label} ${queryBlock}×${keyBlock}`, dtype, values(out), naive, ref, Dv, dead);
            });
          });

  test.skipIf(!HAS_SIMD)(`SIMD and JavaScript softmax agree to float32 rounding${HAS_SIMD ? "" : NO_SIMD}`, () => {
    tidy(() => {
      const c = CASES.find((x) => x.name === "self S=1025 D=40")!;
      const { q, k, v, scale } = prepare(c, "float32", "cpu");
      const run = (simd: boolean) => {
        const out = empty([1, 1, 1025, 40]);
        cpuAttention(q, k, v, out, scale, null, false, { simd, keyBlock: 300 });
        return values(out);
      };
      expect(rowError(run(true), run(false), 40)).toBeLessThan(4e-7); // a few float32 ulps of outputs below 1
    });
  });
});

describe("edge cases", () => {
  for (const device of testDevices()) {
    test(`Sk = 0 gives zeros ${device}`, () => {
      tidy(() => {
        const q = tensor(new Float32Array(2 * 3 * 8), { shape: [1, 2, 3, 8], device }).add(1);
        const k = empty([1, 2, 0, 8], { device });
        const v = empty([1, 2, 0, 5], { device });
        const out = scaledDotProductAttention(q, k, v, { kind: "fused" });
        expect(out.shape).toEqual([1, 2, 3, 5]);
        expect([...values(out)].every((x) => x === 0)).toBe(true);
      });
    });

    test(`NaN in one query row reaches only that row ${device}`, () => {
      tidy(() => {
        const qa = Float32Array.from(randomValues(1 * 1 * 20 * 16, "float32", 5), (x) => x);
        qa[7 * 16 + 3] = NaN;
        const q = tensor(qa, { shape: [1, 1, 20, 16], device });
        const k = tensor(Float32Array.from(randomValues(20 * 16, "float32", 6)), { shape: [1, 1, 20, 16], device });
        const out = values(scaledDotProductAttention(q, k, k, { kind: "fused" }));
        for (let i = 0; i < 20; i++) for (let d = 0; d < 16; d++) expect(Number.isNaN(out[i * 16 + d]!)).toBe(i === 7);
      });
    });

    test(`mixed dtypes and integer masks are rejected ${device}`, () => {
      tidy(() => {
        const a = empty([1, 1, 4, 8], { device });
        const h = empty([1, 1, 4, 8], { device, dtype: "float16" });
        expect(() => scaledDotProductAttention(a, h, h, { kind: "fused" })).toThrow(/dtypes differ/);
        const im = tensor(new Int32Array(16), { shape: [4, 4], dtype: "int32", device });
        expect(() => scaledDotProductAttention(a, a, a, { kind: "fused", mask: im })).toThrow(/mask must be float/);
      });
    });
  }
});

const EXP_XS = (() => {
  const n = 1 << 16;
  return Float32Array.from({ length: n }, (_, i) => -(i / n) * 87);
})();

test("fast exp (JavaScript): 0.5 ulp of float32 on [-87, 0] after the float32 store, exactly 0 at -inf", () => {
  let worstJs = 0;
  for (const x of EXP_XS) {
    const e = Math.exp(x);
    const ulp = 2 ** (Math.floor(Math.log2(e)) - 23);
    worstJs = Math.max(worstJs, Math.abs(attentionExp(x) - e) / ulp);
  }
  expect(worstJs).toBeLessThanOrEqual(0.501); // float64 result (error ~1e-15 relative) rounded to float32 once
  expect(attentionExp(-Infinity)).toBe(0);
  expect(attentionExp(0)).toBe(1);
  expect(Number.isNaN(attentionExp(NaN))).toBe(true);
});

const simd = softmaxSimd();
test.skipIf(!simd)(
  `fast exp (WebAssembly SIMD): 1 ulp of float32 on [-87, 0], -inf → 0, NaN propagates; row max${simd ? "" : NO_SIMD}`,
  () => {
    const n = EXP_XS.length;
    const s = simd!.scratch(n + 4);
    s.set(EXP_XS);
    s.set([-Infinity, NaN, 0, -1e-30], n);
    const sum = simd!.exprow(0, n / 4 + 1, 0);
    expect(Number.isNaN(sum)).toBe(true);
    let worst = 0;
    let exact = 0;
    for (let i = 0; i < n; i++) {
      const e = Math.fround(Math.exp(EXP_XS[i]!));
      exact += Math.exp(EXP_XS[i]!);
      const ulp = 2 ** (Math.floor(Math.log2(e)) - 23);
      worst = Math.max(worst, Math.abs(s[i]! - e) / ulp);
    }
    expect(worst).toBeLessThanOrEqual(1); // the kernel's documented bound (polynomial exp, one rounding)
    expect([s[n], Number.isNaN(s[n + 1]!), s[n + 2], s[n + 3]]).toEqual([0, true, 1, 1]);
    s.set(EXP_XS);
    // 1e-6: float32 accumulation of 65536 terms in 4 lanes vs a float64 sum
    expect(Math.abs(simd!.exprow(0, n / 4, 0) - exact) / exact).toBeLessThan(1e-6);
    s.set([3, -1, 5, 7, 2, 9, -Infinity, 1, 11], 0);
    expect(simd!.rowmax(0, 1, -Infinity)).toBe(9); // 8 elements; the 9th is not read
    expect(simd!.rowmax(0, 1, 10)).toBe(10);
  },
);

test("fused peak memory is the output alone for 4096-token self-attention; live bytes return to the start", () => {
  const [B, H, S, D] = [1, 2, 4096, 40];
  tidy(() => {
    const q = tensor(Float32Array.from(randomValues(B * S * H * D, "float32", 9)), { shape: [B, S, H * D] }).reshape([B, S, H, D]).transpose(1, 2);
    const live0 = memoryStats("cpu").live;
    resetPeakMemory("cpu");
    const o = scaledDotProductAttention(q, q, q, { kind: "fused" });
    expect(memoryStats("cpu").peak - live0).toBe(B * H * S * D * 4);
    o.dispose();
    expect(memoryStats("cpu").live).toBe(live0);
  });
});

test("CPU memory returns to its starting value", () => {
  expect(cpuBackend.memory.live).toBe(liveAtStart);
});
