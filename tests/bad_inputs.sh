#!/bin/bash
# Every bad input gets a clear message and a non-zero exit, never a crash:
# each case runs the real command line and checks the exit status (1 or 2,
# not a signal) and that stderr names the problem.
set -u
B=${1:-build}
# the ASan build: Open MPI's own allocations kept until exit are suppressed as in tests/lib.sh
export LSAN_OPTIONS="suppressions=$(pwd)/tests/lsan.supp:fast_unwind_on_malloc=0:print_suppressions=0"
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
expect_fail "threads = 100000" "[train] threads must be in [0, 1024]" train --set train.threads=100000
printf '[model]\npath = demo/tiny-gpt2-pydocs\n[lora]\nr = 4\nalpha = 8\nr = 8\n' >"$tmp/dup.ini"
expect_fail "a key set twice in a run config" "[lora] r is set twice (lines 4 and 6)" "$LORA" train --config "$tmp/dup.ini"
expect_fail "a size of 2^40" "[data] batch_size = '1099511627776' is too large (a 32-bit integer" \
    train --set data.batch_size=1099511627776
expect_fail "a count past 64 bits" "[train] steps = '99999999999999999999' is too large (a 64-bit integer)" \
    train --set train.steps=99999999999999999999
itrain() { "$LORA" train --config tests/ps-tiny.ini --set data.train=demo/wordnet.val.bin --set train.steps=1 \
    --set lora.init_from="$FIX/gpt2-tiny/lora-init" "$@"; }
expect_fail "init_from with another alpha" "has alpha=8 but the config says alpha=3" itrain --set lora.alpha=3
expect_fail "init_from with rsLoRA in the config only" "has alpha=8 but the config says alpha=8 (rsLoRA)" \
    itrain --set lora.rslora=true
expect_fail "init_from with other targets" "adapts 6 modules, but the config's targets select 2 modules" \
    itrain --set lora.targets=c_attn
expect_fail "init_from with other modules_to_save" "trains 0 whole tensors, but the config's modules_to_save = ln_f selects 2" \
    itrain --set lora.modules_to_save=ln_f
expect_fail "--resume without its value" "--resume needs auto or a checkpoint PATH" "$B/bin/lora_worker" \
    --config configs/demo.ini --resume
expect_fail "lora eval --adapter without its value" "--adapter needs a peft adapter folder" "$LORA" eval \
    --config configs/demo.ini --adapter
: >"$tmp/a-file"
expect_fail "checkpoint.dir is a file (fails at start)" "[checkpoint] dir: $tmp/a-file: not a directory" \
    "$B/bin/lora_worker" --config configs/demo.ini --set checkpoint.dir="$tmp/a-file"
expect_fail "lora merge with an unknown option (named, not the whole usage)" "lora merge: unknown option '--modle'" \
    "$LORA" merge --modle x --out y
expect_fail "lora merge without --out" "lora merge: --out DIR is required" "$LORA" merge --model x --adapter y
expect_fail "lora tokens with a non-number" "lora tokens: --vocab needs an integer, got 'abc'" \
    "$LORA" tokens --vocab abc --out "$tmp/t.tok"
expect_fail "lora logits with an option missing its value" "lora logits: --input needs a value" \
    "$LORA" logits --model x --input
expect_fail "lora with an unknown command" "lora: unknown command 'frob'" "$LORA" frob
"$LORA" tokens --vocab 300 --count 10 --out "$tmp/ten.tok" >/dev/null
expect_fail "a token file with too few tokens (the file named)" "$tmp/ten.tok: data order: 10 tokens are too few" \
    train --set data.train="$tmp/ten.tok"
# --help on every program: the usage on stdout, exit 0 (under mpirun for lora_worker: all ranks agree)
for prog in "$LORA" "$LORA merge" "$LORA train" "$B/bin/lora_worker" "$B/bin/lora_bench" "$B/bin/lora_tokbench"; do
    # shellcheck disable=SC2086
    if $prog --help >"$tmp/help" 2>&1 && grep -q "usage" "$tmp/help"; then
        echo "ok   $prog --help: exit 0, $(head -c 80 "$tmp/help" | head -n 1)"
    else
        echo "FAIL $prog --help: exit non-zero or no usage: $(head -c 200 "$tmp/help")"
        fails=$((fails + 1))
    fi
