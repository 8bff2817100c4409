// CUDA group norm (optionally with a per-channel addend before it and SiLU after it; large groups split over
// blocks with a small float32 workspace of partial statistics), layer norm and nearest-neighbour resizing (kernels/norm.cu,
// norm_nhwc.cu, upsample.cu). GroupNorm runs in the output's memory format: a channels-last output takes the NHWC
// kernel (x made channels-last first if it is not), any other the NCHW one (x made contiguous first; an output that
// is neither is written through a contiguous temporary). Nearest resizing of channels-last tensors by whole factors
// is one strided copy (each source pixel's channel run repeated), other cases run the NCHW kernel on contiguous copies.

import type { TensorView } from "../backend.ts";
import { memoryFormatOf } from "../../core/memory-format.ts";
import { isContiguous, numel } from "../../core/shape.ts";
import { cudaContext, dptr, dptrOrNull, launch, requireDType, tagOf, temp } from "./context.ts";
import { copy } from "./elementwise.ts";
import { channelsLastAs, contiguousAs } from "./dense-views.ts";

/** Run fn on contiguous versions of the views (copies freed afterwards). */
function contiguousAll<R>(views: (TensorView | null)[], fn: (vs: (TensorView | null)[]) => R): R {
  const made = views.map((v) => (v ? contiguousAs(v) : null));
  try {
    return fn(made.map((m) => m?.view ?? null));
  } finally {
    for (const m of made) m?.temp?.free();
  }
}

/** Run fn with a contiguous output: out itself when it is, else a temporary copied into out afterwards. */
function throughContiguous(out: TensorView, fn: (o: TensorView) => void): void {
  if (isContiguous(out.shape, out.strides)) return fn(out);
  const t = temp(out.shape, out.dtype);
  try {
    fn(t);
    copy(t, out);
  } finally {
    t.free();
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
  const nhwc = memoryFormatOf(out) === "channelsLast";
  // a group larger than the kernel's split size is normalised in pieces: one float (mean, M2) pair per piece
  // (< 0 for sizes the launcher refuses: it then fails naming the op)
  const wsBytes = Number(nhwc ? ctx.k.bdk_group_norm_nhwc_workspace!(N, C, S, groups) : ctx.k.bdk_group_norm_workspace!(N, C, S, groups));
  const ws = wsBytes > 0 ? temp([wsBytes / 4], "float32") : null;
  const what = `groupNorm (${groups} groups${add ? ", + per-channel addend" : ""}${silu ? ", SiLU" : ""}${nhwc ? ", channels-last" : ""})`;
  try {
    if (nhwc) {
      const xl = channelsLastAs(x);
      try {
        contiguousAll([weight, bias, add], ([w, b, a]) =>
          launch(`bdk_group_norm_nhwc_${tagOf(x.dtype)}`, what, [x, weight, bias, add, out],
            dptr(out), dptr(xl.view), dptrOrNull(w!), dptrOrNull(b!), dptrOrNull(a!), N, C, S, groups, eps, silu ? 1 : 0, ws ? dptr(ws) : null,
            ctx.stream),
        );
      } finally {
        xl.temp?.free();
      }
      return;
    }
    throughContiguous(out, (o) =>
      contiguousAll([x, weight, bias, add], ([xc, w, b, a]) =>
        launch(`bdk_group_norm_${tagOf(x.dtype)}`, what, [x, weight, bias, add, out],
          dptr(o), dptr(xc!), dptrOrNull(w!), dptrOrNull(b!), dptrOrNull(a!), N, C, S, groups, eps, silu ? 1 : 0, ws ? dptr(ws) : null,
          ctx.stream),
      ),
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
  if (!isContiguous(out.shape, out.strides) && OH % H === 0 && OW % W === 0) {
    // whole factors fh, fw: out viewed as [..., H, fh, W, fw] = x[..., H, 1, W, 1] broadcast, one strided copy in out's
    // storage order (for channels-last: each pixel's channel run written fh·fw times); nearest's src = ⌊dst·H/OH⌋
    const fh = OH / H, fw = OW / W;
    const os = out.strides, xs = x.strides;
    const lead = out.shape.slice(0, nd - 2);
    const dst: TensorView = { storage: out.storage, dtype: out.dtype, offset: out.offset, shape: [...lead, H, fh, W, fw], strides: [...os.slice(0, nd - 2), os[nd - 2]! * fh, os[nd - 2]!, os[nd - 1]! * fw, os[nd - 1]!] };
    const src: TensorView = { storage: x.storage, dtype: x.dtype, offset: x.offset, shape: dst.shape, strides: [...xs.slice(0, nd - 2), xs[nd - 2]!, 0, xs[nd - 1]!, 0] };
    return copy(src, dst);
  }
  const planes = numel(x.shape.slice(0, nd - 2));
  throughContiguous(out, (o) =>
    contiguousAll([x], ([xc]) =>
      launch(`bdk_upsample_nearest2d_${tagOf(x.dtype)}`, "upsampleNearest2d", [x, out], dptr(o), dptr(xc!), planes, H, W, OH, OW, cudaContext().stream),
    ),
  );
}
