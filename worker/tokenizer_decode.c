/*
 * Decoders (decoders/ in HF): each turns the list of token strings into a new
 * list; the tokenizer joins the final list. Byte sequences that are not
 * UTF-8 become U+FFFD as Rust's String::from_utf8_lossy writes them (one per
 * maximal invalid subpart), or one per byte in ByteFallback (as HF does).
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_int.h"

#define REPL "\xEF\xBF\xBD"

/* Rust's from_utf8_lossy. */
static int lossy(tkz_buf *o, const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            if (tkz_buf_put(o, s + i, 1)) return -1;
            i++;
            continue;
        }
        size_t w = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        size_t k = 1;
        if (w) {
            unsigned lo = 0x80, hi = 0xBF;
            if (c == 0xE0) lo = 0xA0;
            else if (c == 0xED) hi = 0x9F;
            else if (c == 0xF0) lo = 0x90;
            else if (c == 0xF4) hi = 0x8F;
            if (i + 1 < n && s[i + 1] >= lo && s[i + 1] <= hi) {
                k = 2;
                while (k < w && i + k < n && (s[i + k] & 0xC0) == 0x80) k++;
            }
        }
        if (w && k == w) {
            if (tkz_buf_put(o, s + i, w)) return -1;
        } else if (tkz_buf_put(o, REPL, 3)) {
            return -1;
        }
        i += k;
    }
    return 0;
}

/* Rust's str::replace (an empty pattern inserts at every character boundary). */
static int replace_all(tkz_buf *o, const char *s, size_t n, const char *from, size_t fn, const char *to, size_t tn) {
    if (fn == 0) {
        for (size_t i = 0; i < n;) {
            int l;
            tkz_u8dec(s + i, &l);
            if (tkz_buf_put(o, to, tn) || tkz_buf_put(o, s + i, (size_t)l)) return -1;
            i += (size_t)l;
        }
        return tkz_buf_put(o, to, tn);
    }
    size_t i = 0;
    while (i < n) {
        const char *p = fn <= n - i ? memmem(s + i, n - i, from, fn) : NULL;
        if (!p) break;
        if (tkz_buf_put(o, s + i, (size_t)(p - (s + i))) || tkz_buf_put(o, to, tn)) return -1;
        i = (size_t)(p - s) + fn;
    }
    return tkz_buf_put(o, s + i, n - i);
}

