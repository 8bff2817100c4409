// CPU element-wise kernels: unary math (incl. erf-form GELU through an fdlibm-style erf),
// binary ops on same-shape (broadcast) views, tensor-scalar ops and where(). Float dtypes
// compute on float32 values and round once when stored; int32/int64 compute exactly on
// float64 values. Contiguous float32 inputs and outputs are used in place (no copies), and
// float32 broadcasts with long contiguous runs (bias / embedding adds) are not materialised.

import { roundHalfEven } from "../../core/float32.ts";
import type { BinaryOp, TensorView, UnaryOp } from "../backend.ts";
import { isFloat } from "../../core/dtype.ts";
import { collapseDims, isContiguous, numel } from "../../core/shape.ts";
import { commit, outF32, rawOf, readNum, readRaw, writeRaw, writeValues } from "./strided.ts";
import { MAP_BLOCK, type SimdActivation, type SimdKernels, simdKernels } from "./simd-kernels.ts";
import { hostAlloc } from "../../core/host-memory.ts";

type Num = Float32Array | Float64Array;

/** A buffer the kernel fills with out's logical values: out's own memory for contiguous float32. */
function outBuf(out: TensorView, n: number): Num {
  return isFloat(out.dtype) ? outF32(out) : hostAlloc(8 * n, "float64 scratch of a CPU kernel", () => new Float64Array(n));
}

/** Scalars meet float tensors as float32 values (torch converts a Python scalar to the tensor's compute type). */
function scalarFor(x: TensorView, s: number): number {
  return isFloat(x.dtype) ? Math.fround(s) : s;
}

// ---- erf / erfc ------------------------------------------------------------------------------
//
// Piecewise rational approximations of Sun's fdlibm s_erf.c (1993; also FreeBSD msun and musl),
// evaluated in float64: |x| < 0.84375: erf = x + x·P(x²)/Q(x²); 0.84375 ≤ |x| < 1.25: a rational
// function of s = |x| - 1 around erf(1); 1.25 ≤ |x| < 28: erfc = exp(-x² - 0.5625 + R(1/x²)/S(1/x²)) / x,
// with x² split through a float32 head so that exp(-x²) keeps full precision. Each piece has a
// relative error below 2^-57 against the true function, far below the ≤ 1e-7 we need.

const ERX = 8.45062911510467529297e-1; // erf(1) rounded to float32
const PP = [1.28379167095512558561e-1, -3.25042107247001499370e-1, -2.84817495755985104766e-2, -5.77027029648944159157e-3, -2.37630166566501626084e-5];
const QQ = [3.97917223959155352819e-1, 6.50222499887672944485e-2, 5.08130628187576562776e-3, 1.32494738004321644526e-4, -3.96022827877536812320e-6];
const PA = [
  -2.36211856075265944077e-3, 4.14856118683748331666e-1, -3.72207876035701323847e-1, 3.18346619901161753674e-1, -1.10894694282396677476e-1,
  3.54783043256182359371e-2, -2.16637559486879084300e-3,
];
const QA = [1.06420880400844228286e-1, 5.40397917702171048937e-1, 7.18286544141962662868e-2, 1.26171219808761642112e-1, 1.36370839120290507362e-2, 1.19844998467991074170e-2];
const RA = [
  -9.86494403484714822705e-3, -6.93858572707181764372e-1, -1.05586262253232909814e1, -6.23753324503260060396e1, -1.62396669462573470355e2,
  -1.84605092906711035994e2, -8.12874355063065934246e1, -9.81432934416914548592,
];
const SA = [
  1.96512716674392571292e1, 1.37657754143519042600e2, 4.34565877475229228821e2, 6.45387271733267880336e2, 4.29008140027567833386e2,
  1.08635005541779435134e2, 6.57024977031928170135, -6.04244152148580987438e-2,
];
const RB = [
  -9.86494292470009928597e-3, -7.99283237680523006574e-1, -1.77579549177547519889e1, -1.60636384855821916062e2, -6.37566443368389627722e2,
  -1.02509513161107724954e3, -4.83519191608651397019e2,
];
const SB = [
  3.03380607434824582924e1, 3.25792512996573918826e2, 1.53672958608443695994e3, 3.19985821950859553908e3, 2.55305040643316442583e3,
  4.74528541206955367215e2, -2.24409524465858183362e1,
];

