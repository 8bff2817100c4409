// Generated images: tensor → RGB rounding, PNG text chunks with A1111 parameters (tEXt and iTXt),
// atomic save, and the formats sharp writes.

import { describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import sharp from "sharp";
import { GeneratedImage, formatParameters, type GenerationParameters } from "../../src/io/image.ts";
import { addPngText, readPngText } from "../../src/io/png-text.ts";
import { tensor, tidy } from "../../src/tensor/index.ts";

const params: GenerationParameters = {
  prompt: "a red circle on a blue background",
  negativePrompt: "blurry",
  steps: 20,
  sampler: "DDIM",
  cfgScale: 7.5,
  seed: 42,
  width: 2,
  height: 2,
  model: "shapes-64",
};

describe("GeneratedImage", () => {
  test("fromTensor clamps, scales by 255 and rounds half to even", () => {
    const img = tidy(() =>
      GeneratedImage.fromTensor(
        tensor(
          [
            [[0, 1], [-0.5, 1.5]],
            [[0.5 / 255, 1.5 / 255], [2.5 / 255, 0.5]],
            [[0.2, 0.4], [0.6, 0.8]],
          ],
        ),
      ),
    );
    expect(img.width).toBe(2);
    expect(img.height).toBe(2);
    // pixel (0,0): r=0, g=round(0.5)=0, b=51; (1,0): 255, round(1.5)=2, 102; (0,1): 0, round(2.5)=2, 153; (1,1): 255, 128, 204
    expect(Array.from(img.rgb)).toEqual([0, 0, 51, 255, 2, 102, 0, 2, 153, 255, 128, 204]);
    expect(() => tidy(() => GeneratedImage.fromTensor(tensor([[1, 2]])))).toThrow(/\[3, H, W\]/);
  });

  test("PNG carries the A1111 parameters text and decodes to the same pixels", async () => {
    const rgb = Uint8Array.from({ length: 12 }, (_, i) => i * 20);
    const img = new GeneratedImage(rgb, 2, 2, params);
    const png = await img.toBuffer();
    const text = readPngText(png);
    expect(text.parameters).toBe(formatParameters(params));
    expect(text.parameters).toBe(
      "a red circle on a blue background\nNegative prompt: blurry\nSteps: 20, Sampler: DDIM, CFG scale: 7.5, Seed: 42, Size: 2x2, Model: shapes-64",
    );
    const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    expect(info.width).toBe(2);
    expect(Array.from(data)).toEqual(Array.from(rgb));
  });

  test("non-Latin prompts go into an iTXt chunk", () => {
    const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0, 0x49, 0x48, 0x44, 0x52, 0, 0, 0, 0]);
    const out = addPngText(png, { parameters: "一只猫 🐱", note: "plain" });
    expect(readPngText(out)).toEqual({ parameters: "一只猫 🐱", note: "plain" });
    expect(() => addPngText(new Uint8Array(10), { a: "b" })).toThrow(/not a PNG/);
  });

  test("save writes atomically and leaves no temporary file", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "bd-image-"));
    const img = new GeneratedImage(new Uint8Array(12).fill(200), 2, 2, params);
    const file = path.join(dir, "out.png");
    await img.save(file);
    expect(readdirSync(dir)).toEqual(["out.png"]);
    expect(readPngText(new Uint8Array(readFileSync(file))).parameters).toContain("Seed: 42");
    await img.save(path.join(dir, "out.jpg"));
    const meta = await sharp(path.join(dir, "out.jpg")).metadata();
    expect(meta.format).toBe("jpeg");
    await expect(img.save(path.join(dir, "out.bmp"))).rejects.toThrow(/unsupported image extension/);
    await expect(img.save(path.join(dir, "missing-folder", "x.png"))).rejects.toThrow();
    expect(readdirSync(dir).sort()).toEqual(["out.jpg", "out.png"]);
  });
});
