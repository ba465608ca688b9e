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

#include "metrics.h"
#include "plot.h"
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

/* spec->save from a comma-separated list ("none": nothing; NULL or "": nothing). */
static int save_modules(lora_spec *spec, const char *list, struct lerr *e) {
    spec->n_save = 0;
    if (!list || !list[0] || !strcmp(list, "none")) return 0;
    char buf[RC_PATH];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *p = buf, *tok; (tok = strsep(&p, ","));) {
        while (*tok == ' ') tok++;
        size_t n = strlen(tok);
        while (n && tok[n - 1] == ' ') tok[--n] = 0;
        if (!n) continue;
        if (spec->n_save >= LORA_MAX_SAVE || n >= LORA_NAME)
            return lerr_set(e, "[lora] modules_to_save: at most %d names shorter than %d characters", LORA_MAX_SAVE,
                            LORA_NAME);
        snprintf(spec->save[spec->n_save++], LORA_NAME, "%s", tok);
    }
    return 0;
}

static int check_vocab(const tok_file *f, int vocab, struct lerr *e) {
    if ((int64_t)tok_max_id(f) >= vocab)
        return lerr_set(e, "%s: token id %u is outside the model's vocabulary (vocab_size %d)", tok_path(f),
                        tok_max_id(f), vocab);
    return 0;
}

/* [train] epochs into steps, and the metric for the best adapter checked against the task. */
static int finish_open(train_ctx *t, struct lerr *e) {
    run_config *c = &t->cfg;
    if (c->epochs > 0) {
        if (!t->train && !t->train_ds) return lerr_set(e, "[train] epochs needs [data] train");
        double steps = ceil((double)c->epochs * (double)train_samples_per_epoch(t) / (double)train_global_batch(t));
        if (steps < 1 || steps > 1e12) return lerr_set(e, "[train] epochs = %g gives %g steps", c->epochs, steps);
        c->steps = (int64_t)steps;
    }
    if (c->metric_for_best[0]) {
        train_metrics m = {0};
        double v;
        int gb;
        if (train_metric_value(t, &m, c->metric_for_best, &v, &gb))
            return lerr_set(e, "[train] metric_for_best = '%s' is not a metric of a %s model (%s)", c->metric_for_best,
                            model_task_name(t->model.task),
                            t->model.task == TASK_CAUSAL_LM   ? "loss, perplexity"
                            : t->model.task == TASK_SEQ_CLS ? "loss, accuracy, macro_f1"
                                                            : "loss, precision, recall, f1, token_accuracy");
        if (!train_has_val(t)) return lerr_set(e, "[train] metric_for_best needs [data] val");
    }
    return 0;
}

/* [lora] init_from must be the adapter the config describes (r, alpha,
 * rsLoRA, the modules its targets adapt; the whole tensors when the config
 * names modules_to_save, else the adapter's own modules_to_save decide), or
 * the run would train something other than what its config says. */
static int init_from_check(train_ctx *t, const run_config *c, struct lerr *e) {
    const lora_spec *s = &t->ad.spec;
    if (s->r != c->r)
        return lerr_set(e, "[lora] init_from %s has r=%d but the config says r=%d", c->init_from, s->r, c->r);
    if (s->alpha != c->alpha || s->rslora != c->rslora)
        return lerr_set(e, "[lora] init_from %s has alpha=%g%s but the config says alpha=%g%s", c->init_from,
                        s->alpha, s->rslora ? " (rsLoRA)" : "", c->alpha, c->rslora ? " (rsLoRA)" : "");
    lora_spec want;
    rc_to_spec(&want, c);
    int saves = c->modules_to_save[0] != 0;
    if (save_modules(&want, saves ? c->modules_to_save : NULL, e)) return -1;
    lora_adapter other;
    struct lerr e2;
    if (model_adapter_create(&other, &want, &t->model, 0, &e2)) return lerr_set(e, "[lora] targets: %s", e2.msg);
    int same = other.n_mod == t->ad.n_mod;
    for (int i = 0; same && i < other.n_mod; i++) same = other.mod[i].site == t->ad.mod[i].site;
    int n_mod = other.n_mod, n_whole = other.n_whole, same_whole = !saves || other.n_whole == t->ad.n_whole;
    for (int i = 0, j = 0; saves && same_whole && i < other.n_tensor; i++) {
        if (other.tensor[i].kind != LORA_KIND_WHOLE) continue;
        while (j < t->ad.n_tensor && t->ad.tensor[j].kind != LORA_KIND_WHOLE) j++;
        same_whole = j < t->ad.n_tensor && !strcmp(other.tensor[i].key, t->ad.tensor[j++].key);
    }
    lora_free(&other);
    if (!same)
        return lerr_set(e, "[lora] init_from %s adapts %d modules, but the config's targets select %d modules%s",
                        c->init_from, t->ad.n_mod, n_mod, n_mod == t->ad.n_mod ? " (other ones)" : "");
    if (!same_whole)
        return lerr_set(e, "[lora] init_from %s trains %d whole tensors, but the config's modules_to_save = %s "
                        "selects %d%s", c->init_from, t->ad.n_whole, c->modules_to_save, n_whole,
                        n_whole == t->ad.n_whole ? " (other ones)" : "");
    return 0;
}

