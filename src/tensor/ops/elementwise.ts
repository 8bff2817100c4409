// Element-wise ops: arithmetic and comparisons with broadcasting (tensor ⊕ tensor, tensor ⊕
// number), unary math and activations (exp, sigmoid, silu, gelu, ...), clamp and where; also
// attached to Tensor as methods (x.add(y), x.silu(), x.where(cond, y), ...).
//
// Dtype rules (kept strict on purpose):
// - tensor ⊕ tensor: both dtypes must be equal (no silent promotion); the result has that dtype,
//   except comparisons and logical ops (bool) and div of integer tensors (float32, true division).
// - tensor ⊕ number: the tensor's dtype, except an integer tensor with a non-integer number or
//   under div (float32); number ⊕ number is an error.
// - float math (exp, log, sigmoid, gelu, reciprocal, ...) of an integer tensor gives float32;
//   neg/abs/relu/square/floor/ceil/round/sign/clamp keep integer dtypes.
// - arithmetic on bool tensors is an error (use logicalAnd/logicalOr or convert with .to()).

import type { BinaryOp, UnaryOp } from "../../backends/backend.ts";
import { full } from "../creation.ts";
import { type DType, isFloat } from "../../core/dtype.ts";
import { TensorError } from "../../core/errors.ts";
import { shapeEquals } from "../../core/shape.ts";
import { Tensor, backendFor, broadcastTo, disposeAll, sameDType, withViews } from "./common.ts";
import { inStorageOrder, suggestFormat } from "./memory-format.ts";

type Operand = Tensor | number;

const BOOL_RESULT = new Set<BinaryOp>(["eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or"]);

/** Ops whose integer inputs give float32 (true math functions). */
const FLOAT_MATH = new Set<UnaryOp>([
  "exp",
  "log",
  "sqrt",
  "rsqrt",
  "sigmoid",
  "tanh",
  "silu",
  "gelu",
  "gelu_tanh",
  "quick_gelu",
  "sin",
  "cos",
  "reciprocal",
]);

/** Run a backend call that fills `out`; free `out` if it throws. */
function filled(out: Tensor, fn: () => void): Tensor {
  try {
    fn();
  } catch (e) {
    out.dispose();
    throw e;
  }
  return out;
}

/** Result dtype of a binary op on a tensor of `dtype` (and a scalar that `scalarIsInt` or not). */
function binaryResultDType(name: string, op: BinaryOp, dtype: DType, scalarIsInt: boolean): DType {
  if (BOOL_RESULT.has(op)) return "bool";
  if (dtype === "bool")
    throw new TensorError(`${name}: arithmetic on bool tensors is not supported; use logicalAnd/logicalOr or convert with .to("int32")`);
  if (isFloat(dtype)) return dtype;
  if (op === "div" || !scalarIsInt) return "float32";
  return dtype;
}

function binaryOp(name: string, op: BinaryOp, a: Operand, b: Operand): Tensor {
  if (typeof a === "number" && typeof b === "number") throw new TensorError(`${name}: needs at least one tensor operand, got two numbers`);
  if (typeof a === "number" || typeof b === "number") {
    const scalarFirst = typeof a === "number";
    const t = (scalarFirst ? b : a) as Tensor;
    const s = (scalarFirst ? a : b) as number;
    if (typeof s !== "number") throw new TensorError(`${name}: operands must be tensors or numbers, got ${typeof s}`);
    const backend = backendFor(name, t);
    const dtype = binaryResultDType(name, op, t.dtype, Number.isInteger(s));
    if (op === "pow" && !scalarFirst && !isFloat(dtype) && s < 0)
      throw new TensorError(`${name}: integers to negative integer powers are not allowed (${t.describe()} ** ${s}); convert to float first`);
    const out = Tensor.empty(t.shape, dtype, t.device, suggestFormat(t.shape, t));
    return filled(out, () => inStorageOrder(out, [t], (o, [v]) => backend.binaryScalar(op, v!, s, o, scalarFirst)));
  }
  if (!(a instanceof Tensor) || !(b instanceof Tensor)) throw new TensorError(`${name}: operands must be tensors or numbers`);
  const backend = backendFor(name, a, b);
  const dtype = binaryResultDType(name, op, sameDType(name, a, b), true);
  if (shapeEquals(a.shape, b.shape)) {
    // no broadcasting: the operands are the views broadcastTo would make (same shape, strides, offset)
    const out = Tensor.empty(a.shape, dtype, a.device, suggestFormat(a.shape, a, b));
    try {
      inStorageOrder(out, [a, b], (o, [va, vb]) => backend.binary(op, va!, vb!, o));
    } catch (e) {
      out.dispose();
      throw e;
    }
    return out;
  }
  const { shape, views } = broadcastTo(name, a, b);
  return withViews(views, (va, vb) => {
    const out = Tensor.empty(shape, dtype, a.device, suggestFormat(shape, a, b));
    return filled(out, () => inStorageOrder(out, [va!, vb!], (o, [x, y]) => backend.binary(op, x!, y!, o)));
  });
}

