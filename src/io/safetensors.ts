// The safetensors format: reading (memory-mapped with Bun.mmap, zero copy, validated fully at open),
// parsing an in-memory buffer, serializing, and an atomic file writer; the mapping between the format's
// dtype names and our Tensor dtypes; the TensorSource interface that sharded checkpoints
// (safetensors-index.ts) implement too.
//
// Layout (https://github.com/huggingface/safetensors#format):
//   [u64 little-endian N][N bytes of UTF-8 JSON header, may end in spaces][data buffer]
//   header = { "__metadata__"?: {string: string}, name: { dtype, shape, data_offsets: [begin, end] } }
// Offsets are relative to the start of the data buffer. Like the reference (Rust) implementation we
// require the tensors' byte ranges to tile the data buffer exactly: no overlaps, no holes, no trailing
// bytes. Data is little-endian (every platform we run on).
//
// Zero copy: a TensorEntry's `data` is a view into the file mapping. Its byteOffset is the tensor's
// offset in the file, which need not be a multiple of the element size (our writer aligns the buffer
// start to 8 bytes, other writers may not): use `copyAligned` before building a typed array when
// `isAligned(entry)` is false. Mappings are private (copy-on-write): writing into `data` never changes
// the file. A mapping stays valid while any view of it is alive; replacing the file through
// `writeSafetensors` (rename) is safe, truncating it in place is not (SIGBUS).

import * as fs from "node:fs";
import type { DType } from "../core/dtype.ts";

export type SafetensorsDType =
  | "F64" | "F32" | "F16" | "BF16"
  | "I64" | "I32" | "I16" | "I8" | "U8" | "BOOL" | "U16" | "U32" | "U64"
  | "F8_E4M3" | "F8_E5M2";

const ITEM_BYTES: Record<SafetensorsDType, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2,
  I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1, U16: 2, U32: 4, U64: 8,
  F8_E4M3: 1, F8_E5M2: 1,
};

/** Every dtype name of the format. */
export const SAFETENSORS_DTYPES = Object.keys(ITEM_BYTES) as readonly SafetensorsDType[];

export function isSafetensorsDType(value: unknown): value is SafetensorsDType {
  return typeof value === "string" && Object.hasOwn(ITEM_BYTES, value);
}

/** Bytes per element of a format dtype. */
export function safetensorsDTypeBytes(d: SafetensorsDType): number {
  return ITEM_BYTES[d];
}

const TO_DTYPE: Partial<Record<SafetensorsDType, DType>> = {
  F32: "float32", F16: "float16", BF16: "bfloat16", I32: "int32", I64: "int64", U8: "uint8", BOOL: "bool",
};
const FROM_DTYPE: Record<DType, SafetensorsDType> = {
  float32: "F32", float16: "F16", bfloat16: "BF16", int32: "I32", int64: "I64", uint8: "U8", bool: "BOOL",
};

/** Our Tensor dtype for a format dtype, or null when none exists (F64, I16, F8_*, ...: raw bytes only). */
export function toDType(d: SafetensorsDType): DType | null {
  return TO_DTYPE[d] ?? null;
}

/** Like toDType, but throws a SafetensorsError naming `where` (file or tensor) and the dtype. */
export function requireDType(d: SafetensorsDType, where = "safetensors"): DType {
  const t = TO_DTYPE[d];
  if (t === undefined) {
    throw new SafetensorsError(where, `dtype ${d} has no Tensor dtype (it is readable only as raw bytes; ` +
      `supported: ${Object.keys(TO_DTYPE).join(", ")})`);
  }
  return t;
}

/** The format's name for one of our dtypes. */
export function fromDType(d: DType): SafetensorsDType {
  const s = Object.hasOwn(FROM_DTYPE, d) ? FROM_DTYPE[d] : undefined;
  if (s === undefined) throw new TypeError(`dtype ${JSON.stringify(d)} has no safetensors name`);
  return s;
}

/** Every problem with a safetensors file or input; the message starts with the file's path. */
export class SafetensorsError extends Error {
  override name = "SafetensorsError";
  constructor(readonly path: string, readonly problem: string, options?: { cause?: unknown }) {
    super(`${path}: ${problem}`, options);
  }
}

export interface TensorEntry {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** Zero-copy view of the tensor's bytes inside the file mapping; may be unaligned (see copyAligned). */
  data: Uint8Array;
}

