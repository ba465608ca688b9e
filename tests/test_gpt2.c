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
#include "lora.h"
#include "model.h"
#include "safetensors.h"
#include "testutil.h"
#include "util.h"
#include <cJSON.h>

#define TINY "{\"model_type\": \"gpt2\", \"n_layer\": 2, \"n_head\": 2, \"n_embd\": 16, \"n_inner\": 64, " \
             "\"n_positions\": 16, \"vocab_size\": 37}"
#define TINY_V 37

static void tiny_random(model *m, uint64_t seed) {
    struct lerr e;
    if (model_init_random(m, TINY, seed, &e)) {
        fprintf(stderr, "model_init_random: %s\n", e.msg);
        exit(1);
    }
}

/* Writable values of a tensor of a random model (its owned block). */
static float *tensor_rw(model *m, const char *name) {
    int i = model_tensor_index(m, name);
    CHECK(i >= 0, "tensor %s", name);
    return i >= 0 ? (float *)m->tensor[i].data : NULL;
}

static double fwd(const model *m, const lora_adapter *a, model_ws *s, const int32_t *tok, int B, int T, int train,
                  const int64_t *ids, int64_t *n) {
    model_batch b = {.tokens = tok, .labels = tok, .sample_ids = ids, .B = B, .T = T};
    return model_forward(m, a, s, &b, train, 99, n);
}

static const float *logits_of(const model *m, const model_ws *s) {
    int nd;
    int64_t sh[3];
    return model_output(m, s, &nd, sh);
}

static lora_spec spec_of(const char *t0, const char *t1, int r, float dropout) {
    lora_spec s = {.r = r, .alpha = 2.0f * r, .dropout = dropout};
    snprintf(s.targets[s.n_targets++], LORA_NAME, "%s", t0);
    if (t1) snprintf(s.targets[s.n_targets++], LORA_NAME, "%s", t1);
    return s;
}

/* Gradient check of the sum loss w.r.t. every adapter value (tiny model). */
static void grad_check(const char *label, const lora_spec *spec, int train) {
    model m;
    tiny_random(&m, 11);
    /* bigger weights than GPT-2's init so that every path carries signal */
    float *fc = tensor_rw(&m, "transformer.h.1.mlp.c_fc.weight");
    for (size_t i = 0; fc && i < (size_t)16 * 64; i++) fc[i] *= 5;
    lora_adapter a;
    struct lerr e;
    int ok = model_adapter_create(&a, spec, &m, 1, &e) == 0;
    CHECK(ok, "lora_create: %s", e.msg);
    if (!ok) return;
    model_adapter_init(&a, &m, 5);
    rng_t r;
    rng_seed(&r, 3);
    for (size_t i = 0; i < a.n_params; i++) a.w[i] += 0.2f * (2 * rng_uniform(&r) - 1); /* B != 0 */
    int B = 2, T = 7;
    int32_t tok[14];
    for (int i = 0; i < 14; i++) tok[i] = (int32_t)(rng_next(&r) % (uint64_t)TINY_V);
    int64_t ids[2] = {100, 101}, n;
    model_ws *s = model_ws_create(&m, &a, B, T);
    float *grad = calloc(a.n_params, sizeof(float)), *num = calloc(a.n_params, sizeof(float));
    fwd(&m, &a, s, tok, B, T, train, ids, &n);
    model_backward(&m, &a, s, grad, 1.0f);
    const float h = 1e-2f;
    for (size_t i = 0; i < a.n_params; i++) {
        float keep = a.w[i];
        a.w[i] = keep + h;
        double fp = fwd(&m, &a, s, tok, B, T, train, ids, &n);
        a.w[i] = keep - h;
        double fm = fwd(&m, &a, s, tok, B, T, train, ids, &n);
        a.w[i] = keep;
        num[i] = (float)((fp - fm) / (2 * h));
    }
    double err = tu_rel_err(grad, num, (long)a.n_params);
    printf("  %-40s %zu adapter values, rel err vs finite differences %.2e\n", label, a.n_params, err);
    CHECK(err < 1e-2, "%s: adapter gradient differs from finite differences (rel err %g)", label, err);
    free(grad);
    free(num);
    model_ws_free(&m, s);
    lora_free(&a);
    model_free(&m);
}

/* Full fine-tuning: the gradient of every base tensor (embeddings, LayerNorms,
 * biases, weights) against finite differences, on a sample of each tensor. */
