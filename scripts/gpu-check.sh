#!/usr/bin/env bash
# The one-command check of a machine with an NVIDIA GPU, from a copy of the work tree with no network:
#   1. unpacks the bundle that scripts/gpu-bundle.sh built (.bd-cache/gpu-bundle: Bun, the real kernels library,
#      the runtime node_modules, OpenBLAS), after checking every file against its MANIFEST checksum;
#   2. prints the environment (`bun-diffusion info`, nvidia-smi);
#   3. runs the CUDA test suite on the real device (test/cuda, test/ops, test/backends, test/offload);
#   4. runs compute-sanitizer memcheck and racecheck over the kernel tests when the tool exists;
#   5. runs the benchmarks that exist (scripts/bench/cuda-ops.ts, attention.ts, offload-steps.ts, tome.ts, tome-table.ts, memory.ts,
#      host-overhead.ts, cuda-graph-steps.ts, channels-last.ts, ladder.ts);
#   each step under its own time limit, all of it within 8 minutes (a step gets what is left when that is less), and
#   writes bench/results/<gpu>-<date>.json and .md (scripts/gpu-check-report.ts) with every step's status, time,
#   log tail and the benchmarks' JSON.
# --dry-run does everything but the GPU steps (they are listed as skipped): the bundle check and unpack, info on the
# CPU, the report — CI runs it (test/cli/gpu-check.test.ts). Nothing is downloaded.
# Usage: bash scripts/gpu-check.sh [--dry-run] [--bundle DIR] [--out DIR] [--budget SECONDS] [--work DIR (scratch)]
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
dry=0
bundle="$root/.bd-cache/gpu-bundle"
out=""
budget=480
work="$root/.bd-cache/gpu-check"
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1; shift ;;
    --bundle) bundle="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --budget) budget="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    *) echo "usage: bash scripts/gpu-check.sh [--dry-run] [--bundle DIR] [--out DIR] [--budget SECONDS] [--work DIR]" >&2; exit 2 ;;
  esac
done
log() { echo "[gpu-check] $*" >&2; }
die() { log "error: $*"; exit 1; }
start=$(date +%s)
case "$(readlink -m "$work")" in /|"$root"|"$HOME") die "--work $work would be emptied: name a scratch folder" ;; esac
rm -rf "$work" && mkdir -p "$work/logs" || die "cannot create $work"
steps="$work/steps.jsonl"
: > "$steps"

# ---- 1. the bundle -------------------------------------------------------------------------------------------
bun_ok() { [ -x "$1" ] && "$1" --version 2>/dev/null | grep -Eq '^(1\.([4-9]|[1-9][0-9])|[2-9])\.'; }
BUN=""
if [ -f "$bundle/MANIFEST" ]; then
  log "checking the bundle $bundle"
  while read -r sum size name; do
    case "$sum" in '#'*|'') continue ;; esac
    f="$bundle/$name"
    [ -f "$f" ] || die "the bundle lacks $name (listed in its MANIFEST): rebuild it with bash scripts/gpu-bundle.sh"
    [ "$(stat -c %s "$f")" = "$size" ] || die "$name is $(stat -c %s "$f") bytes, its MANIFEST says $size: the copy is truncated or stale; rebuild it with bash scripts/gpu-bundle.sh"
    [ "$(sha256sum "$f" | cut -d' ' -f1)" = "$sum" ] || die "$name does not match its MANIFEST checksum: the copy is corrupt; rebuild it with bash scripts/gpu-bundle.sh"
  done < "$bundle/MANIFEST"
  mkdir -p "$work/bin" "$work/lib"
  xz -dc "$bundle/bun.xz" > "$work/bin/bun" && chmod +x "$work/bin/bun" || die "cannot unpack bun.xz"
  bun_ok "$work/bin/bun" || die "the bundled bun does not run here ($(file -b "$work/bin/bun" 2>/dev/null | cut -c1-60))"
  BUN="$work/bin/bun"
  if [ -f "$bundle/libbdkernels.so.xz" ]; then
    xz -dc "$bundle/libbdkernels.so.xz" > "$work/lib/libbdkernels.so" || die "cannot unpack libbdkernels.so.xz"
    export BD_KERNELS_LIB="$work/lib/libbdkernels.so"
  fi
  if [ -f "$bundle/openblas.tar.xz" ] && ! ldconfig -p 2>/dev/null | grep -q 'libopenblas\.so\.0'; then
    xz -dc "$bundle/openblas.tar.xz" | tar -C "$work" -xf - || die "cannot unpack openblas.tar.xz"
    export LD_LIBRARY_PATH="$work/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
  if [ ! -d node_modules ]; then
    xz -dc "$bundle/node_modules.tar.xz" | tar -xf - || die "cannot unpack node_modules.tar.xz"
  fi
