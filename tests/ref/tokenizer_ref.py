"""HF tokenizers references for `lora tokenize` (tests/ref_tokenizer.sh).

Trains one tokenizer of each kind with HF tokenizers' own trainers on text the
repository has (WordNet glosses, Python documentation decoded from the demo's
token file, Python source code of the reference environment's standard
library), saves each as a tokenizer.json folder, and writes what HF's
tokenizers.Tokenizer gives for a corpus: a fixed list of hard cases plus
random strings (seeded; the seeds are printed), encoded without and with
special tokens, as pairs, and decoded (with and without skip_special_tokens).

    python tokenizer_ref.py OUT_DIR [--seed S] [--random N] [--real DIR]...

--real DIR adds an existing tokenizer folder (a real vocabulary) under the
same checks; --legacy-of NAME=DIR builds a folder without tokenizer.json
(vocab.json + merges.txt, or vocab.txt) whose reference is transformers'
AutoTokenizer. Every line file has one line per corpus line; texts never
contain '\\n' (the separator), and pair texts never contain a TAB.
"""
import argparse
import glob
import json
import os
import random
import shutil
import sys
import sysconfig

os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")  # encode_batch on every core (speed is not measured here)
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GPT2_SPECIAL = "<|endoftext|>"
LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
            r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def training_text():
    """WordNet glosses, the Python docs (decoded from the demo's tokens), stdlib source."""
    lines = open(os.path.join(ROOT, "demo", "wordnet.val.txt"), encoding="utf-8", newline="").read().split("\n")
    demo = Tokenizer.from_file(os.path.join(ROOT, "demo", "tiny-gpt2-pydocs", "tokenizer.json"))
    raw = open(os.path.join(ROOT, "demo", "pydocs.val.bin"), "rb").read()
    import struct
    count = struct.unpack("<3i", raw[:12])[2]
    ids = list(struct.unpack("<%dH" % count, raw[1024:1024 + 2 * count]))
    docs = demo.decode(ids, skip_special_tokens=True)
    lines += docs.split("\n")
    stdlib = sysconfig.get_paths()["stdlib"]
    for f in sorted(glob.glob(os.path.join(stdlib, "*.py")))[:40]:
        lines += open(f, encoding="utf-8", errors="replace").read().split("\n")
    return [l for l in lines if l.strip()]


HARD = [
    "", " ", "  ", "\t", "a", "Hello world", " Hello world", "Hello  world  ", "hello\tworld\r",
    "The quick brown fox jumps over the lazy dog.", "I'm sure they've said we'll go, didn't they? 'S 'T 'RE",
    "ÉCOLE école ECOLE Ḁ ﬁ ﬀ Å Å Å", "naïve café résumé Zürich Ærøskøbing", "İstanbul ıi İI",
    "e\u0301 a\u0308 o\u0302\u0323 \u0301start", "Ǆ ǅ ǆ ΣΑΣ ΌΣΟΣ σς", "Москва, Россия! Привет мир", "Ελληνικά κείμενα",
    "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "สวัสดีชาวโลก", "안녕하세요 세계", "こんにちは世界 カタカナ ｶﾀｶﾅ",
    "中文字符测试，句号。", "𠀀𠀁𠀂 𪜀 𫝀 𬺰 CJK Ext B/C/D/E 𠮷野家", "豈更車 兀嗀", "emoji 😀😃🎉 👍🏽 👨‍👩‍👧‍👦 🇫🇷🇯🇵 ❤️",
    "\x00\x01\x02\x07\x08\x0b\x0c\x0e\x1b\x1f\x7f", "zero\u200bwidth\u200cjoin\u200d\ufeffbom", "\u00a0nbsp\u2003em\u3000ideo\u2028ls\u2029ps\u0085nel",
    "tabs\t\tand    spaces     end   ", "\r\r", "   leading", "trailing   ", "1234567890 3.14159 1e-10 0x1F -42 1,000,000",
    "٠١٢٣ ١٢٣٤ ²³ ½ Ⅻ ⑳", "def f(x):\n".rstrip("\n") + "    return x**2 + 1  # square", "for (int i = 0; i < n; i++) { a[i] += b[i]; }",
    "if __name__ == '__main__': main()", "<html><body class=\"x\">&amp;</body></html>", "https://example.com/path?q=1&r=2#frag",
    "a" * 150, "supercalifragilisticexpialidocious" * 8, "x" * 99 + " " + "y" * 100 + " " + "z" * 101, "9" * 120,
    "<|endoftext|>", "text<|endoftext|>more text", "<|endoftext|><|endoftext|>", " <|endoftext|> spaced ", "<|endoftext",
    "[CLS] [SEP] [MASK] [PAD] [UNK] [cls]", "<s> </s> <unk> <s>hello</s>", "<|begin_of_text|>Hi<|eot_id|>", "<|im_start|>user hi<|im_end|>",
    "<0x41><0xZZ>", "▁already ▁has ▁▁metaspace", "Ġbyte Ċlevel", "##piece ##", "\ufffd replacement \ufffd",
    "\U0010fffd \U000e0001 \U000f0000 private use \ue000", "\ud7ff\ue000\ufffe\uffff", "Ǉ ǈ ǉ ẞ ß ŉ ǰ ΐ",
    "ʰʲ ˀ ꜝ ǃ", "‘quotes’ “double” «guillemets» „low“ — – … ·", "a-b_c.d,e;f:g!h?i(j)k[l]m{n}o",
    "#$%&*+/<=>@\\^`|~", "\u0660\u06f0\u07c0\u0966\u09e6 \U0001d7ce\U0001d7d8", "ꙮ ꧁꧂ ᚠᛇᚻ ⠁⠃⠉",
]


