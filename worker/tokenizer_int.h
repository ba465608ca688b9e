/*
 * Internals shared by the tokenizer modules (tokenizer*.c); not a public header.
 *
 * Who owns what:
 *  tokenizer_util.c       buffers, hash maps, UTF-8, Unicode properties (utf8proc), regexes (PCRE2)
 *  tokenizer_normalize.c  normalizers (string -> string)
 *  tokenizer_pretok.c     pre-tokenizers (pieces -> words) and HF's split behaviours
 *  tokenizer_bpe.c        the BPE model (merge ranks in a hash table, a heap merge per word)
 *  tokenizer_wordpiece.c  WordPiece and WordLevel models
 *  tokenizer_decode.c     decoders
 *  tokenizer_json.c       tokenizer.json -> these structs (every field checked)
 *  tokenizer_legacy.c     vocab.json + merges.txt, vocab.txt folders
 *  tokenizer.c            added tokens, the pipeline, truncation, post-processors, padding
 *
 * Strings are byte ranges (pointer + length), valid UTF-8: the text is checked
 * once on entry, and every transformation maps valid UTF-8 to valid UTF-8.
 */
#ifndef TOKENIZER_INT_H
#define TOKENIZER_INT_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

#define TKZ_MAX_ID (1 << 24) /* ids above this are rejected: bounds the id -> token table */
#define TKZ_MAX_PAD (1 << 20) /* padding lengths past this are refused: a padded encoding is allocated whole */
/* 1 when a JSON number is a whole number a long long holds exactly: the range is
 * checked before the cast (casting 1e300 is UB; found by fuzz_tokenizer). */
static inline int tkz_whole(double v) { return v >= -9.0e15 && v <= 9.0e15 && v == (double)(long long)v; }

/* ---- buffers and maps (tokenizer_util.c) ---- */
typedef struct {
    char *p;
    size_t n, cap;
} tkz_buf;
int tkz_buf_reserve(tkz_buf *b, size_t extra); /* -1 on out of memory */
int tkz_buf_put(tkz_buf *b, const void *s, size_t n);
int tkz_buf_putc(tkz_buf *b, uint32_t cp); /* appends cp as UTF-8 */
void tkz_buf_free(tkz_buf *b);

typedef struct {
    int32_t *v;
    size_t n, cap;
} tkz_ivec;
int tkz_ivec_push(tkz_ivec *v, int32_t x);
int tkz_ivec_reserve(tkz_ivec *v, size_t extra);

/* string -> int32 (keys copied into a pool, NUL-terminated). */
typedef struct {
    uint64_t h;
    uint32_t off, len;
    int32_t val;
} tkz_sent;
typedef struct {
    tkz_sent *e;
    size_t cap, n; /* cap: a power of two; empty slots have len == UINT32_MAX */
    tkz_buf keys;
} tkz_smap;
int tkz_smap_init(tkz_smap *m, size_t expect);
/* Inserts or overwrites; returns 0, or -1 on out of memory. *old gets the
 * previous value (-1 if none) when old is not NULL. */
int tkz_smap_put(tkz_smap *m, const char *k, size_t n, int32_t v, int32_t *old);
int32_t tkz_smap_get(const tkz_smap *m, const char *k, size_t n); /* -1 when absent */
/* The stored key of the entry found for k (NULL when absent). */
const char *tkz_smap_key(const tkz_smap *m, const char *k, size_t n);
void tkz_smap_free(tkz_smap *m);
uint64_t tkz_hash(const void *p, size_t n);

/* (a, b) -> (rank, new id): the BPE merges. */
typedef struct {
    uint64_t key; /* UINT64_MAX = empty */
    uint32_t rank;
    int32_t id;
} tkz_pent;
typedef struct {
    tkz_pent *e;
    size_t cap, n;
} tkz_pmap;
int tkz_pmap_init(tkz_pmap *m, size_t expect);
int tkz_pmap_put(tkz_pmap *m, uint32_t a, uint32_t b, uint32_t rank, int32_t id);
/* The slot of a pair: every bit of both ids reaches the low bits (a plain
 * multiply would leave them to b alone and cluster the probes). */
