// The CUDA attention kernels in float16 / bfloat16 — the tensor-core kernel (kernels/attention_tc.cu, the default
// for head dims ≤ 256) and, for the VAE's 512-wide head, the split CUDA-core kernel — against float64 attention of
// the exact stored inputs, on SD shapes small enough for the emulated device (1024 / 256 / 77 tokens and the odd
// 97 / 1025; head dims 40, 59, 64, 80, 111, 160, 200, 256, 512), with masks (bool keep, additive with fully masked rows), causal,
// strided q/k/v (permuted [B, S, H, D] projections: 16-byte tile copies; a non-unit last stride: element copies).
// Skipped without a CUDA backend (real or emulated).
//
// Tolerance (FlashAttention's rule): |kernel − f64| ≤ 2·|naive − f64| + 1 ulp of the dtype at max(1, max|ref|),
// where "naive" is the materialising implementation in the same precision, modelled as torch's eager attention in
// float16 / bfloat16 computes it: S = q·kᵀ·scale rounded to the dtype (GEMM output; fp32 accumulation), the mask
// added and rounded, softmax in fp32 rounded to the dtype (P), O = P·v with fp32 accumulation rounded to the
// dtype. Its error is mostly the rounding of S and P; the kernel keeps S in fp32 and rounds only P (unnormalised,
// ≤ 1) and O, so it should sit well inside. The 1-ulp slack covers a rounding tie of the output. Fully masked rows
// must be exactly 0 (the naive one gives NaN there; those rows are left out of its error).

import { describe, expect, test } from "bun:test";
import { cudaAttentionKernel } from "../../src/backends/cuda/attention.ts";
import { hasBackend } from "../../src/backends/registry.ts";
import type { DType } from "../../src/core/dtype.ts";
import { scaledDotProductAttention } from "../../src/nn/attention-dispatch.ts";
import { type Tensor, tensor, tidy } from "../../src/tensor/index.ts";
import { randomValues, roundTo, values } from "../helpers/op-harness.ts";

const HAS_CUDA = hasBackend("cuda");
const ULP: Record<string, number> = { float16: 2 ** -10, bfloat16: 2 ** -7 };

type Bias = (b: number, i: number, j: number) => number;
interface Case {
  name: string;
  B: number;
  H: number;
  Sq: number;
  Sk: number;
  D: number;
  Dv?: number;
  causal?: boolean;
  lastStrided?: boolean;
  mask?: "keep" | "additive";
  dtypes: DType[];
}

const F16: DType[] = ["float16"];
const BF16: DType[] = ["bfloat16"];
const BOTH: DType[] = ["float16", "bfloat16"];
const CASES: Case[] = [
  { name: "SDXL self 1024 tokens D=64", B: 1, H: 1, Sq: 1024, Sk: 1024, D: 64, dtypes: F16 },
  { name: "SD1.5 self 256 tokens D=80 (two heads)", B: 1, H: 2, Sq: 256, Sk: 256, D: 80, dtypes: BF16 },
  { name: "SD1.5 cross 1025 × 77 keys D=40, key padding", B: 2, H: 1, Sq: 1025, Sk: 77, D: 40, mask: "keep", dtypes: BOTH },
  { name: "SD1.5 self 256 tokens D=160", B: 1, H: 1, Sq: 256, Sk: 256, D: 160, dtypes: BOTH },
  { name: "odd 97 tokens D=59 (padded to 64), element copies", B: 2, H: 2, Sq: 97, Sk: 97, D: 59, lastStrided: true, dtypes: BOTH },
  { name: "odd 97 × 150 D=111 (padded to 128), causal", B: 1, H: 2, Sq: 97, Sk: 150, D: 111, causal: true, dtypes: BOTH },
  { name: "additive mask with -inf and fully masked rows, 97 × 83 D=40", B: 2, H: 2, Sq: 97, Sk: 83, D: 40, mask: "additive", dtypes: BOTH },
  { name: "causal 150 × 97 D=80 + key padding, Dv=24", B: 2, H: 1, Sq: 150, Sk: 97, D: 80, Dv: 24, causal: true, mask: "keep", dtypes: F16 },
  { name: "odd 97 × 77 D=200 (padded to 256: two 128-column work items)", B: 1, H: 2, Sq: 97, Sk: 77, D: 200, dtypes: BOTH },
  { name: "97 tokens D=256, causal, element copies", B: 1, H: 1, Sq: 97, Sk: 97, D: 256, causal: true, lastStrided: true, dtypes: F16 },
  { name: "VAE mid-block: one head of 512, 97 tokens (split CUDA-core kernel)", B: 1, H: 1, Sq: 97, Sk: 97, D: 512, dtypes: BOTH },
];

