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
#include "data.h"
#include "gpt2.h"
#include "lora.h"
#include "merge.h"
#include "parity.h"
#include "safetensors.h"
#include "trainer.h"

static int usage(void) {
    fprintf(stderr,
            "usage:\n"
            "  lora train  --config FILE [--set section.key=value ...]\n"
            "  lora eval   --config FILE [--adapter PEFT_DIR] [--set section.key=value ...]\n"
            "  lora parity FIXTURE_DIR [--tol 1e-4]\n"
            "  lora merge  --model HF_DIR --adapter PEFT_DIR --out DIR\n"
            "  lora compare ADAPTER_A ADAPTER_B [--tol REL]   (no --tol: must be bitwise equal)\n"
            "  lora tokens --vocab V --count N [--seed S] --out FILE   (synthetic token file for tests)\n");
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

static int cmd_merge(int argc, char **argv) {
    const char *model = NULL, *adapter = NULL, *out = NULL;
    for (int i = 0; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) model = argv[i + 1];
        else if (!strcmp(argv[i], "--adapter")) adapter = argv[i + 1];
        else if (!strcmp(argv[i], "--out")) out = argv[i + 1];
        else return usage();
    }
    if (!model || !adapter || !out || argc % 2) return usage();
    struct lerr e = {{0}};
    gpt2 m;
    lora_adapter a;
    if (gpt2_open(&m, model, &e)) {
        fprintf(stderr, "lora merge: %s\n", e.msg);
        return 1;
    }
    if (lora_load_peft(&a, adapter, m.sites, m.n_sites, &e)) {
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

int main(int argc, char **argv) {
    blas_env_setup(argv);
    if (argc < 2) return usage();
    const char *cmd = argv[1];
    if (!strcmp(cmd, "parity")) return cmd_parity(argc - 2, argv + 2);
    if (!strcmp(cmd, "merge")) return cmd_merge(argc - 2, argv + 2);
    if (!strcmp(cmd, "compare")) return cmd_compare(argc - 2, argv + 2);
    if (!strcmp(cmd, "tokens")) return cmd_tokens(argc - 2, argv + 2);
    if (!strcmp(cmd, "train")) return trainer_main(argc - 2, argv + 2, 0);
    if (!strcmp(cmd, "eval")) return trainer_main(argc - 2, argv + 2, 1);
    return usage();
}
