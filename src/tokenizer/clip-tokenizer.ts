// CLIPTokenizer: CLIP's byte-level BPE tokenizer (openai/CLIP simple_tokenizer semantics) loaded from a
// diffusers/transformers `tokenizer/` folder (vocab.json + merges.txt [+ tokenizer_config.json,
// special_tokens_map.json], or tokenizer.json alone) or from parsed data. Provides raw BPE ids
// (`encode`), token strings (`tokenize`), `decode`, and `encodeForModel`, which builds the padded
// [bos, ...ids, eos, pad...] rows the text encoder takes — truncated to 77 with a one-time warning, or
// split into 75-token chunks (the A1111/ComfyUI long-prompt convention).

import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { bpeAlphabetToBytes, bytesToBpeAlphabet } from "./bytes-to-unicode.ts";
import { cleanBasicText, cleanClipText, WHITESPACE_CLASS } from "./text-cleaning.ts";

// ---------------------------------------------------------------------------------------------------------
// Public types

/**
 * How text is cleaned before pre-tokenisation.
 * - "clip": openai/CLIP (ftfy subset, HTML unescape, whitespace collapse, lowercase). Default; it is what
 *   the CLIP models were trained with and what the golden ids were made with.
 * - "transformers-basic": transformers' CLIPTokenizer when ftfy is not installed (no HTML unescaping;
 *   every CJK ideograph becomes its own word). Use it to reproduce such a diffusers install exactly.
 */
export type TextCleanup = "clip" | "transformers-basic";

export interface CLIPTokenizerOptions {
  /** Text clean-up before the pre-tokenisation regex; default "clip". */
  cleanup?: TextCleanup;
  /**
   * Treat the pad token as a special token inside the text, as transformers does when the pad token is "!"
   * (SD 2.x / SDXL tokenizer_2): every "!" then becomes id 0 instead of "!</w>"/"!!</w>"... (diffusers
   * issue #4153). Default false: the original open_clip / openai behaviour.
   */
  splitPadToken?: boolean;
  /** Receives the truncation warning (once per tokenizer); default console.warn. */
  onWarning?: (message: string) => void;
}

export interface CLIPTokenizerInit extends CLIPTokenizerOptions {
  /** token -> id, as in vocab.json or tokenizer.json's model.vocab. */
  vocab: Readonly<Record<string, number>> | ReadonlyMap<string, number>;
  /**
   * Merge rules in priority order: the text of merges.txt (a "#version" header and blank lines are skipped),
   * or a list of "a b" strings or ["a", "b"] pairs (tokenizer.json's model.merges).
   */
  merges: string | ReadonlyArray<string | readonly [string, string]>;
  bosToken?: string; // default "<|startoftext|>"
  eosToken?: string; // default "<|endoftext|>"
  unkToken?: string; // default "<|endoftext|>"
  /** default: the EOS token (SD 1.x); SD 2.x and SDXL's second tokenizer use "!" (id 0). */
  padToken?: string;
  /** default 77 */
  modelMaxLength?: number;
  /** Tokens matched verbatim in text before BPE (tokenizer.json added_tokens, added_tokens_decoder). */
  addedTokens?: ReadonlyArray<{ id: number; content: string }>;
  /** Suffix BPE appends to a word's last symbol; default "</w>". */
  endOfWordSuffix?: string;
  /** Where the data came from, for error messages. */
  source?: string;
}

export interface EncodeForModelOptions {
  /** Row length; default modelMaxLength (77). */
  maxLength?: number;
  /** Cut rows that are too long to [bos, first maxLength-2 ids, eos]; default true. */
  truncation?: boolean;
  /** "max_length" pads every row to maxLength (default); "none" leaves rows at their own length. */
  padding?: "max_length" | "none";
  /** Split long prompts into chunks instead of truncating (see ChunkedModelInputs). */
  chunked?: boolean;
  /** Chunked mode: at least this many chunks per text (extra ones encode ""); default 1. */
  minChunks?: number;
}

/** Rows for the text encoder: one per input text. */
export interface ModelInputs {
  /** [batch][maxLength]: bos, ids, eos, then pad ids. */
  inputIds: number[][];
  /** [batch][maxLength]: 1 for bos..eos, 0 for padding. */
  attentionMask: number[][];
  /** Whether each text lost tokens to truncation. */
  truncated: boolean[];
  /** Raw BPE token count of each text (without bos/eos), before truncation. */
  numTokens: number[];
}

