#!/bin/bash
# The evaluation metrics against scikit-learn and seqeval on the same random
# predictions (tests/ref/metrics_ref.py, seed printed).
# usage: tests/ref_metrics.sh BUILD_DIR   (LORA_REF_PY: the reference environment's python)
set -u
. "$(dirname "$0")/lib.sh"
PY=${LORA_REF_PY:?set LORA_REF_PY to the reference python (tests/ref/setup.sh prints it)}
seed=${LORA_METRICS_SEED:-$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')}
if $PY tests/ref/metrics_ref.py "$TMPD/metrics.json" "$seed" && LORA_METRICS_REF="$TMPD/metrics.json" "$B/bin/test_metrics"; then
    pass "metrics equal scikit-learn's and seqeval's (seed $seed)"
else
    fail "metrics differ from scikit-learn/seqeval (seed $seed; reproduce: LORA_METRICS_SEED=$seed tests/ref_metrics.sh $B)"
fi
finish
