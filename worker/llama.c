/*
 * The LLaMA family (HF LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)
 * as model families (see include/model.h): three registry rows, one per
 * config.json model_type, sharing this file's config reader, tensor table and
 * graph. They differ only in their config:
 *   llama    attention_bias: q, k, v and o_proj biases; mlp_bias: gate/up/down biases
 *   mistral  no biases; sliding_window (every layer; absent = 4096 as MistralConfig, null = none)
 *   qwen2    q, k, v biases always; use_sliding_window + max_window_layers (or layer_types)
 *
 * Legend: B batch, T tokens, N = B*T, C hidden_size, Hq query heads, Hkv key/value
 * heads (Hq = G * Hkv), d head_dim, Q = Hq*d, K = Hkv*d, F intermediate_size,
 * V vocab, L layers, r LoRA rank.
 *
 * The graph of one layer, with the adaptable sites (nn.Linear, weight (out, in)) marked [site]:
 *   h1  = RMSNorm(res) * w_in                      (N, C)  input_layernorm
 *   q   = h1 Wq^T + bq      [self_attn.q_proj]     (N, Q)  then RoPE in place
 *   k   = h1 Wk^T + bk      [self_attn.k_proj]     (N, K)  then RoPE in place
 *   v   = h1 Wv^T + bv      [self_attn.v_proj]     (N, K)
 *   y   = causal GQA attention(q, k, v)            (N, Q)  (sliding window when the layer has one)
 *   res2 = res + y Wo^T + bo [self_attn.o_proj]    (N, C)
 *   h2  = RMSNorm(res2) * w_post                   (N, C)  post_attention_layernorm
 *   g   = h2 Wg^T + bg      [mlp.gate_proj]        (N, F)
 *   u   = h2 Wu^T + bu      [mlp.up_proj]          (N, F)
 *   res' = res2 + (silu(g) * u) Wd^T + bd [mlp.down_proj]
 * and at the top hf = RMSNorm(res_L) * w_norm, logits = hf lm_head^T (lm_head =
 * embed_tokens when tied). Numerics follow HF in float32 as kernels_llama.h
 * documents (RoPE tables computed the way HF does, RMSNorm in HF's order).
 *
 * Every weight is read through model_w and its gradient formed only where
 * model_g gives a place for it (full fine-tuning: every tensor). The backward
 * computes input gradients down to the first trainable site in graph order and
 * never below; sites that share an input (q/k/v, gate/up) form that input's
 * gradient only when something below them trains.
 *
 * Sliding windows: describe records each layer's window; a sequence longer
 * than a window is refused (llama_check_seq_len, called by the trainer and the
 * tools) until cut windows are checked against HF at the model level. The
 * kernels take the window anyway, so a forward that got past the check would
 * still compute HF's mask.
 */
#include <cJSON.h>
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "kernels_llama.h"
#include "llama_int.h"
#include "model.h"
#include "util.h"

static const char *kind_name(int k) { return k == K_MISTRAL ? "mistral" : k == K_QWEN2 ? "qwen2" : "llama"; }

/* ---------------------------------------------------------------- config and table */

/* The RoPE settings: transformers 5's rope_parameters (or the older
 * rope_scaling, which takes precedence as HF's convert_rope_params_to_dict
 * does), rope_theta inside it or at the top level (default 10000); only the
 * "default" rope_type is implemented, others are refused by name. */
static int read_rope(llama_config *c, const cJSON *root, const char *path, struct lerr *e) {
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
    const char *which = "rope_parameters";
    for (int k = 0; k < 2; k++) {
        const cJSON *o = k ? rp : rs;
        if (o && !cJSON_IsNull(o) && !cJSON_IsObject(o))
            return lerr_set(e, "%s: \"%s\" must be an object or null", path, k ? "rope_parameters" : "rope_scaling");
    }
    if (cJSON_IsObject(rs) && rs->child) /* python: rope_scaling or rope_parameters */
        rp = rs, which = "rope_scaling";
    if (!cJSON_IsObject(rp)) rp = NULL;
    c->theta = 10000.0;
    const cJSON *th = cJSON_GetObjectItemCaseSensitive(root, "rope_theta");
    if (th && !cJSON_IsNull(th)) {
        if (!cJSON_IsNumber(th) || !(th->valuedouble > 0) || th->valuedouble > 1e30)
            return lerr_set(e, "%s: \"rope_theta\" must be a positive number", path);
        c->theta = th->valuedouble;
    }
    const cJSON *prf = cJSON_GetObjectItemCaseSensitive(root, "partial_rotary_factor");
    if (rp) {
        const cJSON *it;
        cJSON_ArrayForEach(it, rp) {
            if (cJSON_IsObject(it))
                return lerr_set(e, "%s: %s.%s: RoPE parameters per layer type are not supported yet", path, which,
                                it->string);
        }
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(rp, "rope_theta");
        if (t && !cJSON_IsNull(t)) {
            if (!cJSON_IsNumber(t) || !(t->valuedouble > 0) || t->valuedouble > 1e30)
                return lerr_set(e, "%s: \"%s.rope_theta\" must be a positive number", path, which);
            c->theta = t->valuedouble;
        }
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(rp, "rope_type");
        const char *tkey = "rope_type";
        if (!ty || cJSON_IsNull(ty)) ty = cJSON_GetObjectItemCaseSensitive(rp, "type"), tkey = "type";
        if (ty && !cJSON_IsNull(ty)) {
            if (!cJSON_IsString(ty)) return lerr_set(e, "%s: \"%s.%s\" must be a string", path, which, tkey);
            if (strcmp(ty->valuestring, "default"))
                return lerr_set(e,
                                "%s: %s.%s \"%s\" is not supported yet (only \"default\" rotary embeddings are "
                                "implemented)",
                                path, which, tkey, ty->valuestring);
        }
        const cJSON *p2 = cJSON_GetObjectItemCaseSensitive(rp, "partial_rotary_factor");
        if (p2 && !cJSON_IsNull(p2)) prf = p2;
    }
    if (prf && !cJSON_IsNull(prf) && !(cJSON_IsNumber(prf) && prf->valuedouble == 1.0))
        return lerr_set(e, "%s: partial_rotary_factor other than 1 is not supported", path);
    return 0;
}

