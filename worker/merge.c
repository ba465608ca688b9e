/*
 * Merging an adapter into its base model and writing models (see
 * include/model.h): W' = W + scale * B A in each adapted site's layout
 * (peft's merge), whole trainable tensors replaced by the adapter's values.
 * Everything walks the model's tensor table.
 */
#include <dirent.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "util.h"

int model_merge(model *out, const model *base, const lora_adapter *a, struct lerr *e) {
    memset(out, 0, sizeof *out);
    out->fam = base->fam;
    out->task = base->task;
    out->fan_in_fan_out = base->fan_in_fan_out;
    out->vocab = base->vocab, out->max_positions = base->max_positions, out->n_labels = base->n_labels;
    out->eos_id = base->eos_id, out->bos_id = base->bos_id;
    out->n_types = base->n_types;
    out->n_params = base->n_params;
    out->save_modules = base->save_modules;
    snprintf(out->dir, sizeof out->dir, "%s (merged)", base->dir);
    out->tensor = malloc(sizeof(model_tensor) * (size_t)(base->n_tensor ? base->n_tensor : 1));
    out->site = malloc(sizeof(lora_site) * (size_t)(base->n_site ? base->n_site : 1));
    out->impl = malloc(base->impl_size ? base->impl_size : 1);
    if (!out->tensor || !out->site || !out->impl) {
        model_free(out);
        return lerr_set(e, "merge: out of memory");
    }
    memcpy(out->tensor, base->tensor, sizeof(model_tensor) * (size_t)base->n_tensor);
    memcpy(out->site, base->site, sizeof(lora_site) * (size_t)base->n_site);
    memcpy(out->impl, base->impl, base->impl_size);
    if (base->label_names && base->n_labels > 0) {
        out->label_names = malloc(sizeof *base->label_names * (size_t)base->n_labels);
        if (!out->label_names) {
            model_free(out);
            return lerr_set(e, "merge: out of memory");
        }
        memcpy(out->label_names, base->label_names, sizeof *base->label_names * (size_t)base->n_labels);
    }
    out->n_tensor = out->cap_tensor = base->n_tensor;
    out->n_site = out->cap_site = base->n_site;
    out->impl_size = base->impl_size;
    size_t total = 0;
    for (int i = 0; i < base->n_tensor; i++)
        total += (size_t)base->tensor[i].shape[0] * (size_t)(base->tensor[i].ndim == 2 ? base->tensor[i].shape[1] : 1);
    out->owned = xalloc_aligned((total ? total : 1) * sizeof(float));
    size_t at = 0;
    for (int i = 0; i < base->n_tensor; i++) {
        const model_tensor *t = &base->tensor[i];
        size_t n = (size_t)t->shape[0] * (size_t)(t->ndim == 2 ? t->shape[1] : 1);
        memcpy(out->owned + at, model_w(base, a, i), n * sizeof(float));
        out->tensor[i].data = out->owned + at;
        at += n;
    }
    for (int i = 0; a && i < a->n_mod; i++) {
        const lora_site *s = &base->site[a->mod[i].site];
        lora_merge_into((float *)out->tensor[s->w].data, s->layout, a, &a->mod[i]);
    }
    return 0;
}

static int copy_file(const char *from, const char *to, struct lerr *e) {
    FILE *f = fopen(from, "rb");
    if (!f) return lerr_set(e, "%s: cannot open", from);
    size_t cap = 1 << 16, n = 0;
    char *buf = xmalloc(cap);
    size_t k;
    while ((k = fread(buf + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap) buf = realloc(buf, cap *= 2);
        if (!buf) {
            fclose(f);
            return lerr_set(e, "%s: out of memory", from);
        }
    }
    fclose(f);
    int rc = write_file_atomic(to, buf, n, e);
    free(buf);
    return rc;
}

/* dir/model.safetensors from m's tensors, each in dtypes[i] (or `dtype` when dtypes is NULL). */
static int write_tensors(const model *m, const char *dir, const st_dtype *dtypes, st_dtype dtype, struct lerr *e) {
    st_entry *ent = xcalloc((size_t)(m->n_tensor ? m->n_tensor : 1), sizeof(st_entry));
    for (int i = 0; i < m->n_tensor; i++) {
        const model_tensor *t = &m->tensor[i];
        st_dtype d = dtypes ? dtypes[i] : dtype;
        ent[i] = (st_entry){t->name, d == ST_F16 || d == ST_BF16 ? d : ST_F32, t->ndim, {t->shape[0], t->shape[1]},
                            t->data};
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    const char *meta[] = {"format", "pt"};
    int rc = st_write(path, ent, m->n_tensor, meta, 1, e);
    free(ent);
    return rc;
}

int model_save_merged(const model *base, const lora_adapter *a, const char *out_dir, struct lerr *e) {
    if (!base->n_st) return lerr_set(e, "merge: the base model has no source files");
    if (mkdir_p(out_dir, e)) return -1;
    model merged;
    if (model_merge(&merged, base, a, e)) return -1;
    st_dtype *dt = xcalloc((size_t)(base->n_tensor ? base->n_tensor : 1), sizeof(st_dtype));
    for (int i = 0; i < base->n_tensor; i++) dt[i] = base->tensor[i].dtype;
    int rc = write_tensors(&merged, out_dir, dt, ST_F32, e);
    free(dt);
    if (rc) goto out;
    DIR *d = opendir(base->dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            size_t ln = strlen(de->d_name);
            if (de->d_name[0] == '.' || !strncmp(de->d_name, "model.safetensors", 17)) continue;
            if (ln < 5 || (strcmp(de->d_name + ln - 5, ".json") && strcmp(de->d_name + ln - 4, ".txt") &&
                           strcmp(de->d_name + ln - 6, ".model")))
                continue;
            char from[4200], to[4200];
            snprintf(from, sizeof from, "%s/%s", base->dir, de->d_name);
            snprintf(to, sizeof to, "%s/%s", out_dir, de->d_name);
            if (copy_file(from, to, e)) {
                rc = -1;
                break;
            }
        }
        closedir(d);
    }
out:
    model_free(&merged);
    return rc;
}

int model_save(const model *m, const char *dir, st_dtype dtype, struct lerr *e) {
    if (!m->fam->config_json) return lerr_set(e, "the %s family cannot write its config", m->fam->model_type);
    if (mkdir_p(dir, e) || write_tensors(m, dir, NULL, dtype, e)) return -1;
    char *cfg = m->fam->config_json(m), path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    int rc = write_file_atomic(path, cfg, strlen(cfg), e);
    free(cfg);
    return rc;
}
