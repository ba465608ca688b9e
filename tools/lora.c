/*
 * lora: the single-process command line.
 *   lora train  --config FILE [--set section.key=value ...]   train adapters (one process)
 *   lora eval   --config FILE [--adapter DIR]                  validation loss
 *   lora parity FIXTURE_DIR [--tol 1e-4]                       check against HF + peft outputs
 *   lora merge  --model DIR --adapter DIR --out DIR            write the merged HF model
 *   lora tokenize --model DIR [--special] [--pair] [--decode [--skip-special]] FILE   HF tokenizers
 *   lora prep --task lm|seq_cls|token_cls --model DIR --out FILE INPUT...   text -> training data
 * A thin main: every command is a library call, so tests link the same code.
 */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas_env.h"
#include "checkpoint.h"
#include "data.h"
#include "lora.h"
#include "model.h"
#include "dataset.h"
#include "generate.h"
#include "parity.h"
#include "predict.h"
#include "prep.h"
#include "plot.h"
#include "safetensors.h"
#include "util.h"
#include "tokenizer.h"
#include "trainer.h"

static int usage_to(FILE *to, int rc) {
    fprintf(to,
            "usage:\n"
            "  lora train  --config FILE [--set section.key=value ...]\n"
            "  lora eval   --config FILE [--adapter PEFT_DIR] [--set section.key=value ...]\n"
            "  lora parity FIXTURE_DIR [--tol 1e-4]\n"
            "  lora merge  --model HF_DIR --adapter PEFT_DIR --out DIR\n"
            "  lora merge  --checkpoint FILE.h5 [--model HF_DIR] --out DIR\n"
            "  lora export --checkpoint FILE.h5 [--model HF_DIR] --out PEFT_DIR\n"
            "  lora logits --model HF_DIR [--adapter PEFT_DIR | --checkpoint FILE.h5] --input BATCH.safetensors\n"
            "              [--out FILE.safetensors]\n"
            "              (forward on input_ids (B, T) [attention_mask, token_type_ids, labels]: writes logits and loss)\n"
            "  lora generate --model DIR [--adapter PEFT_DIR] (--prompt TEXT | --ids \"ID ...\") [--max-new-tokens N]\n"
            "                [--temperature T] [--top-k K] [--top-p P] [--seed S] [--ignore-eos true]   (greedy when T = 0)\n"
            "  lora predict --model DIR [--adapter PEFT_DIR] (--text TEXT | --file FILE)   (BERT classification:\n"
            "               the label and its probabilities, or the entities; --file: one JSON line per input line)\n"
            "  lora plot METRICS_FILE --out curve.png   (training/validation loss and the metric against steps)\n"
            "  lora compare ADAPTER_A ADAPTER_B [--tol REL]   (no --tol: must be bitwise equal)\n"
            "  lora show FILE.safetensors TENSOR   (prints the values, one per line; integers as integers)\n"
            "  lora tokens --vocab V --count N [--seed S] --out FILE   (synthetic token file for tests)\n"
            "  lora dataset --task SEQ_CLS|TOKEN_CLS --vocab V --labels L --count N --seq T [--seed S] --out FILE\n"
            "               (a synthetic labeled dataset for tests: the label decides the tokens, so it can be learned)\n"
            "  lora tokenize --model DIR [--special] [--pair] FILE|-   (a line of space-separated ids per text line;\n"
            "                --special: add BOS/CLS/SEP as HF's add_special_tokens=True; --pair: each line is\n"
            "                TEXT_A<TAB>TEXT_B, printed as ids<TAB>token type ids)\n"
            "  lora tokenize --model DIR --decode [--skip-special] FILE|-   (ids per line -> text per line)\n"
            "  lora prep --task lm|seq_cls|token_cls --model DIR --out FILE [--val-out FILE (--val-file FILE |\n"
            "            --val-fraction F [--seed S])] [--max-length T] [--no-truncation] [--text-column NAME]\n"
            "            [--text-pair-column NAME] [--label-column NAME] [--format tsv|csv|jsonl] [--label-all-tokens]\n"
            "            [--labels-out FILE] [--invalid-utf8 error|replace] [--lines] [--add-special] [--threads N]\n"
            "            INPUT...   (text files or folders -> a token file (lm) or a labeled dataset; lora prep --help)\n"
            "  lora init-model --out DIR [--preset gpt2-124m] [--layers L --embd C --heads H --vocab V --positions P]\n"
            "                  [--seed S] [--dtype f32|f16]   (random GPT-2 for benchmarks)\n"
            "  lora init-model --family llama|mistral|qwen2 --out DIR [--layers L --embd C --heads H --kv-heads K\n"
            "                  --inter F --vocab V --positions P] [--seed S] [--dtype f32|f16]   (random LLaMA family)\n");
    return rc;
}
static int usage(void) { return usage_to(stderr, 2); }