done
mkdir -p "$tmp/selfmerge" && cp -r "$FIX/gpt2-tiny/base/." "$tmp/selfmerge/"
expect_fail "lora merge --out the base model's own folder" "is the base model's own folder" \
    "$LORA" merge --model "$tmp/selfmerge" --adapter "$FIX/gpt2-tiny/lora-trained" --out "$tmp/selfmerge/"
for bad in '"lora_alpha": "32"' '"lora_alpha": null' '"lora_alpha": [8]' '"use_rslora": "true"' '"use_rslora": 1' \
    '"lora_dropout": "0.1"' '"bias": 0' '"use_dora": "no"'; do
    mkdir -p "$tmp/typed"
    cp "$FIX/gpt2-tiny/lora-init/adapter_model.safetensors" "$tmp/typed/"
    key=$(sed 's/^"\([a-z_]*\)".*/\1/' <<<"$bad")
    sed "s/\"$key\": [^,]*,/$bad,/" "$FIX/gpt2-tiny/lora-init/adapter_config.json" >"$tmp/typed/adapter_config.json"
    grep -qF "$bad" "$tmp/typed/adapter_config.json" || { echo "FAIL could not write the case $bad"; fails=$((fails + 1)); }
    expect_fail "adapter_config.json with $bad" "\"$key\" must be" \
        "$LORA" merge --model "$FIX/gpt2-tiny/base" --adapter "$tmp/typed" --out "$tmp/typed-out"
done
# a file size limit: the write fails with a message (not a silent SIGXFSZ) and leaves no temporary behind
limited() { bash -c 'ulimit -f 20; exec "$@"' _ "$@"; }
expect_fail "a file size limit (ulimit -f) while writing the adapter" "File too large" \
    limited "$LORA" train --config configs/demo.ini --set train.steps=1 --set train.out_dir="$tmp/fsz"
if ls "$tmp/fsz" 2>/dev/null | grep -q tmp; then
    echo "FAIL a file size limit left a temporary behind: $(ls "$tmp/fsz")"
    fails=$((fails + 1))
else
    echo "ok   a file size limit left no temporary behind"
fi
# a FIFO where a file is expected is refused at once, never waited on
mkdir -p "$tmp/fifo"
cp "$FIX/gpt2-tiny/base/config.json" "$tmp/fifo/"
mkfifo "$tmp/fifo/model.safetensors" "$tmp/fifo.tok"
expect_fail "a FIFO as model.safetensors" "not a regular file" timeout 10 \
    "$LORA" logits --model "$tmp/fifo" --input "$FIX/gpt2-tiny/train.safetensors"
expect_fail "a FIFO as the token file" "not a regular file" timeout 10 "$LORA" train --config configs/demo.ini \
    --set train.steps=1 --set train.out_dir= --set data.train="$tmp/fifo.tok"
mkdir -p "$tmp/fifocfg"
mkfifo "$tmp/fifocfg/config.json"
expect_fail "a FIFO as config.json" "not a regular file" timeout 10 "$LORA" logits --model "$tmp/fifocfg" \
    --input "$FIX/gpt2-tiny/train.safetensors"
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
mkdir -p "$tmp/falcon/base"
cp "$FIX/gpt2-tiny/meta.json" "$tmp/falcon/"
printf '{"model_type": "falcon", "architectures": ["FalconForCausalLM"]}\n' >"$tmp/falcon/base/config.json"
expect_fail "parity on a family not supported yet" 'model_type "falcon" is not supported yet' "$LORA" parity "$tmp/falcon"
expect_fail "parity on a missing folder" "/nonexistent/meta.json" "$LORA" parity /nonexistent
expect_fail "merge with a missing adapter" "adapter_config.json" \
    "$LORA" merge --model demo/tiny-gpt2-pydocs --adapter /nonexistent --out "$tmp/m"

