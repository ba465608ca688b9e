/*
 * The training context, the single-process trainer and evaluation
 * (see include/trainer.h).
 */
#include "trainer.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim.h"

static void rc_to_spec(lora_spec *s, const run_config *c) {
    memset(s, 0, sizeof *s);
    s->r = c->r;
    s->alpha = c->alpha;
    s->rslora = c->rslora;
    s->dropout = c->dropout;
    s->n_targets = c->n_targets;
    for (int i = 0; i < c->n_targets && i < LORA_MAX_TARGETS; i++)
        snprintf(s->targets[i], LORA_NAME, "%s", c->targets[i]);
}

static int check_vocab(const tok_file *f, int vocab, struct lerr *e) {
    if ((int64_t)tok_max_id(f) >= vocab)
        return lerr_set(e, "%s: token id %u is outside the model's vocabulary (vocab_size %d)", tok_path(f),
                        tok_max_id(f), vocab);
    return 0;
}

int train_ctx_open(train_ctx *t, const run_config *c, const model_alloc *al, struct lerr *e) {
    memset(t, 0, sizeof *t);
    t->cfg = *c;
    if (c->threads > 0) omp_set_num_threads(c->threads);
    if (model_open(&t->model, c->model_path, al, e)) return -1;
    if (t->model.task != TASK_CAUSAL_LM) {
        lerr_set(e, "%s: a %s model (task %s): training it from token files is not supported yet", c->model_path,
                 t->model.fam->model_type, model_task_name(t->model.task));
        goto fail;
    }
    if (c->seq_len > t->model.max_positions) {
        lerr_set(e, "[data] seq_len %d exceeds the model's n_positions (maximum positions) %d", c->seq_len,
                 t->model.max_positions);
        goto fail;
    }
    if (model_check_seq_len(&t->model, c->seq_len, e)) {
        lerr_prefix(e, "[data] seq_len");
        goto fail;
    }
    if (c->full_finetune) {
        if (c->init_from[0] || c->ckpt_dir[0]) {
            lerr_set(e, "[lora] full_finetune = true cannot be combined with %s (full fine-tuning is for comparisons)",
                     c->init_from[0] ? "[lora] init_from" : "[checkpoint] dir");
            goto fail;
        }
        if (model_full_adapter(&t->ad, &t->model, e)) goto fail;
    } else if (c->init_from[0]) {
        if (model_load_peft(&t->ad, &t->model, c->init_from, e)) goto fail;
        if (t->ad.spec.r != c->r) {
            lerr_set(e, "[lora] init_from %s has r=%d but the config says r=%d", c->init_from, t->ad.spec.r, c->r);
            goto fail;
        }
    } else {
        lora_spec spec;
        rc_to_spec(&spec, c);
        if (model_adapter_create(&t->ad, &spec, &t->model, 1, e)) {
            lerr_prefix(e, "[lora] targets");
            goto fail;
        }
        model_adapter_init(&t->ad, &t->model, c->init_seed);
    }
    if (c->train_path[0]) {
        if (!(t->train = tok_open(c->train_path, e)) || check_vocab(t->train, t->model.vocab, e)) goto fail;
        if (data_order_init(&t->order, tok_count(t->train), c->seq_len, c->data_seed, (data_mode)c->sampling, e))
            goto fail;
    }
    if (c->val_path[0]) {
        if (!(t->val = tok_open(c->val_path, e)) || check_vocab(t->val, t->model.vocab, e)) goto fail;
        if (tok_count(t->val) < c->seq_len) {
            lerr_set(e, "%s: %lld tokens, fewer than one window of seq_len %d", c->val_path,
                     (long long)tok_count(t->val), c->seq_len);
            goto fail;
        }
    }
    return 0;
fail:
    train_ctx_close(t);
    return -1;
}

void train_ctx_close(train_ctx *t) {
    if (t->acts) model_ws_free(&t->model, t->acts);
    free(t->tokens);
    free(t->ids);
    data_order_free(&t->order);
    tok_close(t->train);
    tok_close(t->val);
    lora_free(&t->ad);
    model_free(&t->model);
    memset(t, 0, sizeof *t);
}

/* The workspace is made on first use and only as large as the biggest
 * micro-batch asked for: a pure server never needs one, and a worker whose
 * share of a step is smaller than batch_size needs less. */
