/*
 * The GPT-2 engine with LoRA: adapter gradients against finite differences
 * (with and without dropout, all sites and a single high site so the early
 * stop of the backward is exercised), merge equivalence, peft save/load,
 * peft's parameter line for GPT-2 124M, and loader errors.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data.h"
#include "gpt2.h"
#include "lora.h"
#include "merge.h"
#include "safetensors.h"
#include "testutil.h"
#include "util.h"
#include <cJSON.h>

static gpt2_config tiny_cfg(void) {
    gpt2_config c = {.n_layer = 2, .n_head = 2, .n_embd = 16, .n_inner = 64, .n_positions = 16,
                     .vocab_size = 37, .ln_eps = 1e-5f, .gelu_exact = 0, .tied = 1};
    return c;
}

static lora_spec spec_of(const char *t0, const char *t1, int r, float dropout) {
    lora_spec s = {.r = r, .alpha = 2.0f * r, .dropout = dropout};
    snprintf(s.targets[s.n_targets++], LORA_NAME, "%s", t0);
    if (t1) snprintf(s.targets[s.n_targets++], LORA_NAME, "%s", t1);
    return s;
}

/* Gradient check of the sum loss w.r.t. every adapter value (tiny model). */
static void grad_check(const char *label, const lora_spec *spec, int train) {
    gpt2_config c = tiny_cfg();
    gpt2 m;
    gpt2_init_random(&m, &c, 11);
    /* bigger weights than GPT-2's init so that every path carries signal */
    for (size_t i = 0; i < (size_t)c.n_embd * c.n_inner; i++) ((float *)m.layer[1].fc_w)[i] *= 5;
    lora_adapter a;
    struct lerr e;
    int ok = lora_create(&a, spec, m.sites, m.n_sites, 1, &e) == 0;
    CHECK(ok, "lora_create: %s", e.msg);
    if (!ok) return;
    lora_init(&a, 5);
    rng_t r;
    rng_seed(&r, 3);
    for (size_t i = 0; i < a.n_params; i++) a.w[i] += 0.2f * (2 * rng_uniform(&r) - 1); /* B != 0 */
    int B = 2, T = 7;
    int32_t tok[14], tg[14];
    for (int i = 0; i < 14; i++) tok[i] = (int32_t)(rng_next(&r) % (uint64_t)c.vocab_size);
    gpt2_targets_from_labels(tg, tok, B, T);
    int64_t ids[2] = {100, 101}, n;
    gpt2_acts *s = gpt2_acts_create(&m, &a, B, T);
    float *grad = calloc(a.n_params, sizeof(float)), *num = calloc(a.n_params, sizeof(float));
    gpt2_forward(&m, &a, s, tok, tg, B, T, train, 99, ids, &n);
    gpt2_backward(&m, &a, s, grad, 1.0f);
    const float h = 1e-2f;
    for (size_t i = 0; i < a.n_params; i++) {
        float keep = a.w[i];
        a.w[i] = keep + h;
        double fp = gpt2_forward(&m, &a, s, tok, tg, B, T, train, 99, ids, &n);
        a.w[i] = keep - h;
        double fm = gpt2_forward(&m, &a, s, tok, tg, B, T, train, 99, ids, &n);
        a.w[i] = keep;
        num[i] = (float)((fp - fm) / (2 * h));
    }
    double err = tu_rel_err(grad, num, (long)a.n_params);
    printf("  %-40s %zu adapter values, rel err vs finite differences %.2e\n", label, a.n_params, err);
    CHECK(err < 1e-2, "%s: adapter gradient differs from finite differences (rel err %g)", label, err);
    free(grad);
    free(num);
    gpt2_acts_free(s);
    lora_free(&a);
    gpt2_free(&m);
}

/* Full fine-tuning: the gradient of every base tensor (embeddings, LayerNorms,
 * biases, weights) against finite differences, on a sample of each tensor. */
