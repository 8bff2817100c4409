// WebAssembly SIMD kernels of the CPU backend, assembled here from opcodes (no toolchain, no binary blob): the
// online-softmax pieces of the fused attention (softmax-simd.ts is the attention's view of this module), row-wise
// softmax / log-softmax, the float64 moments and affine transform of group / layer norm (+ fused SiLU), and the
// exp-heavy activations (exp, sigmoid, silu, quick_gelu, gelu, gelu_tanh, tanh). Four float32 lanes at a time, two
// float64 lanes where the reference computes in float64, on blocks in the module's linear memory: callers copy a
// block in (TypedArray.set), run a kernel in place or into a second block and copy the result out; map() does that
// for the activations. `simdKernels()` returns null where WebAssembly SIMD is unavailable (or BD_CPU_SIMD=0); the
// callers' JavaScript loops are then used, and stay the reference. Bun 1.4.5 (JSC's OMG tier), Zen 4, per float:
// exp ~1.4 ns, silu ~1.4, sigmoid ~2.1, tanh ~2.3, quick_gelu ~2.3, gelu_tanh ~2.7, gelu ~7, the softmax row
// passes ~1.4, moments ~0.3 (Math.exp in JavaScript ~6.5; 128-bit vectors are the ceiling here: the exp is
// bound by the two float multiply and two float add pipes, and unrolling or hoisting constants did not help).
//
// Pointers are byte offsets into the memory; n4 / n8 count vectors of 4 floats / pairs of vectors. Kernels read
// and write 16·n4 bytes from their pointers (unaligned is fine), so callers pad rows (softmax: with −inf) or let the
// last vector's extra lanes fall on memory that is overwritten later or never copied out.
//
// ---- exp ---------------------------------------------------------------------------------------------------------
// Cephes' expf range reduction: n = round(x·log2 e) by adding 1.5·2^23 + 127 (which leaves n + 127 in the low
// mantissa bits, so bits·2^23 is the float 2^n), r = x − n·C1 − n·C2 (Cody–Waite; x − n·C1 is exact), then
// e^r = 1 + r + r²·Q(r) with a degree-4 minimax Q (3.9e-9 relative), times 2^n. Ranges (ExpRange):
// - "softmax" (arguments ≤ 0): x = max(x, −88); x ≤ −87.34 (−inf too: masked keys, the −inf padding) gives 0.
// - "wide" (silu, quick_gelu, gelu_tanh, tanh): x clamped to [−88, 89]; results overflow to +inf above 88.38
//   (instead of 88.72) and flush to 0 below −87.34.
// - "full" (exp, sigmoid, gelu): x clamped to [−104, 89], 2^n applied as 2^m·2^(n − m), m = round(n/2): +inf above
//   88.72, subnormal results scaled exactly, 0 below −103.97.
// NaN stays NaN (the pmax/pmin clamps keep it: pmax(x, c) = x < c ? c : x).
//
// ---- the activations ---------------------------------------------------------------------------------------------
// sigmoid(x) = (x ≥ 0 ? 1 : e) / (1 + e), e = exp(−|x|)        (no overflow; subnormal tails kept)
// silu(x) = x / (1 + exp(−x))                                    (as the JavaScript loop and torch)
// quick_gelu(x) = x / (1 + exp(a)), a = −1.702·x                 (a in float64, passed to exp as hi + lo)
// gelu_tanh(x) = x / (1 + exp(a)), a = −2u, u = √(2/π)·(x + 0.044715·x³)   (= 0.5·x·(1 + tanh u) without its
//                                                                  cancellation; a in float64, as hi + lo)
// tanh(x) = |x| < 0.625 ? x + x·z·P(z) (z = x², Cephes' tanhf) : sign(x)·(1 − 2/(exp(2|x|) + 1))
// gelu(x) = x·Φ(x), Φ(x) = x ≥ 0 ? 1 − h : h, h = erfc(|x|/√2)/2, erfc(z) = t·exp(−z² + P(u)) with t = 2/(2 + z),
//   u = 2t − 1 and P a degree-12 fit (below), t, u and P in float64 lanes; z² = x²/2 goes to the exp exactly, as
//   −x_h²/2 (x_h: the top 12 significant bits of |x|, so x_h² is exact) + the rest, so the tail keeps its
//   relative precision (gelu(−10) ≈ −7.6e-23 to 3e-7).
//
// ---- accuracy ----------------------------------------------------------------------------------------------------
// Against float64 references, on 2^20 evenly spaced float32 inputs per range, in ulps of the float32-rounded
// reference (normal results): exp ≤ 0.97 ulp on [−87.33, 88.72] (subnormal results on [−103.97, −87.34] within
// 0.75 of their grid step); sigmoid ≤ 2.2; silu ≤ 2.3 (x ≥ −88.3; −0 below, where |silu| < 4e-37); quick_gelu
// ≤ 2.3 (x ≥ −51.8); gelu_tanh ≤ 2.2 (against x·σ(2u)); tanh ≤ 1.4; gelu ≤ 4 ulp, relative ≤ 2.9e-7 for
// x ≥ −12.9 (|gelu(x)| ≥ 1e-36). test/ops/elementwise.test.ts asserts exp ≤ 2 ulp, tanh ≤ 2, sigmoid / silu /
// quick_gelu / gelu_tanh ≤ 3 and gelu ≤ 4e-7 relative on those ranges.

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
const f32bytes = (x: number) => [...new Uint8Array(Float32Array.of(x).buffer)];
const f64bytes = (x: number) => [...new Uint8Array(Float64Array.of(x).buffer)];

