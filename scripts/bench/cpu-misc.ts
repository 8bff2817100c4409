// Small CPU timings that tests must not assert on, printed as one JSON object: CLIP vocabulary load,
// a 75-word prompt encode (warm merge cache), and torch-compatible randn of the 128×128 SD latents.
// Usage: bun scripts/bench/cpu-misc.ts

import path from "node:path";
import { CLIPTokenizer } from "../../src/tokenizer/clip-tokenizer.ts";
import { TorchGenerator } from "../../src/tensor/random/torch-normal.ts";

const root = path.resolve(import.meta.dir, "../..");
const tokenizerDir = path.join(root, "assets/shapes-64/tokenizer");

/** Best of `reps` runs, in milliseconds. */
function best(reps: number, fn: () => void): number {
  let b = Infinity;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    fn();
    b = Math.min(b, performance.now() - t0);
  }
  return Math.round(b * 1000) / 1000;
}

const vocabLoadMs = best(3, () => CLIPTokenizer.fromPretrained(tokenizerDir));
const tok = CLIPTokenizer.fromPretrained(tokenizerDir);
const words = "a majestic castle on a hill at sunset with dramatic clouds and golden light".split(" ");
const prompt = Array.from({ length: 75 }, (_, i) => words[i % words.length]).join(" ");
tok.encodeForModel(prompt);
const encodeMs = best(5, () => tok.encodeForModel(prompt));
const g = new TorchGenerator(1);
g.randn([1, 4, 128, 128]);
const randnMs = best(5, () => g.randn([1, 4, 128, 128]));

console.log(
  JSON.stringify(
    { bench: "cpu-misc", date: new Date().toISOString(), clip_vocab_load_ms: vocabLoadMs, clip_encode_75_words_ms: encodeMs, randn_1x4x128x128_ms: randnMs },
    null,
    2,
  ),
);
