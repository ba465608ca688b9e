/*
 * Tokenizer plumbing: growable buffers, the string and pair hash maps, UTF-8,
 * the Unicode properties HF's Rust code asks (all from utf8proc's tables),
 * and the Oniguruma -> PCRE2 translation of split regexes with HF's
 * find_matches over them.
 */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer_int.h"

/* ---- buffers ---- */
int tkz_buf_reserve(tkz_buf *b, size_t extra) {
    if (b->n + extra + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + extra + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    /* PCRE2's JIT may read a few bytes past the end of a subject: keep them defined */
    memset(p + b->cap, 0, cap - b->cap);
    b->p = p;
    b->cap = cap;
    return 0;
}

int tkz_buf_put(tkz_buf *b, const void *s, size_t n) {
    if (tkz_buf_reserve(b, n)) return -1;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

int tkz_buf_putc(tkz_buf *b, uint32_t cp) {
    char u[4];
    return tkz_buf_put(b, u, (size_t)tkz_u8enc(cp, u));
}

void tkz_buf_free(tkz_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

int tkz_ivec_reserve(tkz_ivec *v, size_t extra) {
    if (v->n + extra <= v->cap) return 0;
    size_t cap = v->cap ? v->cap : 64;
    while (cap < v->n + extra) cap *= 2;
    int32_t *p = realloc(v->v, cap * sizeof *p);
    if (!p) return -1;
    v->v = p;
    v->cap = cap;
    return 0;
}

int tkz_ivec_push(tkz_ivec *v, int32_t x) {
    if (v->n == v->cap && tkz_ivec_reserve(v, 1)) return -1;
    v->v[v->n++] = x;
    return 0;
}

int tkz_spanv_push(tkz_spanv *v, uint32_t s, uint32_t e, int m) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        tkz_span *p = realloc(v->v, cap * sizeof *p);
        if (!p) return -1;
        v->v = p;
        v->cap = cap;
    }
    v->v[v->n++] = (tkz_span){s, e, (uint8_t)m};
    return 0;
}

int tkz_segv_push(tkz_segv *v, uint32_t off, uint32_t len, uint32_t flags) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        tkz_seg *p = realloc(v->v, cap * sizeof *p);
        if (!p) return -1;
        v->v = p;
        v->cap = cap;
    }
    v->v[v->n++] = (tkz_seg){off, len, flags};
    return 0;
}

int tkz_strv_push(tkz_strv *v, const char *s, size_t n) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        size_t *o = realloc(v->off, cap * sizeof *o);
        if (!o) return -1;
        v->off = o;
        size_t *l = realloc(v->len, cap * sizeof *l);
        if (!l) return -1;
        v->len = l;
        v->cap = cap;
    }
    size_t at = v->b.n;
    if (tkz_buf_put(&v->b, s, n)) return -1;
    v->off[v->n] = at;
    v->len[v->n++] = n;
    return 0;
}

void tkz_strv_clear(tkz_strv *v) {
    v->n = 0;
    v->b.n = 0;
}

void tkz_strv_free(tkz_strv *v) {
    tkz_buf_free(&v->b);
    free(v->off);
    free(v->len);
    memset(v, 0, sizeof *v);
}

/* ---- hashing and maps ---- */
static inline uint64_t mix(uint64_t x) {
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

uint64_t tkz_hash(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0x243F6A8885A308D3ull ^ n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0x9E3779B97F4A7C15ull;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    return mix(h ^ w);
}

int tkz_smap_init(tkz_smap *m, size_t expect) {
    memset(m, 0, sizeof *m);
    size_t cap = 16;
    while (cap < expect * 2) cap *= 2;
    m->e = malloc(cap * sizeof *m->e);
    if (!m->e) return -1;
    for (size_t i = 0; i < cap; i++) m->e[i].len = UINT32_MAX;
    m->cap = cap;
    return 0;
}

static int smap_grow(tkz_smap *m) {
    size_t cap = m->cap * 2;
    tkz_sent *e = malloc(cap * sizeof *e);
    if (!e) return -1;
    for (size_t i = 0; i < cap; i++) e[i].len = UINT32_MAX;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->e[i].len == UINT32_MAX) continue;
        size_t j = (size_t)m->e[i].h & (cap - 1);
        while (e[j].len != UINT32_MAX) j = (j + 1) & (cap - 1);
        e[j] = m->e[i];
    }
    free(m->e);
    m->e = e;
    m->cap = cap;
    return 0;
}