PROBED = [(0, 0x3FFFF), (0xE0000, 0xE0FFF), (0xF0000, 0xF00FF), (0x10FF00, 0x10FFFF)]


def probe_chars():
    return [c for a, b in PROBED for c in range(a, b + 1) if not 0xD800 <= c <= 0xDFFF and c != 10]


def probe_line(cs):
    """Each code point in a few contexts: inside a word, doubled, after a digit, next
    to pieces that merge ("_S", "the"), so that a split or a class that differs shows."""
    return "".join("a%sb %s%s1 %s_S the%sthe " % ((chr(c),) * 5) for c in cs)


def excluded_chars(tok, d, lora):
    """Code points whose probe tokenizes differently in HF and in lora: the
    characters whose Unicode properties differ between HF's tables (crates of
    several Unicode versions) and utf8proc's (15.0) or PCRE2's (14.0). Probed 24
    to a line, then one by one in the lines that differ."""
    import subprocess

    def differ(lines):
        path = os.path.join(d, "probe.txt")
        write_lines(path, lines)
        hf = [" ".join(map(str, e.ids)) for e in tok.encode_batch(lines, add_special_tokens=False)]
        r = subprocess.run([lora, "tokenize", "--model", d, path], capture_output=True, text=True)
        os.remove(path)
        if r.returncode:
            sys.exit("tokenizer_ref: lora tokenize on the probes failed: " + r.stderr[:300])
        ours = r.stdout.split("\n")
        return [i for i, h in enumerate(hf) if i >= len(ours) or ours[i] != h]

    chars = probe_chars()
    groups = [chars[i:i + 24] for i in range(0, len(chars), 24)]
    suspects = [c for g in differ([probe_line(g) for g in groups]) for c in groups[g]]
    return {suspects[i] for i in differ([probe_line([c]) for c in suspects])} if suspects else set()


