/*
 * GPT-2 (HF GPT2LMHeadModel) as a model family (see include/model.h):
 * config, the tensor table, forward and backward with LoRA.
 *
 * Legend: B batch, T tokens, N = B*T, C channels (n_embd), H heads, hs = C/H,
 * F = n_inner (4C), V vocab, P positions, L layers, r LoRA rank.
 *
 * The graph of one layer, with the adaptable sites marked [site]:
 *   ln1 = LN(res)                         (N, C)
 *   qkv = ln1 . Wqkv + b    [attn.c_attn] (N, 3C)
 *   y   = attention(qkv)                  (N, C)
 *   res2 = res + y . Wap + b [attn.c_proj](N, C)
 *   ln2 = LN(res2)
 *   fch = ln2 . Wfc + b     [mlp.c_fc]    (N, F)
 *   res' = res2 + gelu(fch) . Wfp + b [mlp.c_proj]
 * and at the top lnf = LN(res_L), logits = lnf . wte^T (tied lm_head).
 * Weights keep HF's Conv1D layout (in, out). Every weight is read through
 * model_w (the adapter's copy when it is trained as a whole: full
 * fine-tuning) and its gradient formed only when model_g gives a place for it.
 * The backward computes input gradients down to the first trainable tensor in
 * graph order and never below.
 */
#include <cJSON.h>
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "model.h"
#include "util.h"

typedef struct {
    int n_layer, n_head, n_embd, n_inner, n_positions, vocab_size;
    float ln_eps;
    int gelu_exact; /* 0: tanh form (gelu_new, gelu_pytorch_tanh); 1: erf form (gelu) */
    int tied;       /* lm_head = wte */
} gpt2_config;

/* The tensor table: wte, wpe, ln_f.{weight,bias}, then 12 per layer, then
 * lm_head when untied. */
enum { T_WTE = 0, T_WPE, T_LNF_W, T_LNF_B, T_LAYER0 };
enum { L_LN1_W = 0, L_LN1_B, L_QKV_W, L_QKV_B, L_AP_W, L_AP_B, L_LN2_W, L_LN2_B, L_FC_W, L_FC_B, L_FP_W, L_FP_B,
       L_PER };
#define TL(l, k) (T_LAYER0 + (l) * L_PER + (k))
enum { S_QKV = 0, S_APROJ, S_FC, S_FPROJ, S_PER }; /* sites per layer */

static const gpt2_config *cfg_of(const model *m) { return (const gpt2_config *)m->impl; }
static int t_lm_head(const gpt2_config *c) { return c->tied ? T_WTE : TL(c->n_layer, 0); }

/* ---------------------------------------------------------------- config and table */

