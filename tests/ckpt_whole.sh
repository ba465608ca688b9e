#!/bin/bash
# Checkpoints of an adapter with whole tensors (peft's modules_to_save) through lora_worker,
# on the GPT-2 fixture: LoRA on c_attn, c_proj plus modules_to_save = ln_f (a 1-D weight and
# bias trained whole), started from a peft folder (init_from) that lists it:
#  - the checkpoints are format version 2, ln_f's tensors rank 1 in all three trees;
#  - a run resumed from a middle checkpoint ends bitwise equal to the uninterrupted one;
#  - lora export --checkpoint gives the run's adapter bitwise, ln_f and modules_to_save included;
#  - resuming with other modules_to_save (none for a ln_f checkpoint, ln_f for a LoRA-only one)
#    is an error naming both.
set -u
. "$(dirname "$0")/lib.sh"
if ! command -v python3 >/dev/null; then
    fail "python3 is needed to write the test's peft folder (apt-get install python3)"
    finish
fi
"$LORA" tokens --vocab 320 --count 30000 --seed 5 --out "$TMPD/tiny.tok" >/dev/null || exit 1
base=tests/fixtures/gpt2-tiny/base
"$LORA" train --config tests/ps-tiny.ini --set data.train="$TMPD/tiny.tok" --set train.steps=1 \
    --set train.out_dir="$TMPD/lora-only" >/dev/null || exit 1
