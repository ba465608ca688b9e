/*
 * The tokenizer pipeline, as HF's TokenizerImpl::encode runs it
 * (tokenizer/mod.rs, added_vocabulary.rs):
 *  1. added tokens with normalized=false are split out of the raw text
 *     (leftmost-longest; single_word, lstrip, rstrip as HF applies them);
 *  2. each remaining piece is normalized, and added tokens with
 *     normalized=true are split out of the normalized piece;
 *  3. each remaining piece is pre-tokenized into words, and each word goes
 *     through the model (a word -> ids cache in front of it);
 *  4. truncation, the post-processor (special tokens, type ids), padding.
 * Decoding maps ids to token strings (an added token shows its normalized
 * form), drops special ones when asked, and runs the decoder.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tokenizer_int.h"
#include "util.h"

#define CACHE_MAX_WORD 256      /* HF caches words shorter than this (utils/cache.rs MAX_LENGTH) */
#define CACHE_MAX_ENT (1 << 20) /* then the cache starts over */

/* ---- added tokens ---- */
static int added_by_id(const tkz *t, int32_t id) {
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].id == id && t->added[i].content) return i;
    return -1;
}

int32_t tkz_token_to_id(const tkz *t, const char *tok) {
    size_t n = strlen(tok);
    int32_t k = tkz_smap_get(&t->added_map, tok, n);
    if (k >= 0) return t->added[k].id;
    return tkz_smap_get(&t->model.vocab, tok, n);
}

const char *tkz_id_to_token(const tkz *t, int32_t id) {
    int k = added_by_id(t, id);
    if (k >= 0) return t->added[k].content;
    return tkz_model_tok(&t->model, id);
}

static int cmp_added(const void *a, const void *b, void *ctx) {
    const tkz *t = ctx;
    const tkz_added *x = &t->added[*(const int *)a], *y = &t->added[*(const int *)b];
    const char *px = x->normalized ? x->dec : x->content, *py = y->normalized ? y->dec : y->content;
    size_t lx = x->normalized ? x->dec_len : x->len, ly = y->normalized ? y->dec_len : y->len;
    if ((unsigned char)px[0] != (unsigned char)py[0]) return (unsigned char)px[0] - (unsigned char)py[0];
    return lx < ly ? 1 : lx > ly ? -1 : 0; /* longest first */
}

static int build_matcher(tkz *t, tkz_matcher *m, int normalized) {
    free(m->idx);
    memset(m, 0, sizeof *m);
    m->idx = malloc(sizeof(int) * (size_t)(t->n_added + 1));
    if (!m->idx) return -1;
    for (int i = 0; i < t->n_added; i++) {
        const tkz_added *a = &t->added[i];
        if (!a->content || a->normalized != normalized || (normalized ? a->dec_len : a->len) == 0) continue;
        m->idx[m->n++] = i;
    }
    qsort_r(m->idx, (size_t)m->n, sizeof(int), cmp_added, t);
    int k = 0;
    for (int b = 0; b < 256; b++) {
        m->start[b] = k;
        while (k < m->n) {
            const tkz_added *a = &t->added[m->idx[k]];
            if ((unsigned char)(normalized ? a->dec : a->content)[0] != b) break;
            m->first[b] = 1;
            k++;
        }
    }
    m->start[256] = k;
    return 0;
}

/* HF's AddedVocabulary::add_tokens: a token keeps the id its content already
 * has (added or model vocabulary), else takes the next free one; a later
 * token with the same id replaces the earlier one. */
