/*
 * tkz_: Hugging Face tokenizers, read from the files of a model folder and run
 * as the HF `tokenizers` library (Rust) runs them, to the exact ids.
 *
 * What a folder may hold (tkz_open looks in this order):
 *  - tokenizer.json: the whole pipeline (added tokens, normalizer,
 *    pre-tokenizer, model, post-processor, decoder, truncation, padding);
 *  - vocab.json + merges.txt: a GPT-2 byte-level BPE (tokenizer_config.json,
 *    when present, gives the special tokens and add_prefix_space);
 *  - vocab.txt: a BERT WordPiece (tokenizer_config.json: do_lower_case,
 *    tokenize_chinese_chars, strip_accents).
 *
 * Implemented components (anything else the file names is an error naming it):
 *  models: BPE (merges as "a b" strings or ["a", "b"] pairs; byte_fallback,
 *    fuse_unk, ignore_merges, continuing_subword_prefix, end_of_word_suffix,
 *    unk_token; no dropout), WordPiece, WordLevel;
 *  normalizers: BertNormalizer, NFC, NFD, NFKC, NFKD, Lowercase, Strip,
 *    StripAccents, Replace, Prepend, ByteLevel, Sequence;
 *  pre-tokenizers: ByteLevel, Split, Metaspace, BertPreTokenizer, Whitespace,
 *    WhitespaceSplit, Digits, Punctuation, CharDelimiterSplit, Sequence;
 *  post-processors: TemplateProcessing, BertProcessing, RobertaProcessing,
 *    ByteLevel, Sequence;
 *  decoders: ByteLevel, WordPiece, Metaspace, BPEDecoder, ByteFallback, Fuse,
 *    Strip, Replace, CTC, Sequence;
 *  truncation (LongestFirst, OnlyFirst, OnlySecond; left/right; the overflowing
 *    pieces a stride makes are not returned) and padding (Fixed, BatchLongest,
 *    pad_to_multiple_of; left/right) as the file sets them.
 *
 * Unicode properties, normalization forms and case mapping come from utf8proc;
 * the split regexes run in PCRE2 (UTF + UCP, JIT), after translating the few
 * escapes whose meaning differs from Oniguruma's (what HF uses): \s is
 * White_Space, \w is L|M|N|Pc, \h is a hex digit, ^ and $ are line anchors.
 *
 * A tkz is not thread-safe (it owns a word cache and scratch buffers); use
 * one per thread. Texts must be valid UTF-8 (checked: an error otherwise).
 */
#ifndef TOKENIZER_H
#define TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "lerr.h"

typedef struct tkz tkz;

/* One encoding: ids with their token type ids and attention mask (0 where
 * padding was added), all of length n. Reuse across calls; tkz_enc_free. */
typedef struct {
    int32_t *ids;      /* (n) */
    int32_t *type_ids; /* (n) */
    uint8_t *mask;     /* (n) 1 = token, 0 = padding */
    size_t n, cap;
} tkz_enc;

/* Opens the tokenizer of a folder (see the list above); NULL with a message
 * naming the file and the field on error. */
tkz *tkz_open(const char *dir, struct lerr *e);
/* 1 when dir holds one of the files tkz_open reads (tokenizer.json,
 * vocab.json, vocab.txt) as a regular file, else 0. */
int tkz_present(const char *dir);
/* Builds a tokenizer from the text of a tokenizer.json (len bytes; name is
 * what error messages call it). For tests and fuzzers. */
tkz *tkz_from_json(const char *json, size_t len, const char *name, struct lerr *e);
void tkz_free(tkz *t);

/* Encodes text (and pair, when not NULL: a sentence pair) as HF's
 * Tokenizer.encode(text, pair, add_special_tokens=add_special) does. Returns
 * 0, or -1 with a message (invalid UTF-8, a truncation that cannot be done). */
int tkz_encode(tkz *t, const char *text, size_t len, const char *pair, size_t pair_len, int add_special,
               tkz_enc *out, struct lerr *e);
void tkz_enc_free(tkz_enc *x);

/* Decodes ids as HF's Tokenizer.decode(ids, skip_special_tokens) does (ids
 * outside the vocabulary are dropped, as HF drops them). *out is a malloc'd
 * NUL-terminated string of *out_len bytes. */
int tkz_decode(tkz *t, const int32_t *ids, size_t n, int skip_special, char **out, size_t *out_len, struct lerr *e);

/* What the tokenizer is, in a few words ("BPE, byte-level", "WordPiece"...). */
const char *tkz_kind(const tkz *t);
/* One more than the largest id of the model's vocabulary and the added tokens. */
int tkz_vocab_size(const tkz *t);
/* Id of a token string (added tokens first, then the model), or -1. */
int32_t tkz_token_to_id(const tkz *t, const char *tok);
/* Token string of an id (NUL-terminated, owned by t), or NULL. */
const char *tkz_id_to_token(const tkz *t, int32_t id);
/* Drops the file's truncation and padding (as transformers does when a call
 * asks for neither). */
void tkz_no_truncation_padding(tkz *t);
/* Truncation to max_length tokens, special tokens included (LongestFirst,
 * right, no stride), as transformers' tokenizer(..., truncation=True,
 * max_length=max_length) sets it. */
void tkz_set_truncation(tkz *t, size_t max_length);
/* 1 when id is one of the added tokens marked special ([CLS], <s>...). */
int tkz_is_special(const tkz *t, int32_t id);
/* The model's continuing-subword prefix (WordPiece's "##"), or NULL when it
 * has none: a token that starts with it continues the word before it. */
const char *tkz_subword_prefix(const tkz *t);

#endif
