// norm_nhwc.cu -- group_norm on channels-last storage (x, out: [N, S, C] row-major, i.e. NHWC of [N, C, H, W] with
// S = H·W), with the same options and numerics as norm.cu's NCHW kernels: an optional per-channel addend before it
// (v = x + add[n, c] rounded to x's dtype, never stored) and SiLU after it; float32 two-pass statistics.
//
// In NHWC a group is, per pixel, one contiguous run of cg = C / groups channels. A group's elements are walked in
// storage order: element i is pixel i / cg, channel g·cg + i % cg. As in norm.cu the path depends on the group's
// size only:
//   - ≤ kSplitMin elements: one block per (sample, group) computes the statistics and normalises;
//   - larger: the group's pixels are cut into P pieces of ≤ kPiece elements (whole pixels, at least one); a block
//     per piece writes its (mean, M2) to the workspace, then a block per piece merges its group's partials with Chan
//     et al.'s update in a fixed order (every block of a group gets the same statistics) and normalises its piece.
// The statistics are the same quantities as the NCHW kernels' summed in another order (and the first pass shifted by
// the group's, or piece's, first value, which keeps the precision of means far from zero): results agree with them
// to float32 rounding, not bit for bit.
//
// Launchers:
//   bdk_group_norm_nhwc_<t>(out, x, weight, bias, add, N, C, S, groups, eps, silu, ws, stream)   x, out: contiguous
//       [N, S, C]; weight, bias: [C] or null; add: contiguous [N, C] or null; C % groups == 0;
//       ws: bdk_group_norm_nhwc_workspace(N, C, S, groups) bytes of device memory (null when 0); a group must have
//       fewer than 2³¹ elements (32-bit index arithmetic), else cudaErrorInvalidValue.
//   bdk_group_norm_nhwc_workspace(N, C, S, groups) -> bytes (0 when the groups are not split; < 0 for bad sizes).
#include "group_norm.cuh"

