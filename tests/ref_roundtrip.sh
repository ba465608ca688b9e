#!/bin/bash
# Round trips with the real HF stack (the reference environment, tests/ref/):
#  - ours -> HF: an adapter trained by `lora train` on a fixture model is loaded by
#    PeftModel.from_pretrained with no missing/unexpected keys and gives our logits and loss, and
#    the validation loss the trainer computed in memory at its end (so a bug shared by our peft
#    writer and reader cannot hide); the model `lora merge` writes is loaded by
#    AutoModelForCausalLM.from_pretrained and gives our logits; the same on the demo's F16 model;
#  - lora_worker (BSP, 2 workers) with checkpoints: the adapter `lora export --checkpoint` writes
#    loads in peft and gives the logits we compute from the checkpoint through the HDF5 reader;
#    h5py reads the checkpoint following only docs/checkpoint-format.md, and its adapter equals
#    the exported one; the same with peft's modules_to_save (an adapter peft saved with ln_f,
#    trained from by lora_worker: a version-2 checkpoint with ln_f's tensors trained whole);
#  - HF -> ours: an adapter peft trained (5 AdamW steps, save_pretrained) is loaded by
#    `lora logits --adapter` and `lora eval --adapter`: our logits, loss and validation loss
#    equal peft's.
# usage: tests/ref_roundtrip.sh BUILD_DIR   (LORA_REF_PY: the reference environment's python)
set -u
. "$(dirname "$0")/lib.sh"
PY=${LORA_REF_PY:?set LORA_REF_PY to the reference python (tests/ref/setup.sh prints it)}
HF="$PY tests/ref/hf_check.py"
export TRANSFORMERS_VERBOSITY=error HF_HUB_DISABLE_PROGRESS_BARS=1 HF_HUB_OFFLINE=1
. "$(dirname "$0")/ref_lib.sh"

ours_to_hf tiny tests/fixtures/gpt2-tiny/base "c_attn, c_proj, c_fc" 16
gen_same "the demo model" demo/tiny-gpt2-pydocs - "464 1611 286 257" 48
gen_same "tiny fixture + our adapter" tests/fixtures/gpt2-tiny/base "$TMPD/tiny/adapter" "5 17 200 3" 30
ours_to_hf demo demo/tiny-gpt2-pydocs "c_attn, c_proj" 32
# the demo model is stored F16: its merged model is F16 too, so it equals the
# adapter's logits only to F16 rounding; the tiny fixture (F32) to float rounding
step "tiny: our merged model's logits equal our adapter's" $HF compare "$TMPD/tiny/ours-merged.st" "$TMPD/tiny/ours.st"

# lora_worker with checkpoints, export, and an independent reader of the checkpoint
d="$TMPD/ps"
mkdir -p "$d"
"$LORA" tokens --vocab 320 --count 20000 --seed 4 --out "$d/train.tok" >/dev/null
step "lora_worker (1 server, 2 workers, BSP) writes checkpoints and an adapter" \
    mpi 3 --config tests/ps-tiny.ini --set data.train="$d/train.tok" --set train.steps=4 \
    --set checkpoint.dir="$d/ckpt" --set checkpoint.every_steps=2 --set train.out_dir="$d/adapter"
step "lora export --checkpoint" "$LORA" export --checkpoint "$d/ckpt/step_00000004.h5" --out "$d/exported"
step "the exported adapter is the run's adapter, bitwise" "$LORA" compare "$d/exported" "$d/adapter"
$HF batch tests/fixtures/gpt2-tiny/base 12 2 16 "$d/batch.st" >/dev/null
step "lora logits from the checkpoint (the HDF5 reader)" "$LORA" logits --model tests/fixtures/gpt2-tiny/base \
    --checkpoint "$d/ckpt/step_00000004.h5" --input "$d/batch.st" --out "$d/ours.st"
step "peft loads the exported checkpoint adapter and gives our logits and loss" $HF peft-load \
    tests/fixtures/gpt2-tiny/base "$d/exported" "$d/batch.st" "$d/ours.st"
step "h5py reads the checkpoint as docs/checkpoint-format.md describes it" $HF h5-checkpoint \
    "$d/ckpt/step_00000004.h5" "$d/exported"

# the same with whole tensors: peft's modules_to_save = ln_f (a 1-D weight and bias)
ps=$d
d="$TMPD/ps-save"
mkdir -p "$d"
step "peft saves an adapter with modules_to_save = ln_f" $HF peft-init tests/fixtures/gpt2-tiny/base "$d/init" ln_f
step "lora_worker trains from it (ln_f whole) and writes checkpoints" \
    mpi 3 --config tests/ps-tiny.ini --set data.train="$ps/train.tok" --set train.steps=4 \
    --set lora.init_from="$d/init" --set checkpoint.dir="$d/ckpt" --set checkpoint.every_steps=2 \
    --set train.out_dir="$d/adapter"
step "lora export --checkpoint with whole tensors" "$LORA" export --checkpoint "$d/ckpt/step_00000004.h5" \
    --out "$d/exported"
step "the exported adapter (ln_f included) is the run's adapter, bitwise" "$LORA" compare "$d/exported" "$d/adapter"
step "lora logits from the checkpoint with whole tensors" "$LORA" logits --model tests/fixtures/gpt2-tiny/base \
    --checkpoint "$d/ckpt/step_00000004.h5" --input "$ps/batch.st" --out "$d/ours.st"
step "peft loads the exported adapter with modules_to_save and gives our logits and loss" $HF peft-load \
    tests/fixtures/gpt2-tiny/base "$d/exported" "$ps/batch.st" "$d/ours.st"
step "h5py reads the version-2 checkpoint (whole groups) as docs/checkpoint-format.md describes it" \
    $HF h5-checkpoint "$d/ckpt/step_00000004.h5" "$d/exported"

# peft -> ours
d="$TMPD/peft"
mkdir -p "$d"
base=tests/fixtures/gpt2-tiny/base
$HF batch "$base" 13 2 16 "$d/batch.st" >/dev/null
$HF tokens 320 400 21 "$d/val.bin"
step "peft trains an adapter (5 AdamW steps) and saves it" $HF peft-train "$base" "$d/adapter" "$d/batch.st" \
    "$d/ref.st" 21
step "lora logits loads peft's adapter" "$LORA" logits --model "$base" --adapter "$d/adapter" \
    --input "$d/batch.st" --out "$d/ours.st"
step "our logits and loss with peft's adapter equal peft's" $HF compare "$d/ours.st" "$d/ref.st"
step "peft's validation loss with its adapter" $HF peft-eval "$base" "$d/adapter" "$d/val.bin" 16 7
ref_val=$(sed -n 's/^ *peft val loss \([0-9.]*\).*/\1/p' "$TMPD/step.log")
ev=$("$LORA" eval --config tests/ps-tiny.ini --set data.train="$TMPD/ps/train.tok" --set data.val="$d/val.bin" \
    --set data.val_windows=7 --set data.seq_len=16 --set lora.r=6 --adapter "$d/adapter" 2>&1)
echo "$ev" | sed 's/^/     /'
same_loss "lora eval --adapter with peft's adapter: the validation loss equals peft's" \
    "$(sed -n 's/^val loss \([0-9.]*\).*/\1/p' <<<"$ev")" "$ref_val"
finish