/** c0 + z·c1 + z²·c2 + ... (Horner). */
function poly(c: readonly number[], z: number): number {
  let r = c[c.length - 1]!;
  for (let i = c.length - 2; i >= 0; i--) r = r * z + c[i]!;
  return r;
}

/** 1 + z·c0 + z²·c1 + ... */
function poly1(c: readonly number[], z: number): number {
  return 1 + z * poly(c, z);
}

/** (erf(a) - a) / a for |a| < 0.84375. */
function erfSmallRatio(a: number): number {
  const z = a * a;
  return poly(PP, z) / poly1(QQ, z);
}

/** erf(1 + s) - ERX for s = |x| - 1 in [-0.15625, 0.25). */
function erfNearOne(s: number): number {
  return poly(PA, s) / poly1(QA, s);
}

/** erfc(a) for 1.25 <= a < 28. */
function erfcTail(a: number): number {
  const s = 1 / (a * a);
  const rs = a < 1 / 0.35 ? poly(RA, s) / poly1(SA, s) : poly(RB, s) / poly1(SB, s);
  const hi = Math.fround(a); // hi² is exact; -a² = -hi² + (hi - a)(hi + a)
  return (Math.exp(-hi * hi - 0.5625) * Math.exp((hi - a) * (hi + a) + rs)) / a;
}

/** The error function, float64 accurate to a few ulps. */
export function erf(x: number): number {
  const a = Math.abs(x);
  if (a < 0.84375) return x + x * erfSmallRatio(x);
  if (a < 1.25) return x > 0 ? ERX + erfNearOne(a - 1) : -ERX - erfNearOne(a - 1);
  if (a >= 6) return x > 0 ? 1 : x < 0 ? -1 : x; // also NaN -> NaN
  const r = 1 - erfcTail(a);
  return x > 0 ? r : -r;
}

/** The complementary error function 1 - erf(x), accurate also where it is tiny (large x). */
export function erfc(x: number): number {
  const a = Math.abs(x);
  if (a < 0.84375) return 1 - (x + x * erfSmallRatio(x));
  if (a < 1.25) return x > 0 ? 1 - ERX - erfNearOne(a - 1) : 1 + ERX + erfNearOne(a - 1);
  if (x !== x) return x;
  if (x > 0) return x < 28 ? erfcTail(a) : 0;
  return a < 6 ? 2 - erfcTail(a) : 2;
}

const SQRT1_2 = Math.SQRT1_2;
const GELU_TANH_K = Math.sqrt(2 / Math.PI);

/** x·Φ(x); the negative side goes through erfc so tiny results keep their relative precision. */
function geluErf(x: number): number {
  return x >= 0 ? 0.5 * x * (1 + erf(x * SQRT1_2)) : 0.5 * x * erfc(-x * SQRT1_2);
}

// ---- unary -----------------------------------------------------------------------------------

