// Tiled VAE decode / encode (diffusers 0.31 AutoencoderKL.tiled_decode / _tiled_encode, blend_v, blend_h).
// The input is cut into overlapping tiles (starts 0, stride, 2·stride, … with stride = int(tileIn·(1 −
// overlap))); each tile is run on its own; the top `blend` rows of a tile are blended linearly with the
// bottom rows of the (already blended) tile above, then its left `blend` columns with the right columns of
// the (already blended) tile to the left, in place on the tile; the top-left `keep` × `keep` part of each
// tile goes to the output, tiles concatenated in order. Unlike diffusers, tiles are run one at a time and
// written into the output at once: besides the output, only what later blends read is held: the bottom
// strip (≤ blend rows) of each tile of the previous row and the right strip (≤ blend columns) of the tile
// to the left, both taken after the tile's own blends (diffusers blends with the blended tiles). Blend
// weights are float32 (torch multiplies float32 tensors by the Python scalars rounded to float32); 16-bit
// tiles are blended in float32 and rounded once when written back.

import { type Tensor, add, copyInto, empty, mul, tensor, tidy } from "../../tensor/index.ts";

/** diffusers' tiling attributes (tile_sample_min_size, tile_latent_min_size, tile_overlap_factor). */
export interface VaeTilingOptions {
  /** Image tile size in pixels; an image larger than this on either side is encoded tile by tile. */
  tileSampleMinSize: number;
  /** Latent tile size; latents larger than this on either side are decoded tile by tile. */
  tileLatentMinSize: number;
  /** Fraction of a tile that overlaps its neighbour (0 ≤ f < 1); the seamless decode does not overlap. */
  tileOverlapFactor: number;
  /**
   * Decode layer by layer over tiles (seamless-decode.ts): equal to the untiled decode, no blending. The
   * encode stays the blended tiled encode of diffusers (its tiles do see only their own neighbourhood).
   */
  seamless?: boolean;
}

/** One direction of tiling, in the input's and the output's units. */
export interface TileGeometry {
  /** Tile size in the input. */
  tileIn: number;
  /** Step between tile starts in the input. */
  stride: number;
  /** Rows / columns blended with the neighbour, in the output. */
  blend: number;
  /** Rows / columns of each tile kept in the output. */
  keep: number;
}

/** Tiles over latents (diffusers tiled_decode: overlap_size, blend_extent, row_limit). */
export function decodeGeometry(t: VaeTilingOptions): TileGeometry {
  const blend = Math.trunc(t.tileSampleMinSize * t.tileOverlapFactor);
  return { tileIn: t.tileLatentMinSize, stride: Math.trunc(t.tileLatentMinSize * (1 - t.tileOverlapFactor)), blend, keep: t.tileSampleMinSize - blend };
}

/** Tiles over pixels (diffusers _tiled_encode). */
export function encodeGeometry(t: VaeTilingOptions): TileGeometry {
  const blend = Math.trunc(t.tileLatentMinSize * t.tileOverlapFactor);
  return { tileIn: t.tileSampleMinSize, stride: Math.trunc(t.tileSampleMinSize * (1 - t.tileOverlapFactor)), blend, keep: t.tileLatentMinSize - blend };
}

/** Checks the options as a whole: positive integer sizes, an overlap that leaves a stride of at least 1. */
export function checkTilingOptions(t: VaeTilingOptions): void {
  for (const k of ["tileSampleMinSize", "tileLatentMinSize"] as const)
    if (!Number.isInteger(t[k]) || t[k] < 1) throw new RangeError(`AutoencoderKL tiling: ${k} must be a positive integer, got ${t[k]}`);
  if (t.seamless !== undefined && typeof t.seamless !== "boolean") throw new TypeError(`AutoencoderKL tiling: seamless must be true or false, got ${JSON.stringify(t.seamless)}`);
  const f = t.tileOverlapFactor;
  if (typeof f !== "number" || !(f >= 0 && f < 1)) throw new RangeError(`AutoencoderKL tiling: tileOverlapFactor must be in [0, 1), got ${f}`);
  for (const g of [decodeGeometry(t), encodeGeometry(t)])
    if (g.stride < 1 || g.keep < 1)
      throw new RangeError(`AutoencoderKL tiling: tileOverlapFactor ${f} leaves no stride or no kept part for tiles of ${t.tileSampleMinSize} px / ${t.tileLatentMinSize} latents`);
}

interface AxisTile {
  /** Start and length in the input. */
  start: number;
  length: number;
  /** The tile's length in the output, its kept length and where that goes. */
  outLength: number;
  kept: number;
  offset: number;
}

function axisTiles(size: number, g: TileGeometry, outLength: (n: number) => number): AxisTile[] {
  const tiles: AxisTile[] = [];
  let offset = 0;
  for (let start = 0; start < size; start += g.stride) {
    const length = Math.min(g.tileIn, size - start);
    const out = outLength(length);
    const kept = Math.min(g.keep, out);
    tiles.push({ start, length, outLength: out, kept, offset });
    offset += kept;
  }
  return tiles;
}

