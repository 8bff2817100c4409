// Table-driven tests of cat, stack, split, chunk, pad and movedim on every test device and on
// float32/float16/bfloat16/int64, against naive references over raw element arrays: shape
// ops move values, so results must match bit for bit. SD-shaped cases (UNet skip concat,
// CFG chunk, GEGLU chunk, Downsample2D pad) and odd ones (zero-size, negative pads, transposed).

import { describe, expect, test } from "bun:test";
import { cpuBackend } from "../../src/backends/cpu/index.ts";
import { tensor } from "../../src/tensor/creation.ts";
import type { DType } from "../../src/core/dtype.ts";
import type { Device } from "../../src/core/device.ts";
import { cat, chunk, movedim, pad, split, stack } from "../../src/tensor/ops/shape-ops.ts";
import { tidy } from "../../src/tensor/scope.ts";
import type { Tensor } from "../../src/tensor/tensor.ts";
import { prng, randomValues, testDevices } from "../helpers/op-harness.ts";

const DTYPES: DType[] = ["float32", "float16", "bfloat16", "int64"];

type Raw = Float32Array | Uint16Array | Int32Array | BigInt64Array | Uint8Array;

function numelOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function stridesOf(shape: readonly number[]): number[] {
  const st: number[] = [];
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    st[i] = s;
    s *= shape[i]!;
  }
  return st;
}

/** out[pos] = src[f(multi-index)] over outShape; f returns -1 for `fill`. */
function mapRaw(outShape: readonly number[], src: Raw, f: (idx: number[]) => number, fill: number | bigint = 0): Raw {
  const n = numelOf(outShape);
  const out = new (src.constructor as { new (n: number): Raw })(n);
  const idx = new Array<number>(outShape.length).fill(0);
  for (let pos = 0; pos < n; pos++) {
    const s = f(idx);
    out[pos] = s < 0 ? fill : src[s]!;
    for (let k = outShape.length - 1; k >= 0; k--) {
      if (++idx[k]! < outShape[k]!) break;
      idx[k] = 0;
    }
  }
  return out;
}

/** Raw elements of `t` equal `expected` bit for bit. */
function expectRaw(t: Tensor, expected: Raw, label: string): void {
  const a = t.toRawArray();
  expect(a.length, `${label}: length`).toBe(expected.length);
  const ai = a instanceof Float32Array ? new Uint32Array(a.buffer, a.byteOffset, a.length) : a;
  const ei = expected instanceof Float32Array ? new Uint32Array(expected.buffer, expected.byteOffset, expected.length) : expected;
  for (let i = 0; i < ai.length; i++)
    if (ai[i] !== ei[i]) throw new Error(`${label}: element ${i} is ${a[i]}, expected ${expected[i]}`);
}

interface Input {
  t: Tensor;
  /** Row-major raw elements of t's logical values. */
  raw: Raw;
}

/**
 * A deterministic input of `shape`. int64 values exceed 2^53 so any float round trip shows.
 * `transposed`: t is a transposed view of a tensor stored with the last two dims swapped.
 */
function input(shape: readonly number[], dtype: DType, device: Device, seed: number, transposed = false): Input {
  const stored = transposed ? [...shape.slice(0, -2), shape[shape.length - 1]!, shape[shape.length - 2]!] : shape;
  const n = numelOf(shape);
  let base: Tensor;
  if (dtype === "int64") {
    const r = prng(seed);
    const v = new BigInt64Array(n);
    for (let i = 0; i < n; i++) v[i] = (BigInt(Math.floor(r() * 2 ** 30)) << 31n) - BigInt(Math.floor(r() * 2 ** 31));
    base = tensor(v, { shape: stored, dtype, device });
  } else {
    base = tensor(randomValues(n, dtype, seed, -4, 4), { shape: stored, dtype, device });
  }
  const baseRaw = base.toRawArray();
  if (!transposed) return { t: base, raw: baseRaw };
  const nd = shape.length;
  const st = stridesOf(stored);
  const raw = mapRaw(shape, baseRaw, (idx) => {
    let o = 0;
    for (let k = 0; k < nd - 2; k++) o += idx[k]! * st[k]!;
    return o + idx[nd - 1]! * st[nd - 2]! + idx[nd - 2]! * st[nd - 1]!;
  });
  return { t: base.transpose(-1, -2), raw };
}

/** Flat row-major offset of a multi-index. */
function flat(idx: readonly number[], strides: readonly number[]): number {
  let o = 0;
  for (let k = 0; k < idx.length; k++) o += idx[k]! * strides[k]!;
  return o;
}

