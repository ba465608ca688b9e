/*
 * gpt2_: the GPT-2 family (HF GPT2LMHeadModel) in fp32 on OpenBLAS.
 *
 * Legend: B batch, T tokens, C channels (n_embd), H heads, hs = C/H,
 * F = n_inner (4C), V vocab, P positions, L layers, r LoRA rank.
 *
 * Frozen weights point into the read-only mmap of model.safetensors when the
 * file holds aligned F32 (ranks of a node share those pages); F16/BF16 are
 * converted once into one owned block. Weights keep HF's Conv1D layout (in, out).
 *
 * The forward pass runs on a workspace (gpt2_acts) sized for B x T and keeps
 * what the backward needs. The backward computes input gradients and the
 * gradients of the adapter only: it never forms a weight gradient for a frozen
 * weight, and it stops at the first adapted site in graph order (nothing below
 * it has anything to train).
 */
#ifndef GPT2_H
#define GPT2_H

#include <stdint.h>

#include "lerr.h"
#include "lora.h"
#include "safetensors.h"

typedef struct {
    int n_layer, n_head, n_embd, n_inner, n_positions, vocab_size;
    float ln_eps;
    int gelu_exact; /* 0: tanh form (gelu_new, gelu_pytorch_tanh); 1: erf form (gelu) */
    int tied;       /* lm_head = wte */
} gpt2_config;

typedef struct {
    const float *ln1_w, *ln1_b;   /* (C) */
    const float *qkv_w, *qkv_b;   /* (C, 3C), (3C)  attn.c_attn */
    const float *aproj_w, *aproj_b; /* (C, C), (C)  attn.c_proj */
    const float *ln2_w, *ln2_b;   /* (C) */
    const float *fc_w, *fc_b;     /* (C, F), (F)    mlp.c_fc */
    const float *fproj_w, *fproj_b; /* (F, C), (C)  mlp.c_proj */
} gpt2_layer;

enum { GPT2_SITE_QKV = 0, GPT2_SITE_APROJ, GPT2_SITE_FC, GPT2_SITE_FPROJ, GPT2_SITES_PER_LAYER };

typedef struct {
    gpt2_config cfg;
    const float *wte;     /* (V, C) */
    const float *wpe;     /* (P, C) */
    const float *lnf_w, *lnf_b; /* (C) */
    const float *lm_head; /* (V, C): wte when tied */
    gpt2_layer *layer;    /* (L) */
    int n_sites;
    lora_site *sites;     /* (L * 4) */
    int64_t n_params;     /* parameters as torch counts them (tied counted once) */
    st_file *st;          /* the mapped safetensors file (NULL for a random model) */
    float *owned;         /* converted or random weights */
    int owned_shared;     /* owned came from a gpt2_alloc (not ours to free) */
    char dir[1024];
} gpt2;

/* Reads HF config.json (n_embd, n_layer, n_head, n_positions, vocab_size,
 * layer_norm_epsilon, activation_function, n_inner, tie_word_embeddings).
 * model_type other than gpt2 is "not supported yet". */
int gpt2_config_load(gpt2_config *c, const char *path, struct lerr *e);
/* Opens dir/config.json + dir/model.safetensors (keys with or without the
 * "transformer." prefix; attn.bias / attn.masked_bias buffers are ignored). */
int gpt2_open(gpt2 *m, const char *dir, struct lerr *e);
/* Only the shape: config, sites and parameter count, no weights (for counting
 * and for adapters laid out without a model). Free with gpt2_free. */
void gpt2_init_shape(gpt2 *m, const gpt2_config *c);
/* Where converted (F16/BF16) weights go when several processes of a node
 * should hold one copy: alloc returns a block of `bytes` shared by the node and
 * sets *fill when this process must write it; ready is called by every process
 * after the writer's conversion (a node barrier). Both are collective over the
 * node. gpt2_open_shared with al = NULL is gpt2_open. */
typedef struct {
    float *(*alloc)(size_t bytes, void *ctx, int *fill);
    void (*ready)(void *ctx);
    void *ctx;
} gpt2_alloc;
int gpt2_open_shared(gpt2 *m, const char *dir, const gpt2_alloc *al, struct lerr *e);

/* A model with random weights (N(0, 0.02), LayerNorm 1/0), seeded: for benchmarks. */
void gpt2_init_random(gpt2 *m, const gpt2_config *c, uint64_t seed);
void gpt2_free(gpt2 *m);
/* Frozen weight of a site: (in, out) Conv1D layout, and bias (out). */
void gpt2_site_weights(const gpt2 *m, int site, const float **w, const float **b);

/* Full fine-tuning (for comparisons with LoRA): every base tensor becomes
 * trainable through the same flat buffer. a gets one tensor per model tensor
 * (keys as HF names them, e.g. transformer.h.0.attn.c_attn.weight; 1-D
 * tensors as 1 x n), the current values are copied in, and the model's
 * pointers are re-pointed into a->w, so that whatever updates a->w updates the
 * model. gpt2_backward then forms every weight gradient. */
int gpt2_full_adapter(gpt2 *m, lora_adapter *a, struct lerr *e);

typedef struct gpt2_acts gpt2_acts;

/* Workspace for up to B x T (T <= n_positions). The adapter fixes which sites
 * keep LoRA activations; a != NULL may be given later with a layout of the same sites. */
gpt2_acts *gpt2_acts_create(const gpt2 *m, const lora_adapter *a, int B, int T);
void gpt2_acts_free(gpt2_acts *s);
size_t gpt2_acts_bytes(const gpt2_acts *s);

/* Forward over tokens (B, T). targets (B, T): next-token ids, -1 = no loss at
 * that position (see gpt2_targets_from_labels). Returns the SUM of the
 * cross-entropy over the targets and sets *n_targets. a may be NULL (base
 * model). train: apply LoRA dropout, masks drawn from (dropout_seed, sample_ids[b],
 * site, position), so a sample's mask does not depend on which batch it is in.
 * Logits (B, T, V) stay in the workspace until the backward. */
double gpt2_forward(const gpt2 *m, const lora_adapter *a, gpt2_acts *s, const int32_t *tokens,
                    const int32_t *targets, int B, int T, int train, uint64_t dropout_seed,
                    const int64_t *sample_ids, int64_t *n_targets);
const float *gpt2_logits(const gpt2_acts *s);
/* Backward of dscale * (sum of losses) of the last forward; adds adapter
 * gradients into grad (same layout as a->w). Destroys the logits. */
void gpt2_backward(const gpt2 *m, const lora_adapter *a, gpt2_acts *s, float *grad, float dscale);

/* Causal-LM targets from HF labels (B, T): targets[b][t] = labels[b][t+1]
 * (-100 -> -1), targets[b][T-1] = -1. labels may equal tokens. */
void gpt2_targets_from_labels(int32_t *targets, const int32_t *labels, int B, int T);

/* Matmul FLOPs of one training step on B x T (forward, input gradients,
 * adapter gradients; causal attention counted in full T x T as computed). */
double gpt2_step_flops(const gpt2 *m, const lora_adapter *a, int B, int T);

#endif
