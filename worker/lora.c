/*
 * LoRA adapters (see include/lora.h): target matching, the flat layout, init,
 * peft import/export, merge, and peft's trainable-parameters line.
 */
#include "lora.h"

#include <cJSON.h>
#include <cblas.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "safetensors.h"
#include "util.h"

#define PEFT_PREFIX "base_model.model."

/* peft's check_target_module_exists for a list: exact name or ".target" suffix. */
static int target_matches(const char *name, const char *target) {
    if (!strcmp(target, "all-linear")) return 1;
    size_t n = strlen(name), t = strlen(target);
    if (n == t) return !strcmp(name, target);
    return n > t && name[n - t - 1] == '.' && !strcmp(name + n - t, target);
}

int lora_create(lora_adapter *a, const lora_spec *spec, const lora_site *sites, int n_sites, int strict,
                struct lerr *e) {
    memset(a, 0, sizeof *a);
    if (spec->r <= 0) return lerr_set(e, "LoRA rank r must be > 0, got %d", spec->r);
    if (!(spec->alpha > 0)) return lerr_set(e, "lora_alpha must be > 0, got %g", spec->alpha);
    if (!(spec->dropout >= 0 && spec->dropout < 1))
        return lerr_set(e, "lora_dropout must be in [0, 1), got %g", spec->dropout);
    if (spec->n_targets <= 0) return lerr_set(e, "no target modules given");
    a->spec = *spec;
    a->scale = spec->rslora ? spec->alpha / sqrtf((float)spec->r) : spec->alpha / (float)spec->r;
    a->n_sites = n_sites;
    a->site_mod = malloc(sizeof(int) * (size_t)(n_sites ? n_sites : 1));
    a->mod = calloc((size_t)(n_sites ? n_sites : 1), sizeof(lora_module));
    a->tensor = calloc((size_t)(2 * n_sites + 1), sizeof(lora_tensor));
    if (!a->site_mod || !a->mod || !a->tensor) {
        lora_free(a);
        return lerr_set(e, "out of memory");
    }
    regex_t re;
    int have_re = 0;
    if (spec->target_regex) {
        char pat[LORA_NAME + 8];
        snprintf(pat, sizeof pat, "^(%s)$", spec->targets[0]);
        if (regcomp(&re, pat, REG_EXTENDED | REG_NOSUB) != 0) {
            lora_free(a);
            return lerr_set(e, "target_modules regex '%s' does not compile", spec->targets[0]);
        }
        have_re = 1;
    }
    regex_t xre;
    int have_xre = 0;
    if (spec->n_exclude && spec->exclude_regex) {
        char pat[LORA_NAME + 8];
        snprintf(pat, sizeof pat, "^(%s)$", spec->exclude[0]);
        if (regcomp(&xre, pat, REG_EXTENDED | REG_NOSUB) != 0) {
            if (have_re) regfree(&re);
            lora_free(a);
            return lerr_set(e, "exclude_modules regex '%s' does not compile", spec->exclude[0]);
        }
        have_xre = 1;
    }
    int hits[LORA_MAX_TARGETS] = {0};
    size_t off = 0;
    for (int s = 0; s < n_sites; s++) {
        int match = 0, excluded = 0;
        if (have_re)
            match = regexec(&re, sites[s].name, 0, NULL, 0) == 0;
        else
            for (int t = 0; t < spec->n_targets; t++)
                if (target_matches(sites[s].name, spec->targets[t])) match = 1, hits[t]++;
        if (have_xre)
            excluded = regexec(&xre, sites[s].name, 0, NULL, 0) == 0;
        else
            for (int t = 0; t < spec->n_exclude && !excluded; t++)
                excluded = strcmp(spec->exclude[t], "all-linear") && target_matches(sites[s].name, spec->exclude[t]);
        a->site_mod[s] = -1;
        if (!match || excluded) continue;
        if (have_re) hits[0]++;
        lora_module *m = &a->mod[a->n_mod];
        m->site = s;
        m->in = sites[s].in;
        m->out = sites[s].out;
        m->r = spec->r;
        m->scale = a->scale;
        m->tA = a->n_tensor++;
        m->tB = a->n_tensor++;
        lora_tensor *tA = &a->tensor[m->tA], *tB = &a->tensor[m->tB];
        snprintf(tA->key, sizeof tA->key, PEFT_PREFIX "%s.lora_A.weight", sites[s].name);
        snprintf(tB->key, sizeof tB->key, PEFT_PREFIX "%s.lora_B.weight", sites[s].name);
        tA->kind = LORA_KIND_A, tB->kind = LORA_KIND_B;
        tA->ndim = tB->ndim = 2;
        tA->mt = tB->mt = -1;
        tA->rows = spec->r, tA->cols = m->in, tA->off = off;
        off += (size_t)spec->r * (size_t)m->in;
        tB->rows = m->out, tB->cols = spec->r, tB->off = off;
        off += (size_t)m->out * (size_t)spec->r;
        a->site_mod[s] = a->n_mod++;
    }
    if (have_re) regfree(&re);
    if (have_xre) regfree(&xre);
    if (strict && !have_re)
        for (int t = 0; t < spec->n_targets; t++)
            if (!hits[t]) {
                char tgt[LORA_NAME];
                snprintf(tgt, sizeof tgt, "%s", spec->targets[t]);
                lora_free(a);
                return lerr_set(e, "unknown target module '%s': it matches no module of the model", tgt);
            }
    if (a->n_mod == 0) {
        char list[1024] = "";
        for (int t = 0; t < spec->n_targets; t++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s'%s'", t ? ", " : "", spec->targets[t]);
        lora_free(a);
        return lerr_set(e, "target modules %s match no module of the model", list);
    }
    a->n_params = off;
    a->w = xalloc_aligned((off ? off : 1) * sizeof(float));
    return 0;
}

void lora_free(lora_adapter *a) {
    if (!a) return;
    free(a->site_mod);
    free(a->mod);
    free(a->tensor);
    free(a->w);
    free(a->whole);
    memset(a, 0, sizeof *a);
}

int lora_add_whole(lora_adapter *a, int mt, int n_model_tensor, const char *name, int ndim, const int64_t *shape,
                   struct lerr *e) {
    if (ndim < 1 || ndim > 2 || shape[0] < 1 || shape[0] > INT32_MAX || (ndim == 2 && (shape[1] < 1 || shape[1] > INT32_MAX)))
        return lerr_set(e, "'%s': a whole trainable tensor must be 1-D or 2-D with positive sizes", name);
    if (mt < 0 || mt >= n_model_tensor) return lerr_set(e, "'%s': tensor index %d out of range", name, mt);
    if (!a->whole) {
        a->whole = malloc(sizeof(int) * (size_t)n_model_tensor);
        if (!a->whole) return lerr_set(e, "out of memory");
        for (int i = 0; i < n_model_tensor; i++) a->whole[i] = -1;
        a->n_model_tensor = n_model_tensor;
    }
    if (a->n_model_tensor != n_model_tensor || a->whole[mt] >= 0)
        return lerr_set(e, "'%s' is already trainable, or the adapter belongs to another model", name);
    lora_tensor *nt = realloc(a->tensor, sizeof(lora_tensor) * (size_t)(a->n_tensor + 1));
    if (!nt) return lerr_set(e, "out of memory");
    a->tensor = nt;
    lora_tensor *t = &a->tensor[a->n_tensor];
    memset(t, 0, sizeof *t);
    if (snprintf(t->key, sizeof t->key, PEFT_PREFIX "%s", name) >= (int)sizeof t->key)
        return lerr_set(e, "tensor name '%s' is too long", name);
    t->kind = LORA_KIND_WHOLE;
    t->ndim = ndim;
    t->rows = ndim == 2 ? (int)shape[0] : 1;
    t->cols = ndim == 2 ? (int)shape[1] : (int)shape[0];
    t->mt = mt;
    t->off = a->n_params;
    size_t n = a->n_params + (size_t)t->rows * (size_t)t->cols;
    float *w = xalloc_aligned(n * sizeof(float));
    if (a->n_params) memcpy(w, a->w, a->n_params * sizeof(float));
    memset(w + a->n_params, 0, (n - a->n_params) * sizeof(float));
    free(a->w);
    a->w = w;
    a->n_params = n;
    a->whole[mt] = a->n_tensor++;
    a->n_whole++;
    return 0;
}

void lora_init(lora_adapter *a, uint64_t seed) {
    rng_t r;
    rng_seed(&r, seed);
    for (int i = 0; i < a->n_mod; i++) {
        const lora_module *m = &a->mod[i];
        float bound = 1.0f / sqrtf((float)m->in);
        float *A = lora_A(a, m);
        for (long j = 0; j < (long)m->r * m->in; j++) A[j] = (2.0f * rng_uniform(&r) - 1.0f) * bound;
        memset(lora_B(a, m), 0, sizeof(float) * (size_t)m->out * (size_t)m->r);
    }
}

const lora_tensor *lora_find(const lora_adapter *a, const char *key) {
    for (int i = 0; i < a->n_tensor; i++)
        if (!strcmp(a->tensor[i].key, key)) return &a->tensor[i];
    return NULL;
}

/* ---------------------------------------------------------------- peft I/O */

int lora_read_peft_config(lora_spec *spec, const char *path, struct lerr *e) {
    memset(spec, 0, sizeof *spec);
    char *text = read_text_file(path, 1 << 20, e);
    if (!text) return -1;
    cJSON *j = cJSON_Parse(text);
    free(text);
    int rc = -1;
    if (!cJSON_IsObject(j)) {
        lerr_set(e, "%s: not a JSON object", path);
        goto out;
    }
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(j, "peft_type");
    if (pt && (!cJSON_IsString(pt) || strcmp(pt->valuestring, "LORA"))) {
        lerr_set(e, "%s: peft_type %s is not supported (only LORA)", path,
                 cJSON_IsString(pt) ? pt->valuestring : "(not a string)");
        goto out;
    }
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "r");
    if (!cJSON_IsNumber(r) || r->valuedouble != floor(r->valuedouble)) {
        lerr_set(e, "%s: \"r\" must be an integer", path);
        goto out;
    }
    if (r->valuedouble <= 0 || r->valuedouble > 1e6) {
        lerr_set(e, "%s: \"r\" must be > 0, got %g", path, r->valuedouble);
        goto out;
    }
    spec->r = (int)r->valuedouble;
    const cJSON *al = cJSON_GetObjectItemCaseSensitive(j, "lora_alpha");
    spec->alpha = cJSON_IsNumber(al) ? (float)al->valuedouble : 8.0f; /* peft's default */
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(j, "use_rslora");
    spec->rslora = cJSON_IsTrue(rs);
    const cJSON *dr = cJSON_GetObjectItemCaseSensitive(j, "lora_dropout");
    spec->dropout = cJSON_IsNumber(dr) ? (float)dr->valuedouble : 0.0f;
    static const char *unsupported_true[] = {"use_dora", "use_qalora"};
    for (size_t i = 0; i < sizeof unsupported_true / sizeof *unsupported_true; i++)
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, unsupported_true[i]))) {
            lerr_set(e, "%s: %s = true is not supported", path, unsupported_true[i]);
            goto out;
        }
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(j, "modules_to_save");
    if (ms && !cJSON_IsNull(ms)) {
        const cJSON *it;
        if (!cJSON_IsArray(ms)) {
            lerr_set(e, "%s: \"modules_to_save\" must be a list of module names or null", path);
            goto out;
        }
        cJSON_ArrayForEach(it, ms) {
            if (!cJSON_IsString(it) || !it->valuestring[0] || strlen(it->valuestring) >= LORA_NAME ||
                spec->n_save >= LORA_MAX_SAVE) {
                lerr_set(e, "%s: modules_to_save must be at most %d non-empty names shorter than %d characters", path,
                         LORA_MAX_SAVE, LORA_NAME);
                goto out;
            }
            snprintf(spec->save[spec->n_save++], LORA_NAME, "%s", it->valuestring);
        }
    }
    const cJSON *xm = cJSON_GetObjectItemCaseSensitive(j, "exclude_modules");
    if (cJSON_IsString(xm)) {
        if (strlen(xm->valuestring) >= LORA_NAME) {
            lerr_set(e, "%s: exclude_modules regex too long", path);
            goto out;
        }
        spec->exclude_regex = 1;
        snprintf(spec->exclude[0], LORA_NAME, "%s", xm->valuestring);
        spec->n_exclude = 1;
    } else if (cJSON_IsArray(xm)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, xm) {
            if (!cJSON_IsString(it) || strlen(it->valuestring) >= LORA_NAME || spec->n_exclude >= LORA_MAX_TARGETS) {
                lerr_set(e, "%s: exclude_modules must be at most %d strings shorter than %d characters", path,
                         LORA_MAX_TARGETS, LORA_NAME);
                goto out;
            }
            snprintf(spec->exclude[spec->n_exclude++], LORA_NAME, "%s", it->valuestring);
        }
    } else if (xm && !cJSON_IsNull(xm)) {
        lerr_set(e, "%s: exclude_modules must be a list of module names, a regex, or null", path);
        goto out;
    }
    static const char *must_be_empty[] = {"rank_pattern", "alpha_pattern", "layers_to_transform",
                                          "trainable_token_indices", "layer_replication"};
    for (size_t i = 0; i < sizeof must_be_empty / sizeof *must_be_empty; i++) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(j, must_be_empty[i]);
        if (it && !cJSON_IsNull(it) && !((cJSON_IsObject(it) || cJSON_IsArray(it)) && !it->child)) {
            lerr_set(e, "%s: \"%s\" is set; this project does not support it yet", path, must_be_empty[i]);
            goto out;
        }
    }
    const cJSON *bias = cJSON_GetObjectItemCaseSensitive(j, "bias");
    if (cJSON_IsString(bias) && strcmp(bias->valuestring, "none")) {
        lerr_set(e, "%s: bias \"%s\" is not supported (only \"none\")", path, bias->valuestring);
        goto out;
    }
    const cJSON *tm = cJSON_GetObjectItemCaseSensitive(j, "target_modules");
    if (cJSON_IsString(tm)) {
        if (strlen(tm->valuestring) >= LORA_NAME) {
            lerr_set(e, "%s: target_modules regex too long", path);
            goto out;
        }
        spec->target_regex = strcmp(tm->valuestring, "all-linear") != 0;
        snprintf(spec->targets[0], LORA_NAME, "%s", tm->valuestring);
        spec->n_targets = 1;
    } else if (cJSON_IsArray(tm)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, tm) {
            if (!cJSON_IsString(it) || strlen(it->valuestring) >= LORA_NAME || spec->n_targets >= LORA_MAX_TARGETS) {
                lerr_set(e, "%s: target_modules must be at most %d strings shorter than %d characters", path,
                         LORA_MAX_TARGETS, LORA_NAME);
                goto out;
            }
            snprintf(spec->targets[spec->n_targets++], LORA_NAME, "%s", it->valuestring);
        }
    } else {
        lerr_set(e, "%s: missing \"target_modules\" (a list of module names or a regex)", path);
        goto out;
    }
    if (spec->n_targets == 0) {
        lerr_set(e, "%s: target_modules is empty", path);
        goto out;
    }
    rc = 0;
