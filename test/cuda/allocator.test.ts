// The CUDA caching allocator (src/backends/cuda/allocator.ts): size classes, same-stream reuse, cross-stream reuse
// behind an event wait, recordStream, emptyCache and the live / reserved / peak statistics against a fake driver;
// then on the emulated device: out of memory with a small BD_EMU_MEMORY_BYTES gives an OutOfMemoryError with the
// numbers (after emptying the cache and retrying) and leaks nothing.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { setCEnv, unsetCEnv } from "../../ffi/libc.ts";
import { type AllocatorDriver, CachingAllocator, LARGE_ROUND, SMALL_ROUND, sizeClass } from "../../src/backends/cuda/allocator.ts";
import { cudaAllocatorStats, cudaEmptyCache } from "../../src/backends/cuda/index.ts";
import { cudaContext } from "../../src/backends/cuda/context.ts";
import { hasBackend } from "../../src/backends/registry.ts";
import { OutOfMemoryError } from "../../src/core/errors.ts";
import { empty, memoryStats, tidy } from "../../src/tensor/index.ts";

const MiB = 2 ** 20;

/** A driver over a pretend device of `capacity` bytes that logs every call. */
function fakeDriver(capacity: number) {
  let used = 0;
  let next = 0x10000;
  const sizes = new Map<number, number>();
  const log: string[] = [];
  const driver: AllocatorDriver = {
    malloc(bytes) {
      if (used + bytes > capacity) {
        log.push(`malloc ${bytes} OOM`);
        return null;
      }
      const p = next;
      next += bytes + 256;
      used += bytes;
      sizes.set(p, bytes);
      log.push(`malloc ${bytes}`);
      return p;
    },
    free(ptr) {
      used -= sizes.get(ptr)!;
      sizes.delete(ptr);
      log.push(`free ${ptr}`);
    },
    memInfo: () => [capacity - used, capacity],
    streamWait(waiter, stream) {
      log.push(`wait ${waiter}<-${stream}`);
    },
  };
  return { driver, log, used: () => used };
}

