"""What `lora prep` must write, computed with HF: transformers' tokenizer (the fast one, HF tokenizers
underneath) called as run_glue / run_ner call it, and run_ner's label alignment; compared tensor by
tensor (exact equality) with our output. Used by tests/ref_prep.sh.

  prep_ref.py seq MODEL_DIR FILE FORMAT T OURS.safetensors [--pair] [--no-trunc]
      FORMAT tsv (GLUE: csv.QUOTE_NONE, tabs), csv (RFC 4180: Python's csv module) or jsonl;
      text columns sentence (or sentence1 + sentence2 with --pair), label an integer or a name
      (names: sorted, as run_glue builds label_list)
  prep_ref.py ner MODEL_DIR FILE T OURS.safetensors [--label-all]
      CoNLL (token first, tag last, -DOCSTART- skipped); tags through config.json's label2id, or
      sorted; tokenizer(words, is_split_into_words=True, truncation=True, max_length=T,
      padding="max_length"); labels as run_ner's tokenize_and_align_labels
  prep_ref.py lm MODEL_DIR OURS.bin FILE...   (--lines: each line + EOS, as `lora prep --lines`)
  prep_ref.py batch LIST   each line of LIST: NAME<TAB>one of the above, its arguments tab-separated;
      prints "ok   NAME: ..." or "FAIL NAME: ..." per line (one Python start for all: importing
      transformers is the slow part); exits 1 when any failed
"""
import csv
import json
import os
import struct
import sys

import numpy as np
from safetensors.numpy import load_file
from transformers import AutoTokenizer


class Mismatch(Exception):
    pass


def fail(msg):
    raise Mismatch(msg)


def compare(ours_path, ref):
    ours, shapes = load_file(ours_path), []
    for k, want in ref.items():
        if k not in ours:
            fail(f"{ours_path}: no tensor {k}")
        got = ours[k]
        want = np.asarray(want, dtype=np.int64)
        if got.shape != want.shape:
            fail(f"{k}: shape {got.shape}, HF's {want.shape}")
        bad = np.argwhere(got != want)
        if len(bad):
            i = tuple(bad[0])
            fail(f"{k}: {len(bad)} of {want.size} values differ; first at {i}: ours {got[i]}, HF {want[i]}"
                 f" (row ours {got[i[0]].tolist()}, HF {want[i[0]].tolist()})")
        shapes.append(f"{k} {list(want.shape)}")


_tok = {}


def tokenizer(model_dir):
    if model_dir not in _tok:
        _tok[model_dir] = AutoTokenizer.from_pretrained(model_dir, use_fast=True)
    return _tok[model_dir]


def seq(args):
    model_dir, path, fmt, T, ours = args[:5]
    T = int(T)
    pair, trunc = "--pair" in args, "--no-trunc" not in args
    with open(path, encoding="utf-8", newline="") as f:
        if fmt == "jsonl":
            rows = [json.loads(l) for l in f if l.strip()]
        elif fmt == "tsv":
            rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        else:
            rows = list(csv.DictReader(f))
    a = [r["sentence1" if pair else "sentence"] for r in rows]
    b = [r["sentence2"] for r in rows] if pair else None
    labels = [str(r["label"]) for r in rows]
    if all(l.isdigit() for l in labels):
        y = [int(l) for l in labels]
    else:
        names = sorted(set(labels))
        y = [names.index(l) for l in labels]
    enc = tokenizer(model_dir)(a, b, truncation=trunc, max_length=T, padding="max_length",
                                return_token_type_ids=True, return_attention_mask=True)
    compare(ours, {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                   "token_type_ids": enc["token_type_ids"], "labels": y})
    return (f"seq {os.path.basename(path)}: {len(rows)} rows, T={T}{' (pairs)' if pair else ''}: HF's tensors exactly")


