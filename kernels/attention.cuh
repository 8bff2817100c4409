// attention.cuh -- what the two attention kernels share (kernels/attention.cu on CUDA cores, kernels/attention_tc.cu
// on tensor cores): the host params struct (mirrored in ffi/cuda/kernels.ts, layout checked through
// bdk_attention_params_layout()), the mask kinds and the mask read. Semantics of every field: attention.cu's header.
#pragma once
#include "common.cuh"

namespace bd {
// Mirrored in ffi/cuda/kernels.ts (AttentionParamsBuffer).
struct AttentionParams {
  int64_t B, H, Sq, Sk, D, Dv;
  int64_t q_stride[4], k_stride[4], v_stride[4], m_stride[4];  // element strides of q, k, v, mask over [B, H, S, ·]
  float scale;
  int32_t causal;
  int32_t mask_type;  // kMaskNone .. kMaskKeep
  int32_t reserved;
};
enum { kMaskNone = 0, kMaskF32 = 1, kMaskF16 = 2, kMaskBF16 = 3, kMaskKeep = 4 };

__device__ __forceinline__ float mask_value(const void* mask, int type, int64_t off) {
  switch (type) {
    case kMaskF32: return ((const float*)mask)[off];
    case kMaskF16: return to_f32(((const f16*)mask)[off]);
    case kMaskBF16: return to_f32(((const bf16*)mask)[off]);
    case kMaskKeep: return ((const uint8_t*)mask)[off] ? 0.f : -INFINITY;
  }
  return 0.f;
}

}  // namespace bd
