// WebAssembly SIMD kernels for the online softmax of the fused attention (attention.ts): the row max and the
// in-place exp with its row sum, four float32 lanes at a time, on a scratch block that lives in the module's
// linear memory (the score block the attention's sgemm writes and reads back; ptr() of a view of wasm memory is
// a plain address). Scalar JavaScript runs ~3.5 ns per exp in Bun's JIT (Math.exp ~6.5 ns), which made the
// softmax, not the GEMMs, the cost of CPU attention; exprow runs ~1.25 ns per element and rowmax ~0.07 ns (Bun
// 1.4.5, Zen 4). The module is assembled here from opcodes (no toolchain, no binary blob); `softmaxSimd()`
// returns null where WebAssembly SIMD is unavailable (or BD_CPU_SIMD=0) and callers fall back to JavaScript.
//
//   rowmax(p, n8, init) -> f32  = max(init, s[p/4 .. p/4 + 8·n8))   (f32x4.pmax, one x86 maxps; a NaN score may
//                                                                     be skipped here, it reaches its row through exprow)
//   exprow(p, n4, m)    -> f64  : s[j] = exp(s[j] − m) in place for 4·n4 elements; returns their sum (f64 lanes)
//
// exp is Cephes' expf: x = max(s − m, −88), n = round(x·log2 e) (by adding 1.5·2^23, which also leaves n in the
// low mantissa bits), r = x − n·C1 − n·C2 (Cody–Waite), e^r = 1 + r + r²·P(r) with Cephes' degree-5 P evaluated
// by Estrin's scheme, times 2^n built in the exponent bits. Measured: ≤ 1 ulp of float32 on [−87, 0]. x ≤ −87.68
// (so −inf: masked keys) gives exactly 0, since n = −127 makes the exponent field 0. NaN stays NaN.

// ---- a minimal assembler -----------------------------------------------------------------------------------------

function leb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

const section = (id: number, body: number[]) => [id, ...leb(body.length), ...body];
const name = (s: string) => [...leb(s.length), ...new TextEncoder().encode(s)];
const f32 = (x: number) => [...new Uint8Array(Float32Array.of(x).buffer)];

const I32 = 0x7f;
const F32 = 0x7d;
const F64 = 0x7c;
const V128 = 0x7b;