/* A bad command line: "lora CMD: <what>" naming the option, exit status 2. */
static const char *g_cmd = "";
static int bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "lora %s: ", g_cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (lora --help shows the usage)\n");
    va_end(ap);
    return 2;
}
/* OPTION VALUE pairs: every option known (names, NULL-terminated) and given a value. */
static int kv_args(int argc, char **argv, const char *const *names) {
    for (int i = 0; i < argc; i += 2) {
        int known = 0;
        for (int k = 0; names[k]; k++) known |= !strcmp(argv[i], names[k]);
        if (!known) return bad("unknown option '%s'", argv[i]);
        if (i + 1 >= argc) return bad("%s needs a value", argv[i]);
    }
    return 0;
}

static int cmd_parity(int argc, char **argv) {
    if (argc < 1) return bad("needs a FIXTURE_DIR");
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
            return bad("unexpected argument '%s'", argv[i]);
    }
    return parity_run(argv[0], tol, stdout);
}

/* Compares two adapters tensor by tensor (same keys and shapes required). */
static int cmd_compare(int argc, char **argv) {
    if (argc < 2) return bad("needs two adapter folders");
    double tol = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--tol") && i + 1 < argc) {
            char *end;
            tol = strtod(argv[++i], &end);
            if (*end || tol < 0) return bad("--tol needs a number >= 0, got '%s'", argv[i]);
        } else
            return bad("unexpected argument '%s'", argv[i]);
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

