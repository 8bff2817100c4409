// Tests for CLIPTokenizer: golden ids from openai/CLIP's reference tokenizer (every entry of
// golden_ids.json), the padded input_ids diffusers produced for the shapes-64 demo model (read with a tiny
// local safetensors parser), truncation warning, chunked mode, pad "!" configs, tokenizer.json-only
// folders, missing-file errors, text clean-up, and load/encode speed.

import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { CLIPTokenizer } from "../../src/tokenizer/clip-tokenizer.ts";
import { cleanBasicText, cleanClipText, fixTextLite, htmlUnescape } from "../../src/tokenizer/text-cleaning.ts";

const projectRoot = path.resolve(import.meta.dir, "../..");
const clipDir = process.env.BD_CLIP_DIR ?? path.resolve(projectRoot, "../shared/clip");
const shapesDir = process.env.BD_SHAPES_DIR ?? path.resolve(projectRoot, "../shared/models/shapes-64");

const BOS = 49406;
const EOS = 49407;

interface GoldenEntry {
  text: string;
  ids: number[];
}
const golden: GoldenEntry[] = JSON.parse(readFileSync(path.join(clipDir, "golden_ids.json"), "utf8"));
const tok = CLIPTokenizer.fromPretrained(clipDir, { onWarning: () => {} });
const LONG = golden.find((g) => g.ids.length > 75)!;

const tmpRoot = mkdtempSync(path.join(tmpdir(), "bd-tokenizer-"));
afterAll(() => rmSync(tmpRoot, { recursive: true, force: true }));
let tmpCount = 0;
/** A fresh folder under the test's temp root with the given files (string contents). */
function tempFolder(files: Record<string, string>): string {
  const dir = path.join(tmpRoot, `t${tmpCount++}`);
  mkdirSync(dir, { recursive: true });
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
  return dir;
}
const vocabText = readFileSync(path.join(clipDir, "vocab.json"), "utf8");
const mergesText = readFileSync(path.join(clipDir, "merges.txt"), "utf8");

/** Minimal safetensors reader for the test: 8-byte LE header length, JSON header, data_offsets. */
function readSafetensorsInt64(file: string, names: string[]): Map<string, { shape: number[]; values: number[] }> {
  const bytes = readFileSync(file);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLen)));
  const dataStart = 8 + headerLen;
  const out = new Map<string, { shape: number[]; values: number[] }>();
  for (const name of names) {
    const entry = header[name];
    if (!entry) throw new Error(`${file}: no tensor ${name}`);
    expect(entry.dtype).toBe("I64");
    const [begin, end] = entry.data_offsets as [number, number];
    // Copy into a fresh (8-byte aligned) buffer before viewing as int64.
    const copy = new Uint8Array(end - begin);
    copy.set(bytes.subarray(dataStart + begin, dataStart + end));
    const values = Array.from(new BigInt64Array(copy.buffer), (v) => Number(v));
    out.set(name, { shape: entry.shape, values });
  }
  return out;
}

describe("golden ids (openai/CLIP reference tokenizer)", () => {
  test("golden_ids.json has entries", () => {
    expect(golden.length).toBeGreaterThan(0);
  });
  test.each(golden.map((g, i) => [i, JSON.stringify(g.text).slice(0, 60), g] as const))("#%d %s", (_i, _label, g) => {
    expect(tok.encode(g.text)).toEqual(g.ids);
  });
});