function unaryOp(name: string, op: UnaryOp, x: Tensor, p0?: number, p1?: number, forceFloat = false): Tensor {
  if (!(x instanceof Tensor)) throw new TensorError(`${name}: expected a tensor, got ${typeof x}`);
  const backend = backendFor(name, x);
  let dtype: DType;
  if (op === "logical_not") dtype = "bool";
  else if (isFloat(x.dtype)) dtype = x.dtype;
  else if (FLOAT_MATH.has(op) || forceFloat) dtype = "float32";
  else if (x.dtype === "bool") throw new TensorError(`${name}: not supported for bool tensors; convert with .to("int32") or .to("float32")`);
  else dtype = x.dtype;
  const out = Tensor.empty(x.shape, dtype, x.device, suggestFormat(x.shape, x));
  return filled(out, () => inStorageOrder(out, [x], (o, [v]) => backend.unary(op, v!, o, p0, p1)));
}

// ---- binary ----------------------------------------------------------------------------------

export const add = (a: Operand, b: Operand): Tensor => binaryOp("add", "add", a, b);
export const sub = (a: Operand, b: Operand): Tensor => binaryOp("sub", "sub", a, b);
export const mul = (a: Operand, b: Operand): Tensor => binaryOp("mul", "mul", a, b);
/** True division: integer operands give float32, as torch.div. */
export const div = (a: Operand, b: Operand): Tensor => binaryOp("div", "div", a, b);
export const pow = (a: Operand, b: Operand): Tensor => binaryOp("pow", "pow", a, b);
/** Element-wise maximum; NaN propagates. */
export const maximum = (a: Operand, b: Operand): Tensor => binaryOp("maximum", "maximum", a, b);
/** Element-wise minimum; NaN propagates. */
export const minimum = (a: Operand, b: Operand): Tensor => binaryOp("minimum", "minimum", a, b);
export const eq = (a: Operand, b: Operand): Tensor => binaryOp("eq", "eq", a, b);
export const ne = (a: Operand, b: Operand): Tensor => binaryOp("ne", "ne", a, b);
export const lt = (a: Operand, b: Operand): Tensor => binaryOp("lt", "lt", a, b);
export const le = (a: Operand, b: Operand): Tensor => binaryOp("le", "le", a, b);
export const gt = (a: Operand, b: Operand): Tensor => binaryOp("gt", "gt", a, b);
export const ge = (a: Operand, b: Operand): Tensor => binaryOp("ge", "ge", a, b);
/** Non-zero values are true; bool result. */
export const logicalAnd = (a: Operand, b: Operand): Tensor => binaryOp("logicalAnd", "logical_and", a, b);
export const logicalOr = (a: Operand, b: Operand): Tensor => binaryOp("logicalOr", "logical_or", a, b);

// ---- unary -----------------------------------------------------------------------------------

