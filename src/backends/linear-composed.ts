// The linear layer composed from a backend's own contract methods, for backends without a fused GEMM epilogue (the
// CPU, and CUDA without cuBLASLt): out = x·wᵀ by `matmul` straight into out (wᵀ is a strided view, broadcast over
// x's batch dims with stride 0), then the bias added and the activation applied in place (same-index elementwise
// work, so aliasing out with an input is safe). Results equal matmul → new tensor → add → activation bit for bit,
// without the intermediate tensor.

import type { Backend, LinearActivation, TensorView } from "./backend.ts";

export function composedLinear(
  b: Pick<Backend, "matmul" | "binary" | "unary">,
  x: TensorView,
  w: TensorView,
  bias: TensorView | null,
  out: TensorView,
  act: LinearActivation,
): void {
  const nd = x.shape.length;
  const batch = x.shape.slice(0, nd - 2);
  const [N, K] = w.shape as [number, number];
  const zeros = batch.map(() => 0);
  // wᵀ [...batch, K, N]
  const wt: TensorView = { storage: w.storage, dtype: w.dtype, shape: [...batch, K, N], strides: [...zeros, w.strides[1]!, w.strides[0]!], offset: w.offset };
  b.matmul(x, wt, out);
  if (bias) {
    const bv: TensorView = { storage: bias.storage, dtype: bias.dtype, shape: out.shape, strides: [...out.shape.slice(0, -1).map(() => 0), bias.strides[0]!], offset: bias.offset };
    b.binary("add", out, bv, out);
  }
  if (act === "gelu_tanh") b.unary("gelu_tanh", out, out);
}
