// Channels-last (NHWC) execution of the UNet and VAE, as PyTorch's `model.to(memory_format=torch.channels_last)`:
// every Conv2d weight is stored channels-last (KRSC for [O, C/g, kh, kw]; same logical shape, so model code and
// checkpoint keys do not change), and forward wrappers at the model boundary convert the image-shaped input to
// channels-last and the output back to row-major. In between the memory format propagates through the ops
// (src/tensor/ops/memory-format.ts): convolutions with a channels-last weight write channels-last outputs (cuDNN
// NHWC on CUDA), GroupNorm, element-wise ops, nearest upsampling and the skip concatenations keep their input's
// format, and the transformer's [B, H·W, C] tokens are a view of NHWC storage. Values are the same computation in
// another summation order (cuDNN's NHWC algorithms, the NHWC GroupNorm kernel), fp32 accumulation throughout.
//
// applyChannelsLast(model) installs it on a UNet2DConditionModel or an AutoencoderKL (boundaries: the UNet itself;
// the VAE's encoder and decoder, which AutoencoderKL calls directly); the handle's remove() stores the weights
// row-major again (values bit for bit: only the order changes) and removes the wrappers. Weights are converted
// where they live at install; a feature that moves weights later (offload) keeps their format (Tensor.to preserves
// it). Installing twice on one model is an error.

import { hasChannelsLastStrides } from "../core/memory-format.ts";
import { AutoencoderKL } from "../models/vae/index.ts";
import { UNet2DConditionModel } from "../models/unet/index.ts";
import { Conv2d } from "../nn/layers.ts";
import type { HookHandle, Module } from "../nn/module.ts";
import { type Tensor, toMemoryFormat } from "../tensor/index.ts";

export interface ChannelsLastHandle {
  /** Conv2d weights stored channels-last by this install. */
  readonly convolutions: number;
  /** Store the weights row-major again and remove the boundary wrappers. */
  remove(): void;
}

const installed = new WeakMap<Module, ChannelsLastHandle>();

/** The active channels-last install of `model`, or null. */
export function channelsLastOf(model: Module): ChannelsLastHandle | null {
  return installed.get(model) ?? null;
}

/** Replace each Conv2d weight under `root` by its `format` copy (a no-op for those already so); returns the count changed. */
function convertConvWeights(root: Module, format: "channelsLast" | "contiguous"): number {
  let n = 0;
  for (const [, m] of root.namedModules()) {
    if (!(m instanceof Conv2d)) continue;
    const w = m.weight.value;
    if (format === "channelsLast" ? hasChannelsLastStrides(w.shape, w.strides) : w.isContiguous) continue; // [O, C, 1, 1] is both
    m.weight.replace(toMemoryFormat(w, format));
    n++;
  }
  return n;
}

/** A wrapper converting the first argument to channels-last and the output (a tensor) back to row-major. */
function boundary(m: Module): HookHandle {
  return m.registerForwardWrapper((_m, args, next) => {
    const [x, ...rest] = args as unknown as [Tensor, ...unknown[]];
    const xl = toMemoryFormat(x, "channelsLast");
    let out: Tensor;
    try {
      out = (next as (...a: unknown[]) => Tensor)(xl, ...rest);
    } finally {
      xl.dispose();
    }
    if (out.memoryFormat !== "channelsLast") return out;
    try {
      return toMemoryFormat(out, "contiguous");
    } finally {
      out.dispose();
    }
  });
}

/** Store `model`'s convolution weights channels-last and keep its activations NHWC between its boundaries. */
export function applyChannelsLast(model: UNet2DConditionModel | AutoencoderKL): ChannelsLastHandle {
  if (installed.has(model)) throw new Error("applyChannelsLast: channels-last is already installed on this model; remove it first");
  const boundaries: Module[] = model instanceof UNet2DConditionModel ? [model] : model instanceof AutoencoderKL ? [model.encoder, model.decoder] : [];
  if (boundaries.length === 0) throw new Error("applyChannelsLast: expected a UNet2DConditionModel or an AutoencoderKL");
  const convolutions = convertConvWeights(model, "channelsLast");
  const hooks = boundaries.map(boundary);
  let removed = false;
  const handle: ChannelsLastHandle = {
    convolutions,
    remove() {
      if (removed) return;
      removed = true;
      for (const h of hooks) h.remove();
      convertConvWeights(model, "contiguous");
      installed.delete(model);
    },
  };
  installed.set(model, handle);
  return handle;
}

/** Remove channels-last from `model`; false when it was not installed. */
export function removeChannelsLast(model: Module): boolean {
  const h = installed.get(model);
  if (!h) return false;
  h.remove();
  return true;
}
