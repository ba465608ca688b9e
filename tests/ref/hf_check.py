#!/usr/bin/env python3
"""The HF side of the round trips (tests/ref_roundtrip.sh): HF transformers +
peft load what lora-ps writes and compute the same numbers, and peft trains an
adapter that lora-ps must load. Every subcommand exits 1 when a comparison
fails, printing what differed, and 0 when all passed.

  hf_check.py batch MODEL_DIR SEED B T OUT.safetensors
        a random batch (input_ids, labels) for the model's vocabulary; for a BERT
        classifier also attention_mask (right padding, pad_token_id there),
        token_type_ids and labels of its head ((B) class ids, (B) floats for
        regression, (B, T) with -100 at padding for token classification)
  hf_check.py peft-load BASE_DIR ADAPTER_DIR BATCH OURS.safetensors [--tol 1e-4]
        PeftModel.from_pretrained loads our adapter with no missing or unexpected
        keys and no warnings about them; its logits and loss equal ours
  hf_check.py hf-load MODEL_DIR BATCH OURS.safetensors [--tol 1e-4]
        AutoModelForCausalLM (AutoModelForSequenceClassification /
        AutoModelForTokenClassification, as config.json's architectures say)
        .from_pretrained loads our merged model with no missing or unexpected
        keys; its logits and loss equal ours
  hf_check.py peft-train BASE_DIR OUT_ADAPTER BATCH OUT_REF.safetensors SEED [--targets a,b,...]
        peft trains an adapter (5 AdamW steps on random batches), save_pretrained;
        writes peft's logits and loss on BATCH (targets: c_attn,c_fc, GPT-2's, unless given;
        "all-linear" as peft expands it)
  hf_check.py peft-init BASE_DIR OUT_ADAPTER MODULES_TO_SAVE
        get_peft_model with tests/ps-tiny.ini's LoRA (r 4, alpha 8, c_attn and
        c_proj) and modules_to_save (comma-separated), save_pretrained untrained
  hf_check.py bert-base OUT_DIR HEAD NUM_LABELS SEED
        a small random BertFor{HEAD}Classification (HEAD: Sequence, Token),
        biases and norm weights perturbed, save_pretrained
  hf_check.py random-model FAMILY SEED OUT_DIR [--dtype float32|bfloat16|float16] [--shard SIZE]
        a small random LlamaForCausalLM / MistralForCausalLM / Qwen2ForCausalLM (FAMILY llama,
        mistral, qwen2: GQA, qwen2 tied with q/k/v biases, mistral with a sliding window of 64),
        vocab 320, save_pretrained in that dtype, sharded at SIZE (e.g. 150KB) when given
  hf_check.py tokens VOCAB COUNT SEED OUT.bin
        random token ids in a token file of llm.c's format (which lora-ps reads)
  hf_check.py peft-eval BASE_DIR ADAPTER_DIR TOKENS.bin SEQ_LEN N_WINDOWS
        prints "peft val loss X": the mean loss over the windows `lora eval` takes
  hf_check.py generate MODEL_DIR ADAPTER_DIR|- "ID ..." N
        prints "ids: ..." of transformers' greedy generate (N new tokens, EOS ignored)
  hf_check.py generate-text MODEL_DIR ADAPTER_DIR|- PROMPT N
        the same for a text prompt, tokenized with MODEL_DIR/tokenizer.json as
        tokenizer(PROMPT) does (special tokens added); prints "prompt ids: ..." too
  hf_check.py compare OURS.safetensors REF.safetensors [--tol 1e-4]
        logits and loss of two files (relative error: ||a - b|| / ||b||)
  hf_check.py h5-checkpoint CKPT.h5 ADAPTER_DIR
        an independent reader of docs/checkpoint-format.md (format versions 1
        and 2): every documented object and attribute with its type, LoRA
        modules and whole tensors (modules_to_save), and the adapter values
        equal to the exported peft adapter's
"""
import io
import json
import logging
import os
import sys
import warnings

import numpy as np
import torch

TOL = 1e-4


def rel_err(a, b):
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        return float("inf")
    nb = np.linalg.norm(b)
    d = np.linalg.norm(a - b)
    return float(d / nb) if nb > 0 else float(d)


