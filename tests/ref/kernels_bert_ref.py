#!/usr/bin/env python3
"""Writes the HF reference values that tests/test_kernels_bert.c compares the
BERT kernels against (LORA_KERNELS_BERT_REF=<file>): inputs, parameters,
outputs and autograd gradients of HF's own modules, float32 on the CPU.

    kernels_bert_ref.py OUT.safetensors

Groups (tensor name prefixes):
  attn.*        BertSelfAttention (eager, probabilities kept) on a padded batch;
                attn.out_sdpa the same module under SDPA (the default); gradients
                w.r.t. the query/key/value Linear outputs (captured with hooks)
  battn.*       BertAttention (eager): self-attention, output dense, LayerNorm(x + .)
  layer_gelu.*, layer_gelu_new.*   BertLayer (SDPA) with hidden_act gelu / gelu_new
  emb.*         BertEmbeddings with token_type_ids (emb.out) and without
                (emb.out_notypes); pad_token_id 0 occurs at real and padded positions
  pool.*        BertPooler
  act.*         ACT2FN["gelu"] and ["gelu_new"] on a grid, with gradients
  loss.*        the losses as BertForSequenceClassification/TokenClassification
                call them: CrossEntropyLoss, MSELoss(logits.squeeze(), labels.squeeze())
Masks are created by create_bidirectional_mask, as BertModel does.
"""
import sys

import torch


