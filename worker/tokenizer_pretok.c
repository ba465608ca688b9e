/*
 * Pre-tokenizers: a piece of normalized text -> words (byte ranges of a
 * buffer). Splitting steps cut ranges of the buffer they get; transforming
 * steps (ByteLevel's prefix space and byte map, Metaspace's replacement)
 * write a new buffer. The two buffers and segment vectors of tkz_pt_scratch
 * are used in turn.
 *
 * Splits follow HF's NormalizedString::split: a pattern gives spans covering
 * the text (find_matches), a behaviour folds them (Removed, Isolated,
 * MergedWithPrevious, MergedWithNext, Contiguous), empty pieces are dropped.
 *
 * SEG_ORIGIN (the piece starts at offset 0 of its sequence's original text,
 * which Metaspace's prepend_scheme "first" asks) goes to the first piece cut
 * from the start of a piece that had it; HF tracks full offsets, which agree
 * with this for every layout of the HF hub's tokenizers (a normalizer that
 * deletes leading characters followed by a split and then Metaspace "first"
 * could differ).
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_int.h"

typedef struct {
    const char *buf;
    int bi; /* which x->b holds buf; -1: the caller's text */
    int si; /* which x->s holds the current segments */
} pt_state;

/* Folds spans (in place) by behaviour and appends the non-empty pieces, as
 * ranges of the buffer at base, to out. */
static int emit(tkz_spanv *sp, int behavior, uint32_t base, uint32_t flags, tkz_segv *out) {
    tkz_span *v = sp->v;
    size_t n = sp->n, lo = 0, hi = 0;
    int prev = 0;
    switch (behavior) {
    case BH_ISOLATED: hi = n; break;
    case BH_REMOVED:
        for (size_t r = 0; r < n; r++)
            if (!v[r].m) v[hi++] = v[r];
        break;
    case BH_CONTIGUOUS:
        for (size_t r = 0; r < n; r++) {
            if (v[r].m == prev && hi > 0) v[hi - 1].e = v[r].e;
            else v[hi++] = v[r];
            prev = v[r].m;
        }
        break;
    case BH_MERGED_PREV:
        for (size_t r = 0; r < n; r++) {
            if (v[r].m && !prev && hi > 0) v[hi - 1].e = v[r].e;
            else v[hi++] = v[r];
            prev = v[r].m;
        }
        break;
    case BH_MERGED_NEXT:
        lo = hi = n;
        for (size_t r = n; r-- > 0;) {
            if (v[r].m && !prev && lo < n) v[lo].s = v[r].s;
            else v[--lo] = v[r];
            prev = v[r].m;
        }
        break;
    }
    for (size_t i = lo; i < hi; i++)
        if (v[i].e > v[i].s &&
            tkz_segv_push(out, base + v[i].s, v[i].e - v[i].s, v[i].s == 0 ? (flags & SEG_ORIGIN) : 0))
            return -1;
    return 0;
}

/* HF's find_matches for a character predicate: each matching character is a
 * match of its own. */
enum { CP_WS, CP_NUM, CP_PUNCT, CP_EQ };
static int char_spans(const char *s, size_t n, int kind, uint32_t arg, tkz_spanv *out) {
    out->n = 0;
    if (n == 0) return tkz_spanv_push(out, 0, 0, 0);
    size_t last = 0, i = 0;
    while (i < n) {
        int l;
        uint32_t c = tkz_u8dec(s + i, &l);
        int hit = kind == CP_WS ? tkz_is_whitespace(c) : kind == CP_NUM ? tkz_is_numeric(c)
                : kind == CP_PUNCT ? tkz_is_punct(c) : c == arg;
        if (hit) {
            if (last < i && tkz_spanv_push(out, (uint32_t)last, (uint32_t)i, 0)) return -1;
            if (tkz_spanv_push(out, (uint32_t)i, (uint32_t)(i + (size_t)l), 1)) return -1;
            last = i + (size_t)l;
        }
        i += (size_t)l;
    }
    if (n > last && tkz_spanv_push(out, (uint32_t)last, (uint32_t)n, 0)) return -1;
    return 0;
}

