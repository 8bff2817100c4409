// attention_tc.cu -- fused scaled-dot-product attention on tensor cores (FlashAttention-2 schedule), float16 and
// bfloat16: out = softmax(scale · q·kᵀ + mask) · v without materialising the [Sq, Sk] scores. Same operands,
// params (bd::AttentionParams), masks and edge cases as the CUDA-core kernel (kernels/attention.cu, whose header
// states them); float32 stays there.
//
// Schedule: a block of 4 warps owns kTcBQ = 64 query rows of one (batch, head), 16 rows per warp. Each warp holds
// its Q rows in registers as mma A fragments (q read once from global with its own strides, zero past Sq and past
// D). K and V tiles of BK keys stream through shared memory, double-buffered: tile i+1 is copied (cp.async on
// sm_80+, plain 16-byte copies before, a synchronous copy emulated; element by element when the layout is not
// 16-byte vectorisable) while tile i is computed. Per tile and warp, with mma.sync m16n8k16 (kernels/mma.cuh) and
// fp32 accumulators, rows r of this lane (g and g + 8 of the warp's 16):
//
//   S    = scale · Q Kᵀ + mask                   16 × BK fp32 (C fragments); -inf for causal-hidden (key > query,
//                                                 top-left aligned) and tail keys ≥ Sk
//   m'   = max(m, rowmax S)                      quad shuffles (the 4 lanes of a row); NaN propagates
//   P    = exp(S − m')                           0 for -inf scores; all 0 while m' = -inf (nothing visible yet)
//   α    = exp(m − m')                           0 while m = -inf; 1 while m' = -inf
//   l    = α·l + rowsum P                        per-lane partial sums of fp32 P, quad-summed once at the end
//   O    = α·O + P·V                             P rounded to T and used as A fragments straight from the C
//                                                 registers (the C and A layouts line up in pairs of n-tiles)
//   out  = O / l (0 where l = 0: no visible key), rounded once to T, written once
//
// Head dims: the tile width DP = max(D, Dv) padded with zeros to the next specialised size — 48 (D = 40), 64, 80,
// 160 (every SD head), and 128, 256 for the others (≤ 256; e.g. 16 → 48, 59 → 64, 111 → 128, 200 → 256). Key
// tile BK = 64 (DP ≤ 96), 32 (≤ 192) or 16: both K/V buffers (2 · 2 · BK · (DP + 8) · 2 bytes) take 28–45 KB, and
// the accumulators fit 255 registers without spills: for DP = 256 a work item writes 128 output columns (DVP),
// so each query tile is two work items that both compute S (1.5× the tensor work of one item with 256 columns).
// A tile over 48 KB would be opted in with cudaFuncSetAttribute (the launcher does it; none of these needs it:
// larger key tiles spill registers at DP ≥ 128). Rows of shared memory are DP + 8 elements apart: 16-byte aligned
// rows, and the K fragment reads (32-bit, row g / pair t) and the V ones (ldmatrix .trans, 8 rows of 16 bytes per
// matrix) hit distinct banks.
// sm_75: float16 runs as pairs of m16n8k8; bfloat16 has no mma there, so that kernel is compiled out (a trap) and
// its launcher refuses devices before 8.0 (cudaErrorInvalidValue) — no path computes nothing silently.
//
// Launchers:
//   bdk_attention_tc_<t>(p, out, q, k, v, mask, stream)   t: f16 bf16; p: host bd::AttentionParams; D, Dv ≤ 256
#include "attention.cuh"
#include "mma.cuh"