static void test_full_finetune_grad(void) {
    gpt2_config c = tiny_cfg();
    gpt2 m;
    gpt2_init_random(&m, &c, 21);
    lora_adapter a;
    struct lerr e;
    CHECK(gpt2_full_adapter(&m, &a, &e) == 0, "full adapter: %s", e.msg);
    CHECK((int64_t)a.n_params == m.n_params, "full mode trains every parameter (%zu vs %lld)", a.n_params,
          (long long)m.n_params);
    rng_t r;
    rng_seed(&r, 8);
    /* LayerNorm weights away from 1 and biases away from 0, as the fixtures do */
    for (size_t i = 0; i < a.n_params; i++) a.w[i] += 0.05f * (2 * rng_uniform(&r) - 1);
    int B = 2, T = 6;
    int32_t tok[12], tg[12];
    for (int i = 0; i < 12; i++) tok[i] = (int32_t)(rng_next(&r) % (uint64_t)c.vocab_size);
    gpt2_targets_from_labels(tg, tok, B, T);
    gpt2_acts *s = gpt2_acts_create(&m, &a, B, T);
    float *grad = calloc(a.n_params, sizeof(float));
    int64_t n;
    gpt2_forward(&m, &a, s, tok, tg, B, T, 1, 0, NULL, &n);
    gpt2_backward(&m, &a, s, grad, 1.0f);
    double worst = 0;
    for (int ti = 0; ti < a.n_tensor; ti++) {
        const lora_tensor *t = &a.tensor[ti];
        size_t cnt = (size_t)t->rows * t->cols, k = 0;
        float an[32], nu[32];
        for (size_t j = 0; j < cnt && k < 32; j += 1 + cnt / 32) {
            float *p = a.w + t->off + j, keep = *p;
            const float h = 1e-2f;
            *p = keep + h;
            double fp = gpt2_forward(&m, &a, s, tok, tg, B, T, 1, 0, NULL, &n);
            *p = keep - h;
            double fm = gpt2_forward(&m, &a, s, tok, tg, B, T, 1, 0, NULL, &n);
            *p = keep;
            nu[k] = (float)((fp - fm) / (2 * h));
            an[k] = grad[t->off + j];
            k++;
        }
        double err = tu_rel_err(an, nu, (long)k);
        if (err > worst) worst = err;
        CHECK(err < 1e-2, "full fine-tuning: gradient of %s differs from finite differences (rel err %g)", t->key, err);
    }
    printf("  %-40s %d tensors, worst rel err vs finite differences %.2e\n", "full fine-tuning", a.n_tensor, worst);
    free(grad);
    gpt2_acts_free(s);
    lora_free(&a);
    gpt2_free(&m);
}

static void test_merge_equivalence(void) {
    gpt2_config c = tiny_cfg();
    gpt2 m, mm;
    gpt2_init_random(&m, &c, 1);
    lora_spec sp = spec_of("c_attn", "c_fc", 4, 0);
    lora_adapter a;
    struct lerr e;
    CHECK(lora_create(&a, &sp, m.sites, m.n_sites, 1, &e) == 0, "%s", e.msg);
    lora_init(&a, 2);
    for (size_t i = 0; i < a.n_params; i++) a.w[i] += 0.05f * (float)((i * 7919) % 13) / 13.0f;
    gpt2_merge(&mm, &m, &a);
    int32_t tok[8] = {1, 5, 9, 3, 2, 8, 30, 36}, tg[8];
    gpt2_targets_from_labels(tg, tok, 1, 8);
    gpt2_acts *s = gpt2_acts_create(&m, &a, 1, 8);
    long nv = 8L * c.vocab_size;
    float *l1 = malloc(sizeof(float) * nv);
    int64_t n;
    gpt2_forward(&m, &a, s, tok, tg, 1, 8, 0, 0, NULL, &n);
    memcpy(l1, gpt2_logits(s), sizeof(float) * nv);
    gpt2_forward(&mm, NULL, s, tok, tg, 1, 8, 0, 0, NULL, &n);
    double err = tu_rel_err(gpt2_logits(s), l1, nv);
    CHECK(err < 1e-5, "merged model logits differ from base+adapter (rel err %g)", err);
    free(l1);
    gpt2_acts_free(s);
    gpt2_free(&mm);
    lora_free(&a);
    gpt2_free(&m);
}

static void test_params_line(void) {
    /* GPT-2 124M with r=8 on c_attn: peft prints exactly this */
    gpt2_config c = {.n_layer = 12, .n_head = 12, .n_embd = 768, .n_inner = 3072, .n_positions = 1024,
                     .vocab_size = 50257, .ln_eps = 1e-5f, .tied = 1};
    gpt2 m;
    gpt2_init_shape(&m, &c);
    lora_spec sp = spec_of("c_attn", NULL, 8, 0);
    lora_adapter a;
    struct lerr e;
    CHECK(lora_create(&a, &sp, m.sites, m.n_sites, 1, &e) == 0, "%s", e.msg);
    char line[200];
    lora_params_line(line, sizeof line, (int64_t)a.n_params, m.n_params);
    const char *want = "trainable params: 294,912 || all params: 124,734,720 || trainable%: 0.2364";
    CHECK(!strcmp(line, want), "got '%s', want '%s'", line, want);
    lora_free(&a);
    gpt2_free(&m);
}

