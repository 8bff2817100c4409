// The fused attention's view of the WebAssembly SIMD kernels (simd-kernels.ts, where the module is assembled):
// the row max and the in-place exp with its row sum of the online softmax, four float32 lanes at a time, on a
// scratch block that lives in the module's linear memory (the score block the attention's sgemm writes and reads
// back; ptr() of a view of wasm memory is a plain address). Scalar JavaScript runs ~3.5 ns per exp in Bun's JIT
// (Math.exp ~6.5 ns), which made the softmax, not the GEMMs, the cost of CPU attention; exprow runs ~1.3 ns per
// element and rowmax ~0.1 ns (Bun 1.4.5, Zen 4). `softmaxSimd()` returns null where WebAssembly SIMD is
// unavailable (or BD_CPU_SIMD=0) and callers fall back to JavaScript.
//
//   rowmax(p, n8, init) -> f32  = max(init, s[p/4 .. p/4 + 8·n8))   (f32x4.pmax, one x86 maxps; a NaN score may
//                                                                     be skipped here, it reaches its row through exprow)
//   exprow(p, n4, m)    -> f64  : s[j] = exp(s[j] − m) in place for 4·n4 elements; returns their sum (f64 lanes)
//
// exp is Cephes' expf (simd-kernels.ts, softmax variant): ≤ 1 ulp of float32 on [−87, 0]; x ≤ −87.34 (so −inf:
// masked keys) gives exactly 0; NaN stays NaN.

import { simdKernels } from "./simd-kernels.ts";

export interface SoftmaxSimd {
  /** max(init, block[i .. i + 8·n8)) for the element index i = byteOffset / 4 of the scratch view. */
  rowmax(byteOffset: number, n8: number, init: number): number;
  /** In place exp(x − m) over 4·n4 elements from byteOffset; returns their sum. */
  exprow(byteOffset: number, n4: number, m: number): number;
  /** A float32 view of the first `floats` elements of the linear memory (grows it; old views are then stale). */
  scratch(floats: number): Float32Array;
}

let view: SoftmaxSimd | null | undefined;

/** The SIMD kernels, or null when WebAssembly SIMD is unavailable (or BD_CPU_SIMD=0). */
export function softmaxSimd(): SoftmaxSimd | null {
  if (view !== undefined) return view;
  const k = simdKernels();
  view = k && {
    rowmax: k.rowmax,
    exprow: k.exprow,
    scratch(floats: number): Float32Array {
      k.reserve(floats * 4);
      return k.f32().subarray(0, floats);
    },
  };
  return view;
}