/* Prints one tensor of a safetensors file, a value per line (%.9g; integer dtypes as integers). */
static int cmd_show(int argc, char **argv) {
    if (argc != 2) return bad("needs FILE.safetensors and a TENSOR name");
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
        int isint = t->dtype == ST_I64 || t->dtype == ST_I32 || t->dtype == ST_U16 || t->dtype == ST_U8;
        if (isint) { /* integers (ids, masks, labels) as integers */
            int32_t *iv = xmalloc(sizeof(int32_t) * (size_t)(t->numel ? t->numel : 1));
            if (st_to_i32(iv, t, &e)) fprintf(stderr, "lora show: %s\n", e.msg);
            for (int64_t i = 0; !e.msg[0] && i < t->numel; i++) printf("%d\n", iv[i]);
            rc = e.msg[0] ? 1 : 0;
            free(iv);
        } else if (st_to_f32(v, t, &e)) {
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
    static const char *const names[] = {"--vocab", "--count", "--seed", "--out", NULL};
    if (kv_args(argc, argv, names)) return 2;
    for (int i = 0; i + 1 < argc; i += 2) {
        char *end = NULL;
        if (!strcmp(argv[i], "--vocab")) vocab = strtoll(argv[i + 1], &end, 10);
        else if (!strcmp(argv[i], "--count")) count = strtoll(argv[i + 1], &end, 10);
        else if (!strcmp(argv[i], "--seed")) seed = strtoll(argv[i + 1], &end, 10);
        else if (!strcmp(argv[i], "--out")) out = argv[i + 1];
        if (end && *end) return bad("%s needs an integer, got '%s'", argv[i], argv[i + 1]);
    }
    if (!out) return bad("--out FILE is required");
    if (vocab < 2 || vocab > 65535) return bad("--vocab must be in [2, 65535], got %lld", vocab);
    if (count < 1) return bad("--count must be >= 1, got %lld", count);
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

/* A synthetic labeled dataset (include/dataset.h's format) for tests: rows
 * of 2..T tokens, right-padded, whose tokens come from the half of the
 * vocabulary their label picks, so a classifier can learn it. */
static int cmd_dataset(int argc, char **argv) {
    long long vocab = 0, labels = 0, count = 0, seq = 0, seed = 1;
    const char *out = NULL, *task = NULL;
    static const char *const names[] = {"--vocab", "--labels", "--count", "--seq", "--seed", "--out", "--task", NULL};
    if (kv_args(argc, argv, names)) return 2;
    for (int i = 0; i + 1 < argc; i += 2) {
        char *end = NULL;
        if (!strcmp(argv[i], "--vocab")) vocab = strtoll(argv[i + 1], &end, 10);
        else if (!strcmp(argv[i], "--labels")) labels = strtoll(argv[i + 1], &end, 10);
        else if (!strcmp(argv[i], "--count")) count = strtoll(argv[i + 1], &end, 10);
        else if (!strcmp(argv[i], "--seq")) seq = strtoll(argv[i + 1], &end, 10);
        else if (!strcmp(argv[i], "--seed")) seed = strtoll(argv[i + 1], &end, 10);
        else if (!strcmp(argv[i], "--out")) out = argv[i + 1];
        else if (!strcmp(argv[i], "--task")) task = argv[i + 1];
        if (end && *end) return bad("%s needs an integer, got '%s'", argv[i], argv[i + 1]);
    }
    int tokcls = task && !strcmp(task, "TOKEN_CLS");
    if (!out || !task) return bad("--task and --out are required");
    if (!tokcls && strcmp(task, "SEQ_CLS")) return bad("--task must be SEQ_CLS or TOKEN_CLS, got '%s'", task);
    if (vocab < 4 || labels < 1 || labels > 1000 || count < 1 || count > 10000000 || seq < 2 || seq > 65536)
        return bad("sizes out of range: --vocab >= 4, --labels 1..1000, --count 1..10000000, --seq 2..65536 "
                   "(got %lld, %lld, %lld, %lld)", vocab, labels, count, seq);
    size_t NT = (size_t)count * (size_t)seq;
    int64_t *ids = xcalloc(NT, sizeof(int64_t)), *mask = xcalloc(NT, sizeof(int64_t));
    int64_t *lab = xcalloc(tokcls ? NT : (size_t)count, sizeof(int64_t));
    rng_t r;
    rng_seed(&r, (uint64_t)seed);
    int64_t half = vocab / 2;
    for (long long i = 0; i < count; i++) {
        int64_t n = 2 + (int64_t)(rng_next(&r) % (uint64_t)(seq - 1)), y = (int64_t)(rng_next(&r) % (uint64_t)labels);
        if (!tokcls) lab[i] = y;
        for (long long t = 0; t < seq; t++) {
            size_t k = (size_t)i * (size_t)seq + (size_t)t;
            if (t < n) {
                int64_t yt = tokcls ? (int64_t)(rng_next(&r) % (uint64_t)labels) : y;
                ids[k] = (int64_t)(rng_next(&r) % (uint64_t)half) + (yt % 2) * half;
                mask[k] = 1;
                if (tokcls) lab[k] = yt;
            } else if (tokcls) {
                lab[k] = -100;
            }
        }
    }
    st_entry ent[3] = {{"input_ids", ST_I64, 2, {count, seq}, ids},
                       {"attention_mask", ST_I64, 2, {count, seq}, mask},
                       {"labels", ST_I64, tokcls ? 2 : 1, {count, tokcls ? seq : 0}, lab}};
    const char *meta[] = {"format", DS_FORMAT, "version", DS_VERSION, "task", tokcls ? "TOKEN_CLS" : "SEQ_CLS"};
    struct lerr e;
    int rc = st_write(out, ent, 3, meta, 3, &e);
    free(ids);
    free(mask);
    free(lab);
    if (rc) {
        fprintf(stderr, "lora dataset: %s\n", e.msg);
        return 1;
    }
    printf("wrote %lld %s examples of %lld positions (vocab %lld, %lld labels) to %s\n", count, task, seq, vocab,
           labels, out);
    return 0;
}

/* A GPT-2 (or --family llama, mistral, qwen2) HF folder with random (seeded)
 * weights, for benchmarks and tests: config.json + model.safetensors (F32
 * unless --dtype f16), keys as HF writes them. */
static int cmd_init_model(int argc, char **argv) {
    long L = 12, H = 12, C = 768, V = 50257, P = 1024, KV = 0, F = 0;
    long long seed = 1234;
    const char *out = NULL, *dtype = "f32", *family = "gpt2";
    static const char *const names[] = {"--out", "--dtype", "--family", "--preset", "--layers", "--embd", "--heads",
                                        "--vocab", "--positions", "--seed", "--kv-heads", "--inter", NULL};
    if (kv_args(argc, argv, names)) return 2;
    for (int i = 0; i + 1 < argc; i += 2) {
        char *end = NULL;
        long v = 0;
        if (!strcmp(argv[i], "--out")) out = argv[i + 1];
        else if (!strcmp(argv[i], "--dtype")) dtype = argv[i + 1];
        else if (!strcmp(argv[i], "--family")) family = argv[i + 1];
        else if (!strcmp(argv[i], "--preset")) {
            if (strcmp(argv[i + 1], "gpt2-124m")) return bad("--preset: the one preset is gpt2-124m, got '%s'", argv[i + 1]);
        } else {
            v = strtol(argv[i + 1], &end, 10);
            if (*end || v < 1 || v > 1000000) return bad("%s needs an integer in [1, 1000000], got '%s'", argv[i], argv[i + 1]);
            if (!strcmp(argv[i], "--layers")) L = v;
            else if (!strcmp(argv[i], "--embd")) C = v;
            else if (!strcmp(argv[i], "--heads")) H = v;
            else if (!strcmp(argv[i], "--vocab")) V = v;
            else if (!strcmp(argv[i], "--positions")) P = v;
            else if (!strcmp(argv[i], "--seed")) seed = v;
            else if (!strcmp(argv[i], "--kv-heads")) KV = v;
            else if (!strcmp(argv[i], "--inter")) F = v;
        }
    }
    int gpt2 = !strcmp(family, "gpt2");
    if (!out) return bad("--out DIR is required");
    if (gpt2 && C % H) return bad("--embd %ld is not a multiple of --heads %ld", C, H);
    if (strcmp(dtype, "f32") && strcmp(dtype, "f16")) return bad("--dtype must be f32 or f16, got '%s'", dtype);
    if (!gpt2 && strcmp(family, "llama") && strcmp(family, "mistral") && strcmp(family, "qwen2"))
        return bad("--family must be gpt2, llama, mistral or qwen2, got '%s'", family);
    char cfg[512];
    if (gpt2)
        snprintf(cfg, sizeof cfg,
                 "{\"model_type\": \"gpt2\", \"n_layer\": %ld, \"n_head\": %ld, \"n_embd\": %ld, \"n_positions\": %ld, "
                 "\"vocab_size\": %ld}",
                 L, H, C, P, V);
    else /* the family's describe checks the shapes (heads divide, ...) */
        snprintf(cfg, sizeof cfg,
                 "{\"model_type\": \"%s\", \"num_hidden_layers\": %ld, \"num_attention_heads\": %ld, "
                 "\"num_key_value_heads\": %ld, \"hidden_size\": %ld, \"intermediate_size\": %ld, "
                 "\"vocab_size\": %ld, \"max_position_embeddings\": %ld, \"sliding_window\": null}",
                 family, L, H, KV ? KV : H, C, F ? F : 4 * C, V, P);
    struct lerr e = {{0}};
    model m;
    if (model_init_random(&m, cfg, (uint64_t)seed, &e) ||
        model_save(&m, out, strcmp(dtype, "f16") ? ST_F32 : ST_F16, &e)) {
        fprintf(stderr, "lora init-model: %s\n", e.msg);
        model_free(&m);
        return 1;
    }
    printf("wrote a random %s (L=%ld C=%ld H=%ld V=%ld, %lld params, %s, seed %lld) to %s\n", gpt2 ? "GPT-2" : family,
           L, C, H, V, (long long)m.n_params, dtype, seed, out);
    model_free(&m);
    return 0;
}

/* The model and the adapter of a checkpoint: the model from model_dir, or the
 * path the checkpoint recorded; its bytes must hash as the checkpoint says. */
static int open_checkpoint(const char *path, const char *model_dir, model *m, lora_adapter *a, struct lerr *e) {
    ckpt_state st;
    lora_spec spec;
    if (ckpt_read_meta(path, &st, &spec, e)) return -1;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", model_dir ? model_dir : st.model_path ? st.model_path : "");
    uint64_t want_hash = st.model_hash, want_size = st.model_size;
    ckpt_state_free(&st);
    if (model_open(m, dir, NULL, e)) return lerr_prefix(e, "the checkpoint's base model (use --model DIR)");
    if (m->size != want_size || model_content_hash(m) != want_hash) {
        model_free(m);
        return lerr_set(e, "%s: its weights are not the base model %s was trained on (size or hash differ)", dir,
                        path);
    }
    if (model_adapter_create(a, &spec, m, 0, e)) {
        model_free(m);
        return lerr_prefix(e, "%s", path);
    }
    if (ckpt_read(path, &st, a, NULL, NULL, e)) {
        lora_free(a);
        model_free(m);
        return -1;
    }
    ckpt_state_free(&st);
    return 0;
}

/* A checkpoint's adapter in peft's format. */
static int cmd_export(int argc, char **argv) {
    const char *ckpt = NULL, *model_dir = NULL, *out = NULL;
    static const char *const names[] = {"--checkpoint", "--model", "--out", NULL};
    if (kv_args(argc, argv, names)) return 2;
    for (int i = 0; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--checkpoint")) ckpt = argv[i + 1];
        else if (!strcmp(argv[i], "--model")) model_dir = argv[i + 1];
        else if (!strcmp(argv[i], "--out")) out = argv[i + 1];
    }
    if (!ckpt || !out) return bad("--checkpoint FILE.h5 and --out DIR are required");
    struct lerr e = {{0}};
    model m;
    lora_adapter a;
    if (open_checkpoint(ckpt, model_dir, &m, &a, &e)) {
        fprintf(stderr, "lora export: %s\n", e.msg);
        return 1;
    }
    int rc = model_save_peft(&a, &m, out, &e);
    if (rc)
        fprintf(stderr, "lora export: %s\n", e.msg);
    else
        printf("exported %d modules (r=%d) and %d whole tensors from %s to %s (peft format)\n", a.n_mod, a.spec.r,
               a.n_whole, ckpt, out);
    lora_free(&a);
    model_free(&m);
    return rc ? 1 : 0;
}

static int cmd_merge(int argc, char **argv) {
    const char *model_dir = NULL, *adapter = NULL, *out = NULL, *ckpt = NULL;
    static const char *const names[] = {"--model", "--adapter", "--checkpoint", "--out", NULL};
    if (kv_args(argc, argv, names)) return 2;
    for (int i = 0; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) model_dir = argv[i + 1];
        else if (!strcmp(argv[i], "--adapter")) adapter = argv[i + 1];
        else if (!strcmp(argv[i], "--checkpoint")) ckpt = argv[i + 1];
        else if (!strcmp(argv[i], "--out")) out = argv[i + 1];
    }
    if (!out) return bad("--out DIR is required");
    if (!!adapter == !!ckpt) return bad("give one of --adapter PEFT_DIR (with --model) and --checkpoint FILE.h5");
    if (adapter && !model_dir) return bad("--adapter needs --model HF_DIR (the base model)");
    struct lerr e = {{0}};
    model m;
    lora_adapter a;
    if (ckpt) {
        if (open_checkpoint(ckpt, model_dir, &m, &a, &e)) {
            fprintf(stderr, "lora merge: %s\n", e.msg);
            return 1;
        }
    } else if (model_open(&m, model_dir, NULL, &e)) {
        fprintf(stderr, "lora merge: %s\n", e.msg);
        return 1;
    } else if (model_load_peft(&a, &m, adapter, &e)) {
        fprintf(stderr, "lora merge: %s\n", e.msg);
        model_free(&m);
        return 1;
    }
    char rm[PATH_MAX], ro[PATH_MAX];
    if (realpath(m.dir, rm) && realpath(out, ro) && !strcmp(rm, ro)) {
        fprintf(stderr, "lora merge: --out %s is the base model's own folder: the merged weights would replace the "
                        "model they are read from; choose another folder\n", out);
        lora_free(&a);
        model_free(&m);
        return 1;
    }
    int rc = model_save_merged(&m, &a, out, &e);
    if (rc)
        fprintf(stderr, "lora merge: %s\n", e.msg);
    else
        printf("merged %d modules (r=%d, scale %g) into %s/model.safetensors\n", a.n_mod, a.spec.r, a.scale, out);
    lora_free(&a);
    model_free(&m);
    return rc ? 1 : 0;
}

/* Forward of the model (+ adapter) on one batch from a safetensors file:
 * input_ids (B, T) and optional attention_mask, token_type_ids (B, T) and
 * labels ((B, T); (B) for sequence classification; -100 = no loss); writes
 * logits and loss as F32, prints the loss. What the reference tests compare
 * against HF (tests/ref/). */
static int cmd_logits(int argc, char **argv) {
    const char *dir = NULL, *adapter = NULL, *input = NULL, *out = NULL, *ckpt = NULL;
    static const char *const names[] = {"--model", "--adapter", "--checkpoint", "--input", "--out", NULL};
    if (kv_args(argc, argv, names)) return 2;
    for (int i = 0; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) dir = argv[i + 1];
        else if (!strcmp(argv[i], "--adapter")) adapter = argv[i + 1];
        else if (!strcmp(argv[i], "--checkpoint")) ckpt = argv[i + 1];
        else if (!strcmp(argv[i], "--input")) input = argv[i + 1];
        else if (!strcmp(argv[i], "--out")) out = argv[i + 1];
    }
    if (!dir && !ckpt) return bad("--model HF_DIR (or --checkpoint FILE.h5) is required");
    if (!input) return bad("--input BATCH.safetensors is required");
    if (adapter && ckpt) return bad("--adapter and --checkpoint exclude each other");
    struct lerr e = {{0}};
    model m = {0};
    lora_adapter a = {0};
    st_file *in = NULL;
    model_ws *s = NULL;
    int32_t *ids = NULL, *labels = NULL, *mask = NULL, *types = NULL;
    float *values = NULL; /* float labels: a regression head's targets */
    int rc = 1, have_adapter = 0;
    if (ckpt) { /* the adapter as the HDF5 reader gives it, not through peft's files */
        if (open_checkpoint(ckpt, dir, &m, &a, &e)) goto done;
        have_adapter = 1;
    } else {
        if (model_open(&m, dir, NULL, &e)) goto done;
        if (adapter) {
            if (model_load_peft(&a, &m, adapter, &e)) goto done;
            have_adapter = 1;
        }
    }
    if (!(in = st_open(input, &e))) goto done;
    const st_tensor *ti = st_find(in, "input_ids");
    if (!ti || ti->ndim != 2 || ti->shape[0] < 1 || ti->shape[1] < 1) {
        lerr_set(&e, "%s: needs a tensor input_ids of shape (B, T)", input);
        goto done;
    }
    int64_t B = ti->shape[0], T = ti->shape[1];
    if (T > m.max_positions || B > 4096) {
        lerr_set(&e, "%s: input_ids is (%lld, %lld); T must be <= the model's %d positions and B <= 4096", input,
                 (long long)B, (long long)T, m.max_positions);
        goto done;
    }
    if (model_check_seq_len(&m, (int)T, &e)) {
        lerr_prefix(&e, "%s", input);
        goto done;
    }
    const st_tensor *tl = st_find(in, "labels");
    int float_labels = tl && (tl->dtype == ST_F32 || tl->dtype == ST_F16 || tl->dtype == ST_BF16 || tl->dtype == ST_F64);
    if (float_labels && (m.task != TASK_SEQ_CLS || m.n_labels != 1)) {
        lerr_set(&e, "%s: labels holds floats, but the model is not a regression head (one label)", input);
        goto done;
    }
    if (float_labels && (tl->ndim != 1 || tl->shape[0] != B)) {
        lerr_set(&e, "%s: tensor 'labels' must have shape (%lld)", input, (long long)B);
        goto done;
    }
    if (float_labels) {
        values = xmalloc(sizeof(float) * (size_t)B);
        if (st_to_f32(values, tl, &e)) goto done;
    }
    if (st_read_ints(in, "input_ids", 2, B, T, &ids, &e) < 0 ||
        st_read_ints(in, "attention_mask", 2, B, T, &mask, &e) < 0 ||
        st_read_ints(in, "token_type_ids", 2, B, T, &types, &e) < 0 ||
        (!float_labels && st_read_ints(in, "labels", m.task == TASK_SEQ_CLS ? 1 : 2, B, T, &labels, &e) < 0))
        goto done;
    for (int64_t i = 0; i < B * T; i++)
        if (ids[i] < 0 || ids[i] >= m.vocab) {
            lerr_set(&e, "%s: input_ids[%lld] = %d is outside the vocabulary (%d)", input, (long long)i, ids[i], m.vocab);
            goto done;
        }
    int n_types = m.n_types ? m.n_types : 1;
    for (int64_t i = 0; types && i < B * T; i++)
        if (types[i] < 0 || types[i] >= n_types) {
            lerr_set(&e, "%s: token_type_ids[%lld] = %d is outside the model's %d token types", input, (long long)i,
                     types[i], n_types);
            goto done;
        }
    int64_t nl = m.task == TASK_SEQ_CLS ? B : B * T;
    for (int64_t i = 0; labels && m.task != TASK_CAUSAL_LM && i < nl; i++)
        if (labels[i] != -100 && (labels[i] < 0 || labels[i] >= m.n_labels)) {
            lerr_set(&e, "%s: labels[%lld] = %d is outside the model's %d labels (num_labels; -100 = no loss)", input,
                     (long long)i, labels[i], m.n_labels);
            goto done;
        }
    const lora_adapter *ap = have_adapter ? &a : NULL;
    s = model_ws_create(&m, ap, (int)B, (int)T);
    model_batch mb = {.tokens = ids, .mask = mask, .type_ids = types, .label_values = values, .B = (int)B, .T = (int)T,
                      .labels = labels ? labels : m.task == TASK_CAUSAL_LM ? ids : NULL};
    int64_t n = 0;
    double sum = model_forward(&m, ap, s, &mb, 0, 0, &n);
    float loss = n ? (float)(sum / (double)n) : 0.0f;
    if (out) {
        int nd;
        int64_t sh[3];
        const float *o = model_output(&m, s, &nd, sh);
        st_entry ent[2] = {{"logits", ST_F32, nd, {sh[0], sh[1], sh[2]}, o}, {"loss", ST_F32, 1, {1}, &loss}};
        const char *meta[] = {"format", "pt"};
        if (st_write(out, ent, 2, meta, 1, &e)) goto done;
    }
    printf("loss %.9g over %lld targets (B=%lld T=%lld%s)\n", loss, (long long)n, (long long)B, (long long)T,
           have_adapter ? ", with the adapter" : ", base model");
    rc = 0;
done:
    if (rc) fprintf(stderr, "lora logits: %s\n", e.msg);
    if (s) model_ws_free(&m, s);
    free(ids);
    free(labels);
    free(values);
    free(mask);
    free(types);
    st_close(in);
    if (have_adapter) lora_free(&a);
    model_free(&m);
    return rc;
}

