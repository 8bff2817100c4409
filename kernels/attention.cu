// attention.cu -- fused scaled-dot-product attention, memory-efficient (FlashAttention-1 schedule on CUDA cores):
// out = softmax(scale · q·kᵀ + mask) · v without materialising the [Sq, Sk] scores. One block of kThreads threads
// owns a tile of kBQ query rows of one (batch, head); it walks the keys in tiles of BK rows (K and V tiles staged in
// shared memory as float32) and keeps, per query row, the running max m and running sum l of the online softmax:
//
//   S    = scale · Q_blk · K_tileᵀ + mask tile;  S[i, j] = -inf where causal and key j > query i (top-left aligned),
//          and for tail keys j ≥ Sk
//   m'   = max(m, rowmax S)                      (NaN-propagating: a NaN score makes its row's output NaN)
//   P    = exp(S − m')                           (-inf scores give exactly 0)
//   α    = exp(m − m')                           (0 while m = -inf: nothing accumulated yet)
//   l    = α·l + rowsum P
//   O    = α·O + P · V_tile                      (float32 accumulator in registers, kBQ·Dv / kThreads per thread)
//   m    = m'
//   out  = O / l, rounded once to the storage dtype
//
// Edge cases as the CPU backend (src/backends/cpu/attention.ts): a row whose visible scores are all -inf (fully
// masked, causal with no key, Sk = 0) keeps m' = -inf, gets P = 0 and α = 1, so O = l = 0 and its output is 0
// (FlashAttention's convention; torch's SDPA gives NaN). Tail keys are zero in V so that 0 · garbage cannot
// make a NaN. Under `causal`, key tiles entirely above a query tile's last row are skipped.
//
// Operands: q [B, H, Sq, D], k [B, H, Sk, D], v [B, H, Sk, Dv] with any element strides (permuted views of
// [B, S, H·D] projections are read in place); out contiguous [B, H, Sq, Dv]; the mask any [B, H, Sq, Sk] view
// (stride 0 on broadcast dims), additive float32 / float16 / bfloat16 or a keep-mask of bytes (bool/uint8:
// 0 = -inf). q, k, v and out share one dtype; the mask's is independent. Any D, Dv: up to kMaxHead (160: every SD
// head) Q stays in shared memory for the work item and each block writes all Dv columns; wider heads (the VAE's
// one head of 512) are split: the Q·Kᵀ dot products are summed over column chunks of kDChunk (Q and K chunks
// staged in turn, Q re-read per key tile) and the output columns are kDChunk-wide work items of their own (each
// recomputes the scores: ⌈Dv / 128⌉ × the Q·Kᵀ work, no [Sq, Sk] matrix either way).
// Tile sizes: kBQ = 32 query rows; BK ∈ {64, 32, 16} keys, the largest whose shared memory (Q, K, V tiles,
// scores, statistics) fits in 48 KiB. float16 / bfloat16 with D, Dv ≤ 256 run on tensor cores by default
// (kernels/attention_tc.cu, chosen in src/backends/cuda/attention.ts); this kernel is float32's and the rest.
//
// Launchers:
//   bdk_attention_<t>(p, out, q, k, v, mask, stream)      t: f32 f16 bf16; p: host bd::AttentionParams
//   bdk_attention_params_layout()                        "size,B,q_stride,k_stride,v_stride,m_stride,scale,causal,mask_type"
//                                                         (byte offsets; checked by ffi/cuda/kernels.ts)
#include <stddef.h>
#include <stdio.h>
#include "attention.cuh"

