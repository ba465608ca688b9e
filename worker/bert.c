/*
 * BERT (HF BertForSequenceClassification and BertForTokenClassification) as a
 * model family (see include/model.h): config, the tensor table, forward and
 * backward with LoRA, the classifier trainable as a whole (peft's
 * modules_to_save).
 *
 * Legend: B batch, T tokens, N = B*T, C hidden_size, H heads, hs = C/H,
 * F intermediate_size, V vocab, P max positions, TT type vocab, L layers,
 * K labels (num_labels), R classifier rows (B for SEQ_CLS, N for TOKEN_CLS).
 *
 * The graph (post-LN; HF transformers 5.x numerics, see kernels_bert.h), with
 * the adaptable sites marked [site]:
 *   emb  = (wte[tok] + wtt[type]) + wpe[t]               (N, C)
 *   x0   = LN_emb(emb)
 * per layer, x = x_l:
 *   q, k, v = x W^T + b   [attention.self.query/key/value] (N, C)
 *   ctx  = attention(q, k, v, mask)                        (N, C)
 *   s1   = ctx Wo^T + bo [attention.output.dense] + x
 *   h1   = LN1(s1)                                       (attention.output.LayerNorm)
 *   f    = h1 Wi^T + bi  [intermediate.dense]            (N, F)
 *   s2   = gelu(f) Wo2^T + bo2 [output.dense] + h1
 *   x_l+1 = LN2(s2)                                      (output.LayerNorm)
 * SEQ_CLS: pooled = tanh(x_L[:, 0] Wp^T + bp) [bert.pooler.dense] (B, C),
 *          logits = pooled Wc^T + bc (B, K); loss: mean cross-entropy over the
 *          labeled sequences, or (num_labels 1, HF's "regression") MSE over B.
 * TOKEN_CLS: logits = x_L Wc^T + bc (B, T, K); mean cross-entropy over the
 *          labeled tokens (-100 ignored). BertForTokenClassification has no
 *          pooler.
 * HF's dropouts are not applied (training here is dropout-free but for
 * LoRA's own dropout). Weights keep nn.Linear's layout (out, in). Every
 * weight is read through model_w and its gradient formed only where model_g
 * gives a place. The backward goes down to the lowest trainable tensor and
 * never below: with LoRA on layer l's sites and the classifier trained, the
 * layers under l are never touched; with the classifier alone, the backward
 * stops after the classifier's gradients.
 */
#include <cJSON.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "kernels_bert.h"
#include "model.h"
#include "util.h"

typedef struct {
    int n_layer, n_head, hidden, inter, vocab, max_pos, type_vocab, n_labels;
    int pad_id;     /* nn.Embedding padding_idx of word_embeddings (-1: none) */
    float ln_eps;
    int gelu_exact; /* 1: "gelu" (erf); 0: the tanh forms */
    int task;       /* model_task: TASK_SEQ_CLS or TASK_TOKEN_CLS */
    int regression; /* SEQ_CLS with problem_type "regression" (num_labels 1 by default) */
} bert_config;

/* The tensor table: the embeddings, then 16 per layer, then the pooler
 * (SEQ_CLS only), then the classifier. */
enum { T_WTE = 0, T_WPE, T_WTT, T_ELN_W, T_ELN_B, T_LAYER0 };
enum { L_Q_W = 0, L_Q_B, L_K_W, L_K_B, L_V_W, L_V_B, L_AO_W, L_AO_B, L_LN1_W, L_LN1_B, L_I_W, L_I_B, L_O_W, L_O_B,
       L_LN2_W, L_LN2_B, L_PER };
#define TL(l, k) (T_LAYER0 + (l) * L_PER + (k))
/* sites per layer, in graph order (q, k, v are parallel); the pooler is site S_PER * L */
enum { S_Q = 0, S_K, S_V, S_AO, S_I, S_O, S_PER };

static const bert_config *cfg_of(const model *m) { return (const bert_config *)m->impl; }
static int t_pool_w(const bert_config *c) { return TL(c->n_layer, 0); }
static int t_cls_w(const bert_config *c) { return TL(c->n_layer, 0) + (c->task == TASK_SEQ_CLS ? 2 : 0); }
static int s_pool(const bert_config *c) { return c->n_layer * S_PER; }

/* ---------------------------------------------------------------- config and table */

#define ARCH_SEQ "BertForSequenceClassification"
#define ARCH_TOK "BertForTokenClassification"

/* The head from "architectures": the first entry this family knows. */
static int read_architectures(bert_config *c, const cJSON *root, const char *path, struct lerr *e) {
    const cJSON *ar = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    if (!ar || cJSON_IsNull(ar))
        return lerr_set(e, "%s: missing \"architectures\" (a list naming the head: %s or %s)", path, ARCH_SEQ, ARCH_TOK);
    if (!cJSON_IsArray(ar) || cJSON_GetArraySize(ar) < 1)
        return lerr_set(e, "%s: \"architectures\" must be a non-empty list of strings", path);
    const cJSON *it;
    cJSON_ArrayForEach(it, ar) {
        if (!cJSON_IsString(it)) return lerr_set(e, "%s: \"architectures\" must be a list of strings", path);
        if (!strcmp(it->valuestring, ARCH_SEQ)) c->task = TASK_SEQ_CLS;
        else if (!strcmp(it->valuestring, ARCH_TOK)) c->task = TASK_TOKEN_CLS;
        else continue;
        return 0;
    }
    return lerr_set(e, "%s: architectures \"%s\" is not supported for bert (supported: %s, %s)", path,
                    cJSON_GetArrayItem(ar, 0)->valuestring, ARCH_SEQ, ARCH_TOK);
}

