/* ckpt_testlib: what the checkpoint tests share: a small adapter of known
 * layout, irregular values, a checkpoint state whose counters fit each other,
 * and file helpers. Functions are static inline: each test uses a part. */
#ifndef CKPT_TESTLIB_H
#define CKPT_TESTLIB_H
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checkpoint.h"
#include "optim.h"
#include "testutil.h"

/* 2 layers x (attn.c_attn in -> 3 in, mlp.c_proj 4 in -> in), plus one
 * unadapted site so the site and module indices differ. */
static inline int make_sites(lora_site *s, int in) {
    int n = 0;
    for (int l = 0; l < 2; l++) {
        snprintf(s[n].name, LORA_NAME, "transformer.h.%d.attn.c_attn", l);
        s[n].in = in, s[n].out = 3 * in, n++;
        snprintf(s[n].name, LORA_NAME, "transformer.h.%d.mlp.c_fc", l);
        s[n].in = in, s[n].out = 4 * in, n++;
        snprintf(s[n].name, LORA_NAME, "transformer.h.%d.mlp.c_proj", l);
        s[n].in = 4 * in, s[n].out = in, n++;
    }
    return n;
}

static inline int make_adapter(lora_adapter *a, int in, int r, int rslora, int with_proj) {
    lora_site sites[8];
    int n = make_sites(sites, in);
    lora_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.r = r;
    spec.alpha = 8;
    spec.rslora = rslora;
    spec.dropout = 0.05f;
    snprintf(spec.targets[spec.n_targets++], LORA_NAME, "c_attn");
    if (with_proj) snprintf(spec.targets[spec.n_targets++], LORA_NAME, "c_proj");
    struct lerr e;
    e.msg[0] = 0;
    int rc = lora_create(a, &spec, sites, n, 1, &e);
    CHECK(rc == 0, "lora_create: %s", e.msg);
    return rc;
}

/* Distinct, irregular values (an LCG's bits as floats in [-2, 2)). */
static inline void fill(float *x, size_t n, uint64_t seed, int positive) {
    uint64_t s = seed * 6364136223846793005ull + 1442695040888963407ull;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        float u = (float)((s >> 40) & 0xffffff) / 16777216.0f; /* [0, 1) */
        x[i] = positive ? u * 1e-3f + 1e-9f : 4 * u - 2;
    }
}

#define NM 40
static int64_t g_mstep[NM];
static double g_mloss[NM], g_mlr[NM], g_mtps[NM];
/* two evaluations (steps 1 and 2, epochs 1 and 2), NaN for what a classifier does not measure */
static int64_t g_evstep[2] = {1, 2}, g_evepoch[2] = {1, 2};
static double g_evval[2 * CKPT_EVAL_N];

static inline void make_state(ckpt_state *st, int64_t step) {
    memset(st, 0, sizeof *st);
    st->step = step;
    st->epoch = 2;
    st->tokens_seen = 123456789012ll;
    st->data_cursor = step * 8; /* a global batch of 8 samples */
    st->opt_steps = step - 1;
    st->lr = 5e-3f, st->beta1 = 0.9f, st->beta2 = 0.999f, st->eps = 1e-8f, st->weight_decay = 0.01f;
    st->min_lr_ratio = 0.1f;
    st->schedule_kind = SCHED_COSINE;
    st->warmup_steps = 10, st->total_steps = 300;
    st->init_seed = 0xfedcba9876543210ull, st->data_seed = 17, st->dropout_seed = 0xffffffffffffffffull;
    st->seq_len = 128, st->sampling = 1;
    st->train_tokens = 987654;
    st->config_text = "[model]\npath = models/gpt2\n\n[lora]\nr = 4\nalpha = 8\ntargets = c_attn, c_proj\n";
    st->model_path = "models/gpt2/model.safetensors";
    st->model_size = 497774208ull, st->model_hash = 0x0123456789abcdefull;
    st->n_metrics = step < NM ? step : NM;
    for (int i = 0; i < NM; i++) {
        g_mstep[i] = i;
        g_mloss[i] = 3.0 / (1 + i * 0.1);
        g_mlr[i] = 5e-3 * i / 10.0;
        g_mtps[i] = 12345.678 + i;
    }
    st->m_step = g_mstep, st->m_loss = g_mloss, st->m_lr = g_mlr, st->m_tokens_per_s = g_mtps;
    st->n_evals = step >= 2 ? 2 : step >= 1 ? 1 : 0;
    for (int i = 0; i < 2 * CKPT_EVAL_N; i++) g_evval[i] = i % CKPT_EVAL_N >= 4 ? NAN : 0.25 + i / 7.0;
    st->ev_step = g_evstep, st->ev_epoch = g_evepoch, st->ev_values = g_evval;
}

