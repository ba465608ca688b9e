/*
 * lora: the single-process command line.
 *   lora train  --config FILE [--set section.key=value ...]   train adapters (one process)
 *   lora eval   --config FILE [--adapter DIR]                  validation loss
 *   lora parity FIXTURE_DIR [--tol 1e-4]                       check against HF + peft outputs
 *   lora merge  --model DIR --adapter DIR --out DIR            write the merged HF model
 * A thin main: every command is a library call, so tests link the same code.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas_env.h"
#include "checkpoint.h"
#include "data.h"
#include "gpt2.h"
#include "lora.h"
#include "merge.h"
#include "parity.h"
#include "safetensors.h"
#include "util.h"
#include "trainer.h"

static int usage(void) {
    fprintf(stderr,
            "usage:\n"
            "  lora train  --config FILE [--set section.key=value ...]\n"
            "  lora eval   --config FILE [--adapter PEFT_DIR] [--set section.key=value ...]\n"
            "  lora parity FIXTURE_DIR [--tol 1e-4]\n"
            "  lora merge  --model HF_DIR --adapter PEFT_DIR --out DIR\n"
            "  lora merge  --checkpoint FILE.h5 [--model HF_DIR] --out DIR\n"
            "  lora export --checkpoint FILE.h5 [--model HF_DIR] --out PEFT_DIR\n"
            "  lora logits --model HF_DIR [--adapter PEFT_DIR | --checkpoint FILE.h5] --input BATCH.safetensors\n"
            "              [--out FILE.safetensors]\n"
            "              (forward on input_ids (B, T) [and labels]: writes logits and loss, prints the loss)\n"
            "  lora compare ADAPTER_A ADAPTER_B [--tol REL]   (no --tol: must be bitwise equal)\n"
            "  lora show FILE.safetensors TENSOR   (prints the values, one per line)\n"
            "  lora tokens --vocab V --count N [--seed S] --out FILE   (synthetic token file for tests)\n"
            "  lora init-model --out DIR [--preset gpt2-124m] [--layers L --embd C --heads H --vocab V --positions P]\n"
            "                  [--seed S] [--dtype f32|f16]   (random GPT-2 for benchmarks)\n");
    return 2;
}

static int cmd_parity(int argc, char **argv) {
    if (argc < 1) return usage();
    double tol = PARITY_TOL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tol") && i + 1 < argc) {
            char *end;
            tol = strtod(argv[++i], &end);
            if (*end || !(tol > 0)) {
                fprintf(stderr, "lora parity: --tol needs a positive number\n");
                return 2;
            }
        } else
            return usage();
    }
    return parity_run(argv[0], tol, stdout);
}

/* Compares two adapters tensor by tensor (same keys and shapes required). */
static int cmd_compare(int argc, char **argv) {
    if (argc < 2) return usage();
    double tol = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--tol") && i + 1 < argc) {
            char *end;
            tol = strtod(argv[++i], &end);
            if (*end || tol < 0) return usage();
        } else
            return usage();
    }
    struct lerr e = {{0}};
    st_file *fa = NULL, *fb = NULL;
    char pa[4200], pb[4200];
    snprintf(pa, sizeof pa, "%s/adapter_model.safetensors", argv[0]);
    snprintf(pb, sizeof pb, "%s/adapter_model.safetensors", argv[1]);
    if (!(fa = st_open(pa, &e)) || !(fb = st_open(pb, &e))) {
        fprintf(stderr, "lora compare: %s\n", e.msg);
        st_close(fa);
        return 2;
    }
    int rc = 0, bitwise = 1, ntensors = st_count(fa);
    double worst = 0;
    if (st_count(fa) != st_count(fb)) {
        fprintf(stderr, "lora compare: %s has %d tensors, %s has %d\n", pa, st_count(fa), pb, st_count(fb));
        rc = 2;
    }
    for (int i = 0; !rc && i < st_count(fa); i++) {
        const st_tensor *a = st_at(fa, i), *b = st_find(fb, a->name);
        if (!b || b->numel != a->numel) {
            fprintf(stderr, "lora compare: '%s' is missing from %s or has another shape\n", a->name, pb);
            rc = 2;
            break;
        }
        float *x = xmalloc(sizeof(float) * (size_t)a->numel), *y = xmalloc(sizeof(float) * (size_t)a->numel);
        if (st_to_f32(x, a, &e) || st_to_f32(y, b, &e)) {
            fprintf(stderr, "lora compare: %s\n", e.msg);
            rc = 2;
        } else {
            double d = 0, n = 0;
            for (int64_t k = 0; k < a->numel; k++) {
                d += ((double)x[k] - y[k]) * ((double)x[k] - y[k]);
                n += (double)y[k] * y[k];
            }
            double rel = n > 0 ? sqrt(d / n) : sqrt(d);
            if (rel > worst || isnan(rel)) worst = rel;
            if (memcmp(x, y, sizeof(float) * (size_t)a->numel)) bitwise = 0;
        }
        free(x);
        free(y);
    }
    st_close(fa);
    st_close(fb);
    if (rc) return rc;
    printf("compare: %d tensors, %s, worst relative error %.3e (tolerance %.1e)\n", ntensors, bitwise ? "bitwise equal" : "not bitwise equal", worst, tol);
    return (tol == 0 ? !bitwise : !(worst <= tol)) ? 1 : 0;
}