/** [1, 1, e, 1] (dim 2) or [1, 1, 1, e] (dim 3) float32 weights: `w(y)` for y = 0 … e − 1. */
function weights(e: number, dim: 2 | 3, device: Tensor["device"], w: (y: number) => number): Tensor {
  const v = new Float32Array(e);
  for (let y = 0; y < e; y++) v[y] = w(y);
  return tensor(v, { shape: dim === 2 ? [1, 1, e, 1] : [1, 1, 1, e], device });
}

/**
 * diffusers blend_v (dim 2) / blend_h (dim 3), in place on `b`: with e = min(a's, b's length, extent),
 * b[y] = a[len − e + y]·(1 − y/e) + b[y]·(y/e) for y < e along `dim`. `a` may be just the last rows /
 * columns of the neighbour tile (at least min(its length, extent) of them).
 */
export function blendInPlace(a: Tensor, b: Tensor, extent: number, dim: 2 | 3): void {
  const e = Math.min(a.shape[dim]!, b.shape[dim]!, extent);
  if (e <= 0) return;
  tidy(() => {
    const f32 = (t: Tensor) => (t.dtype === "float32" ? t : t.to("float32"));
    const tail = f32(a.narrow(dim, a.shape[dim]! - e, e));
    const head = b.narrow(dim, 0, e);
    const wa = weights(e, dim, b.device, (y) => 1 - y / e);
    const wb = weights(e, dim, b.device, (y) => y / e);
    copyInto(head, add(mul(tail, wa), mul(f32(head), wb)));
  });
}

/**
 * Run `run` tile by tile over x [B, C, H, W] and assemble the blended, cropped tiles into one output
 * [B, C', ΣH', ΣW']. `outLength(n)` is the output length of an input length n (checked against each tile).
 */
export function tiledApply(x: Tensor, g: TileGeometry, run: (tile: Tensor) => Tensor, outLength: (n: number) => number): Tensor {
  const rows = axisTiles(x.shape[2]!, g, outLength);
  const cols = axisTiles(x.shape[3]!, g, outLength);
  const height = rows.reduce((s, r) => s + r.kept, 0);
  const width = cols.reduce((s, c) => s + c.kept, 0);
  let out: Tensor | null = null;
  /** Bottom strips of the previous row's tiles (after their blends), by column. */
  let above: (Tensor | null)[] = cols.map(() => null);
  /** Right strip of the tile to the left (after its blends). */
  let left: Tensor | null = null;
  /** Bottom strips of this row's tiles so far. */
  let below: (Tensor | null)[] = [];
  try {
    for (const [i, r] of rows.entries()) {
      for (const [j, c] of cols.entries()) {
        const strips = tidy(() => {
          const tile = run(x.narrow(2, r.start, r.length).narrow(3, c.start, c.length).contiguous()); // [B, C', h', w']
          if (tile.ndim !== 4 || tile.shape[2] !== r.outLength || tile.shape[3] !== c.outLength)
            throw new Error(`tiled VAE: tile [${r.length}, ${c.length}] gave [${tile.shape.join(", ")}], expected [.., .., ${r.outLength}, ${c.outLength}]`);
          if (above[j]) blendInPlace(above[j]!, tile, g.blend, 2); // null in the first row and when blend = 0
          if (left) blendInPlace(left, tile, g.blend, 3);
          const created = out ? null : empty([tile.shape[0]!, tile.shape[1]!, height, width], { dtype: tile.dtype, device: tile.device });
          copyInto((out ?? created)!.narrow(2, r.offset, r.kept).narrow(3, c.offset, c.kept), tile.narrow(2, 0, r.kept).narrow(3, 0, c.kept));
          const h = Math.min(r.outLength, g.blend);
          const w = Math.min(c.outLength, g.blend);
          return {
            created, // returned: it belongs to the caller's scope
            bottom: i + 1 < rows.length && h > 0 ? tile.narrow(2, r.outLength - h, h).clone() : null, // [B, C', ≤blend, w']
            right: j + 1 < cols.length && w > 0 ? tile.narrow(3, c.outLength - w, w).clone() : null, // [B, C', h', ≤blend]
          };
        });
        out ??= strips.created;
        above[j]?.dispose();
        above[j] = null;
        left?.dispose();
        left = strips.right;
        below.push(strips.bottom);
      }
      above = below;
      below = [];
    }
  } catch (e) {
    (out as Tensor | null)?.dispose();
    throw e;
  } finally {
    for (const t of [...above, ...below, left]) t?.dispose(); // all null after a complete run (the last row keeps none)
  }
  return out!;
}

/** The encoder's output length for an input length n: each Downsample2D (pad (0, 1), 3×3, stride 2) floors n/2. */
export function encodedLength(n: number, downsamples: number): number {
  for (let k = 0; k < downsamples; k++) n = Math.floor(n / 2);
  return n;
}
