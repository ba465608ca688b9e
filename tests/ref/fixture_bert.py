"""BERT families for make_fixture.py: "bert-cls" (BertForSequenceClassification,
peft task SEQ_CLS) and "bert-ner" (BertForTokenClassification, TOKEN_CLS).

Each is a draw (the random configuration, from a random.Random) and a build
(the HF model, five batches and the peft task, from a torch.Generator), with
the contract of make_fixture.py's draw_gpt2/build_gpt2. The layout matches the
shipped tests/fixtures/bert-tiny-cls: batches hold input_ids, attention_mask
(int64, 1 = token, 0 = padding; right padding, input_ids = pad_token_id there),
token_type_ids when the draw says so, and labels; meta.json says "family":
"bert" and "task": "SEQ_CLS" or "TOKEN_CLS".

What peft does with these (peft 0.21, checked by make_fixture.py bert-cls/bert-ner
for 30 seeds each):
  - task_type SEQ_CLS / TOKEN_CLS put "classifier" (and "score") in
    modules_to_save: the classifier is trained in full, saved in the adapter as
    base_model.model.classifier.weight / .bias, its gradient as <that>.grad.
  - "all-linear" for SEQ_CLS is every nn.Linear but the classifier: query, key,
    value, attention.output.dense, intermediate.dense, output.dense of every
    layer AND bert.pooler.dense. For TOKEN_CLS peft does not exclude the head
    (only SEQ_CLS heads are), and then refuses to wrap the LoRA'd classifier in
    modules_to_save (TypeError); exclude_modules=["classifier"] is the way out,
    so bert-ner draws that with "all-linear" (the saved adapter_config lists
    "classifier" among target_modules AND in exclude_modules: a reader must
    apply exclude_modules).
  - ["dense"] matches attention.output.dense, intermediate.dense, output.dense
    and (SEQ_CLS) pooler.dense; ["intermediate.dense", "output.dense"] matches
    attention.output.dense too (suffix after a '.').
Regression (bert-cls with num_labels = 1): float labels (B,), HF's
problem_type "regression" inferred at the first forward (base/config.json has
no problem_type; merged/config.json has it), loss MSE over the B sequences.
"""


def _draw_bert(rng, cls):
    H = rng.choice([1, 2, 3, 4])
    C = H * rng.choice([4, 8, 12, 16])
    T = rng.randint(2, 16)
    vocab = rng.randint(24, 400)
    cfg = dict(
        num_hidden_layers=rng.randint(1, 3),
        num_attention_heads=H,
        hidden_size=C,
        intermediate_size=rng.randint(C, 4 * C),
        vocab_size=vocab,
        max_position_embeddings=T + rng.randint(0, 16),
        type_vocab_size=rng.choice([1, 2, 2, 3]),
        layer_norm_eps=rng.choice([1e-12, 1e-12, 1e-5, 1e-6]),
        hidden_act=rng.choice(["gelu", "gelu", "gelu", "gelu_new"]),
        initializer_range=rng.choice([0.02, 0.05, 0.1]),
        pad_token_id=rng.choice([0, 0, 0, rng.randint(1, vocab - 1)]),
        # regression (num_labels 1) in about one bert-cls configuration in five
        num_labels=(1 if rng.random() < 0.2 else rng.randint(2, 5)) if cls else rng.randint(2, 7),
    )
    regex = (r".*layer\.0\.attention\.self\.key|.*pooler\.dense" if cls
             else r".*layer\.0\.(attention\.self\.query|output\.dense)")
    targets = rng.choice([["query", "value"], ["query", "key", "value"], ["dense"], ["attention.output.dense"],
                          ["intermediate.dense", "output.dense"], "all-linear", regex])
    # B >= 2 (drawn as 1..4, so every other field of a draw is as before): with one sequence a layer-0 query/key/
    # value gradient is a single small projection of the upstream gradient, and HF's own float32 result was 1.1e-4
    # from the exact (float64) one (seed 1668452394: B=1, T=2, key LoRA; ours 3e-6); every draw above 8e-6 in
    # 300 seeds had B = 1.
    d = dict(model=cfg, B=max(2, rng.randint(1, 4)), T=T, targets=targets, family="bert",
             token_types=rng.random() < 0.5, one_full_row=rng.random() < 0.7)
    if cls:
        d["loss"] = ("MSE over the B sequences (SEQ_CLS, num_labels 1: regression)" if cfg["num_labels"] == 1 else
                     "mean cross-entropy over the B sequences (SEQ_CLS, single_label_classification)")
    else:
        d["loss"] = "mean cross-entropy over the labeled tokens, -100 ignored (TOKEN_CLS)"
        d["drop_labels"] = rng.random() < 0.6  # also -100 at some real tokens (word pieces, [CLS], [SEP])
        if targets == "all-linear":
            d["exclude_modules"] = ["classifier"]  # see the module docstring
    return d


def draw_bert_cls(rng):
    return _draw_bert(rng, True)


def draw_bert_ner(rng):
    return _draw_bert(rng, False)


def _batch(d, gen, cls):
    import torch

    m = d["model"]
    B, T = d["B"], d["T"]
    lens = torch.randint(1, T + 1, (B,), generator=gen)  # at least one real token per row
    if d["one_full_row"]:
        lens[torch.randint(0, B, (1,), generator=gen)] = T
    if (lens < 2).all():
        # With one real token per row every softmax is over one key (exactly 1): the query and key gradients are 0
        # in exact arithmetic and float rounding on both sides (HF ~1e-12), so their relative error says nothing.
        # One row gets two or more tokens (draws that had one already are unchanged).
        lens[torch.randint(0, B, (1,), generator=gen)] = int(torch.randint(2, T + 1, (1,), generator=gen))
    mask = (torch.arange(T)[None, :] < lens[:, None]).to(torch.int64)
    ids = torch.randint(0, m["vocab_size"], (B, T), generator=gen)
    ids[mask == 0] = m["pad_token_id"]
    batch = {"input_ids": ids, "attention_mask": mask}
    if d["token_types"]:
        types = torch.randint(0, m["type_vocab_size"], (B, T), generator=gen)
        types[mask == 0] = 0
        batch["token_type_ids"] = types
    K = m["num_labels"]
    if cls:
        batch["labels"] = (torch.randn(B, generator=gen) if K == 1 else torch.randint(0, K, (B,), generator=gen))
    else:
        labels = torch.randint(0, K, (B, T), generator=gen)
        labels[mask == 0] = -100
        if d["drop_labels"]:
            labels[torch.rand(B, T, generator=gen) < 0.25] = -100
        if (labels == -100).all():  # the mean needs one labeled token
            labels[0, 0] = int(torch.randint(0, K, (1,), generator=gen))
        multi = lens >= 2
        if not (labels[multi] != -100).any():
            # Labeled tokens only in one-token rows: no loss reaches a softmax over two keys, the query and key
            # gradients are 0 and rounding on both sides (bert-ner seed 3118335986). Label a token of such a row.
            labels[int(torch.nonzero(multi)[0]), 0] = int(torch.randint(0, K, (1,), generator=gen))
        batch["labels"] = labels
    return batch


def _build(d, gen, cls):
    from transformers import BertConfig, BertForSequenceClassification, BertForTokenClassification

    config = BertConfig(**d["model"], hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = (BertForSequenceClassification if cls else BertForTokenClassification)(config)
    batches = [_batch(d, gen, cls) for _ in range(5)]
    return model, batches, "SEQ_CLS" if cls else "TOKEN_CLS"


def build_bert_cls(d, gen):
    return _build(d, gen, True)


def build_bert_ner(d, gen):
    return _build(d, gen, False)
