#!/usr/bin/env bun
// The bun-diffusion command line: `info` (runtime, backends, libraries), `generate` (text to
// image, src/cli/generate.ts) and `plan` (predicted peak memory per phase, src/cli/plan.ts).

import { Command } from "commander";
import { registerGenerate } from "./generate.ts";
import { registerPlan } from "./plan.ts";
import { collectInfo, formatInfo } from "./info.ts";
import pkg from "../../package.json" with { type: "json" };

const program = new Command()
  .name("bun-diffusion")
  .description("Stable Diffusion text-to-image for Bun")
  .version(pkg.version);

program
  .command("info")
  .description("print the runtime, backends, devices and native libraries found")
  .option("--json", "print JSON instead of text")
  .action((opts: { json?: boolean }) => {
    const report = collectInfo();
    console.log(opts.json ? JSON.stringify(report, null, 2) : formatInfo(report));
  });

registerGenerate(program);
registerPlan(program);

await program.parseAsync(process.argv);
