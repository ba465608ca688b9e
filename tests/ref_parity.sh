#!/bin/bash
# Random-shape parity: fixtures made on the spot by HF transformers + peft
# (tests/ref/make_fixture.py: random layers, width, heads, vocab, batch, sequence
# length, r, alpha, rsLoRA, target sets), each checked by `lora parity`.
# Prints every seed, the worst relative error over all of them, and the command
# that reproduces a failure.
# usage: tests/ref_parity.sh BUILD_DIR FAMILY N [SEEDS]
#   SEEDS: comma-separated seeds to use instead of N random ones (LORA_PARITY_SEEDS too)
# env:   LORA_REF_PY  the reference environment's python (tests/ref/setup.sh prints it)
set -u
. "$(dirname "$0")/lib.sh"
FAMILY=${2:?usage: ref_parity.sh BUILD_DIR FAMILY N [SEEDS]}
N=${3:-5}
SEEDS=${4:-${LORA_PARITY_SEEDS:-}}
PY=${LORA_REF_PY:?set LORA_REF_PY to the reference python (tests/ref/setup.sh prints it)}
export TRANSFORMERS_VERBOSITY=error HF_HUB_DISABLE_PROGRESS_BARS=1 HF_HUB_OFFLINE=1
if [ -z "$SEEDS" ]; then
    # random seeds, printed: a failure is reproduced with the seed alone
    SEEDS=$(od -An -N$((4 * N)) -tu4 /dev/urandom | tr -s ' \n' '\n' | grep . | head -n "$N" | paste -sd, -)
fi
echo "random-shape parity, family $FAMILY, seeds $SEEDS"
$PY tests/ref/make_fixture.py "$FAMILY" --seeds "$SEEDS" "$TMPD/fx" || { fail "make_fixture.py $FAMILY $SEEDS"; finish; }
worst=0 worst_seed="" worst_name=""
IFS=, read -ra list <<<"$SEEDS"
for s in "${list[@]}"; do
    out=$("$LORA" parity "$TMPD/fx/$s" 2>&1)
    rc=$?
    line=$(grep '^parity:' <<<"$out" | tail -1)
    head -1 <<<"$out" | sed "s|$TMPD/fx/||"
    if [ $rc -eq 0 ]; then
        pass "seed $s: $line"
    else
        grep -E 'FAIL|^parity' <<<"$out" | head -20
        fail "seed $s (reproduce: make parity-random FAMILY=$FAMILY SEEDS=$s)"
    fi
    e=$(sed -n 's/.*worst relative error \([0-9.e+-]*\) (\(.*\))$/\1/p' <<<"$line")
    n=$(sed -n 's/.*worst relative error [0-9.e+-]* (\(.*\))$/\1/p' <<<"$line")
    if [ -n "$e" ] && awk -v a="$e" -v b="$worst" 'BEGIN { exit !(a > b) }'; then
        worst=$e worst_seed=$s worst_name=$n
    fi
done
echo "random-shape parity ($FAMILY, ${#list[@]} configurations): worst relative error $worst (seed $worst_seed, $worst_name)"
finish