export const logicalNot = (x: Tensor): Tensor => unaryOp("logicalNot", "logical_not", x);
export const neg = (x: Tensor): Tensor => unaryOp("neg", "neg", x);
export const exp = (x: Tensor): Tensor => unaryOp("exp", "exp", x);
export const log = (x: Tensor): Tensor => unaryOp("log", "log", x);
export const sqrt = (x: Tensor): Tensor => unaryOp("sqrt", "sqrt", x);
export const rsqrt = (x: Tensor): Tensor => unaryOp("rsqrt", "rsqrt", x);
export const abs = (x: Tensor): Tensor => unaryOp("abs", "abs", x);
export const sigmoid = (x: Tensor): Tensor => unaryOp("sigmoid", "sigmoid", x);
export const tanh = (x: Tensor): Tensor => unaryOp("tanh", "tanh", x);
/** x · sigmoid(x). */
export const silu = (x: Tensor): Tensor => unaryOp("silu", "silu", x);
/** x · sigmoid(1.702 x) (CLIP's activation). */
export const quickGelu = (x: Tensor): Tensor => unaryOp("quickGelu", "quick_gelu", x);
export const sin = (x: Tensor): Tensor => unaryOp("sin", "sin", x);
export const cos = (x: Tensor): Tensor => unaryOp("cos", "cos", x);
export const relu = (x: Tensor): Tensor => unaryOp("relu", "relu", x);
export const square = (x: Tensor): Tensor => unaryOp("square", "square", x);
export const reciprocal = (x: Tensor): Tensor => unaryOp("reciprocal", "reciprocal", x);
export const floor = (x: Tensor): Tensor => unaryOp("floor", "floor", x);
export const ceil = (x: Tensor): Tensor => unaryOp("ceil", "ceil", x);
/** Round to nearest, ties to even (torch.round). */
export const round = (x: Tensor): Tensor => unaryOp("round", "round", x);
export const sign = (x: Tensor): Tensor => unaryOp("sign", "sign", x);

/** GELU: x·Φ(x) with the exact erf ("none") or the tanh approximation ("tanh"), as torch's approximate=. */
export function gelu(x: Tensor, approximate: "none" | "tanh" = "none"): Tensor {
  if (approximate !== "none" && approximate !== "tanh")
    throw new TensorError(`gelu: approximate must be "none" or "tanh", got ${JSON.stringify(approximate)}`);
  return unaryOp("gelu", approximate === "tanh" ? "gelu_tanh" : "gelu", x);
}

/** min(max(x, min), max); either bound may be omitted (not both). NaN propagates. */
export function clamp(x: Tensor, min?: number, max?: number): Tensor {
  if (min === undefined && max === undefined) throw new TensorError("clamp: at least one of min and max must be given");
  const lo = min ?? -Infinity;
  const hi = max ?? Infinity;
  const nonInt = (min !== undefined && !Number.isInteger(min)) || (max !== undefined && !Number.isInteger(max));
  return unaryOp("clamp", "clamp", x, lo, hi, nonInt);
}

// ---- where -----------------------------------------------------------------------------------

/** Dtype of where's result: a tensor operand's (both: equal), float32 when a number does not fit it. */
function whereDType(a: Operand, b: Operand): DType {
  if (a instanceof Tensor && b instanceof Tensor) return sameDType("where", a, b);
  const t = a instanceof Tensor ? a : b instanceof Tensor ? b : null;
  const nums = [a, b].filter((v): v is number => typeof v === "number");
  const allInt = nums.every((v) => Number.isInteger(v));
  if (t === null) return allInt ? "int64" : "float32";
  if (isFloat(t.dtype)) return t.dtype;
  if (!allInt) return "float32";
  if (t.dtype === "bool" && !nums.every((v) => v === 0 || v === 1)) return "int64";
  return t.dtype;
}

