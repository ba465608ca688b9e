#!/bin/bash
# Round trips of the LLaMA family with the real HF stack (the reference environment, tests/ref/):
#  - greedy `lora generate` (KV cache) equals transformers' generate id for id, from ids (llama-tiny base,
#    with our adapter, merged; qwen2 and mistral with our adapters) and from a text prompt through a
#    tokenizer HF trains (the prompt's ids with LLaMA's BOS too);
#  - ours -> HF, for llama (the llama-tiny fixture, untied, every module a target), qwen2 (tied,
#    q/k/v biases, BF16 weights), mistral (head_dim given, sliding window, weights sharded in three
#    files with model.safetensors.index.json) and llama with every bias (F16 weights): an adapter
#    `lora train` wrote loads in PeftModel.from_pretrained with no missing or unexpected keys and
#    gives our logits, loss and in-memory validation loss; `lora merge`'s folder loads in
#    AutoModelForCausalLM.from_pretrained and gives our logits;
#  - lora_worker (BSP, 2 workers) with checkpoints on llama-tiny: the adapter exported from a
#    checkpoint loads in peft with the logits we compute through the HDF5 reader, and h5py reads
#    the checkpoint as docs/checkpoint-format.md says;
#  - the random models `lora init-model --family llama|mistral|qwen2` writes load in transformers with
#    our logits;
#  - HF -> ours: adapters peft trained (5 AdamW steps) on llama-tiny (all-linear) and on the qwen2
#    model give peft's logits and loss in `lora logits --adapter`, and peft's validation loss in
#    `lora eval --adapter`.
# usage: tests/ref_roundtrip_llama.sh BUILD_DIR   (LORA_REF_PY: the reference environment's python)
set -u
. "$(dirname "$0")/lib.sh"
PY=${LORA_REF_PY:?set LORA_REF_PY to the reference python (tests/ref/setup.sh prints it)}
HF="$PY tests/ref/hf_check.py"
export TRANSFORMERS_VERBOSITY=error HF_HUB_DISABLE_PROGRESS_BARS=1 HF_HUB_OFFLINE=1
. "$(dirname "$0")/ref_lib.sh"

ALL="q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"
ours_to_hf llama-tiny tests/fixtures/llama-tiny/base "$ALL" 16
step "llama-tiny: our merged model's logits equal our adapter's" $HF compare "$TMPD/llama-tiny/ours-merged.st" \
    "$TMPD/llama-tiny/ours.st"
