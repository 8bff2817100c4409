// The tensor-core fragment layouts (kernels/mma.cuh, emulated in kernels/emu/mma_emu.h) pinned through the test
// entries of kernels/test_mma.cu: bdk_test_ldmatrix_trans checks which lane / register / half receives which
// element of four 8×8 matrices; bdk_test_mma_<t>: one warp loads A [16, 16] and B [16, 8] into its registers by the
// PTX ISA m16n8k16 layout, runs one mma.sync and stores D = A·B + C by the C layout. Runs on the CUDA device the
// tests use (emulated without a GPU; the same entry on a real GPU checks the hardware against the same layout).
// Inputs are small integers, so every product and sum is exact in fp32 and the results must match bit for bit:
// a permutation (identity and a shuffled one) pins which lane/register/half holds which row and column, random
// integers catch everything else.

import { describe, expect, test } from "bun:test";
import { cudaContext, dptr } from "../../src/backends/cuda/context.ts";
import { hasBackend } from "../../src/backends/registry.ts";
import type { DType } from "../../src/core/dtype.ts";
import { type Tensor, tensor, tidy } from "../../src/tensor/index.ts";
import { values } from "../helpers/op-harness.ts";

const HAS_CUDA = hasBackend("cuda");

function mma(tag: "f16" | "bf16", a: number[], b: number[], c: number[]): Float64Array {
  const dtype: DType = tag === "f16" ? "float16" : "bfloat16";
  return tidy(() => {
    const ta = tensor(a, { shape: [16, 16], dtype, device: "cuda" });
    const tb = tensor(b, { shape: [16, 8], dtype, device: "cuda" });
    const tc = tensor(c, { shape: [16, 8], device: "cuda" });
    const td: Tensor = tensor(new Float32Array(128), { shape: [16, 8], device: "cuda" });
    const ctx = cudaContext();
    const rc = ctx.k[`bdk_test_mma_${tag}`]!(dptr(td), dptr(ta), dptr(tb), dptr(tc), ctx.stream) as number;
    expect(rc).toBe(0);
    return values(td);
  });
}

function reference(a: number[], b: number[], c: number[]): number[] {
  const d: number[] = [];
  for (let i = 0; i < 16; i++)
    for (let n = 0; n < 8; n++) {
      let s = c[i * 8 + n]!;
      for (let k = 0; k < 16; k++) s += a[i * 16 + k]! * b[k * 8 + n]!;
      d.push(s);
    }
  return d;
}

let seed = 12345;
const randInt = (lo: number, hi: number) => {
  seed = (seed * 1103515245 + 12345) % 2 ** 31;
  return lo + (seed % (hi - lo + 1));
};

describe.skipIf(!HAS_CUDA)("ldmatrix .x4 .trans register layout (bdk_test_ldmatrix_trans)", () => {
  test("lane l, register i holds (M_i[2(l%4)][l/4], M_i[2(l%4)+1][l/4]) in its low / high half", () => {
    tidy(() => {
      const m = Int32Array.from({ length: 256 }, (_, e) => 1000 + e); // distinct 16-bit values, element e = (i, r, c)
      const host = new Uint16Array(m); // the entry takes uint16 [4, 8, 8]: uploaded as the bytes of 128 int32
      const t16 = tensor(new Int32Array(host.buffer.slice(0)), { shape: [128], dtype: "int32", device: "cuda" });
      const out = tensor(new Int32Array(128), { shape: [128], dtype: "int32", device: "cuda" });
      const ctx = cudaContext();
      expect(ctx.k.bdk_test_ldmatrix_trans!(dptr(out), dptr(t16), ctx.stream) as number).toBe(0);
      const got = Array.from(values(out), (x) => x >>> 0);
      const want: number[] = [];
      const M = (i: number, r: number, c: number) => host[i * 64 + r * 8 + c]!;
      for (let l = 0; l < 32; l++)
        for (let i = 0; i < 4; i++) want.push((M(i, 2 * (l % 4), l >> 2) | (M(i, 2 * (l % 4) + 1, l >> 2) << 16)) >>> 0);
      expect(got).toEqual(want);
    });
  });
});

describe.skipIf(!HAS_CUDA)("mma.sync m16n8k16 fragment layout (bdk_test_mma_<t>)", () => {
  for (const tag of ["f16", "bf16"] as const) {
    test(`${tag}: a permutation A picks rows of B, C is added where the C layout says`, () => {
      const B = Array.from({ length: 128 }, (_, i) => i); // distinct integers 0..127: exact in f16 and bf16
      const C = Array.from({ length: 128 }, (_, i) => 1000 * i);
      for (const perm of [(i: number) => i, (i: number) => (i * 5 + 3) % 16]) {
        const A = new Array(256).fill(0);
        for (let i = 0; i < 16; i++) A[i * 16 + perm(i)] = 1;
        const want = Array.from({ length: 128 }, (_, e) => B[perm(Math.floor(e / 8)) * 8 + (e % 8)]! + C[e]!);
        expect([...mma(tag, A, B, C)]).toEqual(want);
      }
    });

    test(`${tag}: random small integers give the exact product`, () => {
      for (let rep = 0; rep < 3; rep++) {
        const A = Array.from({ length: 256 }, () => randInt(-8, 8));
        const B = Array.from({ length: 128 }, () => randInt(-8, 8));
        const C = Array.from({ length: 128 }, () => randInt(-100, 100));
        expect([...mma(tag, A, B, C)]).toEqual(reference(A, B, C));
      }
    });
  }
});
