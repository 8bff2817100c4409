// Deterministic pseudo-random weights for benchmarks: a model built on "meta" from a real-size
// manifest gets every parameter replaced by CPU values read from a fixed LCG table at shifting offsets
// (uniform ±1/√fan_in for matrices and kernels, norm gains 1 ± 0.02, other vectors ±0.02), about 1 ns
// per element, so a full SD 1.5 UNet fills in a second and every run computes on the same numbers.
// manifestConfig() reads a real-size config from the golden folder's manifests/.

import { readFileSync } from "node:fs";
import path from "node:path";
import type { Module } from "../../src/nn/module.ts";
import { empty } from "../../src/tensor/index.ts";

/** A period-P table of uniform [-1, 1) values from an int32 LCG; parameters read it at shifting offsets. */
const P = 1_048_573; // prime, so consecutive rows of a matrix do not repeat in step
const TABLE = new Float32Array(P);
{
  let s = 12345;
  for (let i = 0; i < P; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) | 0; // Numerical Recipes LCG, kept in int32
    TABLE[i] = s * 2 ** -31;
  }
}

/** data[i] = center + scale · TABLE[(offset + i) mod P] (about 1 ns per element). */
function fillFromTable(data: Float32Array, offset: number, center: number, scale: number): void {
  let j = offset % P;
  for (let i = 0; i < data.length; ) {
    const n = Math.min(data.length - i, P - j);
    for (let q = 0; q < n; q++) data[i + q] = center + scale * TABLE[j + q]!;
    i += n;
    j = 0;
  }
}

/** Replace every parameter of a meta-built module with deterministic pseudo-random CPU values. */
export function fillRandom(model: Module, seed = 1): void {
  let offset = seed;
  for (const [name, p] of model.namedParameters()) {
    const shape = [...p.shape];
    let center = 0;
    let scale = 0.02;
    if (shape.length >= 2) scale = 1 / Math.sqrt(shape.slice(1).reduce((a, b) => a * b, 1));
    else if (/norm/.test(name) && name.endsWith(".weight")) center = 1;
    const t = empty(shape, { dtype: "float32", device: "cpu" }); // counted by the allocator; written in place
    const bytes = t.storage.handle as Uint8Array;
    fillFromTable(new Float32Array(bytes.buffer, bytes.byteOffset, t.numel), offset, center, scale);
    offset += 7919;
    p.replace(t);
  }
  model.to("cpu"); // parameters are already there; records the placement
}

/** The resolved config of `manifests/<name>.json` in the golden folder (e.g. "sd15_unet"). */
export function manifestConfig(golden: string, name: string): Record<string, unknown> {
  return (JSON.parse(readFileSync(path.join(golden, "manifests", `${name}.json`), "utf8")) as { resolved_config: Record<string, unknown> }).resolved_config;
}
