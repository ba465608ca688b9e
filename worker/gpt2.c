/*
 * GPT-2 (HF GPT2LMHeadModel): loading, forward and backward with LoRA.
 * See include/gpt2.h for the contract and the shape legend.
 *
 * The graph of one layer, with the adaptable sites marked [site]:
 *   ln1 = LN(res)                         (BT, C)
 *   qkv = ln1 . Wqkv + b    [attn.c_attn] (BT, 3C)
 *   y   = attention(qkv)                  (BT, C)
 *   res2 = res + y . Wap + b [attn.c_proj](BT, C)
 *   ln2 = LN(res2)
 *   fch = ln2 . Wfc + b     [mlp.c_fc]    (BT, F)
 *   res' = res2 + gelu(fch) . Wfp + b [mlp.c_proj]
 * and at the top lnf = LN(res_L), logits = lnf . wte^T (tied lm_head).
 * An adapted site adds scale * (x A^T) B^T; u = x A^T (BT, r) is kept for the backward.
 */
#include "gpt2.h"

#include <cJSON.h>
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "kernels.h"
#include "util.h"

/* ---------------------------------------------------------------- config */

static int json_int(const cJSON *root, const char *key, int *out, int required, const char *path, struct lerr *e) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!it || cJSON_IsNull(it)) {
        if (required) return lerr_set(e, "%s: missing \"%s\"", path, key);
        return 0;
    }
    if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) || it->valuedouble < 1 ||
        it->valuedouble > 1e8)
        return lerr_set(e, "%s: \"%s\" must be a positive integer", path, key);
    *out = (int)it->valuedouble;
    return 0;
}

int gpt2_config_load(gpt2_config *c, const char *path, struct lerr *e) {
    char *text = read_text_file(path, 1 << 20, e);
    if (!text) return -1;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return lerr_set(e, "%s: not a JSON object", path);
    }
    int rc = -1;
    memset(c, 0, sizeof *c);
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (!cJSON_IsString(mt)) {
        lerr_set(e, "%s: missing \"model_type\"", path);
        goto out;
    }
    if (strcmp(mt->valuestring, "gpt2") != 0) {
        lerr_set(e, "%s: model_type \"%s\" is not supported yet (supported: gpt2)", path, mt->valuestring);
        goto out;
    }
    c->n_positions = 0;
    if (json_int(root, "n_embd", &c->n_embd, 1, path, e) || json_int(root, "n_layer", &c->n_layer, 1, path, e) ||
        json_int(root, "n_head", &c->n_head, 1, path, e) || json_int(root, "vocab_size", &c->vocab_size, 1, path, e) ||
        json_int(root, "n_inner", &c->n_inner, 0, path, e) ||
        json_int(root, "n_positions", &c->n_positions, 0, path, e))
        goto out;
    if (!c->n_positions && json_int(root, "n_ctx", &c->n_positions, 1, path, e)) goto out;
    if (!c->n_inner) c->n_inner = 4 * c->n_embd;
    if (c->n_embd % c->n_head) {
        lerr_set(e, "%s: n_embd %d is not a multiple of n_head %d", path, c->n_embd, c->n_head);
        goto out;
    }
    c->ln_eps = 1e-5f;
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(root, "layer_norm_epsilon");
    if (eps) {
        if (!cJSON_IsNumber(eps) || eps->valuedouble <= 0) {
            lerr_set(e, "%s: layer_norm_epsilon must be a positive number", path);
            goto out;
        }
        c->ln_eps = (float)eps->valuedouble;
    }
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "activation_function");
    const char *an = cJSON_IsString(act) ? act->valuestring : "gelu_new";
    if (!strcmp(an, "gelu_new") || !strcmp(an, "gelu_pytorch_tanh") || !strcmp(an, "gelu_fast"))
        c->gelu_exact = 0;
    else if (!strcmp(an, "gelu"))
        c->gelu_exact = 1;
    else {
        lerr_set(e, "%s: activation_function \"%s\" is not supported (gelu_new, gelu_pytorch_tanh, gelu)", path, an);
        goto out;
    }
    const cJSON *inv = cJSON_GetObjectItemCaseSensitive(root, "scale_attn_by_inverse_layer_idx");
    if (cJSON_IsTrue(inv)) {
        lerr_set(e, "%s: scale_attn_by_inverse_layer_idx = true is not supported", path);
        goto out;
    }
    const cJSON *sw = cJSON_GetObjectItemCaseSensitive(root, "scale_attn_weights");
    if (cJSON_IsFalse(sw)) {
        lerr_set(e, "%s: scale_attn_weights = false is not supported", path);
        goto out;
    }
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(root, "tie_word_embeddings");
    c->tied = !cJSON_IsFalse(tie);
    rc = 0;
out:
    cJSON_Delete(root);
    return rc;
}

/* ---------------------------------------------------------------- loading */

