#!/bin/bash
# Checkpoints and resume of lora_worker:
#  - h5dump reads a checkpoint: its tree, and one dataset equal to the adapter the run wrote;
#  - kill -9 of a random rank at a random step after the first checkpoint, then
#    --resume auto: the adapter is byte for byte the one of an uninterrupted run (20 kills
#    that landed mid-run, 3 under LORA_QUICK=1; seeded by LORA_TEST_SEED, printed);
#  - a writer killed in the middle of a checkpoint: the previous one is intact and used;
#  - a truncated or corrupted newest checkpoint: the one before is used, with a warning;
#  - resume with another r, other targets, another base model: a clear error naming it;
#  - SIGTERM to the ranks (as SLURM sends it) and SIGUSR1 to mpirun: a checkpoint and a
#    clean exit; resuming finishes the run bitwise equal to the uninterrupted one;
#  - export of a checkpoint to peft's format and merge from a checkpoint.
set -u
. "$(dirname "$0")/lib.sh"
"$LORA" tokens --vocab 320 --count 30000 --seed 5 --out "$TMPD/tiny.tok" >/dev/null || exit 1
CFG=(--config tests/ps-tiny.ini --set data.train="$TMPD/tiny.tok" --set train.steps=400 --set train.log_every=1
    --set data.grad_accum=16 --set checkpoint.every_steps=20 --set checkpoint.keep=3)
NP=3

mpi $NP "${CFG[@]}" --set checkpoint.dir="$TMPD/straight" --set train.out_dir="$TMPD/straight-adapter" \
    >"$TMPD/straight.log" 2>&1 || { tail "$TMPD/straight.log"; exit 1; }
last="$TMPD/straight/step_00000400.h5"
[ -f "$last" ] && pass "uninterrupted run wrote checkpoints, the last $last" || fail "no final checkpoint"
n=$(ls "$TMPD/straight"/step_*.h5 | wc -l)
[ "$n" = 3 ] && pass "retention keeps the 3 newest checkpoints" || fail "retention: $n checkpoints kept, want 3"

# h5dump: the tree and one dataset's values
tree=$(h5dump -H "$last" 2>&1)
miss=""
for want in 'GROUP "adapter"' 'GROUP "base_model.model.transformer.h.0.attn.c_attn"' 'DATASET "lora_A"' \
    'DATASET "lora_B"' 'GROUP "exp_avg"' 'GROUP "exp_avg_sq"' 'GROUP "metrics"' 'DATASET "config"' 'GROUP "rng"' \
    'GROUP "data"' 'GROUP "schedule"' 'ATTRIBUTE "format_version"'; do
    grep -qF "$want" <<<"$tree" || miss="$miss $want"
done
[ -z "$miss" ] && pass "h5dump -H shows the checkpoint's tree" || fail "h5dump -H lacks:$miss"
key=base_model.model.transformer.h.1.mlp.c_proj
# h5dump prints "(i,j): v, v, ..." : drop the indices, keep the values
h5dump -d "/adapter/$key/lora_B" "$last" | sed -n '/DATA {/,/^   }/p' | sed 's/([0-9,]*)://' | tr ',' '\n' |
    grep -E '^ *-?[0-9]' | tr -d ' ' >"$TMPD/h5vals"
"$LORA" show "$TMPD/straight-adapter/adapter_model.safetensors" "$key.lora_B.weight" >"$TMPD/ours"
if [ "$(wc -l <"$TMPD/ours")" -gt 0 ] && paste "$TMPD/h5vals" "$TMPD/ours" |
    awk '{ d = $1 - $2; if (d < 0) d = -d; m = $2 < 0 ? -$2 : $2; if (d > 1e-5 * (m + 1e-3)) bad++ } END { exit bad > 0 || NR == 0 }' &&
    [ "$(wc -l <"$TMPD/h5vals")" = "$(wc -l <"$TMPD/ours")" ]; then
    pass "h5dump -d /adapter/$key/lora_B equals the trained adapter ($(wc -l <"$TMPD/ours") values)"
else
    fail "h5dump values differ from the adapter: $(paste "$TMPD/h5vals" "$TMPD/ours" | head -3)"
fi

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
wait_for() { # wait_for FILE PATTERN: up to 60 s
    for _ in $(seq 1 3000); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.02; done
    return 1
}

