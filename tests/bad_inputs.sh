#!/bin/bash
# Every bad input gets a clear message and a non-zero exit, never a crash:
# each case runs the real command line and checks the exit status (1 or 2,
# not a signal) and that stderr names the problem.
set -u
B=${1:-build}
LORA="$B/bin/lora"
FIX=${LORA_FIXTURES:-tests/fixtures}
tmp=$(mktemp -d /tmp/lora-bad-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fails=0
expect_fail() { # name, expected substring, command...
    local name=$1 want=$2
    shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    if [ $rc -ge 1 ] && [ $rc -le 2 ] && grep -qF -- "$want" "$tmp/err"; then
        echo "ok   $name: $(head -c 300 "$tmp/err" | head -n 1)"
    else
        echo "FAIL $name: exit $rc, wanted a message with '$want', got: $(head -c 400 "$tmp/err")"
        fails=$((fails + 1))
    fi
}
train() { "$LORA" train --config configs/demo.ini --set train.steps=1 --set train.out_dir= "$@"; }

expect_fail "missing model folder" "/nonexistent/config.json: cannot open" train --set model.path=/nonexistent
mkdir -p "$tmp/corrupt"
cp demo/tiny-gpt2-pydocs/config.json "$tmp/corrupt/"
printf '\x20\x00\x00\x00\x00\x00\x00\x00{"wte.weight": {"dtype": "F32", "sha' >"$tmp/corrupt/model.safetensors"
expect_fail "corrupt safetensors header" "$tmp/corrupt/model.safetensors" train --set model.path="$tmp/corrupt"
head -c 5000 demo/tiny-gpt2-pydocs/model.safetensors >"$tmp/corrupt/model.safetensors"
expect_fail "truncated safetensors file" "$tmp/corrupt/model.safetensors" train --set model.path="$tmp/corrupt"
expect_fail "adapter shape mismatch with the base" "lora_A.weight" \
    train --set lora.init_from="$FIX/gpt2-tiny/lora-init" --set lora.r=4
expect_fail "unknown target module" "unknown target module 'q_proj'" train --set lora.targets=q_proj
expect_fail "r = 0" "r must be > 0" train --set lora.r=0
expect_fail "r < 0" "r must be > 0" train --set lora.r=-3
printf '[lora]\nr = 8\nfoo = 1\n' >"$tmp/unknown.ini"
expect_fail "unknown config key" "unknown key 'foo'" "$LORA" train --config "$tmp/unknown.ini"
printf '[lora]\nr = eight\n' >"$tmp/notint.ini"
expect_fail "config value not a number" "r" "$LORA" train --config "$tmp/notint.ini"
expect_fail "missing config file" "$tmp/none.ini" "$LORA" train --config "$tmp/none.ini"
expect_fail "missing data file" "/nonexistent/train.bin" train --set data.train=/nonexistent/train.bin
head -c 3000 demo/wordnet.val.bin >"$tmp/short.bin"
expect_fail "truncated token file" "$tmp/short.bin" train --set data.train="$tmp/short.bin"
expect_fail "tokens outside the vocabulary" "outside the model's vocabulary" \
    train --set model.path="$FIX/gpt2-tiny/base" --set data.seq_len=16
expect_fail "seq_len beyond n_positions" "n_positions" train --set data.seq_len=512
expect_fail "parity on a family not supported yet" "not supported yet" "$LORA" parity "$FIX/llama-tiny"
expect_fail "parity on a missing folder" "/nonexistent/meta.json" "$LORA" parity /nonexistent
expect_fail "merge with a missing adapter" "adapter_config.json" \
    "$LORA" merge --model demo/tiny-gpt2-pydocs --adapter /nonexistent --out "$tmp/m"
# lora tokenize
printf 'hello\n' >"$tmp/hello.txt"
expect_fail "tokenize: a folder without tokenizer files" "no tokenizer.json, vocab.json + merges.txt or vocab.txt" \
    "$LORA" tokenize --model "$tmp" "$tmp/hello.txt"
mkdir -p "$tmp/uni"
echo '{"model": {"type": "Unigram", "vocab": [["a", 0.0]]}}' >"$tmp/uni/tokenizer.json"
expect_fail "tokenize: a model type not implemented" "model type 'Unigram' is not implemented" \
    "$LORA" tokenize --model "$tmp/uni" "$tmp/hello.txt"
mkdir -p "$tmp/badmerge"
echo '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a zz"]}}' >"$tmp/badmerge/tokenizer.json"
expect_fail "tokenize: a merge outside the vocabulary" "model.merges: merge 0 uses 'zz'" \
    "$LORA" tokenize --model "$tmp/badmerge" "$tmp/hello.txt"
printf 'ok\nbad \xff byte\n' >"$tmp/latin1.txt"
expect_fail "tokenize: invalid UTF-8" "latin1.txt:2: text: invalid UTF-8 at byte 4" \
    "$LORA" tokenize --model demo/tiny-gpt2-pydocs "$tmp/latin1.txt"
expect_fail "tokenize --pair without a TAB" "--pair needs TEXT_A<TAB>TEXT_B" \
    "$LORA" tokenize --model demo/tiny-gpt2-pydocs --pair "$tmp/hello.txt"
expect_fail "tokenize --decode on text" "not a list of non-negative ids" \
    "$LORA" tokenize --model demo/tiny-gpt2-pydocs --decode "$tmp/hello.txt"
[ $fails -eq 0 ] && echo "bad inputs: all cases gave a clear error" || echo "bad inputs: $fails case(s) failed"
exit $((fails > 0))
