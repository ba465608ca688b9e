/*
 * LoRA adapters (see include/lora.h): target matching, the flat layout, init,
 * peft import/export, merge, and peft's trainable-parameters line.
 */
#include "lora.h"

#include <cJSON.h>
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

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

/* A regex target as peft applies it: Python's re.fullmatch(pattern, name).
 * PCRE2 is Python's dialect for what module patterns use (\d, \w, non-greedy
 * and possessive quantifiers, (?:...), (?P<name>...), lookarounds, which POSIX
 * ERE lacks or reads differently); the whole name must match (PCRE2_ANCHORED |
 * PCRE2_ENDANCHORED, with backtracking, as fullmatch), and \d, \w, \s are
 * Unicode-aware as for Python's str patterns (PCRE2_UTF | PCRE2_UCP). Two
 * spellings Python has and PCRE2 10.42 reads otherwise are translated first:
 * "{,n}" (Python: {0,n}) and "\Z" (Python: the very end, PCRE2's \z). */
typedef struct {
    pcre2_code *code;
    pcre2_match_data *md;
} py_regex;

static int py_regex_compile(py_regex *r, const char *pattern, const char *what, struct lerr *e) {
    memset(r, 0, sizeof *r);
    size_t n = strlen(pattern);
    char *pat = malloc(2 * n + 1);
    if (!pat) return lerr_set(e, "out of memory");
    size_t o = 0;
    int in_class = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = pattern[i];
        if (ch == '\\' && i + 1 < n) {
            pat[o++] = ch;
            pat[o++] = !in_class && pattern[i + 1] == 'Z' ? 'z' : pattern[i + 1];
            i++;
            continue;
        }
        if (in_class) {
            if (ch == ']') in_class = 0;
            pat[o++] = ch;
            continue;
        }
        if (ch == '[') {
            in_class = 1;
            pat[o++] = ch;
            if (i + 1 < n && pattern[i + 1] == '^') pat[o++] = pattern[++i];
            if (i + 1 < n && pattern[i + 1] == ']') pat[o++] = pattern[++i]; /* a literal ] first in a class */
            continue;
        }
        pat[o++] = ch;
        if (ch == '{' && i + 1 < n && pattern[i + 1] == ',') { /* {,n} -> {0,n} when it is a quantifier */
            size_t j = i + 2;
            while (j < n && pattern[j] >= '0' && pattern[j] <= '9') j++;
            if (j > i + 2 && j < n && pattern[j] == '}') pat[o++] = '0';
        }
    }
    pat[o] = 0;
    int err;
    PCRE2_SIZE at;
    r->code = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_UTF |
                            PCRE2_UCP, &err, &at, NULL);
    free(pat);
    if (!r->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return lerr_set(e, "%s regex '%s' does not compile: %s (at offset %zu)", what, pattern, (const char *)msg,
                        (size_t)at);
    }
    if (!(r->md = pcre2_match_data_create_from_pattern(r->code, NULL))) {
        pcre2_code_free(r->code);
        r->code = NULL;
        return lerr_set(e, "out of memory");
    }
    return 0;
}

/* 1 when the whole of name matches; 0 otherwise (a matching error counts as no match). */
static int py_regex_fullmatch(const py_regex *r, const char *name) {
    return pcre2_match(r->code, (PCRE2_SPTR)name, PCRE2_ZERO_TERMINATED, 0, 0, r->md, NULL) >= 0;
}

static void py_regex_free(py_regex *r) {
    pcre2_match_data_free(r->md);
    pcre2_code_free(r->code);
    memset(r, 0, sizeof *r);
}

