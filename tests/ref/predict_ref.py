#!/usr/bin/env python3
"""The HF side of tests/ref_predict.sh (lora predict) and of the prompt checks
of lora generate: tiny models with tokenizers trained by HF's trainers, and
the comparisons of our predictions with transformers + peft. Every check
exits 1 when something differs, printing what, and 0 when all passed.

  predict_ref.py make-bert OUT Sequence|Token SEED [--no-id2label]
        a small random BertFor{Sequence,Token}Classification whose vocabulary is
        a WordPiece tokenizer trained here (BERT's normalizer, pre-tokenizer,
        [CLS] $A [SEP]); labels NEGATIVE/POSITIVE or O, B-PER, I-PER, B-LOC,
        I-LOC (--no-id2label: config.json without id2label/label2id);
        max_position_embeddings 32, so long texts are truncated
  predict_ref.py llama-tokenizer DIR
        writes a byte-level BPE tokenizer.json into DIR with the vocabulary size
        of DIR/config.json, BOS added by the post-processor (as LLaMA's)
  predict_ref.py check-cls MODEL ADAPTER|- TEXTS OURS.jsonl [--tol 1e-4]
        softmax of transformers' (+ peft's) logits for each line of TEXTS
        (tokenizer(text, truncation=True, max_length=positions)) equal our
        probabilities within tol, and the label names equal ours exactly
  predict_ref.py check-ner MODEL ADAPTER|- TEXTS OURS.jsonl [--tol 1e-4]
        per-token ids and argmax labels equal ours; the entities computed from
        HF's logits with the fast tokenizer's word_ids() (a word takes its first
        piece's label; B-/I- grouping as pipeline("ner") groups, "O" dropped)
        equal ours (type, first and last word, score within tol)
"""
import json
import os
import sys
import warnings

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

CORPUS = [
    "The movie was absolutely wonderful!", "The movie was terrible and boring.", "What a great film, I loved it.",
    "I hated every minute of this awful show.", "John Smith flew from Paris to London on Monday.",
    "Mary Johnson lives in New York and works in Boston.", "The weather in Berlin was cold but sunny.",
    "An excellent performance by the whole cast.", "The plot made no sense at all.", "Alice met Bob in Tokyo.",
    "Café au lait costs three euros in Zürich.", "Numbers like 42 and 3.14 appear too.",
]


def corpus():
    here = os.path.dirname(os.path.abspath(__file__))
    text = list(CORPUS)
    with open(os.path.join(here, "..", "..", "README.md"), encoding="utf-8") as f:
        text += [l.strip() for l in f if l.strip()]
    return text


def wordpiece(size):
    sp = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    t = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    t.normalizer = normalizers.BertNormalizer(lowercase=True)
    t.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    t.decoder = decoders.WordPiece()
    t.train_from_iterator(corpus(), trainers.WordPieceTrainer(vocab_size=size, special_tokens=sp, show_progress=False,
                                                              limit_alphabet=120))
    cls, sep = t.token_to_id("[CLS]"), t.token_to_id("[SEP]")
    t.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                     special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return t


def cmd_make_bert(out, head, seed, *flags):
    from transformers import BertConfig, BertForSequenceClassification, BertForTokenClassification
    tok = wordpiece(400)
    labels = ["NEGATIVE", "POSITIVE"] if head == "Sequence" else ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    torch.manual_seed(int(seed))
    config = BertConfig(num_hidden_layers=2, num_attention_heads=4, hidden_size=32, intermediate_size=48,
                        vocab_size=tok.get_vocab_size(), max_position_embeddings=32, type_vocab_size=2,
                        pad_token_id=tok.token_to_id("[PAD]"), hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, initializer_range=0.2,
                        id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
    cls = {"Sequence": BertForSequenceClassification, "Token": BertForTokenClassification}[head]
    cls(config).eval().save_pretrained(out)
    tok.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "BertTokenizerFast", "do_lower_case": True, "model_max_length": 32}, f)
    if "--no-id2label" in flags:
        p = os.path.join(out, "config.json")
        c = json.load(open(p))
        c.pop("id2label", None), c.pop("label2id", None)
        c["num_labels"] = len(labels)
        json.dump(c, open(p, "w"), indent=2)
    print(f"{out}: Bert{head}Classification, vocabulary {tok.get_vocab_size()} (WordPiece), labels {labels}")
    return 0


def cmd_llama_tokenizer(d):
    V = json.load(open(os.path.join(d, "config.json")))["vocab_size"]
    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    sp = ["<unk>", "<s>", "</s>"]
    t.train_from_iterator(corpus(), trainers.BpeTrainer(vocab_size=V, special_tokens=sp, show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bos = t.token_to_id("<s>")
    t.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B:1",
                                                     special_tokens=[("<s>", bos)])
    t.save(os.path.join(d, "tokenizer.json"))
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>"}, f)
    print(f"{d}/tokenizer.json: byte-level BPE, {t.get_vocab_size()} ids (model {V}), BOS <s> = {bos}")
    return 0 if t.get_vocab_size() <= V else 1


def load(model_dir, adapter, auto):
    import transformers
    from transformers import PreTrainedTokenizerFast
    model = getattr(transformers, auto).from_pretrained(model_dir, dtype=torch.float32)
    if adapter != "-":
        from peft import PeftModel
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(model_dir, "tokenizer.json"))
    return model, tok