def random_strings(rng, n, excluded=frozenset()):
    """Random texts: ASCII, whitespace, accents and combining marks, many scripts,
    CJK and its Extension B, emoji, any code point, special-token snippets."""
    pools = [
        (30, lambda: chr(rng.randint(32, 126))),
        (8, lambda: rng.choice(" \t\r \u00a0\u3000\u2028\u0085\x0b\x0c")),
        (8, lambda: chr(rng.randint(0xC0, 0x24F))),
        (5, lambda: chr(rng.randint(0x300, 0x36F))),
        (5, lambda: chr(rng.randint(0x4E00, 0x9FFF))),
        (3, lambda: chr(rng.randint(0x20000, 0x2A6DF))),
        (5, lambda: chr(rng.choice([rng.randint(0x1F300, 0x1F6FF), rng.randint(0x1F900, 0x1F9FF), 0x200D, 0xFE0F]))),
        (10, lambda: chr(rng.choice([rng.randint(0x400, 0x4FF), rng.randint(0x370, 0x3FF), rng.randint(0x600, 0x6FF),
                                     rng.randint(0x5D0, 0x5EA), rng.randint(0x900, 0x97F), rng.randint(0xE00, 0xE7F),
                                     rng.randint(0xAC00, 0xD7A3), rng.randint(0x3040, 0x30FF)]))),
        (4, lambda: chr(rng.choice([rng.randint(0, 0xD7FF), rng.randint(0xE000, 0x3FFFF), rng.randint(0x40000, 0xDFFFF),
                                    rng.randint(0xE0000, 0xE0FFF), rng.randint(0xF0000, 0xF00FF)]))),
        (4, lambda: rng.choice(["<|endoftext|>", "[CLS]", "[SEP]", "<s>", "</s>", "<unk>", "<|begin_of_text|>",
                                "<|im_end|>", "<0x41>", "▁", "##", "'s", "'LL", "123", "  ", "\t\t"])),
        (3, lambda: chr(rng.randint(0, 31))),
    ]
    total = sum(w for w, _ in pools)
    out = []
    for _ in range(n):
        k = rng.choice([0, 1, 2, 5, 10, 20, 40, 80, 200])
        s = []
        while len(s) < k and rng.random() > 1.0 / (k + 1):
            r = rng.randrange(total)
            for w, f in pools:
                if r < w:
                    x = f()
                    if not any(ord(ch) in excluded for ch in x):
                        s.append(x)
                    break
                r -= w
        out.append("".join(s).replace("\n", " "))
    return out


def bpe_trainer(size, special, **kw):
    return trainers.BpeTrainer(vocab_size=size, special_tokens=special, show_progress=False, **kw)


def train(tok, trainer, text):
    tok.train_from_iterator(text, trainer=trainer)
    return tok


def byte_level_kinds(text):
    """GPT-2, LLaMA-3 and Qwen2 layouts of byte-level BPE."""
    out = {}
    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    t.post_processor = processors.ByteLevel(trim_offsets=False)
    out["gpt2"] = train(t, bpe_trainer(3000, [GPT2_SPECIAL], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()), text)

    t = Tokenizer(models.BPE(ignore_merges=True))
    t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_RE), "isolated"),
                                               pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    t.decoder = decoders.ByteLevel()
    sp = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"] + ["<|reserved_special_token_%d|>" % i for i in range(5)]
    train(t, bpe_trainer(3000, sp, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()), text)
    bos = t.token_to_id("<|begin_of_text|>")
    t.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|>:1 $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)])])
    out["llama3"] = t

    t = Tokenizer(models.BPE())
    t.normalizer = normalizers.NFC()
    t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(QWEN2_RE), "isolated"),
                                               pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    t.decoder = decoders.ByteLevel()
    t.post_processor = processors.ByteLevel(trim_offsets=False)
    out["qwen2"] = train(t, bpe_trainer(3000, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()), text)
    return out


def wordpiece_kinds(text):
    out = {}
    sp = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    for name, lower, maxc in [("bert", True, 100), ("bert-cased", False, 12)]:
        t = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=maxc))
        t.normalizer = normalizers.BertNormalizer(lowercase=lower)
        t.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        t.decoder = decoders.WordPiece()
        train(t, trainers.WordPieceTrainer(vocab_size=3000, special_tokens=sp, show_progress=False, limit_alphabet=300), text)
        cls, sep = t.token_to_id("[CLS]"), t.token_to_id("[SEP]")
        if lower:
            t.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                             special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
        else:
            t.post_processor = processors.BertProcessing(("[SEP]", sep), ("[CLS]", cls))
        out[name] = t
    return out