static inline size_t tkz_pmap_slot(uint64_t key, size_t mask) {
    key ^= key >> 31;
    key *= 0x9E3779B97F4A7C15ull;
    key ^= key >> 29;
    return (size_t)key & mask;
}
static inline const tkz_pent *tkz_pmap_get(const tkz_pmap *m, uint32_t a, uint32_t b) {
    uint64_t key = (uint64_t)a << 32 | b;
    size_t mask = m->cap - 1, i = tkz_pmap_slot(key, mask);
    for (;;) {
        const tkz_pent *p = &m->e[i];
        if (p->key == key) return p;
        if (p->key == UINT64_MAX) return NULL;
        i = (i + 1) & mask;
    }
}
void tkz_pmap_free(tkz_pmap *m);

/* ---- UTF-8 and Unicode (tokenizer_util.c) ---- */
/* Length of the valid UTF-8 prefix of s (== n when all of s is valid). */
size_t tkz_utf8_valid(const char *s, size_t n);
/* Decodes the code point at s (valid UTF-8 assumed); *len gets its byte count. */
static inline uint32_t tkz_u8dec(const char *s, int *len) {
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] < 0x80) {
        *len = 1;
        return u[0];
    }
    if (u[0] < 0xE0) {
        *len = 2;
        return (uint32_t)(u[0] & 0x1F) << 6 | (u[1] & 0x3F);
    }
    if (u[0] < 0xF0) {
        *len = 3;
        return (uint32_t)(u[0] & 0x0F) << 12 | (uint32_t)(u[1] & 0x3F) << 6 | (u[2] & 0x3F);
    }
    *len = 4;
    return (uint32_t)(u[0] & 0x07) << 18 | (uint32_t)(u[1] & 0x3F) << 12 | (uint32_t)(u[2] & 0x3F) << 6 | (u[3] & 0x3F);
}
int tkz_u8enc(uint32_t cp, char *out); /* returns the byte count (1..4) */
/* Unicode properties as Rust's char methods and the unicode_categories crate
 * define them (HF's sources), from utf8proc's tables. */
int tkz_is_whitespace(uint32_t cp); /* White_Space (char::is_whitespace) */
int tkz_is_punct(uint32_t cp);      /* ASCII punctuation or P* (BERT's and Punctuation's) */
int tkz_is_other(uint32_t cp);      /* Cc Cf Co Cs (not Cn: see tokenizer_util.c) */
int tkz_is_mn(uint32_t cp);         /* Mn (BertNormalizer) */
int tkz_is_mark(uint32_t cp);       /* Mn Mc Me (StripAccents) */
int tkz_is_numeric(uint32_t cp);    /* Nd Nl No (char::is_numeric) */
/* Appends the lowercase of cp (char::to_lowercase: the simple mapping, and
 * SpecialCasing's one unconditional multi-character lowercase, U+0130). */
int tkz_lower_append(tkz_buf *b, uint32_t cp);
/* NFC, NFD, NFKC, NFKD of s into b (appended). */
enum { TKZ_NFC, TKZ_NFD, TKZ_NFKC, TKZ_NFKD };
int tkz_unorm(tkz_buf *b, const char *s, size_t n, int form);

/* The byte-level alphabet (GPT-2's bytes_to_unicode): byte -> code point. */
uint32_t tkz_byte_cp(uint8_t b);
/* code point -> byte, or -1 when cp is not in the alphabet. */
int tkz_cp_byte(uint32_t cp);

/* ---- regexes: Oniguruma patterns run in PCRE2 (tokenizer_util.c) ---- */
typedef struct {
    pcre2_code *code;
    pcre2_match_data *md;
} tkz_re;
/* Compiles an HF pattern: a regex in Oniguruma (Ruby) syntax, or a literal
 * string when literal is set. what names the field for messages. */