static int cmd_plot(int argc, char **argv) {
    if (argc != 3 || strcmp(argv[1], "--out")) return bad("needs METRICS_FILE --out curve.png");
    struct lerr e = {{0}};
    if (plot_metrics(argv[0], argv[2], &e)) {
        fprintf(stderr, "lora plot: %s\n", e.msg);
        return 1;
    }
    printf("wrote %s from %s\n", argv[2], argv[0]);
    return 0;
}

/* HF tokenizers from a model folder's files, line by line (see
 * include/tokenizer.h). Lines end at '\n' only (a '\r' stays in the text). */
static int cmd_tokenize(int argc, char **argv) {
    const char *dir = NULL, *file = NULL;
    int special = 0, pair = 0, decode = 0, skip = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--special")) special = 1;
        else if (!strcmp(argv[i], "--pair")) pair = 1;
        else if (!strcmp(argv[i], "--decode")) decode = 1;
        else if (!strcmp(argv[i], "--skip-special")) skip = 1;
        else if (!file && (argv[i][0] != '-' || !strcmp(argv[i], "-"))) file = argv[i];
        else if (!strcmp(argv[i], "--model")) return bad("--model needs a folder");
        else return bad(file && argv[i][0] != '-' ? "one FILE only, got '%s' too" : "unknown option '%s'", argv[i]);
    }
    if (!dir) return bad("--model DIR is required");
    if (!file) return bad("needs a FILE (or - for standard input)");
    if (decode && (pair || special)) return bad("--decode does not take --pair or --special");
    if (skip && !decode) return bad("--skip-special goes with --decode");
    struct lerr e = {{0}};
    tkz *t = tkz_open(dir, &e);
    if (!t) {
        fprintf(stderr, "lora tokenize: %s\n", e.msg);
        return 1;
    }
    FILE *in = strcmp(file, "-") ? fopen(file, "rb") : stdin;
    if (!in) {
        fprintf(stderr, "lora tokenize: %s: cannot open\n", file);
        tkz_free(t);
        return 1;
    }
    static char obuf[1 << 16];
    setvbuf(stdout, obuf, _IOFBF, sizeof obuf);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long long lineno = 0;
    int rc = 0;
    tkz_enc enc = {0};
    int32_t *ids = NULL;
    size_t ids_cap = 0;
    while (!rc && (n = getline(&line, &cap, in)) >= 0) {
        lineno++;
        if (n > 0 && line[n - 1] == '\n') n--;
        if (decode) {
            size_t k = 0;
            char *p = line, *end = line + n;
            while (p < end) {
                while (p < end && *p == ' ') p++;
                if (p == end) break;
                char *q;
                long long v = strtoll(p, &q, 10);
                if (q == p || v < 0 || v > INT32_MAX || (q < end && *q != ' ')) {
                    lerr_set(&e, "not a list of non-negative ids separated by spaces");
                    rc = 1;
                    break;
                }
                if (k == ids_cap) {
                    ids_cap = ids_cap ? ids_cap * 2 : 1024;
                    ids = realloc(ids, ids_cap * sizeof *ids);
                    if (!ids) {
                        fprintf(stderr, "lora tokenize: out of memory\n");
                        exit(1);
                    }
                }
                ids[k++] = (int32_t)v;
                p = q;
            }
            char *text = NULL;
            size_t tl = 0;
            if (!rc && tkz_decode(t, ids, k, skip, &text, &tl, &e)) rc = 1;
            if (!rc) {
                fwrite(text, 1, tl, stdout);
                fputc('\n', stdout);
            }
            free(text);
            continue;
        }
        const char *b = NULL;
        size_t bl = 0, al = (size_t)n;
        if (pair) {
            char *tab = memchr(line, '\t', (size_t)n);
            if (!tab) {
                lerr_set(&e, "--pair needs TEXT_A<TAB>TEXT_B");
                rc = 1;
                break;
            }
            al = (size_t)(tab - line);
            b = tab + 1;
            bl = (size_t)n - al - 1;
        }
        if (tkz_encode(t, line, al, b ? b : NULL, bl, special, &enc, &e)) {
            rc = 1;
            break;
        }
        for (size_t i = 0; i < enc.n; i++) printf(i ? " %d" : "%d", enc.ids[i]);
        if (pair) {
            fputc('\t', stdout);
            for (size_t i = 0; i < enc.n; i++) printf(i ? " %d" : "%d", enc.type_ids[i]);
        }
        fputc('\n', stdout);
    }
    if (rc) fprintf(stderr, "lora tokenize: %s:%lld: %s\n", file, lineno, e.msg);
    if (fflush(stdout)) rc = 1;
    free(line);
    free(ids);
    tkz_enc_free(&enc);
    if (in != stdin) fclose(in);
    tkz_free(t);
    return rc;
}