describe("shapes-64 tokenizer folder vs diffusers input_ids", () => {
  const meta = JSON.parse(readFileSync(path.join(shapesDir, "golden.json"), "utf8"));
  const prompts: string[] = meta.prompts;
  const names = [...prompts.map((_, i) => `p${i}/input_ids`), "negative_input_ids"];
  const tensors = readSafetensorsInt64(path.join(shapesDir, "golden.safetensors"), names);
  const shapesTok = CLIPTokenizer.fromPretrained(path.join(shapesDir, "tokenizer"));

  test("config is read: SD 1.x specials, pad = eos, 77", () => {
    expect(shapesTok.bosTokenId).toBe(BOS);
    expect(shapesTok.eosTokenId).toBe(EOS);
    expect(shapesTok.padTokenId).toBe(EOS);
    expect(shapesTok.unkTokenId).toBe(EOS);
    expect(shapesTok.modelMaxLength).toBe(77);
    expect(shapesTok.vocabSize).toBe(49408);
  });

  test.each(prompts.map((p, i) => [i, p] as const))("p%d/input_ids: %s", (i, prompt) => {
    const want = tensors.get(`p${i}/input_ids`)!;
    expect(want.shape).toEqual([1, 77]);
    const enc = shapesTok.encodeForModel(prompt);
    expect(enc.inputIds).toEqual([want.values]);
    const n = enc.numTokens[0];
    expect(enc.attentionMask[0]).toEqual([...Array(n + 2).fill(1), ...Array(77 - n - 2).fill(0)]);
    expect(enc.truncated).toEqual([false]);
  });

  test("negative_input_ids = tokenizer(\"\")", () => {
    const want = tensors.get("negative_input_ids")!;
    expect(want.values).toEqual([BOS, ...Array(76).fill(EOS)]);
    expect(shapesTok.encodeForModel(meta.negative_prompt).inputIds[0]).toEqual(want.values);
  });

  test("batch of [negative, ...prompts]", () => {
    const enc = shapesTok.encodeForModel([meta.negative_prompt, ...prompts]);
    expect(enc.inputIds.length).toBe(prompts.length + 1);
    enc.inputIds.forEach((row, i) => {
      const key = i === 0 ? "negative_input_ids" : `p${i - 1}/input_ids`;
      expect(row).toEqual(tensors.get(key)!.values);
    });
  });
});

describe("encode / tokenize / decode", () => {
  test("tokenize gives byte-alphabet BPE tokens with </w>", () => {
    expect(tok.tokenize("a photo of an astronaut")).toEqual(["a</w>", "photo</w>", "of</w>", "an</w>", "astronaut</w>"]);
    expect(tok.tokenize("Straße")[0]).toBe("stra"); // 'ß' is two bytes in the byte alphabet
  });

  test("decode inverts encode for plain prompts", () => {
    for (const text of ["a photo of an astronaut riding a horse on mars", "café naïve résumé über straße", "emoji 🚀 test"]) {
      expect(tok.decode(tok.encode(text))).toBe(text);
    }
  });

  test("decode: special tokens kept or skipped; unknown ids rejected", () => {
    const ids = [BOS, 320, 2368, EOS, EOS];
    expect(tok.decode(ids)).toBe("<|startoftext|>a cat <|endoftext|><|endoftext|>");
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe("a cat");
    expect(() => tok.decode([999999])).toThrow(/unknown token id 999999/);
  });

  test("special tokens in text map to their ids, case-insensitively", () => {
    expect(tok.encode("<|startoftext|>a cat<|ENDOFTEXT|>")).toEqual([BOS, 320, 2368, EOS]);
  });

  test("HTML entities, curly quotes, full-width forms and odd whitespace are cleaned like CLIP", () => {
    expect(tok.encode("rock &amp;amp; roll")).toEqual(tok.encode("rock & roll"));
    expect(tok.encode("\u201chello\u201d it\u2019s")).toEqual(tok.encode('"hello" it\'s'));
    expect(tok.encode("\uff21\uff22\uff23\u3000cat")).toEqual(tok.encode("abc cat"));
    expect(tok.encode("\ufb01sh\u00a0\u2003 bowl\u2028")).toEqual(tok.encode("fish bowl"));
    expect(tok.encode("cafe\u0301")).toEqual(tok.encode("caf\u00e9")); // NFC
  });

  test("unknown pieces become the unk id", () => {
    const tiny = CLIPTokenizer.fromFiles({
      vocab: { "a</w>": 0, "b</w>": 1, "<|startoftext|>": 2, "<|endoftext|>": 3, a: 4, ab: 5, "ab</w>": 6 },
      merges: "#version: 0.2\na b</w>\n",
    });
    expect(tiny.encode("ab a c")).toEqual([6, 0, 3]);
    expect(tiny.vocabSize).toBe(7);
  });

  test("fromFiles accepts raw merges.txt text and parsed vocab", () => {
    const t = CLIPTokenizer.fromFiles({ vocab: JSON.parse(vocabText), merges: mergesText });
    for (const g of golden) expect(t.encode(g.text)).toEqual(g.ids);
  });

  test("addTokens: textual-inversion style placeholders", () => {
    const t = CLIPTokenizer.fromFiles({ vocab: JSON.parse(vocabText), merges: mergesText });
    const [id] = t.addTokens(["<Cat-Toy>"]);
    expect(id).toBe(49408);
    expect(t.vocabSize).toBe(49409);
    expect(t.encode("a <cat-toy> photo")).toEqual([320, 49408, 1125]);
    expect(t.decode([320, 49408, 1125])).toBe("a <Cat-Toy>photo");
    expect(t.addTokens(["<Cat-Toy>", "photo</w>"])).toEqual([49408, 1125]);
    expect(t.decode([320, 1125, 1125])).toBe("a photo photo"); // an existing token stays ordinary
    expect(t.vocabSize).toBe(49409);
  });
});

