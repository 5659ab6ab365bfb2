#!/usr/bin/env bash
# The device check for a lent GPU machine (H100/H200 through Vulkan), in under 8 minutes:
# builds, checks the kernels' numerics against the CPU reference on that GPU, then writes
# the GEMM, layer and synthetic benchmarks as records under OUT (default $OUT, else
# target/gpu_bench). Copy the records to docs/benchmarks/<device>_*.json and run
# `boha report` to publish them.
#
#   scripts/gpu_bench.sh            # on the device: `run` with command "bash scripts/gpu_bench.sh"
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-target/gpu_bench}"
mkdir -p "$OUT"
export BOHA_REQUIRE_GPU=1 CARGO_INCREMENTAL=0

start=$(date +%s)
cargo build --release --quiet
./target/release/boha devices | tee "$OUT/devices.txt"

# Numerics on this GPU: every kernel family against its f64 reference (the shared GEMM
# family and the fused kernels are what a discrete GPU runs), all adapter kinds, whole
# tiny models' gradients.
cargo test --release --quiet --test gemm --test adapters_gpu --test adapters_grad \
  --test khatri_rao --test ops_transformer --test model_train --test merge 2>&1 |
  tee "$OUT/numerics.txt" | grep -E "test result|FAILED|panicked" || true
if grep -q "FAILED\|panicked" "$OUT/numerics.txt"; then
  echo "numerics failed on this device; benchmarks not run" >&2
  exit 1
fi

./target/release/boha bench gemm --json >"$OUT/bench_gemm.json"
./target/release/boha bench layer --json >"$OUT/bench_layer.json"
./target/release/boha synthetic --json >"$OUT/synthetic.json"
echo "gpu_bench: $(($(date +%s) - start)) s; records in $OUT"