def sentencepiece_kinds(text):
    """LLaMA-2 (Prepend + Replace normalizer, no pre-tokenizer) and Mistral-style
    Metaspace layouts (prepend_scheme first and always) of a BPE with byte fallback
    and fuse_unk (the "always" one lacks some byte tokens, so unknowns fuse)."""
    t = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    t.pre_tokenizer = pre_tokenizers.Metaspace()
    byte_toks = ["<0x%02X>" % b for b in range(256)]
    train(t, bpe_trainer(3000, ["<unk>", "<s>", "</s>"] + byte_toks, limit_alphabet=120), text)
    base = json.loads(t.to_str())
    base["added_tokens"] = base["added_tokens"][:3]  # <0xNN> stay model tokens, as in LLaMA's files
    base["model"]["byte_fallback"] = True
    base["model"]["fuse_unk"] = True
    tmpl = {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
    sp_dec = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    out = {}
    d = json.loads(json.dumps(base))
    d["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"},
                                                            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
    d["pre_tokenizer"] = None
    d["post_processor"] = tmpl
    d["decoder"] = sp_dec
    out["llama2"] = Tokenizer.from_str(json.dumps(d))
    for scheme, split in [("first", False), ("always", True)]:
        d = json.loads(json.dumps(base))
        if scheme == "always":  # no byte tokens for 3-byte leads: CJK and others fall to <unk>, fused
            for b in range(0xE0, 0xF0):
                del d["model"]["vocab"]["<0x%02X>" % b]
        d["normalizer"] = None
        d["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": scheme, "split": split}
        d["post_processor"] = tmpl
        d["decoder"] = ({"type": "Metaspace", "replacement": "▁", "prepend_scheme": scheme, "split": split}
                        if scheme == "always" else sp_dec)
        out["metaspace-" + scheme] = Tokenizer.from_str(json.dumps(d))
    return out


def other_kinds(text):
    """WordLevel with the remaining normalizers and pre-tokenizers."""
    t = Tokenizer(models.WordLevel(unk_token="<unk>"))
    t.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase(), normalizers.Strip(),
                                         normalizers.Replace(Regex(r"\d{4,}"), "<num>")])
    t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True),
                                               pre_tokenizers.Punctuation("contiguous")])
    train(t, trainers.WordLevelTrainer(vocab_size=4000, special_tokens=["<unk>", "<cls>", "<sep>"], show_progress=False), text)
    t.post_processor = processors.RobertaProcessing(("<sep>", t.token_to_id("<sep>")), ("<cls>", t.token_to_id("<cls>")))
    out = {"wordlevel": t}
    t = Tokenizer(models.BPE(unk_token="[UNK]", continuing_subword_prefix="##", end_of_word_suffix="</w>"))
    t.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.StripAccents(), normalizers.Lowercase()])
    t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.CharDelimiterSplit("-")])
    t.decoder = decoders.BPEDecoder()
    train(t, bpe_trainer(2000, ["[UNK]"], continuing_subword_prefix="##", end_of_word_suffix="</w>", limit_alphabet=100), text)
    out["bpe-suffix"] = t
    return out


def write_lines(path, lines):
    with open(path, "w", encoding="utf-8", newline="") as f:
        for l in lines:
            f.write(l + "\n")


