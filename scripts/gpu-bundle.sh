#!/usr/bin/env bash
# Builds what scripts/gpu-check.sh needs on a GPU machine with no network, beside a copy of the work tree, into
# one git-ignored folder (.bd-cache/gpu-bundle, under 64 MiB in all):
#   bun.xz               this machine's Bun binary, xz-compressed
#   libbdkernels.so.xz   the real kernels library (bun scripts/build-kernels.ts --real-only: needs nvcc)
#   node_modules.tar.xz  the package's runtime dependencies (package.json "dependencies" and theirs; not
#                        TypeScript or the type packages, which the check does not use)
#   openblas.tar.xz      libopenblas.so.0 and the libraries it needs beyond glibc (libgfortran, libquadmath), for
#                        GPU machines without Debian's libopenblas0 (the CPU backend and the CPU reference tests)
#   MANIFEST             one line per file: sha256, bytes, name; then what was bundled (versions)
# gpu-check.sh verifies the checksums and unpacks it; nothing is downloaded by either script.
# Usage: bash scripts/gpu-bundle.sh [--out DIR] [--skip-kernels-build]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="$root/.bd-cache/gpu-bundle"
build_kernels=1
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --skip-kernels-build) build_kernels=0; shift ;;
    *) echo "usage: bash scripts/gpu-bundle.sh [--out DIR] [--skip-kernels-build]" >&2; exit 2 ;;
  esac
done
LIMIT=$((64 * 1024 * 1024))
log() { echo "[gpu-bundle] $*" >&2; }
die() { log "error: $*"; exit 1; }
command -v xz >/dev/null || die "xz not found (apt-get install xz-utils)"
command -v sha256sum >/dev/null || die "sha256sum not found (coreutils)"

bun_bin="$(command -v bun || true)"
[ -n "$bun_bin" ] || die "bun not found on PATH"
bun_bin="$(readlink -f "$bun_bin")"
if [ "$build_kernels" = 1 ]; then
  log "building the real kernels (cached when up to date)"
  bun scripts/build-kernels.ts --real-only >&2 || die "the real kernels did not build (is nvcc installed?)"
fi
kernels="$root/kernels/build/libbdkernels.so"
[ -f "$kernels" ] || die "$kernels is missing: run bun scripts/build-kernels.ts --real-only on a machine with nvcc"

rm -rf "$out.tmp"
mkdir -p "$out.tmp"
log "compressing bun ($(du -h "$bun_bin" | cut -f1))"
xz -T0 -6 -c "$bun_bin" > "$out.tmp/bun.xz"
xz -T0 -9 -c "$kernels" > "$out.tmp/libbdkernels.so.xz"

# runtime dependencies: the closure of package.json "dependencies" through each package's own package.json
deps="$(bun -e '
  const fs = require("node:fs"), path = require("node:path");
  const seen = new Set(), todo = Object.keys(require("./package.json").dependencies ?? {});
  const read = (n) => { try { return JSON.parse(fs.readFileSync(path.join("node_modules", n, "package.json"), "utf8")); } catch { return null; } };
  while (todo.length) {
    const n = todo.pop();
    if (seen.has(n)) continue;
    const p = read(n);
    if (!p) continue; // an optional dependency for another platform
    seen.add(n);
    todo.push(...Object.keys(p.dependencies ?? {}), ...Object.keys(p.optionalDependencies ?? {}));
  }
  console.log([...seen].sort().map((n) => "node_modules/" + n).join("\n"));
')"
[ -n "$deps" ] || die "no runtime dependencies found under node_modules (run bun install)"
# shellcheck disable=SC2086
tar -cf - $deps | xz -T0 -9 -c > "$out.tmp/node_modules.tar.xz"

blas="$(ldconfig -p 2>/dev/null | awk '/libopenblas\.so\.0 .*x86-64/ {print $NF; exit}')"
if [ -n "$blas" ]; then
  mkdir -p "$out.tmp/openblas/lib"
  cp -L "$blas" "$out.tmp/openblas/lib/libopenblas.so.0"
  for dep in $(ldd "$blas" | awk '/=>/ {print $3}'); do
    case "$(basename "$dep")" in libc.so*|libm.so*|libgcc_s.so*|ld-linux*|libpthread.so*|libdl.so*) ;; *) cp -L "$dep" "$out.tmp/openblas/lib/" ;; esac
  done
  tar -C "$out.tmp/openblas" -cf - lib | xz -T0 -9 -c > "$out.tmp/openblas.tar.xz"
  rm -rf "$out.tmp/openblas"
else
  log "libopenblas.so.0 not found here: the bundle has no OpenBLAS (the GPU machine must provide it)"
fi

(
  cd "$out.tmp"
  for f in *; do [ "$f" = MANIFEST ] && continue; printf '%s %s %s\n' "$(sha256sum "$f" | cut -d' ' -f1)" "$(stat -c %s "$f")" "$f"; done
  echo "# bun $("$bun_bin" --version) from $bun_bin"
  echo "# kernels $(cat "$kernels.hash" 2>/dev/null || echo unhashed) built by $(command -v nvcc >/dev/null && nvcc --version | tail -1 || echo 'unknown nvcc')"
  echo "# openblas ${blas:-none}"
  echo "# created $(date -u +%Y-%m-%dT%H:%M:%SZ) from $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo 'no git')"
) > "$out.tmp/MANIFEST"
total=$(du -cb "$out.tmp"/* | tail -1 | cut -f1)
[ "$total" -lt "$LIMIT" ] || die "the bundle is $((total / 1048576)) MiB, over the 64 MiB limit"
rm -rf "$out"
mv "$out.tmp" "$out"
log "wrote $out ($((total / 1048576)) MiB):"
grep -v '^#' "$out/MANIFEST" | awk '{printf "  %-22s %6.1f MiB\n", $3, $2 / 1048576}' >&2