int main(int argc, char **argv) {
    blas_env_setup(argv);
    signal(SIGXFSZ, SIG_IGN); /* past a file size limit writes fail with EFBIG and are reported, not a silent kill */
    if (argc < 2) return usage();
    const char *cmd = argv[1];
    g_cmd = cmd;
    /* --help anywhere (lora --help, lora merge --help): the usage on stdout, exit 0 */
    if (!strcmp(cmd, "help")) return usage_to(stdout, 0);
    if (!strcmp(cmd, "prep")) return prep_main(argc - 2, argv + 2); /* its own --help */
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return usage_to(stdout, 0);
    if (!strcmp(cmd, "parity")) return cmd_parity(argc - 2, argv + 2);
    if (!strcmp(cmd, "merge")) return cmd_merge(argc - 2, argv + 2);
    if (!strcmp(cmd, "compare")) return cmd_compare(argc - 2, argv + 2);
    if (!strcmp(cmd, "tokens")) return cmd_tokens(argc - 2, argv + 2);
    if (!strcmp(cmd, "dataset")) return cmd_dataset(argc - 2, argv + 2);
    if (!strcmp(cmd, "init-model")) return cmd_init_model(argc - 2, argv + 2);
    if (!strcmp(cmd, "export")) return cmd_export(argc - 2, argv + 2);
    if (!strcmp(cmd, "show")) return cmd_show(argc - 2, argv + 2);
    if (!strcmp(cmd, "logits")) return cmd_logits(argc - 2, argv + 2);
    if (!strcmp(cmd, "plot")) return cmd_plot(argc - 2, argv + 2);
    if (!strcmp(cmd, "generate")) return gen_main(argc - 2, argv + 2);
    if (!strcmp(cmd, "predict")) return pred_main(argc - 2, argv + 2);
    if (!strcmp(cmd, "tokenize")) return cmd_tokenize(argc - 2, argv + 2);
    if (!strcmp(cmd, "train")) return trainer_main(argc - 2, argv + 2, 0);
    if (!strcmp(cmd, "eval")) return trainer_main(argc - 2, argv + 2, 1);
    fprintf(stderr, "lora: unknown command '%s' (lora --help lists them)\n", cmd);
    return 2;
}
