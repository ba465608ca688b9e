/*
 * The model interface (see include/model.h): the family registry, config.json
 * dispatch, loading a family's tensor table from one safetensors file or the
 * shards of model.safetensors.index.json, random models, adapters for a model
 * (LoRA, modules_to_save, full fine-tuning), peft I/O with the model's task
 * type, and the linear layers (base matmul by layout + LoRA).
 *
 * Loading: the family describes its tensors from the config (names, shapes)
 * before anything is read or allocated from the file; each is looked up in
 * the files (with or without the family's key prefix), its shape and dtype
 * checked, and any key of the files that is neither a tensor of the table nor
 * one the family calls ignorable is an error (a different architecture or a
 * truncated export). Aligned F32 tensors stay in the read-only mmap (ranks of
 * a node share the pages); others are converted into one block.
 */
#include "model.h"

#include <cJSON.h>
#include <cblas.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data.h"
#include "kernels.h"
#include "util.h"

extern const model_family gpt2_family;
extern const model_family llama_family, mistral_family, qwen2_family, bert_family;

/* The registry: one row per family. */
static const model_family *const families[] = {&gpt2_family, &llama_family, &mistral_family, &qwen2_family,
                                               &bert_family};
#define N_FAMILIES (sizeof families / sizeof families[0])

const model_family *model_family_find(const char *type) {
    for (size_t i = 0; i < N_FAMILIES; i++)
        if (!strcmp(families[i]->model_type, type)) return families[i];
    return NULL;
}

const char *model_families_list(void) {
    static char buf[256];
    if (!buf[0])
        for (size_t i = 0; i < N_FAMILIES; i++)
            snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%s", i ? ", " : "", families[i]->model_type);
    return buf;
}

const char *model_task_name(model_task t) {
    return t == TASK_SEQ_CLS ? "SEQ_CLS" : t == TASK_TOKEN_CLS ? "TOKEN_CLS" : "CAUSAL_LM";
}

/* ---------------------------------------------------------------- for families */

int model_json_int(const void *root, const char *key, int *out, int required, long long lo, long long hi,
                   const char *path, struct lerr *e) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive((const cJSON *)root, key);
    if (!it || cJSON_IsNull(it)) {
        if (required) return lerr_set(e, "%s: missing \"%s\" (an integer)", path, key);
        return 0;
    }
    if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble))
        return lerr_set(e, "%s: \"%s\" must be an integer", path, key);
    if (it->valuedouble < (double)lo || it->valuedouble > (double)hi)
        return lerr_set(e, "%s: \"%s\" = %.17g is outside [%lld, %lld]", path, key, it->valuedouble, lo, hi);
    *out = (int)it->valuedouble;
    return 0;
}

int model_json_pos(const void *root, const char *key, float *out, const char *path, struct lerr *e) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive((const cJSON *)root, key);
    if (!it || cJSON_IsNull(it)) return 0;
    if (!cJSON_IsNumber(it) || !(it->valuedouble > 0) || it->valuedouble > 1e30)
        return lerr_set(e, "%s: \"%s\" must be a positive number", path, key);
    /* the engine computes in float32: a tiny positive double would become 0 (found by fuzz_model_config) */
    if (!((float)it->valuedouble > 0))
        return lerr_set(e, "%s: \"%s\" = %g is too small for float32 (it would be 0)", path, key, it->valuedouble);
    *out = (float)it->valuedouble;
    return 0;
}

int model_json_bool(const void *root, const char *key, int *out, const char *path, struct lerr *e) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive((const cJSON *)root, key);
    if (!it || cJSON_IsNull(it)) return 0;
    if (!cJSON_IsBool(it)) return lerr_set(e, "%s: \"%s\" must be true or false", path, key);
    *out = cJSON_IsTrue(it);
    return 0;
}

int model_json_token_id(const void *root, const char *key, int vocab) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive((const cJSON *)root, key);
    if (cJSON_IsArray(it)) it = cJSON_GetArrayItem(it, 0);
    if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) || it->valuedouble < 0 ||
        it->valuedouble >= vocab)
        return -1;
    return (int)it->valuedouble;
}

