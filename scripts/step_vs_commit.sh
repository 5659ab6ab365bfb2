#!/usr/bin/env bash
# A training step of this build against an earlier commit's, both built here and run one
# after the other on the same machine: `bench step` of each (the earlier build times the
# methods it had; this one BoHA and LoRA), then one record with both runs and BoHA's
# tokens/s ratio, docs/benchmarks/<device>_step_vs_<commit>.json (`boha report` renders
# it). Run it on a quiet machine: the ratio is only as good as the two runs' conditions.
#
#   scripts/step_vs_commit.sh COMMIT [MODEL] [BATCH] [MAX_LEN]
set -euo pipefail
cd "$(dirname "$0")/.."
old=$(git rev-parse --short "$1")
model=${2:-$HOME/.cache/boha/SmolLM2-135M-Instruct.Q4_1.gguf}
batch=${3:-4}
len=${4:-64}
tree=target/compare-$old
[ -d "$tree" ] || git worktree add --detach "$tree" "$old" >/dev/null
(cd "$tree" && CARGO_TARGET_DIR=target cargo build --release --quiet)
cargo build --release --quiet
args=(bench step --model "$model" --batch "$batch" --max-len "$len" --json)
"$tree/target/release/boha" "${args[@]}" >target/step_old.json
./target/release/boha "${args[@]}" --methods boha,lora >target/step_new.json
python3 - "$old" <<'PY'
import json, sys
old = json.load(open("target/step_old.json"))
new = json.load(open("target/step_new.json"))
tps = lambda r, m: next(x["tokens_per_s"] for x in r["results"] if x["method"] == m)
out = {
    "record": new["record"],
    "baseline_commit": sys.argv[1],
    "baseline": old,
    "current": new,
    "tokens_per_step": new["tokens_per_step"],
    "boha_tokens_per_s": tps(new, "boha"),
    "baseline_boha_tokens_per_s": tps(old, "boha"),
    "boha_speedup": tps(new, "boha") / tps(old, "boha"),
    "lora_speedup": tps(new, "lora") / tps(old, "lora"),
}
dev = "lavapipe" if new["record"]["device"]["device_type"] == "Cpu" else "gpu"
path = f"docs/benchmarks/{dev}_step_vs_{sys.argv[1]}.json"
json.dump(out, open(path, "w"), indent=1)
print(f"{path}: BoHA {out['baseline_boha_tokens_per_s']:.1f} -> {out['boha_tokens_per_s']:.1f} tokens/s ({out['boha_speedup']:.2f}x)")
PY