/* The sliding windows of the layers, as each model_type's config defines them. */
static int read_windows(llama_config *c, const cJSON *root, const char *path, struct lerr *e) {
    memset(c->sliding, 0, sizeof c->sliding);
    c->sliding_window = 0;
    if (c->kind == K_LLAMA) return 0;
    const cJSON *sw = cJSON_GetObjectItemCaseSensitive(root, "sliding_window");
    int win = 4096; /* MistralConfig's and Qwen2Config's default when the key is absent */
    if (sw && cJSON_IsNull(sw))
        win = 0;
    else if (sw && model_json_int(root, "sliding_window", &win, 0, 1, 1 << 30, path, e))
        return -1;
    if (c->kind == K_MISTRAL) {
        c->sliding_window = win;
        for (int l = 0; l < c->n_layer; l++) c->sliding[l] = win > 0;
        return 0;
    }
    /* qwen2: sliding_window = None unless use_sliding_window; layer_types, or
     * "sliding_attention" for layers >= max_window_layers */
    c->use_sliding_window = 0;
    c->max_window_layers = 28;
    if (model_json_bool(root, "use_sliding_window", &c->use_sliding_window, path, e) ||
        model_json_int(root, "max_window_layers", &c->max_window_layers, 0, 0, 1 << 30, path, e))
        return -1;
    if (!c->use_sliding_window) win = 0;
    c->sliding_window = win;
    const cJSON *lt = cJSON_GetObjectItemCaseSensitive(root, "layer_types");
    if (lt && !cJSON_IsNull(lt)) {
        if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != c->n_layer)
            return lerr_set(e, "%s: \"layer_types\" must be a list of %d strings (one per layer)", path, c->n_layer);
        int l = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, lt) {
            if (cJSON_IsString(it) && !strcmp(it->valuestring, "full_attention"))
                c->sliding[l] = 0;
            else if (cJSON_IsString(it) && !strcmp(it->valuestring, "sliding_attention"))
                c->sliding[l] = win > 0;
            else
                return lerr_set(e, "%s: layer_types[%d] must be \"full_attention\" or \"sliding_attention\"", path, l);
            l++;
        }
    } else {
        for (int l = 0; l < c->n_layer; l++) c->sliding[l] = win > 0 && l >= c->max_window_layers;
    }
    return 0;
}