int model_add_tensor(model *m, int64_t s0, int64_t s1, struct lerr *e, const char *fmt, ...) {
    if (m->n_tensor == m->cap_tensor) {
        int cap = m->cap_tensor ? 2 * m->cap_tensor : 64;
        model_tensor *t = realloc(m->tensor, sizeof(model_tensor) * (size_t)cap);
        if (!t) return lerr_set(e, "out of memory for the tensor table");
        m->tensor = t;
        m->cap_tensor = cap;
    }
    model_tensor *t = &m->tensor[m->n_tensor];
    memset(t, 0, sizeof *t);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof t->name) return lerr_set(e, "tensor name too long: %s...", t->name);
    t->ndim = s1 ? 2 : 1;
    t->shape[0] = s0;
    t->shape[1] = s1;
    t->dtype = ST_F32;
    return m->n_tensor++;
}

int model_add_site(model *m, const char *name, int in, int out, int w, int b, lora_layout layout, struct lerr *e) {
    if (m->n_site == m->cap_site) {
        int cap = m->cap_site ? 2 * m->cap_site : 32;
        lora_site *s = realloc(m->site, sizeof(lora_site) * (size_t)cap);
        if (!s) return lerr_set(e, "out of memory for the site table");
        m->site = s;
        m->cap_site = cap;
    }
    lora_site *s = &m->site[m->n_site];
    memset(s, 0, sizeof *s);
    if (snprintf(s->name, sizeof s->name, "%s", name) >= (int)sizeof s->name)
        return lerr_set(e, "module name too long: %s", name);
    s->in = in, s->out = out, s->w = w, s->b = b, s->layout = layout;
    return m->n_site++;
}

/* ---------------------------------------------------------------- open */

/* Parses config.json and lets its family describe the model. */
static int describe_from_text(model *m, const char *text, const char *path, struct lerr *e) {
    cJSON *root = cJSON_Parse(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return lerr_set(e, "%s: not a JSON object", path);
    }
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    int rc = -1;
    if (!cJSON_IsString(mt)) {
        lerr_set(e, "%s: missing \"model_type\" (a string; supported: %s)", path, model_families_list());
    } else if (!(m->fam = model_family_find(mt->valuestring))) {
        lerr_set(e, "%s: model_type \"%s\" is not supported yet (supported: %s)", path, mt->valuestring,
                 model_families_list());
    } else {
        rc = m->fam->describe(m, root, path, e);
    }
    cJSON_Delete(root);
    return rc;
}

/* The tensor of the files named `name`, or without/with the family prefix. */
static const st_tensor *find_in(const model *m, const char *name) {
    const char *pre = m->fam->prefix;
    size_t pl = pre ? strlen(pre) : 0;
    for (int s = 0; s < m->n_st; s++) {
        const st_tensor *t = st_find(m->st[s], name);
        if (t) return t;
        if (pl && !strncmp(name, pre, pl) && (t = st_find(m->st[s], name + pl))) return t;
    }
    return NULL;
}

int model_check_seq_len(const model *m, int T, struct lerr *e) {
    if (T > m->max_positions)
        return lerr_set(e, "sequences of %d tokens exceed the model's %d positions", T, m->max_positions);
    return m->fam->check_seq_len ? m->fam->check_seq_len(m, T, e) : 0;
}

int model_tensor_index(const model *m, const char *name) {
    const char *pre = m->fam->prefix;
    size_t pl = pre ? strlen(pre) : 0;
    for (int i = 0; i < m->n_tensor; i++) {
        const char *n = m->tensor[i].name;
        if (!strcmp(n, name)) return i;
        if (pl && !strncmp(n, pre, pl) && !strcmp(n + pl, name)) return i;
    }
    return -1;
}

