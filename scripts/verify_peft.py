#!/usr/bin/env python3
"""Checks boha's adapter and merge files against PEFT and transformers.

Builds a tiny random Llama with transformers (and a byte-level BPE tokenizer with the
`tokenizers` library), fine-tunes LoRA, HiRA, the additive control (written as PEFT
GraLoRA), ABBA and LoHa (both written as PEFT LoHa) adapters on it with `boha finetune`,
then compares, on the same token ids:

- PEFT's PeftModel.from_pretrained(model, adapter) logits with `boha score --adapter`;
- transformers' logits of the `boha merge` output with `boha score --adapter`.

Needs torch, transformers, peft and safetensors. Usage:

    python3 scripts/verify_peft.py [path/to/boha]   (default: target/release/boha)
"""

import json
import os
import subprocess
import sys
import tempfile

import torch
from peft import PeftModel
from safetensors.torch import load_file
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

BOHA = sys.argv[1] if len(sys.argv) > 1 else "target/release/boha"
TEXT = "the cat sat on the mat and the dog ate the bone"


def run(*args):
    r = subprocess.run([BOHA, *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"boha {' '.join(args)} failed:\n{r.stderr}")
    return r.stdout


def tiny_model(root, dtype=None):
    """A tiny random Llama saved by transformers (in `dtype` when given, else f32)."""
    d = os.path.join(root, "model" if dtype is None else f"model-{dtype}".replace("torch.", ""))
    os.makedirs(d)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|bos|>", "<|eos|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([TEXT, "answer 1 2 3 4 5 true false"] * 10, trainer)
    tok.save(os.path.join(d, "tokenizer.json"))
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<|bos|>", "eos_token": "<|eos|>", "add_bos_token": True}, f)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        rms_norm_eps=1e-5,
        bos_token_id=tok.token_to_id("<|bos|>"),
        eos_token_id=tok.token_to_id("<|eos|>"),
        tie_word_embeddings=False,
    )
    m = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0.0, 0.2)
    if dtype is not None:
        m = m.to(dtype)
    m.save_pretrained(d, safe_serialization=True)
    return d


def boha_logits(model, adapter, root, tag):
    dump = os.path.join(root, f"{tag}.safetensors")
    args = ["score", "--model", model, "--text", TEXT, "--dump-logits", dump]
    if adapter:
        args += ["--adapter", adapter]
    run(*args)
    t = load_file(dump)
    return t["tokens"], t["logits"]


def torch_logits(model, ids):
    with torch.no_grad():
        return model(ids[None, :]).logits[0].float()


def compare(what, got, want):
    err = ((got - want).abs().max() / want.abs().max()).item()
    ok = err < 1e-4
    print(f"{'ok ' if ok else 'BAD'} {what}: max |Δ| / max |logit| = {err:.2e}")
    return ok


def main():
    root = tempfile.mkdtemp(prefix="boha-peft-")
    model = tiny_model(root)
    data = os.path.join(root, "train.jsonl")
    with open(data, "w") as f:
        for w in ["cat", "dog", "mat", "bone"]:
            f.write(json.dumps({"prompt": f"the {w} ", "completion": "sat on the mat"}) + "\n")
    ok = True
    base = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    ids, plain = boha_logits(model, None, root, "base")
    ok &= compare("base model, boha vs transformers", plain, torch_logits(base, ids))
    # Rank 4 (2 per pair) runs ABBA and LoHa through the Khatri-Rao bottleneck at these
    # widths; rank 16 (8 per pair) through the fused kernels with the pair snippet.
    for name, method, rank, extra in [
            ("lora", "lora", 4, []), ("hira", "hira", 4, []),
            ("additive", "additive", 4, ["--blocks", "2"]),
            ("abba", "abba", 4, []), ("loha", "loha", 4, []),
            ("abba-fused", "abba", 16, []), ("loha-fused", "loha", 16, [])]:
        out = os.path.join(root, name)
        run("finetune", "--model", model, "--data", data, "--method", method,
            "--rank", str(rank), "--steps", "6", "--lr", "0.05", "--batch", "4", "--out", out,
            *extra)
        with open(os.path.join(out, "adapter_config.json")) as f:
            print(f"{name}: written as PEFT {json.load(f)['peft_type']}")
        ids, got = boha_logits(model, out, root, name)
        fresh = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
        peft_model = PeftModel.from_pretrained(fresh, out).eval()
        want = torch_logits(peft_model, ids)
        ok &= compare(f"{name}: boha --adapter vs PEFT", got, want)
        moved = ((want - torch_logits(base, ids)).abs().max()).item()
        print(f"    (the adapter moves the logits by up to {moved:.3f})")
        merged = os.path.join(root, f"{name}-merged")
        run("merge", "--model", model, "--adapter", out, "--out", merged)
        hf = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32)
        ok &= compare(f"{name}: boha merge loaded in transformers vs boha --adapter",
                      torch_logits(hf, ids), got)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
