// Byte-level BPE alphabet: the reversible map from the 256 byte values to 256 printable Unicode
// characters used by GPT-2/CLIP vocabularies (printable Latin-1 bytes map to themselves, the others
// to U+0100.. in byte order), plus helpers to turn a string's UTF-8 bytes into that alphabet and back.

/** byte value -> one-character string of the BPE alphabet (index = byte). */
export const BYTE_TO_UNICODE: readonly string[] = buildByteToUnicode();

/** char code of a BPE-alphabet character -> byte value (-1 where the code is not in the alphabet). */
const UNICODE_TO_BYTE: Int16Array = buildUnicodeToByte();

function buildByteToUnicode(): string[] {
  const isPrintable = (b: number): boolean =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const table: string[] = new Array<string>(256);
  let next = 0; // bytes that are not printable take U+0100, U+0101, ... in byte order
  for (let b = 0; b < 256; b++) {
    table[b] = String.fromCharCode(isPrintable(b) ? b : 256 + next++);
  }
  return table;
}

function buildUnicodeToByte(): Int16Array {
  const out = new Int16Array(512).fill(-1); // every alphabet character is below U+0144
  BYTE_TO_UNICODE.forEach((ch, b) => {
    out[ch.charCodeAt(0)] = b;
  });
  return out;
}

const utf8Encoder = new TextEncoder();

/** The UTF-8 bytes of `text`, each written as its BPE-alphabet character. */
export function bytesToBpeAlphabet(text: string): string {
  // ASCII fast path: printable ASCII (0x21..0x7e) maps to itself.
  let ascii = true;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) {
      ascii = false;
      break;
    }
  }
  if (ascii) return text;
  const bytes = utf8Encoder.encode(text);
  let out = "";
  for (const b of bytes) out += BYTE_TO_UNICODE[b];
  return out;
}

/**
 * Appends the bytes that the BPE-alphabet characters of `symbols` stand for to `out`. Characters
 * outside the alphabet (only possible in hand-made vocabularies) are appended as their own UTF-8.
 */
export function bpeAlphabetToBytes(symbols: string, out: number[]): void {
  for (let i = 0; i < symbols.length; i++) {
    const c = symbols.charCodeAt(i);
    const b = c < UNICODE_TO_BYTE.length ? UNICODE_TO_BYTE[c] : -1;
    if (b >= 0) {
      out.push(b);
    } else {
      const cp = symbols.codePointAt(i)!;
      if (cp > 0xffff) i++;
      for (const x of utf8Encoder.encode(String.fromCodePoint(cp))) out.push(x);
    }
  }
}