# greedy generation with the KV cache (RoPE at each position, GQA) equals transformers' generate: from ids
# and from a text prompt (a byte-level BPE tokenizer HF trains, BOS from its post-processor), on the base,
# with our adapter, and on our merged model
gen_same "llama-tiny" tests/fixtures/llama-tiny/base - "1 17 200 3 45" 40
gen_same "llama-tiny + our adapter" tests/fixtures/llama-tiny/base "$TMPD/llama-tiny/adapter" "1 5 17 200 3" 40
gen_same "llama-tiny, our merged model" "$TMPD/llama-tiny/merged" - "1 5 17 200 3" 40
mkdir -p "$TMPD/llama-text"
cp tests/fixtures/llama-tiny/base/* "$TMPD/llama-text/"
step "llama-tiny: HF trains a byte-level BPE tokenizer for it" $PY tests/ref/predict_ref.py llama-tokenizer \
    "$TMPD/llama-text"
cp "$TMPD/llama-text/tokenizer.json" "$TMPD/llama-text/tokenizer_config.json" "$TMPD/llama-tiny/merged/"
gen_prompt_same "llama-tiny" "$TMPD/llama-text" - "The movie was absolutely wonderful!" 32
gen_prompt_same "llama-tiny + our adapter" "$TMPD/llama-text" "$TMPD/llama-tiny/adapter" "lighthouse (n):" 32
gen_prompt_same "llama-tiny, our merged model" "$TMPD/llama-tiny/merged" - "lighthouse (n):" 32

$HF random-model qwen2 31 "$TMPD/qwen2-base" --dtype bfloat16 2>/dev/null || fail "random qwen2 model"
ours_to_hf qwen2-bf16 "$TMPD/qwen2-base" "q_proj, v_proj, down_proj" 24
gen_same "qwen2 (BF16, tied) + our adapter" "$TMPD/qwen2-base" "$TMPD/qwen2-bf16/adapter" "1 9 33 7" 40
$HF random-model mistral 32 "$TMPD/mistral-base" --shard 150KB 2>/dev/null || fail "random mistral model"
ls "$TMPD/mistral-base" | grep -q "model-00003-of-00003.safetensors" && pass "the mistral model is in three shards" ||
    fail "the mistral model is not sharded: $(ls "$TMPD/mistral-base")"
ours_to_hf mistral-sharded "$TMPD/mistral-base" "k_proj, o_proj, gate_proj, up_proj" 32
gen_same "mistral (sharded, head_dim given) + our adapter" "$TMPD/mistral-base" "$TMPD/mistral-sharded/adapter" \
    "1 9 33 7" 40
$HF random-model llama 33 "$TMPD/llama-bias" --dtype float16 2>/dev/null || fail "random llama model"
ours_to_hf llama-biases-f16 "$TMPD/llama-bias" "$ALL" 20

# the random models `lora init-model --family` writes (config.json from the family's config_json) load in
# transformers with our logits
for fam in llama mistral qwen2; do
    d="$TMPD/init-$fam"
    "$LORA" init-model --family $fam --layers 2 --embd 64 --heads 4 --kv-heads 2 --inter 96 --vocab 320 \
        --positions 64 --out "$d" >/dev/null || { fail "init-model --family $fam"; continue; }
    $HF batch "$d" 14 2 16 "$d.batch" >/dev/null
    "$LORA" logits --model "$d" --input "$d.batch" --out "$d.ours" >/dev/null || { fail "$fam: lora logits"; continue; }
    step "lora init-model --family $fam: transformers loads it and gives our logits and loss" $HF hf-load "$d" \
        "$d.batch" "$d.ours"
done

# lora_worker with checkpoints on llama-tiny, export, and the independent checkpoint reader
d="$TMPD/ps"
mkdir -p "$d"
"$LORA" tokens --vocab 320 --count 20000 --seed 4 --out "$d/train.tok" >/dev/null
step "lora_worker (1 server, 2 workers, BSP) on llama-tiny writes checkpoints and an adapter" \
    mpi 3 --config tests/ps-llama.ini --set data.train="$d/train.tok" --set train.steps=4 \
    --set checkpoint.dir="$d/ckpt" --set checkpoint.every_steps=2 --set train.out_dir="$d/adapter"
step "lora export --checkpoint" "$LORA" export --checkpoint "$d/ckpt/step_00000004.h5" --out "$d/exported"
step "the exported adapter is the run's adapter, bitwise" "$LORA" compare "$d/exported" "$d/adapter"
$HF batch tests/fixtures/llama-tiny/base 12 2 16 "$d/batch.st" >/dev/null
step "lora logits from the checkpoint (the HDF5 reader)" "$LORA" logits --model tests/fixtures/llama-tiny/base \
    --checkpoint "$d/ckpt/step_00000004.h5" --input "$d/batch.st" --out "$d/ours.st"
step "peft loads the exported checkpoint adapter and gives our logits and loss" $HF peft-load \
    tests/fixtures/llama-tiny/base "$d/exported" "$d/batch.st" "$d/ours.st"
step "h5py reads the llama checkpoint as docs/checkpoint-format.md describes it" $HF h5-checkpoint \
    "$d/ckpt/step_00000004.h5" "$d/exported"

# peft -> ours
peft_to_ours() { # peft_to_ours TAG BASE TARGETS SEQ_LEN
    local tag=$1 base=$2 targets=$3 T=$4 d="$TMPD/peft-$1"
    mkdir -p "$d"
    $HF batch "$base" 13 2 "$T" "$d/batch.st" >/dev/null
    $HF tokens 320 400 21 "$d/val.bin"
    step "$tag: peft trains an adapter on $targets (5 AdamW steps) and saves it" $HF peft-train "$base" \
        "$d/adapter" "$d/batch.st" "$d/ref.st" 21 --targets "$targets"
    step "$tag: lora logits loads peft's adapter" "$LORA" logits --model "$base" --adapter "$d/adapter" \
        --input "$d/batch.st" --out "$d/ours.st"
    step "$tag: our logits and loss with peft's adapter equal peft's" $HF compare "$d/ours.st" "$d/ref.st"
    step "$tag: peft's validation loss with its adapter" $HF peft-eval "$base" "$d/adapter" "$d/val.bin" "$T" 7
    local ref_val ev
    ref_val=$(sed -n 's/^ *peft val loss \([0-9.]*\).*/\1/p' "$TMPD/step.log")
    ev=$("$LORA" eval --config tests/ps-llama.ini --set model.path="$base" --set data.train="$TMPD/ps/train.tok" \
        --set data.val="$d/val.bin" --set data.val_windows=7 --set data.seq_len="$T" --set lora.r=6 --adapter "$d/adapter" 2>&1)
    echo "$ev" | sed 's/^/     /'
    same_loss "$tag: lora eval --adapter with peft's adapter: the validation loss equals peft's" \
        "$(sed -n 's/^val loss \([0-9.]*\).*/\1/p' <<<"$ev")" "$ref_val"
}
peft_to_ours llama-tiny tests/fixtures/llama-tiny/base all-linear 16
peft_to_ours qwen2-bf16 "$TMPD/qwen2-base" "q_proj,k_proj,v_proj,o_proj" 24
finish
