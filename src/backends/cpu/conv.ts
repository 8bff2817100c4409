// CPU conv2d (the backend contract's `conv2d`): NCHW cross-correlation with stride, padding, dilation, groups and
// an optional bias, as torch.nn.functional.conv2d, as GEMMs on sgemm. Per (image, group), three strategies:
//
// - 1×1, stride 1, no padding: out[Og, H·W] = w[Og, Cg] @ x[Cg, H·W], the input planes used as they lie.
// - many channels per group (the 3×3 convs of SD's UNet and VAE): the input is copied once into a zero-padded
//   buffer [C, Hp, Wp]; for each kernel tap (i, j) the shifted padded planes are a plain matrix [Cg, OH·Wp]
//   (offset i·dh·Wp + j·dw, leading dim Hp·Wp), whose product with the weights accumulates a "wide" output
//   [Og, OH, Wp] whose last (kw−1)·dw columns of each row are discarded; the compaction to [Og, OH, OW] adds the
//   bias. Strided convs split the padded input into stride-phase planes first, which turns every tap into such a
//   shifted matrix again (see convTaps). Two ways to multiply, chosen per call by the floats each one moves:
//   · "tap GEMMs": kh·kw GEMMs with K = Cg over the shifted planes as they lie, with the weights repacked by tap
//     (w[:, :, i, j] is not a GEMM operand: its column stride is kh·kw). The repacked weights are cached (below),
//     so in a denoising loop they are packed once. Large images with few channels (SD's 64×64 and 32×32 levels).
//   · "unfold": the shifted planes copied into col[(c·taps + t), OH·Wp] (taps times the padded input, built
//     with row copies) and one GEMM with K = Cg·kh·kw against the weights as they lie. Small images with many
//     channels (the 1280-channel 16×16 and 8×8 levels), where the input is far smaller than the weights.
// - otherwise im2col: col[(c·kh + i)·kw + j, p] = x[c, oh·sh − ph + i·dh, ow·sw − pw + j·dw] (zero outside),
//   built for a band of output rows at a time (one buffer of at most COL_TILE elements per call, reused across
//   bands, groups and images) and multiplied into the output band; the bias pre-fills the output (beta = 1).
//
// Repacked-weight cache: keyed by the weight's Storage (WeakMap) and view (dtype, offset, shape, strides), bounded
// in bytes (default 1 GiB, setConvWeightCacheLimit) with least-recently-used eviction. It is plain JavaScript
// memory, not allocator memory, so it never shows in memoryStats() (tests assert that live bytes return to their
// start). Entries die with their storage: released storages are swept on the next insertion and collected
// storages take their WeakMap entries with them. Writes through the CPU backend's copy/fill (loadStateDict, a
// tensor's in-place fill) invalidate the written storage's entries (invalidateConvWeights). Writing a weight's
// bytes by any other route (its storage handle, a mutated borrowed buffer) after it was used is not seen: call
// clearConvWeightCache() then.
//
// float16/bfloat16 inputs are widened to float32 once; the result is rounded once on commit.

import type { Conv2dParams, TensorView } from "../backend.ts";
import { numel } from "../../core/shape.ts";
import type { Storage } from "../../core/storage.ts";
import { commit, outF32, readF32 } from "./strided.ts";
import { sgemm } from "./gemm.ts";
import { hostAlloc } from "../../core/host-memory.ts";

/** Largest im2col buffer (elements): 4 Mi floats = 16 MiB; bands of output rows keep the buffer under it. */
const COL_TILE = 1 << 22;
/** Channels per group from which the tap-GEMM path beats im2col (each tap GEMM has K = Cg). */
const TAP_MIN_CHANNELS = 32;
/**
 * The shifted-plane path unfolds the input (N·C·taps·wide floats copied, rows of `wide` contiguous floats) instead
 * of repacking the weights (O·cg·taps floats, a strided gather) when that copies fewer floats, counting a repacked
 * float as this many unfolded ones (measured: the gather is ~3× slower per float than row copies).
 */
const UNFOLD_ADVANTAGE = 3;

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

/** Weights by tap: wt[(t·O + o)·cg + c] = w[o, c, t] (t = i·kw + j); reads in order, taps write streams. */
function weightsByTap(ws: Float32Array, O: number, cg: number, taps: number): Float32Array {
  const wt = new Float32Array(taps * O * cg);
  for (let o = 0; o < O; o++)
    for (let c = 0; c < cg; c++) {
      const src = (o * cg + c) * taps;
      for (let t = 0; t < taps; t++) wt[(t * O + o) * cg + c] = ws[src + t]!;
    }
  return wt;
}

// ---- repacked-weight cache (see the header) ------------------------------------------------------------------

interface Packed {
  storage: WeakRef<Storage>;
  key: string;
  wt: Float32Array;
}

const byStorage = new WeakMap<Storage, Map<string, Packed>>();
const lru = new Set<Packed>(); // iteration order = least recently used first
let cachedBytes = 0;
let limitBytes = 2 ** 30;
const counts = { hits: 0, misses: 0, evictions: 0 };

function dropEntry(e: Packed): void {
  if (!lru.delete(e)) return;
  cachedBytes -= e.wt.byteLength;
  const s = e.storage.deref();
  const m = s ? byStorage.get(s) : undefined;
  if (m) {
    m.delete(e.key);
    if (m.size === 0) byStorage.delete(s!);
  }
}

