#!/bin/bash
# The test suite: every tests/test_* binary, the parity check on the shipped
# fixtures, the checks against the live HF reference environment (random-shape
# parity, peft/transformers round trips, h5py), the bad-input cases of the
# command line, the parameter server, checkpoints, multi-host, and (unless
# --quick) the convergence run on the WordNet task. Exits non-zero if anything
# failed.
#
# The reference environment (tests/ref/setup.sh) is installed on first use. If
# it cannot be: under CI=true that is a failure; with LORA_NO_REF=1 (which also
# skips the attempt) the rest runs and the checks that needed it are listed at
# the end as not run, in BUILD_DIR/not-run.txt (`make test` then fails at its
# end); otherwise the suite stops with a message saying how to install it.
# A test that cannot run on this machine (multihost.sh without root) exits 77
# after saying why; it is listed as not run the same way.
# usage: scripts/run_tests.sh BUILD_DIR [--quick]
set -u
B=${1:?usage: run_tests.sh BUILD_DIR [--quick]}
QUICK=${2:-}
export LORA_FIXTURES=${LORA_FIXTURES:-tests/fixtures}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
PARITY_N=${LORA_PARITY_N:-5}
# the shell tests shorten their longest loops under --quick (the sanitizer build)
[ "$QUICK" = "--quick" ] && export LORA_QUICK=1 || export LORA_QUICK=0
failed=()
not_run=()
rm -f "$B/not-run.txt"
REF_CHECKS=("random-shape parity vs HF + peft (gpt2, $PARITY_N configurations)"
    "HF round trips (peft and transformers load ours, we load peft's; h5py reads a checkpoint)"
    "BERT kernels vs HF's own modules (test_kernels_bert with LORA_KERNELS_BERT_REF)"
    "LLaMA kernels vs HF's own functions (test_kernels_llama with LORA_KERNELS_LLAMA_REF)"
    "metrics vs scikit-learn and seqeval (test_metrics with LORA_METRICS_REF)"
    "random-shape parity vs HF + peft (llama, $PARITY_N configurations)"
    "random-shape parity vs HF + peft (mistral, $PARITY_N configurations)"
    "random-shape parity vs HF + peft (qwen2, $PARITY_N configurations)"
    "HF round trips of the LLaMA family (llama, qwen2 BF16, mistral sharded; lora_worker checkpoint; peft's adapters)"
    "random-shape parity vs HF + peft (bert-cls, $PARITY_N configurations)"
    "random-shape parity vs HF + peft (bert-ner, $PARITY_N configurations)"
    "BERT round trips (peft loads our adapters, transformers our merged models, we load peft's)"
    "tokenizers vs HF tokenizers (lora tokenize, every kind, exact ids)"
    "lora predict vs transformers + peft (BERT sequence and token classification, adapter and merged)"
    "lora prep vs HF tokenizers + run_ner's alignment (input_ids, attention_mask, token_type_ids, labels)"
    "end to end: lora prep -> lora_worker with epochs -> predict (metrics by scikit-learn and seqeval) and generate (vs transformers)")
ref_ok=0
if [ "${CI:-}" != "true" ] && [ "${LORA_NO_REF:-}" = 1 ]; then
    not_run+=("${REF_CHECKS[@]}")
elif ref_py=$(tests/ref/setup.sh); then
    export LORA_REF_PY=$ref_py
    ref_ok=1
elif [ "${CI:-}" = "true" ]; then
    echo "FAIL: the reference environment could not be installed (CI=true: that is a failure)"
    failed+=("reference environment (tests/ref/setup.sh)" "${REF_CHECKS[@]}")
else
    echo "run_tests: the reference environment (tests/ref/requirements.txt) could not be installed." >&2
    echo "run_tests: it needs python3 with venv and PyPI; see tests/ref/setup.sh's message above, or run" >&2
    echo "run_tests:   tests/ref/setup.sh" >&2
    echo "run_tests: by hand. To run everything else and list what was not run: LORA_NO_REF=1 make test" >&2
    exit 1
fi
run() {
    local name=$1
    shift
    local t0=$SECONDS
    echo "=== $name"
    "$@"
    local rc=$?
    if [ $rc -eq 0 ]; then
        echo "--- ok   $name ($((SECONDS - t0)) s)"
    elif [ $rc -eq 77 ]; then # the test could not run here and said why: not passed, listed at the end
        echo "--- NOT RUN $name"
        not_run+=("$name (it says why above)")
    else
        echo "--- FAIL $name ($((SECONDS - t0)) s)"
        failed+=("$name")
    fi
}
for t in "$B"/bin/test_*; do
    run "$(basename "$t")" "$t"