static void make_sites(gpt2 *m) {
    static const char *suffix[GPT2_SITES_PER_LAYER] = {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"};
    const gpt2_config *c = &m->cfg;
    int C = c->n_embd, F = c->n_inner;
    int ins[4] = {C, C, C, F}, outs[4] = {3 * C, C, F, C};
    m->n_sites = c->n_layer * GPT2_SITES_PER_LAYER;
    m->sites = xcalloc((size_t)m->n_sites, sizeof(lora_site));
    for (int l = 0; l < c->n_layer; l++)
        for (int k = 0; k < GPT2_SITES_PER_LAYER; k++) {
            lora_site *s = &m->sites[l * GPT2_SITES_PER_LAYER + k];
            snprintf(s->name, sizeof s->name, "transformer.h.%d.%s", l, suffix[k]);
            s->in = ins[k];
            s->out = outs[k];
        }
}

static int64_t count_params(const gpt2_config *c) {
    int64_t C = c->n_embd, F = c->n_inner;
    int64_t layer = 4 * C + (C * 3 * C + 3 * C) + (C * C + C) + (C * F + F) + (F * C + C);
    int64_t n = (int64_t)c->vocab_size * C + (int64_t)c->n_positions * C + c->n_layer * layer + 2 * C;
    if (!c->tied) n += (int64_t)c->vocab_size * C;
    return n;
}

/* One tensor to load: where its float pointer goes and its expected shape. */
typedef struct {
    char name[96];
    const float **dst;
    int ndim;
    int64_t shape[2];
} wslot;

/* Every tensor of the model: its name without the "transformer." prefix
 * (lm_head.weight only when untied), where its pointer lives, and its shape.
 * ws holds 4 + 12 L + 1 entries; returns how many were filled. */
static int list_slots(gpt2 *m, wslot *ws) {
    const gpt2_config *c = &m->cfg;
    int L = c->n_layer;
    int64_t C = c->n_embd, F = c->n_inner, V = c->vocab_size, P = c->n_positions;
    int ns = 0;
#define SLOT(ptr, nd, s0, s1, ...)                                                                                     \
    do {                                                                                                               \
        snprintf(ws[ns].name, sizeof ws[ns].name, __VA_ARGS__);                                                        \
        ws[ns].dst = (ptr);                                                                                            \
        ws[ns].ndim = (nd);                                                                                            \
        ws[ns].shape[0] = (s0);                                                                                        \
        ws[ns].shape[1] = (s1);                                                                                        \
        ns++;                                                                                                          \
    } while (0)
    SLOT(&m->wte, 2, V, C, "wte.weight");
    SLOT(&m->wpe, 2, P, C, "wpe.weight");
    SLOT(&m->lnf_w, 1, C, 0, "ln_f.weight");
    SLOT(&m->lnf_b, 1, C, 0, "ln_f.bias");
    for (int l = 0; l < L; l++) {
        gpt2_layer *y = &m->layer[l];
        SLOT(&y->ln1_w, 1, C, 0, "h.%d.ln_1.weight", l);
        SLOT(&y->ln1_b, 1, C, 0, "h.%d.ln_1.bias", l);
        SLOT(&y->qkv_w, 2, C, 3 * C, "h.%d.attn.c_attn.weight", l);
        SLOT(&y->qkv_b, 1, 3 * C, 0, "h.%d.attn.c_attn.bias", l);
        SLOT(&y->aproj_w, 2, C, C, "h.%d.attn.c_proj.weight", l);
        SLOT(&y->aproj_b, 1, C, 0, "h.%d.attn.c_proj.bias", l);
        SLOT(&y->ln2_w, 1, C, 0, "h.%d.ln_2.weight", l);
        SLOT(&y->ln2_b, 1, C, 0, "h.%d.ln_2.bias", l);
        SLOT(&y->fc_w, 2, C, F, "h.%d.mlp.c_fc.weight", l);
        SLOT(&y->fc_b, 1, F, 0, "h.%d.mlp.c_fc.bias", l);
        SLOT(&y->fproj_w, 2, F, C, "h.%d.mlp.c_proj.weight", l);
        SLOT(&y->fproj_b, 1, C, 0, "h.%d.mlp.c_proj.bias", l);
    }
    if (!c->tied) SLOT(&m->lm_head, 2, V, C, "lm_head.weight");
#undef SLOT
    return ns;
}

int gpt2_open(gpt2 *m, const char *dir, struct lerr *e) { return gpt2_open_shared(m, dir, NULL, e); }

int gpt2_open_shared(gpt2 *m, const char *dir, const gpt2_alloc *al, struct lerr *e) {
    memset(m, 0, sizeof *m);
    snprintf(m->dir, sizeof m->dir, "%s", dir);
    char path[1100];
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (gpt2_config_load(&m->cfg, path, e)) return -1;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    m->st = st_open(path, e);
    if (!m->st) return -1;
    const gpt2_config *c = &m->cfg;
    int L = c->n_layer;
    m->layer = xcalloc((size_t)L, sizeof(gpt2_layer));
    int nslot = 4 + 12 * L + 1;
    wslot *ws = xcalloc((size_t)nslot, sizeof(wslot));
    int ns = list_slots(m, ws);
    /* Find every tensor first (with or without the transformer. prefix), then
     * convert what is not aligned F32 into one owned block. */
    const st_tensor **found = xcalloc((size_t)ns, sizeof(*found));
    size_t n_owned = 0;
    int rc = -1;
    for (int i = 0; i < ns; i++) {
        char full[128];
        snprintf(full, sizeof full, "transformer.%s", ws[i].name);
        const char *key = ws[i].name;
        if (!strcmp(key, "lm_head.weight"))
            snprintf(full, sizeof full, "%s", key);
        else if (!st_find(m->st, full))
            snprintf(full, sizeof full, "%s", key);
        const st_tensor *t = st_expect(m->st, full, ws[i].ndim, ws[i].shape, e);
        if (!t) {
            lerr_prefix(e, "%s (config.json: n_embd=%d n_layer=%d vocab_size=%d n_positions=%d)", dir, c->n_embd,
                        c->n_layer, c->vocab_size, c->n_positions);
            goto out;
        }
        if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16 && t->dtype != ST_F64) {
            lerr_set(e, "%s: tensor '%s' has dtype %s; weights must be F32, F16, BF16 or F64", st_path(m->st), full,
                     st_dtype_name(t->dtype));
            goto out;
        }
        found[i] = t;
        if (t->dtype != ST_F32 || ((uintptr_t)t->data & 3u)) n_owned += (size_t)t->numel;
    }
    /* Keys the model does not use are an error (a different architecture or a
     * truncated export), except buffers HF writes for old checkpoints. */
    for (int i = 0; i < st_count(m->st); i++) {
        const char *k = st_at(m->st, i)->name;
        const char *kk = strncmp(k, "transformer.", 12) == 0 ? k + 12 : k;
        size_t n = strlen(kk);
        if ((n > 9 && !strcmp(kk + n - 9, ".attn.bias")) || (n > 16 && !strcmp(kk + n - 16, ".attn.masked_bias")))
            continue;
        if (c->tied && !strcmp(k, "lm_head.weight")) continue;
        int used = 0;
        for (int j = 0; j < ns && !used; j++) used = !strcmp(kk, ws[j].name) || !strcmp(k, ws[j].name);
        if (!used) {
            lerr_set(e, "%s: unexpected tensor '%s' for a GPT-2 with %d layers (a different model?)", st_path(m->st), k,
                     L);
            goto out;
        }
    }
    /* With an allocator (ranks of a node sharing one block), only the process
     * told to fill it converts; the others read what it wrote after ready(). */
    int fill = 1;
    if (n_owned && al) {
        m->owned = al->alloc(n_owned * sizeof(float), al->ctx, &fill);
        m->owned_shared = 1;
    } else if (n_owned) {
        m->owned = xalloc_aligned(n_owned * sizeof(float));
    }
    size_t at = 0;
    int conv_rc = 0;
    for (int i = 0; i < ns; i++) {
        const st_tensor *t = found[i];
        if (t->dtype == ST_F32 && !((uintptr_t)t->data & 3u)) {
            *ws[i].dst = (const float *)t->data;
        } else {
            if (fill && !conv_rc && st_to_f32(m->owned + at, t, e)) conv_rc = -1;
            *ws[i].dst = m->owned + at;
            at += (size_t)t->numel;
        }
    }
    if (n_owned && al) al->ready(al->ctx); /* every process of the node gets here, even after an error */
    if (conv_rc) goto out;
    if (c->tied) m->lm_head = m->wte;
    m->n_params = count_params(c);
    make_sites(m);
    rc = 0;
out:
    free(found);
    free(ws);
    if (rc) gpt2_free(m);
    return rc;
}

