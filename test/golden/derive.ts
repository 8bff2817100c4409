// Builds a derived golden folder (same layout, files, keys and meta fields as the source folder, other
// batch sizes, timestep forms and shapes) from an existing one, using only joins and reorderings along the
// batch dimension whose expected outputs are exactly what diffusers computes, because every component
// treats batch rows independently:
// - unet/*: the file's cases joined into batches (case0 = [c0, c1] with a 1-d float32 per-sample timestep,
//   case1 = [c1, c1] with c1's own timestep, case2 = [c1, c0, c1]); diffusers' time projection casts every
//   timestep to float32 first, so int64 981 and float32 981 embed identically, and each row's output is
//   that row's case output (GroupNorm, convolutions and attention are per sample).
// - pipeline/*: each case with a deterministic scheduler (no noise drawn in step) joined with the case of
//   the same run configuration (the public set has one per configuration, so itself) into a batch of two
//   prompts: prompt-side inputs and per-image outputs concatenated, the batched CFG UNet tensors re-split
//   as [negative A, negative B, positive A, positive B], shared tensors (timesteps, init_noise_sigma, the
//   0-d UNet timestep, SDXL's [1, 6] add_time_ids) kept. SDXL cases with no sdxl_extra get diffusers'
//   defaults written out explicitly (original and target size = (height, width), crop (0, 0), and the
//   same negative sizes), which give the same time ids.
// - text_encoder/*: rows reversed and the first row repeated (N + 1 rows).
// - vae/*: encode/* as a batch of two copies; decode/* replaced by the non-square tiling case's input and
//   untiled reference (tiled_decode/z, tiled_decode/untiled_out); tiled_* kept.
// - tome/*: copied unchanged (pending until the Token Merging issue). schedulers/*: left out (their
//   replay tests are owned elsewhere and are not run on this folder).
// The models, manifests and rng folders are copied. A non-empty negative prompt cannot be derived: it
// changes every step's guidance, so it needs a fresh diffusers run.

import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parsePythonJson } from "../../src/io/python-json.ts";
import { type SafetensorsDType, type SafetensorsFile, openSafetensors, writeSafetensors } from "../../src/io/safetensors.ts";
import type { GoldenEntry } from "../helpers/golden.ts";

interface Raw {
  dtype: SafetensorsDType;
  shape: number[];
  data: Uint8Array;
}

export interface DerivedFile {
  file: string;
  /** How the file was derived (for the test log and reports). */
  how: string;
}

const TORCH_NAME: Partial<Record<SafetensorsDType, string>> = { F32: "float32", F16: "float16", BF16: "bfloat16", F64: "float64", I64: "int64", I32: "int32", U8: "uint8", BOOL: "bool" };

const read = (f: SafetensorsFile, name: string): Raw => {
  const e = f.get(name);
  return { dtype: e.dtype, shape: [...e.shape], data: e.data.slice() };
};

function catRows(parts: Raw[], what: string): Raw {
  const [first] = parts;
  for (const p of parts)
    if (p.dtype !== first!.dtype || p.shape.length === 0 || JSON.stringify(p.shape.slice(1)) !== JSON.stringify(first!.shape.slice(1)))
      throw new Error(`${what}: cannot join ${p.dtype}[${p.shape}] to ${first!.dtype}[${first!.shape}] along dim 0`);
  const data = new Uint8Array(parts.reduce((n, p) => n + p.data.length, 0));
  let at = 0;
  for (const p of parts) (data.set(p.data, at), (at += p.data.length));
  return { dtype: first!.dtype, shape: [parts.reduce((n, p) => n + p.shape[0]!, 0), ...first!.shape.slice(1)], data };
}

function rowSlice(t: Raw, start: number, n: number): Raw {
  const per = t.data.length / t.shape[0]!;
  return { dtype: t.dtype, shape: [n, ...t.shape.slice(1)], data: t.data.slice(start * per, (start + n) * per) };
}