int train_ctx_open(train_ctx *t, const run_config *c, const model_alloc *al, struct lerr *e) {
    memset(t, 0, sizeof *t);
    t->cfg = *c;
    if (c->threads > 0) omp_set_num_threads(c->threads);
    if (model_open(&t->model, c->model_path, al, e)) return -1;
    int lm = t->model.task == TASK_CAUSAL_LM;
    t->T = c->seq_len;
    if (lm && c->seq_len > t->model.max_positions) {
        lerr_set(e, "[data] seq_len %d exceeds the model's n_positions (maximum positions) %d", c->seq_len,
                 t->model.max_positions);
        goto fail;
    }
    if (lm && model_check_seq_len(&t->model, c->seq_len, e)) { /* datasets: checked against positions at open */
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
        if (!c->init_is_eval && init_from_check(t, c, e)) goto fail;
    } else {
        lora_spec spec;
        rc_to_spec(&spec, c);
        if (save_modules(&spec, c->modules_to_save[0] ? c->modules_to_save : t->model.save_modules, e)) goto fail;
        if (model_adapter_create(&t->ad, &spec, &t->model, 1, e)) {
            lerr_prefix(e, "[lora] targets");
            goto fail;
        }
        model_adapter_init(&t->ad, &t->model, c->init_seed);
    }
    if (!lm) {
        /* classification: labeled datasets; T is theirs */
        const model *m = &t->model;
        if (c->train_path[0]) {
            if (!(t->train_ds = ds_open(c->train_path, m->task, m->n_labels, m->vocab, m->max_positions, e)))
                goto fail;
            if (data_order_init_examples(&t->order, ds_count(t->train_ds), c->data_seed, (data_mode)c->sampling, e))
                goto fail;
            t->T = ds_seq_len(t->train_ds);
        }
        if (c->val_path[0]) {
            if (!(t->val_ds = ds_open(c->val_path, m->task, m->n_labels, m->vocab, m->max_positions, e))) goto fail;
            if (!c->train_path[0] || ds_seq_len(t->val_ds) > t->T) t->T = ds_seq_len(t->val_ds);
        }
        if (finish_open(t, e)) goto fail;
        return 0;
    }
    if (c->train_path[0]) {
        if (!(t->train = tok_open(c->train_path, e)) || check_vocab(t->train, t->model.vocab, e)) goto fail;
        if (data_order_init(&t->order, tok_count(t->train), c->seq_len, c->data_seed, (data_mode)c->sampling, e)) {
            lerr_prefix(e, "%s", c->train_path);
            goto fail;
        }
    }
    if (c->val_path[0]) {
        if (!(t->val = tok_open(c->val_path, e)) || check_vocab(t->val, t->model.vocab, e)) goto fail;
        if (tok_count(t->val) < c->seq_len) {
            lerr_set(e, "%s: %lld tokens, fewer than one window of seq_len %d", c->val_path,
                     (long long)tok_count(t->val), c->seq_len);
            goto fail;
        }
    }
    if (finish_open(t, e)) goto fail;
    return 0;
fail:
    train_ctx_close(t);
    return -1;
}

