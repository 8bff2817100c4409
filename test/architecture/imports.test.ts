// The layering of docs/architecture.md, kept true: walks the import graph of src/, ffi/ and scripts/
// and fails on any import that points up the layer order, reaches a backend from a layer that
// computes through tensor ops only, skips into a backend's internals, or closes a cycle (type-only
// imports count). The checker itself is tested on a small synthetic tree with each kind of fault.

import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { LAYERS, cycles, importEdges, layerOf, layerViolations, sourceFiles } from "./import-graph.ts";
import { projectRoot } from "../helpers/paths.ts";

const DIRS = ["src", "ffi", "scripts"];

describe("the checker finds each kind of fault", () => {
  const root = mkdtempSync(path.join(tmpdir(), "bd-imports-"));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  const write = (file: string, text: string) => {
    mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
    writeFileSync(path.join(root, file), text);
  };
  write("src/core/a.ts", `// import { x } from "../tensor/t.ts"; (a comment, not an edge)\nexport const a = 1;\n`);
  write("src/tensor/t.ts", `import {\n  a,\n} from "../core/a.ts";\nimport type { N } from "../nn/n.ts";\nexport const t = a;\n`); // up: tensor -> nn
  write("src/nn/n.ts", `export type N = number;\nimport { cpu } from "../backends/cpu/gemm.ts";\n`); // nn -> backend internals
  write("src/backends/cpu/gemm.ts", `export const cpu = 1;\n`);
  write("src/backends/cpu/index.ts", `export { cpu } from "./gemm.ts";\n`);
  write("src/io/x.ts", `import { y } from "./y.ts";\nexport const x = 1;\n`);
  write("src/io/y.ts", `export { x as y } from "./x.ts";\nconst later = () => import("./missing.ts");\n`);
  write("ffi/f.ts", `import { a } from "../src/core/a.ts";\n`);
  const files = sourceFiles(root, ["src", "ffi"]);
  const edges = importEdges(root, files);
  const problems = layerViolations(edges, (f) => existsSync(path.join(root, f)));

  test("edges: multi-line, type-only, re-exports and dynamic imports; none from comments", () => {
    expect(edges.map((e) => `${e.from}->${e.to}`).sort()).toEqual(
      [
        "ffi/f.ts->src/core/a.ts",
        "src/backends/cpu/index.ts->src/backends/cpu/gemm.ts",
        "src/io/x.ts->src/io/y.ts",
        "src/io/y.ts->src/io/missing.ts",
        "src/io/y.ts->src/io/x.ts",
        "src/nn/n.ts->src/backends/cpu/gemm.ts",
        "src/tensor/t.ts->src/core/a.ts",
        "src/tensor/t.ts->src/nn/n.ts",
      ].sort(),
    );
  });

  test("faults: up-pointing, backend from a tensor-ops layer, backend internals, missing target, cycle", () => {
    const has = (re: RegExp) => expect(problems.some((p) => re.test(p))).toBe(true);
    has(/^src\/tensor\/t\.ts:4 imports src\/nn\/n\.ts: src\/tensor may not import the higher layer src\/nn/);
    has(/^ffi\/f\.ts:1 imports src\/core\/a\.ts: ffi may not import the higher layer src\/core/);
    has(/^src\/nn\/n\.ts:2 .*computes through tensor ops only/);
    has(/^src\/nn\/n\.ts:2 .*import its index\.ts, not the backend's internals/);
    has(/src\/io\/missing\.ts, which does not exist/);
    expect(problems.length).toBe(5);
    expect(cycles(edges)).toEqual([["src/io/x.ts", "src/io/y.ts"]]);
  });
});

describe("the project's import graph", () => {
  const files = sourceFiles(projectRoot, DIRS);
  const edges = importEdges(projectRoot, files);

  test("every source file belongs to a layer", () => {
    expect(files.length).toBeGreaterThan(50);
    expect(files.filter((f) => layerOf(f) < 0)).toEqual([]);
    // every layer holds files (a renamed folder must be renamed here too)
    for (const l of LAYERS) expect(files.some(l.match)).toBe(true);
  });

  test("no import points up the layers, reaches a backend from nn/models/io/tokenizer/schedulers, or skips into a backend's internals", () => {
    expect(edges.length).toBeGreaterThan(files.length);
    expect(layerViolations(edges, (f) => existsSync(path.join(projectRoot, f)))).toEqual([]);
  });

  test("no import cycles", () => {
    expect(cycles(edges)).toEqual([]);
  });
});