# the LLaMA family (configs/llama-tiny.ini on the llama-tiny fixture model, a
# copy of it with one thing broken each time)
"$LORA" tokens --vocab 320 --count 5000 --out "$tmp/l.tok" >/dev/null
ltrain() { "$LORA" train --config configs/llama-tiny.ini --set train.steps=1 --set train.out_dir= \
    --set data.train="$tmp/l.tok" --set data.val= --set data.seq_len=16 "$@"; }
lbad() { # lbad SED_EXPR: $tmp/lb, the fixture model with config.json edited by sed
    rm -rf "$tmp/lb"
    cp -r "$FIX/llama-tiny/base" "$tmp/lb"
    chmod -R u+w "$tmp/lb"
    sed -i "$1" "$tmp/lb/config.json"
}
lbad '/"hidden_size"/d'
expect_fail "llama: a missing config field" "$tmp/lb/config.json: missing \"hidden_size\"" ltrain --set model.path="$tmp/lb"
lbad 's/"num_attention_heads": 4/"num_attention_heads": "4"/'
expect_fail "llama: a wrongly typed config field" "$tmp/lb/config.json: \"num_attention_heads\" must be an integer" \
    ltrain --set model.path="$tmp/lb"
lbad 's/"num_attention_heads": 4/"num_attention_heads": 6/'
expect_fail "llama: hidden size not a multiple of the heads" "hidden_size 64 is not a multiple of num_attention_heads 6" \
    ltrain --set model.path="$tmp/lb"
lbad 's/"num_key_value_heads": 2/"num_key_value_heads": 3/'
expect_fail "llama: heads not a multiple of the KV heads" \
    "num_attention_heads 4 is not a multiple of num_key_value_heads 3" ltrain --set model.path="$tmp/lb"
lbad 's/"num_hidden_layers": 2/"num_hidden_layers": 100000000/'
expect_fail "llama: a layer count too large to allocate (checked first)" "\"num_hidden_layers\" = 100000000 is outside" \
    ltrain --set model.path="$tmp/lb"
lbad 's/"num_hidden_layers": 2/"num_hidden_layers": 1024/; s/"hidden_size": 64/"hidden_size": 65536/; s/"intermediate_size": 176/"intermediate_size": 262144/'
expect_fail "llama: sizes whose product cannot be allocated (checked first)" "more than the 274877906944 this engine can hold" \
    ltrain --set model.path="$tmp/lb"
lbad 's/"rope_type": "default"/"rope_type": "llama3"/'
expect_fail "llama: a rope scaling type not implemented" "rope_parameters.rope_type \"llama3\" is not supported yet" \
    ltrain --set model.path="$tmp/lb"
lbad 's/"hidden_act": "silu"/"hidden_act": "gelu"/'
expect_fail "llama: an activation other than silu" "hidden_act \"gelu\" is not supported" ltrain --set model.path="$tmp/lb"
lbad 's/"model_type": "llama"/"model_type": "mistral", "sliding_window": 8/'
expect_fail "mistral: seq_len beyond the sliding window" "[data] seq_len: sequences of 16 tokens are longer than the mistral model's sliding_window 8" \
    ltrain --set model.path="$tmp/lb"
lbad 's/^//'
mv "$tmp/lb/model.safetensors" "$tmp/lb/model-00001-of-00002.safetensors"
printf '{"metadata": {}, "weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors", "lm_head.weight": "model-00002-of-00002.safetensors"}}\n' \
    >"$tmp/lb/model.safetensors.index.json"
expect_fail "llama: a sharded index naming a missing shard" "shard $tmp/lb/model-00002-of-00002.safetensors named in the index (for lm_head.weight) is missing" \
    ltrain --set model.path="$tmp/lb"
expect_fail "llama: a target module the family does not have" \
    "unknown target module 'c_attn': it matches no module of the model (llama modules: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj" \
    ltrain --set lora.targets=c_attn
