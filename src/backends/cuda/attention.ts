// CUDA fused attention (the contract's `attention`): memory-efficient online-softmax kernels that read q, k, v and
// the mask as they lie (any strides, stride-0 broadcast masks) and write out in one pass — no [Sq, Sk] score
// tensor. float16 / bfloat16 with head dims ≤ 256 run on tensor cores (kernels/attention_tc.cu, FlashAttention-2
// schedule); float32 and wider heads (the VAE's one head of 512) on the CUDA-core kernel (kernels/attention.cu,
// which splits heads wider than 160 into column chunks). Everything stays on the device.
//
// BD_CUDA_ATTENTION=cuda-cores (read per call) sends float16 / bfloat16 to the CUDA-core kernel too: the escape
// hatch should the tensor-core kernel misbehave on a GPU it was never run on, and the baseline of
// scripts/bench/attention.ts. Any other value, or none, is the default choice.

import type { TensorView } from "../backend.ts";
import { ATTENTION_MASK, ATTENTION_TC_MAX_HEAD, AttentionParamsBuffer } from "../../../ffi/cuda/kernels.ts";
import { numel } from "../../core/shape.ts";
import { cudaContext, dptr, launch, requireDType, tagOf } from "./context.ts";

const P = new AttentionParamsBuffer();
const NO_STRIDES = [0, 0, 0, 0];

function maskType(mask: TensorView | null): number {
  if (!mask) return ATTENTION_MASK.none;
  switch (mask.dtype) {
    case "float32": return ATTENTION_MASK.float32;
    case "float16": return ATTENTION_MASK.float16;
    case "bfloat16": return ATTENTION_MASK.bfloat16;
    case "bool": case "uint8": return ATTENTION_MASK.keep;
  }
  throw new Error(`attention: mask must be float (additive) or bool (keep), got ${mask.dtype}`);
}

/** Which kernel runs an attention of this dtype and head dims ("tensor-core" = bdk_attention_tc_<t>). */
export function cudaAttentionKernel(dtype: string, D: number, Dv: number): "tensor-core" | "cuda-core" {
  if (dtype !== "float16" && dtype !== "bfloat16") return "cuda-core";
  if (D > ATTENTION_TC_MAX_HEAD || Dv > ATTENTION_TC_MAX_HEAD) return "cuda-core";
  return process.env.BD_CUDA_ATTENTION === "cuda-cores" ? "cuda-core" : "tensor-core";
}

export function attention(
  q: TensorView, k: TensorView, v: TensorView, out: TensorView, scale: number, mask: TensorView | null, causal: boolean,
): void {
  if (numel(out.shape) === 0) return;
  requireDType("attention", q.dtype, k, v, out);
  const [B, H, Sq, D] = q.shape as [number, number, number, number];
  const Sk = k.shape[2]!;
  const Dv = v.shape[3]!;
  const kernel = cudaAttentionKernel(q.dtype, D, Dv) === "tensor-core" ? `bdk_attention_tc_${tagOf(q.dtype)}` : `bdk_attention_${tagOf(q.dtype)}`;
  const p = P.set([B, H, Sq, Sk, D, Dv], q.strides, k.strides, v.strides, mask?.strides ?? NO_STRIDES, scale, causal, maskType(mask));
  launch(kernel, `attention (scale ${scale}${causal ? ", causal" : ""}${mask ? `, ${mask.dtype} mask` : ""})`,
    [q, k, v, mask, out], p, dptr(out), dptr(q), dptr(k), dptr(v), mask ? dptr(mask) : null, cudaContext().stream);
}