class Report:
    """Checks of one subcommand; quiet: print the failures only, and the count."""

    def __init__(self, what, quiet=False):
        self.what, self.failed, self.n, self.quiet = what, 0, 0, quiet

    def check(self, name, ok, detail=""):
        self.n += 1
        if not ok:
            self.failed += 1
        if not ok or not self.quiet:
            print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}")

    def close(self):
        print(f"{self.what}: {self.n - self.failed}/{self.n} checks passed")
        return 1 if self.failed else 0


def load_st(path):
    from safetensors.torch import load_file
    return load_file(path)


def forward(model, batch):
    """Logits and loss on a batch: input_ids and labels, and attention_mask / token_type_ids when it has them."""
    extra = {k: batch[k] for k in ("attention_mask", "token_type_ids") if k in batch}
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], labels=batch["labels"], **extra)
    return out.logits.float(), out.loss.float()


def read_config(model_dir):
    with open(f"{model_dir}/config.json") as f:
        return json.load(f)


def auto_class(model_dir):
    """The Auto class for config.json's architectures: a BERT classifier's head, else a causal LM."""
    import transformers
    arch = (read_config(model_dir).get("architectures") or [""])[0]
    for head in ("SequenceClassification", "TokenClassification"):
        if arch.endswith("For" + head):
            return getattr(transformers, "AutoModelFor" + head), "SEQ_CLS" if head[0] == "S" else "TOKEN_CLS"
    return transformers.AutoModelForCausalLM, "CAUSAL_LM"


def num_labels(cfg):
    return len(cfg["id2label"]) if cfg.get("id2label") else cfg.get("num_labels", 2)


def classifier_batch(cfg, task, g, B, T):
    """A padded batch for a BERT classifier: every row has 2..T real tokens (right padding with pad_token_id),
    token types, the head's labels."""
    V, K, pad = cfg["vocab_size"], num_labels(cfg), cfg.get("pad_token_id") or 0
    lens = torch.randint(2, T + 1, (B,), generator=g) if T >= 2 else torch.ones(B, dtype=torch.long)
    lens[0] = T
    mask = (torch.arange(T)[None, :] < lens[:, None]).to(torch.int64)
    ids = torch.randint(0, V, (B, T), generator=g)
    ids[mask == 0] = pad
    types = torch.randint(0, cfg.get("type_vocab_size", 2), (B, T), generator=g)
    types[mask == 0] = 0
    if task == "TOKEN_CLS":
        labels = torch.randint(0, K, (B, T), generator=g)
        labels[mask == 0] = -100
        labels[torch.rand(B, T, generator=g) < 0.2] = -100
        labels[0, 0] = 0
    elif K == 1:
        labels = torch.randn(B, generator=g)
    else:
        labels = torch.randint(0, K, (B,), generator=g)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "labels": labels}


class Captured:
    """Every warning and every log record of transformers/peft while loading."""

    def __enter__(self):
        self.buf = io.StringIO()
        self.handler = logging.StreamHandler(self.buf)
        self.handler.setLevel(logging.WARNING)
        self.loggers = [logging.getLogger(n) for n in ("transformers", "peft")]
        for lg in self.loggers:
            lg.addHandler(self.handler)
        self.cw = warnings.catch_warnings(record=True)
        self.records = self.cw.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self.cw.__exit__(*exc)
        for lg in self.loggers:
            lg.removeHandler(self.handler)

    def messages(self):
        return [str(w.message) for w in self.records] + [m for m in self.buf.getvalue().splitlines() if m.strip()]


def key_complaints(msgs):
    bad = ("missing", "unexpected", "not initialized", "newly initialized", "were not used")
    return [m for m in msgs if any(b in m.lower() for b in bad)]


def compare_outputs(rp, name, logits, loss, ours, tol):
    e = rel_err(ours["logits"].numpy(), logits.numpy())
    rp.check(f"{name} logits equal ours", e <= tol, f"relative error {e:.3e} (tolerance {tol:g})")
    e = rel_err(ours["loss"].numpy(), loss.reshape(1).numpy())
    rp.check(f"{name} loss equals ours", e <= tol,
             f"{loss.item():.7f} vs ours {ours['loss'].item():.7f}, relative error {e:.3e}")