/* Prints one tensor of a safetensors file, a value per line (%.9g). */
static int cmd_show(int argc, char **argv) {
    if (argc != 2) return usage();
    struct lerr e = {{0}};
    st_file *f = st_open(argv[0], &e);
    if (!f) {
        fprintf(stderr, "lora show: %s\n", e.msg);
        return 1;
    }
    const st_tensor *t = st_find(f, argv[1]);
    int rc = 1;
    if (!t) {
        fprintf(stderr, "lora show: %s has no tensor '%s'\n", argv[0], argv[1]);
    } else {
        float *v = xmalloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
        if (st_to_f32(v, t, &e)) {
            fprintf(stderr, "lora show: %s\n", e.msg);
        } else {
            for (int64_t i = 0; i < t->numel; i++) printf("%.9g\n", v[i]);
            rc = 0;
        }
        free(v);
    }
    st_close(f);
    return rc;
}

/* A synthetic token file for tests on tiny models: a noisy walk over the
 * vocabulary (so there is something to learn), in this project's format. */
static int cmd_tokens(int argc, char **argv) {
    long long vocab = 0, count = 0, seed = 1;
    const char *out = NULL;
    for (int i = 0; i + 1 < argc; i += 2) {
        char *end = NULL;
        if (!strcmp(argv[i], "--vocab")) vocab = strtoll(argv[i + 1], &end, 10);
        else if (!strcmp(argv[i], "--count")) count = strtoll(argv[i + 1], &end, 10);
        else if (!strcmp(argv[i], "--seed")) seed = strtoll(argv[i + 1], &end, 10);
        else if (!strcmp(argv[i], "--out")) out = argv[i + 1];
        else return usage();
        if (end && *end) return usage();
    }
    if (!out || vocab < 2 || vocab > 65535 || count < 1 || argc % 2) return usage();
    int32_t *ids = xmalloc(sizeof(int32_t) * (size_t)count);
    rng_t r;
    rng_seed(&r, (uint64_t)seed);
    int64_t t = 0;
    for (long long i = 0; i < count; i++) {
        uint64_t x = rng_next(&r);
        t = (x % 4 == 0) ? (int64_t)(x >> 8) % vocab : (t * 7 + 3) % vocab;
        ids[i] = (int32_t)t;
    }
    struct lerr e;
    int rc = tok_write(out, ids, count, 2, &e);
    free(ids);
    if (rc) {
        fprintf(stderr, "lora tokens: %s\n", e.msg);
        return 1;
    }
    printf("wrote %lld tokens (vocab %lld) to %s\n", count, vocab, out);
    return 0;
}