void train_ctx_close(train_ctx *t) {
    if (t->acts) model_ws_free(&t->model, t->acts);
    free(t->tokens);
    free(t->mask);
    free(t->types);
    free(t->labels);
    free(t->ids);
    data_order_free(&t->order);
    tok_close(t->train);
    tok_close(t->val);
    ds_close(t->train_ds);
    ds_close(t->val_ds);
    lora_free(&t->ad);
    model_free(&t->model);
    memset(t, 0, sizeof *t);
}

/* The workspace is made on first use and only as large as the biggest
 * micro-batch asked for: a pure server never needs one, and a worker whose
 * share of a step is smaller than batch_size needs less. */
static void ensure_acts(train_ctx *t, int B) {
    if (t->acts && t->acts_B >= B) return;
    int T = t->T;
    if (t->acts) model_ws_free(&t->model, t->acts);
    free(t->tokens);
    free(t->mask);
    free(t->types);
    free(t->labels);
    free(t->ids);
    t->acts = model_ws_create(&t->model, &t->ad, B, T);
    t->tokens = xcalloc((size_t)B * T, sizeof(int32_t));
    t->mask = xcalloc((size_t)B * T, sizeof(int32_t));
    t->types = xcalloc((size_t)B * T, sizeof(int32_t));
    t->labels = xcalloc((size_t)B * T, sizeof(int32_t));
    t->ids = xmalloc(sizeof(int64_t) * (size_t)B);
    t->acts_B = B;
}

int64_t train_global_batch(const train_ctx *t) { return (int64_t)t->cfg.batch_size * t->cfg.grad_accum; }

/* Rows [0, b) of the micro-batch from global samples g0 .. g0+b-1 (training
 * order), or from validation items v0 .. v0+b-1 (val: evenly spaced windows
 * of the token file, or the dataset's examples in order). */
static model_batch fill_batch(train_ctx *t, int64_t g0, int b, int val) {
    int T = t->T;
    model_batch mb = {.tokens = t->tokens, .B = b, .T = T};
    const ds_file *ds = val ? t->val_ds : t->train_ds;
    if (!ds) { /* causal LM windows: the labels are the tokens */
        if (val) {
            int nw = t->cfg.val_windows;
            for (int i = 0; i < b; i++)
                tok_read(t->val, data_val_offset(tok_count(t->val), T, nw, (int)g0 + i), T, t->tokens + (size_t)i * T);
        } else {
            data_fill(t->train, &t->order, g0, b, t->tokens);
        }
        mb.labels = t->tokens;
    } else {
        int Td = ds_seq_len(ds);
        mb.T = Td;
        for (int i = 0; i < b; i++)
            ds_get(ds, val ? g0 + i : data_sample_offset(&t->order, g0 + i, NULL), i, t->tokens, t->mask, t->types,
                   t->labels);
        mb.mask = ds_has_mask(ds) ? t->mask : NULL;
        mb.type_ids = ds_has_types(ds) ? t->types : NULL;
        mb.labels = t->labels;
    }
    for (int i = 0; i < b; i++) t->ids[i] = g0 + i;
    mb.sample_ids = t->ids;
    return mb;
}

double train_grad(train_ctx *t, int64_t g0, int64_t n, float *grad, int64_t *n_tokens) {
    double sum = 0;
    int64_t ntok = 0;
    ensure_acts(t, (int)(n < t->cfg.batch_size ? n : t->cfg.batch_size));
    for (int64_t done = 0; done < n;) {
        int b = (int)(n - done < t->cfg.batch_size ? n - done : t->cfg.batch_size);
        model_batch mb = fill_batch(t, g0 + done, b, 0);
        int64_t k = 0;
        sum += model_forward(&t->model, &t->ad, t->acts, &mb, 1, t->cfg.init_seed ^ 0x5eedull, &k);
        model_backward(&t->model, &t->ad, t->acts, grad, 1.0f);
        ntok += k;
        done += b;
    }
    *n_tokens = ntok;
    return sum;
}

int train_has_val(const train_ctx *t) { return t->val || t->val_ds; }

int64_t train_data_size(const train_ctx *t) {
    return t->train ? tok_count(t->train) : t->train_ds ? ds_count(t->train_ds) : 0;
}

