// The CPU backend's single GEMM entry point (matmul, linear, conv-as-GEMM): sgemm and sgemmBatched on
// Float32Arrays with element offsets and leading dimensions. Uses OpenBLAS through bun:ffi when it loads,
// otherwise the TypeScript fallback (gemm-ts.ts); BD_CPU_GEMM=ts forces the fallback.
//
// Pointers: ptr(typedArray, byteOffset) already includes the view's own byteOffset, so we add only
// elementOffset·4. Bun/JSC does not move ArrayBuffer memory while the buffer is alive (checked: a small
// Float32Array's address is unchanged after 2M allocations and forced GCs), and the arrays are arguments of
// the running call, so a pointer taken inside a call stays valid for that call. Nothing is cached across calls.
// Every extent is bounds-checked before native code sees it: an out-of-range GEMM throws instead of
// corrupting memory.

import { ptr, type Pointer } from "bun:ffi";
import { CblasNoTrans, CblasRowMajor, CblasTrans, getOpenBlas, openBlasStatus, type OpenBlas } from "../../../ffi/openblas.ts";
import { sgemmTs } from "./gemm-ts.ts";

export type GemmBackend = "auto" | "openblas" | "typescript";

let blas: OpenBlas | null | undefined; // undefined = not chosen yet

function backend(): OpenBlas | null {
  if (blas === undefined) {
    const forced = (process.env.BD_CPU_GEMM ?? "").toLowerCase();
    blas = forced === "ts" || forced === "typescript" ? null : getOpenBlas();
  }
  return blas;
}

/**
 * Choose the implementation (tests and benchmarks): "auto" = OpenBLAS when available unless BD_CPU_GEMM=ts,
 * "openblas" = require it (throws with the reason when it does not load), "typescript" = the fallback.
 * Returns gemmBackendName().
 */
export function setGemmBackend(kind: GemmBackend): string {
  if (kind === "typescript") blas = null;
  else if (kind === "auto") blas = undefined;
  else {
    const b = getOpenBlas();
    if (!b) throw new Error(`OpenBLAS requested but unavailable: ${openBlasStatus().reason}`);
    blas = b;
  }
  return gemmBackendName();
}

/** "openblas (SkylakeX, 2 threads)" or "typescript". */
export function gemmBackendName(): string {
  const b = backend();
  if (!b) return "typescript";
  const n = b.getNumThreads();
  return `openblas (${b.corename()}, ${n} thread${n === 1 ? "" : "s"})`;
}

/** Threads OpenBLAS uses from now on (no effect on the single-threaded TypeScript fallback). */
export function setGemmThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`setGemmThreads: expected an integer ≥ 1, got ${n}`);
  backend()?.setNumThreads(n);
}

function checkInt(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0x7fffffff) throw new RangeError(`sgemm: ${name} must be an int32 ≥ 0, got ${v}`);
}

/** Check that a rows×cols row-major view at [off, off + (batch-1)·stride] with leading dim ld lies in arr. */
function checkView(
  name: string, arr: Float32Array, off: number, ld: number, rows: number, cols: number, stride: number, batch: number,
): void {
  checkInt(`${name}Off`, off);
  checkInt(`ld${name.toLowerCase()}`, ld);
  checkInt(`stride${name}`, stride);
  if (ld < Math.max(1, cols)) throw new RangeError(`sgemm: ld${name.toLowerCase()}=${ld} < ${cols} columns of ${name}`);
  if (rows === 0 || cols === 0 || batch === 0) return;
  const last = off + (batch - 1) * stride + (rows - 1) * ld + cols - 1;
  if (last >= arr.length) {
    throw new RangeError(
      `sgemm: ${name} view (${rows}×${cols}, ld ${ld}, offset ${off}, stride ${stride}, batch ${batch}) ` +
        `reaches element ${last} of a ${arr.length}-element array`,
    );
  }
}

function checkArgs(
  transA: boolean, transB: boolean, M: number, N: number, K: number,
  A: Float32Array, aOff: number, lda: number, strideA: number, B: Float32Array, bOff: number, ldb: number,
  strideB: number, C: Float32Array, cOff: number, ldc: number, strideC: number, batch: number,
): void {
  checkInt("M", M);
  checkInt("N", N);
  checkInt("K", K);
  checkInt("batch", batch);
  // op(A) is M×K: stored K×M when transposed; op(B) is K×N: stored N×K when transposed.
  checkView("A", A, aOff, lda, transA ? K : M, transA ? M : K, strideA, M === 0 || N === 0 ? 0 : batch);
  checkView("B", B, bOff, ldb, transB ? N : K, transB ? K : N, strideB, M === 0 || N === 0 ? 0 : batch);
  checkView("C", C, cOff, ldc, M, N, strideC, batch);
}

/** C[M,N] = alpha * op(A) * op(B) + beta * C, row-major, with leading dimensions, operating on Float32Arrays with element offsets. */
export function sgemm(
  transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
  A: Float32Array, aOff: number, lda: number, B: Float32Array, bOff: number, ldb: number,
  beta: number, C: Float32Array, cOff: number, ldc: number,
): void {
  checkArgs(transA, transB, M, N, K, A, aOff, lda, 0, B, bOff, ldb, 0, C, cOff, ldc, 0, 1);
  if (M === 0 || N === 0) return;
  const b = backend();
  if (!b || K === 0 || alpha === 0) {
    // K == 0 / alpha == 0: C = beta·C (A and B may be empty arrays, which ptr() rejects)
    sgemmTs(transA, transB, M, N, K, alpha, A, aOff, lda, B, bOff, ldb, beta, C, cOff, ldc);
    return;
  }
  b.sgemm(
    CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, M, N, K, alpha,
    ptr(A, aOff * 4), lda, ptr(B, bOff * 4), ldb, beta, ptr(C, cOff * 4), ldc,
  );
}

/** Batched: for b in [0,batch): same with A advanced by strideA elements etc. (stride 0 allowed = broadcast) */
export function sgemmBatched(
  transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
  A: Float32Array, aOff: number, lda: number, strideA: number,
  B: Float32Array, bOff: number, ldb: number, strideB: number,
  beta: number, C: Float32Array, cOff: number, ldc: number, strideC: number, batch: number,
): void {
  checkArgs(transA, transB, M, N, K, A, aOff, lda, strideA, B, bOff, ldb, strideB, C, cOff, ldc, strideC, batch);
  if (M === 0 || N === 0 || batch === 0) return;
  const b = backend();
  if (!b || K === 0 || alpha === 0) {
    for (let i = 0; i < batch; i++) {
      sgemmTs(transA, transB, M, N, K, alpha, A, aOff + i * strideA, lda, B, bOff + i * strideB, ldb,
        beta, C, cOff + i * strideC, ldc);
    }
    return;
  }
  // One ptr() per array (each costs ~15–20 ns); addresses are plain numbers we can offset.
  const pA = ptr(A) + aOff * 4, pB = ptr(B) + bOff * 4, pC = ptr(C) + cOff * 4;
  const tA = transA ? CblasTrans : CblasNoTrans, tB = transB ? CblasTrans : CblasNoTrans;
  for (let i = 0; i < batch; i++) {
    b.sgemm(CblasRowMajor, tA, tB, M, N, K, alpha, (pA + i * strideA * 4) as Pointer, lda,
      (pB + i * strideB * 4) as Pointer, ldb, beta, (pC + i * strideC * 4) as Pointer, ldc);
  }
}