namespace bd {
constexpr int kTcWarps = 4, kTcThreads = 32 * kTcWarps, kTcBQ = 16 * kTcWarps, kTcMaxHead = 256;

template <int DP>
struct TcTile {
  static_assert(DP % 16 == 0 && DP <= kTcMaxHead, "tile width: a multiple of 16, at most 256");
  static constexpr int BK = DP <= 96 ? 64 : DP <= 192 ? 32 : 16;  // keys per tile
  static constexpr int DVP = DP <= 160 ? DP : 128;                 // output columns per work item
  static constexpr int LDS = DP + 8;                               // shared row stride (elements)
  static constexpr int kBuf = 2 * BK * LDS;                        // one buffer: K tile then V tile (elements)
  static constexpr size_t kSmem = 2 * (size_t)kBuf * 2;            // two buffers of 16-bit elements (bytes)
};

// One K or V tile (keys k0 .. k0 + BK − 1, columns 0 .. COLS − 1 of src) into shared memory rows LDS apart, zero
// past nk keys and past `width` columns. vec: 16-byte copies (unit column stride, width and row strides multiples of
// 8, 16-byte base).
template <class T, int COLS, int LDS, int BK>
__device__ __forceinline__ void tc_load_tile(T* dst, const T* src, int64_t rs, int64_t cs, int64_t k0, int nk, int64_t width, bool vec) {
  constexpr int kChunks = COLS / 8;
  if (vec) {
    for (int c = threadIdx.x; c < BK * kChunks; c += kTcThreads) {
      const int j = c / kChunks, d = (c - j * kChunks) * 8;
      const bool ok = j < nk && d < width;
      tc::cp_async16(dst + j * LDS + d, ok ? src + (k0 + j) * rs + d : src, ok ? 16 : 0);
    }
  } else {
    const T zero = from_f32<T>(0.f);
    for (int e = threadIdx.x; e < BK * COLS; e += kTcThreads) {
      const int j = e / COLS, d = e - j * COLS;
      dst[j * LDS + d] = j < nk && d < width ? src[(k0 + j) * rs + d * cs] : zero;
    }
  }
}

// ================================================================ kernels
template <class T, int DP>
__device__ __forceinline__ void attention_tc_body(const AttentionParams& p, int vec_k, int vec_v, T* __restrict__ out,
                                                  const T* __restrict__ q, const T* __restrict__ k,
                                                  const T* __restrict__ v, const void* __restrict__ mask) {
  using Tile = TcTile<DP>;
  constexpr int BK = Tile::BK, LDS = Tile::LDS, DVP = Tile::DVP, KS = DP / 16, NT = BK / 8, NO = DVP / 8;
  CUDA_DYNAMIC_SHARED(T, smem);  // [2 buffers][K, V][BK][LDS]
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int64_t nvc = (p.Dv + DVP - 1) / DVP;  // output column chunks: work items per query tile (1 unless DP = 256)
  const int64_t qtiles = (p.Sq + kTcBQ - 1) / kTcBQ, nwork = p.B * p.H * qtiles * nvc;
  const T zero = from_f32<T>(0.f);

  for (int64_t w = blockIdx.x; w < nwork; w += gridDim.x) {  // uniform across the block: every thread syncs
    const int64_t wq = w / nvc, dv0 = (w - wq * nvc) * DVP;  // output columns dv0 .. dv0 + DVP − 1
    const int64_t bh = wq / qtiles, b = bh / p.H, h = bh - b * p.H;
    const int64_t q0 = (wq - bh * qtiles) * kTcBQ;
    const int64_t nq = p.Sq - q0 < kTcBQ ? p.Sq - q0 : kTcBQ;
    const T* qb = q + b * p.q_stride[0] + h * p.q_stride[1];
    const T* kb = k + b * p.k_stride[0] + h * p.k_stride[1];
    const T* vb = v + b * p.v_stride[0] + h * p.v_stride[1] + dv0 * p.v_stride[3];
    const int64_t mb = b * p.m_stride[0] + h * p.m_stride[1];
    const int64_t row[2] = {q0 + warp * 16 + g, q0 + warp * 16 + g + 8};  // this lane's query rows

    // Q fragments (A of S = Q·Kᵀ): qf[ks] covers columns 16·ks .. 16·ks + 15
    uint32_t qf[KS][4];
#pragma unroll
    for (int ks = 0; ks < KS; ++ks)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int64_t i = row[r & 1], d = ks * 16 + 2 * t + (r >> 1) * 8;
        T e[2];
#pragma unroll
        for (int x = 0; x < 2; ++x)
          e[x] = i < p.Sq && d + x < p.D ? qb[i * p.q_stride[2] + (d + x) * p.q_stride[3]] : zero;
        qf[ks][r] = tc::pack2(e[0], e[1]);
      }
    float o[NO][4];  // O: 16 × DVP fp32, C fragments per 8 columns
#pragma unroll
    for (int n = 0; n < NO; ++n)
#pragma unroll
      for (int r = 0; r < 4; ++r) o[n][r] = 0.f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};