/* num_labels as HF derives it: len(id2label); a "num_labels" key must agree;
 * neither: 2 (PretrainedConfig's default). */
static int read_labels(model *m, bert_config *c, const cJSON *root, const char *path, struct lerr *e) {
    const int max_labels = 1 << 16;
    int from_key = 0;
    if (model_json_int(root, "num_labels", &from_key, 0, 1, max_labels, path, e)) return -1;
    const cJSON *id2 = cJSON_GetObjectItemCaseSensitive(root, "id2label");
    int n = 0;
    if (id2 && !cJSON_IsNull(id2)) {
        if (!cJSON_IsObject(id2))
            return lerr_set(e, "%s: \"id2label\" must be an object {\"0\": name, ...}", path);
        n = cJSON_GetArraySize(id2);
        if (n < 1 || n > max_labels) return lerr_set(e, "%s: \"id2label\" has %d entries (1 to %d)", path, n, max_labels);
        unsigned char *seen = calloc((size_t)n, 1);
        if (!seen) return lerr_set(e, "out of memory");
        const cJSON *it;
        cJSON_ArrayForEach(it, id2) {
            char *end;
            long k = strtol(it->string, &end, 10);
            if (!it->string[0] || *end || k < 0 || k >= n || seen[k] || !cJSON_IsString(it)) {
                free(seen);
                return lerr_set(e, "%s: \"id2label\" must map each of \"0\"..\"%d\" once to a label name (bad key \"%s\")",
                                path, n - 1, it->string);
            }
            seen[k] = 1;
        }
        free(seen);
        const cJSON *l2i = cJSON_GetObjectItemCaseSensitive(root, "label2id");
        if (l2i && !cJSON_IsNull(l2i) && (!cJSON_IsObject(l2i) || cJSON_GetArraySize(l2i) != n))
            return lerr_set(e, "%s: \"label2id\" must be an object with as many entries as id2label (%d)", path, n);
        if (from_key && from_key != n)
            return lerr_set(e, "%s: \"num_labels\" = %d but \"id2label\" has %d entries", path, from_key, n);
        /* the names, for lora predict (keys checked above: each of 0..n-1 once) */
        free(m->label_names);
        m->label_names = calloc((size_t)n, sizeof *m->label_names);
        if (!m->label_names) return lerr_set(e, "out of memory");
        cJSON_ArrayForEach(it, id2) snprintf(m->label_names[strtol(it->string, NULL, 10)], sizeof *m->label_names,
                                             "%s", it->valuestring);
    }
    c->n_labels = n ? n : from_key ? from_key : 2;
    return 0;
}

