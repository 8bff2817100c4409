// The CUDA caching allocator (ARCHITECTURE decision 1). cudaMalloc / cudaFree synchronise the device and cost
// tens of microseconds, so freed blocks are kept in size-class bins and handed out again:
//
// - Size classes: requests below 1 MiB round up to a multiple of 512 B, larger ones to a multiple of 2 MiB; a bin
//   holds blocks of exactly one class (no splitting or merging). A zero-byte request gets a 512 B block, so every
//   storage has a distinct pointer.
// - Stream-ordered reuse: a freed block goes to the bin of the stream it was allocated on and is reusable there at
//   once (work queued later on that stream runs after the last use). Taking it for another stream records an event
//   on the old stream and makes the new stream wait for it. A block also used on other streams (recordStream) makes
//   its own stream wait for theirs when it is freed.
// - Out of memory: when cudaMalloc fails the cache is released (cudaFree of every cached block) and the request is
//   retried once; if it fails again an OutOfMemoryError says what was asked, what is live, what CUDA reports free
//   of its total, and what would help.
// - Graph pools (CUDA graphs, graph.ts): a captured graph replays its kernels on the addresses they had at
//   capture, so its memory must stay its own. While a GraphPool is current (withPool), allocations on the pool's
//   stream come from the pool's free blocks, else from a free block of the shared cache on that stream (which joins
//   the pool), else from cudaMalloc into the pool; a pool block freed at any time
//   goes back to the pool, never to the shared bins, so nothing outside the graph reuses it between launches. A
//   sealed pool (during capture, where cudaMalloc is forbidden) only hands out its free blocks: the eager warm-up
//   run that precedes a capture allocated them. releasePool() (when the graph is destroyed) moves the pool's blocks
//   to the shared bins (a block still live then, made by the warm-up and kept by its caller, goes there when freed);
//   live-bytes accounting is the same as for other blocks.
// - Statistics through a MemoryTracker: `live` = bytes requested by live storages (tensors and backend
//   temporaries), `reserved` = bytes held from cudaMalloc (live + cached, in class sizes), `peak` = max live.
//
// The device calls go through an AllocatorDriver, so the bookkeeping is testable on its own.

import { MemoryTracker } from "../../core/memory-stats.ts";
import { OutOfMemoryError, formatBytes } from "../../core/errors.ts";

export const SMALL_LIMIT = 1 << 20;
export const SMALL_ROUND = 512;
export const LARGE_ROUND = 2 << 20;

/** The block size a request of `bytes` gets. */
export function sizeClass(bytes: number): number {
  if (bytes <= 0) return SMALL_ROUND;
  if (bytes < SMALL_LIMIT) return Math.ceil(bytes / SMALL_ROUND) * SMALL_ROUND;
  return Math.ceil(bytes / LARGE_ROUND) * LARGE_ROUND;
}

/** What the allocator needs from the device (implemented over cudart by the backend). */
export interface AllocatorDriver {
  /** A device pointer, or null when the device is out of memory (any other failure throws). */
  malloc(bytes: number): number | null;
  free(ptr: number): void;
  /** [free, total] bytes as cudaMemGetInfo reports them. */
  memInfo(): [number, number];
  /** Make `waiter` wait for everything queued on `stream` so far (event record + stream wait). */
  streamWait(waiter: number, stream: number): void;
}

interface Block {
  ptr: number;
  /** The graph pool that owns the block (null: the shared cache). */
  pool: GraphPool | null;
  size: number;
  /** Bytes requested (what `live` counts). */
  requested: number;
  stream: number;
  /** Other streams that used the block while it was live. */
  uses: Set<number> | null;
}

/** The private memory of one CUDA graph (see the header). */
export class GraphPool {
  /** size class -> free blocks of this pool */
  readonly bins = new Map<number, Block[]>();
  /** Blocks owned (live or free). */
  blocks = 0;
  /** Bytes of the owned blocks (class sizes). */
  reservedBytes = 0;
  /** Live blocks of the pool. */
  liveBlocks = 0;
  /** While sealed the pool hands out only its free blocks (no cudaMalloc: a capture is under way). */
  sealed = false;
  released = false;
  constructor(
    readonly stream: number,
    /** Names the graph in errors. */
    readonly label: string,
  ) {}
}

