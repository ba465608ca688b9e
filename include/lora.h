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
 *
 * Trainable tensors have a kind: LoRA A, LoRA B, or a whole base tensor
 * (peft's modules_to_save, e.g. a classifier, and full fine-tuning: one
 * mechanism). Whole tensors follow the LoRA ones in the flat buffer, in the
 * model's tensor order; a 1-D one (a bias) is a tensor like any other.
 * Checkpoints, the wire, the optimizer and export walk the tensor table.
 *
 * The LoRA part of a site's forward and backward, and its dropout masks, are
 * here too (lora_forward / lora_backward over a lora_ws): they are the same
 * for every model family.
 */
#ifndef LORA_H
#define LORA_H

#include <stddef.h>
#include <stdint.h>

#include "lerr.h"

#define LORA_NAME 128
#define LORA_KEY 192
#define LORA_MAX_TARGETS 32

#define LORA_MAX_SAVE 8

/* How a site's weight is stored: HF Conv1D (in, out), or nn.Linear (out, in). */
typedef enum { LORA_IN_OUT = 0, LORA_OUT_IN = 1 } lora_layout;

typedef struct {
    char name[LORA_NAME]; /* module path as peft names it, e.g. transformer.h.0.attn.c_attn */
    int in, out;
    int w, b;             /* the model's tensor indices of the weight and the bias (-1: none) */
    lora_layout layout;
} lora_site;

typedef struct {
    int r;
    float alpha;
    int rslora;
    float dropout;
    int n_targets;
    char targets[LORA_MAX_TARGETS][LORA_NAME];
    int target_regex; /* targets[0] is a regex matched against whole names (peft's str form) */
    int n_exclude;    /* peft's exclude_modules: sites never adapted (same matching as targets) */
    char exclude[LORA_MAX_TARGETS][LORA_NAME];
    int exclude_regex; /* exclude[0] is a regex */
    int n_save;       /* peft's modules_to_save: base modules trained as a whole (a classifier) */
    char save[LORA_MAX_SAVE][LORA_NAME];
} lora_spec;

typedef enum { LORA_KIND_A = 0, LORA_KIND_B, LORA_KIND_WHOLE } lora_kind;

typedef struct {
    char key[LORA_KEY]; /* peft key, e.g. base_model.model.transformer.h.0.attn.c_attn.lora_A.weight */
    lora_kind kind;
    int ndim;           /* 2, or 1 for a whole 1-D tensor (then rows = 1) */
    int rows, cols;
    int mt;             /* LORA_KIND_WHOLE: the model's tensor index; else -1 */
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
    int n_whole;        /* whole tensors (modules_to_save, or every tensor under full fine-tuning) */
    int n_model_tensor;
    int *whole;         /* (n_model_tensor) model tensor -> index into tensor[], -1 when frozen; NULL if n_whole = 0 */
    int full;           /* full fine-tuning: every model tensor is whole */
} lora_adapter;

/* Matches spec against the sites and lays out the buffers (values zeroed).
 * `strict`: every target must match some site (a config typo is an error);
 * otherwise only "nothing matched" is an error, as in peft. Errors: r <= 0,
 * alpha <= 0, dropout outside [0, 1), a target that matches nothing. */
int lora_create(lora_adapter *a, const lora_spec *spec, const lora_site *sites, int n_sites, int strict,
                struct lerr *e);
void lora_free(lora_adapter *a);

/* Appends model tensor mt (of a model with n_model_tensor tensors) as a whole
 * trainable tensor keyed "base_model.model." + name, with its shape; the
 * buffer grows (values kept, the new ones zeroed). Errors: a bad shape. */
int lora_add_whole(lora_adapter *a, int mt, int n_model_tensor, const char *name, int ndim, const int64_t *shape,
                   struct lerr *e);

/* peft's init: A ~ kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)), B = 0; seeded.
 * Whole tensors are left as they are. */
void lora_init(lora_adapter *a, uint64_t seed);

const lora_tensor *lora_find(const lora_adapter *a, const char *key);
static inline float *lora_A(const lora_adapter *a, const lora_module *m) { return a->w + a->tensor[m->tA].off; }
static inline float *lora_B(const lora_adapter *a, const lora_module *m) { return a->w + a->tensor[m->tB].off; }

/* Reads only the spec of a peft adapter_config.json (modules_to_save included). */
int lora_read_peft_config(lora_spec *spec, const char *config_json_path, struct lerr *e);
/* Copies values from a peft folder into an existing adapter whose layout must
 * match (same keys and shapes): every tensor of the adapter must be in the
 * file and no other may be. Errors name the file and key. */
int lora_load_peft_values(lora_adapter *a, const char *dir, struct lerr *e);
/* Writes dir/adapter_config.json and dir/adapter_model.safetensors (creates dir).
 * fan_in_fan_out: true for GPT-2's Conv1D. */
int lora_save_peft(const lora_adapter *a, const char *dir, const char *base_model, const char *task_type,
                   int fan_in_fan_out, struct lerr *e);

/* W += scale * B A in the weight's layout ((in, out): (B A)^T), computed as
 * peft does: delta = B @ A, times scale, added. */
void lora_merge_into(float *W, lora_layout layout, const lora_adapter *a, const lora_module *m);

/* ---- the LoRA part of a site's forward and backward */
/* Workspace for up to B x T rows: x A^T per adapted site (kept for the
 * backward), scratch, and the dropout state of the current forward. */
typedef struct {
    float *u;          /* per adapted site (N, r) */
    size_t *u_off;     /* (n_sites): offset into u, SIZE_MAX when the site is not adapted */
    float *du;         /* (N, r) */
    float *dropx;      /* (N, max in) dropout-masked input */
    int64_t *sample_ids; /* (B) */
    int n_sites, Bmax, Tmax, r;
    size_t bytes;
    int train, T;      /* the current forward: dropout on, row length */
    uint64_t drop_seed;
} lora_ws;
/* a may be NULL (base model: nothing to keep). max_in: the largest site input. */
lora_ws *lora_ws_create(const lora_adapter *a, int n_sites, int B, int T, int max_in);
void lora_ws_free(lora_ws *w);
/* Starts a forward: dropout when train (and the adapter's dropout > 0), masks
 * drawn from (seed, sample_ids[b], site, position), so a sample's mask does
 * not depend on which batch it is in; sample_ids NULL: 0..B-1. */
void lora_ws_begin(lora_ws *w, int train, uint64_t seed, const int64_t *sample_ids, int B, int T);
/* out (N, oc) += scale * (dropout(x) A^T) B^T for the site's module (nothing
 * when the site is not adapted). */
void lora_forward(const lora_adapter *a, lora_ws *w, int site, float *out, const float *x, int N, int in, int oc);
/* The module's gradients added into grad (dA, dB); dx (N, in) += the LoRA
 * part of the input gradient when dx != NULL. */
void lora_backward(const lora_adapter *a, lora_ws *w, int site, float *grad, float *dx, const float *dout,
                   const float *x, int N, int in, int oc);

/* Python's re.fullmatch(pattern, name) as peft matches a regex target (PCRE2;
 * see lora.c): 1 on a match, 0 on none, -1 with a message when the pattern
 * does not compile. */
int lora_regex_fullmatch(const char *pattern, const char *name, struct lerr *e);

/* peft's print_trainable_parameters line into buf:
 * "trainable params: 294,912 || all params: 124,734,720 || trainable%: 0.2364" */
void lora_params_line(char *buf, size_t cap, int64_t trainable, int64_t base_params);

#endif
