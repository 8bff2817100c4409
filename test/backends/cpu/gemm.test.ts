// Tests for the CPU GEMM: OpenBLAS (when present) and the TypeScript fallback against a float64 triple-loop
// reference on odd shapes, all transpose combinations, sub-matrix views, offsets, alpha/beta (incl. beta=0 over
// NaN), batched strides incl. broadcast; bounds checks; OpenBLAS loading and core-type selection.

import { describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { sgemm, sgemmBatched, gemmBackendName, setGemmBackend, setGemmThreads, type GemmBackend } from "../../../src/backends/cpu/gemm.ts";
import { sgemmTs } from "../../../src/backends/cpu/gemm-ts.ts";
import { getOpenBlas, openBlasStatus, coreTypeForFlags, OPENBLAS_CANDIDATES } from "../../../ffi/openblas.ts";
import { cpuInfo, parseCpuInfo } from "../../../ffi/cpuid.ts";
import { getCEnv, setCEnv, unsetCEnv } from "../../../ffi/libc.ts";

const EPS32 = 2 ** -23;
const SENTINEL = 12345.5; // C elements outside the view must keep this value
const POISON = 1e30; // A/B elements outside the view: reading one would wreck the result

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface View { arr: Float32Array; off: number; ld: number; rows: number; cols: number; stride: number }

/** A batch of rows×cols views with ld = cols + pad, a leading offset, gaps between batches; outside = fill. */
function makeView(rows: number, cols: number, batch: number, rand: () => number, fill: number, broadcast = false): View {
  const ld = cols + 3;
  const off = 5;
  const stride = broadcast ? 0 : rows * ld + 2;
  const len = off + (batch - 1) * stride + rows * ld + 4;
  const arr = new Float32Array(len).fill(fill);
  for (let b = 0; b < (broadcast ? 1 : batch); b++) {
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) arr[off + b * stride + r * ld + c] = rand() * 2 - 1;
    }
  }
  return { arr, off, ld, rows, cols, stride };
}

/** float64 triple loop: expected C (whole array), plus max|A|, max|B| and max|C0| over the views. */
function reference(
  tA: boolean, tB: boolean, M: number, N: number, K: number, alpha: number, A: View, B: View, beta: number,
  C: View, batch: number,
): Float64Array {
  const out = Float64Array.from(C.arr);
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let p = 0; p < K; p++) {
          const a = A.arr[A.off + b * A.stride + (tA ? p * A.ld + i : i * A.ld + p)];
          const bb = B.arr[B.off + b * B.stride + (tB ? j * B.ld + p : p * B.ld + j)];
          s += a * bb;
        }
        const c = C.off + b * C.stride + i * C.ld + j;
        out[c] = beta === 0 ? alpha * s : alpha * s + beta * C.arr[c];
      }
    }
  }
  return out;
}

function maxAbs(v: View, batch: number): number {
  let m = 0;
  for (let b = 0; b < batch; b++) {
    for (let r = 0; r < v.rows; r++) {
      for (let c = 0; c < v.cols; c++) {
        const x = Math.abs(v.arr[v.off + b * v.stride + r * v.ld + c]);
        if (x > m) m = x;
      }
    }
  }
  return m;
}

type Impl = "openblas" | "typescript" | "sgemmTs";

/**
 * Run one case and compare. Tolerance: an fp32 dot product of length K carries a rounding error of at most
 * γ_K·Σ|a·b| in any summation order; for random data the per-step errors are uncorrelated and the realistic
 * size is ~K·eps_f32·max|a|·max|b| (√K growth × √K-sized partial sums). We allow 4× that, times |alpha|, plus
 * the roundings of beta·C and of the stored result: tol = 4·eps·(|alpha|·K·maxA·maxB + |beta|·max|C0| + |ref|).
 */