static int describe(model *m, const void *rootv, const char *path, struct lerr *e) {
    const cJSON *root = rootv;
    bert_config *c = calloc(1, sizeof *c);
    if (!c) return lerr_set(e, "out of memory");
    m->impl = c;
    m->impl_size = sizeof *c;
    if (read_architectures(c, root, path, e)) return -1;
    /* sizes bounded before anything is allocated from them */
    c->type_vocab = 2;
    int pad = 0;
    if (model_json_int(root, "hidden_size", &c->hidden, 1, 1, 1 << 16, path, e) ||
        model_json_int(root, "num_hidden_layers", &c->n_layer, 1, 1, 1024, path, e) ||
        model_json_int(root, "num_attention_heads", &c->n_head, 1, 1, 1 << 12, path, e) ||
        model_json_int(root, "intermediate_size", &c->inter, 1, 1, 1 << 18, path, e) ||
        model_json_int(root, "vocab_size", &c->vocab, 1, 1, 1 << 22, path, e) ||
        model_json_int(root, "max_position_embeddings", &c->max_pos, 1, 1, 1 << 20, path, e) ||
        model_json_int(root, "type_vocab_size", &c->type_vocab, 0, 1, 1 << 16, path, e) ||
        model_json_int(root, "pad_token_id", &pad, 0, -(1 << 22), (1 << 22) - 1, path, e) ||
        read_labels(m, c, root, path, e))
        return -1;
    if (c->hidden % c->n_head)
        return lerr_set(e, "%s: hidden_size %d is not a multiple of num_attention_heads %d", path, c->hidden,
                        c->n_head);
    /* nn.Embedding(padding_idx): within the vocabulary, negative counts from the end */
    if (pad < -c->vocab || pad >= c->vocab)
        return lerr_set(e, "%s: \"pad_token_id\" = %d is outside the vocabulary (vocab_size %d)", path, pad, c->vocab);
    c->pad_id = pad < 0 ? c->vocab + pad : pad;
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(root, "pad_token_id");
    if (pt && cJSON_IsNull(pt)) c->pad_id = -1;
    c->ln_eps = 1e-12f;
    if (model_json_pos(root, "layer_norm_eps", &c->ln_eps, path, e)) return -1;
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    if (act && !cJSON_IsNull(act) && !cJSON_IsString(act))
        return lerr_set(e, "%s: \"hidden_act\" must be a string", path);
    const char *an = cJSON_IsString(act) ? act->valuestring : "gelu";
    if (!strcmp(an, "gelu"))
        c->gelu_exact = 1;
    else if (!strcmp(an, "gelu_new") || !strcmp(an, "gelu_pytorch_tanh") || !strcmp(an, "gelu_fast"))
        c->gelu_exact = 0;
    else
        return lerr_set(e, "%s: hidden_act \"%s\" is not supported (gelu, gelu_new, gelu_pytorch_tanh)", path, an);
    const cJSON *pe = cJSON_GetObjectItemCaseSensitive(root, "position_embedding_type");
    if (pe && !cJSON_IsNull(pe) && !(cJSON_IsString(pe) && !strcmp(pe->valuestring, "absolute")))
        return lerr_set(e, "%s: position_embedding_type %s is not supported (only \"absolute\")", path,
                        cJSON_IsString(pe) ? pe->valuestring : "(not a string)");
    int dec = 0, cross = 0;
    if (model_json_bool(root, "is_decoder", &dec, path, e) ||
        model_json_bool(root, "add_cross_attention", &cross, path, e))
        return -1;
    if (dec || cross)
        return lerr_set(e, "%s: %s = true is not supported (an encoder only)", path,
                        dec ? "is_decoder" : "add_cross_attention");
    const cJSON *prob = cJSON_GetObjectItemCaseSensitive(root, "problem_type");
    if (prob && !cJSON_IsNull(prob) && !cJSON_IsString(prob))
        return lerr_set(e, "%s: \"problem_type\" must be a string or null", path);
    if (c->task == TASK_SEQ_CLS) {
        /* BertForSequenceClassification: null infers "regression" from num_labels == 1 */
        const char *pn = cJSON_IsString(prob) ? prob->valuestring : NULL;
        if (!pn)
            c->regression = c->n_labels == 1;
        else if (!strcmp(pn, "regression"))
            c->regression = 1;
        else if (!strcmp(pn, "single_label_classification"))
            c->regression = 0;
        else
            return lerr_set(e, "%s: problem_type \"%s\" is not supported (single_label_classification, regression)",
                            path, pn);
        if (c->regression && c->n_labels != 1)
            return lerr_set(e, "%s: problem_type \"regression\" with %d labels is not supported (only num_labels 1)",
                            path, c->n_labels);
    } /* BertForTokenClassification ignores problem_type: always cross-entropy */

    int L = c->n_layer;
    int64_t C = c->hidden, F = c->inter, V = c->vocab, P = c->max_pos, TT = c->type_vocab, K = c->n_labels;
    int64_t layer = 4 * (C * C + C) + 2 * (C * F) + F + C + 4 * C;
    int64_t total = V * C + P * C + TT * C + 2 * C + L * layer + (c->task == TASK_SEQ_CLS ? C * C + C : 0) + K * C + K;
    const int64_t max_params = (int64_t)1 << 34;
    if (total > max_params || V * C > INT32_MAX || C * F > INT32_MAX)
        return lerr_set(e, "%s: these sizes make %lld parameters (a tensor of %lld values); this project handles at "
                           "most %lld, and 2^31 values per tensor", path, (long long)total,
                        (long long)(V * C > C * F ? V * C : C * F), (long long)max_params);
    if (model_add_tensor(m, V, C, e, "bert.embeddings.word_embeddings.weight") < 0 ||
        model_add_tensor(m, P, C, e, "bert.embeddings.position_embeddings.weight") < 0 ||
        model_add_tensor(m, TT, C, e, "bert.embeddings.token_type_embeddings.weight") < 0 ||
        model_add_tensor(m, C, 0, e, "bert.embeddings.LayerNorm.weight") < 0 ||
        model_add_tensor(m, C, 0, e, "bert.embeddings.LayerNorm.bias") < 0)
        return -1;
    static const char *const lname[L_PER] = {
        "attention.self.query.weight",   "attention.self.query.bias",    "attention.self.key.weight",
        "attention.self.key.bias",       "attention.self.value.weight",  "attention.self.value.bias",
        "attention.output.dense.weight", "attention.output.dense.bias",  "attention.output.LayerNorm.weight",
        "attention.output.LayerNorm.bias", "intermediate.dense.weight",  "intermediate.dense.bias",
        "output.dense.weight",           "output.dense.bias",            "output.LayerNorm.weight",
        "output.LayerNorm.bias"};
    const int64_t shp[L_PER][2] = {{C, C}, {C, 0}, {C, C}, {C, 0}, {C, C}, {C, 0}, {C, C}, {C, 0},
                                   {C, 0}, {C, 0}, {F, C}, {F, 0}, {C, F}, {C, 0}, {C, 0}, {C, 0}};
    for (int l = 0; l < L; l++)
        for (int k = 0; k < L_PER; k++)
            if (model_add_tensor(m, shp[k][0], shp[k][1], e, "bert.encoder.layer.%d.%s", l, lname[k]) < 0) return -1;
    if (c->task == TASK_SEQ_CLS && (model_add_tensor(m, C, C, e, "bert.pooler.dense.weight") < 0 ||
                                    model_add_tensor(m, C, 0, e, "bert.pooler.dense.bias") < 0))
        return -1;
    if (model_add_tensor(m, K, C, e, "classifier.weight") < 0 || model_add_tensor(m, K, 0, e, "classifier.bias") < 0)
        return -1;
    static const char *const sname[S_PER] = {"attention.self.query", "attention.self.key", "attention.self.value",
                                             "attention.output.dense", "intermediate.dense", "output.dense"};
    const int sw[S_PER] = {L_Q_W, L_K_W, L_V_W, L_AO_W, L_I_W, L_O_W};
    const int sin_[S_PER] = {(int)C, (int)C, (int)C, (int)C, (int)C, (int)F};
    const int sout[S_PER] = {(int)C, (int)C, (int)C, (int)C, (int)F, (int)C};
    for (int l = 0; l < L; l++)
        for (int k = 0; k < S_PER; k++) {
            char name[LORA_NAME];
            snprintf(name, sizeof name, "bert.encoder.layer.%d.%s", l, sname[k]);
            if (model_add_site(m, name, sin_[k], sout[k], TL(l, sw[k]), TL(l, sw[k] + 1), LORA_OUT_IN, e) < 0)
                return -1;
        }
    /* peft's all-linear takes the pooler (SEQ_CLS) but never the classifier: the classifier is not a site */
    if (c->task == TASK_SEQ_CLS &&
        model_add_site(m, "bert.pooler.dense", (int)C, (int)C, t_pool_w(c), t_pool_w(c) + 1, LORA_OUT_IN, e) < 0)
        return -1;
    m->n_params = total;
    m->task = c->task;
    m->fan_in_fan_out = 0;
    m->vocab = c->vocab;
    m->max_positions = c->max_pos;
    m->n_labels = c->n_labels;
    m->n_types = c->type_vocab;
    m->save_modules = "classifier";
    return 0;
}

