// norm.cu -- group_norm (optionally with a per-channel addend before it and SiLU after it) and layer_norm, as
// torch.nn.functional: population variance, y = (x - mean) / sqrt(var + eps) · weight + bias. Statistics are in
// float32 and two-pass (mean, then Σ(x - mean)²) over each block's values; weight and bias have x's dtype and may
// be null.
//
// GroupNorm runs one of two ways, chosen by the group's size alone (so every device takes the same path):
//   - a group of ≤ kSplitMin elements: one block per (sample, group) computes the statistics and normalises;
//   - a larger one is split into pieces of ≤ kPiece elements of one channel (P pieces per channel): a block per
//     piece writes its (mean, M2) to the workspace, then a block per piece merges its group's partials with Chan
//     et al.'s update (fixed order, so every block of a group gets the same statistics) and normalises its piece.
//     A [2, 320, 64, 64] GroupNorm(32) is 640 blocks instead of 64.
// The addend (diffusers' ResnetBlock2D: norm2(h + temb[:, :, None, None])): v = x + add[n, c] rounded to x's dtype
// (as the unfused add stores it), then normalised; the sum is never written.
//
// Launchers:
//   bdk_group_norm_<t>(out, x, weight, bias, add, N, C, S, groups, eps, silu, ws, stream)   x, out: contiguous
//       [N, C, S] (S = product of the spatial dims); weight, bias: [C] or null; add: contiguous [N, C] or null;
//       C % groups == 0; ws: bdk_group_norm_workspace(N, C, S, groups) bytes of device memory (null when 0).
//   bdk_group_norm_workspace(N, C, S, groups) -> bytes (0 when the groups are not split; < 0 for bad sizes).
//   bdk_layer_norm_<t>(out, x, weight, bias, rows, cols, eps, stream)              x, out: contiguous [rows, cols];
//       weight, bias: [cols] or null.
#include "group_norm.cuh"

namespace bd {
constexpr int64_t kSplitMin = 8192;  // groups with more elements are split over blocks
constexpr int64_t kPiece = 4096;     // elements per block of a split group (at most)
constexpr int kSplitThreads = 256;

// ================================================================ kernels
// Mean and 1/sqrt(var + eps) of x[0, n), block-wide (every thread gets both).
template <class T>
__device__ __forceinline__ void block_stats(const T* x, int64_t n, float eps, float* red, float& mean, float& rstd) {
  float s = 0.f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += to_f32(x[i]);
  mean = block_sum(s, red) / (float)n;
  float q = 0.f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    float d = to_f32(x[i]) - mean;
    q += d * d;
  }
  rstd = 1.f / sqrtf(block_sum(q, red) / (float)n + eps);
}


template <class T>  // at most 512 threads: under the 64-register cap of 1024 threads it spills
__global__ void __launch_bounds__(512) group_norm_kernel(T* out, const T* x, const T* w, const T* b, const T* add,
                                                         int64_t N, int64_t C, int64_t S, int groups, float eps, int silu) {
  __shared__ float red[32];
  int64_t cg = C / groups, len = cg * S;
  for (int64_t ng = blockIdx.x; ng < N * groups; ng += gridDim.x) {
    int64_t n = ng / groups, c0 = (ng % groups) * cg, base = (n * C + c0) * S;
    float mean, rstd;
    if (!add) {
      block_stats(x + base, len, eps, red, mean, rstd);
    } else {  // as block_stats, over x + add per channel
      float s = 0.f;
      for (int64_t i = threadIdx.x; i < len; i += blockDim.x) s += plus(x[base + i], add, n * C + c0 + (uint32_t)i / (uint32_t)S);  // len ≤ kSplitMin: 32-bit
      mean = block_sum(s, red) / (float)len;
      float q = 0.f;
      for (int64_t i = threadIdx.x; i < len; i += blockDim.x) {
        float d = plus(x[base + i], add, n * C + c0 + (uint32_t)i / (uint32_t)S) - mean;
        q += d * d;
      }
      rstd = 1.f / sqrtf(block_sum(q, red) / (float)len + eps);
    }
    for (int64_t k = 0; k < cg; ++k) {  // channel by channel: y = v·scale + shift folds mean, rstd, weight, bias
      int64_t c = c0 + k, off = base + k * S;
      float scale = rstd * (w ? to_f32(w[c]) : 1.f), shift = (b ? to_f32(b[c]) : 0.f) - mean * scale;
      for (int64_t i = threadIdx.x; i < S; i += blockDim.x) {
        float y = plus(x[off + i], add, n * C + c) * scale + shift;
        out[off + i] = from_f32<T>(silu ? silu_f(y) : y);
      }
    }
  }
}

