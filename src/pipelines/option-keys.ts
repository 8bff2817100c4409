// Unknown option keys: JavaScript callers get no compile-time check, so generate(), fromPretrained()
// and loadPipeline() compare the keys they are given with the ones they know and reject the rest,
// suggesting the closest known key ("did you mean …?") by edit distance, or a known alias
// (diffusers' snake_case names such as guidance_scale or num_inference_steps). A key that belongs to
// another pipeline (prompt2 on an SD 1.x pipeline) is named as such.

/** diffusers / Python-style names of our options, where edit distance would not find them. */
const ALIASES: Record<string, string> = {
  num_inference_steps: "steps",
  numinferencesteps: "steps",
  num_images_per_prompt: "numImagesPerPrompt",
  negative_prompt: "negativePrompt",
  negative_prompt_2: "negativePrompt2",
  prompt_2: "prompt2",
  guidance_scale: "guidanceScale",
  guidance_rescale: "guidanceRescale",
  cfg: "guidanceScale",
  cfgscale: "guidanceScale",
  prompt_embeds: "promptEmbeds",
  negative_prompt_embeds: "negativePromptEmbeds",
  pooled_prompt_embeds: "pooledPromptEmbeds",
  negative_pooled_prompt_embeds: "negativePooledPromptEmbeds",
  clip_skip: "clipSkip",
  output_type: "outputType",
  callback_on_step_end: "onStep",
  callback: "onStep",
  torch_dtype: "dtype",
  attn_implementation: "attention",
  original_size: "originalSize",
  target_size: "targetSize",
  crops_coords_top_left: "cropsCoordsTopLeft",
  check_finite: "checkFinite",
};

/** Edit distance with adjacent transpositions (optimal string alignment: "stpes" → "steps" is 1), case-insensitive. */
export function editDistance(a: string, b: string): number {
  const s = a.toLowerCase();
  const t = b.toLowerCase();
  const d: number[][] = Array.from({ length: s.length + 1 }, (_, i) => Array.from({ length: t.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= s.length; i++)
    for (let j = 1; j <= t.length; j++) {
      const cost = s[i - 1] === t[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && s[i - 1] === t[j - 2] && s[i - 2] === t[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  return d[s.length]![t.length]!;
}

/** The known key `key` most likely means, or null when none is close. */
export function suggestKey(key: string, known: readonly string[]): string | null {
  const norm = (k: string) => k.toLowerCase().replace(/[_-]/g, "");
  const alias = ALIASES[key] ?? ALIASES[key.toLowerCase()] ?? ALIASES[norm(key)];
  if (alias && known.includes(alias)) return alias;
  // same letters apart from case and separators: guidance_Scale → guidanceScale
  const same = known.find((k) => norm(k) === norm(key));
  if (same) return same;
  let best: string | null = null;
  let bestD = Infinity;
  for (const k of known) {
    const d = editDistance(norm(key), norm(k));
    if (d < bestD) [best, bestD] = [k, d];
  }
  // a third of the key's length (at least 1, at most 3) keeps "stpes" → steps but not "foo" → eta
  return bestD <= Math.min(3, Math.max(1, Math.floor(key.length / 3))) ? best : null;
}

/**
 * The first key of `options` that is not in `known`, with the closest known key (or null), or null
 * when every key is known. Keys whose value is undefined count too: a typo is a typo.
 */
export function unknownKey(options: object, known: readonly string[]): { key: string; suggestion: string | null } | null {
  for (const key of Object.keys(options)) if (!known.includes(key)) return { key, suggestion: suggestKey(key, known) };
  return null;
}

/** `is not an option of <what>; did you mean "x"? (options: a, b, …)` */
export function unknownKeyMessage(u: { suggestion: string | null }, what: string, known: readonly string[]): string {
  return `is not an option of ${what}${u.suggestion ? `; did you mean "${u.suggestion}"?` : ""} (options: ${known.join(", ")})`;
}
