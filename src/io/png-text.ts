// PNG text chunks: insert tEXt/iTXt key–value pairs into an encoded PNG (after IHDR) and read them
// back. Generated images carry their generation parameters this way (A1111's "parameters" key).

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

let crcTable: Uint32Array | null = null;
function crc32(bytes: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = crcTable[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function isPng(png: Uint8Array): boolean {
  return png.length >= 8 && SIGNATURE.every((b, i) => png[i] === b);
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  const typeAndData = out.subarray(4, 8 + data.length);
  typeAndData.set(new TextEncoder().encode(type), 0);
  typeAndData.set(data, 4);
  view.setUint32(8 + data.length, crc32(typeAndData));
  return out;
}

/**
 * Return a copy of `png` with one text chunk per entry inserted after IHDR: tEXt (Latin-1) when the
 * value is Latin-1, otherwise iTXt (UTF-8, uncompressed), as A1111 does for non-Latin prompts.
 */
export function addPngText(png: Uint8Array, entries: Record<string, string>): Uint8Array {
  if (!isPng(png)) throw new Error("addPngText: not a PNG (bad signature)");
  const ihdrLen = new DataView(png.buffer, png.byteOffset).getUint32(8);
  const afterIhdr = 8 + 12 + ihdrLen;
  const chunks: Uint8Array[] = [];
  for (const [key, value] of Object.entries(entries)) {
    if (!/^[\x20-\x7e]{1,79}$/.test(key)) throw new Error(`addPngText: invalid keyword ${JSON.stringify(key)}`);
    const latin1 = /^[\x00-\xff]*$/.test(value) && !value.includes("\0");
    if (latin1) {
      const data = new Uint8Array(key.length + 1 + value.length);
      for (let i = 0; i < key.length; i++) data[i] = key.charCodeAt(i);
      for (let i = 0; i < value.length; i++) data[key.length + 1 + i] = value.charCodeAt(i);
      chunks.push(chunk("tEXt", data));
    } else {
      const k = new TextEncoder().encode(key);
      const v = new TextEncoder().encode(value);
      // keyword \0 compression-flag(0) compression-method(0) language-tag \0 translated-keyword \0 text
      const data = new Uint8Array(k.length + 5 + v.length);
      data.set(k, 0);
      data.set(v, k.length + 5);
      chunks.push(chunk("iTXt", data));
    }
  }
  const total = png.length + chunks.reduce((s, c) => s + c.length, 0);
  const out = new Uint8Array(total);
  out.set(png.subarray(0, afterIhdr), 0);
  let o = afterIhdr;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  out.set(png.subarray(afterIhdr), o);
  return out;
}

/** All tEXt and (uncompressed) iTXt entries of a PNG. */
export function readPngText(png: Uint8Array): Record<string, string> {
  if (!isPng(png)) throw new Error("readPngText: not a PNG (bad signature)");
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  const out: Record<string, string> = {};
  let o = 8;
  while (o + 12 <= png.length) {
    const len = view.getUint32(o);
    const type = String.fromCharCode(...png.subarray(o + 4, o + 8));
    const data = png.subarray(o + 8, o + 8 + len);
    if (type === "tEXt") {
      const z = data.indexOf(0);
      out[String.fromCharCode(...data.subarray(0, z))] = Array.from(data.subarray(z + 1), (b) => String.fromCharCode(b)).join("");
    } else if (type === "iTXt") {
      const z = data.indexOf(0);
      const key = new TextDecoder().decode(data.subarray(0, z));
      if (data[z + 1] === 0) {
        let p = z + 3;
        p = data.indexOf(0, p) + 1; // language tag
        p = data.indexOf(0, p) + 1; // translated keyword
        out[key] = new TextDecoder().decode(data.subarray(p));
      }
    }
    if (type === "IEND") break;
    o += 12 + len;
  }
  return out;
}