def cmd_batch(model_dir, seed, B, T, out):
    from safetensors.torch import save_file
    cfg = read_config(model_dir)
    V = cfg["vocab_size"]
    g = torch.Generator().manual_seed(int(seed))
    _, task = auto_class(model_dir)
    if task != "CAUSAL_LM":
        save_file({k: v.contiguous() for k, v in classifier_batch(cfg, task, g, int(B), int(T)).items()}, out)
        return 0
    ids = torch.randint(0, V, (int(B), int(T)), generator=g)
    save_file({"input_ids": ids, "labels": ids.clone()}, out)
    return 0


def peft_key(name):
    """A PeftModel parameter name as peft saves it: no adapter name, and a modules_to_save copy
    (classifier.modules_to_save.default.weight) under the module's own name (classifier.weight)."""
    return name.replace(".modules_to_save.default.", ".").replace(".default", "")


def cmd_peft_load(base, adapter, batch, ours, tol):
    from peft import PeftModel
    rp = Report("peft loads our adapter")
    model = auto_class(base)[0].from_pretrained(base, dtype=torch.float32)
    with Captured() as cap:
        pm = PeftModel.from_pretrained(model, adapter)
    msgs = cap.messages()
    complaints = key_complaints(msgs)
    rp.check("PeftModel.from_pretrained without warnings about missing or unexpected keys", not complaints,
             "; ".join(complaints)[:2000])
    for m in msgs:
        if m not in complaints:
            print(f"     (other message while loading: {m[:300]})")
    # every tensor of the file became a parameter, and every LoRA parameter came from the file
    from safetensors.torch import load_file
    saved = load_file(f"{adapter}/adapter_model.safetensors")
    # LoRA parameters, and modules_to_save copies (<module>.modules_to_save.default.<name>)
    params = {n.replace(".modules_to_save.default", "") if ".modules_to_save.default." in n else
              n.replace(".default", ""): p for n, p in pm.named_parameters()
              if "lora_" in n or ".modules_to_save.default." in n}
    missing = sorted(set(params) - set(saved))
    extra = sorted(set(saved) - set(params))
    rp.check("the file's tensors are exactly the model's LoRA parameters and modules_to_save copies",
             not missing and not extra,
             f"not in the file: {missing[:5]}, not in the model: {extra[:5]}")
    worst = max((rel_err(params[k].detach().numpy(), saved[k].numpy()) for k in saved if k in params), default=0.0)
    rp.check("loaded values equal the file's", worst == 0.0, f"worst relative difference {worst:.3e}")
    pm.eval()
    logits, loss = forward(pm, load_st(batch))
    compare_outputs(rp, "peft", logits, loss, load_st(ours), tol)
    return rp.close()


def cmd_hf_load(model_dir, batch, ours, tol):
    rp = Report("transformers loads our merged model")
    auto, _ = auto_class(model_dir)
    with Captured() as cap:
        model, info = auto.from_pretrained(model_dir, dtype=torch.float32, output_loading_info=True)
    problems = {k: v for k, v in info.items() if v and k != "error_msgs" or (k == "error_msgs" and v)}
    rp.check("from_pretrained: no missing, unexpected or mismatched keys", not problems, json.dumps(
        {k: sorted(map(str, v))[:5] for k, v in problems.items()}))
    complaints = key_complaints(cap.messages())
    rp.check("no warnings about keys while loading", not complaints, "; ".join(complaints)[:2000])
    model.eval()
    logits, loss = forward(model, load_st(batch))
    compare_outputs(rp, "transformers", logits, loss, load_st(ours), tol)
    return rp.close()


def write_llmc_tokens(path, ids):
    """A token file in llm.c's format (magic 20240520, version 1, uint16 ids), which lora-ps reads."""
    hdr = np.zeros(256, dtype=np.int32)
    hdr[0], hdr[1], hdr[2] = 20240520, 1, len(ids)
    with open(path, "wb") as f:
        f.write(hdr.tobytes())
        f.write(np.asarray(ids, dtype=np.uint16).tobytes())


def val_offset(n_tokens, T, n_windows, i):
    """data_val_offset of worker/data.c: windows spread evenly over the file."""
    d = n_tokens - T
    if n_windows <= 1 or d <= 0 or i <= 0:
        return 0
    w1 = n_windows - 1
    q, r = divmod(d, w1)
    return i * q + (i * r) // w1


