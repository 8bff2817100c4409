// The emulated cuBLAS through ffi/cuda/cublas.ts: cublasGemmEx and cublasGemmStridedBatchedEx in every op
// combination for float32 / float16 / bfloat16 against a float64 column-major reference, and cuBLAS's argument
// validation. Column-major throughout, with padded leading dimensions.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { CudaError } from "../../ffi/cuda/bind.ts";
import { cublasComputeType, cublasGemmAlgo, cublasMath, cublasOperation, cudaDataType } from "../../ffi/cuda/cublas.ts";
import type { CudaLibraries } from "../../ffi/cuda/index.ts";
import { BUILD_TIMEOUT, Device, EPS, type FLOAT_TAGS, HAS_GXX, decode, emulatedCuda, encode, errorRatio, random } from "./setup.ts";

type DT = (typeof FLOAT_TAGS)[number];
const TYPE: Record<DT, number> = { f32: cudaDataType.R_32F, f16: cudaDataType.R_16F, bf16: cudaDataType.R_16BF };

/** C = alpha·op(A)·op(B) + beta·C, column-major with leading dimensions, in float64. */
function gemmRef(ta: number, tb: number, m: number, n: number, k: number, alpha: number, A: Float64Array, lda: number,
  B: Float64Array, ldb: number, beta: number, C: Float64Array, ldc: number): Float64Array {
  const out = C.slice();
  for (let j = 0; j < n; j++)
    for (let i = 0; i < m; i++) {
      let s = 0;
      for (let p = 0; p < k; p++) {
        const a = ta === cublasOperation.N ? A[i + p * lda]! : A[p + i * lda]!;
        const b = tb === cublasOperation.N ? B[p + j * ldb]! : B[j + p * ldb]!;
        s += a * b;
      }
      out[i + j * ldc] = alpha * s + (beta === 0 ? 0 : beta * C[i + j * ldc]!);
    }
  return out;
}

