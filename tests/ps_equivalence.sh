#!/bin/bash
# BSP equivalence: N = 1, 2, 4 ranks with S = 1, 2 server shards give the
# adapters of the single-process trainer (float rounding); two runs at the
# same N are bitwise equal; 64 oversubscribed ranks match too.
set -u
. "$(dirname "$0")/lib.sh"
"$LORA" tokens --vocab 320 --count 30000 --seed 5 --out "$TMPD/tiny.tok" >/dev/null || exit 1
CFG=(--config tests/ps-tiny.ini --set data.train="$TMPD/tiny.tok")
"$LORA" train "${CFG[@]}" --set train.out_dir="$TMPD/ref" >"$TMPD/ref.log" 2>&1 || { cat "$TMPD/ref.log"; exit 1; }
for n in 1 2 4; do
    for s in 1 2; do
        [ $s -gt $n ] && continue
        out="$TMPD/n${n}s${s}"
        if ! mpi $n "${CFG[@]}" --set system.servers=$s --set train.out_dir="$out" >"$out.log" 2>&1; then
            fail "N=$n S=$s: lora_worker failed: $(tail -3 "$out.log")"
            continue
        fi
        if r=$("$LORA" compare "$TMPD/ref" "$out" --tol 1e-5); then pass "N=$n S=$s vs single process: $r"; else fail "N=$n S=$s vs single process: $r"; fi
    done
done
mpi 4 "${CFG[@]}" --set system.servers=2 --set train.out_dir="$TMPD/again" >"$TMPD/again.log" 2>&1 || fail "N=4 S=2 rerun failed"
if r=$("$LORA" compare "$TMPD/n4s2" "$TMPD/again"); then pass "N=4 S=2 twice: $r"; else fail "N=4 S=2 twice: $r"; fi
# bf16 and fp16 payloads: the same run within the precision those formats keep (about 3 and 4
# significant digits per value; over 6 AdamW steps the adapters stay within 2% of fp32's)
for d in "bf16 fp32" "fp16 fp32" "bf16 bf16"; do
    set -- $d
    out="$TMPD/dtype-$1-$2"
    if mpi 3 "${CFG[@]}" --set system.grad_dtype=$1 --set system.param_dtype=$2 --set train.out_dir="$out" \
        >"$out.log" 2>&1 && r=$("$LORA" compare "$TMPD/ref" "$out" --tol 2e-2); then
        pass "pushes $1, updates $2 vs fp32: $r"
    else
        fail "pushes $1, updates $2 vs fp32: ${r:-run failed: $(tail -3 "$out.log")}"
    fi
done
# full fine-tuning through the same parameter server (every base tensor trainable)
"$LORA" train "${CFG[@]}" --set lora.full_finetune=true --set train.out_dir="$TMPD/full-ref" >"$TMPD/full-ref.log" 2>&1 ||
    fail "full fine-tuning, single process: $(tail -3 "$TMPD/full-ref.log")"
if mpi 3 "${CFG[@]}" --set lora.full_finetune=true --set system.servers=2 --set train.out_dir="$TMPD/full3" \
    >"$TMPD/full3.log" 2>&1 && cmp -s "$TMPD/full-ref/model.safetensors" "$TMPD/full3/model.safetensors"; then
    pass "full fine-tuning at N=3 S=2 (one worker, so the same sums): the model is byte for byte the single process's"
else
    fail "full fine-tuning at N=3 S=2 differs from the single process (or failed: $(tail -2 "$TMPD/full3.log"))"
fi
# 64 ranks: 1 server and 63 workers, 2 sequences each per step
"$LORA" train "${CFG[@]}" --set data.grad_accum=63 --set train.steps=3 --set train.out_dir="$TMPD/ref63" \
    >"$TMPD/ref63.log" 2>&1 || fail "single-process reference for 64 ranks failed"
t0=$SECONDS
if mpi 64 "${CFG[@]}" --set data.grad_accum=63 --set train.steps=3 --set train.out_dir="$TMPD/n64" \
    >"$TMPD/n64.log" 2>&1; then
    if r=$("$LORA" compare "$TMPD/ref63" "$TMPD/n64" --tol 1e-5); then pass "N=64 ($((SECONDS - t0)) s) vs single process: $r"; else fail "N=64 vs single process: $r"; fi
else
    fail "N=64: lora_worker failed: $(tail -5 "$TMPD/n64.log")"
fi
finish