function refCat(parts: { shape: number[]; raw: Raw }[], dim: number): { shape: number[]; raw: Raw } {
  const shape = parts[0]!.shape.slice();
  shape[dim] = parts.reduce((a, p) => a + p.shape[dim]!, 0);
  const starts: number[] = [];
  let at = 0;
  for (const p of parts) {
    starts.push(at);
    at += p.shape[dim]!;
  }
  // Concatenate the parts' raw arrays into one source; map each output index into its part.
  const total = parts.reduce((a, p) => a + p.raw.length, 0);
  const src = new (parts[0]!.raw.constructor as { new (n: number): Raw })(total);
  const base: number[] = [];
  let off = 0;
  for (const p of parts) {
    base.push(off);
    (src as Float32Array).set(p.raw as Float32Array, off);
    off += p.raw.length;
  }
  const raw = mapRaw(shape, src, (idx) => {
    let k = parts.length - 1;
    while (starts[k]! > idx[dim]! || parts[k]!.shape[dim] === 0) k--;
    const local = idx.slice();
    local[dim] = idx[dim]! - starts[k]!;
    return base[k]! + flat(local, stridesOf(parts[k]!.shape));
  });
  return { shape, raw };
}

function normDim(d: number, nd: number): number {
  return d < 0 ? d + nd : d;
}

interface CatCase {
  name: string;
  shapes: number[][];
  dim: number;
  transposed?: boolean;
}

const CAT_CASES: CatCase[] = [
  { name: "UNet skip connection [2,320,32,32] + [2,640,32,32] along channels", shapes: [[2, 320, 32, 32], [2, 640, 32, 32]], dim: 1 },
  { name: "CFG batch [1,4,16,16] x 2 along dim 0", shapes: [[1, 4, 16, 16], [1, 4, 16, 16]], dim: 0 },
  { name: "odd sizes with a zero-size input", shapes: [[3, 5, 7], [3, 0, 7], [3, 2, 7]], dim: -2 },
  { name: "last dim, three inputs", shapes: [[2, 77, 3], [2, 77, 1], [2, 77, 5]], dim: -1 },
  { name: "transposed inputs along dim 1", shapes: [[4, 3], [4, 6]], dim: 1, transposed: true },
  { name: "transposed inputs along dim 0", shapes: [[2, 3, 5], [1, 3, 5]], dim: 0, transposed: true },
];

