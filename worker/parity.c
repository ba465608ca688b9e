/* The parity check against HF + peft fixtures (see include/parity.h). */
#include "parity.h"

#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lora.h"
#include "model.h"
#include "optim.h"
#include "safetensors.h"
#include "util.h"

typedef struct {
    FILE *out;
    double tol, worst;
    char worst_name[200];
    int n, failed;
} report;

static void rel_max(const float *a, const float *b, long n, double *rel, double *mx) {
    double d = 0, r = 0, m = 0;
    for (long i = 0; i < n; i++) {
        double x = (double)a[i] - (double)b[i];
        d += x * x;
        r += (double)b[i] * b[i];
        if (!(fabs(x) <= m)) m = fabs(x); /* NaN propagates */
    }
    *rel = r > 0 ? sqrt(d / r) : sqrt(d);
    if (isnan(d)) *rel = NAN;
    *mx = m;
}

static void check(report *rp, const char *name, const float *ours, const float *ref, long n) {
    double rel, mx;
    rel_max(ours, ref, n, &rel, &mx);
    int ok = rel <= rp->tol;
    rp->n++;
    if (!ok) rp->failed++;
    if (!(rel <= rp->worst)) {
        rp->worst = rel;
        snprintf(rp->worst_name, sizeof rp->worst_name, "%s", name);
    }
    fprintf(rp->out, "  %-66s %10.3e %10.3e  %s\n", name, rel, mx, ok ? "ok" : "FAIL");
}

/* The reference tensor `key` of f as floats (malloc'd), checked to hold n values. */
static float *ref_f32(const st_file *f, const char *key, long n, struct lerr *e) {
    const st_tensor *t = st_find(f, key);
    if (!t) {
        lerr_set(e, "%s: missing tensor '%s'", st_path(f), key);
        return NULL;
    }
    if (t->numel != n) {
        lerr_set(e, "%s: tensor '%s' has %lld values, expected %ld", st_path(f), key, (long long)t->numel, n);
        return NULL;
    }
    float *v = xmalloc(sizeof(float) * (size_t)(n ? n : 1));
    if (st_to_f32(v, t, e)) {
        free(v);
        return NULL;
    }
    return v;
}

/* An integer tensor `key` of f with exactly the given shape (ndim 1 or 2), or NULL. */
static int32_t *ref_ints(const st_file *f, const char *key, int ndim, int64_t d0, int64_t d1, struct lerr *e) {
    int32_t *v;
    int rc = st_read_ints(f, key, ndim, d0, d1, &v, e);
    if (rc == 0) lerr_set(e, "%s: missing tensor '%s'", st_path(f), key);
    return rc == 1 ? v : NULL;
}

static double meta_num(const cJSON *o, const char *key, int *bad) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(it)) {
        *bad = 1;
        return 0;
    }
    return it->valuedouble;
}

/* An integer field of meta.json (a count): a whole number that double holds
 * exactly (below 2^53), else *bad. */
static int64_t meta_int(const cJSON *o, const char *key, int *bad) {
    double v = meta_num(o, key, bad);
    if (!(v >= 0 && v < 9007199254740992.0) || v != (double)(int64_t)v) {
        *bad = 1;
        return 0;
    }
    return (int64_t)v;
}

/* One forward (+ backward when grad != NULL) on batch k of train.safetensors:
 * step{k}.input_ids and, when present, attention_mask, token_type_ids and
 * labels (causal LM without labels: the input ids). Returns the mean loss;
 * grad receives the gradient of the mean. */
