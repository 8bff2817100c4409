// Symbol table of our kernels library (kernels/build/libbdkernels.so, or the emulated one): the host launchers
// `bdk_<op>_<tag>` exported by kernels/*.cu (see each file's header for the argument conventions), the mirror
// of their op-code order and of the bd::Strided params struct, and the ABI check against bdk_abi().
// Every launcher returns a cudaError_t, checked with cudartCheck(). Tags: f32 f16 bf16 i32 i64 u8 (bool = u8).

import type { NativeLibrary, SymbolSpec, SymbolTable } from "./bind.ts";

export const TAGS = ["f32", "f16", "bf16", "i32", "i64", "u8"] as const;
export const FLOAT_TAGS = ["f32", "f16", "bf16"] as const;
export type Tag = (typeof TAGS)[number];
export type FloatTag = (typeof FLOAT_TAGS)[number];


// Op codes: the index in these lists (common.cuh BD_UNARY_OPS / BD_BINARY_OPS / BD_REDUCE_OPS, same order as
// src/backends/backend.ts); checked against the library by checkKernelAbi().
export const UNARY_OPS = [
  "neg", "exp", "log", "sqrt", "rsqrt", "abs", "sigmoid", "tanh", "silu", "gelu", "gelu_tanh", "quick_gelu", "sin", "cos",
  "relu", "square", "reciprocal", "floor", "ceil", "round", "sign", "logical_not", "clamp",
] as const;
export const BINARY_OPS = [
  "add", "sub", "mul", "div", "pow", "maximum", "minimum", "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or",
] as const;
export const REDUCE_OPS = ["sum", "mean", "max", "min", "argmax", "argmin", "var", "prod"] as const;
/** Unary ops the integer launchers accept (the others need a float input: cast first). */
export const INT_UNARY_OPS = new Set(["neg", "abs", "relu", "square", "floor", "ceil", "round", "sign", "logical_not", "clamp"]);

export const unaryCode = (op: string): number => code(UNARY_OPS, op, "unary");
export const binaryCode = (op: string): number => code(BINARY_OPS, op, "binary");
export const reduceCode = (op: string): number => code(REDUCE_OPS, op, "reduce");
function code(list: readonly string[], op: string, kind: string): number {
  const i = list.indexOf(op);
  if (i < 0) throw new Error(`no ${kind} kernel op "${op}"`);
  return i;
}

/**
 * bd::Strided (common.cuh): { i32 ndim; i32 nargs; i64 numel; i64 shape[8]; i64 stride[4][8] }, 336 bytes.
 * TypeScript fills ndim, shape and the strides of each operand (element strides; 0 = broadcast); the
 * launcher sets nargs and numel and merges dims.
 */
export const STRIDED = { bytes: 336, ndim: 0, nargs: 4, numel: 8, shape: 16, stride: 80, maxDims: 8, maxArgs: 4 } as const;

/** A reusable host buffer holding one bd::Strided. */
export class StridedParams {
  readonly bytes = new Uint8Array(STRIDED.bytes);
  private readonly u32 = new Uint32Array(this.bytes.buffer);
  private readonly i32 = new Int32Array(this.bytes.buffer);

  /** Describe `shape` and one stride list per operand (out first). Returns the buffer to pass as `p`. */
  set(shape: readonly number[], strides: readonly (readonly number[])[]): Uint8Array {
    const nd = shape.length;
    if (nd > STRIDED.maxDims) throw new Error(`kernels take at most ${STRIDED.maxDims} dims, got ${nd}`);
    if (strides.length > STRIDED.maxArgs) throw new Error(`kernels take at most ${STRIDED.maxArgs} operands`);
    this.bytes.fill(0);
    this.i32[STRIDED.ndim >> 2] = nd;
    for (let d = 0; d < nd; d++) this.i64(STRIDED.shape + 8 * d, shape[d]!);
    strides.forEach((s, a) => {
      if (s.length !== nd) throw new Error(`operand ${a} has ${s.length} strides for ${nd} dims`);
      for (let d = 0; d < nd; d++) this.i64(STRIDED.stride + 8 * (a * STRIDED.maxDims + d), s[d]!);
    });
    return this.bytes;
  }

