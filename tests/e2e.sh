#!/bin/bash
# The users' flow end to end on the small shipped data (tests/data, CC0), under mpirun (1 server,
# 2 workers, BSP), each metric checked against the reference implementation on the same predictions:
#  - sentiment (BERT SEQ_CLS): lora prep of an SST-2-format TSV (30 rows train; evaluated on all
#    40, the 30 and 10 unseen, so that the tiny random model's predictions are neither all right
#    nor all one class) -> lora_worker, 12 epochs, evaluation and an export every epoch, the best
#    by accuracy -> lora predict --file on the evaluation sentences with the last epoch's adapter:
#    its labels scored by scikit-learn give the accuracy and macro-F1 lora_worker printed;
#  - NER (BERT TOKEN_CLS): lora prep of a CoNLL file (the last 8 sentences held out; evaluated on
#    all) -> lora_worker, 12 epochs -> lora predict on the evaluation sentences: the first piece's
#    tag of each word, scored by seqeval, gives the entity F1 and token accuracy lora_worker printed;
#  - LM (GPT-2, the demo's pretrained model): lora prep of a text folder -> lora_worker, 6 epochs
#    evaluated on the training text -> lora generate --prompt with the adapter equals transformers +
#    peft's greedy generate.
# The loss printed at each epoch's evaluation must fall from the first epoch to the last.
# usage: tests/e2e.sh BUILD_DIR   (LORA_REF_PY: the reference environment's python)
set -u
. "$(dirname "$0")/lib.sh"
PY=${LORA_REF_PY:?set LORA_REF_PY to the reference python (tests/ref/setup.sh prints it)}
HF="$PY tests/ref/hf_check.py"
export TRANSFORMERS_VERBOSITY=error HF_HUB_DISABLE_PROGRESS_BARS=1 HF_HUB_OFFLINE=1
. "$(dirname "$0")/ref_lib.sh"
. "$(dirname "$0")/prep_models.sh"
prep_models "$TMPD"
D=tests/data
EPOCHS=(--set train.eval_epochs=true --set train.save_epochs=true --set train.log_every=1000)

# loss_falls NAME LOG: the loss of the first epoch's evaluation is above the last one's
loss_falls() {
    local first last
    first=$(sed -n 's/^epoch 1 (step [0-9]*) | val loss \([0-9.]*\).*/\1/p' "$2")
    last=$(grep "^epoch [0-9]* (step" "$2" | tail -1 | sed -n 's/.* | val loss \([0-9.]*\).*/\1/p')
    if [ -n "$first" ] && [ -n "$last" ] && awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }'; then
        pass "$1: the evaluated loss falls from $first (epoch 1) to $last (last epoch)"
    else
        fail "$1: evaluated loss '$first' -> '$last': $(grep "^epoch" "$2" | head -5)"
    fi
}
# train_bert TAG MODEL METRIC: lora_worker on $TMPD/TAG.st (evaluated on $TMPD/TAG-dev.st), 12 epochs, an
# export each epoch into $TMPD/TAG-out, the best by METRIC; its output in $TMPD/TAG.log
train_bert() {
    step "$1: lora_worker, 12 epochs, evaluated and exported each epoch" mpi 3 --config tests/ps-bert.ini \
        --set model.path="$2" --set data.train="$TMPD/$1.st" --set data.val="$TMPD/$1-dev.st" \
        --set data.grad_accum=2 --set train.epochs=12 --set optim.lr=2e-2 --set lora.targets=all-linear \
        --set train.metric_for_best="$3" --set train.out_dir="$TMPD/$1-out" "${EPOCHS[@]}"
    cp "$TMPD/step.log" "$TMPD/$1.log"
}
# printed LOG EPOCH KEY: the value of "KEY v" on that epoch's evaluation line
printed() { grep "^epoch $2 (step" "$1" | sed -n "s/.* $3 \([0-9.]*\).*/\1/p"; }

# --- sentiment
head -31 $D/sst2-sample.tsv >"$TMPD/train.tsv"
cp $D/sst2-sample.tsv "$TMPD/dev.tsv"
step "sst2: lora prep (30 training rows; 40 to evaluate)" "$LORA" prep --task seq_cls --model "$TMPD/bert" \
    --max-length 32 --out "$TMPD/sst2.st" --val-file "$TMPD/dev.tsv" --val-out "$TMPD/sst2-dev.st" "$TMPD/train.tsv"
train_bert sst2 "$TMPD/bert" accuracy
loss_falls "sst2" "$TMPD/sst2.log"
for d in epoch-1 epoch-6 epoch-12 best; do
    [ -f "$TMPD/sst2-out/$d/adapter_model.safetensors" ] || fail "sst2: no export in $d"
done
tail -n +2 "$TMPD/dev.tsv" | cut -f1 >"$TMPD/dev.txt"
tail -n +2 "$TMPD/dev.tsv" | cut -f2 >"$TMPD/dev.gold"
step "sst2: lora predict --file on the evaluation sentences (epoch 12's adapter)" sh -c "'$LORA' predict --model \
    '$TMPD/bert' --adapter '$TMPD/sst2-out/epoch-12' --file '$TMPD/dev.txt' >'$TMPD/sst2-pred.jsonl'"
