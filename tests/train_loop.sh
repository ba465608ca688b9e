#!/bin/bash
# The training loop's epochs: [train] epochs gives the steps, evaluation and an
# adapter export at the end of every epoch, the best adapter by a metric kept;
# the single process and lora_worker (BSP, 2 workers) print the same epoch
# metrics and write the same adapters; the metrics file gets one line per
# step and per evaluation; checkpoints carry the evaluations and a resumed run
# its best so far; a run whose every step is skipped exits non-zero.
set -u
. "$(dirname "$0")/lib.sh"
"$LORA" tokens --vocab 320 --count 3000 --seed 5 --out "$TMPD/tiny.tok" >/dev/null || exit 1
CFG=(--config tests/ps-tiny.ini --set data.train="$TMPD/tiny.tok" --set data.val="$TMPD/tiny.tok"
    --set data.val_windows=4 --set train.epochs=2 --set train.eval_epochs=true --set train.save_epochs=true
    --set train.metric_for_best=perplexity --set train.log_every=100)
"$LORA" train "${CFG[@]}" --set train.out_dir="$TMPD/one" --set train.metrics="$TMPD/one.jsonl" >"$TMPD/one.log" 2>&1 ||
    { cat "$TMPD/one.log"; fail "lora train with epochs failed"; finish; }
grep -q "^2 epochs of 187 samples, 8 per step: 47 steps" "$TMPD/one.log" &&
    pass "2 epochs of 187 windows at 8 per step: 47 steps" || fail "epochs -> steps: $(grep epochs "$TMPD/one.log")"
n=$(grep -c "^epoch [12] (step \(24\|47\)) | val loss [0-9.]* | perplexity" "$TMPD/one.log")
[ "$n" = 2 ] && pass "an evaluation at the end of each epoch (steps 24 and 47)" || fail "epoch evaluations: $n"
for d in epoch-1 epoch-2 best; do
    [ -f "$TMPD/one/$d/adapter_model.safetensors" ] && pass "out_dir/$d written" || fail "out_dir/$d missing"
done
# the best by perplexity is the epoch with the lower perplexity, whose export equals epoch-K's
best=$(sed -n 's/^epoch \([12]\) (step [0-9]*) | val loss [0-9.]* | perplexity \([0-9.]*\)$/\2 \1/p' "$TMPD/one.log" |
    sort -g | head -1 | cut -d' ' -f2)
if [ -n "$best" ] && r=$("$LORA" compare "$TMPD/one/best" "$TMPD/one/epoch-$best"); then
    pass "best (lowest perplexity) is epoch $best: $r"
else
    fail "best adapter is not epoch '$best''s: ${r:-}"
fi
steps=$(grep -c '"step"' "$TMPD/one.jsonl"); evals=$(grep -c '"eval": true' "$TMPD/one.jsonl")
[ "$steps" = 49 ] && [ "$evals" = 2 ] && pass "metrics file: 47 step lines and 2 evaluation lines" ||
    fail "metrics file: $steps lines with a step, $evals evaluations"
# the loss curve from the metrics file, drawn at the end of the run ([train] plot) and by lora plot
"$LORA" train "${CFG[@]}" --set train.metrics="$TMPD/p.jsonl" --set train.plot="$TMPD/curve.png" >"$TMPD/p.log" 2>&1 &&
    [ "$(head -c 8 "$TMPD/curve.png" | od -An -tx1 | tr -d ' ')" = 89504e470d0a1a0a ] &&
    pass "[train] plot drew a PNG ($(stat -c %s "$TMPD/curve.png") bytes)" || fail "[train] plot: $(tail -2 "$TMPD/p.log")"
"$LORA" plot "$TMPD/one.jsonl" --out "$TMPD/c2.png" >/dev/null && [ -s "$TMPD/c2.png" ] && pass "lora plot" || fail "lora plot"
echo "not json" >"$TMPD/bad.jsonl"
"$LORA" plot "$TMPD/bad.jsonl" --out "$TMPD/c3.png" 2>"$TMPD/err" && fail "lora plot took a line that is not JSON" ||
    { grep -q "bad.jsonl:1: not a JSON object" "$TMPD/err" && pass "lora plot names a bad line" || fail "lora plot: $(cat "$TMPD/err")"; }
mpi 3 "${CFG[@]}" --set train.out_dir="$TMPD/ps" --set train.metrics="$TMPD/ps.jsonl" >"$TMPD/ps.log" 2>&1 ||
    { tail "$TMPD/ps.log"; fail "lora_worker with epochs failed"; }
