#!/usr/bin/env python3
"""Caps a minimized corpus at a few dozen files, keeping as much coverage as it can.

`cargo fuzz cmin` keeps every input that adds a feature, which for boha's loaders is
a hundred or more files (nearly every error path is its own feature). The regression
corpora in tests/data/fuzz/ are meant to be read and replayed in a unit-test run, so
this picks at most MAX_FILES of them greedily: each step takes the input that adds the
most features not yet covered (the smaller on a tie), until the budget is spent or
nothing new is left. It reads the control file a libFuzzer merge leaves behind
(`-merge_control_file=FILE`), which lists each input's features, and copies the picked
inputs into OUT_DIR. See fuzz/README.md.

Usage: cap_corpus.py CONTROL_FILE OUT_DIR [MAX_FILES]
"""

import os
import shutil
import sys


def read_control(path):
    """(input paths, {input index: set of features}, {input index: set of edges})."""
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        lines = f.read().splitlines()
    count = int(lines[0])
    files = lines[2 : 2 + count]
    features, edges = {}, {}
    for line in lines[2 + count :]:
        kind, _, rest = line.partition(" ")
        if kind in ("FT", "COV"):
            idx, *values = rest.split()
            target = features if kind == "FT" else edges
            target[int(idx)] = set(values)
    return files, features, edges


def pick(files, features, max_files):
    """Greedy maximum coverage within `max_files` inputs."""
    covered, chosen = set(), []
    while len(chosen) < max_files:
        gain = lambda i: (len(features[i] - covered), -os.path.getsize(files[i]))
        best = max((i for i in features if i not in chosen), key=gain, default=None)
        if best is None or not features[best] - covered:
            break
        chosen.append(best)
        covered |= features[best]
    return chosen


def main():
    control, out_dir = sys.argv[1], sys.argv[2]
    max_files = int(sys.argv[3]) if len(sys.argv) > 3 else 40
    files, features, edges = read_control(control)
    chosen = pick(files, features, max_files)
    os.makedirs(out_dir, exist_ok=True)
    for i in chosen:
        shutil.copy(files[i], os.path.join(out_dir, os.path.basename(files[i])))
    union = lambda sets: set().union(*sets) if sets else set()
    all_ft, kept_ft = union(features.values()), union(features[i] for i in chosen)
    all_cov, kept_cov = union(edges.values()), union(edges.get(i, set()) for i in chosen)
    size = sum(os.path.getsize(files[i]) for i in chosen)
    print(
        f"kept {len(chosen)} of {len(features)} inputs ({size} bytes): "
        f"{len(kept_ft)}/{len(all_ft)} features, {len(kept_cov)}/{len(all_cov)} edges"
    )


if __name__ == "__main__":
    main()
