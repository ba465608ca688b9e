#!/bin/bash
# Runs every unit test and the parity check under valgrind's memcheck: any
# invalid access, use of uninitialized memory or definite leak fails.
# usage: scripts/run_valgrind.sh BUILD_DIR
set -u
B=${1:-build-vg}
export OMP_NUM_THREADS=1 LORA_BLAS_AUTO=0 LORA_FIXTURES=${LORA_FIXTURES:-tests/fixtures}
# test_ckpt_kill: 20 of its 100 kills under valgrind (each write takes 30x longer there)
export LORA_CKPT_KILL_TRIALS=${LORA_CKPT_KILL_TRIALS:-20}
# test_generate: its printed time per token over 32 new tokens, not 512 (10 minutes under valgrind)
export LORA_GEN_TIMING_TOKENS=${LORA_GEN_TIMING_TOKENS:-32}
VG=(valgrind --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite
    --track-origins=yes --quiet)
command -v valgrind >/dev/null || { echo "run_valgrind: valgrind is not installed (apt-get install valgrind)"; exit 1; }
failed=()
for t in "$B"/bin/test_* "$B/bin/lora parity $LORA_FIXTURES/gpt2-tiny" "$B/bin/lora parity $LORA_FIXTURES/llama-tiny" \
    "$B/bin/lora parity $LORA_FIXTURES/bert-tiny-cls"; do
    t0=$SECONDS
    # shellcheck disable=SC2086
    if "${VG[@]}" $t >/tmp/lora-vg.$$ 2>&1; then
        echo "--- ok   valgrind $(basename "${t%% *}") ($((SECONDS - t0)) s)"
    else
        echo "--- FAIL valgrind $t"
        tail -30 /tmp/lora-vg.$$
        failed+=("$t")
    fi
done
rm -f /tmp/lora-vg.$$
[ ${#failed[@]} -eq 0 ] && echo "valgrind: all clean ($B)" || { echo "valgrind FAILED: ${failed[*]}"; exit 1; }
