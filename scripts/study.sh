#!/usr/bin/env bash
# The SmolLM2-135M study: BoHA against HiRA, LoRA and the additive control at a matched
# budget, on `arith` and `choice`, with a per-method learning-rate sweep chosen on a
# held-out split, two seeds, the continual diagnostic (choice then arith), and the
# synthetic, layer and step benchmarks. Writes docs/RESULTS.md and docs/results/*.png.
#
#   scripts/study.sh [MODEL]          MODEL: a .gguf or HF directory (default: BOHA_MODEL,
#                                     else SmolLM2 in ~/.cache/boha, fetched by `boha demo`)
#
# Sizes fit the 90-minute budget on two CPU cores under lavapipe (46 min measured on a
# quiet machine, 93 on a busy one); every one can be
# raised through the environment (STEPS, BATCH, NTRAIN, NVAL, NTEST,
# LRS_BOHA, LRS_HIRA, LRS_LORA, LRS_ADDITIVE, TARGETS, SEEDS).
# Finished runs are kept in $STUDY_DIR (default: study/) and reused when the script is
# run again, so an interrupted study picks up where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=${STEPS:-8}
BATCH=${BATCH:-2}
NTRAIN=${NTRAIN:-16}
NVAL=${NVAL:-8}
NTEST=${NTEST:-12}
# The learning-rate grids. BoHA's and HiRA's update is W0 ⊙ ΔM, so a step of the factors
# moves the weight |W0| (about 0.05 here) times as far as LoRA's or the additive
# control's does: their two rates sit one grid step higher. Same spacing for all.
LRS_ADDITIVE=${LRS_ADDITIVE:-"1e-2 3e-2"}
LRS_LORA=${LRS_LORA:-"1e-2 3e-2"}
LRS_BOHA=${LRS_BOHA:-"3e-2 1e-1"}
LRS_HIRA=${LRS_HIRA:-"3e-2 1e-1"}
SEEDS=${SEEDS:-"0 1"}
TARGETS=${TARGETS:-q,v}
MAXLEN=${MAXLEN:-96}
DIR=${STUDY_DIR:-study}
METHODS="boha additive lora hira"
TASKS="choice arith"

model=${1:-${BOHA_MODEL:-}}
if [ -z "$model" ]; then
  model=$(ls "${XDG_CACHE_HOME:-$HOME/.cache}"/boha/*/*.gguf 2>/dev/null | head -n 1 || true)
fi
if [ -z "$model" ] || [ ! -e "$model" ]; then
  echo "study.sh: no model; pass one, set BOHA_MODEL, or run \`cargo run --release -- demo\` once to fetch SmolLM2" >&2
  exit 1
fi

# lavapipe's window-system probing complains without a runtime dir; compute needs none.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
# BOHA: a boha binary to use instead of building this checkout's.
if [ -z "${BOHA:-}" ]; then
  cargo build --release --quiet
  BOHA=target/release/boha
fi
mkdir -p "$DIR" docs/results
touch "$DIR/commands.txt"
START=$(date +%s)

# Runs a command, logging it to commands.txt; output to $1 (a file) unless it is "-".
run() {
  local to=$1
  shift
  echo "$*" >>"$DIR/commands.txt"
  if [ "$to" = - ]; then "$@"; else "$@" >"$to.tmp" && mv "$to.tmp" "$to"; fi
}
# Seconds since this invocation started, for the timing line; a resumed study adds an
# invocation, and the report sums them.
mark() { echo "$1 $(($(date +%s) - START))" >>"$DIR/timing.txt"; }
echo "start $(date -u +%FT%TZ)" >>"$DIR/timing.txt"

lrs_of() {
  case $1 in
    boha) echo "$LRS_BOHA" ;; hira) echo "$LRS_HIRA" ;;
    lora) echo "$LRS_LORA" ;; additive) echo "$LRS_ADDITIVE" ;;
  esac
}
budget() { # the matched budget r = 8: b = 4 blocks of rank 2, or rank 8
  case $1 in
    boha | additive) echo "--blocks 4 --block-rank 2" ;;
    *) echo "--rank 8" ;;
  esac
}

$BOHA devices --json >"$DIR/devices.json"

# Data: seeds that differ modulo 16 share no item, so train, val and test are disjoint.
for t in $TASKS; do
  run - $BOHA data --task $t --format compact --n "$NTRAIN" --seed 1 --out "$DIR/$t.train.jsonl"
  run - $BOHA data --task $t --format compact --n "$NVAL" --seed 2 --out "$DIR/$t.val.jsonl"
  run - $BOHA data --task $t --format compact --n "$NTEST" --seed 3 --out "$DIR/$t.test.jsonl"
done
mark data

# One fine-tuning run plus its test accuracy (skipped when already there).
train_eval() { # task method lr seed
  local t=$1 m=$2 lr=$3 s=$4
  local d="$DIR/single/$t/$m/lr${lr}_s$s"
  if [ ! -f "$d/adapter_model.safetensors" ]; then
    rm -rf "$d"
    # shellcheck disable=SC2046
    run - $BOHA finetune --model "$model" --data "$DIR/$t.train.jsonl" \
      --eval-data "$DIR/$t.val.jsonl" --method "$m" $(budget "$m") --targets "$TARGETS" \
      --lr "$lr" --warmup 1 --steps "$STEPS" --batch "$BATCH" --max-len "$MAXLEN" \
      --seed "$s" --out "$d"
  fi
}
test_acc() { # task method lr seed
  local d="$DIR/single/$1/$2/lr${3}_s$4"
  [ -f "$d/test.json" ] || run "$d/test.json" $BOHA eval --model "$model" --adapter "$d" \
    --data "$DIR/$1.test.jsonl" --max-new-tokens 8 --json
}
# The learning rate with the lowest final held-out loss of the first seed's runs.
best_lr() { # task method
  local best="" bl=""
  for lr in $(lrs_of "$2"); do
    local l
    l=$(grep eval_loss "$DIR/single/$1/$2/lr${lr}_s${SEEDS%% *}/metrics.jsonl" | tail -n 1 |
      sed 's/.*"eval_loss":\([^,}]*\).*/\1/')
    if [ -z "$bl" ] || awk "BEGIN{exit !($l < $bl)}"; then best=$lr bl=$l; fi
  done
  echo "$best"
}