const sameBytes = (a: Raw, b: Raw) => a.dtype === b.dtype && JSON.stringify(a.shape) === JSON.stringify(b.shape) && Buffer.from(a.data).equals(Buffer.from(b.data));

function values(t: Raw): number[] {
  const copy = t.data.slice();
  if (t.dtype === "I64") return Array.from(new BigInt64Array(copy.buffer), Number);
  if (t.dtype === "F32") return Array.from(new Float32Array(copy.buffer));
  throw new Error(`values of ${t.dtype} are not needed here`);
}
const float32 = (v: number[], shape: number[]): Raw => ({ dtype: "F32", shape, data: new Uint8Array(Float32Array.from(v).buffer) });

function std(v: number[]): number {
  const mean = v.reduce((a, b) => a + b, 0) / v.length;
  return Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / (v.length - 1)); // torch.std (unbiased)
}

async function write(dst: string, file: string, meta: GoldenEntry["meta"], tensors: Record<string, Raw>): Promise<GoldenEntry> {
  const names = Object.keys(tensors).sort();
  const out: GoldenEntry = { file, meta, tensors: {} };
  for (const n of names) out.tensors[n] = { dtype: TORCH_NAME[tensors[n]!.dtype] ?? tensors[n]!.dtype, shape: tensors[n]!.shape };
  mkdirSync(path.dirname(path.join(dst, file)), { recursive: true });
  await writeSafetensors(path.join(dst, file), Object.fromEntries(names.map((n) => [n, tensors[n]!])), { golden: JSON.stringify(meta) });
  return out;
}

// ---- unet

function unetCase(f: SafetensorsFile, entry: GoldenEntry, c: string): Record<string, Raw> {
  const out: Record<string, Raw> = {};
  for (const name of Object.keys(entry.tensors)) if (name.startsWith(`${c}/`)) out[name.slice(c.length + 1)] = read(f, name);
  return out;
}

/** Cases joined along the batch; the timestep becomes a 1-d float32 per-sample vector unless `keepTimestep`. */
function joinUnetCases(parts: Record<string, Raw>[], keepTimestep: boolean): Record<string, Raw> {
  const out: Record<string, Raw> = {};
  for (const k of Object.keys(parts[0]!)) {
    if (k === "timestep") continue;
    out[k] = catRows(parts.map((p) => p[k]!), `unet ${k}`);
  }
  const perRow = (p: Record<string, Raw>) => {
    const v = values(p.timestep!);
    return v.length === 1 ? Array<number>(p.sample!.shape[0]!).fill(v[0]!) : v;
  };
  if (keepTimestep) out.timestep = parts[0]!.timestep!.shape.length === 0 ? parts[0]!.timestep! : catRows(parts.map((p) => p.timestep!), "unet timestep");
  else {
    const v = parts.flatMap(perRow);
    out.timestep = float32(v, [v.length]);
  }
  return out;
}

async function deriveUnet(src: string, dst: string, entry: GoldenEntry): Promise<[GoldenEntry, string]> {
  const f = openSafetensors(path.join(src, entry.file));
  const names = [...new Set(Object.keys(entry.tensors).map((n) => n.split("/")[0]!))];
  const [a, b] = [unetCase(f, entry, names[0]!), unetCase(f, entry, names[Math.min(1, names.length - 1)]!)];
  const cases = [joinUnetCases([a, b], false), joinUnetCases([b, b], true), joinUnetCases([b, a, b], false)];
  const tensors: Record<string, Raw> = {};
  const metaCases = cases.map((c, i) => {
    for (const [k, t] of Object.entries(c)) tensors[`case${i}/${k}`] = t;
    const t = values(c.timestep!);
    return {
      batch: c.sample!.shape[0],
      hw: c.sample!.shape.slice(2),
      t: c.timestep!.shape.length === 0 ? t[0] : t,
      tdtype: TORCH_NAME[c.timestep!.dtype],
      inputs: Object.keys(c).filter((k) => k !== "out").sort(),
      out_std: std(values(c.out!)),
    };
  });
  const meta = { ...entry.meta, cases: metaCases };
  const how = `cases [${names[0]}, ${names[1] ?? names[0]}] with a 1-d float32 timestep, [${names[1] ?? names[0]}] ×2 with its own timestep, and a batch of 3 (1-d)`;
  return [await write(dst, entry.file, meta, tensors), how];
}

