/*
 * The vocabulary shared by the models, and the BPE model as HF's
 * models/bpe/{model,word}.rs runs it: a word becomes one symbol per character
 * (continuing_subword_prefix on all but the first, end_of_word_suffix on the
 * last; unknown characters to <0xNN> byte tokens with byte_fallback, or to
 * unk_token, fused with fuse_unk), then merges are applied lowest rank first
 * from a min-heap of (rank, position) entries over a doubly linked list of
 * symbols; an entry whose pair changed meanwhile is skipped. ignore_merges:
 * a word that is itself in the vocabulary is that token.
 *
 * With a lazy ByteLevel pre-tokenizer the word arrives as raw bytes and each
 * byte is mapped to the id of its byte-level character here (bl_id), which
 * saves writing the mapped string.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_int.h"

int tkz_model_add(tkz_model *m, const char *tok, size_t n, int32_t id, int later_wins, const char *what,
                  struct lerr *e) {
    if (id < 0 || id >= TKZ_MAX_ID) return lerr_set(e, "%s: id %d of '%.*s' is out of range [0, %d)", what, id, (int)(n > 80 ? 80 : n), tok, TKZ_MAX_ID);
    if (!m->vocab.cap && tkz_smap_init(&m->vocab, 1024)) return lerr_set(e, "%s: out of memory", what);
    if (id >= m->n_ids) {
        int32_t cap = m->n_ids ? m->n_ids : 1024;
        while (cap <= id) cap *= 2;
        uint32_t *p = realloc(m->id2off, (size_t)cap * sizeof *p);
        if (!p) return lerr_set(e, "%s: out of memory", what);
        for (int32_t i = m->n_ids; i < cap; i++) p[i] = UINT32_MAX;
        m->id2off = p;
        m->n_ids = cap;
    }
    if (m->id2off[id] != UINT32_MAX && !later_wins)
        return lerr_set(e, "%s: id %d is given to both '%s' and '%.*s'", what, id, m->vocab.keys.p + m->id2off[id],
                        (int)(n > 80 ? 80 : n), tok);
    int32_t old;
    if (tkz_smap_put(&m->vocab, tok, n, id, &old)) return lerr_set(e, "%s: out of memory", what);
    if (old >= 0 && old != id) {
        if (!later_wins) return lerr_set(e, "%s: token '%.*s' appears twice (ids %d and %d)", what, (int)(n > 80 ? 80 : n), tok, old, id);
        m->id2off[old] = UINT32_MAX;
    }
    const char *k = tkz_smap_key(&m->vocab, tok, n);
    m->id2off[id] = (uint32_t)(k - m->vocab.keys.p);
    if (n > m->max_len) m->max_len = n;
    return 0;
}

void tkz_model_free(tkz_model *m) {
    tkz_smap_free(&m->vocab);
    free(m->id2off);
    free(m->unk_name);
    free(m->prefix);
    free(m->suffix);
    tkz_pmap_free(&m->merges);
    free(m->work);
    tkz_buf_free(&m->tmp);
    memset(m, 0, sizeof *m);
}

/* The merged token of a merge is a + b without b's continuing_subword_prefix. */
int tkz_bpe_add_merge(tkz_model *m, const char *a, size_t an, const char *b, size_t bn, uint32_t rank,
                      const char *what, struct lerr *e) {
    int32_t ia = tkz_smap_get(&m->vocab, a, an), ib = tkz_smap_get(&m->vocab, b, bn);
    if (ia < 0) return lerr_set(e, "%s: merge %u uses '%.*s', which is not in the vocabulary", what, rank, (int)(an > 80 ? 80 : an), a);
    if (ib < 0) return lerr_set(e, "%s: merge %u uses '%.*s', which is not in the vocabulary", what, rank, (int)(bn > 80 ? 80 : bn), b);
    size_t skip = m->prefix_len;
    if (skip > bn) skip = bn; /* HF slices b[prefix_len..]; a shorter b cannot have the prefix */
    m->tmp.n = 0;
    if (tkz_buf_put(&m->tmp, a, an) || tkz_buf_put(&m->tmp, b + skip, bn - skip)) return lerr_set(e, "%s: out of memory", what);
    int32_t id = tkz_smap_get(&m->vocab, m->tmp.p, m->tmp.n);
    if (id < 0)
        return lerr_set(e, "%s: merge %u makes '%.*s', which is not in the vocabulary", what, rank,
                        (int)(m->tmp.n > 80 ? 80 : m->tmp.n), m->tmp.p);
    if (!m->merges.cap && tkz_pmap_init(&m->merges, 4096)) return lerr_set(e, "%s: out of memory", what);
    if (tkz_pmap_put(&m->merges, (uint32_t)ia, (uint32_t)ib, rank, id)) return lerr_set(e, "%s: out of memory", what);
    return 0;
}

