// Golden coverage: every entry of the golden folder's index.json (BD_GOLDEN_DIR or the public set) is
// driven by a registered test file that compares its values (test/golden/registry.ts), or is pending
// with the issue it waits for — pending entries are listed here as todos, never as passes. Also checks
// the registry itself: its files exist and obtain their entries the way they declare.

import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { goldenIndex } from "../helpers/golden.ts";
import { projectRoot } from "../helpers/paths.ts";
import { GOLDEN_DRIVERS, REGISTRY_MARKER, pendingGolden, pendingReason } from "./registry.ts";

const index = goldenIndex();
// primary coverage: value checks that run on every machine (the CUDA file is an extra on top)
const valueDrivers = GOLDEN_DRIVERS.filter((d) => d.checks === "values" && d.device === undefined);

describe("golden coverage", () => {
  test("index.json lists entries", () => {
    expect(index.length).toBeGreaterThan(0);
  });

  test("every index.json entry is driven by a value-checking test file or pending with a reason", () => {
    const uncovered = index.filter((e) => !valueDrivers.some((d) => d.match(e)) && pendingReason(e) === null).map((e) => `${e.file} (${e.meta.component ?? "?"})`);
    expect(uncovered).toEqual([]);
  });

  test("no entry is both pending and driven (remove it from PENDING_GOLDEN once a driver checks it)", () => {
    const both = index.filter((e) => pendingReason(e) !== null && valueDrivers.some((d) => d.match(e))).map((e) => e.file);
    expect(both).toEqual([]);
  });

  test("the format driver reads every entry", () => {
    for (const d of GOLDEN_DRIVERS.filter((x) => x.checks === "format")) expect(index.filter((e) => !d.match(e)).map((e) => e.file), d.file).toEqual([]);
  });

  for (const d of GOLDEN_DRIVERS)
    test(`${d.file} exists and obtains its entries as declared (${d.selects})`, () => {
      const file = path.join(projectRoot, d.file);
      expect(existsSync(file), d.file).toBe(true);
      const marker = d.marker ?? REGISTRY_MARKER;
      expect(readFileSync(file, "utf8").includes(marker), `${d.file} should contain ${marker}`).toBe(true);
    });
});

describe("pending golden entries", () => {
  const pending = index.filter((e) => pendingReason(e) !== null);
  for (const e of pending) pendingGolden(`${e.file} (${e.meta.component ?? "?"})`, pendingReason(e)!);
});