describe("encodeForModel", () => {
  test("truncation keeps bos + first 75 ids + eos and warns once per tokenizer", () => {
    const warnings: string[] = [];
    const t = CLIPTokenizer.fromPretrained(clipDir, { onWarning: (m) => warnings.push(m) });
    const enc = t.encodeForModel([LONG.text, "a small cat"]);
    expect(enc.truncated).toEqual([true, false]);
    expect(enc.numTokens).toEqual([LONG.ids.length, 3]);
    expect(enc.inputIds[0]).toEqual([BOS, ...LONG.ids.slice(0, 75), EOS]);
    expect(enc.attentionMask[0]).toEqual(Array(77).fill(1));
    expect(warnings.length).toBe(1);
    const dropped = LONG.ids.length - 75;
    expect(warnings[0]).toContain("The following part of your input was truncated because CLIP can only handle sequences up to 77 tokens");
    expect(warnings[0]).toContain(`(${dropped} tokens dropped)`);
    expect(warnings[0]).toContain(JSON.stringify(t.decode(LONG.ids.slice(75))));
    t.encodeForModel(LONG.text);
    t.encodeForModel(LONG.text + " again");
    expect(warnings.length).toBe(1);
    // A new tokenizer warns again.
    const other: string[] = [];
    CLIPTokenizer.fromPretrained(clipDir, { onWarning: (m) => other.push(m) }).encodeForModel(LONG.text);
    expect(other.length).toBe(1);
  });

  test("onWarning defaults to console.warn", () => {
    const t = CLIPTokenizer.fromPretrained(clipDir);
    const original = console.warn;
    const seen: unknown[] = [];
    console.warn = (...args: unknown[]) => void seen.push(args[0]);
    try {
      t.encodeForModel(LONG.text);
    } finally {
      console.warn = original;
    }
    expect(seen.length).toBe(1);
    expect(String(seen[0])).toContain("truncated");
  });

  test("truncation off, padding none, custom maxLength", () => {
    const t = CLIPTokenizer.fromPretrained(clipDir, { onWarning: () => {} });
    const full = t.encodeForModel(LONG.text, { truncation: false });
    expect(full.inputIds[0]).toEqual([BOS, ...LONG.ids, EOS]);
    expect(full.truncated).toEqual([false]);
    const none = t.encodeForModel(["a small cat", ""], { padding: "none" });
    expect(none.inputIds).toEqual([[BOS, 320, 2442, 2368, EOS], [BOS, EOS]]);
    expect(none.attentionMask).toEqual([[1, 1, 1, 1, 1], [1, 1]]);
    const short = t.encodeForModel("a small cat", { maxLength: 4 });
    expect(short.inputIds).toEqual([[BOS, 320, 2442, EOS]]);
    expect(short.truncated).toEqual([true]);
    expect(() => t.encodeForModel("x", { maxLength: 1 })).toThrow(RangeError);
  });

  test("chunked: 75-token chunks wrapped as [bos, ..., eos] and padded to 77", () => {
    const t = CLIPTokenizer.fromPretrained(clipDir, { onWarning: () => {} });
    const enc = t.encodeForModel(["", LONG.text], { chunked: true });
    expect(enc.numChunks).toBe(2);
    expect(enc.numTokens).toEqual([0, LONG.ids.length]);
    const rest = LONG.ids.slice(75);
    expect(enc.chunks[1]).toEqual([
      [BOS, ...LONG.ids.slice(0, 75), EOS],
      [BOS, ...rest, EOS, ...Array(75 - rest.length).fill(EOS)],
    ]);
    expect(enc.attentionMask[1][1]).toEqual([...Array(rest.length + 2).fill(1), ...Array(75 - rest.length).fill(0)]);
    // The empty prompt is padded to the same number of chunks with encodings of "".
    const empty = [BOS, EOS, ...Array(75).fill(EOS)];
    expect(enc.chunks[0]).toEqual([empty, empty]);
    // A short prompt is one chunk, equal to the non-chunked row; minChunks adds empty chunks.
    const one = t.encodeChunked("a small cat");
    expect(one.chunks[0]).toEqual(t.encodeForModel("a small cat").inputIds);
    expect(t.encodeChunked("a small cat", { minChunks: 3 }).chunks[0].length).toBe(3);
    // Exactly 75 tokens fit one chunk; 76 need two.
    const words75 = Array(75).fill("cat").join(" ");
    expect(t.encodeChunked(words75).numChunks).toBe(1);
    expect(t.encodeChunked(words75 + " cat").numChunks).toBe(2);
    // Chunked mode never truncates, so it never warns.
    let warned = 0;
    t.onWarning = () => warned++;
    t.encodeForModel(LONG.text, { chunked: true });
    expect(warned).toBe(0);
  });
});