static double run_batch(const model *m, const lora_adapter *a, model_ws *s, const st_file *train, int k, int B, int T,
                        float *grad, struct lerr *e, int *err) {
    char key[64];
    int32_t *ids = NULL, *mask = NULL, *types = NULL, *labels = NULL;
    float *values = NULL; /* float labels: a regression head's targets */
    double loss = 0;
    snprintf(key, sizeof key, "step%d.input_ids", k);
    if (!(ids = ref_ints(train, key, 2, B, T, e))) goto fail;
    snprintf(key, sizeof key, "step%d.attention_mask", k);
    if (st_find(train, key) && !(mask = ref_ints(train, key, 2, B, T, e))) goto fail;
    snprintf(key, sizeof key, "step%d.token_type_ids", k);
    if (st_find(train, key) && !(types = ref_ints(train, key, 2, B, T, e))) goto fail;
    snprintf(key, sizeof key, "step%d.labels", k);
    const st_tensor *lt = st_find(train, key);
    int float_labels = lt && (lt->dtype == ST_F32 || lt->dtype == ST_F16 || lt->dtype == ST_BF16 || lt->dtype == ST_F64);
    if (float_labels) {
        if (m->task != TASK_SEQ_CLS || m->n_labels != 1) {
            lerr_set(e, "%s: %s holds floats, but the model is not a regression head (one label)", st_path(train), key);
            goto fail;
        }
        if (lt->ndim != 1 || lt->shape[0] != B) {
            lerr_set(e, "%s: tensor '%s' must have shape (%d)", st_path(train), key, B);
            goto fail;
        }
        if (!(values = ref_f32(train, key, B, e))) goto fail;
    } else if (lt && !(labels = ref_ints(train, key, m->task == TASK_SEQ_CLS ? 1 : 2, B, T, e))) {
        goto fail;
    }
    for (int i = 0; i < B * T; i++)
        if (ids[i] < 0 || ids[i] >= m->vocab) {
            lerr_set(e, "%s: step%d.input_ids holds token %d outside the vocabulary (%d)", st_path(train), k, ids[i],
                     m->vocab);
            goto fail;
        }
    for (int i = 0; types && i < B * T; i++)
        if (types[i] < 0 || types[i] >= (m->n_types ? m->n_types : 1)) {
            lerr_set(e, "%s: step%d.token_type_ids holds %d, outside the model's %d token types", st_path(train), k,
                     types[i], m->n_types ? m->n_types : 1);
            goto fail;
        }
    int nl = m->task == TASK_SEQ_CLS ? B : B * T;
    for (int i = 0; labels && m->task != TASK_CAUSAL_LM && i < nl; i++)
        if (labels[i] != -100 && (labels[i] < 0 || labels[i] >= (m->n_labels > 1 ? m->n_labels : 1))) {
            lerr_set(e, "%s: step%d.labels holds %d, outside the model's %d labels", st_path(train), k, labels[i],
                     m->n_labels);
            goto fail;
        }
    model_batch mb = {.tokens = ids, .mask = mask, .type_ids = types, .label_values = values, .B = B, .T = T,
                      .labels = labels ? labels : m->task == TASK_CAUSAL_LM ? ids : NULL};
    int64_t n = 0;
    double sum = model_forward(m, a, s, &mb, 0, 0, &n);
    if (grad) {
        memset(grad, 0, sizeof(float) * a->n_params);
        model_backward(m, a, s, grad, 1.0f);
        grad_scale(grad, a->n_params, 1.0f / (float)n);
    }
    loss = n ? sum / (double)n : 0.0;
    goto done;
fail:
    *err = 1;
done:
    free(ids);
    free(mask);
    free(types);
    free(labels);
    free(values);
    return loss;
}

/* The model's output of the last forward and its size. */
static const float *out_of(const model *m, const model_ws *s, long *n) {
    int nd;
    int64_t sh[3];
    const float *o = model_output(m, s, &nd, sh);
    *n = 1;
    for (int d = 0; d < nd; d++) *n *= (long)sh[d];
    return o;
}

