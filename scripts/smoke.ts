// Smoke run of the tensor core: builds tensors, runs a few ops on the default backend and
// prints what it used. `bash scripts/bd.sh run scripts/smoke.ts`

import { gemmBackendName } from "../src/backends/cpu/index.ts";
import { conv2d, groupNorm, linear, memoryStats, randn, softmax, tidy } from "../src/index.ts";

const t0 = performance.now();
const report = tidy(() => {
  const x = randn([1, 4, 16, 16], { seed: 42 }); // the initial latents diffusers draws for seed 42 at 128 px
  const w = randn([32, 4, 3, 3], { seed: 1 }).mul(0.1);
  const h = groupNorm(conv2d(x, w, null, { padding: 1 }), 8, null, null, 1e-5, { silu: true }); // [1, 32, 16, 16]
  const tokens = h.flatten(2).transpose(1, 2); // [1, 256, 32]
  const q = linear(tokens, randn([32, 32], { seed: 2 }).mul(0.2));
  const attn = softmax(q.matmul(tokens.transpose(1, 2)).mul(1 / Math.sqrt(32)), -1); // [1, 256, 256]
  const out = attn.matmul(tokens); // [1, 256, 32]
  return {
    latentsFirst: Array.from(x.flatten().narrow(0, 0, 4).toFloat32Array(), (v) => +v.toFixed(6)),
    outShape: out.shape,
    outMean: out.mean().item(),
    rowSum: attn.sum(-1).mean().item(),
  };
});
console.log(
  JSON.stringify(
    {
      backend: "cpu",
      gemm: gemmBackendName(),
      ...report,
      liveBytesAfter: memoryStats("cpu").live,
      ms: +(performance.now() - t0).toFixed(1),
    },
    null,
    2,
  ),
);
