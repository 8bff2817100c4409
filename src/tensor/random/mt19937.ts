// MT19937: the 32-bit Mersenne Twister exactly as torch's CPU generator (at::mt19937) runs it.
// Seeding is init_genrand with the low 32 bits of the (64-bit) seed, so the stream equals
// std::mt19937(seed & 0xffffffff); torch still reports the full 64-bit seed as the initial seed.
// random64 is two draws, the first one the high word (CPUGeneratorImpl::random64).

const N = 624;
const M = 397;
const MATRIX_A = 0x9908b0df;
const UPPER = 0x80000000;
const LOWER = 0x7fffffff;

/** A snapshot of the engine; `state` is a copy. */
export interface MT19937State {
  seed: bigint;
  state: Uint32Array; // 624 words
  index: number; // next word to temper, 0..624 (624: regenerate first)
}

/** Normalise a seed as torch does: a Python int taken as uint64 (negative values wrap). */
export function seedToU64(seed: number | bigint): bigint {
  if (typeof seed === "number") {
    if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be an integer, got ${seed}`);
    seed = BigInt(seed);
  }
  return BigInt.asUintN(64, seed);
}

export class MT19937 {
  private readonly mt = new Uint32Array(N);
  private index = N;
  private seedValue = 0n;

  constructor(seed: number | bigint = 5489) {
    this.seed(seed);
  }

  /** Re-seed (init_genrand with the seed's low 32 bits). */
  seed(seed: number | bigint): void {
    this.seedValue = seedToU64(seed);
    const mt = this.mt;
    mt[0] = Number(this.seedValue & 0xffffffffn);
    for (let i = 1; i < N; i++) {
      const prev = mt[i - 1]!;
      mt[i] = Math.imul(1812433253, prev ^ (prev >>> 30)) + i;
    }
    this.index = N;
  }

  /** The 64-bit seed this engine was last seeded with. */
  get initialSeed(): bigint {
    return this.seedValue;
  }

  /** Refill the 624-word state (one twist of the whole array). */
  private twist(): void {
    const mt = this.mt;
    let i = 0;
    for (; i < N - M; i++) {
      const y = (mt[i]! & UPPER) | (mt[i + 1]! & LOWER);
      mt[i] = mt[i + M]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    }
    for (; i < N - 1; i++) {
      const y = (mt[i]! & UPPER) | (mt[i + 1]! & LOWER);
      mt[i] = mt[i + M - N]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    }
    const y = (mt[N - 1]! & UPPER) | (mt[0]! & LOWER);
    mt[N - 1] = mt[M - 1]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    this.index = 0;
  }

  /** Next 32-bit draw, as an unsigned number. */
  nextU32(): number {
    if (this.index >= N) this.twist();
    let y = this.mt[this.index++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** Fill `out` with successive 32-bit draws (same stream as repeated nextU32). */
  fillU32(out: Uint32Array): Uint32Array {
    const mt = this.mt;
    let idx = this.index;
    for (let i = 0; i < out.length; i++) {
      if (idx >= N) {
        this.twist();
        idx = 0;
      }
      let y = mt[idx++]!;
      y ^= y >>> 11;
      y ^= (y << 7) & 0x9d2c5680;
      y ^= (y << 15) & 0xefc60000;
      y ^= y >>> 18;
      out[i] = y;
    }
    this.index = idx;
    return out;
  }

  /** torch's random64(): (first draw << 32) | second draw. */
  nextU64(): bigint {
    const hi = this.nextU32();
    const lo = this.nextU32();
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  /** A copy of the engine state. */
  getState(): MT19937State {
    return { seed: this.seedValue, state: this.mt.slice(), index: this.index };
  }

  setState(s: MT19937State): void {
    if (s.state.length !== N) throw new RangeError(`MT19937 state needs ${N} words, got ${s.state.length}`);
    if (!(s.index >= 0 && s.index <= N)) throw new RangeError(`MT19937 index ${s.index} outside 0..${N}`);
    this.mt.set(s.state);
    this.index = s.index;
    this.seedValue = s.seed;
  }

  clone(): MT19937 {
    const c = new MT19937(0);
    c.setState(this.getState());
    return c;
  }
}