static int describe_kind(model *m, const cJSON *root, const char *path, int kind, struct lerr *e) {
    llama_config *c = calloc(1, sizeof *c);
    if (!c) return lerr_set(e, "out of memory");
    m->impl = c;
    m->impl_size = sizeof *c;
    c->kind = kind;
    /* sizes bounded before anything is allocated from them */
    if (model_json_int(root, "hidden_size", &c->C, 1, 1, 1 << 16, path, e) ||
        model_json_int(root, "num_hidden_layers", &c->n_layer, 1, 1, LLAMA_MAX_LAYERS, path, e) ||
        model_json_int(root, "num_attention_heads", &c->Hq, 1, 1, 1 << 12, path, e) ||
        model_json_int(root, "intermediate_size", &c->F, 1, 1, 1 << 18, path, e) ||
        model_json_int(root, "vocab_size", &c->V, 1, 1, 1 << 22, path, e) ||
        model_json_int(root, "max_position_embeddings", &c->P, 1, 1, 1 << 24, path, e))
        return -1;
    /* num_key_value_heads: null -> num_attention_heads; absent -> the config class's default */
    const cJSON *kv = cJSON_GetObjectItemCaseSensitive(root, "num_key_value_heads");
    c->Hkv = kv ? c->Hq : kind == K_MISTRAL ? 8 : kind == K_QWEN2 ? 32 : c->Hq;
    if (model_json_int(root, "num_key_value_heads", &c->Hkv, 0, 1, 1 << 12, path, e)) return -1;
    if (c->Hq % c->Hkv)
        return lerr_set(e, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", path, c->Hq,
                        c->Hkv);
    c->d = 0;
    if (model_json_int(root, "head_dim", &c->d, 0, 1, 1 << 12, path, e)) return -1;
    c->head_dim_given = c->d > 0;
    /* LlamaConfig checks hidden_size % num_attention_heads even with head_dim
     * given; Mistral and Qwen2 need it only to derive head_dim */
    if ((kind == K_LLAMA || !c->head_dim_given) && c->C % c->Hq)
        return lerr_set(e, "%s: hidden_size %d is not a multiple of num_attention_heads %d", path, c->C, c->Hq);
    if (!c->head_dim_given) c->d = c->C / c->Hq;
    if (c->d % 2)
        return lerr_set(e, "%s: head_dim %d is odd; rotary embeddings need an even head_dim", path, c->d);
    c->eps = 1e-6f;
    if (model_json_pos(root, "rms_norm_eps", &c->eps, path, e)) return -1;
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    if (act && !cJSON_IsNull(act) && !cJSON_IsString(act))
        return lerr_set(e, "%s: \"hidden_act\" must be a string", path);
    if (cJSON_IsString(act) && strcmp(act->valuestring, "silu") && strcmp(act->valuestring, "swish"))
        return lerr_set(e, "%s: hidden_act \"%s\" is not supported (silu, swish: the SwiGLU MLP)", path,
                        act->valuestring);
    const cJSON *ad = cJSON_GetObjectItemCaseSensitive(root, "attention_dropout");
    if (ad && !cJSON_IsNull(ad) && !(cJSON_IsNumber(ad) && ad->valuedouble == 0))
        return lerr_set(e, "%s: attention_dropout must be 0 (dropout on attention probabilities is not implemented)",
                        path);
    if (read_rope(c, root, path, e)) return -1;
    c->tied = 0; /* all three config classes default to untied */
    if (model_json_bool(root, "tie_word_embeddings", &c->tied, path, e)) return -1;
    if (kind == K_LLAMA) {
        if (model_json_bool(root, "attention_bias", &c->qkv_bias, path, e) ||
            model_json_bool(root, "mlp_bias", &c->mlp_bias, path, e))
            return -1;
        c->o_bias = c->qkv_bias;
    } else if (kind == K_QWEN2) {
        c->qkv_bias = 1;
    }
    if (read_windows(c, root, path, e)) return -1;

    int L = c->n_layer;
    int64_t C = c->C, Q = (int64_t)c->Hq * c->d, K = (int64_t)c->Hkv * c->d, F = c->F, V = c->V;
    if (Q > 1 << 20 || K > 1 << 20)
        return lerr_set(e, "%s: num_attention_heads x head_dim = %lld is larger than this engine supports (2^20)", path,
                        (long long)Q);
    int64_t layer = 2 * C + C * Q + 2 * C * K + Q * C + 3 * C * F;
    if (c->qkv_bias) layer += Q + 2 * K;
    if (c->o_bias) layer += C;
    if (c->mlp_bias) layer += 2 * F + C;
    m->n_params = V * C + (int64_t)L * layer + C + (c->tied ? 0 : V * C);
    if (m->n_params > LLAMA_MAX_PARAMS)
        return lerr_set(e,
                        "%s: these sizes (hidden_size %d, num_hidden_layers %d, intermediate_size %d, vocab_size %d) "
                        "make %lld parameters, more than the %lld this engine can hold",
                        path, c->C, c->n_layer, c->F, c->V, (long long)m->n_params, LLAMA_MAX_PARAMS);

    /* the table: embed_tokens, the layers, norm, lm_head when untied (HF's order) */
    const int has[L_SLOTS] = {1, 1, c->qkv_bias, 1, c->qkv_bias, 1, c->qkv_bias, 1, c->o_bias, 1,
                              1, c->mlp_bias, 1, c->mlp_bias, 1, c->mlp_bias};
    static const char *const lname[L_SLOTS] = {
        "input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.q_proj.bias", "self_attn.k_proj.weight",
        "self_attn.k_proj.bias", "self_attn.v_proj.weight", "self_attn.v_proj.bias", "self_attn.o_proj.weight",
        "self_attn.o_proj.bias", "post_attention_layernorm.weight", "mlp.gate_proj.weight", "mlp.gate_proj.bias",
        "mlp.up_proj.weight", "mlp.up_proj.bias", "mlp.down_proj.weight", "mlp.down_proj.bias"};
    const int64_t shp[L_SLOTS][2] = {{C, 0}, {Q, C}, {Q, 0}, {K, C}, {K, 0}, {K, C}, {K, 0}, {C, Q},
                                     {C, 0}, {C, 0}, {F, C}, {F, 0}, {F, C}, {F, 0}, {C, F}, {C, 0}};
    c->per_layer = 0;
    for (int k = 0; k < L_SLOTS; k++) c->slot[k] = has[k] ? c->per_layer++ : -1;
    if (model_add_tensor(m, V, C, e, "model.embed_tokens.weight") < 0) return -1;
    for (int l = 0; l < L; l++)
        for (int k = 0; k < L_SLOTS; k++)
            if (has[k] && model_add_tensor(m, shp[k][0], shp[k][1], e, "model.layers.%d.%s", l, lname[k]) < 0)
                return -1;
    if ((c->t_norm = model_add_tensor(m, C, 0, e, "model.norm.weight")) < 0) return -1;
    c->t_lm_head = T_EMBED;
    if (!c->tied && (c->t_lm_head = model_add_tensor(m, V, C, e, "lm_head.weight")) < 0) return -1;

    static const char *const sname[S_PER] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                             "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                             "mlp.down_proj"};
    const int sw[S_PER] = {L_Q_W, L_K_W, L_V_W, L_O_W, L_G_W, L_U_W, L_D_W};
    const int64_t sin_[S_PER] = {C, C, C, Q, C, C, F}, sout[S_PER] = {Q, K, K, C, F, F, C};
    for (int l = 0; l < L; l++)
        for (int k = 0; k < S_PER; k++) {
            char name[LORA_NAME];
            snprintf(name, sizeof name, "model.layers.%d.%s", l, sname[k]);
            if (model_add_site(m, name, (int)sin_[k], (int)sout[k], tl(c, l, sw[k]), tl(c, l, sw[k] + 1), LORA_OUT_IN,
                               e) < 0)
                return -1;
        }
    m->task = TASK_CAUSAL_LM;
    m->fan_in_fan_out = 0;
    m->vocab = c->V;
    m->max_positions = c->P;
    return 0;
}