static tkz_sent *smap_find(const tkz_smap *m, const char *k, size_t n, uint64_t h) {
    size_t mask = m->cap - 1, i = (size_t)h & mask;
    for (;;) {
        tkz_sent *p = &m->e[i];
        if (p->len == UINT32_MAX) return p;
        if (p->h == h && p->len == n && !memcmp(m->keys.p + p->off, k, n)) return p;
        i = (i + 1) & mask;
    }
}

int tkz_smap_put(tkz_smap *m, const char *k, size_t n, int32_t v, int32_t *old) {
    if (n >= UINT32_MAX || m->keys.n + n + 1 >= UINT32_MAX) return -1;
    if ((m->n + 1) * 4 > m->cap * 3 && smap_grow(m)) return -1;
    uint64_t h = tkz_hash(k, n);
    tkz_sent *p = smap_find(m, k, n, h);
    if (old) *old = p->len == UINT32_MAX ? -1 : p->val;
    if (p->len != UINT32_MAX) {
        p->val = v;
        return 0;
    }
    uint32_t off = (uint32_t)m->keys.n;
    if (tkz_buf_put(&m->keys, k, n) || tkz_buf_put(&m->keys, "", 1)) return -1;
    *p = (tkz_sent){h, off, (uint32_t)n, v};
    m->n++;
    return 0;
}

int32_t tkz_smap_get(const tkz_smap *m, const char *k, size_t n) {
    if (!m->cap) return -1;
    const tkz_sent *p = smap_find(m, k, n, tkz_hash(k, n));
    return p->len == UINT32_MAX ? -1 : p->val;
}

const char *tkz_smap_key(const tkz_smap *m, const char *k, size_t n) {
    if (!m->cap) return NULL;
    const tkz_sent *p = smap_find(m, k, n, tkz_hash(k, n));
    return p->len == UINT32_MAX ? NULL : m->keys.p + p->off;
}

void tkz_smap_free(tkz_smap *m) {
    free(m->e);
    tkz_buf_free(&m->keys);
    memset(m, 0, sizeof *m);
}

int tkz_pmap_init(tkz_pmap *m, size_t expect) {
    memset(m, 0, sizeof *m);
    size_t cap = 16;
    while (cap < expect * 2) cap *= 2;
    m->e = malloc(cap * sizeof *m->e);
    if (!m->e) return -1;
    for (size_t i = 0; i < cap; i++) m->e[i].key = UINT64_MAX;
    m->cap = cap;
    return 0;
}

static void pmap_insert(tkz_pent *e, size_t cap, tkz_pent x) {
    size_t i = tkz_pmap_slot(x.key, cap - 1);
    while (e[i].key != UINT64_MAX && e[i].key != x.key) i = (i + 1) & (cap - 1);
    e[i] = x;
}

/* A later merge of the same pair replaces the earlier one (HF collects the
 * merges into a map, so the last rank wins). */
int tkz_pmap_put(tkz_pmap *m, uint32_t a, uint32_t b, uint32_t rank, int32_t id) {
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap * 2;
        tkz_pent *e = malloc(cap * sizeof *e);
        if (!e) return -1;
        for (size_t i = 0; i < cap; i++) e[i].key = UINT64_MAX;
        for (size_t i = 0; i < m->cap; i++)
            if (m->e[i].key != UINT64_MAX) pmap_insert(e, cap, m->e[i]);
        free(m->e);
        m->e = e;
        m->cap = cap;
    }
    if (!tkz_pmap_get(m, a, b)) m->n++;
    pmap_insert(m->e, m->cap, (tkz_pent){(uint64_t)a << 32 | b, rank, id});
    return 0;
}

void tkz_pmap_free(tkz_pmap *m) {
    free(m->e);
    memset(m, 0, sizeof *m);
}

/* ---- UTF-8 ---- */
size_t tkz_utf8_valid(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        uint32_t cp, min;
        if (c >= 0xC2 && c <= 0xDF) k = 1, cp = c & 0x1F, min = 0x80;
        else if (c >= 0xE0 && c <= 0xEF) k = 2, cp = c & 0x0F, min = 0x800;
        else if (c >= 0xF0 && c <= 0xF4) k = 3, cp = c & 0x07, min = 0x10000;
        else return i;
        if (i + k >= n) return i;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return i;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += k + 1;
    }
    return n;
}

