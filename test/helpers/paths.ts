// Where tests find shared data: the golden folder (BD_GOLDEN_DIR, default ../shared/golden
// beside the project), the CLIP vocabulary and the demo model.

import { existsSync } from "node:fs";
import path from "node:path";

export const projectRoot = path.resolve(import.meta.dir, "../..");
export const sharedDir = path.resolve(projectRoot, "../shared");
export const goldenDir = process.env.BD_GOLDEN_DIR ? path.resolve(process.env.BD_GOLDEN_DIR) : path.join(sharedDir, "golden");

export function requireDir(dir: string, what: string): string {
  if (!existsSync(dir)) throw new Error(`${what} not found at ${dir}; set BD_GOLDEN_DIR or place ../shared beside the project`);
  return dir;
}
