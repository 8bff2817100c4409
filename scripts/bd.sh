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

# 4. CUDA kernels (scripts/build-kernels.ts, cached by source hash). The test command builds the emulated
#    device (g++; ARCHITECTURE decision 4) with its checking-mode variant (decision 18) and, when nvcc exists, the real library for every architecture as a
#    compile check. Other commands build the real library only on a machine with nvcc and an NVIDIA driver.
has_driver() { [ -e /dev/nvidiactl ] || ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1'; }
if [ "${1:-}" = "test" ]; then
  if ! command -v g++ >/dev/null 2>&1 && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    log "installing g++ (Debian) to build the emulated CUDA device"
    apt-get install -y -q g++ >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q g++ >/dev/null 2>&1; } || true
  fi
  if command -v g++ >/dev/null 2>&1 || command -v nvcc >/dev/null 2>&1; then
    log "building CUDA kernels (cached after the first run)"
    # --emu-check: the checking mode's variant of the emulated kernels, which test/cuda/check-suite.test.ts runs
    "$BUN" scripts/build-kernels.ts --emu-check >&2
  else
    log "neither g++ nor nvcc found: CUDA tests will be skipped (apt-get install g++ to run them emulated)"
  fi
elif command -v nvcc >/dev/null 2>&1 && has_driver; then
  "$BUN" scripts/build-kernels.ts --real-only >&2
elif has_driver; then
  log "an NVIDIA driver is present but nvcc is not: install the CUDA toolkit (nvcc) and rerun to build the kernels for device \"cuda\""
fi

# bun test: the per-test timeout on the command line (120 s: real models on a 2-core CI machine). Bun 1.4 keeps a
# preload's setDefaultTimeout for the first test file only, and resets it after any file that sets its own.
if [ "${1:-}" = "test" ] && ! printf '%s\n' "$@" | grep -q -- '^--timeout'; then
  shift
  exec "$BUN" test --timeout 120000 "$@"
fi
exec "$BUN" "$@"