def read_conll(path):
    sents, words, tags = [], [], []
    for line in open(path, encoding="utf-8"):
        f = line.split()
        if not f or f[0] == "-DOCSTART-":
            if words:
                sents.append((words, tags))
                words, tags = [], []
            continue
        words.append(f[0])
        tags.append(f[-1])
    if words:
        sents.append((words, tags))
    return sents


def ner(args):
    model_dir, path, T, ours = args[:4]
    T = int(T)
    label_all = "--label-all" in args
    sents = read_conll(path)
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    l2i = cfg.get("label2id")
    if l2i and not all(k == f"LABEL_{v}" for k, v in l2i.items()):
        label_to_id = l2i
    else:
        label_list = sorted({t for _, tags in sents for t in tags})
        label_to_id = {l: i for i, l in enumerate(label_list)}
    id_to_label = {v: k for k, v in label_to_id.items()}
    # run_ner: b_to_i_label maps B-X to I-X when I-X is a label
    b_to_i = []
    for i in range(max(label_to_id.values()) + 1):
        name = id_to_label.get(i, "")
        b_to_i.append(label_to_id.get("I-" + name[2:], i) if name.startswith("B-") else i)
    tok = tokenizer(model_dir)
    enc = tok([w for w, _ in sents], is_split_into_words=True, truncation=True, max_length=T, padding="max_length",
              return_token_type_ids=True, return_attention_mask=True)
    labels = []
    for i, (_, tags) in enumerate(sents):
        prev, row = None, []
        for w in enc.word_ids(batch_index=i):  # run_ner's tokenize_and_align_labels
            if w is None:
                row.append(-100)
            elif w != prev:
                row.append(label_to_id[tags[w]])
            else:
                row.append(b_to_i[label_to_id[tags[w]]] if label_all else -100)
            prev = w
        labels.append(row)
    compare(ours, {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                   "token_type_ids": enc["token_type_ids"], "labels": labels})
    return (f"ner {os.path.basename(path)}: {len(sents)} sentences, T={T}{', label_all' if label_all else ''}: "
          "HF's tensors exactly")


def lm(args):
    lines = "--lines" in args
    args = [a for a in args if a != "--lines"]
    model_dir, ours, files = args[0], args[1], args[2:]
    tok = tokenizer(model_dir)
    eos = tok.eos_token_id
    want = []
    for p in files:
        text = open(p, encoding="utf-8").read()
        docs = text.split("\n") if lines else [text]
        if lines and text.endswith("\n"):
            docs = docs[:-1]
        for d in docs:
            want += tok(d, add_special_tokens=False)["input_ids"] + [eos]
    b = open(ours, "rb").read()
    h = struct.unpack("<256i", b[:1024])
    n, dt = (h[2] & 0xffffffff) | (h[3] << 32), h[4]
    got = list(np.frombuffer(b[1024:1024 + n * dt], dtype=np.uint16 if dt == 2 else np.uint32))
    if got != want:
        i = next((k for k in range(min(len(got), len(want))) if got[k] != want[k]), min(len(got), len(want)))
        fail(f"lm: {len(got)} tokens, HF {len(want)}; first difference at {i}: ours {got[i:i + 5]}, HF {want[i:i + 5]}")
    return (f"lm: {len(files)} files, {n} tokens (EOS {eos} after each {'line' if lines else 'file'}): HF's ids exactly")


CMDS = {"seq": seq, "ner": ner, "lm": lm}

if __name__ == "__main__":
    if sys.argv[1] != "batch":
        try:
            print(CMDS[sys.argv[1]](sys.argv[2:]))
        except Mismatch as m:
            print("FAIL", m)
            sys.exit(1)
        sys.exit(0)
    bad = 0
    for line in open(sys.argv[2], encoding="utf-8"):
        name, cmd, *args = line.rstrip("\n").split("\t")
        try:
            print(f"ok   {name}: {CMDS[cmd](args)}")
        except Exception as m:  # a mismatch or a reference that could not run: either fails the check
            print(f"FAIL {name}: {type(m).__name__}: {m}")
            bad += 1
    sys.exit(1 if bad else 0)