int tkz_add_tokens(tkz *t, tkz_added *toks, int n, struct lerr *e) {
    int32_t vsize = (int32_t)t->model.vocab.n, maxid = -1;
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].content && t->added[i].id > maxid) maxid = t->added[i].id;
    int32_t next = maxid < 0 ? vsize : (maxid >= vsize || vsize == 0 ? maxid + 1 : vsize);
    if (!t->added_map.cap && (tkz_smap_init(&t->added_map, 64) || tkz_smap_init(&t->special, 64)))
        return lerr_set(e, "%s: out of memory", t->name);
    tkz_added *a = realloc(t->added, sizeof *a * (size_t)(t->n_added + n + 1));
    if (!a) return lerr_set(e, "%s: out of memory", t->name);
    t->added = a;
    for (int i = 0; i < n; i++) {
        tkz_added x = toks[i];
        toks[i].content = NULL;
        if (!x.len) {
            free(x.content);
            continue;
        }
        int32_t id = tkz_token_to_id(t, x.content);
        if (id < 0) id = next++;
        if (id >= TKZ_MAX_ID) {
            lerr_set(e, "%s: added token '%.80s' would get id %d (at most %d)", t->name, x.content, id, TKZ_MAX_ID);
            free(x.content);
            return -1;
        }
        x.id = id;
        x.dec = NULL;
        x.dec_len = 0;
        if (x.normalized && t->norm) {
            tkz_buf nb = {0};
            if (tkz_normalize(t->norm, x.content, x.len, &nb, e)) {
                free(x.content);
                tkz_buf_free(&nb);
                return lerr_prefix(e, "%s: added token", t->name);
            }
            if (nb.n != x.len || memcmp(nb.p, x.content, x.len)) {
                x.dec = nb.p;
                x.dec_len = nb.n;
            } else {
                tkz_buf_free(&nb);
            }
        }
        if (!x.dec) {
            x.dec = strdup(x.content);
            x.dec_len = x.len;
            if (!x.dec) return lerr_set(e, "%s: out of memory", t->name);
        }
        int old = added_by_id(t, id);
        if (old >= 0) { /* added_tokens_map_r[id] = token */
            free(t->added[old].content);
            free(t->added[old].dec);
            t->added[old].content = t->added[old].dec = NULL;
        }
        if (tkz_smap_put(&t->added_map, x.content, x.len, t->n_added, NULL) ||
            (x.special && tkz_smap_put(&t->special, x.content, x.len, 1, NULL)))
            return lerr_set(e, "%s: out of memory", t->name);
        t->added[t->n_added++] = x;
    }
    if (build_matcher(t, &t->m_raw, 0) || build_matcher(t, &t->m_norm, 1)) return lerr_set(e, "%s: out of memory", t->name);
    return 0;
}

/* The leftmost, then longest, added token in s[from..n). */
static int find_added(const tkz *t, const tkz_matcher *m, const char *s, size_t n, size_t from, size_t *ms, int *k) {
    if (!m->n) return 0;
    for (size_t i = from; i < n; i++) {
        unsigned char b = (unsigned char)s[i];
        if (!m->first[b]) continue;
        for (int j = m->start[b]; j < m->start[b + 1]; j++) {
            const tkz_added *a = &t->added[m->idx[j]];
            const char *p = a->normalized ? a->dec : a->content;
            size_t l = a->normalized ? a->dec_len : a->len;
            if (l <= n - i && !memcmp(s + i, p, l)) {
                *ms = i;
                *k = m->idx[j];
                return 1;
            }
        }
    }
    return 0;
}

static uint32_t cp_before(const char *s, size_t at) {
    size_t k = at - 1;
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
    int l;
    return tkz_u8dec(s + k, &l);
}

