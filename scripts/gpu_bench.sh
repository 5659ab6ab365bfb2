#!/usr/bin/env bash
# The device check for a lent GPU machine (H100/H200 through Vulkan), in under 8 minutes:
# builds, checks the kernels' numerics against the CPU reference on that GPU (every GEMM
# tile, the fused adapter kernels, whole tiny models' gradients), tunes the kernels for
# SmolLM2-135M's shapes at 16 × 512 tokens, then writes the tuning, GEMM (with every tile),
# layer, training-step (tokens/s and MFU), batched-decode and synthetic records under OUT (default $OUT,
# else target/gpu_bench). The machine reaches no network and the real SmolLM2 file is
# larger than what travels with the tree, so the step runs on `random:smollm2-135m`: the
# same shapes with random weights (speed and memory do not depend on the values). Copy
# the records to docs/benchmarks/<device>_*.json and run `boha report` to publish them.
#
#   scripts/gpu_bench.sh            # on the device: `run` with command "bash scripts/gpu_bench.sh"
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-target/gpu_bench}"
mkdir -p "$OUT"
export BOHA_REQUIRE_GPU=1 CARGO_INCREMENTAL=0
# The tuning file goes with the records, not into a cache that dies with the machine.
export XDG_CACHE_HOME="$OUT/cache"
MODEL=random:smollm2-135m

start=$(date +%s)
cargo build --release --quiet
./target/release/boha devices | tee "$OUT/devices.txt"

# Numerics on this GPU: every GEMM tile and kernel family against its f64 reference, all
# adapter kinds' fused kernels, whole tiny models' gradients, every frozen-weight dtype.
cargo test --release --quiet --test web_gemm --test web_adapters --test web_dtypes \
  --test gemm_tier --test gemm_subgroup --test web_transformer_ops --test model_train \
  --test merge --test merge_gguf --test base_dtype --test streamed_load 2>&1 |
  tee "$OUT/numerics.txt" | grep -E "test result|FAILED|panicked" || true
if grep -q "FAILED\|panicked" "$OUT/numerics.txt"; then
  echo "numerics failed on this device; benchmarks not run" >&2
  exit 1
fi

b=./target/release/boha
$b tune --model $MODEL --batch 16 --max-len 512 --json >"$OUT/tune_smollm2_16x512.json"
cp "$XDG_CACHE_HOME"/boha/tune/*.json "$OUT/" 2>/dev/null || true
echo "tune: $(($(date +%s) - start)) s"
$b bench gemm --model $MODEL --batch 16 --max-len 512 --json >"$OUT/bench_gemm.json"
echo "bench gemm: $(($(date +%s) - start)) s"
$b bench step --model $MODEL --batch 16 --max-len 512 --runs 3 --base-dtypes f32,f16,bf16,q4_0 --json \
  >"$OUT/bench_step_smollm2_16x512.json"
echo "bench step: $(($(date +%s) - start)) s"
$b bench layer --json >"$OUT/bench_layer.json"
$b bench decode --model $MODEL --batches 1,4,16,64,256 --json >"$OUT/bench_decode_smollm2.json"
$b synthetic --json >"$OUT/synthetic.json"
echo "gpu_bench: $(($(date +%s) - start)) s; records in $OUT"
