// Why CUDA is unavailable, lowest layer first (src/backends/cuda/diagnose.ts): a missing driver or
// a runtime that reports cudaErrorInsufficientDriver / cudaErrorNoDevice is the cause, ahead of the
// libraries; a runtime that sees a device means the driver layer is fine whatever discovery said.

import { describe, expect, test } from "bun:test";
import { describeCudaStack } from "../../src/backends/cuda/diagnose.ts";

const rt = "/usr/local/cuda/lib64/libcudart.so";
const status = (code: number, name: string, text: string) => ({ code, name, text });

describe("describeCudaStack", () => {
  test("no libcudart and no libcuda.so.1: the driver is named, with its install hint", () => {
    const d = describeCudaStack({ driver: null, runtime: null })!;
    expect(d.summary).toBe("no NVIDIA driver (libcuda.so.1 not found)");
    expect(d.message).toStartWith("no NVIDIA driver is installed: libcuda.so.1 is not in the ldconfig cache");
    expect(d.message).toContain("install or update the NVIDIA driver");
  });

  test("the runtime reports cudaErrorInsufficientDriver: no driver, or an old one", () => {
    const facts = { runtime: { path: rt, status: status(35, "cudaErrorInsufficientDriver", "CUDA driver version is insufficient for CUDA runtime version") } };
    const none = describeCudaStack({ driver: null, ...facts })!;
    expect(none.message).toStartWith("no NVIDIA driver is installed (libcuda.so.1 not found): the CUDA runtime (/usr/local/cuda/lib64/libcudart.so) reports cudaErrorInsufficientDriver");
    expect(none.summary).toContain("cudaErrorInsufficientDriver");
    const old = describeCudaStack({ driver: "/usr/lib/x86_64-linux-gnu/libcuda.so.1", ...facts })!;
    expect(old.message).toStartWith("the NVIDIA driver (/usr/lib/x86_64-linux-gnu/libcuda.so.1) is older than the CUDA runtime needs");
  });

  test("cudaErrorNoDevice and a device count of 0 name the device layer", () => {
    expect(describeCudaStack({ driver: "/x/libcuda.so.1", runtime: { path: rt, status: status(100, "cudaErrorNoDevice", "no CUDA-capable device is detected") } })!.message).toStartWith(
      "no CUDA-capable GPU is visible",
    );
    expect(describeCudaStack({ driver: "/x/libcuda.so.1", runtime: { path: rt, status: status(0, "cudaSuccess", "no error"), deviceCount: 0 } })!.summary).toBe("no CUDA device found");
  });

  test("a runtime that sees a device: nothing below the libraries is wrong", () => {
    expect(describeCudaStack({ driver: null, runtime: { path: rt, status: status(0, "cudaSuccess", "no error"), deviceCount: 1 } })).toBeNull();
    expect(describeCudaStack({ driver: "/x/libcuda.so.1", runtime: null })).toBeNull();
  });
});
