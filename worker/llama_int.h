/*
 * The LLaMA family's config and tensor layout, shared by worker/llama.c (the
 * config reader, the training graph) and worker/llama_decode.c (decoding
 * with a KV cache). Private to those two files.
 */
#ifndef LLAMA_INT_H
#define LLAMA_INT_H

#include "model.h"

#define LLAMA_MAX_LAYERS 1024
/* A bound on the whole model (parameters), checked before anything is
 * allocated from the config: 2^38 (about 275 billion, 1 TiB in fp32). */
#define LLAMA_MAX_PARAMS (1ll << 38)

typedef enum { K_LLAMA = 0, K_MISTRAL, K_QWEN2 } llama_kind;

/* Per-layer tensor slots (absent biases get offset -1). */
enum { L_IN_NORM = 0, L_Q_W, L_Q_B, L_K_W, L_K_B, L_V_W, L_V_B, L_O_W, L_O_B, L_POST_NORM, L_G_W, L_G_B, L_U_W,
       L_U_B, L_D_W, L_D_B, L_SLOTS };
enum { S_Q = 0, S_K, S_V, S_O, S_GATE, S_UP, S_DOWN, S_PER }; /* sites per layer, graph order */

typedef struct {
    int kind;
    int n_layer, C, Hq, Hkv, d, F, V, P;
    int head_dim_given; /* config.json gave head_dim (written back by config_json) */
    float eps;
    double theta;
    int tied;
    int qkv_bias, o_bias, mlp_bias;
    int sliding_window;                    /* the config's window (0: none) */
    int max_window_layers;                 /* qwen2 */
    int use_sliding_window;                /* qwen2 */
    unsigned char sliding[LLAMA_MAX_LAYERS]; /* layer l uses sliding_window */
    int slot[L_SLOTS];                     /* offset of each slot inside a layer's tensors, -1: absent */
    int per_layer;                         /* tensors per layer */
    int t_norm, t_lm_head;                 /* model.norm.weight; lm_head (the embedding when tied) */
} llama_config;

#define T_EMBED 0
#define T_LAYER0 1

static inline const llama_config *cfg_of(const model *m) { return (const llama_config *)m->impl; }
static inline int tl(const llama_config *c, int l, int slot) {
    return c->slot[slot] < 0 ? -1 : T_LAYER0 + l * c->per_layer + c->slot[slot];
}
static inline int window_of(const llama_config *c, int l) { return c->sliding[l] ? c->sliding_window : 0; }

extern model_kv *llama_kv_create(const model *m, const lora_adapter *a, int max_T);
extern void llama_kv_free(model_kv *kv);
extern const float *llama_decode(const model *m, const lora_adapter *a, model_kv *kv, const int32_t *tokens, int n);

#endif