static inline int state_equal(const ckpt_state *a, const ckpt_state *b, int with_metrics) {
    int ok = a->step == b->step && a->epoch == b->epoch && a->tokens_seen == b->tokens_seen &&
             a->data_cursor == b->data_cursor && a->opt_steps == b->opt_steps && a->lr == b->lr &&
             a->beta1 == b->beta1 && a->beta2 == b->beta2 && a->eps == b->eps && a->weight_decay == b->weight_decay &&
             a->min_lr_ratio == b->min_lr_ratio && a->schedule_kind == b->schedule_kind &&
             a->warmup_steps == b->warmup_steps && a->total_steps == b->total_steps && a->init_seed == b->init_seed &&
             a->data_seed == b->data_seed && a->dropout_seed == b->dropout_seed && a->seq_len == b->seq_len &&
             a->sampling == b->sampling && a->train_tokens == b->train_tokens && a->model_size == b->model_size &&
             a->model_hash == b->model_hash && a->config_text && b->config_text &&
             !strcmp(a->config_text, b->config_text) && a->model_path && b->model_path &&
             !strcmp(a->model_path, b->model_path);
    if (!with_metrics) return ok;
    size_t n = (size_t)a->n_metrics, ne = (size_t)a->n_evals;
    ok = ok && a->n_evals == b->n_evals &&
         (ne == 0 || (!memcmp(a->ev_step, b->ev_step, ne * 8) && !memcmp(a->ev_epoch, b->ev_epoch, ne * 8) &&
                      !memcmp(a->ev_values, b->ev_values, ne * CKPT_EVAL_N * 8)));
    return ok && a->n_metrics == b->n_metrics &&
           (n == 0 || (!memcmp(a->m_step, b->m_step, n * 8) && !memcmp(a->m_loss, b->m_loss, n * 8) &&
                       !memcmp(a->m_lr, b->m_lr, n * 8) && !memcmp(a->m_tokens_per_s, b->m_tokens_per_s, n * 8)));
}

/* Names in dir (one per line) that contain `part`, sorted; count returned. */
static inline int list_dir(const char *dir, const char *part, char *out, size_t cap) {
    out[0] = 0;
    DIR *d = opendir(dir);
    if (!d) return -1;
    char names[64][256];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < 64)
        if (de->d_name[0] != '.' || strstr(de->d_name, "tmp"))
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && strstr(de->d_name, part))
                snprintf(names[n++], 256, "%s", de->d_name);
    closedir(d);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (strcmp(names[i], names[j]) > 0) {
                char t[256];
                memcpy(t, names[i], 256), memcpy(names[i], names[j], 256), memcpy(names[j], t, 256);
            }
    for (int i = 0; i < n; i++) snprintf(out + strlen(out), cap - strlen(out), "%s\n", names[i]);
    return n;
}

static inline char *read_all(FILE *p, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t k;
    while (buf && (k = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += k;
        if (cap - n < 1024) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) free(buf);
            buf = nb;
        }
    }
    if (buf) buf[n] = 0;
    *len = n;
    return buf;
}

static inline long file_size(const char *p) {
    struct stat sb;
    return stat(p, &sb) ? -1 : (long)sb.st_size;
}


#endif
