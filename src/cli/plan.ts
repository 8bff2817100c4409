// `bun-diffusion plan`: the predicted peak device memory of one generation, phase by phase (text encoding,
// one UNet step, VAE decode) with the weights resident in each — for a model folder (configs only, the
// weights are not opened) or a known architecture (--config sd15|sd21|sdxl). It runs the pipeline's flow on
// the "meta" device (src/pipelines/plan.ts): no GPU, no weights, well under a second.

import { type Command, InvalidArgumentError, Option } from "commander";
import { formatBytes } from "../core/errors.ts";
import { MetaModels, type MemoryPlan, type PlanModels, folderPlanModels, knownPlanModels, KNOWN_ARCHITECTURES, planMemory } from "../pipelines/index.ts";
import type { DType } from "../tensor/index.ts";
import { finite, multipleOf8, positiveInt } from "./arguments.ts";
import { checkTome } from "./preflight.ts";

export interface PlanCliOptions {
  model?: string;
  config?: string;
  width?: number;
  height?: number;
  batch: number;
  dtype: DType;
  tome?: number;
  attention: string;
  offload: "none" | "model" | "sequential";
  prefetch?: number;
  vaeTiling?: boolean;
  vaeSlicing?: boolean;
  fuseQkv?: boolean;
  cfg: boolean;
  json?: boolean;
}

/** The plan for the parsed flags (errors name the flag). */
export function runPlan(o: PlanCliOptions): { plan: MemoryPlan; models: string } {
  if ((o.model === undefined) === (o.config === undefined)) throw new InvalidArgumentError("give either --model DIR or --config sd15|sd21|sdxl");
  checkTome(o.tome);
  const spec: PlanModels & { description: string } = o.model !== undefined ? folderPlanModels(o.model, o.dtype) : knownPlanModels(o.config!, o.dtype);
  const models = new MetaModels(spec);
  try {
    const native = nativeSize(spec);
    const plan = planMemory(models, {
      width: o.width ?? native,
      height: o.height ?? native,
      batch: o.batch,
      cfg: o.cfg,
      attention: o.attention === "efficient" ? "fused" : o.attention,
      tome: o.tome !== undefined ? { ratio: o.tome } : null,
      offload: o.offload,
      prefetchBytes: o.prefetch !== undefined ? o.prefetch * 2 ** 20 : 0,
      vaeTiling: o.vaeTiling ?? false,
      vaeSlicing: o.vaeSlicing ?? false,
      fusedQkv: o.fuseQkv ?? false,
    });
    return { plan, models: spec.description };
  } finally {
    models.dispose();
  }
}

function nativeSize(m: PlanModels): number {
  const s = (m.unet as { sample_size?: number | number[] }).sample_size ?? 64;
  const blocks = ((m.vae as { block_out_channels?: number[] }).block_out_channels ?? [0, 0, 0, 0]).length;
  return (Array.isArray(s) ? s[0]! : s) * 2 ** (blocks - 1);
}

/** The plan as text: one line per phase and the peak. */
export function formatPlan(p: MemoryPlan, models: string): string {
  const opts = [
    `${p.width}×${p.height}`,
    `batch ${p.batch}`,
    p.dtype + (p.vaeDtype !== p.dtype ? ` (VAE ${p.vaeDtype})` : ""),
    `attention ${p.attention}`,
    `offload ${p.offload}`,
    ...(p.tome !== null ? [`ToMe ${p.tome}`] : []),
    ...(p.vaeTiling ? ["VAE tiling"] : []),
    ...(p.vaeSlicing ? ["VAE slicing"] : []),
  ];
  const rows = p.phases.map((ph) => [ph.phase, formatBytes(ph.peak), formatBytes(ph.weights), formatBytes(ph.tensors)]);
  const head = ["phase", "peak", "weights", "tensors"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  return [
    `plan: ${models}`,
    `      ${opts.join(", ")}`,
    line(head),
    ...rows.map(line),
    `peak: ${formatBytes(p.peak)} while ${p.peakPhase} (planned in ${p.planMs.toFixed(0)} ms; ${p.notes.join("; ")})`,
  ].join("\n");
}

export function registerPlan(program: Command): void {
  program
    .command("plan")
    .description("predict the peak device memory of a generation per phase, from the model's configs (no weights, no GPU)")
    .option("-m, --model <dir>", "diffusers pipeline folder (only its config files are read)")
    .addOption(new Option("--config <name>", "a known architecture instead of a folder").choices([...KNOWN_ARCHITECTURES]))
    .option("-W, --width <px>", "image width (default: the model's native size)", multipleOf8)
    .option("-H, --height <px>", "image height (default: the model's native size)", multipleOf8)
    .option("-b, --batch <n>", "images per call", positiveInt("--batch"), 1)
    .addOption(new Option("--dtype <dtype>", "weights and compute dtype").choices(["float32", "float16", "bfloat16"]).default("float32"))
    .addOption(new Option("--tome <ratio>", "with Token Merging at this ratio").argParser(finite))
    .addOption(
      new Option("--attention <kind>", 'attention: "efficient" / "fused" (no score matrix), "naive" (materialised scores), "chunked"')
        .choices(["efficient", "fused", "naive", "chunked"])
        .default("fused"),
    )
    .addOption(new Option("--offload <strategy>", "CPU offload: whole models, or module by module").choices(["none", "model", "sequential"]).default("none"))
    .option("--prefetch <MiB>", "sequential offload's look-ahead of weight uploads, in MiB", positiveInt("--prefetch"))
    .option("--vae-tiling", "decode in tiles")
    .option("--vae-slicing", "decode a batch one image at a time")
    .option("--fuse-qkv", "with fused QKV projections (a pipeline on CUDA has them by default, unless offloading)")
    .option("--no-cfg", "without classifier-free guidance (guidance scale ≤ 1)")
    .option("--json", "print JSON")
    .action((o: PlanCliOptions) => {
      try {
        const { plan, models } = runPlan(o);
        console.log(o.json ? JSON.stringify({ models, ...plan }, null, 2) : formatPlan(plan, models));
      } catch (e) {
        console.error(`bun-diffusion plan: ${(e as Error).message}`);
        process.exitCode = 1;
      }
    });
}
