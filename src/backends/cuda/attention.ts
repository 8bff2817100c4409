// CUDA fused attention (the contract's `attention`): kernels/attention.cu, a memory-efficient online-softmax kernel
// that reads q, k, v and the mask as they lie (any strides, stride-0 broadcast masks) and writes out in one pass —
// no [Sq, Sk] score tensor. Head dims above the kernel's limit (160: every SD head is ≤ 160) run on the CPU
// backend: no diffusion model in scope has them.

import type { TensorView } from "../backend.ts";
import { cpuBackend } from "../cpu/index.ts";
import { ATTENTION_MASK, ATTENTION_MAX_HEAD, AttentionParamsBuffer } from "../../../ffi/cuda/kernels.ts";
import { numel } from "../../core/shape.ts";
import { cudaContext, dptr, launch, requireDType, tagOf } from "./context.ts";
import { viaCpu } from "./fallback.ts";

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

export function attention(
  q: TensorView, k: TensorView, v: TensorView, out: TensorView, scale: number, mask: TensorView | null, causal: boolean,
): void {
  if (numel(out.shape) === 0) return;
  requireDType("attention", q.dtype, k, v, out);
  const [B, H, Sq, D] = q.shape as [number, number, number, number];
  const Sk = k.shape[2]!;
  const Dv = v.shape[3]!;
  if (D > ATTENTION_MAX_HEAD || Dv > ATTENTION_MAX_HEAD)
    return viaCpu([q, k, v, mask], [out], ([cq, ck, cv, cm], [co]) => cpuBackend.attention(cq!, ck!, cv!, co!, scale, cm, causal));
  const p = P.set([B, H, Sq, Sk, D, Dv], q.strides, k.strides, v.strides, mask?.strides ?? NO_STRIDES, scale, causal, maskType(mask));
  launch(`bdk_attention_${tagOf(q.dtype)}`, `attention (scale ${scale}${causal ? ", causal" : ""}${mask ? `, ${mask.dtype} mask` : ""})`,
    [q, k, v, mask, out], p, dptr(out), dptr(q), dptr(k), dptr(v), mask ? dptr(mask) : null, cudaContext().stream);
}
