// Runtime linking and versions (issue: the first real GPU run): the check that the driver supports the loaded CUDA
// runtime and that the kernels library was built against that runtime's major version, on the emulated device
// whose reported versions the C environment controls (BD_EMU_DRIVER_VERSION / BD_EMU_RUNTIME_VERSION, read on
// every call); `info` reports both versions and the problem. Also the version arithmetic itself.

import { afterEach, describe, expect, test } from "bun:test";
import { checkCudaVersions, cudaEnvironment, cudaVersionProblem, formatCudaVersion, loadCuda } from "../../ffi/cuda/index.ts";
import { setCEnv, unsetCEnv } from "../../ffi/libc.ts";
import { hasBackend } from "../../src/backends/registry.ts";
import { collectInfo, formatInfo } from "../../src/cli/info.ts";

const HAS_CUDA = hasBackend("cuda") && process.env.BD_CUDA_EMULATE !== "0";
const paths = { cudart: "/x/libcudart.so.13", kernels: "/x/libbdkernels.so" };

describe("CUDA version rules", () => {
  test("formatting and each mismatch", () => {
    expect(formatCudaVersion(12040)).toBe("12.4");
    expect(formatCudaVersion(13000)).toBe("13.0");
    expect(cudaVersionProblem({ runtime: 13000, driver: 13000, kernels: 13000 }, paths)).toBeNull();
    expect(cudaVersionProblem({ runtime: 12040, driver: 12080, kernels: 12000 }, paths)).toBeNull();
    expect(cudaVersionProblem({ runtime: 13000, driver: 12080, kernels: 13000 }, paths)).toMatch(
      /driver supports CUDA 12\.8 but the CUDA runtime \/x\/libcudart\.so\.13 is 13\.0.*cudaErrorInsufficientDriver.*update the driver/,
    );
    expect(cudaVersionProblem({ runtime: 12080, driver: 13000, kernels: 13000 }, paths)).toMatch(/built against CUDA runtime 13\.0.*two CUDA runtimes/);
    expect(cudaVersionProblem({ runtime: 13000, driver: 13020, kernels: 13010 }, paths)).toMatch(/built against CUDA runtime 13\.1, newer than/);
    expect(cudaVersionProblem({ runtime: 13000, driver: 0, kernels: 0 }, paths)).toMatch(/install the NVIDIA driver/);
  });
});

describe.skipIf(!HAS_CUDA)("the emulated device's versions", () => {
  afterEach(() => {
    unsetCEnv("BD_EMU_DRIVER_VERSION");
    unsetCEnv("BD_EMU_RUNTIME_VERSION");
  });

  test("matching versions pass; a driver older than the runtime is a clear error at init and in info", () => {
    const libs = loadCuda({ emulate: true });
    expect(checkCudaVersions(libs)).toEqual({ runtime: 13000, driver: 13000, kernels: 0 });
    setCEnv("BD_EMU_DRIVER_VERSION", "12040");
    expect(() => checkCudaVersions(libs)).toThrow(/the NVIDIA driver supports CUDA 12\.4 but the CUDA runtime .*libcudart\.so is 13\.0/);
    const env = cudaEnvironment({ emulate: true });
    expect(env.driver.version).toBe("12.4");
    expect(env.runtimeVersion).toBe("13.0");
    expect(env.available).toBe(false);
    expect(env.versionProblem).toMatch(/driver supports CUDA 12\.4/);
    const text = formatInfo({ ...collectInfo(), cuda: env });
    expect(text).toMatch(/runtime +13\.0/);
    expect(text).toMatch(/supports CUDA 12\.4/);
    expect(text).toMatch(/versions +PROBLEM: the NVIDIA driver supports CUDA 12\.4/);
  });

  test("a newer driver than the runtime is fine", () => {
    setCEnv("BD_EMU_DRIVER_VERSION", "13020");
    setCEnv("BD_EMU_RUNTIME_VERSION", "13000");
    expect(checkCudaVersions(loadCuda({ emulate: true }))).toMatchObject({ runtime: 13000, driver: 13020 });
  });
});
