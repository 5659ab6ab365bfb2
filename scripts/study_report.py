#!/usr/bin/env python3
"""Writes the study's records and docs/RESULTS.md from the outputs of scripts/study.sh.

usage: study_report.py STUDY_DIR MODEL SIZES

Reads STUDY_DIR/{devices.json, base_*.json, best_lr.txt, single/..., continual.json,
synthetic.json, bench_layer.json, bench_step.json, commands.txt, timing.txt}, writes
the figures as records in docs/benchmarks/ (study_smollm2.json with this script's own
envelope; the benchmarks' JSON as boha printed it, envelope included) and
docs/RESULTS.md with a `<!-- report:… -->` block where each table goes; `boha report`
(run by study.sh next) fills the blocks from the records, in RESULTS.md and README.md
alike. Copies each chosen run's loss.png to docs/results/. Only the standard library is
used.
"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

METHODS = ["boha", "additive", "lora", "hira"]
BUDGET = {
    "boha": "BoHA, b = 4, r_b = 2",
    "additive": "additive, b = 4, r_b = 2",
    "lora": "LoRA, r = 8",
    "hira": "HiRA, r = 8",
}
TASKS = ["choice", "arith"]


def last_eval_loss(run: Path):
    loss = None
    if not (run / "metrics.jsonl").exists():
        return None
    for line in (run / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "eval_loss" in rec:
            loss = rec["eval_loss"]
    return loss


def last_train_loss(run: Path):
    loss = None
    for line in (run / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "loss" in rec:
            loss = rec["loss"]
    return loss


def read_json(path: Path):
    """The JSON in `path`, or None when that part of the study has not run."""
    return json.loads(path.read_text()) if path.exists() else None


def mean_spread(xs):
    """Mean and half the range: with two seeds, each lies at mean ± spread."""
    m = sum(xs) / len(xs)
    return m, (max(xs) - min(xs)) / 2


def source_commit():
    """`git rev-parse --short HEAD`, `-dirty` with changes (as boha's records say it)."""
    def git(*args):
        r = subprocess.run(["git", *args], capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else None
    head = git("rev-parse", "--short", "HEAD")
    if head is None:
        return "unknown"
    return head if git("status", "--porcelain") == "" else head + "-dirty"


def block(spec):
    """An empty `boha report` block; the table comes from the record."""
    return f"<!-- report:{spec} -->\n<!-- /report -->\n"


def main():
    study, model, sizes = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    docs = Path("docs")
    figs = docs / "results"
    figs.mkdir(parents=True, exist_ok=True)
    for old in figs.glob("*.png"):
        old.unlink()
    dev = json.loads((study / "devices.json").read_text())[0]
    best = {}
    for name in ["best_lr.txt", "best_lr.txt.new"]:
        if (study / name).exists():
            for line in (study / name).read_text().split("\n"):
                if line.strip():
                    t, m, lr = line.split()
                    best[(t, m)] = lr
    runs = sorted((study / "single").glob("*/*/lr*_s*"))
    seeds = sorted({r.name.split("_s")[1] for r in runs}, key=int)

    def lrs_of(t, m):
        names = (study / "single" / t / m).glob(f"lr*_s{seeds[0]}")
        return sorted({r.name[2:].split("_s")[0] for r in names}, key=float)

    out = []
    w = out.append
    w("# Results: BoHA on SmolLM2-135M-Instruct\n")
    w(
        "Everything here comes from one run of `scripts/study.sh`; the numbers are what it "
        "measured, including where BoHA does not beat a baseline.\n"
    )
    w(f"- Device: {dev['name']} ({dev['backend']}, {dev['driver_info']}), two CPU cores.")
    w(f"- Model: `{Path(model).name}`.")
    w(f"- Sizes: {sizes}.")
    # timing.txt: "start ISO-TIME" per invocation, then "part seconds-since-that-start".
    runs, marks = [], []
    for line in (study / "timing.txt").read_text().splitlines():
        k, v = line.split()
        if k == "start":
            runs.append(0)
        elif runs:
            runs[-1] = int(v)
            marks.append(f"{k} {sum(runs) / 60:.0f}")
    if runs:
        w(f"- Wall time: {sum(runs) / 60:.0f} min in all"
          + (f" over {len(runs)} invocations (the study resumes where it stopped)" if len(runs) > 1 else "")
          + "; each part ended at (min): " + ", ".join(marks) + ".")
    w("")
    # The reader's summary, written after looking at the numbers.
    if (study / "reading.md").exists():
        w((study / "reading.md").read_text().rstrip() + "\n")
    w("## Single task at a matched budget\n")
    w(
        "Each method gets the parameter budget of rank-8 LoRA on the q and v projections. "
        f"Each method tries two learning rates with seed {seeds[0]} (the last column); the "
        "one with the lowest final loss on the held-out validation split is kept, and the "
        f"method is then trained with seeds {', '.join(seeds)} at that rate. Test accuracy "
        "(greedy answers, scored as LLM-Adapters does) is the mean ± half the range over the "
        "seeds; the validation loss is that of the chosen rate. BoHA's and HiRA's update "
        "is W0 ⊙ ΔM, so a step of their factors moves the weight about |W0| times as far "
        "as LoRA's does; their grid sits one step (3×) higher, with the same spacing.\n"
    )
    single = []
    for t in TASKS:
        base = read_json(study / f"base_{t}.json")
        if base:
            single.append({"task": t, "method": "base", "accuracy": base["accuracy"], "n": base["n"]})
        for m in METHODS:
            if (t, m) not in best:
                single.append({"task": t, "method": m})
                continue
            lr = best[(t, m)]
            accs, vls = [], []
            for s in seeds:
                run = study / "single" / t / m / f"lr{lr}_s{s}"
                r = read_json(run / "test.json")
                if r and last_eval_loss(run) is not None:
                    accs.append(r["accuracy"])
                    vls.append(last_eval_loss(run))
            row = {"task": t, "method": m, "lr": lr, "seeds": len(seeds), "seeds_run": len(accs)}
            row["val_loss_per_lr"] = [
                {"lr": x, "val_loss": last_eval_loss(study / "single" / t / m / f"lr{x}_s{seeds[0]}")}
                for x in lrs_of(t, m)
            ]
            if accs:
                row["accuracy"], row["accuracy_half_range"] = mean_spread(accs)
                row["val_loss"], row["val_loss_half_range"] = mean_spread(vls)
            single.append(row)
            png = study / "single" / t / m / f"lr{lr}_s{seeds[0]}" / "loss.png"
            if png.exists():
                shutil.copy(png, figs / f"{t}_{m}.png")
    w(block("study-single study_smollm2.json"))
    w("Loss curves (train and validation) of the chosen rate, first seed:\n")
    for t in TASKS:
        w(" ".join(f"![{t} {m}](results/{t}_{m}.png)" for m in METHODS if (figs / f"{t}_{m}.png").exists()))
        w("")

    w("## Continual diagnostic: choice, then arith\n")
    w(
        "Each method trains one adapter on `choice`, is tested on both tasks, then trains "
        "the same adapter on `arith` and is tested again, at its learning rate chosen on "
        "`choice`. Retention is choice accuracy after the second stage minus after the first.\n"
    )
    cont = (read_json(study / "continual.json") or {"results": []})["results"]
    if not cont:
        w("(not run)\n")
    w(block("study-continual study_smollm2.json"))
    # The benchmarks' own records (boha's envelope included) go to docs/benchmarks/.
    for kind, name, title in [
        ("synthetic", "synthetic", "Synthetic rank experiment (`boha synthetic`)"),
        ("layer", "bench_layer", "Layer benchmark (`boha bench layer`)"),
        ("step", "bench_step", "Step benchmark on SmolLM2 (`boha bench step --batch 4 --max-len 64`)"),
    ]:
        w(f"## {title}\n")
        if not (study / f"{name}.json").exists():
            w("(not run)\n")
            continue
        shutil.copy(study / f"{name}.json", docs / "benchmarks" / f"study_{name}.json")
        w(block(f"{kind} study_{name}.json"))
    starts = [l.split()[1] for l in (study / "timing.txt").read_text().splitlines() if l.startswith("start ")]
    record = {
        "command": "scripts/study.sh " + model,
        "date": starts[0] if starts else "unknown",
        "commit": source_commit(),
        "device": {"name": dev["name"], "backend": dev["backend"], "device_type": dev["device_type"]},
        "driver": {"name": dev["driver"], "info": dev["driver_info"]},
    }
    (docs / "benchmarks" / "study_smollm2.json").write_text(json.dumps({
        "record": record,
        "model": Path(model).name,
        "sizes": sizes,
        "tasks": TASKS,
        "labels": BUDGET,
        "single": single,
        "continual": cont,
    }, indent=1, ensure_ascii=False) + "\n")
    w("## The exact commands\n")
    w("In the order they ran (`$DIR` is the study's working directory):\n")
    w("```sh")
    seen = set()
    for line in (study / "commands.txt").read_text().splitlines():
        line = line.replace(str(study) + "/", "$DIR/").replace(model, "MODEL")
        line = re.sub(r"^\S*boha\S*", "boha", line)
        if line and line not in seen:
            seen.add(line)
            w(line)
    w("```")
    (docs / "RESULTS.md").write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
