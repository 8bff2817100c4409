// Writing the CLI's PNGs, synchronously and atomically (the main thread writes, so a Ctrl-C handler
// never runs halfway through): each image goes to a temporary file in its folder, then is renamed
// into place. One --out file is replaced whole. In a folder, images are NNNNN-seed.png numbered after
// the highest number there, and each number is claimed with an exclusive create of `.NNNNN.claim`
// (openSync "wx") held while the image is renamed in: two runs writing into one folder at once never
// take the same number, and a number whose image appeared after the scan is skipped.

import { closeSync, mkdirSync, openSync, readdirSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { type OutTarget, tempName } from "./out-target.ts";

export interface OutputImage {
  png: Uint8Array;
  /** The seed that reproduces this image alone (in the file name). */
  seed?: number;
}

const NUMBERED = /^(\d{5,})-/;
const CLAIM = /^\.(\d{5,})\.claim$/;
const pad = (n: number) => String(n).padStart(5, "0");

/** The first number after every NNNNN-… file and .NNNNN.claim in `dir`. */
export function nextNumber(dir: string): number {
  let next = 0;
  for (const f of readdirSync(dir)) {
    const m = NUMBERED.exec(f) ?? CLAIM.exec(f);
    if (m) next = Math.max(next, Number(m[1]) + 1);
  }
  return next;
}

function removeQuietly(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // already gone
  }
}

/** Write `bytes` to a temporary file in `dir`; returns its path. */
function writeTemp(dir: string, bytes: Uint8Array): string {
  const tmp = tempName(dir, "image");
  try {
    writeFileSync(tmp, bytes, { flag: "wx" });
  } catch (e) {
    removeQuietly(tmp);
    throw e;
  }
  return tmp;
}

/** Move `tmp` to the first free NNNNN-seed.png from `from` on; returns the final path. */
function claimAndRename(dir: string, tmp: string, seed: number | undefined, from: number): { file: string; number: number } {
  for (let n = from; ; n++) {
    const claim = path.join(dir, `.${pad(n)}.claim`);
    try {
      closeSync(openSync(claim, "wx"));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "EEXIST") continue; // another run is placing number n
      throw e;
    }
    try {
      if (readdirSync(dir).some((f) => NUMBERED.exec(f)?.[1] === pad(n))) continue; // taken after our scan
      const file = path.join(dir, `${pad(n)}-${seed ?? "noseed"}.png`);
      renameSync(tmp, file);
      return { file, number: n };
    } finally {
      removeQuietly(claim);
    }
  }
}

/** Write every image to `target`; returns the paths in image order. Nothing is left half-written. */
export function writeOutputs(target: OutTarget, images: readonly OutputImage[]): string[] {
  if (target.kind === "file") {
    if (images.length !== 1) throw new Error(`--out ${target.file} names one file but there are ${images.length} images`);
    const tmp = writeTemp(path.dirname(path.resolve(target.file)), images[0]!.png);
    try {
      renameSync(tmp, target.file);
    } catch (e) {
      removeQuietly(tmp);
      throw e;
    }
    return [target.file];
  }
  const dir = target.dir;
  mkdirSync(dir, { recursive: true });
  const paths: string[] = [];
  let next = nextNumber(dir);
  for (const img of images) {
    const tmp = writeTemp(dir, img.png);
    try {
      const { file, number } = claimAndRename(dir, tmp, img.seed, next);
      paths.push(file);
      next = number + 1;
    } catch (e) {
      removeQuietly(tmp);
      throw e;
    }
  }
  return paths;
}