/* Buffers older exports carry, and (token classification) the pooler of a
 * checkpoint that had one: HF loads those files and leaves them unused. */
static int ignorable(const model *m, const char *k) {
    if (!strncmp(k, "bert.", 5)) k += 5;
    if (!strcmp(k, "embeddings.position_ids") || !strcmp(k, "embeddings.token_type_ids")) return 1;
    return cfg_of(m)->task == TASK_TOKEN_CLS && (!strcmp(k, "pooler.dense.weight") || !strcmp(k, "pooler.dense.bias"));
}

static char *config_json(const model *m) {
    const bert_config *c = cfg_of(m);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model_type", "bert");
    cJSON *ar = cJSON_AddArrayToObject(j, "architectures");
    cJSON_AddItemToArray(ar, cJSON_CreateString(c->task == TASK_SEQ_CLS ? ARCH_SEQ : ARCH_TOK));
    cJSON_AddNumberToObject(j, "num_hidden_layers", c->n_layer);
    cJSON_AddNumberToObject(j, "num_attention_heads", c->n_head);
    cJSON_AddNumberToObject(j, "hidden_size", c->hidden);
    cJSON_AddNumberToObject(j, "intermediate_size", c->inter);
    cJSON_AddNumberToObject(j, "vocab_size", c->vocab);
    cJSON_AddNumberToObject(j, "max_position_embeddings", c->max_pos);
    cJSON_AddNumberToObject(j, "type_vocab_size", c->type_vocab);
    if (c->pad_id >= 0) cJSON_AddNumberToObject(j, "pad_token_id", c->pad_id);
    else cJSON_AddNullToObject(j, "pad_token_id");
    cJSON_AddNumberToObject(j, "layer_norm_eps", (double)c->ln_eps);
    cJSON_AddStringToObject(j, "hidden_act", c->gelu_exact ? "gelu" : "gelu_new");
    cJSON_AddNumberToObject(j, "hidden_dropout_prob", 0.0);
    cJSON_AddNumberToObject(j, "attention_probs_dropout_prob", 0.0);
    cJSON *i2l = cJSON_AddObjectToObject(j, "id2label"), *l2i = cJSON_AddObjectToObject(j, "label2id");
    for (int k = 0; k < c->n_labels; k++) {
        char key[16], name[32];
        snprintf(key, sizeof key, "%d", k);
        snprintf(name, sizeof name, "LABEL_%d", k);
        cJSON_AddStringToObject(i2l, key, name);
        cJSON_AddNumberToObject(l2i, name, k);
    }
    if (c->task == TASK_SEQ_CLS && c->regression) cJSON_AddStringToObject(j, "problem_type", "regression");
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text) {
        fprintf(stderr, "bert: out of memory writing config.json\n");
        exit(1);
    }
    size_t n = strlen(text);
    char *out = xmalloc(n + 2);
    memcpy(out, text, n);
    out[n] = '\n', out[n + 1] = 0;
    free(text);
    return out;
}

/* ---------------------------------------------------------------- workspace */