int lora_regex_fullmatch(const char *pattern, const char *name, struct lerr *e) {
    py_regex r;
    if (py_regex_compile(&r, pattern, "the", e)) return -1;
    int m = py_regex_fullmatch(&r, name);
    py_regex_free(&r);
    return m;
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
    py_regex re, xre;
    int have_re = 0, have_xre = 0;
    if (spec->target_regex) {
        if (py_regex_compile(&re, spec->targets[0], "target_modules", e)) {
            lora_free(a);
            return -1;
        }
        have_re = 1;
    }
    if (spec->n_exclude && spec->exclude_regex) {
        if (py_regex_compile(&xre, spec->exclude[0], "exclude_modules", e)) {
            if (have_re) py_regex_free(&re);
            lora_free(a);
            return -1;
        }
        have_xre = 1;
    }
    int hits[LORA_MAX_TARGETS] = {0};
    size_t off = 0;
    for (int s = 0; s < n_sites; s++) {
        int match = 0, excluded = 0;
        if (have_re)
            match = py_regex_fullmatch(&re, sites[s].name);
        else
            for (int t = 0; t < spec->n_targets; t++)
                if (target_matches(sites[s].name, spec->targets[t])) match = 1, hits[t]++;
        if (have_xre)
            excluded = py_regex_fullmatch(&xre, sites[s].name);
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
    if (have_re) py_regex_free(&re);
    if (have_xre) py_regex_free(&xre);
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
    /* every field read must have its JSON type: a wrong one is an error, never a silent default */
    const cJSON *al = cJSON_GetObjectItemCaseSensitive(j, "lora_alpha");
    if (al && !cJSON_IsNumber(al)) {
        lerr_set(e, "%s: \"lora_alpha\" must be a number", path);
        goto out;
    }
    spec->alpha = al ? (float)al->valuedouble : 8.0f; /* peft's default */
    if (!(spec->alpha > 0) || !isfinite(spec->alpha)) {
        lerr_set(e, "%s: \"lora_alpha\" must be > 0, got %g", path, spec->alpha);
        goto out;
    }
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(j, "use_rslora");
    if (rs && !cJSON_IsBool(rs)) {
        lerr_set(e, "%s: \"use_rslora\" must be true or false", path);
        goto out;
    }
    spec->rslora = cJSON_IsTrue(rs);
    const cJSON *dr = cJSON_GetObjectItemCaseSensitive(j, "lora_dropout");
    if (dr && !cJSON_IsNumber(dr)) {
        lerr_set(e, "%s: \"lora_dropout\" must be a number", path);
        goto out;
    }
    spec->dropout = dr ? (float)dr->valuedouble : 0.0f;
    if (!(spec->dropout >= 0 && spec->dropout < 1)) {
        lerr_set(e, "%s: \"lora_dropout\" must be in [0, 1), got %g", path, spec->dropout);
        goto out;
    }
    static const char *must_be_bool[] = {"use_dora", "use_qalora", "fan_in_fan_out", "inference_mode"};
    for (size_t i = 0; i < sizeof must_be_bool / sizeof *must_be_bool; i++) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(j, must_be_bool[i]);
        if (it && !cJSON_IsNull(it) && !cJSON_IsBool(it)) {
            lerr_set(e, "%s: \"%s\" must be true or false", path, must_be_bool[i]);
            goto out;
        }
    }
    static const char *unsupported_true[] = {"use_dora", "use_qalora", "lora_bias", "use_bdlora"};
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
    static const char *must_be_empty[] = {"rank_pattern",          "alpha_pattern",        "layers_to_transform",
                                          "trainable_token_indices", "layer_replication", "target_parameters",
                                          "alora_invocation_tokens", "megatron_config"};
    for (size_t i = 0; i < sizeof must_be_empty / sizeof *must_be_empty; i++) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(j, must_be_empty[i]);
        if (it && !cJSON_IsNull(it) && !((cJSON_IsObject(it) || cJSON_IsArray(it)) && !it->child)) {
            lerr_set(e, "%s: \"%s\" is set; this project does not support it yet", path, must_be_empty[i]);
            goto out;
        }
    }
    const cJSON *bias = cJSON_GetObjectItemCaseSensitive(j, "bias");
    if (bias && !cJSON_IsNull(bias) && !cJSON_IsString(bias)) {
        lerr_set(e, "%s: \"bias\" must be a string", path);
        goto out;
    }
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
        if (st_to_f32(a->w + t->off, s, e)) {
            lerr_prefix(e, "%s", path);
            goto out;
        }
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