/**
 * Long prompts as chunks of maxLength-2 (75) ids, each wrapped as [bos, ...ids, eos, pad...] (the
 * A1111/ComfyUI convention: encode each chunk, concatenate the hidden states along the sequence axis).
 * Every text of one call gets the same number of chunks (texts that need fewer get chunks of ""), so a
 * [negative, positive] batch stays rectangular: chunks[text][chunk][maxLength].
 */
export interface ChunkedModelInputs {
  chunks: number[][][];
  attentionMask: number[][][];
  /** Chunks per text (the same for every text). */
  numChunks: number;
  /** Raw BPE token count of each text (without bos/eos). */
  numTokens: number[];
}

export interface DecodeOptions {
  /** Leave out bos/eos/unk and added tokens; default false. */
  skipSpecialTokens?: boolean;
}

// ---------------------------------------------------------------------------------------------------------
// Tokenizer

const DEFAULT_BOS = "<|startoftext|>";
const DEFAULT_EOS = "<|endoftext|>";
const DEFAULT_MAX_LENGTH = 77;
/** Characters of dropped text quoted in the truncation warning. */
const WARNING_TEXT_LIMIT = 300;
/** Word-cache entries kept before the cache is cleared (bounds memory in long-running servers). */
const CACHE_LIMIT = 100_000;

interface CachedWord {
  tokens: string[];
  ids: number[];
}

export class CLIPTokenizer {
  readonly bosToken: string;
  readonly eosToken: string;
  readonly unkToken: string;
  readonly padToken: string;
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  readonly unkTokenId: number;
  readonly padTokenId: number;
  readonly modelMaxLength: number;
  readonly cleanup: TextCleanup;
  readonly endOfWordSuffix: string;
  /** Receives the one-time truncation warning. */
  onWarning: (message: string) => void;

  private readonly encoder: Map<string, number>;
  private readonly decoder: string[] = [];
  private readonly ranks: Map<string, number>;
  private readonly cache = new Map<string, CachedWord>();
  /** lowercased text of a special token -> its id (matched in text before BPE). */
  private readonly specialByText = new Map<string, number>();
  private readonly specialIds = new Set<number>();
  private pattern: RegExp;
  private warnedTruncation = false;

  constructor(init: CLIPTokenizerInit) {
    const source = init.source ?? "CLIPTokenizer";
    this.encoder = init.vocab instanceof Map ? new Map(init.vocab) : new Map(Object.entries(init.vocab));
    for (const [token, id] of this.encoder) {
      if (!Number.isInteger(id) || id < 0) {
        throw new Error(`${source}: vocabulary id of ${JSON.stringify(token)} is not a non-negative integer: ${id}`);
      }
      this.decoder[id] = token;
    }
    for (const { id, content } of init.addedTokens ?? []) {
      this.encoder.set(content, id);
      this.decoder[id] = content;
    }
    this.ranks = parseMerges(init.merges, source);
    this.endOfWordSuffix = init.endOfWordSuffix ?? "</w>";
    this.cleanup = init.cleanup ?? "clip";
    this.onWarning = init.onWarning ?? ((m) => console.warn(m));

    const idOf = (token: string, what: string): number => {
      const id = this.encoder.get(token);
      if (id === undefined) throw new Error(`${source}: the ${what} token ${JSON.stringify(token)} is not in the vocabulary`);
      return id;
    };
    this.bosToken = init.bosToken ?? DEFAULT_BOS;
    this.eosToken = init.eosToken ?? DEFAULT_EOS;
    this.unkToken = init.unkToken ?? DEFAULT_EOS;
    this.padToken = init.padToken ?? this.eosToken;
    this.bosTokenId = idOf(this.bosToken, "bos");
    this.eosTokenId = idOf(this.eosToken, "eos");
    this.unkTokenId = idOf(this.unkToken, "unk");
    this.padTokenId = idOf(this.padToken, "pad");
    const maxLength = init.modelMaxLength;
    // transformers writes 1e30 ("VERY_LARGE_INTEGER") when a config has no limit; CLIP has 77 positions.
    const usable = maxLength !== undefined && Number.isInteger(maxLength) && maxLength >= 2 && maxLength <= 1e6;
    this.modelMaxLength = usable ? maxLength : DEFAULT_MAX_LENGTH;

    // Special tokens matched in text: bos/eos/unk and added tokens; the pad token only when it is one of
    // those or when asked (a pad of "!" is an ordinary character for the original tokenizer).
    const specials = new Set([this.bosToken, this.eosToken, this.unkToken]);
    for (const { content } of init.addedTokens ?? []) specials.add(content);
    if (init.splitPadToken) specials.add(this.padToken);
    else if (![this.bosToken, this.eosToken, this.unkToken].includes(this.padToken)) specials.delete(this.padToken);
    for (const s of specials) this.registerSpecial(s);
    this.pattern = this.buildPattern();
  }