// A split group's pieces: piece j of (sample n, group g) covers elements [lo, hi) of channel c (global index nc =
// n·C + c); blocks are numbered (n·groups + g)·cg·P + k·P + p for channel k of the group, piece p of the channel.
struct Pieces {
  int64_t N, C, S, cg, P, piece;
  int groups;
  BD_HD int64_t blocks() const { return N * C * P; }
  BD_HD int64_t count(int64_t p) const { int64_t lo = p * piece, hi = lo + piece; return (hi < S ? hi : S) - lo; }
};
inline Pieces pieces_of(int64_t N, int64_t C, int64_t S, int groups) {
  Pieces q;
  q.N = N, q.C = C, q.S = S, q.groups = groups, q.cg = C / groups;
  q.P = (S + kPiece - 1) / kPiece;
  q.piece = (S + q.P - 1) / q.P;
  return q;
}

// Pass 1: per piece, mean and M2 = Σ(v − mean)² (two-pass over the piece) -> ws[2·blk], ws[2·blk + 1].
template <class T>
__global__ void __launch_bounds__(kSplitThreads) group_norm_partial_kernel(Pieces q, float* ws, const T* x, const T* add) {
  __shared__ float red[32];
  for (int64_t blk = blockIdx.x; blk < q.blocks(); blk += gridDim.x) {
    int64_t nc = blk / q.P, p = blk % q.P;  // blocks run channel-major: nc = n·C + c
    int64_t lo = p * q.piece, m = q.count(p);
    const T* xp = x + nc * q.S + lo;
    float s = 0.f;
    for (int64_t i = threadIdx.x; i < m; i += blockDim.x) s += plus(xp[i], add, nc);
    float mean = block_sum(s, red) / (float)m;
    float m2 = 0.f;
    for (int64_t i = threadIdx.x; i < m; i += blockDim.x) {
      float d = plus(xp[i], add, nc) - mean;
      m2 += d * d;
    }
    m2 = block_sum(m2, red);
    if (threadIdx.x == 0) ws[2 * blk] = mean, ws[2 * blk + 1] = m2;
  }
}

// Pass 2: merge the group's partials (warp 0: lane l takes partials l, l + 32, …, then a fixed shuffle tree, lane
// 0's result broadcast), then normalise this block's piece.
template <class T>
__global__ void __launch_bounds__(kSplitThreads) group_norm_apply_kernel(Pieces q, const float* ws, T* out, const T* x,
                                                                         const T* w, const T* b, const T* add, float eps,
                                                                         int silu) {
  __shared__ float st[2];
  const int64_t per_group = q.cg * q.P;
  for (int64_t blk = blockIdx.x; blk < q.blocks(); blk += gridDim.x) {
    int64_t nc = blk / q.P, p = blk % q.P, first = blk / per_group * per_group;
    merge_group_partials(ws, first, per_group, [&](int64_t j) { return q.count(j % q.P); }, eps, st);
    __syncthreads();
    float mean = st[0], rstd = st[1];
    __syncthreads();  // st is rewritten by the next piece
    int64_t c = nc % q.C, lo = p * q.piece, m = q.count(p);
    float scale = rstd * (w ? to_f32(w[c]) : 1.f), shift = (b ? to_f32(b[c]) : 0.f) - mean * scale;
    const T* xp = x + nc * q.S + lo;
    T* op = out + nc * q.S + lo;
    for (int64_t i = threadIdx.x; i < m; i += blockDim.x) {
      float y = plus(xp[i], add, nc) * scale + shift;
      op[i] = from_f32<T>(silu ? silu_f(y) : y);
    }
  }
}

