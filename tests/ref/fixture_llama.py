"""The LLaMA-family decoders for make_fixture.py: LlamaForCausalLM, MistralForCausalLM and
Qwen2ForCausalLM share one graph (RMSNorm, RoPE, grouped-query attention, SwiGLU MLP) and
differ in their config and biases:

  llama    attention_bias gives q, k, v AND o_proj biases; mlp_bias gives gate/up/down biases
  mistral  no biases; sliding_window (drawn >= T, or None, so the window never cuts: the C side
           then computes plain causal attention)
  qwen2    q, k, v biases always, o_proj and the MLP never; use_sliding_window sometimes, with a
           window >= T (layer_types then marks layers >= max_window_layers "sliding_attention")

Each family is draw_<family>(rng) -> dict(model=config kwargs, B, T, targets, masked_labels) and
build_<family>(d, gen) -> (model, batches, "CAUSAL_LM"), the contract of draw_gpt2/build_gpt2.
transformers 5 keeps rope_theta under config.rope_parameters (written so in config.json), so the
draw gives rope_parameters={"rope_type": "default", "rope_theta": theta}.
"""
import torch

TARGETS = [
    ["q_proj", "v_proj"], ["q_proj", "k_proj", "v_proj", "o_proj"], ["gate_proj", "up_proj", "down_proj"],
    "all-linear", ["q_proj"], ["k_proj"], ["v_proj"], ["o_proj"], ["gate_proj"], ["up_proj"], ["down_proj"],
    r".*layers\.0\.self_attn\.(q|v)_proj",
]


def _draw(rng, family):
    Hkv = rng.choice([1, 2, 3])
    G = rng.choice([1, 2, 4])  # GQA ratio: num_key_value_heads divides num_attention_heads
    H = G * Hkv
    # HF requires hidden % heads == 0 (even with head_dim given) and RoPE an even head_dim
    C = H * rng.choice([4, 6, 8, 8, 12, 16, 16])
    head_dim = None
    if rng.random() < 0.35:
        head_dim = rng.choice([d for d in (4, 6, 8, 10, 12, 16, 24, 32) if d != C // H])
    # T >= 3: with T = 2 the one query that has a target sees one key, so every q_proj/k_proj gradient is
    # exactly 0 and HF's reference is float noise (~1e-11) that no relative error can be checked against
    # (max(3, ...) keeps the draws after this one as they were)
    T = max(3, rng.randint(2, 20))
    cfg = dict(
        num_hidden_layers=rng.randint(1, 3),
        num_attention_heads=H,
        num_key_value_heads=Hkv,
        hidden_size=C,
        intermediate_size=rng.randint(max(4, C // 2), 4 * C),
        vocab_size=rng.randint(24, 400),
        max_position_embeddings=T + rng.randint(0, 16),
        rms_norm_eps=rng.choice([1e-5, 1e-6, 1e-3]),
        rope_parameters={"rope_type": "default",
                         "rope_theta": rng.choice([10000.0, 10000.0, 500000.0, 1000000.0,
                                                   float(round(rng.uniform(50.0, 1e5), 1))])},
        tie_word_embeddings=rng.random() < 0.5,
        initializer_range=rng.choice([0.02, 0.05, 0.1]),
        hidden_act="silu",
    )
    if head_dim is not None:
        cfg["head_dim"] = head_dim
    if family == "llama":
        cfg.update(attention_bias=rng.random() < 0.3, mlp_bias=rng.random() < 0.2)
    elif family == "mistral":
        cfg["sliding_window"] = rng.choice([None, T, T + rng.randint(1, 16), 4096])
    elif family == "qwen2":
        if rng.random() < 0.3:
            cfg.update(use_sliding_window=True, sliding_window=T + rng.randint(0, 16),
                       max_window_layers=rng.randint(0, cfg["num_hidden_layers"]))
    else:
        raise ValueError(f"fixture_llama: unknown family {family!r}")
    if family != "llama":  # bos/eos 1 and 2 as Llama's defaults (Qwen2's are None)
        cfg.update(bos_token_id=1, eos_token_id=2)
    return dict(model=cfg, B=rng.randint(1, 3), T=T, targets=rng.choice(TARGETS), masked_labels=rng.random() < 0.4)


def _build(d, gen, family):
    import transformers

    cfg_cls, model_cls = {
        "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
        "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM),
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
    }[family]
    m = d["model"]
    assert m.get("sliding_window") is None or m["sliding_window"] >= d["T"], "the window must not cut"
    config = cfg_cls(**m, attention_dropout=0.0)
    model = model_cls(config)
    batches = []
    for _ in range(5):
        ids = torch.randint(0, m["vocab_size"], (d["B"], d["T"]), generator=gen)
        # Redraw a batch in which every row's first T-1 tokens are one token repeated: its targeted queries
        # then see copies of one value vector, the attention output does not depend on the attention weights,
        # and the q_proj/k_proj gradients are exactly 0 (the reference float noise, as with T = 2).
        while all(len(set(row[:-1].tolist())) < 2 for row in ids):
            ids = torch.randint(0, m["vocab_size"], (d["B"], d["T"]), generator=gen)
        labels = ids.clone()
        if d["masked_labels"]:  # some targets ignored (-100), as padding would be; never all of them
            drop = torch.rand(ids.shape, generator=gen) < 0.3
            drop[:, -1] = False
            labels[drop] = -100
        batches.append({"input_ids": ids, "labels": labels})
    return model, batches, "CAUSAL_LM"


def draw_llama(rng):
    return _draw(rng, "llama")


def build_llama(d, gen):
    return _build(d, gen, "llama")


def draw_mistral(rng):
    return _draw(rng, "mistral")


def build_mistral(d, gen):
    return _build(d, gen, "mistral")


def draw_qwen2(rng):
    return _draw(rng, "qwen2")


def build_qwen2(d, gen):
    return _build(d, gen, "qwen2")


# family -> (draw, build), merged into make_fixture.FAMILIES
LLAMA_FAMILIES = {"llama": (draw_llama, build_llama), "mistral": (draw_mistral, build_mistral),
                  "qwen2": (draw_qwen2, build_qwen2)}
