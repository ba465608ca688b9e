/*
 * LLaMA-family decoding with a KV cache (model_family.decode; see
 * include/model.h and worker/llama.c for the graph). The cache holds each
 * layer's keys (after RoPE) and values for every position so far; a call runs
 * only its n new positions through the layers: q and k rotated by the RoPE
 * rows of their absolute positions (pos0 + i), grouped-query attention of the
 * new queries over the cached keys, and the logits of the last position only.
 * The same kernels as the training forward, so the logits equal the full
 * forward's at every position to float rounding (tests/test_generate.c).
 *
 * Legend as in llama.c: C hidden, Q = Hq*d, K = Hkv*d, F intermediate, V vocab,
 * L layers, Tmax the cache's positions, n the positions of one call.
 */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "kernels_llama.h"
#include "llama_int.h"
#include "util.h"

typedef struct {
    int Tmax, len;
    float *k, *v;               /* (L, Tmax, K) rotated keys and values of every position so far */
    float *x, *h, *q, *y;       /* (Tmax, C), (Tmax, C), (Tmax, Q), (Tmax, Q) */
    float *g, *u, *act;         /* (Tmax, F) x3 */
    float *rstd;                /* (Tmax) */
    float *rope_cos, *rope_sin; /* (Tmax, d/2) */
    float *logits;              /* (V) */
    lora_ws *lw;
} llama_kv;

model_kv *llama_kv_create(const model *m, const lora_adapter *a, int max_T) {
    const llama_config *c = cfg_of(m);
    size_t L = (size_t)c->n_layer, C = (size_t)c->C, F = (size_t)c->F, T = (size_t)max_T;
    size_t Q = (size_t)c->Hq * (size_t)c->d, K = (size_t)c->Hkv * (size_t)c->d, h2 = (size_t)(c->d / 2);
    llama_kv *kv = xcalloc(1, sizeof *kv);
    kv->Tmax = max_T;
    kv->k = xalloc_aligned(L * T * K * sizeof(float));
    kv->v = xalloc_aligned(L * T * K * sizeof(float));
    kv->x = xalloc_aligned(T * C * sizeof(float));
    kv->h = xalloc_aligned(T * C * sizeof(float));
    kv->q = xalloc_aligned(T * Q * sizeof(float));
    kv->y = xalloc_aligned(T * Q * sizeof(float));
    kv->g = xalloc_aligned(T * F * sizeof(float));
    kv->u = xalloc_aligned(T * F * sizeof(float));
    kv->act = xalloc_aligned(T * F * sizeof(float));
    kv->rstd = xalloc_aligned(T * sizeof(float));
    kv->rope_cos = xalloc_aligned(T * h2 * sizeof(float));
    kv->rope_sin = xalloc_aligned(T * h2 * sizeof(float));
    kv->logits = xalloc_aligned((size_t)c->V * sizeof(float));
    float *inv = xmalloc(sizeof(float) * h2);
    rope_inv_freq(inv, c->d, c->theta);
    rope_table(kv->rope_cos, kv->rope_sin, inv, max_T, c->d, 1.0f);
    free(inv);
    size_t max_in = C > Q ? C : Q;
    if (F > max_in) max_in = F;
    kv->lw = lora_ws_create(a, m->n_site, 1, max_T, (int)max_in);
    return (model_kv *)kv;
}

void llama_kv_free(model_kv *p) {
    llama_kv *kv = (llama_kv *)p;
    if (!kv) return;
    float *b[] = {kv->k, kv->v, kv->x,   kv->h,    kv->q,        kv->y,        kv->g,
                  kv->u, kv->act, kv->rstd, kv->rope_cos, kv->rope_sin, kv->logits};
    for (size_t i = 0; i < sizeof b / sizeof *b; i++) free(b[i]);
    lora_ws_free(kv->lw);
    free(kv);
}

const float *llama_decode(const model *m, const lora_adapter *a, model_kv *p, const int32_t *tokens, int n) {
    llama_kv *kv = (llama_kv *)p;
    const llama_config *c = cfg_of(m);
    int L = c->n_layer, C = c->C, F = c->F, V = c->V, Hq = c->Hq, Hkv = c->Hkv, d = c->d, pos0 = kv->len;
    int Q = Hq * d, K = Hkv * d;
    if (n < 1 || pos0 + n > kv->Tmax || pos0 + n > c->P) return NULL;
    const float *emb = model_w(m, a, T_EMBED);
    for (int i = 0; i < n; i++) memcpy(kv->x + (size_t)i * C, emb + (size_t)tokens[i] * C, sizeof(float) * (size_t)C);
    lora_ws_begin(kv->lw, 0, 0, NULL, 1, n);
    const float *cs = kv->rope_cos + (size_t)pos0 * (d / 2), *sn = kv->rope_sin + (size_t)pos0 * (d / 2);
    for (int l = 0; l < L; l++) {
        int site0 = l * S_PER;
        size_t lo = (size_t)l * kv->Tmax * K;
        float *kc = kv->k + lo + (size_t)pos0 * K, *vc = kv->v + lo + (size_t)pos0 * K;
        rmsnorm_forward(kv->h, kv->rstd, kv->x, model_w(m, a, tl(c, l, L_IN_NORM)), n, C, c->eps);
        model_linear_forward(m, a, kv->lw, site0 + S_Q, kv->q, kv->h, n, 0.0f);
        /* this step's keys and values straight into the cache (rows pos0 ..), rotated at their positions */
        model_linear_forward(m, a, kv->lw, site0 + S_K, kc, kv->h, n, 0.0f);
        model_linear_forward(m, a, kv->lw, site0 + S_V, vc, kv->h, n, 0.0f);
        rope_forward_inplace(kv->q, cs, sn, 1, n, Hq, d, Q);
        rope_forward_inplace(kc, cs, sn, 1, n, Hkv, d, K);
        gqa_attention_decode(kv->y, kv->q, Q, kv->k + lo, kv->v + lo, K, n, pos0, Hq, Hkv, d, window_of(c, l));
        model_linear_forward(m, a, kv->lw, site0 + S_O, kv->x, kv->y, n, 1.0f);
        rmsnorm_forward(kv->h, kv->rstd, kv->x, model_w(m, a, tl(c, l, L_POST_NORM)), n, C, c->eps);
        model_linear_forward(m, a, kv->lw, site0 + S_GATE, kv->g, kv->h, n, 0.0f);
        model_linear_forward(m, a, kv->lw, site0 + S_UP, kv->u, kv->h, n, 0.0f);
        swiglu_forward(kv->act, kv->g, kv->u, (long)n * F);
        model_linear_forward(m, a, kv->lw, site0 + S_DOWN, kv->x, kv->act, n, 1.0f);
    }
    /* only the last position's logits */
    rmsnorm_forward(kv->h, kv->rstd, kv->x + (size_t)(n - 1) * C, model_w(m, a, c->t_norm), 1, C, c->eps);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, V, C, 1.0f, model_w(m, a, c->t_lm_head), C, kv->h, 1, 0.0f, kv->logits,
                1);
    kv->len += n;
    return kv->logits;
}
