// Symbol table of cuDNN's legacy forward-convolution API (libcudnn 8 or 9; the emulated one in
// kernels/build/emu): handle, 4-d tensor / filter / convolution descriptors, algorithm choice, workspace size,
// cudnnConvolutionForward. Status numbers differ between cuDNN 8 and 9, so only 0 = success is relied on and
// every error is described by cudnnGetErrorString (plus cudnnGetLastErrorString on cuDNN 9).

import { makeCheck, type NativeLibrary, type StatusCheck, type SymbolTable } from "./bind.ts";

const S = "i32"; // cudnnStatus_t

export const CUDNN = {
  cudnnGetVersion: { args: [], returns: "u64" },
  cudnnGetErrorString: { args: ["i32"], returns: "cstring" },
  cudnnGetLastErrorString: { args: ["ptr", "u64"], returns: "void", optional: true },
  cudnnCreate: { args: ["ptr"], returns: S },
  cudnnDestroy: { args: ["ptr"], returns: S },
  cudnnSetStream: { args: ["ptr", "ptr"], returns: S },
  cudnnGetStream: { args: ["ptr", "ptr"], returns: S },
  cudnnCreateTensorDescriptor: { args: ["ptr"], returns: S },
  // (desc, format, dataType, n, c, h, w)
  cudnnSetTensor4dDescriptor: { args: ["ptr", "i32", "i32", "i32", "i32", "i32", "i32"], returns: S },
  // (desc, dataType, n, c, h, w, nStride, cStride, hStride, wStride)
  cudnnSetTensor4dDescriptorEx: { args: ["ptr", "i32", "i32", "i32", "i32", "i32", "i32", "i32", "i32", "i32"], returns: S },
  cudnnDestroyTensorDescriptor: { args: ["ptr"], returns: S },
  cudnnCreateFilterDescriptor: { args: ["ptr"], returns: S },
  // (desc, dataType, format, k, c, h, w)
  cudnnSetFilter4dDescriptor: { args: ["ptr", "i32", "i32", "i32", "i32", "i32", "i32"], returns: S },
  cudnnDestroyFilterDescriptor: { args: ["ptr"], returns: S },
  cudnnCreateConvolutionDescriptor: { args: ["ptr"], returns: S },
  // (desc, pad_h, pad_w, u, v, dilation_h, dilation_w, mode, computeType)
  cudnnSetConvolution2dDescriptor: { args: ["ptr", "i32", "i32", "i32", "i32", "i32", "i32", "i32", "i32"], returns: S },
  cudnnSetConvolutionGroupCount: { args: ["ptr", "i32"], returns: S },
  cudnnSetConvolutionMathType: { args: ["ptr", "i32"], returns: S },
  cudnnDestroyConvolutionDescriptor: { args: ["ptr"], returns: S },
  // (convDesc, xDesc, wDesc, *n, *c, *h, *w)
  cudnnGetConvolution2dForwardOutputDim: { args: ["ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr"], returns: S },
  // (handle, xDesc, wDesc, convDesc, yDesc, requested, *returned, perf*)
  cudnnGetConvolutionForwardAlgorithm_v7: { args: ["ptr", "ptr", "ptr", "ptr", "ptr", "i32", "ptr", "ptr"], returns: S },
  // (handle, xDesc, x, wDesc, w, convDesc, yDesc, y, requested, *returned, perf*, workspace, workspaceBytes)
  cudnnFindConvolutionForwardAlgorithmEx: {
    args: ["ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "i32", "ptr", "ptr", "ptr", "u64"],
    returns: S,
  },
  // (handle, xDesc, wDesc, convDesc, yDesc, algo, *bytes)
  cudnnGetConvolutionForwardWorkspaceSize: { args: ["ptr", "ptr", "ptr", "ptr", "ptr", "i32", "ptr"], returns: S },
  // (handle, alpha*, xDesc, x, wDesc, w, convDesc, algo, workspace, workspaceBytes, beta*, yDesc, y)
  cudnnConvolutionForward: {
    args: ["ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "i32", "ptr", "u64", "ptr", "ptr", "ptr"],
    returns: S,
  },
} as const satisfies SymbolTable;

export type Cudnn = NativeLibrary<typeof CUDNN>;

export const cudnnDataType = { float: 0, double: 1, half: 2, bfloat16: 9 } as const;
export const cudnnTensorFormat = { NCHW: 0, NHWC: 1 } as const;
export const cudnnConvolutionMode = { convolution: 0, crossCorrelation: 1 } as const;
export const cudnnMathType = { default: 0, tensorOp: 1, tensorOpAllowConversion: 2, fma: 3 } as const;
export const cudnnConvolutionFwdAlgo = { implicitGemm: 0, implicitPrecompGemm: 1, gemm: 2, direct: 3, fft: 4, fftTiling: 5, winograd: 6, winogradNonfused: 7 } as const;

/** struct cudnnConvolutionFwdAlgoPerf_t (cuDNN 8 and 9): 48 bytes. */
export const ALGO_PERF = { bytes: 48, algo: 0, status: 4, time: 8, memory: 16, determinism: 24, mathType: 28 } as const;

export function cudnnCheck(lib: Cudnn): StatusCheck {
  const s = lib.symbols;
  const detail = new Uint8Array(512);
  return makeCheck("cuDNN", (status) => {
    let message = "";
    if (lib.has("cudnnGetLastErrorString")) {
      detail.fill(0);
      s.cudnnGetLastErrorString(detail, detail.length);
      const end = detail.indexOf(0);
      message = new TextDecoder().decode(detail.subarray(0, end < 0 ? detail.length : end));
    }
    return { name: s.cudnnGetErrorString(status) ?? `cudnnStatus ${status}`, message: message || "see the cuDNN documentation" };
  });
}
