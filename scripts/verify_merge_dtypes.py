#!/usr/bin/env python3
"""Checks that a bf16 checkpoint is merged back in bf16 that transformers loads.

A tiny random Llama saved by transformers in bfloat16 (model.safetensors holds BF16) is
fine-tuned with BoHA by `boha finetune` (its frozen weights stay bf16 on the GPU), then
merged by `boha merge` with the default dtype (the model's: bf16) and with `--dtype
f16`. For each merge it checks:

- boha's logits of the bf16 base (kept bf16 on the GPU) equal transformers' within 1e-4;
- every tensor of the written model.safetensors has the dtype asked for, and
  config.json's torch_dtype names it;
- transformers' logits of the merged model (weights upcast to f32 exactly, f32 compute)
  equal `boha score` of the same merged directory (same weights, same math) within 1e-4;
- they equal `boha score --adapter` on the bf16 base within the rounding of the merged
  weights to bf16/f16, far less than the adapter moves the logits;
- transformers also runs the model in the merged dtype itself (its own bf16/f16 compute;
  printed, not checked: that compute rounds every activation).

Needs torch, transformers and safetensors (see verify_peft.py). Usage:

    python3 scripts/verify_merge_dtypes.py [path/to/boha]   (default: target/release/boha)
"""

import json
import os
import sys
import tempfile

import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from verify_peft import boha_logits, compare, run, tiny_model, torch_logits  # noqa: E402

NAMES = {"bf16": ("BF16", "bfloat16", torch.bfloat16), "f16": ("F16", "float16", torch.float16)}


def file_dtypes(model_dir):
    with safe_open(os.path.join(model_dir, "model.safetensors"), "pt") as f:
        return {str(f.get_slice(k).get_dtype()) for k in f.keys()}


def main():
    import transformers
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    root = tempfile.mkdtemp(prefix="boha-merge-dtypes-")
    model = tiny_model(root, torch.bfloat16)
    ok = True
    stored = file_dtypes(model)
    print(f"base model.safetensors dtypes: {sorted(stored)}")
    ok &= stored == {"BF16"}
    data = os.path.join(root, "train.jsonl")
    with open(data, "w") as f:
        for w in ["cat", "dog", "mat", "bone"]:
            f.write(json.dumps({"prompt": f"the {w} ", "completion": "sat on the mat"}) + "\n")
    adapter = os.path.join(root, "boha")
    run("finetune", "--model", model, "--data", data, "--method", "boha", "--blocks", "2",
        "--rank", "4", "--steps", "6", "--lr", "0.05", "--batch", "4", "--out", adapter)
    ids, on = boha_logits(model, adapter, root, "adapter-on")
    _, base = boha_logits(model, None, root, "base")
    plain = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    ok &= compare("bf16 base kept bf16 by boha vs transformers (f32 compute)", base,
                  torch_logits(plain, ids))
    moved = (on - base).abs().max() / on.abs().max()
    print(f"the adapter moves the logits by {moved:.2e} of max |logit|")

    for name, extra in [("bf16", []), ("f16", ["--dtype", "f16"])]:
        st_name, torch_name, torch_dtype = NAMES[name]
        merged = os.path.join(root, f"merged-{name}")
        print(run("merge", "--model", model, "--adapter", adapter, "--out", merged, *extra).strip())
        dtypes = file_dtypes(merged)
        with open(os.path.join(merged, "config.json")) as f:
            config_dtype = json.load(f).get("torch_dtype")
        good = dtypes == {st_name} and config_dtype == torch_name
        print(f"{'ok ' if good else 'BAD'} {name}: tensors {sorted(dtypes)}, torch_dtype {config_dtype}")
        ok &= good
        hf = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32)
        want = torch_logits(hf, ids)
        _, same = boha_logits(merged, None, root, f"merged-{name}")
        ok &= compare(f"{name} merge: transformers (f32 compute) vs boha score", same, want)
        err = ((want - on).abs().max() / on.abs().max()).item()
        good = err < 2e-2 and err < moved / 10
        print(f"{'ok ' if good else 'BAD'} {name} merge in transformers vs boha --adapter on the "
              f"bf16 base: {err:.2e} (the merged weights' {name} rounding)")
        ok &= good
        native = AutoModelForCausalLM.from_pretrained(merged, dtype=torch_dtype)
        own = torch_logits(native, ids)
        print(f"    transformers in {torch_name} itself: {((own - on).abs().max() / on.abs().max()).item():.2e}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