typedef struct {
    int Bmax, Tmax, B, T, K, rows; /* rows: of the classifier (B or N) */
    int seq;                     /* SEQ_CLS: logits (B, K); else (B, T, K) */
    size_t bytes;
    float *emb, *emb_mean, *emb_rstd; /* (N, C), (N) the embeddings sum before LayerNorm */
    float *res;                  /* (L+1, N, C) each layer's input; [L] the encoder's output */
    float *q, *k, *v, *ctx;      /* (L, N, C) */
    float *att;                  /* (L, B, H, T, T) */
    float *s1, *ln1_mean, *ln1_rstd, *h1; /* (L, N, C), (L, N) */
    float *f, *g;                /* (L, N, F) intermediate before / after GELU */
    float *s2, *ln2_mean, *ln2_rstd; /* (L, N, C), (L, N) */
    float *first, *pooled;       /* (B, C) [CLS] rows, tanh(pooler) (SEQ_CLS) */
    float *logits, *dlogits;     /* (rows, K) */
    float *lse;                  /* (rows) */
    float *values;               /* (B) regression targets */
    int32_t *targets;            /* (rows) class targets, -1 = none */
    int32_t *tokens, *types;     /* (N) of the last forward (embedding gradients) */
    int has_types;
    /* backward scratch */
    float *dres, *da, *db, *tmp, *dq, *dk, *dv; /* (N, C) */
    float *df1, *df2;            /* (N, F) */
    float *dpooled, *dpre, *dfirst; /* (B, C) */
    float *att_scratch;          /* (threads, T, T) */
    lora_ws *lw;
} bert_ws;

static model_ws *ws_create(const model *m, const lora_adapter *a, int B, int T) {
    const bert_config *c = cfg_of(m);
    size_t L = (size_t)c->n_layer, C = (size_t)c->hidden, F = (size_t)c->inter, H = (size_t)c->n_head,
           K = (size_t)c->n_labels;
    size_t N = (size_t)B * (size_t)T, R = c->task == TASK_SEQ_CLS ? (size_t)B : N;
    bert_ws *s = xcalloc(1, sizeof *s);
    s->Bmax = B;
    s->Tmax = T;
    s->K = c->n_labels;
    s->seq = c->task == TASK_SEQ_CLS;
    int nth = omp_get_max_threads();
#define ALLOC(field, n)                                                                                                \
    do {                                                                                                               \
        size_t n_ = (n);                                                                                               \
        s->field = xalloc_aligned((n_ ? n_ : 1) * sizeof(*s->field));                                                 \
        s->bytes += n_ * sizeof(*s->field);                                                                            \
    } while (0)
    ALLOC(emb, N * C);
    ALLOC(emb_mean, N);
    ALLOC(emb_rstd, N);
    ALLOC(res, (L + 1) * N * C);
    ALLOC(q, L * N * C);
    ALLOC(k, L * N * C);
    ALLOC(v, L * N * C);
    ALLOC(ctx, L * N * C);
    ALLOC(att, L * (size_t)B * H * (size_t)T * (size_t)T);
    ALLOC(s1, L * N * C);
    ALLOC(ln1_mean, L * N);
    ALLOC(ln1_rstd, L * N);
    ALLOC(h1, L * N * C);
    ALLOC(f, L * N * F);
    ALLOC(g, L * N * F);
    ALLOC(s2, L * N * C);
    ALLOC(ln2_mean, L * N);
    ALLOC(ln2_rstd, L * N);
    ALLOC(first, (size_t)B * C);
    ALLOC(pooled, (size_t)B * C);
    ALLOC(logits, R * K);
    ALLOC(dlogits, R * K);
    ALLOC(lse, R);
    ALLOC(values, (size_t)B);
    ALLOC(targets, R);
    ALLOC(tokens, N);
    ALLOC(types, N);
    ALLOC(dres, N * C);
    ALLOC(da, N * C);
    ALLOC(db, N * C);
    ALLOC(tmp, N * C);
    ALLOC(dq, N * C);
    ALLOC(dk, N * C);
    ALLOC(dv, N * C);
    ALLOC(df1, N * F);
    ALLOC(df2, N * F);
    ALLOC(dpooled, (size_t)B * C);
    ALLOC(dpre, (size_t)B * C);
    ALLOC(dfirst, (size_t)B * C);
    ALLOC(att_scratch, (size_t)nth * (size_t)T * (size_t)T);
#undef ALLOC
    s->lw = lora_ws_create(a, m->n_site, B, T, (int)(C > F ? C : F));
    s->bytes += s->lw->bytes;
    return (model_ws *)s;
}

static void ws_free(model_ws *ws) {
    bert_ws *s = (bert_ws *)ws;
    if (!s) return;
    float *bufs[] = {s->emb,   s->emb_mean, s->emb_rstd, s->res,      s->q,        s->k,       s->v,     s->ctx,
                     s->att,   s->s1,       s->ln1_mean, s->ln1_rstd, s->h1,       s->f,       s->g,     s->s2,
                     s->ln2_mean, s->ln2_rstd, s->first, s->pooled,   s->logits,   s->dlogits, s->lse,   s->values,
                     s->dres,  s->da,       s->db,       s->tmp,      s->dq,       s->dk,      s->dv,    s->df1,
                     s->df2,   s->dpooled,  s->dpre,     s->dfirst,   s->att_scratch};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(s->targets);
    free(s->tokens);
    free(s->types);
    lora_ws_free(s->lw);
    free(s);
}

static size_t ws_bytes(const model_ws *s) { return ((const bert_ws *)s)->bytes; }