/* ---- the pipeline ---- */
static int model_word(tkz *t, const char *w, size_t n, int bytes, tkz_ivec *out, struct lerr *e) {
    tkz_cache *c = &t->cache;
    if (n < CACHE_MAX_WORD) {
        int32_t k = tkz_smap_get(&c->map, w, n);
        if (k >= 0) {
            uint32_t off = c->ent_off[k], len = c->ent_len[k];
            if (tkz_ivec_reserve(out, len)) return lerr_set(e, "out of memory");
            /* a word may give no ids (BPE without unk_token drops unknown characters): then
             * both vectors may still be NULL, and NULL + 0 or memcpy from NULL is UB */
            if (len) memcpy(out->v + out->n, c->ids.v + off, len * sizeof(int32_t));
            out->n += len;
            return 0;
        }
    }
    size_t n0 = out->n;
    int rc = t->model.type == MD_BPE ? tkz_bpe_word(&t->model, w, n, bytes, out, e)
           : t->model.type == MD_WORDPIECE ? tkz_wordpiece_word(&t->model, w, n, out, e)
                                          : tkz_wordlevel_word(&t->model, w, n, out, e);
    if (rc || n >= CACHE_MAX_WORD) return rc;
    if (c->n_ent >= CACHE_MAX_ENT) { /* start over */
        tkz_smap_free(&c->map);
        c->n_ent = 0;
        c->ids.n = 0;
    }
    if (!c->map.cap && tkz_smap_init(&c->map, 4096)) return 0; /* no cache: still correct */
    if (c->n_ent == c->cap_ent) {
        size_t cap = c->cap_ent ? c->cap_ent * 2 : 4096;
        uint32_t *a = realloc(c->ent_off, cap * sizeof *a);
        if (!a) return 0;
        c->ent_off = a;
        uint32_t *b = realloc(c->ent_len, cap * sizeof *b);
        if (!b) return 0;
        c->ent_len = b;
        c->cap_ent = cap;
    }
    size_t len = out->n - n0;
    if (tkz_ivec_reserve(&c->ids, len)) return 0;
    c->ent_off[c->n_ent] = (uint32_t)c->ids.n;
    c->ent_len[c->n_ent] = (uint32_t)len;
    if (len) memcpy(c->ids.v + c->ids.n, out->v + n0, len * sizeof(int32_t));
    c->ids.n += len;
    if (tkz_smap_put(&c->map, w, n, (int32_t)c->n_ent, NULL)) return 0;
    c->n_ent++;
    return 0;
}

static int pretok_model(tkz *t, const char *s, size_t n, uint32_t flags, tkz_ivec *out, struct lerr *e) {
    if (!n) return 0;
    const char *buf;
    const tkz_segv *w;
    if (tkz_pretokenize(t->pre, s, n, flags, &t->pts, &buf, &w, e)) return -1;
    for (size_t i = 0; i < w->n; i++)
        if (model_word(t, buf + w->v[i].off, w->v[i].len, t->lazy_bytes, out, e)) return -1;
    return 0;
}

static int split_added(tkz *t, int normalized_pass, const char *s, size_t n, uint32_t flags, tkz_ivec *out,
                       struct lerr *e);

/* A raw piece: normalized, then split by the normalized added tokens. The
 * normalized text lives in nbuf until the piece is done (nothing below
 * touches nbuf). */
static int normalize_piece(tkz *t, const char *s, size_t n, uint32_t flags, tkz_ivec *out, struct lerr *e) {
    if (!t->norm) return split_added(t, 1, s, n, flags, out, e);
    t->nbuf.n = 0;
    if (tkz_normalize(t->norm, s, n, &t->nbuf, e)) return -1;
    return split_added(t, 1, t->nbuf.p ? t->nbuf.p : "", t->nbuf.n, flags, out, e);
}

static int piece(tkz *t, int normalized_pass, const char *s, size_t n, uint32_t flags, tkz_ivec *out, struct lerr *e) {
    return normalized_pass ? pretok_model(t, s, n, flags, out, e) : normalize_piece(t, s, n, flags, out, e);
}

/* Splits s by the pass's added tokens (HF's find_matches); the pieces
 * between them go on down the pipeline. */