static int describe(model *m, const void *rootv, const char *path, struct lerr *e) {
    const cJSON *root = rootv;
    gpt2_config *c = calloc(1, sizeof *c);
    if (!c) return lerr_set(e, "out of memory");
    m->impl = c;
    m->impl_size = sizeof *c;
    c->n_positions = 0;
    /* sizes bounded before anything is allocated from them */
    if (model_json_int(root, "n_embd", &c->n_embd, 1, 1, 1 << 16, path, e) ||
        model_json_int(root, "n_layer", &c->n_layer, 1, 1, 1024, path, e) ||
        model_json_int(root, "n_head", &c->n_head, 1, 1, 1 << 12, path, e) ||
        model_json_int(root, "vocab_size", &c->vocab_size, 1, 1, 1 << 22, path, e) ||
        model_json_int(root, "n_inner", &c->n_inner, 0, 1, 1 << 18, path, e) ||
        model_json_int(root, "n_positions", &c->n_positions, 0, 1, 1 << 20, path, e))
        return -1;
    if (!c->n_positions && model_json_int(root, "n_ctx", &c->n_positions, 1, 1, 1 << 20, path, e)) return -1;
    if (!c->n_inner) c->n_inner = 4 * c->n_embd;
    if (c->n_embd % c->n_head)
        return lerr_set(e, "%s: n_embd %d is not a multiple of n_head %d", path, c->n_embd, c->n_head);
    c->ln_eps = 1e-5f;
    if (model_json_pos(root, "layer_norm_epsilon", &c->ln_eps, path, e)) return -1;
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "activation_function");
    if (act && !cJSON_IsNull(act) && !cJSON_IsString(act))
        return lerr_set(e, "%s: \"activation_function\" must be a string", path);
    const char *an = cJSON_IsString(act) ? act->valuestring : "gelu_new";
    if (!strcmp(an, "gelu_new") || !strcmp(an, "gelu_pytorch_tanh") || !strcmp(an, "gelu_fast"))
        c->gelu_exact = 0;
    else if (!strcmp(an, "gelu"))
        c->gelu_exact = 1;
    else
        return lerr_set(e, "%s: activation_function \"%s\" is not supported (gelu_new, gelu_pytorch_tanh, gelu)", path,
                        an);
    int inv = 0, sw = 1, reorder = 0;
    if (model_json_bool(root, "scale_attn_by_inverse_layer_idx", &inv, path, e) ||
        model_json_bool(root, "scale_attn_weights", &sw, path, e) ||
        model_json_bool(root, "reorder_and_upcast_attn", &reorder, path, e))
        return -1;
    if (inv) return lerr_set(e, "%s: scale_attn_by_inverse_layer_idx = true is not supported", path);
    if (!sw) return lerr_set(e, "%s: scale_attn_weights = false is not supported", path);
    c->tied = 1;
    if (model_json_bool(root, "tie_word_embeddings", &c->tied, path, e)) return -1;

    int L = c->n_layer;
    int64_t C = c->n_embd, F = c->n_inner, V = c->vocab_size, P = c->n_positions;
    if (model_add_tensor(m, V, C, e, "transformer.wte.weight") < 0 ||
        model_add_tensor(m, P, C, e, "transformer.wpe.weight") < 0 ||
        model_add_tensor(m, C, 0, e, "transformer.ln_f.weight") < 0 ||
        model_add_tensor(m, C, 0, e, "transformer.ln_f.bias") < 0)
        return -1;
    static const char *const lname[L_PER] = {"ln_1.weight",       "ln_1.bias",        "attn.c_attn.weight",
                                             "attn.c_attn.bias",  "attn.c_proj.weight", "attn.c_proj.bias",
                                             "ln_2.weight",       "ln_2.bias",        "mlp.c_fc.weight",
                                             "mlp.c_fc.bias",     "mlp.c_proj.weight", "mlp.c_proj.bias"};
    const int64_t shp[L_PER][2] = {{C, 0}, {C, 0}, {C, 3 * C}, {3 * C, 0}, {C, C}, {C, 0},
                                   {C, 0}, {C, 0}, {C, F},     {F, 0},     {F, C}, {C, 0}};
    for (int l = 0; l < L; l++)
        for (int k = 0; k < L_PER; k++)
            if (model_add_tensor(m, shp[k][0], shp[k][1], e, "transformer.h.%d.%s", l, lname[k]) < 0) return -1;
    if (!c->tied && model_add_tensor(m, V, C, e, "lm_head.weight") < 0) return -1;
    static const char *const sname[S_PER] = {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"};
    const int sw_[S_PER] = {L_QKV_W, L_AP_W, L_FC_W, L_FP_W};
    const int sin_[S_PER] = {(int)C, (int)C, (int)C, (int)F}, sout[S_PER] = {(int)(3 * C), (int)C, (int)F, (int)C};
    for (int l = 0; l < L; l++)
        for (int k = 0; k < S_PER; k++) {
            char name[LORA_NAME];
            snprintf(name, sizeof name, "transformer.h.%d.%s", l, sname[k]);
            if (model_add_site(m, name, sin_[k], sout[k], TL(l, sw_[k]), TL(l, sw_[k] + 1), LORA_IN_OUT, e) < 0)
                return -1;
        }
    int64_t layer = 4 * C + (C * 3 * C + 3 * C) + (C * C + C) + (C * F + F) + (F * C + C);
    m->n_params = V * C + P * C + L * layer + 2 * C + (c->tied ? 0 : V * C);
    m->task = TASK_CAUSAL_LM;
    m->fan_in_fan_out = 1;
    m->eos_id = model_json_token_id(root, "eos_token_id", c->vocab_size);
    m->bos_id = model_json_token_id(root, "bos_token_id", c->vocab_size);
    m->vocab = c->vocab_size;
    m->max_positions = c->n_positions;
    return 0;
}

