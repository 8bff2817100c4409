// The CUDA linear layer as one cuBLASLt matmul with the BIAS / GELU_BIAS / GELU epilogues (src/backends/cuda/linalg.ts,
// lt-plans.ts) against the unfused path (BD_CUDA_LINEAR=cublas: cuBLAS GEMM, then the bias and gelu_tanh kernels
// in place) and against float64 of the exact stored inputs; float32 / float16 / bfloat16, odd M, N, K, 3-D inputs
// (folded into one GEMM, and — when a narrowed view's strides do not fold — a strided batch), with and without
// bias; the plan cache; and the emulated cuBLASLt's argument errors through ffi/cuda/cublaslt.ts. Skipped without a
// CUDA backend with cuBLASLt (real or emulated).
//
// Tolerances, per element, from the rounding each path does (u = unit roundoff of the dtype: 2^-24 float32, 2^-11
// float16, 2^-8 bfloat16; S = Σ_k |x·w| + |b|, the magnitude the float32 accumulation works at):
//   fused vs float64:   u·|ref| (one rounding of the output) + K·2^-24·S (float32 accumulation, any order).
//   fused vs unfused:   the unfused path rounds the GEMM to the dtype before adding the bias, and the bias sum
//                       before gelu: 2u·|ref| + u·S, plus the accumulation term twice (two GEMM implementations).
// GELU(tanh) multiplies input errors by at most |gelu'| ≤ 1.13 and adds its own rounding.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { CudaError } from "../../ffi/cuda/bind.ts";
import { cublasComputeType, cublasOperation, cudaDataType } from "../../ffi/cuda/cublas.ts";
import { ltEpilogue, ltLayout, ltSetI32 } from "../../ffi/cuda/cublaslt.ts";
import { cudaContext, cudaLinearPath } from "../../src/backends/cuda/index.ts";
import { ltMatmulCount } from "../../src/backends/cuda/linalg.ts";
import { ltHandle, ltPlan, ltPlanCount } from "../../src/backends/cuda/lt-plans.ts";
import { hasBackend } from "../../src/backends/registry.ts";
import type { DType } from "../../src/core/dtype.ts";
import { linear, memoryStats, tidy } from "../../src/tensor/index.ts";
import { randomTensor, values } from "../helpers/op-harness.ts";
import path from "node:path";
import { UNet2DConditionModel } from "../../src/models/unet/index.ts";
import { goldenCases, goldenTensor, maxError, openGolden } from "../helpers/golden.ts";
import { goldenDir } from "../helpers/paths.ts";

const HAS_LT = hasBackend("cuda") && cudaContext().libs.cublasLt !== null;
const EMULATED = HAS_LT && cudaContext().libs.emulated;
const U: Record<string, number> = { float32: 2 ** -24, float16: 2 ** -11, bfloat16: 2 ** -8 };
const gelu64 = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v)));

/** With BD_CUDA_LINEAR set to `mode` (undefined: the default) while fn runs. */
function withLinearMode<T>(mode: string | undefined, fn: () => T): T {
  const was = process.env.BD_CUDA_LINEAR;
  if (mode === undefined) delete process.env.BD_CUDA_LINEAR;
  else process.env.BD_CUDA_LINEAR = mode;
  try {
    return fn();
  } finally {
    if (was === undefined) delete process.env.BD_CUDA_LINEAR;
    else process.env.BD_CUDA_LINEAR = was;
  }
}

interface Case {
  name: string;
  /** x's shape [..., K]; `narrow` keeps rows [1, 1 + narrow) of dim -2 of a larger tensor (strides do not fold). */
  x: number[];
  narrow?: number;
  N: number;
}
const CASES: Case[] = [
  { name: "2-D 13×29 → 37", x: [13, 29], N: 37 },
  { name: "3-D batch 2×9×11 → 19 (folds into one GEMM)", x: [2, 9, 11], N: 19 },
  { name: "3-D narrowed view 3×7(of 9)×5 → 3 (strided batch)", x: [3, 9, 5], narrow: 7, N: 3 },
  { name: "1 row 1×17 → 1", x: [1, 17], N: 1 },
];