else
  for b in "$(command -v bun || true)" "$root/.bd-cache/bun/bin/bun"; do
    if [ -n "$b" ] && bun_ok "$b"; then BUN="$b"; break; fi
  done
  [ -n "$BUN" ] || die "no bundle at $bundle and no Bun >= 1.4 here: build one with bash scripts/gpu-bundle.sh on a machine with nvcc and copy .bd-cache/gpu-bundle along"
  [ -d node_modules ] || die "no bundle at $bundle and no node_modules: build the bundle with bash scripts/gpu-bundle.sh"
  log "no bundle at $bundle: using $BUN and the work tree's node_modules"
fi
export PATH="$(dirname "$BUN"):$PATH"

# ---- steps -------------------------------------------------------------------------------------------------------
json_str() { "$BUN" -e 'process.stdout.write(JSON.stringify(process.argv[1]))' "$1"; }
record() { # name status rc seconds limit logfile note
  printf '{"name":%s,"status":"%s","rc":%s,"seconds":%s,"limit":%s,"log":%s,"note":%s}\n' \
    "$(json_str "$1")" "$2" "$3" "$4" "$5" "$(json_str "$6")" "$(json_str "$7")" >> "$steps"
}
# step NAME LIMIT GPU(0|1) CMD...: run CMD under min(LIMIT, what is left), stdout to logs/NAME.out, stderr to .err
step() {
  local name="$1" limit="$2" gpu="$3"; shift 3
  if [ "$gpu" = 1 ] && [ "$dry" = 1 ]; then record "$name" skipped null 0 "$limit" "" "dry run: needs the GPU"; log "skip  $name (dry run)"; return; fi
  local left=$((budget - ($(date +%s) - start)))
  if [ "$left" -lt 5 ]; then record "$name" skipped null 0 "$limit" "" "the ${budget} s budget was spent"; log "skip  $name (budget spent)"; return; fi
  [ "$limit" -gt "$left" ] && limit=$left
  log "run   $name (limit ${limit} s): $*"
  local t0 rc status
  t0=$(date +%s.%N)
  timeout --kill-after=5 "$limit" "$@" > "$work/logs/$name.out" 2> "$work/logs/$name.err"
  rc=$?
  local secs
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  if [ "$rc" = 0 ]; then status=ok; elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then status=timeout; else status=failed; fi
  record "$name" "$status" "$rc" "$secs" "$limit" "logs/$name" ""
  log "$status $name (${secs} s, rc $rc)"
}
bench() { # NAME LIMIT FILE ARGS...: a benchmark that exists; with "--device=cuda", one that takes --device
  local name="$1" limit="$2" file="$3"; shift 3
  if [ ! -f "$file" ]; then record "$name" skipped null 0 "$limit" "" "$file does not exist yet"; return; fi
  local args=()
  for a in "$@"; do
    if [ "$a" = "--device=cuda" ]; then
      grep -q -- '--device' "$file" || { record "$name" skipped null 0 "$limit" "" "$file has no --device option (CPU only)"; return; }
      args+=(--device cuda)
    else args+=("$a"); fi
  done
  step "$name" "$limit" 1 "$BUN" "$file" "${args[@]}"
}

