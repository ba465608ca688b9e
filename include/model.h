/*
 * model_: the family-independent face of a model. Everything outside a
 * family's own file (the trainer, the parameter server, checkpoints, peft
 * import/export, merge, parity, the bench, the tools) talks to this header.
 *
 * A model is
 *   - a table of its base tensors (HF name, shape, the file's dtype, fp32
 *     values), built by the family from its config: ONE list per family,
 *     walked by the loader, random init, merge, save and full fine-tuning;
 *   - its adaptable sites (linear layers: name as peft sees it, in, out, the
 *     tensors of the weight and bias, and the weight's layout: HF Conv1D
 *     (in, out) or nn.Linear (out, in));
 *   - a family (one row of the registry in model.c: the config.json
 *     model_type it answers to and its functions): workspaces, forward over a
 *     batch, backward, the output (logits).
 * Adding a family is its model file plus one row of the registry.
 *
 * Trainable values are a lora_adapter (include/lora.h): LoRA A/B of the
 * adapted sites plus whole base tensors (peft's modules_to_save, such as a
 * classifier, or every tensor under full fine-tuning). A whole tensor's
 * values live in the adapter's flat buffer; the family reads every weight
 * through model_w(), which returns the adapter's copy when there is one, and
 * writes weight gradients through model_g(), NULL when the tensor is frozen.
 * The model itself is never modified after open: ranks of a node share it.
 *
 * Legend: B batch, T tokens, N = B * T rows, V vocab, L labels.
 */
#ifndef MODEL_H
#define MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "lerr.h"
#include "lora.h"
#include "safetensors.h"

typedef enum { TASK_CAUSAL_LM = 0, TASK_SEQ_CLS, TASK_TOKEN_CLS } model_task;
/* peft's task_type for t: "CAUSAL_LM", "SEQ_CLS", "TOKEN_CLS". */
const char *model_task_name(model_task t);

#define MODEL_NAME 112

typedef struct {
    char name[MODEL_NAME]; /* as HF saves it: transformer.h.0.attn.c_attn.weight */
    int ndim;              /* 1 or 2 */
    int64_t shape[2];
    st_dtype dtype;        /* the file's (a merged model is written back in it); F32 for a random model */
    const float *data;     /* fp32 values: the file's mmap, or converted/owned memory */
} model_tensor;

/* Where converted (F16/BF16) weights go when the processes of a node share
 * one copy: alloc returns a block of `bytes` shared by the node and sets
 * *fill when this process must write it; ready is called by every process
 * after the conversion (a node barrier). Both are collective over the node. */
typedef struct {
    float *(*alloc)(size_t bytes, void *ctx, int *fill);
    void (*ready)(void *ctx);
    void *ctx;
} model_alloc;

/* One batch. tokens (B, T). mask (B, T): 1 = token, 0 = padding; NULL = no
 * padding. type_ids (B, T) or NULL (all 0). labels: CAUSAL_LM (B, T) as HF
 * takes them (shifted inside; -100 = no loss), SEQ_CLS (B) class ids,
 * TOKEN_CLS (B, T) (-100 = no loss); NULL = no loss. label_values (B): the
 * float targets of a regression head (SEQ_CLS with one label, HF's
 * problem_type "regression"); NULL there: labels taken as values. sample_ids
 * (B): the global sample index of each row (dropout masks are a pure
 * function of it), NULL = 0..B-1. */
typedef struct {
    const int32_t *tokens, *mask, *type_ids, *labels;
    const float *label_values;
    const int64_t *sample_ids;
    int B, T;
} model_batch;

typedef struct model model;
typedef struct model_ws model_ws; /* a family's workspace (opaque) */
typedef struct model_kv model_kv; /* a family's decoding cache (opaque) */

