// CUDA group norm (optionally with a per-channel addend before it and SiLU after it; large groups split over
// blocks with a small float32 workspace of partial statistics), layer norm and nearest-neighbour resizing (kernels/norm.cu,
// upsample.cu). The kernels read contiguous inputs: strided views (and non-contiguous weights) are copied first.

import type { TensorView } from "../backend.ts";
import { numel } from "../../core/shape.ts";
import { cudaContext, dptr, dptrOrNull, launch, requireDType, tagOf, temp } from "./context.ts";
import { contiguousAs } from "./reduce.ts";

/** Run fn on contiguous versions of the views (copies freed afterwards). */
function contiguousAll<R>(views: (TensorView | null)[], fn: (vs: (TensorView | null)[]) => R): R {
  const made = views.map((v) => (v ? contiguousAs(v) : null));
  try {
    return fn(made.map((m) => m?.view ?? null));
  } finally {
    for (const m of made) m?.temp?.free();
  }
}

export function groupNorm(
  x: TensorView, weight: TensorView | null, bias: TensorView | null, groups: number, eps: number, out: TensorView, silu: boolean,
  add: TensorView | null = null,
): void {
  const total = numel(x.shape);
  if (total === 0) return;
  requireDType("groupNorm", x.dtype, weight, bias, add, out);
  const N = x.shape[0]!;
  const C = x.shape[1]!;
  const S = total / (N * C);
  const ctx = cudaContext();
  // a group larger than the kernel's split size is normalised in pieces: one float (mean, M2) pair per piece
  // (< 0 for sizes the launcher refuses: it then fails naming the op)
  const wsBytes = Number(ctx.k.bdk_group_norm_workspace!(N, C, S, groups));
  const ws = wsBytes > 0 ? temp([wsBytes / 4], "float32") : null;
  const what = `groupNorm (${groups} groups${add ? ", + per-channel addend" : ""}${silu ? ", SiLU" : ""})`;
  try {
    contiguousAll([x, weight, bias, add], ([xc, w, b, a]) =>
      launch(`bdk_group_norm_${tagOf(x.dtype)}`, what, [x, weight, bias, add, out],
        dptr(out), dptr(xc!), dptrOrNull(w!), dptrOrNull(b!), dptrOrNull(a!), N, C, S, groups, eps, silu ? 1 : 0, ws ? dptr(ws) : null,
        ctx.stream),
    );
  } finally {
    ws?.free();
  }
}

export function layerNorm(x: TensorView, weight: TensorView | null, bias: TensorView | null, normSize: number, eps: number, out: TensorView): void {
  const total = numel(x.shape);
  if (total === 0 || normSize === 0) return;
  requireDType("layerNorm", x.dtype, weight, bias, out);
  contiguousAll([x, weight, bias], ([xc, w, b]) =>
    launch(`bdk_layer_norm_${tagOf(x.dtype)}`, `layerNorm over ${normSize}`, [x, weight, bias, out],
      dptr(out), dptr(xc!), dptrOrNull(w!), dptrOrNull(b!), total / normSize, normSize, eps, cudaContext().stream),
  );
}

export function upsampleNearest2d(x: TensorView, out: TensorView): void {
  if (numel(out.shape) === 0) return;
  requireDType("upsampleNearest2d", x.dtype, out);
  const nd = x.shape.length;
  const [H, W] = [x.shape[nd - 2]!, x.shape[nd - 1]!];
  const [OH, OW] = [out.shape[nd - 2]!, out.shape[nd - 1]!];
  const planes = numel(x.shape.slice(0, nd - 2));
  contiguousAll([x], ([xc]) =>
    launch(`bdk_upsample_nearest2d_${tagOf(x.dtype)}`, "upsampleNearest2d", [x, out], dptr(out), dptr(xc!), planes, H, W, OH, OW, cudaContext().stream),
  );
}