int gpt2_full_adapter(gpt2 *m, lora_adapter *a, struct lerr *e) {
    memset(a, 0, sizeof *a);
    int nslot = 4 + 12 * m->cfg.n_layer + 1;
    wslot *ws = xcalloc((size_t)nslot, sizeof(wslot));
    int ns = list_slots(m, ws);
    a->full = 1;
    a->n_sites = m->n_sites;
    a->site_mod = xmalloc(sizeof(int) * (size_t)(m->n_sites ? m->n_sites : 1));
    for (int i = 0; i < m->n_sites; i++) a->site_mod[i] = -1;
    a->mod = xcalloc(1, sizeof(lora_module));
    a->tensor = xcalloc((size_t)ns, sizeof(lora_tensor));
    size_t off = 0;
    for (int i = 0; i < ns; i++) {
        lora_tensor *t = &a->tensor[i];
        snprintf(t->key, sizeof t->key, "%s%s", strcmp(ws[i].name, "lm_head.weight") ? "transformer." : "",
                 ws[i].name);
        t->rows = ws[i].ndim == 2 ? (int)ws[i].shape[0] : 1;
        t->cols = ws[i].ndim == 2 ? (int)ws[i].shape[1] : (int)ws[i].shape[0];
        t->off = off;
        off += (size_t)t->rows * (size_t)t->cols;
    }
    a->n_tensor = ns;
    a->n_params = off;
    a->w = xalloc_aligned(off * sizeof(float));
    for (int i = 0; i < ns; i++) {
        const lora_tensor *t = &a->tensor[i];
        memcpy(a->w + t->off, *ws[i].dst, sizeof(float) * (size_t)t->rows * (size_t)t->cols);
        *ws[i].dst = a->w + t->off;
    }
    if (m->cfg.tied) m->lm_head = m->wte;
    free(ws);
    (void)e;
    return 0;
}

void gpt2_init_shape(gpt2 *m, const gpt2_config *c) {
    memset(m, 0, sizeof *m);
    m->cfg = *c;
    m->n_params = count_params(c);
    make_sites(m);
}