static const float *output(const model_ws *ws, int *ndim, int64_t shape[3]) {
    const bert_ws *s = (const bert_ws *)ws;
    if (s->seq) {
        *ndim = 2;
        shape[0] = s->B, shape[1] = s->K, shape[2] = 0;
    } else {
        *ndim = 3;
        shape[0] = s->B, shape[1] = s->T, shape[2] = s->K;
    }
    return s->logits;
}

/* ---------------------------------------------------------------- forward / backward */

/* The pooler's rows are one per sequence: its LoRA dropout masks are drawn
 * as for position 0 of each sample (the lora_ws row length set to 1), so a
 * sample's mask does not depend on its slot in the batch. */
static void pooler_rows(lora_ws *w, int T) { w->T = T; }

static double forward(const model *m, const lora_adapter *a, model_ws *ws, const model_batch *bt, int train,
                      uint64_t dropout_seed, int64_t *n_targets) {
    bert_ws *s = (bert_ws *)ws;
    const bert_config *c = cfg_of(m);
    int L = c->n_layer, C = c->hidden, F = c->inter, H = c->n_head, K = c->n_labels;
    int B = bt->B, T = bt->T, N = B * T;
    size_t NC = (size_t)N * C;
    if (B > s->Bmax || T > s->Tmax || T > c->max_pos) {
        /* a caller's bug, not bad input: the workspace would overflow */
        fprintf(stderr, "bert forward: batch %d x %d exceeds the workspace (%d x %d) or max_position_embeddings %d\n",
                B, T, s->Bmax, s->Tmax, c->max_pos);
        abort();
    }
    int seq = c->task == TASK_SEQ_CLS, R = seq ? B : N;
    s->B = B, s->T = T, s->rows = R;
    lora_ws_begin(s->lw, train, dropout_seed, bt->sample_ids, B, T);
    /* targets: class ids (-100 = none), or regression values */
    for (int i = 0; i < R; i++) {
        int32_t y = bt->labels ? bt->labels[i] : -100;
        if (seq && c->regression) {
            s->targets[i] = bt->labels || bt->label_values ? 0 : -1;
            s->values[i] = bt->label_values ? bt->label_values[i] : (float)y;
            continue;
        }
        if (y != -100 && (y < 0 || y >= K)) {
            /* callers check labels against n_labels (parity, lora logits): reaching here is their bug */
            fprintf(stderr, "bert forward: label %d outside the model's %d labels\n", y, K);
            abort();
        }
        s->targets[i] = y == -100 ? -1 : y;
    }
    memcpy(s->tokens, bt->tokens, sizeof(int32_t) * (size_t)N);
    s->has_types = bt->type_ids != NULL;
    if (bt->type_ids) memcpy(s->types, bt->type_ids, sizeof(int32_t) * (size_t)N);

    bert_embedding_forward(s->emb, bt->tokens, bt->type_ids, model_w(m, a, T_WTE), model_w(m, a, T_WPE),
                           model_w(m, a, T_WTT), B, T, C);
    layernorm_forward(s->res, s->emb_mean, s->emb_rstd, s->emb, model_w(m, a, T_ELN_W), model_w(m, a, T_ELN_B), N, C,
                      c->ln_eps);
    for (int l = 0; l < L; l++) {
        int st = l * S_PER;
        size_t o = (size_t)l * NC, oF = (size_t)l * N * F;
        float *x = s->res + o, *xo = s->res + o + NC;
        float *q = s->q + o, *k = s->k + o, *v = s->v + o, *ctx = s->ctx + o, *s1 = s->s1 + o, *h1 = s->h1 + o;
        float *f = s->f + oF, *g = s->g + oF, *s2 = s->s2 + o;
        model_linear_forward(m, a, s->lw, st + S_Q, q, x, N, 0.0f);
        model_linear_forward(m, a, s->lw, st + S_K, k, x, N, 0.0f);
        model_linear_forward(m, a, s->lw, st + S_V, v, x, N, 0.0f);
        bert_attention_forward(ctx, s->att + (size_t)l * B * H * T * T, q, k, v, bt->mask, B, T, C, H);
        /* s1 = dense(ctx) + x: the residual goes in as the accumulator (beta 1) */
        memcpy(s1, x, NC * sizeof(float));
        model_linear_forward(m, a, s->lw, st + S_AO, s1, ctx, N, 1.0f);
        layernorm_forward(h1, s->ln1_mean + (size_t)l * N, s->ln1_rstd + (size_t)l * N, s1,
                          model_w(m, a, TL(l, L_LN1_W)), model_w(m, a, TL(l, L_LN1_B)), N, C, c->ln_eps);
        model_linear_forward(m, a, s->lw, st + S_I, f, h1, N, 0.0f);
        gelu_forward(g, f, (long)N * F, c->gelu_exact);
        memcpy(s2, h1, NC * sizeof(float));
        model_linear_forward(m, a, s->lw, st + S_O, s2, g, N, 1.0f);
        layernorm_forward(xo, s->ln2_mean + (size_t)l * N, s->ln2_rstd + (size_t)l * N, s2,
                          model_w(m, a, TL(l, L_LN2_W)), model_w(m, a, TL(l, L_LN2_B)), N, C, c->ln_eps);
    }
    const float *top = s->res + (size_t)L * NC, *xc = top;
    if (seq) {
        bert_first_tokens(s->first, top, B, T, C);
        pooler_rows(s->lw, 1);
        model_linear_forward(m, a, s->lw, s_pool(c), s->pooled, s->first, B, 0.0f);
        pooler_rows(s->lw, T);
        tanh_forward(s->pooled, s->pooled, (long)B * C);
        xc = s->pooled;
    }
    int tc = t_cls_w(c);
    linear_forward(s->logits, xc, model_w(m, a, tc), model_w(m, a, tc + 1), R, C, K, 0.0f);
    if (seq && c->regression) {
        if (!bt->labels && !bt->label_values) {
            *n_targets = 0;
            return 0.0;
        }
        *n_targets = B;
        return mse_forward(s->logits, s->values, B);
    }
    return crossentropy_forward(s->lse, s->logits, s->targets, R, K, n_targets);
}