namespace bd {
namespace nhwc {
constexpr int64_t kSplitMin = 8192;  // groups with more elements are split over blocks
constexpr int64_t kPiece = 4096;     // elements per block of a split group (at most, unless one pixel's run is larger)
constexpr int kThreads = 256;

// One group's layout: element i (storage order within the group) of sample n lives at base(n, g) + (i / cg)·C + i % cg.
struct Group {
  int64_t N, C, S, cg;
  int groups;
  BD_HD int64_t base(int64_t n, int64_t g) const { return n * S * C + g * cg; }
  // i < cg·S < 2³¹ (the launcher refuses larger groups): 32-bit division
  BD_HD int64_t at(int64_t i) const { return (int64_t)((uint32_t)i / (uint32_t)cg) * C + (uint32_t)i % (uint32_t)cg; }  // offset from base
  BD_HD int64_t channel(int64_t g, int64_t i) const { return g * cg + (uint32_t)i % (uint32_t)cg; }
};


// Pieces of a split group: piece p covers pixels [p·pix, min((p + 1)·pix, S)) of every channel of the group; blocks
// are numbered (n·groups + g)·P + p.
struct Pieces {
  Group q;
  int64_t P, pix;
  BD_HD int64_t blocks() const { return q.N * q.groups * P; }
  BD_HD int64_t count(int64_t p) const {  // elements of piece p
    int64_t lo = p * pix, hi = lo + pix;
    return ((hi < q.S ? hi : q.S) - lo) * q.cg;
  }
};
inline Pieces pieces_of(const Group& q) {
  Pieces r;
  r.q = q;
  int64_t per = kPiece / q.cg > 0 ? kPiece / q.cg : 1;  // whole pixels per piece
  r.P = (q.S + per - 1) / per;
  r.pix = (q.S + r.P - 1) / r.P;  // spread evenly
  return r;
}

// ================================================================ kernels
template <class T>
__global__ void __launch_bounds__(512) group_norm_kernel(T* out, const T* x, const T* w, const T* b, const T* add, Group q,
                                                         float eps, int silu) {
  __shared__ float red[32];
  const int64_t len = q.cg * q.S;
  for (int64_t ng = blockIdx.x; ng < q.N * q.groups; ng += gridDim.x) {
    int64_t n = ng / q.groups, g = ng % q.groups, base = q.base(n, g);
    // sums shifted by the group's first value: far-from-zero means keep their precision (the CPU's statistics do too)
    const float shift = plus(x[base], add, n * q.C + g * q.cg);
    float s = 0.f;
    for (int64_t i = threadIdx.x; i < len; i += blockDim.x) s += plus(x[base + q.at(i)], add, n * q.C + q.channel(g, i)) - shift;
    float mean = shift + block_sum(s, red) / (float)len;
    float m2 = 0.f;
    for (int64_t i = threadIdx.x; i < len; i += blockDim.x) {
      float d = plus(x[base + q.at(i)], add, n * q.C + q.channel(g, i)) - mean;
      m2 += d * d;
    }
    float rstd = 1.f / sqrtf(block_sum(m2, red) / (float)len + eps);
    for (int64_t i = threadIdx.x; i < len; i += blockDim.x) {
      int64_t c = q.channel(g, i), o = base + q.at(i);
      float scale = rstd * (w ? to_f32(w[c]) : 1.f), shift = (b ? to_f32(b[c]) : 0.f) - mean * scale;
      float y = plus(x[o], add, n * q.C + c) * scale + shift;
      out[o] = from_f32<T>(silu ? silu_f(y) : y);
    }
  }
}

// Pass 1: per piece, mean and M2 = Σ(v − mean)² (two-pass over the piece) -> ws[2·blk], ws[2·blk + 1].
template <class T>
__global__ void __launch_bounds__(kThreads) group_norm_partial_kernel(Pieces r, float* ws, const T* x, const T* add) {
  __shared__ float red[32];
  const Group& q = r.q;
  for (int64_t blk = blockIdx.x; blk < r.blocks(); blk += gridDim.x) {
    int64_t ng = blk / r.P, p = blk % r.P, n = ng / q.groups, g = ng % q.groups;
    int64_t first = p * r.pix * q.cg, m = r.count(p), base = q.base(n, g);
    const float shift = plus(x[base + q.at(first)], add, n * q.C + g * q.cg);  // the piece's first value (as above)
    float s = 0.f;
    for (int64_t i = threadIdx.x; i < m; i += blockDim.x) s += plus(x[base + q.at(first + i)], add, n * q.C + q.channel(g, i)) - shift;
    float mean = shift + block_sum(s, red) / (float)m;
    float m2 = 0.f;
    for (int64_t i = threadIdx.x; i < m; i += blockDim.x) {
      float d = plus(x[base + q.at(first + i)], add, n * q.C + q.channel(g, i)) - mean;
      m2 += d * d;
    }
    m2 = block_sum(m2, red);
    if (threadIdx.x == 0) ws[2 * blk] = mean, ws[2 * blk + 1] = m2;
  }
}

// Pass 2: merge the group's P partials (warp 0: lane l takes partials l, l + 32, …, then a fixed shuffle tree, lane
// 0's result broadcast), then normalise this block's piece.
template <class T>
__global__ void __launch_bounds__(kThreads) group_norm_apply_kernel(Pieces r, const float* ws, T* out, const T* x, const T* w,
                                                                    const T* b, const T* add, float eps, int silu) {
  __shared__ float st[2];
  const Group& q = r.q;
  for (int64_t blk = blockIdx.x; blk < r.blocks(); blk += gridDim.x) {
    int64_t ng = blk / r.P, p = blk % r.P, n = ng / q.groups, g = ng % q.groups, firstBlk = ng * r.P;
    merge_group_partials(ws, firstBlk, r.P, [&](int64_t j) { return r.count(j); }, eps, st);
    __syncthreads();
    float mean = st[0], rstd = st[1];
    __syncthreads();  // st is rewritten by the next piece
    int64_t first = p * r.pix * q.cg, m = r.count(p), base = q.base(n, g);
    for (int64_t i = threadIdx.x; i < m; i += blockDim.x) {
      int64_t c = q.channel(g, i), o = base + q.at(first + i);
      float scale = rstd * (w ? to_f32(w[c]) : 1.f), shift = (b ? to_f32(b[c]) : 0.f) - mean * scale;
      float y = plus(x[o], add, n * q.C + c) * scale + shift;
      out[o] = from_f32<T>(silu ? silu_f(y) : y);
    }
  }
}

// ================================================================ launchers
inline bool sizes_ok(int64_t N, int64_t C, int64_t S, int groups) {
  return N >= 0 && C >= 0 && S >= 0 && groups > 0 && C % groups == 0 && C / groups * S < (int64_t(1) << 31);
}
inline bool splits(int64_t C, int64_t S, int groups) { return C / groups * S > kSplitMin; }
inline Group group_of(int64_t N, int64_t C, int64_t S, int groups) { return Group{N, C, S, C / groups, groups}; }
inline int64_t workspace(int64_t N, int64_t C, int64_t S, int groups) {
  if (!sizes_ok(N, C, S, groups)) return -1;
  if (N == 0 || C == 0 || S == 0 || !splits(C, S, groups)) return 0;
  return pieces_of(group_of(N, C, S, groups)).blocks() * 2 * (int64_t)sizeof(float);
}

template <class T>
int group_norm_launch(void* out, const void* x, const void* w, const void* b, const void* add, int64_t N, int64_t C,
                      int64_t S, int groups, float eps, int silu, void* ws, cudaStream_t st) {
  if (!sizes_ok(N, C, S, groups)) return cudaErrorInvalidValue;
  if (N == 0 || C == 0 || S == 0) return cudaSuccess;
  Group q = group_of(N, C, S, groups);
  if (!splits(C, S, groups))
    return launch_kernel(group_norm_kernel<T>, dim3(grid_for(N * groups, 1)), dim3(threads_for_row(q.cg * S, 512)), 0, st,
                         (T*)out, (const T*)x, (const T*)w, (const T*)b, (const T*)add, q, eps, silu);
  if (!ws) return cudaErrorInvalidValue;
  Pieces r = pieces_of(q);
  dim3 grid(grid_for(r.blocks(), 1)), block(kThreads);
  int e = launch_kernel(group_norm_partial_kernel<T>, grid, block, 0, st, r, (float*)ws, (const T*)x, (const T*)add);
  if (e != cudaSuccess) return e;
  return launch_kernel(group_norm_apply_kernel<T>, grid, block, 0, st, r, (const float*)ws, (T*)out, (const T*)x,
                       (const T*)w, (const T*)b, (const T*)add, eps, silu);
}
}  // namespace nhwc
}  // namespace bd

BDK_API int64_t bdk_group_norm_nhwc_workspace(int64_t N, int64_t C, int64_t S, int groups) {
  return bd::nhwc::workspace(N, C, S, groups);
}
#define BD_NORM_NHWC_EXPORTS(tag, T)                                                                             \
  BDK_API int bdk_group_norm_nhwc_##tag(void* out, const void* x, const void* w, const void* b, const void* add, \
                                        int64_t N, int64_t C, int64_t S, int groups, float eps, int silu,        \
                                        void* ws, cudaStream_t st) {                                             \
    return bd::nhwc::group_norm_launch<T>(out, x, w, b, add, N, C, S, groups, eps, silu, ws, st);                \
  }
BD_FLOAT_TYPES(BD_NORM_NHWC_EXPORTS)