done
run "parity gpt2-tiny" "$B/bin/lora" parity "$LORA_FIXTURES/gpt2-tiny"
run "parity llama-tiny" "$B/bin/lora" parity "$LORA_FIXTURES/llama-tiny"
run "parity bert-tiny-cls" "$B/bin/lora" parity "$LORA_FIXTURES/bert-tiny-cls"
if [ $ref_ok = 1 ]; then
    run "${REF_CHECKS[0]}" tests/ref_parity.sh "$B" gpt2 "$PARITY_N"
    [ "$QUICK" != "--quick" ] && run "${REF_CHECKS[1]}" tests/ref_roundtrip.sh "$B"
    run "${REF_CHECKS[2]}" tests/ref_kernels_bert.sh "$B"
    run "${REF_CHECKS[3]}" tests/ref_kernels_llama.sh "$B"
    run "${REF_CHECKS[4]}" tests/ref_metrics.sh "$B"
    run "${REF_CHECKS[5]}" tests/ref_parity.sh "$B" llama "$PARITY_N"
    run "${REF_CHECKS[6]}" tests/ref_parity.sh "$B" mistral "$PARITY_N"
    run "${REF_CHECKS[7]}" tests/ref_parity.sh "$B" qwen2 "$PARITY_N"
    [ "$QUICK" != "--quick" ] && run "${REF_CHECKS[8]}" tests/ref_roundtrip_llama.sh "$B"
    run "${REF_CHECKS[9]}" tests/ref_parity.sh "$B" bert-cls "$PARITY_N"
    run "${REF_CHECKS[10]}" tests/ref_parity.sh "$B" bert-ner "$PARITY_N"
    [ "$QUICK" != "--quick" ] && run "${REF_CHECKS[11]}" tests/ref_roundtrip_bert.sh "$B"
    [ "$QUICK" != "--quick" ] && run "${REF_CHECKS[12]}" tests/ref_tokenizer.sh "$B"
    [ "$QUICK" != "--quick" ] && run "${REF_CHECKS[13]}" tests/ref_predict.sh "$B"
    [ "$QUICK" != "--quick" ] && run "${REF_CHECKS[14]}" tests/ref_prep.sh "$B"
    [ "$QUICK" != "--quick" ] && run "${REF_CHECKS[15]}" tests/e2e.sh "$B"
    # mostly Python's time: once, in the normal build (their C side runs under the sanitizers in the
    # other tests, test_tokenizer included)
    [ "$QUICK" = "--quick" ] && echo "(the HF round trips and the tokenizer and lora prep comparisons run in the normal build only)"
fi
# the libFuzzer harnesses (build-fuzz, built by make test): the regression inputs and 2000 seeded runs each
[ "$QUICK" != "--quick" ] && run "fuzz smoke (every parser: tests/fuzz/regress, then -seed=1 -runs=2000)" scripts/run_fuzz.sh "${LORA_FUZZ_BUILD:-build-fuzz}" --smoke
run "bad inputs" tests/bad_inputs.sh "$B"
run "lora prep: SST-2, CoNLL and text samples into data lora train learns from; bad inputs named by file:line" tests/prep.sh "$B"
run "parameter server: equivalence (N = 1, 2, 4, 64; S = 1, 2)" tests/ps_equivalence.sh "$B"
run "parameter server: LLaMA (N = 1, 2, 4 vs one process; kill -9 and resume)" tests/ps_llama.sh "$B"
run "the parameter server with BERT (sequence and token classification, the classifier through checkpoints and resume)" tests/ps_bert.sh "$B"
run "parameter server: faults" tests/ps_faults.sh "$B"
run "checkpoints and resume" tests/ckpt_resume.sh "$B"
run "checkpoints and resume with whole tensors (modules_to_save)" tests/ckpt_whole.sh "$B"
run "resume refuses counters that do not fit the run (global batch, renamed file)" tests/resume_checks.sh "$B"
run "non-finite values: refused at load, divergence stops the run, all-skipped runs fail" tests/nonfinite.sh "$B"
run "the training loop: epochs, evaluation and exports per epoch, the best adapter" tests/train_loop.sh "$B"
run "the demo's script end to end (4 short steps, resume, re-run)" tests/demo.sh "$B"
run "multi-host over TCP (network namespaces: 2, 3, 4 hosts)" tests/multihost.sh "$B"
if [ "$QUICK" != "--quick" ]; then
    run "convergence (WordNet, 150 steps)" tests/convergence.sh "$B"
fi
echo
if [ ${#not_run[@]} -gt 0 ]; then
    printf '%s\n' "${not_run[@]}" >"$B/not-run.txt"
    echo "NOT RUN ($B; counted as not passed):"
    printf '  %s\n' "${not_run[@]}"
fi
if [ ${#failed[@]} -eq 0 ]; then
    [ ${#not_run[@]} -eq 0 ] && echo "all tests passed ($B)" || echo "all tests that ran passed ($B)"
else
    printf 'FAILED (%s):\n' "$B"
    printf '  %s\n' "${failed[@]}"
    exit 1
fi