/* dw, db of a LayerNorm when they are trainable. */
static void ln_params(const lora_adapter *a, float *grad, int tw, int tb, const float *dout, const float *x,
                      const float *mean, const float *rstd, int N, int C) {
    float *gw = model_g(a, grad, tw), *gb = model_g(a, grad, tb);
    if (gw && gb) layernorm_backward_params(gw, gb, dout, x, mean, rstd, N, C);
}

/* The lowest site the backward must reach: the first adapted site, or -1
 * (down to the embeddings) when a whole tensor other than the classifier is
 * trainable; n_site when only the classifier is. */
static int lowest_site(const model *m, const lora_adapter *a) {
    const bert_config *c = cfg_of(m);
    int first = a->n_mod ? a->mod[0].site : m->n_site; /* modules are in site order */
    int tc = t_cls_w(c);
    for (int i = 0; a->whole && i < m->n_tensor; i++)
        if (a->whole[i] >= 0 && i != tc && i != tc + 1) return -1;
    return first;
}

static void backward(const model *m, const lora_adapter *a, model_ws *ws, float *grad, float dscale) {
    bert_ws *s = (bert_ws *)ws;
    if (!a || a->n_tensor == 0) return;
    const bert_config *c = cfg_of(m);
    int L = c->n_layer, C = c->hidden, F = c->inter, H = c->n_head, K = c->n_labels;
    int B = s->B, T = s->T, N = B * T, R = s->rows, seq = c->task == TASK_SEQ_CLS;
    size_t NC = (size_t)N * C;
    int first = lowest_site(m, a);

    /* dlogits (the logits stay as they are for output()) */
    if (seq && c->regression) {
        memset(s->dlogits, 0, sizeof(float) * (size_t)B);
        mse_backward(s->dlogits, s->logits, s->values, B, dscale);
    } else {
        memcpy(s->dlogits, s->logits, sizeof(float) * (size_t)R * K);
        crossentropy_backward_inplace(s->dlogits, s->lse, s->targets, R, K, dscale);
    }
    int tc = t_cls_w(c);
    const float *xc = seq ? s->pooled : s->res + (size_t)L * NC;
    float *gW = model_g(a, grad, tc), *gb = model_g(a, grad, tc + 1);
    if (gW) linear_backward_weight(gW, xc, s->dlogits, R, C, K);
    if (gb) bias_backward(gb, s->dlogits, R, K);
    if (first >= m->n_site) return; /* the classifier alone is trained */

    float *dres = s->dres;
    if (seq) {
        linear_backward_input(s->dpooled, s->dlogits, model_w(m, a, tc), B, C, K, 0);
        memset(s->dpre, 0, sizeof(float) * (size_t)B * C);
        tanh_backward(s->dpre, s->dpooled, s->pooled, (long)B * C);
        int sp = s_pool(c);
        pooler_rows(s->lw, 1);
        model_linear_backward(m, a, s->lw, sp, grad, first < sp ? s->dfirst : NULL, s->dpre, s->first, B);
        pooler_rows(s->lw, T);
        if (first >= sp) return;
        memset(dres, 0, NC * sizeof(float));
        bert_first_tokens_backward(dres, s->dfirst, B, T, C);
    } else {
        linear_backward_input(dres, s->dlogits, model_w(m, a, tc), N, C, K, 0);
    }

    for (int l = L - 1; l >= 0; l--) {
        int base = l * S_PER;
        if (first > base + S_PER - 1) return; /* nothing trainable in this layer or below */
        size_t o = (size_t)l * NC, oF = (size_t)l * N * F;
        const float *x = s->res + o, *q = s->q + o, *k = s->k + o, *v = s->v + o, *ctx = s->ctx + o;
        const float *s1 = s->s1 + o, *h1 = s->h1 + o, *f = s->f + oF, *g = s->g + oF, *s2 = s->s2 + o;
        const float *m1 = s->ln1_mean + (size_t)l * N, *r1 = s->ln1_rstd + (size_t)l * N;
        const float *m2 = s->ln2_mean + (size_t)l * N, *r2 = s->ln2_rstd + (size_t)l * N;
        const float *att = s->att + (size_t)l * B * H * T * T;
        /* LN2: ds2 (da) from dres */
        float *ds2 = s->da, *ds1 = s->db;
        memset(ds2, 0, NC * sizeof(float));
        layernorm_backward(ds2, dres, s2, m2, r2, model_w(m, a, TL(l, L_LN2_W)), N, C);
        ln_params(a, grad, TL(l, L_LN2_W), TL(l, L_LN2_B), dres, s2, m2, r2, N, C);
        /* output.dense: dg (df1) */
        int st = base + S_O;
        model_linear_backward(m, a, s->lw, st, grad, first < st ? s->df1 : NULL, ds2, g, N);
        if (first >= st) return;
        gelu_backward(s->df2, s->df1, f, (long)N * F, c->gelu_exact);
        st = base + S_I;
        model_linear_backward(m, a, s->lw, st, grad, first < st ? s->tmp : NULL, s->df2, h1, N);
        if (first >= st) return;
        residual_forward(s->tmp, s->tmp, ds2, (long)NC); /* dh1 = residual + intermediate's input gradient */
        memset(ds1, 0, NC * sizeof(float));
        layernorm_backward(ds1, s->tmp, s1, m1, r1, model_w(m, a, TL(l, L_LN1_W)), N, C);
        ln_params(a, grad, TL(l, L_LN1_W), TL(l, L_LN1_B), s->tmp, s1, m1, r1, N, C);
        st = base + S_AO;
        model_linear_backward(m, a, s->lw, st, grad, first < st ? s->tmp : NULL, ds1, ctx, N);
        if (first >= st) return;
        memset(s->dq, 0, NC * sizeof(float));
        memset(s->dk, 0, NC * sizeof(float));
        memset(s->dv, 0, NC * sizeof(float));
        bert_attention_backward(s->dq, s->dk, s->dv, s->att_scratch, s->tmp, att, q, k, v, B, T, C, H);
        /* q, k, v read the same x: below them only the layers under l */
        int below = first < base;
        if (below) memcpy(dres, ds1, NC * sizeof(float));
        const float *dqkv[3] = {s->dq, s->dk, s->dv};
        for (int j = 0; j < 3; j++) {
            model_linear_backward(m, a, s->lw, base + S_Q + j, grad, below ? s->tmp : NULL, dqkv[j], x, N);
            if (below) residual_forward(dres, dres, s->tmp, (long)NC);
        }
        if (!below) return;
    }
    /* the embeddings (full fine-tuning) */
    memset(s->da, 0, NC * sizeof(float));
    layernorm_backward(s->da, dres, s->emb, s->emb_mean, s->emb_rstd, model_w(m, a, T_ELN_W), N, C);
    ln_params(a, grad, T_ELN_W, T_ELN_B, dres, s->emb, s->emb_mean, s->emb_rstd, N, C);
    float *gwte = model_g(a, grad, T_WTE), *gwpe = model_g(a, grad, T_WPE), *gwtt = model_g(a, grad, T_WTT);
    if (gwte || gwpe || gwtt)
        bert_embedding_backward(gwte, gwpe, gwtt, s->da, s->tokens, s->has_types ? s->types : NULL, c->pad_id, B, T,
                                C);
}