typedef struct {
    const char *model_type; /* config.json's model_type this family answers to */
    const char *modules;    /* its target module names, for messages */
    const char *prefix;     /* optional key prefix of its files ("transformer."): keys may come without it */
    /* Reads config.json (parsed: a cJSON object) into m->impl (malloc'd) and
     * describes the model: m->tensor (names, shapes), m->site, m->n_params,
     * m->task, m->vocab, m->max_positions, m->n_labels, m->n_types,
     * m->fan_in_fan_out. */
    int (*describe)(model *m, const void *config_json, const char *path, struct lerr *e);
    /* Keys of the file that are not weights and may be ignored (buffers). */
    int (*ignorable)(const model *m, const char *key);
    model_ws *(*ws_create)(const model *m, const lora_adapter *a, int B, int T);
    void (*ws_free)(model_ws *s);
    size_t (*ws_bytes)(const model_ws *s);
    /* Forward of the batch; returns the SUM of the losses over the batch's
     * targets and sets *n_targets (the mean is sum / n). train: dropout. */
    double (*forward)(const model *m, const lora_adapter *a, model_ws *s, const model_batch *b, int train,
                      uint64_t dropout_seed, int64_t *n_targets);
    /* Backward of dscale * (sum of losses) of the last forward: adds the
     * gradients of a's trainable tensors into grad (a->w's layout). */
    void (*backward)(const model *m, const lora_adapter *a, model_ws *s, float *grad, float dscale);
    /* The last forward's output: logits, shape[0..ndim) ((B, T, V) or (B, L)). */
    const float *(*output)(const model_ws *s, int *ndim, int64_t shape[3]);
    /* Matmul FLOPs of one training step on B x T. */
    double (*step_flops)(const model *m, const lora_adapter *a, int B, int T);
    /* Decoding with a KV cache (causal LMs; NULL for other families): a cache
     * for up to max_T positions, and decode, which appends n tokens at the
     * cache's current length and returns the logits (V) of the last one (NULL
     * when the cache is full). Each new token costs one position. */
    struct model_kv *(*kv_create)(const model *m, const lora_adapter *a, int max_T);
    void (*kv_free)(struct model_kv *kv);
    const float *(*decode)(const model *m, const lora_adapter *a, struct model_kv *kv, const int32_t *tokens, int n);
    /* Writes config.json text for this model's config (random models), malloc'd. */
    char *(*config_json)(const model *m);
    /* Optional: 0 when sequences of T tokens (T <= max_positions) can be run,
     * else -1 with a message saying why (a sliding window they would cross).
     * NULL: any T <= max_positions. */
    int (*check_seq_len)(const model *m, int T, struct lerr *e);
    int full_finetune; /* the backward can form every weight gradient */
} model_family;

struct model {
    const model_family *fam;
    model_task task;
    int fan_in_fan_out;    /* weights stored (in, out) (GPT-2's Conv1D): peft's flag */
    int vocab, max_positions, n_labels; /* n_labels: classification heads (0 for LM) */
    int eos_id, bos_id;    /* config.json's eos_token_id / bos_token_id (-1: none) */
    char (*label_names)[64]; /* (n_labels) config.json's id2label, or NULL */
    int n_types;           /* token type ids the model takes (BERT's type_vocab_size; 0: none) */
    int n_tensor;
    model_tensor *tensor;  /* (n_tensor) in the family's order */
    int n_site;
    lora_site *site;       /* (n_site) in graph order */
    int64_t n_params;      /* parameters as torch counts them (tied counted once) */
    const char *save_modules; /* peft's default modules_to_save for the task ("classifier"), or NULL */
    int n_st;
    st_file **st;          /* the mapped safetensors files (shards); none for a random model */
    float *owned;          /* converted, random or merged values */
    int owned_shared;      /* owned came from a model_alloc (not ours to free) */
    uint64_t size;         /* bytes of the safetensors files (all shards) */
    int cap_tensor, cap_site; /* allocated table sizes */
    char dir[1024];
    void *impl;            /* the family's config (flat: copied by memcpy of impl_size) */
    size_t impl_size;
};

/* ---- for families: config.json fields, checked (type, range) with messages naming the file and key */
/* An integer in [lo, hi]; absent or null: *out untouched, an error when required. */
int model_json_int(const void *root, const char *key, int *out, int required, long long lo, long long hi,
                   const char *path, struct lerr *e);
/* A number > 0 (a float); absent or null: *out untouched. */
int model_json_pos(const void *root, const char *key, float *out, const char *path, struct lerr *e);
/* A boolean; absent or null: *out untouched. */
int model_json_bool(const void *root, const char *key, int *out, const char *path, struct lerr *e);
/* A token id field (an integer, or the first of a list) inside [0, vocab), else -1:
 * configs of tiny models often keep the original model's ids, which only
 * generation uses. */
int model_json_token_id(const void *root, const char *key, int vocab);
/* Appends tensor `name` (printf format) of the given shape (s1 = 0: 1-D) to
 * m->tensor (grown as needed) and returns its index; -1 with a message when
 * the table cannot grow. */