# ---- 2. environment ---------------------------------------------------------------------------------------------
step info 30 0 "$BUN" src/cli/main.ts info
if command -v nvidia-smi >/dev/null; then step nvidia-smi 15 1 nvidia-smi
else record nvidia-smi skipped null 0 15 "" "nvidia-smi not found"; fi
gpu="cpu"
if [ "$dry" = 0 ]; then
  command -v nvidia-smi >/dev/null || die "nvidia-smi not found: this check is for a machine with an NVIDIA GPU (use --dry-run elsewhere)"
  gpu="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
  [ -n "$gpu" ] || die "nvidia-smi lists no GPU"
fi

# ---- 3. the CUDA test suite on the real device -------------------------------------------------------------------
step cuda-tests 200 1 env BD_CUDA_EMULATE=0 "$BUN" test --timeout 120000 test/cuda test/ops test/backends test/offload

# ---- 4. compute-sanitizer over the kernel tests -----------------------------------------------------------------
kernel_tests=(test/cuda/kernels-elementwise.test.ts test/cuda/kernels-ops.test.ts)
sanitizer="$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)"
if [ -n "$sanitizer" ]; then
  for tool in memcheck racecheck; do
    step "sanitizer-$tool" 60 1 "$sanitizer" --tool "$tool" --error-exitcode 86 --target-processes all "$BUN" test --timeout 120000 "${kernel_tests[@]}"
  done
else
  for tool in memcheck racecheck; do record "sanitizer-$tool" skipped null 0 60 "" "compute-sanitizer not found"; done
fi

# ---- 5. benchmarks -----------------------------------------------------------------------------------------------
bench bench-cuda-ops 45 scripts/bench/cuda-ops.ts
bench bench-attention 45 scripts/bench/attention.ts
bench bench-offload 90 scripts/bench/offload-steps.ts --device=cuda
bench bench-host-overhead 30 scripts/bench/host-overhead.ts
bench bench-cuda-graphs 45 scripts/bench/cuda-graph-steps.ts --dtype float16
bench bench-channels-last 45 scripts/bench/channels-last.ts --device=cuda
bench bench-tome 60 scripts/bench/tome.ts --sizes 512,768,1024 --attention fused,naive --reps 3 --device=cuda
bench bench-ladder 90 scripts/bench/ladder.ts --steps 10 --device=cuda
bench bench-tome-table 90 scripts/bench/tome-table.ts --sizes 512,768,1024 --batches 1,2,4 --steps 10 --device=cuda
step bench-memory 30 0 "$BUN" scripts/bench/memory.ts

# ---- report ------------------------------------------------------------------------------------------------------
date_s="$(date -u +%Y-%m-%d)"
slug="$(echo "$gpu" | tr '[:upper:]' '[:lower:]' | sed -E 's/[^a-z0-9]+/-/g; s/^-+|-+$//g')"
[ "$dry" = 1 ] && slug="dry-run-$slug"
if [ -z "$out" ]; then
  if [ "$dry" = 1 ]; then out="$work/results"; else out="$root/bench/results"; fi
fi
mkdir -p "$out" || die "cannot create $out"
"$BUN" scripts/gpu-check-report.ts --steps "$steps" --work "$work" --device "$gpu" --dry-run "$dry" \
  --seconds "$(( $(date +%s) - start ))" --budget "$budget" --out "$out/$slug-$date_s" || die "the report could not be written"
log "wrote $out/$slug-$date_s.json and .md in $(( $(date +%s) - start )) s"
if grep -q '"status":"failed"\|"status":"timeout"' "$steps"; then log "some steps failed or ran out of time: see the report"; exit 1; fi
exit 0
