// Layering of src/schedulers, read from the source text: no import cycles; a concrete scheduler
// file (one that exports a class of SCHEDULER_CLASSES) imports only shared base/helper files,
// never another concrete scheduler — only the registry (index.ts) imports them all; nothing but
// ../core and ../tensor from outside the folder; no scheduler file defines its own float32
// helpers (src/core/float32.ts holds them); shared pieces defined once.

import { describe, expect, test } from "bun:test";
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import * as float32 from "../../src/core/float32.ts";
import { SCHEDULER_CLASSES } from "../../src/schedulers/index.ts";
import { projectRoot } from "../helpers/paths.ts";

const dir = path.join(projectRoot, "src/schedulers");
const files = readdirSync(dir).filter((f) => f.endsWith(".ts")).sort();
const source = new Map(files.map((f) => [f, readFileSync(path.join(dir, f), "utf8")]));

/** Every module specifier a file imports or re-exports (type-only ones included). */
function specifiers(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/^\s*(?:import|export)\b[^;]*?\bfrom\s*"([^"]+)"/gms)) out.push(m[1]!);
  for (const m of text.matchAll(/^\s*import\s*"([^"]+)"/gm)) out.push(m[1]!);
  return out;
}

/** The files of this folder a file depends on. */
const localDeps = new Map(
  files.map((f) => [f, specifiers(source.get(f)!).filter((s) => s.startsWith("./")).map((s) => s.slice(2))] as const),
);

/** The file exporting each scheduler class. */
const concreteOf = new Map<string, string>();
for (const [f, text] of source)
  for (const m of text.matchAll(/^export class (\w+)/gm)) if (SCHEDULER_CLASSES.includes(m[1]!)) concreteOf.set(m[1]!, f);
const concrete = new Set(concreteOf.values());
const REGISTRIES = new Set(["index.ts"]);

describe("src/schedulers layering", () => {
  test("every scheduler class is found in its own file", () => {
    expect([...concreteOf.keys()].sort()).toEqual([...SCHEDULER_CLASSES].sort());
    expect(concrete.size).toBe(SCHEDULER_CLASSES.length);
  });

  test("every local import resolves to a file of the folder", () => {
    for (const [f, deps] of localDeps) for (const d of deps) expect(`${f} → ${d}: ${source.has(d)}`).toBe(`${f} → ${d}: true`);
  });

  test("no import cycles", () => {
    const state = new Map<string, "active" | "done">();
    const cycles: string[] = [];
    const visit = (f: string, stack: string[]) => {
      if (state.get(f) === "done") return;
      if (state.get(f) === "active") {
        cycles.push([...stack.slice(stack.indexOf(f)), f].join(" → "));
        return;
      }
      state.set(f, "active");
      for (const d of localDeps.get(f) ?? []) visit(d, [...stack, f]);
      state.set(f, "done");
    };
    for (const f of files) visit(f, []);
    expect(cycles).toEqual([]);
  });

  test("only the registry imports concrete scheduler files", () => {
    const offending = files.flatMap((f) =>
      REGISTRIES.has(f) ? [] : localDeps.get(f)!.filter((d) => concrete.has(d)).map((d) => `${f} imports ${d}`),
    );
    expect(offending).toEqual([]);
    // The registry really does import them all (so the rule above is about something).
    for (const f of concrete) expect(localDeps.get("index.ts")).toContain(f);
  });

  test("from outside the folder only ../core and ../tensor", () => {
    const outside = files.flatMap((f) =>
      specifiers(source.get(f)!)
        .filter((s) => !s.startsWith("./") && !s.startsWith("../core/") && !s.startsWith("../tensor/"))
        .map((s) => `${f} imports ${s}`),
    );
    expect(outside).toEqual([]);
  });

  test("no scheduler file defines float32 helpers of its own (src/core/float32.ts has them)", () => {
    const names = Object.keys(float32);
    expect(names).toContain("roundHalfEven");
    const defs = new RegExp(`\\b(?:function|const|let|var)\\s+(${names.join("|")}|rint\\w*|round\\w*Even\\w*)\\b`);
    const offending = files.flatMap((f) =>
      source
        .get(f)!
        .split("\n")
        .flatMap((line, i) => (defs.test(line) || /Math\.fround/.test(line) ? [`${f}:${i + 1}: ${line.trim()}`] : [])),
    );
    expect(offending).toEqual([]);
  });

  test("shared pieces are defined once", () => {
    // Method bodies (a `{` after the signature), not the Scheduler interface's declarations.
    const definitions = (re: RegExp) => files.filter((f) => re.test(source.get(f)!));
    expect(definitions(/\bfunction convertModelOutput\b|\bconvertModelOutput\s*\(.*\)\s*:\s*Tensor\s*\{/)).toEqual(["multistep-output.ts"]);
    expect(definitions(/\bfunction alphaSigma\b/)).toEqual(["multistep-output.ts"]);
    expect(definitions(/\bget initNoiseSigma\b/)).toEqual(["sigma-scheduler.ts"]);
    expect(definitions(/^\s*noiseIndices\s*\(/m)).toEqual(["scheduler.ts"]);
    // the step-count check (LCM adds only its own original_inference_steps limits)
    expect(definitions(/numInferenceSteps=\$\{\w+\} must be/)).toEqual(["scheduler.ts"]);
    expect(definitions(/Number\.isInteger\(numInferenceSteps\)/)).toEqual([]);
    expect(definitions(/^\s*scaleModelInput\s*\([^)]*\)\s*:\s*Tensor\s*\{/m)).toEqual(["alpha-scheduler.ts", "multistep-scheduler.ts", "sigma-scheduler.ts"]);
    expect(definitions(/^\s*addNoise\s*\([^)]*\)\s*:\s*Tensor\s*\{/m)).toEqual(["alpha-scheduler.ts", "multistep-scheduler.ts", "sigma-scheduler.ts"]);
  });
});
