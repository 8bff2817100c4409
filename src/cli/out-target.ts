// What `--out` names, checked before the model loads: one PNG file (the path ends in .png) or a folder
// of numbered PNGs (the path ends with "/" or already is a folder; created when missing). Anything
// else is an error naming --out and the fix: another extension (PNG is the format), a name that is
// neither, a folder named like a file, a special file (/dev/null), a missing parent folder, a file
// used as a folder, or a folder where files cannot be created (probed by creating and removing a
// file there, so read-only file systems, permissions and /proc fail now, not after every step).

import { closeSync, openSync, statSync, unlinkSync, type Stats } from "node:fs";
import path from "node:path";

export type OutTarget = { kind: "file"; file: string } | { kind: "folder"; dir: string };

/** --out cannot be used; the message names --out, the problem and the fix. */
export class OutTargetError extends Error {
  override name = "OutTargetError";
  constructor(out: string, problem: string) {
    super(`--out ${out}: ${problem}`);
  }
}

function stat(p: string): Stats | null {
  try {
    return statSync(p);
  } catch {
    return null;
  }
}

/** The nearest existing ancestor of `p` (p itself when it exists). */
function nearestExisting(p: string): { dir: string; stats: Stats } {
  let cur = path.resolve(p);
  for (;;) {
    const s = stat(cur);
    if (s) return { dir: cur, stats: s };
    const up = path.dirname(cur);
    if (up === cur) throw new Error(`no existing ancestor of ${p}`);
    cur = up;
  }
}

const ERRNO_TEXT: Record<string, string> = {
  EACCES: "permission denied",
  EPERM: "permission denied",
  EROFS: "read-only file system",
  ENOSPC: "no space left on the device",
  EDQUOT: "disk quota exceeded",
  ENOENT: "it does not accept new files",
  ENOTDIR: "it is not a folder",
};

/** A temporary name in `dir` that the CLI uses for probes and for images before they are renamed. */
export function tempName(dir: string, what: string): string {
  return path.join(dir, `.bd-${what}-${process.pid}-${Math.random().toString(36).slice(2, 10)}.tmp`);
}

/** Create and remove a file in `dir`; the problem as text when that fails. */
export function probeWritable(dir: string): string | null {
  const probe = tempName(dir, "probe");
  try {
    closeSync(openSync(probe, "wx"));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? "";
    return ERRNO_TEXT[code] ?? `${code || (e as Error).message}`;
  }
  try {
    unlinkSync(probe);
  } catch {
    // created but not removable: leave it to the user rather than fail the run
  }
  return null;
}

/** Check --out for `batch` images; throws OutTargetError. Creates nothing (a new folder is made when writing). */
export function resolveOutTarget(out: string, batch: number): OutTarget {
  if (out.trim() === "") throw new OutTargetError(JSON.stringify(out), "is empty; name a .png file or a folder");
  const slash = out.endsWith("/") || out.endsWith(path.sep);
  const st = stat(out);
  const isPng = /\.png$/i.test(out.replace(/\/+$/, ""));
  if (slash || st?.isDirectory()) {
    if (st && !st.isDirectory()) throw new OutTargetError(out, `${out.replace(/\/+$/, "")} is a file, not a folder; name a folder for numbered images (or drop the trailing /)`);
    if (isPng && !slash)
      throw new OutTargetError(out, `is an existing folder; to write numbered images into it, end it with / (${out}/), or name a .png file that is not a folder`);
    return { kind: "folder", dir: checkFolder(out) };
  }
  if (st && !st.isFile()) throw new OutTargetError(out, "exists and is not a regular file (a device or special file); name a .png file in a folder you can write to");
  if (!isPng) {
    const ext = path.extname(out);
    if (ext) throw new OutTargetError(out, `bun-diffusion writes PNG images only ("${ext}" is not supported); name a .png file (${out.slice(0, -ext.length)}.png), or a folder ending with /`);
    throw new OutTargetError(out, `is neither a .png file nor an existing folder; write ${out}.png for one image, or ${out}/ for a folder of numbered images (created when missing)`);
  }
  if (batch > 1) throw new OutTargetError(out, `names one file but --batch ${batch} makes ${batch} images; pass a folder (e.g. ${path.dirname(out)}/)`);
  const parent = path.dirname(path.resolve(out));
  const pst = stat(parent);
  if (!pst) {
    const { dir, stats } = nearestExisting(parent);
    if (!stats.isDirectory()) throw new OutTargetError(out, `${dir} is a file, not a folder; pick another place for the image`);
    throw new OutTargetError(out, `the folder ${path.dirname(out)} does not exist; create it (mkdir -p ${path.dirname(out)}) or pick an existing folder`);
  }
  if (!pst.isDirectory()) throw new OutTargetError(out, `${parent} is a file, not a folder; pick another place for the image`);
  const problem = probeWritable(parent);
  if (problem) throw new OutTargetError(out, `cannot create files in ${parent} (${problem}); pick a folder you can write to`);
  return { kind: "file", file: out };
}

/** A folder target: it or its nearest existing ancestor must be a folder where files can be created. */
function checkFolder(out: string): string {
  const { dir, stats } = nearestExisting(out);
  if (!stats.isDirectory()) throw new OutTargetError(out, `${dir} is a file, not a folder; pick another folder for the images`);
  const problem = probeWritable(dir);
  if (problem) throw new OutTargetError(out, `cannot create files in ${dir} (${problem}); pick a folder you can write to`);
  return out;
}