/* Buffers HF writes for old checkpoints, and the tied lm_head. */
static int ignorable(const model *m, const char *k) {
    size_t n = strlen(k);
    if ((n > 9 && !strcmp(k + n - 9, ".attn.bias")) || (n > 16 && !strcmp(k + n - 16, ".attn.masked_bias"))) return 1;
    return cfg_of(m)->tied && !strcmp(k, "lm_head.weight");
}

static char *config_json(const model *m) {
    const gpt2_config *c = cfg_of(m);
    char *buf = xmalloc(1024);
    snprintf(buf, 1024,
             "{\n  \"model_type\": \"gpt2\",\n  \"architectures\": [\"GPT2LMHeadModel\"],\n"
             "  \"n_layer\": %d,\n  \"n_head\": %d,\n  \"n_embd\": %d,\n  \"n_positions\": %d,\n"
             "  \"vocab_size\": %d,\n  \"n_inner\": %d,\n  \"layer_norm_epsilon\": %g,\n"
             "  \"activation_function\": \"%s\",\n  \"tie_word_embeddings\": %s\n}\n",
             c->n_layer, c->n_head, c->n_embd, c->n_positions, c->vocab_size, c->n_inner, (double)c->ln_eps,
             c->gelu_exact ? "gelu" : "gelu_new", c->tied ? "true" : "false");
    return buf;
}

/* ---------------------------------------------------------------- workspace */

typedef struct {
    int Bmax, Tmax, B, T, V;
    size_t bytes;
    float *res;                  /* (L+1, N, C) residual stream entering each layer; [L] the top */
    float *ln1, *ln1_mean, *ln1_rstd; /* (L, N, C), (L, N) */
    float *qkv;                  /* (L, N, 3C) */
    float *att;                  /* (L, B, H, T, T) */
    float *atty;                 /* (L, N, C) */
    float *res2;                 /* (L, N, C) */
    float *ln2, *ln2_mean, *ln2_rstd;
    float *fch, *fch_gelu;       /* (L, N, F) */
    float *lnf, *lnf_mean, *lnf_rstd; /* (N, C), (N) */
    float *logits;               /* (N, V) */
    float *lse;                  /* (N) */
    int32_t *targets;            /* (N) next-token targets, -1 = none */
    int32_t *tokens;             /* (N) of the last forward (the embedding gradient) */
    /* backward scratch */
    float *dres;                 /* (N, C) */
    float *d1, *d2;              /* (N, max(3C, F)) */
    float *att_scratch;          /* (threads, T, T) */
    lora_ws *lw;                 /* LoRA activations and dropout state */
} gpt2_ws;

static model_ws *ws_create(const model *m, const lora_adapter *a, int B, int T) {
    const gpt2_config *c = cfg_of(m);
    size_t L = (size_t)c->n_layer, C = (size_t)c->n_embd, F = (size_t)c->n_inner, V = (size_t)c->vocab_size,
           H = (size_t)c->n_head;
    size_t BT = (size_t)B * (size_t)T, W = 3 * C > F ? 3 * C : F;
    gpt2_ws *s = xcalloc(1, sizeof *s);
    s->Bmax = B;
    s->Tmax = T;
    s->V = c->vocab_size;
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
    ALLOC(dres, BT * C);
    ALLOC(d1, BT * W);
    ALLOC(d2, BT * W);
    ALLOC(att_scratch, (size_t)nth * (size_t)T * (size_t)T);
#undef ALLOC
    s->lw = lora_ws_create(a, m->n_site, B, T, (int)(C > F ? C : F));
    s->bytes += s->lw->bytes;
    return (model_ws *)s;
}

static void ws_free(model_ws *ws) {
    gpt2_ws *s = (gpt2_ws *)ws;
    if (!s) return;
    float *bufs[] = {s->res,  s->ln1,  s->ln1_mean, s->ln1_rstd, s->qkv,      s->att,      s->atty,
                     s->res2, s->ln2,  s->ln2_mean, s->ln2_rstd, s->fch,      s->fch_gelu, s->lnf,
                     s->lnf_mean, s->lnf_rstd, s->logits, s->lse, s->dres, s->d1, s->d2, s->att_scratch};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(s->targets);
    free(s->tokens);
    lora_ws_free(s->lw);
    free(s);
}

