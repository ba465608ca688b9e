#!/bin/bash
# The parameter server's benchmark (part of `make bench`): a random GPT-2 124M
# (written once to build/bench-gpt2-124m), LoRA r=8 on c_attn, a global batch of
# 8 sequences of 128 tokens, 3 steps, at N = 1, 2, 4, 8 ranks (1 server; ranks
# beyond the cores are oversubscribed, one thread each). Prints ms/step, the
# share of a step outside the slowest worker's forward/backward (communication,
# aggregation, optimizer), bytes per step and the ratio against full fine-tuning,
# and adds them to the bench JSON (bytes_per_step and ratio_vs_full_finetune
# from the N=2 run: one server, one worker, fp32 payloads).
set -eu
B=${1:-build}
JSON=${2:-$B/bench.json}
NS=${BENCH_PS_RANKS:-1 2 4 8}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
. "$(dirname "$0")/bench_lib.sh"
bench_setup || exit 1
printf '\nparameter server (GPT-2 124M random, LoRA r=8 on c_attn, 8 x 128 tokens per step, 1 server):\n'
printf '  %-6s %12s %14s %16s %12s\n' ranks ms/step "comm share" "bytes/step" "vs full FT"
rows=""
for n in $NS; do
    threads=1
    [ "$n" = 1 ] && threads=0
    rm -f "$B/bench-ps-$n.jsonl"
    mpirun --oversubscribe --bind-to none -np "$n" "$B/bin/lora_worker" "${BENCH_ARGS[@]}" \
        --set train.threads=$threads --set train.metrics="$B/bench-ps-$n.jsonl" >"$B/bench-ps-$n.log" 2>&1 ||
        { echo "bench_ps: N=$n failed:"; tail -5 "$B/bench-ps-$n.log"; exit 1; }
    s=$(grep '"summary"' "$B/bench-ps-$n.jsonl")
    get() { sed -n "s/.*\"$1\": \([0-9.e+-]*\).*/\1/p" <<<"$s"; }
    ms=$(get ms_per_step) share=$(get comm_share) bytes=$(get bytes_per_step) ratio=$(get ratio_vs_full_finetune)
    printf '  %-6s %12.1f %13.1f%% %16.0f %11.1fx\n' "$n" "$ms" "$(echo "$share * 100" | bc -l)" "$bytes" "$ratio"
    rows="$rows${rows:+, }\"$n\": {\"ms_per_step\": $ms, \"comm_share\": $share, \"bytes_per_step\": $bytes, \"ratio_vs_full_finetune\": $ratio}"
    if [ "$n" = 2 ]; then ref_bytes=$bytes ref_ratio=$ratio; fi
done
if [ -f "$JSON" ] && [ -n "${ref_bytes:-}" ]; then
    # append to the engine's JSON object
    sed -i '$ d' "$JSON"
    sed -i '$ s/$/,/' "$JSON"
    cat >>"$JSON" <<J
  "bytes_per_step": $ref_bytes,
  "ratio_vs_full_finetune": $ref_ratio,
  "ps_by_ranks": {$rows}
}
J
    echo "  (bytes_per_step and ratio_vs_full_finetune of the N=2 run added to $JSON)"
fi
