/*
 * prep_: `lora prep`, from text files to the training data the trainer reads.
 *
 *  - causal LM (prep_lm): text files, or folders of them (sorted by name),
 *    tokenized with the model folder's tokenizer in parallel over files and
 *    packed into one token file (include/data.h's format), the EOS token
 *    after every document;
 *  - sequence classification (prep_cls, TASK_SEQ_CLS): TSV, CSV (RFC 4180)
 *    or JSONL rows with a text column (or a text pair) and a label column;
 *  - token classification (prep_cls, TASK_TOKEN_CLS): CoNLL-style files,
 *    labels aligned to word pieces as HF's run_ner example aligns them.
 * Both classification kinds write include/dataset.h's safetensors format.
 *
 * Everything here returns errors through struct lerr naming file:line (and
 * the column, for delimited files); nothing exits. The small pure pieces
 * (UTF-8 repair, record splitting, label alignment, split selection) are
 * exposed for the unit test (tests/test_prep.c).
 */
#ifndef PREP_H
#define PREP_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "lerr.h"
#include "model.h"

typedef struct {
    model_task task;
    const char *model_dir; /* the tokenizer (and config.json's label2id, max_position_embeddings) */
    const char *out;       /* the training output */
    const char *val_out;   /* the validation output (with val_file or val_fraction) */
    const char *val_file;  /* a separate validation file, prepared as the training files */
    const char *const *inputs;
    int n_inputs;
    double val_fraction; /* held out of the training inputs (0: none) */
    uint64_t seed;       /* of the held-out selection */
    int max_length;      /* classification: T (0: 128, at most max_position_embeddings) */
    int no_truncation;   /* a text longer than max_length is an error */
    int label_all;       /* token classification: every piece of a word labeled (B- -> I-) */
    int replace_utf8;    /* invalid UTF-8 becomes U+FFFD instead of an error */
    int lines;           /* causal LM: every line a document (instead of every file) */
    int add_special;     /* causal LM: the tokenizer's special tokens (BOS...) around each document */
    int threads;         /* causal LM: threads (0: OpenMP's default) */
    const char *format;  /* "tsv", "csv", "jsonl" or NULL (from the extension) */
    const char *text_col, *pair_col, *label_col; /* NULL: defaults (sentence or text; none; label) */
    const char *labels_out; /* collected label names (NULL: OUT.labels) */
} prep_opts;

/* Runs the whole preparation of o->task; a summary goes to log. 0, or -1
 * with a message naming the file, line and column of the bad input. */
int prep_lm(const prep_opts *o, FILE *log, struct lerr *e);
int prep_cls(const prep_opts *o, FILE *log, struct lerr *e);
/* The `lora prep` command line. */
int prep_main(int argc, char **argv);

/* Invalid UTF-8 in s[0..n): the number of invalid sequences (maximal
 * subparts, as Python's decoder with errors="replace" counts them: an
 * overlong form, a surrogate, a code point past U+10FFFF and a truncated
 * sequence are each one); *first_bad = offset of the first (unchanged when
 * none). With out not NULL, also writes the text with each one replaced by
 * U+FFFD into *out (malloc'd, NUL-terminated, *out_len bytes); -1 when that
 * allocation fails. */
long prep_utf8_fix(const char *s, size_t n, size_t *first_bad, char **out, size_t *out_len);

/* One record of a delimited file: n fields, field i at buf + off[i] (len[i]
 * bytes, NUL-terminated). Reused across calls; prep_record_free. */
typedef struct {
    char *buf;
    size_t buf_cap;
    size_t *off, *len;
    int n, cap;
} prep_record;
/* Splits the record at the start of s[0..n) on sep. quoted = 1: RFC 4180
 * (a field in double quotes may hold sep, newlines and "" for a quote; CRLF
 * or LF ends a record), 0: TSV as GLUE writes it (no quoting: a quote is a
 * character). *used gets the bytes consumed (the line end included) and
 * *lines the line ends inside them. -1 with a message (no file name: the
 * caller adds file:line) on an unterminated quote or a character after a
 * closing quote. */
int prep_split_record(const char *s, size_t n, char sep, int quoted, prep_record *r, size_t *used, int *lines,
                      struct lerr *e);
void prep_record_free(prep_record *r);

/* Word-piece labels as HF's run_ner aligns them: out[i] = -100 where
 * word_ids[i] < 0 (a special token); the first piece of a word gets
 * word_labels[word]; the later pieces -100, or with label_all the word's
 * label mapped through b_to_i (B-X -> I-X; NULL: unchanged). n pieces. */
void prep_align_labels(int32_t *out, const int32_t *word_ids, int n, const int32_t *word_labels, int label_all,
                       const int32_t *b_to_i);

/* Marks k = round(n * frac) of n examples as held out (is_val[i] = 1), the
 * first k of a seeded Fisher-Yates permutation: the same for the same (n,
 * frac, seed). Returns k; -1 when frac is outside [0, 1) or n < 0. */
int64_t prep_split_select(uint8_t *is_val, int64_t n, double frac, uint64_t seed);

/* 1 when s (len bytes) is a decimal integer in [0, 2^31), its value in *v. */
int prep_parse_label_id(const char *s, size_t len, int32_t *v);

#endif