/* A GPT-2 HF folder with random (seeded) weights, for benchmarks: config.json
 * + model.safetensors (F32 unless --dtype f16), keys as HF writes them. */
static int cmd_init_model(int argc, char **argv) {
    gpt2_config c = {.n_layer = 12, .n_head = 12, .n_embd = 768, .n_positions = 1024, .vocab_size = 50257,
                     .ln_eps = 1e-5f, .tied = 1};
    long long seed = 1234;
    const char *out = NULL, *dtype = "f32";
    for (int i = 0; i + 1 < argc; i += 2) {
        char *end = NULL;
        long v = 0;
        if (!strcmp(argv[i], "--out")) out = argv[i + 1];
        else if (!strcmp(argv[i], "--dtype")) dtype = argv[i + 1];
        else if (!strcmp(argv[i], "--preset")) {
            if (strcmp(argv[i + 1], "gpt2-124m")) return usage();
        } else {
            v = strtol(argv[i + 1], &end, 10);
            if (*end || v < 1 || v > 1000000) return usage();
            if (!strcmp(argv[i], "--layers")) c.n_layer = (int)v;
            else if (!strcmp(argv[i], "--embd")) c.n_embd = (int)v;
            else if (!strcmp(argv[i], "--heads")) c.n_head = (int)v;
            else if (!strcmp(argv[i], "--vocab")) c.vocab_size = (int)v;
            else if (!strcmp(argv[i], "--positions")) c.n_positions = (int)v;
            else if (!strcmp(argv[i], "--seed")) seed = v;
            else return usage();
        }
    }
    if (!out || argc % 2 || c.n_embd % c.n_head || (strcmp(dtype, "f32") && strcmp(dtype, "f16"))) return usage();
    c.n_inner = 4 * c.n_embd;
    struct lerr e = {{0}};
    if (mkdir_p(out, &e)) {
        fprintf(stderr, "lora init-model: %s\n", e.msg);
        return 1;
    }
    gpt2 m;
    gpt2_init_random(&m, &c, (uint64_t)seed);
    int L = c.n_layer, n = 4 + 12 * L, k = 0;
    st_entry *ent = xcalloc((size_t)n, sizeof(st_entry));
    char (*names)[96] = xcalloc((size_t)n, 96);
    st_dtype dt = strcmp(dtype, "f16") ? ST_F32 : ST_F16;
    int64_t C = c.n_embd, F = c.n_inner;
#define ENT(ptr, d0, d1, ...)                                                                                          \
    do {                                                                                                               \
        snprintf(names[k], 96, __VA_ARGS__);                                                                           \
        ent[k] = (st_entry){names[k], dt, (d1) != 0 ? 2 : 1, {(d0), (d1)}, (ptr)};                                     \
        k++;                                                                                                           \
    } while (0)
    ENT(m.wte, c.vocab_size, C, "transformer.wte.weight");
    ENT(m.wpe, c.n_positions, C, "transformer.wpe.weight");
    ENT(m.lnf_w, C, 0, "transformer.ln_f.weight");
    ENT(m.lnf_b, C, 0, "transformer.ln_f.bias");
    for (int l = 0; l < L; l++) {
        const gpt2_layer *y = &m.layer[l];
        ENT(y->ln1_w, C, 0, "transformer.h.%d.ln_1.weight", l);
        ENT(y->ln1_b, C, 0, "transformer.h.%d.ln_1.bias", l);
        ENT(y->qkv_w, C, 3 * C, "transformer.h.%d.attn.c_attn.weight", l);
        ENT(y->qkv_b, 3 * C, 0, "transformer.h.%d.attn.c_attn.bias", l);
        ENT(y->aproj_w, C, C, "transformer.h.%d.attn.c_proj.weight", l);
        ENT(y->aproj_b, C, 0, "transformer.h.%d.attn.c_proj.bias", l);
        ENT(y->ln2_w, C, 0, "transformer.h.%d.ln_2.weight", l);
        ENT(y->ln2_b, C, 0, "transformer.h.%d.ln_2.bias", l);
        ENT(y->fc_w, C, F, "transformer.h.%d.mlp.c_fc.weight", l);
        ENT(y->fc_b, F, 0, "transformer.h.%d.mlp.c_fc.bias", l);
        ENT(y->fproj_w, F, C, "transformer.h.%d.mlp.c_proj.weight", l);
        ENT(y->fproj_b, C, 0, "transformer.h.%d.mlp.c_proj.bias", l);
    }
#undef ENT
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    const char *meta[] = {"format", "pt"};
    int rc = st_write(path, ent, k, meta, 1, &e);
    if (!rc) {
        char cfg[1024];
        int len = snprintf(cfg, sizeof cfg,
                           "{\n  \"model_type\": \"gpt2\",\n  \"architectures\": [\"GPT2LMHeadModel\"],\n"
                           "  \"n_layer\": %d,\n  \"n_head\": %d,\n  \"n_embd\": %d,\n  \"n_positions\": %d,\n"
                           "  \"vocab_size\": %d,\n  \"n_inner\": null,\n  \"layer_norm_epsilon\": 1e-05,\n"
                           "  \"activation_function\": \"gelu_new\",\n  \"tie_word_embeddings\": true,\n"
                           "  \"dtype\": \"%s\"\n}\n",
                           c.n_layer, c.n_head, c.n_embd, c.n_positions, c.vocab_size,
                           dt == ST_F32 ? "float32" : "float16");
        snprintf(path, sizeof path, "%s/config.json", out);
        rc = write_file_atomic(path, cfg, (size_t)len, &e);
    }
    if (rc)
        fprintf(stderr, "lora init-model: %s\n", e.msg);
    else
        printf("wrote a random GPT-2 (L=%d C=%d H=%d V=%d, %lld params, %s, seed %lld) to %s\n", c.n_layer, c.n_embd,
               c.n_head, c.vocab_size, (long long)m.n_params, dtype, seed, out);
    free(ent);
    free(names);
    gpt2_free(&m);
    return rc ? 1 : 0;
}