// ---- pipelines

const PER_PROMPT = /^(input_ids|input_ids_2|negative_input_ids|negative_input_ids_2|prompt_embeds|negative_prompt_embeds|pooled_prompt_embeds|negative_pooled_prompt_embeds|latents_in|final_latents|image|image_raw_decode|step\d+\/latents)$/;
const CFG_ROWS = /^step\d+\/(unet_sample|unet_out)$/;
const SHARED = /^(timesteps|init_noise_sigma|step\d+\/unet_timestep|add_time_ids)$/;

/** Schedulers whose step() draws no noise (with the metadata's options), so each row's trajectory is its own. */
function deterministic(meta: Record<string, unknown>): boolean {
  const cls = meta.scheduler as string;
  const config = (meta.scheduler_config ?? {}) as Record<string, unknown>;
  if (cls === "DDIMScheduler") return ((meta.eta as number | undefined) ?? 0) === 0;
  if (cls === "DPMSolverMultistepScheduler") return !String(config.algorithm_type ?? "").startsWith("sde");
  return ["EulerDiscreteScheduler", "PNDMScheduler", "LMSDiscreteScheduler", "UniPCMultistepScheduler", "HeunDiscreteScheduler"].includes(cls);
}

/** The run configuration: everything but the prompts (two cases with the same key can share a batch). */
const runKey = (m: Record<string, unknown>) => JSON.stringify({ ...m, prompts: undefined, negative_prompts: undefined, notes: undefined });

async function derivePipeline(src: string, dst: string, a: GoldenEntry, b: GoldenEntry): Promise<[GoldenEntry, string]> {
  const fa = openSafetensors(path.join(src, a.file));
  const fb = openSafetensors(path.join(src, b.file));
  const cfg = (a.meta.guidance_scale as number) > 1;
  const tensors: Record<string, Raw> = {};
  for (const name of Object.keys(a.tensors)) {
    const [x, y] = [read(fa, name), read(fb, name)];
    if (PER_PROMPT.test(name)) tensors[name] = catRows([x, y], name);
    else if (CFG_ROWS.test(name)) {
      const h = x.shape[0]! / 2; // [negative…, positive…] halves of the batched CFG call
      tensors[name] = cfg ? catRows([rowSlice(x, 0, h), rowSlice(y, 0, h), rowSlice(x, h, h), rowSlice(y, h, h)], name) : catRows([x, y], name);
    } else if (SHARED.test(name)) {
      if (!sameBytes(x, y) || (name === "add_time_ids" && x.shape[0] !== 1)) throw new Error(`${a.file} + ${b.file}: ${name} is not shared`);
      tensors[name] = x;
    } else throw new Error(`${a.file}: the derivation does not know how ${name} joins along the batch`);
  }
  const m = a.meta as Record<string, unknown>;
  const joined = (k: string) => (m[k] == null ? m[k] : [...(m[k] as string[]), ...((b.meta as Record<string, unknown>)[k] as string[])]);
  const meta: Record<string, unknown> = { ...m, prompts: joined("prompts"), negative_prompts: joined("negative_prompts") };
  let how = `batch of 2 prompts: ${a.file} + ${b === a ? "itself" : b.file}`;
  if (m.component === "StableDiffusionXLPipeline" && Object.keys((m.sdxl_extra ?? {}) as object).length === 0) {
    const size = [m.height, m.width];
    meta.sdxl_extra = { original_size: size, crops_coords_top_left: [0, 0], target_size: size, negative_original_size: size, negative_crops_coords_top_left: [0, 0], negative_target_size: size };
    how += "; sdxl_extra = diffusers' defaults written out (positive and negative)";
  }
  return [await write(dst, a.file, meta as GoldenEntry["meta"], tensors), how];
}

