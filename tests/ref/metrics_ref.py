#!/usr/bin/env python3
"""Random predictions and gold labels with scikit-learn's accuracy and macro-F1
and seqeval's entity precision/recall/F1 (default mode) plus token accuracy,
written as JSON for tests/test_metrics.c (LORA_METRICS_REF).

    metrics_ref.py OUT.json [SEED]
"""
import json
import random
import sys
import warnings

from seqeval.metrics import f1_score as seq_f1, precision_score as seq_p, recall_score as seq_r
from sklearn.metrics import accuracy_score, f1_score


def main(argv):
    out, seed = argv[1], int(argv[2]) if len(argv) > 2 else 1
    rng = random.Random(seed)
    warnings.simplefilter("ignore")
    cls = []
    for _ in range(60):
        L = rng.randint(2, 6)
        n = rng.randint(1, 80)
        gold = [rng.randrange(L) for _ in range(n)]
        # predictions that often agree, sometimes never use a label, sometimes use one gold lacks
        pred = [g if rng.random() < rng.random() else rng.randrange(L) for g in gold]
        cls.append({"L": L, "gold": gold, "pred": pred, "accuracy": accuracy_score(gold, pred),
                    "macro_f1": f1_score(gold, pred, average="macro", zero_division=0)})
    ner = []
    schemes = [["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-MISC", "I-MISC"],
               ["O", "B-X", "I-X", "E-X", "S-X", "B-Y", "I-Y", "E-Y", "S-Y"], ["O", "I-A", "I-B", "B-A"]]
    for _ in range(60):
        labels = rng.choice(schemes)
        L = len(labels)
        sents_g, sents_p, ids_g, ids_p = [], [], [], []
        for _ in range(rng.randint(1, 6)):
            T = rng.randint(1, 14)
            g = [rng.randrange(L) for _ in range(T)]
            p = [x if rng.random() < 0.7 else rng.randrange(L) for x in g]
            # positions that are not words (-100): later word pieces
            ig = [x if rng.random() < 0.8 else -100 for x in g]
            ids_g.append(ig)
            ids_p.append(p)
            sents_g.append([labels[x] for x in ig if x != -100])
            sents_p.append([labels[p[i]] for i, x in enumerate(ig) if x != -100])
        tot = sum(len(s) for s in sents_g)
        corr = sum(a == b for sg, sp in zip(sents_g, sents_p) for a, b in zip(sg, sp))
        ner.append({"labels": labels, "gold": ids_g, "pred": ids_p,
                    "precision": seq_p(sents_g, sents_p), "recall": seq_r(sents_g, sents_p),
                    "f1": seq_f1(sents_g, sents_p), "token_accuracy": corr / tot if tot else 0.0})
    with open(out, "w") as f:
        json.dump({"seed": seed, "cls": cls, "ner": ner}, f)
    print(f"metrics_ref: seed {seed}: {len(cls)} classification and {len(ner)} NER cases -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