/* The model and the adapter of a checkpoint: the model from model_dir, or the
 * path the checkpoint recorded; its bytes must hash as the checkpoint says. */
static int open_checkpoint(const char *path, const char *model_dir, gpt2 *m, lora_adapter *a, struct lerr *e) {
    ckpt_state st;
    lora_spec spec;
    if (ckpt_read_meta(path, &st, &spec, e)) return -1;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", model_dir ? model_dir : st.model_path ? st.model_path : "");
    uint64_t want_hash = st.model_hash, want_size = st.model_size;
    ckpt_state_free(&st);
    if (gpt2_open(m, dir, e)) return lerr_prefix(e, "the checkpoint's base model (use --model DIR)");
    if (st_file_size(m->st) != want_size || hash64(st_bytes(m->st), st_file_size(m->st), 0) != want_hash) {
        gpt2_free(m);
        return lerr_set(e, "%s/model.safetensors is not the base model %s was trained on (size or hash differ)", dir,
                        path);
    }
    if (lora_create(a, &spec, m->sites, m->n_sites, 0, e)) {
        gpt2_free(m);
        return lerr_prefix(e, "%s", path);
    }
    if (ckpt_read(path, &st, a, NULL, NULL, e)) {
        lora_free(a);
        gpt2_free(m);
        return -1;
    }
    ckpt_state_free(&st);
    return 0;
}

/* A checkpoint's adapter in peft's format. */
static int cmd_export(int argc, char **argv) {
    const char *ckpt = NULL, *model = NULL, *out = NULL;
    for (int i = 0; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--checkpoint")) ckpt = argv[i + 1];
        else if (!strcmp(argv[i], "--model")) model = argv[i + 1];
        else if (!strcmp(argv[i], "--out")) out = argv[i + 1];
        else return usage();
    }
    if (!ckpt || !out || argc % 2) return usage();
    struct lerr e = {{0}};
    gpt2 m;
    lora_adapter a;
    if (open_checkpoint(ckpt, model, &m, &a, &e)) {
        fprintf(stderr, "lora export: %s\n", e.msg);
        return 1;
    }
    int rc = lora_save_peft(&a, out, m.dir, "CAUSAL_LM", 1, &e);
    if (rc)
        fprintf(stderr, "lora export: %s\n", e.msg);
    else
        printf("exported %d modules (r=%d) from %s to %s (peft format)\n", a.n_mod, a.spec.r, ckpt, out);
    lora_free(&a);
    gpt2_free(&m);
    return rc ? 1 : 0;
}

