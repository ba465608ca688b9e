#!/bin/bash
# The BERT kernels against HF's own modules: tests/ref/kernels_bert_ref.py writes
# inputs, outputs and autograd gradients of BertSelfAttention, BertAttention,
# BertLayer, BertEmbeddings, BertPooler, the activations and the losses;
# test_kernels_bert compares its kernels with them (1e-5 relative per tensor).
# Fails when either step fails.
# usage: tests/ref_kernels_bert.sh BUILD_DIR   (LORA_REF_PY: the reference environment's python)
set -u
. "$(dirname "$0")/lib.sh"
PY=${LORA_REF_PY:?set LORA_REF_PY to the reference python (tests/ref/setup.sh prints it)}
export TRANSFORMERS_VERBOSITY=error HF_HUB_DISABLE_PROGRESS_BARS=1 HF_HUB_OFFLINE=1
if $PY tests/ref/kernels_bert_ref.py "$TMPD/kernels_bert_ref.safetensors"; then
    pass "kernels_bert_ref.py wrote the HF reference"
    if LORA_KERNELS_BERT_REF="$TMPD/kernels_bert_ref.safetensors" "$B/bin/test_kernels_bert"; then
        pass "test_kernels_bert against HF"
    else
        fail "test_kernels_bert against HF"
    fi
else
    fail "kernels_bert_ref.py (the HF reference)"
fi
finish