/** What both a single file and a sharded checkpoint offer. */
export interface TensorSource {
  readonly path: string;
  readonly metadata: Readonly<Record<string, unknown>>;
  /** Tensor names in header (or weight_map) order. */
  names(): string[];
  has(name: string): boolean;
  /** Throws SafetensorsError naming the file and the tensor if it is missing. */
  get(name: string): TensorEntry;
  entries(): IterableIterator<TensorEntry>;
}

export interface SafetensorsFile extends TensorSource {
  readonly path: string;
  /** The __metadata__ object ({} if absent). */
  readonly metadata: Record<string, string>;
  /** True when tensor data lives in a file mapping; false for parsed buffers and read fallbacks. */
  readonly mapped: boolean;
}

/** A fresh copy of the tensor's bytes at offset 0 of its own ArrayBuffer (aligned for any dtype). */
export function copyAligned(entry: TensorEntry): Uint8Array {
  return entry.data.slice();
}

/** Whether `data.byteOffset` is a multiple of the element size (a typed array can view it directly). */
export function isAligned(entry: TensorEntry): boolean {
  return entry.data.byteOffset % ITEM_BYTES[entry.dtype] === 0;
}

// ---------------------------------------------------------------------------------------------
// Reading

/** Header lengths above this are rejected as corrupt (the reference implementation uses the same). */
export const MAX_HEADER_BYTES = 100_000_000;
/** The largest single mapping Bun.mmap (a JS typed array) supports; bigger files are mapped in windows. */
const MAX_MAP_BYTES = 2 ** 32;
/** Window starts are rounded down to this, so byteOffset % itemsize matches the file offset's. */
const WINDOW_ALIGN = 65536;

interface RawEntry { name: string; dtype: SafetensorsDType; shape: number[]; begin: number; end: number }
interface ParsedHeader { metadata: Record<string, string>; entries: RawEntry[] }

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Reads and checks the 8-byte length prefix; returns the header length N. */
function headerLength(prefix: Uint8Array, fileBytes: number, path: string): number {
  if (fileBytes < 8) {
    throw new SafetensorsError(path, `file is ${fileBytes} bytes, shorter than the 8-byte header length ` +
      `prefix (empty or truncated file)`);
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw new SafetensorsError(path, `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit ` +
      `(corrupt file or not a safetensors file)`);
  }
  if (8n + n > BigInt(fileBytes)) {
    throw new SafetensorsError(path, `header length ${n} runs past the end of the file (${fileBytes} bytes)`);
  }
  return Number(n);
}

