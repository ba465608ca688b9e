/*
 * Tokenizer unit tests: each component on small tokenizer.json texts with ids
 * worked out by hand from HF's rules (tests/ref_tokenizer.sh checks against
 * HF itself), the error messages of bad files (each names its field), the
 * regex translation, UTF-8, a smoke fuzz of the JSON loader, and the demo:
 * demo/wordnet.val.txt encoded line by line, each line followed by
 * <|endoftext|>, is demo/wordnet.val.bin exactly.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../worker/tokenizer_int.h"
#include "data.h"
#include "testutil.h"
#include "util.h"

static tkz *load(const char *json) {
    struct lerr e = {{0}};
    tkz *t = tkz_from_json(json, strlen(json), "test.json", &e);
    if (!t) fprintf(stderr, "load failed: %s\n", e.msg);
    return t;
}

/* The ids of text (add_special as given) as "1 2 3". */
static const char *ids(tkz *t, const char *text, int add_special) {
    static char out[4096];
    tkz_enc x = {0};
    struct lerr e = {{0}};
    out[0] = 0;
    if (tkz_encode(t, text, strlen(text), NULL, 0, add_special, &x, &e)) {
        snprintf(out, sizeof out, "error: %s", e.msg);
    } else {
        size_t k = 0;
        for (size_t i = 0; i < x.n && k + 16 < sizeof out; i++) k += (size_t)snprintf(out + k, sizeof out - k, i ? " %d" : "%d", x.ids[i]);
    }
    tkz_enc_free(&x);
    return out;
}

static const char *pair_types(tkz *t, const char *a, const char *b) {
    static char out[1024];
    tkz_enc x = {0};
    struct lerr e = {{0}};
    out[0] = 0;
    if (tkz_encode(t, a, strlen(a), b, strlen(b), 1, &x, &e)) {
        snprintf(out, sizeof out, "error: %s", e.msg);
    } else {
        size_t k = 0;
        for (size_t i = 0; i < x.n; i++) k += (size_t)snprintf(out + k, sizeof out - k, i ? " %d:%d" : "%d:%d", x.ids[i], x.type_ids[i]);
    }
    tkz_enc_free(&x);
    return out;
}

static const char *decode(tkz *t, const char *list, int skip) {
    static char out[1024];
    int32_t v[256];
    size_t n = 0;
    for (char *p = (char *)list, *q; *p && n < 256; p = q) {
        v[n++] = (int32_t)strtol(p, &q, 10);
        if (q == p) break;
    }
    char *s = NULL;
    size_t len;
    struct lerr e = {{0}};
    if (tkz_decode(t, v, n, skip, &s, &len, &e)) snprintf(out, sizeof out, "error: %s", e.msg);
    else snprintf(out, sizeof out, "%s", s);
    free(s);
    return out;
}

/* A load that must fail with a message containing want. */
static void bad(const char *json, const char *want) {
    struct lerr e = {{0}};
    tkz *t = tkz_from_json(json, strlen(json), "bad.json", &e);
    CHECK(!t && strstr(e.msg, want), "expected an error with '%s', got: %s", want, t ? "(loaded)" : e.msg);
    tkz_free(t);
}

#define EQ(got, want) CHECK(!strcmp((got), (want)), "got '%s', want '%s'", (got), (want))

/* a, b, c, ab, abc, bc and <unk>; merges a+b (rank 0), ab+c (1), b+c (2). */
#define BPE_VOCAB "\"vocab\": {\"<unk>\": 0, \"a\": 1, \"b\": 2, \"c\": 3, \"ab\": 4, \"abc\": 5, \"bc\": 6}"