# kill -9 of a random rank at a random step, resume, compare byte for byte: 20 kills that landed
# mid-run (3 under LORA_QUICK=1, the sanitizer build); a run that finished before its kill is not
# counted, and another is drawn. Seeded: LORA_TEST_SEED repeats the same ranks and steps.
SEED=${LORA_TEST_SEED:-20261202}
RANDOM=$SEED
KILLS=${LORA_RESUME_KILLS:-$([ "${LORA_QUICK:-0}" = 1 ] && echo 3 || echo 20)}
echo "kill trials: seed $SEED (LORA_TEST_SEED=$SEED repeats them), $KILLS kills mid-run wanted"
landed=0
for trial in $(seq 1 $((KILLS + 10))); do
    [ $landed -ge $KILLS ] && break
    dir="$TMPD/kill$trial"
    victim_rank=$((RANDOM % NP))
    kill_at=$((30 + RANDOM % 340)) # a random step after the first checkpoint (step 20), before the last
    LORA_TEST_TAG="$dir" mpi_bg $NP "${CFG[@]}" --set checkpoint.dir="$dir" >"$dir.log" 2>&1
    # the victim's pid is looked up at step 1 (a scan of /proc takes a while), killed at kill_at
    pid=
    wait_for "$dir.log" "^step *1/" && pid=$(rank_pid "$dir" $victim_rank)
    if [ -z "$pid" ] || ! wait_for "$dir.log" "^step *$kill_at/"; then
        fail "kill trial $trial: no rank $victim_rank pid ('$pid') or step $kill_at never came: $(tail -2 "$dir.log")"
        kill -9 $job
        wait $job
        continue
    fi
    kill -9 "$pid"
    wait $job
    rc=$?
    at=$(grep -c "^step" "$dir.log")
    if [ $rc -eq 0 ]; then
        echo "     kill trial $trial: the run ended before the kill (exit $rc, step $at): not counted"
        rm -rf "$dir"
        continue
    fi
    landed=$((landed + 1))
    mpi $NP "${CFG[@]}" --set checkpoint.dir="$dir" --set train.out_dir="$dir-adapter" --resume auto \
        >"$dir-resume.log" 2>&1 || { fail "kill trial $trial: resume failed: $(tail -3 "$dir-resume.log")"; continue; }
    from=$(sed -n 's/^resume: .*: step \([0-9]*\) of.*/\1/p' "$dir-resume.log")
    if r=$("$LORA" compare "$TMPD/straight-adapter" "$dir-adapter"); then
        pass "kill $landed: kill -9 of rank $victim_rank at step $at, resumed from step $from: $r"
    else
        fail "kill $landed: kill -9 of rank $victim_rank at step $at, resumed from step $from: $r"
    fi
    rm -rf "$dir" "$dir-adapter"
done
[ $landed -ge $KILLS ] && pass "$landed kills landed mid-run (seed $SEED), each resumed to the uninterrupted adapter" ||
    fail "only $landed of $KILLS kills landed mid-run (seed $SEED)"

# every M seconds (no every_steps): checkpoints appear on the clock as well
dir="$TMPD/seconds"
mpi $NP "${CFG[@]}" --set checkpoint.every_steps=0 --set checkpoint.every_seconds=0.2 --set checkpoint.keep=0 \
    --set train.steps=1200 --set checkpoint.dir="$dir" >"$dir.log" 2>&1
n=$(ls "$dir"/step_*.h5 2>/dev/null | wc -l)
[ "$n" -ge 3 ] && pass "checkpoint.every_seconds = 0.2: $n checkpoints over the run (the last at step 1200)" ||
    fail "checkpoint.every_seconds = 0.2: $n checkpoints: $(tail -2 "$dir.log")"

# resuming with another learning rate (allowed, reported) and with another rank count (reported: not bitwise)
dir="$TMPD/changed"
mkdir -p "$dir"
cp "$TMPD/straight/step_00000360.h5" "$dir/"
mpi 4 "${CFG[@]}" --set optim.lr=1e-3 --set checkpoint.dir="$dir" --resume auto >"$dir.log" 2>&1
if grep -q "resume: config changed since the checkpoint: \[optim\] lr = 0.005 -> 0.001" "$dir.log" &&
    grep -q "was written by a run of 3 ranks, this one has 4: it continues from global sample 11520" "$dir.log" &&
    grep -q "step   400/400" "$dir.log"; then
    pass "resume with lr 1e-3 and 4 ranks: both reported, the run continued from global sample 11520 and finished"
else
    fail "resume with changes: $(grep resume "$dir.log" | head -3)"
fi

# a checkpoint writer killed half way: the previous checkpoint is used
dir="$TMPD/halfwrite"
mpi $NP "${CFG[@]}" --set train.steps=40 --set optim.schedule=constant --set checkpoint.dir="$dir" >/dev/null 2>&1 ||
    fail "half-write: first run failed"