/* WordPiece's cleanup of tokenization spaces (decoders/wordpiece.rs). */
static int cleanup(tkz_buf *o, const char *s, size_t n) {
    static const char *pairs[][2] = {{" .", "."},   {" ?", "?"},   {" !", "!"},     {" ,", ","},
                                     {" ' ", "'"},  {" n't", "n't"}, {" 'm", "'m"}, {" do not", " don't"},
                                     {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
    tkz_buf a = {0}, b = {0};
    if (tkz_buf_put(&a, s, n)) return -1;
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
        b.n = 0;
        if (replace_all(&b, a.p, a.n, pairs[k][0], strlen(pairs[k][0]), pairs[k][1], strlen(pairs[k][1]))) {
            tkz_buf_free(&a);
            tkz_buf_free(&b);
            return -1;
        }
        tkz_buf t = a;
        a = b;
        b = t;
    }
    int rc = tkz_buf_put(o, a.p, a.n);
    tkz_buf_free(&a);
    tkz_buf_free(&b);
    return rc;
}

#define TOK(v, i) ((v)->b.p + (v)->off[i])

static int dec(const tkz_dec *d, tkz_strv *in, tkz_strv *out, struct lerr *e) {
    tkz_strv_clear(out);
    tkz_buf t = {0};
    int rc = 0;
    switch (d->type) {
    case DC_BYTELEVEL: {
        tkz_buf bytes = {0};
        for (size_t i = 0; i < in->n && !rc; i++) {
            const char *s = TOK(in, i);
            size_t n = in->len[i], at = bytes.n;
            for (size_t k = 0; k < n && !rc;) {
                int l;
                uint32_t c = tkz_u8dec(s + k, &l);
                int b = tkz_cp_byte(c);
                if (b < 0) { /* a character outside the alphabet: the token's own bytes */
                    bytes.n = at;
                    rc = tkz_buf_put(&bytes, s, n);
                    break;
                }
                unsigned char ub = (unsigned char)b;
                rc = tkz_buf_put(&bytes, &ub, 1);
                k += (size_t)l;
            }
        }
        if (!rc) rc = lossy(&t, (const unsigned char *)(bytes.p ? bytes.p : ""), bytes.n) || tkz_strv_push(out, t.p ? t.p : "", t.n);
        tkz_buf_free(&bytes);
        break;
    }
    case DC_WORDPIECE:
        for (size_t i = 0; i < in->n && !rc; i++) {
            const char *s = TOK(in, i);
            size_t n = in->len[i], pl = strlen(d->s1);
            t.n = 0;
            if (i != 0) {
                if (n >= pl && !memcmp(s, d->s1, pl)) s += pl, n -= pl;
                else rc = tkz_buf_put(&t, " ", 1);
            }
            if (!rc) rc = tkz_buf_put(&t, s, n);
            if (!rc && d->cleanup) {
                tkz_buf c = {0};
                rc = cleanup(&c, t.p, t.n) || tkz_strv_push(out, c.p ? c.p : "", c.n);
                tkz_buf_free(&c);
            } else if (!rc) {
                rc = tkz_strv_push(out, t.p, t.n);
            }
        }
        break;
    case DC_METASPACE:
        for (size_t i = 0; i < in->n && !rc; i++) {
            const char *s = TOK(in, i);
            t.n = 0;
            for (size_t k = 0; k < in->len[i] && !rc;) {
                int l;
                uint32_t c = tkz_u8dec(s + k, &l);
                if (c == d->cp) {
                    if (!(i == 0 && d->prepend_scheme != PS_NEVER)) rc = tkz_buf_put(&t, " ", 1);
                } else {
                    rc = tkz_buf_put(&t, s + k, (size_t)l);
                }
                k += (size_t)l;
            }
            if (!rc) rc = tkz_strv_push(out, t.p ? t.p : "", t.n);
        }
        break;
    case DC_BPE:
        for (size_t i = 0; i < in->n && !rc; i++) {
            t.n = 0;
            const char *to = i + 1 == in->n ? "" : " ";
            rc = replace_all(&t, TOK(in, i), in->len[i], d->s1, strlen(d->s1), to, strlen(to)) ||
                 tkz_strv_push(out, t.p ? t.p : "", t.n);
        }
        break;
    case DC_BYTEFALLBACK: {
        tkz_buf bytes = {0};
        for (size_t i = 0; i <= in->n && !rc; i++) {
            const char *s = i < in->n ? TOK(in, i) : NULL;
            size_t n = i < in->n ? in->len[i] : 0;
            int byte = -1;
            if (s && n == 6 && !memcmp(s, "<0x", 3) && s[5] == '>') {
                /* u8::from_str_radix(_, 16): two hex digits, or '+' and one */
                char hx[3] = {s[3], s[4], 0};
                if ((isxdigit((unsigned char)hx[0]) || hx[0] == '+') && isxdigit((unsigned char)hx[1]))
                    byte = (int)strtol(hx, NULL, 16);
            }
            if (byte >= 0) {
                unsigned char ub = (unsigned char)byte;
                rc = tkz_buf_put(&bytes, &ub, 1);
                continue;
            }
            if (bytes.n) {
                if (tkz_utf8_valid(bytes.p, bytes.n) == bytes.n) rc = tkz_strv_push(out, bytes.p, bytes.n);
                else
                    for (size_t k = 0; k < bytes.n && !rc; k++) rc = tkz_strv_push(out, REPL, 3);
                bytes.n = 0;
            }
            if (s && !rc) rc = tkz_strv_push(out, s, n);
        }
        tkz_buf_free(&bytes);
        break;
    }
    case DC_FUSE:
        for (size_t i = 0; i < in->n && !rc; i++) rc = tkz_buf_put(&t, TOK(in, i), in->len[i]);
        if (!rc) rc = tkz_strv_push(out, t.p ? t.p : "", t.n);
        break;
    case DC_STRIP:
        for (size_t i = 0; i < in->n && !rc; i++) {
            const char *s = TOK(in, i);
            size_t n = in->len[i], a = 0, b = n;
            for (int k = 0; k < d->start && a < n; k++) {
                int l;
                if (tkz_u8dec(s + a, &l) != d->cp) break;
                a += (size_t)l;
            }
            for (int k = 0; k < d->stop && b > a; k++) {
                size_t p = b - 1;
                while (p > a && ((unsigned char)s[p] & 0xC0) == 0x80) p--;
                int l;
                if (tkz_u8dec(s + p, &l) != d->cp) break;
                b = p;
            }
            rc = tkz_strv_push(out, s + a, b - a);
        }
        break;
    case DC_REPLACE: {
        tkz_spanv sp = {0};
        for (size_t i = 0; i < in->n && !rc; i++) {
            const char *s = TOK(in, i);
            if (tkz_re_spans((tkz_re *)&d->re, s, in->len[i], &sp, e)) {
                rc = -2;
                break;
            }
            t.n = 0;
            for (size_t k = 0; k < sp.n && !rc; k++)
                rc = sp.v[k].m ? tkz_buf_put(&t, d->s1, strlen(d->s1)) : tkz_buf_put(&t, s + sp.v[k].s, sp.v[k].e - sp.v[k].s);
            if (!rc) rc = tkz_strv_push(out, t.p ? t.p : "", t.n);
        }
        free(sp.v);
        break;
    }
    case DC_CTC:
        for (size_t i = 0; i < in->n && !rc; i++) {
            if (i > 0 && in->len[i] == in->len[i - 1] && !memcmp(TOK(in, i), TOK(in, i - 1), in->len[i])) continue;
            t.n = 0;
            rc = replace_all(&t, TOK(in, i), in->len[i], d->s1, strlen(d->s1), "", 0);
            if (!rc && d->cleanup) {
                tkz_buf c = {0}, c2 = {0};
                rc = cleanup(&c, t.p ? t.p : "", t.n) || replace_all(&c2, c.p ? c.p : "", c.n, d->s2, strlen(d->s2), " ", 1);
                t.n = 0;
                if (!rc) rc = tkz_buf_put(&t, c2.p, c2.n);
                tkz_buf_free(&c);
                tkz_buf_free(&c2);
            }
            if (!rc && t.n) rc = tkz_strv_push(out, t.p, t.n);
        }
        break;
    case DC_SEQ:
        tkz_buf_free(&t);
        for (int k = 0; k < d->n_sub; k++) {
            if (dec(&d->sub[k], in, out, e)) return -1;
            tkz_strv x = *in;
            *in = *out;
            *out = x;
        }
        /* the result is in *in; copy it to out for the caller's swap */
        tkz_strv_clear(out);
        for (size_t i = 0; i < in->n; i++)
            if (tkz_strv_push(out, TOK(in, i), in->len[i])) return lerr_set(e, "decoder: out of memory");
        return 0;
    }
    tkz_buf_free(&t);
    if (rc == -2) return -1;
    return rc ? lerr_set(e, "decoder: out of memory") : 0;
}

int tkz_decode_chain(const tkz_dec *d, tkz_strv *in, tkz_strv *tmp, struct lerr *e) {
    if (dec(d, in, tmp, e)) return -1;
    tkz_strv x = *in;
    *in = *tmp;
    *tmp = x;
    return 0;
}

static void dec_clear(tkz_dec *d) {
    free(d->s1);
    free(d->s2);
    free(d->s3);
    tkz_re_free(&d->re);
    for (int i = 0; i < d->n_sub; i++) dec_clear(&d->sub[i]);
    free(d->sub);
}

void tkz_dec_free(tkz_dec *d) {
    if (!d) return;
    dec_clear(d);
    free(d);
}