  /**
   * Loads a tokenizer folder: vocab.json + merges.txt (plus tokenizer_config.json and
   * special_tokens_map.json when present), or tokenizer.json alone. `subfolder` is joined to `dir`
   * (e.g. fromPretrained(modelDir, { subfolder: "tokenizer_2" })).
   */
  static fromPretrained(dir: string, opts: CLIPTokenizerOptions & { subfolder?: string } = {}): CLIPTokenizer {
    const folder = opts.subfolder ? join(dir, opts.subfolder) : dir;
    const where = `CLIPTokenizer.fromPretrained(${JSON.stringify(folder)})`;
    if (!existsSync(folder) || !statSync(folder).isDirectory()) {
      throw new Error(`${where}: the tokenizer folder ${folder} does not exist or is not a folder`);
    }
    const has = (name: string): boolean => existsSync(join(folder, name));
    const readJson = (name: string): any => {
      const path = join(folder, name);
      try {
        return JSON.parse(readFileSync(path, "utf8"));
      } catch (e) {
        throw new Error(`${where}: cannot parse ${path}: ${(e as Error).message}`);
      }
    };

    const { subfolder: _, ...options } = opts;
    const init: CLIPTokenizerInit = { vocab: {}, merges: [], source: where, ...options };
    if (has("vocab.json") && has("merges.txt")) {
      init.vocab = readJson("vocab.json");
      init.merges = readFileSync(join(folder, "merges.txt"), "utf8");
    } else if (has("tokenizer.json")) {
      applyTokenizerJson(init, readJson("tokenizer.json"), where);
    } else {
      const missing = ["vocab.json", "merges.txt"].filter((f) => !has(f));
      const hint = existsSync(join(folder, "tokenizer")) ? ` (did you mean the subfolder ${join(folder, "tokenizer")}?)` : "";
      throw new Error(
        `${where}: missing ${missing.join(" and ")} in ${folder}; ` +
          `a CLIP tokenizer folder needs vocab.json and merges.txt, or tokenizer.json${hint}`,
      );
    }
    if (has("tokenizer_config.json")) applyTokenizerConfig(init, readJson("tokenizer_config.json"));
    if (has("special_tokens_map.json")) applyTokenizerConfig(init, readJson("special_tokens_map.json"));
    return new CLIPTokenizer(init);
  }

  /** Builds a tokenizer from parsed (or raw merges.txt) data; the same as `new CLIPTokenizer(init)`. */
  static fromFiles(init: CLIPTokenizerInit): CLIPTokenizer {
    return new CLIPTokenizer(init);
  }

  /** Number of token ids: vocabulary plus added tokens (the text encoder's embedding rows must cover it). */
  get vocabSize(): number {
    return this.decoder.length;
  }

  /**
   * Adds tokens that are matched verbatim (case-insensitively) in text, e.g. textual-inversion
   * placeholders; returns their ids. New tokens get vocabSize, vocabSize+1, ...; a token that is already
   * in the vocabulary keeps its id and its ordinary BPE role.
   */
  addTokens(tokens: readonly string[]): number[] {
    const ids = tokens.map((t) => {
      const known = this.encoder.get(t);
      if (known !== undefined) return known;
      const id = this.decoder.length;
      this.encoder.set(t, id);
      this.decoder[id] = t;
      this.registerSpecial(t);
      return id;
    });
    this.pattern = this.buildPattern();
    return ids;
  }

  tokenToId(token: string): number | undefined {
    return this.encoder.get(token);
  }

  idToToken(id: number): string | undefined {
    return this.decoder[id];
  }

  /** Raw BPE ids of `text` (no bos/eos, no padding); unknown pieces become the unk id. */
  encode(text: string): number[] {
    const ids: number[] = [];
    for (const piece of this.pieces(text)) {
      const special = this.specialByText.get(piece);
      if (special !== undefined) ids.push(special);
      else for (const id of this.bpe(piece).ids) ids.push(id);
    }
    return ids;
  }

