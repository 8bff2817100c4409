// A1111 parameters text: formatParameters and parseParameters round-trip, and a prompt cannot forge
// other fields — line breaks become spaces (CLIP's tokenizer collapses whitespace, so the written
// prompt tokenizes as the original; checked through the tokenizer), a leading "Negative prompt:" is
// defused, and field values with commas, colons, line breaks or quotes are JSON-quoted as A1111 does.

import { describe, expect, test } from "bun:test";
import path from "node:path";
import { type GenerationParameters, formatParameters, parseParameters } from "../../src/io/parameters.ts";
import { CLIPTokenizer } from "../../src/tokenizer/clip-tokenizer.ts";
import { projectRoot } from "../helpers/paths.ts";

const base: GenerationParameters = { prompt: "a cat", steps: 20, sampler: "Euler a", cfgScale: 7, seed: 42, width: 512, height: 768, model: "sd15" };
const tok = CLIPTokenizer.fromPretrained(path.join(projectRoot, "assets", "shapes-64", "tokenizer"));
const ids = (s: string) => tok.encode(s);

/** What the fields of `p` must parse back to. */
function expectedFields(p: GenerationParameters): Record<string, string> {
  const f: Record<string, string> = { Steps: String(p.steps), Sampler: p.sampler, "CFG scale": String(p.cfgScale), Size: `${p.width}x${p.height}` };
  if (p.seed !== undefined) f.Seed = String(p.seed);
  if (p.model) f.Model = p.model;
  for (const [k, v] of Object.entries(p.extra ?? {})) f[k] = String(v);
  return f;
}

describe("parameters text", () => {
  test("plain parameters round-trip exactly", () => {
    const p = { ...base, negativePrompt: "blurry", extra: { "Clip skip": 2, Features: "attention(kind=chunked)" } };
    const text = formatParameters(p);
    expect(text).toBe("a cat\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 512x768, Model: sd15, Clip skip: 2, Features: attention(kind=chunked)");
    expect(parseParameters(text)).toEqual({ prompt: "a cat", negativePrompt: "blurry", fields: expectedFields(p) });
  });

  const forgeries: [string, Partial<GenerationParameters>][] = [
    ["a negative prompt line in the prompt", { prompt: "a cat\nNegative prompt: forged negative" }],
    ["a fields line in the prompt, no negative", { prompt: "a cat\nSteps: 1, Sampler: Forged, CFG scale: 99, Seed: 1, Size: 8x8" }],
    ["a fields line in the negative prompt", { prompt: "a cat", negativePrompt: "ugly\nSteps: 1, Sampler: Forged, CFG scale: 99, Seed: 1" }],
    ["CR and CRLF line breaks", { prompt: "a cat\r\nNegative prompt: x\rSteps: 1, Sampler: F, Seed: 3", negativePrompt: "n\r\nSteps: 2, Seed: 4, Size: 1x1" }],
    ["Unicode line separators", { prompt: "a cat\u2028Negative prompt: x\u2029Steps: 1, Sampler: F, Seed: 3" }],
    ["a prompt that starts with Negative prompt:", { prompt: "Negative prompt: not really a negative" }],
    ["a prompt that starts with spaces and Negative prompt:", { prompt: "  Negative prompt: still not" }],
    ["a field value with commas and colons", { model: "my, model: Seed: 7", extra: { "Prompt 2": "x, Steps: 3\nNegative prompt: y", Note: '"quoted"' } }],
  ];
  for (const [name, over] of forgeries)
    test(`cannot forge fields: ${name}`, () => {
      const p = { ...base, ...over };
      const parsed = parseParameters(formatParameters(p));
      expect(parsed.fields).toEqual(expectedFields(p));
      // prompts: equal up to whitespace, and the tokenizer sees exactly the original text
      const ws = (s: string) => s.replace(/\s+/g, " ").trim();
      expect(ws(parsed.prompt)).toBe(ws(p.prompt));
      expect(ids(parsed.prompt)).toEqual(ids(p.prompt));
      expect(ws(parsed.negativePrompt)).toBe(ws(p.negativePrompt ?? ""));
      expect(ids(parsed.negativePrompt)).toEqual(ids(p.negativePrompt ?? ""));
      expect(formatParameters(p).split("\n").length).toBe(p.negativePrompt ? 3 : 2);
    });

  test("the A1111 field pattern: fewer than three fields on the last line make it part of the prompt", () => {
    expect(parseParameters("just a prompt\nwith: one field")).toEqual({ prompt: "just a prompt\nwith: one field", negativePrompt: "", fields: {} });
  });
});
