// scripts/gpu-check.sh --dry-run (everything but the GPU steps) on this machine: with a bundle in gpu-bundle.sh's
// layout (the bundled "bun" is a wrapper around this one, so the test needs no 100 MB compression) the checksums
// are verified, Bun is unpacked and used, `info` runs, every GPU step is listed as skipped, and the report is
// written as JSON and markdown; a corrupt or truncated bundle file stops the check with a message naming the file
// and the fix, before any report is written. The report writer is also checked on its own.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { buildReport, reportMarkdown } from "../../scripts/gpu-check-report.ts";

const root = path.resolve(import.meta.dir, "../..");
let tmp = "";

function xz(input: Buffer): Buffer {
  const r = Bun.spawnSync(["xz", "-c", "-0"], { stdin: input });
  if (r.exitCode !== 0) throw new Error(`xz failed: ${r.stderr.toString()}`);
  return Buffer.from(r.stdout);
}

/** A bundle as gpu-bundle.sh lays it out: files, then MANIFEST lines "sha256 bytes name" and # comments. */
function makeBundle(dir: string): void {
  mkdirSync(dir, { recursive: true });
  const files: Record<string, Buffer> = {
    "bun.xz": xz(Buffer.from(`#!/bin/sh\nexec ${JSON.stringify(process.execPath)} "$@"\n`)),
    "node_modules.tar.xz": xz(Buffer.alloc(10240)), // an empty tar archive (unpacked only where node_modules is missing)
  };
  const lines: string[] = [];
  for (const [name, bytes] of Object.entries(files)) {
    writeFileSync(path.join(dir, name), bytes);
    lines.push(`${createHash("sha256").update(bytes).digest("hex")} ${bytes.length} ${name}`);
  }
  lines.push(`# bun ${Bun.version} (test wrapper)`, "# created by test/cli/gpu-check.test.ts");
  writeFileSync(path.join(dir, "MANIFEST"), `${lines.join("\n")}\n`);
}

function check(args: string[]) {
  const r = Bun.spawnSync(["bash", path.join(root, "scripts/gpu-check.sh"), "--dry-run", ...args], { cwd: root, env: { ...process.env } });
  return { code: r.exitCode, stderr: r.stderr.toString(), stdout: r.stdout.toString() };
}

beforeAll(() => {
  tmp = mkdtempSync(path.join(tmpdir(), "bd-gpu-check-"));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

test.skipIf(!Bun.which("xz"))("--dry-run with a bundle: checksums verified, bundled Bun used, GPU steps skipped, report written", () => {
  const bundle = path.join(tmp, "bundle");
  makeBundle(bundle);
  const out = path.join(tmp, "out");
  const work = path.join(tmp, "work");
  const r = check(["--bundle", bundle, "--out", out, "--work", work]);
  expect(r.stderr).toContain(`checking the bundle ${bundle}`);
  expect(r.code).toBe(0);
  expect(existsSync(path.join(work, "bin/bun"))).toBe(true);
  expect(statSync(path.join(work, "bin/bun")).mode & 0o111).not.toBe(0);
  const date = new Date().toISOString().slice(0, 10);
  const report = JSON.parse(readFileSync(path.join(out, `dry-run-cpu-${date}.json`), "utf8"));
  expect(report).toMatchObject({ device: "cpu", dryRun: true });
  const byName = Object.fromEntries(report.steps.map((s: { name: string }) => [s.name, s]));
  expect(byName.info.status).toBe("ok");
  expect(byName.info.outputTail).toContain("bun-diffusion");
  expect(byName["cuda-tests"]).toMatchObject({ status: "skipped", note: "dry run: needs the GPU" });
  expect(byName["bench-cuda-ops"].status).toBe("skipped");
  for (const s of report.steps) expect(["ok", "skipped"]).toContain(s.status);
  const md = readFileSync(path.join(out, `dry-run-cpu-${date}.md`), "utf8");
  expect(md).toContain("| cuda-tests | skipped |");
  expect(md).toContain("dry run: GPU steps skipped");
});

test.skipIf(!Bun.which("xz"))("a corrupt or truncated bundle file stops the check naming the file and the fix; no report", () => {
  const bundle = path.join(tmp, "bad");
  makeBundle(bundle);
  const f = path.join(bundle, "bun.xz");
  const bytes = readFileSync(f);
  bytes[bytes.length - 3]! ^= 0xff;
  writeFileSync(f, bytes);
  const out = path.join(tmp, "bad-out");
  let r = check(["--bundle", bundle, "--out", out, "--work", path.join(tmp, "bad-work")]);
  expect(r.code).toBe(1);
  expect(r.stderr).toContain("bun.xz does not match its MANIFEST checksum: the copy is corrupt; rebuild it with bash scripts/gpu-bundle.sh");
  writeFileSync(f, bytes.subarray(0, 10));
  r = check(["--bundle", bundle, "--out", out, "--work", path.join(tmp, "bad-work")]);
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/bun\.xz is 10 bytes, its MANIFEST says \d+: the copy is truncated or stale/);
  rmSync(f);
  r = check(["--bundle", bundle, "--out", out, "--work", path.join(tmp, "bad-work")]);
  expect(r.stderr).toContain("the bundle lacks bun.xz");
  expect(existsSync(out)).toBe(false);
  r = check(["--work", "/"]);
  expect(r.code).toBe(1);
  expect(r.stderr).toContain("would be emptied");
});

test("the report: one row per step, benchmark JSON parsed, failures with their output tail", () => {
  const work = path.join(tmp, "report");
  mkdirSync(path.join(work, "logs"), { recursive: true });
  writeFileSync(path.join(work, "logs/bench.out"), JSON.stringify({ tflops: 1.5 }));
  writeFileSync(path.join(work, "logs/bench.err"), "");
  writeFileSync(path.join(work, "logs/tests.out"), "line\n".repeat(100) + "3 pass\n1 fail\n");
  writeFileSync(path.join(work, "logs/tests.err"), "error: expected 1 to be 2\n");
  const records = [
    { name: "bench", status: "ok", rc: 0, seconds: 2.5, limit: 45, log: "logs/bench", note: "" },
    { name: "tests", status: "failed", rc: 1, seconds: 10, limit: 200, log: "logs/tests", note: "" },
    { name: "sanitizer-memcheck", status: "skipped", rc: null, seconds: 0, limit: 60, log: "", note: "compute-sanitizer not found" },
  ] as const;
  const r = buildReport([...records], work, { device: "NVIDIA H100", dryRun: false, seconds: 13, budget: 480 });
  expect(r.summary).toEqual({ ok: 1, failed: 1, timeout: 0, skipped: 1 });
  expect(r.steps[0]!.json).toEqual({ tflops: 1.5 });
  expect(r.steps[1]!.outputTail).toContain("1 fail");
  expect(r.steps[1]!.outputTail).toContain("error: expected 1 to be 2");
  expect(r.steps[1]!.outputTail.split("\n").length).toBeLessThanOrEqual(40);
  const md = reportMarkdown(r);
  expect(md).toContain("| tests | failed (rc 1) | 10 | 200 |  |");
  expect(md).toContain('"tflops": 1.5');
  expect(md).toContain("| sanitizer-memcheck | skipped | 0 | 60 | compute-sanitizer not found |");
});
