#!/usr/bin/env python3
"""The PyTorch + PEFT anchor of `boha bench step`: one LoRA training step of
SmolLM2-135M-Instruct on the CPU, timed as boha times its own, written as a record.

The step is the one `boha bench step` times (src/bench/step.rs) for its LoRA row:
LoRA r = 32 with boha's default alpha = 2r (s = 2, src/adapters/mod.rs), on the seven
projections (q, k, v, o, gate, up, down) of every layer; a batch of random token ids
with a random target at every position (cross-entropy over all of them); f32 weights
(the GGUF dequantized, as boha loads it); the global gradient norm clipped to 1; AdamW
(lr 1e-4, β = (0.9, 0.999), ε = 1e-8, no weight decay). One warm-up step, then the
median of the timed steps, each forward + backward + optimizer step.

The record goes to docs/benchmarks/cpu_pytorch_anchor_smollm2_4x128.json with the
envelope boha's benchmarks carry (src/bench/record.rs): command, date, commit, device,
driver, host load. `boha report` renders it (`<!-- report:anchor … -->` in README.md).

Installs torch, transformers, peft, gguf and numpy with pip when they are missing (torch
as PyPI serves it). Usage:

    python3 scripts/pytorch_anchor.py [--model GGUF] [--batch 4] [--seq 128]
        [--runs 3] [--threads 2] [--out RECORD]

The model defaults to ~/.cache/boha/SmolLM2-135M-Instruct.Q4_1.gguf, where boha's
`setup` puts it.
"""

import argparse
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = Path.home() / ".cache/boha/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_OUT = ROOT / "docs/benchmarks/cpu_pytorch_anchor_smollm2_4x128.json"
PACKAGES = ["torch", "transformers", "peft", "gguf", "numpy"]
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
RANK = 32
ALPHA = 2 * RANK  # boha's LoRA default: s = alpha / r = 2
LR = 1e-4  # what `boha bench step` passes to each step
MAX_GRAD_NORM = 1.0  # boha's TrainOptions default


def ensure_packages():
    missing = []
    for p in PACKAGES:
        try:
            importlib.import_module(p)
        except ImportError:
            missing.append(p)
    if missing:
        print(f"installing {' '.join(missing)}", file=sys.stderr)
        subprocess.check_call([sys.executable, "-m", "pip", "install", *missing])
        importlib.invalidate_caches()


def command_line(args):
    """argv joined as boha's records join it (src/bench/record.rs: command_line)."""
    plain = set("-_./=:,+@%")

    def quote(a):
        if a and all(c.isascii() and (c.isalnum() or c in plain) for c in a):
            return a
        return "'" + a.replace("'", "'\\''") + "'"

    return " ".join(quote(a) for a in args)


def source_commit():
    """`git rev-parse --short HEAD`, with `-dirty` when `git status --porcelain` lists
    anything; `unknown` outside a git tree."""

    def git(*args):
        r = subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True
        )
        return r.stdout.strip() if r.returncode == 0 else None

    head = git("rev-parse", "--short", "HEAD")
    if head is None:
        return "unknown"
    status = git("status", "--porcelain")
    return head if status == "" else f"{head}-dirty"


def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def host_load():
    try:
        load = float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"load_1m": load, "cpus": cpus}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a = ap.parse_args()
    if not a.model.is_file():
        sys.exit(f"{a.model}: no such file (run `boha setup`, or pass --model)")

    # The envelope, taken as the run begins (as boha's Record::now).
    record = {
        "command": command_line(["python3", *sys.argv]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": source_commit(),
    }
    load = host_load()

    ensure_packages()
    import peft
    import torch
    import torch.nn.functional as F
    import transformers
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    model = AutoModelForCausalLM.from_pretrained(
        str(a.model.parent), gguf_file=a.model.name, dtype=torch.float32
    )
    # (older transformers name the argument torch_dtype; f32 is its default either way)
    assert next(model.parameters()).dtype == torch.float32
    model.config.use_cache = False
    model = get_peft_model(
        model,
        LoraConfig(
            r=RANK,
            lora_alpha=ALPHA,
            lora_dropout=0.0,
            bias="none",
            target_modules=TARGETS,
        ),
    )
    model.train()
    adapted = sum(
        1
        for name, m in model.named_modules()
        if name.endswith(tuple(TARGETS)) and hasattr(m, "lora_A")
    )
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        params, lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0
    )

    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, vocab, (a.batch, a.seq), generator=g)
    targets = torch.randint(0, vocab, (a.batch, a.seq), generator=g)

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(input_ids=tokens).logits
        loss = F.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        opt.step()
        return loss.item()

    step()  # warm-up
    times, cpu = [], []
    for i in range(max(a.runs, 1)):
        c0, t0 = time.process_time(), time.perf_counter()
        loss = step()
        times.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
        print(
            f"step {i + 1}: {times[-1]:.0f} ms (CPU {cpu[-1]:.0f} ms), loss {loss:.3f}",
            file=sys.stderr,
        )
    step_ms = statistics.median(times)
    n = a.batch * a.seq

    record["device"] = {"name": cpu_name(), "backend": "cpu", "device_type": "Cpu"}
    record["driver"] = {
        "name": f"torch {torch.__version__}",
        "info": f"transformers {transformers.__version__}, peft {peft.__version__}",
    }
    if load is not None:
        record["host_load"] = load
    out = {
        "record": record,
        "framework": "PyTorch + PEFT",
        "model": str(a.model),
        "method": "lora",
        "rank": RANK,
        "alpha": ALPHA,
        "adapted_matrices": adapted,
        "trainable_parameters": sum(p.numel() for p in params),
        "dtype": "float32",
        "threads": torch.get_num_threads(),
        "batch": a.batch,
        "seq": a.seq,
        "tokens_per_step": n,
        "step_ms_runs": times,
        # The process's CPU time per timed step (all threads): near threads × step_ms
        # on an idle host; other work on the host shows as the difference.
        "step_cpu_ms_runs": cpu,
        "step_ms": step_ms,
        "tokens_per_s": n / (step_ms / 1e3),
        # Linux gives ru_maxrss in KiB: the whole process, model loading included.
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2) + "\n")
    print(
        f"{n} tokens per step: {step_ms:.0f} ms, {out['tokens_per_s']:.1f} tokens/s "
        f"({adapted} adapted matrices, {out['trainable_parameters']} trainable "
        f"parameters); wrote {a.out}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
