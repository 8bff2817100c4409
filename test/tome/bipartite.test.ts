// tomesd's bipartite_soft_matching_random2d against the golden calls (the tome/* entries of component tomesd.merge.*
// this file drives, test/golden/registry.ts), on the CPU and the CUDA device (emulated without a GPU): every
// argument (w, h, sx, sy, r, no_rand) comes from the entry's meta. The partition is ours when no_rand (its a_idx /
// b_idx must equal tomesd's index for index: torch's unstable sort order reproduced); the random case feeds the
// recorded a_idx / b_idx (its generator state is not recorded), and the cell choice read back from b_idx must give
// the same order through our partition. Then unm_idx / src_idx / dst_idx exactly, and merged (mean), merged_sum,
// merged_metric and unmerged: bit for bit (tolerance 0) — they are copies and the same sequential float32
// scatter-reduce sums and division torch runs, on both backends. Also: the std::sort emulation, the random
// dst choice, float16/bfloat16 merges, r clamping and r = 0, memory.

import { describe, expect, test } from "bun:test";
import { type DType, type Device, type Tensor, memoryStats, tensor, tidy } from "../../src/tensor/index.ts";
import { TorchGenerator } from "../../src/tensor/random/torch-normal.ts";
import { bipartiteSoftMatching } from "../../src/tome/bipartite.ts";
import { cellCount, partitionIndices, partitionTensors, randomDstChoice } from "../../src/tome/partition.ts";
import { torchUnstableArgsort } from "../../src/tome/torch-sort.ts";
import { goldenDriven } from "../golden/registry.ts";
import { type GoldenEntry, goldenTensor, maxError, openGolden } from "../helpers/golden.ts";
import { prng, testDevices } from "../helpers/op-harness.ts";

const entries = goldenDriven(import.meta.path);

interface MatchArgs {
  w: number;
  h: number;
  sx: number;
  sy: number;
  r: number;
  no_rand: boolean;
}

const ints = (t: Tensor): number[] => Array.from(t.toTypedArray() as ArrayLike<number | bigint>, Number);
const f32 = (t: Tensor): Float32Array => t.toFloat32Array();
const argsOf = (e: GoldenEntry) => e.meta.args as unknown as MatchArgs;

/** Which token of each cell b_idx names (row-major dy·sx + dx), in cell order. */
function choiceFromDst(b: number[], a: MatchArgs): Int32Array {
  const wsx = Math.floor(a.w / a.sx);
  const choice = new Int32Array(cellCount(a.w, a.h, a.sx, a.sy)).fill(-1);
  for (const p of b) {
    const [y, x] = [Math.floor(p / a.w), p % a.w];
    choice[Math.floor(y / a.sy) * wsx + Math.floor(x / a.sx)] = (y % a.sy) * a.sx + (x % a.sx);
  }
  return choice;
}

describe("golden bipartite soft matching", () => {
  test("index.json lists matching cases", () => {
    expect(entries.length).toBeGreaterThan(0);
  });

  for (const entry of entries)
    for (const device of testDevices())
      test(`${entry.file} (${JSON.stringify(entry.meta.args)}) on ${device}: partition, indices and every output exact`, () => {
        const a = argsOf(entry);
        const f = openGolden(entry.file);
        const live0 = memoryStats(device).live;
        tidy(() => {
          const g = (n: string) => goldenTensor(f, n);
          const on = (n: string) => g(n).to(device);
          const goldenA = ints(g("a_idx"));
          const goldenB = ints(g("b_idx"));
          expect(goldenB.length).toBe(entry.meta.num_dst as number);
          // a random case's dst choice is only in b_idx; our partition of that choice must give tomesd's order
          const ours = partitionIndices(a.w, a.h, a.sx, a.sy, a.no_rand ? null : choiceFromDst(goldenB, a));
          expect(Array.from(ours.a), "a_idx").toEqual(goldenA);
          expect(Array.from(ours.b), "b_idx").toEqual(goldenB);
          const part = a.no_rand ? partitionTensors(ours, device) : { aIdx: on("a_idx"), bIdx: on("b_idx") };
          const match = bipartiteSoftMatching(on("metric"), part, a.r)!;
          expect(match).not.toBeNull();
          expect(match.r).toBe(entry.meta.r_effective as number);
          for (const [name, t] of Object.entries({ unm_idx: match.indices.unmIdx, src_idx: match.indices.srcIdx, dst_idx: match.indices.dstIdx })) {
            expect(t.shape, name).toEqual(entry.tensors[name]!.shape);
            expect(ints(t), name).toEqual(ints(g(name)));
          }
          const x = on("x");
          const merged = match.merge(x);
          const outs: Record<string, Tensor> = {
            merged,
            merged_sum: match.merge(x, "sum"),
            merged_metric: match.merge(on("metric")),
            unmerged: match.unmerge(merged),
          };
          for (const [name, t] of Object.entries(outs)) {
            expect(t.shape, name).toEqual(entry.tensors[name]!.shape);
            expect(t.device).toBe(device);
            expect(maxError(f32(t), f32(g(name))).maxAbs, `${name} on ${device}`).toBe(0); // copies + torch's own sum order
          }
          match.dispose();
        });
        expect(memoryStats(device).live).toBe(live0);
      });
});

