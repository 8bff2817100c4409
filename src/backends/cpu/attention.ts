// CPU fused attention (the backend contract's `attention`): out = softmax(scale·q·kᵀ + mask)·v per (batch, head),
// FlashAttention-style. For each (b, h) and each block of query rows Q_blk [nq, D]:
//
//   m = -inf, l = 0                                          (per row: running max, running sum of exp)
//   for each key block K_blk [nk, D], V_blk [nk, Dv]:
//     S    = scale · Q_blk · K_blkᵀ                          sgemm, K as it lies (transB)      [nq, nk]
//     S   += mask block;  S[i, j] = -inf where causal and key j > query i (top-left aligned)
//     m'   = max(m, rowmax S)
//     P    = exp(S − m')            (in place over S)
//     α    = exp(m − m')            (0 on a row's first block with a finite max)
//     l    = α·l + rowsum P
//     O    = α·O + P · V_blk        rows scaled by α first, then sgemm with beta = 1 (beta = 0 on the first block)
//     m    = m'
//   out = O / l
//
// The softmax runs row by row: the row max and the in-place exp with its sum in WebAssembly SIMD
// (softmax-simd.ts, ~1.3 ns per score) with JavaScript for the ragged ends of rows and as the fallback (expRow
// below, ~3.5 ns per score; Math.exp is ~6.5 ns). On 2 cores the float32 [2, 8, 4096, 40] self-attention spends
// about half its time in this single-threaded softmax and half in the (2-thread) GEMMs.
//
// Edge cases, written out:
// - Fully masked rows (every key -inf, or Sk = 0): m' stays -inf, the row's P is set to 0 (not exp(-inf + inf) =
//   NaN) and α = 1, so O and l stay 0, and the row's output is 0. This is FlashAttention's convention and that of
//   the "chunked" kind; torch's SDPA gives NaN there. diffusers never produces such rows.
// - A row whose keys so far were all masked (m = -inf) meeting its first finite score: α = exp(-inf) = 0.
// - Masked keys get exactly P = 0 (both exps map x ≤ -88, so -inf, to 0).
// - NaN in a score (or in q/k) reaches its row's output through exp(NaN) = NaN in l and P.
// - Tail blocks are just narrower (nq < cq, nk < ck); under `causal`, key blocks entirely above a query block's
//   last row are skipped, and a row's keys past its diagonal get P = 0 without an exp.
//
// Operands: a q/k/v head [S, D] is read in place when it is float32 with a unit last stride and a row stride
// ≥ D (the usual reshape/permute views of [B, S, H·D] projections: row stride H·D); otherwise (float16/bfloat16,
// other strides) it is widened to float32, once per head when K and V of one head fit in HEAD_BUDGET, else per
// block. The output is written in place when float32 (out is contiguous), else through an f32 block rounded once.
// Scratch (none of it counted by the tensor allocator): the score block, ≤ SCORE_BLOCK floats (8 MiB) unless the
// caller asks for larger blocks, kept in the SIMD module's memory for the life of the process; per call a mask
// block of that size when the mask varies along the query axis, an f32 block of Q (and of the output when it is
// not float32), and widened K and V (≤ HEAD_BUDGET, 8 MiB) when they are not read in place.

import type { TensorView } from "../backend.ts";
import { f16ToF32, bf16ToF32, bf16ArrayToF32, f16ArrayToF32, f32ArrayToBf16, f32ArrayToF16 } from "../../core/half.ts";
import { numel } from "../../core/shape.ts";
import { rawOf } from "./strided.ts";
import { sgemm } from "./gemm.ts";
import { softmaxSimd } from "./softmax-simd.ts";

/** Keys per block. */
export const ATTN_K_BLOCK = 2048;
/**
 * Floats of one score block (2 Mi = 8 MiB): query rows per block = SCORE_BLOCK / keys per block. Blocks this large
 * let OpenBLAS split each block GEMM over its threads (it runs a GEMM below a size threshold on the calling thread,
 * and attention's GEMMs are skinny: K = D or N = Dv): on 2 cores, 1024×2048 blocks run both GEMMs at ~120 GFLOP/s
 * where 128×1024 blocks run them at ~60–80.
 */
export const SCORE_BLOCK = 1 << 21;
/** Floats of widened K + V of one head kept for the whole head (8 MiB); larger heads are widened per block. */
const HEAD_BUDGET = 1 << 21;

// ---- fast exp ----------------------------------------------------------------------------------------------------
// exp(x) for x ≤ 0 (scores minus their running max): x = -i·ln2/64 + r with i = round(-64·x/ln2) and |r| ≤ ln2/128,
// exp(x) = 2^(-i/64) · e^r with 2^(-i/64) from a table and e^r ≈ 1 + r + r²/2 + r³/6 (truncation error r⁴/24 ≤ 4e-11
// relative). Relative error of the float64 result ≈ 1e-15; after the float32 store, ≤ 0.5 ulp + that. Inputs below
// −87.34 (2^-126, float32's smallest normal), −inf (masked keys) included, return exactly 0.
// About 2× faster than Math.exp in Bun's JIT; the SIMD path (softmax-simd.ts) is faster still.

