// The import graph of the project's source folders (src/, ffi/, scripts/): every relative import,
// re-export and literal dynamic import of every .ts file, type-only imports included (a type cycle is
// still a cycle of concepts). Used by imports.test.ts; also runnable (`bun test/architecture/import-graph.ts`)
// to print the edges that break the rules.

import { readFileSync, readdirSync, statSync } from "node:fs";
import path from "node:path";

export interface ImportEdge {
  from: string; // project-relative path, e.g. "src/nn/module.ts"
  to: string;
  line: number;
}

const IMPORT_RE = /(?:^|[\s;}])(?:import|export)\s+(?:type\s+)?(?:[\w*{}\s,$]+?\s+from\s+)?["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g;

/** Every .ts file under `dirs` (project-relative), skipping node_modules and build outputs. */
export function sourceFiles(root: string, dirs: readonly string[]): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    const abs = path.join(root, rel);
    for (const name of readdirSync(abs)) {
      if (name === "node_modules" || name.startsWith(".")) continue;
      const r = path.join(rel, name);
      if (statSync(path.join(root, r)).isDirectory()) walk(r);
      else if (name.endsWith(".ts")) out.push(r.split(path.sep).join("/"));
    }
  };
  for (const d of dirs) walk(d);
  return out.sort();
}

/** Strip comments (keeping line breaks) so that imports quoted in comments are not edges. */
function stripComments(src: string): string {
  return src.replace(/\/\*[\s\S]*?\*\//g, (m) => m.replace(/[^\n]/g, " ")).replace(/(^|[^:"'`\\])\/\/.*$/gm, "$1");
}

/** The relative imports of `files`, resolved to project-relative paths. */
export function importEdges(root: string, files: readonly string[]): ImportEdge[] {
  const edges: ImportEdge[] = [];
  for (const from of files) {
    const src = stripComments(readFileSync(path.join(root, from), "utf8"));
    for (const m of src.matchAll(IMPORT_RE)) {
      const spec = m[1] ?? m[2]!;
      if (!spec.startsWith(".")) continue; // packages, node:, bun:
      const to = path.posix.normalize(path.posix.join(path.posix.dirname(from), spec));
      const start = m.index + (m[0].length - m[0].replace(/^[\s;}]+/, "").length); // the keyword, not the separator before it
      const line = src.slice(0, start).split("\n").length;
      edges.push({ from, to, line });
    }
  }
  return edges;
}

/** Strongly connected components with more than one file (or a self-import): the import cycles. */
export function cycles(edges: readonly ImportEdge[]): string[][] {
  const adj = new Map<string, string[]>();
  for (const e of edges) {
    if (!adj.has(e.from)) adj.set(e.from, []);
    adj.get(e.from)!.push(e.to);
  }
  // Tarjan's algorithm
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of adj.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || (adj.get(v) ?? []).includes(v)) out.push(comp.sort());
    }
  };
  for (const v of adj.keys()) if (!idx.has(v)) visit(v);
  return out;
}

/** The layers, bottom first: a file may import its own layer and the ones below, never above. */
const LAYER_NAMES = [
  "ffi",
  "src/core",
  "src/backends",
  "src/tensor",
  "src/io",
  "src/tokenizer",
  "src/nn",
  "src/models",
  "src/tome",
  "src/speed",
  "src/schedulers",
  "src/offload",
  "src/pipelines",
  "src/cli",
  "src/index.ts",
  "scripts",
];
export const LAYERS: readonly { name: string; match: (file: string) => boolean }[] = LAYER_NAMES.map((name) => ({
  name,
  match: name.endsWith(".ts") ? (f: string) => f === name : (f: string) => f.startsWith(`${name}/`),
}));

/** Layers that compute through tensor ops only: they may not reach a backend directly. */
const TENSOR_OPS_ONLY = ["src/io", "src/tokenizer", "src/nn", "src/models", "src/tome", "src/speed", "src/schedulers", "src/offload"];

/** The layer index of a project file, or -1 for files outside every layer (package.json, ...). */
export function layerOf(file: string): number {
  return LAYERS.findIndex((l) => l.match(file));
}

/** "src/backends/cpu/gemm.ts" -> "src/backends/cpu/" (null for files not inside one backend). */
function backendFolder(file: string): string | null {
  const m = /^src\/backends\/([^/]+)\//.exec(file);
  return m ? `src/backends/${m[1]}/` : null;
}

/** Every rule an edge breaks, as messages naming the file, line and target. */
export function layerViolations(edges: readonly ImportEdge[], exists: (file: string) => boolean): string[] {
  const out: string[] = [];
  for (const e of edges) {
    const where = `${e.from}:${e.line} imports ${e.to}`;
    if (e.to.endsWith(".ts") && !exists(e.to)) {
      out.push(`${where}, which does not exist`);
      continue;
    }
    const a = layerOf(e.from);
    const b = layerOf(e.to);
    if (a < 0) out.push(`${e.from} belongs to no layer: add its folder to LAYERS`);
    if (b < 0) {
      if (e.to.endsWith(".ts")) out.push(`${where}: the target belongs to no layer`);
      continue; // data files beside the sources (package.json)
    }
    if (b > a) out.push(`${where}: ${LAYERS[a]!.name} may not import the higher layer ${LAYERS[b]!.name}`);
    if (TENSOR_OPS_ONLY.includes(LAYERS[a]!.name) && LAYERS[b]!.name === "src/backends")
      out.push(`${where}: ${LAYERS[a]!.name} computes through tensor ops only, never a backend directly`);
    const target = backendFolder(e.to);
    if (target && !e.from.startsWith(target) && e.to !== `${target}index.ts`)
      out.push(`${where}: outside ${target} import its index.ts, not the backend's internals`);
  }
  return out;
}
