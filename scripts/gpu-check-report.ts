// The report of scripts/gpu-check.sh: reads the steps it recorded (one JSON object per line: name, status ok |
// failed | timeout | skipped, rc, seconds, limit, log, note) and each step's logs, and writes PREFIX.json (every
// step with its stdout parsed as JSON when it is JSON — the benchmarks print one object — and the last lines of
// its output otherwise) and PREFIX.md (one table row per step, then the benchmarks' JSON and the tails of what
// failed). Both files are written to temporary names and renamed, so a failed report leaves no half-written file.
// Usage: bun scripts/gpu-check-report.ts --steps FILE --work DIR --device NAME --dry-run 0|1 --seconds N
//        --budget N --out PREFIX

import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

interface StepRecord {
  name: string;
  status: "ok" | "failed" | "timeout" | "skipped";
  rc: number | null;
  seconds: number;
  limit: number;
  log: string;
  note: string;
}

const TAIL_LINES = 40;

function argsOf(argv: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i]!;
    if (!k.startsWith("--") || argv[i + 1] === undefined) throw new Error(`gpu-check-report: expected --name value pairs, got ${JSON.stringify(argv.slice(i))}`);
    out[k.slice(2)] = argv[i + 1]!;
  }
  for (const need of ["steps", "work", "device", "dry-run", "seconds", "budget", "out"])
    if (out[need] === undefined) throw new Error(`gpu-check-report: --${need} is required`);
  return out;
}

function readText(file: string): string {
  return existsSync(file) ? readFileSync(file, "utf8") : "";
}

function tail(text: string, n: number): string {
  const lines = text.trimEnd().split("\n");
  return lines.slice(Math.max(0, lines.length - n)).join("\n");
}

/** The step's stdout as JSON when it is one JSON value, else null. */
function parsedJson(text: string): unknown {
  const t = text.trim();
  if (!t.startsWith("{") && !t.startsWith("[")) return null;
  try {
    return JSON.parse(t);
  } catch {
    return null;
  }
}

export function buildReport(records: StepRecord[], work: string, meta: { device: string; dryRun: boolean; seconds: number; budget: number }) {
  const steps = records.map((r) => {
    const stdout = r.log ? readText(path.join(work, `${r.log}.out`)) : "";
    const stderr = r.log ? readText(path.join(work, `${r.log}.err`)) : "";
    const json = parsedJson(stdout);
    return { ...r, json, outputTail: json === null ? tail(`${stdout}${stderr ? `\n${stderr}` : ""}`, TAIL_LINES) : tail(stderr, TAIL_LINES) };
  });
  const count = (s: StepRecord["status"]) => steps.filter((x) => x.status === s).length;
  return {
    device: meta.device,
    dryRun: meta.dryRun,
    date: new Date().toISOString(),
    host: { cpu: os.cpus()[0]?.model ?? "unknown", cores: os.cpus().length, memoryBytes: os.totalmem(), bun: Bun.version },
    seconds: meta.seconds,
    budgetSeconds: meta.budget,
    summary: { ok: count("ok"), failed: count("failed"), timeout: count("timeout"), skipped: count("skipped") },
    steps,
  };
}

export function reportMarkdown(r: ReturnType<typeof buildReport>): string {
  const lines = [
    `# GPU check — ${r.device}${r.dryRun ? " (dry run: GPU steps skipped)" : ""} — ${r.date.slice(0, 10)}`,
    "",
    `Host: ${r.host.cpu}, ${r.host.cores} cores, ${(r.host.memoryBytes / 2 ** 30).toFixed(0)} GiB; Bun ${r.host.bun}. ` +
      `Produced by \`bash scripts/gpu-check.sh${r.dryRun ? " --dry-run" : ""}\` in ${r.seconds} s (budget ${r.budgetSeconds} s).`,
    "",
    `Steps: ${r.summary.ok} ok, ${r.summary.failed} failed, ${r.summary.timeout} out of time, ${r.summary.skipped} skipped.`,
    "",
    "| step | status | seconds | limit | note |",
    "|---|---|---|---|---|",
    ...r.steps.map((s) => `| ${s.name} | ${s.status}${s.rc !== null && s.rc !== 0 ? ` (rc ${s.rc})` : ""} | ${s.seconds} | ${s.limit} | ${s.note.replaceAll("|", "\\|")} |`),
  ];
  for (const s of r.steps) {
    if (s.json !== null) lines.push("", `## ${s.name}`, "", "```json", JSON.stringify(s.json, null, 2), "```");
    else if (s.status === "failed" || s.status === "timeout" || s.name === "info")
      lines.push("", `## ${s.name} (last ${TAIL_LINES} lines)`, "", "```", s.outputTail, "```");
  }
  return `${lines.join("\n")}\n`;
}

function writeAtomically(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

if (import.meta.main) {
  const a = argsOf(process.argv.slice(2));
  const records = readText(a.steps!)
    .split("\n")
    .filter((l) => l.trim())
    .map((l, i) => {
      try {
        return JSON.parse(l) as StepRecord;
      } catch {
        throw new Error(`gpu-check-report: line ${i + 1} of ${a.steps} is not JSON: ${l.slice(0, 120)}`);
      }
    });
  const report = buildReport(records, a.work!, { device: a.device!, dryRun: a["dry-run"] === "1", seconds: Number(a.seconds), budget: Number(a.budget) });
  writeAtomically(`${a.out}.json`, `${JSON.stringify(report, null, 2)}\n`);
  writeAtomically(`${a.out}.md`, reportMarkdown(report));
}
