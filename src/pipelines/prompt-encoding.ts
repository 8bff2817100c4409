// Prompt encoding shared by the pipelines: texts → token rows (77 ids each, truncated with the
// tokenizer's one-time warning, or 75-token chunks in the A1111/ComfyUI long-prompt convention) →
// a CLIP text encoder → the hidden state the pipeline conditions on (SD: last_hidden_state or
// clip-skip through the final LayerNorm; SDXL: a raw hidden state, penultimate by default) and the
// pooled output (text_embeds for a projection model). Chunked rows are encoded as a batch and their
// embeddings concatenated along the sequence axis; a text's pooled output is its first chunk's.

import type { CLIPTextModel, CLIPTextModelWithProjection, CLIPTextOutput } from "../models/clip.ts";
import { type Tensor, tensor, tidy } from "../tensor/index.ts";
import type { CLIPTokenizer } from "../tokenizer/clip-tokenizer.ts";

export type TextEncoder = CLIPTextModel | CLIPTextModelWithProjection;

/** Which hidden state becomes the prompt embedding. */
export type EmbeddingLayer =
  /** SD: last_hidden_state; with clipSkip k, final_layer_norm(hidden_states[-(k + 1)]) (diffusers). */
  | { kind: "final"; clipSkip?: number }
  /** SDXL: hidden_states[-fromEnd] without the final LayerNorm (2 = penultimate). */
  | { kind: "hidden"; fromEnd: number };

/** Token rows of N texts, `chunks` consecutive rows per text. */
export interface TokenRows {
  rows: number[][];
  masks: number[][];
  texts: number;
  chunks: number;
}

export interface TextEmbedding {
  /** [N, chunks·L, D] */
  hidden: Tensor;
  /** [N, P]: text_embeds (projection models) or pooler_output. */
  pooled: Tensor;
}

/**
 * Token rows for `texts`: one row of `maxLength` (default the tokenizer's 77) per text, truncated
 * with the tokenizer's warning; or, chunked, at least `minChunks` rows of 77 per text (every text
 * gets the same number).
 */
export function tokenRows(
  tokenizer: CLIPTokenizer,
  texts: readonly string[],
  opts: { chunked?: boolean; minChunks?: number; maxLength?: number } = {},
): TokenRows {
  if (opts.chunked) {
    const c = tokenizer.encodeChunked(texts, { minChunks: opts.minChunks });
    return { rows: c.chunks.flat(), masks: c.attentionMask.flat(), texts: texts.length, chunks: c.numChunks };
  }
  const m = tokenizer.encodeForModel(texts, { maxLength: opts.maxLength });
  return { rows: m.inputIds, masks: m.attentionMask, texts: texts.length, chunks: 1 };
}

/** The number of 75-token chunks the longest of `texts` needs (at least 1). */
export function chunksNeeded(tokenizer: CLIPTokenizer, texts: readonly string[]): number {
  return tokenizer.encodeChunked(texts).numChunks;
}

/** The hidden state `layer` selects from an encoder output. */
function pickLayer(encoder: TextEncoder, out: CLIPTextOutput, layer: EmbeddingLayer): Tensor {
  const hs = out.hiddenStates; // N+1 entries: embeddings, then each layer (no final LN)
  if (layer.kind === "final") {
    if (layer.clipSkip === undefined) return out.lastHiddenState;
    return encoder.finalLayerNorm(hs[hs.length - 1 - layer.clipSkip]!);
  }
  return hs[hs.length - layer.fromEnd]!;
}

/** Run `encoder` on token rows; embeddings of a text's chunks are concatenated along the sequence. */
export function encodeRows(encoder: TextEncoder, tokens: TokenRows, layer: EmbeddingLayer): TextEmbedding {
  return tidy(() => {
    const L = tokens.rows[0]!.length;
    const shape = [tokens.rows.length, L];
    const ids = tensor(Int32Array.from(tokens.rows.flat()), { shape, device: encoder.device }); // [N·k, L]
    const useMask = encoder.config.use_attention_mask === true; // diffusers passes the mask only then
    const attentionMask = useMask ? tensor(Int32Array.from(tokens.masks.flat()), { shape, device: encoder.device }) : null;
    const out = encoder.call(ids, { attentionMask });
    const hidden = pickLayer(encoder, out, layer); // [N·k, L, D]
    const pooled = out.textEmbeds ?? out.poolerOutput; // [N·k, P]
    const { texts: N, chunks: k } = tokens;
    if (k === 1) return { hidden, pooled };
    return {
      hidden: hidden.reshape([N, k * L, hidden.shape[2]!]), // chunks of one text are consecutive rows
      pooled: pooled.reshape([N, k, pooled.shape[1]!]).select(1, 0).contiguous(),
    };
  });
}

/** [B, ...] → [B·n, ...] with each row repeated n times in place (torch's repeat + view in diffusers). */
export function repeatPerImage(t: Tensor, n: number): Tensor {
  if (n === 1) return t.reshape(t.shape);
  const [B, ...rest] = t.shape as number[];
  return tidy(() => t.unsqueeze(1).expand([B!, n, ...rest]).reshape([B! * n, ...rest]));
}