void gpt2_init_random(gpt2 *m, const gpt2_config *c, uint64_t seed) {
    gpt2_init_shape(m, c);
    snprintf(m->dir, sizeof m->dir, "(random seed %llu)", (unsigned long long)seed);
    int L = c->n_layer;
    size_t C = (size_t)c->n_embd, F = (size_t)c->n_inner, V = (size_t)c->vocab_size, P = (size_t)c->n_positions;
    size_t per = 4 * C + C * 3 * C + 3 * C + C * C + C + C * F + F + F * C + C;
    size_t total = V * C + P * C + 2 * C + (size_t)L * per + (c->tied ? 0 : V * C);
    m->owned = xalloc_aligned(total * sizeof(float));
    m->layer = xcalloc((size_t)L, sizeof(gpt2_layer));
    float *p = m->owned;
    rng_t r;
    rng_seed(&r, seed);
    /* Normal(0, 0.02) by Box-Muller, LayerNorm weights 1 and biases 0 as HF initializes. */
#define TAKE(n) (p += (n), p - (n))
    float *all = p;
    for (size_t i = 0; i + 1 < total; i += 2) {
        float u1 = rng_uniform(&r), u2 = rng_uniform(&r);
        float rad = sqrtf(-2.0f * logf(u1 + 1e-12f)) * 0.02f;
        all[i] = rad * cosf(6.2831853f * u2);
        all[i + 1] = rad * sinf(6.2831853f * u2);
    }
    m->wte = TAKE(V * C);
    m->wpe = TAKE(P * C);
    float *lnf_w = TAKE(C), *lnf_b = TAKE(C);
    for (size_t i = 0; i < C; i++) lnf_w[i] = 1, lnf_b[i] = 0;
    m->lnf_w = lnf_w;
    m->lnf_b = lnf_b;
    for (int l = 0; l < L; l++) {
        gpt2_layer *y = &m->layer[l];
        float *w1 = TAKE(C), *b1 = TAKE(C), *w2 = TAKE(C), *b2 = TAKE(C);
        for (size_t i = 0; i < C; i++) w1[i] = w2[i] = 1, b1[i] = b2[i] = 0;
        y->ln1_w = w1, y->ln1_b = b1, y->ln2_w = w2, y->ln2_b = b2;
        y->qkv_w = TAKE(C * 3 * C);
        y->qkv_b = TAKE(3 * C);
        y->aproj_w = TAKE(C * C);
        y->aproj_b = TAKE(C);
        y->fc_w = TAKE(C * F);
        y->fc_b = TAKE(F);
        y->fproj_w = TAKE(F * C);
        y->fproj_b = TAKE(C);
    }
    m->lm_head = c->tied ? m->wte : TAKE(V * C);
#undef TAKE
}

void gpt2_free(gpt2 *m) {
    if (!m) return;
    st_close(m->st);
    if (!m->owned_shared) free(m->owned); /* a shared block belongs to its allocator */
    free(m->layer);
    free(m->sites);
    memset(m, 0, sizeof *m);
}

void gpt2_site_weights(const gpt2 *m, int site, const float **w, const float **b) {
    const gpt2_layer *y = &m->layer[site / GPT2_SITES_PER_LAYER];
    switch (site % GPT2_SITES_PER_LAYER) {
    case GPT2_SITE_QKV: *w = y->qkv_w, *b = y->qkv_b; break;
    case GPT2_SITE_APROJ: *w = y->aproj_w, *b = y->aproj_b; break;
    case GPT2_SITE_FC: *w = y->fc_w, *b = y->fc_b; break;
    default: *w = y->fproj_w, *b = y->fproj_b; break;
    }
}

/* ---------------------------------------------------------------- workspace */

struct gpt2_acts {
    int Bmax, Tmax, B, T;
    size_t bytes;
    float *res;                  /* (L+1, BT, C) residual stream entering each layer; [L] the top */
    float *ln1, *ln1_mean, *ln1_rstd; /* (L, BT, C), (L, BT) */
    float *qkv;                  /* (L, BT, 3C) */
    float *att;                  /* (L, B, H, T, T) */
    float *atty;                 /* (L, BT, C) */
    float *res2;                 /* (L, BT, C) */
    float *ln2, *ln2_mean, *ln2_rstd;
    float *fch, *fch_gelu;       /* (L, BT, F) */
    float *lnf, *lnf_mean, *lnf_rstd; /* (BT, C), (BT) */
    float *logits;               /* (BT, V) */
    float *lse;                  /* (BT) */
    int32_t *targets;            /* (BT) */
    int32_t *tokens;             /* (BT) of the last forward (full fine-tuning's embedding gradient) */
    float *u;                    /* LoRA x A^T per adapted site: (BT, r) each */
    size_t *u_off;               /* (n_sites) offset into u, SIZE_MAX if the site has none */
    int r;
    /* backward scratch */
    float *dres;                 /* (BT, C) */
    float *d1, *d2;              /* (BT, max(3C, F)) */
    float *att_scratch;          /* (threads, T, T) */
    float *du;                   /* (BT, r) */
    float *dropx;                /* (BT, max(C, F)) dropout-masked input */
    /* dropout of the last forward */
    int train;
    uint64_t drop_seed;
    int64_t *sample_ids;         /* (B) */
};