  /** Little-endian int64 from a safe integer, without BigInt. */
  private i64(byteOffset: number, v: number): void {
    const hi = Math.floor(v / 0x100000000);
    this.u32[byteOffset >> 2] = v - hi * 0x100000000;
    this.u32[(byteOffset >> 2) + 1] = hi >>> 0;
  }
}

/**
 * bd::AttentionParams (kernels/attention.cu): { i64 B, H, Sq, Sk, D, Dv; i64 q_stride[4], k_stride[4], v_stride[4],
 * m_stride[4]; f32 scale; i32 causal; i32 mask_type; i32 reserved }, 192 bytes. Byte offsets, checked against
 * bdk_attention_params_layout() by checkAttentionLayout().
 */
export const ATTENTION_PARAMS = { bytes: 192, B: 0, qStride: 48, kStride: 80, vStride: 112, mStride: 144, scale: 176, causal: 180, maskType: 184 } as const;
/** Mask kinds of bd::AttentionParams.mask_type. */
export const ATTENTION_MASK = { none: 0, float32: 1, float16: 2, bfloat16: 3, keep: 4 } as const;
/**
 * Largest head dim (D and Dv) the tensor-core attention kernel (bdk_attention_tc_<t>, float16 / bfloat16) takes;
 * the CUDA-core kernel (bdk_attention_<t>) takes any, splitting heads wider than 160 into chunks.
 */
export const ATTENTION_TC_MAX_HEAD = 256;

/** A reusable host buffer holding one bd::AttentionParams. */
export class AttentionParamsBuffer {
  readonly bytes = new Uint8Array(ATTENTION_PARAMS.bytes);
  private readonly view = new DataView(this.bytes.buffer);
  private readonly u32 = new Uint32Array(this.bytes.buffer);

  /** sizes = [B, H, Sq, Sk, D, Dv]; strides of q, k, v, mask (4 each; mask all 0 when absent). */
  set(
    sizes: readonly number[], q: readonly number[], k: readonly number[], v: readonly number[], m: readonly number[],
    scale: number, causal: boolean, maskType: number,
  ): Uint8Array {
    const w = (off: number, x: number) => {
      // little-endian int64 of a safe integer, without BigInt (called per launch)
      const hi = Math.floor(x / 0x100000000);
      this.u32[off >> 2] = x - hi * 0x100000000;
      this.u32[(off >> 2) + 1] = hi >>> 0;
    };
    sizes.forEach((x, i) => w(ATTENTION_PARAMS.B + 8 * i, x));
    for (const [base, s] of [[ATTENTION_PARAMS.qStride, q], [ATTENTION_PARAMS.kStride, k], [ATTENTION_PARAMS.vStride, v], [ATTENTION_PARAMS.mStride, m]] as const)
      for (let i = 0; i < 4; i++) w(base + 8 * i, s[i] ?? 0);
    this.view.setFloat32(ATTENTION_PARAMS.scale, scale, true);
    this.view.setInt32(ATTENTION_PARAMS.causal, causal ? 1 : 0, true);
    this.view.setInt32(ATTENTION_PARAMS.maskType, maskType, true);
    this.view.setInt32(ATTENTION_PARAMS.maskType + 4, 0, true);
    return this.bytes;
  }
}

/** Compare bdk_attention_params_layout() with ATTENTION_PARAMS; throws on any difference. */
export function checkAttentionLayout(layout: string | null, path: string): void {
  const P = ATTENTION_PARAMS;
  const ours = [P.bytes, P.B, P.qStride, P.kStride, P.vStride, P.mStride, P.scale, P.causal, P.maskType].join(",");
  if (layout !== ours)
    throw new Error(`kernels library ${path}: bd::AttentionParams layout ${layout} != ${ours} (ffi/cuda/kernels.ts). Rebuild it with \`bun scripts/build-kernels.ts\`.`);
}