for t in $TASKS; do
  [ -f "$DIR/base_$t.json" ] || run "$DIR/base_$t.json" $BOHA eval --model "$model" \
    --data "$DIR/$t.test.jsonl" --max-new-tokens 8 --json
  for m in $METHODS; do
    first=${SEEDS%% *}
    for lr in $(lrs_of $m); do train_eval $t $m "$lr" "$first"; done
    lr=$(best_lr $t $m)
    echo "$t $m $lr" >>"$DIR/best_lr.txt.new"
    for s in $SEEDS; do
      train_eval $t $m "$lr" "$s"
      test_acc $t $m "$lr" "$s"
    done
  done
  mark "single_$t"
done
sort -u "$DIR/best_lr.txt.new" >"$DIR/best_lr.txt" && rm "$DIR/best_lr.txt.new"

# Continual: choice, then arith, each method at its learning rate chosen on choice.
lrs=$(awk '$1 == "choice" {printf "%s%s=%s", sep, $2, $3; sep=","}' "$DIR/best_lr.txt")
# Stage 1 (choice, first seed, the chosen rate) is the very run the single-task part
# made, with the same settings and seed, so it is reused rather than trained again.
for m in $METHODS; do
  s1="$DIR/continual/$m/stage1"
  if [ ! -f "$s1/adapter_config.json" ]; then
    mkdir -p "$s1"
    cp "$DIR/single/choice/$m/lr$(awk -v m=$m '$1 == "choice" && $2 == m {print $3}' "$DIR/best_lr.txt")_s${SEEDS%% *}"/* "$s1/"
  fi
done
run "$DIR/continual.json" $BOHA continual --model "$model" \
  --first "$DIR/choice.train.jsonl" --second "$DIR/arith.train.jsonl" \
  --eval-first "$DIR/choice.test.jsonl" --eval-second "$DIR/arith.test.jsonl" \
  --methods boha,additive,lora,hira --rank 8 --blocks 4 --targets "$TARGETS" --lrs "$lrs" \
  --warmup 1 --steps "$STEPS" --batch "$BATCH" --max-len "$MAXLEN" --max-new-tokens 8 \
  --out "$DIR/continual" --json
mark continual

# JSON records (with boha's envelope: device, driver, commit, date, command), which
# study_report.py copies to docs/benchmarks/ and `boha report` turns into tables.
run "$DIR/synthetic.json" $BOHA synthetic --json
mark synthetic
run "$DIR/bench_layer.json" $BOHA bench layer --json
mark bench_layer
run "$DIR/bench_step.json" $BOHA bench step --model "$model" --batch 4 --max-len 64 --json
mark bench_step

python3 scripts/study_report.py "$DIR" "$model" \
  "steps=$STEPS batch=$BATCH train=$NTRAIN val=$NVAL test=$NTEST seeds=[$SEEDS] targets=$TARGETS"
# The tables of docs/RESULTS.md and the README's copies, from the records just written.
$BOHA report
echo "study: $(( ($(date +%s) - START) / 60 )) min; docs/RESULTS.md written"