# the same adapter with modules_to_save = ["ln_f"] and ln_f's base values as peft saves them
python3 - "$base/model.safetensors" "$TMPD/lora-only" "$TMPD/with-ln_f" <<'EOF' || exit 1
import json, os, struct, sys
base, src, dst = sys.argv[1:4]
def load(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h, d = json.loads(b[8:8 + n]), b[8 + n:]
    return {k: (v["dtype"], v["shape"], d[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in h.items()
            if k != "__metadata__"}
bt, at = load(base), load(os.path.join(src, "adapter_model.safetensors"))
for n in ("transformer.ln_f.weight", "transformer.ln_f.bias"):
    at["base_model.model." + n] = bt[n]
hdr, data = {}, b""
for k in sorted(at):
    dt, sh, raw = at[k]
    hdr[k] = {"dtype": dt, "shape": sh, "data_offsets": [len(data), len(data) + len(raw)]}
    data += raw
hj = json.dumps(hdr).encode()
hj += b" " * (-len(hj) % 8)
os.makedirs(dst)
open(os.path.join(dst, "adapter_model.safetensors"), "wb").write(struct.pack("<Q", len(hj)) + hj + data)
c = json.load(open(os.path.join(src, "adapter_config.json")))
c["modules_to_save"] = ["ln_f"]
json.dump(c, open(os.path.join(dst, "adapter_config.json"), "w"), indent=1)
EOF
CFG=(--config tests/ps-tiny.ini --set data.train="$TMPD/tiny.tok" --set train.steps=40 --set train.log_every=10
    --set checkpoint.every_steps=10 --set checkpoint.keep=0)
NP=3
mpi $NP "${CFG[@]}" --set lora.init_from="$TMPD/with-ln_f" --set checkpoint.dir="$TMPD/straight" \
    --set train.out_dir="$TMPD/straight-adapter" >"$TMPD/straight.log" 2>&1 || { tail "$TMPD/straight.log"; exit 1; }
last="$TMPD/straight/step_00000040.h5"
tree=$(h5dump -A "$last" 2>&1)
n_grp=$(grep -c 'GROUP "base_model.model.transformer.ln_f"' <<<"$tree")
n_bias=$(grep -A2 'DATASET "bias"' <<<"$tree" | grep -c 'SIMPLE { ( 64 ) / ( 64 ) }')
if grep -A4 'ATTRIBUTE "format_version"' <<<"$tree" | grep -q '(0): 2' && [ "$n_grp" = 3 ] && [ "$n_bias" = 3 ] &&
    grep -A12 'ATTRIBUTE "modules_to_save"' <<<"$tree" | grep -q '"ln_f"'; then
    pass "the checkpoints are version 2 with ln_f's 1-D tensors in /adapter and both optimizer trees"
else
    fail "checkpoint layout: $n_grp ln_f groups, $n_bias rank-1 biases: $(grep -A4 format_version <<<"$tree" | tr -s ' \n' ' ')"
fi

"$LORA" show "$TMPD/with-ln_f/adapter_model.safetensors" base_model.model.transformer.ln_f.bias >"$TMPD/b0"
"$LORA" show "$TMPD/straight-adapter/adapter_model.safetensors" base_model.model.transformer.ln_f.bias >"$TMPD/b1"
[ -s "$TMPD/b1" ] && ! cmp -s "$TMPD/b0" "$TMPD/b1" && pass "ln_f was trained (its bias moved)" ||
    fail "ln_f's bias did not move or is missing from the run's adapter"

mkdir -p "$TMPD/resumed"
cp "$TMPD/straight/step_00000020.h5" "$TMPD/resumed/"
if mpi $NP "${CFG[@]}" --set lora.init_from="$TMPD/with-ln_f" --set checkpoint.dir="$TMPD/resumed" \
    --set train.out_dir="$TMPD/resumed-adapter" --resume auto >"$TMPD/resumed.log" 2>&1 &&
    grep -q "resume: .*step_00000020.h5: step 20 of 40" "$TMPD/resumed.log" &&
    "$LORA" compare "$TMPD/resumed-adapter" "$TMPD/straight-adapter" >"$TMPD/cmp" 2>&1; then
    pass "resumed from step 20, the run ends bitwise equal to the uninterrupted one ($(cut -d, -f1 "$TMPD/cmp"))"
else
    fail "resume with whole tensors: $(tail -2 "$TMPD/resumed.log") $(cat "$TMPD/cmp" 2>/dev/null)"
fi

if "$LORA" export --checkpoint "$last" --out "$TMPD/exported" >/dev/null &&
    "$LORA" compare "$TMPD/exported" "$TMPD/straight-adapter" >/dev/null &&
    grep -q '"modules_to_save":.*"ln_f"' "$TMPD/exported/adapter_config.json" &&
    "$LORA" show "$TMPD/exported/adapter_model.safetensors" base_model.model.transformer.ln_f.weight >/dev/null; then
    pass "lora export --checkpoint writes the run's adapter bitwise, ln_f and modules_to_save included"
else
    fail "export of a checkpoint with whole tensors"
fi

# other modules_to_save than the checkpoint's
mpi $NP "${CFG[@]}" --set lora.init_from="$TMPD/lora-only" --set checkpoint.dir="$TMPD/x1" \
    --resume "$TMPD/straight/step_00000020.h5" >"$TMPD/x1.log" 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -q "resume: this run trains modules_to_save = (none) as whole tensors, but .*step_00000020.h5 was trained with modules_to_save = ln_f" "$TMPD/x1.log"; then
    pass "resume without the checkpoint's modules_to_save: $(grep -o 'resume: this run.*' "$TMPD/x1.log" | head -1)"
else
    fail "resume without modules_to_save: rc $rc: $(tail -2 "$TMPD/x1.log")"
fi
mpi $NP "${CFG[@]}" --set lora.init_from="$TMPD/lora-only" --set train.steps=10 --set checkpoint.dir="$TMPD/lora" \
    >/dev/null 2>&1 || fail "LoRA-only run"
mpi $NP "${CFG[@]}" --set lora.init_from="$TMPD/with-ln_f" --set checkpoint.dir="$TMPD/x2" \
    --resume "$TMPD/lora/step_00000010.h5" >"$TMPD/x2.log" 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -q "modules_to_save = ln_f as whole tensors, but .*step_00000010.h5 was trained with modules_to_save = (none)" "$TMPD/x2.log"; then
    pass "resume of a LoRA-only checkpoint with modules_to_save: an error naming them"
else
    fail "resume of a LoRA-only checkpoint with modules_to_save: rc $rc: $(tail -2 "$TMPD/x2.log")"
fi
finish