static int describe_llama(model *m, const void *root, const char *path, struct lerr *e) {
    return describe_kind(m, root, path, K_LLAMA, e);
}
static int describe_mistral(model *m, const void *root, const char *path, struct lerr *e) {
    return describe_kind(m, root, path, K_MISTRAL, e);
}
static int describe_qwen2(model *m, const void *root, const char *path, struct lerr *e) {
    return describe_kind(m, root, path, K_QWEN2, e);
}

/* Buffers older exports carry (the rotary inv_freq), and a tied lm_head. */
static int ignorable(const model *m, const char *k) {
    size_t n = strlen(k);
    if (n > 20 && !strcmp(k + n - 20, ".rotary_emb.inv_freq")) return 1;
    return cfg_of(m)->tied && !strcmp(k, "lm_head.weight");
}

static int check_seq_len(const model *m, int T, struct lerr *e) {
    const llama_config *c = cfg_of(m);
    for (int l = 0; l < c->n_layer; l++)
        if (c->sliding[l] && T > c->sliding_window)
            return lerr_set(e,
                            "sequences of %d tokens are longer than the %s model's sliding_window %d (layer %d): "
                            "sliding windows that cut a sequence are not supported yet; use seq_len <= %d",
                            T, kind_name(c->kind), c->sliding_window, l, c->sliding_window);
    return 0;
}

static char *config_json(const model *m) {
    const llama_config *c = cfg_of(m);
    static const char *const arch[] = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"};
    size_t cap = 4096 + 24 * (size_t)c->n_layer;
    char *buf = xmalloc(cap);
    int n = snprintf(buf, cap,
                     "{\n  \"model_type\": \"%s\",\n  \"architectures\": [\"%s\"],\n  \"num_hidden_layers\": %d,\n"
                     "  \"hidden_size\": %d,\n  \"num_attention_heads\": %d,\n  \"num_key_value_heads\": %d,\n"
                     "  \"intermediate_size\": %d,\n  \"vocab_size\": %d,\n  \"max_position_embeddings\": %d,\n"
                     "  \"rms_norm_eps\": %g,\n  \"hidden_act\": \"silu\",\n  \"tie_word_embeddings\": %s,\n"
                     "  \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": %.17g}",
                     kind_name(c->kind), arch[c->kind], c->n_layer, c->C, c->Hq, c->Hkv, c->F, c->V, c->P,
                     (double)c->eps, c->tied ? "true" : "false", c->theta);
    if (c->head_dim_given) n += snprintf(buf + n, cap - n, ",\n  \"head_dim\": %d", c->d);
    if (c->kind == K_LLAMA)
        n += snprintf(buf + n, cap - n, ",\n  \"attention_bias\": %s,\n  \"mlp_bias\": %s",
                      c->qkv_bias ? "true" : "false", c->mlp_bias ? "true" : "false");
    if (c->kind == K_MISTRAL) {
        if (c->sliding_window)
            n += snprintf(buf + n, cap - n, ",\n  \"sliding_window\": %d", c->sliding_window);
        else
            n += snprintf(buf + n, cap - n, ",\n  \"sliding_window\": null");
    }
    if (c->kind == K_QWEN2) {
        n += snprintf(buf + n, cap - n, ",\n  \"use_sliding_window\": %s,\n  \"sliding_window\": %d,\n"
                                        "  \"max_window_layers\": %d,\n  \"layer_types\": [",
                      c->use_sliding_window ? "true" : "false", c->sliding_window ? c->sliding_window : 4096,
                      c->max_window_layers);
        for (int l = 0; l < c->n_layer; l++)
            n += snprintf(buf + n, cap - n, "%s\"%s\"", l ? ", " : "",
                          c->sliding[l] ? "sliding_attention" : "full_attention");
        n += snprintf(buf + n, cap - n, "]");
    }
    snprintf(buf + n, cap - n, "\n}\n");
    return buf;
}

