/*
 * Normalizers: a piece of text in, its normalized form appended to a buffer.
 * Each follows the HF source of the same name (normalizers/ in HF); offsets are
 * not tracked (nothing here reports them), so a normalizer is a plain
 * string -> string function.
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_int.h"

/* BERT's "Chinese characters": the CJK ideograph blocks HF lists (normalizers/bert.rs). */
static int is_chinese(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* BertNormalizer: clean_text (drop NUL, U+FFFD and C* but \t \n \r; any
 * whitespace becomes ' '), spaces around Chinese characters, NFD with the
 * Mn marks dropped (strip_accents), lowercase. The passes run in that order
 * over the whole piece, as HF runs them. */
static int bert(const tkz_norm *z, const char *s, size_t n, tkz_buf *out) {
    size_t i = 0;
    while (i < n && (unsigned char)s[i] < 0x80) i++;
    if (i == n) { /* ASCII: every pass is a per-byte map */
        if (tkz_buf_reserve(out, n)) return -1;
        char *o = out->p + out->n;
        size_t k = 0;
        for (i = 0; i < n; i++) {
            unsigned char c = (unsigned char)s[i];
            if (z->clean_text) {
                if (c == 9 || c == 10 || c == 13) c = ' ';
                else if (c < 32 || c == 127) continue; /* Cc: dropped before whitespace is mapped */
            }
            if (z->lowercase && c >= 'A' && c <= 'Z') c = (unsigned char)(c + 32);
            o[k++] = (char)c;
        }
        out->n += k;
        out->p[out->n] = 0;
        return 0;
    }
    tkz_buf a = {0}, b = {0};
    int rc = 0;
    for (i = 0; i < n && !rc;) {
        int l;
        uint32_t c = tkz_u8dec(s + i, &l);
        i += (size_t)l;
        if (z->clean_text) {
            if (c == 0 || c == 0xFFFD || (c != 9 && c != 10 && c != 13 && tkz_is_other(c))) continue;
            if (c == 9 || c == 10 || c == 13 || tkz_is_whitespace(c)) c = ' ';
        }
        if (z->chinese && is_chinese(c)) rc = tkz_buf_put(&a, " ", 1) || tkz_buf_putc(&a, c) || tkz_buf_put(&a, " ", 1);
        else rc = tkz_buf_putc(&a, c);
    }
    const char *cur = a.p ? a.p : "";
    size_t cn = a.n;
    if (!rc && z->strip_accents) {
        tkz_buf d = {0};
        rc = tkz_unorm(&d, cur, cn, TKZ_NFD);
        for (size_t j = 0; !rc && j < d.n;) {
            int l;
            uint32_t c = tkz_u8dec(d.p + j, &l);
            if (!tkz_is_mn(c)) rc = tkz_buf_put(&b, d.p + j, (size_t)l);
            j += (size_t)l;
        }
        tkz_buf_free(&d);
        cur = b.p ? b.p : "";
        cn = b.n;
    }
    if (!rc && z->lowercase) {
        for (size_t j = 0; !rc && j < cn;) {
            int l;
            uint32_t c = tkz_u8dec(cur + j, &l);
            rc = tkz_lower_append(out, c);
            j += (size_t)l;
        }
    } else if (!rc) {
        rc = tkz_buf_put(out, cur, cn);
    }
    tkz_buf_free(&a);
    tkz_buf_free(&b);
    return rc;
}

static int strip(const tkz_norm *z, const char *s, size_t n, tkz_buf *out) {
    size_t a = 0, b = n;
    if (z->left)
        while (a < b) {
            int l;
            uint32_t c = tkz_u8dec(s + a, &l);
            if (!tkz_is_whitespace(c)) break;
            a += (size_t)l;
        }
    if (z->right)
        while (b > a) {
            size_t k = b - 1;
            while (k > a && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
            int l;
            uint32_t c = tkz_u8dec(s + k, &l);
            if (!tkz_is_whitespace(c)) break;
            b = k;
        }
    return tkz_buf_put(out, s + a, b - a);
}

static int normalize(const tkz_norm *z, const char *s, size_t n, tkz_buf *out, tkz_spanv *sp, struct lerr *e) {
    switch (z->type) {
    case NZ_BERT: return bert(z, s, n, out);
    case NZ_NFC: return tkz_unorm(out, s, n, TKZ_NFC);
    case NZ_NFD: return tkz_unorm(out, s, n, TKZ_NFD);
    case NZ_NFKC: return tkz_unorm(out, s, n, TKZ_NFKC);
    case NZ_NFKD: return tkz_unorm(out, s, n, TKZ_NFKD);
    case NZ_LOWER:
        for (size_t i = 0; i < n;) {
            int l;
            uint32_t c = tkz_u8dec(s + i, &l);
            if (tkz_lower_append(out, c)) return -1;
            i += (size_t)l;
        }
        return 0;
    case NZ_STRIP: return strip(z, s, n, out);
    case NZ_STRIP_ACCENTS:
        for (size_t i = 0; i < n;) {
            int l;
            uint32_t c = tkz_u8dec(s + i, &l);
            if (!tkz_is_mark(c) && tkz_buf_put(out, s + i, (size_t)l)) return -1;
            i += (size_t)l;
        }
        return 0;
    case NZ_REPLACE: {
        if (tkz_re_spans((tkz_re *)&z->re, s, n, sp, e)) return -2;
        for (size_t i = 0; i < sp->n; i++) {
            const tkz_span *x = &sp->v[i];
            if (x->m ? tkz_buf_put(out, z->content, z->content_len) : tkz_buf_put(out, s + x->s, x->e - x->s))
                return -1;
        }
        return 0;
    }
    case NZ_PREPEND:
        if (n && tkz_buf_put(out, z->content, z->content_len)) return -1;
        return tkz_buf_put(out, s, n);
    case NZ_BYTELEVEL:
        for (size_t i = 0; i < n; i++)
            if (tkz_buf_putc(out, tkz_byte_cp((uint8_t)s[i]))) return -1;
        return 0;
    case NZ_SEQ: {
        tkz_buf a = {0}, b = {0};
        if (tkz_buf_put(&a, s, n)) return -1;
        for (int k = 0; k < z->n_sub; k++) {
            b.n = 0;
            int rc = normalize(&z->sub[k], a.p, a.n, &b, sp, e);
            if (rc) {
                tkz_buf_free(&a);
                tkz_buf_free(&b);
                return rc;
            }
            tkz_buf t = a;
            a = b;
            b = t;
        }
        int rc = tkz_buf_put(out, a.p, a.n);
        tkz_buf_free(&a);
        tkz_buf_free(&b);
        return rc;
    }
    }
    return 0;
}

int tkz_normalize(const tkz_norm *z, const char *s, size_t n, tkz_buf *out, struct lerr *e) {
    tkz_spanv sp = {0};
    int rc = normalize(z, s, n, out, &sp, e);
    free(sp.v);
    if (rc == -1) return lerr_set(e, "normalizer: out of memory");
    return rc ? -1 : 0;
}

static void norm_clear(tkz_norm *z) {
    tkz_re_free(&z->re);
    free(z->content);
    for (int i = 0; i < z->n_sub; i++) norm_clear(&z->sub[i]);
    free(z->sub);
}

void tkz_norm_free(tkz_norm *z) {
    if (!z) return;
    norm_clear(z);
    free(z);
}