void train_val_desc(const train_ctx *t, char *buf, size_t cap) {
    if (t->val_ds)
        snprintf(buf, cap, "%lld examples of %s", (long long)ds_count(t->val_ds), ds_path(t->val_ds));
    else
        snprintf(buf, cap, "%d windows of %d tokens from %s", t->cfg.val_windows, t->T, t->cfg.val_path);
}

int64_t train_samples_per_epoch(const train_ctx *t) { return t->order.n_win; }

int64_t train_epoch_ending(const train_ctx *t, int64_t step) {
    int64_t spe = train_samples_per_epoch(t), G = train_global_batch(t);
    if (spe <= 0) return 0;
    int64_t before = step * G / spe, after = (step + 1) * G / spe;
    return after > before ? after : 0;
}

/* argmax over the last dimension of rows of width L */
static int32_t argmax_row(const float *x, int L) {
    int32_t k = 0;
    for (int j = 1; j < L; j++)
        if (x[j] > x[k]) k = j;
    return k;
}

int64_t train_val_items(const train_ctx *t) { return t->val_ds ? ds_count(t->val_ds) : t->cfg.val_windows; }

int train_counts_size(const train_ctx *t) {
    int L = t->model.n_labels > 0 ? t->model.n_labels : 1;
    return 2 + (t->model.task == TASK_SEQ_CLS ? L * L : t->model.task == TASK_TOKEN_CLS ? 5 : 0);
}

void train_eval_counts(train_ctx *t, int64_t lo, int64_t hi, double *counts) {
    const model *md = &t->model;
    memset(counts, 0, sizeof(double) * (size_t)train_counts_size(t));
    int64_t n = hi - lo;
    if (n <= 0) return;
    int B = t->cfg.batch_size;
    if (t->acts) B = t->acts_B; /* evaluate in the workspace training made */
    ensure_acts(t, (int)(n < B ? n : B));
    B = t->acts_B;
    int L = md->n_labels > 0 ? md->n_labels : 1;
    int64_t *conf = md->task == TASK_SEQ_CLS ? xcalloc((size_t)L * L, sizeof(int64_t)) : NULL;
    ner_counts nc = {0};
    const char **names = NULL;
    if (md->task == TASK_TOKEN_CLS) {
        names = xmalloc(sizeof(char *) * (size_t)L);
        for (int k = 0; k < L; k++) names[k] = md->label_names ? md->label_names[k] : "O";
    }
    int32_t *pred = md->task != TASK_CAUSAL_LM ? xmalloc(sizeof(int32_t) * (size_t)B * t->T) : NULL;
    double total = 0;
    int64_t count = 0;
    for (int64_t w = lo; w < hi; w += B) {
        int b = (int)(hi - w < B ? hi - w : B);
        model_batch mb = fill_batch(t, w, b, 1);
        int64_t k = 0;
        total += model_forward(md, &t->ad, t->acts, &mb, 0, 0, &k);
        count += k;
        if (md->task == TASK_CAUSAL_LM) continue;
        int nd;
        int64_t sh[3];
        const float *o = model_output(md, t->acts, &nd, sh);
        if (md->task == TASK_SEQ_CLS) {
            for (int i = 0; i < b; i++) pred[i] = argmax_row(o + (size_t)i * L, L);
            metrics_cls_add(conf, L, pred, mb.labels, b);
        } else {
            for (int i = 0; i < b * mb.T; i++) pred[i] = argmax_row(o + (size_t)i * L, L);
            for (int i = 0; i < b; i++)
                metrics_ner_add(&nc, pred + (size_t)i * mb.T, mb.labels + (size_t)i * mb.T, mb.T, names, L);
        }
    }
    counts[0] = total;
    counts[1] = (double)count;
    for (int k = 0; conf && k < L * L; k++) counts[2 + k] = (double)conf[k];
    if (names) {
        counts[2] = (double)nc.tok_correct, counts[3] = (double)nc.tok_total, counts[4] = (double)nc.ent_correct;
        counts[5] = (double)nc.ent_pred, counts[6] = (double)nc.ent_true;
    }
    free(conf);
    free(names);
    free(pred);
}

