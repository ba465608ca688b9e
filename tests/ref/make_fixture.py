#!/usr/bin/env python3
"""Writes a reference fixture folder in the format of tests/fixtures/README.md
(base/, lora-init/, lora-trained/, merged/, forward/grads/train.safetensors,
meta.json) with HF transformers + peft on the CPU in float32, for a random
configuration drawn from a family name and a seed.

    make_fixture.py FAMILY SEED OUT_DIR        (FAMILY: gpt2, bert-cls, bert-ner)
    make_fixture.py FAMILY --seeds S1,S2,... OUT_ROOT
                                 (a folder OUT_ROOT/SEED per seed, in one Python start)
    make_fixture.py FAMILY SEED --describe     (prints the drawn configuration)

The same (family, seed) gives the same configuration and the same numbers on
the same pinned versions (tests/ref/requirements.txt). Each family is one
`draw_*` (the random configuration) and one `build_*` (the HF model, its
batches and its peft config); everything else is shared. The BERT families
live in fixture_bert.py; a draw may also set "family" (meta.json's name for
it), "loss" (meta.json's description) and "exclude_modules" (for LoraConfig).
"""
import copy
import json
import os
import random
import sys
import warnings

import torch

from fixture_bert import build_bert_cls, build_bert_ner, draw_bert_cls, draw_bert_ner
from fixture_llama import LLAMA_FAMILIES


def draw_gpt2(rng):
    H = rng.choice([1, 2, 3, 4])
    C = H * rng.choice([4, 8, 12, 16])
    T = rng.randint(2, 20)
    cfg = dict(
        n_layer=rng.randint(1, 3),
        n_head=H,
        n_embd=C,
        n_inner=rng.choice([None, None, rng.randint(C, 5 * C)]),
        vocab_size=rng.randint(24, 400),
        n_positions=T + rng.randint(0, 16),
        layer_norm_epsilon=rng.choice([1e-5, 1e-6, 1e-3]),
        activation_function=rng.choice(["gelu_new", "gelu_new", "gelu", "gelu_pytorch_tanh"]),
        tie_word_embeddings=rng.random() < 0.8,
        initializer_range=rng.choice([0.02, 0.05, 0.1]),
    )
    targets = rng.choice([
        ["c_attn"], ["c_proj"], ["c_fc"], ["attn.c_proj"], ["c_attn", "c_proj"], ["c_attn", "c_fc"],
        ["c_fc", "c_proj"], ["c_attn", "c_proj", "c_fc"], "all-linear", r".*h\.0\.(attn\.c_attn|mlp\.c_proj)",
    ])
    return dict(model=cfg, B=rng.randint(1, 3), T=T, targets=targets, masked_labels=rng.random() < 0.4)


def build_gpt2(d, gen):
    from transformers import GPT2Config, GPT2LMHeadModel

    m = d["model"]
    config = GPT2Config(**m, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=m["vocab_size"] - 1,
                        eos_token_id=m["vocab_size"] - 1)
    model = GPT2LMHeadModel(config)
    batches = []
    for _ in range(5):
        ids = torch.randint(0, m["vocab_size"], (d["B"], d["T"]), generator=gen)
        labels = ids.clone()
        if d["masked_labels"]:  # some targets ignored (-100), as padding would be; never all of them
            drop = torch.rand(ids.shape, generator=gen) < 0.3
            drop[:, -1] = False
            labels[drop] = -100
        batches.append({"input_ids": ids, "labels": labels})
    return model, batches, "CAUSAL_LM"


# family -> (draw(rng) -> dict with "model", "B", "T", "targets"; build(d, gen) -> (model, batches, task))
FAMILIES = {"gpt2": (draw_gpt2, build_gpt2), **LLAMA_FAMILIES, "bert-cls": (draw_bert_cls, build_bert_cls),
            "bert-ner": (draw_bert_ner, build_bert_ner)}