static void test_bpe(void) {
    const char *j1 = "{\"model\": {\"type\": \"BPE\", " BPE_VOCAB ", \"merges\": [\"a b\", \"ab c\", \"b c\"], \"unk_token\": \"<unk>\"},"
                     " \"pre_tokenizer\": {\"type\": \"WhitespaceSplit\"}}";
    const char *j2 = "{\"model\": {\"type\": \"BPE\", " BPE_VOCAB ", \"merges\": [[\"a\", \"b\"], [\"ab\", \"c\"], [\"b\", \"c\"]], \"unk_token\": \"<unk>\"},"
                     " \"pre_tokenizer\": {\"type\": \"WhitespaceSplit\"}}";
    tkz *a = load(j1), *b = load(j2);
    CHECK(a && b, "BPE loads");
    if (!a || !b) return;
    EQ(ids(a, "abc", 0), "5");
    EQ(ids(b, "abc", 0), "5");
    EQ(ids(a, "bc abx", 0), "6 4 0"); /* x is unknown: <unk> */
    EQ(ids(a, "xxab", 0), "0 0 4");   /* fuse_unk off: one <unk> per character */
    EQ(ids(a, "cab", 0), "3 4");      /* a+b (rank 0) before b+c */
    EQ(ids(a, "abc abc", 0), "5 5");  /* the cache gives the same */
    tkz_free(a);
    tkz_free(b);
    /* a later merge of the same pair wins (HF's map keeps the last rank) */
    tkz *c = load("{\"model\": {\"type\": \"BPE\", " BPE_VOCAB ", \"merges\": [\"b c\", \"a b\", \"ab c\"]}}");
    if (c) EQ(ids(c, "abc", 0), "1 6"); /* b+c first now */
    tkz_free(c);
    /* fuse_unk, ignore_merges */
    tkz *d = load("{\"model\": {\"type\": \"BPE\", " BPE_VOCAB ", \"merges\": [\"a b\"], \"unk_token\": \"<unk>\", \"fuse_unk\": true,"
                  " \"ignore_merges\": true}}");
    if (d) {
        EQ(ids(d, "xyzab", 0), "0 4");
        EQ(ids(d, "abc", 0), "5"); /* in the vocabulary as a whole, though no merge makes it */
        EQ(ids(d, "bc", 0), "6");
    }
    tkz_free(d);
    /* byte fallback: <0xC3> <0xA9> for é; a pending <unk> stays behind bytes, as in HF */
    tkz *f = load("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"<unk>\": 0, \"a\": 1, \"<0xC3>\": 2, \"<0xA9>\": 3}, \"merges\": [],"
                  " \"byte_fallback\": true, \"unk_token\": \"<unk>\"}, \"decoder\": {\"type\": \"Sequence\", \"decoders\": ["
                  "{\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}]}}");
    if (f) {
        EQ(ids(f, "a\xC3\xA9" "a", 0), "1 2 3 1");
        EQ(ids(f, "\xE2\x82\xAC", 0), "0"); /* no <0xE2>: <unk> */
        EQ(decode(f, "1 2 3 1", 0), "a\xC3\xA9" "a");
        EQ(decode(f, "2 1", 0), "\xEF\xBF\xBD" "a"); /* a lone byte: U+FFFD per byte */
        EQ(decode(f, "2 2", 0), "\xEF\xBF\xBD\xEF\xBF\xBD");
    }
    tkz_free(f);
    /* continuing_subword_prefix and end_of_word_suffix */
    tkz *g = load("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"##b</w>\": 1, \"ab</w>\": 2, \"##b\": 3},"
                  " \"merges\": [\"a ##b</w>\"], \"continuing_subword_prefix\": \"##\", \"end_of_word_suffix\": \"</w>\"},"
                  " \"decoder\": {\"type\": \"BPEDecoder\"}}");
    if (g) {
        EQ(ids(g, "ab", 0), "2");
        EQ(decode(g, "2 2", 0), "ab ab");
    }
    tkz_free(g);
}