int tkz_re_compile(tkz_re *r, const char *pat, size_t n, int literal, const char *what, struct lerr *e);
void tkz_re_free(tkz_re *r);
/* Rust regex's \w (added tokens' single_word, the Whitespace pre-tokenizer) in PCRE2. */
#define TKZ_WORD_CLASS "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}"
/* 1 when cp is a Rust-regex word character; word is "[" TKZ_WORD_CLASS "]". */
int tkz_is_word(const tkz_re *word, uint32_t cp);
/* One span of HF's find_matches: [s, e) and whether it is a match. */
typedef struct {
    uint32_t s, e;
    uint8_t m;
} tkz_span;
typedef struct {
    tkz_span *v;
    size_t n, cap;
} tkz_spanv;
int tkz_spanv_push(tkz_spanv *v, uint32_t s, uint32_t e, int m);
/* HF's find_matches of a regex over s: spans covering [0, n) in order,
 * including the empty matches the onig crate's find_iter yields. */
int tkz_re_spans(tkz_re *r, const char *s, size_t n, tkz_spanv *out, struct lerr *e);

/* ---- normalizers (tokenizer_normalize.c) ---- */
enum {
    NZ_BERT, NZ_NFC, NZ_NFD, NZ_NFKC, NZ_NFKD, NZ_LOWER, NZ_STRIP, NZ_STRIP_ACCENTS,
    NZ_REPLACE, NZ_PREPEND, NZ_BYTELEVEL, NZ_SEQ
};
typedef struct tkz_norm {
    int type;
    int clean_text, chinese, strip_accents, lowercase; /* Bert (strip_accents resolved: null -> lowercase) */
    int left, right;                                   /* Strip */
    tkz_re re;                                         /* Replace */
    char *content;                                     /* Replace, Prepend */
    size_t content_len;
    struct tkz_norm *sub; /* Sequence */
    int n_sub;
} tkz_norm;
/* Appends the normalized s to out. */
int tkz_normalize(const tkz_norm *z, const char *s, size_t n, tkz_buf *out, struct lerr *e);
void tkz_norm_free(tkz_norm *z);

/* ---- pre-tokenizers (tokenizer_pretok.c) ---- */
enum {
    PT_BYTELEVEL, PT_SPLIT, PT_METASPACE, PT_BERT, PT_WHITESPACE, PT_WSSPLIT, PT_DIGITS,
    PT_PUNCT, PT_DELIM, PT_SEQ
};
enum { BH_REMOVED, BH_ISOLATED, BH_MERGED_PREV, BH_MERGED_NEXT, BH_CONTIGUOUS };
enum { PS_ALWAYS, PS_FIRST, PS_NEVER };
typedef struct tkz_pretok {
    int type;
    int add_prefix_space, use_regex; /* ByteLevel */
    int lazy;                        /* ByteLevel: leave the byte mapping to the model (last step, BPE) */
    tkz_re re;                       /* Split, Whitespace, ByteLevel */
    int behavior, invert;            /* Split, Punctuation */
    uint32_t repl;                   /* Metaspace replacement, CharDelimiterSplit delimiter */
    int prepend_scheme, split;       /* Metaspace */
    int individual_digits;           /* Digits */
    struct tkz_pretok *sub;
    int n_sub;
} tkz_pretok;
void tkz_pretok_free(tkz_pretok *p);

/* A word or piece: a byte range of a buffer; SEG_ORIGIN: it starts where its
 * sequence starts in the original text (Metaspace's prepend_scheme "first"). */
#define SEG_ORIGIN 1u
typedef struct {
    uint32_t off, len, flags;
} tkz_seg;
typedef struct {
    tkz_seg *v;
    size_t n, cap;
} tkz_segv;
int tkz_segv_push(tkz_segv *v, uint32_t off, uint32_t len, uint32_t flags);

/* Scratch state for one pre-tokenization: two byte buffers and two segment
 * vectors used in turn. */
typedef struct {
    tkz_buf b[2];
    tkz_segv s[2];
    tkz_spanv spans;
} tkz_pt_scratch;
/* Pre-tokenizes the piece s[0..n) (flags: SEG_ORIGIN or 0): on return *words
 * holds the words as ranges of *buf. */