static int cmd_merge(int argc, char **argv) {
    const char *model = NULL, *adapter = NULL, *out = NULL, *ckpt = NULL;
    for (int i = 0; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) model = argv[i + 1];
        else if (!strcmp(argv[i], "--adapter")) adapter = argv[i + 1];
        else if (!strcmp(argv[i], "--checkpoint")) ckpt = argv[i + 1];
        else if (!strcmp(argv[i], "--out")) out = argv[i + 1];
        else return usage();
    }
    if (!out || argc % 2 || !!adapter == !!ckpt || (adapter && !model)) return usage();
    struct lerr e = {{0}};
    gpt2 m;
    lora_adapter a;
    if (ckpt) {
        if (open_checkpoint(ckpt, model, &m, &a, &e)) {
            fprintf(stderr, "lora merge: %s\n", e.msg);
            return 1;
        }
    } else if (gpt2_open(&m, model, &e)) {
        fprintf(stderr, "lora merge: %s\n", e.msg);
        return 1;
    } else if (lora_load_peft(&a, adapter, m.sites, m.n_sites, &e)) {
        fprintf(stderr, "lora merge: %s\n", e.msg);
        gpt2_free(&m);
        return 1;
    }
    int rc = gpt2_save_merged(&m, &a, out, &e);
    if (rc)
        fprintf(stderr, "lora merge: %s\n", e.msg);
    else
        printf("merged %d modules (r=%d, scale %g) into %s/model.safetensors\n", a.n_mod, a.spec.r, a.scale, out);
    lora_free(&a);
    gpt2_free(&m);
    return rc ? 1 : 0;
}

/* Forward of the model (+ adapter) on one batch: input_ids (B, T) and
 * optional labels (B, T; -100 = no loss) from a safetensors file; writes
 * logits (B, T, V) and loss (1) as F32, prints the loss. What the reference
 * tests compare against HF (tests/ref/). */
