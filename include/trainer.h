/*
 * train_: what one process needs to compute adapter gradients for a run
 * (model, adapter, data, workspace), the single-process training loop, and
 * evaluation. The parameter server's workers call train_grad on their share
 * of a step's global samples; the single-process trainer calls it on all.
 */
#ifndef TRAINER_H
#define TRAINER_H

#include <stdint.h>

#include "data.h"
#include "dataset.h"
#include "lora.h"
#include "model.h"
#include "run_config.h"

typedef struct {
    run_config cfg;
    model model;
    lora_adapter ad;       /* the values a worker computes with */
    tok_file *train, *val; /* causal LM: token files (val may be NULL) */
    ds_file *train_ds, *val_ds; /* classification: labeled datasets (val may be NULL) */
    data_order order;      /* over windows of train, or examples of train_ds */
    int T;                 /* tokens per sequence: [data] seq_len, or the datasets' (the larger) */
    model_ws *acts;        /* acts_B x T, made on first use */
    int acts_B;
    int32_t *tokens, *mask, *types, *labels; /* one micro-batch (acts_B x T) */
    int64_t *ids;
} train_ctx;

/* Loads the model (converted weights through al when not NULL, see
 * model_open), builds (and initializes, or loads from init_from) the
 * adapter, opens the data. Errors name the file or config key. */
int train_ctx_open(train_ctx *t, const run_config *c, const model_alloc *al, struct lerr *e);
void train_ctx_close(train_ctx *t);

/* Samples per optimizer step (batch_size * grad_accum). */
int64_t train_global_batch(const train_ctx *t);
/* Adds the gradient of the SUM of losses over global samples [g0, g0 + n)
 * into grad (micro-batches of batch_size); returns that sum and sets
 * *n_tokens to the number of loss targets (tokens, or sequences for sequence
 * classification). The gradient of the mean is grad / *n_tokens. */
double train_grad(train_ctx *t, int64_t g0, int64_t n, float *grad, int64_t *n_tokens);
/* Whether there is validation data. */
int train_has_val(const train_ctx *t);

/* What an evaluation measures. Causal LM: loss and perplexity; sequence
 * classification: loss, accuracy, macro-F1; token classification: loss,
 * entity precision/recall/F1 (seqeval's convention) and token accuracy. */
typedef struct {
    double loss, perplexity, accuracy, macro_f1, precision, recall, f1, token_accuracy;
    int64_t n_targets;
} train_metrics;
/* Evaluation by counts, so that workers can each take a share of the
 * validation items and the sums give the whole: items are windows (LM) or
 * examples, in order. counts has train_counts_size() doubles: the loss sum,
 * the number of targets, then the confusion matrix (SEQ_CLS) or the NER
 * counts (TOKEN_CLS). Integer counts stay exact in a double up to 2^53. */
int64_t train_val_items(const train_ctx *t);
int train_counts_size(const train_ctx *t);
void train_eval_counts(train_ctx *t, int64_t lo, int64_t hi, double *counts);
void train_metrics_from_counts(const train_ctx *t, const double *counts, train_metrics *m);
/* Evaluates the validation data (as train_eval) and its metrics. */
void train_eval_metrics(train_ctx *t, train_metrics *m);
/* "val loss 0.4312 | accuracy 0.8761 | macro-F1 0.8744" for the model's task. */
void train_metrics_line(const train_ctx *t, const train_metrics *m, char *buf, size_t cap);
/* The same as JSON members ("\"val_loss\": 0.4312, \"accuracy\": ..."). */
void train_metrics_json(const train_ctx *t, const train_metrics *m, char *buf, size_t cap);
/* The value of metric `name` (loss, perplexity, accuracy, macro_f1, precision, recall, f1,
 * token_accuracy) and whether greater is better; -1 for a name this task has not. */
int train_metric_value(const train_ctx *t, const train_metrics *m, const char *name, double *v, int *greater_better);
/* Samples (windows or examples) per epoch. */
int64_t train_samples_per_epoch(const train_ctx *t);
/* The epoch that optimizer step `step` (0-based) completes, or 0 when it completes none. */
int64_t train_epoch_ending(const train_ctx *t, int64_t step);
/* The validation loss: the mean over [data] val_windows evenly spaced windows
 * of the token file (causal LM), or over every target of the validation
 * dataset (sum of losses / number of targets, not a mean of batch means). */
double train_eval(train_ctx *t);
/* What the validation figure is, for messages: "40 windows of 256 tokens from F" or "872 examples of F". */
void train_val_desc(const train_ctx *t, char *buf, size_t cap);
/* The training data's size for checkpoints: tokens of the token file, or examples. */
int64_t train_data_size(const train_ctx *t);

/* Writes what was trained to dir: the adapter in peft's format, or under full
 * fine-tuning the whole model in HF's format. */
int train_save(train_ctx *t, const char *dir, struct lerr *e);

/* Test hook: LORA_TEST_NAN=0:K in the environment makes step K's gradient
 * non-finite in the single-process trainer (rank 0 of one), as the same
 * variable does for a worker rank of lora_worker; -1 when unset. */
int64_t train_test_hook_nan(void);

/* The single-process trainer (`lora train`) and evaluator (`lora eval`). */
int trainer_main(int argc, char **argv, int eval_only);
/* Parses --config FILE and --set k=v into c (after rc_defaults). Other
 * arguments are left for the caller: *argi points at the first unparsed. */
int trainer_parse_args(run_config *c, int argc, char **argv, const char **extra_key, const char **extra_val,
                       struct lerr *e);

#endif
