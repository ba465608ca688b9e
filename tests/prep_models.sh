# Sourced by tests/prep.sh and tests/e2e.sh: the models `lora prep`'s samples go with.
# prep_models DIR makes DIR/bert (the bert-tiny-cls fixture with tests/data/bert-vocab.txt, a
# WordPiece vocabulary of the samples' words), DIR/ner (the same weights with a 9-tag classifier,
# N(0, 0.02) seeded, and CoNLL's tag order in label2id), and random DIR/gpt2, DIR/llama models
# (lora init-model) with the demo's byte-level BPE tokenizer. Needs $LORA (tests/lib.sh).
prep_models() {
    local D=tests/data
    mkdir -p "$1/bert" "$1/ner"
    cp tests/fixtures/bert-tiny-cls/base/config.json tests/fixtures/bert-tiny-cls/base/model.safetensors "$1/bert/"
    cp $D/bert-vocab.txt "$1/bert/vocab.txt"
    cp $D/bert-vocab.txt "$1/ner/vocab.txt"
    # the NER model: the same weights with a 9-tag classifier (N(0, 0.02), seeded) and CoNLL's tag order in label2id
    python3 - "$1/bert" "$1/ner" <<'EOF' || fail "could not write the NER model"
import json, random, struct, sys
src, dst = sys.argv[1], sys.argv[2]
b = open(src + "/model.safetensors", "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n]); data = b[8 + n:]
tags = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
rng = random.Random(5)
out, blobs, off = {}, [], 0
for k, v in sorted((k, v) for k, v in h.items() if k != "__metadata__"):
    if k == "classifier.weight":
        raw, shape = struct.pack("<%df" % (9 * 64), *[rng.gauss(0, 0.02) for _ in range(9 * 64)]), [9, 64]
    elif k == "classifier.bias":
        raw, shape = struct.pack("<9f", *[0.0] * 9), [9]
    else:
        raw, shape = data[v["data_offsets"][0]:v["data_offsets"][1]], v["shape"]
    out[k] = {"dtype": v["dtype"], "shape": shape, "data_offsets": [off, off + len(raw)]}
    blobs.append(raw); off += len(raw)
hj = json.dumps(out).encode(); hj += b" " * (-len(hj) % 8)
open(dst + "/model.safetensors", "wb").write(struct.pack("<Q", len(hj)) + hj + b"".join(blobs))
c = json.load(open(src + "/config.json"))
c["architectures"] = ["BertForTokenClassification"]
c["id2label"] = {str(i): t for i, t in enumerate(tags)}
c["label2id"] = {t: i for i, t in enumerate(tags)}
json.dump(c, open(dst + "/config.json", "w"), indent=2)
EOF
    "$LORA" init-model --layers 2 --embd 64 --heads 4 --vocab 4096 --positions 128 --seed 3 --out "$1/gpt2" >/dev/null &&
        "$LORA" init-model --family llama --layers 2 --embd 64 --heads 4 --kv-heads 2 --inter 128 --vocab 4096 \
            --positions 128 --seed 3 --out "$1/llama" >/dev/null || fail "init-model"
    for m in gpt2 llama; do
        cp demo/tiny-gpt2-pydocs/tokenizer.json demo/tiny-gpt2-pydocs/tokenizer_config.json "$1/$m/"
    done
}