def draw(family, seed):
    rng = random.Random(f"{family}:{seed}")
    d = FAMILIES[family][0](rng)
    d.update(
        r=rng.choice([1, 2, 4, 8, rng.randint(1, 12)]),
        lora_alpha=rng.choice([1, 4, 8, 16, 32, round(rng.uniform(0.5, 40), 3)]),
        use_rslora=rng.random() < 0.3,
        lr=rng.choice([1e-3, 5e-3, 1e-2]),
        weight_decay=rng.choice([0.0, 0.01, 0.1]),
        betas=rng.choice([(0.9, 0.999), (0.8, 0.99)]),
        # Not torch's default 1e-8: Adam's update is lr * m / (sqrt(v) + eps), whose derivative in g is up to
        # lr / eps at g = 0. Gradients agree to ~1e-8 absolute in float32, so with eps = 1e-8 an element whose
        # true gradient is within float noise of zero (every Q/K gradient when T = 2, or a chance near-zero)
        # gets a noise-decided step in both implementations, and the trained values differ by up to lr there.
        # With eps >= 1e-4 that error is <= lr * 1e-8 / 1e-4; eps = 1e-8 is checked by the shipped fixtures.
        eps=rng.choice([1e-4, 3e-4, 1e-3]),
    )
    # A stable regime: the adapter's contribution moves by about lr * scale per step, and past ~0.05 the five
    # steps overshoot (the loss goes back up), where any two float orders of summation drift apart (seen: a
    # 5e-7 gradient difference grew to 3e-4 in the trained values at lr * scale = 0.2).
    scale = d["lora_alpha"] / (d["r"] ** 0.5 if d["use_rslora"] else d["r"])
    d["lr"] = min(d["lr"], float(f"{0.05 / scale:.3g}"))
    return d


def perturb_(model, gen):
    """Biases away from 0 and norm weights away from 1, so a loader that skips them is caught."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias") or p.dim() == 1:
                p.add_(0.1 * torch.randn(p.shape, generator=gen))


def peft_key(name):
    """A PeftModel parameter name as peft saves it: no adapter name, and a modules_to_save copy
    (classifier.modules_to_save.default.weight) under the module's own name (classifier.weight)."""
    return name.replace(".modules_to_save.default.", ".").replace(".default.", ".").replace(".default", "")


def save_adapter(pm, path):
    """peft's save_pretrained without the model card (README.md) it adds: the shipped layout has none."""
    pm.save_pretrained(path)
    if os.path.exists(f"{path}/README.md"):
        os.remove(f"{path}/README.md")


def forward(model, batch):
    return model(**batch)


