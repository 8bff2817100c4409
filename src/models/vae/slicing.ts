// Sliced VAE encode / decode (diffusers AutoencoderKL use_slicing): a batch [B, …] is run one image at a
// time (x.split(1)) and the results concatenated along the batch. Each image's result is written into
// the output as soon as it is computed, so only one image's activations and the output are live.

import { type Tensor, copyInto, empty, tidy } from "../../tensor/index.ts";

/** run(x[b:b+1]) for every b, assembled into one [B, …] tensor. */
export function slicedApply(x: Tensor, run: (slice: Tensor) => Tensor): Tensor {
  const B = x.shape[0]!;
  let out: Tensor | null = null;
  try {
    for (let b = 0; b < B; b++) {
      const created = tidy(() => {
        const y = run(x.narrow(0, b, 1)); // [1, …]
        const fresh = out ? null : empty([B, ...y.shape.slice(1)], { dtype: y.dtype, device: y.device });
        copyInto((out ?? fresh)!.narrow(0, b, 1), y);
        return fresh; // returned: it belongs to the caller's scope
      });
      out ??= created;
    }
  } catch (e) {
    (out as Tensor | null)?.dispose();
    throw e;
  }
  return out!;
}