function unaryLoop(op: UnaryOp, x: Num, o: Num, n: number, p0: number, p1: number): void {
  switch (op) {
    case "neg":
      for (let i = 0; i < n; i++) o[i] = -x[i]!;
      return;
    case "exp":
      for (let i = 0; i < n; i++) o[i] = Math.exp(x[i]!);
      return;
    case "log":
      for (let i = 0; i < n; i++) o[i] = Math.log(x[i]!);
      return;
    case "sqrt":
      for (let i = 0; i < n; i++) o[i] = Math.sqrt(x[i]!);
      return;
    case "rsqrt":
      for (let i = 0; i < n; i++) o[i] = 1 / Math.sqrt(x[i]!);
      return;
    case "abs":
      for (let i = 0; i < n; i++) o[i] = Math.abs(x[i]!);
      return;
    case "sigmoid":
      // 1/(1+e^-x) never overflows to NaN: e^-x = inf gives 0, and the relative error stays ~1 ulp.
      for (let i = 0; i < n; i++) o[i] = 1 / (1 + Math.exp(-x[i]!));
      return;
    case "tanh":
      for (let i = 0; i < n; i++) o[i] = Math.tanh(x[i]!);
      return;
    case "silu":
      for (let i = 0; i < n; i++) {
        const v = x[i]!;
        o[i] = v / (1 + Math.exp(-v));
      }
      return;
    case "gelu":
      for (let i = 0; i < n; i++) o[i] = geluErf(x[i]!);
      return;
    case "gelu_tanh":
      for (let i = 0; i < n; i++) {
        const v = x[i]!;
        o[i] = 0.5 * v * (1 + Math.tanh(GELU_TANH_K * (v + 0.044715 * v * v * v)));
      }
      return;
    case "quick_gelu":
      for (let i = 0; i < n; i++) {
        const v = x[i]!;
        o[i] = v / (1 + Math.exp(-1.702 * v));
      }
      return;
    case "sin":
      for (let i = 0; i < n; i++) o[i] = Math.sin(x[i]!);
      return;
    case "cos":
      for (let i = 0; i < n; i++) o[i] = Math.cos(x[i]!);
      return;
    case "relu":
      for (let i = 0; i < n; i++) {
        const v = x[i]!;
        o[i] = v > 0 ? v : v !== v ? v : 0; // NaN stays NaN, as torch
      }
      return;
    case "square":
      for (let i = 0; i < n; i++) o[i] = x[i]! * x[i]!;
      return;
    case "reciprocal":
      for (let i = 0; i < n; i++) o[i] = 1 / x[i]!;
      return;
    case "floor":
      for (let i = 0; i < n; i++) o[i] = Math.floor(x[i]!);
      return;
    case "ceil":
      for (let i = 0; i < n; i++) o[i] = Math.ceil(x[i]!);
      return;
    case "round":
      for (let i = 0; i < n; i++) o[i] = roundHalfEven(x[i]!);
      return;
    case "sign":
      for (let i = 0; i < n; i++) {
        const v = x[i]!;
        o[i] = v > 0 ? 1 : v < 0 ? -1 : v; // ±0 and NaN pass through
      }
      return;
    case "logical_not":
      for (let i = 0; i < n; i++) o[i] = x[i] === 0 ? 1 : 0;
      return;
    case "clamp":
      // min(max(x, lo), hi): NaN propagates; lo > hi gives hi, as torch.clamp.
      for (let i = 0; i < n; i++) o[i] = Math.min(Math.max(x[i]!, p0), p1);
      return;
    default:
      throw new Error(`cpu unary: unknown op "${op as string}"`);
  }
}

/** The exp-heavy activations with a WebAssembly SIMD kernel (simd-kernels.ts) for float32 values. */
const SIMD_UNARY: Partial<Record<UnaryOp, SimdActivation>> = {
  exp: "exp",
  sigmoid: "sigmoid",
  silu: "silu",
  quick_gelu: "quickGelu",
  gelu: "gelu",
  gelu_tanh: "geluTanh",
  tanh: "tanh",
};

/**
 * A SIMD activation of a float32 view whose collapsed innermost dim is contiguous (e.g. one half of a chunk(2, -1),
 * GEGLU's gate), read in place: runs are gathered straight into the kernel's block (no contiguous copy of x).
 * Returns false when the layout does not fit.
 */
function activationRuns(k: SimdKernels, vec: SimdActivation, x: TensorView, o: Float32Array, n: number): boolean {
  if (x.dtype !== "float32") return false;
  const c = collapseDims(x.shape, x.strides);
  const nd = c.shape.length;
  const st = c.strides[0]!;
  const inner = nd ? c.shape[nd - 1]! : 1;
  if (nd < 2 || st[nd - 1] !== 1 || inner < MIN_RUN) return false;
  const A = rawOf(x) as Float32Array;
  const counter = new Array<number>(nd - 1).fill(0);
  k.reserve(MAP_BLOCK * 4);
  const v = k.f32();
  let fill = 0; // floats gathered in the block, for o[oOff - fill, oOff)
  let aOff = x.offset;
  const flush = (end: number) => {
    k.activation(vec, 0, 0, (fill + 3) >> 2);
    o.set(v.subarray(0, fill), end - fill);
    fill = 0;
  };
  for (let oOff = 0; oOff < n; oOff += inner) {
    if (inner > MAP_BLOCK) k.map(vec, A.subarray(aOff, aOff + inner), o.subarray(oOff, oOff + inner));
    else {
      if (fill + inner > MAP_BLOCK) flush(oOff);
      v.set(A.subarray(aOff, aOff + inner), fill);
      fill += inner;
    }
    for (let d = nd - 2; d >= 0; d--) {
      counter[d]!++;
      aOff += st[d]!;
      if (counter[d]! < c.shape[d]!) break;
      aOff -= st[d]! * c.shape[d]!;
      counter[d] = 0;
    }
  }
  if (fill > 0) flush(n);
  return true;
}