static double step_flops(const model *m, const lora_adapter *a, int B, int T) {
    const bert_config *c = cfg_of(m);
    double N = (double)B * T, C = c->hidden, F = c->inter, L = c->n_layer, K = c->n_labels;
    int seq = c->task == TASK_SEQ_CLS;
    double R = seq ? B : N;
    double att = 2.0 * 2.0 * B * T * (double)T * C; /* Q K^T and P V over all heads */
    double layer = 2.0 * N * (4 * C * C + 2 * C * F);
    double head = 2.0 * R * C * K + (seq ? 2.0 * B * C * C : 0);
    double fwd = L * (layer + att) + head;
    if (!a || a->n_tensor == 0) return fwd;
    if (a->full) /* input gradients (attention twice the forward's) and every weight gradient */
        return fwd + L * (2 * layer + 2 * att) + 2 * head;
    int first = lowest_site(m, a);
    double bwd = 0;
    if (a->n_whole) bwd += 2.0 * R * C * K; /* the classifier's weight gradient */
    if (first < m->n_site) bwd += 2.0 * R * C * K; /* its input gradient */
    for (int st = m->n_site - 1; st >= 0 && st >= first; st--) {
        const lora_site *s = &m->site[st];
        int pool = seq && st == s_pool(c), kind = st % S_PER;
        double rows = pool ? B : N;
        int dx = pool || kind >= S_AO ? st > first : first < st - kind; /* q, k, v: only when layers below train */
        if (dx) bwd += 2.0 * rows * s->in * s->out;
        if (!pool && kind == S_AO && st > first) bwd += 2.0 * att; /* attention backward */
    }
    double lora = 0;
    for (int i = 0; i < a->n_mod; i++) {
        const lora_module *md = &a->mod[i];
        double rows = seq && md->site == s_pool(c) ? B : N, r = md->r;
        lora += 2.0 * rows * r * (md->in + md->out);     /* forward */
        lora += 2.0 * rows * r * (2.0 * md->out + md->in); /* dB, du, dA */
        if (md->site > first) lora += 2.0 * rows * r * md->in; /* dx through A */
    }
    return fwd + bwd + lora;
}

const model_family bert_family = {
    .model_type = "bert",
    .modules = "query, key, value (attention.self), attention.output.dense, intermediate.dense, output.dense, "
               "dense, pooler.dense (sequence classification), all-linear, or paths like "
               "bert.encoder.layer.0.attention.self.query",
    .prefix = "bert.",
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
    .full_finetune = 1,
};
