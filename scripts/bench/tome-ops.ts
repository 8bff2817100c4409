// Per-op timing of one ToMe'd block call on the CPU, printed as one JSON object: the matching's ops as
// bipartiteSoftMatching runs them (the src/dst selections, their row norms, the scores GEMM, max+argmax, argsort, the index
// gathers), building the TokenMatch, merge and unmerge, at 512²-like sizes (64×64 tokens, C = 320, tomesd's
// sx = sy = 2 random partition, ratio 0.5). Median and minimum of --reps runs (host clock; the CPU backend is
// synchronous). On a loaded machine the first touch of fresh output memory (page faults) swings single runs by tens
// of ms: compare the minima, and the process CPU time (min_cpu_ms: user + sys of all threads).
// Usage: bun scripts/bench/tome-ops.ts [--batch 2] [--tokens 64] [--channels 320] [--ratio 0.5] [--reps 3]

import { type Tensor, argsort, div, gather, indexSelect, matmul, maxWithIndices, randn, sqrt, square, sum, tidy } from "../../src/tensor/index.ts";
import { TokenMatch, bipartiteSoftMatching } from "../../src/tome/bipartite.ts";
import { partitionIndices, partitionTensors, randomDstChoice } from "../../src/tome/partition.ts";
import { TorchGenerator } from "../../src/tensor/random/torch-normal.ts";
import { cliOption, median, round } from "./bench-util.ts";

const args = process.argv.slice(2);
const opt = (name: string, d: number) => Number(cliOption(args, name) ?? d);
const B = opt("--batch", 2);
const side = opt("--tokens", 64);
const C = opt("--channels", 320);
const ratio = opt("--ratio", 0.5);
const REPS = opt("--reps", 3);
const N = side * side;
const r = Math.floor(N * ratio);

const x = randn([B, N, C], { seed: 1 });
const gen = new TorchGenerator(42);
const part = partitionTensors(partitionIndices(side, side, 2, 2, randomDstChoice(gen, side, side, 2, 2)), "cpu");
const Na = part.aIdx.shape[1]!;
const Nb = part.bIdx.shape[1]!;
const rr = Math.min(Na, r);

const times: Record<string, number[]> = {};
const cpuTimes: Record<string, number[]> = {}; // process CPU time (user + sys, all threads): less swayed by other jobs
function timed<T>(name: string, f: () => T): T {
  const c = process.cpuUsage();
  const t = performance.now();
  const v = f();
  (times[name] ??= []).push(performance.now() - t);
  const d = process.cpuUsage(c);
  (cpuTimes[name] ??= []).push((d.user + d.system) / 1e3);
  return v;
}

for (let rep = 0; rep < REPS + 1; rep++) {
  tidy(() => {
    const unit = (t: Tensor) => div(t, sqrt(sum(square(t), -1, true)));
    const as = timed("select_src", () => indexSelect(x, 1, part.aIdx.reshape([Na])));
    const bs = timed("select_dst", () => indexSelect(x, 1, part.bIdx.reshape([Nb])));
    const [a, b] = timed("norm", () => [unit(as), unit(bs)]);
    const scores = timed("scores_matmul", () => matmul(a, b.transpose(-1, -2)));
    const { values, indices } = timed("max_argmax", () => maxWithIndices(scores, -1));
    const edge = timed("argsort", () => argsort(values, -1, { descending: true }).unsqueeze(-1));
    const srcIdx = edge.narrow(1, 0, rr).contiguous();
    timed("unm_src_split", () => edge.narrow(1, rr, Na - rr).contiguous());
    timed("gather_dst", () => gather(indices.unsqueeze(-1), 1, srcIdx));
    const match = timed("match_total", () => bipartiteSoftMatching(x, part, r)!);
    const y = timed("merge", () => match.merge(x));
    timed("unmerge", () => match.unmerge(y));
    match.dispose();
    void (TokenMatch as unknown);
    return undefined as unknown as Tensor;
  });
  if (rep === 0) for (const k of Object.keys(times)) [times[k], cpuTimes[k]] = [[], []]; // warm-up
}

const ms: Record<string, number> = {};
const minMs: Record<string, number> = {};
const cpuMs: Record<string, number> = {};
for (const [k, v] of Object.entries(times)) {
  ms[k] = round(median(v), 1);
  minMs[k] = round(Math.min(...v), 1);
  cpuMs[k] = round(Math.min(...cpuTimes[k]!), 1);
}
console.log(JSON.stringify({ bench: "tome-ops", date: new Date().toISOString(), batch: B, tokens: N, channels: C, ratio, r: rr, reps: REPS, median_ms: ms, min_ms: minMs, min_cpu_ms: cpuMs }, null, 2));