const I32 = 0x7f;
const F32 = 0x7d;
const F64 = 0x7c;
const V128 = 0x7b;

type Code = number[];

// opcodes
const get = (i: number): Code => [0x20, ...leb(i)];
const set = (i: number): Code => [0x21, ...leb(i)];
const tee = (i: number): Code => [0x22, ...leb(i)];
const call = (f: number): Code => [0x10, ...leb(f)];
const i32c = (v: number): Code => [0x41, ...sleb(v)];
const f32c = (v: number): Code => [0x43, ...f32bytes(v)];
const f64c = (v: number): Code => [0x44, ...f64bytes(v)];
const simd = (op: number, ...imm: number[]): Code => [0xfd, ...leb(op), ...imm];
const MEM = [4, 0]; // memarg: align 2^4 (a hint), offset 0
const v128Load = simd(0x00, ...MEM);
const v128Store = simd(0x0b, ...MEM);
const f32x4Splat = simd(0x13);
const f64x2Splat = simd(0x14);
const f32x4Lane = (l: number) => simd(0x1f, l);
const f64x2Lane = (l: number) => simd(0x21, l);
const f32x4Lt = simd(0x43);
const f32x4Ge = simd(0x46);
const v128And = simd(0x4e);
const v128Bitselect = simd(0x52);
const f32x4DemoteZero = simd(0x5e);
const f64x2PromoteLow = simd(0x5f);
const i32x4Add = simd(0xae);
const i32x4Sub = simd(0xb1);
const i32x4Mul = simd(0xb5);
const f32x4Abs = simd(0xe0);
const f32x4Neg = simd(0xe1);
const f32x4Add = simd(0xe4);
const f32x4Sub = simd(0xe5);
const f32x4Mul = simd(0xe6);
const f32x4Div = simd(0xe7);
const f32x4Max = simd(0xe9);
const f32x4Pmin = simd(0xea);
const f32x4Pmax = simd(0xeb);
const f64x2Add = simd(0xf0);
const f64x2Sub = simd(0xf1);
const f64x2Mul = simd(0xf2);
const f64x2Div = simd(0xf3);
/** i8x16.shuffle: bytes 8..15 of the first operand to 0..7 (the high half to the low half). */
const shuffleHighToLow = simd(0x0d, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
/** i8x16.shuffle: low halves of two operands side by side (two demoted f64x2 into one f32x4). */
const shuffleLowLow = simd(0x0d, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
const f32Max = [0x97];
const f64Add = [0xa0];
const f64Div = [0xa3];
const f32DemoteF64 = [0xb6];
const f64PromoteF32 = [0xbb];
const f64Load = [0x2b, 3, 0];
const f64Store = [0x39, 3, 0];
const i32Add = [0x6a];
const i32Sub = [0x6b];
const i32Mul = [0x6c];
const i32Eqz = [0x45];
const block = [0x02, 0x40];
const loop = [0x03, 0x40];
const end = [0x0b];
const brIf = (d: number): Code => [0x0d, ...leb(d)];

/** A function under construction: its signature, its locals (declared as they are asked for) and its body. */
class Fn {
  readonly code: Code = [];
  private readonly localTypes: number[] = [];
  private readonly temps = new Map<string, number>();
  constructor(
    readonly name: string,
    readonly params: number[],
    readonly results: number[],
  ) {}
  local(type: number): number {
    this.localTypes.push(type);
    return this.params.length + this.localTypes.length - 1;
  }
  /** A v128 local shared by the macros of this function under one name. */
  tmp(key: string): number {
    let i = this.temps.get(key);
    if (i === undefined) {
      i = this.local(V128);
      this.temps.set(key, i);
    }
    return i;
  }
  private readonly consts = new Map<string, number>();
  private readonly prologue: Code = [];
  /** A v128 local holding `bits` (16 bytes), set once at entry: constants are not rematerialised in loops. */
  constBits(bits: number[]): Code {
    const key = bits.join(",");
    let i = this.consts.get(key);
    if (i === undefined) {
      i = this.local(V128);
      this.consts.set(key, i);
      this.prologue.push(...simd(0x0c, ...bits), ...set(i));
    }
    return get(i);
  }
  /** Four float32 lanes of v (a hoisted constant). */
  splat(v: number): Code {
    const b = f32bytes(v);
    return this.constBits([...b, ...b, ...b, ...b]);
  }
  /** Two float64 lanes of v (a hoisted constant). */
  dsplat(v: number): Code {
    const b = f64bytes(v);
    return this.constBits([...b, ...b]);
  }
  /** Four int32 lanes of v (a hoisted constant). */
  isplat(v: number): Code {
    const b = [...new Uint8Array(Int32Array.of(v).buffer)];
    return this.constBits([...b, ...b, ...b, ...b]);
  }
  emit(...parts: Code[]): void {
    for (const p of parts) for (const b of p) this.code.push(b);
  }
  body(): Code {
    const runs: [number, number][] = [];
    for (const t of this.localTypes) {
      const last = runs[runs.length - 1];
      if (last && last[1] === t) last[0]++;
      else runs.push([1, t]);
    }
    return [...leb(runs.length), ...runs.flatMap(([n, t]) => [...leb(n), t]), ...this.prologue, ...this.code, ...end];
  }
}

/** Loop `body` for local `n` > 0 iterations (none when n = 0), advancing each pointer local by `step` bytes. */
function counted(n: number, ptrs: number[], step: number, body: Code): Code {
  return [
    ...block,
    ...get(n), ...i32Eqz, ...brIf(0),
    ...loop,
    ...body,
    ...ptrs.flatMap((p) => [...get(p), ...i32c(step), ...i32Add, ...set(p)]),
    ...get(n), ...i32c(1), ...i32Sub, ...tee(n),
    ...brIf(0),
    ...end,
    ...end,
  ];
}

// ---- exp ---------------------------------------------------------------------------------------------------------

/**
 * c[0] + c[1]·u + … by Estrin's scheme (u², u⁴, … in temps named after `tag`), in float32 lanes or float64 lanes
 * (`f64`); shorter dependency chains than Horner's. Left on the stack.
 */
function estrin(f: Fn, u: number, c: readonly number[], f64 = false, tag = ""): Code {
  const [mul, add] = f64 ? [f64x2Mul, f64x2Add] : [f32x4Mul, f32x4Add];
  const code: Code = [];
  const pw = [u];
  while (2 ** pw.length < c.length) {
    const p = f.tmp(`pw${pw.length}${tag}`);
    const q = pw[pw.length - 1]!;
    code.push(...get(q), ...get(q), ...mul, ...set(p));
    pw.push(p);
  }
  const rec = (lo: number, n: number): Code | null => {
    if (lo >= c.length) return null;
    if (n === 1) return f64 ? f.dsplat(c[lo]!) : f.splat(c[lo]!);
    const h = n / 2;
    const a = rec(lo, h)!;
    const b = rec(lo + h, h);
    return b === null ? a : [...a, ...b, ...get(pw[Math.log2(h)]!), ...mul, ...add];
  };
  code.push(...rec(0, 2 ** pw.length)!);
  return code;
}

/** 1.5·2^23: adding it to |t| < 2^22 rounds t to an integer k held in the low mantissa bits (bits 0x4b400000 + k). */
const ROUNDER = 12582912;
const EXP_C1 = 0.693359375;
const EXP_C2 = -2.12194440e-4;
/**
 * Q(r) ≈ (e^r − 1 − r)/r², degree 4, for |r| ≤ ln2/2: a minimax fit of the relative error of e^r (Lawson-weighted
 * least squares), 3.9e-9 with these float32 coefficients (Cephes' expf uses degree 5); c0 first.
 */
const EXP_Q = [0.4999999403953552, 0.1666652113199234, 0.04166838899254799, 0.008368710055947304, 0.001381461275741458];

/**
 * e^r ≈ 1 + r + r²·Q(r) for |r| ≤ ln2/2 (local r; clobbers the temp "r2"); leaves the value on the stack.
 * Q by Estrin's scheme, (c0 + c1·r) + r²·((c2 + c3·r) + r²·c4): a shorter dependency chain than Horner's.
 */
function expPoly(f: Fn, r: number): Code {
  const r2 = f.tmp("r2");
  const Q = EXP_Q;
  return [
    ...get(r), ...get(r), ...f32x4Mul, ...set(r2),
    ...get(r), ...f.splat(Q[1]!), ...f32x4Mul, ...f.splat(Q[0]!), ...f32x4Add,
    ...get(r), ...f.splat(Q[3]!), ...f32x4Mul, ...f.splat(Q[2]!), ...f32x4Add,
    ...get(r2), ...f.splat(Q[4]!), ...f32x4Mul, ...f32x4Add,
    ...get(r2), ...f32x4Mul, ...f32x4Add,
    ...get(r2), ...f32x4Mul, ...get(r), ...f32x4Add, ...f.splat(1), ...f32x4Add,
  ];
}

/**
 * How far exp goes: "softmax" x ≥ −88 (arguments ≤ 0; x ≤ −87.34, −inf too, gives 0), "wide" x in [−88, 89]
 * (results below 2^-126 flush to 0; above 88.38 +inf), "full" x in [−104, 89] (subnormal results scaled exactly,
 * +inf above 88.72).
 */
type ExpRange = "softmax" | "wide" | "full";

/**
 * exp of the value in local x (clobbered), left on the stack. `lo` (the low part of a two-part argument x + lo,
 * |lo| small) joins after the exact x − n·C1.
 */
function expInto(f: Fn, x: number, range: ExpRange, lo: number | null = null): Code {
  const [t, r] = [f.tmp("t"), f.tmp("r")];
  const full = range === "full";
  const clamp =
    range === "softmax"
      ? [...f.splat(-88), ...f32x4Pmax]
      : [...f.splat(full ? -104 : -88), ...f32x4Pmax, ...f.splat(89), ...f32x4Pmin];
  // t = y + 1.5·2^23 + 127 holds round(y) + 127 in its low mantissa bits, and bits(t)·2^23 (mod 2^32) is then
  // exactly the float 2^round(y) for round(y) in [−127, 127] (the constant's own bits shift out; −127 gives 0 and
  // 128 gives +inf).
  const code: Code = [
    // x = clamp(x); t = (x [+ lo])·log2 e + 1.5·2^23 + 127; the float n = t − (1.5·2^23 + 127)
    ...get(x), ...clamp, ...set(x),
    ...get(x), ...(lo === null ? [] : [...get(lo), ...f32x4Add]),
    ...f.splat(Math.LOG2E), ...f32x4Mul, ...f.splat(ROUNDER + 127), ...f32x4Add, ...set(t),
    ...get(t), ...f.splat(ROUNDER + 127), ...f32x4Sub, ...set(r), // r = n for a moment
    ...(full
      ? // h = round(n/2) + 127 in the same form
        [...get(r), ...f.splat(0.5), ...f32x4Mul, ...f.splat(ROUNDER + 127), ...f32x4Add, ...set(f.tmp("h"))]
      : []),
    // r = x − n·C1 (exact) [+ lo] − n·C2
    ...get(x), ...get(r), ...f.splat(EXP_C1), ...f32x4Mul, ...f32x4Sub,
    ...(lo === null ? [] : [...get(lo), ...f32x4Add]),
    ...get(r), ...f.splat(EXP_C2), ...f32x4Mul, ...f32x4Sub, ...set(r),
    ...expPoly(f, r),
  ];
  const TWO23 = f.isplat(1 << 23);
  if (!full) {
    code.push(...get(t), ...TWO23, ...i32x4Mul, ...f32x4Mul); // · 2^n
  } else {
    // · 2^m · 2^(n − m), m = round(n/2): both factors normal for n in [−152, 128]
    const h = f.tmp("h");
    code.push(
      ...get(h), ...TWO23, ...i32x4Mul, ...f32x4Mul,
      ...get(t), ...get(h), ...i32x4Sub, ...f.isplat(127), ...i32x4Add, ...TWO23, ...i32x4Mul, ...f32x4Mul,
    );
  }
  return code;
}

// ---- the softmax kernels (attention + softmax op) ----------------------------------------------------------------

function rowmaxFn(): Fn {
  // (p, n8, init) -> max(init, f32[p .. p + 32·n8)); two accumulators (f32x4.pmax is one maxps; one accumulator
  // would be latency-bound). A NaN may be skipped here: callers get it back through exp.
  const f = new Fn("rowmax", [I32, I32, F32], [F32]);
  const [a, b] = [f.local(V128), f.local(V128)];
  f.emit(
    get(2), f32x4Splat, set(a),
    get(a), set(b),
    counted(1, [0], 32, [
      ...get(0), ...v128Load, ...get(a), ...f32x4Pmax, ...set(a),
      ...get(0), ...i32c(16), ...i32Add, ...v128Load, ...get(b), ...f32x4Pmax, ...set(b),
    ]),
    get(a), get(b), f32x4Max, set(a),
    get(a), f32x4Lane(0), get(a), f32x4Lane(1), f32Max,
    get(a), f32x4Lane(2), get(a), f32x4Lane(3), f32Max, f32Max,
  );
  return f;
}

/** Σ of the f32x4 on the stack into the f64x2 accumulators lo (lanes 0, 1) and hi (lanes 2, 3). */
function accumulate(v: number, lo: number, hi: number): Code {
  return [
    ...get(lo), ...get(v), ...f64x2PromoteLow, ...f64x2Add, ...set(lo),
    ...get(hi), ...get(v), ...get(v), ...shuffleHighToLow, ...f64x2PromoteLow, ...f64x2Add, ...set(hi),
  ];
}

/** Horizontal f64 sum of accumulators lo + hi, left on the stack. */
const hsum = (lo: number, hi: number): Code => [
  ...get(lo), ...get(hi), ...f64x2Add, ...set(lo),
  ...get(lo), ...f64x2Lane(0), ...get(lo), ...f64x2Lane(1), ...f64Add,
];

function exprowFn(store: boolean): Fn {
  // (p, n4, m) -> Σ exp(f32[j] − m) over 4·n4 floats from p, stored in place when `store` (exprow; expsum only sums)
  const f = new Fn(store ? "exprow" : "expsum", [I32, I32, F32], [F64]);
  const [mv, x, lo, hi] = [f.local(V128), f.local(V128), f.local(V128), f.local(V128)];
  const e = f.tmp("e");
  f.emit(
    get(2), f32x4Splat, set(mv),
    counted(1, [0], 16, [
      ...get(0), ...v128Load, ...get(mv), ...f32x4Sub, ...set(x),
      ...expInto(f, x, "softmax"), ...set(e),
      ...(store ? [...get(0), ...get(e), ...v128Store] : []),
      ...accumulate(e, lo, hi),
    ]),
    hsum(lo, hi),
  );
  return f;
}

function scaleFn(): Fn {
  // (p, n4, s): f32[j] *= s in place
  const f = new Fn("scale", [I32, I32, F32], []);
  const sv = f.local(V128);
  f.emit(
    get(2), f32x4Splat, set(sv),
    counted(1, [0], 16, [...get(0), ...get(0), ...v128Load, ...get(sv), ...f32x4Mul, ...v128Store]),
  );
  return f;
}

/** Function indices, in the order the module defines them. */
const enum K {
  rowmax,
  exprow,
  expsum,
  scale,
  softmaxRows,
  rowMaxSum,
  logRows,
  affine,
  lnAffine,
  moments,
  exp,
  sigmoid,
  silu,
  quickGelu,
  gelu,
  geluTanh,
  tanh,
}

function softmaxRowsFn(): Fn {
  // (p, rows, n8): each row of 8·n8 floats (padded with −inf) → exp(x − max) / Σ, in place
  const f = new Fn("softmaxRows", [I32, I32, I32], []);
  const [m, s] = [f.local(F32), f.local(F64)];
  const bytes = f.local(I32);
  f.emit(
    get(2), i32c(32), i32Mul, set(bytes),
    counted(1, [], 0, [
      ...get(0), ...get(2), ...f32c(-Infinity), ...call(K.rowmax), ...set(m),
      ...get(0), ...get(2), ...get(2), ...i32Add, ...get(m), ...call(K.exprow), ...set(s),
      ...get(0), ...get(2), ...get(2), ...i32Add, ...f64c(1), ...get(s), ...f64Div, ...f32DemoteF64, ...call(K.scale),
      ...get(0), ...get(bytes), ...i32Add, ...set(0),
    ]),
  );
  return f;
}

function rowMaxSumFn(): Fn {
  // (p, rows, n8, st): st[2r] = max of row r, st[2r + 1] = Σ exp(x − max) (f64), rows unchanged
  const f = new Fn("rowMaxSum", [I32, I32, I32, I32], []);
  const m = f.local(F32);
  const bytes = f.local(I32);
  f.emit(
    get(2), i32c(32), i32Mul, set(bytes),
    counted(1, [], 0, [
      ...get(0), ...get(2), ...f32c(-Infinity), ...call(K.rowmax), ...set(m),
      ...get(3), ...get(m), ...f64PromoteF32, ...f64Store,
      ...get(3), ...i32c(8), ...i32Add,
      ...get(0), ...get(2), ...get(2), ...i32Add, ...get(m), ...call(K.expsum), ...f64Store,
      ...get(0), ...get(bytes), ...i32Add, ...set(0),
      ...get(3), ...i32c(16), ...i32Add, ...set(3),
    ]),
  );
  return f;
}

/** f32x4 of the f64x2 lo (lanes 0, 1) and hi (lanes 2, 3), left on the stack. */
const demote2 = (lo: Code, hi: Code): Code => [...lo, ...f32x4DemoteZero, ...hi, ...f32x4DemoteZero, ...shuffleLowLow];
/** f64x2 of lanes 0, 1 / 2, 3 of the f32x4 in local v. */
const promoteLo = (v: number): Code => [...get(v), ...f64x2PromoteLow];
const promoteHi = (v: number): Code => [...get(v), ...get(v), ...shuffleHighToLow, ...f64x2PromoteLow];

function logRowsFn(): Fn {
  // (p, rows, n8, st): x ← f32((f64(x) − st[2r]) − st[2r + 1]) for each row, in place (st[2r + 1] = log Σ by then)
  const f = new Fn("logRows", [I32, I32, I32, I32], []);
  const [mv, lv, x, k] = [f.local(V128), f.local(V128), f.local(V128), f.local(I32)];
  const inner = (v: Code) => [...v, ...get(mv), ...f64x2Sub, ...get(lv), ...f64x2Sub];
  f.emit(counted(1, [3], 16, [
    ...get(3), ...f64Load, ...f64x2Splat, ...set(mv),
    ...get(3), ...i32c(8), ...i32Add, ...f64Load, ...f64x2Splat, ...set(lv),
    ...get(2), ...get(2), ...i32Add, ...set(k),
    ...counted(k, [0], 16, [
      ...get(0), ...v128Load, ...set(x),
      ...get(0), ...demote2(inner(promoteLo(x)), inner(promoteHi(x))), ...v128Store,
    ]),
  ]));
  return f;
}

// ---- norm kernels ------------------------------------------------------------------------------------------------

function momentsFn(): Fn {
  // (p, n4, k, out): f64 out[0] = Σ (f64(x) − k), out[1] = Σ (f64(x) − k)²
  const f = new Fn("moments", [I32, I32, F64, I32], []);
  const [kv, x, d, s0, s1, q0, q1] = [f.local(V128), f.local(V128), f.local(V128), f.local(V128), f.local(V128), f.local(V128), f.local(V128)];
  const acc = (s: number, q: number, v: Code) => [
    ...v, ...get(kv), ...f64x2Sub, ...tee(d), ...get(s), ...f64x2Add, ...set(s),
    ...get(d), ...get(d), ...f64x2Mul, ...get(q), ...f64x2Add, ...set(q),
  ];
  f.emit(
    get(2), f64x2Splat, set(kv),
    counted(1, [0], 16, [...get(0), ...v128Load, ...set(x), ...acc(s0, q0, promoteLo(x)), ...acc(s1, q1, promoteHi(x))]),
    get(3), hsum(s0, s1), f64Store,
    get(3), i32c(8), i32Add, hsum(q0, q1), f64Store,
  );
  return f;
}

function affineFn(): Fn {
  // (src, dst, n4, scale, shift): y = f32(f64(x)·scale + shift)
  const f = new Fn("affine", [I32, I32, I32, F64, F64], []);
  const [sv, hv, x] = [f.local(V128), f.local(V128), f.local(V128)];
  const lin = (v: Code) => [...v, ...get(sv), ...f64x2Mul, ...get(hv), ...f64x2Add];
  f.emit(
    get(3), f64x2Splat, set(sv),
    get(4), f64x2Splat, set(hv),
    counted(2, [0, 1], 16, [
      ...get(0), ...v128Load, ...set(x),
      ...get(1), ...demote2(lin(promoteLo(x)), lin(promoteHi(x))), ...v128Store,
    ]),
  );
  return f;
}

/** y / (1 + exp(−y)) for the f32x4 in local y (kept), left on the stack. */
function siluOf(f: Fn, y: number): Code {
  const a = f.tmp("arg");
  return [
    ...get(y), ...f32x4Neg, ...set(a),
    ...get(y), ...expInto(f, a, "wide"), ...f.splat(1), ...f32x4Add, ...f32x4Div,
  ];
}

/**
 * x / (1 + exp(a(x))) with the argument a(x) = arg(f64(x)) evaluated in float64 lanes and carried to the exp as
 * hi + lo (hi = f32(a), lo = f32(a − hi)): float32 rounding of a large argument would otherwise cost |a|·2^-24
 * relative (quick_gelu's −1.702·x, gelu_tanh's −2u(x)).
 */
function sigmoidScaled(f: Fn, x: number, arg: (f64: Code) => Code): Code {
  const [hi, lo, d0, d1] = [f.tmp("arg"), f.tmp("lo"), f.tmp("d0"), f.tmp("d1")];
  return [
    ...arg(promoteLo(x)), ...set(d0),
    ...arg(promoteHi(x)), ...set(d1),
    ...demote2(get(d0), get(d1)), ...set(hi),
    ...demote2([...get(d0), ...promoteLo(hi), ...f64x2Sub], [...get(d1), ...promoteHi(hi), ...f64x2Sub]), ...set(lo),
    ...get(x), ...expInto(f, hi, "wide", lo), ...f.splat(1), ...f32x4Add, ...f32x4Div,
  ];
}

function lnAffineFn(): Fn {
  // (src, dst, n4, mean, rstd, w, b): y = f32(((f64(x) − mean)·rstd)·f64(w) + f64(b)), w and b advancing with x
  const f = new Fn("lnAffine", [I32, I32, I32, F64, F64, I32, I32], []);
  const [mv, rv, x, w, b] = [f.local(V128), f.local(V128), f.local(V128), f.local(V128), f.local(V128)];
  const lin = (v: Code, wv: Code, bv: Code) => [...v, ...get(mv), ...f64x2Sub, ...get(rv), ...f64x2Mul, ...wv, ...f64x2Mul, ...bv, ...f64x2Add];
  f.emit(
    get(3), f64x2Splat, set(mv),
    get(4), f64x2Splat, set(rv),
    counted(2, [0, 1, 5, 6], 16, [
      ...get(0), ...v128Load, ...set(x),
      ...get(5), ...v128Load, ...set(w),
      ...get(6), ...v128Load, ...set(b),
      ...get(1),
      ...demote2(lin(promoteLo(x), promoteLo(w), promoteLo(b)), lin(promoteHi(x), promoteHi(w), promoteHi(b))),
      ...v128Store,
    ]),
  );
  return f;
}

// ---- activations -------------------------------------------------------------------------------------------------

/** (src, dst, n4): dst = op(src), 4 lanes at a time; `op` maps local x (which it may clobber) to the stack. */
function mapFn(fname: string, op: (f: Fn, x: number) => Code): Fn {
  const f = new Fn(fname, [I32, I32, I32], []);
  const x = f.local(V128);
  const body = op(f, x);
  f.emit(counted(2, [0, 1], 16, [...get(0), ...v128Load, ...set(x), ...get(1), ...body, ...v128Store]));
  return f;
}

/** A float whose bits are the sign bit alone (−0): ANDed with x it keeps x's sign. */
const SIGN_F = -0;

function sigmoidOp(f: Fn, x: number): Code {
  const [a, e] = [f.tmp("arg"), f.tmp("e")];
  return [
    ...get(x), ...f32x4Abs, ...f32x4Neg, ...set(a),
    ...expInto(f, a, "full"), ...set(e),
    // (x ≥ 0 ? 1 : e) / (1 + e)
    ...f.splat(1), ...get(e), ...get(x), ...f.splat(0), ...f32x4Ge, ...v128Bitselect,
    ...get(e), ...f.splat(1), ...f32x4Add, ...f32x4Div,
  ];
}

const GELU_TANH_K = Math.sqrt(2 / Math.PI);

function geluTanhOp(f: Fn, x: number): Code {
  // x / (1 + exp(−2u)), −2u = v·(c1 + c3·v²) in float64
  const v = f.tmp("v64");
  return sigmoidScaled(f, x, (x64) => [
    ...x64, ...tee(v), ...get(v), ...f64x2Mul, ...f.dsplat(-2 * GELU_TANH_K * 0.044715), ...f64x2Mul,
    ...f.dsplat(-2 * GELU_TANH_K), ...f64x2Add, ...get(v), ...f64x2Mul,
  ]);
}

const TANH_P = [-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1, -3.33332819422e-1];

function tanhOp(f: Fn, x: number): Code {
  const [a, z, big] = [f.tmp("arg"), f.tmp("z"), f.tmp("big")];
  const horner = TANH_P.slice(1).flatMap((c) => [...get(z), ...f32x4Mul, ...f.splat(c), ...f32x4Add]);
  return [
    // big = copysign(1 − 2/(exp(2|x|) + 1), x)
    ...get(x), ...f32x4Abs, ...get(x), ...f32x4Abs, ...f32x4Add, ...set(a),
    ...f.splat(1), ...f.splat(2), ...expInto(f, a, "wide"), ...f.splat(1), ...f32x4Add, ...f32x4Div, ...f32x4Sub,
    ...get(x), ...f.splat(SIGN_F), ...v128And, ...simd(0x50), ...set(big), // | sign bit of x (the magnitude is ≥ 0)
    // small = x + x·z·P(z), z = x²
    ...get(x), ...get(x), ...f32x4Mul, ...set(z),
    ...f.splat(TANH_P[0]!), ...horner, ...get(z), ...f32x4Mul, ...get(x), ...f32x4Mul, ...get(x), ...f32x4Add,
    ...get(big),
    ...get(x), ...f32x4Abs, ...f.splat(0.625), ...f32x4Lt, ...v128Bitselect,
  ];
}

// erfc(z) = t·exp(−z² + P(u)), t = 2/(2 + z), u = 2t − 1 ∈ (−1, 1]: P of degree 12 in u, a Chebyshev fit of
// log(erfc(z)/t) + z² (|fit error| < 5.9e-9, i.e. relative in erfc), evaluated in float64 lanes with t and u. In
// the variable u the coefficients stay below 0.68 (in t, Numerical Recipes' erfcc form, they reach 1.5 and cancel
// near z = 0). Constant term first.
const ERFC_P = [
  -6.717940852e-01, 6.726431548e-01, 4.734341752e-02, -4.689364056e-02, -9.874534918e-03, 8.808825369e-03,
  1.770666118e-03, -2.288765239e-03, -1.827821415e-04, 5.737663722e-04, -3.211377242e-05, -8.728381029e-05,
  1.337150351e-05,
];

function geluOp(f: Fn, x: number): Code {
  const [ax, xh, xl, t, lo, h] = [f.tmp("arg"), f.tmp("z"), f.tmp("big"), f.tmp("tt"), f.tmp("lo"), f.tmp("e")];
  const [d0, d1, u0, u1] = [f.tmp("d0"), f.tmp("d1"), f.tmp("u0"), f.tmp("u1")];
  // per float64 half: d = 2/(2 + a/√2) (= t), u = 2d − 1
  const half = (prom: Code, d: number, u: number) => [
    ...f.dsplat(2), ...prom, ...f.dsplat(Math.SQRT1_2), ...f64x2Mul, ...f.dsplat(2), ...f64x2Add, ...f64x2Div, ...tee(d),
    ...get(d), ...f64x2Add, ...f.dsplat(1), ...f64x2Sub, ...set(u),
  ];
  return [
    // ax = min(|x|, 20) (erfc(20/√2) is 0 in float32; keeps ±inf out of the split); xh = top 12 bits, xl = rest
    ...get(x), ...f32x4Abs, ...f.splat(20), ...f32x4Pmin, ...set(ax),
    ...get(ax), ...f.isplat(-4096), ...v128And, ...set(xh),
    ...get(ax), ...get(xh), ...f32x4Sub, ...set(xl),
    ...half(promoteLo(ax), d0, u0),
    ...half(promoteHi(ax), d1, u1),
    ...demote2(get(d0), get(d1)), ...set(t),
    // lo = P(u) − (xh·xl + xl²/2); the exponent −z² + P(u) = −xh²/2 + lo, −xh²/2 exact
    ...demote2(estrin(f, u0, ERFC_P, true, "a"), estrin(f, u1, ERFC_P, true, "b")),
    ...get(xh), ...get(xl), ...f32x4Mul, ...get(xl), ...get(xl), ...f32x4Mul, ...f.splat(0.5), ...f32x4Mul, ...f32x4Add, ...f32x4Sub,
    ...set(lo),
    ...get(xh), ...get(xh), ...f32x4Mul, ...f.splat(-0.5), ...f32x4Mul, ...set(xh),
    // h = erfc(ax/√2)/2 = (t/2)·exp(−xh²/2 + lo)
    ...expInto(f, xh, "full", lo), ...get(t), ...f.splat(0.5), ...f32x4Mul, ...f32x4Mul, ...set(h),
    // x · (x ≥ 0 ? 1 − h : h)
    ...get(x),
    ...f.splat(1), ...get(h), ...f32x4Sub, ...get(h), ...get(x), ...f.splat(0), ...f32x4Ge, ...v128Bitselect,
    ...f32x4Mul,
  ];
}

// ---- the module --------------------------------------------------------------------------------------------------

function functions(): Fn[] {
  const fns: Fn[] = [];
  fns[K.rowmax] = rowmaxFn();
  fns[K.exprow] = exprowFn(true);
  fns[K.expsum] = exprowFn(false);
  fns[K.scale] = scaleFn();
  fns[K.softmaxRows] = softmaxRowsFn();
  fns[K.rowMaxSum] = rowMaxSumFn();
  fns[K.logRows] = logRowsFn();
  fns[K.affine] = affineFn();
  fns[K.lnAffine] = lnAffineFn();
  fns[K.moments] = momentsFn();
  fns[K.exp] = mapFn("exp", (f, x) => expInto(f, x, "full"));
  fns[K.sigmoid] = mapFn("sigmoid", sigmoidOp);
  fns[K.silu] = mapFn("silu", (f, x) => siluOf(f, x));
  fns[K.quickGelu] = mapFn("quickGelu", (f, x) => sigmoidScaled(f, x, (x64) => [...x64, ...f.dsplat(-1.702), ...f64x2Mul]));
  fns[K.gelu] = mapFn("gelu", geluOp);
  fns[K.geluTanh] = mapFn("geluTanh", geluTanhOp);
  fns[K.tanh] = mapFn("tanh", tanhOp);
  return fns;
}

function moduleBytes(): Uint8Array {
  const fns = functions();
  const sigs: string[] = [];
  const typeBytes: number[] = [];
  const typeOf = fns.map((f) => {
    const key = `${f.params.join(",")}:${f.results.join(",")}`;
    let i = sigs.indexOf(key);
    if (i < 0) {
      i = sigs.push(key) - 1;
      typeBytes.push(0x60, ...leb(f.params.length), ...f.params, ...leb(f.results.length), ...f.results);
    }
    return i;
  });
  const types = section(1, [...leb(sigs.length), ...typeBytes]);
  const funcs = section(3, [...leb(fns.length), ...typeOf.flatMap((t) => leb(t))]);
  const mem = section(5, [1, 0, 1]); // one page to start; grown on demand
  const exports = section(7, [
    ...leb(fns.length + 1),
    ...name("mem"), 2, 0,
    ...fns.flatMap((f, i) => [...name(f.name), 0, ...leb(i)]),
  ]);
  const bodies = fns.map((f) => f.body());
  const code = section(10, [...leb(bodies.length), ...bodies.flatMap((b) => [...leb(b.length), ...b])]);
  return new Uint8Array([0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0, ...types, ...funcs, ...mem, ...exports, ...code]);
}

// ---- the instance ------------------------------------------------------------------------------------------------

/** The activations with a SIMD kernel: dst = op(src) over 4·n4 floats. */
export type SimdActivation = "exp" | "sigmoid" | "silu" | "quickGelu" | "gelu" | "geluTanh" | "tanh";

export interface SimdKernels {
  /** max(init, f32[p/4 .. p/4 + 8·n8)) (a NaN may be skipped). */
  rowmax(p: number, n8: number, init: number): number;
  /** In place exp(x − m) over 4·n4 floats from p; returns their sum (float64). */
  exprow(p: number, n4: number, m: number): number;
  /** Rows of 8·n8 floats (padded with −inf) → softmax, in place. */
  softmaxRows(p: number, rows: number, n8: number): void;
  /** f64 st[2r] = row max, st[2r + 1] = Σ exp(x − max) per row of 8·n8 floats (padded with −inf). */
  rowMaxSum(p: number, rows: number, n8: number, st: number): void;
  /** x ← (x − st[2r]) − st[2r + 1] per row, computed in float64. */
  logRows(p: number, rows: number, n8: number, st: number): void;
  /** f64 out[0] = Σ (f64(x) − k), out[1] = Σ (f64(x) − k)² over 4·n4 floats (out: a byte offset). */
  moments(p: number, n4: number, k: number, out: number): void;
  /** dst = f32(f64(x)·scale + shift) over 4·n4 floats (src = dst allowed). */
  affine(src: number, dst: number, n4: number, scale: number, shift: number): void;
  /** dst = f32(((f64(x) − mean)·rstd)·w + b), w and b float32 arrays at byte offsets advancing with x. */
  lnAffine(src: number, dst: number, n4: number, mean: number, rstd: number, w: number, b: number): void;
  /** dst = op(src) over 4·n4 floats (src = dst allowed). */
  activation(op: SimdActivation, src: number, dst: number, n4: number): void;
  /** dst[i] = op(src[i]) for i < src.length, through blocks of MAP_BLOCK floats (src = dst allowed). */
  map(op: SimdActivation, src: Float32Array, dst: Float32Array): void;
  /** Grow the memory to at least `bytes` (+ 64 bytes of slack); old views are then stale. */
  reserve(bytes: number): void;
  /** A float32 / float64 view of the whole memory (current after reserve()). */
  f32(): Float32Array;
  f64(): Float64Array;
}

type Exports = Record<Exclude<SimdActivation, never>, (src: number, dst: number, n4: number) => void> & {
  mem: WebAssembly.Memory;
  rowmax: SimdKernels["rowmax"];
  exprow: SimdKernels["exprow"];
  softmaxRows: SimdKernels["softmaxRows"];
  rowMaxSum: SimdKernels["rowMaxSum"];
  logRows: SimdKernels["logRows"];
  affine: SimdKernels["affine"];
  lnAffine: SimdKernels["lnAffine"];
  moments: SimdKernels["moments"];
};

/** Floats per block of map(): copies in and out stay in L1/L2. */
export const MAP_BLOCK = 8192;

let instance: SimdKernels | null | undefined;

/** The SIMD kernels, or null when WebAssembly SIMD is unavailable (or BD_CPU_SIMD=0). */
export function simdKernels(): SimdKernels | null {
  if (instance !== undefined) return instance;
  instance = null;
  if (process.env.BD_CPU_SIMD === "0" || typeof WebAssembly !== "object") return null;
  const bytes = moduleBytes();
  if (!WebAssembly.validate(bytes)) return null;
  const ex = new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports as unknown as Exports;
  let buf = ex.mem.buffer;
  let v32 = new Float32Array(buf);
  let v64 = new Float64Array(buf);
  const refresh = () => {
    if (ex.mem.buffer !== buf) {
      buf = ex.mem.buffer;
      v32 = new Float32Array(buf);
      v64 = new Float64Array(buf);
    }
  };
  instance = {
    rowmax: ex.rowmax,
    exprow: ex.exprow,
    softmaxRows: ex.softmaxRows,
    rowMaxSum: ex.rowMaxSum,
    logRows: ex.logRows,
    affine: ex.affine,
    lnAffine: ex.lnAffine,
    moments: ex.moments,
    activation: (op, src, dst, n4) => ex[op](src, dst, n4),
    map(op, src, dst): void {
      const n = src.length;
      const fn = ex[op];
      this.reserve(MAP_BLOCK * 4);
      const v = v32;
      for (let o = 0; o < n; o += MAP_BLOCK) {
        const m = Math.min(MAP_BLOCK, n - o);
        v.set(src.subarray(o, o + m));
        fn(0, 0, (m + 3) >> 2);
        dst.set(v.subarray(0, m), o);
      }
    },
    reserve(bytes: number): void {
      const need = bytes + 64;
      const have = ex.mem.buffer.byteLength;
      if (need > have) ex.mem.grow(Math.ceil((need - have) / 65536));
      refresh();
    },
    f32: () => (refresh(), v32),
    f64: () => (refresh(), v64),
  };
  return instance;
}
