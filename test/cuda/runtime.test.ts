// The emulated CUDA runtime through ffi/cuda (bind.ts + cudart.ts): device queries, memory, copies, streams,
// events, memory info and out-of-memory, named errors; plus library discovery and the environment report.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CudaError, CudaLibraryLoadError, openLibrary } from "../../ffi/cuda/bind.ts";
import { CUDART, PROP_BUFFER_BYTES, cudaDevAttr, cudaEventDisableTiming, cudaMemPoolAttrReleaseThreshold, cudaMemPoolAttrUsedMemCurrent, cudaMemcpyKind } from "../../ffi/cuda/cudart.ts";
import { CudaNotFoundError, EMULATED_DIR, discoverCuda, requireLibraries } from "../../ffi/cuda/discover.ts";
import { cudaEnvironment, type CudaLibraries } from "../../ffi/cuda/index.ts";
import { checkKernelAbi } from "../../ffi/cuda/kernels.ts";
import { setCEnv, unsetCEnv } from "../../ffi/libc.ts";
import { BUILD_TIMEOUT, Device, HAS_GXX, emulatedCuda } from "./setup.ts";

const GiB = 2 ** 30;

describe.skipIf(!HAS_GXX)("emulated cudart", () => {
  let cu: CudaLibraries;
  let dev: Device;
  let rt: CudaLibraries["cudart"]["symbols"];
  const i32 = new Int32Array(1);
  const u64 = new BigUint64Array(2);
  const handle = () => Number(u64[0]);

  beforeAll(async () => {
    cu = await emulatedCuda();
    dev = new Device(cu);
    rt = cu.cudart.symbols;
  }, BUILD_TIMEOUT);
  afterAll(() => dev?.freeAll());

  test("one emulated device with its properties and versions", () => {
    cu.check(rt.cudaGetDeviceCount(i32), "cudaGetDeviceCount");
    expect(i32[0]).toBe(1);
    const prop = new Uint8Array(PROP_BUFFER_BYTES);
    cu.check(rt.cudaGetDeviceProperties(prop, 0), "cudaGetDeviceProperties");
    expect(new TextDecoder().decode(prop.subarray(0, prop.indexOf(0)))).toBe("bun-diffusion emulated device");
    const attr = (a: number) => (cu.check(rt.cudaDeviceGetAttribute(i32, a, 0), "cudaDeviceGetAttribute"), i32[0]);
    expect([attr(cudaDevAttr.computeCapabilityMajor), attr(cudaDevAttr.computeCapabilityMinor)]).toEqual([8, 0]);
    expect(attr(cudaDevAttr.warpSize)).toBe(32);
    expect(attr(cudaDevAttr.memoryPoolsSupported)).toBe(1);
    cu.check(rt.cudaRuntimeGetVersion(i32), "cudaRuntimeGetVersion");
    expect(i32[0]).toBe(13000);
    expect(() => cu.check(rt.cudaSetDevice(1), "cudaSetDevice")).toThrow(/cudaSetDevice failed: cudaErrorInvalidDevice \(101\): invalid device ordinal/);
  });

  test("malloc / memcpy round trips in every direction, memset, 256-byte alignment", () => {
    const src = Float32Array.from({ length: 1025 }, (_, i) => i * 0.5 - 7);
    const a = dev.upload(src);
    const b = dev.malloc(src.byteLength);
    expect(a % 256).toBe(0);
    expect(b % 256).toBe(0);
    expect(dev.download(b, new Uint8Array(8))).toEqual(new Uint8Array(8).fill(0xff)); // fresh memory is poisoned
    cu.check(rt.cudaMemcpy(b, a, src.byteLength, cudaMemcpyKind.deviceToDevice), "cudaMemcpy");
    expect(dev.download(b, new Float32Array(1025))).toEqual(src);
    cu.check(rt.cudaMemset(b, 0, 4 * 10), "cudaMemset");
    const back = dev.download(b, new Float32Array(1025));
    expect(Array.from(back.subarray(0, 11))).toEqual([...new Array(10).fill(0), src[10]]);
    // cudaMemcpyDefault infers the direction from the pointers; async copies on a stream
    cu.check(rt.cudaStreamCreate(u64), "cudaStreamCreate");
    const s = handle();
    const host = new Float32Array(1025);
    cu.check(rt.cudaMemcpyAsync(host, a, src.byteLength, cudaMemcpyKind.default, s), "cudaMemcpyAsync");
    cu.check(rt.cudaStreamSynchronize(s), "cudaStreamSynchronize");
    expect(host).toEqual(src);
    cu.check(rt.cudaStreamDestroy(s), "cudaStreamDestroy");
    dev.free(a);
    dev.free(b);
  });

  test("bad pointers, directions and ranges are named errors with CUDA's message", () => {
    const p = dev.malloc(64);
    expect(() => cu.check(rt.cudaFree(p + 8), "cudaFree")).toThrow(CudaError);
    try {
      cu.check(rt.cudaFree(p + 8), "cudaFree");
    } catch (e) {
      expect(e).toBeInstanceOf(CudaError);
      const err = e as CudaError;
      expect([err.fn, err.status, err.statusName, err.detail]).toEqual(["cudaFree", 1, "cudaErrorInvalidValue", "invalid argument"]);
      expect(err.message).toBe("cudaFree failed: cudaErrorInvalidValue (1): invalid argument");
    }
    // the runtime also keeps it as the last error, cleared by reading
    expect(rt.cudaPeekAtLastError()).toBe(1);
    expect(rt.cudaGetLastError()).toBe(1);
    expect(rt.cudaGetLastError()).toBe(0);
    const host = new Uint8Array(128);
    expect(rt.cudaMemcpy(host, p, 128, cudaMemcpyKind.deviceToHost)).toBe(1); // past the allocation's end
    expect(rt.cudaMemcpy(p, host, 64, cudaMemcpyKind.deviceToHost)).toBe(1); // arguments swapped
    expect(rt.cudaMemcpy(p, host, 64, 7)).toBe(21); // cudaErrorInvalidMemcpyDirection
    expect(rt.cudaGetErrorName(21)).toBe("cudaErrorInvalidMemcpyDirection");
    rt.cudaGetLastError();
    dev.free(p);
  });

  test("cudaMemGetInfo follows allocations; BD_EMU_MEMORY_BYTES sets the capacity; OOM is cudaErrorMemoryAllocation", () => {
    cu.check(rt.cudaMemGetInfo(u64.subarray(0, 1), u64.subarray(1, 2)), "cudaMemGetInfo");
    const [free0, total] = [Number(u64[0]), Number(u64[1])];
    expect(total).toBe(8 * GiB);
    const p = dev.malloc(3 << 20);
    rt.cudaMemGetInfo(u64.subarray(0, 1), u64.subarray(1, 2));
    expect(free0 - Number(u64[0])).toBe(3 << 20);
    // a capacity of what is in use now (this test's 3 MiB and whatever earlier tests of this process keep
    // allocated, e.g. the allocator's cache) plus 13 MiB
    const used = total - Number(u64[0]);
    const capacity = used + (13 << 20);
    setCEnv("BD_EMU_MEMORY_BYTES", String(capacity));
    try {
      rt.cudaMemGetInfo(u64.subarray(0, 1), u64.subarray(1, 2));
      expect(Number(u64[1])).toBe(capacity);
      expect(Number(u64[0])).toBe(13 << 20);
      expect(() => dev.malloc(14 << 20)).toThrow("cudaMalloc failed: cudaErrorMemoryAllocation (2): out of memory [14680064 bytes]");
      expect(rt.cudaGetLastError()).toBe(2);
      const q = dev.malloc(12 << 20); // fits: 12 of the 13 MiB free
      dev.free(q);
    } finally {
      unsetCEnv("BD_EMU_MEMORY_BYTES");
    }
    dev.free(p);
  });

  test("stream-ordered allocation and the default memory pool", () => {
    cu.check(rt.cudaMallocAsync(u64, 1000, null), "cudaMallocAsync");
    const p = handle();
    cu.check(rt.cudaDeviceGetDefaultMemPool(u64, 0), "cudaDeviceGetDefaultMemPool");
    const pool = handle();
    const v = new BigUint64Array([123n]);
    cu.check(rt.cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, v), "cudaMemPoolSetAttribute");
    v[0] = 0n;
    cu.check(rt.cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReleaseThreshold, v), "cudaMemPoolGetAttribute");
    expect(v[0]).toBe(123n);
    cu.check(rt.cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemCurrent, v), "cudaMemPoolGetAttribute");
    expect(v[0]).toBeGreaterThanOrEqual(1000n);
    cu.check(rt.cudaFreeAsync(p, null), "cudaFreeAsync");
    expect(rt.cudaFreeAsync(p, null)).toBe(1); // double free
    rt.cudaGetLastError();
  });

  test("events record in order with host-clock elapsed times; invalid uses are errors", () => {
    const ev = () => (cu.check(rt.cudaEventCreate(u64), "cudaEventCreate"), handle());
    cu.check(rt.cudaStreamCreateWithFlags(u64, 1), "cudaStreamCreateWithFlags");
    const s = handle();
    const [a, b] = [ev(), ev()];
    const f = new Float32Array(1);
    expect(rt.cudaEventElapsedTime(f, a, b)).toBe(400); // not recorded yet: cudaErrorInvalidResourceHandle
    cu.check(rt.cudaEventRecord(a, s), "cudaEventRecord");
    Bun.sleepSync(20);
    cu.check(rt.cudaEventRecord(b, s), "cudaEventRecord");
    cu.check(rt.cudaStreamWaitEvent(null, b, 0), "cudaStreamWaitEvent");
    cu.check(rt.cudaEventSynchronize(b), "cudaEventSynchronize");
    expect(rt.cudaEventQuery(b)).toBe(0);
    cu.check(rt.cudaEventElapsedTime(f, a, b), "cudaEventElapsedTime");
    expect(f[0]).toBeGreaterThanOrEqual(15);
    cu.check(rt.cudaEventElapsedTime(f, b, a), "cudaEventElapsedTime");
    expect(f[0]).toBeLessThan(0);
    cu.check(rt.cudaEventCreateWithFlags(u64, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    const c = handle();
    cu.check(rt.cudaEventRecord(c, s), "cudaEventRecord");
    expect(rt.cudaEventElapsedTime(f, a, c)).toBe(400);
    for (const e of [a, b, c]) cu.check(rt.cudaEventDestroy(e), "cudaEventDestroy");
    cu.check(rt.cudaStreamDestroy(s), "cudaStreamDestroy");
    expect(() => cu.check(rt.cudaStreamDestroy(s), "cudaStreamDestroy")).toThrow(/cudaErrorInvalidResourceHandle \(400\): invalid resource handle/);
    rt.cudaGetLastError();
  });

  test("pinned host memory and host registration", () => {
    cu.check(rt.cudaHostAlloc(u64, 4096, 0), "cudaHostAlloc");
    const pinned = handle();
    const d = dev.upload(Uint32Array.from({ length: 1024 }, (_, i) => i * 3));
    cu.check(rt.cudaMemcpy(pinned, d, 4096, cudaMemcpyKind.deviceToHost), "cudaMemcpy");
    cu.check(rt.cudaMemcpy(d, pinned, 4096, cudaMemcpyKind.hostToDevice), "cudaMemcpy"); // pinned is host memory
    cu.check(rt.cudaFreeHost(pinned), "cudaFreeHost");
    const buf = new Uint8Array(8192);
    cu.check(rt.cudaHostRegister(buf, buf.byteLength, 0), "cudaHostRegister");
    expect(rt.cudaHostRegister(buf.subarray(4096), 16, 0)).toBe(712); // cudaErrorHostMemoryAlreadyRegistered
    cu.check(rt.cudaHostUnregister(buf), "cudaHostUnregister");
    expect(rt.cudaHostUnregister(buf)).toBe(713);
    rt.cudaGetLastError();
    dev.free(d);
  });

  test("cudaEnvironment() reports the emulated device and where each library was found", () => {
    const env = cudaEnvironment({ emulate: true });
    expect(env.emulated).toBe(true);
    expect(env.available).toBe(true);
    expect(env.problems).toEqual([]);
    expect(env.devices).toEqual([
      expect.objectContaining({ index: 0, name: "bun-diffusion emulated device", computeCapability: "8.0", totalMemoryBytes: 8 * GiB }),
    ]);
    for (const lib of ["cudart", "cublas", "cudnn", "kernels"] as const) expect(env.libraries[lib].path!.startsWith(EMULATED_DIR)).toBe(true);
    expect(env.libraries.cudnn.version).toBe("9.1.0");
    expect(env.libraries.cublas.version).toBe("13.0.0");
    expect(env.libraries.kernels.version).toBe("bdk 1 (emulated)");
    expect(env.runtimeVersion).toBe("13.0");
  });
});