def read_llmc_tokens(path):
    with open(path, "rb") as f:
        hdr = np.frombuffer(f.read(1024), dtype=np.int32)
        if hdr[0] != 20240520 or hdr[1] != 1:
            raise SystemExit(f"{path}: not an llm.c uint16 token file")
        return torch.from_numpy(np.frombuffer(f.read(), dtype=np.uint16).astype(np.int64))


def cmd_tokens(V, n, seed, out):
    g = torch.Generator().manual_seed(int(seed))
    write_llmc_tokens(out, torch.randint(0, int(V), (int(n),), generator=g).tolist())
    return 0


def cmd_peft_eval(base, adapter, tokens, T, n_windows):
    """The validation loss as `lora eval` defines it: mean over the targets of n_windows windows."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    T, n_windows = int(T), int(n_windows)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    pm = PeftModel.from_pretrained(model, adapter).eval()
    val = read_llmc_tokens(tokens)
    total = 0.0
    with torch.no_grad():
        for i in range(n_windows):
            o = val_offset(len(val), T, n_windows, i)
            w = val[o:o + T].unsqueeze(0)
            total += pm(input_ids=w, labels=w).loss.double().item() * (T - 1)
    print(f"peft val loss {total / (n_windows * (T - 1)):.7f} ({n_windows} windows of {T} tokens, {tokens})")
    return 0


def peft_train_classifier(base, out_adapter, batch, out_ref, seed, auto, task):
    """peft-train for a BERT classifier: LoRA on query, value and intermediate.dense, the classifier in
    modules_to_save (peft's default for the task), 5 AdamW steps on random padded batches of the head's kind."""
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import save_file
    torch.manual_seed(int(seed))
    g = torch.Generator().manual_seed(int(seed))
    model = auto.from_pretrained(base, dtype=torch.float32)
    cfg = read_config(base)
    lcfg = LoraConfig(r=4, lora_alpha=10, target_modules=["query", "value", "intermediate.dense"], lora_dropout=0.0,
                      task_type=task)
    pm = get_peft_model(model, lcfg)
    opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.01)
    T = min(12, cfg["max_position_embeddings"])
    for _ in range(5):
        b = classifier_batch(cfg, task, g, 3, T)
        loss = pm(**b).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    pm.save_pretrained(out_adapter)
    pm.eval()
    logits, loss = forward(pm, load_st(batch))
    save_file({"logits": logits.contiguous(), "loss": loss.reshape(1).contiguous()}, out_ref)
    return 0


def cmd_peft_train(base, out_adapter, batch, out_ref, seed, targets=None):
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM
    auto, task = auto_class(base)
    if task != "CAUSAL_LM":
        return peft_train_classifier(base, out_adapter, batch, out_ref, seed, auto, task)
    torch.manual_seed(int(seed))
    g = torch.Generator().manual_seed(int(seed))
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    V = model.config.vocab_size
    P = getattr(model.config, "n_positions", None) or model.config.max_position_embeddings
    tm = ["c_attn", "c_fc"] if targets is None else "all-linear" if targets == "all-linear" else targets.split(",")
    cfg = LoraConfig(r=6, lora_alpha=12, target_modules=tm, lora_dropout=0.0, task_type="CAUSAL_LM")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = get_peft_model(model, cfg)
    opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.01)
    T = min(16, P)
    for _ in range(5):
        ids = torch.randint(0, V, (3, T), generator=g)
        loss = pm(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    pm.save_pretrained(out_adapter)
    pm.eval()
    logits, loss = forward(pm, load_st(batch))
    save_file({"logits": logits.contiguous(), "loss": loss.reshape(1).contiguous()}, out_ref)
    return 0


def cmd_peft_init(base, out_adapter, save):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "c_proj"], lora_dropout=0.0,
                     modules_to_save=save.split(","), task_type="CAUSAL_LM")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = get_peft_model(model, cfg)
        pm.save_pretrained(out_adapter)
    return 0


def cmd_generate(model_dir, adapter, ids, n):
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter != "-":
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    inp = torch.tensor([[int(x) for x in ids.split()]])
    # EOS ignored as `lora generate --ignore-eos true` ignores it: it may be picked and generation goes on
    # (min_new_tokens would instead forbid it, changing the argmax wherever EOS wins)
    # (a generation_config passed in with eos_token_id None is filled back from the model's: clear both)
    model.generation_config.eos_token_id = None
    model.config.eos_token_id = None
    with torch.no_grad():
        out = model.generate(input_ids=inp, attention_mask=torch.ones_like(inp), max_new_tokens=int(n),
                             do_sample=False, num_beams=1, pad_token_id=0)
    if out.shape[1] - inp.shape[1] != int(n):
        print(f"transformers generated {out.shape[1] - inp.shape[1]} tokens, not {n}")
        return 1
    print("ids: " + " ".join(str(int(t)) for t in out[0, inp.shape[1]:]))
    return 0


def cmd_generate_text(model_dir, adapter, prompt, n):
    """As cmd_generate, the prompt tokenized by the folder's tokenizer.json as tokenizer(prompt) does."""
    from transformers import PreTrainedTokenizerFast
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(model_dir, "tokenizer.json"))
    ids = tok(prompt)["input_ids"]
    print("prompt ids: " + " ".join(str(i) for i in ids))
    return cmd_generate(model_dir, adapter, " ".join(str(i) for i in ids), n)