/** Weights of view w repacked by tap, from the cache or packed now (and cached when they fit the limit). */
function packedWeights(w: TensorView, O: number, cg: number, taps: number): Float32Array {
  const key = `${w.dtype}|${w.offset}|${w.shape.join(",")}|${w.strides.join(",")}`;
  const hit = byStorage.get(w.storage)?.get(key);
  if (hit) {
    counts.hits++;
    lru.delete(hit);
    lru.add(hit);
    return hit.wt;
  }
  counts.misses++;
  const wt = weightsByTap(readF32(w), O, cg, taps);
  if (wt.byteLength > limitBytes) return wt;
  for (const e of [...lru]) if (e.storage.deref()?.released !== false) dropEntry(e); // storages released or collected
  for (const e of lru) {
    if (cachedBytes + wt.byteLength <= limitBytes) break;
    dropEntry(e); // deleting the current element of a Set while iterating it is safe
    counts.evictions++;
  }
  const entry: Packed = { storage: new WeakRef(w.storage), key, wt };
  let m = byStorage.get(w.storage);
  if (!m) byStorage.set(w.storage, (m = new Map()));
  m.set(key, entry);
  lru.add(entry);
  cachedBytes += wt.byteLength;
  return wt;
}

/** Forget the repacked weights of one storage (the CPU backend calls this for every copy/fill destination). */
export function invalidateConvWeights(storage: Storage): void {
  const m = byStorage.get(storage);
  if (m) for (const e of [...m.values()]) dropEntry(e);
}

/** Empty the repacked-weight cache (after writing weight bytes other than through the backend's copy/fill). */
export function clearConvWeightCache(): void {
  for (const e of [...lru]) dropEntry(e);
}

/** Bound the cache (bytes; 0 disables caching); evicts down to the new limit now. */
export function setConvWeightCacheLimit(bytes: number): void {
  if (!(bytes >= 0)) throw new RangeError(`setConvWeightCacheLimit: expected bytes ≥ 0, got ${bytes}`);
  limitBytes = bytes;
  for (const e of lru) {
    if (cachedBytes <= limitBytes) break;
    dropEntry(e);
    counts.evictions++;
  }
}

export function convWeightCacheStats(): { entries: number; bytes: number; limit: number; hits: number; misses: number; evictions: number } {
  return { entries: lru.size, bytes: cachedBytes, limit: limitBytes, ...counts };
}

/**
 * The tap-GEMM path (see the header); writes y [N, O, OH·OW] including the bias. With stride (sh, sw) the padded
 * input is split into sh·sw phase planes Q[a][b][c, h', w'] = xpad[c, sh·h' + a, sw·w' + b] of size Hq×Wq; tap
 * (i, j) reads xpad[c, sh·oh + i·dh, sw·ow + j·dw] = Q[i·dh mod sh][j·dw mod sw][c, oh + ⌊i·dh/sh⌋, ow + ⌊j·dw/sw⌋],
 * a plain shifted matrix of the phase's planes again. Stride 1 is the single phase xpad itself.
 */
function convTaps(
  xs: Float32Array, w: TensorView, bs: Float32Array | null, ys: Float32Array,
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
  // Unfold (weights as they lie) or tap GEMMs (weights repacked by tap), whichever moves fewer floats: see the header.
  const unfold = N * C * taps * wide <= O * cg * taps * UNFOLD_ADVANTAGE && cg * taps * wide <= COL_TILE;
  const ws = unfold ? readF32(w) : null; // [O, cg·taps] as it lies
  const wt = unfold ? null : packedWeights(w, O, cg, taps);
  const col = unfold ? new Float32Array(cg * taps * wide) : null; // [cg·taps, wide], row (c·taps + t)
  // Phase planes; padding positions stay zero and the interior is rewritten per image. The discarded columns of
  // a shifted read run past its channel's plane (into the next one, harmless), and past the buffer's end for the
  // last channel of the last phase: slack covers the largest shift.
  const slack = Math.floor(((kh - 1) * dh) / sh) * Wq + Math.floor(((kw - 1) * dw) / sw) + Wq;
  const xq = hostAlloc(4 * (sh * sw * phaseSize + slack), "conv2d's padded input copy", () => new Float32Array(sh * sw * phaseSize + slack));
  const cw = hostAlloc(4 * og * wide, "conv2d's output block", () => new Float32Array(og * wide));
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
          if (col) {
            // rows c·taps + t of the unfolded input: tap t's shifted plane of channel c
            for (let c = 0, src = off, dst = t * wide; c < cg; c++, src += plane, dst += taps * wide)
              col.set(xq.subarray(src, src + wide), dst);
          } else sgemm(false, false, og, wide, cg, 1, wt!, (t * O + gi * og) * cg, cg, xq, off, plane, t === 0 ? 0 : 1, cw, 0, wide);
        }
      // y_wide[og, wide] = w[og, cg·taps] (as it lies) · col[cg·taps, wide]
      if (col) sgemm(false, false, og, wide, cg * taps, 1, ws!, gi * og * cg * taps, cg * taps, col, 0, wide, 0, cw, 0, wide);
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
  const bs = bias ? readF32(bias) : null;
  const ys = outF32(out); // [N, O, P] contiguous
  const stride1 = p.stride[0] === 1 && p.stride[1] === 1;

  if (kdim > 0 && cg >= TAP_MIN_CHANNELS && kh * kw > 1) {
    convTaps(xs, w, bs, ys, N, C, O, cg, geo);
    commit(out, ys);
    return;
  }
  const ws = readF32(w); // [O, kdim] contiguous

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