static int split_added(tkz *t, int normalized_pass, const char *s, size_t n, uint32_t flags, tkz_ivec *out,
                       struct lerr *e) {
    const tkz_matcher *m = normalized_pass ? &t->m_norm : &t->m_raw;
    size_t pos = 0, start_offset = 0, ms;
    int k;
    while (find_added(t, m, s, n, pos, &ms, &k)) {
        const tkz_added *a = &t->added[k];
        size_t me = ms + (normalized_pass ? a->dec_len : a->len);
        pos = me;
        if (a->single_word) {
            int l, start_space = ms == 0 || !tkz_is_word(&t->word, cp_before(s, ms));
            int stop_space = me == n || !tkz_is_word(&t->word, tkz_u8dec(s + me, &l));
            if (!start_space || !stop_space) continue;
        }
        size_t start = ms, stop = me;
        if (a->lstrip) {
            size_t ns = start;
            while (ns > 0 && tkz_is_whitespace(cp_before(s, ns))) {
                ns--;
                while (ns > 0 && ((unsigned char)s[ns] & 0xC0) == 0x80) ns--;
            }
            start = ns > start_offset ? ns : start_offset;
        }
        if (a->rstrip)
            while (stop < n) {
                int l;
                if (!tkz_is_whitespace(tkz_u8dec(s + stop, &l))) break;
                stop += (size_t)l;
            }
        if (start_offset < start &&
            piece(t, normalized_pass, s + start_offset, start - start_offset, start_offset == 0 ? flags : 0, out, e))
            return -1;
        if (tkz_ivec_push(out, a->id)) return lerr_set(e, "out of memory");
        start_offset = stop;
    }
    if (start_offset < n && piece(t, normalized_pass, s + start_offset, n - start_offset, start_offset == 0 ? flags : 0, out, e))
        return -1;
    return 0;
}

/* ---- truncation (utils/truncation.rs) ---- */
static void trunc_one(tkz_ivec *v, size_t keep, int left) {
    if (v->n <= keep) return;
    if (left) memmove(v->v, v->v + (v->n - keep), keep * sizeof(int32_t));
    v->n = keep;
}

static int truncate(const tkz_trunc *tr, size_t max, tkz_ivec *a, tkz_ivec *b, struct lerr *e) {
    if (max == 0) {
        a->n = 0;
        if (b) b->n = 0;
        return 0;
    }
    size_t total = a->n + (b ? b->n : 0);
    if (total <= max) return 0;
    size_t remove = total - max;
    if (tr->strategy == TR_LONGEST_FIRST) {
        if (!b) {
            trunc_one(a, total - remove, tr->left);
            return 0;
        }
        size_t n1 = a->n, n2 = b->n;
        int swap = n1 > n2;
        if (swap) n1 = b->n, n2 = a->n;
        if (n1 > max) n2 = n1;
        else n2 = n1 > max - n1 ? n1 : max - n1;
        if (n1 + n2 > max) {
            n1 = max / 2;
            n2 = n1 + max % 2;
        }
        if (swap) {
            size_t x = n1;
            n1 = n2;
            n2 = x;
        }
        trunc_one(a, n1, tr->left);
        trunc_one(b, n2, tr->left);
        return 0;
    }
    tkz_ivec *target = tr->strategy == TR_ONLY_FIRST ? a : b;
    if (!target) return lerr_set(e, "Truncation error: Second sequence not provided");
    if (target->n <= remove)
        return lerr_set(e, "Truncation error: Sequence to truncate too short to respect the provided max_length");
    trunc_one(target, target->n - remove, tr->left);
    return 0;
}

/* ---- post-processors ---- */
typedef struct {
    const int32_t *ids;
    size_t n;
    int32_t type;
} part;
typedef struct {
    part v[64];
    int n;
} parts;

static size_t post_added(const tkz_post *p, int pair) {
    switch (p->type) {
    case PP_BERT: return pair ? 3 : 2;
    case PP_ROBERTA: return pair ? 4 : 2;
    case PP_TEMPLATE: {
        size_t k = 0;
        const tkz_piece *v = pair ? p->pair : p->single;
        for (int i = 0; i < (pair ? p->n_pair : p->n_single); i++)
            if (v[i].special) k += (size_t)v[i].n_ids;
        return k;
    }
    case PP_SEQ: {
        size_t k = 0;
        for (int i = 0; i < p->n_sub; i++) k += post_added(&p->sub[i], pair);
        return k;
    }
    }
    return 0;
}

static int parts_add(parts *o, const int32_t *ids, size_t n, int32_t type, struct lerr *e) {
    if (o->n == 64) return lerr_set(e, "post-processor: too many parts");
    o->v[o->n++] = (part){ids, n, type};
    return 0;
}

/* One processor over the list of encodings (each part: one encoding's ids
 * with one type id; HF's encodings are lists of parts after a processor). */
