// Pure-TypeScript SGEMM, the fallback when OpenBLAS is unavailable (or BD_CPU_GEMM=ts):
// C[M,N] = alpha·op(A)·op(B) + beta·C, row-major with leading dimensions and element offsets.
//
// GotoBLAS-style structure: loop over N in NC-wide blocks, K in KC-deep blocks (pack op(B) into NR-wide
// column strips), M in MC-tall blocks (pack alpha·op(A) into MR-tall row strips), then an MR×NR
// register-blocked micro-kernel with its accumulators in locals. Packing handles all four transpose
// combinations (the kernel only ever sees contiguous strips) and zero-pads edge tiles. Packed panels are
// Float64Array: the kernel reads doubles without per-load f32→f64 conversion and accumulates in double,
// which is also more accurate than an f32 BLAS. Tiny or vector-shaped problems use a direct dot-product loop.
// Measured on a 2-core AMD EPYC (Bun 1.4.5, 1024³): 4×4 + f64 panels ≈ 8.3 GFLOP/s; 4×8 ≈ 7.7; f32 panels ≈ 7.6.

const MR = 4; // micro-tile rows
const NR = 4; // micro-tile columns
const KC = 256; // K block: one A strip + one B strip = 2·KC·4·8 B = 16 KiB, L1-resident
const MC = 64; // M block: packed A block MC·KC·8 B = 128 KiB (L2)
const NC = 1024; // N block: packed B block KC·NC·8 B = 2 MiB (L2/L3)

let packA = new Float64Array(MC * KC);
let packB = new Float64Array(KC * NC);

/** Below this many multiply-adds (or for M==1 / N==1) the direct loop beats packing. */
const DIRECT_MACS = 16 * 1024;

/** Scale the M×N view of C by beta; beta == 0 writes zeros (never propagates NaN/Inf from C). */
function scaleC(M: number, N: number, beta: number, C: Float32Array, cOff: number, ldc: number): void {
  if (beta === 1) return;
  for (let i = 0; i < M; i++) {
    const row = cOff + i * ldc;
    if (beta === 0) C.fill(0, row, row + N);
    else for (let j = row; j < row + N; j++) C[j] *= beta;
  }
}

/** Direct loop: one double-precision dot product per element of C. */
function direct(
  transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
  A: Float32Array, aOff: number, lda: number, B: Float32Array, bOff: number, ldb: number,
  beta: number, C: Float32Array, cOff: number, ldc: number,
): void {
  const sAi = transA ? 1 : lda; // step along i in A
  const sAk = transA ? lda : 1; // step along k in A
  const sBk = transB ? 1 : ldb;
  const sBj = transB ? ldb : 1;
  for (let i = 0; i < M; i++) {
    const aRow = aOff + i * sAi;
    const cRow = cOff + i * ldc;
    for (let j = 0; j < N; j++) {
      let s = 0;
      let a = aRow;
      let b = bOff + j * sBj;
      for (let p = 0; p < K; p++) {
        s += A[a] * B[b];
        a += sAk;
        b += sBk;
      }
      const c = cRow + j;
      C[c] = beta === 0 ? alpha * s : alpha * s + beta * C[c];
    }
  }
}

/** Pack alpha·op(A)[i0:i0+mc, k0:k0+kc] into MR-row strips: dst[s·kc·MR + p·MR + r]; rows ≥ mc are zero. */
function packABlock(
  transA: boolean, A: Float32Array, aOff: number, lda: number, i0: number, k0: number, mc: number,
  kc: number, alpha: number, dst: Float64Array,
): void {
  for (let s = 0; s < mc; s += MR) {
    const base = s * kc; // strip s/MR starts at (s/MR)·kc·MR = s·kc
    const rows = Math.min(MR, mc - s);
    if (!transA) {
      // op(A)[i][k] = A[i·lda + k]: walk each row along k (contiguous reads)
      for (let r = 0; r < MR; r++) {
        let d = base + r;
        if (r < rows) {
          let src = aOff + (i0 + s + r) * lda + k0;
          for (let p = 0; p < kc; p++, d += MR) dst[d] = alpha * A[src++];
        } else {
          for (let p = 0; p < kc; p++, d += MR) dst[d] = 0;
        }
      }
    } else {
      // op(A)[i][k] = A[k·lda + i]: for each k the MR values are contiguous
      let d = base;
      let src = aOff + k0 * lda + i0 + s;
      for (let p = 0; p < kc; p++, src += lda) {
        for (let r = 0; r < MR; r++) dst[d++] = r < rows ? alpha * A[src + r] : 0;
      }
    }
  }
}