static void ensure_acts(train_ctx *t, int B) {
    if (t->acts && t->acts_B >= B) return;
    int T = t->cfg.seq_len;
    if (t->acts) model_ws_free(&t->model, t->acts);
    free(t->tokens);
    free(t->ids);
    t->acts = model_ws_create(&t->model, &t->ad, B, T);
    t->tokens = xmalloc(sizeof(int32_t) * (size_t)B * T);
    t->ids = xmalloc(sizeof(int64_t) * (size_t)B);
    t->acts_B = B;
}

int64_t train_global_batch(const train_ctx *t) { return (int64_t)t->cfg.batch_size * t->cfg.grad_accum; }

double train_grad(train_ctx *t, int64_t g0, int64_t n, float *grad, int64_t *n_tokens) {
    int T = t->cfg.seq_len;
    double sum = 0;
    int64_t ntok = 0;
    ensure_acts(t, (int)(n < t->cfg.batch_size ? n : t->cfg.batch_size));
    for (int64_t done = 0; done < n;) {
        int b = (int)(n - done < t->cfg.batch_size ? n - done : t->cfg.batch_size);
        data_fill(t->train, &t->order, g0 + done, b, t->tokens);
        for (int i = 0; i < b; i++) t->ids[i] = g0 + done + i;
        model_batch mb = {.tokens = t->tokens, .labels = t->tokens, .sample_ids = t->ids, .B = b, .T = T};
        int64_t k = 0;
        sum += model_forward(&t->model, &t->ad, t->acts, &mb, 1, t->cfg.init_seed ^ 0x5eedull, &k);
        model_backward(&t->model, &t->ad, t->acts, grad, 1.0f);
        ntok += k;
        done += b;
    }
    *n_tokens = ntok;
    return sum;
}

double train_eval(train_ctx *t, const tok_file *f, int n_windows) {
    int T = t->cfg.seq_len, B = t->cfg.batch_size;
    if (t->acts) B = t->acts_B; /* evaluate in the workspace training made */
    ensure_acts(t, n_windows < B ? n_windows : B);
    B = t->acts_B;
    double total = 0;
    for (int w = 0; w < n_windows; w += B) {
        int b = n_windows - w < B ? n_windows - w : B;
        for (int i = 0; i < b; i++)
            tok_read(f, data_val_offset(tok_count(f), T, n_windows, w + i), T, t->tokens + (size_t)i * T);
        model_batch mb = {.tokens = t->tokens, .labels = t->tokens, .B = b, .T = T};
        int64_t k = 0;
        total += model_forward(&t->model, &t->ad, t->acts, &mb, 0, 0, &k);
    }
    return total / ((double)n_windows * (T - 1));
}

int train_save(train_ctx *t, const char *dir, struct lerr *e) {
    if (t->ad.full) return model_save_merged(&t->model, &t->ad, dir, e);
    return model_save_peft(&t->ad, &t->model, dir, e);
}

int64_t train_test_hook_nan(void) {
    const char *v = getenv("LORA_TEST_NAN");
    long r;
    long long x;
    if (!v || sscanf(v, "%ld:%lld", &r, &x) != 2 || r != 0) return -1;
    return (int64_t)x;
}

int trainer_parse_args(run_config *c, int argc, char **argv, const char **extra_key, const char **extra_val,
                       struct lerr *e) {
    rc_defaults(c);
    int have_config = 0;
    /* --config first, so --set overrides apply on top whatever the order */
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--config")) {
            if (i + 1 >= argc) return lerr_set(e, "--config needs a file");
            if (rc_load(c, argv[i + 1], e)) return -1;
            have_config = 1;
        }
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--config")) {
            i++;
        } else if (!strcmp(argv[i], "--set")) {
            if (i + 1 >= argc) return lerr_set(e, "--set needs section.key=value");
            if (rc_set(c, argv[++i], e)) return -1;
        } else if (extra_key && !strcmp(argv[i], *extra_key) && i + 1 < argc) {
            *extra_val = argv[++i];
        } else {
            return lerr_set(e, "unknown argument '%s'", argv[i]);
        }
    }
    if (!have_config) return lerr_set(e, "--config FILE is required (see configs/)");
    return 0;
}