    const int64_t kend = p.causal ? (p.Sk < q0 + nq ? p.Sk : q0 + nq) : p.Sk;
    const int64_t ntiles = (kend + BK - 1) / BK;
    auto load = [&](int64_t it) {
      T* buf = smem + (it & 1) * Tile::kBuf;
      const int64_t k0 = it * BK;
      const int nk = (int)(kend - k0 < BK ? kend - k0 : BK);
      tc_load_tile<T, DP, LDS, BK>(buf, kb, p.k_stride[2], p.k_stride[3], k0, nk, p.D, vec_k);
      tc_load_tile<T, DVP, LDS, BK>(buf + BK * LDS, vb, p.v_stride[2], p.v_stride[3], k0, nk, p.Dv - dv0, vec_v);
      tc::cp_async_commit();
    };
    if (ntiles > 0) load(0);
    for (int64_t it = 0; it < ntiles; ++it) {
      const int64_t k0 = it * BK;
      const int nk = (int)(kend - k0 < BK ? kend - k0 : BK);
      if (it + 1 < ntiles) {
        load(it + 1);  // into the other buffer, last read in iteration it − 1 (released by its final barrier)
        tc::cp_async_wait<1>();
      } else {
        tc::cp_async_wait<0>();
      }
      __syncthreads();  // tile it is in shared memory for every thread
      const T* Ks = smem + (it & 1) * Tile::kBuf;  // [BK][LDS]
      const T* Vs = Ks + BK * LDS;                 // [BK][LDS]

      // S = Q·Kᵀ: n-tile nt = keys 8·nt .. 8·nt + 7; B fragment (k = column d, n = key) = K[key][d] pairs
      float s[NT][4];
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
        for (int r = 0; r < 4; ++r) s[nt][r] = 0.f;
#pragma unroll
        for (int ks = 0; ks < KS; ++ks) {
          const T* kr = Ks + (nt * 8 + g) * LDS + ks * 16 + 2 * t;
          const uint32_t bf[2] = {*reinterpret_cast<const uint32_t*>(kr), *reinterpret_cast<const uint32_t*>(kr + 8)};
          tc::mma_m16n8k16<T>(s[nt], qf[ks], bf, s[nt]);
        }
      }
      // scale, mask, -inf for hidden keys; row max over this lane's columns
      float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const int j = nt * 8 + 2 * t + (r & 1);
          const int64_t i = row[r >> 1], key = k0 + j;
          float x;
          if (j >= nk || (p.causal && key > i)) {
            x = -INFINITY;
          } else {
            x = p.scale * s[nt][r];
            if (p.mask_type != kMaskNone && i < p.Sq) x += mask_value(mask, p.mask_type, mb + i * p.m_stride[2] + key * p.m_stride[3]);
          }
          s[nt][r] = x;
          mx[r >> 1] = Max()(mx[r >> 1], x);
        }
      // online softmax per row (the 4 lanes t of a row agree after the quad reduction)
#pragma unroll
      for (int rr = 0; rr < 2; ++rr) {
        mx[rr] = Max()(mx[rr], __shfl_xor_sync(0xffffffffu, mx[rr], 1));
        mx[rr] = Max()(mx[rr], __shfl_xor_sync(0xffffffffu, mx[rr], 2));
        const float m_new = Max()(m[rr], mx[rr]);
        float alpha = 1.f, sum = 0.f;
        if (m_new == -INFINITY) {  // nothing visible yet: P = 0, α = 1 (O and l stay 0)
#pragma unroll
          for (int nt = 0; nt < NT; ++nt) s[nt][2 * rr] = s[nt][2 * rr + 1] = 0.f;
        } else {
#pragma unroll
          for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int x = 0; x < 2; ++x) {
              const float e = __expf(s[nt][2 * rr + x] - m_new);  // exp(-inf) = 0 for hidden keys
              s[nt][2 * rr + x] = e;
              sum += e;
            }
          alpha = m[rr] == -INFINITY ? 0.f : __expf(m[rr] - m_new);
          l[rr] = l[rr] * alpha + sum;
          m[rr] = m_new;
        }