LORA_TEST_CKPT_KILL=half mpi $NP "${CFG[@]}" --set train.steps=80 --set optim.schedule=constant \
    --set checkpoint.dir="$dir" --resume auto >"$TMPD/half.log" 2>&1
rc=$?
ls -a "$dir" >"$TMPD/half.ls"
if [ $rc -ne 0 ] && [ ! -f "$dir/step_00000060.h5" ] && grep -q "^\.step_00000060.h5.tmp" "$TMPD/half.ls"; then
    pass "writer killed in the middle of step 60's checkpoint: no step_00000060.h5, a temporary file left"
else
    fail "half-write: exit $rc, files: $(tr '\n' ' ' <"$TMPD/half.ls")"
fi
mpi $NP "${CFG[@]}" --set train.steps=80 --set optim.schedule=constant --set checkpoint.dir="$dir" \
    --set train.out_dir="$dir-adapter" --resume auto >"$TMPD/half2.log" 2>&1
mpi $NP "${CFG[@]}" --set train.steps=80 --set optim.schedule=constant --set checkpoint.dir="$TMPD/half-ref" \
    --set train.out_dir="$TMPD/half-ref-adapter" >/dev/null 2>&1
if grep -q "resume: .*step_00000040.h5: step 40" "$TMPD/half2.log" &&
    r=$("$LORA" compare "$TMPD/half-ref-adapter" "$dir-adapter"); then
    pass "after the killed write, resume used step 40 and finished equal to an uninterrupted run: $r"
else
    fail "after the killed write: $(grep resume "$TMPD/half2.log") $r"
fi

# a truncated newest checkpoint, then a corrupted one: the previous one is used with a warning
dir="$TMPD/trunc"
mkdir -p "$dir"
cp "$TMPD/straight"/step_*.h5 "$dir/"
newest=$(ls "$dir"/step_*.h5 | tail -1)
truncate -s $(($(stat -c %s "$newest") / 2)) "$newest"
mpi $NP "${CFG[@]}" --set checkpoint.dir="$dir" --set train.out_dir="$dir-adapter" --resume auto >"$TMPD/trunc.log" 2>&1
if grep -q "warning: skipping $newest" "$TMPD/trunc.log" && grep -q "resume: .*step_00000380.h5: step 380" "$TMPD/trunc.log" &&
    r=$("$LORA" compare "$TMPD/straight-adapter" "$dir-adapter"); then
    pass "truncated newest checkpoint skipped with a warning; resumed from step 380: $r"
else
    fail "truncated newest: $(grep -E "warning|resume" "$TMPD/trunc.log" | head -3)"
fi
dir="$TMPD/corrupt"
mkdir -p "$dir"
cp "$TMPD/straight"/step_*.h5 "$dir/"
newest=$(ls "$dir"/step_*.h5 | tail -1)
size=$(stat -c %s "$newest")
printf '\xde\xad\xbe\xef\xde\xad\xbe\xef' | dd of="$newest" bs=1 seek=$((size * 2 / 3)) conv=notrunc status=none
mpi $NP "${CFG[@]}" --set checkpoint.dir="$dir" --set train.out_dir="$dir-adapter" --resume auto >"$TMPD/corrupt.log" 2>&1
if grep -q "warning: skipping $newest" "$TMPD/corrupt.log" && grep -q "step 380" "$TMPD/corrupt.log"; then
    pass "corrupted newest checkpoint skipped with a warning: $(grep -m1 "warning: skipping" "$TMPD/corrupt.log" | cut -c1-160)"
else
    fail "corrupted newest: $(grep -E "warning|resume" "$TMPD/corrupt.log" | head -3)"
fi

# mismatches
expect_err() {
    local name=$1 want=$2
    shift 2
    timeout 60 mpirun --oversubscribe --bind-to none -np $NP "$WORKER" "${CFG[@]}" --set checkpoint.dir="$TMPD/straight" \
        --resume auto "$@" >"$TMPD/mm.log" 2>&1
    local rc=$?
    if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -qF -- "$want" "$TMPD/mm.log"; then
        pass "$name: $(grep -F -m1 -- "$want" "$TMPD/mm.log" | cut -c1-200)"
    else
        fail "$name: exit $rc, wanted '$want': $(tail -3 "$TMPD/mm.log")"
    fi
}
expect_err "resume with another r" "[lora] r = 8, but" --set lora.r=8
expect_err "resume with other targets" "[lora] targets = c_attn adapt 2 modules" --set lora.targets=c_attn
cp -r tests/fixtures/gpt2-tiny/base "$TMPD/other-model"
chmod -R u+w "$TMPD/other-model"
printf '\x11\x22\x33\x44' | dd of="$TMPD/other-model/model.safetensors" bs=1 seek=5000 conv=notrunc status=none
expect_err "resume with another base model" "is not the base model" --set model.path="$TMPD/other-model"
expect_err "resume from a file that is not a checkpoint" "not an HDF5 file" --resume "$TMPD/tiny.tok"

