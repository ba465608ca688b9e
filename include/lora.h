/*
 * lora_: adapters as one flat buffer.
 *
 * All trainable values live in ONE contiguous float array laid out by a table
 * of tensors (peft key, shape, offset). Gradients and AdamW's m and v use the
 * same layout, so a gradient push is one buffer, a server shard's key range is
 * an offset range, the optimizer is one flat loop, and a checkpoint dataset or
 * a peft tensor is a slice. Order: sites in the model's graph order, and for
 * each adapted site lora_A (r, in) then lora_B (out, r), row-major as peft
 * stores them.
 *
 * A *site* is a linear layer the model can adapt (for GPT-2: every layer's
 * attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj). The model lists its sites;
 * lora_create matches the spec's targets against site names as peft does
 * (a target equals the name or is a suffix after a '.'; "all-linear" takes
 * every site) and builds the table.
 */
#ifndef LORA_H
#define LORA_H

#include <stddef.h>
#include <stdint.h>

#include "lerr.h"

#define LORA_NAME 128
#define LORA_KEY 192
#define LORA_MAX_TARGETS 32

typedef struct {
    char name[LORA_NAME]; /* module path as peft names it, e.g. transformer.h.0.attn.c_attn */
    int in, out;
} lora_site;

typedef struct {
    int r;
    float alpha;
    int rslora;
    float dropout;
    int n_targets;
    char targets[LORA_MAX_TARGETS][LORA_NAME];
    int target_regex; /* targets[0] is a regex matched against whole names (peft's str form) */
} lora_spec;

typedef struct {
    char key[LORA_KEY]; /* peft key, e.g. base_model.model.transformer.h.0.attn.c_attn.lora_A.weight */
    int rows, cols;
    size_t off;         /* into the flat buffers */
} lora_tensor;

typedef struct {
    int site;           /* index into the model's sites */
    int in, out, r;
    float scale;        /* alpha / r, or alpha / sqrt(r) with rsLoRA */
    int tA, tB;         /* indices into the tensor table */
} lora_module;

typedef struct {
    lora_spec spec;
    float scale;
    int n_mod;
    lora_module *mod;
    int n_tensor;
    lora_tensor *tensor;
    int n_sites;
    int *site_mod;      /* site -> module index, -1 when not adapted */
    size_t n_params;
    float *w;           /* (n_params) the values, 64-byte aligned */
    int full;           /* full fine-tuning: the tensors are the model's own (see gpt2_full_adapter) */
} lora_adapter;

/* Matches spec against the sites and lays out the buffers (values zeroed).
 * `strict`: every target must match some site (a config typo is an error);
 * otherwise only "nothing matched" is an error, as in peft. Errors: r <= 0,
 * alpha <= 0, dropout outside [0, 1), a target that matches nothing. */
int lora_create(lora_adapter *a, const lora_spec *spec, const lora_site *sites, int n_sites, int strict,
                struct lerr *e);
void lora_free(lora_adapter *a);

/* peft's init: A ~ kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)), B = 0; seeded. */
void lora_init(lora_adapter *a, uint64_t seed);

const lora_tensor *lora_find(const lora_adapter *a, const char *key);
static inline float *lora_A(const lora_adapter *a, const lora_module *m) { return a->w + a->tensor[m->tA].off; }
static inline float *lora_B(const lora_adapter *a, const lora_module *m) { return a->w + a->tensor[m->tB].off; }

/* Reads a peft adapter folder (adapter_config.json + adapter_model.safetensors):
 * the spec comes from the config, the values from the file; every adapted
 * module's A and B must be present with the right shapes and no other tensor
 * may be. Errors name the folder, file and key. */
int lora_load_peft(lora_adapter *a, const char *dir, const lora_site *sites, int n_sites, struct lerr *e);
/* Reads only the spec of a peft adapter_config.json. */
int lora_read_peft_config(lora_spec *spec, const char *config_json_path, struct lerr *e);
/* Copies values from a peft folder into an existing adapter whose layout must
 * match (same keys and shapes). */
int lora_load_peft_values(lora_adapter *a, const char *dir, struct lerr *e);
/* Writes dir/adapter_config.json and dir/adapter_model.safetensors (creates dir).
 * fan_in_fan_out: true for GPT-2's Conv1D. */
int lora_save_peft(const lora_adapter *a, const char *dir, const char *base_model, const char *task_type,
                   int fan_in_fan_out, struct lerr *e);

/* W (in, out) Conv1D layout += scale * (B A)^T, computed as peft does:
 * delta = B @ A, times scale, added. */
void lora_merge_conv1d(float *W, const lora_adapter *a, const lora_module *m);

/* peft's print_trainable_parameters line into buf:
 * "trainable params: 294,912 || all params: 124,734,720 || trainable%: 0.2364" */
void lora_params_line(char *buf, size_t cap, int64_t trainable, int64_t base_params);

#endif