describe("library discovery", () => {
  let tmp: string;
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), "bd-discover-"));
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  const touch = (...parts: string[]) => {
    mkdirSync(join(tmp, ...parts.slice(0, -1)), { recursive: true });
    writeFileSync(join(tmp, ...parts), "");
    return join(tmp, ...parts);
  };
  const bare = { PATH: "", HOME: join(tmpdir(), "bd-no-home") };

  test("BD_CUDA_LIB_DIR first, then CUDA_HOME, then site-packages nvidia/*/lib", () => {
    const cublas = touch("libdir", "libcublas.so.12");
    const cudart = touch("cuda", "targets", process.arch === "arm64" ? "sbsa-linux" : "x86_64-linux", "lib", "libcudart.so.12");
    const cudnn = touch("venv", "lib", "python3.11", "site-packages", "nvidia", "cudnn", "lib", "libcudnn.so.9");
    const d = discoverCuda({ env: { ...bare, BD_CUDA_LIB_DIR: join(tmp, "libdir"), CUDA_HOME: join(tmp, "cuda"), VIRTUAL_ENV: join(tmp, "venv") } });
    expect(d.emulated).toBe(false);
    expect([d.libraries.cublas.path, d.libraries.cublas.source]).toEqual([cublas, "BD_CUDA_LIB_DIR"]);
    expect([d.libraries.cudart.path, d.libraries.cudart.source]).toEqual([cudart, "CUDA_HOME"]);
    expect([d.libraries.cudnn.path, d.libraries.cudnn.source]).toEqual([cudnn, "site-packages"]);
  });

  // Decided before the tests run: with every CUDA library installed system-wide nothing is missing, and the
  // message cannot be produced (the folder named by BD_CUDA_LIB_DIR does not exist either way).
  const missingHere = (["cudart", "cublas", "cudnn"] as const).filter(
    (l) => !discoverCuda({ env: { ...bare, BD_CUDA_LIB_DIR: join(tmpdir(), `bd-discover-none-${process.pid}`) } }).libraries[l].path,
  );
  test.skipIf(missingHere.length === 0)(
    `a missing library names every place searched and what to install${missingHere.length ? "" : " (skipped: every CUDA library is installed system-wide here)"}`,
    () => {
    const d = discoverCuda({ env: { ...bare, BD_CUDA_LIB_DIR: join(tmp, "empty") } });
    const missing = (["cudart", "cublas", "cudnn"] as const).filter((l) => !d.libraries[l].path);
    expect(missing).toEqual(missingHere);
    let err: unknown;
    try {
      requireLibraries(d, missing);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CudaNotFoundError);
    const msg = (err as Error).message;
    expect(msg).toContain(`BD_CUDA_LIB_DIR: ${join(tmp, "empty")}`);
    expect(msg).toContain("/usr/local/cuda/lib64");
    expect(msg).toContain("ldconfig cache");
    expect(msg).toContain("BD_CUDA_EMULATE=1");
    if (missing.includes("cublas")) expect(msg).toContain("pip install nvidia-cublas-cu12");
    },
  );

  test("BD_CUDA_EMULATE=1 points at kernels/build/emu", () => {
    const d = discoverCuda({ env: { ...bare, BD_CUDA_EMULATE: "1" } });
    expect(d.emulated).toBe(true);
    expect(d.libraries.cudart.searched).toEqual([`BD_CUDA_EMULATE: ${EMULATED_DIR}`]);
  });

  test("load errors and ABI mismatches are explained", () => {
    expect(() => openLibrary("cudart", join(tmp, "nope.so"), CUDART)).toThrow(CudaLibraryLoadError);
    expect(() => openLibrary("cudart", join(tmp, "nope.so"), CUDART)).toThrow(/cannot load cudart from .*nope\.so/);
    const abi = "bdk 1;emulated=1;strided=336,0,4,8,16,80;dims=8;args=4;unary=exp,neg;binary=add;reduce=sum";
    expect(() => checkKernelAbi(abi, "lib.so")).toThrow(/unary op order exp,neg != neg,exp/);
  });
});
