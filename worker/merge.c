/* Merging adapters into GPT-2 weights (see include/merge.h). */
#include "merge.h"

#include <dirent.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

void gpt2_merge(gpt2 *out, const gpt2 *base, const lora_adapter *a) {
    /* A random model has exactly the owned layout we need; overwrite its values. */
    gpt2_init_random(out, &base->cfg, 0);
    const gpt2_config *c = &base->cfg;
    size_t C = (size_t)c->n_embd, F = (size_t)c->n_inner, V = (size_t)c->vocab_size, P = (size_t)c->n_positions;
#define CP(dst, src, n) memcpy((float *)(dst), (src), (n) * sizeof(float))
    CP(out->wte, base->wte, V * C);
    CP(out->wpe, base->wpe, P * C);
    CP(out->lnf_w, base->lnf_w, C);
    CP(out->lnf_b, base->lnf_b, C);
    if (!c->tied) CP(out->lm_head, base->lm_head, V * C);
    for (int l = 0; l < c->n_layer; l++) {
        const gpt2_layer *s = &base->layer[l];
        gpt2_layer *d = &out->layer[l];
        CP(d->ln1_w, s->ln1_w, C);
        CP(d->ln1_b, s->ln1_b, C);
        CP(d->qkv_w, s->qkv_w, C * 3 * C);
        CP(d->qkv_b, s->qkv_b, 3 * C);
        CP(d->aproj_w, s->aproj_w, C * C);
        CP(d->aproj_b, s->aproj_b, C);
        CP(d->ln2_w, s->ln2_w, C);
        CP(d->ln2_b, s->ln2_b, C);
        CP(d->fc_w, s->fc_w, C * F);
        CP(d->fc_b, s->fc_b, F);
        CP(d->fproj_w, s->fproj_w, F * C);
        CP(d->fproj_b, s->fproj_b, C);
    }
#undef CP
    snprintf(out->dir, sizeof out->dir, "%s (merged)", base->dir);
    if (!a) return;
    for (int i = 0; i < a->n_mod; i++) {
        const float *w, *b;
        gpt2_site_weights(out, a->mod[i].site, &w, &b);
        lora_merge_conv1d((float *)w, a, &a->mod[i]);
    }
}

/* Where a base tensor's values live in a model with the same layout. */
static const float *tensor_of(const gpt2 *m, const char *key) {
    const char *k = strncmp(key, "transformer.", 12) == 0 ? key + 12 : key;
    if (!strcmp(k, "wte.weight")) return m->wte;
    if (!strcmp(k, "wpe.weight")) return m->wpe;
    if (!strcmp(k, "ln_f.weight")) return m->lnf_w;
    if (!strcmp(k, "ln_f.bias")) return m->lnf_b;
    if (!strcmp(key, "lm_head.weight")) return m->lm_head;
    int l, n = 0;
    char rest[64];
    if (sscanf(k, "h.%d.%63s%n", &l, rest, &n) != 2 || l < 0 || l >= m->cfg.n_layer) return NULL;
    const gpt2_layer *y = &m->layer[l];
    static const struct {
        const char *name;
        size_t off;
    } map[] = {
        {"ln_1.weight", offsetof(gpt2_layer, ln1_w)},         {"ln_1.bias", offsetof(gpt2_layer, ln1_b)},
        {"attn.c_attn.weight", offsetof(gpt2_layer, qkv_w)},  {"attn.c_attn.bias", offsetof(gpt2_layer, qkv_b)},
        {"attn.c_proj.weight", offsetof(gpt2_layer, aproj_w)}, {"attn.c_proj.bias", offsetof(gpt2_layer, aproj_b)},
        {"ln_2.weight", offsetof(gpt2_layer, ln2_w)},         {"ln_2.bias", offsetof(gpt2_layer, ln2_b)},
        {"mlp.c_fc.weight", offsetof(gpt2_layer, fc_w)},      {"mlp.c_fc.bias", offsetof(gpt2_layer, fc_b)},
        {"mlp.c_proj.weight", offsetof(gpt2_layer, fproj_w)}, {"mlp.c_proj.bias", offsetof(gpt2_layer, fproj_b)},
    };
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (!strcmp(rest, map[i].name)) return *(const float *const *)((const char *)y + map[i].off);
    return NULL;
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

int gpt2_save_merged(const gpt2 *base, const lora_adapter *a, const char *out_dir, struct lerr *e) {
    if (!base->st) return lerr_set(e, "merge: the base model has no source file");
    if (mkdir_p(out_dir, e)) return -1;
    gpt2 merged;
    gpt2_merge(&merged, base, a);
    int n = st_count(base->st), rc = -1;
    st_entry *ent = xcalloc((size_t)n, sizeof(st_entry));
    int k = 0;
    for (int i = 0; i < n; i++) {
        const st_tensor *t = st_at(base->st, i);
        const float *v = tensor_of(&merged, t->name);
        if (!v) continue; /* attn.bias buffers and the tied lm_head are not weights */
        ent[k].name = t->name;
        ent[k].dtype = (t->dtype == ST_F16 || t->dtype == ST_BF16) ? t->dtype : ST_F32;
        ent[k].ndim = t->ndim;
        memcpy(ent[k].shape, t->shape, sizeof t->shape);
        ent[k].data = v;
        k++;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", out_dir);
    const char *meta[] = {"format", "pt"};
    if (st_write(path, ent, k, meta, 1, e)) goto out;
    DIR *d = opendir(base->dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            size_t ln = strlen(de->d_name);
            if (de->d_name[0] == '.' || !strcmp(de->d_name, "model.safetensors")) continue;
            if (ln < 5 || (strcmp(de->d_name + ln - 5, ".json") && strcmp(de->d_name + ln - 4, ".txt"))) continue;
            char from[4200], to[4200];
            snprintf(from, sizeof from, "%s/%s", base->dir, de->d_name);
            snprintf(to, sizeof to, "%s/%s", out_dir, de->d_name);
            if (copy_file(from, to, e)) {
                closedir(d);
                goto out;
            }
        }
        closedir(d);
    }
    rc = 0;
out:
    free(ent);
    gpt2_free(&merged);
    return rc;
}
