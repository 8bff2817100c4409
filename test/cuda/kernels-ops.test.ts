// Our reduction, softmax, normalisation, resampling, indexing and embedding kernels (kernels/reduce.cu,
// softmax.cu, norm.cu, upsample.cu, index.cu, embedding.cu) on the emulated device, against float64 references
// in every float dtype with odd sizes (97, 1025). Tolerances: float32 accumulation over n terms plus one
// rounding to the output dtype.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { CudaLibraries } from "../../ffi/cuda/index.ts";
import { REDUCE_OPS, StridedParams, reduceCode } from "../../ffi/cuda/kernels.ts";
import { nearestIndex } from "../../src/core/nearest.ts";
import {
  BUILD_TIMEOUT, Device, EPS, FLOAT_TAGS, HAS_GXX, type Tag, bytesOf, decode, emulatedCuda, encode, errorRatio, hostArray, random,
} from "./setup.ts";

const RTOL = { f32: 4 * EPS.f32, f16: 2 * EPS.f16, bf16: 2 * EPS.bf16 };

function reduceRef(op: string, v: number[], correction: number): number {
  const n = v.length;
  if (n === 0) return op === "sum" ? 0 : op === "prod" ? 1 : op.startsWith("arg") ? 0 : NaN;
  const mean = v.reduce((a, b) => a + b, 0) / n;
  switch (op) {
    case "sum": return mean * n;
    case "mean": return mean;
    case "var": return v.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(0, n - correction);
    case "prod": return v.reduce((a, b) => a * b, 1);
    case "max": return v.some(Number.isNaN) ? NaN : Math.max(...v);
    case "min": return v.some(Number.isNaN) ? NaN : Math.min(...v);
    case "argmax": case "argmin": {
      const nan = v.findIndex(Number.isNaN);
      if (nan >= 0) return nan;
      const best = op === "argmax" ? Math.max(...v) : Math.min(...v);
      return v.indexOf(best);
    }
  }
  throw new Error(op);
}