describe.each(testDevices())("shape ops on %s", (device) => {
  describe.each(DTYPES)("%s", (dtype) => {
    test.each(CAT_CASES)("cat: $name", ({ shapes, dim, transposed }) => {
      tidy(() => {
        const ins = shapes.map((s, i) => input(s, dtype, device, 10 + i, transposed));
        const got = cat(
          ins.map((x) => x.t),
          dim,
        );
        const ref = refCat(
          ins.map((x, i) => ({ shape: shapes[i]!, raw: x.raw })),
          normDim(dim, shapes[0]!.length),
        );
        expect(got.shape).toEqual(ref.shape);
        expect(got.dtype).toBe(dtype);
        expect(got.device).toBe(device);
        expectRaw(got, ref.raw, "cat");
      });
    });

    test("cat skips legacy empty [0] tensors; stack", () => {
      tidy(() => {
        const a = input([2, 3], dtype, device, 1);
        const e = tensor([], { shape: [0], dtype, device });
        const got = cat([e, a.t, e], 1);
        expectRaw(got, a.raw, "cat with [0]");
        // stack = cat of unsqueezed views
        for (const [shape, n, dim] of [
          [[2, 4, 16, 16], 2, 0],
          [[3, 5], 3, 1],
          [[3, 5], 2, -1],
        ] as [number[], number, number][]) {
          const ins = Array.from({ length: n }, (_, i) => input(shape, dtype, device, 20 + i));
          const d = normDim(dim, shape.length + 1);
          const us = shape.slice();
          us.splice(d, 0, 1);
          const ref = refCat(
            ins.map((x) => ({ shape: us, raw: x.raw })),
            d,
          );
          const got2 = stack(
            ins.map((x) => x.t),
            dim,
          );
          expect(got2.shape).toEqual(ref.shape);
          expectRaw(got2, ref.raw, `stack ${dim}`);
        }
      });
    });

    test.each([
      { name: "CFG split: chunk [2,4,16,16] in 2 along dim 0", shape: [2, 4, 16, 16], chunks: 2, dim: 0, sizes: [1, 1] },
      { name: "GEGLU: chunk [1,77,1280] in 2 along the last dim", shape: [1, 77, 1280], chunks: 2, dim: -1, sizes: [640, 640] },
      { name: "chunk returns fewer chunks: 5 in 4", shape: [5, 3], chunks: 4, dim: 0, sizes: [2, 2, 1] },
      { name: "chunk with remainder: 7 in 3", shape: [2, 7], chunks: 3, dim: 1, sizes: [3, 3, 1] },
      { name: "chunk of an empty dim keeps the count", shape: [0, 3], chunks: 3, dim: 0, sizes: [0, 0, 0] },
      { name: "chunk of a transposed view", shape: [6, 4], chunks: 3, dim: 1, sizes: [2, 2], transposed: true },
    ])("$name", ({ shape, chunks, dim, sizes, transposed }) => {
      tidy(() => {
        const x = input(shape, dtype, device, 3, transposed);
        const parts = chunk(x.t, chunks, dim);
        const viaMethod = x.t.chunk(chunks, dim);
        expect(viaMethod.length).toBe(parts.length);
        checkPieces(x, shape, parts, sizes, normDim(dim, shape.length));
      });
    });

    test.each([
      { name: "split size 3 of 10 (last smaller)", shape: [2, 10], arg: 3 as number | number[], dim: 1, sizes: [3, 3, 3, 1] },
      { name: "split sections [2,3,2] of odd size 7", shape: [7, 5], arg: [2, 3, 2], dim: 0, sizes: [2, 3, 2] },
      { name: "split sections with a zero-size section", shape: [3, 9, 2], arg: [4, 0, 5], dim: -2, sizes: [4, 0, 5] },
      { name: "split size larger than the dim", shape: [3, 4], arg: 10, dim: 1, sizes: [4] },
      { name: "split of [2,4096,640] qkv-like along last dim", shape: [1, 64, 960], arg: 320, dim: -1, sizes: [320, 320, 320] },
      { name: "split of a transposed view", shape: [5, 7], arg: 2, dim: 0, sizes: [2, 2, 1], transposed: true },
    ])("$name", ({ shape, arg, dim, sizes, transposed }) => {
      tidy(() => {
        const x = input(shape, dtype, device, 4, transposed);
        const parts = split(x.t, arg, dim);
        expect(x.t.split(arg, dim).map((p) => p.shape)).toEqual(parts.map((p) => p.shape));
        checkPieces(x, shape, parts, sizes, normDim(dim, shape.length));
      });
    });

    test.each([
      { name: "Downsample2D asymmetric pad [0,1,0,1]", shape: [1, 3, 5, 7], pads: [0, 1, 0, 1] },
      { name: "conv-like pad [1,1,1,1] with value 2.5", shape: [2, 4, 6, 5], pads: [1, 1, 1, 1], value: 2.5 },
      { name: "negative pads crop", shape: [1, 3, 5, 7], pads: [-1, 2, 0, -2] },
      { name: "three dims, mixed signs", shape: [2, 3, 4], pads: [1, 2, -1, 0, 0, 1] },
      { name: "cropping everything of one dim", shape: [2, 3], pads: [-2, -1] },
      { name: "pad on a transposed view", shape: [3, 4, 6], pads: [2, 0, 1, 1], transposed: true },
      { name: "reflect [2,1,1,3]", shape: [1, 3, 5, 7], pads: [2, 1, 1, 3], mode: "reflect" as const },
      { name: "reflect last dim only", shape: [2, 6], pads: [3, 5], mode: "reflect" as const },
      { name: "replicate [1,2,3,0]", shape: [2, 3, 4, 5], pads: [1, 2, 3, 0], mode: "replicate" as const },
      { name: "replicate on a transposed view", shape: [2, 4, 3], pads: [2, 2, 1, 0], mode: "replicate" as const, transposed: true },
    ])("pad: $name", ({ shape, pads, value, mode, transposed }) => {
      tidy(() => {
        const x = input(shape, dtype, device, 5, transposed);
        const got = pad(x.t, pads, { mode, value });
        const nd = shape.length;
        const lo = new Array<number>(nd).fill(0);
        for (let i = 0; i < pads.length / 2; i++) lo[nd - 1 - i] = pads[2 * i]!;
        const outShape = shape.map((s, d) => {
          const i = nd - 1 - d;
          return s + (pads[2 * i] ?? 0) + (pads[2 * i + 1] ?? 0);
        });
        const st = stridesOf(shape);
        const fillRaw = tensor([value ?? 0], { dtype, device: "cpu" }).toRawArray()[0]!;
        const ref = mapRaw(
          outShape,
          x.raw,
          (idx) => {
            let o = 0;
            for (let d = 0; d < nd; d++) {
              let s = idx[d]! - lo[d]!;
              const n = shape[d]!;
              if (mode === "reflect") s = s < 0 ? -s : s >= n ? 2 * (n - 1) - s : s;
              else if (mode === "replicate") s = Math.min(Math.max(s, 0), n - 1);
              else if (s < 0 || s >= n) return -1;
              o += s * st[d]!;
            }
            return o;
          },
          fillRaw,
        );
        expect(got.shape).toEqual(outShape);
        expectRaw(got, ref, "pad");
      });
    });
  });

  test("movedim is a view with torch's dim order", () => {
    tidy(() => {
      const x = input([2, 3, 4, 5], "float32", device, 6);
      const cases: [number | number[], number | number[], number[]][] = [
        [1, -1, [2, 4, 5, 3]],
        [-1, 1, [2, 5, 3, 4]],
        [[0, 1], [2, 0], [3, 4, 2, 5]],
        [[3, 0], [0, 3], [5, 3, 4, 2]],
      ];
      for (const [s, d, shape] of cases) {
        const m = movedim(x.t, s, d);
        expect(m.shape).toEqual(shape);
        expect(m.storage).toBe(x.t.storage);
      }
      // values: movedim(1, -1) then back is the identity
      const m = movedim(x.t, 1, -1);
      expectRaw(movedim(m, -1, 1), x.raw, "movedim round trip");
      // element check: m[a,c,d,b] == x[a,b,c,d]
      const ref = mapRaw([2, 4, 5, 3], x.raw, ([a, c, d, b]) => a! * 60 + b! * 20 + c! * 5 + d!);
      expectRaw(m, ref, "movedim values");
    });
  });

  test("meta tensors get shapes without data", () => {
    tidy(() => {
      const a = tensor([1], { device: "cpu" }).to("meta").reshape([1, 1]).expand([2, 320]);
      const out = cat([a, a], 1);
      expect(out.shape).toEqual([2, 640]);
      expect(out.device).toBe("meta");
      expect(pad(out, [0, 1, 0, 1]).shape).toEqual([3, 641]);
    });
  });

  test("errors name the op and the shapes", () => {
    tidy(() => {
      const a = input([2, 3, 4], "float32", device, 7).t;
      const b = input([2, 5, 5], "float32", device, 8).t;
      expect(() => cat([a, b], 1)).toThrow(/cat: shapes must match except along dim 1: tensor 1 is \[2, 5, 5\]/);
      expect(() => cat([a, input([2, 3], "float32", device, 9).t], 0)).toThrow(/cat: shapes must match/);
      expect(() => cat([a, a.to("float16")], 0)).toThrow(/cat: dtype mismatch/);
      expect(() => cat([], 0)).toThrow(/non-empty/);
      expect(() => cat([a], 3)).toThrow(/cat: dim 3 is out of range/);
      expect(() => stack([a, b])).toThrow(/stack: all tensors must have the same shape/);
      expect(() => split(a, [1, 1], 1)).toThrow(/split: sections \[1, 1\] must be non-negative integers summing to 3/);
      expect(() => split(a, 0, 1)).toThrow(/split size must be a positive integer/);
      expect(() => chunk(a, 0)).toThrow(/chunks must be a positive integer/);
      expect(() => pad(a, [1])).toThrow(/pad: pads \[1\] must be integer pairs/);
      expect(() => pad(a, [-3, -2])).toThrow(/negative size/);
      expect(() => pad(a, [4, 0], { mode: "reflect" })).toThrow(/reflect pads \(4, 0\) must be smaller than dim 2 of size 4/);
      expect(() => pad(a, [-1, 0], { mode: "replicate" })).toThrow(/non-negative pads/);
      expect(() => movedim(a, [0, 1], [1])).toThrow(/same length/);
    });
  });
});