void tkz_bpe_finish(tkz_model *m) {
    char s[8];
    for (int b = 0; b < 256; b++) {
        snprintf(s, sizeof s, "<0x%02X>", b);
        m->fb_id[b] = tkz_smap_get(&m->vocab, s, 6);
        int l = tkz_u8enc(tkz_byte_cp((uint8_t)b), s);
        m->bl_id[b] = tkz_smap_get(&m->vocab, s, (size_t)l);
        if (b < 128) {
            s[0] = (char)b;
            m->ascii_id[b] = tkz_smap_get(&m->vocab, s, 1);
        }
    }
}

/* A queued merge: the pair it was queued for is kept, so a stale entry is
 * recognized without a lookup (the same pair means the same rank and new id;
 * HF looks the pair up again, which accepts exactly the same entries: a
 * symbol only grows to its right, so another pair cannot make the same
 * token). */
typedef struct {
    uint32_t rank, pos;
    int32_t id, left, right;
} merge_ent;

typedef struct {
    int32_t c, len, prev, next;
} sym;

static int work_reserve(tkz_model *m, size_t nsym) {
    size_t need = nsym * (sizeof(sym) + 3 * sizeof(merge_ent)) + 64;
    if (need <= m->work_cap) return 0;
    void *p = realloc(m->work, need);
    if (!p) return -1;
    m->work = p;
    m->work_cap = need;
    return 0;
}

static inline int ent_less(merge_ent a, merge_ent b) { return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos); }

static void heap_push(merge_ent *h, size_t *n, merge_ent x) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!ent_less(x, h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static merge_ent heap_pop(merge_ent *h, size_t *n) {
    merge_ent top = h[0], x = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, k = i;
        merge_ent best = x;
        if (l < *n && ent_less(h[l], best)) k = l, best = h[l];
        if (r < *n && ent_less(h[r], best)) k = r;
        if (k == i) break;
        h[i] = h[k];
        i = k;
    }
    if (*n) h[i] = x;
    return top;
}

/* Merges the symbols in s[0..n) and appends the surviving ids to out. The
 * heap can hold at most n - 1 initial entries plus two per merge. */
static int merge_all(tkz_model *m, sym *s, size_t n, merge_ent *h, tkz_ivec *out) {
    size_t hn = 0;
    const tkz_pmap *mp = &m->merges;
    if (mp->cap)
        for (size_t i = 0; i + 1 < n; i++) {
            const tkz_pent *p = tkz_pmap_get(mp, (uint32_t)s[i].c, (uint32_t)s[i + 1].c);
            if (p) heap_push(h, &hn, (merge_ent){p->rank, (uint32_t)i, p->id, s[i].c, s[i + 1].c});
        }
    while (hn) {
        merge_ent top = heap_pop(h, &hn);
        sym *a = &s[top.pos];
        if (a->len == 0 || a->next == -1 || a->c != top.left || s[a->next].c != top.right) continue;
        sym *b = &s[a->next];
        const tkz_pent *p;
        a->c = top.id;
        a->len += b->len;
        a->next = b->next;
        b->len = 0;
        if (a->next != -1) s[a->next].prev = (int32_t)top.pos;
        if (a->prev >= 0) {
            p = tkz_pmap_get(mp, (uint32_t)s[a->prev].c, (uint32_t)a->c);
            if (p) heap_push(h, &hn, (merge_ent){p->rank, (uint32_t)a->prev, p->id, s[a->prev].c, a->c});
        }
        if (a->next != -1) {
            p = tkz_pmap_get(mp, (uint32_t)a->c, (uint32_t)s[a->next].c);
            if (p) heap_push(h, &hn, (merge_ent){p->rank, top.pos, p->id, a->c, s[a->next].c});
        }
    }
    if (tkz_ivec_reserve(out, n)) return -1;
    for (size_t i = 0; i < n; i++)
        if (s[i].len) out->v[out->n++] = s[i].c;
    return 0;
}

static inline void sym_add(sym *s, size_t *n, int32_t c, int32_t len) {
    size_t i = (*n)++;
    s[i] = (sym){c, len, (int32_t)i - 1, -1};
    if (i) s[i - 1].next = (int32_t)i;
}