/* GPT-2's byte-level layout on a tiny vocabulary: every byte's character and "Ġa". */
static char *byte_level_json(const char *extra) {
    tkz_buf b = {0};
    const char *head = "{\"model\": {\"type\": \"BPE\", \"vocab\": {";
    tkz_buf_put(&b, head, strlen(head));
    for (int i = 0; i < 256; i++) {
        char u[8], tmp[64];
        int l = tkz_u8enc(tkz_byte_cp((uint8_t)i), u);
        u[l] = 0;
        if (u[0] == '"' || u[0] == '\\') snprintf(tmp, sizeof tmp, "\"\\%s\": %d, ", u, i);
        else snprintf(tmp, sizeof tmp, "\"%s\": %d, ", u, i);
        tkz_buf_put(&b, tmp, strlen(tmp));
    }
    const char *rest = "\"\xC4\xA0" "a\": 256}, \"merges\": [\"\xC4\xA0 a\"]}, \"pre_tokenizer\": {\"type\": \"ByteLevel\", "
                       "\"add_prefix_space\": false}, \"decoder\": {\"type\": \"ByteLevel\"}, \"added_tokens\": [{\"id\": 257, "
                       "\"content\": \"<|endoftext|>\", \"special\": true}]";
    tkz_buf_put(&b, rest, strlen(rest));
    tkz_buf_put(&b, extra, strlen(extra));
    tkz_buf_put(&b, "}", 1);
    return b.p;
}

static void test_byte_level(void) {
    for (int i = 0; i < 256; i++) CHECK(tkz_cp_byte(tkz_byte_cp((uint8_t)i)) == i, "byte %d round trip", i);
    CHECK(tkz_byte_cp(' ') == 0x120 && tkz_byte_cp('\n') == 0x10A && tkz_byte_cp('A') == 'A', "GPT-2's map");
    char *j = byte_level_json("");
    tkz *t = load(j);
    free(j);
    if (!t) return;
    EQ(ids(t, "a a", 0), "97 256");
    EQ(ids(t, "a<|endoftext|> a", 0), "97 257 256"); /* special tokens split out even without add_special */
    EQ(ids(t, "\xC3\xA9", 0), "195 169");
    EQ(decode(t, "97 257 256", 0), "a<|endoftext|> a");
    EQ(decode(t, "97 257 256", 1), "a a");
    EQ(decode(t, "195", 0), "\xEF\xBF\xBD"); /* lossy UTF-8 */
    EQ(decode(t, "99999", 0), "");           /* unknown ids are dropped, as HF drops them */
    CHECK(!strcmp(tkz_kind(t), "BPE, byte-level"), "kind %s", tkz_kind(t));
    CHECK(tkz_token_to_id(t, "<|endoftext|>") == 257 && !strcmp(tkz_id_to_token(t, 256), "\xC4\xA0" "a"), "lookups");
    tkz_free(t);
}

#define WP_VOCAB "\"vocab\": {\"[UNK]\": 0, \"[CLS]\": 1, \"[SEP]\": 2, \"un\": 3, \"##aff\": 4, \"##able\": 5, \"cafe\": 6, \",\": 7, \"\xE4\xB8\xAD\": 8, \"a\": 9}"

