/*
 * Labeled datasets in safetensors (see include/dataset.h). The file is read
 * once at open: every value is converted to int32 and checked, and the
 * mapping is closed, so ds_get cannot fail.
 */
#include "dataset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "safetensors.h"

struct ds_file {
    char path[1024];
    model_task task;
    int64_t n;
    int T;
    int32_t *ids, *mask, *types, *labels; /* (N, T), (N, T) or NULL, (N, T) or NULL, (N) or (N, T) */
};

void ds_close(ds_file *d) {
    if (!d) return;
    free(d->ids);
    free(d->mask);
    free(d->types);
    free(d->labels);
    free(d);
}

ds_file *ds_open(const char *path, model_task task, int n_labels, int vocab, int max_T, struct lerr *e) {
    if (task == TASK_CAUSAL_LM) {
        lerr_set(e, "%s: a labeled dataset is for classification models; causal LM training reads token files", path);
        return NULL;
    }
    st_file *f = st_open(path, e);
    if (!f) return NULL;
    ds_file *d = calloc(1, sizeof *d);
    if (!d) {
        st_close(f);
        lerr_set(e, "%s: out of memory", path);
        return NULL;
    }
    snprintf(d->path, sizeof d->path, "%s", path);
    d->task = task;
    const char *fmt = st_meta(f, "format"), *ver = st_meta(f, "version"), *tk = st_meta(f, "task");
    if (!fmt || strcmp(fmt, DS_FORMAT)) {
        lerr_set(e, "%s: not a lora-ps dataset (its safetensors metadata needs format = \"%s\")", path, DS_FORMAT);
        goto fail;
    }
    if (!ver || strcmp(ver, DS_VERSION)) {
        lerr_set(e, "%s: dataset format version %s is not supported by this build (it reads version %s)", path,
                 ver ? ver : "(none)", DS_VERSION);
        goto fail;
    }
    if (!tk || strcmp(tk, model_task_name(task))) {
        lerr_set(e, "%s: a dataset for task %s, but the model's task is %s", path, tk ? tk : "(none)",
                 model_task_name(task));
        goto fail;
    }
    const st_tensor *ti = st_find(f, "input_ids");
    if (!ti || ti->ndim != 2 || ti->shape[0] < 1 || ti->shape[1] < 1) {
        lerr_set(e, "%s: needs a tensor input_ids of shape (N, T)", path);
        goto fail;
    }
    d->n = ti->shape[0];
    if (ti->shape[1] > max_T) {
        lerr_set(e, "%s: input_ids has T = %lld positions, more than the model's %d", path, (long long)ti->shape[1],
                 max_T);
        goto fail;
    }
    d->T = (int)ti->shape[1];
    int64_t N = d->n, T = d->T;
    if (N > (int64_t)1 << 31 || N * T > (int64_t)1 << 34) {
        lerr_set(e, "%s: input_ids (%lld, %lld) is too large", path, (long long)N, (long long)T);
        goto fail;
    }
    const char *lab_shape = task == TASK_SEQ_CLS ? "(N)" : "(N, T)";
    if (st_read_ints(f, "input_ids", 2, N, T, &d->ids, e) != 1 ||
        st_read_ints(f, "attention_mask", 2, N, T, &d->mask, e) < 0 ||
        st_read_ints(f, "token_type_ids", 2, N, T, &d->types, e) < 0)
        goto fail;
    int rc = st_read_ints(f, "labels", task == TASK_SEQ_CLS ? 1 : 2, N, T, &d->labels, e);
    if (rc <= 0) {
        if (rc == 0) lerr_set(e, "%s: needs a tensor labels of shape %s for %s", path, lab_shape, model_task_name(task));
        goto fail;
    }
    for (int64_t i = 0; i < N * T; i++)
        if (d->ids[i] < 0 || d->ids[i] >= vocab) {
            lerr_set(e, "%s: input_ids[%lld][%lld] = %d is outside the vocabulary (%d)", path, (long long)(i / T),
                     (long long)(i % T), d->ids[i], vocab);
            goto fail;
        }
    for (int64_t r = 0; d->mask && r < N; r++) {
        int64_t real = 0;
        for (int64_t t = 0; t < T; t++) {
            int32_t v = d->mask[r * T + t];
            if (v != 0 && v != 1) {
                lerr_set(e, "%s: attention_mask[%lld][%lld] = %d (must be 0 or 1)", path, (long long)r, (long long)t,
                         v);
                goto fail;
            }
            real += v;
        }
        if (!real) {
            lerr_set(e, "%s: example %lld has no token (attention_mask all 0)", path, (long long)r);
            goto fail;
        }
    }
    for (int64_t i = 0; d->types && i < N * T; i++)
        if (d->types[i] < 0 || d->types[i] > 1 << 16) {
            lerr_set(e, "%s: token_type_ids[%lld][%lld] = %d is out of range", path, (long long)(i / T),
                     (long long)(i % T), d->types[i]);
            goto fail;
        }
    int64_t nl = task == TASK_SEQ_CLS ? N : N * T;
    for (int64_t i = 0; i < nl; i++) {
        int32_t v = d->labels[i];
        if ((task == TASK_TOKEN_CLS && v == -100) || (v >= 0 && v < n_labels)) continue;
        if (task == TASK_SEQ_CLS)
            lerr_set(e, "%s: labels[%lld] = %d is outside the model's %d labels", path, (long long)i, v, n_labels);
        else
            lerr_set(e, "%s: labels[%lld][%lld] = %d is outside the model's %d labels (or -100)", path,
                     (long long)(i / T), (long long)(i % T), v, n_labels);
        goto fail;
    }
    st_close(f);
    return d;
fail:
    st_close(f);
    ds_close(d);
    return NULL;
}