static size_t ws_bytes(const model_ws *s) { return ((const gpt2_ws *)s)->bytes; }

static const float *output(const model_ws *ws, int *ndim, int64_t shape[3]) {
    const gpt2_ws *s = (const gpt2_ws *)ws;
    *ndim = 3;
    shape[0] = s->B, shape[1] = s->T, shape[2] = s->V;
    return s->logits;
}

/* ---------------------------------------------------------------- forward / backward */

static double forward(const model *m, const lora_adapter *a, model_ws *ws, const model_batch *bt, int train,
                      uint64_t dropout_seed, int64_t *n_targets) {
    gpt2_ws *s = (gpt2_ws *)ws;
    const gpt2_config *c = cfg_of(m);
    int L = c->n_layer, C = c->n_embd, F = c->n_inner, V = c->vocab_size, H = c->n_head;
    int B = bt->B, T = bt->T, N = B * T;
    size_t NC = (size_t)N * C;
    if (B > s->Bmax || T > s->Tmax || T > c->n_positions) {
        /* a caller's bug, not bad input: the workspace would overflow */
        fprintf(stderr, "gpt2 forward: batch %d x %d exceeds the workspace (%d x %d) or n_positions %d\n", B, T,
                s->Bmax, s->Tmax, c->n_positions);
        abort();
    }
    s->B = B;
    s->T = T;
    lora_ws_begin(s->lw, train, dropout_seed, bt->sample_ids, B, T);
    /* causal LM targets from HF labels: targets[b][t] = labels[b][t+1] (-100 -> none) */
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int32_t v = bt->labels && t + 1 < T ? bt->labels[b * T + t + 1] : -1;
            s->targets[b * T + t] = v < 0 ? -1 : v;
        }
    memcpy(s->tokens, bt->tokens, sizeof(int32_t) * (size_t)N);

    embedding_forward(s->res, bt->tokens, model_w(m, a, T_WTE), model_w(m, a, T_WPE), B, T, C);
    for (int l = 0; l < L; l++) {
        int site0 = l * S_PER;
        float *res = s->res + (size_t)l * NC, *res_out = s->res + (size_t)(l + 1) * NC;
        float *ln1 = s->ln1 + (size_t)l * NC, *qkv = s->qkv + (size_t)l * N * 3 * C;
        float *att = s->att + (size_t)l * B * H * T * T, *atty = s->atty + (size_t)l * NC;
        float *res2 = s->res2 + (size_t)l * NC, *ln2 = s->ln2 + (size_t)l * NC;
        float *fch = s->fch + (size_t)l * N * F, *fcg = s->fch_gelu + (size_t)l * N * F;
        layernorm_forward(ln1, s->ln1_mean + (size_t)l * N, s->ln1_rstd + (size_t)l * N, res,
                          model_w(m, a, TL(l, L_LN1_W)), model_w(m, a, TL(l, L_LN1_B)), N, C, c->ln_eps);
        model_linear_forward(m, a, s->lw, site0 + S_QKV, qkv, ln1, N, 0.0f);
        attention_forward(atty, att, qkv, B, T, C, H);
        memcpy(res2, res, NC * sizeof(float));
        model_linear_forward(m, a, s->lw, site0 + S_APROJ, res2, atty, N, 1.0f);
        layernorm_forward(ln2, s->ln2_mean + (size_t)l * N, s->ln2_rstd + (size_t)l * N, res2,
                          model_w(m, a, TL(l, L_LN2_W)), model_w(m, a, TL(l, L_LN2_B)), N, C, c->ln_eps);
        model_linear_forward(m, a, s->lw, site0 + S_FC, fch, ln2, N, 0.0f);
        gelu_forward(fcg, fch, (long)N * F, c->gelu_exact);
        memcpy(res_out, res2, NC * sizeof(float));
        model_linear_forward(m, a, s->lw, site0 + S_FPROJ, res_out, fcg, N, 1.0f);
    }
    layernorm_forward(s->lnf, s->lnf_mean, s->lnf_rstd, s->res + (size_t)L * NC, model_w(m, a, T_LNF_W),
                      model_w(m, a, T_LNF_B), N, C, c->ln_eps);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, V, C, 1.0f, s->lnf, C, model_w(m, a, t_lm_head(c)), C, 0.0f,
                s->logits, V);
    return crossentropy_forward(s->lse, s->logits, s->targets, N, V, n_targets);
}