describe("pad token configs", () => {
  test('SD 2.x / SDXL tokenizer_2: pad "!" (id 0) from tokenizer_config.json, objects with content', () => {
    const dir = tempFolder({
      "vocab.json": vocabText,
      "merges.txt": mergesText,
      "tokenizer_config.json": JSON.stringify({
        bos_token: { content: "<|startoftext|>", lstrip: false, rstrip: false, normalized: true, special: true },
        eos_token: { content: "<|endoftext|>", lstrip: false, rstrip: false, normalized: true, special: true },
        unk_token: { content: "<|endoftext|>", lstrip: false, rstrip: false, normalized: true, special: true },
        pad_token: "!",
        model_max_length: 77,
        added_tokens_decoder: { "0": { content: "!", special: true }, "49406": { content: "<|startoftext|>" }, "49407": { content: "<|endoftext|>" } },
      }),
    });
    const t = CLIPTokenizer.fromPretrained(dir);
    expect(t.padToken).toBe("!");
    expect(t.padTokenId).toBe(0);
    expect(t.encodeForModel("a small cat").inputIds[0]).toEqual([BOS, 320, 2442, 2368, EOS, ...Array(72).fill(0)]);
    // "!" stays an ordinary character, as in open_clip: "! !! !!!" -> "!</w>", "!!</w>", "!!!</w>".
    expect(t.encode("! !! !!!")).toEqual([256, 748, 995]);
    // The pad is not a special token here, so decoding a padded row shows it (bos wow !</w> eos + 73 x "!").
    expect(t.decode(t.encodeForModel("wow!").inputIds[0], { skipSpecialTokens: true })).toBe("wow ! " + "!".repeat(73));
    // transformers' behaviour on request (diffusers issue #4153).
    const hf = CLIPTokenizer.fromPretrained(dir, { splitPadToken: true });
    expect(hf.encodeForModel("! !! !!!").inputIds[0].slice(0, 8)).toEqual([BOS, 0, 0, 0, 0, 0, 0, EOS]);
  });

  test("special_tokens_map.json overrides tokenizer_config.json; pad defaults to eos", () => {
    const dir = tempFolder({
      "vocab.json": vocabText,
      "merges.txt": mergesText,
      "tokenizer_config.json": JSON.stringify({ pad_token: "<|endoftext|>", model_max_length: 1e30 }),
      "special_tokens_map.json": JSON.stringify({ pad_token: { content: "!" } }),
    });
    const t = CLIPTokenizer.fromPretrained(dir);
    expect(t.padTokenId).toBe(0);
    expect(t.modelMaxLength).toBe(77); // transformers' "no limit" value falls back to CLIP's 77
    const bare = CLIPTokenizer.fromPretrained(tempFolder({ "vocab.json": vocabText, "merges.txt": mergesText }));
    expect(bare.padTokenId).toBe(EOS);
    expect(bare.modelMaxLength).toBe(77);
  });

  test("a pad token that is not in the vocabulary is an error", () => {
    const dir = tempFolder({
      "vocab.json": vocabText,
      "merges.txt": mergesText,
      "special_tokens_map.json": JSON.stringify({ pad_token: "<pad>" }),
    });
    expect(() => CLIPTokenizer.fromPretrained(dir)).toThrow(/pad token "<pad>" is not in the vocabulary/);
  });
});

