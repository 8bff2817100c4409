// Generated images: 8-bit RGB pixels with their generation parameters, converted from a
// [3, H, W] float tensor in [0, 1] (diffusers' rounding), encoded as PNG through sharp with the
// parameters embedded as a text chunk (A1111's "parameters" convention, written by parameters.ts),
// and saved atomically.

import { roundHalfEven } from "../core/float32.ts";
import { hostAlloc } from "../core/host-memory.ts";
import { rename, unlink, writeFile } from "node:fs/promises";
import path from "node:path";
import sharp from "sharp";
import type { Tensor } from "../tensor/tensor.ts";
import { type GenerationParameters, formatParameters } from "./parameters.ts";
import { addPngText } from "./png-text.ts";

export { type GenerationParameters, type ParsedParameters, formatParameters, parseParameters } from "./parameters.ts";

export class GeneratedImage {
  constructor(
    /** packed RGB, row-major, width·height·3 bytes */
    readonly rgb: Uint8Array,
    readonly width: number,
    readonly height: number,
    readonly parameters: GenerationParameters | null = null,
  ) {
    if (rgb.length !== width * height * 3) throw new Error(`GeneratedImage: ${rgb.length} bytes is not ${width}×${height}×3`);
  }

  /** From a [3, H, W] tensor with values in [0, 1] (clamped; ×255 and rounded half-to-even as diffusers). */
  static fromTensor(t: Tensor, parameters: GenerationParameters | null = null): GeneratedImage {
    if (t.ndim !== 3 || t.shape[0] !== 3) throw new Error(`GeneratedImage.fromTensor expects [3, H, W], got ${t.describe()}`);
    const [, h, w] = t.shape as [number, number, number];
    const v = t.toFloat32Array(); // [3, H, W]
    const rgb = hostAlloc(h * w * 3, `the RGB bytes of a ${w}×${h} image`, () => new Uint8Array(h * w * 3));
    const plane = h * w;
    for (let c = 0; c < 3; c++)
      for (let i = 0; i < plane; i++) rgb[i * 3 + c] = roundHalfEven(Math.fround(Math.min(1, Math.max(0, v[c * plane + i]!)) * 255)); // float32 product, as numpy on a float32 array
    return new GeneratedImage(rgb, w, h, parameters);
  }

  /** Mean RGB over a rectangle (for quick checks of what was drawn where). */
  meanColor(x0 = 0, y0 = 0, x1 = this.width, y1 = this.height): [number, number, number] {
    const sum = [0, 0, 0];
    for (let y = y0; y < y1; y++)
      for (let x = x0; x < x1; x++) for (let c = 0; c < 3; c++) sum[c]! += this.rgb[(y * this.width + x) * 3 + c]!;
    const n = Math.max(1, (x1 - x0) * (y1 - y0));
    return [sum[0]! / n, sum[1]! / n, sum[2]! / n];
  }

  /** Encoded image bytes: PNG (with the parameters text chunk), JPEG or WebP. */
  async toBuffer(format: "png" | "jpeg" | "webp" = "png"): Promise<Uint8Array> {
    const img = sharp(this.rgb, { raw: { width: this.width, height: this.height, channels: 3 } });
    if (format === "png") {
      const png = new Uint8Array(await img.png().toBuffer());
      return this.parameters ? addPngText(png, { parameters: formatParameters(this.parameters) }) : png;
    }
    const withMeta = this.parameters ? img.withExif({ IFD0: { ImageDescription: formatParameters(this.parameters) } }) : img;
    return new Uint8Array(await (format === "jpeg" ? withMeta.jpeg({ quality: 95 }) : withMeta.webp({ quality: 95 })).toBuffer());
  }

  /**
   * Write to `file` (format from the extension: .png, .jpg/.jpeg, .webp). The bytes go to a
   * temporary file in the same folder that is renamed into place, so an interrupted run never
   * leaves a half-written image.
   */
  async save(file: string): Promise<void> {
    const ext = path.extname(file).toLowerCase();
    const format = ext === ".png" ? "png" : ext === ".jpg" || ext === ".jpeg" ? "jpeg" : ext === ".webp" ? "webp" : null;
    if (!format) throw new Error(`save: unsupported image extension "${ext}" in ${file}; use .png, .jpg or .webp`);
    const bytes = await this.toBuffer(format);
    const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
    try {
      await writeFile(tmp, bytes);
      await rename(tmp, file);
    } catch (e) {
      await unlink(tmp).catch(() => {});
      throw e;
    }
  }
}