def references(tok, d, corpus, pairs):
    enc = lambda xs, sp: [" ".join(map(str, e.ids)) for e in tok.encode_batch(xs, add_special_tokens=sp)]
    write_lines(os.path.join(d, "corpus.txt"), corpus)
    write_lines(os.path.join(d, "pairs.txt"), ["%s\t%s" % p for p in pairs])
    write_lines(os.path.join(d, "plain.ids"), enc(corpus, False))
    special = tok.encode_batch(corpus, add_special_tokens=True)
    write_lines(os.path.join(d, "special.ids"), [" ".join(map(str, e.ids)) for e in special])
    for sp, name in [(True, "pair_special.ids"), (False, "pair_plain.ids")]:
        es = tok.encode_batch(pairs, add_special_tokens=sp)
        write_lines(os.path.join(d, name), ["%s\t%s" % (" ".join(map(str, e.ids)), " ".join(map(str, e.type_ids))) for e in es])
    ids = [e.ids for e in special]
    for skip, name in [(False, "decode.txt"), (True, "decode_skip.txt")]:
        texts = tok.decode_batch(ids, skip_special_tokens=skip)
        bad = [t for t in texts if "\n" in t]
        if bad:
            sys.exit("tokenizer_ref: a decoded text holds a newline: %r" % bad[0][:80])
        write_lines(os.path.join(d, name), texts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--random", type=int, default=3000)
    ap.add_argument("--real", action="append", default=[], help="NAME=DIR of an existing tokenizer folder")
    ap.add_argument("--legacy", action="append", default=[], help="NAME=DIR of a folder transformers loads")
    ap.add_argument("--only", default="", help="comma-separated kinds to build (default: all)")
    ap.add_argument("--save-only", action="store_true", help="train and save the tokenizers, no references (for the bench)")
    ap.add_argument("--lora", default=os.path.join(ROOT, "build", "bin", "lora"), help="for the per-character probes")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    text = training_text()
    wordnet = [l for l in open(os.path.join(ROOT, "demo", "wordnet.val.txt"), encoding="utf-8", newline="").read().split("\n") if l][:300]
    code = [l for l in text if l.startswith(("    ", "def ", "class ", "import "))][:200]
    toks = {}
    only = set(filter(None, a.only.split(",")))
    kinds = {byte_level_kinds: {"gpt2", "llama3", "qwen2"}, wordpiece_kinds: {"bert", "bert-cased"},
             sentencepiece_kinds: {"llama2", "metaspace-first", "metaspace-always"}, other_kinds: {"wordlevel", "bpe-suffix"}}
    for f, names in kinds.items():
        if not only or only & names:
            toks.update(f(text))
    items = [(n, t, None) for n, t in toks.items() if not only or n in only]
    for spec in a.real:
        n, dirp = spec.split("=", 1)
        items.append((n, Tokenizer.from_file(os.path.join(dirp, "tokenizer.json")), dirp))
    for spec in a.legacy:
        n, dirp = spec.split("=", 1)
        from transformers import AutoTokenizer
        items.append((n, AutoTokenizer.from_pretrained(dirp).backend_tokenizer, dirp))
    for k, (name, tok, src) in enumerate(items):
        d = os.path.join(a.out, name)
        os.makedirs(d, exist_ok=True)
        if src is None:
            tok.save(os.path.join(d, "tokenizer.json"))
        else:
            for f in os.listdir(src):
                if os.path.isfile(os.path.join(src, f)) and not f.endswith((".safetensors", ".bin", ".onnx", ".model")):
                    shutil.copy(os.path.join(src, f), d)
        if a.save_only:
            continue
        seed = a.seed + 1000 * k
        rng = random.Random(seed)
        excl = excluded_chars(tok, d, a.lora)
        import unicodedata as ud
        stable = [c for c in sorted(excl) if ud.ucd_3_2_0.category(chr(c)) not in ("Cn", ud.category(chr(c))) or
                  (ud.ucd_3_2_0.category(chr(c)) != "Cn" and ud.ucd_3_2_0.category(chr(c)) == ud.category(chr(c)) and
                   ud.ucd_3_2_0.decomposition(chr(c)) == ud.decomposition(chr(c)))]
        stable = [c for c in stable if ud.ucd_3_2_0.category(chr(c)) == ud.category(chr(c))]
        if stable:  # a character whose properties have not changed since Unicode 3.2 must not differ
            sys.exit("tokenizer_ref: %s: code points that Unicode versions agree on tokenize differently: %s" %
                     (name, " ".join("U+%04X" % c for c in stable[:20])))
        write_lines(os.path.join(d, "excluded.txt"), ["U+%04X" % c for c in sorted(excl)])
        rnd = random_strings(rng, a.random, excl)
        corpus = HARD + wordnet + code + rnd
        rng.shuffle(pool := [c.replace("\t", " ") for c in corpus])
        pairs = list(zip(pool[: len(pool) // 2], pool[len(pool) // 2:]))[:2000]
        references(tok, d, corpus, pairs)
        print("tokenizer_ref: %s: %d lines (%d fixed, %d random strings, seed %d), %d pairs; %d of %d code points "
              "tokenize differently alone (Unicode tables), kept out of the random strings%s" %
              (name, len(corpus), len(corpus) - len(rnd), len(rnd), seed, len(pairs), len(excl), len(probe_chars()),
               (": " + " ".join("U+%04X" % c for c in sorted(excl)[:12]) + (" ..." if len(excl) > 12 else "")) if excl else ""),
              flush=True)


if __name__ == "__main__":
    main()
