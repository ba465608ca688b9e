/*
 * ckpt_: HDF5 checkpoints of a run (written by the coordinator, rank 0).
 *
 * One file per checkpoint, DIR/step_00001200.h5, laid out so that `h5dump -H`
 * reads like a table of contents (the full spec is docs/checkpoint-format.md):
 *   /                      attrs: format = "lora-ps-checkpoint", format_version, step, epoch,
 *                                 tokens_seen, ranks, created (UTC, ISO 8601), project_version
 *   /config                dataset: the run config, full INI text
 *   /base_model            attrs: path, size (bytes), hash (hex of hash64 of the safetensors bytes)
 *   /adapter/<module>/lora_A, lora_B   float32 datasets; <module> is peft's module path
 *                          (base_model.model.transformer.h.0.attn.c_attn); the group has attrs
 *                          r, alpha, scaling
 *   /adapter/<module>/<name>   a whole tensor (peft's modules_to_save, or full fine-tuning):
 *                          the key base_model.model.classifier.bias is group
 *                          base_model.model.classifier, dataset bias; float32, 1-D or 2-D as the
 *                          tensor is; the group has attr kind = "whole"
 *   /adapter               attrs: target_modules (the configured targets, comma-separated, or the
 *                                 regex), target_regex, dropout; with whole tensors also
 *                                 modules_to_save (comma-separated) and full_finetune
 *   /optimizer             attrs: name, step (AdamW steps applied), lr, beta1, beta2, eps, weight_decay
 *   /optimizer/exp_avg/<module>/lora_A ...      AdamW m, same tree and shapes as /adapter
 *   /optimizer/exp_avg_sq/<module>/lora_A ...   AdamW v
 *   /schedule              attrs: kind, lr, warmup_steps, total_steps, min_lr_ratio, position
 *   /rng                   attrs: init_seed, data_seed, dropout_seed (every random draw of the
 *                                 project is a pure function of these and the data position)
 *   /data                  attrs: cursor (global sample index of the next step), epoch,
 *                                 seq_len, sampling, train_tokens
 *   /metrics               datasets step (int64), loss, lr, tokens_per_s (float64), one row per step so far
 *
 * Writing is atomic: DIR/.step_XXXXXXXX.h5.tmp.<pid> is written, flushed, fsynced, renamed
 * over the final name and the directory fsynced; on any error (a full disk included) the
 * temporary file is removed and the previous checkpoints are untouched. After a successful
 * write only the `keep` newest checkpoints stay.
 *
 * The temporary of a writer that died is removed by the next write once its pid is gone.
 * Retention keeps the `keep` highest step numbers, and always the file just written.
 *
 * Every trainable tensor of the adapter's table is in the file, in the table's order: LoRA
 * modules and whole tensors alike. A file without whole tensors is format version 1, exactly as
 * before whole tensors existed (older readers read it); one with whole tensors is version 2.
 *
 * Reading validates the format name and version (an unknown version is rejected naming the
 * versions this build reads), every dataset's presence and shape against the adapter layout,
 * and the metrics' lengths; a truncated or corrupted file is an error, never a silent partial
 * load.
 */
#ifndef CHECKPOINT_H
#define CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "lerr.h"
#include "lora.h"

#define CKPT_FORMAT "lora-ps-checkpoint"
#define CKPT_VERSION 2      /* the newest version, written when the adapter has whole tensors */
#define CKPT_VERSION_LORA 1 /* written when it has none (LoRA A/B only); this build reads 1 and 2 */
#ifndef LORA_PROJECT_VERSION
#define LORA_PROJECT_VERSION "0.1.0" /* written as the root attribute project_version */
#endif

typedef struct {
    int64_t step;            /* optimizer steps completed (the next step to run) */
    int64_t epoch;
    int64_t tokens_seen;
    int ranks;               /* MPI ranks of the run that wrote it (root attr "ranks") */
    int format_version;      /* on read: the file's (the writer picks it from the adapter) */
    int full_finetune;       /* on read: every trained tensor is whole (the writer takes a->full) */
    int64_t data_cursor;     /* global sample index where the next step starts */
    int64_t opt_steps;       /* AdamW steps applied (t of the last update); < step when steps were skipped */
    /* optimizer and schedule settings at write time */
    float lr, beta1, beta2, eps, weight_decay, min_lr_ratio;
    int schedule_kind;       /* sched_kind */
    int64_t warmup_steps, total_steps;
    /* seeds and data */
    uint64_t init_seed, data_seed, dropout_seed;
    int seq_len, sampling;
    int64_t train_tokens;
    /* identity */
    const char *config_text; /* on read: malloc'd, freed by ckpt_state_free */
    const char *model_path;  /* on read: malloc'd */
    uint64_t model_size, model_hash;
    /* metrics so far: n rows */
    int64_t n_metrics;
    int64_t *m_step;
    double *m_loss, *m_lr, *m_tokens_per_s;
    /* evaluations so far (one row per end of epoch evaluated): step, epoch,
     * and CKPT_EVAL_N values in ckpt_eval_names' order, NaN for a metric the
     * task has not (/metrics/eval; absent in older files: 0 rows) */
    int64_t n_evals;
    int64_t *ev_step, *ev_epoch;
    double *ev_values; /* (n_evals, CKPT_EVAL_N) */
} ckpt_state;