gpt2_acts *gpt2_acts_create(const gpt2 *m, const lora_adapter *a, int B, int T) {
    const gpt2_config *c = &m->cfg;
    size_t L = (size_t)c->n_layer, C = (size_t)c->n_embd, F = (size_t)c->n_inner, V = (size_t)c->vocab_size,
           H = (size_t)c->n_head;
    size_t BT = (size_t)B * (size_t)T, W = 3 * C > F ? 3 * C : F;
    gpt2_acts *s = xcalloc(1, sizeof *s);
    s->Bmax = B;
    s->Tmax = T;
    int r = a ? a->spec.r : 0;
    s->r = r;
    s->u_off = xcalloc((size_t)m->n_sites, sizeof(size_t));
    size_t nu = 0;
    for (int i = 0; i < m->n_sites; i++) {
        s->u_off[i] = SIZE_MAX;
        if (a && a->site_mod[i] >= 0) {
            s->u_off[i] = nu;
            nu += BT * (size_t)r;
        }
    }
    int nth = omp_get_max_threads();
#define ALLOC(field, n)                                                                                                \
    do {                                                                                                               \
        s->field = xalloc_aligned((n) * sizeof(*s->field));                                                           \
        s->bytes += (n) * sizeof(*s->field);                                                                           \
    } while (0)
    ALLOC(res, (L + 1) * BT * C);
    ALLOC(ln1, L * BT * C);
    ALLOC(ln1_mean, L * BT);
    ALLOC(ln1_rstd, L * BT);
    ALLOC(qkv, L * BT * 3 * C);
    ALLOC(att, L * (size_t)B * H * (size_t)T * (size_t)T);
    ALLOC(atty, L * BT * C);
    ALLOC(res2, L * BT * C);
    ALLOC(ln2, L * BT * C);
    ALLOC(ln2_mean, L * BT);
    ALLOC(ln2_rstd, L * BT);
    ALLOC(fch, L * BT * F);
    ALLOC(fch_gelu, L * BT * F);
    ALLOC(lnf, BT * C);
    ALLOC(lnf_mean, BT);
    ALLOC(lnf_rstd, BT);
    ALLOC(logits, BT * V);
    ALLOC(lse, BT);
    ALLOC(targets, BT);
    ALLOC(tokens, BT);
    ALLOC(u, nu ? nu : 1);
    ALLOC(dres, BT * C);
    ALLOC(d1, BT * W);
    ALLOC(d2, BT * W);
    ALLOC(att_scratch, (size_t)nth * (size_t)T * (size_t)T);
    ALLOC(du, BT * (size_t)(r ? r : 1));
    ALLOC(dropx, BT * (C > F ? C : F));
    ALLOC(sample_ids, (size_t)B);
#undef ALLOC
    return s;
}

void gpt2_acts_free(gpt2_acts *s) {
    if (!s) return;
    float *bufs[] = {s->res,  s->ln1,      s->ln1_mean, s->ln1_rstd, s->qkv,    s->att,  s->atty,
                     s->res2, s->ln2,      s->ln2_mean, s->ln2_rstd, s->fch,    s->fch_gelu, s->lnf,
                     s->lnf_mean, s->lnf_rstd, s->logits, s->lse,   s->u,      s->dres, s->d1,
                     s->d2,   s->att_scratch, s->du,   s->dropx};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(s->targets);
    free(s->tokens);
    free(s->sample_ids);
    free(s->u_off);
    free(s);
}

size_t gpt2_acts_bytes(const gpt2_acts *s) { return s->bytes; }
const float *gpt2_logits(const gpt2_acts *s) { return s->logits; }

/* ---------------------------------------------------------------- LoRA sites */

/* The dropout mask of (sample, site, position, channel): keep when a hashed
 * uniform is >= p. A pure function, so the backward regenerates it and a
 * sample's mask is the same whichever worker or batch slot computes it. */
static void dropout_apply(float *out, const float *x, const gpt2_acts *s, int site, int N, int in, float p) {
    float keep = 1.0f / (1.0f - p);
    uint32_t thr = (uint32_t)((double)p * 4294967296.0 > 4294967295.0 ? 4294967295.0 : (double)p * 4294967296.0);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        int b = i / s->T, t = i % s->T;
        uint64_t row = mix64(s->drop_seed ^ mix64((uint64_t)s->sample_ids[b] * 0x100000001b3ull +
                                                  (uint64_t)site * 0x9e3779b97f4a7c15ull + (uint64_t)t));
        const float *xi = x + (long)i * in;
        float *oi = out + (long)i * in;
        for (int j = 0; j < in; j++) {
            uint32_t h = (uint32_t)(mix64(row + (uint64_t)j) >> 32);
            oi[j] = h >= thr ? xi[j] * keep : 0.0f;
        }
    }
}

/* out (N, out) [+]= x . W + b, plus the adapter of `site` if any. */
static void site_forward(const gpt2 *m, const lora_adapter *a, gpt2_acts *s, float *out, const float *x, int site,
                         int N, float beta) {
    const float *w, *b;
    gpt2_site_weights(m, site, &w, &b);
    int in = m->sites[site].in, oc = m->sites[site].out;
    matmul_forward(out, x, w, b, N, in, oc, beta);
    int mi = a ? a->site_mod[site] : -1;
    if (mi < 0) return;
    const lora_module *md = &a->mod[mi];
    int r = md->r;
    const float *xin = x;
    if (s->train && a->spec.dropout > 0) {
        dropout_apply(s->dropx, x, s, site, N, in, a->spec.dropout);
        xin = s->dropx;
    }
    float *u = s->u + s->u_off[site];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, r, in, 1.0f, xin, in, lora_A(a, md), in, 0.0f, u, r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, oc, r, md->scale, u, r, lora_B(a, md), r, 1.0f, out, oc);
}