export function unary(op: UnaryOp, x: TensorView, out: TensorView, p0 = -Infinity, p1 = Infinity): void {
  const n = numel(out.shape);
  if (n === 0) return;
  const vec = SIMD_UNARY[op];
  const k = vec !== undefined ? simdKernels() : null;
  if (k && out.dtype === "float32" && !isContiguous(x.shape, x.strides)) {
    const o = outF32(out);
    if (activationRuns(k, vec!, x, o, n)) {
      commit(out, o);
      return;
    }
  }
  const xs = readNum(x);
  const o = outBuf(out, n);
  if (k && xs instanceof Float32Array && o instanceof Float32Array) k.map(vec!, xs, o);
  else unaryLoop(op, xs, o, n, p0, p1);
  commit(out, o);
}

// ---- binary ----------------------------------------------------------------------------------

/** pow with C's special cases (pow(1, y) = 1 and pow(-1, ±inf) = 1), which JS's ** lacks. */
function powC(x: number, y: number): number {
  if (x === 1 || y === 0) return 1;
  if (x === -1 && (y === Infinity || y === -Infinity)) return 1;
  return x ** y;
}

/**
 * The hottest ops on float32 only. Kept apart from the generic loops below so that their type
 * feedback never sees Float64Array (integer tensors) and the JIT keeps them monomorphic.
 */
function arithF32(op: BinaryOp, a: Float32Array, b: Float32Array, o: Float32Array, n: number): boolean {
  switch (op) {
    case "add":
      for (let i = 0; i < n; i++) o[i] = a[i]! + b[i]!;
      return true;
    case "sub":
      for (let i = 0; i < n; i++) o[i] = a[i]! - b[i]!;
      return true;
    case "mul":
      for (let i = 0; i < n; i++) o[i] = a[i]! * b[i]!;
      return true;
    case "div":
      for (let i = 0; i < n; i++) o[i] = a[i]! / b[i]!;
      return true;
    default:
      return false;
  }
}

function binaryLoop(op: BinaryOp, a: Num, b: Num, o: Num, n: number): void {
  if (a instanceof Float32Array && b instanceof Float32Array && o instanceof Float32Array && arithF32(op, a, b, o, n)) return;
  switch (op) {
    case "add":
      for (let i = 0; i < n; i++) o[i] = a[i]! + b[i]!;
      return;
    case "sub":
      for (let i = 0; i < n; i++) o[i] = a[i]! - b[i]!;
      return;
    case "mul":
      for (let i = 0; i < n; i++) o[i] = a[i]! * b[i]!;
      return;
    case "div":
      for (let i = 0; i < n; i++) o[i] = a[i]! / b[i]!;
      return;
    case "pow":
      for (let i = 0; i < n; i++) o[i] = powC(a[i]!, b[i]!);
      return;
    case "maximum":
      for (let i = 0; i < n; i++) o[i] = Math.max(a[i]!, b[i]!);
      return;
    case "minimum":
      for (let i = 0; i < n; i++) o[i] = Math.min(a[i]!, b[i]!);
      return;
    case "eq":
      for (let i = 0; i < n; i++) o[i] = a[i] === b[i] ? 1 : 0;
      return;
    case "ne":
      for (let i = 0; i < n; i++) o[i] = a[i] !== b[i] ? 1 : 0;
      return;
    case "lt":
      for (let i = 0; i < n; i++) o[i] = a[i]! < b[i]! ? 1 : 0;
      return;
    case "le":
      for (let i = 0; i < n; i++) o[i] = a[i]! <= b[i]! ? 1 : 0;
      return;
    case "gt":
      for (let i = 0; i < n; i++) o[i] = a[i]! > b[i]! ? 1 : 0;
      return;
    case "ge":
      for (let i = 0; i < n; i++) o[i] = a[i]! >= b[i]! ? 1 : 0;
      return;
    case "logical_and":
      for (let i = 0; i < n; i++) o[i] = a[i] !== 0 && b[i] !== 0 ? 1 : 0;
      return;
    case "logical_or":
      for (let i = 0; i < n; i++) o[i] = a[i] !== 0 || b[i] !== 0 ? 1 : 0;
      return;
    default:
      throw new Error(`cpu binary: unknown op "${op as string}"`);
  }
}