describe.skipIf(!HAS_GXX)("emulated cuBLAS", () => {
  let cu: CudaLibraries;
  let dev: Device;
  let handle = 0;
  const alpha = new Float32Array([1.5]);
  const beta = new Float32Array([0.5]);
  const zero = new Float32Array([0]);

  beforeAll(async () => {
    cu = await emulatedCuda();
    dev = new Device(cu);
    const h = new BigUint64Array(1);
    cu.cublasCheck(cu.cublas.symbols.cublasCreate_v2(h), "cublasCreate_v2");
    handle = Number(h[0]);
    cu.cublasCheck(cu.cublas.symbols.cublasSetStream_v2(handle, null), "cublasSetStream_v2");
    cu.cublasCheck(cu.cublas.symbols.cublasSetMathMode(handle, cublasMath.tensorOp), "cublasSetMathMode");
  }, BUILD_TIMEOUT);
  afterAll(() => {
    if (handle) cu.cublas.symbols.cublasDestroy_v2(handle);
    dev?.freeAll();
  });

  const [m, n, k] = [37, 29, 53];
  for (const dt of ["f32", "f16", "bf16"] as const)
    for (const [ta, tb] of [[0, 0], [1, 0], [0, 1], [1, 1]] as const)
      test(`cublasGemmEx ${dt} op(A)=${"NT"[ta]} op(B)=${"NT"[tb]} (${m}x${n}x${k}, padded ld)`, () => {
        const [ra, ca] = ta ? [k, m] : [m, k];
        const [rb, cb] = tb ? [n, k] : [k, n];
        const [lda, ldb, ldc] = [ra + 3, rb + 1, m + 2];
        const A = encode(random(lda * ca, 1, -1, 1), dt);
        const B = encode(random(ldb * cb, 2, -1, 1), dt);
        const C = encode(random(ldc * n, 3, -1, 1), dt);
        const [pa, pb, pc] = [dev.upload(A.host), dev.upload(B.host), dev.upload(C.host)];
        cu.cublasCheck(
          cu.cublas.symbols.cublasGemmEx(handle, ta, tb, m, n, k, alpha, pa, TYPE[dt], lda, pb, TYPE[dt], ldb, beta, pc, TYPE[dt], ldc,
            cublasComputeType.F32, cublasGemmAlgo.defaultTensorOp),
          "cublasGemmEx",
        );
        const got = decode(dev.download(pc, C.host.slice()), dt);
        const ref = gemmRef(ta, tb, m, n, k, 1.5, A.exact, lda, B.exact, ldb, 0.5, C.exact, ldc);
        expect(errorRatio(got, ref, 1e-4, 2 * EPS[dt])).toBeLessThanOrEqual(1);
        for (let j = 0; j < n; j++) for (let i = m; i < ldc; i++) expect(got[i + j * ldc]).toBe(C.exact[i + j * ldc]!); // padding untouched
      });

  test("16-bit A and B with a float32 C; beta = 0 does not read C (NaN there stays out)", () => {
    const A = encode(random(m * k, 4), "bf16");
    const B = encode(random(k * n, 5), "bf16");
    const pc = dev.upload(new Float32Array(m * n).fill(NaN));
    cu.cublasCheck(
      cu.cublas.symbols.cublasGemmEx(handle, 0, 0, m, n, k, alpha, dev.upload(A.host), TYPE.bf16, m, dev.upload(B.host), TYPE.bf16, k, zero, pc,
        cudaDataType.R_32F, m, cublasComputeType.F32, cublasGemmAlgo.default),
      "cublasGemmEx",
    );
    const got = dev.download(pc, new Float32Array(m * n));
    const ref = gemmRef(0, 0, m, n, k, 1.5, A.exact, m, B.exact, k, 0, new Float64Array(m * n), m);
    expect(errorRatio(got, ref, 1e-4, 1e-5)).toBeLessThanOrEqual(1);
  });

  for (const dt of ["f32", "f16", "bf16"] as const)
    test(`cublasGemmStridedBatchedEx ${dt}: 3 batches, gaps between A's, B broadcast (stride 0)`, () => {
      const batch = 3;
      const [ta, tb] = [cublasOperation.T, cublasOperation.N];
      const [lda, ldb, ldc] = [k, k, m]; // A stored k x m (op T), B k x n
      const sa = lda * m + 7, sb = 0, sc = ldc * n;
      const A = encode(random(sa * batch, 6), dt);
      const B = encode(random(ldb * n, 7), dt);
      const C = encode(random(sc * batch, 8), dt);
      const [pa, pb, pc] = [dev.upload(A.host), dev.upload(B.host), dev.upload(C.host)];
      cu.cublasCheck(
        cu.cublas.symbols.cublasGemmStridedBatchedEx(handle, ta, tb, m, n, k, alpha, pa, TYPE[dt], lda, sa, pb, TYPE[dt], ldb, sb, beta, pc, TYPE[dt],
          ldc, sc, batch, cublasComputeType.F32, cublasGemmAlgo.default),
        "cublasGemmStridedBatchedEx",
      );
      const got = decode(dev.download(pc, C.host.slice()), dt);
      for (let b = 0; b < batch; b++) {
        const ref = gemmRef(ta, tb, m, n, k, 1.5, A.exact.subarray(b * sa), lda, B.exact, ldb, 0.5, C.exact.subarray(b * sc, (b + 1) * sc), ldc);
        expect(errorRatio(got.subarray(b * sc, (b + 1) * sc), ref, 1e-4, 2 * EPS[dt])).toBeLessThanOrEqual(1);
      }
    });

  test("arguments are validated as cuBLAS does", () => {
    const s = cu.cublas.symbols;
    const p = dev.malloc(4 * 64 * 64);
    const gemm = (o: Partial<Record<"ta" | "tb" | "m" | "n" | "k" | "lda" | "ldb" | "ldc" | "at" | "bt" | "ct" | "compute" | "h", number>>) =>
      s.cublasGemmEx(o.h ?? handle, o.ta ?? 0, o.tb ?? 0, o.m ?? 8, o.n ?? 8, o.k ?? 8, alpha, p, o.at ?? 0, o.lda ?? 8, p, o.bt ?? 0, o.ldb ?? 8,
        beta, p, o.ct ?? 0, o.ldc ?? 8, o.compute ?? cublasComputeType.F32, -1);
    expect(gemm({})).toBe(0);
    expect(gemm({ lda: 7 })).toBe(7); // lda < m for op N
    expect(gemm({ ta: 1, m: 9, lda: 8, ldc: 9 })).toBe(0); // op T: lda >= k suffices
    expect(gemm({ tb: 1, n: 9, ldb: 8 })).toBe(7); // op T: ldb >= n
    expect(gemm({ ldc: 4 })).toBe(7);
    expect(gemm({ m: -1 })).toBe(7);
    expect(gemm({ ta: 5 })).toBe(7);
    expect(gemm({ at: cudaDataType.R_16F })).toBe(15); // A f16, B f32: unsupported combination
    expect(gemm({ compute: 64 })).toBe(15); // CUBLAS_COMPUTE_16F with float data
    expect(gemm({ h: 0 })).toBe(1); // no handle
    expect(gemm({ m: 0 })).toBe(0); // empty: nothing to do
    expect(gemm({ m: 64, n: 64, k: 64, lda: 64, ldb: 64, ldc: 65 })).toBe(13); // C runs past its allocation (emulator check)
    expect(s.cublasSetMathMode(handle, 9)).toBe(7);
    expect(() => cu.cublasCheck(gemm({ lda: 7 }), "cublasGemmEx")).toThrow(
      new CudaError("cuBLAS", "cublasGemmEx", 7, "CUBLAS_STATUS_INVALID_VALUE", "an invalid numeric value was used as an argument"),
    );
  });
});
