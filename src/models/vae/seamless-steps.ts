// The layer steps of the seamless tiled VAE decode (seamless-decode.ts walks the decoder with them).
// An activation lives whole on the host ([N, C, H, W], with the GroupNorm statistics of the whole image
// gathered while it was written); a step computes its output tile by tile on the compute device, each
// tile reading exactly the input it depends on: a k×k convolution reads its true halo from the
// neighbouring tiles and zero padding only at the image border; a GroupNorm before it normalises with
// the whole image's statistics (float32, merged exactly over tiles); a nearest ×2 upsample reads the
// source rows its output rows repeat. So every output pixel is computed from the same values as in
// the untiled decode. The mid-block attention tiles the queries and keeps all keys and values on the
// device (attentionStep). A DeviceMeter records the device peak of the steps.

import {
  type Device, type GroupStatistics, type Tensor, add, conv2d, copyInto, div, disposeGroupStatistics, empty, fusedAttention,
  groupNormWithStatistics, groupStatistics, keep, linear, measureMemory, mergeGroupStatistics, pad, tidy, upsampleNearest2x,
} from "../../tensor/index.ts";
import type { Attention } from "../../nn/attention.ts";
import { type Conv2d, type GroupNorm, Linear } from "../../nn/layers.ts";

/** A whole activation on the host, with the statistics (`groups` groups) of the whole image, or null. */
export interface HostActivation {
  t: Tensor; // [N, C, H, W] on the host
  stats: GroupStatistics | null; // [N, G] on the host
}

export function disposeActivation(a: HostActivation): void {
  a.t.dispose();
  if (a.stats) disposeGroupStatistics(a.stats);
}

/** Where the steps compute and store, the tile side at the latent resolution, and the GroupNorm groups. */
export interface SeamlessContext {
  device: Device;
  host: Device;
  /** Output tile side at the latent resolution; ×2 after each upsample. */
  tileLatent: number;
  /** Latent height: a resolution's scale is H / latentHeight. */
  latentHeight: number;
  groups: number;
  meter: DeviceMeter;
}

/** The highest device bytes of any tile computation, plus the bytes kept on the device across tiles. */
export class DeviceMeter {
  peak = 0;
  resident = 0;
  constructor(readonly device: Device) {}
  run<T>(fn: () => T): T {
    const { result, peak } = measureMemory(this.device, fn);
    this.peak = Math.max(this.peak, peak + this.resident);
    return result;
  }
}

interface Span {
  start: number;
  length: number;
}

function spans(size: number, tile: number): Span[] {
  const out: Span[] = [];
  for (let s = 0; s < size; s += tile) out.push({ start: s, length: Math.min(tile, size - s) });
  return out;
}

/** The tiles of an output [H, W] at this resolution (side tileLatent · H / latentHeight). */
function tiles(ctx: SeamlessContext, H: number, W: number): [Span, Span][] {
  const side = ctx.tileLatent * Math.max(1, Math.round(H / ctx.latentHeight));
  return spans(H, side).flatMap((r) => spans(W, side).map((c): [Span, Span] => [r, c]));
}

