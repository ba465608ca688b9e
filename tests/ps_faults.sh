#!/bin/bash
# Faults of a distributed run, each with a clear message and a non-zero exit,
# never a hang: a rank killed with SIGKILL, a corrupted message, a message of an
# unknown wire version, a NaN gradient (skip or abort), ranks that loaded a
# different config or base model, more servers than ranks.
set -u
. "$(dirname "$0")/lib.sh"
"$LORA" tokens --vocab 320 --count 30000 --seed 5 --out "$TMPD/tiny.tok" >/dev/null || exit 1
CFG=(--config tests/ps-tiny.ini --set data.train="$TMPD/tiny.tok")

expect() { # name, wanted substring, command... : must exit non-zero within 60 s and print the substring
    local name=$1 want=$2
    shift 2
    timeout 60 "$@" >"$TMPD/out" 2>&1
    local rc=$?
    if [ $rc -eq 124 ]; then
        fail "$name: still running after 60 s (hang)"
    elif [ $rc -ne 0 ] && grep -qF -- "$want" "$TMPD/out"; then
        pass "$name (exit $rc): $(grep -F -m1 -- "$want" "$TMPD/out" | cut -c1-220)"
    else
        fail "$name: exit $rc, wanted '$want' in: $(tail -5 "$TMPD/out")"
    fi
}

expect "corrupted push" "checksum does not match" \
    env LORA_TEST_CORRUPT=2:1 mpirun --oversubscribe --bind-to none -np 4 -x LORA_TEST_CORRUPT "$WORKER" "${CFG[@]}"
expect "unknown wire version" "rank 1 sent a Push of wire version 7; this build speaks wire version 1" \
    env LORA_TEST_WIRE_VERSION=1:7 mpirun --oversubscribe --bind-to none -np 3 -x LORA_TEST_WIRE_VERSION "$WORKER" "${CFG[@]}"
expect "NaN gradient, nan_policy = abort" "holds NaN or Inf" \
    env LORA_TEST_NAN=1:2 mpirun --oversubscribe --bind-to none -np 3 -x LORA_TEST_NAN "$WORKER" "${CFG[@]}" \
    --set system.nan_policy=abort
if LORA_TEST_NAN=1:2 timeout 60 mpirun --oversubscribe --bind-to none -np 3 -x LORA_TEST_NAN "$WORKER" "${CFG[@]}" \
    --set train.out_dir="$TMPD/nanskip" >"$TMPD/out" 2>&1 && grep -q "step 3: the aggregated gradient holds NaN or Inf; step skipped" "$TMPD/out" \
    && grep -q "SKIPPED" "$TMPD/out" && [ -f "$TMPD/nanskip/adapter_model.safetensors" ]; then
    pass "NaN gradient, nan_policy = skip: step 3 skipped with a warning, the run finished"
else
    fail "NaN gradient, nan_policy = skip: $(tail -5 "$TMPD/out")"
fi
# one step policy: a skipped step leaves the single process and BSP equal (AdamW counts applied updates)
if LORA_TEST_NAN=0:2 "$LORA" train "${CFG[@]}" --set train.out_dir="$TMPD/skip-one" >"$TMPD/out" 2>&1 &&
    grep -q "step 3: non-finite loss or gradient" "$TMPD/out" &&
    LORA_TEST_NAN=1:2 timeout 60 mpirun --oversubscribe --bind-to none -np 2 -x LORA_TEST_NAN "$WORKER" "${CFG[@]}" \
        --set train.out_dir="$TMPD/skip-ps" >"$TMPD/out2" 2>&1 &&
    grep -q "step 3: the aggregated gradient holds NaN or Inf; step skipped" "$TMPD/out2" &&
    r=$("$LORA" compare "$TMPD/skip-one" "$TMPD/skip-ps" --tol 1e-5); then
    pass "step 3 skipped in one process and under BSP: the same adapters ($r)"
else
    fail "a skipped step, one process vs BSP: ${r:-$(tail -3 "$TMPD/out" "$TMPD/out2")}"
fi
# arguments that fail on some ranks only: each says so and the job ends, never a hang
expect "a config missing on one rank only" "rank 2: /nonexistent.ini" \
    mpirun --oversubscribe --bind-to none -np 2 "$WORKER" "${CFG[@]}" : -np 1 "$WORKER" --config /nonexistent.ini
expect "a bad --set on one rank only" "rank 1: " \
    mpirun --oversubscribe --bind-to none -np 1 "$WORKER" "${CFG[@]}" : -np 1 "$WORKER" "${CFG[@]}" --set lora.r=abc
expect "an unknown flag on rank 0 only" "rank 0: unknown argument '--frobnicate'" \
    mpirun --oversubscribe --bind-to none -np 1 "$WORKER" "${CFG[@]}" --frobnicate : -np 2 "$WORKER" "${CFG[@]}"
expect "ranks with different configs (the first differing key named)" "runs a different config than rank 0: [optim] lr = '" \
    mpirun --oversubscribe --bind-to none -np 1 "$WORKER" "${CFG[@]}" : -np 1 "$WORKER" "${CFG[@]}" --set optim.lr=1e-3
