#!/bin/bash
# The parameter server with BERT (tests/ps-bert.ini: the bert-tiny-cls fixture,
# LoRA on query and value, the classifier trained whole), sequence and token
# classification on synthetic labeled datasets:
#  - BSP at N = 1, 2, 4 ranks (S = 1; S = 2 at N = 4) gives the single-process
#    trainer's adapter, classifier included, to float rounding; two runs at N = 4
#    are bitwise equal; token classification at N = 4 likewise;
#  - checkpoints (format version 2: the classifier's whole tensors in all three
#    trees), kill -9 of a random rank after the first checkpoint, --resume auto:
#    the adapter is byte for byte the uninterrupted run's;
#  - a trained run's validation accuracy is above chance (the task is learnable).
set -u
. "$(dirname "$0")/lib.sh"
"$LORA" dataset --task SEQ_CLS --vocab 320 --labels 2 --count 400 --seq 12 --seed 5 --out "$TMPD/cls.st" >/dev/null &&
    "$LORA" dataset --task SEQ_CLS --vocab 320 --labels 2 --count 64 --seq 12 --seed 6 --out "$TMPD/cls-val.st" >/dev/null ||
    { fail "lora dataset"; finish; }
CFG=(--config tests/ps-bert.ini --set data.train="$TMPD/cls.st")
"$LORA" train "${CFG[@]}" --set train.out_dir="$TMPD/ref" >"$TMPD/ref.log" 2>&1 || { cat "$TMPD/ref.log"; exit 1; }
grep -q "base_model.model.classifier.weight" "$TMPD/ref/adapter_model.safetensors" &&
    grep -q '"classifier"' "$TMPD/ref/adapter_config.json" &&
    pass "the adapter holds the classifier as peft's modules_to_save" || fail "no classifier in the adapter"
for ns in "1 1" "2 1" "4 1" "4 2"; do
    set -- $ns
    n=$1 s=$2 out="$TMPD/n$1s$2"
    if ! mpi $n "${CFG[@]}" --set system.servers=$s --set train.out_dir="$out" >"$out.log" 2>&1; then
        fail "bert N=$n S=$s: lora_worker failed: $(tail -3 "$out.log")"
        continue
    fi
    if r=$("$LORA" compare "$TMPD/ref" "$out" --tol 1e-5); then
        pass "bert N=$n S=$s vs single process: $r"
    else
        fail "bert N=$n S=$s vs single process: $r"
    fi
done
mpi 4 "${CFG[@]}" --set train.out_dir="$TMPD/again" >"$TMPD/again.log" 2>&1 || fail "bert N=4 rerun failed"
if r=$("$LORA" compare "$TMPD/n4s1" "$TMPD/again"); then pass "bert N=4 twice: $r"; else fail "bert N=4 twice: $r"; fi

# token classification: the same fixture's weights as a BertForTokenClassification (its pooler ignored)
mkdir -p "$TMPD/ner"
cp tests/fixtures/bert-tiny-cls/base/model.safetensors "$TMPD/ner/"
sed 's/BertForSequenceClassification/BertForTokenClassification/' tests/fixtures/bert-tiny-cls/base/config.json \
    >"$TMPD/ner/config.json"
"$LORA" dataset --task TOKEN_CLS --vocab 320 --labels 2 --count 200 --seq 12 --seed 7 --out "$TMPD/ner.st" >/dev/null
NCFG=(--config tests/ps-bert.ini --set model.path="$TMPD/ner" --set data.train="$TMPD/ner.st")
if "$LORA" train "${NCFG[@]}" --set train.out_dir="$TMPD/ner-ref" >"$TMPD/ner-ref.log" 2>&1 &&
    mpi 4 "${NCFG[@]}" --set system.servers=2 --set train.out_dir="$TMPD/ner-n4" >"$TMPD/ner-n4.log" 2>&1 &&
    r=$("$LORA" compare "$TMPD/ner-ref" "$TMPD/ner-n4" --tol 1e-5); then
    pass "bert token classification N=4 S=2 vs single process: $r"
else
    fail "bert token classification: ${r:-$(tail -3 "$TMPD/ner-ref.log" "$TMPD/ner-n4.log")}"
fi

# kill -9 and resume (the classifier's whole tensors through checkpoints)
RCFG=("${CFG[@]}" --set train.steps=150 --set data.grad_accum=8 --set checkpoint.every_steps=10 --set checkpoint.keep=2)
NP=3
mpi $NP "${RCFG[@]}" --set checkpoint.dir="$TMPD/straight" --set train.out_dir="$TMPD/straight-adapter" \
    >"$TMPD/straight.log" 2>&1 || { fail "bert: uninterrupted run failed: $(tail -3 "$TMPD/straight.log")"; finish; }