[ "$(grep -c '"eval": true' "$TMPD/ps.jsonl")" = 2 ] && pass "lora_worker: the two evaluations (by both workers, counts added) in rank 0's metrics file" ||
    fail "lora_worker's metrics file: $(grep -c eval "$TMPD/ps.jsonl") evaluation lines"
a=$(grep "^epoch [0-9]* (step" "$TMPD/one.log" | sed 's/ ([^(]*evaluated.*//'); b=$(grep "^epoch [0-9]* (step" "$TMPD/ps.log" | sed 's/ ([^(]*evaluated.*//')
[ -n "$a" ] && [ "$a" = "$b" ] && pass "lora_worker (BSP) prints the single process's epoch metrics" ||
    fail "epoch metrics differ: '$a' vs '$b'"
for d in epoch-1 epoch-2 best; do
    r=$("$LORA" compare "$TMPD/one/$d" "$TMPD/ps/$d" --tol 1e-5) && pass "lora_worker's $d: $r" || fail "lora_worker's $d: $r"
done
# the evaluations travel in the checkpoints (/metrics/eval): h5dump shows them, and a run resumed after
# epoch 1 knows its best so far, so it keeps the same best adapter as the uninterrupted run
mpi 3 "${CFG[@]}" --set train.out_dir="$TMPD/ck" --set checkpoint.dir="$TMPD/ck-ckpt" --set checkpoint.every_steps=30 \
    --set checkpoint.keep=0 >"$TMPD/ck.log" 2>&1 || { tail "$TMPD/ck.log"; fail "lora_worker with checkpoints failed"; }
want=$(sed -n 's/^epoch [12] (step [0-9]*) | val loss [0-9.]* | perplexity \([0-9.]*\).*/\1/p' "$TMPD/ck.log" | tr '\n' ' ')
got=$(h5dump -d /metrics/eval/perplexity "$TMPD/ck-ckpt/step_00000047.h5" 2>&1 | sed -n '/DATA {/,/}/p' |
    sed 's/([0-9]*)://' | tr ',' '\n' | grep -E '^ *[0-9]' | xargs printf '%.2f ')
[ -n "$got" ] && [ "$got" = "$want" ] && pass "h5dump -d /metrics/eval/perplexity: $got(as printed)" ||
    fail "/metrics/eval/perplexity: '$got', printed '$want'"
mkdir -p "$TMPD/ck2-ckpt"
cp "$TMPD/ck-ckpt/step_00000030.h5" "$TMPD/ck2-ckpt/"
mpi 3 "${CFG[@]}" --set train.out_dir="$TMPD/ck2" --set checkpoint.dir="$TMPD/ck2-ckpt" --set checkpoint.every_steps=30 \
    --resume auto >"$TMPD/ck2.log" 2>&1 || { tail "$TMPD/ck2.log"; fail "resume after epoch 1 failed"; }
p1=$(sed -n 's/^epoch 1 (step 24) | val loss [0-9.]* | perplexity \([0-9.]*\).*/\1/p' "$TMPD/ck.log")
r=
if grep -q "^resume: 1 evaluation so far; the best perplexity so far ${p1}[0-9]* (epoch 1)" "$TMPD/ck2.log" &&
    r=$("$LORA" compare "$TMPD/ck/best" "$TMPD/ck2/best"); then
    pass "resumed at step 30: epoch 1's evaluation and best ($p1) restored; the same best adapter: $r"
else
    fail "resume with evaluations: $(grep -E "^resume|^best" "$TMPD/ck2.log" | tr '\n' ' ') ${r:-}"
fi
if LORA_TEST_NAN=0:0 "$LORA" train --config tests/ps-tiny.ini --set data.train="$TMPD/tiny.tok" --set train.steps=1 \
    >"$TMPD/skip.log" 2>&1; then
    fail "a run whose every step was skipped exited 0"
else
    grep -q "every step of the run was skipped" "$TMPD/skip.log" && pass "a run whose every step was skipped exits non-zero" ||
        fail "all-skipped run: $(tail -2 "$TMPD/skip.log")"
fi
"$LORA" train "${CFG[@]}" --set train.metric_for_best=accuracy >"$TMPD/bad.log" 2>&1 &&
    fail "metric_for_best = accuracy for a causal LM was accepted" ||
    { grep -q "not a metric of a CAUSAL_LM model (loss, perplexity)" "$TMPD/bad.log" && pass "a metric the task has not is refused" ||
        fail "bad metric: $(cat "$TMPD/bad.log")"; }
finish