describe.skipIf(!HAS_GXX)("emulated kernels: reduce, softmax, norms, upsample, index, embedding", () => {
  let cu: CudaLibraries;
  let dev: Device;
  let k: CudaLibraries["kernels"]["symbols"];
  const P = new StridedParams();

  beforeAll(async () => {
    cu = await emulatedCuda();
    dev = new Device(cu);
    k = cu.kernels.symbols;
  }, BUILD_TIMEOUT);
  afterAll(() => dev?.freeAll());

  const launch = (name: string, ...args: Parameters<(typeof k)[string]>) => cu.check(k[name]!(...args) as number, name);
  const fetch = (p: number, tag: Tag, n: number) => decode(dev.download(p, hostArray(tag, n)), tag);

  for (const tag of FLOAT_TAGS)
    test(`reduce, all ops, ${tag}: rows [7, 1025] and middle dim [3, 97, 5]`, () => {
      for (const [outer, r, inner] of [[7, 1025, 1], [3, 97, 5], [4, 1, 1]]) {
        const n = outer! * r! * inner!;
        for (const op of REDUCE_OPS) {
          const raw = op === "prod" ? random(n, 51, 0.97, 1.03) : random(n, 52, -2, 2);
          const x = encode(raw, tag);
          const out = dev.malloc(outer! * inner! * 8);
          launch(`bdk_reduce_${tag}`, reduceCode(op), out, dev.upload(x.host), outer, r, inner, 1, null);
          const arg = op.startsWith("arg");
          const got = fetch(out, arg ? "i64" : tag, outer! * inner!);
          const ref = new Float64Array(outer! * inner!);
          for (let o = 0; o < outer!; o++) for (let j = 0; j < inner!; j++)
            ref[o * inner! + j] = reduceRef(op, Array.from({ length: r! }, (_, q) => x.exact[(o * r! + q) * inner! + j]!), 1);
          const atol = arg ? 0 : op === "max" || op === "min" ? 0 : 2 * r! * EPS.f32;
          const ratio = errorRatio(got, ref, atol, arg ? 0 : RTOL[tag]);
          if (ratio > 1) throw new Error(`${op} ${tag} [${outer}, ${r}, ${inner}]: error ratio ${ratio}`);
        }
      }
    });

  test("reduce: NaN propagates through max/min and wins argmax; first index on ties; empty reductions", () => {
    const x = encode([1, 5, 5, -2, NaN, 3, 9, 9, 0, -9], "f32");
    const px = dev.upload(x.host);
    const out = dev.malloc(64);
    for (const [op, tag, want] of [["max", "f32", [NaN, 9]], ["argmax", "i64", [4, 1]], ["argmin", "i64", [4, 4]], ["min", "f32", [NaN, -9]]] as const) {
      launch("bdk_reduce_f32", reduceCode(op), out, px, 2, 5, 1, 0, null); // rows [1,5,5,-2,NaN] and [3,9,9,0,-9]
      expect([op, ...fetch(out, tag, 2)]).toEqual([op, ...want]);
    }
    launch("bdk_reduce_f32", reduceCode("argmax"), out, px, 1, 5, 2, 0, null); // columns: [1,5,NaN,9,0] and [5,-2,3,9,-9]
    expect(Array.from(fetch(out, "i64", 2))).toEqual([2, 3]);
    for (const op of REDUCE_OPS) {
      launch("bdk_reduce_f32", reduceCode(op), out, px, 2, 0, 1, 1, null);
      expect([op, ...fetch(out, op.startsWith("arg") ? "i64" : "f32", 2)]).toEqual([op, ...new Array(2).fill(reduceRef(op, [], 1))]);
    }
    expect(() => launch("bdk_reduce_f32", 42, out, px, 2, 5, 1, 0, null)).toThrow("bdk_reduce_f32 failed: cudaErrorInvalidValue (1): invalid argument");
  });

  for (const tag of FLOAT_TAGS)
    test(`softmax and log-softmax ${tag}: [13, 1025] and [5, 97]; an all -inf row gives NaN`, () => {
      for (const [rows, cols] of [[13, 1025], [5, 97]] as const) {
        const raw = random(rows * cols, 61, -8, 8);
        raw.fill(-Infinity, 0, cols); // row 0
        const x = encode(raw, tag);
        const [px, out] = [dev.upload(x.host), dev.malloc(rows * cols * 4)];
        for (const log of [0, 1]) {
          launch(`bdk_softmax_${tag}`, out, px, rows, cols, log, null);
          const ref = new Float64Array(rows * cols);
          for (let r = 0; r < rows; r++) {
            const row = x.exact.subarray(r * cols, (r + 1) * cols);
            const m = Math.max(...row);
            const s = row.reduce((a, v) => a + Math.exp(v - m), 0);
            for (let c = 0; c < cols; c++) ref[r * cols + c] = log ? row[c]! - m - Math.log(s) : Math.exp(row[c]! - m) / s;
          }
          expect(errorRatio(fetch(out, tag, rows * cols), ref, 1e-6, RTOL[tag] + (log ? 0 : 8 * EPS.f32))).toBeLessThanOrEqual(1);
        }
      }
    });

  /** (x - mean) / sqrt(var + eps) over each run of `len` values, float64. */
  function normalize(v: Float64Array, len: number, eps: number): Float64Array {
    const out = new Float64Array(v.length);
    for (let s = 0; s < v.length; s += len) {
      const run = v.subarray(s, s + len);
      const mean = run.reduce((a, b) => a + b, 0) / len;
      const rstd = 1 / Math.sqrt(run.reduce((a, b) => a + (b - mean) ** 2, 0) / len + eps);
      for (let i = 0; i < len; i++) out[s + i] = (run[i]! - mean) * rstd;
    }
    return out;
  }

  for (const tag of FLOAT_TAGS)
    test(`group_norm ${tag}: [2, 6, 97] in 3 groups, affine or not, with fused SiLU`, () => {
      const [N, C, S, G] = [2, 6, 97, 3];
      const x = encode(random(N * C * S, 71, -3, 5), tag);
      const w = encode(random(C, 72, 0.5, 1.5), tag), b = encode(random(C, 73, -0.5, 0.5), tag);
      const [px, pw, pb, out] = [dev.upload(x.host), dev.upload(w.host), dev.upload(b.host), dev.malloc(N * C * S * 4)];
      const z = normalize(x.exact, (C / G) * S, 1e-5);
      for (const [affine, silu] of [[true, false], [true, true], [false, false]] as const) {
        launch(`bdk_group_norm_${tag}`, out, px, affine ? pw : null, affine ? pb : null, null, N, C, S, G, 1e-5, silu ? 1 : 0, null, null);
        const ref = z.map((v, i) => {
          const c = Math.floor(i / S) % C;
          const y = affine ? v * w.exact[c]! + b.exact[c]! : v;
          return silu ? y / (1 + Math.exp(-y)) : y;
        });
        expect(errorRatio(fetch(out, tag, N * C * S), ref, 1e-5, RTOL[tag])).toBeLessThanOrEqual(1);
      }
      expect(k[`bdk_group_norm_${tag}`]!(out, px, null, null, null, N, C, S, 4, 1e-5, 0, null, null)).toBe(1); // 6 channels, 4 groups
    });

  for (const tag of FLOAT_TAGS)
    test(`layer_norm ${tag}: [5, 1025] with and without weight and bias`, () => {
      const [rows, cols] = [5, 1025];
      const x = encode(random(rows * cols, 81, 1, 4), tag);
      const w = encode(random(cols, 82, 0.5, 1.5), tag), b = encode(random(cols, 83, -1, 1), tag);
      const [px, out] = [dev.upload(x.host), dev.malloc(rows * cols * 4)];
      const z = normalize(x.exact, cols, 1e-6);
      launch(`bdk_layer_norm_${tag}`, out, px, dev.upload(w.host), dev.upload(b.host), rows, cols, 1e-6, null);
      expect(errorRatio(fetch(out, tag, rows * cols), z.map((v, i) => v * w.exact[i % cols]! + b.exact[i % cols]!), 1e-5, RTOL[tag])).toBeLessThanOrEqual(1);
      launch(`bdk_layer_norm_${tag}`, out, px, null, null, rows, cols, 1e-6, null);
      expect(errorRatio(fetch(out, tag, rows * cols), z, 1e-5, RTOL[tag])).toBeLessThanOrEqual(1);
    });

  test("upsample_nearest2d: doubling, non-integer scales and downsampling, bit-exact in every dtype", () => {
    const [planes, H, W] = [6, 5, 7];
    for (const tag of ["f32", "f16", "bf16", "i64", "u8"] as const) {
      const x = encode(random(planes * H * W, 91, 0, 250), tag);
      const px = dev.upload(x.host);
      for (const [OH, OW] of [[10, 14], [7, 9], [3, 4]] as const) {
        const out = dev.malloc(planes * OH * OW * 8);
        launch(`bdk_upsample_nearest2d_${tag}`, out, px, planes, H, W, OH, OW, null);
        const got = fetch(out, tag, planes * OH * OW);
        for (let p = 0; p < planes; p++) for (let i = 0; i < OH; i++) for (let j = 0; j < OW; j++)
          if (got[(p * OH + i) * OW + j] !== x.exact[(p * H + nearestIndex(i, H, OH)) * W + nearestIndex(j, W, OW)])
            throw new Error(`${tag} ${OH}x${OW} at ${p},${i},${j}`);
      }
    }
  });

  test("index_select with int32 and int64 indices; an out-of-range index sets the flag (and its value) and writes 0", () => {
    const [outer, dim, inner] = [3, 10, 4];
    for (const tag of ["f16", "i64"] as const) {
      const x = encode(random(outer * dim * inner, 95, -50, 50), tag);
      const px = dev.upload(x.host);
      for (const i64 of [0, 1]) {
        const idx = [9, 0, 3, 3, 10];
        const pidx = dev.upload(encode(idx, i64 ? "i64" : "i32").host);
        const bad = dev.upload(new BigInt64Array(2)); // [raised, offending index]
        const out = dev.malloc(outer * idx.length * inner * 8);
        launch(`bdk_index_select_${tag}`, out, px, pidx, outer, dim, inner, idx.length, i64, bad, null);
        const got = fetch(out, tag, outer * idx.length * inner);
        for (let o = 0; o < outer; o++) for (let j = 0; j < idx.length; j++) for (let l = 0; l < inner; l++)
          expect(got[(o * idx.length + j) * inner + l]).toBe(idx[j]! < dim ? x.exact[(o * dim + idx[j]!) * inner + l]! : 0);
        expect(Array.from(dev.download(bad, new BigInt64Array(2)))).toEqual([1n, 10n]);
      }
    }
  });

  test("gather along dim 1 of a transposed view", () => {
    const [R, C, K] = [4, 6, 3];
    const x = encode(random(R * C, 96, -9, 9), "bf16"); // stored [6, 4]; viewed as [4, 6] with strides [1, 4]
    const idxv = Array.from({ length: R * K }, (_, i) => (i * 5 + 1) % C);
    const out = dev.malloc(R * K * 2);
    // operands over the index shape [4, 3]: out [3, 1], index [3, 1], x with its dim-1 stride zeroed [1, 0]
    launch("bdk_gather_bf16", P.set([R, K], [[K, 1], [K, 1], [1, 0]]), out, dev.upload(x.host), dev.upload(encode(idxv, "i64").host), 4, C, 1, null, null);
    const got = fetch(out, "bf16", R * K);
    for (let i = 0; i < R; i++) for (let j = 0; j < K; j++) expect(got[i * K + j]).toBe(x.exact[idxv[i * K + j]! * R + i]!);
  });

  for (const tag of ["f32", "f16", "bf16", "i32", "i64"] as const)
    test(`scatter_add ${tag}: duplicate indices accumulate`, () => {
      const [R, C, K] = [4, 6, 5];
      const base = encode(random(R * C, 97, -4, 4), tag);
      const src = encode(random(R * K, 98, -4, 4), tag);
      const idxv = Array.from({ length: R * K }, (_, i) => (i * 7) % 4); // columns 0..3, repeated
      const out = dev.upload(base.host);
      launch(`bdk_scatter_add_${tag}`, P.set([R, K], [[C, 0], [K, 1], [K, 1]]), out, dev.upload(encode(idxv, "i32").host), dev.upload(src.host), 1, C, 0, null, null);
      const ref = Float64Array.from(base.exact);
      for (let i = 0; i < R; i++) for (let j = 0; j < K; j++) ref[i * C + idxv[i * K + j]!]! += src.exact[i * K + j]!;
      // 16-bit floats round after every add (as torch's CUDA scatter_add): up to K roundings
      const rtol = tag === "f16" || tag === "bf16" ? K * EPS[tag] : tag === "f32" ? 4 * EPS.f32 : 0;
      expect(errorRatio(fetch(out, tag, R * C), ref, tag.startsWith("i") ? 0 : 4 * K * EPS[tag as "f16"] , rtol)).toBeLessThanOrEqual(1);
    });

  for (const tag of FLOAT_TAGS)
    test(`timestep embedding ${tag}: SD (dim 320, flip_sin_to_cos, shift 0) and odd dim 321 (shift 1)`, () => {
      const t = [0, 1, 17.5, 999];
      const pt = dev.upload(Float32Array.from(t));
      for (const [dim, flip, shift] of [[320, 1, 0], [321, 0, 1]] as const) {
        const out = dev.malloc(t.length * dim * 4);
        launch(`bdk_timestep_embedding_${tag}`, out, pt, t.length, dim, flip, shift, 1, 10000, null);
        const half = Math.floor(dim / 2);
        const f = Math.fround;
        const ref = new Float64Array(t.length * dim);
        for (let r = 0; r < t.length; r++)
          for (let c = 0; c < 2 * half; c++) {
            const kk = c < half ? c : c - half;
            const freq = f(Math.exp(f(f(f(-Math.log(10000)) * kk) / f(half - shift))));
            const arg = f(f(t[r]!) * freq);
            ref[r * dim + c] = (c < half) === (flip === 1) ? Math.cos(arg) : Math.sin(arg);
          }
        expect(errorRatio(fetch(out, tag, t.length * dim), ref, 1e-6, RTOL[tag])).toBeLessThanOrEqual(1);
      }
    });

  test("index and norm launchers check their sizes", () => {
    const p = dev.malloc(64);
    expect(k.bdk_index_select_f32!(p, p, p, -1, 2, 2, 2, 0, null, null)).toBe(1);
    expect(k.bdk_layer_norm_f32!(p, p, null, null, -1, 4, 1e-5, null)).toBe(1);
    expect(k.bdk_softmax_f16!(p, p, 0, 16, 0, null)).toBe(0); // no rows: nothing to do
    expect(k.bdk_timestep_embedding_f32!(p, p, 1, 4, 0, 0, 1, 0, null)).toBe(1); // max_period must be positive
    expect(bytesOf("bf16")).toBe(2);
  });
});