function kind(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "an array" : typeof v;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function brief(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

function isIndex(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/** Parses and validates the JSON header against a data buffer of `dataBytes` bytes. O(n log n) in tensors. */
function parseHeader(header: Uint8Array, dataBytes: number, path: string): ParsedHeader {
  const fail = (problem: string): never => {
    throw new SafetensorsError(path, problem);
  };
  let text = "";
  try {
    text = utf8.decode(header);
  } catch {
    fail("header is not valid UTF-8");
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    fail(`header is not valid JSON (${(e as Error).message})`);
  }
  if (!isObject(json)) fail(`header JSON is not an object (got ${kind(json)})`);
  if (header[0] !== 0x7b) fail(`header must begin with '{' (found byte 0x${header[0].toString(16)})`);
  const obj = json as Record<string, unknown>;

  let metadata: Record<string, string> = {};
  const entries: RawEntry[] = [];
  for (const name of Object.keys(obj)) {
    const v = obj[name];
    if (name === "__metadata__") {
      if (v === null) continue;
      if (!isObject(v)) fail(`__metadata__ is not an object (got ${kind(v)})`);
      for (const [k, mv] of Object.entries(v as Record<string, unknown>)) {
        if (typeof mv !== "string") {
          fail(`__metadata__ value for key ${JSON.stringify(k)} is not a string (got ${kind(mv)}: ${brief(mv)})`);
        }
      }
      metadata = v as Record<string, string>;
      continue;
    }
    const at = `tensor ${JSON.stringify(name)}`;
    if (!isObject(v)) fail(`${at}: entry is not an object (got ${kind(v)})`);
    const e = v as Record<string, unknown>;
    for (const key of ["dtype", "shape", "data_offsets"]) {
      if (!Object.hasOwn(e, key)) fail(`${at}: entry is missing "${key}"`);
    }
    const dtype = e.dtype;
    if (typeof dtype !== "string") fail(`${at}: "dtype" is not a string (got ${kind(dtype)})`);
    if (!isSafetensorsDType(dtype)) {
      fail(`${at}: unknown dtype ${JSON.stringify(dtype)} (known: ${SAFETENSORS_DTYPES.join(", ")})`);
    }
    const shape = e.shape;
    if (!Array.isArray(shape) || !shape.every(isIndex)) {
      fail(`${at}: "shape" must be an array of non-negative integers (got ${brief(shape)})`);
    }
    const offsets = e.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isIndex)) {
      fail(`${at}: "data_offsets" must be [begin, end] with non-negative integers (got ${brief(offsets)})`);
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end) fail(`${at}: data_offsets begin ${begin} is past end ${end}`);
    const dims = shape as number[];
    let numel = 1;
    for (const d of dims) numel *= d;
    const bytes = numel * ITEM_BYTES[dtype as SafetensorsDType];
    if (!Number.isSafeInteger(bytes)) fail(`${at}: shape ${brief(dims)} is too large`);
    if (bytes !== end - begin) {
      fail(`${at}: shape/size mismatch: ${dtype}${brief(dims)} needs ${bytes} bytes but data_offsets ` +
        `[${begin}, ${end}] span ${end - begin}`);
    }
    if (end > dataBytes) {
      fail(`${at}: data_offsets end ${end} is past the end of the data buffer (${dataBytes} bytes): ` +
        `the file is truncated or the offset is out of range`);
    }
    entries.push({ name, dtype: dtype as SafetensorsDType, shape: dims, begin, end });
  }

  // The byte ranges must tile [0, dataBytes) exactly (reference implementation: InvalidOffset).
  const sorted = entries.slice().sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  let prev: RawEntry | undefined;
  for (const e of sorted) {
    if (e.begin < pos && prev) {
      fail(`tensors ${JSON.stringify(prev.name)} [${prev.begin}, ${prev.end}] and ${JSON.stringify(e.name)} ` +
        `[${e.begin}, ${e.end}] have overlapping byte ranges`);
    }
    if (e.begin > pos) {
      fail(`data offsets are not contiguous: bytes [${pos}, ${e.begin}) of the data buffer belong to no tensor ` +
        `(before ${JSON.stringify(e.name)}; the reference implementation rejects holes as InvalidOffset)`);
    }
    pos = e.end;
    prev = e;
  }
  if (pos !== dataBytes) {
    fail(`data offsets are not contiguous: the data buffer has ${dataBytes - pos} bytes after the last tensor ` +
      `(tensors end at ${pos}, buffer is ${dataBytes} bytes; the reference implementation rejects this)`);
  }
  return { metadata, entries };
}

class SafetensorsFileImpl implements SafetensorsFile {
  private readonly byName = new Map<string, TensorEntry>();
  constructor(
    readonly path: string,
    readonly metadata: Record<string, string>,
    readonly mapped: boolean,
    raw: RawEntry[],
    view: (e: RawEntry) => Uint8Array,
  ) {
    for (const e of raw) this.byName.set(e.name, { name: e.name, dtype: e.dtype, shape: e.shape, data: view(e) });
  }
  names(): string[] {
    return [...this.byName.keys()];
  }
  has(name: string): boolean {
    return this.byName.has(name);
  }
  get(name: string): TensorEntry {
    const e = this.byName.get(name);
    if (e === undefined) {
      throw new SafetensorsError(this.path, `no tensor named ${JSON.stringify(name)} (the file has ` +
        `${this.byName.size} tensors)`);
    }
    return e;
  }
  entries(): IterableIterator<TensorEntry> {
    return this.byName.values();
  }
}

/**
 * Validates a safetensors image held in memory; tensor data are views of `bytes` (no copy).
 * Names in header order (JavaScript object order: integer-like names such as "7" come first).
 */
export function parseSafetensors(bytes: Uint8Array, path = "<buffer>"): SafetensorsFile {
  return parseImage(bytes, path, false);
}

function parseImage(bytes: Uint8Array, path: string, mapped: boolean): SafetensorsFile {
  const n = headerLength(bytes, bytes.length, path);
  const start = 8 + n;
  const { metadata, entries } = parseHeader(bytes.subarray(8, start), bytes.length - start, path);
  return new SafetensorsFileImpl(path, metadata, mapped, entries, (e) =>
    bytes.subarray(start + e.begin, start + e.end));
}

function systemMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Reads `size` bytes at `offset` into a fresh buffer (fallback when mapping is refused). */
function readRegion(path: string, offset: number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  const fd = fs.openSync(path, "r");
  try {
    let done = 0;
    while (done < size) {
      const got = fs.readSync(fd, out, done, Math.min(size - done, 2 ** 30), offset + done);
      if (got === 0) throw new Error(`unexpected end of file at byte ${offset + done}`);
      done += got;
    }
  } finally {
    fs.closeSync(fd);
  }
  return out;
}

/**
 * Maps [offset, offset + size) of the file privately. Bun.mmap opens the file read-write, which fails
 * on files the user may not write (EACCES, EROFS); then the region is read into memory instead.
 */
function loadRegion(path: string, offset: number, size: number): { bytes: Uint8Array; mapped: boolean } {
  if (size === 0) return { bytes: new Uint8Array(0), mapped: true }; // Bun.mmap rejects empty ranges
  let bytes: Uint8Array | undefined;
  try {
    bytes = Bun.mmap(path, { shared: false, offset, size });
  } catch {
    bytes = undefined;
  }
  if (bytes !== undefined && bytes.length === size) return { bytes, mapped: true };
  try {
    return { bytes: readRegion(path, offset, size), mapped: false };
  } catch (e) {
    throw new SafetensorsError(path, `cannot read bytes [${offset}, ${offset + size}): ${systemMessage(e)}`,
      { cause: e });
  }
}

export interface OpenOptions {
  /** Largest single mapping; files above it are mapped in windows (default 4 GiB, Bun's limit). */
  maxMapBytes?: number;
}

/** Opens and fully validates a safetensors file, memory-mapping its data (zero copy). */
export function openSafetensors(path: string, options: OpenOptions = {}): SafetensorsFile {
  const maxMap = Math.min(options.maxMapBytes ?? MAX_MAP_BYTES, MAX_MAP_BYTES);
  let size: number;
  try {
    const st = fs.statSync(path);
    if (st.isDirectory()) throw new SafetensorsError(path, "is a directory, not a safetensors file");
    size = st.size;
  } catch (e) {
    if (e instanceof SafetensorsError) throw e;
    throw new SafetensorsError(path, `cannot open file: ${systemMessage(e)}`, { cause: e });
  }
  if (size <= maxMap) {
    const { bytes, mapped } = loadRegion(path, 0, size);
    return parseImage(bytes, path, mapped);
  }
  return openWindowed(path, size, maxMap);
}

/** Files larger than one mapping: the header is read, the data mapped in windows of whole tensors. */
function openWindowed(path: string, size: number, maxMap: number): SafetensorsFile {
  const n = headerLength(readRegion(path, 0, Math.min(8, size)), size, path);
  const start = 8 + n;
  const { metadata, entries } = parseHeader(readRegion(path, 8, n), size - start, path);
  const sorted = entries.slice().sort((a, b) => a.begin - b.begin);
  const views = new Map<RawEntry, Uint8Array>();
  let mappedAll = true;
  for (let i = 0; i < sorted.length; ) {
    const winStart = Math.floor((start + sorted[i].begin) / WINDOW_ALIGN) * WINDOW_ALIGN;
    let j = i;
    while (j < sorted.length && start + sorted[j].end - winStart <= maxMap) j++;
    if (j === i) {
      throw new SafetensorsError(path, `tensor ${JSON.stringify(sorted[i].name)} is ` +
        `${sorted[i].end - sorted[i].begin} bytes, more than one mapping can hold (${maxMap} bytes)`);
    }
    const winEnd = start + sorted[j - 1].end;
    const { bytes, mapped } = loadRegion(path, winStart, winEnd - winStart);
    mappedAll &&= mapped;
    for (let k = i; k < j; k++) {
      views.set(sorted[k], bytes.subarray(start + sorted[k].begin - winStart, start + sorted[k].end - winStart));
    }
    i = j;
  }
  return new SafetensorsFileImpl(path, metadata, mappedAll, entries, (e) => views.get(e)!);
}

// ---------------------------------------------------------------------------------------------
// Writing

export interface TensorInput {
  dtype: SafetensorsDType;
  shape: number[];
  data: ArrayBufferView;
}

interface Layout {
  /** Length prefix + header padded with spaces so the data buffer starts at a multiple of 8. */
  head: Uint8Array;
  chunks: Uint8Array[];
  total: number;
}

/** Validates the inputs and lays them out in the order given, offsets contiguous. */
function layout(tensors: Record<string, TensorInput>, metadata: Record<string, string> | undefined,
  path: string): Layout {
  const fail = (problem: string): never => {
    throw new SafetensorsError(path, problem);
  };
  const parts: string[] = [];
  if (metadata !== undefined) {
    if (!isObject(metadata)) fail(`metadata is not an object (got ${kind(metadata)})`);
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") fail(`metadata value for key ${JSON.stringify(k)} is not a string (got ${kind(v)})`);
    }
    if (Object.keys(metadata).length > 0) parts.push(`"__metadata__":${JSON.stringify(metadata)}`);
  }
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const at = `tensor ${JSON.stringify(name)}`;
    if (name === "__metadata__") fail(`"__metadata__" is reserved and cannot name a tensor`);
    if (!isObject(t)) fail(`${at}: not a { dtype, shape, data } object`);
    if (!isSafetensorsDType(t.dtype)) fail(`${at}: unknown dtype ${brief(t.dtype)}`);
    if (!Array.isArray(t.shape) || !t.shape.every(isIndex)) {
      fail(`${at}: shape must be an array of non-negative integers (got ${brief(t.shape)})`);
    }
    if (!ArrayBuffer.isView(t.data)) fail(`${at}: data is not an ArrayBufferView (got ${kind(t.data)})`);
    let bytes = ITEM_BYTES[t.dtype];
    for (const d of t.shape) bytes *= d;
    if (bytes !== t.data.byteLength) {
      fail(`${at}: shape/size mismatch: ${t.dtype}${brief(t.shape)} needs ${bytes} bytes, data has ` +
        `${t.data.byteLength}`);
    }
    chunks.push(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    parts.push(`${JSON.stringify(name)}:{"dtype":"${t.dtype}","shape":${JSON.stringify(t.shape)},` +
      `"data_offsets":[${offset},${offset + bytes}]}`);
    offset += bytes;
  }
  const json = new TextEncoder().encode(`{${parts.join(",")}}`);
  const n = Math.ceil(json.length / 8) * 8; // 8 + n is then a multiple of 8
  const head = new Uint8Array(8 + n).fill(0x20, 8 + json.length);
  new DataView(head.buffer).setBigUint64(0, BigInt(n), true);
  head.set(json, 8);
  return { head, chunks, total: head.length + offset };
}

