// The README's library example, run as a user would: from a temporary project outside the
// repository that depends on this checkout through `bun link` (the README's way to follow a checkout;
// its dependencies resolve from the checkout's node_modules, so nothing is downloaded). The registry is
// pointed at a closed port, so any attempt to fetch a package — e.g. an unrelated "bun-diffusion"
// from npm — fails the test. BUN_INSTALL is a temporary folder: the user's global links are untouched.

import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseParameters } from "../src/io/parameters.ts";
import { readPngText } from "../src/io/png-text.ts";
import { projectRoot } from "./helpers/paths.ts";

const tmp = mkdtempSync(path.join(tmpdir(), "bd-readme-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const env = {
  ...process.env,
  BUN_INSTALL: path.join(tmp, "bun-home"),
  BUN_CONFIG_REGISTRY: "http://127.0.0.1:9/", // discard port: any registry request fails
  NO_COLOR: "1",
};

function run(cmd: string[], cwd: string) {
  const r = Bun.spawnSync(cmd, { cwd, env, stdout: "pipe", stderr: "pipe" });
  const out = `${r.stdout.toString()}${r.stderr.toString()}`;
  if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")} (in ${cwd}) exited with ${r.exitCode}:\n${out}`);
  return out;
}

/** The README's TypeScript block that imports from "bun-diffusion" in the "Using the library" section. */
function readmeExample(): string {
  const readme = readFileSync(path.join(projectRoot, "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("## Using the library"), readme.indexOf("\n## ", readme.indexOf("## Using the library") + 5));
  const blocks = [...section.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);
  const example = blocks.find((b) => b.includes('from "bun-diffusion"'));
  if (!example) throw new Error("README.md: no ```ts block importing from \"bun-diffusion\" under \"## Using the library\"");
  return example;
}

describe("README", () => {
  test("the library example runs from a project outside the repository, linked with bun link", () => {
    const app = path.join(tmp, "app");
    mkdirSync(app);
    run([process.execPath, "link"], projectRoot); // registers the checkout (and its bin) under BUN_INSTALL
    writeFileSync(
      path.join(app, "package.json"),
      JSON.stringify({ name: "readme-example", type: "module", dependencies: { "bun-diffusion": "link:bun-diffusion" } }, null, 2),
    );
    run([process.execPath, "install"], app);
    writeFileSync(path.join(app, "example.ts"), readmeExample());
    const out = run([process.execPath, "example.ts"], app);
    expect(out).toContain("20/20");
    const png = path.join(app, "square.png");
    expect(existsSync(png)).toBe(true);
    const params = parseParameters(readPngText(new Uint8Array(readFileSync(png))).parameters!);
    expect(params.prompt).toBe("a yellow square on a black background");
    expect(params.fields).toMatchObject({ Steps: "20", Sampler: "DDIM", Seed: "1", Size: "64x64", Model: "shapes-64" });
    // the linked command works too
    const bin = path.join(env.BUN_INSTALL, "bin", "bun-diffusion");
    expect(run([process.execPath, bin, "--help"], app)).toContain("generate");
  }, 60_000);
});
