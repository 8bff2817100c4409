// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11): a counter-based
// generator, so any element of the stream is computable on its own (the basis for on-device noise).
// `philox4x32` is the bare bijection (checked against Random123's known-answer vectors); `Philox`
// lays a stream over it: block b of four words is philox(counter = [b lo, b hi, stream lo, stream hi],
// key = [seed lo, seed hi]). Its rand/randn are this project's own convention, not torch's CUDA stream.

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9; // golden ratio
const W1 = 0xbb67ae85; // sqrt(3) - 1

/** High 32 bits of the 64-bit product of two uint32 (the low half is Math.imul). */
function mulhi32(a: number, b: number): number {
  const ah = a >>> 16;
  const al = a & 0xffff;
  const bh = b >>> 16;
  const bl = b & 0xffff;
  const ahbl = ah * bl;
  const albh = al * bh;
  const mid = ((al * bl) >>> 16) + (ahbl & 0xffff) + (albh & 0xffff);
  return (ah * bh + (ahbl >>> 16) + (albh >>> 16) + (mid >>> 16)) >>> 0;
}

/** One Philox4x32 block: `rounds` rounds of counter `ctr` (4 words) under key `key` (2 words). */
export function philox4x32(
  ctr: ArrayLike<number>,
  key: ArrayLike<number>,
  rounds = 10,
  out: Uint32Array = new Uint32Array(4),
): Uint32Array {
  let c0 = ctr[0]! >>> 0;
  let c1 = ctr[1]! >>> 0;
  let c2 = ctr[2]! >>> 0;
  let c3 = ctr[3]! >>> 0;
  let k0 = key[0]! >>> 0;
  let k1 = key[1]! >>> 0;
  for (let r = 0; r < rounds; r++) {
    if (r > 0) {
      k0 = (k0 + W0) >>> 0;
      k1 = (k1 + W1) >>> 0;
    }
    const hi0 = mulhi32(M0, c0);
    const lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulhi32(M1, c2);
    const lo1 = Math.imul(M1, c2) >>> 0;
    c0 = (hi1 ^ c1 ^ k0) >>> 0;
    c1 = lo1;
    c2 = (hi0 ^ c3 ^ k1) >>> 0;
    c3 = lo0;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
  return out;
}

const TWO_NEG24 = 2 ** -24;

/** A seekable stream of 32-bit words over Philox4x32-10. */
export class Philox {
  private readonly key: Uint32Array;
  private readonly ctr = new Uint32Array(4);
  private readonly block = new Uint32Array(4);
  /** Index of the next word in the stream. */
  offset: number;

  constructor(seed: number | bigint, opts: { stream?: number; offset?: number } = {}) {
    const s = BigInt.asUintN(64, BigInt(seed));
    this.key = new Uint32Array([Number(s & 0xffffffffn), Number(s >> 32n)]);
    const stream = opts.stream ?? 0;
    this.ctr[2] = stream >>> 0;
    this.ctr[3] = Math.floor(stream / 2 ** 32) >>> 0;
    this.offset = opts.offset ?? 0;
  }

  /** Fill `out` with the next words of the stream. */
  fillU32(out: Uint32Array): Uint32Array {
    let k = this.offset;
    for (let i = 0; i < out.length; i++, k++) {
      const w = k % 4;
      if (i === 0 || w === 0) {
        const b = Math.floor(k / 4);
        this.ctr[0] = b >>> 0;
        this.ctr[1] = Math.floor(b / 2 ** 32) >>> 0;
        philox4x32(this.ctr, this.key, 10, this.block);
      }
      out[i] = this.block[w]!;
    }
    this.offset = k;
    return out;
  }

  /** Uniform float32 in (0, 1): (top 24 bits + 0.5)·2^-24. */
  rand(n: number): Float32Array {
    const bits = this.fillU32(new Uint32Array(n));
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = ((bits[i]! >>> 8) + 0.5) * TWO_NEG24;
    return out;
  }

  /** Standard normals by Box-Muller on consecutive pairs of uniforms (radius from the first). */
  randn(n: number): Float32Array {
    const u = this.rand(n + (n & 1));
    const out = new Float32Array(n);
    for (let i = 0; i < n; i += 2) {
      const r = Math.sqrt(-2 * Math.log(u[i]!));
      const t = 2 * Math.PI * u[i + 1]!;
      out[i] = r * Math.cos(t);
      if (i + 1 < n) out[i + 1] = r * Math.sin(t);
    }
    return out;
  }
}