int model_add_tensor(model *m, int64_t s0, int64_t s1, struct lerr *e, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Appends a site (an adaptable linear) with its weight and bias tensors. */
int model_add_site(model *m, const char *name, int in, int out, int w, int b, lora_layout layout, struct lerr *e);
/* hash64 over the bytes of the model's files (one file: exactly
 * hash64(bytes, size, 0)); the identity checkpoints and ranks compare. */
uint64_t model_content_hash(const model *m);

/* The registry: the family whose model_type is `type`, or NULL. */
const model_family *model_family_find(const char *type);
/* "gpt2, llama, ..." for messages. */
const char *model_families_list(void);

/* Opens dir/config.json and its weights (model.safetensors, or the shards
 * of model.safetensors.index.json), dispatching on model_type. Weights stay
 * in the file's mmap when they are aligned F32; F16/BF16 are converted into
 * one block (through al when not NULL: node-shared). Errors name the folder,
 * file and key: an unknown model_type (listing the supported ones), a missing
 * or mistyped config field, a missing or misshapen tensor, an unexpected one.
 * On error m is left zeroed. */
int model_open(model *m, const char *dir, const model_alloc *al, struct lerr *e);
void model_free(model *m);

/* Only the shape of a model from a config.json text: tensor table (data
 * NULL), sites, counts. For counting and for adapters laid out without
 * weights. Free with model_free. */
int model_init_shape(model *m, const char *config_json, struct lerr *e);
/* A model of family `type` with random weights (2-D: N(0, 0.02); 1-D
 * weights 1, biases 0), seeded, from a config.json text: for benchmarks. */
int model_init_random(model *m, const char *config_json, uint64_t seed, struct lerr *e);

/* 0 when the model can run sequences of T tokens: T <= max_positions and the
 * family's check_seq_len; else -1 with a message. */
int model_check_seq_len(const model *m, int T, struct lerr *e);

/* Index of the tensor named `name` (with or without the family prefix), or -1. */
int model_tensor_index(const model *m, const char *name);

/* The values of tensor t for this adapter: the adapter's copy when t is
 * trainable as a whole, else the model's. a may be NULL. */
static inline const float *model_w(const model *m, const lora_adapter *a, int t) {
    return (a && a->whole && a->whole[t] >= 0) ? a->w + a->tensor[a->whole[t]].off : m->tensor[t].data;
}
/* Where tensor t's gradient goes in grad, or NULL when t is frozen. */
static inline float *model_g(const lora_adapter *a, float *grad, int t) {
    return (a && a->whole && a->whole[t] >= 0) ? grad + a->tensor[a->whole[t]].off : NULL;
}

/* ---- adapters for a model */
/* lora_create against m's sites, plus the whole tensors of spec's
 * modules_to_save (a module name matches the tensors named "<...>.name.*" or
 * "name.*"), values zeroed. strict: a target or a modules_to_save name that
 * matches nothing is an error naming the family's modules; otherwise (peft's
 * rule, for adapters peft wrote) only targets that match nothing at all are,
 * and modules_to_save names that match nothing are skipped. */
int model_adapter_create(lora_adapter *a, const lora_spec *spec, const model *m, int strict, struct lerr *e);
/* peft's init for the LoRA tensors (lora_init) and the model's current values
 * for whole tensors. */
void model_adapter_init(lora_adapter *a, const model *m, uint64_t seed);
/* Full fine-tuning: every tensor trainable as a whole, values copied in. */
int model_full_adapter(lora_adapter *a, const model *m, struct lerr *e);
/* A peft adapter folder (adapter_config.json + adapter_model.safetensors) for m. */
int model_load_peft(lora_adapter *a, const model *m, const char *dir, struct lerr *e);
/* Writes a in peft's format with m's task type and fan_in_fan_out. */
int model_save_peft(const lora_adapter *a, const model *m, const char *dir, struct lerr *e);

/* ---- the linear layers (sites): base matmul by the site's layout, plus LoRA */
/* out (N, out) = beta * out + x W (+ b) + LoRA of the site (dropout when w->train). */
void model_linear_forward(const model *m, const lora_adapter *a, lora_ws *w, int site, float *out, const float *x,
                          int N, float beta);
/* Backward: dx (N, in) overwritten with the input gradient when dx != NULL;
 * the site's LoRA gradients, and its weight and bias gradients when they are
 * trainable, added into grad. */
void model_linear_backward(const model *m, const lora_adapter *a, lora_ws *w, int site, float *grad, float *dx,
                           const float *dout, const float *x, int N);

/* ---- merge and save (worker/merge.c) */
/* out becomes a self-contained copy of base (owned fp32) with a merged in:
 * W + scale * B A in the site's layout; whole tensors take the adapter's
 * values. base stays untouched. */
int model_merge(model *out, const model *base, const lora_adapter *a, struct lerr *e);
/* Writes out_dir/model.safetensors (the tensors in the table's names and the
 * base file's dtypes) and copies the base folder's config and tokenizer files. */
int model_save_merged(const model *base, const lora_adapter *a, const char *out_dir, struct lerr *e);
/* Writes m's tensors as one model.safetensors (dtype F32 or F16) and its
 * config.json into dir (random models for benchmarks). */
int model_save(const model *m, const char *dir, st_dtype dtype, struct lerr *e);

/* ---- convenience over the family */
model_ws *model_ws_create(const model *m, const lora_adapter *a, int B, int T);
void model_ws_free(const model *m, model_ws *s);
double model_forward(const model *m, const lora_adapter *a, model_ws *s, const model_batch *b, int train,
                     uint64_t dropout_seed, int64_t *n_targets);
void model_backward(const model *m, const lora_adapter *a, model_ws *s, float *grad, float dscale);
const float *model_output(const model *m, const model_ws *s, int *ndim, int64_t shape[3]);

#endif