static int process(const tkz_post *p, parts *in, int add_special, struct lerr *e) {
    parts out = {.n = 0};
    switch (p->type) {
    case PP_BYTELEVEL: return 0;
    case PP_SEQ:
        for (int i = 0; i < p->n_sub; i++)
            if (process(&p->sub[i], in, add_special, e)) return -1;
        return 0;
    case PP_ROBERTA:
        for (int i = 0; i < in->n; i++) in->v[i].type = 0;
        /* fall through */
    case PP_BERT:
        if (!add_special) return 0;
        for (int i = 0; i < in->n; i++) {
            int32_t st = p->type == PP_BERT && i > 0 ? 1 : 0;
            if (i == 0 && parts_add(&out, &p->cls, 1, 0, e)) return -1;
            if (i > 0 && p->type == PP_ROBERTA && parts_add(&out, &p->sep, 1, 0, e)) return -1;
            if (parts_add(&out, in->v[i].ids, in->v[i].n, in->v[i].type, e) || parts_add(&out, &p->sep, 1, st, e))
                return -1;
        }
        break;
    case PP_TEMPLATE: {
        if (in->n != 1 && in->n != 2) return lerr_set(e, "TemplateProcessing: %d encodings (1 or 2 expected)", in->n);
        const tkz_piece *v = in->n == 2 ? p->pair : p->single;
        int nv = in->n == 2 ? p->n_pair : p->n_single;
        for (int i = 0; i < nv; i++) {
            if (!v[i].special) {
                const part *q = &in->v[v[i].seq];
                if (parts_add(&out, q->ids, q->n, v[i].type_id, e)) return -1;
            } else if (add_special && parts_add(&out, v[i].ids, (size_t)v[i].n_ids, v[i].type_id, e)) {
                return -1;
            }
        }
        break;
    }
    }
    *in = out;
    return 0;
}

static int enc_reserve(tkz_enc *x, size_t n) {
    if (n <= x->cap) return 0;
    size_t cap = x->cap ? x->cap : 64;
    while (cap < n) cap *= 2;
    int32_t *a = realloc(x->ids, cap * sizeof *a);
    if (!a) return -1;
    x->ids = a;
    int32_t *b = realloc(x->type_ids, cap * sizeof *b);
    if (!b) return -1;
    x->type_ids = b;
    uint8_t *c = realloc(x->mask, cap);
    if (!c) return -1;
    x->mask = c;
    x->cap = cap;
    return 0;
}

int tkz_encode(tkz *t, const char *text, size_t len, const char *pair, size_t pair_len, int add_special,
               tkz_enc *out, struct lerr *e) {
    const char *txt[2] = {text, pair};
    size_t lens[2] = {len, pair_len};
    int ns = pair ? 2 : 1;
    for (int i = 0; i < ns; i++) {
        size_t ok = tkz_utf8_valid(txt[i], lens[i]);
        if (ok != lens[i]) return lerr_set(e, "%s: invalid UTF-8 at byte %zu", i ? "pair text" : "text", ok);
        t->seq[i].n = 0;
        if (split_added(t, 0, txt[i], lens[i], SEG_ORIGIN, &t->seq[i], e)) return -1;
    }
    if (t->trunc.on) {
        size_t max = t->trunc.max_length, added = t->post ? post_added(t->post, ns == 2) : 0;
        if (add_special && added) {
            if (added > max) return lerr_set(e, "truncation: max_length %zu is smaller than the %zu special tokens", max, added);
            max -= added;
        }
        if (truncate(&t->trunc, max, &t->seq[0], ns == 2 ? &t->seq[1] : NULL, e)) return -1;
    }
    parts ps = {.n = 0};
    for (int i = 0; i < ns; i++) parts_add(&ps, t->seq[i].v, t->seq[i].n, i, e);
    if (t->post && process(t->post, &ps, add_special, e)) return -1;
    size_t total = 0;
    for (int i = 0; i < ps.n; i++) total += ps.v[i].n;
    size_t target = total;
    if (t->pad.on) {
        target = t->pad.fixed ? t->pad.fixed : total;
        if (t->pad.multiple && target % t->pad.multiple) target += t->pad.multiple - target % t->pad.multiple;
        if (target < total) target = total;
    }
    if (enc_reserve(out, target)) return lerr_set(e, "out of memory");
    size_t at = t->pad.on && t->pad.left ? target - total : 0;
    for (int i = 0; i < ps.n; i++)
        for (size_t k = 0; k < ps.v[i].n; k++) {
            out->ids[at] = ps.v[i].ids[k];
            out->type_ids[at] = ps.v[i].type;
            out->mask[at++] = 1;
        }
    size_t pad_from = t->pad.on && t->pad.left ? 0 : total, pad_to = pad_from + (target - total);
    for (size_t k = pad_from; k < pad_to; k++) {
        out->ids[k] = t->pad.pad_id;
        out->type_ids[k] = t->pad.pad_type_id;
        out->mask[k] = 0;
    }
    out->n = target;
    return 0;
}

