// Memory benchmark (JSON on stdout; with --out PREFIX also PREFIX.json and PREFIX.md):
// (1) Planned peak device memory per configuration — SD 1.5 at 512² and 1024², SDXL at 1024², float16, one image
//     with CFG: vanilla attention (scores materialised), memory-efficient attention, ToMe 0.5, model offload,
//     sequential offload with and without prefetch, VAE tiling, and the combinations the issue's targets name —
//     from the memory planner (src/pipelines/plan.ts: the pipeline's flow on "meta" with the real-size configs
//     shipped in assets/configs; no weights). Planned, not measured: with no GPU on this machine there is no step
//     time and no measured peak (the JSON says so).
// (2) diffusers' published ToMe benchmark grid (SD 1.5, float16, 512/768/1024 × batch 1–10; vanilla attention /
//     ToMe 0.5 / ToMe + memory-efficient attention), read from ../shared/reference/published-benchmarks.md: the
//     planner's need for every cell, and for each GPU the range of usable device memory for which "fits / OOM"
//     per cell reproduces the published pattern (or, when no capacity does, the best one and the cells it misses).
// Usage: bun scripts/bench/memory.ts [--out bench/results/memory-DATE] [--reference FILE] [--prefetch-mib 64]

import { existsSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { formatBytes } from "../../src/core/errors.ts";
import { MetaModels, type MemoryPlan, type PlanRequest, knownPlanModels, planMemory } from "../../src/pipelines/index.ts";
import { cliOption, round } from "./bench-util.ts";

const args = process.argv.slice(2);
const opt = (name: string) => cliOption(args, name);
const OUT = opt("--out");
const REFERENCE = path.resolve(opt("--reference") ?? path.join(import.meta.dir, "../../../shared/reference/published-benchmarks.md"));
const PREFETCH = Number(opt("--prefetch-mib") ?? 64) * 2 ** 20;
const GiB = 2 ** 30;

const models = new Map<string, MetaModels>();
function plan(arch: string, req: PlanRequest): MemoryPlan {
  let m = models.get(arch);
  if (!m) models.set(arch, (m = new MetaModels(knownPlanModels(arch, "float16"))));
  return planMemory(m, req);
}

// ---- (1) configurations -------------------------------------------------------------------------
const CONFIGS: [string, Partial<PlanRequest>][] = [
  ["vanilla attention", { attention: "naive" }],
  ["memory-efficient attention", {}],
  ["ToMe 0.5 (vanilla attention)", { attention: "naive", tome: { ratio: 0.5 } }],
  ["ToMe 0.5 + memory-efficient attention", { tome: { ratio: 0.5 } }],
  ["model offload", { offload: "model" }],
  ["sequential offload, no prefetch", { offload: "sequential" }],
  [`sequential offload, prefetch ${PREFETCH / 2 ** 20} MiB`, { offload: "sequential", prefetchBytes: PREFETCH }],
  ["VAE tiling", { vaeTiling: true }],
  [`sequential offload + prefetch + VAE tiling`, { offload: "sequential", prefetchBytes: PREFETCH, vaeTiling: true }],
];
const CASES: [string, string, number][] = [
  ["SD 1.5", "sd15", 512],
  ["SD 1.5", "sd15", 1024],
  ["SDXL", "sdxl", 1024],
];
const configurations = CASES.flatMap(([model, arch, size]) =>
  CONFIGS.map(([name, req]) => {
    const p = plan(arch, { width: size, height: size, batch: 1, ...req });
    return {
      model,
      size,
      configuration: name,
      planned_peak_bytes: p.peak,
      planned_peak_gib: round(p.peak / GiB, 3),
      peak_phase: p.peakPhase,
      phases: Object.fromEntries(p.phases.map((ph) => [ph.phase, { peak: ph.peak, weights: ph.weights, tensors: ph.tensors }])),
      plan_ms: round(p.planMs, 1),
      measured_peak_bytes: null,
      step_ms: null,
    };
  }),
);
const find = (model: string, size: number, c: string) => configurations.find((x) => x.model === model && x.size === size && x.configuration === c)!;
const targets = [
  { target: "SD 1.5 512², sequential offload + prefetch ≤ 1.0 GB", planned_gb: find("SD 1.5", 512, CONFIGS[6]![0]).planned_peak_bytes / 1e9, limit_gb: 1.0 },
  { target: "SDXL 1024² ≤ 4 GB (sequential offload + prefetch + VAE tiling)", planned_gb: find("SDXL", 1024, CONFIGS[8]![0]).planned_peak_bytes / 1e9, limit_gb: 4.0 },
].map((t) => ({ ...t, planned_gb: round(t.planned_gb, 3), met: t.planned_gb <= t.limit_gb }));
const anchors = [
  "diffusers' sequential CPU offload: under 2.8–3 GB for SD 1.5 (its tests / memory guide)",
  "stable-diffusion.cpp: ~1.9 GB at 512² with flash attention (f16)",
];

// ---- (2) the published ToMe grid ----------------------------------------------------------------
type Column = "vanilla" | "ToMe" | "ToMe + xFormers";
const COLUMNS: Column[] = ["vanilla", "ToMe", "ToMe + xFormers"];
const COLUMN_REQUEST: Record<Column, Partial<PlanRequest>> = {
  vanilla: { attention: "naive" },
  ToMe: { attention: "naive", tome: { ratio: 0.5 } },
  "ToMe + xFormers": { tome: { ratio: 0.5 } },
};
interface PublishedCell {
  gpu: string;
  size: number;
  batch: number;
  column: Column;
  oom: boolean;
}

/** The rows of the "diffusers' ToMe benchmark" table: GPU | resolution | batch | vanilla | ToMe | ToMe + xFormers. */
function readPublished(file: string): PublishedCell[] {
  if (!existsSync(file)) throw new Error(`${file} not found: pass --reference FILE (the published-benchmarks.md with diffusers' ToMe table)`);
  const lines = readFileSync(file, "utf8").split("\n");
  const start = lines.findIndex((l) => /^## diffusers' ToMe benchmark/.test(l));
  if (start < 0) throw new Error(`${file}: no "## diffusers' ToMe benchmark" section`);
  const cells: PublishedCell[] = [];
  for (const l of lines.slice(start + 1)) {
    if (/^## /.test(l)) break;
    const m = /^\|\s*(\w+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|(.*)\|\s*$/.exec(l);
    if (!m) continue;
    const values = m[4]!.split("|").map((s) => s.trim());
    values.forEach((v, i) => {
      if (v === "—" || v === "-" || v === "") return; // not measured
      cells.push({ gpu: m[1]!, size: Number(m[2]), batch: Number(m[3]), column: COLUMNS[i]!, oom: v === "OOM" });
    });
  }
  if (!cells.length) throw new Error(`${file}: the ToMe table has no rows`);
  return cells;
}

const published = readPublished(REFERENCE);
const needs = new Map<string, number>();
const key = (size: number, batch: number, c: Column) => `${size}|${batch}|${c}`;
for (const c of published) {
  const k = key(c.size, c.batch, c.column);
  if (!needs.has(k)) needs.set(k, plan("sd15", { width: c.size, height: c.size, batch: c.batch, ...COLUMN_REQUEST[c.column] }).peak);
}

/** Capacities (usable device bytes) for which the planner's fits/OOM matches every published cell of `gpu`. */
function reproduce(gpu: string) {
  const cells = published.filter((c) => c.gpu === gpu).map((c) => ({ ...c, need: needs.get(key(c.size, c.batch, c.column))! }));
  const lo = Math.max(0, ...cells.filter((c) => !c.oom).map((c) => c.need)); // every fitting cell fits
  const hi = Math.min(Infinity, ...cells.filter((c) => c.oom).map((c) => c.need)); // every OOM cell does not
  const mismatches = (cap: number) => cells.filter((c) => c.need <= cap === c.oom);
  // capacities between consecutive needs behave alike: evaluate one per region [need_i, need_i+1)
  const edges = [...new Set(cells.map((c) => c.need))].sort((a, b) => a - b);
  const counts = edges.map((e) => mismatches(e).length);
  const fewest = Math.min(mismatches(0).length, ...counts);
  const i = counts.indexOf(fewest);
  const from = i < 0 ? 0 : edges[i]!;
  let j = i;
  while (j + 1 < edges.length && counts[j + 1] === fewest) j++;
  const below = i < 0 ? edges[0]! : j + 1 < edges.length ? edges[j + 1]! : Infinity;
  const range = { from: round(from / GiB, 2), below: Number.isFinite(below) ? round(below / GiB, 2) : null };
  return {
    gpu,
    cells: cells.length,
    reproduced_by_usable_gib: lo < hi ? range : null,
    best_usable_gib: range,
    mismatched_cells: mismatches(from).map((c) => `${c.size}² batch ${c.batch} ${c.column}: published ${c.oom ? "OOM" : "fits"}, planned ${formatBytes(c.need)}`),
  };
}
const gpus = [...new Set(published.map((c) => c.gpu))];
const reproduction = gpus.map(reproduce);
const grid = [...new Set(published.map((c) => `${c.size}|${c.batch}`))].map((sb) => {
  const [size, batch] = sb.split("|").map(Number) as [number, number];
  const row: Record<string, unknown> = { size, batch };
  for (const col of COLUMNS) {
    const need = needs.get(key(size, batch, col));
    row[col] = need === undefined ? null : { planned_bytes: need, planned_gib: round(need / GiB, 2) };
    for (const g of gpus) {
      const c = published.find((x) => x.gpu === g && x.size === size && x.batch === batch && x.column === col);
      row[`${g} ${col}`] = c ? (c.oom ? "OOM" : "fits") : null;
    }
  }
  return row;
});

for (const m of models.values()) m.dispose();

const result = {
  benchmark: "memory",
  date: new Date().toISOString().slice(0, 10),
  machine: { cpu: os.cpus()[0]?.model ?? "unknown", cores: os.cpus().length, gpu: null, note: "no GPU: every figure is planned on the meta device; nothing is measured" },
  dtype: "float16",
  prefetch_bytes: PREFETCH,
  configurations,
  targets,
  anchors,
  tome_grid: { source: path.basename(REFERENCE), columns: { vanilla: "naive attention", ToMe: "ToMe 0.5, naive attention", "ToMe + xFormers": "ToMe 0.5, memory-efficient attention" }, rows: grid, reproduction },
};
console.log(JSON.stringify(result, null, 2));

if (OUT) {
  writeFileSync(`${OUT}.json`, `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(`${OUT}.md`, markdown());
}

function markdown(): string {
  const md: string[] = [
    `# Memory benchmark — ${result.date}`,
    "",
    `Machine: ${result.machine.cpu} (${result.machine.cores} cores), no GPU. Every figure is **planned** by \`bun-diffusion plan\`'s planner (the pipeline's flow on the meta device, real-size configs, float16, one image with CFG); none is measured. Produced by \`bun scripts/bench/memory.ts\`.`,
    "",
    "## Peak device memory per configuration (planned)",
    "",
    "| model | size | configuration | peak | while | text encoding | denoising | decoding |",
    "|---|---|---|---|---|---|---|---|",
    ...configurations.map(
      (c) =>
        `| ${c.model} | ${c.size}² | ${c.configuration} | ${formatBytes(c.planned_peak_bytes)} | ${c.peak_phase} | ${Object.values(c.phases)
          .map((p) => formatBytes(p.peak))
          .join(" | ")} |`,
    ),
    "",
    "Targets: " + targets.map((t) => `${t.target}: planned ${t.planned_gb} GB — ${t.met ? "met" : "NOT met"}`).join("; ") + ".",
    "",
    "Anchors: " + anchors.join("; ") + ".",
    "",
    "## diffusers' ToMe benchmark: planned need per cell beside the published fits / OOM",
    "",
    `| size | batch | ${COLUMNS.map((c) => `${c} (planned)`).join(" | ")} | ${gpus.flatMap((g) => COLUMNS.map((c) => `${g} ${c}`)).join(" | ")} |`,
    `|---|---|${COLUMNS.map(() => "---").join("|")}|${gpus.flatMap(() => COLUMNS.map(() => "---")).join("|")}|`,
    ...grid.map(
      (r) =>
        `| ${r.size} | ${r.batch} | ${COLUMNS.map((c) => (r[c] ? `${(r[c] as { planned_gib: number }).planned_gib} GiB` : "—")).join(" | ")} | ${gpus
          .flatMap((g) => COLUMNS.map((c) => (r[`${g} ${c}`] as string | null) ?? "—"))
          .join(" | ")} |`,
    ),
    "",
    ...reproduction.map((r) =>
      r.reproduced_by_usable_gib
        ? `- ${r.gpu}: every one of its ${r.cells} published cells is reproduced by a usable device memory from ${r.reproduced_by_usable_gib.from} GiB up to ${r.reproduced_by_usable_gib.below ?? "any size"}${r.reproduced_by_usable_gib.below ? " GiB (exclusive)" : ""}.`
        : `- ${r.gpu}: no single capacity reproduces all ${r.cells} cells; a usable device memory from ${r.best_usable_gib.from} GiB up to ${r.best_usable_gib.below ?? "any size"}${r.best_usable_gib.below ? " GiB (exclusive)" : ""} reproduces all but ${r.mismatched_cells.length}: ${r.mismatched_cells.join("; ")}.`,
    ),
    "",
    "Usable memory is what the framework's tensors may take: the card's size less the CUDA context, the allocator's cache and fragmentation (PyTorch 1.13 in the published runs).",
    "",
  ];
  return md.join("\n");
}