int tkz_pretokenize(const tkz_pretok *p, const char *s, size_t n, uint32_t flags, tkz_pt_scratch *x,
                    const char **buf, const tkz_segv **words, struct lerr *e);
void tkz_pt_scratch_free(tkz_pt_scratch *x);

/* ---- models (tokenizer_bpe.c, tokenizer_wordpiece.c) ---- */
enum { MD_BPE, MD_WORDPIECE, MD_WORDLEVEL };
typedef struct {
    int type;
    tkz_smap vocab;
    uint32_t *id2off; /* (n_ids) offset of each id's token in vocab.keys, UINT32_MAX for unused ids */
    int32_t n_ids;
    size_t max_len;   /* longest token, bytes */
    int32_t unk_id; /* -1: none (or not in the vocabulary: unk_name says which) */
    char *unk_name;
    char *prefix, *suffix; /* BPE continuing_subword_prefix / end_of_word_suffix; WordPiece prefix */
    size_t prefix_len, suffix_len;
    /* BPE */
    tkz_pmap merges;
    int byte_fallback, fuse_unk, ignore_merges;
    int32_t fb_id[256]; /* <0xNN> ids, -1 where absent */
    int32_t bl_id[256]; /* id of the byte-level character of each byte, -1 where absent */
    int32_t ascii_id[128]; /* id of each ASCII character as a token, -1 where absent */
    /* WordPiece */
    int max_chars;
    /* scratch of one word's merge (symbols and heap) */
    void *work;
    size_t work_cap;
    tkz_buf tmp;
} tkz_model;
/* The token of an id, or NULL. */
static inline const char *tkz_model_tok(const tkz_model *m, int32_t id) {
    return id >= 0 && id < m->n_ids && m->id2off[id] != UINT32_MAX ? m->vocab.keys.p + m->id2off[id] : NULL;
}
/* Builds the BPE merge table from (a, b) pairs given as token strings. */
int tkz_bpe_add_merge(tkz_model *m, const char *a, size_t an, const char *b, size_t bn, uint32_t rank,
                      const char *what, struct lerr *e);
void tkz_bpe_finish(tkz_model *m); /* fills fb_id and bl_id */
/* Appends the ids of one word. bytes: w holds raw bytes that a lazy ByteLevel
 * step left to map (byte-level BPE). */
int tkz_bpe_word(tkz_model *m, const char *w, size_t n, int bytes, tkz_ivec *out, struct lerr *e);
int tkz_wordpiece_word(tkz_model *m, const char *w, size_t n, tkz_ivec *out, struct lerr *e);
int tkz_wordlevel_word(const tkz_model *m, const char *w, size_t n, tkz_ivec *out, struct lerr *e);
/* Registers token -> id in the vocabulary. A token or an id given twice is an
 * error, unless later_wins (vocab.txt: HF keeps the later line, and the
 * earlier id then has no token). */
int tkz_model_add(tkz_model *m, const char *tok, size_t n, int32_t id, int later_wins, const char *what,
                  struct lerr *e);
void tkz_model_free(tkz_model *m);

/* ---- post-processors ---- */
enum { PP_TEMPLATE, PP_BERT, PP_ROBERTA, PP_BYTELEVEL, PP_SEQ };
typedef struct {
    int special; /* 1: a special token, 0: a sequence */
    int seq;     /* sequence: 0 = A, 1 = B */
    int type_id;
    int32_t *ids; /* special: its ids */
    int n_ids;
} tkz_piece;
typedef struct tkz_post {
    int type;
    tkz_piece *single, *pair;
    int n_single, n_pair;
    int32_t cls, sep; /* Bert, Roberta */
    struct tkz_post *sub;
    int n_sub;
} tkz_post;
void tkz_post_free(tkz_post *p);