static void test_wordpiece(void) {
    const char *j = "{\"normalizer\": {\"type\": \"BertNormalizer\"}, \"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"},"
                    " \"model\": {\"type\": \"WordPiece\", " WP_VOCAB ", \"max_input_chars_per_word\": 10},"
                    " \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": \"[CLS] $A [SEP]\","
                    " \"pair\": \"[CLS] $A [SEP] $B:1 [SEP]:1\", \"special_tokens\": {\"[CLS]\": {\"id\": \"[CLS]\", \"ids\": [1],"
                    " \"tokens\": [\"[CLS]\"]}, \"[SEP]\": {\"id\": \"[SEP]\", \"ids\": [2], \"tokens\": [\"[SEP]\"]}}},"
                    " \"decoder\": {\"type\": \"WordPiece\"}, \"added_tokens\": [{\"id\": 0, \"content\": \"[UNK]\", \"special\": true},"
                    " {\"id\": 1, \"content\": \"[CLS]\", \"special\": true}, {\"id\": 2, \"content\": \"[SEP]\", \"special\": true}]}";
    tkz *t = load(j);
    if (!t) return;
    EQ(ids(t, "Unaffable", 0), "3 4 5");
    EQ(ids(t, "CAF\xC3\x89,\x01un", 0), "6 7 3");  /* lowercase, accent stripped (NFD, Mn), control dropped */
    EQ(ids(t, "a\xE4\xB8\xAD" "a", 0), "9 8 9");     /* spaces around Chinese characters */
    EQ(ids(t, "unaffableunaff", 0), "0");            /* 14 characters > max_input_chars_per_word */
    EQ(ids(t, "unx", 0), "0");                       /* a part that matches nothing: the whole word is [UNK] */
    EQ(ids(t, "un", 1), "1 3 2");
    EQ(pair_types(t, "un", "a"), "1:0 3:0 2:0 9:1 2:1");
    EQ(decode(t, "1 3 4 5 7 9 2", 0), "[CLS] unaffable, a [SEP]");
    EQ(decode(t, "1 3 4 5 7 9 2", 1), "unaffable, a");
    tkz_free(t);
    /* BertProcessing and RobertaProcessing */
    tkz *b = load("{\"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"}, \"model\": {\"type\": \"WordPiece\", " WP_VOCAB "},"
                  " \"post_processor\": {\"type\": \"BertProcessing\", \"sep\": [\"[SEP]\", 2], \"cls\": [\"[CLS]\", 1]}}");
    if (b) EQ(pair_types(b, "un", "a"), "1:0 3:0 2:0 9:1 2:1");
    tkz_free(b);
    tkz *r = load("{\"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"}, \"model\": {\"type\": \"WordPiece\", " WP_VOCAB "},"
                  " \"post_processor\": {\"type\": \"RobertaProcessing\", \"sep\": [\"[SEP]\", 2], \"cls\": [\"[CLS]\", 1]}}");
    if (r) EQ(pair_types(r, "un", "a"), "1:0 3:0 2:0 2:0 9:0 2:0");
    tkz_free(r);
    /* WordPiece without its unk token in the vocabulary: an error when needed, as in HF */
    tkz *u = load("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}, \"unk_token\": \"[UNK]\"}}");
    if (u) {
        EQ(ids(u, "a", 0), "0");
        CHECK(strstr(ids(u, "b", 0), "unk_token '[UNK]' is not in the vocabulary") != NULL, "%s", ids(u, "b", 0));
    }
    tkz_free(u);
}

/* SentencePiece-style: the LLaMA-2 normalizer layout, and Metaspace "first" / "always". */
static void test_metaspace(void) {
    const char *vocab = "\"vocab\": {\"<unk>\": 0, \"<s>\": 1, \"\xE2\x96\x81\": 2, \"a\": 3, \"\xE2\x96\x81" "a\": 4},"
                        " \"merges\": [\"\xE2\x96\x81 a\"], \"unk_token\": \"<unk>\"";
    char j[2048];
    snprintf(j, sizeof j, "{\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": \"\xE2\x96\x81\"},"
             " {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\xE2\x96\x81\"}]}, \"model\": {\"type\": \"BPE\", %s},"
             " \"added_tokens\": [{\"id\": 1, \"content\": \"<s>\", \"special\": true}], \"decoder\": {\"type\": \"Sequence\", \"decoders\": ["
             "{\"type\": \"Replace\", \"pattern\": {\"String\": \"\xE2\x96\x81\"}, \"content\": \" \"}, {\"type\": \"ByteFallback\"},"
             " {\"type\": \"Fuse\"}, {\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}]}}", vocab);
    tkz *t = load(j);
    if (t) {
        EQ(ids(t, "a a", 0), "4 4");
        EQ(ids(t, "<s>a", 0), "1 4"); /* each piece is normalized: the Prepend applies after <s> too */
        EQ(ids(t, "", 0), "");
        EQ(decode(t, "4 4", 0), "a a");
    }
    tkz_free(t);
    for (int first = 0; first < 2; first++) {
        snprintf(j, sizeof j, "{\"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"\xE2\x96\x81\", \"prepend_scheme\": \"%s\","
                 " \"split\": false}, \"model\": {\"type\": \"BPE\", %s}, \"added_tokens\": [{\"id\": 1, \"content\": \"<s>\","
                 " \"special\": true}], \"decoder\": {\"type\": \"Metaspace\", \"replacement\": \"\xE2\x96\x81\", \"prepend_scheme\": \"%s\"}}",
                 first ? "first" : "always", vocab, first ? "first" : "always");
        tkz *m = load(j);
        if (!m) continue;
        EQ(ids(m, "a", 0), "4");
        EQ(ids(m, "<s>a", 0), first ? "1 3" : "1 4"); /* "first": only where the text starts */
        EQ(ids(m, " ", 0), "2");
        EQ(decode(m, "4 4", 0), "a a");
        tkz_free(m);
    }
}