/* ---------------------------------------------------------------- workspace */

typedef struct {
    int Bmax, Tmax, B, T, V;
    size_t bytes;
    float *res;               /* (L+1, N, C) residual stream entering each layer; [L] the top */
    float *h1, *rstd1;        /* (L, N, C), (L, N) input_layernorm */
    float *q, *k, *v;         /* (L, N, Q), (L, N, K), (L, N, K): q and k after RoPE */
    float *att;               /* (L, B, Hq, T, T) attention probabilities */
    float *atty;              /* (L, N, Q) attention output (o_proj input) */
    float *res2;              /* (L, N, C) */
    float *h2, *rstd2;        /* (L, N, C), (L, N) post_attention_layernorm */
    float *gate, *up, *act;   /* (L, N, F): gate_proj, up_proj outputs, silu(gate) * up */
    float *hf, *rstdf;        /* (N, C), (N) final norm */
    float *logits;            /* (N, V) */
    float *lse;               /* (N) */
    float *rope_cos, *rope_sin; /* (Tmax, d/2) */
    int32_t *targets;         /* (N) next-token targets, -1 = none */
    int32_t *tokens;          /* (N) of the last forward (the embedding gradient) */
    /* backward scratch */
    float *dres;              /* (N, C) */
    float *dh, *dh2;          /* (N, C) gradients of a norm's output (two sites' shares) */
    float *dq, *dk, *dv;      /* (N, Q), (N, K), (N, K) */
    float *dy;                /* (N, max(Q, F)): o_proj or down_proj input gradient */
    float *dg, *du;           /* (N, F) */
    float *att_scratch;       /* gqa_attention_scratch_floats(Tmax) */
    lora_ws *lw;
} llama_ws;

static model_ws *ws_create(const model *m, const lora_adapter *a, int B, int T) {
    const llama_config *c = cfg_of(m);
    size_t L = (size_t)c->n_layer, C = (size_t)c->C, F = (size_t)c->F, V = (size_t)c->V, Hq = (size_t)c->Hq;
    size_t Q = Hq * (size_t)c->d, K = (size_t)c->Hkv * (size_t)c->d;
    size_t N = (size_t)B * (size_t)T, W = Q > F ? Q : F;
    llama_ws *s = xcalloc(1, sizeof *s);
    s->Bmax = B;
    s->Tmax = T;
    s->V = c->V;
#define ALLOC(field, n)                                                                                                \
    do {                                                                                                               \
        s->field = xalloc_aligned((n) * sizeof(*s->field));                                                           \
        s->bytes += (n) * sizeof(*s->field);                                                                           \
    } while (0)
    ALLOC(res, (L + 1) * N * C);
    ALLOC(h1, L * N * C);
    ALLOC(rstd1, L * N);
    ALLOC(q, L * N * Q);
    ALLOC(k, L * N * K);
    ALLOC(v, L * N * K);
    ALLOC(att, L * (size_t)B * Hq * (size_t)T * (size_t)T);
    ALLOC(atty, L * N * Q);
    ALLOC(res2, L * N * C);
    ALLOC(h2, L * N * C);
    ALLOC(rstd2, L * N);
    ALLOC(gate, L * N * F);
    ALLOC(up, L * N * F);
    ALLOC(act, L * N * F);
    ALLOC(hf, N * C);
    ALLOC(rstdf, N);
    ALLOC(logits, N * V);
    ALLOC(lse, N);
    ALLOC(rope_cos, (size_t)T * (size_t)(c->d / 2));
    ALLOC(rope_sin, (size_t)T * (size_t)(c->d / 2));
    ALLOC(targets, N);
    ALLOC(tokens, N);
    ALLOC(dres, N * C);
    ALLOC(dh, N * C);
    ALLOC(dh2, N * C);
    ALLOC(dq, N * Q);
    ALLOC(dk, N * K);
    ALLOC(dv, N * K);
    ALLOC(dy, N * W);
    ALLOC(dg, N * F);
    ALLOC(du, N * F);
    ALLOC(att_scratch, gqa_attention_scratch_floats(T));
#undef ALLOC
    float *inv = xmalloc(sizeof(float) * (size_t)(c->d / 2));
    rope_inv_freq(inv, c->d, c->theta);
    rope_table(s->rope_cos, s->rope_sin, inv, T, c->d, 1.0f);
    free(inv);
    size_t max_in = C > Q ? C : Q;
    if (F > max_in) max_in = F;
    s->lw = lora_ws_create(a, m->n_site, B, T, (int)max_in);
    s->bytes += s->lw->bytes;
    return (model_ws *)s;
}