static tkz_buf *out_buf(tkz_pt_scratch *x, pt_state *st) {
    tkz_buf *b = &x->b[st->bi == 0 ? 1 : 0];
    b->n = 0;
    return b;
}

/* BertPreTokenizer: whitespace removed, then each punctuation character
 * isolated; both in one pass. */
static int bert_split(const char *s, uint32_t off, uint32_t len, uint32_t flags, tkz_segv *out) {
    uint32_t i = 0, start = 0;
    while (i < len) {
        int l;
        uint32_t c = tkz_u8dec(s + off + i, &l);
        int ws = tkz_is_whitespace(c), p = !ws && tkz_is_punct(c);
        if (ws || p) {
            if (i > start && tkz_segv_push(out, off + start, i - start, start == 0 ? (flags & SEG_ORIGIN) : 0))
                return -1;
            if (p && tkz_segv_push(out, off + i, (uint32_t)l, i == 0 ? (flags & SEG_ORIGIN) : 0)) return -1;
            start = i + (uint32_t)l;
        }
        i += (uint32_t)l;
    }
    if (i > start && tkz_segv_push(out, off + start, i - start, start == 0 ? (flags & SEG_ORIGIN) : 0)) return -1;
    return 0;
}

static int step(const tkz_pretok *p, tkz_pt_scratch *x, pt_state *st, struct lerr *e) {
    if (p->type == PT_SEQ) {
        for (int i = 0; i < p->n_sub; i++)
            if (step(&p->sub[i], x, st, e)) return -1;
        return 0;
    }
    tkz_segv *in = &x->s[st->si], *out = &x->s[1 - st->si];
    out->n = 0;
    const char *s = st->buf;
    switch (p->type) {
    case PT_BYTELEVEL: {
        if (p->add_prefix_space) {
            tkz_buf *b = out_buf(x, st);
            for (size_t i = 0; i < in->n; i++) {
                const tkz_seg *g = &in->v[i];
                uint32_t at = (uint32_t)b->n;
                if (s[g->off] != ' ' && tkz_buf_put(b, " ", 1)) goto oom;
                if (tkz_buf_put(b, s + g->off, g->len) || tkz_segv_push(out, at, (uint32_t)b->n - at, g->flags))
                    goto oom;
            }
            st->bi = st->bi == 0 ? 1 : 0;
            st->buf = s = b->p;
            st->si = 1 - st->si;
            in = &x->s[st->si];
            out = &x->s[1 - st->si];
            out->n = 0;
        }
        if (p->use_regex) {
            for (size_t i = 0; i < in->n; i++) {
                const tkz_seg *g = &in->v[i];
                if (tkz_re_spans((tkz_re *)&p->re, s + g->off, g->len, &x->spans, e)) return -1;
                if (emit(&x->spans, BH_ISOLATED, g->off, g->flags, out)) goto oom;
            }
            st->si = 1 - st->si;
            in = &x->s[st->si];
            out = &x->s[1 - st->si];
            out->n = 0;
        }
        if (!p->lazy) {
            tkz_buf *b = out_buf(x, st);
            for (size_t i = 0; i < in->n; i++) {
                const tkz_seg *g = &in->v[i];
                uint32_t at = (uint32_t)b->n;
                for (uint32_t k = 0; k < g->len; k++)
                    if (tkz_buf_putc(b, tkz_byte_cp((uint8_t)s[g->off + k]))) goto oom;
                if (tkz_segv_push(out, at, (uint32_t)b->n - at, g->flags)) goto oom;
            }
            st->bi = st->bi == 0 ? 1 : 0;
            st->buf = b->p;
            st->si = 1 - st->si;
        }
        return 0;
    }
    case PT_METASPACE: {
        tkz_buf *b = out_buf(x, st);
        char rep[4];
        int rl = tkz_u8enc(p->repl, rep);
        tkz_segv *mid = out;
        for (size_t i = 0; i < in->n; i++) {
            const tkz_seg *g = &in->v[i];
            uint32_t at = (uint32_t)b->n;
            /* HF replaces the spaces first, so a leading space also counts as starting with the replacement */
            int starts = s[g->off] == ' ' || (g->len >= (uint32_t)rl && !memcmp(s + g->off, rep, (size_t)rl));
            if (!starts && (p->prepend_scheme == PS_ALWAYS || (p->prepend_scheme == PS_FIRST && (g->flags & SEG_ORIGIN))))
                if (tkz_buf_put(b, rep, (size_t)rl)) goto oom;
            for (uint32_t k = 0; k < g->len; k++) {
                if (s[g->off + k] == ' ') {
                    if (tkz_buf_put(b, rep, (size_t)rl)) goto oom;
                } else if (tkz_buf_put(b, s + g->off + k, 1)) {
                    goto oom;
                }
            }
            if (tkz_segv_push(mid, at, (uint32_t)b->n - at, g->flags)) goto oom;
        }
        st->bi = st->bi == 0 ? 1 : 0;
        st->buf = s = b->p;
        st->si = 1 - st->si;
        if (!p->split) return 0;
        in = &x->s[st->si];
        out = &x->s[1 - st->si];
        out->n = 0;
        for (size_t i = 0; i < in->n; i++) {
            const tkz_seg *g = &in->v[i];
            if (char_spans(s + g->off, g->len, CP_EQ, p->repl, &x->spans) ||
                emit(&x->spans, BH_MERGED_NEXT, g->off, g->flags, out))
                goto oom;
        }
        st->si = 1 - st->si;
        return 0;
    }
    case PT_BERT:
        for (size_t i = 0; i < in->n; i++)
            if (bert_split(s, in->v[i].off, in->v[i].len, in->v[i].flags, out)) goto oom;
        st->si = 1 - st->si;
        return 0;
    case PT_SPLIT:
    case PT_WHITESPACE:
        for (size_t i = 0; i < in->n; i++) {
            const tkz_seg *g = &in->v[i];
            if (tkz_re_spans((tkz_re *)&p->re, s + g->off, g->len, &x->spans, e)) return -1;
            if (p->type == PT_WHITESPACE || p->invert)
                for (size_t k = 0; k < x->spans.n; k++) x->spans.v[k].m = !x->spans.v[k].m;
            if (emit(&x->spans, p->type == PT_WHITESPACE ? BH_REMOVED : p->behavior, g->off, g->flags, out)) goto oom;
        }
        st->si = 1 - st->si;
        return 0;
    default: {
        int kind = p->type == PT_WSSPLIT ? CP_WS : p->type == PT_DIGITS ? CP_NUM : p->type == PT_PUNCT ? CP_PUNCT : CP_EQ;
        int bh = p->type == PT_DIGITS ? (p->individual_digits ? BH_ISOLATED : BH_CONTIGUOUS)
               : p->type == PT_PUNCT ? p->behavior : BH_REMOVED;
        for (size_t i = 0; i < in->n; i++) {
            const tkz_seg *g = &in->v[i];
            if (char_spans(s + g->off, g->len, kind, p->repl, &x->spans) || emit(&x->spans, bh, g->off, g->flags, out))
                goto oom;
        }
        st->si = 1 - st->si;
        return 0;
    }
    }
oom:
    return lerr_set(e, "pre-tokenizer: out of memory");
}

int tkz_pretokenize(const tkz_pretok *p, const char *s, size_t n, uint32_t flags, tkz_pt_scratch *x,
                    const char **buf, const tkz_segv **words, struct lerr *e) {
    pt_state st = {s, -1, 0};
    x->s[0].n = 0;
    if (n && tkz_segv_push(&x->s[0], 0, (uint32_t)n, flags)) return lerr_set(e, "pre-tokenizer: out of memory");
    if (p && n && step(p, x, &st, e)) return -1;
    *buf = st.buf;
    *words = &x->s[st.si];
    return 0;
}

void tkz_pt_scratch_free(tkz_pt_scratch *x) {
    for (int i = 0; i < 2; i++) {
        tkz_buf_free(&x->b[i]);
        free(x->s[i].v);
    }
    free(x->spans.v);
    memset(x, 0, sizeof *x);
}

static void pretok_clear(tkz_pretok *p) {
    tkz_re_free(&p->re);
    for (int i = 0; i < p->n_sub; i++) pretok_clear(&p->sub[i]);
    free(p->sub);
}

void tkz_pretok_free(tkz_pretok *p) {
    if (!p) return;
    pretok_clear(p);
    free(p);
}
