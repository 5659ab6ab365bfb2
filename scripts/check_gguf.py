#!/usr/bin/env python3
"""Checks a GGUF file with llama.cpp's own Python reader (the `gguf` package): a manual
check of what `boha::model::export_gguf` writes, not part of `cargo test`.

usage: check_gguf.py FILE.gguf [--quiet]

Opens FILE with gguf.GGUFReader (which parses the header exactly as llama.cpp lays it
out) and prints its architecture, tensor count and types. Then checks, reporting every
problem and exiting 1 if there is one:

- each tensor's byte size against its type and shape (ggml's GGML_QUANT_SIZES: block
  size and bytes per block; rows whole blocks), its data offset against the alignment,
  its data inside the file and not overlapping another tensor's;
- the tensor names and shapes against what llama.cpp's architecture expects
  (gguf.MODEL_TENSORS for the names; shapes from the metadata: token_embd [C, V],
  blk.N.attn_q [C, NH·HS], attn_k / attn_v [C, NKV·HS], attn_output [NH·HS, C],
  ffn_gate / ffn_up [C, F], ffn_down [F, C], attn_norm / ffn_norm / output_norm [C],
  output [C, V] unless tied, qwen2's q/k/v biases; dims innermost first);
- the metadata types llama.cpp's loader insists on (u32 sizes and ids, f32 constants,
  string and i32 arrays for the tokenizer);
- every tensor's values finite after dequantizing (gguf.quants).

Needs `pip install gguf numpy` (e.g. in a venv: python3 -m venv /work/pyenv-gguf &&
/work/pyenv-gguf/bin/pip install gguf numpy).
"""

import argparse
import collections
import sys

import numpy as np

import gguf
from gguf import GGUFValueType as VT


def field_value(reader, key):
    """The value of metadata `key` as a Python value (None when absent)."""
    f = reader.get_field(key)
    return None if f is None else f.contents()