static void test_added_and_trunc(void) {
    const char *base = "{\"pre_tokenizer\": {\"type\": \"WhitespaceSplit\"}, \"model\": {\"type\": \"WordLevel\", \"vocab\":"
                       " {\"<unk>\": 0, \"a\": 1, \"b\": 2, \"c\": 3}, \"unk_token\": \"<unk>\"}, \"added_tokens\": ["
                       "{\"id\": 4, \"content\": \"[M]\", \"lstrip\": true, \"rstrip\": true, \"special\": true},"
                       " {\"id\": 5, \"content\": \"xy\", \"single_word\": true, \"normalized\": false},"
                       " {\"id\": 6, \"content\": \"[PAD]\", \"special\": true}]";
    char j[2048];
    snprintf(j, sizeof j, "%s}", base);
    tkz *t = load(j);
    if (t) {
        EQ(ids(t, "a  [M]  b", 0), "1 4 2");
        EQ(ids(t, "xy a xyz", 0), "5 1 0"); /* single_word: not inside "xyz" */
        EQ(ids(t, "a[M]", 0), "1 4");
    }
    tkz_free(t);
    snprintf(j, sizeof j, "%s, \"truncation\": {\"max_length\": 3, \"strategy\": \"LongestFirst\", \"stride\": 0, \"direction\": \"Right\"},"
             " \"padding\": {\"strategy\": {\"Fixed\": 5}, \"direction\": \"Left\", \"pad_id\": 6, \"pad_type_id\": 7, \"pad_token\": \"[PAD]\"}}", base);
    t = load(j);
    CHECK(t != NULL, "truncation and padding: the file loads");
    if (t) {
        EQ(ids(t, "a b c a", 0), "6 6 1 2 3");
        EQ(pair_types(t, "a b c", "c b"), "6:7 6:7 1:0 2:0 3:1");
        tkz_no_truncation_padding(t);
        EQ(ids(t, "a b c a", 0), "1 2 3 1");
    }
    tkz_free(t);
}

static void test_regex(void) {
    struct {
        const char *pat, *text, *want; /* want: the matches joined by | */
    } c[] = {
        {"\\s+", "a\xC2\x85" "b\xE1\xA0\x8E" "c", "\xC2\x85"},          /* \s is White_Space: U+0085 yes, U+180E no */
        {"\\h+", "xyz09aF g", "09aF"},                                  /* Ruby's \h: hex digits */
        {"\\w+", "a\xCC\x81\xE2\x85\xA0\xC2\xB2_", "a\xCC\x81\xE2\x85\xA0\xC2\xB2_"}, /* marks, Nl, No, Pc */
        {"(?i:'s)", "'S 's '\xC5\xBF", "'S|'s|'\xC5\xBF"},              /* caseless: long s */
        {"^a", "a\na", "a|a"},                                          /* line anchors */
        {"[^\\s\\p{L}]+", "ab, .c", ",|."},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        tkz_re r;
        struct lerr e = {{0}};
        if (tkz_re_compile(&r, c[i].pat, strlen(c[i].pat), 0, "test", &e)) {
            CHECK(0, "compile %s: %s", c[i].pat, e.msg);
            continue;
        }
        tkz_spanv sp = {0};
        char got[256] = "";
        if (!tkz_re_spans(&r, c[i].text, strlen(c[i].text), &sp, &e))
            for (size_t k = 0; k < sp.n; k++)
                if (sp.v[k].m) snprintf(got + strlen(got), sizeof got - strlen(got), "%s%.*s", got[0] ? "|" : "",
                                        (int)(sp.v[k].e - sp.v[k].s), c[i].text + sp.v[k].s);
        CHECK(!strcmp(got, c[i].want), "/%s/ on '%s': got '%s' want '%s'", c[i].pat, c[i].text, got, c[i].want);
        free(sp.v);
        tkz_re_free(&r);
    }
    tkz_re r;
    struct lerr e = {{0}};
    CHECK(tkz_re_compile(&r, "[\\W]", 4, 0, "pre_tokenizer.pattern", &e) && strstr(e.msg, "pre_tokenizer.pattern"), "%s", e.msg);
    CHECK(tkz_re_compile(&r, "(", 1, 0, "pre_tokenizer.pattern", &e) && strstr(e.msg, "bad regex"), "%s", e.msg);
    /* an empty pattern matches between characters, as onig's find_iter does */
    if (!tkz_re_compile(&r, "", 0, 0, "empty", &e)) {
        tkz_spanv sp = {0};
        tkz_re_spans(&r, "ab", 2, &sp, &e);
        CHECK(sp.n == 5 && sp.v[1].s == 0 && sp.v[1].e == 1 && !sp.v[1].m, "empty-pattern spans: %zu", sp.n);
        free(sp.v);
        tkz_re_free(&r);
    }
}

