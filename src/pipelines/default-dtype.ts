// The pipeline's compute dtype when the caller names none (issue 12: bfloat16 by default where it is fast and
// safe): on a CUDA device of compute capability ≥ 8.0 (Ampere and newer: bfloat16 tensor cores, float32's exponent
// range so no float16 overflow) bfloat16; on older CUDA devices float16 (bfloat16 is refused there, see
// Backend.dtypeProblem); on the CPU float32, as before (16-bit floats are storage formats there and compute no
// faster). An explicit dtype always wins. The reason is kept on the pipeline (`pipe.dtypeReason`) and logged by the CLI.

import { cudaComputeCapability } from "../backends/cuda/index.ts";
import type { Device } from "../core/device.ts";
import type { DType } from "../core/dtype.ts";

export interface DtypeChoice {
  dtype: DType;
  /** Why, in a few words: "given", or the rule that chose it. */
  reason: string;
}

export function choosePipelineDtype(device: Device, explicit: DType | undefined): DtypeChoice {
  if (explicit !== undefined) return { dtype: explicit, reason: "given" };
  if (device === "cuda") return cudaDefaultDtype(...cudaComputeCapability());
  return { dtype: "float32", reason: `default on ${device}` };
}

/** The default on a CUDA device of compute capability major.minor. */
export function cudaDefaultDtype(major: number, minor: number): DtypeChoice {
  return major >= 8
    ? { dtype: "bfloat16", reason: `default for CUDA compute capability ${major}.${minor} ≥ 8.0` }
    : { dtype: "float16", reason: `default for CUDA compute capability ${major}.${minor} < 8.0, which has no bfloat16` };
}