def field_type(reader, key):
    f = reader.get_field(key)
    return None if f is None else list(f.types)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("--quiet", action="store_true", help="no per-tensor lines")
    args = ap.parse_args()

    r = gguf.GGUFReader(args.file)
    problems = []
    arch = field_value(r, "general.architecture")
    ftype = field_value(r, "general.file_type")
    print(f"file: {args.file}")
    print(f"architecture: {arch}")
    print(f"name: {field_value(r, 'general.name')}")
    print(f"file_type: {ftype}")
    print(f"alignment: {r.alignment}")
    print(f"metadata keys: {len(r.fields) - 3}")  # GGUF.version, tensor and kv counts
    print(f"tensors: {len(r.tensors)}")
    types = collections.Counter(t.tensor_type.name for t in r.tensors)
    print("tensor types: " + ", ".join(f"{n} x{c}" for n, c in sorted(types.items())))

    # --- sizes, offsets, overlaps -------------------------------------------------
    file_len = len(r.data)
    if r.data_offset % r.alignment:
        problems.append(f"data section at {r.data_offset} is not {r.alignment}-aligned")
    spans = []
    for t in r.tensors:
        block, size = gguf.GGML_QUANT_SIZES[t.tensor_type]
        ne = [int(d) for d in t.shape]
        n = int(np.prod(ne))
        if ne[0] % block:
            problems.append(f"{t.name}: row of {ne[0]} is not whole {t.tensor_type.name} blocks of {block}")
        want = n // block * size
        if t.n_bytes != want or t.data.nbytes != want:
            problems.append(f"{t.name}: {t.data.nbytes} bytes, {t.tensor_type.name} {ne} needs {want}")
        if (t.data_offset - r.data_offset) % r.alignment:
            problems.append(f"{t.name}: offset {t.data_offset - r.data_offset} not aligned")
        if t.data_offset + want > file_len:
            problems.append(f"{t.name}: data runs past the end of the file")
        spans.append((t.data_offset, t.data_offset + want, t.name))
        if not args.quiet:
            print(f"  {t.name:28} {t.tensor_type.name:5} ne={ne} bytes={want}")
    spans.sort()
    for (s0, e0, n0), (s1, _, n1) in zip(spans, spans[1:]):
        if s1 < e0:
            problems.append(f"{n0} and {n1} overlap")

    # --- metadata types llama.cpp reads strictly ----------------------------------
    u32 = [VT.UINT32]
    f32 = [VT.FLOAT32]
    typed = {
        "general.architecture": [VT.STRING],
        "general.file_type": u32,
        f"{arch}.context_length": u32,
        f"{arch}.embedding_length": u32,
        f"{arch}.block_count": u32,
        f"{arch}.feed_forward_length": u32,
        f"{arch}.attention.head_count": u32,
        f"{arch}.attention.head_count_kv": u32,
        f"{arch}.attention.key_length": u32,
        f"{arch}.attention.value_length": u32,
        f"{arch}.rope.dimension_count": u32,
        f"{arch}.vocab_size": u32,
        f"{arch}.rope.freq_base": f32,
        f"{arch}.attention.layer_norm_rms_epsilon": f32,
        "tokenizer.ggml.model": [VT.STRING],
        "tokenizer.ggml.tokens": [VT.ARRAY, VT.STRING],
        "tokenizer.ggml.token_type": [VT.ARRAY, VT.INT32],
        "tokenizer.ggml.merges": [VT.ARRAY, VT.STRING],
        "tokenizer.ggml.bos_token_id": u32,
        "tokenizer.ggml.eos_token_id": u32,
        "tokenizer.ggml.eot_token_id": u32,
        "tokenizer.chat_template": [VT.STRING],
    }
    required = ["general.architecture", f"{arch}.embedding_length", f"{arch}.block_count",
                f"{arch}.feed_forward_length", f"{arch}.attention.head_count",
                "tokenizer.ggml.model", "tokenizer.ggml.tokens"]
    for key, want in typed.items():
        got = field_type(r, key)
        if got is None:
            if key in required:
                problems.append(f"metadata {key} is missing")
        elif got != want:
            problems.append(f"metadata {key} has type {[t.name for t in got]}, llama.cpp reads {[t.name for t in want]}")
    tokens = field_value(r, "tokenizer.ggml.tokens") or []
    print(f"tokenizer: {field_value(r, 'tokenizer.ggml.model')} "
          f"(pre {field_value(r, 'tokenizer.ggml.pre')}), {len(tokens)} tokens, "
          f"{len(field_value(r, 'tokenizer.ggml.merges') or [])} merges, "
          f"bos {field_value(r, 'tokenizer.ggml.bos_token_id')}, "
          f"eos {field_value(r, 'tokenizer.ggml.eos_token_id')}, "
          f"chat template {'yes' if field_value(r, 'tokenizer.chat_template') else 'no'}")
    for key in ["tokenizer.ggml.token_type", "tokenizer.ggml.scores"]:
        v = field_value(r, key)
        if v is not None and len(v) != len(tokens):
            problems.append(f"{key} has {len(v)} entries for {len(tokens)} tokens")

    # --- names and shapes llama.cpp's architecture expects ------------------------
    arch_enum = {name: a for a, name in gguf.MODEL_ARCH_NAMES.items()}.get(arch)
    if arch_enum is None:
        problems.append(f"architecture {arch!r} is unknown to gguf-py")
    else:
        known = set()
        n_layer = field_value(r, f"{arch}.block_count") or 0
        for t in gguf.MODEL_TENSORS[arch_enum]:
            pattern = gguf.TENSOR_NAMES[t]
            for bid in range(n_layer) if "{bid}" in pattern else [None]:
                known.add(pattern.format(bid=bid))
        for t in r.tensors:
            base = t.name.rsplit(".", 1)[0]
            if base not in known:
                problems.append(f"{t.name}: not a tensor of llama.cpp's {arch} architecture")

        C = field_value(r, f"{arch}.embedding_length")
        F = field_value(r, f"{arch}.feed_forward_length")
        NH = field_value(r, f"{arch}.attention.head_count")
        NKV = field_value(r, f"{arch}.attention.head_count_kv") or NH
        HS = field_value(r, f"{arch}.attention.key_length") or (C // NH if C and NH else None)
        V = field_value(r, f"{arch}.vocab_size") or len(tokens)
        expect = {"token_embd.weight": [C, V], "output_norm.weight": [C]}
        optional = {"output.weight": [C, V], "rope_freqs.weight": [HS // 2 if HS else None]}
        for i in range(n_layer):
            b = f"blk.{i}."
            expect.update({
                b + "attn_norm.weight": [C],
                b + "attn_q.weight": [C, NH * HS],
                b + "attn_k.weight": [C, NKV * HS],
                b + "attn_v.weight": [C, NKV * HS],
                b + "attn_output.weight": [NH * HS, C],
                b + "ffn_norm.weight": [C],
                b + "ffn_gate.weight": [C, F],
                b + "ffn_up.weight": [C, F],
                b + "ffn_down.weight": [F, C],
            })
            biases = {b + "attn_q.bias": [NH * HS], b + "attn_k.bias": [NKV * HS],
                      b + "attn_v.bias": [NKV * HS]}
            (expect if arch == "qwen2" else optional).update(biases)
        have = {t.name: [int(d) for d in t.shape] for t in r.tensors}
        for name, shape in expect.items():
            if name not in have:
                problems.append(f"missing tensor {name} {shape}")
        for name, shape in have.items():
            want = expect.get(name, optional.get(name))
            if want is None:
                problems.append(f"unexpected tensor {name}")
            elif shape != want:
                problems.append(f"{name}: ne {shape}, llama.cpp's {arch} expects {want}")
        tied = "output.weight" not in have
        print(f"layers: {n_layer}, C {C}, F {F}, heads {NH}/{NKV} of {HS}, vocab {V}, "
              f"{'tied embeddings (no output.weight)' if tied else 'output.weight present'}")

    # --- values --------------------------------------------------------------------
    for t in r.tensors:
        x = gguf.quants.dequantize(t.data, t.tensor_type)
        if not np.all(np.isfinite(x)):
            problems.append(f"{t.name}: non-finite values")

    if problems:
        print(f"FAILED: {len(problems)} problem(s)")
        for p in problems:
            print(f"  - {p}")
        sys.exit(1)
    print("OK: sizes, offsets, names, shapes, metadata types and values as llama.cpp expects")


if __name__ == "__main__":
    main()
