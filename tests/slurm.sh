#!/bin/bash
# cluster/lora.sbatch on a real Slurm: a single-node Slurm 22.05 from Debian's
# packages brought up for the test (cluster/slurm-local/up.sh: munged, slurmctld
# and slurmd as root, everything under a temporary directory, stopped by their
# pids at the end whatever happens), then jobs of 3 ranks on the gpt2-tiny model:
#  a. completion with each launcher (srun --mpi=pmix, mpirun): the job ends
#     COMPLETED with exit 0, the run directory holds the final checkpoint
#     (h5dump: step = the configured steps), and the adapter is bitwise the one
#     of an uninterrupted mpirun outside Slurm at the same rank count;
#  b. the time-limit warning, sent as Slurm sends it (SIGUSR1 to the batch shell
#     only: scancel --signal=USR1 --batch, which is what --signal=B:USR1@120
#     does), with each launcher: the run checkpoints and stops, the job requeues
#     itself, starts again, resumes and ends bitwise equal to the uninterrupted run;
#  c. scontrol requeue from outside (an admin, preemption), with each launcher:
#     the job comes back, resumes from the newest checkpoint, ends bitwise equal;
#  d. a run that fails: the job ends FAILED with the run's exit status, not requeued;
#  e. only with SLURM_TEST_TIMELIMIT=1 (3 more minutes): a real time limit, --time=1
#     with --signal=B:USR1@55 (Slurm sends it on its own 30-s tick, 5 to 35 s into
#     each start): the job stops, requeues itself until done, and ends bitwise
#     equal to an uninterrupted run.
# Needs root (the daemons) and apt (the packages, installed if missing). About 70 s.
# usage: tests/slurm.sh [BUILD_DIR]
set -u
. "$(dirname "$0")/lib.sh"
if [ "$(id -u)" != 0 ]; then
    echo "FAIL tests/slurm.sh needs root: it runs munged, slurmctld and slurmd (and apt-get for missing packages)"
    exit 1
fi

SD=$(mktemp -d /tmp/lora-slurm-XXXXXX) # the Slurm instance (munged wants its socket's directories world-traversable)
cleanup_all() {
    cluster/slurm-local/down.sh "$SD" 2>/dev/null
    rm -rf "$SD"
    cleanup_tmp
}
trap cleanup_all EXIT
trap 'exit 130' INT TERM HUP

# A requeued job is held for cred_expire + 1 s (Slurm's default: 121 s): 5 s here
if ! up=$(SLURM_LOCAL_CRED_EXPIRE=5 cluster/slurm-local/up.sh "$SD" 2>"$TMPD/up.err"); then
    cat "$TMPD/up.err"
    fail "a local Slurm did not come up"
    finish
fi
eval "$up"
pass "local Slurm up in $SD: $(sinfo -h -o '%P %D node(s) %c CPUs %t' | head -1) ($(sinfo -V))"

"$LORA" tokens --vocab 320 --count 30000 --seed 5 --out "$TMPD/tiny.tok" >/dev/null || exit 1
STEPS=1200
NP=3
ARGS=(--set data.train="$TMPD/tiny.tok" --set train.steps="$STEPS" --set data.grad_accum=16 --set train.log_every=100
    --set checkpoint.every_steps=100 --set checkpoint.keep=3)

# the uninterrupted run, outside Slurm
mpi $NP --config tests/ps-tiny.ini "${ARGS[@]}" --set checkpoint.dir="$TMPD/ref" --set train.out_dir="$TMPD/ref-adapter" \
    >"$TMPD/ref.log" 2>&1 || { tail "$TMPD/ref.log"; exit 1; }

