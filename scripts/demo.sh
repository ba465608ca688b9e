#!/bin/bash
# The demo (`make demo`): LoRA fine-tuning of a small pretrained GPT-2 on WordNet glosses
# (configs/demo.ini) with the parameter server: lora_worker under mpirun, rank 0 the server shard and
# coordinator, one worker rank per core with one thread each, BSP, an HDF5 checkpoint every 100 steps.
# It ends with what to do next: the newest checkpoint and the h5dump command that shows it, the peft
# adapter, and the command that resumes or extends the run.
# usage: scripts/demo.sh [--resume auto|PATH] [--set section.key=value ...]   (passed to lora_worker)
#   RUN_DIR  (runs/demo) checkpoints in RUN_DIR/checkpoints, the adapter in RUN_DIR/adapter, the output
#                        in RUN_DIR/demo.log
#   WORKERS  (nproc)     worker ranks; the job has WORKERS + 1 ranks
#   BUILD    (build)     where bin/lora_worker is; MPIRUN (mpirun) the launcher
# Without --resume a run starts fresh: the checkpoints of an earlier run in RUN_DIR are removed (it says
# so), so a second `make demo` never silently continues a finished run; --resume auto continues it.
set -euo pipefail
shopt -s nullglob
B=${BUILD:-build}
RUN_DIR=${RUN_DIR:-runs/demo}
MPIRUN=${MPIRUN:-mpirun}
cores=$(nproc)
WORKERS=${WORKERS:-$cores}
NP=$((WORKERS + 1))
CKPT=$RUN_DIR/checkpoints
if ! command -v "$MPIRUN" >/dev/null 2>&1; then
    echo "demo: $MPIRUN not found: the demo runs lora_worker under Open MPI's mpirun, from Debian's openmpi-bin" >&2
    echo "demo: install it with scripts/install-deps.sh (as root), or: apt-get install openmpi-bin" >&2
    exit 1
fi
[ -x "$B/bin/lora_worker" ] || { echo "demo: $B/bin/lora_worker is missing: run make all (or make demo)" >&2; exit 1; }

# the caller's arguments, without --resume and train.steps, for the resume hint
resume="" again=() a=("$@") i=0
while [ $i -lt ${#a[@]} ]; do
    case "${a[i]}" in
    --resume) resume=${a[i + 1]:-} && i=$((i + 1)) ;;
    --set)
        case "${a[i + 1]:-}" in train.steps=*) ;; *) again+=(--set "${a[i + 1]:-}") ;; esac
        i=$((i + 1))
        ;;
    *) again+=("${a[i]}") ;;
    esac
    i=$((i + 1))
done

# Open MPI refuses root unless told; more ranks than cores need --oversubscribe, and idle ranks (the
# server while workers compute) must yield the core instead of busy-polling it
[ "$(id -u)" = 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
MPI_OPTS=(-np "$NP" --oversubscribe --bind-to none --mca mpi_yield_when_idle 1)
ARGS=(--config configs/demo.ini --set train.threads=1 --set "checkpoint.dir=$CKPT" --set checkpoint.every_steps=100
    --set "train.out_dir=$RUN_DIR/adapter")

echo "demo: fine-tuning demo/tiny-gpt2-pydocs on WordNet glosses (configs/demo.ini) with the parameter server:"
echo "demo: $NP ranks on $cores cores (1 server shard, $WORKERS worker$([ "$WORKERS" = 1 ] || echo s), one thread each), BSP, a checkpoint every 100 steps"
if [ -z "$resume" ]; then
    old=("$CKPT"/step_*.h5)
    if [ ${#old[@]} -gt 0 ]; then
        echo "demo: a fresh run: removing the ${#old[@]} checkpoint(s) of the previous run in $CKPT (--resume auto continues it instead)"
        rm -f "${old[@]}"
    fi
fi
mkdir -p "$RUN_DIR"
echo "demo: $MPIRUN ${MPI_OPTS[*]} $B/bin/lora_worker ${ARGS[*]}${*:+ $*}"
log=$RUN_DIR/demo.log
start=$(date +%s)
"$MPIRUN" "${MPI_OPTS[@]}" "$B/bin/lora_worker" "${ARGS[@]}" "$@" 2>&1 | tee "$log"
wall=$(($(date +%s) - start))

steps=$(sed -n 's/^[BS]SP: .*, \([0-9]*\) steps,.*/\1/p' "$log")
# the last checkpoint this run wrote (a --set checkpoint.dir elsewhere included), else the newest there
newest=$(sed -n 's/^checkpoint: \(.*\) (step [0-9]*, .*/\1/p' "$log" | tail -n 1)
kept=("$CKPT"/step_*.h5) # sorted: the newest is last
[ -z "$newest" ] && [ ${#kept[@]} -gt 0 ] && newest=${kept[-1]}
if [ -n "$newest" ]; then
    kept=("$(dirname "$newest")"/step_*.h5)
    echo "demo: newest checkpoint: $newest (${#kept[@]} kept in $(dirname "$newest"))"
    echo "demo: what it holds: h5dump -H $newest"
fi
adapter=$(sed -n 's/^adapter (peft format) written to //p' "$log")
[ -n "$adapter" ] && echo "demo: adapter in peft's format: $adapter (adapter_config.json, adapter_model.safetensors)"
prefix=""
[ "$RUN_DIR" != runs/demo ] && prefix="RUN_DIR=$(printf %q "$RUN_DIR") "
[ "$WORKERS" != "$cores" ] && prefix="${prefix}WORKERS=$WORKERS "
echo "demo: resume or extend the run: ${prefix}scripts/demo.sh ${again[*]:+$(printf '%q ' "${again[@]}")}--resume auto" \
    "--set train.steps=$((${steps:-0} * 2))"
echo "demo: wall time $wall s"
