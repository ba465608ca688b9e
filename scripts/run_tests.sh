#!/bin/bash
# The test suite: every tests/test_* binary, the parity check on the shipped
# fixtures, the bad-input cases of the command line, and (unless --quick) the
# convergence run on the WordNet task. Exits non-zero if anything failed.
# usage: scripts/run_tests.sh BUILD_DIR [--quick]
set -u
B=${1:?usage: run_tests.sh BUILD_DIR [--quick]}
QUICK=${2:-}
export LORA_FIXTURES=${LORA_FIXTURES:-tests/fixtures}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
failed=()
run() {
    local name=$1
    shift
    local t0=$SECONDS
    echo "=== $name"
    if "$@"; then
        echo "--- ok   $name ($((SECONDS - t0)) s)"
    else
        echo "--- FAIL $name ($((SECONDS - t0)) s)"
        failed+=("$name")
    fi
}
for t in "$B"/bin/test_*; do
    run "$(basename "$t")" "$t"
done
run "parity gpt2-tiny" "$B/bin/lora" parity "$LORA_FIXTURES/gpt2-tiny"
run "bad inputs" tests/bad_inputs.sh "$B"
run "parameter server: equivalence (N = 1, 2, 4, 64; S = 1, 2)" tests/ps_equivalence.sh "$B"
run "parameter server: faults" tests/ps_faults.sh "$B"
run "checkpoints and resume" tests/ckpt_resume.sh "$B"
run "the demo's script end to end (4 short steps, resume, re-run)" tests/demo.sh "$B"
run "multi-host over TCP (network namespaces: 2, 3, 4 hosts)" tests/multihost.sh "$B"
if [ "$QUICK" != "--quick" ]; then
    run "convergence (WordNet, 300 steps)" tests/convergence.sh "$B"
fi
echo
if [ ${#failed[@]} -eq 0 ]; then
    echo "all tests passed ($B)"
else
    echo "FAILED ($B): ${failed[*]}"
    exit 1
fi