/* Whether something is at p (st_open then says when it is not a regular file). */
static int file_exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* The shard file names of model.safetensors.index.json, in order of first appearance. */
static int open_index(model *m, const char *dir, const char *path, struct lerr *e) {
    char *text = read_text_file(path, 64u << 20, e);
    if (!text) return -1;
    cJSON *root = cJSON_Parse(text);
    free(text);
    int rc = -1;
    const cJSON *wm = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (!cJSON_IsObject(wm)) {
        lerr_set(e, "%s: needs a \"weight_map\" object (tensor name -> shard file)", path);
        goto out;
    }
    int n = cJSON_GetArraySize(wm);
    m->st = calloc((size_t)(n ? n : 1), sizeof(st_file *));
    char **names = calloc((size_t)(n ? n : 1), sizeof(char *));
    if (!m->st || !names) {
        free(names);
        lerr_set(e, "out of memory");
        goto out;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, wm) {
        if (!cJSON_IsString(it) || !it->valuestring[0] || strchr(it->valuestring, '/')) {
            lerr_set(e, "%s: weight_map[\"%s\"] must be a shard file name in the same folder", path, it->string);
            break;
        }
        int seen = 0;
        for (int k = 0; k < m->n_st && !seen; k++) seen = !strcmp(names[k], it->valuestring);
        if (seen) continue;
        char sp[2200];
        snprintf(sp, sizeof sp, "%s/%s", dir, it->valuestring);
        if (!file_exists(sp)) {
            lerr_set(e, "%s: shard %s named in the index (for %s) is missing", path, sp, it->string);
            break;
        }
        names[m->n_st] = it->valuestring;
        if (!(m->st[m->n_st] = st_open(sp, e))) break;
        m->n_st++;
        /* every tensor the index puts in this shard must be there */
    }
    if (!it) {
        rc = 0;
        cJSON_ArrayForEach(it, wm) {
            int found = 0;
            for (int k = 0; k < m->n_st && !found; k++)
                if (!strcmp(names[k], it->valuestring)) found = st_find(m->st[k], it->string) != NULL;
            if (!found) {
                rc = lerr_set(e, "%s: tensor '%s' is not in shard %s", path, it->string, it->valuestring);
                break;
            }
        }
        if (!rc && m->n_st == 0) rc = lerr_set(e, "%s: weight_map is empty", path);
    }
    free(names);
out:
    cJSON_Delete(root);
    return rc;
}

int model_open(model *m, const char *dir, const model_alloc *al, struct lerr *e) {
    memset(m, 0, sizeof *m);
    snprintf(m->dir, sizeof m->dir, "%s", dir);
    char path[1100];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *text = read_text_file(path, 4u << 20, e);
    if (!text) return -1;
    int rc = describe_from_text(m, text, path, e);
    free(text);
    if (rc) goto fail;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (file_exists(path)) {
        m->st = calloc(1, sizeof(st_file *));
        if (!m->st || !(m->st[0] = st_open(path, e))) goto fail;
        m->n_st = 1;
    } else {
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        if (!file_exists(path)) {
            lerr_set(e, "%s: no model.safetensors and no model.safetensors.index.json", dir);
            goto fail;
        }
        if (open_index(m, dir, path, e)) goto fail;
    }
    const st_tensor **found = calloc((size_t)(m->n_tensor ? m->n_tensor : 1), sizeof(*found));
    if (!found) {
        lerr_set(e, "out of memory");
        goto fail;
    }
    size_t n_owned = 0;
    for (int i = 0; i < m->n_tensor; i++) {
        model_tensor *mt = &m->tensor[i];
        const st_tensor *t = find_in(m, mt->name);
        if (!t) {
            lerr_set(e, "%s: missing tensor '%s' (config.json says a %s with these shapes)", dir, mt->name,
                     m->fam->model_type);
            free(found);
            goto fail;
        }
        int ok = t->ndim == mt->ndim;
        for (int d = 0; ok && d < mt->ndim; d++) ok = t->shape[d] == mt->shape[d];
        if (!ok) {
            char want[64], got[64];
            snprintf(want, sizeof want, mt->ndim == 2 ? "(%lld, %lld)" : "(%lld)", (long long)mt->shape[0],
                     (long long)mt->shape[1]);
            if (t->ndim == 1 || t->ndim == 2)
                snprintf(got, sizeof got, t->ndim == 2 ? "(%lld, %lld)" : "(%lld)", (long long)t->shape[0],
                         (long long)t->shape[1]);
            else
                snprintf(got, sizeof got, "(%d dims)", t->ndim);
            lerr_set(e, "%s: tensor '%s' has shape %s but config.json gives %s", dir, t->name, got, want);
            free(found);
            goto fail;
        }
        if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16 && t->dtype != ST_F64) {
            lerr_set(e, "%s: tensor '%s' has dtype %s; weights must be F32, F16, BF16 or F64", dir, t->name,
                     st_dtype_name(t->dtype));
            free(found);
            goto fail;
        }
        found[i] = t;
        mt->dtype = t->dtype == ST_F64 ? ST_F32 : t->dtype;
        if (t->dtype != ST_F32 || ((uintptr_t)t->data & 3u)) n_owned += (size_t)t->numel;
    }
    for (int s = 0; s < m->n_st; s++)
        for (int i = 0; i < st_count(m->st[s]); i++) {
            const char *k = st_at(m->st[s], i)->name;
            if (model_tensor_index(m, k) >= 0 || (m->fam->ignorable && m->fam->ignorable(m, k))) continue;
            lerr_set(e, "%s: unexpected tensor '%s' for this %s config (a different model?)", st_path(m->st[s]), k,
                     m->fam->model_type);
            free(found);
            goto fail;
        }
    /* With an allocator (ranks of a node sharing one block), only the process
     * told to fill it converts; the others read what it wrote after ready(). */
    int fill = 1, conv_rc = 0;
    if (n_owned && al) {
        m->owned = al->alloc(n_owned * sizeof(float), al->ctx, &fill);
        m->owned_shared = 1;
    } else if (n_owned) {
        m->owned = xalloc_aligned(n_owned * sizeof(float));
    }
    size_t at = 0;
    for (int i = 0; i < m->n_tensor; i++) {
        const st_tensor *t = found[i];
        if (t->dtype == ST_F32 && !((uintptr_t)t->data & 3u)) {
            m->tensor[i].data = (const float *)t->data;
            if (!conv_rc && st_check_finite(m->tensor[i].data, t, e)) conv_rc = -1;
        } else {
            if (fill && !conv_rc && st_to_f32(m->owned + at, t, e)) conv_rc = -1;
            m->tensor[i].data = m->owned + at;
            at += (size_t)t->numel;
        }
    }
    if (n_owned && al) al->ready(al->ctx); /* every process of the node gets here, even after an error */
    free(found);
    if (conv_rc) {
        lerr_prefix(e, "%s", dir);
        goto fail;
    }
    m->size = 0;
    for (int s = 0; s < m->n_st; s++) m->size += st_file_size(m->st[s]);
    return 0;
