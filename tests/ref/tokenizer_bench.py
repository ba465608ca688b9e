"""HF tokenizers' speed on one thread, for scripts/bench_tokenizers.sh.

    python tokenizer_bench.py TEXT NAME=DIR... [--runs 3] [--json OUT]

For each tokenizer.json: a fresh Tokenizer (padding and truncation off), every
line of TEXT encoded with encode_batch_fast (ids without offsets, HF's fastest
call; add_special_tokens=False), timed; the best of --runs gives MB/s of text.
Run it with TOKENIZERS_PARALLELISM=false and RAYON_NUM_THREADS=1: one thread.
"""
import argparse
import json
import os
import time

from tokenizers import Tokenizer

ap = argparse.ArgumentParser()
ap.add_argument("text")
ap.add_argument("models", nargs="+")
ap.add_argument("--runs", type=int, default=3)
ap.add_argument("--json")
a = ap.parse_args()
raw = open(a.text, "rb").read()
lines = raw.decode("utf-8").split("\n")
if lines and lines[-1] == "":
    lines.pop()
out = {}
for spec in a.models:
    name, d = spec.split("=", 1)
    best = float("inf")
    for _ in range(a.runs):
        t = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        t.no_padding()
        t.no_truncation()
        t0 = time.perf_counter()
        t.encode_batch_fast(lines, add_special_tokens=False)
        best = min(best, time.perf_counter() - t0)
    out[name] = len(raw) / best / 1e6
    print("%-24s %10.2f" % (name, out[name]), flush=True)
if a.json:
    json.dump({"hf_mb_per_s": out, "text_bytes": len(raw)}, open(a.json, "w"), indent=2)
