/*
 * AdamW, learning-rate schedules and gradient clipping, as torch.optim.AdamW,
 * transformers' get_*_schedule_with_warmup and torch.nn.utils.clip_grad_norm_
 * compute them. Everything runs on a range of the flat buffers (params, grads,
 * m, v share one layout), so a server shard steps just its key range.
 */
#ifndef OPTIM_H
#define OPTIM_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    float beta1, beta2, eps, weight_decay;
} adamw_hparams;

/* One AdamW step on n values at 1-based step t with learning rate lr, as
 * torch's single-tensor path: p *= 1 - lr*wd; m = lerp(m, g, 1-beta1);
 * v = beta2*v + (1-beta2)*g*g; p -= (lr / (1-beta1^t)) * m / (sqrt(v)/sqrt(1-beta2^t) + eps).
 * The bias corrections are computed in double, as Python does. */
void adamw_step(float *p, float *m, float *v, const float *g, size_t n, int64_t t, float lr, const adamw_hparams *h);
/* The same with the learning rate as a double (what lr_at64 returns), for bit
 * parity with torch when a schedule scales lr. adamw_step(lr) is
 * adamw_step64 with the double that lr was typed as (the shortest decimal that
 * reads back as lr: 5e-3f -> 0.005); the hyperparameters in h are read the
 * same way, so beta2 = 0.999f means the Python double 0.999. */
void adamw_step64(float *p, float *m, float *v, const float *g, size_t n, int64_t t, double lr,
                  const adamw_hparams *h);

typedef enum { SCHED_CONSTANT = 0, SCHED_COSINE, SCHED_LINEAR } sched_kind;

typedef struct {
    sched_kind kind;
    float lr;            /* peak learning rate */
    int64_t warmup;      /* linear warmup steps (0: none) */
    int64_t total;       /* total optimizer steps (for decay) */
    float min_lr_ratio;  /* decay floor as a fraction of lr (0: decay to 0) */
} lr_schedule;

/* Learning rate of 0-based optimizer step `step`, as transformers' LambdaLR
 * schedules give it: warmup lr*step/warmup for step < warmup (so step 0 of a
 * warmup has lr 0, as in HF), then constant, cosine or linear decay over
 * [warmup, total) down to lr*min_lr_ratio. */
float lr_at(const lr_schedule *s, int64_t step);
/* The same in double (Python's arithmetic: base_lr * lambda(step)), to pass to adamw_step64.
 * Past total the rate stays at its floor (transformers' cosine would climb again). */
double lr_at64(const lr_schedule *s, int64_t step);

/* Sum of squares of g[0..n) accumulated in double in index order (deterministic). */
double grad_sq_sum(const float *g, size_t n);

/* torch's clip factor: min(1, max_norm / (total_norm + 1e-6)); 1 when max_norm <= 0. */
float clip_coef(double total_norm, float max_norm);

/* g[i] *= c */
void grad_scale(float *g, size_t n, float c);

/* ---- the step policy: ONE decision for the single-process trainer and the
 * server shards (BSP and SSP), so that a skipped step leaves them equal. */
typedef struct {
    adamw_hparams hp;
    lr_schedule sched;
    float grad_clip;   /* max global norm (0: off) */
    int nan_abort;     /* a non-finite gradient aborts instead of skipping */
} optim_policy;

typedef enum { OPT_APPLIED = 0, OPT_SKIPPED, OPT_ABORT, OPT_DIVERGED } optim_outcome;

/* One optimizer update of the slice p/m/v/g (n values) at schedule position
 * `pos` (the step index, counting skipped steps, as HF's scheduler does),
 * given whether the loss and gradient are finite and the gradient's global
 * norm (over every shard). Non-finite: nothing changes, OPT_SKIPPED (or
 * OPT_ABORT under nan_abort). Otherwise g is clipped to grad_clip and AdamW
 * runs with step t = *applied + 1 (updates applied so far: a skipped step is
 * one the optimizer never saw, as with torch's GradScaler), *applied is
 * incremented, OPT_APPLIED; OPT_DIVERGED instead when the updated values
 * hold a NaN or infinity (a learning rate far too large): the run must stop
 * without saving them. *lr_out (may be NULL) receives the step's lr. */
optim_outcome optim_update(const optim_policy *pol, float *p, float *m, float *v, float *g, size_t n, int finite,
                           double norm, int64_t pos, int64_t *applied, float *lr_out);

/* Consecutive skips: *run counts the skipped steps since the last applied one
 * (an applied step resets it). A skip that makes it reach max (> 0) turns the
 * outcome into OPT_DIVERGED: values that overflow the forward (finite but
 * huge, after a learning rate far too large) skip every later step, and a
 * run must not go on "training" that way. Other outcomes pass through. */
optim_outcome optim_skip_limit(optim_outcome oc, int max, int64_t *run);

#endif
