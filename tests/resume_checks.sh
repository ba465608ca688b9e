#!/bin/bash
# What --resume refuses because the checkpoint's counters do not fit this run:
# another global batch (the data order would not continue) and a file renamed
# to another step. The reader's own checks of the counters against each other
# (a negative or hand-edited step, AdamW steps, schedule position, data
# cursor): tests/test_checkpoint.c.
set -u
. "$(dirname "$0")/lib.sh"
"$LORA" tokens --vocab 320 --count 5000 --seed 5 --out "$TMPD/tiny.tok" >/dev/null || exit 1
CFG=(--config tests/ps-tiny.ini --set data.train="$TMPD/tiny.tok" --set checkpoint.every_steps=2
    --set checkpoint.dir="$TMPD/ck")
timeout 120 mpirun --oversubscribe --bind-to none -np 3 "$WORKER" "${CFG[@]}" --set train.steps=4 >"$TMPD/first.log" 2>&1 || { fail "first run: $(tail -3 "$TMPD/first.log")"; finish; }
[ -f "$TMPD/ck/step_00000004.h5" ] || { fail "no step 4 checkpoint: $(ls "$TMPD/ck")"; finish; }
expect() { # name, expected fragment, args for lora_worker...
    local name=$1 want=$2
    shift 2
    timeout 120 mpirun --oversubscribe --bind-to none -np 3 "$WORKER" "$@" >"$TMPD/out" 2>"$TMPD/err"
    local rc=$?
    if [ $rc -ge 1 ] && [ $rc -le 9 ] && grep -qF -- "$want" "$TMPD/err"; then
        pass "$name: $(grep -F -m1 -- "$want" "$TMPD/err" | head -c 300)"
    else
        fail "$name: exit $rc, wanted '$want', got: $(tail -c 400 "$TMPD/err")"
    fi
}
expect "resume with another global batch" "[data] batch_size x grad_accum make 16 sequences per step, but" \
    "${CFG[@]}" --set train.steps=8 --set data.grad_accum=8 --resume auto
cp "$TMPD/ck/step_00000004.h5" "$TMPD/step_00000006.h5"
expect "resume from a file renamed to another step" "is named after step 6 but holds step 4" \
    "${CFG[@]}" --set train.steps=8 --resume "$TMPD/step_00000006.h5"
# the same batch resumes (the checks do not refuse a good file)
if timeout 120 mpirun --oversubscribe --bind-to none -np 3 "$WORKER" "${CFG[@]}" --set train.steps=6 --resume auto >"$TMPD/ok.log" 2>&1 &&
    grep -q "resume: .*step_00000004.h5: step 4 of 6" "$TMPD/ok.log"; then
    pass "the same settings resume from step 4"
else
    fail "the same settings did not resume: $(grep -m3 'resume\|rror' "$TMPD/ok.log")"
fi
finish