const char *ds_path(const ds_file *d) { return d->path; }
int64_t ds_count(const ds_file *d) { return d->n; }
int ds_seq_len(const ds_file *d) { return d->T; }
int ds_has_mask(const ds_file *d) { return d->mask != NULL; }
int ds_has_types(const ds_file *d) { return d->types != NULL; }

void ds_get(const ds_file *d, int64_t i, int r, int32_t *tokens, int32_t *mask, int32_t *types, int32_t *labels) {
    size_t T = (size_t)d->T, src = (size_t)i * T, dst = (size_t)r * T;
    memcpy(tokens + dst, d->ids + src, T * sizeof(int32_t));
    if (mask && d->mask) memcpy(mask + dst, d->mask + src, T * sizeof(int32_t));
    if (types && d->types) memcpy(types + dst, d->types + src, T * sizeof(int32_t));
    if (d->task == TASK_SEQ_CLS)
        labels[r] = d->labels[i];
    else
        memcpy(labels + dst, d->labels + src, T * sizeof(int32_t));
}

/* int32 values widened to the int64 the format's writers (HF, numpy) use. */
static int64_t *widen(const int32_t *v, size_t n) {
    int64_t *w = malloc(sizeof(int64_t) * (n ? n : 1));
    for (size_t i = 0; w && i < n; i++) w[i] = v[i];
    return w;
}

int ds_write(const char *path, model_task task, int64_t n, int T, const int32_t *ids, const int32_t *mask,
             const int32_t *types, const int32_t *labels, const char *const *label_names, int n_names,
             struct lerr *e) {
    if (task == TASK_CAUSAL_LM || n < 1 || T < 1)
        return lerr_set(e, "%s: a dataset needs a classification task and at least one example", path);
    size_t NT = (size_t)n * (size_t)T, NL = task == TASK_SEQ_CLS ? (size_t)n : NT;
    int64_t *w[4] = {widen(ids, NT), mask ? widen(mask, NT) : NULL, types ? widen(types, NT) : NULL,
                     widen(labels, NL)};
    st_entry ent[4];
    int k = 0, rc = -1;
    const char *names[4] = {"input_ids", "attention_mask", "token_type_ids", "labels"};
    char *lab_json = NULL;
    for (int i = 0; i < 4; i++) {
        if ((i == 1 && !mask) || (i == 2 && !types)) continue;
        if (!w[i]) {
            lerr_set(e, "%s: out of memory", path);
            goto done;
        }
        int one = i == 3 && task == TASK_SEQ_CLS;
        ent[k++] = (st_entry){names[i], ST_I64, one ? 1 : 2, {n, one ? 0 : T}, w[i]};
    }
    const char *meta[8] = {"format", DS_FORMAT, "version", DS_VERSION, "task", model_task_name(task)};
    int nm = 3;
    if (n_names > 0) {
        cJSON *a = cJSON_CreateStringArray(label_names, n_names);
        lab_json = a ? cJSON_PrintUnformatted(a) : NULL;
        cJSON_Delete(a);
        if (!lab_json) {
            lerr_set(e, "%s: out of memory", path);
            goto done;
        }
        meta[6] = "label_names";
        meta[7] = lab_json;
        nm = 4;
    }
    rc = st_write(path, ent, k, meta, nm, e);
done:
    for (int i = 0; i < 4; i++) free(w[i]);
    free(lab_json);
    return rc;
}