const EXP_IMAX = 8128; // ≥ round(88·64/ln2) = 8125
const EXP_TABLE = (() => {
  const t = new Float64Array(EXP_IMAX + 1);
  for (let i = 0; i <= EXP_IMAX; i++) t[i] = i > 126 * 64 ? 0 : 2 ** (-i / 64); // below 2^-126: 0
  return t;
})();
const EXP_K = 64 / Math.LN2;
const EXP_L = Math.LN2 / 64;

/** p[o + j] = exp(s[o + j] − m) for j in [0, n); returns Σ p (float64). s and p may be the same array. */
function expRow(s: Float32Array, p: Float32Array, o: number, n: number, m: number): number {
  const T = EXP_TABLE;
  let sum = 0;
  for (let j = o, e = o + n; j < e; j++) {
    let x = s[j]! - m;
    if (x < -88) x = -88; // T[8125] = 0; also catches -inf (NaN fails the test and stays NaN)
    const i = (0.5 - x * EXP_K) | 0; // round(-x·64/ln2) ≥ 0
    const r = x + i * EXP_L;
    const v = T[i]! * (1 + r * (1 + r * (0.5 + r * 0.16666666666666666)));
    p[j] = v;
    sum += v;
  }
  return sum;
}

/** exp(x) through the same table, for tests. */
export function attentionExp(x: number): number {
  const a = Float32Array.of(x);
  expRow(a, a, 0, 1, 0);
  return a[0]!;
}

// ---- operands ----------------------------------------------------------------------------------------------------

/** Read rows [r0, r0 + n) of head (b, h) of a 4-D float view as float32 into dst[dOff + r·cols + c]. */
function widenRows(v: TensorView, b: number, h: number, r0: number, n: number, cols: number, dst: Float32Array, dOff: number): void {
  const [s0, s1, s2, s3] = v.strides as [number, number, number, number];
  const raw = rawOf(v);
  let src = v.offset + b * s0 + h * s1 + r0 * s2;
  for (let r = 0; r < n; r++, src += s2, dOff += cols) {
    if (v.dtype === "float32") {
      const a = raw as Float32Array;
      if (s3 === 1) dst.set(a.subarray(src, src + cols), dOff);
      else for (let c = 0; c < cols; c++) dst[dOff + c] = a[src + c * s3]!;
    } else if (v.dtype === "float16" || v.dtype === "bfloat16") {
      const a = raw as Uint16Array;
      const f16 = v.dtype === "float16";
      if (s3 === 1) {
        const seg = a.subarray(src, src + cols);
        const out = dst.subarray(dOff, dOff + cols);
        if (f16) f16ArrayToF32(seg, out);
        else bf16ArrayToF32(seg, out);
      } else for (let c = 0; c < cols; c++) dst[dOff + c] = f16 ? f16ToF32(a[src + c * s3]!) : bf16ToF32(a[src + c * s3]!);
    } else throw new Error(`internal: attention operand of dtype ${v.dtype}`);
  }
}

/**
 * The [rows, cols] matrices of a 4-D view [B, H, rows, cols], one head at a time, as sgemm reads them:
 * element (r, c) at arr[rowOffset(r) + c], leading dim `ld`.
 */
class HeadRows {
  readonly direct: boolean;
  arr: Float32Array;
  ld: number;
  private base = 0;
  private b = 0;
  private h = 0;
  private readonly whole: boolean;

  constructor(
    private readonly v: TensorView,
    private readonly rows: number,
    private readonly cols: number,
    blockRows: number,
    whole: boolean,
  ) {
    const [, , s2, s3] = v.strides as [number, number, number, number];
    this.direct = v.dtype === "float32" && (cols <= 1 || s3 === 1) && (rows <= 1 || s2 >= Math.max(1, cols));
    if (this.direct) {
      this.arr = rawOf(v) as Float32Array;
      this.ld = rows <= 1 ? Math.max(1, cols) : s2;
      this.whole = true;
    } else {
      this.whole = whole;
      this.arr = new Float32Array((whole ? rows : Math.min(rows, blockRows)) * cols);
      this.ld = Math.max(1, cols);
    }
  }

  /** Select head (b, h); widens the whole head when it is kept whole. */
  head(b: number, h: number): void {
    this.b = b;
    this.h = h;
    if (this.direct) this.base = this.v.offset + b * this.v.strides[0]! + h * this.v.strides[1]!;
    else if (this.whole) widenRows(this.v, b, h, 0, this.rows, this.cols, this.arr, 0);
  }

