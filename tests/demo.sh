#!/bin/bash
# `make demo`'s script, scripts/demo.sh, end to end on a short run (4 steps of 16 x 64 tokens, 4
# validation windows) in a temporary RUN_DIR, with Open MPI's root and oversubscription settings removed
# from the environment (the script must set them itself):
#  - it prints peft's trainable-parameter line, the ranks and their roles, the validation loss before
#    and after, bytes per step and the ratio to full fine-tuning, the newest checkpoint with its h5dump
#    command, the adapter's path and a resume command;
#  - h5dump -H reads the checkpoint it names, which is the newest one; the peft adapter is there;
#  - the printed resume command, run as printed, continues from that checkpoint to the larger step count;
#  - run again without --resume it starts fresh and removes the earlier run's checkpoints;
#  - without mpirun it says so and fails.
set -u
. "$(dirname "$0")/lib.sh"
unset OMPI_ALLOW_RUN_AS_ROOT OMPI_ALLOW_RUN_AS_ROOT_CONFIRM OMPI_MCA_mpi_yield_when_idle OMPI_MCA_rmaps_base_oversubscribe
export BUILD=$B RUN_DIR=$TMPD/demo
SHORT=(--set train.steps=4 --set data.seq_len=64 --set checkpoint.every_steps=2 --set train.log_every=1
    --set data.val_windows=4)
W=$(nproc)

has() { # has FILE LABEL REGEX: a line of FILE matches the extended regex
    grep -qE "$3" "$1" && pass "$2" || fail "$2: no line matching '$3' in $1"
}

scripts/demo.sh "${SHORT[@]}" >"$TMPD/log" 2>&1 || fail "scripts/demo.sh exited with status $?"
cat "$TMPD/log"
ck=$RUN_DIR/checkpoints
has "$TMPD/log" "peft's trainable-parameter line" '^trainable params: 90,112 \|\| all params: 4,363,776 \|\| trainable%: 2\.0650$'
has "$TMPD/log" "ranks: 1 server and $W workers (nproc)" "^ranks: $((W + 1)) \(1 server shard, $W workers?\)"
has "$TMPD/log" "roles of the ranks" '^roles: rank 0: server shard .*coordinates.*: workers? '
has "$TMPD/log" "BSP" '^BSP: global batch 16 sequences of 64 tokens per step, 4 steps'
has "$TMPD/log" "validation loss before" '^val loss before: [0-9]+\.[0-9]{4}$'
has "$TMPD/log" "validation loss after" '^val loss after: [0-9]+\.[0-9]{4} \(before [0-9]+\.[0-9]{4}\)$'
has "$TMPD/log" "bytes per step and the ratio to full fine-tuning" \
    '^communication: [0-9.]+ MB per step .* would move [0-9.]+ MB per step: [0-9.]+x more$'
has "$TMPD/log" "a checkpoint every 2 steps" "^checkpoint: $ck/step_00000002\.h5 "
has "$TMPD/log" "the adapter written" "^adapter \(peft format\) written to $RUN_DIR/adapter$"
named=$(sed -n 's/^demo: newest checkpoint: \([^ ]*\) .*/\1/p' "$TMPD/log")
[ "$named" = "$ck/step_00000004.h5" ] && pass "the newest checkpoint named: $named" ||
    fail "newest checkpoint named '$named', want $ck/step_00000004.h5"
has "$TMPD/log" "the h5dump command" "^demo: what it holds: h5dump -H $named$"
if [ -n "$named" ] && h5dump -H "$named" >"$TMPD/h5" 2>&1 && grep -qF 'GROUP "adapter"' "$TMPD/h5" &&
    grep -qF 'GROUP "exp_avg"' "$TMPD/h5"; then
    pass "h5dump -H $named shows the adapter and AdamW's state"
else
    fail "h5dump -H '$named' failed or lacks the adapter: $(head -3 "$TMPD/h5")"
fi
[ -s "$RUN_DIR/adapter/adapter_model.safetensors" ] && [ -s "$RUN_DIR/adapter/adapter_config.json" ] &&
    grep -q "^demo: adapter in peft's format: $RUN_DIR/adapter " "$TMPD/log" &&
    pass "the peft adapter is in $RUN_DIR/adapter, as printed" || fail "no peft adapter in $RUN_DIR/adapter, or not printed"

# the resume hint, run as printed
hint=$(sed -n 's/^demo: resume or extend the run: //p' "$TMPD/log")
case "$hint" in
*"scripts/demo.sh "*"--resume auto --set train.steps=8") pass "resume hint: $hint" ;;
*) fail "resume hint '$hint' is not 'scripts/demo.sh ... --resume auto --set train.steps=8'" ;;
esac
if [ -n "$hint" ]; then
    eval "$hint" >"$TMPD/resume.log" 2>&1 || fail "the resume command exited with status $?"
    cat "$TMPD/resume.log"
    has "$TMPD/resume.log" "the resume command resumed from $named" "^resume: $named: step 4 of 8 "
    has "$TMPD/resume.log" "and trained steps 5 to 8" '^step +8/8 \|'
    grep -q '^step +[1-4]/8 ' "$TMPD/resume.log" && fail "the resumed run trained steps 1 to 4 again" ||
        pass "the resumed run did not train steps 1 to 4 again"
    has "$TMPD/resume.log" "and names the new newest checkpoint" "^demo: newest checkpoint: $ck/step_00000008\.h5 "
fi

# a re-run without --resume: fresh, and says that the old checkpoints go
scripts/demo.sh "${SHORT[@]}" >"$TMPD/again.log" 2>&1 || fail "scripts/demo.sh (again) exited with status $?"
has "$TMPD/again.log" "a re-run says it starts fresh" "^demo: a fresh run: removing the [0-9]+ checkpoint"
grep -q '^resume:' "$TMPD/again.log" && fail "the re-run resumed" || pass "the re-run did not resume"
left=$(cd "$ck" && echo step_*.h5)
[ "$left" = "step_00000002.h5 step_00000004.h5" ] && pass "the re-run replaced the checkpoints: $left" ||
    fail "after the re-run $ck holds: $left (want step_00000002.h5 step_00000004.h5)"

MPIRUN=$TMPD/no-such-mpirun scripts/demo.sh >"$TMPD/nompi.log" 2>&1 && fail "ran without mpirun" ||
    has "$TMPD/nompi.log" "without mpirun it says so" 'no-such-mpirun not found: .*openmpi-bin'
finish
