#!/bin/bash
# The parameter server with a LLaMA model (tests/ps-llama.ini: the llama-tiny
# fixture, LoRA on q_proj, v_proj, down_proj):
#  - BSP at N = 1, 2, 4 ranks (S = 1; and S = 2 at N = 4) gives the single-process
#    trainer's adapter to float rounding (lora compare --tol 1e-5); two runs at N = 4
#    are bitwise equal; the same at N = 4 for random mistral and qwen2 models (all-linear);
#  - checkpoints every 10 steps, kill -9 of a random rank at a random step after the
#    first one, --resume auto: the adapter is byte for byte the uninterrupted run's.
set -u
. "$(dirname "$0")/lib.sh"
"$LORA" tokens --vocab 320 --count 30000 --seed 5 --out "$TMPD/tiny.tok" >/dev/null || exit 1
CFG=(--config tests/ps-llama.ini --set data.train="$TMPD/tiny.tok")
"$LORA" train "${CFG[@]}" --set train.out_dir="$TMPD/ref" >"$TMPD/ref.log" 2>&1 || { cat "$TMPD/ref.log"; exit 1; }
for ns in "1 1" "2 1" "4 1" "4 2"; do
    set -- $ns
    n=$1 s=$2 out="$TMPD/n$1s$2"
    if ! mpi $n "${CFG[@]}" --set system.servers=$s --set train.out_dir="$out" >"$out.log" 2>&1; then
        fail "llama N=$n S=$s: lora_worker failed: $(tail -3 "$out.log")"
        continue
    fi
    if r=$("$LORA" compare "$TMPD/ref" "$out" --tol 1e-5); then
        pass "llama N=$n S=$s vs single process: $r"
    else
        fail "llama N=$n S=$s vs single process: $r"
    fi
done
mpi 4 "${CFG[@]}" --set train.out_dir="$TMPD/again" >"$TMPD/again.log" 2>&1 || fail "llama N=4 rerun failed"
if r=$("$LORA" compare "$TMPD/n4s1" "$TMPD/again"); then pass "llama N=4 twice: $r"; else fail "llama N=4 twice: $r"; fi
# mistral and qwen2 (q/k/v biases) random models of the same size: N = 4 against one process
for fam in mistral qwen2; do
    extra=()
    [ $fam = qwen2 ] && extra=(--seed 77)
    "$LORA" init-model --family $fam --layers 2 --embd 64 --heads 4 --kv-heads 2 --inter 128 --vocab 320 \
        --positions 64 "${extra[@]}" --out "$TMPD/$fam" >/dev/null || { fail "$fam: init-model"; continue; }
    FCFG=("${CFG[@]}" --set model.path="$TMPD/$fam" --set lora.targets=all-linear)
    "$LORA" train "${FCFG[@]}" --set train.out_dir="$TMPD/$fam-ref" >"$TMPD/$fam-ref.log" 2>&1 ||
        { fail "$fam: single process: $(tail -2 "$TMPD/$fam-ref.log")"; continue; }
    if mpi 4 "${FCFG[@]}" --set system.servers=2 --set train.out_dir="$TMPD/$fam-n4" >"$TMPD/$fam-n4.log" 2>&1 &&
        r=$("$LORA" compare "$TMPD/$fam-ref" "$TMPD/$fam-n4" --tol 1e-5); then
        pass "$fam (all-linear) N=4 S=2 vs single process: $r"
    else
        fail "$fam N=4 S=2 vs single process: ${r:-failed: $(tail -3 "$TMPD/$fam-n4.log")}"
    fi
done

# kill -9 and resume
RCFG=("${CFG[@]}" --set train.steps=150 --set data.grad_accum=8 --set checkpoint.every_steps=10 --set checkpoint.keep=2)
NP=3
mpi $NP "${RCFG[@]}" --set checkpoint.dir="$TMPD/straight" --set train.out_dir="$TMPD/straight-adapter" \
    >"$TMPD/straight.log" 2>&1 || { fail "llama: uninterrupted run failed: $(tail -3 "$TMPD/straight.log")"; finish; }
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
for trial in 1 2; do
    dir="$TMPD/kill$trial"
    LORA_TEST_TAG="$dir" mpi_bg $NP "${RCFG[@]}" --set checkpoint.dir="$dir" >"$dir.log" 2>&1
    victim_rank=$((RANDOM % NP))
    kill_at=$((15 + RANDOM % 120)) # a random step after the first checkpoint (step 10)
    if ! wait_for "$dir.log" "^step *$kill_at/"; then
        fail "llama kill trial $trial: step $kill_at never came"
        kill -9 $job
        continue
    fi
    pid=$(rank_pid "$dir" $victim_rank)
    at=$(grep -c "^step" "$dir.log")
    [ -n "$pid" ] && kill -9 "$pid"
    wait $job
    if [ $? -eq 0 ]; then
        pass "llama kill trial $trial: the run finished before the kill (step $at): nothing to resume"
        continue
    fi
    mpi $NP "${RCFG[@]}" --set checkpoint.dir="$dir" --set train.out_dir="$dir-adapter" --resume auto \
        >"$dir-resume.log" 2>&1 || { fail "llama kill trial $trial: resume failed: $(tail -3 "$dir-resume.log")"; continue; }
    from=$(sed -n 's/^resume: .*: step \([0-9]*\) of.*/\1/p' "$dir-resume.log")
    if r=$("$LORA" compare "$TMPD/straight-adapter" "$dir-adapter"); then
        pass "llama: kill -9 of rank $victim_rank near step $at, resumed from step $from: $r"
    else
        fail "llama: kill -9 of rank $victim_rank near step $at, resumed from step $from: $r"
    fi
done
finish