def make(family, seed, out):
    from peft import LoraConfig, PeftModel, get_peft_model
    from safetensors.torch import save_file
    import peft
    import transformers

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    d = draw(family, seed)
    model, batches, task = FAMILIES[family][1](d, gen)
    model.eval()  # dropout is 0 anyway; eval keeps every number deterministic
    perturb_(model, gen)
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(f"{out}/base")
    with torch.no_grad():
        base_logits = forward(model, batches[0]).logits.detach().clone()

    lcfg = LoraConfig(r=d["r"], lora_alpha=d["lora_alpha"], use_rslora=d["use_rslora"], lora_dropout=0.0,
                      target_modules=d["targets"], exclude_modules=d.get("exclude_modules"), task_type=task)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # peft says it sets fan_in_fan_out for Conv1D
        pm = get_peft_model(model, lcfg)
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_B" in name:
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))
    save_adapter(pm, f"{out}/lora-init")
    trainable = [(n, p) for n, p in pm.named_parameters() if p.requires_grad]
    n_train, n_all = pm.get_nb_trainable_parameters()

    out0 = forward(pm, batches[0])
    out0.loss.backward()
    grads = {peft_key(n) + ".grad": p.grad.detach().clone() for n, p in trainable}
    save_file({"base_logits": base_logits, "logits": out0.logits.detach().clone(),
               "loss": out0.loss.detach().reshape(1).clone()}, f"{out}/forward.safetensors")
    save_file(grads, f"{out}/grads.safetensors")
    pm.zero_grad(set_to_none=True)

    opt = torch.optim.AdamW([p for _, p in trainable], lr=d["lr"], betas=d["betas"], eps=d["eps"],
                            weight_decay=d["weight_decay"])
    losses = []
    for b in batches:
        loss = forward(pm, b).loss
        losses.append(loss.item())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    save_adapter(pm, f"{out}/lora-trained")
    with torch.no_grad():
        trained_logits = forward(pm, batches[0]).logits.detach().clone()
        merged = copy.deepcopy(pm).merge_and_unload()
        merged_logits = forward(merged, batches[0]).logits.detach().clone()
    merged.save_pretrained(f"{out}/merged")
    train = {"losses": torch.tensor(losses, dtype=torch.float32), "trained_logits": trained_logits,
             "merged_logits": merged_logits}
    for k, b in enumerate(batches):
        for key, v in b.items():
            train[f"step{k}.{key}"] = v.contiguous()
    save_file(train, f"{out}/train.safetensors")

    with open(f"{out}/lora-init/adapter_config.json") as f:
        saved = json.load(f)
    saved_targets = saved["target_modules"]
    meta = {
        "family": d.get("family", family),
        "task": task,
        "seed": seed,
        "batch": d["B"],
        "seq_len": d["T"],
        "r": d["r"],
        "lora_alpha": d["lora_alpha"],
        "use_rslora": d["use_rslora"],
        "target_modules": saved_targets,
        "target_modules_asked": d["targets"],
        "lora_dropout": 0.0,
        "init": "lora_A: peft default (kaiming-uniform a=sqrt(5)); lora_B: overwritten with N(0, 0.02^2) so all "
                "grads are nonzero",
        "loss": d.get("loss", "mean token cross-entropy over shifted next-token targets (causal LM); "
                      "mean cross-entropy over sequences (SEQ_CLS)"),
        "optimizer": {"name": "AdamW (torch.optim.AdamW, decoupled weight decay, bias-corrected)", "lr": d["lr"],
                      "betas": list(d["betas"]), "eps": d["eps"], "weight_decay": d["weight_decay"],
                      "steps": len(batches)},
        "trainable_params": n_train,
        "all_params": n_all,
        "losses": losses,
        "max_abs_merged_vs_adapter_logits": (merged_logits - trained_logits).abs().max().item(),
        "model": d["model"],
        **({"exclude_modules": saved["exclude_modules"]} if saved.get("exclude_modules") else {}),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "peft": peft.__version__},
    }
    with open(f"{out}/meta.json", "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    return meta


def main(argv):
    each = len(argv) == 5 and argv[2] == "--seeds"
    if each:
        argv = argv[:2] + argv[3:]
    if len(argv) != 4 or argv[1] not in FAMILIES:
        sys.stderr.write(__doc__)
        return 2
    family = argv[1]
    try:
        seeds = [int(s) for s in argv[2].split(",")]
    except ValueError:
        sys.stderr.write(f"make_fixture.py: seeds must be integers, got {argv[2]!r}\n")
        return 2
    if len(seeds) > 1 and not each and argv[3] != "--describe":
        sys.stderr.write("make_fixture.py: several seeds need --seeds (one folder per seed)\n")
        return 2
    if argv[3] == "--describe":
        for seed in seeds:
            print(json.dumps(draw(family, seed)))
        return 0
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    for seed in seeds:
        out = f"{argv[3]}/{seed}" if each else argv[3]
        meta = make(family, seed, out)
        m = meta["model"]
        print(f"fixture {family} seed {seed}: {json.dumps(m, separators=(',', ':'))} B={meta['batch']} "
              f"T={meta['seq_len']} r={meta['r']} alpha={meta['lora_alpha']} rslora={meta['use_rslora']} "
              f"targets={meta['target_modules_asked']} -> {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