#pragma unroll
        for (int n = 0; n < NO; ++n) o[n][2 * rr] *= alpha, o[n][2 * rr + 1] *= alpha;
      }
      // O += P·V: A fragment of keys 16·kk .. 16·kk + 15 = C fragments of n-tiles 2kk (a[0], a[1]) and 2kk + 1
      // (a[2], a[3]); B fragments (k = key, n = column) of two column tiles from the row-major V tile by one
      // ldmatrix .x4 .trans
#pragma unroll
      for (int kk = 0; kk < BK / 16; ++kk) {
        const uint32_t pa[4] = {
            tc::pack2(from_f32<T>(s[2 * kk][0]), from_f32<T>(s[2 * kk][1])),
            tc::pack2(from_f32<T>(s[2 * kk][2]), from_f32<T>(s[2 * kk][3])),
            tc::pack2(from_f32<T>(s[2 * kk + 1][0]), from_f32<T>(s[2 * kk + 1][1])),
            tc::pack2(from_f32<T>(s[2 * kk + 1][2]), from_f32<T>(s[2 * kk + 1][3])),
        };
        // lane l addresses row l % 8 of matrix l / 8: keys 16·kk + 8·(m & 1) + r, columns 8·(n + (m >> 1)) ..
        const T* vr = Vs + (kk * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * LDS + (lane >> 4) * 8;
#pragma unroll
        for (int n = 0; n < NO; n += 2) {  // NO is even (DVP is a multiple of 16)
          uint32_t vf[4];  // B fragments of column tiles n (vf[0], vf[1]) and n + 1 (vf[2], vf[3])
          tc::ldmatrix_x4_trans(vf, vr + n * 8);
          const uint32_t b0[2] = {vf[0], vf[1]}, b1[2] = {vf[2], vf[3]};
          tc::mma_m16n8k16<T>(o[n], pa, b0, o[n]);
          tc::mma_m16n8k16<T>(o[n + 1], pa, b1, o[n + 1]);
        }
      }
      __syncthreads();  // every warp is done with buffer it & 1 before iteration it + 1 refills it
    }

    // out = O / l; l = 0 only where no key was visible (O = 0 there): 0, not 0/0
    T* ob = out + bh * p.Sq * p.Dv + dv0;
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      float lt = l[rr];
      lt += __shfl_xor_sync(0xffffffffu, lt, 1);
      lt += __shfl_xor_sync(0xffffffffu, lt, 2);
      const float inv = lt == 0.f ? 0.f : 1.f / lt;
      const int64_t i = row[rr];
      if (i < p.Sq)
#pragma unroll
        for (int n = 0; n < NO; ++n)
#pragma unroll
          for (int x = 0; x < 2; ++x) {
            const int64_t d = n * 8 + 2 * t + x;
            if (dv0 + d < p.Dv) ob[i * p.Dv + d] = from_f32<T>(o[n][2 * rr + x] * inv);
          }
    }
  }
}

template <class T, int DP>
__global__ void __launch_bounds__(kTcThreads, 1) attention_tc_kernel(AttentionParams p, int vec_k, int vec_v, T* __restrict__ out,
                                                                  const T* __restrict__ q, const T* __restrict__ k,
                                                                  const T* __restrict__ v, const void* __restrict__ mask) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  if constexpr (std::is_same<T, bf16>::value) {
    __trap();  // no bf16 mma.sync before sm_80; the launcher refuses such devices
  } else
#endif
  {
    attention_tc_body<T, DP>(p, vec_k, vec_v, out, q, k, v, mask);
  }
}