fail:
    model_free(m);
    return -1;
}

void model_free(model *m) {
    if (!m) return;
    for (int s = 0; s < m->n_st; s++) st_close(m->st[s]);
    free(m->st);
    if (!m->owned_shared) free(m->owned); /* a shared block belongs to its allocator */
    free(m->tensor);
    free(m->site);
    free(m->impl);
    free(m->label_names);
    memset(m, 0, sizeof *m);
}

uint64_t model_content_hash(const model *m) {
    if (m->n_st == 1) return hash64(st_bytes(m->st[0]), st_file_size(m->st[0]), 0);
    uint64_t h = 0;
    for (int s = 0; s < m->n_st; s++) h = hash64(st_bytes(m->st[s]), st_file_size(m->st[s]), h);
    return h;
}

int model_init_shape(model *m, const char *config_json, struct lerr *e) {
    memset(m, 0, sizeof *m);
    snprintf(m->dir, sizeof m->dir, "(shape only)");
    if (describe_from_text(m, config_json, "(config)", e)) {
        model_free(m);
        return -1;
    }
    return 0;
}

int model_init_random(model *m, const char *config_json, uint64_t seed, struct lerr *e) {
    if (model_init_shape(m, config_json, e)) return -1;
    snprintf(m->dir, sizeof m->dir, "(random seed %llu)", (unsigned long long)seed);
    size_t total = 0;
    for (int i = 0; i < m->n_tensor; i++)
        total += (size_t)m->tensor[i].shape[0] * (size_t)(m->tensor[i].ndim == 2 ? m->tensor[i].shape[1] : 1);
    m->owned = xalloc_aligned((total ? total : 1) * sizeof(float));
    rng_t r;
    rng_seed(&r, seed);
    /* Normal(0, 0.02) by Box-Muller over the whole block, then 1-D weights 1
     * and biases 0, as HF initializes. */
    for (size_t i = 0; i + 1 < total; i += 2) {
        float u1 = rng_uniform(&r), u2 = rng_uniform(&r);
        float rad = sqrtf(-2.0f * logf(u1 + 1e-12f)) * 0.02f;
        m->owned[i] = rad * cosf(6.2831853f * u2);
        m->owned[i + 1] = rad * sinf(6.2831853f * u2);
    }
    size_t at = 0;
    for (int i = 0; i < m->n_tensor; i++) {
        model_tensor *t = &m->tensor[i];
        size_t n = (size_t)t->shape[0] * (size_t)(t->ndim == 2 ? t->shape[1] : 1);
        float *v = m->owned + at;
        if (t->ndim == 1) {
            size_t ln = strlen(t->name);
            float fillv = ln > 5 && !strcmp(t->name + ln - 5, ".bias") ? 0.0f : 1.0f;
            for (size_t k = 0; k < n; k++) v[k] = fillv;
        }
        t->data = v;
        t->dtype = ST_F32;
        at += n;
    }
    return 0;
}

