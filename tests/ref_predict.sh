#!/bin/bash
# lora predict against transformers + peft (the reference environment, tests/ref/predict_ref.py):
# small BERT classifiers whose tokenizers HF's WordPiece trainer makes (vocabulary = the model's),
# trained a few steps by `lora train` on synthetic labeled data (LoRA on query/value, the
# classifier whole), then
#  - sequence classification: for each line of a text file (the seeds' sentence as written, a
#    sentence with accents, one longer than the 32 positions, so truncated) the probabilities of
#    `lora predict --file` equal the softmax of PeftModel.from_pretrained's logits within 1e-4 and
#    the label names (config.json's id2label) equal exactly; the same for the merged model
#    (`lora merge`, no adapter) and for a model without id2label (LABEL_0, LABEL_1);
#  - token classification: per-token ids and argmax labels equal; the entities (words take their
#    first piece's label, B-/I- grouped, "O" dropped) equal those computed from HF's logits with
#    the fast tokenizer's word_ids(); adapter and merged model.
# usage: tests/ref_predict.sh BUILD_DIR   (LORA_REF_PY: the reference environment's python)
set -u
. "$(dirname "$0")/lib.sh"
PY=${LORA_REF_PY:?set LORA_REF_PY to the reference python (tests/ref/setup.sh prints it)}
REF="$PY tests/ref/predict_ref.py"
export TRANSFORMERS_VERBOSITY=error HF_HUB_DISABLE_PROGRESS_BARS=1 HF_HUB_OFFLINE=1
. "$(dirname "$0")/ref_lib.sh"

SEEDS="The movie was absolutely wonderful!"
cat >"$TMPD/texts.txt" <<TXT
$SEEDS
The movie was terrible and boring.
John Smith flew from Paris to London on Monday.
Café au lait costs three euros in Zürich, said Mary Johnson.
an excellent performance by the whole cast, although the plot made no sense at all and the ending was far too long for anyone
TXT

trained() { # trained TAG HEAD TASK LABELS SEED: model $TMPD/TAG, adapter $TMPD/TAG-adapter, merged $TMPD/TAG-merged
    local tag=$1 d="$TMPD/$1"
    step "$tag: a BERT $2 classifier with a WordPiece tokenizer trained by HF" $REF make-bert "$d" "$2" "$5"
    local V
    V=$(sed -n 's/^ *"vocab_size": *\([0-9]*\).*/\1/p' "$d/config.json")
    "$LORA" dataset --task "$3" --vocab "$V" --labels "$4" --count 200 --seq 12 --seed "$5" --out "$d.st" >/dev/null ||
        fail "$tag: lora dataset"
    step "$tag: lora train (LoRA on query, value; the classifier whole)" "$LORA" train --config tests/ps-bert.ini \
        --set model.path="$d" --set data.train="$d.st" --set train.steps=8 --set optim.lr=2e-2 \
        --set train.out_dir="$d-adapter"
    step "$tag: lora merge" "$LORA" merge --model "$d" --adapter "$d-adapter" --out "$d-merged"
}

trained cls Sequence SEQ_CLS 2 3
out=$("$LORA" predict --model "$TMPD/cls" --adapter "$TMPD/cls-adapter" --text "$SEEDS" 2>&1)
echo "$out" | sed 's/^/     /'
if grep -Eq '^label: (NEGATIVE|POSITIVE) \(0\.[0-9]{4}\)$' <<<"$out" && grep -Eq '^  NEGATIVE +0\.[0-9]{4}$' <<<"$out" &&
    grep -Eq '^  POSITIVE +0\.[0-9]{4}$' <<<"$out"; then
    pass "lora predict --text \"$SEEDS\" prints the label and both probabilities"
else
    fail "lora predict --text \"$SEEDS\": $out"
fi
step "cls: lora predict --file (adapter)" sh -c "'$LORA' predict --model '$TMPD/cls' --adapter '$TMPD/cls-adapter' \
    --file '$TMPD/texts.txt' >'$TMPD/cls.jsonl'"
step "cls: our probabilities and labels equal transformers + peft's" $REF check-cls "$TMPD/cls" "$TMPD/cls-adapter" \
    "$TMPD/texts.txt" "$TMPD/cls.jsonl"
grep -q '"truncated":true' "$TMPD/cls.jsonl" && pass "cls: the long line was truncated to the positions" ||
    fail "cls: no line was truncated"
step "cls: lora predict --file (merged model)" sh -c "'$LORA' predict --model '$TMPD/cls-merged' \
    --file '$TMPD/texts.txt' >'$TMPD/cls-merged.jsonl'"
step "cls: the merged model's probabilities and labels equal transformers'" $REF check-cls "$TMPD/cls-merged" - \
    "$TMPD/texts.txt" "$TMPD/cls-merged.jsonl"

step "plain: a classifier without id2label" $REF make-bert "$TMPD/plain" Sequence 5 --no-id2label
"$LORA" predict --model "$TMPD/plain" --file "$TMPD/texts.txt" >"$TMPD/plain.jsonl" || fail "plain: lora predict"
grep -q '"label":"LABEL_[01]"' "$TMPD/plain.jsonl" && pass "plain: labels are named LABEL_0, LABEL_1" ||
    fail "plain: $(head -1 "$TMPD/plain.jsonl")"
step "plain: probabilities and LABEL_k names equal transformers'" $REF check-cls "$TMPD/plain" - \
    "$TMPD/texts.txt" "$TMPD/plain.jsonl"

trained ner Token TOKEN_CLS 5 4
out=$("$LORA" predict --model "$TMPD/ner" --adapter "$TMPD/ner-adapter" --text "John Smith flew from Paris to London." 2>&1)
echo "$out" | sed 's/^/     /'
grep -Eq '^entities: [0-9]+$' <<<"$out" && pass "ner: lora predict --text prints the entities" || fail "ner: $out"
step "ner: lora predict --file (adapter)" sh -c "'$LORA' predict --model '$TMPD/ner' --adapter '$TMPD/ner-adapter' \
    --file '$TMPD/texts.txt' >'$TMPD/ner.jsonl'"
step "ner: token labels and entities equal those from transformers + peft's logits" $REF check-ner "$TMPD/ner" \
    "$TMPD/ner-adapter" "$TMPD/texts.txt" "$TMPD/ner.jsonl"
step "ner: lora predict --file (merged model)" sh -c "'$LORA' predict --model '$TMPD/ner-merged' \
    --file '$TMPD/texts.txt' >'$TMPD/ner-merged.jsonl'"
step "ner: the merged model's token labels and entities equal transformers'" $REF check-ner "$TMPD/ner-merged" - \
    "$TMPD/texts.txt" "$TMPD/ner-merged.jsonl"
finish