/* dw, db of a LayerNorm when they are trainable. */
static void ln_params(const lora_adapter *a, float *grad, int tw, int tb, const float *dout, const float *x,
                      const float *mean, const float *rstd, int N, int C) {
    float *gw = model_g(a, grad, tw), *gb = model_g(a, grad, tb);
    if (gw && gb) layernorm_backward_params(gw, gb, dout, x, mean, rstd, N, C);
}

static void backward(const model *m, const lora_adapter *a, model_ws *ws, float *grad, float dscale) {
    gpt2_ws *s = (gpt2_ws *)ws;
    if (!a || a->n_tensor == 0) return;
    const gpt2_config *c = cfg_of(m);
    int L = c->n_layer, C = c->n_embd, F = c->n_inner, V = c->vocab_size, H = c->n_head;
    int B = s->B, T = s->T, N = B * T;
    size_t NC = (size_t)N * C;
    /* the lowest site with something to train: below it nothing needs a gradient
     * (with whole tensors trainable, everything down to the embeddings does) */
    int first = a->n_whole ? -1 : a->mod[0].site; /* modules are in graph order */

    crossentropy_backward_inplace(s->logits, s->lse, s->targets, N, V, dscale);
    const float *lm_head = model_w(m, a, t_lm_head(c));
    float *g_lm = model_g(a, grad, t_lm_head(c));
    if (g_lm) /* lm_head (V, C) += dlogits^T lnf */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, V, C, N, 1.0f, s->logits, V, s->lnf, C, 1.0f, g_lm, C);
    /* dlnf = dlogits . lm_head ; dres = LN_f'(dlnf) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, V, 1.0f, s->logits, V, lm_head, C, 0.0f, s->d1, C);
    memset(s->dres, 0, NC * sizeof(float));
    layernorm_backward(s->dres, s->d1, s->res + (size_t)L * NC, s->lnf_mean, s->lnf_rstd, model_w(m, a, T_LNF_W), N,
                       C);
    ln_params(a, grad, T_LNF_W, T_LNF_B, s->d1, s->res + (size_t)L * NC, s->lnf_mean, s->lnf_rstd, N, C);

    for (int l = L - 1; l >= 0; l--) {
        int site0 = l * S_PER;
        if (site0 + S_PER - 1 < first) break;
        float *res = s->res + (size_t)l * NC;
        float *ln1 = s->ln1 + (size_t)l * NC, *qkv = s->qkv + (size_t)l * N * 3 * C;
        float *att = s->att + (size_t)l * B * H * T * T, *atty = s->atty + (size_t)l * NC;
        float *res2 = s->res2 + (size_t)l * NC, *ln2 = s->ln2 + (size_t)l * NC;
        float *fch = s->fch + (size_t)l * N * F, *fcg = s->fch_gelu + (size_t)l * N * F;
        const float *m1 = s->ln1_mean + (size_t)l * N, *r1 = s->ln1_rstd + (size_t)l * N;
        const float *m2 = s->ln2_mean + (size_t)l * N, *r2 = s->ln2_rstd + (size_t)l * N;
        int st;
        /* mlp.c_proj: dout = dres; d1 = d(gelu out) */
        st = site0 + S_FPROJ;
        model_linear_backward(m, a, s->lw, st, grad, st > first ? s->d1 : NULL, s->dres, fcg, N);
        if (st <= first) return;
        gelu_backward(s->d2, s->d1, fch, (long)N * F, c->gelu_exact);
        st = site0 + S_FC;
        model_linear_backward(m, a, s->lw, st, grad, st > first ? s->d1 : NULL, s->d2, ln2, N);
        if (st <= first) return;
        layernorm_backward(s->dres, s->d1, res2, m2, r2, model_w(m, a, TL(l, L_LN2_W)), N, C);
        ln_params(a, grad, TL(l, L_LN2_W), TL(l, L_LN2_B), s->d1, res2, m2, r2, N, C);
        st = site0 + S_APROJ;
        model_linear_backward(m, a, s->lw, st, grad, st > first ? s->d1 : NULL, s->dres, atty, N);
        if (st <= first) return;
        attention_backward(s->d2, s->att_scratch, s->d1, att, qkv, B, T, C, H);
        st = site0 + S_QKV;
        model_linear_backward(m, a, s->lw, st, grad, st > first ? s->d1 : NULL, s->d2, ln1, N);
        if (st <= first) return;
        layernorm_backward(s->dres, s->d1, res, m1, r1, model_w(m, a, TL(l, L_LN1_W)), N, C);
        ln_params(a, grad, TL(l, L_LN1_W), TL(l, L_LN1_B), s->d1, res, m1, r1, N, C);
    }
    float *g_wte = model_g(a, grad, T_WTE), *g_wpe = model_g(a, grad, T_WPE);
    if (g_wte && g_wpe) embedding_backward(g_wte, g_wpe, s->dres, s->tokens, B, T, C);
}

