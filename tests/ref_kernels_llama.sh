#!/bin/bash
# The LLaMA-family kernels against HF transformers: tests/ref/kernels_llama_ref.py
# writes inputs and HF's outputs (RoPE, attention, RMSNorm, SwiGLU and their
# autograd gradients), then test_kernels_llama compares (relative error <= 1e-5
# per tensor). Fails when either step fails.
# usage: tests/ref_kernels_llama.sh [BUILD_DIR]   (LORA_REF_PY: the reference python, tests/ref/setup.sh prints it)
set -u
. "$(dirname "$0")/lib.sh"
PY=${LORA_REF_PY:?set LORA_REF_PY to the reference python (tests/ref/setup.sh prints it)}
export TRANSFORMERS_VERBOSITY=error HF_HUB_DISABLE_PROGRESS_BARS=1 HF_HUB_OFFLINE=1
if "$PY" tests/ref/kernels_llama_ref.py "$TMPD/kernels_llama_ref.safetensors"; then
    pass "kernels_llama_ref.py"
    if LORA_KERNELS_LLAMA_REF="$TMPD/kernels_llama_ref.safetensors" "$B/bin/test_kernels_llama"; then
        pass "test_kernels_llama against HF"
    else
        fail "test_kernels_llama against HF"
    fi
else
    fail "kernels_llama_ref.py (the reference values could not be made)"
fi
finish