/* ---------------------------------------------------------------- adapters */

/* peft's modules_to_save match: the module path equals the name or ends with ".name". */
static int save_matches(const char *tensor, const char *module) {
    const char *dot = strrchr(tensor, '.');
    if (!dot) return 0;
    size_t mlen = (size_t)(dot - tensor), n = strlen(module);
    if (mlen == n) return !strncmp(tensor, module, n);
    return mlen > n && tensor[mlen - n - 1] == '.' && !strncmp(tensor + mlen - n, module, n);
}

int model_adapter_create(lora_adapter *a, const lora_spec *spec, const model *m, int strict, struct lerr *e) {
    if (lora_create(a, spec, m->site, m->n_site, strict, e)) {
        char msg[sizeof e->msg];
        snprintf(msg, sizeof msg, "%s", e->msg);
        return lerr_set(e, "%s (%s modules: %s)", msg, m->fam->model_type, m->fam->modules);
    }
    for (int k = 0; k < spec->n_save; k++) {
        int hits = 0;
        for (int i = 0; i < m->n_tensor; i++) {
            const model_tensor *t = &m->tensor[i];
            if (!save_matches(t->name, spec->save[k])) continue;
            if (lora_add_whole(a, i, m->n_tensor, t->name, t->ndim, t->shape, e)) {
                lora_free(a);
                return -1;
            }
            hits++;
        }
        if (!hits && !strict) continue; /* peft skips names that match nothing (SEQ_CLS's default "score") */
        if (!hits) {
            char name[LORA_NAME];
            snprintf(name, sizeof name, "%s", spec->save[k]);
            lora_free(a);
            return lerr_set(e, "modules_to_save '%s' matches no module of this %s model", name, m->fam->model_type);
        }
    }
    return 0;
}

void model_adapter_init(lora_adapter *a, const model *m, uint64_t seed) {
    lora_init(a, seed);
    for (int i = 0; i < a->n_tensor; i++) {
        const lora_tensor *t = &a->tensor[i];
        if (t->kind == LORA_KIND_WHOLE)
            memcpy(a->w + t->off, m->tensor[t->mt].data, sizeof(float) * (size_t)t->rows * (size_t)t->cols);
    }
}

int model_full_adapter(lora_adapter *a, const model *m, struct lerr *e) {
    memset(a, 0, sizeof *a);
    if (!m->fam->full_finetune)
        return lerr_set(e, "full fine-tuning is not implemented for the %s family", m->fam->model_type);
    a->full = 1;
    a->n_sites = m->n_site;
    a->site_mod = xmalloc(sizeof(int) * (size_t)(m->n_site ? m->n_site : 1));
    for (int i = 0; i < m->n_site; i++) a->site_mod[i] = -1;
    a->mod = xcalloc(1, sizeof(lora_module));
    a->tensor = xcalloc(1, sizeof(lora_tensor));
    a->w = xalloc_aligned(sizeof(float));
    for (int i = 0; i < m->n_tensor; i++) {
        const model_tensor *t = &m->tensor[i];
        if (lora_add_whole(a, i, m->n_tensor, t->name, t->ndim, t->shape, e)) {
            lora_free(a);
            return -1;
        }
    }
    /* full fine-tuning saves a whole model: the keys are HF's, not peft's */
    for (int i = 0; i < a->n_tensor; i++) snprintf(a->tensor[i].key, LORA_KEY, "%s", m->tensor[a->tensor[i].mt].name);
    model_adapter_init(a, m, 0);
    return 0;
}