# submit NAME LAUNCHER [lora_worker args...]: submits cluster/lora.sbatch as a user
# would (none of lib.sh's Open MPI settings: the script must find its own), with
# the sbatch options in SBOPTS; prints the job id
SBOPTS=(--time=10)
submit() {
    local name=$1 launcher=$2
    shift 2
    env -u OMPI_ALLOW_RUN_AS_ROOT -u OMPI_ALLOW_RUN_AS_ROOT_CONFIRM -u OMPI_MCA_mpi_yield_when_idle \
        -u OMPI_MCA_rmaps_base_oversubscribe \
        CONFIG=tests/ps-tiny.ini RUN_DIR="$TMPD/$name" LAUNCHER="$launcher" LORA_WORKER="$WORKER" MPIRUN_TERM_GRACE=3 \
        sbatch --parsable --job-name="$name" --nodes=1 --ntasks-per-node=$NP "${SBOPTS[@]}" \
        --output="$TMPD/$name-%j.out" cluster/lora.sbatch "${ARGS[@]}" "$@"
}
field() { scontrol -o show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p"; } # field JOB KEY
# wait_end JOB: until the job has ended for good (a requeued job is PENDING again); up to 3 minutes
wait_end() {
    local st
    for _ in $(seq 1 900); do
        st=$(field "$1" JobState)
        case "$st" in
        COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE | PREEMPTED) return 0 ;;
        esac
        sleep 0.2
    done
    return 1
}
wait_ckpt() { # wait_ckpt DIR: the first checkpoint of a run, up to 60 s
    for _ in $(seq 1 600); do
        compgen -G "$1/step_*.h5" >/dev/null && return 0
        sleep 0.1
    done
    return 1
}
h5step() { h5dump -a /step "$1" 2>/dev/null | sed -n 's/^ *(0): //p'; }
# check_end NAME JOB RESTARTS WHAT: the job COMPLETED with exit 0 after RESTARTS
# requeues, its final checkpoint is step STEPS, its adapter bitwise the
# reference; sets R to a summary, or says FAIL and returns 1
check_end() {
    local name=$1 job=$2 want=$3 what=$4 st ec rs last r
    if ! wait_end "$job"; then
        fail "$what: job $job did not end in 3 minutes (state $(field "$job" JobState)): $(tail -5 "$TMPD/$name-$job.out")"
        scancel "$job"
        return 1
    fi
    st=$(field "$job" JobState)
    ec=$(field "$job" ExitCode)
    rs=$(field "$job" Restarts)
    last="$TMPD/$name/checkpoints/step_$(printf %08d $STEPS).h5"
    if [ "$st" != COMPLETED ] || [ "$ec" != 0:0 ] || [ "$rs" != "$want" ]; then
        fail "$what: job $job ended $st, exit $ec, after $rs requeue(s) (want COMPLETED 0:0 after $want): $(tail -5 "$TMPD/$name-$job.out")"
        return 1
    fi
    if [ "$(h5step "$last")" != $STEPS ]; then
        fail "$what: no final checkpoint with step $STEPS: $(ls "$TMPD/$name/checkpoints")"
        return 1
    fi
    if ! r=$("$LORA" compare "$TMPD/ref-adapter" "$TMPD/$name/adapter"); then
        fail "$what: the adapter differs from the uninterrupted run's: $r"
        return 1
    fi
    R="job $job COMPLETED, exit 0, $rs requeue(s), $(basename "$last") has step $STEPS; adapter: $r"
}
starts() { grep -c "^lora.sbatch: .*: job $2 start [0-9]" "$1"; } # starts OUT JOB

for L in srun mpirun; do
    # a. a job that runs to its end
    name=done-$L
    if ! job=$(submit $name $L); then
        fail "completion ($L): sbatch failed"
    elif check_end $name "$job" 0 "completion ($L)"; then
        pass "completion ($L): $R"
    fi
done

for L in srun mpirun; do
    # b. the time-limit warning: SIGUSR1 to the batch shell only
    name=warn-$L
    job=$(submit $name $L) || { fail "warning ($L): sbatch failed"; continue; }
    if ! wait_ckpt "$TMPD/$name/checkpoints"; then
        fail "warning ($L): no checkpoint appeared: $(tail -5 "$TMPD/$name-$job.out")"
        scancel "$job"
        continue
    fi
    scancel --signal=USR1 --batch "$job"
    if check_end $name "$job" 1 "warning ($L)"; then
        out="$TMPD/$name-$job.out"
        stop=$(sed -n 's/^stopped after step \([0-9]*\) of.*/\1/p' "$out")
        from=$(sed -n 's/^resume: .*step_0*\([0-9]*\)\.h5: step.*/\1/p' "$out")
        if [ "$(starts "$out" "$job")" = 2 ] && [ -n "$stop" ] && [ "$from" = "$stop" ] &&
            grep -q "^lora.sbatch: .*: requeued" "$out"; then
            pass "warning ($L): stopped after step $stop with a checkpoint, requeued itself, started again, resumed from step $from; $R"
        else
            fail "warning ($L): starts $(starts "$out" "$job"), stopped at '$stop', resumed from '$from': $(grep -E '^(lora.sbatch|resume|stopped)' "$out" | tail -8)"
        fi
    fi
done