  /** BPE token strings of `text` (in the byte alphabet, words ending in "</w>"); specials as written. */
  tokenize(text: string): string[] {
    const tokens: string[] = [];
    for (const piece of this.pieces(text)) {
      const special = this.specialByText.get(piece);
      if (special !== undefined) tokens.push(this.decoder[special]);
      else tokens.push(...this.bpe(piece).tokens);
    }
    return tokens;
  }

  /**
   * Text of `ids`: bytes reassembled from the byte alphabet and decoded as UTF-8 (invalid sequences ->
   * U+FFFD), "</w>" -> space, trimmed (transformers' convert_tokens_to_string). Special tokens appear as
   * their text unless skipSpecialTokens.
   */
  decode(ids: Iterable<number>, opts: DecodeOptions = {}): string {
    let text = "";
    let bytes: number[] = [];
    const utf8 = new TextDecoder("utf-8", { fatal: false });
    const suffix = this.endOfWordSuffix;
    const flush = (): void => {
      if (bytes.length > 0) text += utf8.decode(Uint8Array.from(bytes));
      bytes = [];
    };
    for (const id of ids) {
      const token = this.decoder[id];
      if (token === undefined) throw new RangeError(`CLIPTokenizer.decode: unknown token id ${id} (vocabulary size ${this.vocabSize})`);
      if (this.specialIds.has(id)) {
        if (opts.skipSpecialTokens) continue;
        flush();
        text += token;
      } else if (suffix && token.endsWith(suffix)) {
        bpeAlphabetToBytes(token.slice(0, -suffix.length), bytes);
        bytes.push(0x20);
      } else {
        bpeAlphabetToBytes(token, bytes);
      }
    }
    flush();
    return text.trim();
  }

  /**
   * Text-encoder input for one text or a batch: rows of [bos, ...ids, eos, pad...] of maxLength (77).
   * Too-long texts keep bos, their first maxLength-2 ids and eos; the first truncation of this tokenizer
   * is reported through onWarning with the dropped text. With `chunked: true`, returns chunks instead.
   */
  encodeForModel(texts: string | readonly string[], opts: EncodeForModelOptions & { chunked: true }): ChunkedModelInputs;
  encodeForModel(texts: string | readonly string[], opts?: EncodeForModelOptions & { chunked?: false }): ModelInputs;
  encodeForModel(texts: string | readonly string[], opts?: EncodeForModelOptions): ModelInputs | ChunkedModelInputs;
  encodeForModel(texts: string | readonly string[], opts: EncodeForModelOptions = {}): ModelInputs | ChunkedModelInputs {
    if (opts.chunked) return this.encodeChunked(texts, opts);
    const maxLength = this.checkMaxLength(opts.maxLength, 2);
    const truncation = opts.truncation ?? true;
    const pad = (opts.padding ?? "max_length") === "max_length";
    const out: ModelInputs = { inputIds: [], attentionMask: [], truncated: [], numTokens: [] };
    for (const text of typeof texts === "string" ? [texts] : texts) {
      const ids = this.encode(text);
      const room = maxLength - 2;
      const cut = truncation && ids.length > room;
      if (cut) this.warnTruncation(ids.slice(room), maxLength);
      const row = [this.bosTokenId, ...(cut ? ids.slice(0, room) : ids), this.eosTokenId];
      if (!truncation && row.length > maxLength && !this.warnedTruncation) {
        this.warnedTruncation = true;
        this.onWarning(
          `CLIPTokenizer: a prompt has ${row.length} tokens, more than the ${maxLength} positions of the text encoder, ` +
            "and truncation is off",
        );
      }
      const mask = row.map(() => 1);
      if (pad) padRow(row, mask, maxLength, this.padTokenId);
      out.inputIds.push(row);
      out.attentionMask.push(mask);
      out.truncated.push(cut);
      out.numTokens.push(ids.length);
    }
    return out;
  }

