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
#include "lora.h"
#include "model.h"
#include "run_config.h"

typedef struct {
    run_config cfg;
    model model;
    lora_adapter ad;       /* the values a worker computes with */
    tok_file *train, *val; /* val may be NULL */
    data_order order;
    model_ws *acts;        /* acts_B x seq_len, made on first use */
    int acts_B;
    int32_t *tokens;
    int64_t *ids;
} train_ctx;

/* Loads the model (converted weights through al when not NULL, see
 * model_open), builds (and initializes, or loads from init_from) the
 * adapter, opens the data. Errors name the file or config key. */
int train_ctx_open(train_ctx *t, const run_config *c, const model_alloc *al, struct lerr *e);
void train_ctx_close(train_ctx *t);

/* Samples per optimizer step (batch_size * grad_accum). */
int64_t train_global_batch(const train_ctx *t);
/* Adds the gradient of the SUM of token losses over global samples
 * [g0, g0 + n) into grad (micro-batches of batch_size); returns that sum and
 * sets *n_tokens. The gradient of the mean is grad / *n_tokens. */
double train_grad(train_ctx *t, int64_t g0, int64_t n, float *grad, int64_t *n_tokens);
/* Mean loss over n_windows evenly spaced windows of f (seq_len each). */
double train_eval(train_ctx *t, const tok_file *f, int n_windows);

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