static void test_lora_errors(void) {
    gpt2_config c = tiny_cfg();
    gpt2 m;
    gpt2_init_shape(&m, &c);
    lora_adapter a;
    struct lerr e;
    lora_spec sp = spec_of("c_attn", NULL, 0, 0);
    CHECK(lora_create(&a, &sp, m.sites, m.n_sites, 1, &e) != 0 && strstr(e.msg, "r must be > 0"), "r=0: %s", e.msg);
    sp = spec_of("c_attn", "q_proj", 4, 0);
    CHECK(lora_create(&a, &sp, m.sites, m.n_sites, 1, &e) != 0 && strstr(e.msg, "unknown target module 'q_proj'"),
          "unknown target: %s", e.msg);
    sp = spec_of("h.1.mlp.c_proj", NULL, 2, 0);
    CHECK(lora_create(&a, &sp, m.sites, m.n_sites, 1, &e) == 0 && a.n_mod == 1 && a.mod[0].site == 7,
          "a path suffix selects one module");
    lora_free(&a);
    sp = spec_of("c_proj", NULL, 2, 0);
    CHECK(lora_create(&a, &sp, m.sites, m.n_sites, 1, &e) == 0 && a.n_mod == 4,
          "c_proj matches attn.c_proj and mlp.c_proj in both layers (got %d)", a.n_mod);
    lora_free(&a);
    sp = spec_of("attn", NULL, 2, 0); /* a prefix of names is not a match in peft */
    CHECK(lora_create(&a, &sp, m.sites, m.n_sites, 1, &e) != 0, "'attn' must not match attn.c_attn");
    gpt2_free(&m);
}

static void test_peft_roundtrip(void) {
    gpt2_config c = tiny_cfg();
    gpt2 m;
    gpt2_init_shape(&m, &c);
    lora_spec sp = spec_of("c_attn", "c_proj", 3, 0.1f);
    sp.rslora = 1;
    lora_adapter a, b;
    struct lerr e;
    CHECK(lora_create(&a, &sp, m.sites, m.n_sites, 1, &e) == 0, "%s", e.msg);
    lora_init(&a, 9);
    for (size_t i = 0; i < a.n_params; i++) a.w[i] = (float)i * 0.001f - 0.3f;
    char dir[] = "/tmp/lora-test-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char sub[64];
    snprintf(sub, sizeof sub, "%s/adapter", dir);
    CHECK(lora_save_peft(&a, sub, "base", "CAUSAL_LM", 1, &e) == 0, "save: %s", e.msg);
    int ok = lora_load_peft(&b, sub, m.sites, m.n_sites, &e) == 0;
    CHECK(ok, "load: %s", e.msg);
    if (ok) {
        CHECK(b.n_params == a.n_params && !memcmp(a.w, b.w, a.n_params * sizeof(float)), "values roundtrip bitwise");
        CHECK(b.spec.r == 3 && b.spec.rslora == 1 && fabsf(b.scale - 6.0f / sqrtf(3.0f)) < 1e-6f &&
                  fabsf(b.spec.dropout - 0.1f) < 1e-7f,
              "config roundtrip (r %d rslora %d scale %g)", b.spec.r, b.spec.rslora, b.scale);
        lora_free(&b);
    }
    /* shape mismatch between base and adapter: same keys, a model with another width */
    gpt2_config c2 = c;
    c2.n_embd = 32;
    c2.n_inner = 128;
    gpt2 m2;
    gpt2_init_shape(&m2, &c2);
    CHECK(lora_load_peft(&b, sub, m2.sites, m2.n_sites, &e) != 0 && strstr(e.msg, "lora_A.weight") &&
              strstr(e.msg, "shape"),
          "shape mismatch message: %s", e.msg);
    gpt2_free(&m2);
    /* missing adapter folder */
    CHECK(lora_load_peft(&b, "/nonexistent/adapter", m.sites, m.n_sites, &e) != 0 &&
              strstr(e.msg, "/nonexistent/adapter/adapter_config.json"),
          "missing folder: %s", e.msg);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
    lora_free(&a);
    gpt2_free(&m);
}

/* The hub's gpt2 files have no "transformer." prefix: the same weights under
 * either naming give the same model. */
