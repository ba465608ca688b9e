#!/bin/bash
# Round trips of BERT classifiers with the real HF stack (the reference environment, tests/ref/), for
# sequence classification (the shipped tests/fixtures/bert-tiny-cls), regression (num_labels 1) and token
# classification (small random models hf_check.py bert-base writes):
#  - ours -> HF: an adapter we write (LoRA + the classifier as peft's modules_to_save; `test_bert
#    make-adapter`, every value moved off peft's init, since our trainer does not train BERT yet) is loaded by
#    PeftModel.from_pretrained with no missing/unexpected keys and gives our logits and loss (`lora logits`,
#    relative error <= 1e-4) on a padded batch with token types; the model `lora merge` writes (the
#    classifier taken from the adapter) is loaded by AutoModelFor{Sequence,Token}Classification with no
#    missing/unexpected keys and gives our logits;
#  - HF -> ours: an adapter peft trained (5 AdamW steps, save_pretrained) gives peft's logits and loss in
#    `lora logits --adapter`.
# usage: tests/ref_roundtrip_bert.sh BUILD_DIR   (LORA_REF_PY: the reference environment's python)
set -u
. "$(dirname "$0")/lib.sh"
PY=${LORA_REF_PY:?set LORA_REF_PY to the reference python (tests/ref/setup.sh prints it)}
HF="$PY tests/ref/hf_check.py"
export TRANSFORMERS_VERBOSITY=error HF_HUB_DISABLE_PROGRESS_BARS=1 HF_HUB_OFFLINE=1
step() { # step NAME CMD...: runs CMD, its output indented; a failure is a FAIL named NAME
    local name=$1
    shift
    if "$@" >"$TMPD/step.log" 2>&1; then
        sed 's/^/     /' "$TMPD/step.log"
        pass "$name"
    else
        sed 's/^/     /' "$TMPD/step.log"
        fail "$name"
    fi
}

round_trip() { # round_trip TAG BASE TARGETS SEED
    local tag=$1 base=$2 targets=$3 seed=$4 d="$TMPD/$1"
    mkdir -p "$d"
    step "$tag: our adapter (LoRA on $targets + the classifier)" \
        "$B/bin/test_bert" make-adapter "$base" "$d/adapter" "$targets" 4 10 "$seed"
    step "$tag: a padded batch with token types and labels" $HF batch "$base" "$seed" 3 10 "$d/batch.st"
    step "$tag: lora logits with our adapter" \
        "$LORA" logits --model "$base" --adapter "$d/adapter" --input "$d/batch.st" --out "$d/ours.st"
    step "$tag: peft loads our adapter and gives our logits and loss" $HF peft-load "$base" "$d/adapter" \
        "$d/batch.st" "$d/ours.st"
    step "$tag: lora merge" "$LORA" merge --model "$base" --adapter "$d/adapter" --out "$d/merged"
    step "$tag: lora logits of our merged model" \
        "$LORA" logits --model "$d/merged" --input "$d/batch.st" --out "$d/ours-merged.st"
    step "$tag: transformers loads our merged model and gives our logits and loss" $HF hf-load "$d/merged" \
        "$d/batch.st" "$d/ours-merged.st"
    step "$tag: our merged model's logits equal our adapter's" $HF compare "$d/ours-merged.st" "$d/ours.st"
    step "$tag: peft trains an adapter (5 AdamW steps, classifier in modules_to_save) and saves it" \
        $HF peft-train "$base" "$d/peft" "$d/batch.st" "$d/ref.st" "$seed"
    step "$tag: lora logits loads peft's adapter" \
        "$LORA" logits --model "$base" --adapter "$d/peft" --input "$d/batch.st" --out "$d/ours-peft.st"
    step "$tag: our logits and loss with peft's adapter equal peft's" $HF compare "$d/ours-peft.st" "$d/ref.st"
}

round_trip seq-cls tests/fixtures/bert-tiny-cls/base "query,key,value,dense" 5
$HF bert-base "$TMPD/reg-base" Sequence 1 7 || fail "hf_check.py bert-base (regression)"
round_trip regression "$TMPD/reg-base" "all-linear" 7
$HF bert-base "$TMPD/tok-base" Token 5 9 || fail "hf_check.py bert-base (token classification)"
round_trip token-cls "$TMPD/tok-base" "all-linear" 9
finish