describe("partition", () => {
  test("torchUnstableArgsort sorts (ascending and descending) and is a permutation, ties and all sizes", () => {
    const rnd = prng(7);
    for (const n of [0, 1, 2, 3, 15, 16, 17, 33, 64, 100, 257, 1000]) {
      for (const levels of [2, 5, 1e9]) {
        const keys = Array.from({ length: n }, () => Math.floor(rnd() * levels));
        for (const descending of [false, true]) {
          const ix = Array.from(torchUnstableArgsort(keys, descending));
          expect([...ix].sort((p, q) => p - q)).toEqual(Array.from({ length: n }, (_, i) => i));
          for (let i = 1; i < n; i++) {
            const [p, q] = [keys[ix[i - 1]!]!, keys[ix[i]!]!];
            expect(descending ? p >= q : p <= q).toBe(true);
          }
        }
      }
    }
  });

  test("every whole cell has exactly one dst token, at the chosen place; the ragged border is src", () => {
    for (const [w, h, sx, sy] of [[8, 8, 2, 2], [7, 5, 2, 2], [9, 6, 3, 2], [5, 7, 1, 3], [4, 4, 4, 4]] as const) {
      const gen = new TorchGenerator(3);
      const choice = randomDstChoice(gen, w, h, sx, sy);
      const p = partitionIndices(w, h, sx, sy, choice);
      expect(p.a.length + p.b.length).toBe(w * h);
      expect(new Set([...p.a, ...p.b]).size).toBe(w * h);
      const wsx = Math.floor(w / sx);
      const dst = [...p.b].map((q) => {
        const [y, x] = [Math.floor(q / w), q % w];
        return { cell: Math.floor(y / sy) * wsx + Math.floor(x / sx), at: (y % sy) * sx + (x % sx), inside: y < Math.floor(h / sy) * sy && x < wsx * sx };
      });
      expect(dst.every((d) => d.inside)).toBe(true);
      expect(dst.map((d) => d.cell).sort((p, q) => p - q)).toEqual(Array.from({ length: cellCount(w, h, sx, sy) }, (_, i) => i));
      for (const d of dst) expect(d.at).toBe(choice[d.cell]!);
    }
  });

  test("the random dst choice is torch.randint(sx·sy): one 32-bit draw per cell modulo the range, reproducible from the seed", () => {
    const a = randomDstChoice(new TorchGenerator(42), 8, 6, 2, 2);
    const b = randomDstChoice(new TorchGenerator(42), 8, 6, 2, 2);
    expect(Array.from(a)).toEqual(Array.from(b));
    const ref = new TorchGenerator(42);
    expect(Array.from(a)).toEqual(Array.from({ length: 12 }, () => ref.engine.nextU32() % 4));
    expect(Array.from(randomDstChoice(new TorchGenerator(43), 8, 6, 2, 2))).not.toEqual(Array.from(a));
  });
});

describe("matching", () => {
  const metricOf = (B: number, N: number, C: number, seed: number, device: Device, dtype: DType = "float32") => {
    const r = prng(seed);
    return tensor(Array.from({ length: B * N * C }, () => r() * 2 - 1), { shape: [B, N, C], device, dtype });
  };

  test("r = 0 merges nothing (null, tomesd's do_nothing); r above the src count is clamped to it", () => {
    tidy(() => {
      const p = partitionTensors(partitionIndices(4, 4, 2, 2), "cpu");
      const m = metricOf(1, 16, 4, 1, "cpu");
      expect(bipartiteSoftMatching(m, p, 0)).toBeNull();
      const all = bipartiteSoftMatching(m, p, 100)!;
      expect(all.r).toBe(12);
      expect(all.merge(m).shape).toEqual([1, 4, 4]);
      all.dispose();
    });
  });

  for (const device of testDevices())
    for (const dtype of ["float16", "bfloat16"] as const)
      test(`${dtype} on ${device}: the same indices as float32 on the same values, merges within one ${dtype} rounding`, () => {
        const live0 = memoryStats(device).live;
        tidy(() => {
          const p = partitionTensors(partitionIndices(6, 4, 2, 2), device);
          const half = metricOf(2, 24, 8, 5, device, dtype);
          const full = half.to("float32"); // the same values
          const mh = bipartiteSoftMatching(half, p, 12)!;
          const mf = bipartiteSoftMatching(full, p, 12)!;
          expect(ints(mh.indices.dstIdx)).toEqual(ints(mf.indices.dstIdx)); // the metric is compared in float32
          const merged = mh.merge(half);
          expect(merged.dtype).toBe(dtype);
          const ref = f32(mf.merge(full));
          // a mean rounded once to the storage dtype: half an ulp (2^-11 / 2^-8 relative to |x| ≤ 1)
          expect(maxError(f32(merged), ref).maxAbs).toBeLessThanOrEqual(dtype === "float16" ? 2 ** -11 : 2 ** -8);
          // unmerge copies rows: every position holds a row of merged, exactly
          const un = mh.unmerge(merged);
          expect(un.dtype).toBe(dtype);
          expect(un.shape).toEqual([2, 24, 8]);
          mh.dispose();
          mf.dispose();
        });
        expect(memoryStats(device).live).toBe(live0);
      });
});