static void test_unprefixed_keys(void) {
    struct lerr e;
    char src[512];
    snprintf(src, sizeof src, "%s/base", tu_fixture("gpt2-tiny"));
    gpt2 a, b;
    int ok = gpt2_open(&a, src, &e) == 0;
    CHECK(ok, "open fixture: %s", e.msg);
    if (!ok) return;
    char dir[] = "/tmp/lora-test-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    int n = st_count(a.st);
    st_entry *ent = calloc((size_t)n, sizeof(st_entry));
    float **vals = calloc((size_t)n, sizeof(float *));
    for (int i = 0; i < n; i++) {
        const st_tensor *t = st_at(a.st, i);
        vals[i] = malloc(sizeof(float) * (size_t)t->numel);
        st_to_f32(vals[i], t, &e);
        ent[i].name = strncmp(t->name, "transformer.", 12) ? t->name : t->name + 12;
        ent[i].dtype = ST_F32;
        ent[i].ndim = t->ndim;
        memcpy(ent[i].shape, t->shape, sizeof t->shape);
        ent[i].data = vals[i];
    }
    char path[600], cmd[1400];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK(st_write(path, ent, n, NULL, 0, &e) == 0, "write: %s", e.msg);
    snprintf(cmd, sizeof cmd, "cp %s/config.json %s/", src, dir);
    CHECK(system(cmd) == 0, "copy config");
    ok = gpt2_open(&b, dir, &e) == 0;
    CHECK(ok, "open unprefixed: %s", e.msg);
    if (ok) {
        CHECK(st_find(b.st, "wte.weight") && !st_find(b.st, "transformer.wte.weight"), "keys without prefix");
        int32_t tok[8] = {1, 5, 9, 3, 2, 8, 30, 36}, tg[8];
        gpt2_targets_from_labels(tg, tok, 1, 8);
        gpt2_acts *s = gpt2_acts_create(&a, NULL, 1, 8);
        long nv = 8L * a.cfg.vocab_size;
        float *l1 = malloc(sizeof(float) * nv);
        int64_t nt;
        gpt2_forward(&a, NULL, s, tok, tg, 1, 8, 0, 0, NULL, &nt);
        memcpy(l1, gpt2_logits(s), sizeof(float) * nv);
        gpt2_forward(&b, NULL, s, tok, tg, 1, 8, 0, 0, NULL, &nt);
        CHECK(!memcmp(l1, gpt2_logits(s), sizeof(float) * nv), "the same logits with and without the prefix");
        free(l1);
        gpt2_acts_free(s);
        gpt2_free(&b);
    }
    for (int i = 0; i < n; i++) free(vals[i]);
    free(vals);
    free(ent);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
    gpt2_free(&a);
}

/* What we write is what peft writes: an adapter peft saved (the fixture's
 * lora-trained), read and written back by us, has the same tensor names,
 * dtypes, shapes and bytes, and a config with the same LoRA settings. */
static void test_peft_conformance(void) {
    struct lerr e;
    char base[512], src[512];
    snprintf(base, sizeof base, "%s/base", tu_fixture("gpt2-tiny"));
    snprintf(src, sizeof src, "%s/lora-trained", tu_fixture("gpt2-tiny"));
    gpt2 m;
    lora_adapter a;
    if (gpt2_open(&m, base, &e) || lora_load_peft(&a, src, m.sites, m.n_sites, &e)) {
        CHECK(0, "load: %s", e.msg);
        return;
    }
    char dir[] = "/tmp/lora-test-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    CHECK(lora_save_peft(&a, dir, "base", "CAUSAL_LM", 1, &e) == 0, "save: %s", e.msg);
    char pa[600], pb[600];
    snprintf(pa, sizeof pa, "%s/adapter_model.safetensors", src);
    snprintf(pb, sizeof pb, "%s/adapter_model.safetensors", dir);
    st_file *fa = st_open(pa, &e), *fb = st_open(pb, &e);
    CHECK(fa && fb, "open: %s", e.msg);
    if (fa && fb) {
        CHECK(st_count(fa) == st_count(fb), "tensor count %d vs peft's %d", st_count(fb), st_count(fa));
        int same = 1;
        for (int i = 0; i < st_count(fa); i++) {
            const st_tensor *x = st_at(fa, i), *y = st_find(fb, x->name);
            if (!y || y->dtype != x->dtype || y->ndim != x->ndim || memcmp(y->shape, x->shape, sizeof x->shape) ||
                y->nbytes != x->nbytes || memcmp(y->data, x->data, x->nbytes)) {
                same = 0;
                fprintf(stderr, "  differs from peft's file: %s\n", x->name);
            }
        }
        CHECK(same, "every tensor: peft's name, dtype, shape and bytes");
        CHECK(st_meta(fb, "format") && !strcmp(st_meta(fb, "format"), "pt"), "__metadata__ format = pt, as peft");
    }
    st_close(fa);
    st_close(fb);
    lora_spec theirs, ours;
    char ca[600], cb[600];
    snprintf(ca, sizeof ca, "%s/adapter_config.json", src);
    snprintf(cb, sizeof cb, "%s/adapter_config.json", dir);
    CHECK(lora_read_peft_config(&theirs, ca, &e) == 0 && lora_read_peft_config(&ours, cb, &e) == 0, "configs: %s",
          e.msg);
    CHECK(theirs.r == ours.r && theirs.alpha == ours.alpha && theirs.rslora == ours.rslora &&
              theirs.dropout == ours.dropout && theirs.n_targets == ours.n_targets,
          "the same r, alpha, rsLoRA, dropout and targets as peft's config");
    /* the fields peft reads beyond the spec: the same values as in peft's own file */
    char *ta = read_text_file(ca, 1 << 20, &e), *tb = read_text_file(cb, 1 << 20, &e);
    cJSON *ja = ta ? cJSON_Parse(ta) : NULL, *jb = tb ? cJSON_Parse(tb) : NULL;
    static const char *keys[] = {"peft_type", "task_type", "fan_in_fan_out", "bias", "use_dora", "use_rslora",
                                 "inference_mode", "modules_to_save"};
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(ja, keys[k]), *y = cJSON_GetObjectItemCaseSensitive(jb, keys[k]);
        CHECK(x && y && cJSON_Compare(x, y, 1), "adapter_config.json \"%s\" as peft writes it", keys[k]);
    }
    cJSON_Delete(ja);
    cJSON_Delete(jb);
    free(ta);
    free(tb);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
    lora_free(&a);
    gpt2_free(&m);
}

