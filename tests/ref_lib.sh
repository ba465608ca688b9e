# Shared by the round-trip scripts (tests/ref_roundtrip.sh, tests/ref_roundtrip_llama.sh),
# sourced after tests/lib.sh with HF set to the reference python's hf_check.py:
#   step NAME CMD...            runs CMD, its output indented; a failure is a FAIL named NAME
#   same_loss NAME OURS REF     two losses within 1e-4 relative (OURS printed with 4 decimals)
#   ours_to_hf TAG BASE TARGETS SEQ_LEN
#                               lora train on BASE writes an adapter that peft loads with our logits,
#                               loss and validation loss; the merged model loads in transformers
#   gen_same NAME MODEL ADAPTER|- IDS N
#                               greedy lora generate --ids equals transformers' generate, id for id
#   gen_prompt_same NAME MODEL ADAPTER|- PROMPT N
#                               the same from a text prompt: the prompt's ids (the folder's tokenizer)
#                               and the new ids equal transformers'
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

same_loss() { # same_loss NAME OURS REF: OURS is printed with 4 decimals: within 1e-4 relative plus half a unit
    if [ -n "$2" ] && [ -n "$3" ] &&
        awk -v a="$2" -v b="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-4 * b + 5e-5) }'; then
        pass "$1: $2 vs $3"
    else
        fail "$1: '$2' vs '$3'"
    fi
}

ours_to_hf() { # ours_to_hf TAG BASE TARGETS SEQ_LEN
    local tag=$1 base=$2 targets=$3 T=$4 d="$TMPD/$1"
    mkdir -p "$d"
    local V
    V=$(sed -n 's/^ *"vocab_size": *\([0-9]*\).*/\1/p' "$base/config.json")
    "$LORA" tokens --vocab "$V" --count 20000 --seed 3 --out "$d/train.tok" >/dev/null || { fail "$tag: tokens"; return; }
    $HF tokens "$V" 600 5 "$d/val.bin" || { fail "$tag: validation tokens"; return; }
    step "$tag: lora train (3 steps, targets $targets) writes a peft adapter" \
        "$LORA" train --config tests/ps-tiny.ini --set model.path="$base" --set data.train="$d/train.tok" \
        --set data.val="$d/val.bin" --set data.val_windows=5 \
        --set data.seq_len="$T" --set lora.targets="$targets" --set lora.r=6 --set lora.alpha=9 \
        --set lora.rslora=true --set optim.lr=2e-2 --set train.steps=3 --set train.out_dir="$d/adapter"
    local after
    after=$(sed -n 's/^ *val loss after: \([0-9.]*\).*/\1/p' "$TMPD/step.log")
    step "$tag: peft's validation loss with our adapter" $HF peft-eval "$base" "$d/adapter" "$d/val.bin" "$T" 5
    same_loss "$tag: the trainer's in-memory validation loss equals peft's with the adapter it wrote" "$after" \
        "$(sed -n 's/^ *peft val loss \([0-9.]*\).*/\1/p' "$TMPD/step.log")"
    step "$tag: a random batch" $HF batch "$base" 11 3 "$T" "$d/batch.st"
    step "$tag: lora logits with our adapter" \
        "$LORA" logits --model "$base" --adapter "$d/adapter" --input "$d/batch.st" --out "$d/ours.st"
    step "$tag: peft loads our adapter and gives our logits and loss" $HF peft-load "$base" "$d/adapter" \
        "$d/batch.st" "$d/ours.st"
    step "$tag: lora merge" "$LORA" merge --model "$base" --adapter "$d/adapter" --out "$d/merged"
    step "$tag: lora logits of our merged model" \
        "$LORA" logits --model "$d/merged" --input "$d/batch.st" --out "$d/ours-merged.st"
    step "$tag: transformers loads our merged model and gives our logits and loss" $HF hf-load "$d/merged" \
        "$d/batch.st" "$d/ours-merged.st"
}


# greedy generation with the KV cache equals transformers' generate, id for id (EOS ignored on both sides)
gen_same() { # gen_same NAME MODEL ADAPTER|- IDS N
    local ad=()
    [ "$3" != - ] && ad=(--adapter "$3")
    local ours theirs
    ours=$("$LORA" generate --model "$2" "${ad[@]}" --ids "$4" --max-new-tokens "$5" --ignore-eos true | sed -n 's/^ids: //p')
    theirs=$($HF generate "$2" "$3" "$4" "$5" | sed -n 's/^ids: //p')
    if [ -n "$ours" ] && [ "$ours" = "$theirs" ]; then
        pass "$1: greedy generate equals transformers' ($5 tokens: $(cut -c1-60 <<<"$ours")...)"
    else
        fail "$1: greedy generate: ours '$ours', transformers' '$theirs'"
    fi
}
gen_prompt_same() { # gen_prompt_same NAME MODEL ADAPTER|- PROMPT N
    local ad=()
    [ "$3" != - ] && ad=(--adapter "$3")
    local ours theirs
    ours=$("$LORA" generate --model "$2" "${ad[@]}" --prompt "$4" --max-new-tokens "$5" --ignore-eos true)
    theirs=$($HF generate-text "$2" "$3" "$4" "$5")
    local op tp oi ti
    op=$(sed -n 's/^prompt ids: //p' <<<"$ours") tp=$(sed -n 's/^prompt ids: //p' <<<"$theirs")
    oi=$(sed -n 's/^ids: //p' <<<"$ours") ti=$(sed -n 's/^ids: //p' <<<"$theirs")
    if [ -n "$op" ] && [ "$op" = "$tp" ] && [ -n "$oi" ] && [ "$oi" = "$ti" ] && grep -q '^text: ' <<<"$ours"; then
        pass "$1: greedy generate --prompt equals transformers' (prompt ids $op; $5 new: $(cut -c1-50 <<<"$oi")...)"
        sed -n 's/^text: /     text: /p' <<<"$ours" | cut -c1-120
    else
        fail "$1: generate --prompt: ours prompt '$op' ids '$oi', transformers' prompt '$tp' ids '$ti'"
    fi
}