/* Backward of site: adapter gradients into grad; dx (N, in) overwritten with
 * the input gradient when dx != NULL. */
static void site_backward(const gpt2 *m, const lora_adapter *a, gpt2_acts *s, float *grad, float *dx,
                          const float *dout, const float *x, int site, int N) {
    const float *w, *b;
    gpt2_site_weights(m, site, &w, &b);
    int in = m->sites[site].in, oc = m->sites[site].out;
    int mi = a ? a->site_mod[site] : -1;
    if (dx) matmul_backward_input(dx, dout, w, N, in, oc, 0);
    if (mi < 0) return;
    const lora_module *md = &a->mod[mi];
    int r = md->r;
    const float *u = s->u + s->u_off[site];
    float *gA = grad + a->tensor[md->tA].off, *gB = grad + a->tensor[md->tB].off;
    int drop = s->train && a->spec.dropout > 0;
    /* dB += scale dout^T u ; du = scale dout B ; dA += du^T x_dropped */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, oc, r, N, md->scale, dout, oc, u, r, 1.0f, gB, r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, r, oc, md->scale, dout, oc, lora_B(a, md), r, 0.0f,
                s->du, r);
    const float *xin = x;
    if (drop) {
        dropout_apply(s->dropx, x, s, site, N, in, a->spec.dropout);
        xin = s->dropx;
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, in, N, 1.0f, s->du, r, xin, in, 1.0f, gA, in);
    if (!dx) return;
    if (!drop) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, in, r, 1.0f, s->du, r, lora_A(a, md), in, 1.0f, dx,
                    in);
    } else {
        /* dx += mask * (du A) / (1 - p): the mask is the dropout of a ones tensor */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, in, r, 1.0f, s->du, r, lora_A(a, md), in, 0.0f,
                    s->dropx, in);
        float keep = 1.0f / (1.0f - a->spec.dropout);
        uint32_t thr = (uint32_t)((double)a->spec.dropout * 4294967296.0);
#pragma omp parallel for schedule(static)
        for (int i = 0; i < N; i++) {
            int bb = i / s->T, t = i % s->T;
            uint64_t row = mix64(s->drop_seed ^ mix64((uint64_t)s->sample_ids[bb] * 0x100000001b3ull +
                                                      (uint64_t)site * 0x9e3779b97f4a7c15ull + (uint64_t)t));
            float *di = dx + (long)i * in;
            const float *ti = s->dropx + (long)i * in;
            for (int j = 0; j < in; j++) {
                uint32_t h = (uint32_t)(mix64(row + (uint64_t)j) >> 32);
                if (h >= thr) di[j] += ti[j] * keep;
            }
        }
    }
}

/* ---------------------------------------------------------------- forward / backward */

void gpt2_targets_from_labels(int32_t *targets, const int32_t *labels, int B, int T) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int32_t v = t + 1 < T ? labels[b * T + t + 1] : -1;
            targets[b * T + t] = v < 0 ? -1 : v;
        }
}

double gpt2_forward(const gpt2 *m, const lora_adapter *a, gpt2_acts *s, const int32_t *tokens,
                    const int32_t *targets, int B, int T, int train, uint64_t dropout_seed,
                    const int64_t *sample_ids, int64_t *n_targets) {
    const gpt2_config *c = &m->cfg;
    int L = c->n_layer, C = c->n_embd, F = c->n_inner, V = c->vocab_size, H = c->n_head;
    int N = B * T;
    size_t NC = (size_t)N * C;
    if (B > s->Bmax || T > s->Tmax || T > c->n_positions) {
        /* a caller's bug, not bad input: the workspace would overflow */
        fprintf(stderr, "gpt2_forward: batch %d x %d exceeds the workspace (%d x %d) or n_positions %d\n", B, T,
                s->Bmax, s->Tmax, c->n_positions);
        abort();
    }
    s->B = B;
    s->T = T;
    s->train = train;
    s->drop_seed = dropout_seed;
    for (int b = 0; b < B; b++) s->sample_ids[b] = sample_ids ? sample_ids[b] : b;
    memcpy(s->targets, targets, sizeof(int32_t) * (size_t)N);
    memcpy(s->tokens, tokens, sizeof(int32_t) * (size_t)N);

    embedding_forward(s->res, tokens, m->wte, m->wpe, B, T, C);
    for (int l = 0; l < L; l++) {
        const gpt2_layer *y = &m->layer[l];
        int site0 = l * GPT2_SITES_PER_LAYER;
        float *res = s->res + (size_t)l * NC, *res_out = s->res + (size_t)(l + 1) * NC;
        float *ln1 = s->ln1 + (size_t)l * NC, *qkv = s->qkv + (size_t)l * N * 3 * C;
        float *att = s->att + (size_t)l * B * H * T * T, *atty = s->atty + (size_t)l * NC;
        float *res2 = s->res2 + (size_t)l * NC, *ln2 = s->ln2 + (size_t)l * NC;
        float *fch = s->fch + (size_t)l * N * F, *fcg = s->fch_gelu + (size_t)l * N * F;
        layernorm_forward(ln1, s->ln1_mean + (size_t)l * N, s->ln1_rstd + (size_t)l * N, res, y->ln1_w, y->ln1_b, N, C,
                          c->ln_eps);
        site_forward(m, a, s, qkv, ln1, site0 + GPT2_SITE_QKV, N, 0.0f);
        attention_forward(atty, att, qkv, B, T, C, H);
        memcpy(res2, res, NC * sizeof(float));
        site_forward(m, a, s, res2, atty, site0 + GPT2_SITE_APROJ, N, 1.0f);
        layernorm_forward(ln2, s->ln2_mean + (size_t)l * N, s->ln2_rstd + (size_t)l * N, res2, y->ln2_w, y->ln2_b, N,
                          C, c->ln_eps);
        site_forward(m, a, s, fch, ln2, site0 + GPT2_SITE_FC, N, 0.0f);
        gelu_forward(fcg, fch, (long)N * F, c->gelu_exact);
        memcpy(res_out, res2, NC * sizeof(float));
        site_forward(m, a, s, res_out, fcg, site0 + GPT2_SITE_FPROJ, N, 1.0f);
    }
    layernorm_forward(s->lnf, s->lnf_mean, s->lnf_rstd, s->res + (size_t)L * NC, m->lnf_w, m->lnf_b, N, C, c->ln_eps);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, V, C, 1.0f, s->lnf, C, m->lm_head, C, 0.0f, s->logits, V);
    return crossentropy_forward(s->lse, s->logits, s->targets, N, V, n_targets);
}