/** Statistics accumulated over the tiles of an output, on the host. */
class StatsAccumulator {
  #acc: GroupStatistics | null = null;
  constructor(
    readonly host: Device,
    readonly groups: number,
  ) {}
  /** Add a device tile's statistics (called inside a tile's tidy scope: the running total is kept out of it). */
  add(y: Tensor): void {
    const next = tidy(() => {
      const s = groupStatistics(y, this.groups);
      const h = { count: s.count, mean: s.mean.to(this.host), m2: s.m2.to(this.host) };
      return this.#acc ? mergeGroupStatistics(this.#acc, h) : h;
    });
    if (this.#acc) disposeGroupStatistics(this.#acc);
    this.#acc = { count: next.count, mean: keep(next.mean), m2: keep(next.m2) };
  }
  take(): GroupStatistics {
    const a = this.#acc!;
    this.#acc = null;
    return a;
  }
  dispose(): void {
    if (this.#acc) disposeGroupStatistics(this.#acc);
  }
}

/** Write tiles of the output [N, C, H, W] on the host, gathering its statistics when `withStats`. */
function produce(
  ctx: SeamlessContext, shape: readonly number[], dtype: Tensor["dtype"], withStats: boolean,
  tile: (r: Span, c: Span) => Tensor,
): HostActivation {
  const out = empty(shape, { dtype, device: ctx.host });
  const acc = withStats ? new StatsAccumulator(ctx.host, ctx.groups) : null;
  try {
    for (const [r, c] of tiles(ctx, shape[2]!, shape[3]!))
      ctx.meter.run(() =>
        tidy(() => {
          const y = tile(r, c); // [N, C, r.length, c.length] on the device
          copyInto(out.narrow(2, r.start, r.length).narrow(3, c.start, c.length), y);
          acc?.add(y);
        }),
      );
    return { t: out, stats: acc ? acc.take() : null };
  } catch (e) {
    out.dispose();
    acc?.dispose();
    throw e;
  }
}

/** The region of x [N, C, H, W] (host) on the device. */
function load(ctx: SeamlessContext, x: Tensor, r: Span, c: Span): Tensor {
  return x.narrow(2, r.start, r.length).narrow(3, c.start, c.length).to(ctx.device);
}

function checkSameConv(conv: Conv2d): { k: number; p: number } {
  const [k, kw] = [conv.weight.value.shape[2]!, conv.weight.value.shape[3]!];
  const p = conv.padding;
  const pp = typeof p === "number" ? p : p[0] === p[1] ? p[0] : -1;
  const one = (v: number | [number, number]) => (typeof v === "number" ? v : v[0] === v[1] ? v[0] : -1) === 1;
  if (k !== kw || 2 * pp !== k - 1 || !one(conv.stride) || !one(conv.dilation) || conv.groups !== 1)
    throw new Error(`seamless VAE decode: expects square stride-1 "same" convolutions, got kernel [${k}, ${kw}], padding ${JSON.stringify(p)}, stride ${JSON.stringify(conv.stride)}`);
  return { k, p: pp };
}

export interface ConvStepOptions {
  /** GroupNorm (+ SiLU) applied to the input first, with the input's whole-image statistics. */
  norm?: { gn: GroupNorm; silu: boolean };
  /** Nearest ×2 upsampling of the input before the convolution (Upsample2D). */
  upsample?: boolean;
  /** Residual added to the output: `src` (same size as the output), through a 1×1 `shortcut` when given. */
  residual?: { src: Tensor; shortcut: Conv2d | null };
  /** Gather the output's statistics (a GroupNorm reads it next). */
  withStats: boolean;
}

/** conv(upsample?(silu?(norm?(x)))) (+ residual), tile by tile: [N, Cin, H, W] -> [N, Cout, H·(2 if upsample), …]. */
export function convStep(ctx: SeamlessContext, x: HostActivation, conv: Conv2d, o: ConvStepOptions): HostActivation {
  const { k, p } = checkSameConv(conv);
  const f = o.upsample ? 2 : 1;
  const [N, , H, W] = x.t.shape as [number, number, number, number];
  const [Ho, Wo] = [H * f, W * f];
  if (o.norm && !x.stats) throw new Error("seamless VAE decode: a GroupNorm input has no statistics");
  const hiHalo = k - 1 - p;
  // conv input rows [a0, a1) (after upsampling), read from source rows [s0, s1); pads: zeros (> 0) or crop (< 0)
  const region = (span: Span, size: number) => {
    const a0 = Math.max(0, span.start - p);
    const a1 = Math.min(size * f, span.start + span.length + hiHalo);
    const s0 = Math.floor(a0 / f);
    const s1 = Math.floor((a1 - 1) / f) + 1;
    return { src: { start: s0, length: s1 - s0 }, before: a0 - (span.start - p) - (a0 - s0 * f), after: span.start + span.length + hiHalo - a1 - (s1 * f - a1) };
  };
  return produce(ctx, [N, conv.outChannels, Ho, Wo], x.t.dtype, o.withStats, (r, c) => {
    const rr = region(r, H);
    const cc = region(c, W);
    let h = load(ctx, x.t, rr.src, cc.src);
    const next = (t: Tensor) => {
      h.dispose(); // each tile-sized intermediate is freed as soon as the next exists
      h = t;
    };
    if (o.norm) {
      const g = o.norm.gn;
      const stats = { count: x.stats!.count, mean: x.stats!.mean.to(ctx.device), m2: x.stats!.m2.to(ctx.device) };
      next(groupNormWithStatistics(h, g.numGroups, stats, g.weight?.value, g.bias?.value, g.eps, { silu: o.norm.silu }));
    }
    if (o.upsample) next(upsampleNearest2x(h));
    if (cc.before || cc.after || rr.before || rr.after) next(pad(h, [cc.before, cc.after, rr.before, rr.after]));
    let y = conv2d(h, conv.weight.value, conv.bias?.value, { padding: 0 }); // [N, Cout, r.length, c.length]
    h.dispose();
    if (o.residual) {
      const s = load(ctx, o.residual.src, r, c);
      const sc = o.residual.shortcut;
      const skip = sc ? conv2d(s, sc.weight.value, sc.bias?.value) : s;
      const sum = add(skip, y); // as ResnetBlock2D: skip + h
      for (const t of [y, skip, s]) t.dispose();
      y = sum;
    }
    return y;
  });
}

/** The Attention's Linear `to_out.0`. */
function outProjection(attn: Attention): Linear {
  const l = attn.to_out.at(0);
  if (!(l instanceof Linear)) throw new Error("seamless VAE decode: the attention's to_out.0 is not a Linear");
  return l;
}

/**
 * The VAE mid-block attention (one GroupNorm, self-attention over all H·W pixels, residual), exact over
 * tiles: keys and values of every tile are projected into [N, heads, H·W, D] tensors kept on the device
 * (pixel order does not change a softmax over all keys); then each tile's queries attend all of them.
 * The device holds the keys and values (2·N·C·H·W elements, at the latent resolution) plus one tile.
 */
export function attentionStep(ctx: SeamlessContext, x: HostActivation, attn: Attention): HostActivation {
  const gn = attn.group_norm;
  if (!gn || attn.isCrossAttention || !x.stats) throw new Error("seamless VAE decode: expects the VAE's group-normed self-attention");
  const [N, C, H, W] = x.t.shape as [number, number, number, number];
  const [heads, D] = [attn.heads, attn.dimHead];
  const proj = (l: Linear, t: Tensor) => linear(t, l.weight.value, l.bias?.value); // [N, S, C] -> [N, S, C']
  // [N, C, h, w] on the device -> normalised tokens [N, h·w, C]
  const tokens = (r: Span, c: Span) => {
    const stats = { count: x.stats!.count, mean: x.stats!.mean.to(ctx.device), m2: x.stats!.m2.to(ctx.device) };
    const xn = groupNormWithStatistics(load(ctx, x.t, r, c), gn.numGroups, stats, gn.weight?.value, gn.bias?.value, gn.eps);
    return xn.reshape([N, C, r.length * c.length]).transpose(1, 2);
  };
  const S = H * W;
  const k = empty([N, S, heads * D], { dtype: x.t.dtype, device: ctx.device });
  const v = empty([N, S, heads * D], { dtype: x.t.dtype, device: ctx.device });
  ctx.meter.resident += k.byteLength + v.byteLength;
  try {
    let at = 0;
    for (const [r, c] of tiles(ctx, H, W))
      ctx.meter.run(() =>
        tidy(() => {
          const t = tokens(r, c);
          const n = r.length * c.length;
          copyInto(k.narrow(1, at, n), proj(attn.to_k, t));
          copyInto(v.narrow(1, at, n), proj(attn.to_v, t));
          at += n;
        }),
      );
    const k4 = k.reshape([N, S, heads, D]).transpose(1, 2); // [N, heads, S, D] views
    const v4 = v.reshape([N, S, heads, D]).transpose(1, 2);
    try {
      return produce(ctx, [N, C, H, W], x.t.dtype, true, (r, c) => {
        const n = r.length * c.length;
        const q = proj(attn.to_q, tokens(r, c)).reshape([N, n, heads, D]).transpose(1, 2); // [N, heads, n, D]
        const o = fusedAttention(q, k4, v4, { scale: attn.scale }).transpose(1, 2).reshape([N, n, heads * D]);
        let y = proj(outProjection(attn), o).transpose(1, 2).reshape([N, C, r.length, c.length]);
        if (attn.residualConnection) y = add(y, load(ctx, x.t, r, c));
        return attn.rescaleOutputFactor === 1 ? y : div(y, attn.rescaleOutputFactor);
      });
    } finally {
      k4.dispose();
      v4.dispose();
    }
  } finally {
    ctx.meter.resident -= k.byteLength + v.byteLength;
    k.dispose();
    v.dispose();
  }
}
