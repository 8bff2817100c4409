// Reading the demo model's (assets/shapes-64) images as its prompts describe them: the colour words it
// knows with reference RGB values, nearest-colour classification, the mean colour of the centre quarter
// (the shape) and of a 4-pixel border ring (the background), a prompt's requested colours, and the
// shape's pixel mask (pixels nearer the shape's colour than the background's).

import type { GeneratedImage } from "../../src/io/image.ts";

/** Reference RGB of the colour words the model knows; a colour is classified by the nearest one. */
export const COLOURS: Readonly<Record<string, readonly [number, number, number]>> = {
  red: [230, 40, 40],
  green: [40, 190, 70],
  blue: [40, 60, 230],
  yellow: [235, 220, 40],
  black: [20, 20, 20],
  white: [240, 240, 240],
  purple: [150, 60, 190],
  orange: [245, 150, 40],
  gray: [128, 128, 128],
};

const dist2 = (a: readonly number[], b: readonly number[]) => a.reduce((s, v, i) => s + (v - b[i]!) ** 2, 0);

export function nearestColour(rgb: readonly number[]): string {
  let best = "";
  let bestD = Infinity;
  for (const [name, ref] of Object.entries(COLOURS)) {
    const d = dist2(ref, rgb);
    if (d < bestD) [best, bestD] = [name, d];
  }
  return best;
}

/** Mean colour of the centre quarter (the shape) and of a 4-pixel border ring (the background). */
export function regions(img: GeneratedImage): { centre: number[]; border: number[] } {
  const { width: W, height: H } = img;
  const centre = img.meanColor(W * 0.375, H * 0.375, W * 0.625, H * 0.625);
  const sum = [0, 0, 0];
  let n = 0;
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++)
      if (x < 4 || y < 4 || x >= W - 4 || y >= H - 4) {
        for (let c = 0; c < 3; c++) sum[c]! += img.rgb[(y * W + x) * 3 + c]!;
        n++;
      }
  return { centre, border: sum.map((s) => s / n) };
}

/** "a red circle on a blue background" → { shape: "red", background: "blue" }. */
export function requested(prompt: string): { shape: string; background: string } {
  const m = /^an? (\w+) \w+ on an? (\w+) background$/.exec(prompt);
  if (!m) throw new Error(`cannot parse colours from ${JSON.stringify(prompt)}`);
  return { shape: m[1]!, background: m[2]! };
}

/** Pixels nearer the shape's colour than the background's. */
export function shapeMask(img: GeneratedImage, shape: string, background: string): boolean[] {
  const out: boolean[] = [];
  for (let i = 0; i < img.width * img.height; i++) {
    const px = [img.rgb[i * 3]!, img.rgb[i * 3 + 1]!, img.rgb[i * 3 + 2]!];
    out.push(dist2(px, COLOURS[shape]!) < dist2(px, COLOURS[background]!));
  }
  return out;
}

/** Intersection over union of two pixel masks. */
export const iou = (a: boolean[], b: boolean[]) => a.filter((v, i) => v && b[i]).length / Math.max(1, a.filter((v, i) => v || b[i]).length);