namespace bd {
constexpr int kAttnThreads = 128, kBQ = 32, kMaxHead = 160, kDChunk = 128;
constexpr int kMaxAcc = kBQ * kMaxHead / kAttnThreads;  // accumulator elements per thread (40)
constexpr size_t kAttnSmemLimit = 48 * 1024;

// Shared-memory floats for key tiles of bk rows (row strides D + 1 avoid bank conflicts on the score loop).
BD_HD size_t attn_smem_floats(int64_t D, int64_t Dv, int bk) {
  return (size_t)kBQ * (D + 1) + (size_t)bk * (D + 1) + (size_t)bk * Dv + (size_t)kBQ * (bk + 1) + 3 * kBQ;
}
inline int attn_key_tile(int64_t D, int64_t Dv) {
  for (int bk = 64; bk >= 16; bk >>= 1)
    if (attn_smem_floats(D, Dv, bk) * sizeof(float) <= kAttnSmemLimit) return bk;
  return 0;
}

// ================================================================ kernels
// dc: head columns per Q/K chunk (D when D ≤ kMaxHead: Q stays in shared memory for the whole work item; else
// kDChunk, and Q chunks are re-read for every key tile); dvc: output columns per work item (Dv, or kDChunk).
template <class T>
__global__ void __launch_bounds__(kAttnThreads, 1) attention_kernel(AttentionParams p, int bk, int dc, int dvc, T* __restrict__ out,
                                                                 const T* __restrict__ q, const T* __restrict__ k,
                                                                 const T* __restrict__ v, const void* __restrict__ mask) {
  CUDA_DYNAMIC_SHARED(float, smem);
  const int64_t D = p.D, Dv = p.Dv, ldq = dc + 1, lds = bk + 1;
  float* Qs = smem;                        // [kBQ][dc + 1]
  float* Ks = Qs + kBQ * ldq;              // [bk][dc + 1]
  float* Vs = Ks + (int64_t)bk * ldq;      // [bk][dvc]
  float* Ss = Vs + (int64_t)bk * dvc;      // [kBQ][bk + 1]: scores, then probabilities
  float* m_s = Ss + kBQ * lds;             // [kBQ] running max
  float* l_s = m_s + kBQ;                  // [kBQ] running sum
  float* a_s = l_s + kBQ;                  // [kBQ] this tile's rescale α
  const int tid = threadIdx.x;
  const bool q_resident = D <= dc;                            // one chunk: Q loaded once per work item
  const int64_t nch = D > 0 ? (D + dc - 1) / dc : 1;          // Q/K column chunks
  const int64_t nvc = (Dv + dvc - 1) / dvc;                   // output column chunks (work items per q tile)
  const int64_t qtiles = (p.Sq + kBQ - 1) / kBQ, nwork = p.B * p.H * qtiles * nvc;

  for (int64_t w = blockIdx.x; w < nwork; w += gridDim.x) {  // uniform across the block: every thread syncs
    const int64_t wq = w / nvc, dv0 = (w - wq * nvc) * dvc;
    const int64_t bh = wq / qtiles, b = bh / p.H, h = bh - b * p.H;
    const int64_t q0 = (wq - bh * qtiles) * kBQ;
    const int nq = (int)(p.Sq - q0 < kBQ ? p.Sq - q0 : kBQ);
    const int64_t dvw = Dv - dv0 < dvc ? Dv - dv0 : dvc;      // output columns of this work item
    const int nE = (int)((kBQ * dvw + kAttnThreads - 1) / kAttnThreads);  // accumulator elements of this thread
    const T* qb = q + b * p.q_stride[0] + h * p.q_stride[1];
    const T* kb = k + b * p.k_stride[0] + h * p.k_stride[1];
    const T* vb = v + b * p.v_stride[0] + h * p.v_stride[1];
    const int64_t mb = b * p.m_stride[0] + h * p.m_stride[1];
    // Q tile (or its columns c0 .. c0 + cw − 1) as float32; rows past Sq are zero and never written out
    auto load_q = [&](int64_t c0, int64_t cw) {
      for (int64_t e = tid; e < (int64_t)kBQ * cw; e += kAttnThreads) {
        int64_t i = e / cw, d = e - i * cw;
        Qs[i * ldq + d] = i < nq ? to_f32(qb[(q0 + i) * p.q_stride[2] + (c0 + d) * p.q_stride[3]]) : 0.f;
      }
    };
    if (q_resident) load_q(0, D);
    if (tid < kBQ) m_s[tid] = -INFINITY, l_s[tid] = 0.f;
    float acc[kMaxAcc];
#pragma unroll
    for (int t = 0; t < kMaxAcc; ++t) acc[t] = 0.f;

    const int64_t kend = p.causal ? (p.Sk < q0 + nq ? p.Sk : q0 + nq) : p.Sk;
    for (int64_t k0 = 0; k0 < kend; k0 += bk) {
      const int nk = (int)(kend - k0 < bk ? kend - k0 : bk);
      // partial dot products over column chunks, summed in Ss (each thread owns the same elements every chunk)
      for (int64_t ch = 0; ch < nch; ++ch) {
        const int64_t c0 = ch * dc, cw = D - c0 < dc ? D - c0 : dc;
        __syncthreads();  // the previous readers of Qs / Ks (/ Vs) are done (and Q / statistics are written)
        if (!q_resident) load_q(c0, cw);
        for (int64_t e = tid; e < (int64_t)bk * cw; e += kAttnThreads) {
          int64_t j = e / cw, d = e - j * cw;
          Ks[j * ldq + d] = j < nk ? to_f32(kb[(k0 + j) * p.k_stride[2] + (c0 + d) * p.k_stride[3]]) : 0.f;
        }
        if (ch == 0)
          for (int64_t e = tid; e < (int64_t)bk * dvw; e += kAttnThreads) {
            int64_t j = e / dvw, d = e - j * dvw;
            Vs[j * dvc + d] = j < nk ? to_f32(vb[(k0 + j) * p.v_stride[2] + (dv0 + d) * p.v_stride[3]]) : 0.f;
          }
        __syncthreads();
        for (int e = tid; e < kBQ * bk; e += kAttnThreads) {
          int i = e / bk, j = e - i * bk;
          const float* qi = Qs + i * ldq;
          const float* kj = Ks + j * ldq;
          float dot = ch == 0 ? 0.f : Ss[i * lds + j];
          for (int64_t d = 0; d < cw; ++d) dot += qi[d] * kj[d];
          Ss[i * lds + j] = dot;
        }
      }
      // S = scale · Q Kᵀ + mask; -inf for causal-hidden, tail keys and tail rows
      for (int e = tid; e < kBQ * bk; e += kAttnThreads) {
        int i = e / bk, j = e - i * bk;
        float s;
        if (i >= nq || j >= nk || (p.causal && k0 + j > q0 + i)) {
          s = -INFINITY;
        } else {
          s = p.scale * Ss[i * lds + j];
          if (p.mask_type != kMaskNone) s += mask_value(mask, p.mask_type, mb + (q0 + i) * p.m_stride[2] + (k0 + j) * p.m_stride[3]);
        }
        Ss[i * lds + j] = s;
      }
      __syncthreads();
      // online softmax, one thread per row: m' = max(m, rowmax S), P = exp(S − m'), α = exp(m − m'), l = α·l + ΣP
      if (tid < kBQ) {
        float* row = Ss + tid * lds;
        float mx = -INFINITY;
        for (int j = 0; j < bk; ++j) mx = Max()(mx, row[j]);  // NaN propagates: a NaN score makes its row NaN
        const float m_old = m_s[tid], m_new = Max()(m_old, mx);
        float alpha = 1.f;
        if (m_new == -INFINITY) {  // nothing visible yet: P = 0, α = 1 (O and l stay 0)
          for (int j = 0; j < bk; ++j) row[j] = 0.f;
        } else {
          float sum = 0.f;
          for (int j = 0; j < bk; ++j) {
            float e = expf(row[j] - m_new);  // exp(-inf) = 0 for masked keys
            row[j] = e;
            sum += e;
          }
          alpha = m_old == -INFINITY ? 0.f : expf(m_old - m_new);
          l_s[tid] = l_s[tid] * alpha + sum;
          m_s[tid] = m_new;
        }
        a_s[tid] = alpha;
      }
      __syncthreads();
      // O = α·O + P · V_tile on this thread's (row, column) elements
#pragma unroll
      for (int t = 0; t < kMaxAcc; ++t) {
        if (t < nE) {
          int64_t e = tid + (int64_t)t * kAttnThreads;
          if (e < kBQ * dvw) {
            int64_t i = e / dvw, d = e - i * dvw;
            const float* prow = Ss + i * lds;
            float o = acc[t] * a_s[i];
            for (int j = 0; j < nk; ++j) o += prow[j] * Vs[j * dvc + d];
            acc[t] = o;
          }
        }
      }
    }
    __syncthreads();  // l_s complete (also when no key tile ran)
    // out = O / l; l = 0 only where no key was visible (O = 0 there): 0, not 0/0
    T* ob = out + (bh * p.Sq + q0) * Dv + dv0;
#pragma unroll
    for (int t = 0; t < kMaxAcc; ++t) {
      if (t < nE) {
        int64_t e = tid + (int64_t)t * kAttnThreads;
        if (e < kBQ * dvw) {
          int64_t i = e / dvw, d = e - i * dvw;
          if (i < nq) {
            float l = l_s[i];
            ob[i * Dv + d] = from_f32<T>(l == 0.f ? 0.f : acc[t] / l);
          }
        }
      }
    }
    __syncthreads();  // Q / statistics are rewritten by the next work item
  }
}

// ================================================================ launchers
template <class T>
int attention_launch(const AttentionParams* pp, void* out, const void* q, const void* k, const void* v,
                     const void* mask, cudaStream_t st) {
  if (!pp) return cudaErrorInvalidValue;
  const AttentionParams p = *pp;
  if (p.B < 0 || p.H < 0 || p.Sq < 0 || p.Sk < 0 || p.D < 0 || p.Dv < 0 || p.mask_type < kMaskNone ||
      p.mask_type > kMaskKeep || (p.mask_type != kMaskNone && !mask))
    return cudaErrorInvalidValue;
  if (p.B == 0 || p.H == 0 || p.Sq == 0 || p.Dv == 0) return cudaSuccess;
  const int dc = p.D <= kMaxHead ? (int)(p.D > 0 ? p.D : 1) : kDChunk, dvc = p.Dv <= kMaxHead ? (int)p.Dv : kDChunk;
  const int bk = attn_key_tile(dc, dvc);
  if (!bk) return cudaErrorInvalidValue;
  const int64_t work = p.B * p.H * ((p.Sq + kBQ - 1) / kBQ) * ((p.Dv + dvc - 1) / dvc);
  return launch_kernel(attention_kernel<T>, dim3(grid_for(work, 1)), dim3(kAttnThreads),
                       attn_smem_floats(dc, dvc, bk) * sizeof(float), st, p, bk, dc, dvc, (T*)out, (const T*)q,
                       (const T*)k, (const T*)v, mask);
}
}  // namespace bd

BDK_API const char* bdk_attention_params_layout() {
  static char buf[160];
  if (!buf[0]) {
    using bd::AttentionParams;
    snprintf(buf, sizeof buf, "%zu,%zu,%zu,%zu,%zu,%zu,%zu,%zu,%zu", sizeof(AttentionParams), offsetof(AttentionParams, B),
             offsetof(AttentionParams, q_stride), offsetof(AttentionParams, k_stride), offsetof(AttentionParams, v_stride),
             offsetof(AttentionParams, m_stride), offsetof(AttentionParams, scale), offsetof(AttentionParams, causal),
             offsetof(AttentionParams, mask_type));
  }
  return buf;
}

#define BD_ATTENTION_EXPORTS(tag, T)                                                                            \
  BDK_API int bdk_attention_##tag(const bd::AttentionParams* p, void* out, const void* q, const void* k,       \
                                  const void* v, const void* mask, cudaStream_t st) {                          \
    return bd::attention_launch<T>(p, out, q, k, v, mask, st);                                                 \
  }
BD_FLOAT_TYPES(BD_ATTENTION_EXPORTS)