# SIGTERM to every rank (what SLURM does), then SIGUSR1 to mpirun (it forwards it)
for how in TERM-ranks USR1-mpirun; do
    dir="$TMPD/sig-$how"
    LORA_TEST_TAG="$dir" mpi_bg $NP "${CFG[@]}" --set checkpoint.dir="$dir" >"$dir.log" 2>&1
    wait_for "$dir.log" "^checkpoint:" || fail "$how: no checkpoint appeared"
    if [ "$how" = TERM-ranks ]; then
        for r in $(seq 0 $((NP - 1))); do pid=$(rank_pid "$dir" $r); [ -n "$pid" ] && kill -TERM "$pid"; done
    else
        kill -USR1 $job
    fi
    wait $job
    rc=$?
    stop=$(sed -n 's/^stopped after step \([0-9]*\) of.*/\1/p' "$dir.log")
    if [ $rc -eq 0 ] && [ -n "$stop" ] && [ -f "$dir/step_$(printf %08d "$stop").h5" ]; then
        mpi $NP "${CFG[@]}" --set checkpoint.dir="$dir" --set train.out_dir="$dir-adapter" --resume auto \
            >"$dir-resume.log" 2>&1
        if r=$("$LORA" compare "$TMPD/straight-adapter" "$dir-adapter"); then
            pass "SIG$how: stopped cleanly after step $stop with a checkpoint; resumed: $r"
        else
            fail "SIG$how: resumed run differs: $r"
        fi
    elif [ $rc -eq 0 ] && [ -z "$stop" ]; then
        pass "SIG$how: the run ended before the signal arrived"
    else
        fail "SIG$how: exit $rc, stop '$stop': $(tail -4 "$dir.log")"
    fi
done

# SSP: a signal stops every worker at its next pull; the shards checkpoint the iteration all of them
# completed; resuming finishes the run (SSP is not bitwise, so only completion is checked)
dir="$TMPD/ssp-sig"
mpi_bg 4 "${CFG[@]}" --set system.staleness=1 --set train.steps=20000 --set train.log_every=100 \
    --set checkpoint.dir="$dir" >"$dir.log" 2>&1
if wait_for "$dir.log" "^step *300/"; then
    kill -USR1 $job
    wait $job
    rc=$?
    stop=$(sed -n 's/^stopped after step \([0-9]*\) of.*/\1/p' "$dir.log")
    if [ $rc -eq 0 ] && [ -n "$stop" ] && [ -f "$dir/step_$(printf %08d "$stop").h5" ] &&
        mpi 4 "${CFG[@]}" --set system.staleness=1 --set train.steps=$((stop + 50)) --set checkpoint.dir="$dir" \
            --resume auto >"$dir-resume.log" 2>&1 && grep -q "resume: .*step $stop of" "$dir-resume.log" &&
        [ -f "$dir/step_$(printf %08d $((stop + 50))).h5" ]; then
        pass "SSP: SIGUSR1 stopped the run after step $stop with a checkpoint; the resumed run finished"
    else
        fail "SSP signal: exit $rc, stop '$stop': $(tail -3 "$dir.log") / $(tail -3 "$dir-resume.log" 2>/dev/null)"
    fi
else
    fail "SSP signal: the run did not reach step 300"
    kill -9 $job
fi

# export and merge from a checkpoint
"$LORA" export --checkpoint "$last" --out "$TMPD/exported" >/dev/null &&
    r=$("$LORA" compare "$TMPD/straight-adapter" "$TMPD/exported") && pass "export to peft: $r" || fail "export: $r"
if "$LORA" merge --checkpoint "$last" --out "$TMPD/merged-ck" >/dev/null &&
    "$LORA" merge --model tests/fixtures/gpt2-tiny/base --adapter "$TMPD/straight-adapter" --out "$TMPD/merged-ad" >/dev/null &&
    cmp -s "$TMPD/merged-ck/model.safetensors" "$TMPD/merged-ad/model.safetensors"; then
    pass "merge from the checkpoint is byte for byte the merge from the exported adapter"
else
    fail "merge from a checkpoint differs or failed"
fi
finish