// ================================================================ launchers
// 16-byte copies of a K / V tile: unit column stride, width and the strides of non-singleton dims multiples of 8
// elements, base 16-byte aligned.
inline bool tc_vectorisable(const void* base, const int64_t (&s)[4], int64_t B, int64_t H, int64_t width) {
  return s[3] == 1 && width % 8 == 0 && (B == 1 || s[0] % 8 == 0) && (H == 1 || s[1] % 8 == 0) && s[2] % 8 == 0 &&
         ((uintptr_t)base & 15) == 0;
}

template <class T, int DP>
int attention_tc_run(const AttentionParams& p, void* out, const void* q, const void* k, const void* v, const void* mask,
                     cudaStream_t st) {
  auto kern = attention_tc_kernel<T, DP>;
  const size_t smem = TcTile<DP>::kSmem;
  if (smem > 48 * 1024) {
    static uint64_t opted = 0;  // devices this kernel was opted in on (bit per device < 64)
    int dev = 0;
#if defined(__CUDACC__)
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) dev = 0;
#endif
    if (!(opted >> dev & 1)) {
      const cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
      if (e != cudaSuccess) return e;
      opted |= 1ull << dev;
    }
  }
  const int64_t work = p.B * p.H * ((p.Sq + kTcBQ - 1) / kTcBQ) * ((p.Dv + TcTile<DP>::DVP - 1) / TcTile<DP>::DVP);
  const int vec_k = tc_vectorisable(k, p.k_stride, p.B, p.H, p.D), vec_v = tc_vectorisable(v, p.v_stride, p.B, p.H, p.Dv);
  return launch_kernel(kern, dim3(grid_for(work, 1)), dim3(kTcThreads), smem, st, p, vec_k, vec_v, (T*)out, (const T*)q,
                       (const T*)k, (const T*)v, mask);
}

template <class T>
int attention_tc_launch(const AttentionParams* pp, void* out, const void* q, const void* k, const void* v,
                        const void* mask, cudaStream_t st) {
  if (!pp) return cudaErrorInvalidValue;
  const AttentionParams p = *pp;
  if (p.B < 0 || p.H < 0 || p.Sq < 0 || p.Sk < 0 || p.D < 0 || p.Dv < 0 || p.D > kTcMaxHead || p.Dv > kTcMaxHead ||
      p.mask_type < kMaskNone || p.mask_type > kMaskKeep || (p.mask_type != kMaskNone && !mask))
    return cudaErrorInvalidValue;
  if (std::is_same<T, bf16>::value && tc::device_cc_major() < 8) return cudaErrorInvalidValue;
  if (p.B == 0 || p.H == 0 || p.Sq == 0 || p.Dv == 0) return cudaSuccess;
  const int64_t need = ((p.D > p.Dv ? p.D : p.Dv) + 15) / 16 * 16;  // padded head width
  if (need <= 48) return attention_tc_run<T, 48>(p, out, q, k, v, mask, st);
  if (need <= 64) return attention_tc_run<T, 64>(p, out, q, k, v, mask, st);
  if (need <= 80) return attention_tc_run<T, 80>(p, out, q, k, v, mask, st);
  if (need <= 128) return attention_tc_run<T, 128>(p, out, q, k, v, mask, st);
  if (need <= 160) return attention_tc_run<T, 160>(p, out, q, k, v, mask, st);
  return attention_tc_run<T, 256>(p, out, q, k, v, mask, st);
}
}  // namespace bd

BDK_API int bdk_attention_tc_f16(const bd::AttentionParams* p, void* out, const void* q, const void* k, const void* v,
                                 const void* mask, cudaStream_t st) {
  return bd::attention_tc_launch<bd::f16>(p, out, q, k, v, mask, st);
}
BDK_API int bdk_attention_tc_bf16(const bd::AttentionParams* p, void* out, const void* q, const void* k, const void* v,
                                  const void* mask, cudaStream_t st) {
  return bd::attention_tc_launch<bd::bf16>(p, out, q, k, v, mask, st);
}