static void ws_free(model_ws *ws) {
    llama_ws *s = (llama_ws *)ws;
    if (!s) return;
    float *bufs[] = {s->res,   s->h1,   s->rstd1, s->q,        s->k,        s->v,   s->att,  s->atty,
                     s->res2,  s->h2,   s->rstd2, s->gate,     s->up,       s->act, s->hf,   s->rstdf,
                     s->logits, s->lse, s->rope_cos, s->rope_sin, s->dres,   s->dh,  s->dh2,  s->dq,
                     s->dk,    s->dv,   s->dy,    s->dg,       s->du,       s->att_scratch};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(s->targets);
    free(s->tokens);
    lora_ws_free(s->lw);
    free(s);
}

static size_t ws_bytes(const model_ws *s) { return ((const llama_ws *)s)->bytes; }

static const float *output(const model_ws *ws, int *ndim, int64_t shape[3]) {
    const llama_ws *s = (const llama_ws *)ws;
    *ndim = 3;
    shape[0] = s->B, shape[1] = s->T, shape[2] = s->V;
    return s->logits;
}

/* ---------------------------------------------------------------- forward / backward */

static double forward(const model *m, const lora_adapter *a, model_ws *ws, const model_batch *bt, int train,
                      uint64_t dropout_seed, int64_t *n_targets) {
    llama_ws *s = (llama_ws *)ws;
    const llama_config *c = cfg_of(m);
    int L = c->n_layer, C = c->C, F = c->F, V = c->V, Hq = c->Hq, Hkv = c->Hkv, d = c->d;
    int Q = Hq * d, K = Hkv * d;
    int B = bt->B, T = bt->T, N = B * T;
    size_t NC = (size_t)N * C;
    if (B > s->Bmax || T > s->Tmax || T > c->P) {
        /* a caller's bug, not bad input: the workspace would overflow */
        fprintf(stderr, "%s forward: batch %d x %d exceeds the workspace (%d x %d) or max_position_embeddings %d\n",
                kind_name(c->kind), B, T, s->Bmax, s->Tmax, c->P);
        abort();
    }
    s->B = B;
    s->T = T;
    lora_ws_begin(s->lw, train, dropout_seed, bt->sample_ids, B, T);
    /* causal LM targets from HF labels: targets[b][t] = labels[b][t+1] (-100 -> none) */
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int32_t lv = bt->labels && t + 1 < T ? bt->labels[b * T + t + 1] : -1;
            s->targets[b * T + t] = lv < 0 ? -1 : lv;
        }
    memcpy(s->tokens, bt->tokens, sizeof(int32_t) * (size_t)N);
    const float *emb = model_w(m, a, T_EMBED);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) memcpy(s->res + (size_t)i * C, emb + (size_t)bt->tokens[i] * C, sizeof(float) * C);

    for (int l = 0; l < L; l++) {
        int site0 = l * S_PER;
        float *res = s->res + (size_t)l * NC, *res_out = s->res + (size_t)(l + 1) * NC;
        float *h1 = s->h1 + (size_t)l * NC, *h2 = s->h2 + (size_t)l * NC, *res2 = s->res2 + (size_t)l * NC;
        float *q = s->q + (size_t)l * N * Q, *k = s->k + (size_t)l * N * K, *v = s->v + (size_t)l * N * K;
        float *att = s->att + (size_t)l * B * Hq * T * T, *atty = s->atty + (size_t)l * N * Q;
        float *g = s->gate + (size_t)l * N * F, *u = s->up + (size_t)l * N * F, *act = s->act + (size_t)l * N * F;
        rmsnorm_forward(h1, s->rstd1 + (size_t)l * N, res, model_w(m, a, tl(c, l, L_IN_NORM)), N, C, c->eps);
        model_linear_forward(m, a, s->lw, site0 + S_Q, q, h1, N, 0.0f);
        model_linear_forward(m, a, s->lw, site0 + S_K, k, h1, N, 0.0f);
        model_linear_forward(m, a, s->lw, site0 + S_V, v, h1, N, 0.0f);
        rope_forward_inplace(q, s->rope_cos, s->rope_sin, B, T, Hq, d, Q);
        rope_forward_inplace(k, s->rope_cos, s->rope_sin, B, T, Hkv, d, K);
        gqa_attention_forward(atty, att, q, k, v, B, T, Hq, Hkv, d, Q, K, K, window_of(c, l));
        memcpy(res2, res, NC * sizeof(float));
        model_linear_forward(m, a, s->lw, site0 + S_O, res2, atty, N, 1.0f);
        rmsnorm_forward(h2, s->rstd2 + (size_t)l * N, res2, model_w(m, a, tl(c, l, L_POST_NORM)), N, C, c->eps);
        model_linear_forward(m, a, s->lw, site0 + S_GATE, g, h2, N, 0.0f);
        model_linear_forward(m, a, s->lw, site0 + S_UP, u, h2, N, 0.0f);
        swiglu_forward(act, g, u, (long)N * F);
        memcpy(res_out, res2, NC * sizeof(float));
        model_linear_forward(m, a, s->lw, site0 + S_DOWN, res_out, act, N, 1.0f);
    }
    rmsnorm_forward(s->hf, s->rstdf, s->res + (size_t)L * NC, model_w(m, a, c->t_norm), N, C, c->eps);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, V, C, 1.0f, s->hf, C, model_w(m, a, c->t_lm_head), C, 0.0f,
                s->logits, V);
    return crossentropy_forward(s->lse, s->logits, s->targets, N, V, n_targets);
}

