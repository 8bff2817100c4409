// Tests for src/io/safetensors.ts and src/io/safetensors-index.ts: round trips of every dtype, the golden
// files (every index entry, through the shared golden helpers; the golden folder is required, not
// silently skipped), one case per kind of corruption, the atomic writer, windowed mapping of large files, and
// sharded checkpoints.

import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as nodePath from "node:path";
import type { DType } from "../../src/core/dtype.ts";
import {
  copyAligned,
  fromDType,
  isAligned,
  openSafetensors,
  parseSafetensors,
  requireDType,
  SAFETENSORS_DTYPES,
  safetensorsDTypeBytes,
  SafetensorsError,
  type SafetensorsDType,
  serializeSafetensors,
  toDType,
  writeSafetensors,
} from "../../src/io/safetensors.ts";
import { openCheckpoint, openSafetensorsIndex } from "../../src/io/safetensors-index.ts";
import { parsePythonJson } from "../../src/io/python-json.ts";
import { goldenDriven } from "../golden/registry.ts";
import { goldenDir, requireDir } from "../helpers/paths.ts";

const tmpRoot = fs.mkdtempSync(nodePath.join(os.tmpdir(), "bd-safetensors-"));
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));
let dirCount = 0;
function tmpDir(): string {
  const d = nodePath.join(tmpRoot, `case-${dirCount++}`);
  fs.mkdirSync(d);
  return d;
}

function randomBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = s & 0xff;
  }
  return out;
}

/** A file image with an arbitrary header (object or raw text) and data buffer. */
function image(header: unknown, data: Uint8Array | number = 0, headerLength?: bigint): Uint8Array {
  const json = new TextEncoder().encode(typeof header === "string" ? header : JSON.stringify(header));
  const body = typeof data === "number" ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + json.length + body.length);
  new DataView(out.buffer).setBigUint64(0, headerLength ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(body, 8 + json.length);
  return out;
}

function expectError(fn: () => unknown, file: string, phrase: string): SafetensorsError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(SafetensorsError);
  const err = caught as SafetensorsError;
  expect(err.message).toContain(file);
  expect(err.message).toContain(phrase);
  return err;
}

