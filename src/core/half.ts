// Half-precision conversions: float16 (IEEE binary16) and bfloat16 <-> float32, scalar and bulk.
// The 32 -> 16 direction rounds to nearest, ties to even, with subnormals, overflow to ±inf and
// NaN kept NaN (quieted, sign kept). JS numbers are f64: they are first rounded to f32
// (Math.fround) and then to 16 bits, the same double rounding torch applies to a float tensor.

// One shared scratch word for reinterpreting f32 <-> u32 without allocating per call.
const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

function f32Bits(x: number): number {
  scratchF32[0] = x;
  return scratchU32[0]!;
}

function bitsF32(bits: number): number {
  scratchU32[0] = bits;
  return scratchF32[0]!;
}

// ---- float16 ------------------------------------------------------------------------------

/** f32 bit pattern of the float16 with bits `h` (exact: every f16 value is an f32 value). */
function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  const man = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (man << 13)) >>> 0; // inf, NaN (payload kept)
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (man << 13)) >>> 0; // rebias 15 -> 127
  if (man === 0) return sign >>> 0; // ±0
  // Subnormal man·2^-24: normalise so the leading one becomes the implicit bit.
  const shift = Math.clz32(man) - 21; // leading one of man moves to bit 10
  return (sign | ((113 - shift) << 23) | (((man << shift) & 0x3ff) << 13)) >>> 0;
}

/** float16 bits of the f32 with bit pattern `f`, rounded to nearest even. */
function f32BitsToF16Bits(f: number): number {
  const sign = (f >>> 16) & 0x8000;
  const a = f & 0x7fffffff;
  if (a >= 0x7f800000) {
    // inf stays inf; NaN keeps its top payload bits and gets the quiet bit.
    return a === 0x7f800000 ? sign | 0x7c00 : sign | 0x7e00 | ((a >>> 13) & 0x3ff);
  }
  if (a >= 0x477ff000) return sign | 0x7c00; // >= 65520: the tie above 65504 goes to the even inf
  if (a >= 0x38800000) {
    // Normal f16 (>= 2^-14): drop 13 mantissa bits; a carry may bump the exponent, which is right.
    let h = (a - 0x38000000) >>> 13;
    const rest = a & 0x1fff;
    if (rest > 0x1000 || (rest === 0x1000 && (h & 1) !== 0)) h++;
    return sign | h;
  }
  // Subnormal f16 (or zero): the result counts units of 2^-24.
  const exp = a >>> 23;
  const shift = 126 - exp; // value = man·2^(exp-150) = (man >> shift) units of 2^-24
  if (shift > 24) return sign; // below half of 2^-24 (f32 subnormals land here too)
  const man = (a & 0x7fffff) | 0x800000;
  let h = man >>> shift;
  const rest = man & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  if (rest > half || (rest === half && (h & 1) !== 0)) h++; // h = 0x400 is the smallest normal
  return sign | h;
}

/** float16 bits -> value. */
export function f16ToF32(bits: number): number {
  return bitsF32(f16BitsToF32Bits(bits & 0xffff));
}

/** value -> float16 bits (via f32, round to nearest even). */
export function f32ToF16(x: number): number {
  return f32BitsToF16Bits(f32Bits(x));
}

// ---- bfloat16 -----------------------------------------------------------------------------

/** bfloat16 bits -> value (the top half of an f32). */
export function bf16ToF32(bits: number): number {
  return bitsF32((bits & 0xffff) << 16);
}

function f32BitsToBf16Bits(f: number): number {
  if ((f & 0x7fffffff) > 0x7f800000) return (f >>> 16) | 0x0040; // NaN: quiet it, keep sign and payload top
  // Same exponent range as f32, so one add handles subnormals, carries and overflow to inf.
  return ((f + 0x7fff + ((f >>> 16) & 1)) >>> 16) & 0xffff;
}

/** value -> bfloat16 bits (via f32, round to nearest even). */
export function f32ToBf16(x: number): number {
  return f32BitsToBf16Bits(f32Bits(x));
}

// ---- rounding through a 16-bit format ---------------------------------------------------

/** x as it reads back after being stored as float16. */
export function roundF16(x: number): number {
  return bitsF32(f16BitsToF32Bits(f32BitsToF16Bits(f32Bits(x))));
}

/** x as it reads back after being stored as bfloat16. */
export function roundBf16(x: number): number {
  return bitsF32(f32BitsToBf16Bits(f32Bits(x)) << 16);
}

// ---- bulk ---------------------------------------------------------------------------------

let f16Table: Uint32Array | null = null;

/** f32 bit patterns of all 65,536 float16 values, built on first use. */
function f16ToF32Table(): Uint32Array {
  if (f16Table === null) {
    const t = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) t[h] = f16BitsToF32Bits(h);
    f16Table = t;
  }
  return f16Table;
}

function u32View(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

function checkLength(src: { length: number }, dst: { length: number }): void {
  if (dst.length < src.length) throw new RangeError(`destination holds ${dst.length} elements, source ${src.length}`);
}

/** float16 words -> float32 (bit-exact, NaN payloads kept). */
export function f16ArrayToF32(src: Uint16Array, dst?: Float32Array): Float32Array {
  const out = dst ?? new Float32Array(src.length);
  checkLength(src, out);
  const table = f16ToF32Table();
  const o = u32View(out);
  for (let i = 0; i < src.length; i++) o[i] = table[src[i]!]!;
  return out;
}

/** float32 -> float16 words, round to nearest even. */
export function f32ArrayToF16(src: Float32Array, dst?: Uint16Array): Uint16Array {
  const out = dst ?? new Uint16Array(src.length);
  checkLength(src, out);
  const s = u32View(src);
  for (let i = 0; i < s.length; i++) out[i] = f32BitsToF16Bits(s[i]!);
  return out;
}

/** bfloat16 words -> float32 (bit-exact). */
export function bf16ArrayToF32(src: Uint16Array, dst?: Float32Array): Float32Array {
  const out = dst ?? new Float32Array(src.length);
  checkLength(src, out);
  const o = u32View(out);
  for (let i = 0; i < src.length; i++) o[i] = src[i]! << 16;
  return out;
}

/** float32 -> bfloat16 words, round to nearest even. */
export function f32ArrayToBf16(src: Float32Array, dst?: Uint16Array): Uint16Array {
  const out = dst ?? new Uint16Array(src.length);
  checkLength(src, out);
  const s = u32View(src);
  for (let i = 0; i < s.length; i++) out[i] = f32BitsToBf16Bits(s[i]!);
  return out;
}