/* A norm weight's gradient when it is trainable. */
static void norm_param(const lora_adapter *a, float *grad, int t, const float *dout, const float *x, const float *rstd,
                       int N, int C) {
    float *gw = model_g(a, grad, t);
    if (gw) rmsnorm_backward_params(gw, dout, x, rstd, N, C);
}

static void add_into(float *dst, const float *src, size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

static void backward(const model *m, const lora_adapter *a, model_ws *ws, float *grad, float dscale) {
    llama_ws *s = (llama_ws *)ws;
    if (!a || a->n_tensor == 0) return;
    const llama_config *c = cfg_of(m);
    int L = c->n_layer, C = c->C, F = c->F, V = c->V, Hq = c->Hq, Hkv = c->Hkv, d = c->d;
    int Q = Hq * d, K = Hkv * d;
    int B = s->B, T = s->T, N = B * T;
    size_t NC = (size_t)N * C;
    /* the lowest site with something to train: below it nothing needs a gradient
     * (with whole tensors trainable, everything down to the embedding does) */
    int first = a->n_whole ? -1 : a->mod[0].site; /* modules are in graph order */

    crossentropy_backward_inplace(s->logits, s->lse, s->targets, N, V, dscale);
    const float *lm_head = model_w(m, a, c->t_lm_head);
    float *g_lm = model_g(a, grad, c->t_lm_head);
    if (g_lm) /* lm_head (V, C) += dlogits^T hf */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, V, C, N, 1.0f, s->logits, V, s->hf, C, 1.0f, g_lm, C);
    /* dhf = dlogits . lm_head ; dres = norm'(dhf) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, V, 1.0f, s->logits, V, lm_head, C, 0.0f, s->dh, C);
    memset(s->dres, 0, NC * sizeof(float));
    const float *top = s->res + (size_t)L * NC;
    rmsnorm_backward(s->dres, s->dh, top, s->rstdf, model_w(m, a, c->t_norm), N, C);
    norm_param(a, grad, c->t_norm, s->dh, top, s->rstdf, N, C);

    for (int l = L - 1; l >= 0; l--) {
        int site0 = l * S_PER;
        if (site0 + S_PER - 1 < first) break;
        float *res = s->res + (size_t)l * NC;
        float *h1 = s->h1 + (size_t)l * NC, *h2 = s->h2 + (size_t)l * NC, *res2 = s->res2 + (size_t)l * NC;
        const float *rstd1 = s->rstd1 + (size_t)l * N, *rstd2 = s->rstd2 + (size_t)l * N;
        float *q = s->q + (size_t)l * N * Q, *k = s->k + (size_t)l * N * K, *v = s->v + (size_t)l * N * K;
        float *att = s->att + (size_t)l * B * Hq * T * T, *atty = s->atty + (size_t)l * N * Q;
        float *g = s->gate + (size_t)l * N * F, *u = s->up + (size_t)l * N * F, *act = s->act + (size_t)l * N * F;
        /* mlp.down_proj: dout = dres (the residual's gradient), x = silu(g) * u */
        model_linear_backward(m, a, s->lw, site0 + S_DOWN, grad, first < site0 + S_DOWN ? s->dy : NULL, s->dres, act,
                              N);
        if (first >= site0 + S_DOWN) return;
        memset(s->dg, 0, sizeof(float) * (size_t)N * F);
        memset(s->du, 0, sizeof(float) * (size_t)N * F);
        swiglu_backward(s->dg, s->du, s->dy, g, u, (long)N * F);
        /* gate_proj and up_proj share h2: its gradient only when something below trains */
        int need = first < site0 + S_GATE;
        model_linear_backward(m, a, s->lw, site0 + S_UP, grad, need ? s->dh : NULL, s->du, h2, N);
        if (first >= site0 + S_UP) return;
        model_linear_backward(m, a, s->lw, site0 + S_GATE, grad, need ? s->dh2 : NULL, s->dg, h2, N);
        if (!need) return;
        add_into(s->dh, s->dh2, NC);
        /* res2 = res + o_proj(...) feeds h2 and the residual: dres2 = dres + norm'(dh) */
        rmsnorm_backward(s->dres, s->dh, res2, rstd2, model_w(m, a, tl(c, l, L_POST_NORM)), N, C);
        norm_param(a, grad, tl(c, l, L_POST_NORM), s->dh, res2, rstd2, N, C);
        /* self_attn.o_proj: dout = dres2, x = attention output */
        model_linear_backward(m, a, s->lw, site0 + S_O, grad, first < site0 + S_O ? s->dy : NULL, s->dres, atty, N);
        if (first >= site0 + S_O) return;
        memset(s->dq, 0, sizeof(float) * (size_t)N * Q);
        memset(s->dk, 0, sizeof(float) * (size_t)N * K);
        memset(s->dv, 0, sizeof(float) * (size_t)N * K);
        gqa_attention_backward(s->dq, s->dk, s->dv, s->att_scratch, s->dy, att, q, k, v, B, T, Hq, Hkv, d, Q, K, K,
                               window_of(c, l));
        /* gradients w.r.t. q and k before RoPE (the sites' outputs) */
        rope_backward_inplace(s->dq, s->rope_cos, s->rope_sin, B, T, Hq, d, Q);
        rope_backward_inplace(s->dk, s->rope_cos, s->rope_sin, B, T, Hkv, d, K);
        /* q, k, v share h1 */
        need = first < site0 + S_Q;
        model_linear_backward(m, a, s->lw, site0 + S_V, grad, need ? s->dh : NULL, s->dv, h1, N);
        if (first >= site0 + S_V) return;
        model_linear_backward(m, a, s->lw, site0 + S_K, grad, need ? s->dh2 : NULL, s->dk, h1, N);
        if (need) add_into(s->dh, s->dh2, NC);
        if (first >= site0 + S_K) return;
        model_linear_backward(m, a, s->lw, site0 + S_Q, grad, need ? s->dh2 : NULL, s->dq, h1, N);
        if (!need) return;
        add_into(s->dh, s->dh2, NC);
        rmsnorm_backward(s->dres, s->dh, res, rstd1, model_w(m, a, tl(c, l, L_IN_NORM)), N, C);
        norm_param(a, grad, tl(c, l, L_IN_NORM), s->dh, res, rstd1, N, C);
    }
    float *g_emb = model_g(a, grad, T_EMBED);
    if (g_emb) /* rows in order: deterministic */
        for (int i = 0; i < N; i++) {
            float *dst = g_emb + (size_t)s->tokens[i] * C;
            const float *src = s->dres + (size_t)i * C;
            for (int j = 0; j < C; j++) dst[j] += src[j];
        }
}

