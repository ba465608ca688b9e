/*
 * ds_: labeled datasets for sequence and token classification, stored as a
 * safetensors file (what `lora prep` writes; any tool that writes
 * safetensors can make one), its __metadata__ naming the format and version:
 *   format = "lora-ps-dataset", version = "1", task = "SEQ_CLS" or "TOKEN_CLS"
 * and its tensors:
 *   input_ids       (N, T) integer   token ids, padded to T
 *   attention_mask  (N, T) integer   1 = token, 0 = padding (optional: no padding)
 *   token_type_ids  (N, T) integer   segment ids (optional: all 0)
 *   labels          (N) integer      SEQ_CLS class ids in [0, num_labels)
 *                   (N, T) integer   TOKEN_CLS ids in [0, num_labels) or -100 (no loss)
 * Everything is checked at open against the model (vocabulary, positions,
 * labels, the mask's 0/1 values with at least one token per row) before it is
 * used, so a batch never holds a value the model cannot take; errors name the
 * file and tensor. The values are converted to int32 once at open.
 */
#ifndef DATASET_H
#define DATASET_H

#include <stdint.h>

#include "lerr.h"
#include "model.h"

#define DS_FORMAT "lora-ps-dataset"
#define DS_VERSION "1"

typedef struct ds_file ds_file;

/* Opens path for a model of this task, n_labels classes, vocab ids and at
 * most max_T positions. NULL with a message on any problem. */
ds_file *ds_open(const char *path, model_task task, int n_labels, int vocab, int max_T, struct lerr *e);
void ds_close(ds_file *d);
const char *ds_path(const ds_file *d);
int64_t ds_count(const ds_file *d);
int ds_seq_len(const ds_file *d);
int ds_has_mask(const ds_file *d);
int ds_has_types(const ds_file *d);
/* Example i into row r of batch buffers of T = ds_seq_len columns: tokens,
 * mask and types (B, T) (mask/types may be NULL when the file has none),
 * labels (B) for SEQ_CLS or (B, T) for TOKEN_CLS. */
void ds_get(const ds_file *d, int64_t i, int r, int32_t *tokens, int32_t *mask, int32_t *types, int32_t *labels);

/* Writes n examples of T positions in this format (as I64 tensors, the file
 * replaced atomically): ids (N, T), mask and types (N, T) or NULL (not
 * written), labels (N) for SEQ_CLS or (N, T) for TOKEN_CLS. When n_names >
 * 0, the label names (id order) go into the metadata as "label_names", a
 * JSON array (readers ignore it; it says what the ids mean). 0, or -1 with a
 * message. */
int ds_write(const char *path, model_task task, int64_t n, int T, const int32_t *ids, const int32_t *mask,
             const int32_t *types, const int32_t *labels, const char *const *label_names, int n_names,
             struct lerr *e);

#endif
