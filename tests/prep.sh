#!/bin/bash
# `lora prep` on the samples of tests/data (CC0, see its LICENSE): an SST-2-format TSV (BERT
# sequence classification), a CoNLL-2003-format file (BERT token classification) and a folder
# of texts (GPT-2 and LLaMA causal LM); `lora train` then trains on each output and the
# training loss must fall (mean of the last 10 logged steps against the first 10). Then each
# bad input is a non-zero exit with a message naming file:line (and the column).
# Models: the bert-tiny-cls fixture with tests/data/bert-vocab.txt (a WordPiece vocabulary of
# the samples' words), the same with a 9-tag classifier and label2id for NER, and random
# GPT-2 / LLaMA models (lora init-model) with the demo's byte-level BPE tokenizer.
# usage: tests/prep.sh BUILD_DIR   (about 10 s)
set -u
. "$(dirname "$0")/lib.sh"
D=tests/data

# --- models (tests/prep_models.sh)
. "$(dirname "$0")/prep_models.sh"
prep_models "$TMPD"

# falls NAME LOG RATIO: the mean training loss of the last 10 steps is below RATIO x that of the first 10
falls() {
    local r
    r=$(awk -v want="$3" '/^step/ { split($0, a, "loss "); split(a[2], b, " "); l[++n] = b[1] }
        END { if (n < 20) { print "only " n " steps"; exit 1 }
              for (i = 1; i <= 10; i++) { f += l[i]; t += l[n - 10 + i] }
              printf "first 10 steps %.4f, last 10 %.4f (ratio %.3f, want < %s)", f / 10, t / 10, t / f, want
              exit !(t / f < want) }' "$2")
    if [ $? -eq 0 ]; then pass "$1: training loss falls: $r"; else fail "$1: training loss: $r"; fi
}
# prep_ok NAME ARGS...: lora prep succeeds; its output in $TMPD/prep.log
prep_ok() {
    local name=$1
    shift
    if "$LORA" prep "$@" >"$TMPD/prep.log" 2>&1; then
        pass "$name: $(head -1 "$TMPD/prep.log" | cut -c1-160)"
    else
        fail "$name: $(tail -2 "$TMPD/prep.log")"
    fi
}
TRAIN=(--config tests/ps-bert.ini --set data.batch_size=8 --set data.grad_accum=1 --set optim.schedule=constant
    --set optim.warmup_steps=0 --set lora.targets=all-linear --set lora.r=8 --set train.log_every=1)

# --- sequence classification: SST-2's layout, labels by number, a held-out fraction
prep_ok "seq_cls from SST-2's TSV" --task seq_cls --model "$TMPD/bert" --out "$TMPD/sst.st" --max-length 32 \
    --val-fraction 0.2 --seed 7 --val-out "$TMPD/sst-val.st" $D/sst2-sample.tsv
grep -q "32 examples.*validation: 8 examples" "$TMPD/prep.log" || fail "seq_cls: 32 + 8 examples expected"
"$LORA" train "${TRAIN[@]}" --set model.path="$TMPD/bert" --set data.train="$TMPD/sst.st" \
    --set data.val="$TMPD/sst-val.st" --set train.steps=150 --set optim.lr=3e-3 >"$TMPD/sst.log" 2>&1 ||
    fail "lora train on the SST-2 sample: $(tail -2 "$TMPD/sst.log")"
falls "BERT sequence classification on prep's SST-2 sample" "$TMPD/sst.log" 0.5
# the same rows as CSV (quoted fields, a comma and a quote inside) and JSONL give the same tensors
{
    echo 'label,sentence'
    tail -n +2 $D/sst2-sample.tsv | awk -F'\t' '{ gsub(/"/, "\"\"", $1); printf "%s,\"%s\"\n", $2, $1 }'
} >"$TMPD/sst.csv"
tail -n +2 $D/sst2-sample.tsv | python3 -c '
import json, sys
for l in sys.stdin:
    s, y = l.rstrip("\n").split("\t")
    print(json.dumps({"sentence": s, "label": int(y)}))' >"$TMPD/sst.jsonl"
prep_ok "seq_cls from all of the TSV" --task seq_cls --model "$TMPD/bert" --out "$TMPD/all-tsv.st" --max-length 32 $D/sst2-sample.tsv
prep_ok "seq_cls from CSV" --task seq_cls --model "$TMPD/bert" --out "$TMPD/all-csv.st" --max-length 32 "$TMPD/sst.csv"
prep_ok "seq_cls from JSONL" --task seq_cls --model "$TMPD/bert" --out "$TMPD/all-jsonl.st" --max-length 32 "$TMPD/sst.jsonl"
for f in csv jsonl; do
    same=1
    for t in input_ids attention_mask token_type_ids labels; do
        cmp -s <("$LORA" show "$TMPD/all-tsv.st" $t) <("$LORA" show "$TMPD/all-$f.st" $t) || same=0
    done
    [ $same = 1 ] && pass "seq_cls: the $f file gives the TSV's tensors" || fail "seq_cls: the $f file differs from the TSV"
done
sed 's/\t1 *$/\tpositive/; s/\t0 *$/\tnegative/' $D/sst2-sample.tsv >"$TMPD/named.tsv"
# names through label2id; numbers stay class ids beside a label2id
mkdir -p "$TMPD/bert-l2i" && cp "$TMPD/bert/"* "$TMPD/bert-l2i/"
sed -i 's/"vocab_size": 320/"vocab_size": 320, "id2label": {"0": "negative", "1": "positive"}, "label2id": {"positive": 1, "negative": 0}/' \
    "$TMPD/bert-l2i/config.json"
prep_ok "seq_cls with label names through label2id" --task seq_cls --model "$TMPD/bert-l2i" --out "$TMPD/l2i.st" \
    --max-length 32 "$TMPD/named.tsv"
cmp -s <("$LORA" show "$TMPD/all-tsv.st" labels) <("$LORA" show "$TMPD/l2i.st" labels) && grep -q label2id "$TMPD/prep.log" &&
    pass "seq_cls: names through label2id give the numbered ids" || fail "seq_cls: label2id mapping"
prep_ok "seq_cls: integer labels beside a label2id" --task seq_cls --model "$TMPD/bert-l2i" --out "$TMPD/l2n.st" \
    --max-length 32 $D/sst2-sample.tsv
grep -q "class ids" "$TMPD/prep.log" && pass "seq_cls: integers stay class ids with a label2id" || fail "seq_cls: integers with label2id"
# labels by name, collected: a labels file beside the output
prep_ok "seq_cls with label names (collected)" --task seq_cls --model "$TMPD/bert" --out "$TMPD/named.st" \
    --max-length 32 "$TMPD/named.tsv"
[ "$(cat "$TMPD/named.st.labels" 2>/dev/null | tr '\n' ' ')" = "negative positive " ] &&
    grep -q "0=negative 1=positive" "$TMPD/prep.log" && pass "seq_cls: collected labels sorted, written and printed" ||
    fail "seq_cls: labels file: $(cat "$TMPD/named.st.labels" 2>&1)"
cmp -s <("$LORA" show "$TMPD/all-tsv.st" labels) <("$LORA" show "$TMPD/named.st" labels) &&
    pass "seq_cls: named labels give the numbered ids" || fail "seq_cls: named labels differ from the numbers"

# --- token classification: CoNLL, tags through label2id, validation from a file
head -n 60 $D/conll-sample.txt >"$TMPD/conll-val.txt"
prep_ok "token_cls from CoNLL" --task token_cls --model "$TMPD/ner" --out "$TMPD/ner.st" --max-length 32 \
    --val-file "$TMPD/conll-val.txt" --val-out "$TMPD/ner-val.st" $D/conll-sample.txt
grep -q "29 sentences.*label2id" <(tr '\n' ' ' <"$TMPD/prep.log") || fail "token_cls: 29 sentences through label2id expected"
"$LORA" train "${TRAIN[@]}" --set model.path="$TMPD/ner" --set data.train="$TMPD/ner.st" \
    --set data.val="$TMPD/ner-val.st" --set train.steps=100 --set optim.lr=5e-3 >"$TMPD/nertrain.log" 2>&1 ||
    fail "lora train on the CoNLL sample: $(tail -2 "$TMPD/nertrain.log")"
falls "BERT token classification on prep's CoNLL sample" "$TMPD/nertrain.log" 0.5
prep_ok "token_cls --label-all-tokens" --task token_cls --model "$TMPD/ner" --out "$TMPD/ner-all.st" --max-length 32 \
    --label-all-tokens $D/conll-sample.txt
n1=$("$LORA" show "$TMPD/ner.st" labels | grep -vc -- -100) n2=$("$LORA" show "$TMPD/ner-all.st" labels | grep -vc -- -100)
[ "$n2" -gt "$n1" ] && pass "token_cls: --label-all-tokens labels more pieces ($n2 > $n1)" || fail "label-all: $n2 vs $n1"

# --- causal LM: a folder of texts, GPT-2 (the demo's pretrained model, LoRA) and LLaMA (random, its
# tokenizer the demo's; fully fine-tuned, as LoRA alone barely moves a random model in 60 steps)
lm_case() { # lm_case NAME MODEL RATIO TRAIN-SETTINGS...
    local m=$1 dir=$2 ratio=$3
    shift 3
    prep_ok "lm ($m) from a folder" --task lm --model "$dir" --out "$TMPD/$m.bin" --lines --val-fraction 0.3 \
        --val-out "$TMPD/$m-val.bin" $D/text
    "$LORA" train --config tests/ps-tiny.ini --set model.path="$dir" --set data.train="$TMPD/$m.bin" \
        --set data.val="$TMPD/$m-val.bin" --set data.seq_len=16 --set data.val_windows=2 --set train.steps=60 \
        --set train.log_every=1 "$@" >"$TMPD/$m.log" 2>&1 || fail "lora train ($m) on prep's tokens: $(tail -2 "$TMPD/$m.log")"
    falls "$m causal LM on prep's text folder" "$TMPD/$m.log" "$ratio"
}
lm_case gpt2 demo/tiny-gpt2-pydocs 0.5 --set lora.targets=c_attn,c_proj --set lora.r=8 --set optim.lr=5e-3
lm_case llama "$TMPD/llama" 0.6 --set lora.full_finetune=true --set optim.lr=3e-3
# the order of the output does not depend on the thread count
"$LORA" prep --task lm --model "$TMPD/gpt2" --out "$TMPD/t1.bin" --threads 1 $D/text >/dev/null &&
    "$LORA" prep --task lm --model "$TMPD/gpt2" --out "$TMPD/t4.bin" --threads 4 $D/text $D/text/01-lighthouse.txt >/dev/null &&
    "$LORA" prep --task lm --model "$TMPD/gpt2" --out "$TMPD/t4b.bin" --threads 4 $D/text >/dev/null &&
    cmp -s "$TMPD/t1.bin" "$TMPD/t4b.bin" && ! cmp -s "$TMPD/t1.bin" "$TMPD/t4.bin" &&
    pass "lm: 1 and 4 threads write the same file" || fail "lm: the output depends on the threads"
grep -q "4 documents" <("$LORA" prep --task lm --model "$TMPD/gpt2" --out "$TMPD/t1.bin" $D/text) &&
    pass "lm: the summary counts the 4 files as documents" || fail "lm: summary"

# the demo's validation file, a document per line, is the demo's token file (both uint16 after a 1024-byte header)
"$LORA" prep --task lm --model demo/tiny-gpt2-pydocs --lines --out "$TMPD/wn.bin" demo/wordnet.val.txt >"$TMPD/wn.log" &&
    cmp -s <(tail -c +1025 "$TMPD/wn.bin") <(tail -c +1025 demo/wordnet.val.bin) &&
    pass "lm: prep --lines of demo/wordnet.val.txt gives demo/wordnet.val.bin's tokens ($(grep -o "[0-9]* documents, [0-9]* tokens" "$TMPD/wn.log"))" ||
    fail "lm: demo/wordnet.val.txt does not give demo/wordnet.val.bin's tokens"

# --- bad inputs: non-zero exit, the message names file:line
# bad NAME WANT ARGS...: lora prep fails and stderr contains WANT
bad() {
    local name=$1 want=$2
    shift 2
    if "$LORA" prep "$@" >"$TMPD/bad.out" 2>"$TMPD/bad.err"; then
        fail "$name: exit 0"
    elif grep -qF -- "$want" "$TMPD/bad.err"; then
        pass "$name: $(head -1 "$TMPD/bad.err" | cut -c1-150)"
    else
        fail "$name: no '$want' in: $(cat "$TMPD/bad.err")"
    fi
}
S=(--task seq_cls --model "$TMPD/bert" --out "$TMPD/bad.st" --max-length 32)
N=(--task token_cls --model "$TMPD/ner" --out "$TMPD/bad.st" --max-length 32)
printf 'sentence\tlabel\ngood film\t1\nno label here\n' >"$TMPD/nolabel.tsv"
bad "a missing column" "nolabel.tsv:3: column 'label' (2) is missing" "${S[@]}" "$TMPD/nolabel.tsv"
printf 'text\tlabel\ngood film\t1\n' >"$TMPD/nocol.tsv"
bad "a column not in the header" "nocol.tsv:1: no column 'review'" "${S[@]}" --text-column review "$TMPD/nocol.tsv"
printf 'sentence\tlabel\ngood film\tpositive\nbad film\tmeh\n' >"$TMPD/unk.tsv"
bad "an unknown label (label2id)" "unk.tsv:2: column 'label' (2): unknown label 'positive'" \
    --task seq_cls --model "$TMPD/ner" --out "$TMPD/bad.st" --max-length 32 "$TMPD/unk.tsv"
printf 'sentence\tlabel\ngood\tpos\n' >"$TMPD/tr.tsv"
printf 'sentence\tlabel\nbad\tneg\n' >"$TMPD/va.tsv"
bad "a validation label the training files lack" "va.tsv:2: column 'label' (2): unknown label 'neg'" \
    "${S[@]}" --val-file "$TMPD/va.tsv" --val-out "$TMPD/bad-val.st" "$TMPD/tr.tsv"
printf 'sentence\tlabel\ngood film\t1\n  \t0\n' >"$TMPD/empty.tsv"
bad "an empty text" "empty.tsv:3: column 'sentence' (1) is empty" "${S[@]}" "$TMPD/empty.tsv"
printf 'sentence\tlabel\ngood film\t1\nbad \xff film\t0\n' >"$TMPD/utf8.tsv"
bad "invalid UTF-8" "utf8.tsv:3: column 'sentence' (1): invalid UTF-8 (byte 0xFF, byte 5 of the field" "${S[@]}" \
    "$TMPD/utf8.tsv"
printf 'Anna B-PER\nw\xe4nt O\n' >"$TMPD/utf8.conll"
bad "invalid UTF-8 in CoNLL" "utf8.conll:2: column 2 (byte): invalid UTF-8" "${N[@]}" "$TMPD/utf8.conll"
"$LORA" prep "${S[@]}" --invalid-utf8 replace "$TMPD/utf8.tsv" >"$TMPD/rep.log" 2>&1 &&
    grep -q "1 sequence replaced with U+FFFD" "$TMPD/rep.log" && pass "--invalid-utf8 replace says so" ||
    fail "--invalid-utf8 replace: $(cat "$TMPD/rep.log")"
printf 'sentence\tlabel\ngood film\t1\n%s\t0\n' "$(printf 'the %.0s' $(seq 40))" >"$TMPD/long.tsv"
bad "a text longer than --max-length with --no-truncation" "long.tsv:3: the text is 42 tokens" "${S[@]}" \
    --no-truncation "$TMPD/long.tsv"
"$LORA" prep "${S[@]}" "$TMPD/long.tsv" >/dev/null 2>&1 && pass "the same text truncates without --no-truncation" ||
    fail "truncation"
printf 'label,sentence\n1,"an open quote\n' >"$TMPD/quote.csv"
bad "an unterminated CSV quote" "quote.csv:2: a quoted field" "${S[@]}" "$TMPD/quote.csv"
printf '{"sentence": "good", "label": 1}\n{"text": "bad", "label": 0}\n' >"$TMPD/key.jsonl"
bad "a JSONL line without the key" 'key.jsonl:2: no key "sentence"' "${S[@]}" "$TMPD/key.jsonl"
printf 'Anna B-PER\nwent O\nhome\n' >"$TMPD/fields.conll"
bad "a CoNLL line with one field" "fields.conll:3: 1 field" "${N[@]}" "$TMPD/fields.conll"
printf 'Anna NNP B-PER\nwent O\n' >"$TMPD/fields2.conll"
bad "a CoNLL line with another field count" "fields2.conll:2: 2 fields, but line 1 has 3" "${N[@]}" "$TMPD/fields2.conll"
printf 'Anna B-PER\nwent B-XYZ\n' >"$TMPD/tag.conll"
bad "an unknown tag" "tag.conll:2: the tag: unknown label 'B-XYZ'" "${N[@]}" "$TMPD/tag.conll"
{ for i in $(seq 40); do echo "the O"; done; } >"$TMPD/longs.conll"
bad "a sentence longer than --max-length with --no-truncation" "longs.conll:1: the sentence is 42 tokens" \
    "${N[@]}" --no-truncation "$TMPD/longs.conll"
printf 'good \xc3\x28 text\n' >"$TMPD/utf8.txt"
bad "invalid UTF-8 in a text file (lm)" "utf8.txt:1: column 6 (byte): invalid UTF-8" --task lm --model "$TMPD/gpt2" \
    --out "$TMPD/bad.bin" "$TMPD/utf8.txt"
printf 'good\ntext \0 here\n' >"$TMPD/nul.txt"
bad "a NUL byte in a text file" "nul.txt:2: column 6 (byte): a NUL byte" --task lm --model "$TMPD/gpt2" \
    --out "$TMPD/bad.bin" "$TMPD/nul.txt"
bad "an unknown option" "unknown option --bogus" --task lm --model "$TMPD/gpt2" --out "$TMPD/bad.bin" --bogus 1 $D/text
"$LORA" prep --help | grep -q -- "--label-all-tokens" && "$LORA" --help | grep -q "lora prep" &&
    pass "lora prep --help and lora --help list the options" || fail "help"
finish