void tkz_enc_free(tkz_enc *x) {
    free(x->ids);
    free(x->type_ids);
    free(x->mask);
    memset(x, 0, sizeof *x);
}

int tkz_decode(tkz *t, const int32_t *ids, size_t n, int skip_special, char **out, size_t *out_len, struct lerr *e) {
    tkz_strv *v = &t->dv[0];
    tkz_strv_clear(v);
    for (size_t i = 0; i < n; i++) {
        int k = added_by_id(t, ids[i]);
        const char *s = k >= 0 ? t->added[k].dec : tkz_model_tok(&t->model, ids[i]);
        if (!s) continue;
        size_t l = k >= 0 ? t->added[k].dec_len : strlen(s);
        if (skip_special && tkz_smap_get(&t->special, s, l) >= 0) continue;
        if (tkz_strv_push(v, s, l)) return lerr_set(e, "decode: out of memory");
    }
    if (t->dec && tkz_decode_chain(t->dec, &t->dv[0], &t->dv[1], e)) return -1;
    v = &t->dv[0];
    tkz_buf b = {0};
    for (size_t i = 0; i < v->n; i++)
        if ((!t->dec && i && tkz_buf_put(&b, " ", 1)) || tkz_buf_put(&b, v->b.p + v->off[i], v->len[i])) {
            tkz_buf_free(&b);
            return lerr_set(e, "decode: out of memory");
        }
    if (tkz_buf_put(&b, "", 0)) return lerr_set(e, "decode: out of memory");
    *out = b.p;
    *out_len = b.n;
    return 0;
}

/* ---- set-up ---- */
static const tkz_pretok *last_step(const tkz_pretok *p) {
    while (p && p->type == PT_SEQ) p = p->n_sub ? &p->sub[p->n_sub - 1] : NULL;
    return p;
}

int tkz_finish(tkz *t, struct lerr *e) {
    if (tkz_re_compile(&t->word, "[" TKZ_WORD_CLASS "]", strlen("[" TKZ_WORD_CLASS "]"), 0, "word class", e)) return -1;
    tkz_model *m = &t->model;
    if (m->unk_name) m->unk_id = tkz_smap_get(&m->vocab, m->unk_name, strlen(m->unk_name));
    else m->unk_id = -1;
    if (m->type == MD_BPE) tkz_bpe_finish(m);
    tkz_pretok *last = (tkz_pretok *)last_step(t->pre);
    if (last && last->type == PT_BYTELEVEL && m->type == MD_BPE) last->lazy = t->lazy_bytes = 1;
    if (!t->added_map.cap && tkz_add_tokens(t, NULL, 0, e)) return -1;
    const char *base = m->type == MD_BPE ? "BPE" : m->type == MD_WORDPIECE ? "WordPiece" : "WordLevel";
    const char *how = t->lazy_bytes || (last && last->type == PT_BYTELEVEL) ? ", byte-level"
                    : m->type == MD_BPE && m->byte_fallback ? ", SentencePiece-style with byte fallback" : "";
    snprintf(t->kind, sizeof t->kind, "%s%s", base, how);
    return 0;
}

static tkz *tkz_new(const char *name) {
    tkz *t = calloc(1, sizeof *t);
    if (t) snprintf(t->name, sizeof t->name, "%s", name);
    return t;
}