export interface AllocatorCounters {
  /** cudaMalloc calls that succeeded. */
  mallocs: number;
  /** cudaFree calls (emptyCache). */
  frees: number;
  /** Requests served from a bin of the same stream. */
  cacheHits: number;
  /** Requests served from another stream's bin (after an event wait). */
  crossStreamReuses: number;
  /** cudaMalloc failures answered by emptying the cache and retrying. */
  oomRetries: number;
}

export class CachingAllocator {
  readonly memory: MemoryTracker;
  readonly counters: AllocatorCounters = { mallocs: 0, frees: 0, cacheHits: 0, crossStreamReuses: 0, oomRetries: 0 };
  private readonly live = new Map<number, Block>();
  /** stream -> size class -> cached blocks (LIFO: the most recently freed block is the warmest). */
  private readonly bins = new Map<number, Map<number, Block[]>>();
  private cached = 0;
  /** The graph pool allocations on its stream come from (withPool). */
  private pool: GraphPool | null = null;

  constructor(
    private readonly driver: AllocatorDriver,
    memory?: MemoryTracker,
  ) {
    this.memory = memory ?? new MemoryTracker("cuda");
  }

  /** Bytes held in the cache (reserved − live blocks' class sizes). */
  get cachedBytes(): number {
    return this.cached;
  }

  /** [free, total] device bytes as cudaMemGetInfo reports them (the cache is not free to the driver). */
  deviceMemInfo(): [number, number] {
    return this.driver.memInfo();
  }

  /** Number of live blocks. */
  get liveBlocks(): number {
    return this.live.size;
  }

  /** A device pointer to at least `bytes` bytes, usable on `stream` in stream order. Throws OutOfMemoryError. */
  allocate(bytes: number, stream: number): number {
    const size = sizeClass(bytes);
    const pool = this.pool;
    if (pool && pool.stream === stream) return this.allocateInPool(pool, bytes, size);
    let block = this.take(stream, size);
    if (block) {
      this.counters.cacheHits++;
    } else {
      block = this.takeOther(stream, size);
      if (block) this.counters.crossStreamReuses++;
    }
    if (block) {
      block.requested = bytes;
      block.stream = stream;
      block.uses = null;
      this.live.set(block.ptr, block);
      this.memory.onAlloc(bytes, 0);
      return block.ptr;
    }
    const ptr = this.mallocOrEmpty(bytes, size);
    this.live.set(ptr, { ptr, pool: null, size, requested: bytes, stream, uses: null });
    this.memory.onAlloc(bytes, size);
    return ptr;
  }

  /** Run fn with `pool` current (allocations on its stream come from it); the previous pool is restored after. */
  withPool<T>(pool: GraphPool, fn: () => T): T {
    if (pool.released) throw new Error(`CUDA allocator: the graph pool of ${pool.label} was released`);
    const previous = this.pool;
    this.pool = pool;
    try {
      return fn();
    } finally {
      this.pool = previous;
    }
  }

  /**
   * Give a pool's blocks to the shared cache (its graph is gone): the free ones now, those still live (tensors made
   * during the warm-up that outlive it, e.g. a feature's per-run cache) when they are freed.
   */
  releasePool(pool: GraphPool): void {
    if (pool.released) return;
    pool.released = true;
    for (const bin of pool.bins.values()) for (const b of bin) this.toBin(b, pool.stream);
    pool.bins.clear();
    pool.blocks = 0;
    pool.reservedBytes = 0;
  }

  private allocateInPool(pool: GraphPool, bytes: number, size: number): number {
    let block = pool.bins.get(size)?.pop();
    if (block) {
      this.counters.cacheHits++;
      block.requested = bytes;
      this.memory.onAlloc(bytes, 0);
    } else if (!pool.sealed && (block = this.take(pool.stream, size) ?? undefined)) {
      // a free block of the shared cache on the pool's stream joins the pool (no new device memory)
      this.counters.cacheHits++;
      block.pool = pool;
      block.requested = bytes;
      block.uses = null;
      pool.blocks++;
      pool.reservedBytes += size;
      this.memory.onAlloc(bytes, 0);
    } else {
      if (pool.sealed)
        throw new Error(
          `CUDA graph capture of ${pool.label}: a ${size}-byte block was requested that the eager warm-up run did not allocate ` +
            "(cudaMalloc is not allowed during capture); the captured function must allocate the same sizes in the same order on every call",
        );
      const ptr = this.mallocOrEmpty(bytes, size);
      block = { ptr, pool, size, requested: bytes, stream: pool.stream, uses: null };
      pool.blocks++;
      pool.reservedBytes += size;
      this.memory.onAlloc(bytes, size);
    }
    pool.liveBlocks++;
    this.live.set(block.ptr, block);
    return block.ptr;
  }