static void test_utf8_and_errors(void) {
    CHECK(tkz_utf8_valid("a\xC3\xA9", 3) == 3, "valid");
    CHECK(tkz_utf8_valid("a\xC3", 2) == 1, "truncated");
    CHECK(tkz_utf8_valid("\xED\xA0\x80", 3) == 0, "surrogate");
    CHECK(tkz_utf8_valid("\xC0\x80", 2) == 0, "overlong");
    CHECK(tkz_utf8_valid("\xF4\x90\x80\x80", 4) == 0, "above U+10FFFF");
    tkz *t = load("{\"model\": {\"type\": \"WordLevel\", \"vocab\": {\"a\": 0}, \"unk_token\": \"a\"}}");
    if (t) CHECK(strstr(ids(t, "a\xFF", 0), "invalid UTF-8 at byte 1") != NULL, "%s", ids(t, "a\xFF", 0));
    tkz_free(t);
    bad("{", "not valid JSON");
    bad("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", "model type 'Unigram' is not implemented");
    bad("{\"normalizer\": {\"type\": \"Precompiled\"}, \"model\": {\"type\": \"WordLevel\", \"vocab\": {}}}",
        "normalizer: normalizer type 'Precompiled' is not implemented");
    bad("{\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"UnicodeScripts\"}]}, \"model\": {\"type\": \"WordLevel\", \"vocab\": {}}}",
        "pre_tokenizer.pretokenizers[0]: pre-tokenizer type 'UnicodeScripts' is not implemented");
    bad("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a b\"]}}", "model.merges: merge 0 uses 'b'");
    bad("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}", "merge 0 makes 'ab'");
    bad("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a b c\"]}}", "merges[0] = 'a b c' is not two tokens");
    bad("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [], \"dropout\": 0.1}}", "dropout");
    bad("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 1.5}, \"merges\": []}}", "vocab['a'] must be an integer id");
    bad("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []}}", "id 0 is given to both 'a' and 'b'");
    bad("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 99999999}, \"merges\": []}}", "out of range");
    bad("{\"model\": {\"type\": \"WordLevel\", \"vocab\": {}}, \"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"_\","
        " \"add_prefix_space\": false}}", "add_prefix_space does not match declared prepend_scheme");
    bad("{\"model\": {\"type\": \"WordLevel\", \"vocab\": {}}, \"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"ab\"}}",
        "'replacement' must be exactly one character");
    bad("{\"model\": {\"type\": \"WordLevel\", \"vocab\": {}}, \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": \"[X] $A\","
        " \"pair\": \"$A $B\", \"special_tokens\": {}}}", "Missing SpecialToken(s) with id(s) `[X]`");
    bad("{\"model\": {\"type\": \"WordLevel\", \"vocab\": {}}, \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": \"$A\","
        " \"pair\": \"$A\", \"special_tokens\": {}}}", "must use both sequences");
    /* numbers no integer type holds: refused, and checked before the cast (casting 1e300 is UB: the fuzz
     * build's UBSan caught it, tests/fuzz/regress/tokenizer; gcc's -fsanitize=undefined leaves that check out) */
    bad("{\"model\": {\"type\": \"WordLevel\", \"vocab\": {\"a\": 1e300}}}", "vocab['a'] must be an integer id");
    bad("{\"model\": {\"type\": \"WordLevel\", \"vocab\": {\"a\": 0}}, \"padding\": {\"strategy\": \"BatchLongest\", \"pad_id\": -1e300}}",
        "padding: 'pad_id' = -1e+300 is out of range");
    /* special-token and padding ids past the vocabulary (found by fuzz_tokenizer): refused, naming the field */
    bad("{\"model\": {\"type\": \"WordLevel\", \"vocab\": {\"a\": 0, \"b\": 1}}, \"padding\": {\"strategy\": {\"Fixed\": 4}, \"pad_id\": 9}}",
        "padding: 'pad_id' 9 is outside the vocabulary (size 2)");
    bad("{\"model\": {\"type\": \"WordLevel\", \"vocab\": {\"a\": 0}}, \"padding\": {\"strategy\": {\"Fixed\": 1073741823}}}",
        "padding: 'strategy' must be \"BatchLongest\" or {\"Fixed\": n} (1 <= n <= 1048576)");
    bad("{\"model\": {\"type\": \"WordLevel\", \"vocab\": {\"a\": 0}}, \"post_processor\": {\"type\": \"TemplateProcessing\","
        " \"single\": \"$A [X]\", \"pair\": \"$A $B\", \"special_tokens\": {\"[X]\": {\"id\": \"[X]\", \"ids\": [5], \"tokens\": [\"[X]\"]}}}}",
        "post_processor: single[1]: special token id 5 (special_tokens ids) is outside the vocabulary (size 1)");
    bad("{\"model\": {\"type\": \"WordLevel\", \"vocab\": {\"a\": 0, \"b\": 1}}, \"post_processor\": {\"type\": \"Sequence\", \"processors\":"
        " [{\"type\": \"BertProcessing\", \"sep\": [\"b\", 1], \"cls\": [\"c\", 2]}]}}",
        "post_processor.processors[0]: 'cls' id 2 is outside the vocabulary (size 2)");
    bad("{\"model\": {\"type\": \"WordLevel\", \"vocab\": {}}, \"decoder\": {\"type\": \"Nope\"}}", "decoder: decoder type 'Nope' is not implemented");
    bad("{\"model\": {\"type\": \"WordLevel\", \"vocab\": {}}, \"added_tokens\": [{\"id\": 0}]}", "added_tokens[0]: 'content' is missing");
    bad("{\"model\": {\"type\": \"WordLevel\", \"vocab\": {}}, \"padding\": {\"strategy\": \"Wide\"}}", "padding: 'strategy'");
    bad("{\"version\": \"2.0\", \"model\": {\"type\": \"WordLevel\", \"vocab\": {}}}", "Unknown tokenizer version");
    bad("{\"model\": {\"type\": \"WordLevel\", \"vocab\": {\"\xFF\": 0}}}", "not valid UTF-8");
    struct lerr e = {{0}};
    CHECK(!tkz_open("/nonexistent-dir", &e) && strstr(e.msg, "no tokenizer.json"), "%s", e.msg);
}