int trainer_main(int argc, char **argv, int eval_only) {
    run_config c;
    struct lerr e = {{0}};
    const char *adapter_key = "--adapter", *adapter_dir = NULL;
    if (trainer_parse_args(&c, argc, argv, eval_only ? &adapter_key : NULL, &adapter_dir, &e) ||
        rc_validate(&c, &e)) {
        fprintf(stderr, "lora %s: %s\n", eval_only ? "eval" : "train", e.msg);
        return 1;
    }
    if (adapter_dir) snprintf(c.init_from, sizeof c.init_from, "%s", adapter_dir);
    train_ctx t;
    if (train_ctx_open(&t, &c, NULL, &e)) {
        fprintf(stderr, "lora %s: %s\n", eval_only ? "eval" : "train", e.msg);
        return 1;
    }
    char line[256];
    lora_params_line(line, sizeof line, (int64_t)t.ad.n_params, t.ad.full ? 0 : t.model.n_params);
    printf("%s\n", line);
    int rc = 0;
    if (eval_only) {
        if (!t.val) {
            fprintf(stderr, "lora eval: [data] val is not set\n");
            rc = 1;
        } else {
            double l = train_eval(&t, t.val, c.val_windows);
            printf("val loss %.4f (%d windows of %d tokens from %s)\n", l, c.val_windows, c.seq_len, c.val_path);
        }
        train_ctx_close(&t);
        return rc;
    }
    size_t n = t.ad.n_params;
    float *grad = xalloc_aligned(n * sizeof(float)), *m = xalloc_aligned(n * sizeof(float)),
          *v = xalloc_aligned(n * sizeof(float));
    optim_policy pol = {{c.beta1, c.beta2, c.eps, c.weight_decay},
                        {(sched_kind)c.schedule, c.lr, c.warmup_steps, c.steps, c.min_lr_ratio},
                        c.grad_clip,
                        c.nan_policy};
    int64_t applied = 0, skipped = 0;
    int64_t hook_nan = train_test_hook_nan();
    double val0 = NAN, val1 = NAN;
    if (t.val) {
        val0 = train_eval(&t, t.val, c.val_windows);
        printf("val loss before: %.4f\n", val0);
    }
    int64_t G = train_global_batch(&t);
    double t0 = now_s();
    int64_t tokens_done = 0;
    for (int64_t step = 0; step < c.steps; step++) {
        double ts = now_s();
        memset(grad, 0, n * sizeof(float));
        int64_t ntok = 0;
        double loss_sum = train_grad(&t, step * G, G, grad, &ntok);
        double loss = ntok ? loss_sum / (double)ntok : 0;
        grad_scale(grad, n, ntok ? 1.0f / (float)ntok : 0.0f);
        if (hook_nan == step) grad[n / 2] = NAN; /* test hook: a step the policy must skip */
        double norm = sqrt(grad_sq_sum(grad, n));
        float lr;
        optim_outcome oc = optim_update(&pol, t.ad.w, m, v, grad, n, isfinite(loss), norm, step, &applied, &lr);
        if (oc != OPT_APPLIED) {
            fprintf(stderr, "step %lld: non-finite loss or gradient (loss %g, grad norm %g)%s\n", (long long)step + 1,
                    loss, norm, oc == OPT_ABORT ? "; aborting ([system] nan_policy = abort)" : "; step skipped");
            if (oc == OPT_ABORT) {
                rc = 1;
                break;
            }
            skipped++;
            continue;
        }
        tokens_done += ntok;
        double dt = now_s() - ts;
        if (c.log_every > 0 && ((step + 1) % c.log_every == 0 || step + 1 == c.steps))
            printf("step %5lld/%lld | loss %.4f | lr %.3e | grad norm %.4f | %.0f tok/s | %.0f ms\n",
                   (long long)step + 1, (long long)c.steps, loss, lr, norm, (double)ntok / dt, dt * 1e3);
        if (t.val && c.eval_every > 0 && (step + 1) % c.eval_every == 0 && step + 1 < c.steps)
            printf("step %5lld val loss %.4f\n", (long long)step + 1, train_eval(&t, t.val, c.val_windows));
        fflush(stdout);
    }
    double wall = now_s() - t0;
    if (t.val) {
        val1 = train_eval(&t, t.val, c.val_windows);
        printf("val loss after: %.4f (before %.4f)\n", val1, val0);
    }
    printf("trained %lld steps in %.1f s (%.0f tok/s)\n", (long long)c.steps, wall, (double)tokens_done / wall);
    if (!rc && c.out_dir[0]) {
        if (train_save(&t, c.out_dir, &e)) {
            fprintf(stderr, "lora train: %s\n", e.msg);
            rc = 1;
        } else
            printf("%s written to %s\n", t.ad.full ? "model (full fine-tuning, HF format)" : "adapter (peft format)",
                   c.out_dir);
    }
    free(grad);
    free(m);
    free(v);
    train_ctx_close(&t);
    return rc;
}
