#!/bin/bash
# Non-finite values never get in and never get out silently: a NaN or
# infinity in base weights, an adapter or init_from is refused at load naming
# the file and tensor; a run whose values become non-finite (a learning rate
# far too large) stops with an error and writes nothing; a run whose every
# step was skipped exits non-zero. Single process and lora_worker alike.
# (A checkpoint tensor holding NaN: tests/test_checkpoint.c.)
set -u
. "$(dirname "$0")/lib.sh"
FIX=${LORA_FIXTURES:-tests/fixtures}
# poke FILE TENSOR INDEX VALUE: writes a float32 (nan, inf, -inf) into element INDEX of an F32 tensor in place
poke() {
    python3 - "$@" <<'EOF' || exit 1
import json, struct, sys
path, name, idx, val = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
with open(path, "r+b") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    h = json.loads(f.read(n))
    t = h[name]
    assert t["dtype"] == "F32", t
    f.seek(8 + n + t["data_offsets"][0] + 4 * idx)
    f.write(struct.pack("<f", val))
EOF
}
expect() { # name, expected message fragment, command...: an error exit (1-9: MPI_Abort gives its code; not a signal) and the fragment on stderr
    local name=$1 want=$2
    shift 2
    "$@" >"$TMPD/out" 2>"$TMPD/err"
    local rc=$?
    if [ $rc -ge 1 ] && [ $rc -le 9 ] && grep -qF -- "$want" "$TMPD/err"; then
        pass "$name: $(grep -F -m1 -- "$want" "$TMPD/err" | head -c 300)"
    else
        fail "$name: exit $rc, wanted '$want', got: $(tail -c 400 "$TMPD/err")"
    fi
}
"$LORA" tokens --vocab 320 --count 5000 --seed 5 --out "$TMPD/tiny.tok" >/dev/null || exit 1
CFG=(--config tests/ps-tiny.ini --set data.train="$TMPD/tiny.tok")

# base weights: an F32 tensor read in place from the mapping, NaN and -inf
for v in nan -inf; do
    rm -rf "$TMPD/base-$v" && cp -r "$FIX/gpt2-tiny/base" "$TMPD/base-$v"
    poke "$TMPD/base-$v/model.safetensors" transformer.h.1.mlp.c_fc.weight 77 "$v"
    want=$([ $v = nan ] && echo NaN || echo -inf)
    expect "base weights holding $want (lora train)" \
        "$TMPD/base-$v: tensor 'transformer.h.1.mlp.c_fc.weight' holds a non-finite value ($want) at element 77" \
        "$LORA" train "${CFG[@]}" --set model.path="$TMPD/base-$v"
done
expect "base weights holding -inf (lora_worker, 3 ranks)" "tensor 'transformer.h.1.mlp.c_fc.weight' holds a non-finite value (-inf)" \
    timeout 60 mpirun --oversubscribe --bind-to none -np 3 "$WORKER" "${CFG[@]}" --set model.path="$TMPD/base--inf"
expect "base weights holding NaN (lora merge)" "tensor 'transformer.h.1.mlp.c_fc.weight' holds a non-finite value (NaN)" \
    "$LORA" merge --model "$TMPD/base-nan" --adapter "$FIX/gpt2-tiny/lora-trained" --out "$TMPD/merged-nan"
[ -e "$TMPD/merged-nan" ] && fail "merge of a NaN base wrote $TMPD/merged-nan" || pass "merge of a NaN base wrote nothing"

# an adapter: init_from, merge and eval
rm -rf "$TMPD/ad" && cp -r "$FIX/gpt2-tiny/lora-trained" "$TMPD/ad"
key=$(python3 -c 'import json,struct,sys; f=open(sys.argv[1],"rb"); n=struct.unpack("<Q",f.read(8))[0]; print(sorted(k for k in json.loads(f.read(n)) if k.endswith("lora_B.weight"))[0])' "$TMPD/ad/adapter_model.safetensors")
poke "$TMPD/ad/adapter_model.safetensors" "$key" 3 inf
expect "an adapter holding +inf (lora merge)" "adapter_model.safetensors: tensor '$key' holds a non-finite value (+inf) at element 3" \
    "$LORA" merge --model "$FIX/gpt2-tiny/base" --adapter "$TMPD/ad" --out "$TMPD/merged-inf"
r=$(python3 -c 'import json; print(json.load(open("'"$FIX"'/gpt2-tiny/lora-trained/adapter_config.json"))["r"])')
expect "init_from an adapter holding +inf (lora train)" "tensor '$key' holds a non-finite value (+inf)" \
    "$LORA" train "${CFG[@]}" --set model.path="$FIX/gpt2-tiny/base" --set lora.init_from="$TMPD/ad" --set lora.r="$r"

# divergence, two ways: lr = 1e30 leaves finite but huge values whose forward overflows, so every later
# step is skipped ([system] max_skipped_steps in a row stop the run); weight decay 1e10 on top makes the
# values themselves non-finite at the first update
for how in "lr:steps in a row had a non-finite loss or gradient: the run diverged" \
    "wd:the trainable values became non-finite after the update"; do
    k=${how%%:*} want=${how#*:}
    extra=(--set optim.lr=1e30 --set optim.grad_clip=0 --set train.steps=12)
    [ "$k" = wd ] && extra+=(--set optim.weight_decay=1e10)
    expect "diverging ($k, lora train)" "$want" "$LORA" train "${CFG[@]}" "${extra[@]}" --set train.out_dir="$TMPD/div1$k"
    [ -e "$TMPD/div1$k" ] && fail "a diverged single-process run ($k) wrote $TMPD/div1$k" ||
        pass "a diverged single-process run ($k) wrote nothing"
    expect "diverging ($k, lora_worker, 3 ranks)" "$want" timeout 120 mpirun --oversubscribe --bind-to none -np 3 \
        "$WORKER" "${CFG[@]}" "${extra[@]}" --set train.out_dir="$TMPD/div2$k"
    [ -e "$TMPD/div2$k/adapter_model.safetensors" ] && fail "a diverged lora_worker run ($k) wrote an adapter" ||
        pass "a diverged lora_worker run ($k) wrote no adapter"
done

# every step skipped (the test hook makes step 1's gradient NaN; the run has one step)
expect "every step skipped (lora train)" "every step of the run was skipped" \
    env LORA_TEST_NAN=0:0 "$LORA" train "${CFG[@]}" --set train.steps=1 --set train.out_dir="$TMPD/skip1"
expect "every step skipped (lora_worker, 3 ranks)" "every step of the run was skipped" \
    env LORA_TEST_NAN=1:0 timeout 120 mpirun --oversubscribe --bind-to none -np 3 "$WORKER" "${CFG[@]}" \
    --set train.steps=1 --set train.out_dir="$TMPD/skip2"
[ -e "$TMPD/skip2/adapter_model.safetensors" ] && fail "an all-skipped lora_worker run wrote an adapter" ||
    pass "an all-skipped lora_worker run wrote no adapter"
# and one skipped step out of six still trains and exits 0
if env LORA_TEST_NAN=0:2 "$LORA" train "${CFG[@]}" --set train.out_dir="$TMPD/skip3" >"$TMPD/s3.log" 2>&1 &&
    grep -q "step skipped" "$TMPD/s3.log" && [ -f "$TMPD/skip3/adapter_model.safetensors" ]; then
    pass "one skipped step of six: exit 0 and an adapter"
else
    fail "one skipped step of six: $(tail -3 "$TMPD/s3.log")"
fi
finish