int parity_run(const char *dir, double tol, FILE *out) {
    struct lerr e = {{0}};
    char path[4200];
    report rp = {out, tol, 0, "", 0, 0};
    int rc = 2;
    model m = {0}, merged = {0};
    lora_adapter a = {0}, trained = {0};
    st_file *fwd = NULL, *grads = NULL, *train = NULL, *mref = NULL;
    model_ws *s = NULL;
    float *grad = NULL, *mom = NULL, *vel = NULL, *ref = NULL;
    cJSON *meta = NULL;

    snprintf(path, sizeof path, "%s/meta.json", dir);
    char *text = read_text_file(path, 1 << 20, &e);
    if (!text) goto fail;
    meta = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(meta)) {
        lerr_set(&e, "%s: not a JSON object", path);
        goto fail;
    }
    const cJSON *fam = cJSON_GetObjectItemCaseSensitive(meta, "family");
    if (!cJSON_IsString(fam)) {
        lerr_set(&e, "%s: missing \"family\"", path);
        goto fail;
    }
    int bad = 0;
    int B = (int)meta_num(meta, "batch", &bad), T = (int)meta_num(meta, "seq_len", &bad);
    const cJSON *opt = cJSON_GetObjectItemCaseSensitive(meta, "optimizer");
    float lr = (float)meta_num(opt, "lr", &bad);
    adamw_hparams hp = {0};
    const cJSON *betas = cJSON_GetObjectItemCaseSensitive(opt, "betas");
    if (cJSON_GetArraySize(betas) != 2) bad = 1;
    else {
        hp.beta1 = (float)cJSON_GetArrayItem(betas, 0)->valuedouble;
        hp.beta2 = (float)cJSON_GetArrayItem(betas, 1)->valuedouble;
    }
    hp.eps = (float)meta_num(opt, "eps", &bad);
    hp.weight_decay = (float)meta_num(opt, "weight_decay", &bad);
    int steps = (int)meta_num(opt, "steps", &bad);
    int64_t ref_trainable = meta_int(meta, "trainable_params", &bad);
    int64_t ref_all = meta_int(meta, "all_params", &bad);
    if (bad || B < 1 || T < 2 || steps < 1) {
        lerr_set(&e, "%s: needs batch, seq_len, optimizer{lr, betas, eps, weight_decay, steps}, trainable_params, "
                     "all_params", path);
        goto fail;
    }

    snprintf(path, sizeof path, "%s/base", dir);
    if (model_open(&m, path, NULL, &e)) goto fail;
    if (strcmp(fam->valuestring, m.fam->model_type)) {
        lerr_set(&e, "%s/meta.json: family \"%s\" but base/config.json's model_type is \"%s\"", dir, fam->valuestring,
                 m.fam->model_type);
        goto fail;
    }
    if (T > m.max_positions) {
        lerr_set(&e, "%s: seq_len %d exceeds the model's %d positions", dir, T, m.max_positions);
        goto fail;
    }
    if (model_check_seq_len(&m, T, &e)) {
        lerr_prefix(&e, "%s", dir);
        goto fail;
    }
    snprintf(path, sizeof path, "%s/lora-init", dir);
    if (model_load_peft(&a, &m, path, &e)) goto fail;
    snprintf(path, sizeof path, "%s/forward.safetensors", dir);
    if (!(fwd = st_open(path, &e))) goto fail;
    snprintf(path, sizeof path, "%s/grads.safetensors", dir);
    if (!(grads = st_open(path, &e))) goto fail;
    snprintf(path, sizeof path, "%s/train.safetensors", dir);
    if (!(train = st_open(path, &e))) goto fail;

    fprintf(out, "parity %s: %s %s, %d tensors, V=%d; LoRA r=%d alpha=%g%s on %d modules; B=%d T=%d\n", dir,
            m.fam->model_type, model_task_name(m.task), m.n_tensor, m.vocab, a.spec.r, a.spec.alpha,
            a.spec.rslora ? " (rsLoRA)" : "", a.n_mod, B, T);
    char line[200];
    lora_params_line(line, sizeof line, (int64_t)a.n_params, m.n_params);
    fprintf(out, "  %s\n", line);
    fprintf(out, "  %-66s %10s %10s\n", "tensor", "rel_err", "max_abs");
    {
        /* peft's counts are integers: equal exactly */
        int64_t tr = (int64_t)a.n_params, all = (int64_t)a.n_params + m.n_params;
        int ok = tr == ref_trainable && all == ref_all;
        rp.n++;
        if (!ok) rp.failed++;
        fprintf(out, "  %-66s %10s %10s  %s\n", "param counts (trainable, all) vs meta.json", ok ? "equal" : "differ",
                "", ok ? "ok" : "FAIL");
        if (!ok)
            fprintf(out, "    ours %lld, %lld; peft's %lld, %lld\n", (long long)tr, (long long)all,
                    (long long)ref_trainable, (long long)ref_all);
    }

    long NV;
    s = model_ws_create(&m, &a, B, T);
    grad = xcalloc(a.n_params, sizeof(float));
    int err = 0;
    /* base logits */
    run_batch(&m, NULL, s, train, 0, B, T, NULL, &e, &err);
    const float *o = out_of(&m, s, &NV);
    if (err || !(ref = ref_f32(fwd, "base_logits", NV, &e))) goto fail;
    check(&rp, "base_logits", o, ref, NV);
    free(ref);
    /* lora-init: logits, loss, gradients */
    float loss = (float)run_batch(&m, &a, s, train, 0, B, T, NULL, &e, &err);
    o = out_of(&m, s, &NV);
    if (err || !(ref = ref_f32(fwd, "logits", NV, &e))) goto fail;
    check(&rp, "logits (lora-init)", o, ref, NV);
    free(ref);
    if (!(ref = ref_f32(fwd, "loss", 1, &e))) goto fail;
    check(&rp, "loss (lora-init)", &loss, ref, 1);
    free(ref);
    run_batch(&m, &a, s, train, 0, B, T, grad, &e, &err);
    for (int i = 0; i < a.n_tensor; i++) {
        char key[LORA_KEY + 8];
        snprintf(key, sizeof key, "%s.grad", a.tensor[i].key);
        long n = (long)a.tensor[i].rows * a.tensor[i].cols;
        if (!(ref = ref_f32(grads, key, n, &e))) goto fail;
        check(&rp, key, grad + a.tensor[i].off, ref, n);
        free(ref);
    }
    /* AdamW steps: step k uses batch k; the loss is the one before the update */
    mom = xcalloc(a.n_params, sizeof(float));
    vel = xcalloc(a.n_params, sizeof(float));
    float *losses = xcalloc((size_t)steps, sizeof(float));
    for (int k = 0; k < steps; k++) {
        losses[k] = (float)run_batch(&m, &a, s, train, k, B, T, grad, &e, &err);
        if (err) {
            free(losses);
            goto fail;
        }
        adamw_step(a.w, mom, vel, grad, a.n_params, k + 1, lr, &hp);
    }
    if (!(ref = ref_f32(train, "losses", steps, &e))) {
        free(losses);
        goto fail;
    }
    check(&rp, "losses of the AdamW steps", losses, ref, steps);
    free(ref);
    free(losses);
    /* trained adapter vs peft's */
    snprintf(path, sizeof path, "%s/lora-trained", dir);
    if (model_load_peft(&trained, &m, path, &e)) goto fail;
    if (trained.n_params != a.n_params) {
        lerr_set(&e, "%s: layout differs from lora-init", path);
        goto fail;
    }
    for (int i = 0; i < a.n_tensor; i++) {
        const lora_tensor *t = &a.tensor[i];
        const lora_tensor *u = lora_find(&trained, t->key);
        if (!u) {
            lerr_set(&e, "%s: missing '%s'", path, t->key);
            goto fail;
        }
        char name[LORA_KEY + 16];
        snprintf(name, sizeof name, "trained %s", t->key + strlen("base_model.model."));
        check(&rp, name, a.w + t->off, trained.w + u->off, (long)t->rows * t->cols);
    }
    run_batch(&m, &a, s, train, 0, B, T, NULL, &e, &err);
    o = out_of(&m, s, &NV);
    if (err || !(ref = ref_f32(train, "trained_logits", NV, &e))) goto fail;
    check(&rp, "trained_logits", o, ref, NV);
    free(ref);
    /* merged model: logits and every weight */
    if (model_merge(&merged, &m, &a, &e)) goto fail;
    run_batch(&merged, NULL, s, train, 0, B, T, NULL, &e, &err);
    o = out_of(&merged, s, &NV);
    if (err || !(ref = ref_f32(train, "merged_logits", NV, &e))) goto fail;
    check(&rp, "merged_logits", o, ref, NV);
    free(ref);
    ref = NULL;
    snprintf(path, sizeof path, "%s/merged/model.safetensors", dir);
    if (!(mref = st_open(path, &e))) goto fail;
    {
        /* Save our merge through the real writer and compare file against file. */
        char tmpd[] = "/tmp/lora-parity-XXXXXX";
        if (!mkdtemp(tmpd)) {
            lerr_set(&e, "cannot create a temporary directory");
            goto fail;
        }
        int wrc = model_save_merged(&m, &a, tmpd, &e);
        snprintf(path, sizeof path, "%s/model.safetensors", tmpd);
        st_file *ours = wrc ? NULL : st_open(path, &e);
        int nchk = 0;
        for (int i = 0; ours && i < st_count(mref); i++) {
            const st_tensor *t = st_at(mref, i);
            const st_tensor *ot = st_find(ours, t->name);
            if (!ot || ot->numel != t->numel) {
                lerr_set(&e, "merged model lacks '%s' or its shape differs", t->name);
                wrc = -1;
                break;
            }
            float *x = xmalloc(sizeof(float) * (size_t)t->numel), *y = xmalloc(sizeof(float) * (size_t)t->numel);
            if (st_to_f32(x, ot, &e) || st_to_f32(y, t, &e)) wrc = -1;
            char name[300];
            snprintf(name, sizeof name, "merged %s", t->name);
            if (!wrc) check(&rp, name, x, y, (long)t->numel);
            free(x);
            free(y);
            nchk++;
        }
        st_close(ours);
        remove(path);
        snprintf(path, sizeof path, "%s", tmpd);
        char cmd[4300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpd);
        if (system(cmd) != 0) fprintf(stderr, "parity: could not remove %s\n", tmpd);
        if (wrc || nchk == 0) goto fail;
    }
    fprintf(out, "parity: %s: %d checks, %d above %.0e; worst relative error %.3e (%s)\n",
            rp.failed ? "FAIL" : "PASS", rp.n, rp.failed, tol, rp.worst, rp.worst_name);
    rc = rp.failed ? 1 : 0;
    goto done;
fail:
    fprintf(stderr, "parity: %s\n", e.msg);
    rc = 2;
done:
    cJSON_Delete(meta);
    if (s) model_ws_free(&m, s);
    free(grad);
    free(mom);
    free(vel);
    st_close(fwd);
    st_close(grads);
    st_close(train);
    st_close(mref);
    lora_free(&a);
    lora_free(&trained);
    model_free(&m);
    model_free(&merged);
    return rc;
}