tkz *tkz_from_json(const char *json, size_t len, const char *name, struct lerr *e) {
    tkz *t = tkz_new(name);
    if (!t) {
        lerr_set(e, "%s: out of memory", name);
        return NULL;
    }
    if (tkz_load_json(t, json, len, e) || tkz_finish(t, e)) {
        tkz_free(t);
        return NULL;
    }
    return t;
}

int tkz_present(const char *dir) {
    static const char *const names[] = {"tokenizer.json", "vocab.json", "vocab.txt"};
    char p[4200];
    struct stat sb;
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode)) return 1;
    }
    return 0;
}

tkz *tkz_open(const char *dir, struct lerr *e) {
    char path[4200];
    struct stat sb;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (stat(path, &sb) == 0) {
        char *json = read_text_file(path, (size_t)1 << 30, e);
        if (!json) return NULL;
        tkz *t = tkz_from_json(json, strlen(json), path, e);
        free(json);
        return t;
    }
    tkz *t = tkz_new(dir);
    if (!t) {
        lerr_set(e, "%s: out of memory", dir);
        return NULL;
    }
    int rc = tkz_load_legacy(t, dir, e);
    if (rc == 0) lerr_set(e, "%s: no tokenizer.json, vocab.json + merges.txt or vocab.txt", dir);
    if (rc <= 0 || tkz_finish(t, e)) {
        tkz_free(t);
        return NULL;
    }
    return t;
}

void tkz_no_truncation_padding(tkz *t) {
    t->trunc.on = 0;
    t->pad.on = 0;
}

void tkz_set_truncation(tkz *t, size_t max_length) {
    t->trunc.on = 1;
    t->trunc.max_length = max_length;
    t->trunc.stride = 0;
    t->trunc.strategy = TR_LONGEST_FIRST;
    t->trunc.left = 0;
}

int tkz_is_special(const tkz *t, int32_t id) {
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].content && t->added[i].id == id) return t->added[i].special;
    return 0;
}

const char *tkz_subword_prefix(const tkz *t) {
    return t->model.prefix && t->model.prefix_len ? t->model.prefix : NULL;
}

const char *tkz_kind(const tkz *t) { return t->kind; }

int tkz_vocab_size(const tkz *t) {
    int32_t n = 0;
    for (int32_t i = 0; i < t->model.n_ids; i++)
        if (t->model.id2off[i] != UINT32_MAX) n = i + 1;
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].content && t->added[i].id >= n) n = t->added[i].id + 1;
    return n;
}

void tkz_free(tkz *t) {
    if (!t) return;
    tkz_model_free(&t->model);
    tkz_norm_free(t->norm);
    tkz_pretok_free(t->pre);
    tkz_post_free(t->post);
    tkz_dec_free(t->dec);
    for (int i = 0; i < t->n_added; i++) {
        free(t->added[i].content);
        free(t->added[i].dec);
    }
    free(t->added);
    tkz_smap_free(&t->added_map);
    tkz_smap_free(&t->special);
    free(t->m_raw.idx);
    free(t->m_norm.idx);
    tkz_re_free(&t->word);
    tkz_buf_free(&t->nbuf);
    tkz_pt_scratch_free(&t->pts);
    free(t->seq[0].v);
    free(t->seq[1].v);
    tkz_smap_free(&t->cache.map);
    free(t->cache.ent_off);
    free(t->cache.ent_len);
    free(t->cache.ids.v);
    tkz_strv_free(&t->dv[0]);
    tkz_strv_free(&t->dv[1]);
    free(t);
}

static void post_clear(tkz_post *p) {
    for (int i = 0; i < p->n_single; i++) free(p->single[i].ids);
    for (int i = 0; i < p->n_pair; i++) free(p->pair[i].ids);
    free(p->single);
    free(p->pair);
    for (int i = 0; i < p->n_sub; i++) post_clear(&p->sub[i]);
    free(p->sub);
}

void tkz_post_free(tkz_post *p) {
    if (!p) return;
    post_clear(p);
    free(p);
}
