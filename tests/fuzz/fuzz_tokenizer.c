/*
 * fuzz_tokenizer: every tokenizer file format (worker/tokenizer*.c). The
 * first byte picks the format:
 *   0: tokenizer.json, parsed in memory (tkz_from_json);
 *   1: a GPT-2 BPE folder: vocab.json, merges.txt and (optionally)
 *      tokenizer_config.json, the rest of the input cut at NUL bytes;
 *   2: a BERT WordPiece folder: vocab.txt and (optionally)
 *      tokenizer_config.json, cut at a NUL byte;
 * the folders through tkz_open on a temporary folder. A tokenizer that loads
 * encodes a few fixed texts, single and as pairs, with and without special
 * tokens and truncation; every id must be inside its vocabulary
 * (tkz_vocab_size), the mask 0 or 1; the ids decode back. Seeds:
 * tests/fuzz/seeds/tokenizer (hand-made, one per format).
 */
#include "fuzz_util.h"
#include "tokenizer.h"

static const char *texts[] = {
    "Hello world, this is a test.",
    "  h\xc3\xa9llo\tWORLD \xc2\xbfqu\xc3\xa9? \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e 12345 don't <s> [CLS] <|endoftext|>",
    "",
    "a",
};

static void check_enc(const tkz *t, const tkz_enc *x) {
    int V = tkz_vocab_size(t);
    for (size_t i = 0; i < x->n; i++) {
        if (x->ids[i] < 0 || x->ids[i] >= V) {
            fprintf(stderr, "fuzz: encode gave id %d, outside the vocabulary (size %d)\n", x->ids[i], V);
            abort();
        }
        if (x->mask[i] > 1) abort();
        (void)tkz_id_to_token(t, x->ids[i]);
        (void)tkz_is_special(t, x->ids[i]);
    }
}

static void exercise(tkz *t, const uint8_t *tail, size_t tail_n) {
    tkz_enc x = {0};
    struct lerr e;
    (void)tkz_kind(t);
    (void)tkz_subword_prefix(t);
    int V = tkz_vocab_size(t);
    if (V <= 0) abort();
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) tkz_set_truncation(t, 6);
        for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
            for (int special = 0; special < 2; special++) {
                const char *pair = i % 2 ? texts[(i + 1) % 4] : NULL;
                e.msg[0] = 0;
                int rc = tkz_encode(t, texts[i], strlen(texts[i]), pair, pair ? strlen(pair) : 0, special, &x, &e);
                fuzz_need_msg(rc != 0, &e, "tkz_encode");
                if (rc) continue;
                check_enc(t, &x);
                char *s = NULL;
                size_t sl = 0;
                e.msg[0] = 0;
                rc = tkz_decode(t, x.ids, x.n, special, &s, &sl, &e);
                fuzz_need_msg(rc != 0, &e, "tkz_decode");
                if (rc == 0 && (!s || strlen(s) != sl)) abort();
                free(s);
            }
        }
    }
    tkz_no_truncation_padding(t);
    /* the input's own tail as a text (often not UTF-8: an error with a message) */
    e.msg[0] = 0;
    int rc = tkz_encode(t, (const char *)tail, tail_n, NULL, 0, 1, &x, &e);
    fuzz_need_msg(rc != 0, &e, "tkz_encode (input tail)");
    if (rc == 0) check_enc(t, &x);
    /* ids outside the vocabulary are dropped by decode */
    int32_t odd[] = {-1, V, V + 7, INT32_MAX, 0, V - 1, INT32_MIN};
    char *s = NULL;
    size_t sl = 0;
    e.msg[0] = 0;
    rc = tkz_decode(t, odd, sizeof odd / sizeof *odd, 0, &s, &sl, &e);
    fuzz_need_msg(rc != 0, &e, "tkz_decode (odd ids)");
    free(s);
    (void)tkz_token_to_id(t, "the");
    (void)tkz_id_to_token(t, -1);
    (void)tkz_id_to_token(t, V);
    tkz_enc_free(&x);
}

/* The next part of [*p, end) up to a NUL byte. */
static const uint8_t *part(const uint8_t **p, const uint8_t *end, size_t *n, int *found) {
    const uint8_t *s = *p;
    const uint8_t *z = s < end ? memchr(s, 0, (size_t)(end - s)) : NULL;
    *found = s < end;
    *n = z ? (size_t)(z - s) : (size_t)(end - s);
    *p = z ? z + 1 : end;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > (1 << 18)) return 0;
    int mode = data[0] % 3;
    const uint8_t *p = data + 1, *end = data + size;
    struct lerr e;
    e.msg[0] = 0;
    tkz *t;
    if (mode == 0) {
        t = tkz_from_json((const char *)p, (size_t)(end - p), "tokenizer.json", &e);
    } else {
        size_t n;
        int found;
        const uint8_t *a = part(&p, end, &n, &found);
        fuzz_unlink("tokenizer.json");
        fuzz_unlink(mode == 1 ? "vocab.txt" : "vocab.json");
        fuzz_unlink("merges.txt");
        if (mode == 1) {
            fuzz_file("vocab.json", a, n);
            a = part(&p, end, &n, &found);
            fuzz_file("merges.txt", a, n);
        } else {
            fuzz_file("vocab.txt", a, n);
        }
        a = part(&p, end, &n, &found);
        if (found) fuzz_file("tokenizer_config.json", a, n);
        else fuzz_unlink("tokenizer_config.json");
        t = tkz_open(fuzz_dir(), &e);
    }
    fuzz_need_msg(!t, &e, mode == 0 ? "tkz_from_json" : "tkz_open");
    if (!t) return 0;
    size_t tail = size > 64 ? 64 : size;
    exercise(t, data + size - tail, tail);
    tkz_free(t);
    return 0;
}