function runCase(
  impl: Impl, tA: boolean, tB: boolean, M: number, N: number, K: number, alpha: number, beta: number,
  batch = 1, broadcastA = false, broadcastB = false, seed = 1,
): void {
  const rand = rng(seed * 7919 + M * 131 + N * 17 + K);
  const A = makeView(tA ? K : M, tA ? M : K, batch, rand, POISON, broadcastA);
  const B = makeView(tB ? N : K, tB ? K : N, batch, rand, POISON, broadcastB);
  const C = makeView(M, N, batch, rand, SENTINEL);
  if (beta === 0) {
    // uninitialised output: NaN must not propagate
    for (let b = 0; b < batch; b++) for (let i = 0; i < M; i++) C.arr.fill(NaN, C.off + b * C.stride + i * C.ld, C.off + b * C.stride + i * C.ld + N);
  }
  const want = reference(tA, tB, M, N, K, alpha, A, B, beta, C, batch);
  const bound = 4 * EPS32 * (Math.abs(alpha) * K * maxAbs(A, batch) * maxAbs(B, batch) + (beta === 0 ? 0 : Math.abs(beta) * maxAbs(C, batch)));
  if (impl === "sgemmTs") {
    for (let b = 0; b < batch; b++) {
      sgemmTs(tA, tB, M, N, K, alpha, A.arr, A.off + b * A.stride, A.ld, B.arr, B.off + b * B.stride, B.ld, beta, C.arr, C.off + b * C.stride, C.ld);
    }
  } else {
    setGemmBackend(impl);
    if (batch === 1 && !broadcastA && !broadcastB) {
      sgemm(tA, tB, M, N, K, alpha, A.arr, A.off, A.ld, B.arr, B.off, B.ld, beta, C.arr, C.off, C.ld);
    } else {
      sgemmBatched(tA, tB, M, N, K, alpha, A.arr, A.off, A.ld, A.stride, B.arr, B.off, B.ld, B.stride, beta, C.arr, C.off, C.ld, C.stride, batch);
    }
  }
  let worst = 0;
  let bad = -1;
  for (let i = 0; i < want.length; i++) {
    const got = C.arr[i];
    const exp = want[i];
    const err = Math.abs(got - exp);
    const tol = bound + 4 * EPS32 * Math.abs(exp);
    if (!(err <= tol) || (exp === SENTINEL && got !== SENTINEL)) {
      bad = i;
      break;
    }
    if (err > worst) worst = err;
  }
  if (bad >= 0) {
    throw new Error(`${impl} tA=${tA} tB=${tB} ${M}×${N}×${K} alpha=${alpha} beta=${beta} batch=${batch}: ` +
      `C[${bad}] = ${C.arr[bad]}, want ${want[bad]} (bound ${bound})`);
  }
}

// M×N×K: op(A) is M×K, op(B) is K×N, C is M×N.
const SHAPES: [number, number, number][] = [
  [1, 1, 1], [7, 13, 5], [77, 40, 77], [97, 160, 33], [5, 6, 0], [0, 6, 5], [6, 0, 5], [1, 50, 70], [60, 1, 70],
  [130, 1030, 300], // crosses the TS fallback's MC=64, KC=256 and NC=1024 blocks
];
const TRANS: [boolean, boolean][] = [[false, false], [false, true], [true, false], [true, true]];
const SCALARS: [number, number][] = [[1, 0], [0.5, -1.5], [-2, 1], [0, 0.5]];

const blasPresent = getOpenBlas() !== null;
const impls: Impl[] = ["typescript", "sgemmTs", ...(blasPresent ? (["openblas"] as Impl[]) : [])];

for (const impl of impls) {
  describe(`gemm via ${impl}`, () => {
    for (const [tA, tB] of TRANS) {
      test(`single, transA=${tA} transB=${tB}`, () => {
        for (const [M, N, K] of SHAPES) for (const [alpha, beta] of SCALARS) runCase(impl, tA, tB, M, N, K, alpha, beta);
      });
      if (impl !== "sgemmTs") {
        test(`batched, transA=${tA} transB=${tB}, strides incl. 0 (broadcast)`, () => {
          for (const [M, N, K] of [[7, 13, 5], [77, 40, 77], [33, 20, 0]] as const) {
            runCase(impl, tA, tB, M, N, K, 1, 0, 3);
            runCase(impl, tA, tB, M, N, K, 0.75, 0.5, 3, true, false);
            runCase(impl, tA, tB, M, N, K, -1, 1, 4, false, true);
            runCase(impl, tA, tB, M, N, K, 1, 0, 1, true, true);
          }
        });
      }
    }
  });
}
if (!blasPresent) {
  test.skip(`gemm via openblas (skipped: ${openBlasStatus().reason})`, () => {});
}