/** [B, H, S, D] view of row-major vals as the Attention module makes it (or with a non-unit last stride). */
function headsView(vals: Float64Array, [B, H, S, D]: number[], dtype: DType, lastStrided = false): Tensor {
  const data = new Float64Array(vals.length);
  for (let b = 0; b < B!; b++)
    for (let h = 0; h < H!; h++)
      for (let s = 0; s < S!; s++)
        for (let d = 0; d < D!; d++) {
          const src = vals[((b * H! + h) * S! + s) * D! + d]!;
          if (lastStrided) data[((b * H! + h) * D! + d) * S! + s] = src;
          else data[((b * S! + s) * H! + h) * D! + d] = src;
        }
  return tidy(() => {
    const base = tensor(data, { shape: lastStrided ? [B!, H!, D!, S!] : [B!, S!, H!, D!], dtype, device: "cuda" });
    return lastStrided ? base.transpose(2, 3) : base.transpose(1, 2);
  });
}

/** float64 attention (round = identity) or the naive same-precision one (round = to the dtype, see the header). */
function attend(
  q: Float64Array, k: Float64Array, v: Float64Array, c: Case, scale: number, bias: Bias | null, round: (x: number) => number,
): Float64Array {
  const { B, H, Sq, Sk, D } = c;
  const Dv = c.Dv ?? D;
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
          let x = round(acc * scale);
          if (bias) x = round(x + bias(b, i, j));
          if (c.causal && j > i) x = -Infinity;
          s[j] = x;
          if (x > m) m = x;
        }
        if (m === -Infinity) {
          if (round !== identity) out.fill(NaN, (bh * Sq + i) * Dv, (bh * Sq + i + 1) * Dv); // softmax of all -inf
          continue;
        }
        let l = 0;
        for (let j = 0; j < Sk; j++) l += s[j] = Math.exp(s[j]! - m);
        for (let j = 0; j < Sk; j++) s[j] = round(s[j]! / l);
        for (let d = 0; d < Dv; d++) {
          let acc = 0;
          for (let j = 0; j < Sk; j++) acc += s[j]! * v[(bh * Sk + j) * Dv + d]!;
          out[(bh * Sq + i) * Dv + d] = round(acc);
        }
      }
    }
  return out;
}
const identity = (x: number) => x;

function maxErr(a: ArrayLike<number>, e: ArrayLike<number>, skipNaNRef = false): number {
  let err = 0;
  for (let i = 0; i < e.length; i++) {
    if (skipNaNRef && Number.isNaN(a[i]!)) continue;
    const d = Math.abs(a[i]! - e[i]!);
    err = Number.isNaN(d) ? Infinity : Math.max(err, d);
  }
  return err;
}

