// A1111-style generation parameters ("infotext", the PNG "parameters" text): formatParameters writes
// the prompt line, "Negative prompt: …" and one "Key: value, …" line; parseParameters reads the text
// back the way A1111's parse_generation_parameters does.
//
// A prompt cannot forge other fields. A1111 readers split the text at "\n", take the last line as the
// fields and a line starting with "Negative prompt:" as the start of the negative prompt, and do not
// unescape prompt lines. So line breaks in the prompt and negative prompt (\n, \r, \v, \f, U+2028,
// U+2029) are written as spaces, and a prompt that begins with "Negative prompt:" is written with two
// spaces after "Negative". CLIP's tokenizer collapses every run of whitespace to one space, so the
// written prompt tokenizes (and generates) exactly as the original. Field values that contain a comma,
// a colon, a line break or a leading quote are JSON-quoted, as A1111's quote() does; keys keep only
// the characters A1111's field pattern accepts (letters, digits, _, space, -, /).

/** What produced an image; written into the PNG as A1111-style "parameters" text. */
export interface GenerationParameters {
  prompt: string;
  negativePrompt?: string;
  steps: number;
  sampler: string;
  cfgScale: number;
  seed?: number;
  width: number;
  height: number;
  model?: string;
  /** further "Key: value" pairs appended to the last line */
  extra?: Record<string, string | number>;
}

/** The parsed text: the prompts and every "Key: value" field (values unquoted, as strings). */
export interface ParsedParameters {
  prompt: string;
  /** "" when the text has none. */
  negativePrompt: string;
  fields: Record<string, string>;
}

const LINE_BREAKS = /[\n\r\v\f\u2028\u2029]/g;

/** A prompt as one line that no A1111 reader takes for the negative prompt or the fields. */
export function promptLine(text: string): string {
  return text.replace(LINE_BREAKS, " ").replace(/^(\s*Negative) (prompt:)/, "$1  $2");
}

/** A1111's quote(): JSON when the value would otherwise end or split the field. */
function quote(v: string): string {
  return /[,:\n\r\u2028\u2029]/.test(v) || v.startsWith('"') ? JSON.stringify(v) : v;
}

/** The A1111 "parameters" text: prompt, "Negative prompt: ...", then "Steps: 20, Sampler: ..." */
export function formatParameters(p: GenerationParameters): string {
  const fields: [string, string | number | undefined][] = [
    ["Steps", p.steps],
    ["Sampler", p.sampler],
    ["CFG scale", p.cfgScale],
    ["Seed", p.seed],
    ["Size", `${p.width}x${p.height}`],
    ["Model", p.model],
    ...Object.entries(p.extra ?? {}),
  ];
  const lines = [promptLine(p.prompt)];
  if (p.negativePrompt) lines.push(`Negative prompt: ${p.negativePrompt.replace(LINE_BREAKS, " ")}`);
  lines.push(
    fields
      .filter(([, v]) => v !== undefined && v !== "")
      .map(([k, v]) => `${k.replace(/[^\w \-/]/g, "_")}: ${quote(String(v))}`)
      .join(", "),
  );
  return lines.join("\n");
}

const FIELD = /\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)/g;

function unquote(v: string): string {
  if (v.length < 2 || !v.startsWith('"') || !v.endsWith('"')) return v;
  try {
    return String(JSON.parse(v));
  } catch {
    return v;
  }
}

/** Read A1111 parameters text as A1111 does (parse_generation_parameters, without its extras). */
export function parseParameters(text: string): ParsedParameters {
  const lines = text.trim().split("\n");
  let last = lines.pop() ?? "";
  if ([...last.matchAll(FIELD)].length < 3) {
    lines.push(last);
    last = "";
  }
  let prompt = "";
  let negativePrompt = "";
  let inNegative = false;
  for (let line of lines) {
    line = line.trim();
    if (line.startsWith("Negative prompt:")) {
      inNegative = true;
      line = line.slice(16).trim();
    }
    if (inNegative) negativePrompt += (negativePrompt === "" ? "" : "\n") + line;
    else prompt += (prompt === "" ? "" : "\n") + line;
  }
  const fields: Record<string, string> = {};
  for (const m of last.matchAll(FIELD)) fields[m[1]!] = unquote(m[2]!);
  return { prompt, negativePrompt, fields };
}