/* A word that gives no ids (BPE without unk_token drops the characters it does
 * not know), cached and then met again: the copies of zero ids went through
 * NULL pointers (UB; found by fuzz_tokenizer, caught by the sanitizer build). */
static void test_word_without_ids(void) {
    tkz *t = load("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": {\"type\": \"Whitespace\"}}");
    if (!t) return;
    EQ(ids(t, "Hello Hello a", 0), "0");
    EQ(ids(t, "Hello a Hello", 0), "0");
    tkz_free(t);
}

/* Random byte edits of a small valid file: the loader may refuse, never crash
 * (the ASan build runs this too). */
static void test_fuzz_smoke(void) {
    char *base = byte_level_json(", \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFKC\"}, {\"type\": \"Lowercase\"}]},"
                                 " \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": \"$A <|endoftext|>\","
                                 " \"pair\": \"$A $B:1\", \"special_tokens\": {\"<|endoftext|>\": {\"id\": \"<|endoftext|>\", \"ids\": [257],"
                                 " \"tokens\": [\"<|endoftext|>\"]}}}");
    size_t n = strlen(base);
    rng_t r;
    rng_seed(&r, 12345);
    int loaded = 0;
    char *buf = malloc(n + 1);
    for (int it = 0; it < 400; it++) {
        memcpy(buf, base, n + 1);
        size_t len = n;
        int edits = 1 + (int)(rng_next(&r) % 4);
        for (int k = 0; k < edits; k++) {
            size_t at = (size_t)(rng_next(&r) % len);
            switch (rng_next(&r) % 3) {
            case 0: buf[at] = (char)(rng_next(&r) & 0xFF); break;
            case 1: len = at; break;
            default: buf[at] = "{}[]\",:0 -"[rng_next(&r) % 10]; break;
            }
            if (!len) len = 1;
        }
        struct lerr e = {{0}};
        tkz *t = tkz_from_json(buf, len, "fuzz", &e);
        if (t) {
            loaded++;
            ids(t, "Hello, World! <|endoftext|> \xC3\xA9", 1);
            decode(t, "1 2 3 257 300", 1);
        }
        tkz_free(t);
    }
    free(buf);
    free(base);
    printf("fuzz smoke: 400 edited files, %d still loaded\n", loaded);
}

/* The demo's token file is the demo tokenizer's encoding of the text, line by line. */
static void test_demo(void) {
    struct lerr e = {{0}};
    tkz *t = tkz_open("demo/tiny-gpt2-pydocs", &e);
    CHECK(t, "demo tokenizer: %s", e.msg);
    char *txt = read_text_file("demo/wordnet.val.txt", (size_t)1 << 26, &e);
    CHECK(txt, "%s", e.msg);
    tok_file *f = tok_open("demo/wordnet.val.bin", &e);
    CHECK(f, "%s", e.msg);
    if (!t || !txt || !f) goto done;
    int32_t eot = tkz_token_to_id(t, "<|endoftext|>");
    int64_t total = tok_count(f), at = 0, lines = 0, bad_lines = 0;
    int32_t *want = malloc(sizeof(int32_t) * (size_t)total);
    tok_read(f, 0, (int)total, want);
    tkz_enc x = {0};
    for (char *p = txt; *p;) {
        char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (tkz_encode(t, p, len, NULL, 0, 0, &x, &e)) {
            CHECK(0, "line %lld: %s", (long long)lines + 1, e.msg);
            break;
        }
        int ok = at + (int64_t)x.n + 1 <= total;
        for (size_t i = 0; ok && i < x.n; i++) ok = want[at + (int64_t)i] == x.ids[i];
        ok = ok && want[at + (int64_t)x.n] == eot;
        if (!ok && bad_lines++ < 3) fprintf(stderr, "demo: line %lld differs\n", (long long)lines + 1);
        at += (int64_t)x.n + 1;
        lines++;
        p += len + (nl ? 1 : 0);
    }
    CHECK(bad_lines == 0 && at == total, "demo: %lld of %lld lines differ; %lld tokens made, the file has %lld", (long long)bad_lines,
          (long long)lines, (long long)at, (long long)total);
    printf("demo: %lld lines of wordnet.val.txt + <|endoftext|> -> %lld tokens, %s wordnet.val.bin\n", (long long)lines,
           (long long)at, bad_lines == 0 && at == total ? "exactly" : "NOT");
    tkz_enc_free(&x);
    free(want);
done:
    tok_close(f);
    free(txt);
    tkz_free(t);
}

int main(void) {
    test_bpe();
    test_byte_level();
    test_wordpiece();
    test_metaspace();
    test_added_and_trunc();
    test_regex();
    test_utf8_and_errors();
    test_word_without_ids();
    test_fuzz_smoke();
    test_demo();
    return tu_end("test_tokenizer");
}
