// CPU conv2d (the backend contract's `conv2d`): NCHW cross-correlation with stride, padding, dilation, groups and
// an optional bias, as torch.nn.functional.conv2d, as GEMMs on sgemm. Per (image, group), three strategies:
//
// - 1×1, stride 1, no padding: out[Og, H·W] = w[Og, Cg] @ x[Cg, H·W], the input planes used as they lie.
// - many channels per group ("tap" GEMMs, the 3×3 convs of SD's UNet and VAE): the input is copied once into a
//   zero-padded buffer [C, Hp, Wp]; for each kernel tap (i, j) the shifted padded planes are a plain matrix
//   [Cg, OH·Wp] (offset i·dh·Wp + j·dw, leading dim Hp·Wp), so kh·kw GEMMs accumulate a "wide" output
//   [Og, OH, Wp] whose last (kw−1)·dw columns of each row are discarded. No im2col buffer (kh·kw times the
//   input) is written at all; the compaction to [Og, OH, OW] adds the bias. Strided convs split the padded input
//   into stride-phase planes first, which turns every tap into such a shifted matrix again (see convTaps).
// - otherwise im2col: col[(c·kh + i)·kw + j, p] = x[c, oh·sh − ph + i·dh, ow·sw − pw + j·dw] (zero outside),
//   built for a band of output rows at a time (one buffer of at most COL_TILE elements per call, reused across
//   bands, groups and images) and multiplied into the output band; the bias pre-fills the output (beta = 1).
//
// float16/bfloat16 inputs are widened to float32 once; the result is rounded once on commit.

import type { Conv2dParams, TensorView } from "../backend.ts";
import { numel } from "../../tensor/shape.ts";
import { commit, outF32, readF32 } from "./strided.ts";
import { sgemm } from "./gemm.ts";

/** Largest im2col buffer (elements): 4 Mi floats = 16 MiB; bands of output rows keep the buffer under it. */
const COL_TILE = 1 << 22;
/** Channels per group from which the tap-GEMM path beats im2col (each tap GEMM has K = Cg). */
const TAP_MIN_CHANNELS = 32;

interface Geometry {
  H: number;
  W: number;
  kh: number;
  kw: number;
  OH: number;
  OW: number;
  p: Conv2dParams;
}

/**
 * Unfold channels [0, cg) of the image at x[xOff] for output rows [oh0, oh0 + rows) into col
 * (row-major [cg·kh·kw, rows·OW]).
 */
function im2col(x: Float32Array, xOff: number, cg: number, g: Geometry, oh0: number, rows: number, col: Float32Array): void {
  const { H, W, kh, kw, OW } = g;
  const [sh, sw] = g.p.stride;
  const [ph, pw] = g.p.padding;
  const [dh, dw] = g.p.dilation;
  let d = 0;
  for (let c = 0; c < cg; c++) {
    const plane = xOff + c * H * W;
    for (let i = 0; i < kh; i++) {
      for (let j = 0; j < kw; j++) {
        const dx = j * dw - pw; // iw = ow·sw + dx
        // ow range whose iw lies in [0, W)
        const owLo = Math.min(OW, Math.max(0, Math.ceil(-dx / sw)));
        const owHi = Math.max(owLo, Math.min(OW, Math.floor((W - 1 - dx) / sw) + 1));
        for (let oh = oh0; oh < oh0 + rows; oh++) {
          const ih = oh * sh - ph + i * dh;
          const end = d + OW;
          if (ih < 0 || ih >= H) {
            col.fill(0, d, end);
            d = end;
            continue;
          }
          for (let ow = 0; ow < owLo; ow++) col[d + ow] = 0;
          let src = plane + ih * W + dx + owLo * sw;
          for (let q = d + owLo, qe = d + owHi; q < qe; q++, src += sw) col[q] = x[src]!;
          for (let q = d + owHi; q < end; q++) col[q] = 0;
          d = end;
        }
      }
    }
  }
}

/**
 * The tap-GEMM path (see the header); writes y [N, O, OH·OW] including the bias. With stride (sh, sw) the padded
 * input is split into sh·sw phase planes Q[a][b][c, h', w'] = xpad[c, sh·h' + a, sw·w' + b] of size Hq×Wq; tap
 * (i, j) reads xpad[c, sh·oh + i·dh, sw·ow + j·dw] = Q[i·dh mod sh][j·dw mod sw][c, oh + ⌊i·dh/sh⌋, ow + ⌊j·dw/sw⌋],
 * a plain shifted matrix of the phase's planes again. Stride 1 is the single phase xpad itself.
 */