void train_metrics_from_counts(const train_ctx *t, const double *counts, train_metrics *out) {
    memset(out, 0, sizeof *out);
    int L = t->model.n_labels > 0 ? t->model.n_labels : 1;
    out->n_targets = (int64_t)counts[1];
    out->loss = counts[1] > 0 ? counts[0] / counts[1] : 0.0;
    out->perplexity = exp(out->loss);
    if (t->model.task == TASK_SEQ_CLS) {
        int64_t *conf = xmalloc(sizeof(int64_t) * (size_t)L * L);
        for (int k = 0; k < L * L; k++) conf[k] = (int64_t)counts[2 + k];
        metrics_cls(conf, L, &out->accuracy, &out->macro_f1);
        free(conf);
    } else if (t->model.task == TASK_TOKEN_CLS) {
        ner_counts nc = {(int64_t)counts[2], (int64_t)counts[3], (int64_t)counts[4], (int64_t)counts[5],
                         (int64_t)counts[6]};
        metrics_ner(&nc, &out->precision, &out->recall, &out->f1, &out->token_accuracy);
    }
}

void train_eval_metrics(train_ctx *t, train_metrics *out) {
    int nc = train_counts_size(t);
    double *counts = xmalloc(sizeof(double) * (size_t)nc);
    train_eval_counts(t, 0, train_val_items(t), counts);
    train_metrics_from_counts(t, counts, out);
    free(counts);
}

double train_eval(train_ctx *t) {
    train_metrics m;
    train_eval_metrics(t, &m);
    return m.loss;
}

void train_metrics_line(const train_ctx *t, const train_metrics *m, char *buf, size_t cap) {
    switch (t->model.task) {
    case TASK_CAUSAL_LM: snprintf(buf, cap, "val loss %.4f | perplexity %.2f", m->loss, m->perplexity); break;
    case TASK_SEQ_CLS:
        snprintf(buf, cap, "val loss %.4f | accuracy %.4f | macro-F1 %.4f", m->loss, m->accuracy, m->macro_f1);
        break;
    default:
        snprintf(buf, cap, "val loss %.4f | precision %.4f | recall %.4f | F1 %.4f | token accuracy %.4f", m->loss,
                 m->precision, m->recall, m->f1, m->token_accuracy);
    }
}

void train_metrics_json(const train_ctx *t, const train_metrics *m, char *buf, size_t cap) {
    switch (t->model.task) {
    case TASK_CAUSAL_LM:
        snprintf(buf, cap, "\"val_loss\": %.6f, \"perplexity\": %.6f", m->loss, m->perplexity);
        break;
    case TASK_SEQ_CLS:
        snprintf(buf, cap, "\"val_loss\": %.6f, \"accuracy\": %.6f, \"macro_f1\": %.6f", m->loss, m->accuracy,
                 m->macro_f1);
        break;
    default:
        snprintf(buf, cap,
                 "\"val_loss\": %.6f, \"precision\": %.6f, \"recall\": %.6f, \"f1\": %.6f, \"token_accuracy\": %.6f",
                 m->loss, m->precision, m->recall, m->f1, m->token_accuracy);
    }
}