/** Pack op(B)[k0:k0+kc, j0:j0+nc] into NR-column strips: dst[s·kc·NR + p·NR + c]; columns ≥ nc are zero. */
function packBBlock(
  transB: boolean, B: Float32Array, bOff: number, ldb: number, k0: number, j0: number, kc: number,
  nc: number, dst: Float64Array,
): void {
  for (let s = 0; s < nc; s += NR) {
    const base = s * kc;
    const cols = Math.min(NR, nc - s);
    if (!transB) {
      // op(B)[k][j] = B[k·ldb + j]: NR contiguous values per k
      let d = base;
      let src = bOff + k0 * ldb + j0 + s;
      if (cols === NR) {
        for (let p = 0; p < kc; p++, src += ldb) {
          dst[d] = B[src];
          dst[d + 1] = B[src + 1];
          dst[d + 2] = B[src + 2];
          dst[d + 3] = B[src + 3];
          d += NR;
        }
      } else {
        for (let p = 0; p < kc; p++, src += ldb) {
          for (let c = 0; c < NR; c++) dst[d++] = c < cols ? B[src + c] : 0;
        }
      }
    } else {
      // op(B)[k][j] = B[j·ldb + k]: walk each column of op(B) along k (contiguous reads)
      for (let c = 0; c < NR; c++) {
        let d = base + c;
        if (c < cols) {
          let src = bOff + (j0 + s + c) * ldb + k0;
          for (let p = 0; p < kc; p++, d += NR) dst[d] = B[src++];
        } else {
          for (let p = 0; p < kc; p++, d += NR) dst[d] = 0;
        }
      }
    }
  }
}

/** 4×4 micro-kernel: C[c..] += Ap-strip · Bp-strip over kc; writes only the top-left rows×cols. */
function kernel4x4(
  kc: number, Ap: Float64Array, a: number, Bp: Float64Array, b: number,
  C: Float32Array, c: number, ldc: number, rows: number, cols: number,
): void {
  let c00 = 0, c01 = 0, c02 = 0, c03 = 0;
  let c10 = 0, c11 = 0, c12 = 0, c13 = 0;
  let c20 = 0, c21 = 0, c22 = 0, c23 = 0;
  let c30 = 0, c31 = 0, c32 = 0, c33 = 0;
  const end = a + kc * MR;
  for (; a < end; a += MR, b += NR) {
    const a0 = Ap[a], a1 = Ap[a + 1], a2 = Ap[a + 2], a3 = Ap[a + 3];
    const b0 = Bp[b], b1 = Bp[b + 1], b2 = Bp[b + 2], b3 = Bp[b + 3];
    c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
    c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
    c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
    c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
  }
  if (rows === MR && cols === NR) {
    C[c] += c00; C[c + 1] += c01; C[c + 2] += c02; C[c + 3] += c03;
    c += ldc;
    C[c] += c10; C[c + 1] += c11; C[c + 2] += c12; C[c + 3] += c13;
    c += ldc;
    C[c] += c20; C[c + 1] += c21; C[c + 2] += c22; C[c + 3] += c23;
    c += ldc;
    C[c] += c30; C[c + 1] += c31; C[c + 2] += c32; C[c + 3] += c33;
    return;
  }
  // edge tile: write the valid part only
  edge[0] = c00; edge[1] = c01; edge[2] = c02; edge[3] = c03;
  edge[4] = c10; edge[5] = c11; edge[6] = c12; edge[7] = c13;
  edge[8] = c20; edge[9] = c21; edge[10] = c22; edge[11] = c23;
  edge[12] = c30; edge[13] = c31; edge[14] = c32; edge[15] = c33;
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) C[c + r * ldc + j] += edge[r * NR + j];
  }
}
const edge = new Float64Array(MR * NR);

/**
 * C[M,N] = alpha·op(A)·op(B) + beta·C in TypeScript. Row-major; op(A) is M×K, op(B) is K×N; A/B/C are read
 * from the given element offsets with leading dimensions lda/ldb/ldc. Arguments are assumed validated
 * (see gemm.ts). beta == 0 overwrites C (NaN in C does not propagate); K == 0 gives C = beta·C.
 */
export function sgemmTs(
  transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
  A: Float32Array, aOff: number, lda: number, B: Float32Array, bOff: number, ldb: number,
  beta: number, C: Float32Array, cOff: number, ldc: number,
): void {
  if (M === 0 || N === 0) return;
  if (K === 0 || alpha === 0) {
    scaleC(M, N, beta, C, cOff, ldc);
    return;
  }
  if (M * N * K <= DIRECT_MACS || M === 1 || N === 1) {
    direct(transA, transB, M, N, K, alpha, A, aOff, lda, B, bOff, ldb, beta, C, cOff, ldc);
    return;
  }
  scaleC(M, N, beta, C, cOff, ldc);
  for (let j0 = 0; j0 < N; j0 += NC) {
    const nc = Math.min(NC, N - j0);
    for (let k0 = 0; k0 < K; k0 += KC) {
      const kc = Math.min(KC, K - k0);
      packBBlock(transB, B, bOff, ldb, k0, j0, kc, nc, packB);
      for (let i0 = 0; i0 < M; i0 += MC) {
        const mc = Math.min(MC, M - i0);
        packABlock(transA, A, aOff, lda, i0, k0, mc, kc, alpha, packA);
        for (let js = 0; js < nc; js += NR) {
          const cols = Math.min(NR, nc - js);
          const b = js * kc;
          for (let is = 0; is < mc; is += MR) {
            const rows = Math.min(MR, mc - is);
            kernel4x4(kc, packA, is * kc, packB, b, C, cOff + (i0 + is) * ldc + j0 + js, ldc, rows, cols);
          }
        }
      }
    }
  }
}