describe("gemm argument checks", () => {
  test("out-of-range views and small leading dimensions throw RangeError (both backends)", () => {
    for (const impl of ["typescript", ...(blasPresent ? ["openblas"] : [])] as GemmBackend[]) {
      setGemmBackend(impl);
      const A = new Float32Array(12), B = new Float32Array(12), C = new Float32Array(9);
      expect(() => sgemm(false, false, 3, 3, 4, 1, A, 0, 4, B, 0, 3, 0, C, 0, 3)).not.toThrow();
      expect(() => sgemm(false, false, 3, 3, 4, 1, A, 1, 4, B, 0, 3, 0, C, 0, 3)).toThrow(RangeError);
      expect(() => sgemm(false, false, 3, 3, 4, 1, A, 0, 3, B, 0, 3, 0, C, 0, 3)).toThrow(RangeError);
      expect(() => sgemm(false, false, 3, 3, 4, 1, A, 0, 4, B, 0, 3, 0, C, 0, 4)).toThrow(RangeError);
      expect(() => sgemm(false, false, 3.5, 3, 4, 1, A, 0, 4, B, 0, 3, 0, C, 0, 3)).toThrow(RangeError);
      expect(() => sgemmBatched(false, false, 3, 3, 4, 1, A, 0, 4, 0, B, 0, 3, 0, 0, C, 0, 3, 1, 2)).toThrow(RangeError);
      expect(() => sgemmBatched(false, false, 3, 3, 4, 1, A, 0, 4, 0, B, 0, 3, 0, 0, C, 0, 3, 0, 0)).not.toThrow();
    }
  });
});

describe("backend selection", () => {
  test("typescript backend name", () => {
    expect(setGemmBackend("typescript")).toBe("typescript");
    setGemmBackend("auto");
  });

  test("BD_CPU_GEMM=ts forces the fallback", () => {
    const script = `import { gemmBackendName } from ${JSON.stringify(new URL("../../../src/backends/cpu/gemm.ts", import.meta.url).pathname)}; console.log(gemmBackendName());`;
    const r = Bun.spawnSync([process.execPath, "-e", script], { env: { ...process.env, BD_CPU_GEMM: "ts" } });
    expect(r.stdout.toString().trim()).toBe("typescript");
  });

  test("libc setenv is visible to C getenv", () => {
    expect(setCEnv("BD_GEMM_TEST_VAR", "42")).toBe(true);
    expect(getCEnv("BD_GEMM_TEST_VAR")).toBe("42");
    expect(process.env.BD_GEMM_TEST_VAR).toBe("42");
    unsetCEnv("BD_GEMM_TEST_VAR");
    expect(getCEnv("BD_GEMM_TEST_VAR")).toBeUndefined();
  });

  test("core type from CPU flags", () => {
    const f = (s: string) => parseCpuInfo(`processor\t: 0\nmodel name\t: X\nflags\t\t: ${s}\n`).flags;
    expect(coreTypeForFlags(f("sse2 avx avx2 fma avx512f avx512bw avx512vl avx512dq"))).toBe("SkylakeX");
    expect(coreTypeForFlags(f("sse2 avx avx2 fma avx512f"))).toBe("Haswell");
    expect(coreTypeForFlags(f("sse2 avx avx2 fma"))).toBe("Haswell");
    expect(coreTypeForFlags(f("sse2 avx"))).toBeUndefined();
    expect(parseCpuInfo("model name\t: Foo CPU\nflags\t: a b\n").model).toBe("Foo CPU");
  });
});

const libFile = ["/usr/lib/x86_64-linux-gnu/libopenblas.so.0", "/usr/lib/aarch64-linux-gnu/libopenblas.so.0", process.env.BD_OPENBLAS_LIB ?? ""]
  .find((p) => p !== "" && existsSync(p));
const GENERIC = ["prescott", "core2", "katmai", "coppermine", "northwood", "banias", "atom", "nano", "generic"];

describe("openblas", () => {
  test.skipIf(!libFile)(
    libFile ? `loads (${libFile} exists) and reports a non-generic core` : "loads (skipped: no libopenblas.so.0; apt-get install libopenblas0)",
    () => {
      const blas = getOpenBlas();
      expect(blas, openBlasStatus().reason).not.toBeNull();
      const st = openBlasStatus();
      expect(st.loaded).toBe(true);
      expect(OPENBLAS_CANDIDATES.length).toBeGreaterThan(0);
      const corename = blas!.corename();
      const { flags } = cpuInfo();
      const fast = coreTypeForFlags(flags);
      if (fast && st.coretype?.source !== "user") {
        expect(GENERIC).not.toContain(corename.toLowerCase());
        expect(corename.toLowerCase()).toBe(fast.toLowerCase());
      }
      expect(gemmBackendName()).toMatch(/^openblas \(\S+, \d+ threads?\)$/);
    },
  );

  test.skipIf(!blasPresent)("setGemmThreads changes the OpenBLAS thread count", () => {
    setGemmBackend("openblas");
    const before = getOpenBlas()!.getNumThreads();
    setGemmThreads(1);
    expect(gemmBackendName()).toContain("1 thread)");
    setGemmThreads(before);
    expect(getOpenBlas()!.getNumThreads()).toBe(before);
    expect(() => setGemmThreads(0)).toThrow(RangeError);
    setGemmBackend("auto");
  });
});
