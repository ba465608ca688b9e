#!/bin/bash
# `lora prep` against HF: tests/ref/prep_ref.py tokenizes the same files with transformers' fast
# tokenizer (HF tokenizers) as run_glue and run_ner call it, aligns labels as run_ner does, and
# compares input_ids, attention_mask, token_type_ids and labels exactly with what we wrote. Two
# WordPiece tokenizers: tests/data/bert-vocab.txt as a vocab.txt-only folder (uncased), and a
# cased one HF's WordPiece trainer makes here from the samples (tokenizer.json, a small vocabulary
# so words split into many pieces); the causal LM file against the demo's byte-level BPE.
# usage: tests/ref_prep.sh BUILD_DIR   (LORA_REF_PY: the reference environment's python)
set -u
. "$(dirname "$0")/lib.sh"
PY=${LORA_REF_PY:?set LORA_REF_PY to the reference python (tests/ref/setup.sh prints it)}
export TRANSFORMERS_VERBOSITY=error HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
REF="$PY tests/ref/prep_ref.py"
D=tests/data

mkdir -p "$TMPD/uncased" "$TMPD/cased"
for m in uncased cased; do
    sed 's/BertForSequenceClassification/BertForTokenClassification/' \
        tests/fixtures/bert-tiny-cls/base/config.json >"$TMPD/$m/config.json"
done
cp $D/bert-vocab.txt "$TMPD/uncased/vocab.txt"
$PY - "$TMPD/cased" $D/sst2-sample.tsv $D/conll-sample.txt <<'EOF' || fail "training the cased WordPiece tokenizer"
import json, sys
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
out, files = sys.argv[1], sys.argv[2:]
t = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=12))
t.normalizer = normalizers.BertNormalizer(lowercase=False)
t.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
sp = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
t.train(files, trainers.WordPieceTrainer(vocab_size=150, special_tokens=sp))
cls, sep = t.token_to_id("[CLS]"), t.token_to_id("[SEP]")
t.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                 special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
t.save(out + "/tokenizer.json")
json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "pad_token": "[PAD]", "unk_token": "[UNK]",
           "cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]"}, open(out + "/tokenizer_config.json", "w"))
EOF

# a pair CSV with RFC 4180 quoting (commas, doubled quotes, a newline inside a field) and names as labels
python3 - $D/sst2-sample.tsv "$TMPD/pairs.csv" <<'EOF'
import csv, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1], encoding="utf-8")][1:]
with open(sys.argv[2], "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f)
    w.writerow(["sentence1", "sentence2", "label"])
    for i, (s, y) in enumerate(rows):
        b = rows[(i + 7) % len(rows)][0]
        if i % 5 == 0: b = 'she said "yes, really",\nthen ' + b
        w.writerow([s, b, "good" if y.strip() == "1" else "bad"])
EOF

# check NAME PREP-ARGS... -- REF-ARGS...: runs lora prep now (its output copied aside) and lists the
# reference comparison; prep_ref.py runs every listed one at the end in one Python process
n_checks=0
check() {
    local name=$1 a=() r=()
    shift
    while [ "$1" != -- ]; do a+=("$1"); shift; done
    shift
    r=("$@")
    n_checks=$((n_checks + 1))
    local ours="$TMPD/out$n_checks"
    if ! "$LORA" prep "${a[@]}" >"$TMPD/prep.log" 2>&1; then
        fail "$name: lora prep: $(tail -2 "$TMPD/prep.log")"
        return
    fi
    local i
    for i in "${!r[@]}"; do [ "${r[$i]}" = OURS ] && r[$i]=$ours; done
    for i in "${!a[@]}"; do [ "${a[$i]}" = --out ] && cp "${a[$((i + 1))]}" "$ours"; done
    (IFS=$'\t'; echo "$name"$'\t'"${r[*]}") >>"$TMPD/checks.tsv"
}
for m in uncased cased; do
    M="$TMPD/$m"
    for T in 32 12; do
        check "$m: SST-2 TSV, T=$T" --task seq_cls --model "$M" --out "$TMPD/s.st" --max-length $T $D/sst2-sample.tsv \
            -- seq "$M" $D/sst2-sample.tsv tsv $T OURS
        check "$m: pair CSV (RFC 4180), names as labels, T=$T" --task seq_cls --model "$M" --out "$TMPD/p.st" \
            --max-length $T "$TMPD/pairs.csv" -- seq "$M" "$TMPD/pairs.csv" csv $T OURS --pair
        check "$m: CoNLL, T=$T" --task token_cls --model "$M" --out "$TMPD/n.st" --max-length $T $D/conll-sample.txt \
            -- ner "$M" $D/conll-sample.txt $T OURS
        check "$m: CoNLL --label-all-tokens, T=$T" --task token_cls --model "$M" --out "$TMPD/n.st" --max-length $T \
            --label-all-tokens $D/conll-sample.txt -- ner "$M" $D/conll-sample.txt $T OURS --label-all
    done
done
# tags through config.json's label2id (CoNLL's order, not sorted)
mkdir -p "$TMPD/l2i" && cp "$TMPD/uncased/vocab.txt" "$TMPD/uncased/config.json" "$TMPD/l2i/"
python3 - "$TMPD/l2i/config.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
tags = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
c["id2label"] = {str(i): t for i, t in enumerate(tags)}; c["label2id"] = {t: i for i, t in enumerate(tags)}
json.dump(c, open(sys.argv[1], "w"))
EOF
check "uncased: CoNLL through label2id, --label-all-tokens" --task token_cls --model "$TMPD/l2i" --out "$TMPD/n.st" \
    --max-length 24 --label-all-tokens $D/conll-sample.txt -- ner "$TMPD/l2i" $D/conll-sample.txt 24 OURS --label-all
check "lm: the text folder, a document per file" --task lm --model demo/tiny-gpt2-pydocs --out "$TMPD/lm.bin" $D/text \
    -- lm demo/tiny-gpt2-pydocs OURS $D/text/*.txt
check "lm: the text folder, a document per line" --task lm --model demo/tiny-gpt2-pydocs --out "$TMPD/lm.bin" --lines \
    $D/text -- lm demo/tiny-gpt2-pydocs OURS --lines $D/text/*.txt
if [ -s "$TMPD/checks.tsv" ]; then
    $REF batch "$TMPD/checks.tsv" >"$TMPD/ref.log" 2>&1
    cat "$TMPD/ref.log"
    while IFS=$'\t' read -r name _; do
        grep -qF "ok   $name: " "$TMPD/ref.log" || fail "$name (no ok line from prep_ref.py)"
    done <"$TMPD/checks.tsv"
    pass "$(grep -c '^ok ' "$TMPD/ref.log") of $n_checks comparisons with HF ran and passed"
fi
finish
