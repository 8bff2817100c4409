#!/usr/bin/env bash
# One entry point for a fresh machine (Node + npm, no Bun): installs what bun-diffusion needs
# (Bun 1.4.x from npm, the package's dependencies, Debian's OpenBLAS when apt is usable), then
# runs `bun "$@"` in the project root. Usage: bash scripts/bd.sh test | bash scripts/bd.sh run demo
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
BUN_VERSION="1.4.5"

log() { echo "[setup] $*" >&2; }

# 1. Bun: the one on PATH if it is 1.4 or newer, else a global npm install, else a project-local one.
bun_ok() { command -v "$1" >/dev/null 2>&1 && "$1" --version 2>/dev/null | grep -Eq '^(1\.([4-9]|[1-9][0-9])|[2-9])\.'; }
BUN=bun
if ! bun_ok bun; then
  if [ -x "$root/.bd-cache/bun/bin/bun" ] && bun_ok "$root/.bd-cache/bun/bin/bun"; then
    BUN="$root/.bd-cache/bun/bin/bun"
  else
    log "installing bun@$BUN_VERSION from npm"
    if npm install -g "bun@$BUN_VERSION" >/dev/null 2>&1 && bun_ok bun; then
      BUN=bun
    else
      npm install --prefix "$root/.bd-cache/bun" "bun@$BUN_VERSION" >/dev/null 2>&1
      BUN="$root/.bd-cache/bun/node_modules/.bin/bun"
      bun_ok "$BUN" || { log "could not install Bun from npm; install Bun >= 1.4 and retry"; exit 1; }
    fi
  fi
fi

# 2. Package dependencies (lockfile-exact).
if [ ! -d node_modules ] || [ bun.lock -nt node_modules ]; then
  log "installing package dependencies"
  "$BUN" install --frozen-lockfile >/dev/null
  touch node_modules
fi

# 3. OpenBLAS for fast CPU GEMM/convolution (optional: a TypeScript GEMM is the fallback).
if ! ldconfig -p 2>/dev/null | grep -q 'libopenblas\.so\.0'; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    log "installing libopenblas0 (Debian) for fast CPU matrix multiplication"
    (apt-get install -y -q libopenblas0 >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q libopenblas0 >/dev/null 2>&1; }) \
      || log "could not install libopenblas0; the CPU backend will use its slower TypeScript GEMM"
  else
    log "libopenblas0 not found and apt-get is not usable; the CPU backend will use its slower TypeScript GEMM (apt-get install libopenblas0 to fix)"
  fi
fi

exec "$BUN" "$@"