static void test_full_finetune_grad(void) {
    model m;
    tiny_random(&m, 21);
    lora_adapter a;
    struct lerr e;
    CHECK(model_full_adapter(&a, &m, &e) == 0, "full adapter: %s", e.msg);
    CHECK((int64_t)a.n_params == m.n_params, "full mode trains every parameter (%zu vs %lld)", a.n_params,
          (long long)m.n_params);
    rng_t r;
    rng_seed(&r, 8);
    /* LayerNorm weights away from 1 and biases away from 0, as the fixtures do */
    for (size_t i = 0; i < a.n_params; i++) a.w[i] += 0.05f * (2 * rng_uniform(&r) - 1);
    int B = 2, T = 6;
    int32_t tok[12];
    for (int i = 0; i < 12; i++) tok[i] = (int32_t)(rng_next(&r) % (uint64_t)TINY_V);
    model_ws *s = model_ws_create(&m, &a, B, T);
    float *grad = calloc(a.n_params, sizeof(float));
    int64_t n;
    fwd(&m, &a, s, tok, B, T, 1, NULL, &n);
    model_backward(&m, &a, s, grad, 1.0f);
    double worst = 0;
    for (int ti = 0; ti < a.n_tensor; ti++) {
        const lora_tensor *t = &a.tensor[ti];
        size_t cnt = (size_t)t->rows * t->cols, k = 0;
        float an[32], nu[32];
        for (size_t j = 0; j < cnt && k < 32; j += 1 + cnt / 32) {
            float *p = a.w + t->off + j, keep = *p;
            const float h = 1e-2f;
            *p = keep + h;
            double fp = fwd(&m, &a, s, tok, B, T, 1, NULL, &n);
            *p = keep - h;
            double fm = fwd(&m, &a, s, tok, B, T, 1, NULL, &n);
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
    model_ws_free(&m, s);
    lora_free(&a);
    model_free(&m);
}

static void test_merge_equivalence(void) {
    model m, mm;
    tiny_random(&m, 1);
    lora_spec sp = spec_of("c_attn", "c_fc", 4, 0);
    lora_adapter a;
    struct lerr e;
    CHECK(model_adapter_create(&a, &sp, &m, 1, &e) == 0, "%s", e.msg);
    model_adapter_init(&a, &m, 2);
    for (size_t i = 0; i < a.n_params; i++) a.w[i] += 0.05f * (float)((i * 7919) % 13) / 13.0f;
    CHECK(model_merge(&mm, &m, &a, &e) == 0, "merge: %s", e.msg);
    int32_t tok[8] = {1, 5, 9, 3, 2, 8, 30, 36};
    model_ws *s = model_ws_create(&m, &a, 1, 8);
    long nv = 8L * TINY_V;
    float *l1 = malloc(sizeof(float) * nv);
    int64_t n;
    fwd(&m, &a, s, tok, 1, 8, 0, NULL, &n);
    memcpy(l1, logits_of(&m, s), sizeof(float) * nv);
    fwd(&mm, NULL, s, tok, 1, 8, 0, NULL, &n);
    double err = tu_rel_err(logits_of(&mm, s), l1, nv);
    CHECK(err < 1e-5, "merged model logits differ from base+adapter (rel err %g)", err);
    free(l1);
    model_ws_free(&m, s);
    model_free(&mm);
    lora_free(&a);
    model_free(&m);
}

static void test_params_line(void) {
    /* GPT-2 124M with r=8 on c_attn: peft prints exactly this */
    model m;
    struct lerr e;
    CHECK(model_init_shape(&m, "{\"model_type\": \"gpt2\", \"n_layer\": 12, \"n_head\": 12, \"n_embd\": 768, "
                               "\"n_positions\": 1024, \"vocab_size\": 50257}", &e) == 0, "shape: %s", e.msg);
    lora_spec sp = spec_of("c_attn", NULL, 8, 0);
    lora_adapter a;
    CHECK(model_adapter_create(&a, &sp, &m, 1, &e) == 0, "%s", e.msg);
    char line[200];
    lora_params_line(line, sizeof line, (int64_t)a.n_params, m.n_params);
    const char *want = "trainable params: 294,912 || all params: 124,734,720 || trainable%: 0.2364";
    CHECK(!strcmp(line, want), "got '%s', want '%s'", line, want);
    lora_free(&a);
    model_free(&m);
}

static void test_lora_errors(void) {
    model m;
    struct lerr e;
    CHECK(model_init_shape(&m, TINY, &e) == 0, "shape: %s", e.msg);
    lora_adapter a;
    lora_spec sp = spec_of("c_attn", NULL, 0, 0);
    CHECK(model_adapter_create(&a, &sp, &m, 1, &e) != 0 && strstr(e.msg, "r must be > 0"), "r=0: %s", e.msg);
    sp = spec_of("c_attn", "q_proj", 4, 0);
    CHECK(model_adapter_create(&a, &sp, &m, 1, &e) != 0 && strstr(e.msg, "unknown target module 'q_proj'"),
          "unknown target: %s", e.msg);
    sp = spec_of("h.1.mlp.c_proj", NULL, 2, 0);
    CHECK(model_adapter_create(&a, &sp, &m, 1, &e) == 0 && a.n_mod == 1 && a.mod[0].site == 7,
          "a path suffix selects one module");
    lora_free(&a);
    sp = spec_of("c_proj", NULL, 2, 0);
    CHECK(model_adapter_create(&a, &sp, &m, 1, &e) == 0 && a.n_mod == 4,
          "c_proj matches attn.c_proj and mlp.c_proj in both layers (got %d)", a.n_mod);
    lora_free(&a);
    sp = spec_of("attn", NULL, 2, 0); /* a prefix of names is not a match in peft */
    CHECK(model_adapter_create(&a, &sp, &m, 1, &e) != 0, "'attn' must not match attn.c_attn");
    CHECK(strstr(e.msg, "gpt2 modules: c_attn"), "the message names the family's modules: %s", e.msg);
    model_free(&m);
}

static void test_peft_roundtrip(void) {
    model m;
    struct lerr e;
    CHECK(model_init_shape(&m, TINY, &e) == 0, "shape: %s", e.msg);
    lora_spec sp = spec_of("c_attn", "c_proj", 3, 0.1f);
    sp.rslora = 1;
    lora_adapter a, b;
    CHECK(model_adapter_create(&a, &sp, &m, 1, &e) == 0, "%s", e.msg);
    lora_init(&a, 9);
    for (size_t i = 0; i < a.n_params; i++) a.w[i] = (float)i * 0.001f - 0.3f;
    char dir[] = "/tmp/lora-test-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char sub[64];
    snprintf(sub, sizeof sub, "%s/adapter", dir);
    CHECK(lora_save_peft(&a, sub, "base", "CAUSAL_LM", 1, &e) == 0, "save: %s", e.msg);
    int ok = model_load_peft(&b, &m, sub, &e) == 0;
    CHECK(ok, "load: %s", e.msg);
    if (ok) {
        CHECK(b.n_params == a.n_params && !memcmp(a.w, b.w, a.n_params * sizeof(float)), "values roundtrip bitwise");
        CHECK(b.spec.r == 3 && b.spec.rslora == 1 && fabsf(b.scale - 6.0f / sqrtf(3.0f)) < 1e-6f &&
                  fabsf(b.spec.dropout - 0.1f) < 1e-7f,
              "config roundtrip (r %d rslora %d scale %g)", b.spec.r, b.spec.rslora, b.scale);
        lora_free(&b);
    }
    /* shape mismatch between base and adapter: same keys, a model with another width */
    model m2;
    CHECK(model_init_shape(&m2, "{\"model_type\": \"gpt2\", \"n_layer\": 2, \"n_head\": 2, \"n_embd\": 32, "
                                "\"n_positions\": 16, \"vocab_size\": 37}", &e) == 0, "shape: %s", e.msg);
    CHECK(model_load_peft(&b, &m2, sub, &e) != 0 && strstr(e.msg, "lora_A.weight") && strstr(e.msg, "shape"),
          "shape mismatch message: %s", e.msg);
    model_free(&m2);
    /* missing adapter folder */
    CHECK(model_load_peft(&b, &m, "/nonexistent/adapter", &e) != 0 &&
              strstr(e.msg, "/nonexistent/adapter/adapter_config.json"),
          "missing folder: %s", e.msg);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
    lora_free(&a);
    model_free(&m);
}

/* The hub's gpt2 files have no "transformer." prefix: the same weights under
 * either naming give the same model. */
static void test_unprefixed_keys(void) {
    struct lerr e;
    char src[512];
    snprintf(src, sizeof src, "%s/base", tu_fixture("gpt2-tiny"));
    model a, b;
    int ok = model_open(&a, src, NULL, &e) == 0;
    CHECK(ok, "open fixture: %s", e.msg);
    if (!ok) return;
    char dir[] = "/tmp/lora-test-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    int n = st_count(a.st[0]);
    st_entry *ent = calloc((size_t)n, sizeof(st_entry));
    float **vals = calloc((size_t)n, sizeof(float *));
    for (int i = 0; i < n; i++) {
        const st_tensor *t = st_at(a.st[0], i);
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
    ok = model_open(&b, dir, NULL, &e) == 0;
    CHECK(ok, "open unprefixed: %s", e.msg);
    if (ok) {
        CHECK(st_find(b.st[0], "wte.weight") && !st_find(b.st[0], "transformer.wte.weight"), "keys without prefix");
        int32_t tok[8] = {1, 5, 9, 3, 2, 8, 30, 36};
        model_ws *s = model_ws_create(&a, NULL, 1, 8);
        long nv = 8L * a.vocab;
        float *l1 = malloc(sizeof(float) * nv);
        int64_t nt;
        fwd(&a, NULL, s, tok, 1, 8, 0, NULL, &nt);
        memcpy(l1, logits_of(&a, s), sizeof(float) * nv);
        fwd(&b, NULL, s, tok, 1, 8, 0, NULL, &nt);
        CHECK(!memcmp(l1, logits_of(&b, s), sizeof(float) * nv), "the same logits with and without the prefix");
        free(l1);
        model_ws_free(&a, s);
        model_free(&b);
    }
    for (int i = 0; i < n; i++) free(vals[i]);
    free(vals);
    free(ent);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
    model_free(&a);
}

/* What we write is what peft writes: an adapter peft saved (the fixture's
 * lora-trained), read and written back by us, has the same tensor names,
 * dtypes, shapes and bytes, and a config with the same LoRA settings. */
static void test_peft_conformance(void) {
    struct lerr e;
    char base[512], src[512];
    snprintf(base, sizeof base, "%s/base", tu_fixture("gpt2-tiny"));
    snprintf(src, sizeof src, "%s/lora-trained", tu_fixture("gpt2-tiny"));
    model m;
    lora_adapter a;
    if (model_open(&m, base, NULL, &e) || model_load_peft(&a, &m, src, &e)) {
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
    model_free(&m);
}

static void test_loader_errors(void) {
    struct lerr e;
    model m;
    CHECK(model_open(&m, "/nonexistent/model", NULL, &e) != 0 && strstr(e.msg, "/nonexistent/model/config.json"),
          "missing model: %s", e.msg);
    char dir[] = "/tmp/lora-test-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char path[128];
    /* an unknown model_type: the supported ones are listed */
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"model_type\": \"falcon\", \"hidden_size\": 64}");
    fclose(f);
    CHECK(model_open(&m, dir, NULL, &e) != 0 && strstr(e.msg, "\"falcon\" is not supported yet") &&
              strstr(e.msg, "supported: gpt2"),
          "unknown model_type: %s", e.msg);
    /* sizes so large they cannot be allocated are refused before anything is allocated */
    f = fopen(path, "w");
    fprintf(f, "{\"model_type\": \"gpt2\", \"n_embd\": 8, \"n_layer\": 100000000, \"n_head\": 2, "
               "\"vocab_size\": 10, \"n_positions\": 4}");
    fclose(f);
    CHECK(model_open(&m, dir, NULL, &e) != 0 && strstr(e.msg, "n_layer"), "n_layer 1e8: %s", e.msg);
    /* a wrongly typed field */
    f = fopen(path, "w");
    fprintf(f, "{\"model_type\": \"gpt2\", \"n_embd\": \"8\", \"n_layer\": 1, \"n_head\": 2, "
               "\"vocab_size\": 10, \"n_positions\": 4}");
    fclose(f);
    CHECK(model_open(&m, dir, NULL, &e) != 0 && strstr(e.msg, "\"n_embd\" must be an integer"), "n_embd string: %s",
          e.msg);
    /* a GPT-2 config whose safetensors has a wrong shape */
    f = fopen(path, "w");
    fprintf(f, "{\"model_type\": \"gpt2\", \"n_embd\": 8, \"n_layer\": 1, \"n_head\": 2, \"vocab_size\": 10, "
               "\"n_positions\": 4}");
    fclose(f);
    float vals[10 * 8] = {0};
    st_entry ent[] = {{"wte.weight", ST_F32, 2, {10, 8}, vals}, {"wpe.weight", ST_F32, 2, {4, 9}, vals}};
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK(st_write(path, ent, 2, NULL, 0, &e) == 0, "write: %s", e.msg);
    CHECK(model_open(&m, dir, NULL, &e) != 0 && strstr(e.msg, "wpe.weight"), "shape mismatch: %s", e.msg);
    printf("  loader error example: %s\n", e.msg);
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