// opcodes
const get = (i: number) => [0x20, ...leb(i)];
const set = (i: number) => [0x21, ...leb(i)];
const i32c = (v: number) => [0x41, ...sleb(v)];
const f32c = (v: number) => [0x43, ...f32(v)];
const simd = (op: number, ...imm: number[]) => [0xfd, ...leb(op), ...imm];
const MEM = [4, 0]; // memarg: align 2^4, offset 0
const v128Load = simd(0x00, ...MEM);
const v128Store = simd(0x0b, ...MEM);
const i32x4Splat = simd(0x11);
const f32x4Splat = simd(0x13);
const f32x4Lane = (l: number) => simd(0x1f, l);
const f64x2Lane = (l: number) => simd(0x21, l);
const i32x4Shl = simd(0xab);
const i32x4Add = simd(0xae);
const f32x4Add = simd(0xe4);
const f32x4Sub = simd(0xe5);
const f32x4Mul = simd(0xe6);
const f32x4Max = simd(0xe9);
const f32x4Pmax = simd(0xeb);
const f64x2Add = simd(0xf0);
const f64x2PromoteLow = simd(0x5f);
const shuffleHighToLow = simd(0x0d, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
const f32Max = [0x97];
const f64Add = [0xa0];
const i32Add = [0x6a];
const i32Sub = [0x6b];
const i32Eqz = [0x45];
const block = [0x02, 0x40];
const loop = [0x03, 0x40];
const end = [0x0b];
const brIf = (d: number) => [0x0d, ...leb(d)];

/** Loop body `body` for n4 = local `n` > 0 iterations, advancing pointer local `p` by 16 bytes. */
function vectorLoop(p: number, n: number, body: number[]): number[] {
  return [
    ...block,
    ...get(n), ...i32Eqz, ...brIf(0),
    ...loop,
    ...body,
    ...get(p), ...i32c(16), ...i32Add, ...set(p),
    ...get(n), ...i32c(1), ...i32Sub, ...set(n),
    ...get(n), ...brIf(0),
    ...end,
    ...end,
  ];
}

function rowmaxBody(): number[] {
  // params: 0 p, 1 n8 (pairs of vectors), 2 init; locals: 3 a, 4 b (v128). Two accumulators: f32x4.pmax is one
  // x86 maxps, but a single accumulator would be latency-bound.
  const [a, b] = [3, 4];
  const body = [
    ...get(0), ...v128Load, ...get(a), ...f32x4Pmax, ...set(a),
    ...get(0), ...i32c(16), ...i32Add, ...v128Load, ...get(b), ...f32x4Pmax, ...set(b),
    ...get(0), ...i32c(16), ...i32Add, ...set(0),
  ];
  return [
    ...[1, 2, V128],
    ...get(2), ...f32x4Splat, ...set(a),
    ...get(a), ...set(b),
    ...vectorLoop(0, 1, body),
    ...get(a), ...get(b), ...f32x4Max, ...set(a),
    ...get(a), ...f32x4Lane(0), ...get(a), ...f32x4Lane(1), ...f32Max,
    ...get(a), ...f32x4Lane(2), ...get(a), ...f32x4Lane(3), ...f32Max, ...f32Max,
    ...end,
  ];
}

/** 1.5·2^23: adding it to |t| < 2^22 rounds t to an integer n held in the low mantissa bits (0x4b400000 + n). */
const ROUNDER = 12582912;

function exprowBody(): number[] {
  // params: 0 p, 1 n4, 2 m; locals: 3 mv, 4 x, 5 t, 6 r, 7 q, 8 lo, 9 hi (v128)
  const [mv, x, t, r, q, lo, hi] = [3, 4, 5, 6, 7, 8, 9];
  const P = [1.987569150e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1];
  const splat = (v: number) => [...f32c(v), ...f32x4Splat];
  // P(r) by Estrin's scheme (a shorter dependency chain than Horner's; JSC's wasm tier is latency-bound here):
  // (P5 + P4·r) + r²·(P3 + P2·r) + r⁴·(P1 + P0·r); r² is kept in x, which is dead by then.
  const r2 = x;
  const poly = [
    ...get(r), ...get(r), ...f32x4Mul, ...set(r2),
    ...get(r), ...splat(P[4]!), ...f32x4Mul, ...splat(P[5]!), ...f32x4Add,
    ...get(r), ...splat(P[2]!), ...f32x4Mul, ...splat(P[3]!), ...f32x4Add, ...get(r2), ...f32x4Mul, ...f32x4Add,
    ...get(r), ...splat(P[0]!), ...f32x4Mul, ...splat(P[1]!), ...f32x4Add, ...get(r2), ...get(r2), ...f32x4Mul, ...f32x4Mul, ...f32x4Add,
  ];
  const body = [
    // x = max(s − m, −88): pmax(x, c) = x < c ? c : x keeps NaN (and maps −inf to −88)
    ...get(0), ...v128Load, ...get(mv), ...f32x4Sub, ...splat(-88), ...f32x4Pmax, ...set(x),
    // t = x·log2 e + 1.5·2^23 (rounds to n); n = t − 1.5·2^23
    ...get(x), ...splat(Math.LOG2E), ...f32x4Mul, ...splat(ROUNDER), ...f32x4Add, ...set(t),
    // r = x − n·C1 − n·C2, n on the stack twice
    ...get(x),
    ...get(t), ...splat(ROUNDER), ...f32x4Sub, ...set(q), // q = n for a moment
    ...get(q), ...splat(0.693359375), ...f32x4Mul, ...f32x4Sub,
    ...get(q), ...splat(-2.12194440e-4), ...f32x4Mul, ...f32x4Sub, ...set(r),
    // q = P(r)·r² + r + 1
    ...poly, ...get(r2), ...f32x4Mul, ...get(r), ...f32x4Add, ...splat(1), ...f32x4Add, ...set(q),
    // e = q · 2^n, 2^n = (bits(t) − 0x4b400000 + 127) << 23
    ...get(0),
    ...get(q), ...get(t), ...i32c(127 - 0x4b400000), ...i32x4Splat, ...i32x4Add, ...i32c(23), ...i32x4Shl, ...f32x4Mul,
    ...set(q), ...get(q), ...v128Store,
    // lo += f64(e[0:2]); hi += f64(e[2:4])
    ...get(lo), ...get(q), ...f64x2PromoteLow, ...f64x2Add, ...set(lo),
    ...get(hi), ...get(q), ...get(q), ...shuffleHighToLow, ...f64x2PromoteLow, ...f64x2Add, ...set(hi),
  ];
  return [
    ...[1, 7, V128],
    ...get(2), ...f32x4Splat, ...set(mv),
    ...vectorLoop(0, 1, body),
    ...get(lo), ...get(hi), ...f64x2Add, ...set(lo),
    ...get(lo), ...f64x2Lane(0), ...get(lo), ...f64x2Lane(1), ...f64Add,
    ...end,
  ];
}

function moduleBytes(): Uint8Array {
  const types = section(1, [2, 0x60, 3, I32, I32, F32, 1, F32, 0x60, 3, I32, I32, F32, 1, F64]);
  const funcs = section(3, [2, 0, 1]);
  const mem = section(5, [1, 0, 1]); // one page to start; grown on demand
  const exports = section(7, [3, ...name("mem"), 2, 0, ...name("rowmax"), 0, 0, ...name("exprow"), 0, 1]);
  const bodies = [rowmaxBody(), exprowBody()];
  const code = section(10, [bodies.length, ...bodies.flatMap((b) => [...leb(b.length), ...b])]);
  return new Uint8Array([0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0, ...types, ...funcs, ...mem, ...exports, ...code]);
}

// ---- the instance ------------------------------------------------------------------------------------------------

export interface SoftmaxSimd {
  /** max(init, block[i .. i + 8·n8)) for the element index i = byteOffset / 4 of the scratch view. */
  rowmax(byteOffset: number, n8: number, init: number): number;
  /** In place exp(x − m) over 4·n4 elements from byteOffset; returns their sum. */
  exprow(byteOffset: number, n4: number, m: number): number;
  /** A float32 view of the first `floats` elements of the linear memory (grows it; old views are then stale). */
  scratch(floats: number): Float32Array;
}

let instance: SoftmaxSimd | null | undefined;

/** The SIMD kernels, or null when WebAssembly SIMD is unavailable (or BD_CPU_SIMD=0). */
export function softmaxSimd(): SoftmaxSimd | null {
  if (instance !== undefined) return instance;
  instance = null;
  if (process.env.BD_CPU_SIMD === "0" || typeof WebAssembly !== "object") return null;
  const bytes = moduleBytes();
  if (!WebAssembly.validate(bytes)) return null;
  const ex = new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports as {
    mem: WebAssembly.Memory;
    rowmax: (p: number, n8: number, init: number) => number;
    exprow: (p: number, n4: number, m: number) => number;
  };
  instance = {
    rowmax: ex.rowmax,
    exprow: ex.exprow,
    scratch(floats: number): Float32Array {
      const bytes = floats * 4 + 64; // slack: nothing reads past the block, but keep a margin
      const have = ex.mem.buffer.byteLength;
      if (bytes > have) ex.mem.grow(Math.ceil((bytes - have) / 65536));
      return new Float32Array(ex.mem.buffer, 0, floats);
    },
  };
  return instance;
}