/* The gradient buffer's slice for a model tensor that lives in a->w. */
#define G(ptr) (grad + ((ptr) - a->w))

/* Full fine-tuning's backward: every weight gradient, down to the embeddings. */
static void backward_full(const gpt2 *m, const lora_adapter *a, gpt2_acts *s, float *grad, float dscale) {
    const gpt2_config *c = &m->cfg;
    int L = c->n_layer, C = c->n_embd, F = c->n_inner, V = c->vocab_size, H = c->n_head;
    int B = s->B, T = s->T, N = B * T;
    size_t NC = (size_t)N * C;
    crossentropy_backward_inplace(s->logits, s->lse, s->targets, N, V, dscale);
    /* lm_head (V, C) += dlogits^T lnf */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, V, C, N, 1.0f, s->logits, V, s->lnf, C, 1.0f, G(m->lm_head), C);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, V, 1.0f, s->logits, V, m->lm_head, C, 0.0f, s->d1, C);
    memset(s->dres, 0, NC * sizeof(float));
    layernorm_backward(s->dres, s->d1, s->res + (size_t)L * NC, s->lnf_mean, s->lnf_rstd, m->lnf_w, N, C);
    layernorm_backward_params(G(m->lnf_w), G(m->lnf_b), s->d1, s->res + (size_t)L * NC, s->lnf_mean, s->lnf_rstd,
                              N, C);
    for (int l = L - 1; l >= 0; l--) {
        const gpt2_layer *y = &m->layer[l];
        float *res = s->res + (size_t)l * NC;
        float *ln1 = s->ln1 + (size_t)l * NC, *qkv = s->qkv + (size_t)l * N * 3 * C;
        float *att = s->att + (size_t)l * B * H * T * T, *atty = s->atty + (size_t)l * NC;
        float *res2 = s->res2 + (size_t)l * NC, *ln2 = s->ln2 + (size_t)l * NC;
        float *fch = s->fch + (size_t)l * N * F, *fcg = s->fch_gelu + (size_t)l * N * F;
        const float *m1 = s->ln1_mean + (size_t)l * N, *r1 = s->ln1_rstd + (size_t)l * N;
        const float *m2 = s->ln2_mean + (size_t)l * N, *r2 = s->ln2_rstd + (size_t)l * N;
        matmul_backward_weight(G(y->fproj_w), fcg, s->dres, N, F, C);
        bias_backward(G(y->fproj_b), s->dres, N, C);
        matmul_backward_input(s->d1, s->dres, y->fproj_w, N, F, C, 0);
        gelu_backward(s->d2, s->d1, fch, (long)N * F, c->gelu_exact);
        matmul_backward_weight(G(y->fc_w), ln2, s->d2, N, C, F);
        bias_backward(G(y->fc_b), s->d2, N, F);
        matmul_backward_input(s->d1, s->d2, y->fc_w, N, C, F, 0);
        layernorm_backward(s->dres, s->d1, res2, m2, r2, y->ln2_w, N, C);
        layernorm_backward_params(G(y->ln2_w), G(y->ln2_b), s->d1, res2, m2, r2, N, C);
        matmul_backward_weight(G(y->aproj_w), atty, s->dres, N, C, C);
        bias_backward(G(y->aproj_b), s->dres, N, C);
        matmul_backward_input(s->d1, s->dres, y->aproj_w, N, C, C, 0);
        attention_backward(s->d2, s->att_scratch, s->d1, att, qkv, B, T, C, H);
        matmul_backward_weight(G(y->qkv_w), ln1, s->d2, N, C, 3 * C);
        bias_backward(G(y->qkv_b), s->d2, N, 3 * C);
        matmul_backward_input(s->d1, s->d2, y->qkv_w, N, C, 3 * C, 0);
        layernorm_backward(s->dres, s->d1, res, m1, r1, y->ln1_w, N, C);
        layernorm_backward_params(G(y->ln1_w), G(y->ln1_b), s->d1, res, m1, r1, N, C);
    }
    embedding_backward(G(m->wte), G(m->wpe), s->dres, s->tokens, B, T, C);
}
#undef G