static double step_flops(const model *m, const lora_adapter *a, int B, int T) {
    const gpt2_config *c = cfg_of(m);
    double N = (double)B * T, C = c->n_embd, F = c->n_inner, V = c->vocab_size, L = c->n_layer;
    double att = 2.0 * 2.0 * B * T * (double)T * C; /* QK^T and PV over all heads */
    double lin = 2.0 * N * (C * 3 * C + C * C + C * F + F * C);
    double fwd = L * (lin + att) + 2.0 * N * C * V;
    if (a && a->full) /* input gradients (attention twice the forward's) and every weight gradient */
        return fwd + L * (lin + 2.0 * att) + 2.0 * N * C * V + L * lin + 2.0 * N * C * V;
    if (!a || a->n_mod == 0) return fwd;
    int first = a->mod[0].site;
    double bwd = 2.0 * N * C * V; /* dlnf */
    for (int st = m->n_site - 1; st >= first; st--) {
        double in = m->site[st].in, out = m->site[st].out;
        if (st > first) bwd += 2.0 * N * in * out;
        if (st % S_PER == S_APROJ && st > first) bwd += 2.0 * att; /* attention backward */
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

/* ---------------------------------------------------------------- decoding with a KV cache */

typedef struct {
    int Tmax, len;
    float *k, *v;           /* (L, Tmax, C) keys and values of every position so far */
    float *x, *ln, *qkv, *y, *fc, *fcg; /* (Tmax, C), (Tmax, C), (Tmax, 3C), (Tmax, C), (Tmax, F) x2 */
    float *logits;          /* (V) */
    lora_ws *lw;
} gpt2_kv;

static model_kv *kv_create(const model *m, const lora_adapter *a, int max_T) {
    const gpt2_config *c = cfg_of(m);
    size_t L = (size_t)c->n_layer, C = (size_t)c->n_embd, F = (size_t)c->n_inner, T = (size_t)max_T;
    gpt2_kv *kv = xcalloc(1, sizeof *kv);
    kv->Tmax = max_T;
    kv->k = xalloc_aligned(L * T * C * sizeof(float));
    kv->v = xalloc_aligned(L * T * C * sizeof(float));
    kv->x = xalloc_aligned(T * C * sizeof(float));
    kv->ln = xalloc_aligned(T * C * sizeof(float));
    kv->qkv = xalloc_aligned(T * 3 * C * sizeof(float));
    kv->y = xalloc_aligned(T * C * sizeof(float));
    kv->fc = xalloc_aligned(T * F * sizeof(float));
    kv->fcg = xalloc_aligned(T * F * sizeof(float));
    kv->logits = xalloc_aligned((size_t)c->vocab_size * sizeof(float));
    kv->lw = lora_ws_create(a, m->n_site, 1, max_T, (int)(C > F ? C : F));
    return (model_kv *)kv;
}

static void kv_free(model_kv *p) {
    gpt2_kv *kv = (gpt2_kv *)p;
    if (!kv) return;
    float *b[] = {kv->k, kv->v, kv->x, kv->ln, kv->qkv, kv->y, kv->fc, kv->fcg, kv->logits};
    for (size_t i = 0; i < sizeof b / sizeof *b; i++) free(b[i]);
    lora_ws_free(kv->lw);
    free(kv);
}

static const float *decode(const model *m, const lora_adapter *a, model_kv *p, const int32_t *tokens, int n) {
    gpt2_kv *kv = (gpt2_kv *)p;
    const gpt2_config *c = cfg_of(m);
    int L = c->n_layer, C = c->n_embd, F = c->n_inner, V = c->vocab_size, H = c->n_head, pos0 = kv->len;
    if (n < 1 || pos0 + n > kv->Tmax || pos0 + n > c->n_positions) return NULL;
    const float *wte = model_w(m, a, T_WTE), *wpe = model_w(m, a, T_WPE);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < C; j++)
            kv->x[(size_t)i * C + j] = wte[(size_t)tokens[i] * C + j] + wpe[(size_t)(pos0 + i) * C + j];
    lora_ws_begin(kv->lw, 0, 0, NULL, 1, n);
    float mean[1], rstd[1];
    float *mv = xmalloc(sizeof(float) * (size_t)n * 2);
    for (int l = 0; l < L; l++) {
        int site0 = l * S_PER;
        size_t lo = (size_t)l * kv->Tmax * C;
        layernorm_forward(kv->ln, mv, mv + n, kv->x, model_w(m, a, TL(l, L_LN1_W)), model_w(m, a, TL(l, L_LN1_B)), n, C,
                          c->ln_eps);
        model_linear_forward(m, a, kv->lw, site0 + S_QKV, kv->qkv, kv->ln, n, 0.0f);
        for (int i = 0; i < n; i++) { /* this step's keys and values into the cache */
            memcpy(kv->k + lo + (size_t)(pos0 + i) * C, kv->qkv + (size_t)i * 3 * C + C, sizeof(float) * (size_t)C);
            memcpy(kv->v + lo + (size_t)(pos0 + i) * C, kv->qkv + (size_t)i * 3 * C + 2 * C, sizeof(float) * (size_t)C);
        }
        attention_decode(kv->y, kv->qkv, 3 * C, kv->k + lo, kv->v + lo, C, n, pos0, C, H);
        model_linear_forward(m, a, kv->lw, site0 + S_APROJ, kv->x, kv->y, n, 1.0f);
        layernorm_forward(kv->ln, mv, mv + n, kv->x, model_w(m, a, TL(l, L_LN2_W)), model_w(m, a, TL(l, L_LN2_B)), n, C,
                          c->ln_eps);
        model_linear_forward(m, a, kv->lw, site0 + S_FC, kv->fc, kv->ln, n, 0.0f);
        gelu_forward(kv->fcg, kv->fc, (long)n * F, c->gelu_exact);
        model_linear_forward(m, a, kv->lw, site0 + S_FPROJ, kv->x, kv->fcg, n, 1.0f);
    }
    free(mv);
    /* only the last position's logits */
    const float *last = kv->x + (size_t)(n - 1) * C;
    layernorm_forward(kv->ln, mean, rstd, last, model_w(m, a, T_LNF_W), model_w(m, a, T_LNF_B), 1, C, c->ln_eps);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, V, C, 1.0f, model_w(m, a, t_lm_head(c)), C, kv->ln, 1, 0.0f, kv->logits,
                1);
    kv->len += n;
    return kv->logits;
}

const model_family gpt2_family = {
    .model_type = "gpt2",
    .modules = "c_attn, c_proj (attn and mlp), c_fc, attn.c_proj, mlp.c_proj, or paths like transformer.h.0.attn.c_attn",
    .prefix = "transformer.",
    .describe = describe,
    .ignorable = ignorable,
    .ws_create = ws_create,
    .ws_free = ws_free,
    .ws_bytes = ws_bytes,
    .forward = forward,
    .backward = backward,
    .output = output,
    .step_flops = step_flops,
    .config_json = config_json,
    .kv_create = kv_create,
    .kv_free = kv_free,
    .decode = decode,
    .full_finetune = 1,
};
