// The demo model shipped with the package (assets/shapes-64: a tiny SD 1.x-architecture model trained
// on coloured shapes), as an absolute path that works wherever the package is installed or linked.

import { fileURLToPath } from "node:url";

/** Absolute path of the shipped demo model folder (assets/shapes-64). */
export const DEMO_MODEL_DIR: string = fileURLToPath(new URL("../../assets/shapes-64", import.meta.url));