describe("tokenizer.json-only folders", () => {
  const vocab = JSON.parse(vocabText) as Record<string, number>;
  const mergeLines = mergesText.split("\n").filter((l) => l && !l.startsWith("#version"));
  const tokenizerJson = (merges: unknown[]) =>
    JSON.stringify({
      version: "1.0",
      added_tokens: [
        { id: 49406, content: "<|startoftext|>", special: true },
        { id: 49407, content: "<|endoftext|>", special: true },
      ],
      padding: null,
      truncation: null,
      model: { type: "BPE", vocab, merges, end_of_word_suffix: "</w>", unk_token: "<|endoftext|>", continuing_subword_prefix: "" },
    });

  test("merges as [a, b] pairs", () => {
    const dir = tempFolder({ "tokenizer.json": tokenizerJson(mergeLines.map((l) => l.split(" "))) });
    const t = CLIPTokenizer.fromPretrained(dir);
    for (const g of golden) expect(t.encode(g.text)).toEqual(g.ids);
    expect([t.bosTokenId, t.eosTokenId, t.padTokenId, t.modelMaxLength, t.vocabSize]).toEqual([BOS, EOS, EOS, 77, 49408]);
  });

  test('merges as "a b" strings, with a tokenizer_config.json beside it', () => {
    const dir = tempFolder({
      "tokenizer.json": tokenizerJson(mergeLines),
      "tokenizer_config.json": JSON.stringify({ pad_token: "!", model_max_length: 77 }),
    });
    const t = CLIPTokenizer.fromPretrained(dir);
    expect(t.encode(golden[0].text)).toEqual(golden[0].ids);
    expect(t.padTokenId).toBe(0);
  });

  test("a tokenizer.json that is not BPE is rejected", () => {
    const dir = tempFolder({ "tokenizer.json": JSON.stringify({ model: { type: "WordPiece", vocab: {} } }) });
    expect(() => CLIPTokenizer.fromPretrained(dir)).toThrow(/WordPiece model, not BPE/);
  });
});

describe("missing files", () => {
  test("empty folder: names the folder and both files", () => {
    const dir = tempFolder({});
    expect(() => CLIPTokenizer.fromPretrained(dir)).toThrow(new RegExp(`missing vocab\\.json and merges\\.txt in ${dir.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`));
  });

  test("only vocab.json: names merges.txt", () => {
    const dir = tempFolder({ "vocab.json": vocabText });
    expect(() => CLIPTokenizer.fromPretrained(dir)).toThrow(/missing merges\.txt in .*tokenizer\.json/);
  });

  test("folder that does not exist; model root hints at the subfolder", () => {
    expect(() => CLIPTokenizer.fromPretrained(path.join(tmpRoot, "nope"))).toThrow(/nope does not exist/);
    expect(() => CLIPTokenizer.fromPretrained(shapesDir)).toThrow(/did you mean the subfolder .*tokenizer/);
    expect(CLIPTokenizer.fromPretrained(shapesDir, { subfolder: "tokenizer" }).vocabSize).toBe(49408);
  });

  test("malformed JSON names the file", () => {
    const dir = tempFolder({ "vocab.json": "{not json", "merges.txt": mergesText });
    expect(() => CLIPTokenizer.fromPretrained(dir)).toThrow(/cannot parse .*vocab\.json/);
  });
});

describe("text clean-up", () => {
  test("htmlUnescape follows Python's html.unescape", () => {
    expect(htmlUnescape("&amp; &lt;tag&gt; &quot;q&quot; &#39;s &#x41;&#66 &eacute;&hellip;&copy 2024")).toBe("& <tag> \"q\" 's AB é…© 2024");
    expect(htmlUnescape("&amp;amp;")).toBe("&amp;");
    expect(htmlUnescape("&#128; &#0; &#xD800; &#1;x")).toBe("\u20ac \ufffd \ufffd x");
    expect(htmlUnescape("&notit; &gtdot; &unknown; & alone")).toBe("\u00acit; \u22d7 &unknown; & alone");
  });

  test("cleanClipText: ftfy subset, double unescape, whitespace, lowercase", () => {
    expect(cleanClipText("  A\t\tB\n\u0085C&amp;amp;D  ")).toBe("a b \u2026c&d");
    expect(fixTextLite("\x1b[31mred\x1b[0m \ufb02ow \u2018q\u2019 \uff28\uff49")).toBe("red flow 'q' Hi");
    expect(cleanClipText("<b>&amp;amp;</b>")).toBe("<b>&</b>"); // ftfy skips entities when '<' is present
  });

  test('cleanup "transformers-basic": CJK ideographs become words, no HTML unescaping', () => {
    expect(cleanBasicText("中文提示 &amp; Test\u0000")).toBe("中 文 提 示 &amp; test");
    const basic = CLIPTokenizer.fromPretrained(clipDir, { cleanup: "transformers-basic" });
    expect(basic.tokenize("中文")).toEqual([...tok.tokenize("中"), ...tok.tokenize("文")]);
    expect(basic.encode(golden[0].text)).toEqual(golden[0].ids);
  });
});