  /** `encodeForModel(texts, { ...opts, chunked: true })`: see ChunkedModelInputs. */
  encodeChunked(texts: string | readonly string[], opts: Omit<EncodeForModelOptions, "chunked" | "truncation"> = {}): ChunkedModelInputs {
    const maxLength = this.checkMaxLength(opts.maxLength, 3);
    const pad = (opts.padding ?? "max_length") === "max_length";
    const size = maxLength - 2;
    const all = (typeof texts === "string" ? [texts] : texts).map((t) => this.encode(t));
    const numChunks = Math.max(opts.minChunks ?? 1, 1, ...all.map((ids) => Math.ceil(ids.length / size)));
    const out: ChunkedModelInputs = { chunks: [], attentionMask: [], numChunks, numTokens: all.map((ids) => ids.length) };
    for (const ids of all) {
      const rows: number[][] = [];
      const masks: number[][] = [];
      for (let c = 0; c < numChunks; c++) {
        const row = [this.bosTokenId, ...ids.slice(c * size, (c + 1) * size), this.eosTokenId];
        const mask = row.map(() => 1);
        if (pad) padRow(row, mask, maxLength, this.padTokenId);
        rows.push(row);
        masks.push(mask);
      }
      out.chunks.push(rows);
      out.attentionMask.push(masks);
    }
    return out;
  }

  // -------------------------------------------------------------------------------------------------------

  /** Cleaned text split by CLIP's pre-tokenisation regex. */
  private pieces(text: string): string[] {
    const cleaned = this.cleanup === "clip" ? cleanClipText(text) : cleanBasicText(text);
    return cleaned.match(this.pattern) ?? [];
  }

  /** BPE of one pre-token (raw text; converted to the byte alphabet here), memoised. */
  private bpe(piece: string): CachedWord {
    const cached = this.cache.get(piece);
    if (cached !== undefined) return cached;
    const word = bytesToBpeAlphabet(piece);
    const symbols = word.split("");
    symbols[symbols.length - 1] += this.endOfWordSuffix;
    const ranks = this.ranks;
    while (symbols.length > 1) {
      // The adjacent pair with the lowest merge rank ...
      let best = Infinity;
      let bestAt = -1;
      for (let i = 0; i < symbols.length - 1; i++) {
        const r = ranks.get(symbols[i] + " " + symbols[i + 1]);
        if (r !== undefined && r < best) {
          best = r;
          bestAt = i;
        }
      }
      if (bestAt < 0) break;
      // ... is merged everywhere it occurs, left to right, without overlaps.
      const first = symbols[bestAt];
      const second = symbols[bestAt + 1];
      let w = bestAt;
      for (let r = bestAt; r < symbols.length; r++) {
        if (r < symbols.length - 1 && symbols[r] === first && symbols[r + 1] === second) {
          symbols[w++] = first + second;
          r++;
        } else {
          symbols[w++] = symbols[r];
        }
      }
      symbols.length = w;
    }
    const ids = symbols.map((s) => this.encoder.get(s) ?? this.unkTokenId);
    const entry: CachedWord = { tokens: symbols, ids };
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(piece, entry);
    return entry;
  }

  private registerSpecial(token: string): void {
    const id = this.encoder.get(token);
    if (id === undefined) return;
    this.specialByText.set(token.toLowerCase(), id);
    this.specialIds.add(id);
  }

  /** CLIP's pattern, with this tokenizer's special tokens first (longest first). */
  private buildPattern(): RegExp {
    const specials = [...this.specialByText.keys()].sort((a, b) => b.length - a.length).map(escapeRegExp);
    const ws = WHITESPACE_CLASS;
    const body = `'s|'t|'re|'ve|'m|'ll|'d|\\p{L}+|\\p{N}|[^${ws}\\p{L}\\p{N}]+`;
    return new RegExp(specials.length > 0 ? `${specials.join("|")}|${body}` : body, "giu");
  }

  private checkMaxLength(maxLength: number | undefined, min: number): number {
    const n = maxLength ?? this.modelMaxLength;
    if (!Number.isInteger(n) || n < min) throw new RangeError(`CLIPTokenizer: maxLength must be an integer >= ${min}, got ${maxLength}`);
    return n;
  }

  private warnTruncation(dropped: number[], maxLength: number): void {
    if (this.warnedTruncation) return;
    this.warnedTruncation = true;
    let text = this.decode(dropped);
    if (text.length > WARNING_TEXT_LIMIT) text = text.slice(0, WARNING_TEXT_LIMIT) + "\u2026";
    this.onWarning(
      `The following part of your input was truncated because CLIP can only handle sequences up to ${maxLength} tokens ` +
        `(${dropped.length} token${dropped.length === 1 ? "" : "s"} dropped): ${JSON.stringify(text)}`,
    );
  }
}