  /** cudaMalloc `size` bytes for a `bytes` request; when the device is full, empty the cache and try once more. */
  private mallocOrEmpty(bytes: number, size: number): number {
    let ptr = this.driver.malloc(size);
    if (ptr === null) {
      this.counters.oomRetries++;
      const released = this.cached;
      this.emptyCache();
      ptr = this.driver.malloc(size);
      if (ptr === null) throw this.outOfMemory(bytes, released);
    }
    this.counters.mallocs++;
    return ptr;
  }

  /** Return a block to its stream's bin (reusable there at once). */
  free(ptr: number): void {
    const block = this.live.get(ptr);
    if (!block) throw new Error(`CUDA allocator: free of ${ptr} which is not a live block (double free?)`);
    this.live.delete(ptr);
    if (block.uses) for (const s of block.uses) this.driver.streamWait(block.stream, s);
    block.uses = null;
    this.memory.onFree(block.requested, 0);
    const pool = block.pool;
    if (pool) pool.liveBlocks--;
    if (pool && !pool.released) {
      let bin = pool.bins.get(block.size);
      if (!bin) pool.bins.set(block.size, (bin = []));
      bin.push(block);
      return;
    }
    this.toBin(block, block.stream);
  }

  private toBin(block: Block, stream: number): void {
    block.pool = null;
    block.stream = stream;
    let bins = this.bins.get(stream);
    if (!bins) this.bins.set(stream, (bins = new Map()));
    let bin = bins.get(block.size);
    if (!bin) bins.set(block.size, (bin = []));
    bin.push(block);
    this.cached += block.size;
  }

  /** Note that a live block is used on `stream` too (its reuse then waits for that stream). */
  recordStream(ptr: number, stream: number): void {
    const block = this.live.get(ptr);
    if (!block || stream === block.stream) return;
    (block.uses ??= new Set()).add(stream);
  }

  /** cudaFree every cached block (live blocks stay). */
  emptyCache(): void {
    for (const bins of this.bins.values())
      for (const bin of bins.values())
        for (const b of bin) {
          this.driver.free(b.ptr);
          this.counters.frees++;
          this.memory.reserved -= b.size;
        }
    this.bins.clear();
    this.cached = 0;
  }

  private take(stream: number, size: number): Block | null {
    const bin = this.bins.get(stream)?.get(size);
    const b = bin?.pop();
    if (!b) return null;
    this.cached -= b.size;
    return b;
  }

  private takeOther(stream: number, size: number): Block | null {
    for (const [s, bins] of this.bins) {
      if (s === stream) continue;
      const b = bins.get(size)?.pop();
      if (!b) continue;
      this.cached -= b.size;
      this.driver.streamWait(stream, s); // the block's last uses on `s` finish before `stream` touches it
      return b;
    }
    return null;
  }

  private outOfMemory(bytes: number, released: number): OutOfMemoryError {
    let report = "";
    try {
      const [free, total] = this.driver.memInfo();
      report = `CUDA reports ${formatBytes(free)} free of ${formatBytes(total)}`;
      const err = new OutOfMemoryError("cuda", bytes, this.memory.live, total, advice(report, released));
      return err;
    } catch {
      return new OutOfMemoryError("cuda", bytes, this.memory.live, null, advice("cudaMemGetInfo failed", released));
    }
  }
}

function advice(report: string, released: number): string {
  return (
    `${report}` +
    (released > 0 ? ` after releasing ${formatBytes(released)} cached by the allocator` : "") +
    "; free tensors you no longer need (dispose / tidy), lower the batch size or resolution, use float16, " +
    "or enable model CPU offload, VAE tiling / slicing or token merging"
  );
}
