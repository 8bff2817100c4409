// Sharded safetensors checkpoints (`*.safetensors.index.json`: { metadata, weight_map: name -> shard file })
// behind the same TensorSource interface as a single file, and `openCheckpoint`, which accepts either.
// Each shard is opened (mapped and validated) once; every weight_map entry is checked against its shard
// at open. Tensors present in a shard but absent from the weight_map are ignored, as diffusers does.

import * as fs from "node:fs";
import * as nodePath from "node:path";
import {
  openSafetensors,
  SafetensorsError,
  type SafetensorsFile,
  type TensorEntry,
  type TensorSource,
} from "./safetensors.ts";

export interface ShardedSafetensors extends TensorSource {
  /** The index json's path. */
  readonly path: string;
  /** The index's "metadata" object as written (values are often numbers, e.g. total_size). */
  readonly metadata: Record<string, unknown>;
  /** Resolved shard paths, in order of first appearance in the weight_map. */
  readonly files: string[];
  /** The opened shard holding `name` (throws like get() if the name is unknown). */
  shardOf(name: string): SafetensorsFile;
}

class ShardedSafetensorsImpl implements ShardedSafetensors {
  constructor(
    readonly path: string,
    readonly metadata: Record<string, unknown>,
    readonly files: string[],
    private readonly where: Map<string, SafetensorsFile>,
  ) {}
  names(): string[] {
    return [...this.where.keys()];
  }
  has(name: string): boolean {
    return this.where.has(name);
  }
  shardOf(name: string): SafetensorsFile {
    const shard = this.where.get(name);
    if (shard === undefined) {
      throw new SafetensorsError(this.path, `no tensor named ${JSON.stringify(name)} in the weight_map ` +
        `(${this.where.size} tensors in ${this.files.length} shards)`);
    }
    return shard;
  }
  get(name: string): TensorEntry {
    return this.shardOf(name).get(name);
  }
  *entries(): IterableIterator<TensorEntry> {
    for (const [name, shard] of this.where) yield shard.get(name);
  }
}

/** Opens a sharded checkpoint from its index json; shard paths are relative to the index's folder. */
export function openSafetensorsIndex(indexPath: string): ShardedSafetensors {
  const fail = (problem: string, cause?: unknown): never => {
    throw new SafetensorsError(indexPath, problem, { cause });
  };
  let text = "";
  try {
    text = fs.readFileSync(indexPath, "utf8");
  } catch (e) {
    fail(`cannot read index: ${(e as Error).message}`, e);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    fail(`index is not valid JSON (${(e as Error).message})`, e);
  }
  const isObject = (v: unknown): v is Record<string, unknown> =>
    typeof v === "object" && v !== null && !Array.isArray(v);
  if (!isObject(json)) return fail("index JSON is not an object");
  const metadata = json.metadata ?? {};
  if (!isObject(metadata)) return fail(`index "metadata" is not an object`);
  const weightMap = json.weight_map;
  if (!isObject(weightMap)) return fail(`index has no "weight_map" object`);

  const dir = nodePath.dirname(nodePath.resolve(indexPath));
  const shards = new Map<string, SafetensorsFile>(); // keyed by the file name as written
  const where = new Map<string, SafetensorsFile>();
  for (const [name, file] of Object.entries(weightMap)) {
    if (typeof file !== "string" || file === "") {
      fail(`weight_map entry for tensor ${JSON.stringify(name)} is not a file name (got ${JSON.stringify(file)})`);
    }
    const f = file as string;
    let shard = shards.get(f);
    if (shard === undefined) {
      const resolved = nodePath.resolve(dir, f);
      const rel = nodePath.relative(dir, resolved);
      if (nodePath.isAbsolute(f) || rel === ".." || rel.startsWith(`..${nodePath.sep}`)) {
        fail(`shard ${JSON.stringify(f)} (for tensor ${JSON.stringify(name)}) is outside the index's folder`);
      }
      try {
        shard = openSafetensors(resolved);
      } catch (e) {
        return fail(`shard ${JSON.stringify(f)} (for tensor ${JSON.stringify(name)}): ${(e as Error).message}`, e);
      }
      shards.set(f, shard);
    }
    if (!shard.has(name)) {
      fail(`weight_map maps tensor ${JSON.stringify(name)} to shard ${JSON.stringify(f)}, but that shard has ` +
        `no such tensor`);
    }
    where.set(name, shard);
  }
  return new ShardedSafetensorsImpl(indexPath, metadata, [...shards.values()].map((s) => s.path), where);
}

/** Opens a `.safetensors` file or a sharded index (`*.json`) behind the common TensorSource interface. */
export function openCheckpoint(path: string): TensorSource {
  return path.endsWith(".json") ? openSafetensorsIndex(path) : openSafetensors(path);
}