int train_metric_value(const train_ctx *t, const train_metrics *m, const char *name, double *v, int *gb) {
    model_task k = t->model.task;
    struct {
        const char *name;
        double v;
        int gb, ok;
    } tab[] = {{"loss", m->loss, 0, 1},
               {"perplexity", m->perplexity, 0, k == TASK_CAUSAL_LM},
               {"accuracy", m->accuracy, 1, k == TASK_SEQ_CLS},
               {"macro_f1", m->macro_f1, 1, k == TASK_SEQ_CLS},
               {"precision", m->precision, 1, k == TASK_TOKEN_CLS},
               {"recall", m->recall, 1, k == TASK_TOKEN_CLS},
               {"f1", m->f1, 1, k == TASK_TOKEN_CLS},
               {"token_accuracy", m->token_accuracy, 1, k == TASK_TOKEN_CLS}};
    for (size_t i = 0; i < sizeof tab / sizeof *tab; i++)
        if (tab[i].ok && !strcmp(name, tab[i].name)) {
            *v = tab[i].v;
            *gb = tab[i].gb;
            return 0;
        }
    return -1;
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
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
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
        } else if (extra_key && !strcmp(argv[i], *extra_key)) {
            if (i + 1 >= argc)
                return lerr_set(e, "%s needs %s", argv[i],
                                !strcmp(argv[i], "--resume") ? "auto or a checkpoint PATH" : "a peft adapter folder");
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
    int pa = trainer_parse_args(&c, argc, argv, eval_only ? &adapter_key : NULL, &adapter_dir, &e);
    if (pa == 1) {
        printf("usage: lora %s --config FILE%s [--set section.key=value ...]\n"
               "  FILE: an INI run config (configs/*.ini; every key is in README.md's table); --set overrides one key\n",
               eval_only ? "eval" : "train", eval_only ? " [--adapter PEFT_DIR]" : "");
        return 0;
    }
    if (pa || rc_validate(&c, &e)) {
        fprintf(stderr, "lora %s: %s\n", eval_only ? "eval" : "train", e.msg);
        return 1;
    }
    if (adapter_dir) {
        snprintf(c.init_from, sizeof c.init_from, "%s", adapter_dir);
        c.init_is_eval = 1;
    }
    train_ctx t;
    if (train_ctx_open(&t, &c, NULL, &e)) {
        fprintf(stderr, "lora %s: %s\n", eval_only ? "eval" : "train", e.msg);
        return 1;
    }
    c.steps = t.cfg.steps; /* [train] epochs decides it once the data is open */
    char line[256];
    lora_params_line(line, sizeof line, (int64_t)t.ad.n_params, t.ad.full ? 0 : t.model.n_params);
    printf("%s\n", line);
    int rc = 0;
    if (eval_only) {
        if (!train_has_val(&t)) {
            fprintf(stderr, "lora eval: [data] val is not set\n");
            rc = 1;
        } else {
            double l = train_eval(&t);
            char desc[1200];
            train_val_desc(&t, desc, sizeof desc);
            printf("val loss %.4f (%s)\n", l, desc);
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
    int64_t applied = 0, skipped = 0, skip_run = 0;
    int64_t hook_nan = train_test_hook_nan();
    double val0 = NAN, val1 = NAN;
    if (train_has_val(&t)) {
        val0 = train_eval(&t);
        printf("val loss before: %.4f\n", val0);
    }
    int64_t G = train_global_batch(&t);
    FILE *mf = NULL;
    if (c.metrics_path[0] && !(mf = fopen(c.metrics_path, "a"))) {
        fprintf(stderr, "lora train: [train] metrics: cannot open %s for appending\n", c.metrics_path);
        rc = 1;
    }
    if (t.cfg.epochs > 0)
        printf("%g epochs of %lld samples, %lld per step: %lld steps\n", (double)t.cfg.epochs,
               (long long)train_samples_per_epoch(&t), (long long)G, (long long)t.cfg.steps);
    double best = NAN;
    double t0 = now_s();
    int64_t tokens_done = 0;
    for (int64_t step = 0; !rc && step < t.cfg.steps; step++) {
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
        if (oc == OPT_DIVERGED) {
            fprintf(stderr,
                    "lora train: step %lld: the trainable values became non-finite after the update (lr %g, grad "
                    "norm %g): the run diverged; stopping without saving (lower optim.lr or set optim.grad_clip)\n",
                    (long long)step + 1, lr, norm);
            rc = 1;
            break;
        }
        if (optim_skip_limit(oc, c.max_skipped, &skip_run) == OPT_DIVERGED) {
            fprintf(stderr,
                    "lora train: step %lld: %lld steps in a row had a non-finite loss or gradient: the run "
                    "diverged; stopping without saving ([system] max_skipped_steps = %d; lower optim.lr?)\n",
                    (long long)step + 1, (long long)skip_run, c.max_skipped);
            rc = 1;
            break;
        }
        if (oc != OPT_APPLIED) {
            fprintf(stderr, "step %lld: non-finite loss or gradient (loss %g, grad norm %g)%s\n", (long long)step + 1,
                    loss, norm, oc == OPT_ABORT ? "; aborting ([system] nan_policy = abort)" : "; step skipped");
            if (oc == OPT_ABORT) {
                rc = 1;
                break;
            }
            skipped++;
        } else {
            tokens_done += ntok;
        }
        double dt = now_s() - ts;
        if (oc == OPT_APPLIED && c.log_every > 0 && ((step + 1) % c.log_every == 0 || step + 1 == t.cfg.steps))
            printf("step %5lld/%lld | loss %.4f | lr %.3e | grad norm %.4f | %.0f tok/s | %.0f ms\n",
                   (long long)step + 1, (long long)t.cfg.steps, loss, lr, norm, (double)ntok / dt, dt * 1e3);
        if (mf)
            fprintf(mf,
                    "{\"step\": %lld, \"loss\": %.6f, \"lr\": %.6e, \"tokens\": %lld, \"tokens_per_s\": %.1f, "
                    "\"grad_norm\": %.6f, \"skipped\": %s, \"elapsed_s\": %.3f}\n",
                    (long long)step + 1, loss, lr, (long long)ntok, (double)ntok / dt, norm,
                    oc == OPT_APPLIED ? "false" : "true", now_s() - t0);
        int have_val = train_has_val(&t);
        if (have_val && c.eval_every > 0 && (step + 1) % c.eval_every == 0 && step + 1 < t.cfg.steps)
            printf("step %5lld val loss %.4f\n", (long long)step + 1, train_eval(&t));
        int64_t ep = train_epoch_ending(&t, step);
        if (ep && have_val && (c.eval_epochs || c.metric_for_best[0])) {
            train_metrics tm;
            train_eval_metrics(&t, &tm);
            char mline[512], js[512];
            train_metrics_line(&t, &tm, mline, sizeof mline);
            printf("epoch %lld (step %lld) | %s\n", (long long)ep, (long long)step + 1, mline);
            if (mf) {
                train_metrics_json(&t, &tm, js, sizeof js);
                fprintf(mf, "{\"eval\": true, \"epoch\": %lld, \"step\": %lld, %s}\n", (long long)ep,
                        (long long)step + 1, js);
            }
            double mv;
            int gb;
            if (c.metric_for_best[0] && c.out_dir[0] && !train_metric_value(&t, &tm, c.metric_for_best, &mv, &gb) &&
                (isnan(best) || (gb ? mv > best : mv < best))) {
                best = mv;
                char dir[RC_PATH + 16];
                snprintf(dir, sizeof dir, "%s/best", c.out_dir);
                if (train_save(&t, dir, &e)) {
                    fprintf(stderr, "lora train: %s\n", e.msg);
                    rc = 1;
                } else
                    printf("best %s so far (%.4f): adapter written to %s\n", c.metric_for_best, mv, dir);
            }
        }
        if (ep && c.save_epochs && c.out_dir[0]) {
            char dir[RC_PATH + 32];
            snprintf(dir, sizeof dir, "%s/epoch-%lld", c.out_dir, (long long)ep);
            if (train_save(&t, dir, &e)) {
                fprintf(stderr, "lora train: %s\n", e.msg);
                rc = 1;
            } else
                printf("epoch %lld: adapter written to %s\n", (long long)ep, dir);
        }
        fflush(stdout);
    }
    if (mf) fclose(mf);
    double wall = now_s() - t0;
    if (!rc && train_has_val(&t)) {
        val1 = train_eval(&t);
        printf("val loss after: %.4f (before %.4f)\n", val1, val0);
    }
    printf("trained %lld steps in %.1f s (%.0f tok/s)\n", (long long)t.cfg.steps, wall, (double)tokens_done / wall);
    if (!rc && c.plot_path[0]) {
        if (plot_metrics(c.metrics_path, c.plot_path, &e)) {
            fprintf(stderr, "lora train: [train] plot: %s\n", e.msg);
            rc = 1;
        } else
            printf("loss curve: %s (from %s)\n", c.plot_path, c.metrics_path);
    }
    if (!rc && t.cfg.steps > 0 && skipped == t.cfg.steps) {
        fprintf(stderr, "lora train: every step of the run was skipped (non-finite gradients): nothing was trained\n");
        rc = 1;
    }
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