def read(texts, ours):
    lines = open(texts, encoding="utf-8").read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    rows = [json.loads(l) for l in open(ours, encoding="utf-8")]
    return lines, rows


def cmd_check_cls(model_dir, adapter, texts, ours, *rest):
    tol = float(rest[1]) if len(rest) > 1 and rest[0] == "--tol" else 1e-4
    model, tok = load(model_dir, adapter, "AutoModelForSequenceClassification")
    cfg = model.config
    lines, rows = read(texts, ours)
    bad, worst = 0, 0.0
    if len(lines) != len(rows):
        print(f"FAIL {len(lines)} texts but {len(rows)} JSON lines")
        return 1
    for text, row in zip(lines, rows):
        enc = tok(text, truncation=True, max_length=cfg.max_position_embeddings, return_tensors="pt")
        with torch.no_grad():
            lg = model(**enc).logits[0]
        p = torch.softmax(lg.double(), -1)
        names = [cfg.id2label[i] for i in range(lg.shape[0])]
        want = names[int(torch.argmax(lg))]
        d = max(abs(float(p[i]) - row["probs"].get(n, float("nan"))) for i, n in enumerate(names)) \
            if sorted(row["probs"]) == sorted(names) else float("inf")
        worst = max(worst, d)
        ok = d <= tol and row["label"] == want and row["text"] == text
        bad += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {want:>10} (ours {row['label']}) max |dp| {d:.2e}  {len(enc['input_ids'][0])} tokens  {text[:50]!r}")
    print(f"{len(lines) - bad}/{len(lines)} texts agree; worst probability difference {worst:.3e} (tol {tol:g})")
    return 1 if bad else 0


def group(words):
    """words: [(label_name, score)] in order -> [(type, w0, w1, score)] as pipeline('ner') groups, 'O' dropped."""
    out = []
    for w, (name, sc) in enumerate(words):
        if name[:2] in ("B-", "I-"):
            bi, tag = name[0], name[2:]
        else:
            bi, tag = "I", name
        if out and bi != "B" and out[-1][0] == tag:
            out[-1][2] = w
            out[-1][3].append(sc)
        else:
            out.append([tag, w, w, [sc]])
    return [(t, a, b, sum(s) / len(s)) for t, a, b, s in out if t != "O"]


def cmd_check_ner(model_dir, adapter, texts, ours, *rest):
    tol = float(rest[1]) if len(rest) > 1 and rest[0] == "--tol" else 1e-4
    model, tok = load(model_dir, adapter, "AutoModelForTokenClassification")
    cfg = model.config
    lines, rows = read(texts, ours)
    if len(lines) != len(rows):
        print(f"FAIL {len(lines)} texts but {len(rows)} JSON lines")
        return 1
    bad, worst, n_ent = 0, 0.0, 0
    for text, row in zip(lines, rows):
        enc = tok(text, truncation=True, max_length=cfg.max_position_embeddings, return_tensors="pt")
        with torch.no_grad():
            lg = model(**enc).logits[0]
        p = torch.softmax(lg.double(), -1)
        am = torch.argmax(lg, -1).tolist()
        ids = enc["input_ids"][0].tolist()
        labels = [cfg.id2label[k] for k in am]
        ok_tok = ids == [t["id"] for t in row["tokens"]] and labels == [t["label"] for t in row["tokens"]]
        wid = enc.word_ids(0)
        words, seen = [], set()
        for i, w in enumerate(wid):
            if w is None or w in seen:
                continue
            seen.add(w)
            words.append((labels[i], float(p[i, am[i]])))
        want = group(words)
        got = [(e["type"], e["words"][0], e["words"][1], e["score"]) for e in row["entities"]]
        ok_ent = len(want) == len(got) and all(a[:3] == tuple(b[:3]) for a, b in zip(want, got))
        d = max([abs(a[3] - b[3]) for a, b in zip(want, got)] or [0.0])
        worst = max(worst, d)
        n_ent += len(want)
        ok = ok_tok and ok_ent and d <= tol
        bad += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {len(ids)} tokens, entities {[(t, a, b) for t, a, b, _ in want]}"
              + ("" if ok else f" ours {[g[:3] for g in got]}; token labels {'equal' if ok_tok else 'differ'}")
              + f"  {text[:40]!r}")
    print(f"{len(lines) - bad}/{len(lines)} texts agree ({n_ent} entities); worst score difference {worst:.3e}")
    return 1 if bad else 0


def main(argv):
    cmds = {"make-bert": (3, cmd_make_bert), "llama-tokenizer": (1, cmd_llama_tokenizer),
            "check-cls": (4, cmd_check_cls), "check-ner": (4, cmd_check_ner)}
    if len(argv) < 2 or argv[1] not in cmds or len(argv) - 2 < cmds[argv[1]][0]:
        print(__doc__, file=sys.stderr)
        return 2
    return cmds[argv[1]][1](*argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