out:
    cJSON_Delete(j);
    return rc;
}

int lora_load_peft_values(lora_adapter *a, const char *dir, struct lerr *e) {
    char path[4200];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    st_file *f = st_open(path, e);
    if (!f) return -1;
    int rc = -1;
    for (int i = 0; i < a->n_tensor; i++) {
        const lora_tensor *t = &a->tensor[i];
        int64_t shape[2] = {t->ndim == 2 ? t->rows : t->cols, t->cols};
        const st_tensor *s = st_expect(f, t->key, t->ndim, shape, e);
        if (!s) {
            lerr_prefix(e, "adapter does not fit the model");
            goto out;
        }
        if (st_to_f32(a->w + t->off, s, e)) goto out;
    }
    for (int i = 0; i < st_count(f); i++) {
        const char *k = st_at(f, i)->name;
        if (!lora_find(a, k)) {
            lerr_set(e, "%s: tensor '%s' belongs to no adapted module of this model and config", path, k);
            goto out;
        }
    }
    rc = 0;
out:
    st_close(f);
    return rc;
}

int lora_save_peft(const lora_adapter *a, const char *dir, const char *base_model, const char *task_type,
                   int fan_in_fan_out, struct lerr *e) {
    if (mkdir_p(dir, e)) return -1;
    char path[4200];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    st_entry *ent = calloc((size_t)(a->n_tensor ? a->n_tensor : 1), sizeof(st_entry));
    if (!ent) return lerr_set(e, "out of memory");
    for (int i = 0; i < a->n_tensor; i++) {
        const lora_tensor *t = &a->tensor[i];
        ent[i].name = t->key;
        ent[i].dtype = ST_F32;
        ent[i].ndim = t->ndim;
        ent[i].shape[0] = t->ndim == 2 ? t->rows : t->cols;
        ent[i].shape[1] = t->ndim == 2 ? t->cols : 0;
        ent[i].data = a->w + t->off;
    }
    const char *meta[] = {"format", "pt"};
    int rc = st_write(path, ent, a->n_tensor, meta, 1, e);
    free(ent);
    if (rc) return -1;

    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "base_model_name_or_path", base_model ? cJSON_CreateString(base_model) : cJSON_CreateNull());
    cJSON_AddStringToObject(j, "bias", "none");
    cJSON_AddBoolToObject(j, "fan_in_fan_out", fan_in_fan_out);
    cJSON_AddBoolToObject(j, "inference_mode", 1);
    cJSON_AddBoolToObject(j, "init_lora_weights", 1);
    cJSON_AddNullToObject(j, "layers_pattern");
    cJSON_AddNullToObject(j, "layers_to_transform");
    cJSON_AddNumberToObject(j, "lora_alpha", a->spec.alpha);
    cJSON_AddNumberToObject(j, "lora_dropout", a->spec.dropout);
    if (a->spec.n_exclude && a->spec.exclude_regex) {
        cJSON_AddStringToObject(j, "exclude_modules", a->spec.exclude[0]);
    } else if (a->spec.n_exclude) {
        cJSON *xl = cJSON_AddArrayToObject(j, "exclude_modules");
        for (int t = 0; t < a->spec.n_exclude; t++) cJSON_AddItemToArray(xl, cJSON_CreateString(a->spec.exclude[t]));
    } else {
        cJSON_AddNullToObject(j, "exclude_modules");
    }
    if (a->spec.n_save) {
        cJSON *ml = cJSON_AddArrayToObject(j, "modules_to_save");
        for (int t = 0; t < a->spec.n_save; t++) cJSON_AddItemToArray(ml, cJSON_CreateString(a->spec.save[t]));
    } else {
        cJSON_AddNullToObject(j, "modules_to_save");
    }
    cJSON_AddStringToObject(j, "peft_type", "LORA");
    cJSON_AddNumberToObject(j, "r", a->spec.r);
    cJSON_AddItemToObject(j, "rank_pattern", cJSON_CreateObject());
    cJSON_AddItemToObject(j, "alpha_pattern", cJSON_CreateObject());
    cJSON_AddNullToObject(j, "revision");
    int all_linear = 0;
    for (int t = 0; !a->spec.target_regex && t < a->spec.n_targets; t++) all_linear |= !strcmp(a->spec.targets[t], "all-linear");
    if (a->spec.target_regex) {
        cJSON_AddStringToObject(j, "target_modules", a->spec.targets[0]);
    } else if (all_linear) {
        /* peft expands only the string "all-linear"; in a list it is a module name that matches nothing */
        cJSON_AddStringToObject(j, "target_modules", "all-linear");
    } else {
        cJSON *tl = cJSON_AddArrayToObject(j, "target_modules");
        for (int t = 0; t < a->spec.n_targets; t++) cJSON_AddItemToArray(tl, cJSON_CreateString(a->spec.targets[t]));
    }
    cJSON_AddStringToObject(j, "task_type", task_type ? task_type : "CAUSAL_LM");
    cJSON_AddBoolToObject(j, "use_dora", 0);
    cJSON_AddBoolToObject(j, "use_rslora", a->spec.rslora);
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text) return lerr_set(e, "out of memory");
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    rc = write_file_atomic(path, text, strlen(text), e);
    free(text);
    return rc;
}