def main(out):
    from safetensors.torch import save_file
    from transformers import BertConfig
    from transformers.activations import ACT2FN
    from transformers.masking_utils import create_bidirectional_mask
    from transformers.models.bert.modeling_bert import (BertAttention, BertEmbeddings, BertLayer, BertPooler,
                                                        BertSelfAttention)

    torch.manual_seed(1234)
    torch.set_num_threads(1)
    B, T, C, H, I = 3, 7, 24, 3, 40
    cfg = BertConfig(vocab_size=30, hidden_size=C, num_hidden_layers=1, num_attention_heads=H, intermediate_size=I,
                     max_position_embeddings=20, type_vocab_size=3, layer_norm_eps=1e-12, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0, pad_token_id=0)
    cfg._attn_implementation = "eager"
    lens = [7, 4, 1]  # one row full, one padded, one with a single real token
    mask = torch.zeros(B, T, dtype=torch.int64)
    for b, n in enumerate(lens):
        mask[b, :n] = 1
    t = {"mask": mask}

    def perturb(mod):
        with torch.no_grad():
            for name, p in mod.named_parameters():
                if p.dim() == 1:
                    p.add_(0.1 * torch.randn(p.shape))

    def ext_mask(x):  # for the implementation cfg names, as BertModel._create_attention_masks makes it
        return create_bidirectional_mask(config=cfg, inputs_embeds=x, attention_mask=mask)

    # ---- BertSelfAttention: q, k, v as the Linear outputs, grads through hooks
    sa = BertSelfAttention(cfg).eval()
    perturb(sa)
    x = torch.randn(B, T, C)
    cap = {}

    def hook(name):
        def f(_m, _i, o):
            o.retain_grad()
            cap[name] = o
        return f

    hs = [getattr(sa, n).register_forward_hook(hook(n)) for n in ("query", "key", "value")]
    o, w = sa(x, attention_mask=ext_mask(x))
    g = torch.randn_like(o)
    (o * g).sum().backward()
    for h in hs:
        h.remove()
    t.update({"attn.q": cap["query"], "attn.k": cap["key"], "attn.v": cap["value"], "attn.out": o, "attn.probs": w,
              "attn.g": g, "attn.dq": cap["query"].grad, "attn.dk": cap["key"].grad, "attn.dv": cap["value"].grad})
    cfg._attn_implementation = "sdpa"  # sa.config is cfg
    with torch.no_grad():
        t["attn.out_sdpa"] = sa(x, attention_mask=ext_mask(x))[0]
    cfg._attn_implementation = "eager"

    # ---- BertAttention and BertLayer: input grad and some parameter grads
    def module_case(prefix, mod, grads):
        perturb(mod)
        xx = torch.randn(B, T, C, requires_grad=True)
        y = mod(xx, attention_mask=ext_mask(xx))
        y = y[0] if isinstance(y, tuple) else y
        gg = torch.randn_like(y)
        (y * gg).sum().backward()
        t.update({f"{prefix}.x": xx, f"{prefix}.out": y, f"{prefix}.g": gg, f"{prefix}.dx": xx.grad})
        params = dict(mod.named_parameters())
        for n, p in params.items():
            t[f"{prefix}.{n}"] = p
        for n in grads:
            t[f"{prefix}.{n}.grad"] = params[n].grad

    module_case("battn", BertAttention(cfg).eval(),
                ["self.query.weight", "self.value.bias", "output.dense.weight", "output.LayerNorm.weight",
                 "output.LayerNorm.bias"])
    cfg._attn_implementation = "sdpa"  # the default, which the fixtures use
    for act in ("gelu", "gelu_new"):
        cfg.hidden_act = act
        module_case(f"layer_{act}", BertLayer(cfg).eval(),
                    ["attention.self.key.weight", "intermediate.dense.weight", "intermediate.dense.bias",
                     "output.dense.weight"])
    cfg.hidden_act = "gelu"
    cfg._attn_implementation = "eager"

    # ---- BertEmbeddings (word_embeddings has padding_idx = pad_token_id = 0)
    emb = BertEmbeddings(cfg).eval()
    perturb(emb)
    ids = torch.randint(1, cfg.vocab_size, (B, T))
    ids[0, 2] = 0  # the pad id as a real token: still no gradient to its row
    ids[mask == 0] = 0
    types = torch.randint(0, cfg.type_vocab_size, (B, T))
    y = emb(input_ids=ids, token_type_ids=types)
    gg = torch.randn_like(y)
    (y * gg).sum().backward()
    t.update({"emb.ids": ids, "emb.types": types, "emb.out": y, "emb.g": gg})
    for n, p in emb.named_parameters():
        t[f"emb.{n}"] = p
        t[f"emb.{n}.grad"] = p.grad
    with torch.no_grad():
        t["emb.out_notypes"] = emb(input_ids=ids)

    # ---- BertPooler
    pool = BertPooler(cfg).eval()
    perturb(pool)
    xx = torch.randn(B, T, C, requires_grad=True)
    y = pool(xx)
    gg = torch.randn_like(y)
    (y * gg).sum().backward()
    t.update({"pool.x": xx, "pool.out": y, "pool.g": gg, "pool.dx": xx.grad, "pool.w": pool.dense.weight,
              "pool.b": pool.dense.bias, "pool.dw": pool.dense.weight.grad, "pool.db": pool.dense.bias.grad})

    # ---- activations
    for act in ("gelu", "gelu_new"):
        xx = torch.linspace(-6, 6, 97).requires_grad_(True)
        y = ACT2FN[act](xx)
        gg = torch.randn_like(y)
        (y * gg).sum().backward()
        t.update({f"act.{act}.x": xx, f"act.{act}.y": y, f"act.{act}.g": gg, f"act.{act}.dx": xx.grad})

    # ---- losses
    K = 4
    lg = torch.randn(B, K, requires_grad=True)
    lab = torch.tensor([3, 0, 2])
    loss = torch.nn.CrossEntropyLoss()(lg.view(-1, K), lab.view(-1))
    loss.backward()
    t.update({"loss.cls.logits": lg, "loss.cls.labels": lab, "loss.cls.loss": loss.reshape(1), "loss.cls.dlogits": lg.grad})
    lg = torch.randn(B * T, K, requires_grad=True)
    lab = torch.randint(0, K, (B, T))
    lab[mask == 0] = -100
    lab[0, 3] = -100
    loss = torch.nn.CrossEntropyLoss()(lg.view(-1, K), lab.view(-1))
    loss.backward()
    t.update({"loss.tok.logits": lg, "loss.tok.labels": lab, "loss.tok.loss": loss.reshape(1), "loss.tok.dlogits": lg.grad})
    lg = torch.randn(B, 1, requires_grad=True)
    lab = torch.randn(B)
    loss = torch.nn.MSELoss()(lg.squeeze(), lab.squeeze())
    loss.backward()
    t.update({"loss.mse.logits": lg, "loss.mse.labels": lab, "loss.mse.loss": loss.reshape(1), "loss.mse.dlogits": lg.grad})

    save_file({k: v.detach().contiguous() for k, v in t.items()}, out)
    print(f"kernels_bert_ref.py: {len(t)} tensors -> {out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.stderr.write(__doc__)
        sys.exit(2)
    main(sys.argv[1])