static double step_flops(const model *m, const lora_adapter *a, int B, int T) {
    const llama_config *c = cfg_of(m);
    double N = (double)B * T, C = c->C, F = c->F, V = c->V, L = c->n_layer;
    double Q = (double)c->Hq * c->d, K = (double)c->Hkv * c->d;
    double att = 2.0 * 2.0 * B * (double)T * T * Q; /* QK^T and PV over all query heads */
    double lin = 2.0 * N * (C * Q + 2 * C * K + Q * C + 3 * C * F);
    double fwd = L * (lin + att) + 2.0 * N * C * V;
    if (a && a->full) /* input gradients (attention twice the forward's) and every weight gradient */
        return fwd + L * (lin + 2.0 * att) + 2.0 * N * C * V + L * lin + 2.0 * N * C * V;
    if (!a || a->n_mod == 0) return fwd;
    int first = a->mod[0].site;
    double bwd = 2.0 * N * C * V; /* dhf */
    /* a site's input gradient is formed when something trains below its input */
    static const int group[S_PER] = {S_Q, S_Q, S_Q, S_O, S_GATE, S_GATE, S_DOWN};
    for (int st = m->n_site - 1; st >= first; st--) {
        int k = st % S_PER, base = st - k;
        if (first < base + group[k]) bwd += 2.0 * N * m->site[st].in * m->site[st].out;
        if (k == S_O && first < st) bwd += 2.0 * att;
    }
    double lora = 0;
    for (int i = 0; i < a->n_mod; i++) {
        const lora_module *md = &a->mod[i];
        int k = md->site % S_PER, base = md->site - k;
        double r = md->r, in = md->in, out = md->out;
        lora += 2.0 * N * r * (in + out);     /* forward */
        lora += 2.0 * N * r * (2 * out + in); /* dB, du, dA */
        if (first < base + group[k]) lora += 2.0 * N * r * in; /* dx through A */
    }
    return fwd + bwd + lora;
}

#define LLAMA_MODULES                                                                                                  \
    "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj (or self_attn.q_proj, mlp.down_proj, paths like "  \
    "model.layers.0.self_attn.q_proj, a regex in adapter_config.json, all-linear)"

#define LLAMA_FAMILY(type, describe_fn)                                                                                \
    {                                                                                                                  \
        .model_type = type, .modules = LLAMA_MODULES, .prefix = "model.", .describe = describe_fn,                   \
        .ignorable = ignorable, .ws_create = ws_create, .ws_free = ws_free, .ws_bytes = ws_bytes, .forward = forward, \
        .backward = backward, .output = output, .step_flops = step_flops, .config_json = config_json,               \
        .check_seq_len = check_seq_len, .full_finetune = 1, .kv_create = llama_kv_create, .kv_free = llama_kv_free,     \
        .decode = llama_decode,                                                                                        \
    }

const model_family llama_family = LLAMA_FAMILY("llama", describe_llama);
const model_family mistral_family = LLAMA_FAMILY("mistral", describe_mistral);
const model_family qwen2_family = LLAMA_FAMILY("qwen2", describe_qwen2);
