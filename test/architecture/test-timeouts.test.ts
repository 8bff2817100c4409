// Test files leave the per-test timeout to the test command (`bash scripts/bd.sh test` and `bun run test` pass
// --timeout 120000; test/preload-devices.ts sets it for a lone `bun test FILE`). Bun 1.4 drops a default set by
// setDefaultTimeout after the file that set it, and a hook with its own timeout argument resets the default to
// 5 s for the files after it, so one such file turns slow tests of later files into 5-second timeouts.

import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import path from "node:path";

const root = path.resolve(import.meta.dir, "..");

test("no test file changes the default timeout (setDefaultTimeout or a hook with a timeout argument)", () => {
  const offenders: string[] = [];
  for (const rel of new Bun.Glob("**/*.ts").scanSync({ cwd: root })) {
    if (rel === "preload-devices.ts" || rel.startsWith("architecture/test-timeouts")) continue;
    const src = readFileSync(path.join(root, rel), "utf8");
    if (/\bsetDefaultTimeout\s*\(/.test(src)) offenders.push(`${rel}: setDefaultTimeout`);
    // a hook call whose last argument is a number: `}, 300_000);` closing a beforeAll/afterAll/beforeEach/afterEach
    for (const m of src.matchAll(/\b(beforeAll|afterAll|beforeEach|afterEach)\s*\(/g)) {
      let depth = 0;
      let i = m.index! + m[0].length - 1;
      for (; i < src.length; i++) {
        if (src[i] === "(") depth++;
        else if (src[i] === ")" && --depth === 0) break;
      }
      if (/,\s*[\d_]+(\.\d+)?(e\d+)?\s*$/.test(src.slice(m.index!, i))) offenders.push(`${rel}: ${m[1]} with a timeout`);
    }
  }
  expect(offenders).toEqual([]);
});
