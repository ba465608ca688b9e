/*
 * Shared by the `lora prep` modules (prep.c, prep_lm.c, prep_cls.c,
 * cli_prep.c): the input file list, text files checked for UTF-8, and what
 * a model folder says about labels, positions and special tokens.
 */
#ifndef PREP_INT_H
#define PREP_INT_H

#include "prep.h"
#include "tokenizer.h"

/* inputs: files and folders; a folder gives its regular files (not those
 * whose name starts with '.'), sorted by name. *files malloc'd (free with
 * prep_files_free). */
int prep_list_files(const char *const *inputs, int n, char ***files, int *n_files, struct lerr *e);
void prep_files_free(char **files, int n);

/* A whole file as text: invalid UTF-8 is an error naming path:line:column
 * (the byte column) with utf8 = PREP_UTF8_ERROR, each invalid sequence
 * becomes U+FFFD (*n_replaced counts them) with PREP_UTF8_REPLACE, or is
 * left for the caller to find with PREP_UTF8_UNCHECKED. A NUL byte is an
 * error. NUL-terminated, malloc'd. */
enum { PREP_UTF8_ERROR = 0, PREP_UTF8_REPLACE = 1, PREP_UTF8_UNCHECKED = 2 };
char *prep_read_text(const char *path, int utf8, size_t *len, long *n_replaced, struct lerr *e);

/* What the model folder says (config.json, tokenizer_config.json). */
typedef struct {
    int max_pos;          /* max_position_embeddings / n_positions, 0 when absent */
    int num_labels;       /* len(id2label) or num_labels, 0 when absent */
    int n_label2id;       /* label2id entries that are not transformers' LABEL_k defaults */
    char **label_names;   /* (n_label2id) names, */
    int32_t *label_ids;   /* (n_label2id) their ids */
    char eos[128], pad[128]; /* tokenizer_config.json's eos_token / pad_token ("" when absent) */
    int eos_id, pad_id;   /* config.json's eos_token_id / pad_token_id, -1 when absent */
} prep_model_info;
int prep_model_info_read(const char *dir, prep_model_info *m, struct lerr *e);
void prep_model_info_free(prep_model_info *m);
/* The id of the tokenizer's special token `which` ("eos" or "pad"): the
 * tokenizer_config.json entry, then config.json's id, then the usual names;
 * -1 when none is found. */
int32_t prep_special_id(const tkz *t, const prep_model_info *m, const char *which);

/* 1-based line and byte column of offset off in s. */
void prep_line_col(const char *s, size_t off, long *line, long *col);

#endif