cp -r tests/fixtures/gpt2-tiny/base "$TMPD/other-model"
chmod -R u+w "$TMPD/other-model"
printf '\x11\x22\x33\x44' | dd of="$TMPD/other-model/model.safetensors" bs=1 seek=5000 conv=notrunc status=none
expect "ranks with different base models (the path that rank loaded named)" \
    "loaded a different base model: $(realpath "$TMPD")/other-model" \
    mpirun --oversubscribe --bind-to none -np 2 "$WORKER" "${CFG[@]}" : -np 1 "$WORKER" "${CFG[@]}" \
    --set model.path="$TMPD/other-model"
expect "more servers than ranks" "servers = 3 but the job has only 2 ranks" \
    mpirun --oversubscribe --bind-to none -np 2 "$WORKER" "${CFG[@]}" --set system.servers=3

rank_pid() { # rank_pid TAG RANK: the pid of that rank of the job started with LORA_TEST_TAG=TAG
    local d env_of
    for d in /proc/[0-9]*; do
        env_of=$({ tr '\0' '\n' <"$d/environ"; } 2>/dev/null)
        if grep -qx "LORA_TEST_TAG=$1" <<<"$env_of" && grep -qx "OMPI_COMM_WORLD_RANK=$2" <<<"$env_of"; then
            echo "${d#/proc/}"
            return
        fi
    done
}

# kill -9 of a worker in the middle of a run: the job must end within 30 s naming the rank
LORA_TEST_TAG="$TMPD" mpirun --oversubscribe --bind-to none -np 4 -x LORA_TEST_TAG "$WORKER" "${CFG[@]}" \
    --set train.steps=100000 --set train.log_every=1 >"$TMPD/kill.log" 2>&1 &
mpirun_pid=$!
victim=""
for _ in $(seq 1 300); do
    grep -q "step     3/" "$TMPD/kill.log" && victim=$(rank_pid "$TMPD" 2) && break
    sleep 0.1
done
if [ -z "$victim" ]; then
    fail "kill -9: could not find rank 2 of the running job"
    kill -9 $mpirun_pid 2>/dev/null
else
    kill -9 "$victim"
    t0=$(date +%s.%N)
    for _ in $(seq 1 300); do kill -0 $mpirun_pid 2>/dev/null || break; sleep 0.1; done
    dt=$(echo "$(date +%s.%N) - $t0" | bc | xargs printf '%.1f')
    if kill -0 $mpirun_pid 2>/dev/null; then
        fail "kill -9 of rank 2: the job still runs 30 s later"
        kill -9 $mpirun_pid
    else
        wait $mpirun_pid
        rc=$?
        if [ $rc -ne 0 ] && grep -qiE "rank 2 .*(killed|signal 9)|process rank 2" "$TMPD/kill.log"; then
            pass "kill -9 of rank 2: job ended in $dt s (exit $rc): $(grep -iE -m1 "rank 2" "$TMPD/kill.log" | cut -c1-200)"
        else
            fail "kill -9 of rank 2: exit $rc, output: $(tail -5 "$TMPD/kill.log")"
        fi
    fi
fi
pkill -9 -f "LORA_TEST_TAG=$TMPD" 2>/dev/null

# SIGTERM to one worker only (not through mpirun): passed on to rank 0, which stops the job after the
# step with a checkpoint; every rank exits 0
tag="$TMPD/term"
LORA_TEST_TAG="$tag" mpirun --oversubscribe --bind-to none -np 4 -x LORA_TEST_TAG "$WORKER" "${CFG[@]}" \
    --set train.steps=100000 --set train.log_every=1 --set checkpoint.dir="$TMPD/term-ck" >"$TMPD/term.log" 2>&1 &
mpirun_pid=$!
victim=""
for _ in $(seq 1 300); do
    grep -q "step     3/" "$TMPD/term.log" && victim=$(rank_pid "$tag" 2) && break
    sleep 0.1
done
if [ -z "$victim" ]; then
    fail "SIGTERM to a worker: could not find rank 2 of the running job"
    kill -9 $mpirun_pid 2>/dev/null
else
    kill -TERM "$victim"
    for _ in $(seq 1 300); do kill -0 $mpirun_pid 2>/dev/null || break; sleep 0.1; done
    if kill -0 $mpirun_pid 2>/dev/null; then
        fail "SIGTERM to rank 2: the job still runs 30 s later"
        kill -9 $mpirun_pid
    else
        wait $mpirun_pid
        rc=$?
        stop=$(sed -n 's/^stopped after step \([0-9]*\) of.*/\1/p' "$TMPD/term.log")
        if [ $rc -eq 0 ] && grep -q "rank 2 received a stop signal" "$TMPD/term.log" && [ -n "$stop" ] &&
            [ -f "$TMPD/term-ck/$(printf 'step_%08d.h5' "$stop")" ]; then
            pass "SIGTERM to worker rank 2 alone: passed on to rank 0, stopped after step $stop with its checkpoint, exit 0"
        else
            fail "SIGTERM to worker rank 2 alone: exit $rc, stop '$stop', $(ls "$TMPD/term-ck" 2>&1 | tr '\n' ' '): $(tail -4 "$TMPD/term.log")"
        fi
    fi
fi
pkill -9 -f "LORA_TEST_TAG=$tag" 2>/dev/null
finish
