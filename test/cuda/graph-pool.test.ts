// The allocator's graph pools (src/backends/cuda/allocator.ts GraphPool) against a fake driver: while a pool is
// current its stream's allocations come from the pool (cudaMalloc into it once, then its own free blocks), its blocks
// never serve anyone else — not while it is current, not after — until releasePool() hands them to the shared
// cache (free shared blocks on the pool's stream join it first); a sealed pool (a capture is under way) refuses to cudaMalloc with an error naming the graph; live bytes
// count pool blocks like any other. Then on the emulated device: a captured graph's memory is back in the shared
// cache after dispose, and live bytes return to the start.

import { describe, expect, test } from "bun:test";
import { type AllocatorDriver, CachingAllocator, GraphPool } from "../../src/backends/cuda/allocator.ts";
import { captureCudaGraph, cudaAllocatorStats, cudaContext, cudaEmptyCache } from "../../src/backends/cuda/index.ts";
import { hasBackend } from "../../src/backends/registry.ts";
import { full, keep, memoryStats, tidy } from "../../src/tensor/index.ts";

function fakeDriver() {
  let next = 0x10000;
  const log: string[] = [];
  const driver: AllocatorDriver = {
    malloc(bytes) {
      const p = next;
      next += bytes + 256;
      log.push(`malloc ${bytes}`);
      return p;
    },
    free(ptr) {
      log.push(`free ${ptr}`);
    },
    memInfo: () => [1 << 30, 1 << 30],
    streamWait(waiter, stream) {
      log.push(`wait ${waiter}<-${stream}`);
    },
  };
  return { driver, log };
}

const S = 7; // the pool's (compute) stream

describe("graph pools (fake driver)", () => {
  test("a pool's blocks are its own: reused inside it, never handed out outside it, shared again after release", () => {
    const { driver, log } = fakeDriver();
    const a = new CachingAllocator(driver);
    const shared = a.allocate(1000, S);
    a.free(shared); // a cached shared block of the same class
    const pool = new GraphPool(S, "test graph");
    const [p1, p2] = a.withPool(pool, () => [a.allocate(1000, S), a.allocate(1000, S)]);
    expect(p1).toBe(shared); // a free shared block on the pool's stream joins the pool
    expect(pool.blocks).toBe(2); // and one from cudaMalloc
    expect(a.cachedBytes).toBe(0);
    a.withPool(pool, () => a.free(p1!));
    expect(a.withPool(pool, () => a.allocate(900, S))).toBe(p1); // the pool's own free block (same class)
    a.free(p1!); // freed outside withPool: still back to the pool
    a.free(p2!);
    expect(a.cachedBytes).toBe(0); // pool blocks are not the shared cache
    const outside = [a.allocate(1000, S), a.allocate(1000, S)];
    for (const p of outside) expect([p1, p2]).not.toContain(p); // outside the pool: never the pool's blocks
    expect(a.memory.live).toBe(2000);
    a.releasePool(pool);
    for (const p of outside) a.free(p);
    const after = [a.allocate(1000, S), a.allocate(1000, S), a.allocate(1000, S), a.allocate(1000, S)];
    expect(after.sort()).toEqual([p1!, p2!, ...outside].sort()); // released: the shared cache hands them out now
    expect(log.filter((l) => l.startsWith("malloc")).length).toBe(4); // nothing new after the first four
  });

  test("a sealed pool does not cudaMalloc: the error names the graph and what to do", () => {
    const { driver } = fakeDriver();
    const a = new CachingAllocator(driver);
    const pool = new GraphPool(S, "a UNet step");
    const p = a.withPool(pool, () => a.allocate(4096, S));
    a.free(p);
    pool.sealed = true;
    expect(a.withPool(pool, () => a.allocate(4096, S))).toBe(p); // what the warm-up allocated is there
    expect(() => a.withPool(pool, () => a.allocate(8192, S))).toThrow(/CUDA graph capture of a UNet step: a 8192-byte block .* the eager warm-up run did not allocate/);
    a.free(p);
    pool.sealed = false;
    a.releasePool(pool);
    expect(a.memory.live).toBe(0);
  });

  test("a block still live when its pool is released goes to the shared cache when freed; other streams are not the pool's", () => {
    const { driver } = fakeDriver();
    const a = new CachingAllocator(driver);
    const pool = new GraphPool(S, "g");
    const [mine, theirs] = a.withPool(pool, () => [a.allocate(512, S), a.allocate(512, S + 1)]);
    expect(pool.blocks).toBe(1); // only the pool stream's request
    a.releasePool(pool);
    expect(a.cachedBytes).toBe(0);
    a.free(mine!); // e.g. a cache the warm-up filled, freed after the graph
    expect(pool.liveBlocks).toBe(0);
    expect(a.allocate(512, S)).toBe(mine!); // the shared cache has it now
    a.free(theirs!);
    expect(() => a.withPool(pool, () => 0)).toThrow(/was released/);
  });
});

const HAS_EMU = hasBackend("cuda") && cudaContext().libs.emulated;

describe.skipIf(!HAS_EMU)("graph pools on the emulated device", () => {
  test("a captured graph's memory stays reserved while it lives and is back in the shared cache after dispose", () => {
    const live = memoryStats("cuda").live;
    const x = keep(full([64, 64], 2, { device: "cuda" }));
    // Earlier files leave free shared blocks; one on the compute stream would join the pool (by design) and
    // lower cachedBytes. Start from an empty shared cache so the comparison below is about this graph alone.
    cudaEmptyCache();
    const cachedBefore = cudaAllocatorStats().cachedBytes;
    const g = captureCudaGraph("x·3 + 1", () => keep(tidy(() => x.mul(3).add(1))));
    expect(g.pool.blocks).toBeGreaterThan(0);
    expect(cudaAllocatorStats().cachedBytes).toBe(cachedBefore); // the pool's free blocks are not shared cache
    g.launch();
    expect(Array.from(g.outputs.toFloat32Array().subarray(0, 3))).toEqual([7, 7, 7]);
    const reserved = g.pool.reservedBytes;
    g.dispose();
    expect(cudaAllocatorStats().cachedBytes).toBeGreaterThanOrEqual(cachedBefore + reserved);
    x.dispose();
    expect(memoryStats("cuda").live).toBe(live);
  });

  test("a capture that downloads is refused by name, frees what it made and leaves the stream usable", () => {
    const live = memoryStats("cuda").live;
    const x = keep(full([16], 1, { device: "cuda" }));
    expect(() => captureCudaGraph("a reading step", () => keep(tidy(() => x.mul(x.sum().item()))))).toThrow(
      /CUDA graph capture of a reading step failed: CUDA graph capture of a reading step: a device → host download of 4 bytes \(a synchronisation\) cannot be captured/,
    );
    const y = tidy(() => x.add(1).toFloat32Array()); // the compute stream works eagerly again
    expect(y[0]).toBe(2);
    x.dispose();
    expect(memoryStats("cuda").live).toBe(live);
  });
});