template <class T>
__global__ void __launch_bounds__(1024) layer_norm_kernel(T* out, const T* x, const T* w, const T* b, int64_t rows, int64_t cols, float eps) {
  __shared__ float red[32];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * cols;
    float mean, rstd;
    block_stats(xr, cols, eps, red, mean, rstd);
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
      float y = (to_f32(xr[i]) - mean) * rstd;
      if (w) y *= to_f32(w[i]);
      if (b) y += to_f32(b[i]);
      out[row * cols + i] = from_f32<T>(y);
    }
  }
}

// ================================================================ launchers
inline bool group_norm_sizes_ok(int64_t N, int64_t C, int64_t S, int groups) {
  return N >= 0 && C >= 0 && S >= 0 && groups > 0 && C % groups == 0;
}
inline bool group_norm_splits(int64_t C, int64_t S, int groups) { return C / groups * S > kSplitMin; }
inline int64_t group_norm_workspace(int64_t N, int64_t C, int64_t S, int groups) {
  if (!group_norm_sizes_ok(N, C, S, groups)) return -1;
  if (N == 0 || C == 0 || S == 0 || !group_norm_splits(C, S, groups)) return 0;
  return pieces_of(N, C, S, groups).blocks() * 2 * (int64_t)sizeof(float);
}

template <class T>
int group_norm_launch(void* out, const void* x, const void* w, const void* b, const void* add, int64_t N, int64_t C,
                      int64_t S, int groups, float eps, int silu, void* ws, cudaStream_t st) {
  if (!group_norm_sizes_ok(N, C, S, groups)) return cudaErrorInvalidValue;
  if (N == 0 || C == 0 || S == 0) return cudaSuccess;
  if (!group_norm_splits(C, S, groups))
    return launch_kernel(group_norm_kernel<T>, dim3(grid_for(N * groups, 1)), dim3(threads_for_row(C / groups * S, 512)), 0,
                         st, (T*)out, (const T*)x, (const T*)w, (const T*)b, (const T*)add, N, C, S, groups, eps, silu);
  if (!ws) return cudaErrorInvalidValue;
  Pieces q = pieces_of(N, C, S, groups);
  dim3 grid(grid_for(q.blocks(), 1)), block(kSplitThreads);
  int e = launch_kernel(group_norm_partial_kernel<T>, grid, block, 0, st, q, (float*)ws, (const T*)x, (const T*)add);
  if (e != cudaSuccess) return e;
  return launch_kernel(group_norm_apply_kernel<T>, grid, block, 0, st, q, (const float*)ws, (T*)out, (const T*)x,
                       (const T*)w, (const T*)b, (const T*)add, eps, silu);
}
template <class T>
int layer_norm_launch(void* out, const void* x, const void* w, const void* b, int64_t rows, int64_t cols, float eps,
                      cudaStream_t st) {
  if (rows < 0 || cols < 0) return cudaErrorInvalidValue;
  if (rows == 0 || cols == 0) return cudaSuccess;
  return launch_kernel(layer_norm_kernel<T>, dim3(grid_for(rows, 1)), dim3(threads_for_row(cols)), 0, st, (T*)out,
                       (const T*)x, (const T*)w, (const T*)b, rows, cols, eps);
}
}  // namespace bd

BDK_API int64_t bdk_group_norm_workspace(int64_t N, int64_t C, int64_t S, int groups) {
  return bd::group_norm_workspace(N, C, S, groups);
}
#define BD_NORM_EXPORTS(tag, T)                                                                                  \
  BDK_API int bdk_group_norm_##tag(void* out, const void* x, const void* w, const void* b, const void* add,      \
                                   int64_t N, int64_t C, int64_t S, int groups, float eps, int silu, void* ws,   \
                                   cudaStream_t st) {                                                            \
    return bd::group_norm_launch<T>(out, x, w, b, add, N, C, S, groups, eps, silu, ws, st);                      \
  }                                                                                                              \
  BDK_API int bdk_layer_norm_##tag(void* out, const void* x, const void* w, const void* b, int64_t rows,         \
                                   int64_t cols, float eps, cudaStream_t st) {                                   \
    return bd::layer_norm_launch<T>(out, x, w, b, rows, cols, eps, st);                                          \
  }
BD_FLOAT_TYPES(BD_NORM_EXPORTS)