function convTaps(
  xs: Float32Array, ws: Float32Array, bs: Float32Array | null, ys: Float32Array,
  N: number, C: number, O: number, cg: number, g: Geometry,
): void {
  const { H, W, kh, kw, OH, OW, p } = g;
  const [sh, sw] = p.stride;
  const [ph, pw] = p.padding;
  const [dh, dw] = p.dilation;
  const groups = p.groups;
  const og = O / groups;
  const taps = kh * kw;
  const Hq = Math.ceil((H + 2 * ph) / sh); // rows of a phase plane
  const Wq = Math.ceil((W + 2 * pw) / sw); // columns of a phase plane (also the "wide" output row)
  const plane = Hq * Wq;
  const phaseSize = C * plane;
  const wide = OH * Wq; // GEMM N: output rows at the phase width; columns ≥ OW are discarded
  // weights by tap: wt[(t·O + o)·cg + c] = w[o, c, i, j], t = i·kw + j
  const wt = new Float32Array(taps * O * cg);
  for (let o = 0; o < O; o++)
    for (let c = 0; c < cg; c++) {
      const src = (o * cg + c) * taps;
      for (let t = 0; t < taps; t++) wt[(t * O + o) * cg + c] = ws[src + t]!;
    }
  // Phase planes; padding positions stay zero and the interior is rewritten per image. The discarded columns of
  // a shifted read run past its channel's plane (into the next one, harmless), and past the buffer's end for the
  // last channel of the last phase: slack covers the largest shift.
  const slack = Math.floor(((kh - 1) * dh) / sh) * Wq + Math.floor(((kw - 1) * dw) / sw) + Wq;
  const xq = new Float32Array(sh * sw * phaseSize + slack);
  const cw = new Float32Array(og * wide);
  const P = OH * OW;
  for (let n = 0; n < N; n++) {
    for (let a = 0; a < sh; a++)
      for (let b = 0; b < sw; b++) {
        const base = (a * sw + b) * phaseSize;
        // phase columns w' with source column sw·w' + b − pw in [0, W)
        const wLo = Math.max(0, Math.ceil((pw - b) / sw));
        const wHi = Math.min(Wq, Math.floor((W - 1 + pw - b) / sw) + 1);
        for (let c = 0; c < C; c++) {
          const src = (n * C + c) * H * W;
          for (let hq = 0; hq < Hq; hq++) {
            const ih = sh * hq + a - ph;
            if (ih < 0 || ih >= H || wHi <= wLo) continue;
            const d = base + c * plane + hq * Wq;
            const s = src + ih * W + b - pw; // + sw·w'
            if (sw === 1) xq.set(xs.subarray(s + wLo, s + wHi), d + wLo);
            else for (let wq = wLo; wq < wHi; wq++) xq[d + wq] = xs[s + sw * wq]!;
          }
        }
      }
    for (let gi = 0; gi < groups; gi++) {
      for (let i = 0; i < kh; i++)
        for (let j = 0; j < kw; j++) {
          const t = i * kw + j;
          const ri = i * dh;
          const rj = j * dw;
          const off = ((ri % sh) * sw + (rj % sw)) * phaseSize + gi * cg * plane + Math.floor(ri / sh) * Wq + Math.floor(rj / sw);
          sgemm(false, false, og, wide, cg, 1, wt, (t * O + gi * og) * cg, cg, xq, off, plane, t === 0 ? 0 : 1, cw, 0, wide);
        }
      // compact [og, OH, Wq] -> [og, OH, OW], adding the bias
      for (let o = 0; o < og; o++) {
        const bias = bs ? bs[gi * og + o]! : 0;
        const yBase = (n * O + gi * og + o) * P;
        for (let oh = 0; oh < OH; oh++) {
          const s = o * wide + oh * Wq;
          const d = yBase + oh * OW;
          for (let ow = 0; ow < OW; ow++) ys[d + ow] = cw[s + ow]! + bias;
        }
      }
    }
  }
}

export function conv2d(x: TensorView, w: TensorView, bias: TensorView | null, out: TensorView, p: Conv2dParams): void {
  if (numel(out.shape) === 0) return;
  const [N, C, H, W] = x.shape as [number, number, number, number];
  const [O, cg, kh, kw] = w.shape as [number, number, number, number];
  const [, , OH, OW] = out.shape as [number, number, number, number];
  const groups = p.groups;
  const og = O / groups;
  const kdim = cg * kh * kw;
  const P = OH * OW;
  const geo: Geometry = { H, W, kh, kw, OH, OW, p };

  const xs = readF32(x); // [N, C, H, W] contiguous
  const ws = readF32(w); // [O, kdim] contiguous
  const bs = bias ? readF32(bias) : null;
  const ys = outF32(out); // [N, O, P] contiguous
  const stride1 = p.stride[0] === 1 && p.stride[1] === 1;

  if (kdim > 0 && cg >= TAP_MIN_CHANNELS && kh * kw > 1) {
    convTaps(xs, ws, bs, ys, N, C, O, cg, geo);
    commit(out, ys);
    return;
  }

  const direct = kh === 1 && kw === 1 && stride1 && p.padding[0] === 0 && p.padding[1] === 0;
  const band = Math.max(1, Math.min(OH, Math.floor(COL_TILE / Math.max(1, kdim * OW)))); // output rows per im2col band
  const col = direct || kdim === 0 ? null : new Float32Array(kdim * band * OW);
  const beta = bs ? 1 : 0;
  for (let n = 0; n < N; n++) {
    for (let gi = 0; gi < groups; gi++) {
      const yOff = (n * O + gi * og) * P;
      if (bs) for (let o = 0; o < og; o++) ys.fill(bs[gi * og + o]!, yOff + o * P, yOff + (o + 1) * P);
      const xOff = (n * C + gi * cg) * H * W;
      if (kdim === 0) {
        if (!bs) ys.fill(0, yOff, yOff + og * P);
      } else if (direct) {
        // the group's input planes [cg, H·W] are the B operand as they lie (OH·OW == H·W)
        sgemm(false, false, og, P, cg, 1, ws, gi * og * kdim, kdim, xs, xOff, P, beta, ys, yOff, P);
      } else {
        for (let oh0 = 0; oh0 < OH; oh0 += band) {
          const rows = Math.min(band, OH - oh0);
          const np = rows * OW;
          im2col(xs, xOff, cg, geo, oh0, rows, col!);
          sgemm(false, false, og, np, kdim, 1, ws, gi * og * kdim, kdim, col!, 0, np, beta, ys, yOff + oh0 * OW, P);
        }
      }
    }
  }
  commit(out, ys);
}