#define CKPT_EVAL_N 8
/* loss, perplexity, accuracy, macro_f1, precision, recall, f1, token_accuracy:
 * the names of [train] metric_for_best and of the datasets in /metrics/eval */
extern const char *const ckpt_eval_names[CKPT_EVAL_N];

/* Writes dir/step_%08lld.h5 from st, the adapter's values (a->w) and the
 * optimizer's flat m and v (same layout as a->w): every tensor of a's table,
 * LoRA and whole. Creates dir if needed. An adapter whose table the format
 * cannot hold (a module both LoRA-adapted and whole) is an error before any
 * file is made.
 * Keeps the `keep` newest checkpoints (keep <= 0: keep all; the file just
 * written always stays). On success the final path goes to path_out (if not
 * NULL). On error -1 with "PATH: <what failed>", the temporary removed and
 * the existing checkpoints untouched. HDF5 here is the serial, not
 * thread-safe build: call from one thread. */
int ckpt_write(const char *dir, const ckpt_state *st, const lora_adapter *a, const float *m, const float *v,
               int keep, char *path_out, size_t path_cap, struct lerr *e);

/* Reads path into st (strings and metrics malloc'd), a->w, m and v (m or v
 * may be NULL: that moment is validated but not read). The adapter layout
 * (LoRA module names, r, whole tensors, shapes) must match a's exactly: a
 * shape mismatch is an error naming the dataset and both shapes, a module or
 * whole tensor on one side only an error naming it. On error st is left
 * zeroed (nothing to free) and a->w, m, v may be partly overwritten. */
int ckpt_read(const char *path, ckpt_state *st, lora_adapter *a, float *m, float *v, struct lerr *e);

/* The header's counters against each other (the readers call it; the
 * metadata is checksummed, so only an edit or a writer bug fails it):
 * 0 <= step <= CKPT_MAX_STEP, 0 <= AdamW steps <= step, the schedule
 * position equal to step, the data cursor step times a global batch of one
 * or more samples (0 at step 0), no negative count. -1 with a message naming
 * the attribute. */
#define CKPT_MAX_STEP (INT64_C(1) << 40)
int ckpt_check_counters(const ckpt_state *st, int64_t position, struct lerr *e);
void ckpt_state_free(ckpt_state *st);

/* Reads only the header (root attrs, config text, base model identity,
 * /optimizer, /schedule, /rng, /data attrs, and r/alpha/modules of the
 * adapter) for resume checks, without a layout; checks the structure (every
 * module's datasets in all three trees with consistent shapes, the metrics'
 * lengths) but reads no tensor and no metrics (st->n_metrics = 0). The
 * adapter spec found is described in spec_out (may be NULL) as peft would:
 * r, alpha, dropout, rslora (scaling != alpha/r), targets = the full module
 * paths without "base_model.model." (with more than LORA_MAX_TARGETS modules:
 * the targets as configured, /adapter's target_modules, which select the
 * same modules of the same model), and save = the modules_to_save names of
 * the whole tensors. A full fine-tuning file (st->full_finetune) has no LoRA
 * module: its spec is all zero. On error st is left zeroed. */
int ckpt_read_meta(const char *path, ckpt_state *st, lora_spec *spec_out, struct lerr *e);

/* The newest checkpoint in dir that validates (ckpt_read_meta succeeds).
 * Invalid newer files are skipped with a warning written to `warn` (one line
 * each, may be NULL). Returns 1 and the path if one was found, 0 if none
 * exists (fresh start: dir missing, empty, or nothing in it validates, which
 * `warn` then explains), -1 on an error reading dir itself. */
int ckpt_find_latest(const char *dir, char *path_out, size_t cap, char *warn, size_t warn_cap, struct lerr *e);
/* The same among the checkpoints of a step below `below` (the fallback when the
 * newest one validated but its data failed to read). */
int ckpt_find_latest_below(const char *dir, int64_t below, char *path_out, size_t cap, char *warn, size_t warn_cap,
                           struct lerr *e);

#endif