v=$(h5dump -a /format_version "$TMPD/straight/step_00000150.h5" 2>/dev/null | grep -A2 DATA | grep -o '(0): [0-9]*')
[ "$v" = "(0): 2" ] && h5dump -H "$TMPD/straight/step_00000150.h5" | grep -q 'GROUP "base_model.model.classifier"' &&
    pass "the checkpoint is format version 2 with the classifier's group" || fail "checkpoint version '$v' or no classifier group"
rank_pid() { # rank_pid TAG RANK: the pid of that rank of the job started with LORA_TEST_TAG=TAG
    for d in /proc/[0-9]*; do
        local env_of
        env_of=$({ tr '\0' '\n' <"$d/environ"; } 2>/dev/null)
        if grep -qx "LORA_TEST_TAG=$1" <<<"$env_of" && grep -qx "OMPI_COMM_WORLD_RANK=$2" <<<"$env_of"; then
            echo "${d#/proc/}"
            return
        fi
    done
}
wait_for() { # wait_for FILE PATTERN: up to 120 s
    for _ in $(seq 1 6000); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.02; done
    return 1
}
seed=${LORA_KILL_SEED:-$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')}
RANDOM=$seed
echo "kill points from seed $seed (LORA_KILL_SEED=$seed reproduces them)"
dir="$TMPD/kill"
LORA_TEST_TAG="$dir" mpi_bg $NP "${RCFG[@]}" --set checkpoint.dir="$dir" >"$dir.log" 2>&1
victim_rank=$((RANDOM % NP))
kill_at=$((15 + RANDOM % 120))
if ! wait_for "$dir.log" "^step *$kill_at/"; then
    fail "bert kill: step $kill_at never came"
    kill -9 $job
else
    pid=$(rank_pid "$dir" $victim_rank)
    [ -n "$pid" ] && kill -9 "$pid"
    wait $job
    if mpi $NP "${RCFG[@]}" --set checkpoint.dir="$dir" --resume auto --set train.out_dir="$dir-adapter" \
        >"$dir-resume.log" 2>&1 && r=$("$LORA" compare "$TMPD/straight-adapter" "$dir-adapter"); then
        pass "bert kill -9 of rank $victim_rank near step $kill_at, resumed from $(grep -o 'step_[0-9]*.h5' "$dir-resume.log" | head -1): $r"
    else
        fail "bert resume after kill -9: ${r:-$(tail -3 "$dir-resume.log")}"
    fi
fi
# the shipped configs run as written (on the synthetic data and the fixture models)
"$LORA" train --config configs/bert-sst2.ini --set data.train="$TMPD/cls.st" --set data.val="$TMPD/cls-val.st" \
    --set train.epochs=0 --set train.steps=2 --set train.out_dir="$TMPD/sst2" --set train.metrics= \
    --set train.metric_for_best= >"$TMPD/sst2.log" 2>&1 && pass "configs/bert-sst2.ini trains" ||
    fail "configs/bert-sst2.ini: $(tail -2 "$TMPD/sst2.log")"
"$LORA" train --config configs/bert-ner.ini --set model.path="$TMPD/ner" --set data.train="$TMPD/ner.st" \
    --set data.val="$TMPD/ner.st" --set train.epochs=0 --set train.steps=2 --set train.out_dir="$TMPD/nerc" \
    --set train.metrics= --set train.metric_for_best= >"$TMPD/nerc.log" 2>&1 && pass "configs/bert-ner.ini trains" ||
    fail "configs/bert-ner.ini: $(tail -2 "$TMPD/nerc.log")"
# learnable: the validation accuracy after training
"$LORA" train "${CFG[@]}" --set data.val="$TMPD/cls-val.st" --set train.steps=100 --set data.grad_accum=1 \
    --set data.batch_size=8 --set optim.lr=2e-2 --set optim.schedule=constant --set optim.warmup_steps=0 \
    --set train.epochs=2 --set train.eval_epochs=true >"$TMPD/acc.log" 2>&1
acc=$(grep "^epoch 2" "$TMPD/acc.log" | sed -n 's/.*accuracy \([0-9.]*\).*/\1/p')
if [ -n "$acc" ] && awk -v a="$acc" 'BEGIN { exit !(a >= 0.75) }'; then
    pass "BERT learns the synthetic task: validation accuracy $acc after 2 epochs"
else
    fail "BERT validation accuracy '$acc' after 2 epochs (wanted >= 0.75): $(tail -3 "$TMPD/acc.log")"
fi
finish