static int cmd_logits(int argc, char **argv) {
    const char *model = NULL, *adapter = NULL, *input = NULL, *out = NULL, *ckpt = NULL;
    for (int i = 0; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) model = argv[i + 1];
        else if (!strcmp(argv[i], "--adapter")) adapter = argv[i + 1];
        else if (!strcmp(argv[i], "--checkpoint")) ckpt = argv[i + 1];
        else if (!strcmp(argv[i], "--input")) input = argv[i + 1];
        else if (!strcmp(argv[i], "--out")) out = argv[i + 1];
        else return usage();
    }
    if ((!model && !ckpt) || !input || argc % 2 || (adapter && ckpt)) return usage();
    struct lerr e = {{0}};
    gpt2 m = {0};
    lora_adapter a = {0};
    st_file *in = NULL;
    gpt2_acts *s = NULL;
    int32_t *ids = NULL, *labels = NULL, *targets = NULL;
    int rc = 1, have_adapter = 0;
    if (ckpt) { /* the adapter as the HDF5 reader gives it, not through peft's files */
        if (open_checkpoint(ckpt, model, &m, &a, &e)) goto done;
        have_adapter = 1;
    } else {
        if (gpt2_open(&m, model, &e)) goto done;
        if (adapter) {
            if (lora_load_peft(&a, adapter, m.sites, m.n_sites, &e)) goto done;
            have_adapter = 1;
        }
    }
    if (!(in = st_open(input, &e))) goto done;
    const st_tensor *ti = st_find(in, "input_ids"), *tl = st_find(in, "labels");
    if (!ti || ti->ndim != 2 || ti->shape[0] < 1 || ti->shape[1] < 1) {
        lerr_set(&e, "%s: needs a tensor input_ids of shape (B, T)", input);
        goto done;
    }
    int64_t B = ti->shape[0], T = ti->shape[1];
    if (T > m.cfg.n_positions || B > 4096) {
        lerr_set(&e, "%s: input_ids is (%lld, %lld); T must be <= n_positions %d and B <= 4096", input, (long long)B,
                 (long long)T, m.cfg.n_positions);
        goto done;
    }
    if (tl && (tl->ndim != 2 || tl->shape[0] != B || tl->shape[1] != T)) {
        lerr_set(&e, "%s: labels must have input_ids' shape (%lld, %lld)", input, (long long)B, (long long)T);
        goto done;
    }
    ids = xmalloc(sizeof(int32_t) * (size_t)(B * T));
    targets = xmalloc(sizeof(int32_t) * (size_t)(B * T));
    if (st_to_i32(ids, ti, &e)) goto done;
    if (tl) {
        labels = xmalloc(sizeof(int32_t) * (size_t)(B * T));
        if (st_to_i32(labels, tl, &e)) goto done;
    }
    for (int64_t i = 0; i < B * T; i++)
        if (ids[i] < 0 || ids[i] >= m.cfg.vocab_size) {
            lerr_set(&e, "%s: input_ids[%lld] = %d is outside the vocabulary (%d)", input, (long long)i, ids[i],
                     m.cfg.vocab_size);
            goto done;
        }
    gpt2_targets_from_labels(targets, labels ? labels : ids, (int)B, (int)T);
    s = gpt2_acts_create(&m, have_adapter ? &a : NULL, (int)B, (int)T);
    int64_t n = 0;
    double sum = gpt2_forward(&m, have_adapter ? &a : NULL, s, ids, targets, (int)B, (int)T, 0, 0, NULL, &n);
    float loss = n ? (float)(sum / (double)n) : 0.0f;
    if (out) {
        st_entry ent[2] = {{"logits", ST_F32, 3, {B, T, m.cfg.vocab_size}, gpt2_logits(s)},
                           {"loss", ST_F32, 1, {1}, &loss}};
        const char *meta[] = {"format", "pt"};
        if (st_write(out, ent, 2, meta, 1, &e)) goto done;
    }
    printf("loss %.9g over %lld targets (B=%lld T=%lld%s)\n", loss, (long long)n, (long long)B, (long long)T,
           have_adapter ? ", with the adapter" : ", base model");
    rc = 0;
done:
    if (rc) fprintf(stderr, "lora logits: %s\n", e.msg);
    gpt2_acts_free(s);
    free(ids);
    free(labels);
    free(targets);
    st_close(in);
    if (have_adapter) lora_free(&a);
    gpt2_free(&m);
    return rc;
}

int main(int argc, char **argv) {
    blas_env_setup(argv);
    if (argc < 2) return usage();
    const char *cmd = argv[1];
    if (!strcmp(cmd, "parity")) return cmd_parity(argc - 2, argv + 2);
    if (!strcmp(cmd, "merge")) return cmd_merge(argc - 2, argv + 2);
    if (!strcmp(cmd, "compare")) return cmd_compare(argc - 2, argv + 2);
    if (!strcmp(cmd, "tokens")) return cmd_tokens(argc - 2, argv + 2);
    if (!strcmp(cmd, "init-model")) return cmd_init_model(argc - 2, argv + 2);
    if (!strcmp(cmd, "export")) return cmd_export(argc - 2, argv + 2);
    if (!strcmp(cmd, "show")) return cmd_show(argc - 2, argv + 2);
    if (!strcmp(cmd, "logits")) return cmd_logits(argc - 2, argv + 2);
    if (!strcmp(cmd, "train")) return trainer_main(argc - 2, argv + 2, 0);
    if (!strcmp(cmd, "eval")) return trainer_main(argc - 2, argv + 2, 1);
    return usage();
}
