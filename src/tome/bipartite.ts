// tomesd's bipartite soft matching (merge.bipartite_soft_matching_random2d) as tensor ops: the tokens of a w×h grid
// are split into dst (one per sy×sx cell, see partition.ts) and src (the rest); every src token finds its most
// cosine-similar dst token; the r src tokens with the best matches are merged into their dst (mean, or sum), the
// others stay. merge(x) = cat[unmerged src, dst]; unmerge copies every merged row back to each position it stands
// for. Everything after the partition runs on the metric's device (matmul, max, argsort, gather, scatterReduce):
// nothing is read back to the host.
//
// Numerics follow tomesd in float32: the same gathers, the same Q·Kᵀ-free scores a·bᵀ, the same sequential
// scatter_reduce(include_self) accumulation and division, so merges match torch bit for bit when the scores order
// the same way. Differences: the metric's norm is a float64-accumulated sum here (torch: float32 vector lanes),
// so scores can differ by an ulp; the descending argsort of the best scores is stable (torch's is std::sort, which
// only matters for exactly tied scores). A float16/bfloat16 metric is compared in float32 (scores in 11 or 8 mantissa
// bits tie constantly); the merged tokens keep the input dtype. Copies are indexSelects of whole rows: merge starts
// from cat[unm, dst] in one selection and scatter-reduces the merged src rows into it (rows nobody targets are
// divided by 1 / added nothing: exact; float32 "mean" is a scatterAdd divided by per-row counts built once per
// matching, the same arithmetic as scatter_reduce); unmerge is one selection through the inverse map (each original position
// reads the merged row that represents it), which equals tomesd's three scatters into zeros.

import { type Tensor, add, arange, argsort, cat, div, gather, indexSelect, matmul, maxWithIndices, ones, scatterAdd, scatterReduce, sqrt, square, sum, tidy, zeros } from "../tensor/index.ts";
import type { Partition } from "./partition.ts";

export type MergeMode = "mean" | "sum";

/** The index tensors of one matching, named as tomesd's closure variables. */
export interface MatchIndices {
  /** [1, Na, 1] src token positions. */
  readonly aIdx: Tensor;
  /** [1, Nb, 1] dst token positions. */
  readonly bIdx: Tensor;
  /** [B, Na − r, 1] indices into the src list of the tokens kept as they are. */
  readonly unmIdx: Tensor;
  /** [B, r, 1] indices into the src list of the merged tokens (best match first). */
  readonly srcIdx: Tensor;
  /** [B, r, 1] the dst (index into the dst list) each merged src token goes to. */
  readonly dstIdx: Tensor;
}

/** merge / unmerge of one matching; owns its index tensors until dispose(). */
export class TokenMatch {
  readonly #B: number;
  readonly #N: number;
  readonly #M: number; // merged token count N − r
  readonly #rows: Tensor; // [B·M] int32 row of x (flattened [B·N, C]) each merged row starts from: unm src, then dst
  readonly #srcRows: Tensor; // [B·r] int32 row of x of each merged src token
  readonly #target: Tensor; // [B, r, 1] int32 merged row each src token is reduced into (M − Nb + dst_idx)
  readonly #inverse: Tensor; // [B·N] int32 row of merge's output (flattened [B·M, C]) that represents each token
  readonly #counts: Tensor; // [B, M, 1] float32 rows reduced into each merged row, itself included (mean's divisor)
  #disposed = false;