expect_fail "llama: an adapter of another family" "target modules 'c_proj', 'c_attn' match no module of the model (llama modules" ltrain --set lora.init_from="$FIX/gpt2-tiny/lora-init" --set lora.r=4
# BERT: config.json fields, shapes, targets, labels (each message names the file and the field)
BERT="$FIX/bert-tiny-cls"
bert_cfg() { # bert_cfg NAME PYTHON-EXPR-ON-c: a copy of the fixture's base with config.json edited
    mkdir -p "$tmp/$1"
    cp "$BERT/base/model.safetensors" "$tmp/$1/"
    python3 -c "import json,sys; c=json.load(open(sys.argv[1])); $2; json.dump(c, open(sys.argv[2], 'w'))" \
        "$BERT/base/config.json" "$tmp/$1/config.json"
}
st_ints() { # st_ints OUT NAME:d0xd1:v,v,... ...: a safetensors file of int64 tensors (stdlib python)
    python3 - "$@" <<'PY'
import json, struct, sys
hdr, data = {}, b""
for spec in sys.argv[2:]:
    name, shape, vals = spec.split(":")
    shape, vals = [int(x) for x in shape.split("x")], [int(x) for x in vals.split(",")]
    hdr[name] = {"dtype": "I64", "shape": shape, "data_offsets": [len(data), len(data) + 8 * len(vals)]}
    data += struct.pack("<%dq" % len(vals), *vals)
h = json.dumps(hdr).encode()
h += b" " * (-len(h) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + data)
PY
}
st_ints "$tmp/bert-batch.st" input_ids:2x4:2,7,9,0,5,6,0,0 attention_mask:2x4:1,1,1,0,1,1,0,0 labels:2:1,0
logits() { "$LORA" logits --model "$1" --input "${2:-$tmp/bert-batch.st}" "${@:3}"; }
bert_cfg b-miss "del c['hidden_size']"
expect_fail "bert: missing config field" "b-miss/config.json: missing \"hidden_size\"" logits "$tmp/b-miss"
bert_cfg b-type "c['num_attention_heads'] = '4'"
expect_fail "bert: wrong-typed config field" "b-type/config.json: \"num_attention_heads\" must be an integer" \
    logits "$tmp/b-type"
bert_cfg b-arch "c['architectures'] = ['BertForMaskedLM']"
expect_fail "bert: an architecture the family does not have" 'architectures "BertForMaskedLM" is not supported' \
    logits "$tmp/b-arch"
bert_cfg b-noarch "del c['architectures']"
expect_fail "bert: no architectures" "b-noarch/config.json: missing \"architectures\"" logits "$tmp/b-noarch"
bert_cfg b-heads "c['num_attention_heads'] = 5"
expect_fail "bert: hidden_size not a multiple of the heads" \
    "b-heads/config.json: hidden_size 64 is not a multiple of num_attention_heads 5" logits "$tmp/b-heads"
bert_cfg b-big "c['vocab_size'] = 10**8"
expect_fail "bert: a size out of range" "b-big/config.json: \"vocab_size\" = 100000000 is outside" logits "$tmp/b-big"
bert_cfg b-huge "c.update(hidden_size=65536, num_attention_heads=4, intermediate_size=262144, num_hidden_layers=1000)"
expect_fail "bert: shapes too large (before allocating)" "b-huge/config.json: these sizes make" logits "$tmp/b-huge"
bert_cfg b-labels "c['id2label'] = {'0': 'a', '1': 'b', '2': 'c'}"
expect_fail "bert: id2label disagrees with the classifier" \
    "tensor 'classifier.weight' has shape (2, 64) but config.json gives (3, 64)" logits "$tmp/b-labels"
bert_cfg b-prob "c['problem_type'] = 'multi_label_classification'"
expect_fail "bert: a problem_type not supported" 'problem_type "multi_label_classification" is not supported' \
    logits "$tmp/b-prob"
mkdir -p "$tmp/b-target"
cp "$BERT/lora-init/adapter_model.safetensors" "$tmp/b-target/"
python3 -c "import json,sys; c=json.load(open(sys.argv[1])); c['target_modules']=['c_attn']; json.dump(c, open(sys.argv[2],'w'))" \
    "$BERT/lora-init/adapter_config.json" "$tmp/b-target/adapter_config.json"
expect_fail "bert: a target module the family does not have (its modules named)" \
    "b-target/adapter_config.json: target modules 'c_attn' match no module of the model (bert modules: query, key" \
    logits "$BERT/base" "" --adapter "$tmp/b-target"
