#!/usr/bin/env bash
# Reruns every lavapipe record under docs/benchmarks/ on this machine, then rebuilds the
# README's and docs/RESULTS.md's tables from them (`boha report`). Each record carries the
# command, commit, date, device, driver and host load of its own run.
#
#   scripts/lavapipe_records.sh [MODEL]      # MODEL: SmolLM2's .gguf (default: boha's cache)
#
# About 45 minutes on two cores. Run it on a quiet host: the step and layer ratios move
# with other work on the machine (each record keeps the load it ran under).
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL="${1:-${BOHA_MODEL:-$HOME/.cache/boha/SmolLM2-135M-Instruct.Q4_1.gguf}}"
OUT=docs/benchmarks
BOHA=./target/release/boha
cargo build --release --quiet

# Writes stdout to FILE only when the command succeeds: a failed run leaves the old record.
record() {
  local file="$1"
  shift
  echo "== $file: $*" >&2
  "$@" >"$file.tmp" && mv "$file.tmp" "$file" || {
    rm -f "$file.tmp"
    return 1
  }
}

record "$OUT/lavapipe_bench_gemm.json" $BOHA bench gemm --json
record "$OUT/lavapipe_bench_layer.json" $BOHA bench layer --json
record "$OUT/lavapipe_synthetic.json" $BOHA synthetic --json
$BOHA generate --model "$MODEL" --chat --prompt 'What is the capital of France?' \
  --max-new-tokens 32 --record "$OUT/lavapipe_generate_smollm2.json"
record "$OUT/lavapipe_bench_step_smollm2_4x64.json" \
  $BOHA bench step --model "$MODEL" --batch 4 --max-len 64 --json
record "$OUT/lavapipe_bench_step_smollm2_4x128.json" \
  $BOHA bench step --model "$MODEL" --batch 4 --max-len 128 --json
python3 scripts/pytorch_anchor.py
# The demo from a fresh run directory, so that it trains instead of resuming.
demo_dir="$(mktemp -d)"
$BOHA demo --model "$MODEL" --out "$demo_dir"
cp "$demo_dir/summary.json" "$OUT/lavapipe_demo.json"
rm -rf "$demo_dir"

$BOHA report