for L in srun mpirun; do
    # c. scontrol requeue from outside
    name=requeue-$L
    job=$(submit $name $L) || { fail "requeue ($L): sbatch failed"; continue; }
    if ! wait_ckpt "$TMPD/$name/checkpoints"; then
        fail "requeue ($L): no checkpoint appeared: $(tail -5 "$TMPD/$name-$job.out")"
        scancel "$job"
        continue
    fi
    scontrol requeue "$job"
    if check_end $name "$job" 1 "scontrol requeue ($L)"; then
        out="$TMPD/$name-$job.out"
        stop=$(sed -n 's/^stopped after step \([0-9]*\) of.*/\1/p' "$out")
        from=$(sed -n 's/^resume: .*step_0*\([0-9]*\)\.h5: step.*/\1/p' "$out")
        # checkpoints every 100 steps: another step is the one written on the SIGTERM
        how="the checkpoint the ranks wrote on the SIGTERM"
        [ -n "$from" ] && [ $((from % 100)) = 0 ] && how="the last periodic checkpoint"
        if [ "$(starts "$out" "$job")" = 2 ] && [ -n "$from" ] && { [ -z "$stop" ] || [ "$from" = "$stop" ]; }; then
            pass "scontrol requeue ($L): the job started again and resumed from step $from ($how); $R"
        else
            fail "scontrol requeue ($L): starts $(starts "$out" "$job"), stopped at '$stop', resumed from '$from': $(grep -E '^(lora.sbatch|resume|stopped)' "$out" | tail -8)"
        fi
    fi
done

# d. a run that fails (a base model that is not there): FAILED, the run's status, no requeue
name=fail-srun
if job=$(submit $name srun --set model.path="$TMPD/no-such-model") && wait_end "$job"; then
    st=$(field "$job" JobState)
    ec=$(field "$job" ExitCode)
    rs=$(field "$job" Restarts)
    if [ "$st" = FAILED ] && [ "$ec" != 0:0 ] && [ "$rs" = 0 ] && grep -q "the run failed (exit [1-9]" "$TMPD/$name-$job.out"; then
        pass "a failing run: job $job FAILED, exit $ec, not requeued: $(grep -m1 'lora_worker: ' "$TMPD/$name-$job.out" | cut -c1-120)"
    else
        fail "a failing run: job $job $st, exit $ec, $rs requeue(s): $(tail -4 "$TMPD/$name-$job.out")"
    fi
else
    fail "a failing run: the job did not end"
fi
if [ "${SLURM_TEST_TIMELIMIT:-0}" = 1 ]; then
    # e. the real thing: Slurm's own warning before a one-minute limit; a run of
    # about 50 s of work, so at least one warning comes before it is done
    ARGS=(--set data.train="$TMPD/tiny.tok" --set train.steps=20000 --set data.grad_accum=16 --set train.log_every=1000
        --set checkpoint.every_steps=1000 --set checkpoint.keep=3)
    mpi $NP --config tests/ps-tiny.ini "${ARGS[@]}" --set train.out_dir="$TMPD/tl-ref-adapter" >"$TMPD/tl-ref.log" 2>&1 ||
        { tail "$TMPD/tl-ref.log"; exit 1; }
    name=timelimit
    SBOPTS=(--time=1 --signal=B:USR1@55)
    job=$(submit $name srun)
    out="$TMPD/$name-$job.out"
    for _ in $(seq 1 3000); do # up to 10 minutes
        case "$(field "$job" JobState)" in COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL) break ;; esac
        sleep 0.2
    done
    st=$(field "$job" JobState)
    rs=$(field "$job" Restarts)
    stops=$(sed -n 's/^stopped after step \([0-9]*\) of.*/\1/p' "$out" | tr '\n' ' ')
    froms=$(sed -n 's/^resume: .*step_0*\([0-9]*\)\.h5: step.*/\1/p' "$out" | tr '\n' ' ')
    if [ "$st" = COMPLETED ] && [ "$rs" -ge 1 ] && [ "$stops" = "$froms" ] &&
        [ "$(starts "$out" "$job")" = $((rs + 1)) ] && r=$("$LORA" compare "$TMPD/tl-ref-adapter" "$TMPD/$name/adapter"); then
        pass "real time limit (--time=1, --signal=B:USR1@55): $rs warning(s), stopped at steps $stops, requeued, resumed each time; $r"
    else
        fail "real time limit: job $job $st after $rs requeue(s), stops '$stops', resumes '$froms': $(tail -4 "$out")"
    fi
fi
finish
