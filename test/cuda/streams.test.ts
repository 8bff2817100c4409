// The emulated device's streams (kernels/emu/cudart_streams.cpp, ARCHITECTURE.md decision 17), seen from outside
// through test/cuda/streams-probe.ts in child processes (the mode, BD_EMU_STREAMS, is read once per process):
//   - async (the default) and seeded:<N>: one stream runs in order; two streams are ordered only by events, stream
//     waits, the legacy default stream's rules and synchronisations — a missing wait reads stale data, a held
//     stream (bdemu_stream_hold) makes every synchronisation that depends on it cudaErrorNotReady;
//   - seeded:<N>: the interleaving of unordered streams is a function of N (same seed, same order; seeds differ);
//   - sync: work runs inside its call (holding is refused);
//   - the CUDA backend's images (plain, model offload, sequential offload with prefetch: compute and copy streams)
//     are bit-identical under every mode, so its events and waits order everything it relies on.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { PROJECT_ROOT } from "../../ffi/cuda/discover.ts";
import { makeTinyModel } from "../../scripts/make-tiny-model.ts";
import { emulatedCuda, HAS_GXX } from "./setup.ts";

const NOT_READY = 600; // cudaErrorNotReady
const NOT_SUPPORTED = 801; // cudaErrorNotSupported

function probe(mode: string, ...args: string[]): Record<string, any> {
  const env = { ...process.env, BD_EMU_STREAMS: mode, BD_CUDA_EMULATE: "1" };
  const r = Bun.spawnSync(["bun", path.join(PROJECT_ROOT, "test/cuda/streams-probe.ts"), ...args], { cwd: PROJECT_ROOT, env, stdout: "pipe", stderr: "pipe" });
  const out = r.stdout.toString(), err = r.stderr.toString();
  if (r.exitCode !== 0 || err.includes("live CUDA bytes")) throw new Error(`streams-probe ${args.join(" ")} under BD_EMU_STREAMS=${mode} (exit ${r.exitCode}):\n${out}\n${err}`);
  return JSON.parse(out.trim().split("\n").at(-1)!);
}

describe.skipIf(!HAS_GXX)("emulated streams", () => {
  beforeAll(() => emulatedCuda()); // builds the emulated device (cached)

  for (const mode of ["async", "seeded:1", "seeded:29"])
    test(`${mode}: in order within a stream; ordered across streams only by events, waits and the legacy stream`, () => {
      const r = probe(mode, "ordering");
      expect(r.mode).toBe(mode.split(":")[0]);
      expect(r.inOrder).toEqual({ status: 0, x: 1, y: 7 }); // memset 7, copy, memset 1: the copy saw the 7
      expect(r.holdStatus).toBe(0);
      // no event: B's copy ran while A (held) had not memset x, so it read the old 0; A runs once released
      expect(r.missingWait).toEqual({ syncB: 0, y: 0, xWhileHeld: 0, syncA: 0, x: 1 });
      // an event from A: B cannot finish while A is held (every query and synchronisation says not ready)
      expect(r.eventWait).toEqual({ held: { queryB: NOT_READY, queryEvent: NOT_READY, syncB: NOT_READY, syncEvent: NOT_READY, y: 0 }, syncB: 0, y: 2, queryEvent: 0 });
      expect(r.neverRecorded).toEqual({ syncB: 0, y: 0, syncA: 0 }); // an unrecorded event orders nothing
      // the wait is for the record as of the call; re-recording the event elsewhere does not release B
      expect(r.waitAsOfCall).toEqual({ heldSyncB: NOT_READY, syncB: 0, y: 3 });
      expect(r.legacy).toEqual({
        blocking: { heldSync: NOT_READY, sync: 0, y: 4 }, // legacy work waits for a blocking stream
        nonBlocking: { sync: 0, y: 0 }, // but not for a non-blocking one
        blockingWaitsForLegacy: { heldSync: NOT_READY, sync: 0, y: 6 },
      });
      expect(r.device).toEqual({ heldSync: NOT_READY, sync: 0, x: 8 });
      expect(r.destroyed).toEqual({ status: 0, sync: 0, x: 10 }); // queued work outlives its stream
      expect(r.elapsed.status).toBe(0);
      expect(r.elapsed.ms).toBeGreaterThanOrEqual(0);
    });

  test("sync: work has run when its call returns; holding a stream is refused", () => {
    const r = probe("sync", "ordering");
    expect(r).toEqual({ mode: "sync", inOrder: { status: 0, x: 1, y: 7 }, holdStatus: NOT_SUPPORTED, immediate: 12 });
  });

  test("seeded: the interleaving of unordered streams is reproduced by its seed and differs between seeds", () => {
    const n = 64; // 64 unordered pairs: each draw picks one of the ready queues, so the seeds' orders show in the bytes
    const a = probe("seeded:1", "race", String(n)).last as string;
    expect(a).toMatch(new RegExp(`^[12]{${n}}$`));
    expect(probe("seeded:1", "race", String(n)).last).toBe(a);
    const others = [2, 3, 4].map((s) => probe(`seeded:${s}`, "race", String(n)).last as string);
    for (const o of others) expect(o).toMatch(new RegExp(`^[12]{${n}}$`));
    expect(others.some((o) => o !== a)).toBe(true);
    expect(new Set([a, ...others]).size).toBeGreaterThan(1);
  });

  describe("the CUDA backend under every mode", () => {
    let dir = "";
    beforeAll(async () => {
      dir = mkdtempSync(path.join(tmpdir(), "bd-streams-"));
      await makeTinyModel(path.join(dir, "sd15"), { preset: "sd15", seed: 5 });
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    test("images are bit-identical: plain, model offload and prefetching sequential offload (compute + copy streams)", () => {
      const runs = ["async", "sync", "seeded:1", "seeded:8"].map((m) => probe(m, "pipeline", path.join(dir, "sd15")));
      const ref = runs[0]!;
      // offload moves weights only (the default fused QKV steps aside for it, so "plain" may differ in GEMM order)
      expect(ref.sequentialOffload).toBe(ref.modelOffload);
      expect(ref.features[0]).toContain("modelCpuOffload");
      expect(ref.features[1]).toContain("sequentialCpuOffload");
      const pick = (r: Record<string, any>) => ({ plain: r.plain, modelOffload: r.modelOffload, sequentialOffload: r.sequentialOffload });
      for (const r of runs.slice(1)) expect(pick(r)).toEqual(pick(ref));
    });
  });
});
