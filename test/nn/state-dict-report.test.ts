// LoadStateDictError on a checkpoint that does not belong to the config: the message lists the first
// 20 problems with each category's count and says where the rest are; `.report` keeps every key; a
// small mismatch is listed in full; nothing is loaded and no memory is left behind.

import { describe, expect, test } from "bun:test";
import { Linear } from "../../src/nn/layers.ts";
import { LOAD_ERROR_LIST_LIMIT, LoadStateDictError } from "../../src/nn/state-dict.ts";
import { ModuleList } from "../../src/nn/module.ts";
import { type Tensor, memoryStats, zeros } from "../../src/tensor/index.ts";

function errorOf(f: () => unknown): LoadStateDictError {
  try {
    f();
  } catch (e) {
    if (e instanceof LoadStateDictError) return e;
    throw e;
  }
  throw new Error("expected a LoadStateDictError");
}

describe("LoadStateDictError", () => {
  test("138 problems: the first 20 are listed with the counts, every one is on .report", () => {
    const live0 = memoryStats("cpu").live;
    const m = new ModuleList(Array.from({ length: 40 }, () => new Linear(2, 3))); // keys "0.weight", "0.bias", …
    // a checkpoint of another layout: 40 layers under "layers.N" (80 unexpected, 80 missing) minus a few
    const src = new Map<string, Tensor>();
    for (let i = 0; i < 29; i++) {
      src.set(`layers.${i}.weight`, zeros([3, 2]));
      src.set(`layers.${i}.bias`, zeros([3]));
    }
    src.set("0.weight", zeros([3, 5])); // one mis-shaped key; "0.bias" missing
    const e = errorOf(() => m.loadStateDict(src));
    const { missing, unexpected, mismatched } = e.report;
    expect([missing.length, unexpected.length, mismatched.length]).toEqual([79, 58, 1]);
    const lines = e.message.split("\n");
    expect(lines[0]).toContain("(138 problems; the first 20 are listed, every one is on error.report)");
    expect(lines[1]).toStartWith("  missing keys (79): 0.bias, 1.weight, 1.bias,");
    expect(lines[1]).toEndWith("… 59 more");
    expect(lines[2]).toBe("  unexpected keys (58): … 58 more");
    expect(lines[3]).toBe("  mis-shaped keys (1): … 1 more");
    expect(lines[4]).toContain("config (config.json) is not the one of this checkpoint");
    expect(lines.length).toBe(5);
    // exactly LOAD_ERROR_LIST_LIMIT keys are named
    const named = lines[1]!.slice(lines[1]!.indexOf(": ") + 2).split(", ").filter((k) => !k.startsWith("…"));
    expect(named.length).toBe(LOAD_ERROR_LIST_LIMIT);
    expect(named).toEqual(missing.slice(0, 20));
    for (const t of src.values()) t.dispose();
    m.dispose();
    expect(memoryStats("cpu").live).toBe(live0);
  });

  test("a few problems are listed in full, with no advice about configs", () => {
    const m = new Linear(2, 3);
    const src = new Map<string, Tensor>([["weight", zeros([3, 4])], ["extra", zeros([1])]]);
    const e = errorOf(() => m.loadStateDict(src));
    expect(e.message).toBe(
      `${e.where}: the checkpoint does not match the module (3 problems)\n` +
        "  missing keys (1): bias\n  unexpected keys (1): extra\n  mis-shaped keys (1): weight expected [3, 2] got [3, 4]",
    );
    for (const t of src.values()) t.dispose();
    m.dispose();
  });
});