// ---------------------------------------------------------------------------------------------------------
// File formats

function padRow(row: number[], mask: number[], length: number, padId: number): void {
  while (row.length < length) {
    row.push(padId);
    mask.push(0);
  }
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\\/]/g, "\\$&"); // only syntax characters may be escaped under the u flag
}

/** merges -> Map("a b" -> rank), rank = order among the merge lines. */
function parseMerges(merges: CLIPTokenizerInit["merges"], source: string): Map<string, number> {
  const ranks = new Map<string, number>();
  const add = (a: string, b: string): void => {
    const key = a + " " + b;
    if (!ranks.has(key)) ranks.set(key, ranks.size);
  };
  if (typeof merges === "string") {
    const lines = merges.split("\n");
    for (let n = 0; n < lines.length; n++) {
      let line = lines[n];
      if (line.endsWith("\r")) line = line.slice(0, -1);
      if (line.length === 0 || line.startsWith("#version")) continue;
      const sp = line.indexOf(" ");
      if (sp > 0 && sp < line.length - 1 && line.indexOf(" ", sp + 1) < 0) {
        add(line.slice(0, sp), line.slice(sp + 1));
      } else {
        const parts = line.trim().split(/\s+/);
        if (parts.length !== 2) throw new Error(`${source}: merges line ${n + 1} is not two symbols: ${JSON.stringify(line)}`);
        add(parts[0], parts[1]);
      }
    }
  } else {
    merges.forEach((m, n) => {
      const parts = typeof m === "string" ? m.split(" ") : m;
      if (parts.length !== 2) throw new Error(`${source}: merge ${n} is not two symbols: ${JSON.stringify(m)}`);
      add(parts[0], parts[1]);
    });
  }
  return ranks;
}

/** A special-token entry of a config: a string, or an object with `content` (AddedToken). */
function tokenText(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (v !== null && typeof v === "object" && typeof (v as { content?: unknown }).content === "string") {
    return (v as { content: string }).content;
  }
  return undefined;
}

/** tokenizer_config.json / special_tokens_map.json fields (later files override earlier ones). */
function applyTokenizerConfig(init: CLIPTokenizerInit, cfg: Record<string, unknown>): void {
  init.bosToken = tokenText(cfg.bos_token) ?? init.bosToken;
  init.eosToken = tokenText(cfg.eos_token) ?? init.eosToken;
  init.unkToken = tokenText(cfg.unk_token) ?? init.unkToken;
  init.padToken = tokenText(cfg.pad_token) ?? init.padToken;
  if (typeof cfg.model_max_length === "number") init.modelMaxLength = cfg.model_max_length;
  const decoder = cfg.added_tokens_decoder;
  if (decoder !== null && typeof decoder === "object") {
    const added = [...(init.addedTokens ?? [])];
    for (const [id, entry] of Object.entries(decoder as Record<string, unknown>)) {
      const content = tokenText(entry);
      if (content !== undefined && Number.isInteger(Number(id))) added.push({ id: Number(id), content });
    }
    init.addedTokens = added;
  }
}

/** HF tokenizers' tokenizer.json: model.vocab, model.merges, added_tokens, padding, truncation. */
function applyTokenizerJson(init: CLIPTokenizerInit, tj: any, where: string): void {
  const model = tj?.model;
  if (model?.type !== undefined && model.type !== "BPE") throw new Error(`${where}: tokenizer.json holds a ${model.type} model, not BPE`);
  if (model?.vocab === null || typeof model?.vocab !== "object" || !Array.isArray(model?.merges)) {
    throw new Error(`${where}: tokenizer.json has no model.vocab / model.merges`);
  }
  init.vocab = model.vocab;
  init.merges = model.merges;
  if (typeof model.end_of_word_suffix === "string" && model.end_of_word_suffix) init.endOfWordSuffix = model.end_of_word_suffix;
  if (typeof model.unk_token === "string") init.unkToken = model.unk_token;
  if (Array.isArray(tj.added_tokens)) {
    init.addedTokens = tj.added_tokens
      .filter((t: any) => Number.isInteger(t?.id) && typeof t?.content === "string")
      .map((t: any) => ({ id: t.id, content: t.content }));
  }
  if (typeof tj.padding?.pad_token === "string") init.padToken = tj.padding.pad_token;
  if (Number.isInteger(tj.truncation?.max_length)) init.modelMaxLength = tj.truncation.max_length;
}