describe.skipIf(!HAS_CUDA)("CUDA attention in float16 / bfloat16 vs float64 (≤ 2 × naive same-precision error + 1 ulp)", () => {
  test("float16 / bfloat16 heads ≤ 256 choose the tensor-core kernel; float32, wider heads and BD_CUDA_ATTENTION=cuda-cores the CUDA-core one", () => {
    expect([cudaAttentionKernel("float16", 40, 40), cudaAttentionKernel("bfloat16", 256, 111)]).toEqual(["tensor-core", "tensor-core"]);
    expect([cudaAttentionKernel("float32", 64, 64), cudaAttentionKernel("float16", 512, 512), cudaAttentionKernel("bfloat16", 64, 257)])
      .toEqual(["cuda-core", "cuda-core", "cuda-core"]);
    const prev = process.env.BD_CUDA_ATTENTION;
    process.env.BD_CUDA_ATTENTION = "cuda-cores"; // the documented escape hatch
    try {
      expect(cudaAttentionKernel("float16", 64, 64)).toBe("cuda-core");
    } finally {
      if (prev === undefined) delete process.env.BD_CUDA_ATTENTION;
      else process.env.BD_CUDA_ATTENTION = prev;
    }
  });

  for (const c of CASES)
    for (const dtype of c.dtypes)
      test(`${c.name} ${dtype}`, () => {
        tidy(() => {
          const Dv = c.Dv ?? c.D;
          const scale = c.D ** -0.5;
          const qv = randomValues(c.B * c.H * c.Sq * c.D, dtype, 11 + c.Sq + c.D, -2, 2);
          const kv = randomValues(c.B * c.H * c.Sk * c.D, dtype, 12 + c.Sk + c.D, -2, 2);
          const vv = randomValues(c.B * c.H * c.Sk * Dv, dtype, 13 + c.Sk + Dv);
          let maskT: Tensor | null = null;
          let bias: Bias | null = null;
          if (c.mask === "keep") {
            // batch 0 sees its first 60 keys (a text padding mask), the others all
            const keep = Array.from({ length: c.B * c.Sk }, (_, n) => n >= c.Sk || n % c.Sk < 60);
            maskT = tensor(keep, { shape: [c.B, 1, 1, c.Sk], dtype: "bool", device: "cuda" });
            bias = (b, _i, j) => (keep[b * c.Sk + j] ? 0 : -Infinity);
          } else if (c.mask === "additive") {
            // random biases exact in the dtype, ~30 % -inf, query rows 3..5 fully masked
            const r = randomValues(c.B * c.Sq * c.Sk, dtype, 77, 0, 1);
            const m = Float64Array.from(r, (x, n) => {
              const i = Math.floor(n / c.Sk) % c.Sq;
              return (i >= 3 && i < 6) || x < 0.3 ? -Infinity : Math.round((x * 4 - 2) * 64) / 64;
            });
            maskT = tensor(m, { shape: [c.B, 1, c.Sq, c.Sk], dtype, device: "cuda" });
            bias = (b, i, j) => m[(b * c.Sq + i) * c.Sk + j]!;
          }
          const q = headsView(qv, [c.B, c.H, c.Sq, c.D], dtype, c.lastStrided);
          const k = headsView(kv, [c.B, c.H, c.Sk, c.D], dtype, c.lastStrided);
          const v = headsView(vv, [c.B, c.H, c.Sk, Dv], dtype, c.lastStrided);
          const got = values(scaledDotProductAttention(q, k, v, { scale, mask: maskT, causal: c.causal === true, kind: "fused" }));
          const ref = attend(qv, kv, vv, c, scale, bias, identity);
          const naive = attend(qv, kv, vv, c, scale, bias, (x) => roundTo(dtype, x));
          let refMax = 1;
          for (const x of ref) refMax = Math.max(refMax, Math.abs(x));
          const eNaive = maxErr(naive, ref, true);
          const eGot = maxErr(got, ref);
          if (process.env.BD_TEST_VERBOSE) console.log(`${c.name} ${dtype}: |kernel-f64| ${eGot.toExponential(2)}  |naive-f64| ${eNaive.toExponential(2)}`);
          expect(eNaive, "naive vs float64 sanity").toBeLessThan(0.1);
          expect(eGot, `kernel vs float64 (naive ${eNaive.toExponential(2)})`).toBeLessThanOrEqual(2 * eNaive + ULP[dtype]! * refMax);
          // rows without a visible key: exactly 0
          for (let row = 0; row < c.B * c.H * c.Sq; row++)
            if (Number.isNaN(naive[row * Dv]!)) for (let d = 0; d < Dv; d++) expect(got[row * Dv + d], `fully masked row ${row}`).toBe(0);
        });
      });
});