  /** Element offset of row r0 in arr, with rows [r0, r0 + n) available from there. */
  at(r0: number, n: number): number {
    if (this.direct) return this.base + r0 * this.ld;
    if (this.whole) return r0 * this.ld;
    widenRows(this.v, this.b, this.h, r0, n, this.cols, this.arr, 0);
    return 0;
  }
}

/** The additive mask [B, H, Sq, Sk] (broadcast strides) as float32 blocks; bool/uint8 keep-masks give 0 / -inf. */
class MaskBlocks {
  /** Row stride of the block in buf: nk, or 0 when the mask does not vary along the query axis. */
  rowStride = 0;
  readonly buf: Float32Array;
  private readonly raw: ArrayLike<number>;

  constructor(
    private readonly m: TensorView,
    cq: number,
    ck: number,
  ) {
    const varies = m.shape[2]! > 1 && m.strides[2] !== 0;
    this.buf = new Float32Array((varies ? cq : 1) * ck);
    this.raw = rawOf(m) as unknown as ArrayLike<number>;
  }

  /** Fill buf with block [q0, q0 + nq) × [k0, k0 + nk) of head (b, h); rowStride says how to index it. */
  load(b: number, h: number, q0: number, nq: number, k0: number, nk: number): void {
    const m = this.m;
    const [s0, s1, s2, s3] = m.strides as [number, number, number, number];
    const rows = m.shape[2]! > 1 && s2 !== 0 ? nq : 1;
    this.rowStride = rows > 1 ? nk : 0;
    const raw = this.raw;
    const buf = this.buf;
    const dt = m.dtype;
    let src = m.offset + b * s0 + h * s1 + q0 * s2 + k0 * s3;
    for (let i = 0, d = 0; i < rows; i++, src += s2, d += nk) {
      if (dt === "float32") for (let j = 0; j < nk; j++) buf[d + j] = raw[src + j * s3]!;
      else if (dt === "bool" || dt === "uint8") for (let j = 0; j < nk; j++) buf[d + j] = raw[src + j * s3]! !== 0 ? 0 : -Infinity;
      else if (dt === "float16") for (let j = 0; j < nk; j++) buf[d + j] = f16ToF32(raw[src + j * s3]!);
      else if (dt === "bfloat16") for (let j = 0; j < nk; j++) buf[d + j] = bf16ToF32(raw[src + j * s3]!);
      else throw new Error(`internal: attention mask of dtype ${dt}`);
    }
  }
}

// ---- the kernel --------------------------------------------------------------------------------------------------

export interface AttentionBlocks {
  queryBlock?: number;
  keyBlock?: number;
  /** Use the WebAssembly SIMD softmax when available (default true). */
  simd?: boolean;
}

/** Block sizes: keys in blocks of ≤ ATTN_K_BLOCK; query rows so that one score block is ≤ SCORE_BLOCK floats. */
export function attentionBlocks(Sq: number, Sk: number, blocks: AttentionBlocks = {}): { cq: number; ck: number } {
  const ck = Math.max(1, Math.min(Math.max(1, Sk), blocks.keyBlock ?? ATTN_K_BLOCK));
  const cq = Math.max(1, Math.min(Math.max(1, Sq), blocks.queryBlock ?? Math.max(16, Math.floor(SCORE_BLOCK / ck))));
  return { cq, ck };
}

/**
 * q [B, H, Sq, D], k [B, H, Sk, D], v [B, H, Sk, Dv] (float views, one dtype, any strides); out [B, H, Sq, Dv]
 * contiguous, q's dtype; mask null or a [B, H, Sq, Sk] view (stride 0 on broadcast dims), float (additive) or
 * bool/uint8 (keep). `blocks` overrides the block sizes and the SIMD choice (tests, benchmarks).
 */