describe.skipIf(!HAS_LT)("CUDA linear through cuBLASLt epilogues", () => {
  let start = 0;
  beforeAll(() => {
    start = memoryStats("cuda").live;
  });
  afterAll(() => {
    expect(memoryStats("cuda").live).toBe(start);
  });

  test("the default path is cuBLASLt; BD_CUDA_LINEAR=cublas names the fallback", () => {
    expect(withLinearMode(undefined, cudaLinearPath)).toStartWith("cuBLASLt");
    expect(withLinearMode("cublas", cudaLinearPath)).toBe("cuBLAS GEMM + bias kernel (BD_CUDA_LINEAR=cublas)");
  });

  for (const dtype of ["float32", "float16", "bfloat16"] as DType[])
    for (const c of CASES)
      for (const withBias of [true, false])
        for (const act of ["none", "gelu_tanh"] as const)
          test(`${dtype} ${c.name}${withBias ? " + bias" : ""}${act === "none" ? "" : " → gelu_tanh"}`, () => {
            const K = c.x[c.x.length - 1]!;
            const seed = c.x.reduce((a, b) => a * 31 + b, c.N) + (withBias ? 7 : 0);
            tidy(() => {
              const xs = randomTensor(c.x, dtype, "cuda", seed, -2, 2);
              const w = randomTensor([c.N, K], dtype, "cuda", seed + 1, -1, 1);
              const b = randomTensor([c.N], dtype, "cuda", seed + 2, -1, 1);
              const x = c.narrow ? xs.t.narrow(-2, 1, c.narrow) : xs.t;
              const shape = x.shape.slice();
              const R = shape.slice(0, -1).reduce((p, q) => p * q, 1);
              const fullRows = c.x[c.x.length - 2]!;
              // the exact stored x rows the view reads
              const xv = (r: number, k: number): number => {
                if (!c.narrow) return xs.v[r * K + k]!;
                const outer = Math.floor(r / c.narrow);
                return xs.v[(outer * fullRows + 1 + (r % c.narrow)) * K + k]!;
              };
              const before = ltPlanCount();
              const fused = values(withLinearMode(undefined, () => linear(x, w.t, withBias ? b.t : null, act)));
              expect(ltPlanCount()).toBeGreaterThanOrEqual(before); // built or reused, never dropped here
              const plain = values(withLinearMode("cublas", () => linear(x, w.t, withBias ? b.t : null, act)));
              expect(fused.length).toBe(R * c.N);
              const u = U[dtype]!;
              const g = act === "gelu_tanh" ? 1.13 : 1;
              for (let r = 0; r < R; r++)
                for (let j = 0; j < c.N; j++) {
                  let pre = withBias ? b.v[j]! : 0;
                  let S = withBias ? Math.abs(b.v[j]!) : 0;
                  for (let k = 0; k < K; k++) {
                    pre += xv(r, k) * w.v[j * K + k]!;
                    S += Math.abs(xv(r, k) * w.v[j * K + k]!);
                  }
                  const ref = act === "gelu_tanh" ? gelu64(pre) : pre;
                  const acc = K * 2 ** -24 * S;
                  const i = r * c.N + j;
                  const tolRef = u * Math.abs(ref) + g * acc + 1e-30;
                  if (!(Math.abs(fused[i]! - ref) <= tolRef))
                    throw new Error(`fused [${r}, ${j}] = ${fused[i]}, float64 ${ref} (|diff| ${Math.abs(fused[i]! - ref)} > ${tolRef})`);
                  const tolPlain = 2 * u * Math.abs(ref) + g * (u * S + 2 * acc) + 1e-30;
                  if (!(Math.abs(fused[i]! - plain[i]!) <= tolPlain))
                    throw new Error(`fused [${r}, ${j}] = ${fused[i]}, unfused ${plain[i]} (|diff| ${Math.abs(fused[i]! - plain[i]!)} > ${tolPlain})`);
                }
            });
          });

  // A whole UNet (the golden tiny SD 1.5 one) with every linear through cuBLASLt vs the unfused path. Bounds: float32
  // 1e-5·max (the golden single-module tolerance; only the GEMM implementation may differ, and the bias is added in
  // float32 on both paths); float16 1e-2·max, as CUDA vs CPU in float16 (test/cuda/models.test.ts): the paths differ
  // by one rounding per linear (bias added before / after rounding to float16), which propagates like rounding flips.
  for (const [dtype, bound] of [["float32", 1e-5], ["float16", 1e-2]] as const)
    test(`tiny SD 1.5 UNet forward in ${dtype}: cuBLASLt = unfused (${bound}·max)`, () => {
      const entry = goldenCases("unet").find((e) => e.file.includes("sd15")) ?? goldenCases("unet")[0]!;
      const unet = UNet2DConditionModel.fromPretrained(path.join(goldenDir, entry.meta.model!), { device: "cuda", dtype });
      try {
        tidy(() => {
          const f = openGolden(entry.file);
          const c = Object.keys(entry.tensors)[0]!.split("/")[0]!;
          const sample = goldenTensor(f, `${c}/sample`).to({ device: "cuda", dtype });
          const t = goldenTensor(f, `${c}/timestep`).to("cuda");
          const ehs = goldenTensor(f, `${c}/encoder_hidden_states`).to({ device: "cuda", dtype });
          const before = ltMatmulCount();
          const fused = withLinearMode(undefined, () => unet.call(sample, t, ehs, {})).toFloat32Array();
          const calls = ltMatmulCount();
          expect(calls).toBeGreaterThan(before); // the UNet's linears went through cuBLASLt (plans may be cached already)
          const plain = withLinearMode("cublas", () => unet.call(sample, t, ehs, {})).toFloat32Array();
          expect(ltMatmulCount()).toBe(calls); // and the baseline did not
          const { maxAbs, maxRef } = maxError(fused, plain);
          expect(maxAbs / maxRef).toBeLessThanOrEqual(bound);
        });
      } finally {
        unet.dispose();
      }
    });

  test("a plan is built once per shape and alignment, then reused", () => {
    tidy(() => {
      const x = randomTensor([4, 6, 10], "float16", "cuda", 5).t;
      const w = randomTensor([12, 10], "float16", "cuda", 6).t;
      const b1 = randomTensor([12], "float16", "cuda", 7).t;
      const b2 = randomTensor([12], "float16", "cuda", 8).t;
      linear(x, w, b1);
      const n = ltPlanCount();
      const y1 = values(linear(x, w, b1));
      const y2 = values(linear(x, w, b2)); // same plan, another bias pointer
      expect(ltPlanCount()).toBe(n);
      expect(y1).not.toEqual(y2);
      const shifted = x.reshape([240]).narrow(0, 1, 230).reshape([23, 10]); // a 2-byte aligned x: another plan
      linear(shifted, w, b1);
      expect(ltPlanCount()).toBe(n + 1);
    });
  });

  // the emulated library's validation (a GPU's cuBLASLt may defer some of these checks to cublasLtMatmul)
  test.skipIf(!EMULATED)("argument errors of the emulated cuBLASLt are CudaErrors naming the call, the status and the problem", () => {
    const c = cudaContext();
    const good = { dtype: "float16" as DType, m: 8, n: 4, k: 16, opA: cublasOperation.T, lda: 16, opB: cublasOperation.N, ldb: 16, batch: 1,
      strideB: 0, strideD: 0, epilogue: ltEpilogue.default, alignA: 256, alignB: 256, alignD: 256, bias: 0, alignBias: 0 };
    expect(ltPlan(c, good).workspace).toBe(0); // a valid problem reports nothing
    let err: unknown;
    try {
      ltPlan(c, { ...good, lda: 3 }); // op T stores A as k × m = 16 × 8: ld 3 < 16 rows
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CudaError);
    expect((err as Error).message).toContain("cublasLtMatmulAlgoGetHeuristic failed: CUBLAS_STATUS_INVALID_VALUE");
    expect((err as Error).message).toContain("m=8 n=4 k=16 float16 opA=T lda=3");
    err = undefined;
    try {
      ltPlan(c, { ...good, epilogue: ltEpilogue.bias, bias: 0 }); // a bias epilogue without a bias pointer
    } catch (e) {
      err = e;
    }
    expect((err as Error).message).toContain("CUBLAS_STATUS_INVALID_VALUE");
    // an unsupported type combination (float16 inputs with a bfloat16 output) straight through the binding
    const lt = c.libs.cublasLt!.symbols;
    const o = new BigUint64Array(1);
    c.libs.cublasLtCheck(lt.cublasLtMatmulDescCreate(o, cublasComputeType.F32, cudaDataType.R_32F), "cublasLtMatmulDescCreate");
    const desc = Number(o[0]);
    const layouts: number[] = [];
    const mk = (type: number, r: number, cc: number) => {
      c.libs.cublasLtCheck(lt.cublasLtMatrixLayoutCreate(o, type, r, cc, r), "cublasLtMatrixLayoutCreate");
      layouts.push(Number(o[0]));
      return Number(o[0]);
    };
    const A = mk(cudaDataType.R_16F, 8, 16), B = mk(cudaDataType.R_16F, 16, 4), D = mk(cudaDataType.R_16BF, 8, 4);
    c.libs.cublasLtCheck(lt.cublasLtMatmulPreferenceCreate(o), "cublasLtMatmulPreferenceCreate");
    const pref = Number(o[0]);
    const results = new Uint8Array(96);
    const count = new Int32Array(1);
    try {
      expect(() => c.libs.cublasLtCheck(lt.cublasLtMatmulAlgoGetHeuristic(ltHandle(c), desc, A, B, D, D, pref, 1, results, count), "cublasLtMatmulAlgoGetHeuristic", "f16 × f16 → bf16"))
        .toThrow(/cublasLtMatmulAlgoGetHeuristic failed: CUBLAS_STATUS_NOT_SUPPORTED \(15\).*f16 × f16 → bf16/);
      // a layout attribute of the wrong size is refused
      const wrong = new Int32Array(2);
      const st = (lt.cublasLtMatrixLayoutSetAttribute as (...a: unknown[]) => number)(A, ltLayout.batchCount, wrong, 8);
      expect(st).toBe(7); // CUBLAS_STATUS_INVALID_VALUE
      const set = lt.cublasLtMatrixLayoutSetAttribute as (o: number, a: number, b: NodeJS.TypedArray, n: number) => number;
      expect(ltSetI32(set, A, ltLayout.batchCount, 1)).toBe(0);
    } finally {
      lt.cublasLtMatmulPreferenceDestroy(pref);
      for (const l of layouts) lt.cublasLtMatrixLayoutDestroy(l);
      lt.cublasLtMatmulDescDestroy(desc);
    }
  });
});

