// The float32 numerics policy of the CUDA backend (allowTf32, src/backends/cuda/context.ts): one switch decides
// both cuBLAS (compute type and math mode) and cuDNN (the convolution's math type). The emulated device rounds
// float32 operands to TF32 exactly when the real libraries would use TF32 tensor cores (kernels/emu/half.h
// tf32_round), so each mode's error bound is checked here against a float64 reference:
//   off: plain float32, |err| ≤ K·2⁻²⁴·Σ|a·b| (the worst case of K float32 additions; observed far below);
//   on:  each operand rounded to a 10-bit mantissa (relative error ≤ 2⁻¹¹ each, ≤ 2⁻¹⁰ + 2⁻²² per product)
//        plus the float32 sum: |err| ≤ (2⁻¹⁰ + 2⁻²² + K·2⁻²⁴)·Σ|a·b|; and TF32 must visibly happen (some error
//        above 2⁻¹⁴·Σ|a·b|, far beyond float32's), so a mode that silently stays float32 fails.

import { afterAll, describe, expect, test } from "bun:test";
import { cudaAllowTf32, setCudaAllowTf32 } from "../../src/backends/cuda/index.ts";
import { hasBackend } from "../../src/backends/registry.ts";
import { conv2d, matmul, tensor, type Tensor } from "../../src/tensor/index.ts";
import { randn } from "../../src/tensor/random/torch-normal.ts";

const HAS_CUDA = hasBackend("cuda");

/** max over outputs of |got − ref| / Σ|terms| for dot products out[i] = Σ_k a[i,k]·b[k,j]. */
function matmulErrors(a: Float32Array, b: Float32Array, got: Float32Array, M: number, K: number, N: number): number {
  let worst = 0;
  for (let i = 0; i < M; i++)
    for (let j = 0; j < N; j++) {
      let ref = 0;
      let mag = 0;
      for (let k = 0; k < K; k++) {
        const p = a[i * K + k]! * b[k * N + j]!;
        ref += p;
        mag += Math.abs(p);
      }
      worst = Math.max(worst, Math.abs(got[i * N + j]! - ref) / mag);
    }
  return worst;
}

describe.skipIf(!HAS_CUDA)("allowTf32: one float32 policy for cuBLAS and cuDNN", () => {
  const before = HAS_CUDA ? cudaAllowTf32() : false;
  afterAll(() => HAS_CUDA && setCudaAllowTf32(before));
  const [M, K, N] = [24, 300, 20];
  const a = randn([M, K], { seed: 1 });
  const b = randn([K, N], { seed: 2 });
  const run = (on: boolean) => {
    setCudaAllowTf32(on);
    const ta = tensor(a, { shape: [M, K], device: "cuda" });
    const tb = tensor(b, { shape: [K, N], device: "cuda" });
    const out = matmul(ta, tb);
    const r = out.toFloat32Array();
    for (const t of [ta, tb, out]) t.dispose();
    return matmulErrors(a, b, r, M, K, N);
  };

  test("off by default: float32 GEMMs are plain float32", () => {
    expect(before).toBe(process.env.BD_CUDA_TF32 === "1");
    expect(run(false)).toBeLessThanOrEqual(K * 2 ** -24);
  });

  test("on: GEMM operands are TF32 within its bound", () => {
    const err = run(true);
    expect(err).toBeLessThanOrEqual(2 ** -10 + 2 ** -22 + K * 2 ** -24);
    expect(err).toBeGreaterThan(2 ** -14);
    expect(run(false)).toBeLessThan(2 ** -18); // and switching back takes effect at once
  });

  test("the same switch decides convolutions (a 1x1 convolution is the same dot products)", () => {
    // x [1, K, 1, N] with w [M, K, 1, 1]: out[0, m, 0, n] = Σ_k w[m, k]·x[0, k, 0, n] = (W·X)[m, n]
    const convErr = (on: boolean) => {
      setCudaAllowTf32(on);
      const x = tensor(b, { shape: [1, K, 1, N], device: "cuda" });
      const w = tensor(a, { shape: [M, K, 1, 1], device: "cuda" });
      const out: Tensor = conv2d(x, w);
      const r = out.toFloat32Array();
      for (const t of [x, w, out]) t.dispose();
      return matmulErrors(a, b, r, M, K, N);
    };
    expect(convErr(false)).toBeLessThanOrEqual(K * 2 ** -24);
    const on = convErr(true);
    expect(on).toBeLessThanOrEqual(2 ** -10 + 2 ** -22 + K * 2 ** -24);
    expect(on).toBeGreaterThan(2 ** -14);
  });
});