  constructor(
    readonly indices: MatchIndices,
    /** Number of merged tokens (tomesd's r after clamping to the src count). */
    readonly r: number,
    batch: number,
    tokens: number,
  ) {
    const B = (this.#B = batch);
    this.#N = tokens;
    const { aIdx, bIdx, unmIdx, srcIdx, dstIdx } = indices;
    const Na = aIdx.shape[1]!;
    const Nb = bIdx.shape[1]!;
    const unm = Na - r;
    const M = (this.#M = tokens - r);
    const dev = aIdx.device;
    // Row indices into flattened [B·N, C] / [B·M, C] tensors, so every copy is an indexSelect of whole rows (int32:
    // the CPU backend reads int32 indices without conversion).
    [this.#rows, this.#srcRows, this.#target, this.#inverse, this.#counts] = tidy(() => {
      const a = aIdx.to("int32").expand([B, Na, 1]); // [B, Na, 1]
      const bB = bIdx.to("int32").expand([B, Nb, 1]); // [B, Nb, 1]
      const unmPos = gather(a, 1, unmIdx); // [B, unm, 1] token positions of the unmerged src tokens
      const srcPos = gather(a, 1, srcIdx); // [B, r, 1] token positions of the merged src tokens
      const base = (stride: number) => arange(0, B * stride, stride, { device: dev, dtype: "int32" }).reshape([B, 1, 1]); // [B, 1, 1]
      const rows = add(cat([unmPos, bB], 1), base(tokens)).reshape([B * M]); // merged row m of batch b starts as x[b, rows]
      const srcRows = add(srcPos, base(tokens)).reshape([B * r]);
      const target = add(dstIdx.to("int32"), unm); // [B, r, 1]
      // each token position p is represented by merged row: unm src k -> k, dst j -> unm + j, merged src -> its target
      const positions = cat([unmPos, bB, srcPos], 1); // [B, N, 1]
      const merged = cat(
        [arange(0, M, 1, { device: dev, dtype: "int32" }).reshape([1, M, 1]).expand([B, M, 1]), target],
        1,
      ); // [B, N, 1]
      const inverse = add(scatterAdd(zeros([B, tokens, 1], { dtype: "int32", device: dev }), 1, positions, merged), base(M)).reshape([B * tokens]);
      const counts = scatterAdd(ones([B, M, 1], { device: dev }), 1, target, ones([B, r, 1], { device: dev })); // exact small integers
      return [rows, srcRows, target, inverse, counts] as const;
    });
  }

  /** x [B, N, C] -> [B, N − r, C]: cat[unmerged src tokens, dst tokens with their merged src reduced in]. */
  merge(x: Tensor, mode: MergeMode = "mean"): Tensor {
    this.#check(x, this.#N, "merge");
    const [B, N, C] = x.shape as [number, number, number];
    return tidy(() => {
      const flat = x.reshape([B * N, C]); // [B·N, C]
      const start = indexSelect(flat, 0, this.#rows).reshape([B, this.#M, C]); // [B, M, C] = cat[unm, dst]
      const src = indexSelect(flat, 0, this.#srcRows).reshape([B, this.r, C]); // [B, r, C]
      const target = this.#target.expand([B, this.r, C]);
      // float32 mean: scatter_reduce's float32 sums in index order, divided by the per-row counts computed once per
      // matching — the same adds and the same divisions (rows nobody targets: x/1 exact). Other dtypes go through
      // scatterReduce, which rounds to the dtype only after the division.
      if (mode === "mean" && x.dtype === "float32") return div(scatterAdd(start, 1, target, src), this.#counts); // [B, M, C]
      return scatterReduce(start, 1, target, src, mode); // [B, M, C]
    });
  }

  /** y [B, N − r, C] -> [B, N, C]: every token position gets a copy of the merged row that represents it. */
  unmerge(y: Tensor): Tensor {
    this.#check(y, this.#M, "unmerge");
    const C = y.shape[2]!;
    return tidy(() => indexSelect(y.reshape([this.#B * this.#M, C]), 0, this.#inverse).reshape([this.#B, this.#N, C])); // [B, N, C]
  }

  #check(x: Tensor, tokens: number, op: string): void {
    if (this.#disposed) throw new Error(`TokenMatch.${op}: this matching was disposed`);
    if (x.ndim !== 3 || x.shape[0] !== this.#B || x.shape[1] !== tokens)
      throw new Error(`TokenMatch.${op}: expected [${this.#B}, ${tokens}, C], got ${x.describe()}`);
  }

  get isDisposed(): boolean {
    return this.#disposed;
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    const i = this.indices;
    for (const t of [i.aIdx, i.bIdx, i.unmIdx, i.srcIdx, i.dstIdx, this.#rows, this.#srcRows, this.#target, this.#inverse, this.#counts]) t.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/**
 * Match metric [B, N, C] over a partition of its N tokens and merge `r` of them (tomesd's r = ⌊N·ratio⌋, clamped
 * to the src count). null when nothing is merged (r ≤ 0 or no dst token): tomesd's do_nothing.
 */
export function bipartiteSoftMatching(metric: Tensor, partition: Partition, r: number): TokenMatch | null {
  if (metric.ndim !== 3) throw new Error(`bipartiteSoftMatching: metric must be [B, N, C], got ${metric.describe()}`);
  const [B, N, C] = metric.shape as [number, number, number];
  const Na = partition.aIdx.shape[1]!;
  const Nb = partition.bIdx.shape[1]!;
  if (Na + Nb !== N) throw new Error(`bipartiteSoftMatching: the partition covers ${Na + Nb} tokens, the metric has ${N}`);
  if (r <= 0 || Nb === 0 || Na === 0) return null;
  const rr = Math.min(Na, r);
  const indices = tidy(() => {
    const m32 = metric.dtype === "float32" ? metric : metric.to("float32");
    // rows are normalized one by one, so selecting first gives the same unit rows without a [B, N, C] temporary
    const unit = (t: Tensor) => div(t, sqrt(sum(square(t), -1, true)));
    const a = unit(indexSelect(m32, 1, partition.aIdx.reshape([Na]))); // [B, Na, C] unit rows
    const b = unit(indexSelect(m32, 1, partition.bIdx.reshape([Nb]))); // [B, Nb, C]
    const scores = matmul(a, b.transpose(-1, -2)); // [B, Na, Nb]
    const { values: nodeMax, indices: nodeIdx } = maxWithIndices(scores, -1); // [B, Na]
    const edgeIdx = argsort(nodeMax, -1, { descending: true }).unsqueeze(-1); // [B, Na, 1]
    const unmIdx = edgeIdx.narrow(1, rr, Na - rr).contiguous(); // [B, Na − r, 1]
    const srcIdx = edgeIdx.narrow(1, 0, rr).contiguous(); // [B, r, 1]
    const dstIdx = gather(nodeIdx.unsqueeze(-1), 1, srcIdx); // [B, r, 1]
    return { aIdx: partition.aIdx.contiguous(), bIdx: partition.bIdx.contiguous(), unmIdx, srcIdx, dstIdx };
  });
  try {
    return new TokenMatch(indices, rr, B, N);
  } catch (e) {
    for (const t of Object.values(indices)) t.dispose();
    throw e;
  }
}