st_ints "$tmp/bert-badlabel.st" input_ids:2x4:2,7,9,0,5,6,0,0 attention_mask:2x4:1,1,1,0,1,1,0,0 labels:2:1,2
expect_fail "bert: a classification label outside num_labels" \
    "bert-badlabel.st: labels[1] = 2 is outside the model's 2 labels" logits "$BERT/base" "$tmp/bert-badlabel.st"
st_ints "$tmp/bert-badtype.st" input_ids:1x3:2,7,9 token_type_ids:1x3:0,1,2
expect_fail "bert: a token type outside type_vocab_size" \
    "bert-badtype.st: token_type_ids[2] = 2 is outside the model's 2 token types" logits "$BERT/base" "$tmp/bert-badtype.st"
st_ints "$tmp/bert-badshape.st" input_ids:2x4:2,7,9,0,5,6,0,0 labels:2x4:1,0,1,0,1,0,1,0
expect_fail "bert: sequence labels of the wrong shape" "bert-badshape.st: tensor 'labels' must have shape (2)" \
    logits "$BERT/base" "$tmp/bert-badshape.st"
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
# lora predict and lora generate on the wrong model, input or folder
BERT=$FIX/bert-tiny-cls/base
expect_fail "predict: a missing adapter" "/nonexistent" "$LORA" predict --model "$BERT" --adapter /nonexistent --text hi
expect_fail "predict: a causal LM" "is a gpt2 CAUSAL_LM model: predict takes a classifier" \
    "$LORA" predict --model demo/tiny-gpt2-pydocs --text hi
expect_fail "predict: an empty --text" "--text is empty" "$LORA" predict --model "$BERT" --text " "
expect_fail "predict: neither --text nor --file" "give the input as --text TEXT or --file FILE" \
    "$LORA" predict --model "$BERT"
expect_fail "predict: a folder without a tokenizer" "no tokenizer.json, vocab.json + merges.txt or vocab.txt" \
    "$LORA" predict --model "$BERT" --text hi
mkdir -p "$tmp/bert-big" "$tmp/bert-vocab"
cp "$BERT"/* demo/tiny-gpt2-pydocs/tokenizer.json "$tmp/bert-big/"
expect_fail "predict: a tokenizer larger than the model's vocabulary" "it is not this model's tokenizer" \
    "$LORA" predict --model "$tmp/bert-big" --text hi
cp "$BERT"/* "$tmp/bert-vocab/"
printf '%s\n' "[PAD]" "[UNK]" "[CLS]" "[SEP]" "[MASK]" a b c d e f g h i j k l m n o p q r s t u v w x y z >"$tmp/bert-vocab/vocab.txt"
printf 'a b c\n\nd e\n' >"$tmp/lines.txt"
expect_fail "predict --file: an empty line" "lines.txt:2: the text is empty" \
    "$LORA" predict --model "$tmp/bert-vocab" --file "$tmp/lines.txt"
expect_fail "predict --file: a missing file" "/nonexistent.txt: cannot open" \
    "$LORA" predict --model "$tmp/bert-vocab" --file /nonexistent.txt
expect_fail "generate: a classification model" "is a bert SEQ_CLS model: generate takes a causal LM" \
    "$LORA" generate --model "$BERT" --ids "1 2 3"
expect_fail "generate --prompt: a folder without a tokenizer" "no tokenizer.json, vocab.json + merges.txt or vocab.txt" \
    "$LORA" generate --model "$FIX/llama-tiny/base" --prompt "hello"
expect_fail "generate: both --prompt and --ids" "give the prompt as --prompt TEXT or as --ids" \
    "$LORA" generate --model demo/tiny-gpt2-pydocs --prompt hi --ids "1 2"
expect_fail "generate: an empty --prompt" "--prompt is empty" "$LORA" generate --model demo/tiny-gpt2-pydocs --prompt ""
expect_fail "generate: a missing adapter" "/nonexistent" \
    "$LORA" generate --model demo/tiny-gpt2-pydocs --adapter /nonexistent --prompt hi
[ $fails -eq 0 ] && echo "bad inputs: all cases gave a clear error" || echo "bad inputs: $fails case(s) failed"
exit $((fails > 0))