void lora_merge_into(float *W, lora_layout layout, const lora_adapter *a, const lora_module *m) {
    size_t n = (size_t)m->out * (size_t)m->in;
    float *delta = xmalloc(n * sizeof(float)); /* (out, in) = B A */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m->out, m->in, m->r, 1.0f, lora_B(a, m), m->r, lora_A(a, m),
                m->in, 0.0f, delta, m->in);
    if (layout == LORA_IN_OUT) {
        for (int o = 0; o < m->out; o++)
            for (int i = 0; i < m->in; i++) W[(size_t)i * m->out + o] += delta[(size_t)o * m->in + i] * m->scale;
    } else {
        for (size_t k = 0; k < n; k++) W[k] += delta[k] * m->scale;
    }
    free(delta);
}

static void commas(char *buf, size_t cap, int64_t v) {
    char raw[32];
    snprintf(raw, sizeof raw, "%lld", (long long)v);
    size_t n = strlen(raw), o = 0;
    for (size_t i = 0; i < n && o + 1 < cap; i++) {
        if (i && (n - i) % 3 == 0 && raw[0] != '-' && o + 1 < cap) buf[o++] = ',';
        buf[o++] = raw[i];
    }
    buf[o] = 0;
}

void lora_params_line(char *buf, size_t cap, int64_t trainable, int64_t base_params) {
    char t[40], all[40];
    int64_t total = trainable + base_params;
    commas(t, sizeof t, trainable);
    commas(all, sizeof all, total);
    snprintf(buf, cap, "trainable params: %s || all params: %s || trainable%%: %.4f", t, all,
             total ? 100.0 * (double)trainable / (double)total : 0.0);
}