async function expectRejects(p: Promise<unknown>, file: string, phrase: string): Promise<void> {
  let caught: unknown;
  try {
    await p;
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(SafetensorsError);
  expect((caught as Error).message).toContain(file);
  expect((caught as Error).message).toContain(phrase);
}

describe("dtype names", () => {
  test("toDType / fromDType map the seven Tensor dtypes both ways", () => {
    const pairs: [SafetensorsDType, DType][] = [
      ["F32", "float32"], ["F16", "float16"], ["BF16", "bfloat16"], ["I32", "int32"],
      ["I64", "int64"], ["U8", "uint8"], ["BOOL", "bool"],
    ];
    for (const [s, d] of pairs) {
      expect(toDType(s)).toBe(d);
      expect(fromDType(d)).toBe(s);
    }
    for (const s of ["F64", "I16", "I8", "U16", "U32", "U64", "F8_E4M3", "F8_E5M2"] as const) {
      expect(toDType(s)).toBeNull();
    }
    expect(SAFETENSORS_DTYPES.length).toBe(15);
  });

  test("requireDType names the dtype it cannot convert", () => {
    expect(requireDType("BF16")).toBe("bfloat16");
    expectError(() => requireDType("F64", "w.safetensors"), "w.safetensors", "F64 has no Tensor dtype");
    expect(() => fromDType("float64" as DType)).toThrow("float64");
  });
});

describe("round trip", () => {
  function everyDType(): Record<string, { dtype: SafetensorsDType; shape: number[]; data: Uint8Array }> {
    const tensors: Record<string, { dtype: SafetensorsDType; shape: number[]; data: Uint8Array }> = {};
    SAFETENSORS_DTYPES.forEach((dtype, i) => {
      const shape = [2, i + 1, 3];
      const n = shape.reduce((a, b) => a * b, 1) * safetensorsDTypeBytes(dtype);
      tensors[`t.${dtype.toLowerCase()}`] = { dtype, shape, data: randomBytes(n, i + 7) };
    });
    tensors["scalar"] = { dtype: "F32", shape: [], data: new Uint8Array(new Float32Array([3.5]).buffer) };
    tensors["empty"] = { dtype: "F16", shape: [4, 0, 2], data: new Uint8Array(0) };
    tensors["empty_scalar_neighbour"] = { dtype: "I64", shape: [], data: new Uint8Array(new BigInt64Array([-9n]).buffer) };
    tensors["zero_len"] = { dtype: "U8", shape: [0], data: new Uint8Array(0) };
    return tensors;
  }
  const metadata = { format: "pt", note: "ünïcödé ✓", empty: "" };

  function check(file: ReturnType<typeof parseSafetensors>, tensors: ReturnType<typeof everyDType>): void {
    expect(file.names()).toEqual(Object.keys(tensors));
    expect(file.metadata).toEqual(metadata);
    expect([...file.entries()].map((e) => e.name)).toEqual(Object.keys(tensors));
    for (const [name, t] of Object.entries(tensors)) {
      expect(file.has(name)).toBe(true);
      const e = file.get(name);
      expect(e.name).toBe(name);
      expect(e.dtype).toBe(t.dtype);
      expect(e.shape).toEqual(t.shape);
      expect(e.data).toEqual(t.data);
    }
  }

  test("every dtype, metadata, 0-d and zero-size tensors, in memory", () => {
    const tensors = everyDType();
    const bytes = serializeSafetensors(tensors, metadata);
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect((8 + n) % 8).toBe(0); // data buffer aligned to 8
    const file = parseSafetensors(bytes, "mem.safetensors");
    check(file, tensors);
    expect(file.mapped).toBe(false);
    expect(file.get("scalar").data.buffer).toBe(bytes.buffer); // zero copy
    expect(new Float32Array(copyAligned(file.get("scalar")).buffer)[0]).toBe(3.5);
  });

  test("every dtype through writeSafetensors / openSafetensors", async () => {
    const tensors = everyDType();
    const path = nodePath.join(tmpDir(), "all.safetensors");
    await writeSafetensors(path, tensors, metadata);
    const file = openSafetensors(path);
    check(file, tensors);
    expect(file.path).toBe(path);
    expect(fs.readFileSync(path)).toEqual(Buffer.from(serializeSafetensors(tensors, metadata)));
  });

  test("typed-array inputs of any kind, and views into a larger buffer", () => {
    const big = new Float32Array([0, 1, 2, 3, 4, 5, 6, 7]);
    const bytes = serializeSafetensors({
      mid: { dtype: "F32", shape: [2, 2], data: big.subarray(2, 6) },
      ids: { dtype: "I64", shape: [3], data: new BigInt64Array([1n, -2n, 3n]) },
      half: { dtype: "F16", shape: [2], data: new Uint16Array([0x3c00, 0xc000]) },
    });
    const f = parseSafetensors(bytes);
    const mid = f.get("mid");
    expect(isAligned(mid)).toBe(true);
    expect([...new Float32Array(mid.data.buffer, mid.data.byteOffset, 4)]).toEqual([2, 3, 4, 5]);
    expect([...new BigInt64Array(copyAligned(f.get("ids")).buffer)]).toEqual([1n, -2n, 3n]);
    expect([...new Uint16Array(copyAligned(f.get("half")).buffer)]).toEqual([0x3c00, 0xc000]);
  });

  test("no tensors, no metadata", () => {
    const f = parseSafetensors(serializeSafetensors({}), "none.safetensors");
    expect(f.names()).toEqual([]);
    expect(f.metadata).toEqual({});
  });

  test("foreign files: unpadded header, space padding, unaligned data", () => {
    const data = new Uint8Array(new Float32Array([1.5, -2]).buffer);
    const header = { w: { dtype: "F32", shape: [2], data_offsets: [0, 8] } };
    for (const text of [JSON.stringify(header) + "   ", JSON.stringify(header) + " "]) {
      const f = parseSafetensors(image(text, data), "foreign.safetensors");
      const w = f.get("w");
      expect(w.data).toEqual(data);
      if (!isAligned(w)) expect(w.data.byteOffset % 4).not.toBe(0);
      expect([...new Float32Array(copyAligned(w).buffer)]).toEqual([1.5, -2]);
    }
  });

  test("get() of a missing tensor names the file and the tensor", () => {
    const f = parseSafetensors(serializeSafetensors({}), "model.safetensors");
    expectError(() => f.get("unet.conv_in.weight"), "model.safetensors", '"unet.conv_in.weight"');
    expect(f.has("unet.conv_in.weight")).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------

const TORCH_TO_SAFETENSORS: Record<string, SafetensorsDType> = {
  float64: "F64", float32: "F32", float16: "F16", bfloat16: "BF16", int64: "I64", int32: "I32",
  int16: "I16", int8: "I8", uint8: "U8", bool: "BOOL",
};

/** The data bytes of `name` read straight from the file: header length, JSON header, data_offsets. */
function rawTensorBytes(file: string, name: string): Uint8Array {
  const bytes = fs.readFileSync(file);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString("utf8")) as Record<string, { data_offsets: [number, number] }>;
  const [begin, end] = header[name]!.data_offsets;
  return new Uint8Array(bytes.buffer, bytes.byteOffset + 8 + n + begin, end - begin);
}

describe("golden files", () => {
  requireDir(goldenDir, "the golden folder");
  const index = goldenDriven(import.meta.path); // every entry: names, dtypes, shapes and metadata

  test("index.json lists files", () => {
    expect(index.length).toBeGreaterThan(0);
  });

  for (const item of index) {
    test(`${item.file}: names, dtypes, shapes and metadata match index.json; every tensor's bytes are the file's`, () => {
      const path = nodePath.join(goldenDir, item.file);
      const f = openSafetensors(path);
      expect(f.names().slice().sort()).toEqual(Object.keys(item.tensors).sort());
      for (const [name, want] of Object.entries(item.tensors)) {
        const e = f.get(name);
        expect(e.dtype).toBe(TORCH_TO_SAFETENSORS[want.dtype] ?? `unmapped torch dtype ${want.dtype}`);
        expect(e.shape).toEqual(want.shape);
        expect(e.data.byteLength).toBe(want.shape.reduce((a, b) => a * b, 1) * safetensorsDTypeBytes(e.dtype));
        expect(Buffer.from(e.data).equals(Buffer.from(rawTensorBytes(path, name))), name).toBe(true);
      }
      expect(parsePythonJson(f.metadata.golden!)).toEqual(item.meta);
    });
  }

  test("every .safetensors under the golden folder (model folders too) opens and validates", () => {
    const found: string[] = [];
    const walk = (dir: string): void => {
      for (const d of fs.readdirSync(dir, { withFileTypes: true })) {
        const p = nodePath.join(dir, d.name);
        if (d.isDirectory()) walk(p);
        else if (d.name.endsWith(".safetensors")) found.push(p);
      }
    };
    walk(goldenDir);
    expect(found.length).toBeGreaterThanOrEqual(index.length);
    for (const p of found) {
      const f = openSafetensors(p);
      for (const e of f.entries()) expect(e.data.byteLength % safetensorsDTypeBytes(e.dtype)).toBe(0);
    }
  });

  const withAlphas = index.find((x) => "alphas_cumprod" in x.tensors);
  test.skipIf(!withAlphas)(
    `a golden tensor's values are read correctly: alphas_cumprod is decreasing in (0, 1)${withAlphas ? "" : " (skipped: no file of this golden folder holds alphas_cumprod)"}`,
    () => {
      const e = openSafetensors(nodePath.join(goldenDir, withAlphas!.file)).get("alphas_cumprod");
      const a = new Float32Array(copyAligned(e).buffer);
      expect(a.length).toBeGreaterThan(1);
      for (let i = 0; i < a.length; i++) {
        expect(a[i]).toBeGreaterThan(0);
        expect(a[i]).toBeLessThan(1);
        if (i > 0) expect(a[i]).toBeLessThan(a[i - 1]);
      }
    },
  );
});

// ---------------------------------------------------------------------------------------------

describe("corrupt files are rejected with a named SafetensorsError", () => {
  const F = "bad.safetensors";
  const ok = { w: { dtype: "F32", shape: [2], data_offsets: [0, 8] } };
  const parse = (bytes: Uint8Array) => () => parseSafetensors(bytes, F);

  test("empty file on disk", () => {
    const p = nodePath.join(tmpDir(), "empty.safetensors");
    fs.writeFileSync(p, "");
    expectError(() => openSafetensors(p), "empty.safetensors", "shorter than the 8-byte");
  });

  test("file shorter than 8 bytes", () => {
    expectError(parse(new Uint8Array(5)), F, "shorter than the 8-byte");
  });

  test("truncated file on disk", async () => {
    const p = nodePath.join(tmpDir(), "trunc.safetensors");
    await writeSafetensors(p, { a: { dtype: "F32", shape: [4], data: new Float32Array(4) } });
    fs.truncateSync(p, fs.statSync(p).size - 3);
    expectError(() => openSafetensors(p), "trunc.safetensors", "truncated");
  });

  test("header length past the end of the file", () => {
    expectError(parse(image(ok, 8, 1000n)), F, "runs past the end of the file");
  });

  test("absurd header length (> 100 MB)", () => {
    expectError(parse(image(ok, 8, 2n ** 40n)), F, "exceeds the 100000000-byte limit");
    expectError(parse(image(ok, 8, 2n ** 64n - 1n)), F, "exceeds");
  });

  test("header not valid JSON", () => {
    expectError(parse(image('{"w": {"dtype": "F32",', 8)), F, "header is not valid JSON");
    expectError(parse(image("", 0)), F, "header is not valid JSON");
  });

  test("header not valid UTF-8", () => {
    const bytes = image('{"w":1}', 0);
    bytes[10] = 0xff;
    expectError(parse(bytes), F, "not valid UTF-8");
  });

  test("header JSON not an object", () => {
    expectError(parse(image("[1, 2]", 0)), F, "header JSON is not an object");
    expectError(parse(image("null", 0)), F, "header JSON is not an object");
    expectError(parse(image("42", 0)), F, "header JSON is not an object");
  });

  test("header not starting with '{'", () => {
    expectError(parse(image(" " + JSON.stringify(ok), 8)), F, "must begin with '{'");
  });

  test("entry not an object", () => {
    expectError(parse(image({ w: [1, 2] }, 0)), F, "entry is not an object");
  });

  for (const key of ["dtype", "shape", "data_offsets"]) {
    test(`entry missing ${key}`, () => {
      const entry: Record<string, unknown> = { ...ok.w };
      delete entry[key];
      const err = expectError(parse(image({ w: entry }, 8)), F, `missing "${key}"`);
      expect(err.message).toContain('"w"');
    });
  }

  test("entry with wrong types", () => {
    expectError(parse(image({ w: { ...ok.w, dtype: 4 } }, 8)), F, '"dtype" is not a string');
    expectError(parse(image({ w: { ...ok.w, shape: "2" } }, 8)), F, '"shape" must be an array');
    expectError(parse(image({ w: { ...ok.w, data_offsets: [0] } }, 8)), F, '"data_offsets" must be [begin, end]');
    expectError(parse(image({ w: { ...ok.w, data_offsets: [0, "8"] } }, 8)), F, '"data_offsets" must be');
    expectError(parse(image({ w: { ...ok.w, data_offsets: [-8, 0] } }, 8)), F, '"data_offsets" must be');
  });

  test("negative or non-integer dims", () => {
    expectError(parse(image({ w: { ...ok.w, shape: [-2] } }, 8)), F, "non-negative integers");
    expectError(parse(image({ w: { ...ok.w, shape: [2.5] } }, 8)), F, "non-negative integers");
    expectError(parse(image({ w: { ...ok.w, shape: [null] } }, 8)), F, "non-negative integers");
  });

  test("unknown dtype", () => {
    expectError(parse(image({ w: { ...ok.w, dtype: "F128" } }, 8)), F, 'unknown dtype "F128"');
  });

  test("shape/size mismatch", () => {
    expectError(parse(image({ w: { ...ok.w, shape: [3] } }, 8)), F, "shape/size mismatch");
    expectError(parse(image({ w: { ...ok.w, shape: [2, 2 ** 52] } }, 8)), F, "too large");
  });

  test("end offset past the data buffer", () => {
    expectError(parse(image({ w: { dtype: "F32", shape: [2], data_offsets: [8, 16] } }, 8)), F,
      "past the end of the data buffer");
  });

  test("begin > end", () => {
    expectError(parse(image({ w: { dtype: "U8", shape: [0], data_offsets: [8, 0] } }, 8)), F,
      "begin 8 is past end 0");
  });

  test("overlapping byte ranges", () => {
    const header = {
      a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
      b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
    };
    const err = expectError(parse(image(header, 12)), F, "overlapping byte ranges");
    expect(err.message).toContain('"a"');
    expect(err.message).toContain('"b"');
    const inside = { a: header.a, z: { dtype: "F32", shape: [0], data_offsets: [4, 4] } };
    expectError(parse(image(inside, 8)), F, "overlapping");
  });

  test("hole between tensors", () => {
    const header = {
      a: { dtype: "F32", shape: [1], data_offsets: [0, 4] },
      b: { dtype: "F32", shape: [1], data_offsets: [8, 12] },
    };
    const err = expectError(parse(image(header, 12)), F, "not contiguous");
    expect(err.message).toContain("InvalidOffset");
    expect(err.message).toContain("[4, 8)");
    const late = { b: header.b };
    expectError(parse(image(late, 12)), F, "[0, 8)");
  });

  test("trailing bytes after the last tensor", () => {
    expectError(parse(image(ok, 12)), F, "4 bytes after the last tensor");
  });

  test("duplicate names (the lost entry shows up as a hole)", () => {
    const text = '{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},' +
      '"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}';
    expectError(parse(image(text, 8)), F, "not contiguous");
  });

  test("__metadata__ values that are not strings", () => {
    const err = expectError(parse(image({ __metadata__: { total: 5 }, ...ok }, 8)), F, "__metadata__ value");
    expect(err.message).toContain('"total"');
    expectError(parse(image({ __metadata__: ["a"], ...ok }, 8)), F, "__metadata__ is not an object");
  });

  test("missing file and directory", () => {
    const d = tmpDir();
    expectError(() => openSafetensors(nodePath.join(d, "nope.safetensors")), "nope.safetensors", "cannot open file");
    expectError(() => openSafetensors(d), d, "is a directory");
  });
});

// ---------------------------------------------------------------------------------------------

describe("openSafetensors mapping", () => {
  test("zero copy: entries view one mapping", async () => {
    const p = nodePath.join(tmpDir(), "m.safetensors");
    await writeSafetensors(p, {
      a: { dtype: "F32", shape: [3], data: new Float32Array([1, 2, 3]) },
      b: { dtype: "U8", shape: [5], data: new Uint8Array([1, 2, 3, 4, 5]) },
    });
    const f = openSafetensors(p);
    const a = f.get("a");
    const b = f.get("b");
    expect(a.data.buffer).toBe(b.data.buffer);
    expect(a.data.buffer.byteLength).toBe(fs.statSync(p).size);
    // The mapping is private: writing into it leaves the file alone.
    b.data[0] = 99;
    expect(openSafetensors(p).get("b").data[0]).toBe(1);
  });

  test("a read-only file in a read-only folder opens (mapped, or read when mapping is refused)", async () => {
    const d = tmpDir();
    const p = nodePath.join(d, "ro.safetensors");
    await writeSafetensors(p, { a: { dtype: "I32", shape: [2], data: new Int32Array([7, -7]) } });
    fs.chmodSync(p, 0o444);
    fs.chmodSync(d, 0o555);
    try {
      const f = openSafetensors(p);
      expect([...new Int32Array(copyAligned(f.get("a")).buffer)]).toEqual([7, -7]);
    } finally {
      fs.chmodSync(d, 0o755);
    }
  });

  test("replacing a mapped file through writeSafetensors keeps old views valid", async () => {
    const p = nodePath.join(tmpDir(), "swap.safetensors");
    await writeSafetensors(p, { a: { dtype: "U8", shape: [4], data: new Uint8Array([1, 2, 3, 4]) } });
    const old = openSafetensors(p);
    await writeSafetensors(p, { a: { dtype: "U8", shape: [2], data: new Uint8Array([9, 9]) } });
    expect([...old.get("a").data]).toEqual([1, 2, 3, 4]);
    expect([...openSafetensors(p).get("a").data]).toEqual([9, 9]);
  });

  test("files larger than one mapping are mapped in windows of whole tensors", async () => {
    const tensors: Record<string, { dtype: SafetensorsDType; shape: number[]; data: Uint8Array }> = {};
    for (let i = 0; i < 9; i++) {
      const n = 10_000 * (i + 1) + (i % 3);
      tensors[`t${i}`] = { dtype: "U8", shape: [n], data: randomBytes(n, i + 1) };
    }
    tensors["h"] = { dtype: "F16", shape: [3], data: randomBytes(6, 99) };
    tensors["z"] = { dtype: "F32", shape: [0], data: new Uint8Array(0) };
    const p = nodePath.join(tmpDir(), "win.safetensors");
    await writeSafetensors(p, tensors);
    const f = openSafetensors(p, { maxMapBytes: 131072 });
    const whole = openSafetensors(p);
    expect(f.names()).toEqual(whole.names());
    const buffers = new Set<ArrayBufferLike>();
    for (const e of f.entries()) {
      expect(e.data).toEqual(tensors[e.name].data);
      // byteOffset keeps the file offset's alignment
      expect(e.data.byteOffset % 8).toBe(whole.get(e.name).data.byteOffset % 8);
      buffers.add(e.data.buffer);
    }
    expect(buffers.size).toBeGreaterThan(1);
    expectError(() => openSafetensors(p, { maxMapBytes: 60_000 }), "win.safetensors", "more than one mapping");
  });

  test("a sparse file over 4 GiB opens (tensors spread over several mappings)", () => {
    const p = nodePath.join(tmpDir(), "big.safetensors");
    const sizes = [2 ** 31, 2 ** 31, 2 ** 31 + 8];
    let off = 0;
    const header: Record<string, unknown> = {};
    sizes.forEach((s, i) => {
      header[`t${i}`] = { dtype: "U8", shape: [s], data_offsets: [off, off + s] };
      off += s;
    });
    const head = image(header, 0);
    const fd = fs.openSync(p, "w");
    try {
      fs.writeSync(fd, head);
      fs.ftruncateSync(fd, head.length + off);
      fs.writeSync(fd, new Uint8Array([42]), 0, 1, head.length + off - 1);
    } finally {
      fs.closeSync(fd);
    }
    const f = openSafetensors(p);
    const last = f.get("t2");
    expect(last.data.length).toBe(sizes[2]);
    expect(last.data[last.data.length - 1]).toBe(42);
    expect(f.get("t0").data[0]).toBe(0);
    fs.rmSync(p);
  });
});

describe("writeSafetensors is atomic", () => {
  const a = { a: { dtype: "F32" as const, shape: [2], data: new Float32Array([1, 2]) } };

  test("success leaves only the target file", async () => {
    const d = tmpDir();
    await writeSafetensors(nodePath.join(d, "ok.safetensors"), a, { k: "v" });
    expect(fs.readdirSync(d)).toEqual(["ok.safetensors"]);
  });

  test("unserializable input: error names the file, nothing is written", async () => {
    const d = tmpDir();
    const p = nodePath.join(d, "bad.safetensors");
    await expectRejects(writeSafetensors(p, { a: { dtype: "F32", shape: [3], data: new Float32Array(2) } }),
      "bad.safetensors", "shape/size mismatch");
    await expectRejects(writeSafetensors(p, { a: { dtype: "F99" as SafetensorsDType, shape: [0], data: new Uint8Array(0) } }),
      "bad.safetensors", "unknown dtype");
    await expectRejects(writeSafetensors(p, { a: { dtype: "U8", shape: [-1], data: new Uint8Array(0) } }),
      "bad.safetensors", "non-negative integers");
    await expectRejects(writeSafetensors(p, { a: { dtype: "U8", shape: [1], data: [1] as unknown as Uint8Array } }),
      "bad.safetensors", "not an ArrayBufferView");
    await expectRejects(writeSafetensors(p, a, { n: 1 as unknown as string }), "bad.safetensors", "not a string");
    await expectRejects(writeSafetensors(p, { __metadata__: a.a }), "bad.safetensors", "reserved");
    expect(fs.readdirSync(d)).toEqual([]);
  });

  test("failure after the temp file was written (rename onto a folder) removes the temp file", async () => {
    const d = tmpDir();
    const p = nodePath.join(d, "target.safetensors");
    fs.mkdirSync(p);
    fs.writeFileSync(nodePath.join(p, "keep"), "x");
    await expectRejects(writeSafetensors(p, a), "target.safetensors", "write failed");
    expect(fs.readdirSync(d)).toEqual(["target.safetensors"]);
    expect(fs.readdirSync(p)).toEqual(["keep"]);
  });

  test("a failed write leaves an existing file untouched", async () => {
    const d = tmpDir();
    const p = nodePath.join(d, "keep.safetensors");
    await writeSafetensors(p, a);
    const before = fs.readFileSync(p);
    await expectRejects(writeSafetensors(p, { a: { dtype: "F32", shape: [9], data: new Float32Array(1) } }),
      "keep.safetensors", "mismatch");
    expect(fs.readFileSync(p)).toEqual(before);
    expect(fs.readdirSync(d)).toEqual(["keep.safetensors"]);
  });

  test("serializeSafetensors errors are SafetensorsErrors too", () => {
    expectError(() => serializeSafetensors({ a: { dtype: "I64", shape: [2], data: new BigInt64Array(1) } }),
      "<serialize>", "shape/size mismatch");
  });
});

// ---------------------------------------------------------------------------------------------

describe("sharded checkpoints", () => {
  const shard1 = {
    "down.weight": { dtype: "F32" as const, shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) },
    "down.bias": { dtype: "F16" as const, shape: [2], data: new Uint16Array([0x3c00, 0x4000]) },
  };
  const shard2 = {
    "up.weight": { dtype: "BF16" as const, shape: [3], data: new Uint16Array([1, 2, 3]) },
    "step": { dtype: "I64" as const, shape: [], data: new BigInt64Array([12n]) },
  };
  const S1 = "model-00001-of-00002.safetensors";
  const S2 = "model-00002-of-00002.safetensors";

  async function make(weightMap: Record<string, string>, extra: Record<string, unknown> = {}): Promise<string> {
    const d = tmpDir();
    await writeSafetensors(nodePath.join(d, S1), shard1);
    await writeSafetensors(nodePath.join(d, S2), shard2);
    const index = nodePath.join(d, "model.safetensors.index.json");
    fs.writeFileSync(index, JSON.stringify({ metadata: { total_size: 42 }, weight_map: weightMap, ...extra }));
    return index;
  }
  const fullMap = { "down.weight": S1, "up.weight": S2, "down.bias": S1, step: S2 };

  test("two shards read back through openCheckpoint", async () => {
    const indexPath = await make(fullMap);
    const ck = openCheckpoint(indexPath);
    expect(ck.path).toBe(indexPath);
    expect(ck.names()).toEqual(Object.keys(fullMap));
    expect(ck.metadata).toEqual({ total_size: 42 });
    expect(ck.has("step")).toBe(true);
    expect(ck.has("nope")).toBe(false);
    const all = { ...shard1, ...shard2 } as Record<string, { dtype: SafetensorsDType; shape: number[]; data: ArrayBufferView }>;
    for (const name of ck.names()) {
      const e = ck.get(name);
      expect(e.dtype).toBe(all[name].dtype);
      expect(e.shape).toEqual(all[name].shape);
      const src = all[name].data;
      expect(e.data).toEqual(new Uint8Array(src.buffer, src.byteOffset, src.byteLength));
    }
    expect([...ck.entries()].map((e) => e.name)).toEqual(Object.keys(fullMap));
    expectError(() => ck.get("nope"), "model.safetensors.index.json", '"nope"');

    const sharded = openSafetensorsIndex(indexPath);
    expect(sharded.files.map((f) => nodePath.basename(f))).toEqual([S1, S2]);
    expect(sharded.shardOf("step").get("step")).toBe(sharded.get("step"));
    expect(sharded.shardOf("down.bias")).toBe(sharded.shardOf("down.weight")); // each shard opened once

    const single = openCheckpoint(nodePath.join(nodePath.dirname(indexPath), S2));
    expect(single.names()).toEqual(["up.weight", "step"]);
  });

  test("a weight_map entry missing from its shard names the tensor and the shard", async () => {
    const indexPath = await make({ ...fullMap, "up.weight": S1 });
    const err = expectError(() => openCheckpoint(indexPath), "model.safetensors.index.json", '"up.weight"');
    expect(err.message).toContain(S1);
    expect(err.message).toContain("no such tensor");
  });

  test("a missing shard file", async () => {
    const indexPath = await make({ ...fullMap, extra: "model-00003-of-00003.safetensors" });
    const err = expectError(() => openCheckpoint(indexPath), "model.safetensors.index.json", "cannot open file");
    expect(err.message).toContain("model-00003-of-00003.safetensors");
  });

  test("a corrupt shard is reported through the index", async () => {
    const indexPath = await make(fullMap);
    fs.truncateSync(nodePath.join(nodePath.dirname(indexPath), S2), 4);
    const err = expectError(() => openCheckpoint(indexPath), "model.safetensors.index.json", "shorter than the 8-byte");
    expect(err.message).toContain(S2);
  });

  test("malformed index files", async () => {
    const d = tmpDir();
    const p = nodePath.join(d, "x.safetensors.index.json");
    fs.writeFileSync(p, "{not json");
    expectError(() => openSafetensorsIndex(p), "x.safetensors.index.json", "not valid JSON");
    fs.writeFileSync(p, JSON.stringify({ metadata: {} }));
    expectError(() => openSafetensorsIndex(p), "x.safetensors.index.json", 'no "weight_map"');
    fs.writeFileSync(p, JSON.stringify({ weight_map: { a: 3 } }));
    expectError(() => openSafetensorsIndex(p), "x.safetensors.index.json", "not a file name");
    fs.writeFileSync(p, JSON.stringify({ weight_map: { a: "../elsewhere.safetensors" } }));
    expectError(() => openSafetensorsIndex(p), "x.safetensors.index.json", "outside the index's folder");
    expectError(() => openSafetensorsIndex(nodePath.join(d, "none.json")), "none.json", "cannot read index");
    const noMeta = await make(fullMap, { metadata: undefined });
    expect(openSafetensorsIndex(noMeta).metadata).toEqual({});
  });
});