/** o = op(a, s); the order-sensitive ops take `first` = the scalar is the left operand. */
/** Float32-only twin of scalarLoop's hottest cases (see arithF32). */
function arithScalarF32(op: BinaryOp, a: Float32Array, s: number, o: Float32Array, n: number, first: boolean): boolean {
  switch (op) {
    case "add":
      for (let i = 0; i < n; i++) o[i] = a[i]! + s;
      return true;
    case "sub":
      if (first) for (let i = 0; i < n; i++) o[i] = s - a[i]!;
      else for (let i = 0; i < n; i++) o[i] = a[i]! - s;
      return true;
    case "mul":
      for (let i = 0; i < n; i++) o[i] = a[i]! * s;
      return true;
    case "div":
      if (first) for (let i = 0; i < n; i++) o[i] = s / a[i]!;
      else for (let i = 0; i < n; i++) o[i] = a[i]! / s;
      return true;
    default:
      return false;
  }
}

function scalarLoop(op: BinaryOp, a: Num, s: number, o: Num, n: number, first: boolean): void {
  if (a instanceof Float32Array && o instanceof Float32Array && arithScalarF32(op, a, s, o, n, first)) return;
  switch (op) {
    case "add":
      for (let i = 0; i < n; i++) o[i] = a[i]! + s;
      return;
    case "sub":
      if (first) for (let i = 0; i < n; i++) o[i] = s - a[i]!;
      else for (let i = 0; i < n; i++) o[i] = a[i]! - s;
      return;
    case "mul":
      for (let i = 0; i < n; i++) o[i] = a[i]! * s;
      return;
    case "div":
      if (first) for (let i = 0; i < n; i++) o[i] = s / a[i]!;
      else for (let i = 0; i < n; i++) o[i] = a[i]! / s;
      return;
    case "pow":
      if (first) for (let i = 0; i < n; i++) o[i] = powC(s, a[i]!);
      else if (s === 2) for (let i = 0; i < n; i++) o[i] = a[i]! * a[i]!;
      else for (let i = 0; i < n; i++) o[i] = powC(a[i]!, s);
      return;
    case "maximum":
      for (let i = 0; i < n; i++) o[i] = Math.max(a[i]!, s);
      return;
    case "minimum":
      for (let i = 0; i < n; i++) o[i] = Math.min(a[i]!, s);
      return;
    case "eq":
      for (let i = 0; i < n; i++) o[i] = a[i] === s ? 1 : 0;
      return;
    case "ne":
      for (let i = 0; i < n; i++) o[i] = a[i] !== s ? 1 : 0;
      return;
    // s < a  <=>  a > s, and so on: mirror the comparison when the scalar comes first.
    case "lt":
      if (first) for (let i = 0; i < n; i++) o[i] = s < a[i]! ? 1 : 0;
      else for (let i = 0; i < n; i++) o[i] = a[i]! < s ? 1 : 0;
      return;
    case "le":
      if (first) for (let i = 0; i < n; i++) o[i] = s <= a[i]! ? 1 : 0;
      else for (let i = 0; i < n; i++) o[i] = a[i]! <= s ? 1 : 0;
      return;
    case "gt":
      if (first) for (let i = 0; i < n; i++) o[i] = s > a[i]! ? 1 : 0;
      else for (let i = 0; i < n; i++) o[i] = a[i]! > s ? 1 : 0;
      return;
    case "ge":
      if (first) for (let i = 0; i < n; i++) o[i] = s >= a[i]! ? 1 : 0;
      else for (let i = 0; i < n; i++) o[i] = a[i]! >= s ? 1 : 0;
      return;
    case "logical_and": {
      const t = s !== 0;
      for (let i = 0; i < n; i++) o[i] = t && a[i] !== 0 ? 1 : 0;
      return;
    }
    case "logical_or": {
      const t = s !== 0;
      for (let i = 0; i < n; i++) o[i] = t || a[i] !== 0 ? 1 : 0;
      return;
    }
    default:
      throw new Error(`cpu binaryScalar: unknown op "${op as string}"`);
  }
}

/** Shortest innermost run worth the per-run overhead of the broadcast path. */
const MIN_RUN = 32;

/**
 * Broadcast without materialising: float32 operands whose collapsed innermost dim is contiguous
 * (stride 1) or broadcast (stride 0) in each, e.g. [2,320,64,64] + [2,320,1,1], run as one
 * tight loop per run of the output. Returns false when the layout does not fit.
 */