/* HF's merge_word over the characters of w (a string). */
static int bpe_chars(tkz_model *m, const char *w, size_t n, tkz_ivec *out, struct lerr *e) {
    if (work_reserve(m, n * 4 + 4)) return lerr_set(e, "BPE: out of memory");
    sym *s = m->work;
    merge_ent *h = (merge_ent *)(s + n * 4 + 4);
    size_t ns = 0;
    int32_t unk = -1, unk_len = 0;
    for (size_t i = 0; i < n;) {
        int l;
        tkz_u8dec(w + i, &l);
        int first = i == 0, last = i + (size_t)l == n;
        const char *t = w + i;
        size_t tn = (size_t)l;
        if ((!first && m->prefix) || (last && m->suffix)) {
            m->tmp.n = 0;
            if ((!first && m->prefix && tkz_buf_put(&m->tmp, m->prefix, m->prefix_len)) || tkz_buf_put(&m->tmp, t, tn) ||
                (last && m->suffix && tkz_buf_put(&m->tmp, m->suffix, m->suffix_len)))
                return lerr_set(e, "BPE: out of memory");
            t = m->tmp.p;
            tn = m->tmp.n;
        }
        int32_t id = tn == 1 && (unsigned char)t[0] < 0x80 ? m->ascii_id[(unsigned char)t[0]] : tkz_smap_get(&m->vocab, t, tn);
        if (id >= 0) {
            if (unk >= 0) {
                sym_add(s, &ns, unk, unk_len);
                unk = -1;
            }
            sym_add(s, &ns, id, l);
        } else {
            int fb = m->byte_fallback;
            for (size_t k = 0; fb && k < tn; k++) fb = m->fb_id[(uint8_t)t[k]] >= 0;
            if (fb) { /* a pending unknown stays pending, as in HF */
                if (work_reserve(m, ns + tn + n * 4 + 4)) return lerr_set(e, "BPE: out of memory");
                s = m->work;
                for (size_t k = 0; k < tn; k++) sym_add(s, &ns, m->fb_id[(uint8_t)t[k]], 1);
            } else if (m->unk_name) {
                if (m->unk_id < 0) return lerr_set(e, "BPE: unk_token '%s' is not in the vocabulary", m->unk_name);
                if (unk >= 0 && m->fuse_unk) {
                    unk_len += l;
                } else {
                    if (unk >= 0) sym_add(s, &ns, unk, unk_len);
                    unk = m->unk_id;
                    unk_len = l;
                }
            }
        }
        i += (size_t)l;
    }
    if (unk >= 0) sym_add(s, &ns, unk, unk_len);
    /* the heap sits after the symbols, which byte fallback may have grown */
    if (work_reserve(m, ns + 4)) return lerr_set(e, "BPE: out of memory");
    s = m->work;
    size_t room = m->work_cap / (sizeof(sym) + 3 * sizeof(merge_ent));
    h = (merge_ent *)(s + room);
    if (merge_all(m, s, ns, h, out)) return lerr_set(e, "BPE: out of memory");
    return 0;
}

int tkz_bpe_word(tkz_model *m, const char *w, size_t n, int bytes, tkz_ivec *out, struct lerr *e) {
    if (n == 0) return 0;
    if (!bytes) {
        if (m->ignore_merges) {
            int32_t id = tkz_smap_get(&m->vocab, w, n);
            if (id >= 0) return tkz_ivec_push(out, id) ? lerr_set(e, "BPE: out of memory") : 0;
        }
        return bpe_chars(m, w, n, out, e);
    }
    int direct = !m->prefix && !m->suffix;
    for (size_t i = 0; direct && i < n; i++) direct = m->bl_id[(uint8_t)w[i]] >= 0;
    if (!direct || m->ignore_merges) { /* the mapped string itself is needed */
        tkz_buf *b = &m->tmp;
        b->n = 0;
        for (size_t i = 0; i < n; i++)
            if (tkz_buf_putc(b, tkz_byte_cp((uint8_t)w[i]))) return lerr_set(e, "BPE: out of memory");
        if (m->ignore_merges) {
            int32_t id = tkz_smap_get(&m->vocab, b->p, b->n);
            if (id >= 0) return tkz_ivec_push(out, id) ? lerr_set(e, "BPE: out of memory") : 0;
        }
        if (!direct) {
            /* bpe_chars uses m->tmp for prefixed characters: work on a copy */
            char *copy = malloc(b->n + 1);
            if (!copy) return lerr_set(e, "BPE: out of memory");
            memcpy(copy, b->p, b->n);
            int rc = bpe_chars(m, copy, b->n, out, e);
            free(copy);
            return rc;
        }
    }
    if (work_reserve(m, n)) return lerr_set(e, "BPE: out of memory");
    sym *s = m->work;
    size_t room = m->work_cap / (sizeof(sym) + 3 * sizeof(merge_ent)), ns = 0;
    merge_ent *h = (merge_ent *)(s + room);
    for (size_t i = 0; i < n; i++) sym_add(s, &ns, m->bl_id[(uint8_t)w[i]], 1);
    if (merge_all(m, s, ns, h, out)) return lerr_set(e, "BPE: out of memory");
    return 0;
}
