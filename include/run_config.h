/*
 * rc_: the run configuration, an INI file read with libinih.
 *
 * Why INI and inih: the configs are flat key = value settings in a few sections,
 * edited by hand and diffed in git. libinih (Debian: libinih-dev) is a small,
 * maintained, callback-style parser with line numbers in its errors, and does
 * nothing else; TOML or YAML would bring nesting and types this file never needs.
 *
 * Every key has a default (rc_defaults); a file or a --set override changes it.
 * An unknown section or key, a value that does not parse, or an out-of-range
 * value is an error naming file:line, [section] and key. rc_to_text writes the
 * complete effective config back as INI (checkpoints store it; the coordinator
 * compares ranks' configs with it).
 */
#ifndef RUN_CONFIG_H
#define RUN_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "lerr.h"

#define RC_MAX_TARGETS 32
#define RC_PATH 1024

typedef struct {
    /* [model] */
    char model_path[RC_PATH]; /* HF folder with config.json + model.safetensors */
    /* [lora] */
    int r;
    float alpha;
    int rslora;                          /* 0/1 */
    float dropout;                       /* on the adapter input, training only */
    char targets[RC_MAX_TARGETS][128];   /* peft target_modules, comma separated in the file */
    int n_targets;
    uint64_t init_seed;
    char init_from[RC_PATH];             /* peft adapter folder to start from ("" = fresh init) */
    int full_finetune;                   /* train every base tensor instead of adapters (for comparisons) */
    char modules_to_save[RC_PATH];       /* peft modules_to_save, comma separated ("" = the task's: classifier) */
    /* [data] */
    char train_path[RC_PATH];
    char val_path[RC_PATH];
    int seq_len;
    int batch_size;                      /* sequences per micro-batch (per optimizer step: batch_size * grad_accum) */
    int grad_accum;
    int sampling;                        /* data_mode: 0 shuffle, 1 random */
    uint64_t data_seed;
    int val_windows;
    /* [optim] */
    float lr, beta1, beta2, eps, weight_decay;
    int schedule;                        /* sched_kind */
    int64_t warmup_steps;
    float min_lr_ratio;
    float grad_clip;                     /* max global norm, 0 = off */
    /* [train] */
    int64_t steps;
    float epochs;                        /* > 0: train this many passes over the data instead of `steps` */
    int64_t eval_every;                  /* 0 = only before and after */
    int eval_epochs;                     /* evaluate at the end of every epoch */
    int save_epochs;                     /* export the adapter (out_dir/epoch-N) at the end of every epoch */
    char metric_for_best[RC_PATH];       /* keep the best adapter by this metric in out_dir/best ("" = off) */
    int64_t log_every;
    int threads;                         /* 0 = library default */
    char out_dir[RC_PATH];               /* where the trained adapter is written ("" = nowhere) */
    char metrics_path[RC_PATH];          /* per-step metrics as JSON lines ("" = none) */
    char plot_path[RC_PATH];             /* the loss curve (PNG) drawn from the metrics file at the end ("" = none) */
    /* [checkpoint] (lora_worker) */
    char ckpt_dir[RC_PATH];              /* "" = no checkpoints */
    int64_t ckpt_every_steps;            /* 0 = off */
    float ckpt_every_seconds;            /* 0 = off */
    int ckpt_keep;                       /* newest checkpoints kept (0 = all) */
    /* [system] (parameter server) */
    int servers;
    int staleness;
    int ssp_lookahead;                   /* SSP workers compute at w + tau * (last change per version) */
    int grad_dtype;                      /* pushes: 0 fp32, 1 bf16, 2 fp16 */
    int param_dtype;                     /* updates (values sent to workers): 0 fp32, 1 bf16, 2 fp16 */
    int nan_policy;                      /* 0 skip, 1 abort */
    int max_skipped;                     /* consecutive skipped steps that stop the run (0 = never) */
    /* bookkeeping */
    char source[RC_PATH];                /* file the config came from ("" = defaults only) */
    int init_is_eval;                    /* init_from is `lora eval --adapter`: its own config decides r, alpha, targets */
} run_config;

void rc_defaults(run_config *c);
/* Reads path on top of the current values of c. -1 with "path:line: ..." on error. */
int rc_load(run_config *c, const char *path, struct lerr *e);
/* Applies one "section.key=value" override (command-line --set). */
int rc_set(run_config *c, const char *assignment, struct lerr *e);
/* Checks cross-field constraints (r > 0, seq_len >= 2, paths set, ...). */
int rc_validate(const run_config *c, struct lerr *e);
/* Writes the effective config as INI text into buf (NUL-terminated, truncated
 * to cap). Returns the length it needed. */
int rc_to_text(const run_config *c, char *buf, int cap);
/* The first key whose value differs between two rc_to_text texts, as
 * "[section] key = 'A' here, 'B' there" into out (for the message of a rank
 * whose config differs from rank 0's). Returns 1 when they differ, 0 when
 * they are the same. */
int rc_first_difference(const char *a, const char *b, char *out, size_t cap);

#endif