// ---- the symbol table
const S = "i32"; // cudaError_t
const P = "ptr";
const I = "i64";
const spec = (...args: SymbolSpec["args"]): SymbolSpec => ({ args, returns: S });

function buildTable(): Record<string, SymbolSpec> {
  const t: Record<string, SymbolSpec> = {
    bdk_abi: { args: [], returns: "cstring" },
    bdk_last_error: { args: [], returns: "cstring" },
    bdk_cudart_version: { args: [], returns: "i32", optional: true }, // CUDART_VERSION built against (0: emulated)
  };
  for (const g of TAGS) {
    t[`bdk_unary_${g}`] = spec("i32", P, P, P, "f32", "f32", P); // (op, p{out,x}, out, x, p0, p1, stream)
    t[`bdk_binary_${g}`] = spec("i32", P, P, P, P, P); // (op, p{out,a,b}, out, a, b, stream)
    t[`bdk_binary_scalar_${g}`] = spec("i32", P, P, P, "f64", "i32", P); // (op, p{out,a}, out, a, s, scalar_first, stream)
    t[`bdk_where_${g}`] = spec(P, P, P, P, P, P); // (p{out,cond,a,b}, out, cond, a, b, stream)
    t[`bdk_copy_${g}`] = spec(P, P, P, P); // (p{out,in}, out, in, stream)
    t[`bdk_fill_${g}`] = spec(P, P, "f64", P); // (p{out}, out, value, stream)
    t[`bdk_cast_${g}_bool`] = spec(P, P, P, P);
    for (const d of TAGS) t[`bdk_cast_${g}_${d}`] = spec(P, P, P, P); // (p{out,in}, out, in, stream)
    t[`bdk_upsample_nearest2d_${g}`] = spec(P, P, I, I, I, I, I, P); // (out, x, planes, H, W, OH, OW, stream)
    t[`bdk_index_select_${g}`] = spec(P, P, P, I, I, I, I, "i32", P, P); // (out, x, idx, outer, dim, inner, n, i64, bad, stream)
    t[`bdk_gather_${g}`] = spec(P, P, P, P, I, I, "i32", P, P); // (p{out,idx,x}, out, x, idx, x_dim_stride, dim, i64, bad, stream)
    t[`bdk_argsort_${g}`] = spec(P, P, I, I, "i32", P); // (out i64, x, rows, n, descending, stream)
  }
  for (const g of [...FLOAT_TAGS, "i32", "i64"]) {
    t[`bdk_scatter_add_${g}`] = spec(P, P, P, P, I, I, "i32", P, P); // (p{out,idx,src}, out, idx, src, out_dim_stride, dim, i64, bad, stream)
    // (p{out,idx,src} over lines, out, idx, src, n, idx_dim_stride, src_dim_stride, out_dim_stride, dim, i64, bad, stream)
    t[`bdk_scatter_add_lines_${g}`] = spec(P, P, P, P, I, I, I, I, I, "i32", P, P);
  }
  for (const g of FLOAT_TAGS) {
    t[`bdk_geglu_${g}`] = spec(P, P, I, I, "i32", P); // (out, x, rows, inner, tanh_approx, stream)
    t[`bdk_reduce_${g}`] = spec("i32", P, P, I, I, I, "f32", P); // (op, out, x, outer, r, inner, correction, stream)
    t[`bdk_softmax_${g}`] = spec(P, P, I, I, "i32", P); // (out, x, rows, cols, log, stream)
    t[`bdk_group_norm_${g}`] = spec(P, P, P, P, P, I, I, I, "i32", "f32", "i32", P, P); // (out, x, w, b, add, N, C, S, groups, eps, silu, ws, stream)
    t[`bdk_group_norm_nhwc_${g}`] = spec(P, P, P, P, P, I, I, I, "i32", "f32", "i32", P, P); // kernels/norm_nhwc.cu: as bdk_group_norm_<t>, x and out [N, S, C]
    t[`bdk_layer_norm_${g}`] = spec(P, P, P, P, I, I, "f32", P); // (out, x, w, b, rows, cols, eps, stream)
    t[`bdk_timestep_embedding_${g}`] = spec(P, P, I, I, "i32", "f32", "f32", "f32", P); // (out, t, n, dim, flip, shift, scale, max_period, stream)
    t[`bdk_attention_${g}`] = spec(P, P, P, P, P, P, P); // (p AttentionParams, out, q, k, v, mask, stream)
  }
  for (const g of ["f16", "bf16"]) {
    t[`bdk_attention_tc_${g}`] = spec(P, P, P, P, P, P, P); // tensor cores (kernels/attention_tc.cu): as bdk_attention_<t>, D, Dv ≤ 256
    t[`bdk_test_mma_${g}`] = spec(P, P, P, P, P); // (d f32[16,8], a T[16,16], b T[16,8], c f32[16,8], stream): d = a·b + c, one mma.sync
  }
  t.bdk_test_ldmatrix_trans = spec(P, P, P); // (out u32[32,4], m u16[4,8,8], stream): one ldmatrix .x4 .trans
  t.bdk_attention_params_layout = { args: [], returns: "cstring" };
  t.bdk_group_norm_workspace = { args: [I, I, I, "i32"], returns: "i64" }; // (N, C, S, groups) -> bytes (0: not split)
  t.bdk_group_norm_nhwc_workspace = { args: [I, I, I, "i32"], returns: "i64" }; // (N, C, S, groups) -> bytes for [N, S, C] (0: not split)
  t.bdk_elementwise_last_width = { args: [], returns: "i32" }; // elements per thread of the last elementwise launch (1 = scalar path)
  return t;
}