int model_load_peft(lora_adapter *a, const model *m, const char *dir, struct lerr *e) {
    char path[4200];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    lora_spec spec;
    if (lora_read_peft_config(&spec, path, e)) return -1;
    if (model_adapter_create(a, &spec, m, 0, e)) return lerr_prefix(e, "%s", path);
    if (lora_load_peft_values(a, dir, e)) {
        lora_free(a);
        return -1;
    }
    return 0;
}

int model_save_peft(const lora_adapter *a, const model *m, const char *dir, struct lerr *e) {
    /* peft puts all-linear's LoRA on a token classifier's head too and then cannot wrap it in
     * modules_to_save (peft 0.21: "modules_to_save cannot be applied to lora.Linear"); our sites never
     * include the head, so say so as peft's own workaround does: exclude_modules = [the head] */
    int all_linear = !a->spec.target_regex && a->spec.n_targets == 1 && !strcmp(a->spec.targets[0], "all-linear");
    if (all_linear && m->task == TASK_TOKEN_CLS && a->spec.n_exclude == 0 && m->save_modules) {
        lora_adapter b = *a;
        b.spec.n_exclude = 1;
        b.spec.exclude_regex = 0;
        snprintf(b.spec.exclude[0], LORA_NAME, "%s", m->save_modules);
        return lora_save_peft(&b, dir, m->dir, model_task_name(m->task), m->fan_in_fan_out, e);
    }
    return lora_save_peft(a, dir, m->dir, model_task_name(m->task), m->fan_in_fan_out, e);
}

/* ---------------------------------------------------------------- linear layers */

void model_linear_forward(const model *m, const lora_adapter *a, lora_ws *w, int site, float *out, const float *x,
                          int N, float beta) {
    const lora_site *s = &m->site[site];
    const float *W = model_w(m, a, s->w), *b = s->b >= 0 ? model_w(m, a, s->b) : NULL;
    if (s->layout == LORA_IN_OUT)
        matmul_forward(out, x, W, b, N, s->in, s->out, beta);
    else
        linear_forward(out, x, W, b, N, s->in, s->out, beta);
    lora_forward(a, w, site, out, x, N, s->in, s->out);
}

void model_linear_backward(const model *m, const lora_adapter *a, lora_ws *w, int site, float *grad, float *dx,
                           const float *dout, const float *x, int N) {
    const lora_site *s = &m->site[site];
    const float *W = model_w(m, a, s->w);
    if (dx) {
        if (s->layout == LORA_IN_OUT)
            matmul_backward_input(dx, dout, W, N, s->in, s->out, 0);
        else
            linear_backward_input(dx, dout, W, N, s->in, s->out, 0);
    }
    float *gW = model_g(a, grad, s->w), *gb = s->b >= 0 ? model_g(a, grad, s->b) : NULL;
    if (gW) {
        if (s->layout == LORA_IN_OUT)
            matmul_backward_weight(gW, x, dout, N, s->in, s->out);
        else
            linear_backward_weight(gW, x, dout, N, s->in, s->out);
    }
    if (gb) bias_backward(gb, dout, N, s->out);
    lora_backward(a, w, site, grad, dx, dout, x, N, s->in, s->out);
}

/* ---------------------------------------------------------------- convenience */

model_ws *model_ws_create(const model *m, const lora_adapter *a, int B, int T) {
    return m->fam->ws_create(m, a, B, T);
}
void model_ws_free(const model *m, model_ws *s) {
    if (s) m->fam->ws_free(s);
}
double model_forward(const model *m, const lora_adapter *a, model_ws *s, const model_batch *b, int train,
                     uint64_t dropout_seed, int64_t *n_targets) {
    return m->fam->forward(m, a, s, b, train, dropout_seed, n_targets);
}
void model_backward(const model *m, const lora_adapter *a, model_ws *s, float *grad, float dscale) {
    m->fam->backward(m, a, s, grad, dscale);
}
const float *model_output(const model *m, const model_ws *s, int *ndim, int64_t shape[3]) {
    return m->fam->output(s, ndim, shape);
}