acc=$(printed "$TMPD/sst2.log" 12 accuracy) f1=$(printed "$TMPD/sst2.log" 12 macro-F1)
ref=$($PY - "$TMPD/sst2-pred.jsonl" "$TMPD/dev.gold" <<'EOF'
import json, sys
from sklearn.metrics import accuracy_score, f1_score
pred = [json.loads(l)["label_id"] for l in open(sys.argv[1])]
gold = [int(l) for l in open(sys.argv[2])]
assert len(pred) == len(gold), (len(pred), len(gold))
print("%.4f %.4f" % (accuracy_score(gold, pred), f1_score(gold, pred, average="macro")))
EOF
)
[ -n "$acc" ] && [ "$ref" = "$acc $f1" ] &&
    pass "sst2: scikit-learn on lora predict's labels: accuracy and macro-F1 $ref, as lora_worker printed" ||
    fail "sst2: scikit-learn says '$ref', lora_worker printed accuracy '$acc' macro-F1 '$f1'"

# --- NER
awk -v RS= -v ORS='\n\n' '!/-DOCSTART-/' $D/conll-sample.txt >"$TMPD/sents.txt"
n=$(awk -v RS= 'END { print NR }' "$TMPD/sents.txt")
awk -v RS= -v ORS='\n\n' -v n="$n" 'NR <= n - 8' "$TMPD/sents.txt" >"$TMPD/ner-train.txt"
cp "$TMPD/sents.txt" "$TMPD/ner-dev.txt"
step "ner: lora prep ($((n - 8)) training sentences; $n to evaluate)" "$LORA" prep --task token_cls --model "$TMPD/ner" \
    --max-length 48 --out "$TMPD/ner.st" --val-file "$TMPD/ner-dev.txt" --val-out "$TMPD/ner-dev.st" \
    "$TMPD/ner-train.txt"
train_bert ner "$TMPD/ner" f1
loss_falls "ner" "$TMPD/ner.log"
awk -v RS= '{ s = ""; for (i = 1; i <= NF; i += 2) s = s (i > 1 ? " " : "") $i; print s }' "$TMPD/ner-dev.txt" \
    >"$TMPD/ner-dev.words"
step "ner: lora predict --file on the evaluation sentences (epoch 12's adapter)" sh -c "'$LORA' predict --model \
    '$TMPD/ner' --adapter '$TMPD/ner-out/epoch-12' --file '$TMPD/ner-dev.words' >'$TMPD/ner-pred.jsonl'"
ef1=$(printed "$TMPD/ner.log" 12 F1) tacc=$(printed "$TMPD/ner.log" 12 "token accuracy")
ref=$($PY - "$TMPD/ner-pred.jsonl" "$TMPD/ner-dev.txt" <<'EOF'
import json, sys
from seqeval.metrics import f1_score
gold = [[l.split()[-1] for l in s.splitlines() if l.strip()] for s in open(sys.argv[2]).read().split("\n\n") if s.strip()]
pred = []
for line in open(sys.argv[1]):
    tags = {}
    for t in json.loads(line)["tokens"]:
        if t["word"] >= 0 and t["word"] not in tags:
            tags[t["word"]] = t["label"]
    pred.append([tags[w] for w in sorted(tags)])
assert [len(p) for p in pred] == [len(g) for g in gold], "word counts differ: %s vs %s" % (
    [len(p) for p in pred], [len(g) for g in gold])
right = sum(a == b for p, g in zip(pred, gold) for a, b in zip(p, g))
print("%.4f %.4f" % (f1_score(gold, pred), right / sum(len(g) for g in gold)))
EOF
)
[ -n "$ef1" ] && [ "$ref" = "$ef1 $tacc" ] &&
    pass "ner: seqeval on lora predict's tags: entity F1 and token accuracy $ref, as lora_worker printed" ||
    fail "ner: seqeval says '$ref', lora_worker printed F1 '$ef1' token accuracy '$tacc'"

# --- LM: the demo's pretrained GPT-2 on the text folder
step "lm: lora prep of the text folder (the demo model's tokenizer)" "$LORA" prep --task lm --lines \
    --model demo/tiny-gpt2-pydocs --out "$TMPD/text.tok" $D/text
step "lm: lora_worker, 6 epochs, evaluated each epoch" mpi 3 --config configs/demo.ini \
    --set data.train="$TMPD/text.tok" --set data.val="$TMPD/text.tok" --set data.val_windows=8 \
    --set data.seq_len=32 --set data.batch_size=4 --set train.epochs=6 --set train.threads=1 \
    --set optim.lr=1e-2 --set train.out_dir="$TMPD/lm-out" "${EPOCHS[@]}" --set train.save_epochs=false
cp "$TMPD/step.log" "$TMPD/lm.log"
loss_falls "lm" "$TMPD/lm.log"
gen_prompt_same "lm: the demo model + the trained adapter" demo/tiny-gpt2-pydocs "$TMPD/lm-out" "lighthouse (n):" 24
finish