function binaryRuns(op: BinaryOp, a: TensorView, b: TensorView, out: TensorView, n: number): boolean {
  if (a.dtype !== "float32" || b.dtype !== "float32" || out.dtype !== "float32") return false;
  if (!isContiguous(out.shape, out.strides)) return false;
  const c = collapseDims(out.shape, a.strides, b.strides);
  const nd = c.shape.length;
  if (nd < 1) return false;
  const inner = c.shape[nd - 1]!;
  const [as, bs] = [c.strides[0]!, c.strides[1]!];
  const ai = as[nd - 1]!;
  const bi = bs[nd - 1]!;
  if (inner < MIN_RUN || ai > 1 || bi > 1 || ai < 0 || bi < 0 || (ai === 0 && bi === 0)) return false;
  if (nd === 1 && ai === 1 && bi === 1) return false; // plain contiguous: the zero-copy path is as fast
  const A = rawOf(a) as Float32Array;
  const B = rawOf(b) as Float32Array;
  const o = outF32(out);
  const counter = new Array<number>(nd - 1).fill(0);
  let aOff = a.offset;
  let bOff = b.offset;
  for (let oOff = 0; oOff < n; oOff += inner) {
    const oRun = o.subarray(oOff, oOff + inner);
    if (ai === 1 && bi === 1) binaryLoop(op, A.subarray(aOff, aOff + inner), B.subarray(bOff, bOff + inner), oRun, inner);
    else if (bi === 0) scalarLoop(op, A.subarray(aOff, aOff + inner), B[bOff]!, oRun, inner, false);
    else scalarLoop(op, B.subarray(bOff, bOff + inner), A[aOff]!, oRun, inner, true);
    for (let k = nd - 2; k >= 0; k--) {
      counter[k]!++;
      aOff += as[k]!;
      bOff += bs[k]!;
      if (counter[k]! < c.shape[k]!) break;
      aOff -= as[k]! * c.shape[k]!;
      bOff -= bs[k]! * c.shape[k]!;
      counter[k] = 0;
    }
  }
  commit(out, o);
  return true;
}

export function binary(op: BinaryOp, a: TensorView, b: TensorView, out: TensorView): void {
  const n = numel(out.shape);
  if (n === 0) return;
  if (binaryRuns(op, a, b, out, n)) return;
  const as = readNum(a);
  const bs = readNum(b);
  const o = outBuf(out, n);
  binaryLoop(op, as, bs, o, n);
  commit(out, o);
}

export function binaryScalar(op: BinaryOp, a: TensorView, scalar: number, out: TensorView, scalarFirst: boolean): void {
  const n = numel(out.shape);
  if (n === 0) return;
  const as = readNum(a);
  const o = outBuf(out, n);
  scalarLoop(op, as, scalarFor(a, scalar), o, n, scalarFirst);
  commit(out, o);
}

// ---- where -----------------------------------------------------------------------------------

export function where(cond: TensorView, a: TensorView, b: TensorView, out: TensorView): void {
  const n = numel(out.shape);
  if (n === 0) return;
  const c = readRaw(cond) as Uint8Array;
  if (a.dtype === out.dtype && b.dtype === out.dtype) {
    // Same dtype everywhere: select raw elements (bit-exact for every dtype, 16-bit floats included).
    const ar = readRaw(a);
    const br = readRaw(b);
    const contiguousOut = isContiguous(out.shape, out.strides);
    const or = contiguousOut ? rawOf(out).subarray(out.offset, out.offset + n) : readRaw(out).slice();
    if (ar instanceof BigInt64Array) {
      const o = or as BigInt64Array;
      const bb = br as BigInt64Array;
      for (let i = 0; i < n; i++) o[i] = c[i] ? ar[i]! : bb[i]!;
    } else {
      const o = or as Exclude<typeof or, BigInt64Array>;
      const bb = br as Exclude<typeof br, BigInt64Array>;
      for (let i = 0; i < n; i++) o[i] = c[i] ? ar[i]! : bb[i]!;
    }
    if (!contiguousOut) writeRaw(out, or);
    return;
  }
  const av = readNum(a);
  const bv = readNum(b);
  const o = new Float64Array(n);
  for (let i = 0; i < n; i++) o[i] = c[i] ? av[i]! : bv[i]!;
  writeValues(out, o);
}