static void test_loader_errors(void) {
    struct lerr e;
    gpt2 m;
    CHECK(gpt2_open(&m, "/nonexistent/model", &e) != 0 && strstr(e.msg, "/nonexistent/model/config.json"),
          "missing model: %s", e.msg);
    char dir[] = "/tmp/lora-test-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char path[128];
    /* a llama config: not supported yet */
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"model_type\": \"llama\", \"hidden_size\": 64}");
    fclose(f);
    CHECK(gpt2_open(&m, dir, &e) != 0 && strstr(e.msg, "not supported yet"), "llama: %s", e.msg);
    /* a GPT-2 config whose safetensors has a wrong shape */
    f = fopen(path, "w");
    fprintf(f, "{\"model_type\": \"gpt2\", \"n_embd\": 8, \"n_layer\": 1, \"n_head\": 2, \"vocab_size\": 10, "
               "\"n_positions\": 4}");
    fclose(f);
    gpt2_config c = {.n_layer = 1, .n_head = 2, .n_embd = 8, .n_inner = 32, .n_positions = 4, .vocab_size = 10,
                     .ln_eps = 1e-5f, .tied = 1};
    gpt2 r;
    gpt2_init_random(&r, &c, 1);
    st_entry ent[] = {{"wte.weight", ST_F32, 2, {10, 8}, r.wte}, {"wpe.weight", ST_F32, 2, {4, 9}, r.wpe}};
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK(st_write(path, ent, 2, NULL, 0, &e) == 0, "write: %s", e.msg);
    CHECK(gpt2_open(&m, dir, &e) != 0 && strstr(e.msg, "wpe.weight"), "shape mismatch: %s", e.msg);
    printf("  loader error example: %s\n", e.msg);
    gpt2_free(&r);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
}

int main(void) {
    lora_spec all = spec_of("c_attn", "c_proj", 3, 0);
    snprintf(all.targets[all.n_targets++], LORA_NAME, "c_fc");
    grad_check("all sites, r=3", &all, 0);
    lora_spec drop = spec_of("c_attn", "c_fc", 2, 0.3f);
    grad_check("c_attn + c_fc, dropout 0.3 (train)", &drop, 1);
    lora_spec high = spec_of("h.1.mlp.c_fc", NULL, 2, 0);
    grad_check("only h.1.mlp.c_fc (early stop)", &high, 0);
    lora_spec rs = spec_of("h.0.attn.c_proj", NULL, 4, 0);
    rs.rslora = 1;
    grad_check("only h.0.attn.c_proj, rsLoRA", &rs, 0);
    test_merge_equivalence();
    test_full_finetune_grad();
    test_params_line();
    test_lora_errors();
    test_peft_roundtrip();
    test_loader_errors();
    test_unprefixed_keys();
    test_peft_conformance();
    return tu_end("test_gpt2");
}