/** The bytes of a safetensors file holding `tensors` in the order given. */
export function serializeSafetensors(tensors: Record<string, TensorInput>,
  metadata?: Record<string, string>): Uint8Array {
  const { head, chunks, total } = layout(tensors, metadata, "<serialize>");
  const out = new Uint8Array(total);
  out.set(head, 0);
  let at = head.length;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

async function writeFully(fh: fs.promises.FileHandle, bytes: Uint8Array): Promise<void> {
  for (let done = 0; done < bytes.length; ) {
    const { bytesWritten } = await fh.write(bytes, done, Math.min(bytes.length - done, 2 ** 30));
    done += bytesWritten;
  }
}

/**
 * Writes a safetensors file atomically: inputs are validated first, the bytes go to
 * `${path}.tmp-<pid>-<rand>`, are synced, and the temp file is renamed over `path`. On any failure
 * the temp file is removed and `path` is untouched. Tensor data are streamed, not concatenated.
 */
export async function writeSafetensors(path: string, tensors: Record<string, TensorInput>,
  metadata?: Record<string, string>): Promise<void> {
  const { head, chunks } = layout(tensors, metadata, path);
  const rand = Buffer.from(crypto.getRandomValues(new Uint8Array(6))).toString("hex");
  const tmp = `${path}.tmp-${process.pid}-${rand}`;
  let fh: fs.promises.FileHandle | undefined;
  try {
    fh = await fs.promises.open(tmp, "wx", 0o644);
    await writeFully(fh, head);
    for (const c of chunks) await writeFully(fh, c);
    await fh.sync();
    await fh.close();
    fh = undefined;
    await fs.promises.rename(tmp, path);
  } catch (e) {
    await fh?.close().catch(() => {});
    await fs.promises.rm(tmp, { force: true }).catch(() => {});
    throw new SafetensorsError(path, `write failed: ${systemMessage(e)}`, { cause: e });
  }
}

