/*
 * WordPiece (models/wordpiece/mod.rs): greedy longest match first from the
 * start of the word, continuation pieces looked up with their prefix ("##");
 * a word with more than max_input_chars_per_word characters, or with a part
 * that matches nothing, is the unknown token. WordLevel: the word or unknown.
 */
#include <string.h>

#include "tokenizer_int.h"

static int unk(const tkz_model *m, tkz_ivec *out, const char *model, struct lerr *e) {
    if (m->unk_id < 0) return lerr_set(e, "%s: unk_token '%s' is not in the vocabulary", model, m->unk_name ? m->unk_name : "");
    return tkz_ivec_push(out, m->unk_id) ? lerr_set(e, "%s: out of memory", model) : 0;
}

int tkz_wordpiece_word(tkz_model *m, const char *w, size_t n, tkz_ivec *out, struct lerr *e) {
    size_t chars = 0;
    for (size_t i = 0; i < n; i++) chars += ((unsigned char)w[i] & 0xC0) != 0x80;
    if (chars > (size_t)m->max_chars) return unk(m, out, "WordPiece", e);
    size_t n0 = out->n, start = 0;
    tkz_buf *b = &m->tmp;
    while (start < n) {
        size_t end = n;
        int32_t id = -1;
        size_t pre = start > 0 ? m->prefix_len : 0;
        while (start < end) {
            if (end - start + pre <= m->max_len) { /* a longer candidate cannot be in the vocabulary */
                const char *q = w + start;
                size_t qn = end - start;
                if (pre) {
                    b->n = 0;
                    if (tkz_buf_put(b, m->prefix, pre) || tkz_buf_put(b, w + start, end - start))
                        return lerr_set(e, "WordPiece: out of memory");
                    q = b->p;
                    qn = b->n;
                }
                id = tkz_smap_get(&m->vocab, q, qn);
                if (id >= 0) break;
            }
            do end--;
            while (end > start && ((unsigned char)w[end] & 0xC0) == 0x80);
        }
        if (id < 0) {
            out->n = n0;
            return unk(m, out, "WordPiece", e);
        }
        if (tkz_ivec_push(out, id)) return lerr_set(e, "WordPiece: out of memory");
        start = end;
    }
    return 0;
}

int tkz_wordlevel_word(const tkz_model *m, const char *w, size_t n, tkz_ivec *out, struct lerr *e) {
    int32_t id = tkz_smap_get(&m->vocab, w, n);
    if (id < 0) return unk(m, out, "WordLevel", e);
    return tkz_ivec_push(out, id) ? lerr_set(e, "WordLevel: out of memory") : 0;
}