int tkz_u8enc(uint32_t cp, char *out) {
    unsigned char *u = (unsigned char *)out;
    if (cp < 0x80) {
        u[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        u[0] = (unsigned char)(0xC0 | cp >> 6);
        u[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        u[0] = (unsigned char)(0xE0 | cp >> 12);
        u[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        u[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    u[0] = (unsigned char)(0xF0 | cp >> 18);
    u[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
    u[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    u[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---- Unicode properties ---- */
int tkz_is_whitespace(uint32_t cp) {
    if (cp < 0x80) return (cp >= 9 && cp <= 13) || cp == 32;
    if (cp == 0x85) return 1;
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return c == UTF8PROC_CATEGORY_ZS || c == UTF8PROC_CATEGORY_ZL || c == UTF8PROC_CATEGORY_ZP;
}

int tkz_is_punct(uint32_t cp) {
    if (cp < 0x80) return (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) ||
                          (cp >= 123 && cp <= 126);
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return c >= UTF8PROC_CATEGORY_PC && c <= UTF8PROC_CATEGORY_PO;
}

/* unicode_categories' is_other: Cc Cf Co Cs; its Cn test is never true for
 * unassigned code points (HF keeps them), so Cn is left out. */
int tkz_is_other(uint32_t cp) {
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return c == UTF8PROC_CATEGORY_CC || c == UTF8PROC_CATEGORY_CF || c == UTF8PROC_CATEGORY_CS ||
           c == UTF8PROC_CATEGORY_CO;
}

/* BertNormalizer's strip_accents: unicode_categories' is_mark_nonspacing (Mn). */
int tkz_is_mn(uint32_t cp) { return cp >= 0x300 && utf8proc_category((utf8proc_int32_t)cp) == UTF8PROC_CATEGORY_MN; }

/* StripAccents: unicode-normalization's is_combining_mark (Mn, Mc, Me). */
int tkz_is_mark(uint32_t cp) {
    if (cp < 0x300) return 0;
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return c == UTF8PROC_CATEGORY_MN || c == UTF8PROC_CATEGORY_MC || c == UTF8PROC_CATEGORY_ME;
}

int tkz_is_numeric(uint32_t cp) {
    if (cp < 0x80) return cp >= '0' && cp <= '9';
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
}

/* Rust regex's \w needs Alphabetic, which utf8proc does not expose: PCRE2 has it (TKZ_WORD_CLASS). */
int tkz_is_word(const tkz_re *word, uint32_t cp) {
    if (cp < 0x80) return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || cp == '_';
    char u[4];
    int n = tkz_u8enc(cp, u);
    return pcre2_match(word->code, (PCRE2_SPTR)u, (PCRE2_SIZE)n, 0, PCRE2_NO_UTF_CHECK | PCRE2_ANCHORED, word->md,
                       NULL) > 0;
}

int tkz_lower_append(tkz_buf *b, uint32_t cp) {
    if (cp < 0x80) {
        char c = (char)(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
        return tkz_buf_put(b, &c, 1);
    }
    if (cp == 0x130) return tkz_buf_put(b, "i\xCC\x87", 3); /* SpecialCasing.txt: U+0130 -> 0069 0307 */
    return tkz_buf_putc(b, (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp));
}

int tkz_unorm(tkz_buf *b, const char *s, size_t n, int form) {
    size_t i = 0;
    while (i < n && (unsigned char)s[i] < 0x80) i++;
    if (i == n) return tkz_buf_put(b, s, n); /* ASCII is invariant under every form */
    utf8proc_option_t o = UTF8PROC_STABLE;
    if (form == TKZ_NFC || form == TKZ_NFKC) o |= UTF8PROC_COMPOSE;
    else o |= UTF8PROC_DECOMPOSE;
    if (form == TKZ_NFKC || form == TKZ_NFKD) o |= UTF8PROC_COMPAT;
    utf8proc_uint8_t *out = NULL;
    utf8proc_ssize_t k = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &out, o);
    if (k < 0) return -1;
    int rc = tkz_buf_put(b, out, (size_t)k);
    free(out);
    return rc;
}

/* GPT-2's bytes_to_unicode: printable bytes map to themselves, the others to
 * 256 + their rank among the non-printable ones. */
static int bl_printable(unsigned b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE); }

uint32_t tkz_byte_cp(uint8_t b) {
    if (bl_printable(b)) return b;
    uint32_t n = 0;
    for (unsigned x = 0; x < b; x++) n += !bl_printable(x);
    return 256 + n;
}

int tkz_cp_byte(uint32_t cp) {
    if (cp < 256) return bl_printable(cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1; /* 68 bytes are not printable */
    uint32_t n = cp - 256;
    for (unsigned x = 0; x < 256; x++)
        if (!bl_printable(x) && n-- == 0) return (int)x;
    return -1;
}

/* ---- regexes ---- */
/* Oniguruma (Ruby syntax, as the onig crate compiles HF's patterns) differs
 * from PCRE2 with UCP in a few escapes; they are rewritten as Unicode
 * properties. Nested classes and set operations are refused. */
static int translate(tkz_buf *o, const char *p, size_t n, const char *what, struct lerr *e) {
    int in_class = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char d = p[++i];
            const char *rep = NULL, *rep_in = NULL;
            switch (d) {
            case 's': rep = "\\p{White_Space}", rep_in = rep; break;
            case 'S': rep = "\\P{White_Space}", rep_in = rep; break;
            case 'w': rep = "[\\p{L}\\p{M}\\p{N}\\p{Pc}]", rep_in = "\\p{L}\\p{M}\\p{N}\\p{Pc}"; break;
            case 'W': rep = "[^\\p{L}\\p{M}\\p{N}\\p{Pc}]"; break;
            case 'd': rep = "\\p{Nd}", rep_in = rep; break;
            case 'D': rep = "\\P{Nd}", rep_in = rep; break;
            case 'h': rep = "[0-9a-fA-F]", rep_in = "0-9a-fA-F"; break;
            case 'H': rep = "[^0-9a-fA-F]"; break;
            case 'u': /* Ruby's \uHHHH */
                if (i + 4 < n && strspn(p + i + 1, "0123456789abcdefABCDEF") >= 4) {
                    if (tkz_buf_put(o, "\\x{", 3) || tkz_buf_put(o, p + i + 1, 4) || tkz_buf_put(o, "}", 1)) return -1;
                    i += 4;
                    continue;
                }
                break;
            case 'p':
            case 'P':
                if (i + 2 < n && p[i + 1] == '{' && p[i + 2] == '^') { /* \p{^L} is \P{L} */
                    if (tkz_buf_put(o, d == 'p' ? "\\P{" : "\\p{", 3)) return -1;
                    i += 2;
                    continue;
                }
                break;
            default: break;
            }
            if (rep) {
                const char *r = in_class ? rep_in : rep;
                if (!r)
                    return lerr_set(e, "%s: \\%c inside a character class is not supported (Oniguruma and PCRE2 "
                                       "differ there)", what, d);
                if (tkz_buf_put(o, r, strlen(r))) return -1;
                continue;
            }
            char two[2] = {'\\', d};
            if (tkz_buf_put(o, two, 2)) return -1;
            continue;
        }
        if (in_class) {
            if (c == '[' && i + 1 < n && p[i + 1] == ':') { /* POSIX class [:alpha:] */
                const char *end = memchr(p + i, ']', n - i);
                if (!end) return lerr_set(e, "%s: unterminated [: :] class", what);
                if (tkz_buf_put(o, p + i, (size_t)(end - (p + i)) + 1)) return -1;
                i = (size_t)(end - p);
                continue;
            }
            if (c == '[' || (c == '&' && i + 1 < n && p[i + 1] == '&'))
                return lerr_set(e, "%s: nested character classes and && are not supported", what);
            if (c == ']') in_class = 0;
            if (tkz_buf_put(o, &c, 1)) return -1;
            continue;
        }
        if (c == '[') {
            if (tkz_buf_put(o, &c, 1)) return -1;
            /* "[^]" and "[]" put a literal ']' first */
            if (i + 1 < n && p[i + 1] == '^') {
                if (tkz_buf_put(o, "^", 1)) return -1;
                i++;
            }
            if (i + 1 < n && p[i + 1] == ']') {
                if (tkz_buf_put(o, "\\]", 2)) return -1;
                i++;
            }
            in_class = 1;
            continue;
        }
        if (c == '(' && i + 2 < n && p[i + 1] == '?') { /* Ruby's (?m) is dot-all: PCRE2's (?s) */
            size_t j = i + 2;
            int opts = 1;
            while (j < n && p[j] != ':' && p[j] != ')') {
                if (!strchr("imx-", p[j])) {
                    opts = 0;
                    break;
                }
                j++;
            }
            if (opts && j < n) {
                if (tkz_buf_put(o, "(?", 2)) return -1;
                for (size_t k = i + 2; k < j; k++)
                    if (tkz_buf_put(o, p[k] == 'm' ? "s" : &p[k], 1)) return -1;
                i = j - 1;
                continue;
            }
        }
        if (tkz_buf_put(o, &c, 1)) return -1;
    }
    return 0;
}

int tkz_re_compile(tkz_re *r, const char *pat, size_t n, int literal, const char *what, struct lerr *e) {
    memset(r, 0, sizeof *r);
    tkz_buf o = {0};
    int rc = 0;
    if (literal) {
        for (size_t i = 0; i < n && !rc; i++) {
            unsigned char c = (unsigned char)pat[i];
            if (c < 0x80 && !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
                rc = c == 0 ? tkz_buf_put(&o, "\\x{0}", 5) : tkz_buf_put(&o, "\\", 1) || tkz_buf_put(&o, &c, 1);
            else
                rc = tkz_buf_put(&o, &c, 1);
        }
    } else {
        rc = translate(&o, pat, n, what, e);
        if (rc && e && !e->msg[0]) lerr_set(e, "%s: out of memory", what);
        if (rc) {
            tkz_buf_free(&o);
            return -1;
        }
    }
    if (rc || tkz_buf_put(&o, "", 0)) {
        tkz_buf_free(&o);
        return lerr_set(e, "%s: out of memory", what);
    }
    pcre2_compile_context *cc = pcre2_compile_context_create(NULL);
    if (cc) pcre2_set_newline(cc, PCRE2_NEWLINE_LF);
    int err;
    PCRE2_SIZE eoff;
    r->code = pcre2_compile((PCRE2_SPTR)o.p, o.n, PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &err, &eoff, cc);
    pcre2_compile_context_free(cc);
    if (!r->code) {
        PCRE2_UCHAR msg[200];
        pcre2_get_error_message(err, msg, sizeof msg);
        lerr_set(e, "%s: bad regex '%.*s' at offset %zu: %s", what, (int)(n > 200 ? 200 : n), pat, (size_t)eoff,
                 (const char *)msg);
        tkz_buf_free(&o);
        return -1;
    }
    tkz_buf_free(&o);
    pcre2_jit_compile(r->code, PCRE2_JIT_COMPLETE); /* falls back to the interpreter if JIT is unavailable */
    r->md = pcre2_match_data_create_from_pattern(r->code, NULL);
    if (!r->md) {
        tkz_re_free(r);
        return lerr_set(e, "%s: out of memory", what);
    }
    return 0;
}

void tkz_re_free(tkz_re *r) {
    if (r->md) pcre2_match_data_free(r->md);
    if (r->code) pcre2_code_free(r->code);
    memset(r, 0, sizeof *r);
}

/* The onig crate's find_iter: an empty match right where the previous match
 * ended is skipped (the search moves one character on); then HF's
 * find_matches fills the gaps with non-match spans. */
int tkz_re_spans(tkz_re *r, const char *s, size_t n, tkz_spanv *out, struct lerr *e) {
    out->n = 0;
    if (n == 0) return tkz_spanv_push(out, 0, 0, 0) ? lerr_set(e, "out of memory") : 0;
    size_t prev = 0, last_end = 0;
    long long last_match_end = -1;
    while (last_end <= n) {
        int rc = pcre2_match(r->code, (PCRE2_SPTR)s, n, last_end, PCRE2_NO_UTF_CHECK, r->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[200];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return lerr_set(e, "regex match failed: %s", (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(r->md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms && last_match_end == (long long)me) {
            if (last_end >= n) break;
            int l;
            tkz_u8dec(s + last_end, &l);
            last_end += (size_t)l;
            continue;
        }
        last_end = me;
        last_match_end = (long long)me;
        if (prev != ms && tkz_spanv_push(out, (uint32_t)prev, (uint32_t)ms, 0)) return lerr_set(e, "out of memory");
        if (tkz_spanv_push(out, (uint32_t)ms, (uint32_t)me, 1)) return lerr_set(e, "out of memory");
        prev = me;
    }
    if (prev != n && tkz_spanv_push(out, (uint32_t)prev, (uint32_t)n, 0)) return lerr_set(e, "out of memory");
    return 0;
}