// ---- text encoders, vae

async function deriveTextEncoder(src: string, dst: string, entry: GoldenEntry): Promise<[GoldenEntry, string]> {
  const f = openSafetensors(path.join(src, entry.file));
  const N = entry.tensors.input_ids!.shape[0]!;
  const order = [...Array(N).keys()].reverse().concat(0);
  const tensors: Record<string, Raw> = {};
  for (const name of Object.keys(entry.tensors)) {
    const t = read(f, name);
    if (t.shape[0] !== N) throw new Error(`${entry.file}: ${name} has no row per prompt`);
    tensors[name] = catRows(order.map((i) => rowSlice(t, i, 1)), name);
  }
  return [await write(dst, entry.file, entry.meta, tensors), `rows [${order.join(", ")}] of the ${N}`];
}

async function deriveVae(src: string, dst: string, entry: GoldenEntry): Promise<[GoldenEntry, string]> {
  const f = openSafetensors(path.join(src, entry.file));
  const tensors: Record<string, Raw> = {};
  for (const name of Object.keys(entry.tensors)) {
    const t = read(f, name);
    tensors[name] = name.startsWith("encode/") ? catRows([t, t], name) : t;
  }
  let how = "encode/* as a batch of 2";
  if (entry.tensors["tiled_decode/z"] && entry.tensors["tiled_decode/untiled_out"]) {
    tensors["decode/z"] = read(f, "tiled_decode/z");
    tensors["decode/out"] = read(f, "tiled_decode/untiled_out");
    how += `; decode/* = the untiled ${entry.tensors["tiled_decode/z"].shape.slice(2).join("×")} tiling case`;
  }
  return [await write(dst, entry.file, entry.meta, tensors), how];
}

/** Writes the derived folder into `dst` (an empty folder) from the golden folder `src`. */
export async function buildDerivedGolden(src: string, dst: string): Promise<DerivedFile[]> {
  const index = parsePythonJson(readFileSync(path.join(src, "index.json"), "utf8")) as Record<string, unknown> & { files: GoldenEntry[] };
  const files: GoldenEntry[] = [];
  const report: DerivedFile[] = [];
  const add = ([e, how]: [GoldenEntry, string]) => (files.push(e), report.push({ file: e.file, how }));
  const models = new Set<string>();
  const pipelines = index.files.filter((e) => e.file.startsWith("pipeline/"));
  for (const e of index.files) {
    const folder = e.file.split("/")[0];
    if (folder === "unet") add(await deriveUnet(src, dst, e));
    else if (folder === "text_encoder") add(await deriveTextEncoder(src, dst, e));
    else if (folder === "vae") add(await deriveVae(src, dst, e));
    else if (folder === "pipeline") {
      if (!deterministic(e.meta)) continue; // a noise-drawing scheduler: a joined batch draws other noise
      const partner = pipelines.find((p) => p !== e && runKey(p.meta) === runKey(e.meta)) ?? e;
      add(await derivePipeline(src, dst, e, partner));
    } else if (folder === "tome") {
      mkdirSync(path.join(dst, folder), { recursive: true });
      cpSync(path.join(src, e.file), path.join(dst, e.file));
      files.push(e);
      report.push({ file: e.file, how: "copied (pending)" });
    } else continue;
    if (e.meta.model) models.add(e.meta.model.split("/").slice(0, 2).join("/"));
  }
  for (const dir of [...models, "manifests", "rng"]) if (existsSync(path.join(src, dir))) cpSync(path.join(src, dir), path.join(dst, dir), { recursive: true });
  const { files: _, ...head } = index;
  writeFileSync(path.join(dst, "index.json"), JSON.stringify({ ...head, set: `derived from ${String(index.set ?? src)}`, files }, null, 1));
  return report;
}