describe("caching allocator (fake driver)", () => {
  test("size classes: 512 B steps below 1 MiB, 2 MiB steps above; empty requests get a block", () => {
    expect([0, 1, 512, 513, 1000, MiB - 1].map(sizeClass)).toEqual([512, 512, 512, 1024, 1024, MiB]);
    expect([MiB, MiB + 1, 2 * MiB, 2 * MiB + 1, 5 * MiB].map(sizeClass)).toEqual([2 * MiB, 2 * MiB, 2 * MiB, 4 * MiB, 6 * MiB]);
    expect(SMALL_ROUND).toBe(512);
    expect(LARGE_ROUND).toBe(2 * MiB);
  });

  test("a freed block is reused for the same class on the same stream; stats count live, reserved and peak", () => {
    const { driver, log } = fakeDriver(64 * MiB);
    const a = new CachingAllocator(driver);
    const p1 = a.allocate(1000, 1);
    const p2 = a.allocate(3 * MiB, 1);
    expect(a.memory.snapshot()).toEqual({ live: 1000 + 3 * MiB, peak: 1000 + 3 * MiB, reserved: 1024 + 4 * MiB, allocations: 2 });
    a.free(p1);
    expect(a.memory.live).toBe(3 * MiB);
    expect(a.memory.reserved).toBe(1024 + 4 * MiB); // cached, still reserved
    expect(a.cachedBytes).toBe(1024);
    expect(a.allocate(700, 1)).toBe(p1); // same class (1024): reused
    expect(a.allocate(1025, 1)).not.toBe(p1); // class 1536: new
    expect(a.counters.cacheHits).toBe(1);
    expect(a.counters.mallocs).toBe(3);
    a.free(p2);
    expect(a.allocate(4 * MiB, 1)).toBe(p2); // 3 MiB and 4 MiB share the 4 MiB class
    expect(log.filter((l) => l.startsWith("wait"))).toEqual([]); // same stream: no event
    expect(a.memory.peak).toBe(700 + 1025 + 4 * MiB);
    expect(() => a.free(12345)).toThrow(/not a live block/);
  });

  test("a block cached on one stream is handed to another only after an event wait; recordStream orders the free", () => {
    const { driver, log } = fakeDriver(64 * MiB);
    const a = new CachingAllocator(driver);
    const p = a.allocate(4096, 7);
    a.free(p);
    expect(a.allocate(4096, 9)).toBe(p);
    expect(log.at(-1)).toBe("wait 9<-7"); // stream 9 waits for stream 7's queued work before reusing p
    expect(a.counters.crossStreamReuses).toBe(1);
    a.recordStream(p, 11); // p was also used on stream 11 (e.g. a copy)
    a.recordStream(p, 9); // its own stream: nothing to do
    a.free(p);
    expect(log.at(-1)).toBe("wait 9<-11"); // freeing makes the owning stream wait for the other user
    expect(a.allocate(4096, 9)).toBe(p);
    expect(log.filter((l) => l.startsWith("wait")).length).toBe(2);
  });

  test("emptyCache frees every cached block and lowers reserved; live blocks stay", () => {
    const { driver, used } = fakeDriver(64 * MiB);
    const a = new CachingAllocator(driver);
    const keep = a.allocate(MiB, 1);
    for (const n of [10, 5000, 3 * MiB]) a.free(a.allocate(n, 1));
    expect(a.cachedBytes).toBe(512 + 5120 + 4 * MiB);
    a.emptyCache();
    expect(a.cachedBytes).toBe(0);
    expect(a.counters.frees).toBe(3);
    expect(a.memory.reserved).toBe(2 * MiB);
    expect(used()).toBe(2 * MiB);
    a.free(keep);
    expect(a.memory.snapshot()).toMatchObject({ live: 0, allocations: 0, reserved: 2 * MiB });
  });

  test("out of memory: the cache is emptied and the request retried; then OutOfMemoryError with the numbers", () => {
    const { driver, log } = fakeDriver(12 * MiB);
    const a = new CachingAllocator(driver);
    const live = a.allocate(3 * MiB, 1); // class 4 MiB
    a.free(a.allocate(5 * MiB, 1)); // 6 MiB cached
    const p = a.allocate(5 * MiB, 2); // another stream takes the cached 6 MiB block (after a wait): no malloc
    expect(a.counters.mallocs).toBe(2);
    a.free(p);
    const q = a.allocate(6 * MiB + 1, 1); // 8 MiB class: does not fit beside 4 + 6 cached -> empty the cache, retry
    expect(log).toContain("malloc 8388608 OOM");
    expect(a.counters.oomRetries).toBe(1);
    expect(a.cachedBytes).toBe(0);
    a.free(q);
    let err: unknown;
    try {
      a.allocate(9 * MiB, 1); // 10 MiB class: never fits beside the live 4 MiB in 12
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(OutOfMemoryError);
    const e = err as OutOfMemoryError;
    expect([e.device, e.requestedBytes, e.liveBytes, e.limitBytes]).toEqual(["cuda", 9 * MiB, 3 * MiB, 12 * MiB]);
    expect(e.message).toContain("out of memory on cuda: tried to allocate 9.00 MiB with 3.00 MiB live of 12.0 MiB");
    expect(e.message).toContain("CUDA reports 8.00 MiB free of 12.0 MiB after releasing 8.00 MiB cached by the allocator");
    expect(e.message).toContain("offload");
    expect(a.memory.live).toBe(3 * MiB); // the failed request left no trace
    a.free(live);
  });
});

const EMULATED = hasBackend("cuda") && cudaContext().libs.emulated;

describe.skipIf(!hasBackend("cuda"))("caching allocator on the CUDA device", () => {
  beforeAll(() => cudaEmptyCache());
  afterAll(() => unsetCEnv("BD_EMU_MEMORY_BYTES"));

  test("tensors come from the cache: a freed tensor's block backs the next one of its class", () => {
    const live0 = memoryStats("cuda").live;
    const a = empty([1000], { device: "cuda" });
    const ptr = a.storage.handle;
    a.dispose();
    const hits = cudaAllocatorStats().cacheHits;
    const b = empty([999], { device: "cuda" });
    expect(b.storage.handle).toBe(ptr);
    expect(cudaAllocatorStats().cacheHits).toBe(hits + 1);
    expect(memoryStats("cuda").live).toBe(live0 + 999 * 4);
    b.dispose();
    expect(memoryStats("cuda").live).toBe(live0);
    expect(memoryStats("cuda").reserved).toBeGreaterThanOrEqual(4096);
    cudaEmptyCache();
    expect(cudaAllocatorStats().cachedBytes).toBe(0);
  });

  test.skipIf(!EMULATED)("out of memory on the emulated device: OutOfMemoryError with CUDA's numbers, nothing leaked", () => {
    const c = cudaContext();
    cudaEmptyCache();
    const mem = new BigUint64Array(2);
    c.libs.check(c.rt.cudaMemGetInfo(mem.subarray(0, 1), mem.subarray(1, 2)), "cudaMemGetInfo");
    const usedBefore = Number(mem[1]) - Number(mem[0]); // other test files' live tensors
    setCEnv("BD_EMU_MEMORY_BYTES", String(usedBefore + 24 * MiB)); // 24 MiB left for us
    try {
      const live0 = memoryStats("cuda").live;
      const held = tidy(() => {
        const t = [empty([4 * MiB], { device: "cuda" }), empty([2 * MiB], { device: "cuda" })]; // 16 + 8 MiB
        t[1]!.dispose(); // cached, not free on the device
        let err: unknown;
        try {
          empty([3 * MiB], { device: "cuda" }); // 12 MiB: fits only once the cache is released... and 16 + 12 > 24: OOM
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(OutOfMemoryError);
        const e = err as OutOfMemoryError;
        expect(e.requestedBytes).toBe(12 * MiB);
        expect(e.liveBytes).toBe(live0 + 16 * MiB);
        expect(e.limitBytes).toBe(usedBefore + 24 * MiB);
        expect(e.message).toMatch(/tried to allocate 12\.0 MiB .*; CUDA reports 8\.00 MiB free of .* after releasing 8\.00 MiB cached by the allocator; free tensors/);
        const ok = empty([2 * MiB], { device: "cuda" }); // 8 MiB still fits after the failure
        ok.dispose();
        return t[0]!;
      });
      held.dispose();
      expect(memoryStats("cuda").live).toBe(live0);
      cudaEmptyCache();
      c.libs.check(c.rt.cudaMemGetInfo(mem.subarray(0, 1), mem.subarray(1, 2)), "cudaMemGetInfo");
      expect(Number(mem[1]) - Number(mem[0])).toBe(usedBefore); // every byte went back to the device
      expect(c.rt.cudaGetLastError()).toBe(0); // the failed cudaMalloc's error was cleared
    } finally {
      unsetCEnv("BD_EMU_MEMORY_BYTES");
    }
  });
});