/** out = cond ? a : b, broadcasting all three; cond is bool or uint8; a, b tensors or numbers. */
export function where(cond: Tensor, a: Operand, b: Operand): Tensor {
  if (!(cond instanceof Tensor)) throw new TensorError("where: cond must be a tensor");
  if (cond.dtype !== "bool" && cond.dtype !== "uint8") throw new TensorError(`where: cond must be bool or uint8, got ${cond.describe()}`);
  const backend = backendFor("where", cond, a instanceof Tensor ? a : null, b instanceof Tensor ? b : null);
  const dtype = whereDType(a, b);
  const temps: Tensor[] = [];
  const operand = (v: Operand): Tensor => {
    if (typeof v === "number") {
      const t = full([], v, { dtype, device: cond.device });
      temps.push(t);
      return t;
    }
    if (v.dtype === dtype) return v;
    const t = v.to(dtype);
    temps.push(t);
    return t;
  };
  try {
    const ta = operand(a);
    const tb = operand(b);
    const { shape, views } = broadcastTo("where", cond, ta, tb);
    return withViews(views, (vc, va, vb) => {
      const out = Tensor.empty(shape, dtype, cond.device);
      return filled(out, () => backend.where(vc!, va!, vb!, out));
    });
  } finally {
    disposeAll(...temps);
  }
}

// ---- methods ---------------------------------------------------------------------------------

declare module "../tensor.ts" {
  interface Tensor {
    add(other: Tensor | number): Tensor;
    sub(other: Tensor | number): Tensor;
    mul(other: Tensor | number): Tensor;
    div(other: Tensor | number): Tensor;
    pow(other: Tensor | number): Tensor;
    maximum(other: Tensor | number): Tensor;
    minimum(other: Tensor | number): Tensor;
    eq(other: Tensor | number): Tensor;
    ne(other: Tensor | number): Tensor;
    lt(other: Tensor | number): Tensor;
    le(other: Tensor | number): Tensor;
    gt(other: Tensor | number): Tensor;
    ge(other: Tensor | number): Tensor;
    logicalAnd(other: Tensor | number): Tensor;
    logicalOr(other: Tensor | number): Tensor;
    logicalNot(): Tensor;
    neg(): Tensor;
    exp(): Tensor;
    log(): Tensor;
    sqrt(): Tensor;
    rsqrt(): Tensor;
    abs(): Tensor;
    sigmoid(): Tensor;
    tanh(): Tensor;
    silu(): Tensor;
    gelu(approximate?: "none" | "tanh"): Tensor;
    quickGelu(): Tensor;
    sin(): Tensor;
    cos(): Tensor;
    relu(): Tensor;
    square(): Tensor;
    reciprocal(): Tensor;
    floor(): Tensor;
    ceil(): Tensor;
    round(): Tensor;
    sign(): Tensor;
    /** torch's clamp(min, max). */
    clamp(min?: number, max?: number): Tensor;
    /** torch's x.where(cond, y): cond ? this : y. */
    where(cond: Tensor, other: Tensor | number): Tensor;
  }
}

const binaryMethods = { add, sub, mul, div, pow, maximum, minimum, eq, ne, lt, le, gt, ge, logicalAnd, logicalOr };
for (const [name, fn] of Object.entries(binaryMethods)) {
  Object.defineProperty(Tensor.prototype, name, {
    value: function (this: Tensor, other: Operand) {
      return fn(this, other);
    },
    writable: true,
    configurable: true,
  });
}

const unaryMethods = {
  logicalNot,
  neg,
  exp,
  log,
  sqrt,
  rsqrt,
  abs,
  sigmoid,
  tanh,
  silu,
  quickGelu,
  sin,
  cos,
  relu,
  square,
  reciprocal,
  floor,
  ceil,
  round,
  sign,
};
for (const [name, fn] of Object.entries(unaryMethods)) {
  Object.defineProperty(Tensor.prototype, name, {
    value: function (this: Tensor) {
      return fn(this);
    },
    writable: true,
    configurable: true,
  });
}

Tensor.prototype.gelu = function (this: Tensor, approximate: "none" | "tanh" = "none") {
  return gelu(this, approximate);
};
Tensor.prototype.clamp = function (this: Tensor, min?: number, max?: number) {
  return clamp(this, min, max);
};
Tensor.prototype.where = function (this: Tensor, cond: Tensor, other: Operand) {
  return where(cond, this, other);
};
