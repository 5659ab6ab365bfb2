#!/bin/sh
# Turns fuzz/corpus/TARGET into the regression corpus tests/data/fuzz/TARGET: a
# `cargo fuzz cmin` of a scratch copy, then at most MAX_FILES (default 40) of its inputs
# picked for coverage by cap_corpus.py. The fuzzer's files (named by the SHA-1 of their
# bytes) in tests/data/fuzz/TARGET are replaced; files with other names are hand-made
# regression inputs and stay. Bless the manifest afterwards (fuzz/README.md).
#
# Usage (from anywhere): fuzz/minimize.sh TARGET [MAX_FILES]
set -eu
target=$1
max=${2:-40}
fuzz=$(cd "$(dirname "$0")" && pwd)
out=$fuzz/../tests/data/fuzz/$target
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

cp -r "$fuzz/corpus/$target" "$scratch/cmin"
cd "$fuzz"
RUSTC_BOOTSTRAP=1 nice -n 19 cargo fuzz cmin -a -s none --codegen-units 16 \
    "$target" "$scratch/cmin" -- -set_cover_merge=1 -use_counters=0
mkdir "$scratch/empty"
nice -n 19 "target/x86_64-unknown-linux-gnu/release/$target" -merge=1 -use_counters=0 \
    -merge_control_file="$scratch/control" "$scratch/empty" "$scratch/cmin" 2>/dev/null
python3 "$fuzz/cap_corpus.py" "$scratch/control" "$scratch/picked" "$max"

mkdir -p "$out"
find "$out" -maxdepth 1 -type f -regextype posix-extended -regex '.*/[0-9a-f]{40}' -delete
cp "$scratch/picked/"* "$out/"
# A hand-made input the fuzzer also kept stays under its own name only.
for f in "$out"/*; do
    name=$(basename "$f")
    case $name in EXPECTED.tsv) continue ;; esac
    if ! echo "$name" | grep -Eq '^[0-9a-f]{40}$'; then
        rm -f "$out/$(sha1sum "$f" | cut -c1-40)"
    fi
done
echo "$target: $(find "$out" -type f ! -name EXPECTED.tsv | wc -l) files, $(du -sb "$out" | cut -f1) bytes"