/** Every launcher of libbdkernels with its C signature. */
export const KERNELS: SymbolTable = buildTable();
export type Kernels = NativeLibrary<SymbolTable>;

export interface KernelAbi {
  version: number;
  emulated: boolean;
}

/** Parse bdk_abi() and compare it with this file's mirror; throws on any difference. */
export function checkKernelAbi(abi: string | null, path: string): KernelAbi {
  const f = new Map((abi ?? "").split(";").map((kv) => {
    const i = kv.indexOf("=");
    return i < 0 ? [kv, ""] : [kv.slice(0, i), kv.slice(i + 1)];
  }));
  const list = (k: string) => (f.get(k) ?? "").split(",").filter((s) => s.length > 0);
  const strided = [STRIDED.bytes, STRIDED.ndim, STRIDED.nargs, STRIDED.numel, STRIDED.shape, STRIDED.stride].join(",");
  const problems: string[] = [];
  if (!f.has("bdk 1")) problems.push(`version: expected "bdk 1" in ${JSON.stringify(abi)}`);
  if (f.get("strided") !== strided) problems.push(`bd::Strided layout ${f.get("strided")} != ${strided}`);
  if (f.get("dims") !== String(STRIDED.maxDims) || f.get("args") !== String(STRIDED.maxArgs)) problems.push("max dims / args differ");
  for (const [k, ours] of [["unary", UNARY_OPS], ["binary", BINARY_OPS], ["reduce", REDUCE_OPS]] as const)
    if (list(k).join(",") !== ours.join(",")) problems.push(`${k} op order ${list(k).join(",")} != ${ours.join(",")}`);
  if (problems.length) throw new Error(`kernels library ${path} does not match ffi/cuda/kernels.ts: ${problems.join("; ")}. Rebuild it with \`bun scripts/build-kernels.ts\`.`);
  return { version: 1, emulated: f.get("emulated") === "1" };
}