def cmd_random_model(family, seed, out, dtype="float32", shard=None):
    import transformers
    torch.manual_seed(int(seed))
    common = dict(vocab_size=320, hidden_size=48, intermediate_size=112, num_hidden_layers=2, num_attention_heads=6,
                  num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6, initializer_range=0.1,
                  rope_parameters={"rope_type": "default", "rope_theta": 500000.0}, bos_token_id=1, eos_token_id=2)
    if family == "llama":
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**common, attention_bias=True, mlp_bias=True))
    elif family == "mistral":
        model = transformers.MistralForCausalLM(transformers.MistralConfig(**common, sliding_window=64, head_dim=12))
    elif family == "qwen2":
        model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**common, tie_word_embeddings=True))
    else:
        sys.stderr.write(f"random-model: unknown family {family!r}\n")
        return 2
    with torch.no_grad():  # norm weights away from 1 and biases away from 0, as the fixtures
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn(p.shape))
    model = model.to(getattr(torch, dtype))
    kw = {"max_shard_size": shard} if shard else {}
    model.save_pretrained(out, **kw)
    files = sorted(os.listdir(out))
    print(f"random {family} ({dtype}{', sharded ' + shard if shard else ''}) in {out}: {', '.join(files)}")
    return 0


def cmd_bert_base(out, head, n_labels, seed):
    from transformers import BertConfig, BertForSequenceClassification, BertForTokenClassification
    torch.manual_seed(int(seed))
    g = torch.Generator().manual_seed(int(seed))
    cls = {"Sequence": BertForSequenceClassification, "Token": BertForTokenClassification}[head]
    config = BertConfig(num_hidden_layers=2, num_attention_heads=4, hidden_size=32, intermediate_size=48,
                        vocab_size=99, max_position_embeddings=24, type_vocab_size=2, pad_token_id=3,
                        num_labels=int(n_labels), hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                        initializer_range=0.1)
    model = cls(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:  # biases away from 0, norm weights away from 1: a loader that skips them is caught
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    model.save_pretrained(out)
    return 0


def cmd_compare(ours, ref, tol):
    rp = Report("ours vs reference")
    r = load_st(ref)
    compare_outputs(rp, "reference", r["logits"], r["loss"].reshape(()), load_st(ours), tol)
    return rp.close()


def cmd_h5(ckpt, adapter):
    import h5py
    from safetensors.numpy import load_file
    rp = Report("h5py reads the checkpoint (docs/checkpoint-format.md)", quiet=True)
    f = h5py.File(ckpt, "r")

    def attr(obj, name, kind):
        a = obj.attrs.get(name)
        if a is None:
            rp.check(f"{obj.name} @{name}", False, "missing")
            return None
        if kind == "str":
            ok = isinstance(a, (str, bytes))
        else:
            ok = isinstance(a, np.generic) and a.dtype == np.dtype(kind)
        rp.check(f"{obj.name} @{name} is {kind}", ok, f"{type(a).__name__} {getattr(a, 'dtype', '')} = {a!r}"[:200])
        return a.decode() if isinstance(a, bytes) else a

    rp.check("format is lora-ps-checkpoint", attr(f, "format", "str") == "lora-ps-checkpoint")
    version = attr(f, "format_version", "int32")
    rp.check("format_version is 1 or 2", version in (1, 2), f"{version!r}")
    for n in ("step", "epoch", "tokens_seen"):
        attr(f, n, "int64")
    attr(f, "ranks", "int32")
    attr(f, "created", "str")
    attr(f, "project_version", "str")
    cfgtext = f["config"][()]
    rp.check("/config is a scalar string dataset holding the INI text",
             f["config"].shape == () and b"[" in (cfgtext if isinstance(cfgtext, bytes) else cfgtext.encode()))
    attr(f["base_model"], "path", "str")
    attr(f["base_model"], "size", "uint64")
    h = attr(f["base_model"], "hash", "str")
    rp.check("/base_model @hash is 16 hex digits", h is not None and len(h) == 16 and all(c in "0123456789abcdef" for c in h.lower()))
    ad = f["adapter"]
    attr(ad, "target_modules", "str")
    attr(ad, "target_regex", "int32")
    attr(ad, "dropout", "float32")
    if version == 2:
        save_attr = attr(ad, "modules_to_save", "str")
        full = attr(ad, "full_finetune", "int32")
    else:
        rp.check("a version-1 /adapter has no modules_to_save or full_finetune",
                 "modules_to_save" not in ad.attrs and "full_finetune" not in ad.attrs)
        save_attr, full = "", 0
    opt = f["optimizer"]
    rp.check("/optimizer @name is adamw", attr(opt, "name", "str") == "adamw")
    attr(opt, "step", "int64")
    for n in ("lr", "beta1", "beta2", "eps", "weight_decay"):
        attr(opt, n, "float32")
    sc = f["schedule"]
    attr(sc, "kind", "str")
    attr(sc, "lr", "float32")
    for n in ("warmup_steps", "total_steps", "position"):
        attr(sc, n, "int64")
    attr(sc, "min_lr_ratio", "float32")
    for n in ("init_seed", "data_seed", "dropout_seed"):
        attr(f["rng"], n, "uint64")
    da = f["data"]
    for n in ("cursor", "epoch", "train_tokens"):
        attr(da, n, "int64")
    attr(da, "seq_len", "int32")
    attr(da, "sampling", "str")
    met = f["metrics"]
    rp.check("/metrics/step is int64", met["step"].dtype == np.int64)
    for n in ("loss", "lr", "tokens_per_s"):
        rp.check(f"/metrics/{n} is float64 with step's length",
                 met[n].dtype == np.float64 and met[n].shape == met["step"].shape)

    peft = load_file(f"{adapter}/adapter_model.safetensors")
    with open(f"{adapter}/adapter_config.json") as fh:
        pcfg = json.load(fh)
    # groups with kind = "whole" hold whole tensors (version 2 only); the others are LoRA modules
    kinds = {m: ad[m].attrs.get("kind") for m in ad.keys()}
    kinds = {m: (k.decode() if isinstance(k, bytes) else k) for m, k in kinds.items()}
    mods = [m for m, k in kinds.items() if k is None]
    wmods = [m for m, k in kinds.items() if k is not None]
    for m in wmods:
        rp.check(f"{m}: kind is \"whole\"", kinds[m] == "whole", f"{kinds[m]!r}")
    rp.check("whole groups only in a version-2 file", version == 2 or not wmods, f"{len(wmods)} in version {version}")
    rp.check("no whole group means version 1", version == 1 or wmods)
    wkeys = [f"{m}.{n}" for m in wmods for n in ad[m].keys()]
    want = sorted([m + s for m in mods for s in (".lora_A.weight", ".lora_B.weight")] + wkeys)
    rp.check("one /adapter group per module of the exported adapter, one dataset per whole tensor",
             want == sorted(peft), f"{len(mods)} LoRA groups, {len(wkeys)} whole tensors, {len(peft)} peft tensors")
    save = pcfg.get("modules_to_save") or []
    rp.check("/adapter @modules_to_save lists adapter_config.json's modules_to_save",
             (save_attr or "") == ",".join(save), f"{save_attr!r} vs {save!r}")
    if not full:
        pre = "base_model.model."
        for m in wmods:
            path = m[len(pre):] if m.startswith(pre) else None
            rp.check(f"{m} is selected by a modules_to_save name",
                     path is not None and any(path == n or path.endswith("." + n) for n in save), f"{save!r}")
    worst = 0.0

    def same_as_peft(name, x, y):
        nonlocal worst
        same = x.dtype == np.float32 and x.shape == y.shape and np.array_equal(x[...], y)
        if not same:
            worst = max(worst, rel_err(x[...], y) if x.shape == y.shape else float("inf"))
        rp.check(f"{name} {x.shape} equals the exported peft tensor", same,
                 "" if same else f"relative difference {worst:.3e}")

    def opt_like(rel, x):
        for tree in ("exp_avg", "exp_avg_sq"):
            o = opt[tree][rel]
            if o.shape != x.shape or o.dtype != np.float32:
                rp.check(f"/optimizer/{tree}/{rel} has the adapter's shape", False, f"{o.shape} vs {x.shape}")

    for tree in ("exp_avg", "exp_avg_sq"):
        rp.check(f"/optimizer/{tree} holds /adapter's groups", sorted(opt[tree].keys()) == sorted(ad.keys()))
    for m in mods:
        g = ad[m]
        r = attr(g, "r", "int32")
        alpha = attr(g, "alpha", "float32")
        scaling = attr(g, "scaling", "float32")
        rp.check(f"{m}: r and alpha equal adapter_config.json's", r == pcfg["r"] and alpha == pcfg["lora_alpha"])
        want_s = alpha / (np.sqrt(r) if pcfg.get("use_rslora") else r)
        rp.check(f"{m}: scaling = alpha / {'sqrt(r)' if pcfg.get('use_rslora') else 'r'}",
                 abs(float(scaling) - want_s) <= 1e-6 * abs(want_s))
        for t in ("lora_A", "lora_B"):
            x = g[t]
            rp.check(f"{m}/{t} is 2-D", x.ndim == 2, f"{x.shape}")
            same_as_peft(f"{m}/{t}", x, peft[f"{m}.{t}.weight"])
            opt_like(f"{m}/{t}", x)
    for m in wmods:
        for n in ad[m].keys():
            x = ad[m][n]
            rp.check(f"{m}/{n} is a float32 tensor of rank 1 or 2", x.dtype == np.float32 and x.ndim in (1, 2),
                     f"{x.dtype} {x.shape}")
            if f"{m}.{n}" in peft:
                same_as_peft(f"{m}/{n} (whole)", x, peft[f"{m}.{n}"])
            opt_like(f"{m}/{n}", x)
            for tree in ("exp_avg", "exp_avg_sq"):
                rp.check(f"/optimizer/{tree}/{m} holds /adapter/{m}'s datasets",
                         sorted(opt[tree][m].keys()) == sorted(ad[m].keys()))
    return rp.close()


def main(argv):
    args = [a for a in argv[1:]]
    tol = TOL
    opts = {}
    for flag in ("--tol", "--targets", "--dtype", "--shard"):
        if flag in args:
            i = args.index(flag)
            opts[flag] = args[i + 1]
            del args[i:i + 2]
    if "--tol" in opts:
        tol = float(opts["--tol"])
    if not args:
        sys.stderr.write(__doc__)
        return 2
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    cmd, rest = args[0], args[1:]
    table = {
        "batch": (5, lambda a: cmd_batch(*a)),
        "peft-load": (4, lambda a: cmd_peft_load(*a, tol)),
        "hf-load": (3, lambda a: cmd_hf_load(*a, tol)),
        "peft-train": (5, lambda a: cmd_peft_train(*a, opts.get("--targets"))),
        "peft-init": (3, lambda a: cmd_peft_init(*a)),
        "random-model": (3, lambda a: cmd_random_model(*a, opts.get("--dtype", "float32"), opts.get("--shard"))),
        "tokens": (4, lambda a: cmd_tokens(*a)),
        "peft-eval": (5, lambda a: cmd_peft_eval(*a)),
        "compare": (2, lambda a: cmd_compare(*a, tol)),
        "generate": (4, lambda a: cmd_generate(*a)),
        "generate-text": (4, lambda a: cmd_generate_text(*a)),
        "h5-checkpoint": (2, lambda a: cmd_h5(*a)),
        "bert-base": (4, lambda a: cmd_bert_base(*a)),
    }
    if cmd not in table or len(rest) != table[cmd][0]:
        sys.stderr.write(__doc__)
        return 2
    return table[cmd][1](rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