function checkPieces(x: Input, shape: readonly number[], parts: Tensor[], sizes: readonly number[], d: number): void {
  expect(parts.map((p) => p.shape[d])).toEqual([...sizes]);
  const st = stridesOf(shape);
  let at = 0;
  for (const [i, p] of parts.entries()) {
    expect(p.storage, `piece ${i} is a view`).toBe(x.t.storage);
    const ps: number[] = shape.slice();
    ps[d] = sizes[i]!;
    expect(p.shape).toEqual(ps);
    const start = at;
    const ref = mapRaw(ps, x.raw, (idx) => {
      const g = idx.slice();
      g[d] = idx[d]! + start;
      return flat(g, st);
    });
    expectRaw(p, ref, `piece ${i}`);
    at += sizes[i]!;
  }
}

test("tidy releases every temporary: CPU live bytes return to their start", () => {
  const start = cpuBackend.memory.live;
  tidy(() => {
    const a = input([2, 320, 8, 8], "float16", "cpu", 1);
    const b = input([2, 640, 8, 8], "float16", "cpu", 2);
    const c = cat([a.t, b.t], 1);
    const [u, v] = chunk(c, 2, 0);
    stack([u!, v!], 1);
    pad(c, [0, 1, 0, 1]);
    pad(c, [1, 1, 2, 2], { mode: "reflect" });
    pad(c, [1, 1, 2, 2], { mode: "replicate" });
    split(c.transpose(1, 3), [3, 5], 1);
    expect(cpuBackend.memory.live).toBeGreaterThan(start);
  });
  expect(cpuBackend.memory.live).toBe(start);
});