/* ---- decoders (tokenizer_decode.c) ---- */
enum { DC_BYTELEVEL, DC_WORDPIECE, DC_METASPACE, DC_BPE, DC_BYTEFALLBACK, DC_FUSE, DC_STRIP, DC_REPLACE, DC_CTC, DC_SEQ };
typedef struct tkz_dec {
    int type;
    char *s1, *s2, *s3; /* WordPiece prefix; BPE suffix; Replace content; CTC pad, word delimiter */
    int cleanup;
    uint32_t cp; /* Metaspace replacement; Strip content */
    int prepend_scheme;
    int start, stop; /* Strip */
    tkz_re re;       /* Replace */
    struct tkz_dec *sub;
    int n_sub;
} tkz_dec;
/* A list of strings (the tokens as the decoders pass them along). */
typedef struct {
    tkz_buf b;
    size_t *off, *len;
    size_t n, cap;
} tkz_strv;
int tkz_strv_push(tkz_strv *v, const char *s, size_t n);
void tkz_strv_clear(tkz_strv *v);
void tkz_strv_free(tkz_strv *v);
/* Runs the decoder over the tokens in *in; the result (a list) replaces *in. */
int tkz_decode_chain(const tkz_dec *d, tkz_strv *in, tkz_strv *tmp, struct lerr *e);
void tkz_dec_free(tkz_dec *d);

/* ---- the tokenizer ---- */
typedef struct {
    char *content;
    size_t len;
    char *dec; /* what decode shows: the normalized content for normalized tokens */
    size_t dec_len;
    int32_t id;
    uint8_t single_word, lstrip, rstrip, normalized, special;
} tkz_added;

/* Leftmost-longest matching of a set of added tokens. */
typedef struct {
    uint8_t first[256]; /* first[b]: some token starts with byte b */
    int *idx;           /* indices into tkz.added, by first byte then longest first */
    int start[257];     /* idx[start[b] .. start[b + 1]) begin with byte b */
    int n;
} tkz_matcher;

enum { TR_LONGEST_FIRST, TR_ONLY_FIRST, TR_ONLY_SECOND };
typedef struct {
    int on;
    size_t max_length, stride;
    int strategy, left;
} tkz_trunc;
typedef struct {
    int on;
    size_t fixed; /* 0: BatchLongest */
    size_t multiple;
    int32_t pad_id, pad_type_id;
    int left;
} tkz_pad;

/* Word cache: word bytes -> ids. */
typedef struct {
    tkz_smap map; /* word -> index into ent */
    uint32_t *ent_off, *ent_len;
    size_t n_ent, cap_ent;
    tkz_ivec ids;
} tkz_cache;

struct tkz {
    char name[512];
    char kind[96];
    tkz_model model;
    tkz_norm *norm;
    tkz_pretok *pre;
    tkz_post *post;
    tkz_dec *dec;
    tkz_added *added;
    int n_added;
    tkz_smap added_map; /* content -> index into added */
    tkz_smap special;   /* contents of special tokens */
    tkz_matcher m_raw, m_norm;
    tkz_trunc trunc;
    tkz_pad pad;
    tkz_re word; /* [TKZ_WORD_CLASS]: single_word */
    int lazy_bytes; /* the last pre-tokenizer step is a lazy ByteLevel: words are raw bytes */
    /* scratch */
    tkz_buf nbuf; /* the normalized piece */
    tkz_pt_scratch pts;
    tkz_ivec seq[2];
    tkz_cache cache;
    tkz_strv dv[2];
};

/* tokenizer_json.c */
int tkz_load_json(tkz *t, const char *json, size_t len, struct lerr *e);
/* tokenizer_legacy.c: 1 when the folder had one of the older layouts and it was loaded, 0 when it has none. */
int tkz_load_legacy(tkz *t, const char *dir, struct lerr *e);
/* tokenizer.c: registers added tokens as HF's add_tokens does (ids from the
 * vocabularies, then new ones), after the model and normalizer are set. */
int tkz_add_tokens(tkz *t, tkz_added *toks, int n, struct lerr *e);
/* Checks the post-processor's ids and finishes set-up; called by the loaders. */
int tkz_finish(tkz *t, struct lerr *e);

#endif