void gpt2_backward(const gpt2 *m, const lora_adapter *a, gpt2_acts *s, float *grad, float dscale) {
    if (a && a->full) {
        backward_full(m, a, s, grad, dscale);
        return;
    }
    if (!a || a->n_mod == 0) return;
    const gpt2_config *c = &m->cfg;
    int L = c->n_layer, C = c->n_embd, F = c->n_inner, V = c->vocab_size, H = c->n_head;
    int B = s->B, T = s->T, N = B * T;
    size_t NC = (size_t)N * C;
    int first = a->mod[0].site; /* modules are in graph order */

    crossentropy_backward_inplace(s->logits, s->lse, s->targets, N, V, dscale);
    /* dlnf = dlogits . lm_head ; dres = LN_f'(dlnf) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, V, 1.0f, s->logits, V, m->lm_head, C, 0.0f, s->d1, C);
    memset(s->dres, 0, NC * sizeof(float));
    layernorm_backward(s->dres, s->d1, s->res + (size_t)L * NC, s->lnf_mean, s->lnf_rstd, m->lnf_w, N, C);

    for (int l = L - 1; l >= 0; l--) {
        const gpt2_layer *y = &m->layer[l];
        int site0 = l * GPT2_SITES_PER_LAYER;
        if (site0 + GPT2_SITES_PER_LAYER - 1 < first) break;
        float *res = s->res + (size_t)l * NC;
        float *ln1 = s->ln1 + (size_t)l * NC, *qkv = s->qkv + (size_t)l * N * 3 * C;
        float *att = s->att + (size_t)l * B * H * T * T, *atty = s->atty + (size_t)l * NC;
        float *res2 = s->res2 + (size_t)l * NC, *ln2 = s->ln2 + (size_t)l * NC;
        float *fch = s->fch + (size_t)l * N * F, *fcg = s->fch_gelu + (size_t)l * N * F;
        int st;
        /* mlp.c_proj: dout = dres; d1 = d(gelu out) */
        st = site0 + GPT2_SITE_FPROJ;
        site_backward(m, a, s, grad, st > first ? s->d1 : NULL, s->dres, fcg, st, N);
        if (st <= first) return;
        gelu_backward(s->d2, s->d1, fch, (long)N * F, c->gelu_exact);
        st = site0 + GPT2_SITE_FC;
        site_backward(m, a, s, grad, st > first ? s->d1 : NULL, s->d2, ln2, st, N);
        if (st <= first) return;
        layernorm_backward(s->dres, s->d1, res2, s->ln2_mean + (size_t)l * N, s->ln2_rstd + (size_t)l * N, y->ln2_w,
                           N, C);
        st = site0 + GPT2_SITE_APROJ;
        site_backward(m, a, s, grad, st > first ? s->d1 : NULL, s->dres, atty, st, N);
        if (st <= first) return;
        attention_backward(s->d2, s->att_scratch, s->d1, att, qkv, B, T, C, H);
        st = site0 + GPT2_SITE_QKV;
        site_backward(m, a, s, grad, st > first ? s->d1 : NULL, s->d2, ln1, st, N);
        if (st <= first) return;
        layernorm_backward(s->dres, s->d1, res, s->ln1_mean + (size_t)l * N, s->ln1_rstd + (size_t)l * N, y->ln1_w, N,
                           C);
    }
}

double gpt2_step_flops(const gpt2 *m, const lora_adapter *a, int B, int T) {
    const gpt2_config *c = &m->cfg;
    double N = (double)B * T, C = c->n_embd, F = c->n_inner, V = c->vocab_size, L = c->n_layer;
    double att = 2.0 * 2.0 * B * T * (double)T * C; /* QK^T and PV over all heads */
    double lin = 2.0 * N * (C * 3 * C + C * C + C * F + F * C);
    double fwd = L * (lin + att) + 2.0 * N * C * V;
    if (a && a->full) /* input gradients (attention twice the forward's) and every weight gradient */
        return fwd + L * (lin + 2.0 * att) + 2.0 * N * C * V + L * lin + 2.0 * N * C * V;
    if (!a || a->n_mod == 0) return fwd;
    int first = a->mod[0].site;
    double bwd = 2.0 * N * C * V; /* dlnf */
    for (int st = m->n_sites - 1; st >= first; st--) {
        double in = m->sites[st].in, out = m->sites[st].out;
        if (st > first) bwd += 2.0 * N * in * out;
        if (st % GPT2_SITES_PER_LAYER == GPT2_SITE_APROJ && st > first) bwd += 2.0 * att; /* attention backward */
    }
    double lora = 0;
    for (int i = 0; i < a->n_mod; i++) {
        const lora_module *md = &a->mod[i];
        double r = md->r, in = md->in, out = md->out;
        lora += 2.0 * N * r * (in + out);          /* forward */
        lora += 2.0 * N * r * (2 * out + in);      /* dB, du, dA */
        if (md->site > first) lora += 2.0 * N * r * in; /* dx through A */
    }
    return fwd + bwd + lora;
}