export function attention(
  q: TensorView, k: TensorView, v: TensorView, out: TensorView, scale: number, mask: TensorView | null, causal: boolean,
  blocks: AttentionBlocks = {},
): void {
  if (numel(out.shape) === 0) return;
  const [B, H, Sq, D] = q.shape as [number, number, number, number];
  const Sk = k.shape[2]!;
  const Dv = v.shape[3]!;
  const { cq, ck } = attentionBlocks(Sq, Sk, blocks);
  const wholeKV = Sk * (D + Dv) <= HEAD_BUDGET;
  const Q = new HeadRows(q, Sq, D, cq, false);
  const K = new HeadRows(k, Sk, D, ck, wholeKV);
  const V = new HeadRows(v, Sk, Dv, ck, wholeKV);
  const M = mask ? new MaskBlocks(mask, cq, ck) : null;

  const vec = blocks.simd === false ? null : softmaxSimd();
  // scores, then probabilities, [nq, nk] with row stride nk; in the SIMD module's memory when it is used
  const s = vec ? vec.scratch(cq * ck) : new Float32Array(cq * ck);
  const mRow = new Float64Array(cq); // running max
  const lRow = new Float64Array(cq); // running sum
  const f32Out = out.dtype === "float32";
  const outRaw = rawOf(out);
  const O = f32Out ? (outRaw as Float32Array) : new Float32Array(cq * Dv); // accumulator: out itself, or a block

  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++) {
      Q.head(b, h);
      K.head(b, h);
      V.head(b, h);
      for (let q0 = 0; q0 < Sq; q0 += cq) {
        const nq = Math.min(cq, Sq - q0);
        const outOff = out.offset + ((b * H + h) * Sq + q0) * Dv; // out is contiguous
        const oOff = f32Out ? outOff : 0;
        const qOff = Q.at(q0, nq);
        mRow.fill(-Infinity, 0, nq);
        lRow.fill(0, 0, nq);
        const kEnd = causal ? Math.min(Sk, q0 + nq) : Sk; // causal: later keys are masked for every row here
        if (kEnd === 0) O.fill(0, oOff, oOff + nq * Dv);
        for (let k0 = 0; k0 < kEnd; k0 += ck) {
          const nk = Math.min(ck, kEnd - k0);
          const first = k0 === 0;
          // S = scale · Q_blk · K_blkᵀ
          sgemm(false, true, nq, nk, D, scale, Q.arr, qOff, Q.ld, K.arr, K.at(k0, nk), K.ld, 0, s, 0, nk);
          if (M) M.load(b, h, q0, nq, k0, nk);
          for (let i = 0; i < nq; i++) {
            const row = i * nk;
            // causal: keys k0 + j ≤ q0 + i are visible
            const jEnd = causal ? Math.max(0, Math.min(nk, q0 + i - k0 + 1)) : nk;
            let mx = -Infinity;
            let j0 = 0; // elements [0, j0) of the row are already in mx
            if (M) {
              const mb = M.buf;
              const mo = i * M.rowStride - row;
              for (let j = row, e = row + jEnd; j < e; j++) {
                const x = s[j]! + mb[mo + j]!;
                s[j] = x;
                if (x > mx || x !== x) mx = x; // NaN sticks, as in the SIMD row max
              }
              j0 = jEnd;
            } else if (vec) {
              j0 = jEnd & ~7;
              mx = vec.rowmax(row * 4, j0 >> 3, -Infinity);
            }
            for (let j = row + j0, e = row + jEnd; j < e; j++) {
              const x = s[j]!;
              if (x > mx || x !== x) mx = x;
            }
            const mOld = mRow[i]!;
            const mNew = mOld > mx ? mOld : mx;
            if (mNew === -Infinity) {
              s.fill(0, row, row + nk); // nothing visible yet: P = 0, α = 1 (O and l stay 0)
              continue;
            }
            let sum: number;
            if (vec) {
              const n4 = jEnd >> 2;
              sum = vec.exprow(row * 4, n4, mNew) + expRow(s, s, row + 4 * n4, jEnd - 4 * n4, mNew);
            } else sum = expRow(s, s, row, jEnd, mNew);
            if (jEnd < nk) s.fill(0, row + jEnd, row + nk);
            const alpha = mOld === -Infinity ? 0 : Math.exp(mOld - mNew);
            lRow[i] = lRow[i]! * alpha + sum;
            mRow[i] = mNew;
            if (!first && alpha !== 1) {
              const o = oOff + i * Dv;
              for (let d = o, e = o + Dv; d < e; d++) O[d]! *= alpha;
            }
          }
          // O = P · V_blk (+ O)
          sgemm(false, false, nq, Dv, nk, 1, s, 0, nk, V.arr, V.at(k0, nk), V.ld, first ? 0 : 1, O, oOff, Dv);
        }
        // out = O / l; l = 0 only for a row that saw no key (O = 0 there): 0, not 0/0
        for (let i = 0; i < nq; i++) {
          const l = lRow[i]!;
          const o = oOff + i * Dv;
          if (l === 0) O.fill(0, o, o + Dv);
          else {
            const inv = 1 / l;
            for (let d = o, e = o + Dv; d < e; d++) O[d]! *= inv;
          }
        }
        if (!f32Out) {
          const blk = O.subarray(0, nq * Dv);
          const dst = (outRaw as Uint16Array).subarray(outOff, outOff + nq * Dv);
          if (out.dtype === "float16") f32ArrayToF16(blk, dst);
          else if (out.dtype === "bfloat16") f32ArrayToBf16(blk, dst);
          else throw new Error(`internal: attention output of dtype ${out.dtype}`);
        }
      }
    }
}
