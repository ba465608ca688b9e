/*
 * lora_bench: the engine's speed on a GPT-2 124M-shaped model, or with
 * --family llama on a LLaMA 1B-class one, or with --family bert-cls on a
 * BERT-base-shaped BertForSequenceClassification (12 layers, 768 hidden, 12
 * heads, intermediate 3072, vocab 30522, 2 labels; B=4 T=128, LoRA on
 * query,value + the classifier, 3 steps; every other row padded over its
 * last quarter) (random, seeded).
 *
 *   lora_bench [--B 4] [--T 256] [--r 8] [--targets c_attn] [--steps 5] [--layers 12]
 *              [--embd 768] [--heads 12] [--vocab 50257] [--json build/bench.json]
 *   lora_bench --family llama [--B 1] [--T 128] [--r 8] [--targets q_proj,v_proj] [--steps 2]
 *              [--layers 16] [--embd 2048] [--heads 32] [--kv-heads 8] [--inter 8192] [--vocab 32000]
 *              [--json build/bench.json --json-key llama_1b]
 *
 * The LLaMA defaults are Llama-3.2-1B's shapes with Llama 2's vocabulary
 * (16 layers, hidden 2048, 32 heads, 8 KV heads, SwiGLU 8192, vocab 32000,
 * untied: 1.10 billion parameters, 4.4 GB in fp32; a step of 1 x 128 tokens
 * needs about 5 GB in all, far inside 24 GiB), with a few steps of a small
 * batch so the run stays short. --json-key adds the figures under that key
 * of an existing JSON file (one object per case) instead of writing the file.
 *
 * One training step = forward + backward (input and adapter gradients) + AdamW.
 * Prints ms/step, tokens/s, achieved GFLOP/s (the matmul FLOPs the step must
 * do, the family's step_flops) and, measured in the same run, the sgemm GFLOP/s of this
 * machine at the model's own shapes (every dense matmul of one step, forward
 * and input-gradient layouts); their ratio is the share of the sgemm ceiling
 * the whole step reaches. Figures also go to a JSON file for scripts.
 */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <cJSON.h>

#include "blas_env.h"
#include "lora.h"
#include "model.h"
#include "optim.h"
#include "util.h"

typedef struct {
    int B, T, r, steps, layers, embd, heads, kv_heads, inter, vocab, positions, full;
    const char *targets, *json, *json_key, *family;
} opts;

static int parse(opts *o, int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "--full")) {
            o->full = 1;
            continue;
        }
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
            printf("usage: lora_bench [--family gpt2|llama|bert-cls] [--B n] [--T n] [--r n] [--targets list] [--steps n] "
                   "[--layers n] [--embd n] [--heads n] [--kv-heads n] [--inter n] [--vocab n] [--json path] "
                   "[--json-key name] [--full]\n  (make bench runs the standard cases; see README.md)\n");
            return 1;
        }
        if (!v) {
            fprintf(stderr, "lora_bench: %s needs a value\n", k);
            return -1;
        }
        int *ip = !strcmp(k, "--B") ? &o->B : !strcmp(k, "--T") ? &o->T : !strcmp(k, "--r") ? &o->r
                : !strcmp(k, "--steps") ? &o->steps : !strcmp(k, "--layers") ? &o->layers
                : !strcmp(k, "--embd") ? &o->embd : !strcmp(k, "--heads") ? &o->heads
                : !strcmp(k, "--vocab") ? &o->vocab : !strcmp(k, "--kv-heads") ? &o->kv_heads
                : !strcmp(k, "--inter") ? &o->inter : NULL;
        if (ip) {
            char *end;
            long x = strtol(v, &end, 10);
            if (*end || x < 1 || x > 1 << 24) goto bad;
            *ip = (int)x;
        } else if (!strcmp(k, "--targets"))
            o->targets = v;
        else if (!strcmp(k, "--json"))
            o->json = v;
        else if (!strcmp(k, "--json-key"))
            o->json_key = v;
        else if (!strcmp(k, "--family") && (!strcmp(v, "gpt2") || !strcmp(v, "llama") || !strcmp(v, "bert-cls")))
            o->family = v;
        else
            goto bad;
        i++;
        continue;
    bad:
        fprintf(stderr, "lora_bench: bad argument '%s'\nusage: lora_bench [--family gpt2|llama|bert-cls] [--B n] [--T n] [--r n] "
                        "[--targets list] [--steps n] [--layers n] [--embd n] [--heads n] [--kv-heads n] [--inter n] "
                        "[--vocab n] [--json path] [--json-key name] [--full]\n", k);
        return -1;
    }
    /* the family's defaults for what was not given (0) */
    int llama = !strcmp(o->family, "llama"), bert = !strcmp(o->family, "bert-cls");
    const int gpt2_d[] = {4, 256, 5, 12, 768, 12, 12, 3072, 50257}, llama_d[] = {1, 128, 2, 16, 2048, 32, 8, 8192, 32000},
              bert_d[] = {4, 128, 3, 12, 768, 12, 12, 3072, 30522};
    const int *d = llama ? llama_d : bert ? bert_d : gpt2_d;
    int *f[] = {&o->B, &o->T, &o->steps, &o->layers, &o->embd, &o->heads, &o->kv_heads, &o->inter, &o->vocab};
    for (int i = 0; i < 9; i++)
        if (!*f[i]) *f[i] = d[i];
    if (!o->targets) o->targets = llama ? "q_proj,v_proj" : bert ? "query,value" : "c_attn";
    if (!o->positions) o->positions = llama ? 2048 : bert ? 512 : 1024;
    if (o->embd % o->heads) {
        fprintf(stderr, "lora_bench: --embd must be a multiple of --heads\n");
        return -1;
    }
    if (o->T > o->positions) o->positions = o->T;
    return 0;
}

/* The dense matmuls of one step at the model's shapes, timed alone: every
 * site's forward and input gradient, and the LM head's (V x C against the
 * last site's output width C). */
static double sgemm_ceiling(const model *m, int N, double *flops_out) {
    int V = m->task == TASK_CAUSAL_LM ? m->vocab : 0, C = m->site[m->n_site - 1].out, wmax = C;
    size_t wbig = (size_t)V * C;
    for (int i = 0; i < m->n_site; i++) {
        if (m->site[i].in > wmax) wmax = m->site[i].in;
        if (m->site[i].out > wmax) wmax = m->site[i].out;
        if ((size_t)m->site[i].in * m->site[i].out > wbig) wbig = (size_t)m->site[i].in * m->site[i].out;
    }
    size_t big = (size_t)N * (V > wmax ? V : wmax);
    float *x = calloc(big, sizeof(float)), *w = calloc(wbig, sizeof(float)), *y = calloc(big, sizeof(float));
    for (size_t i = 0; i < big; i++) x[i] = (float)(i % 7) * 0.01f;
    /* written, not left as calloc's untouched pages: those all map the kernel's one zero page, which stays in
     * cache, and a ceiling measured on them is far above what a model's weights (real memory) allow (seen:
     * 209 GFLOP/s against 65 at the LLaMA 1B shapes) */
    for (size_t i = 0; i < wbig; i++) w[i] = (float)(i % 11) * 0.001f;
    double best = 1e30, flops = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now_s();
        flops = 0;
        for (int s = 0; s < m->n_site; s++) {
            int in = m->site[s].in, out = m->site[s].out;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, out, in, 1, x, in, w, out, 0, y, out);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, in, out, 1, y, out, w, out, 0, x, in);
            flops += 4.0 * N * in * out;
        }
        if (V) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, V, C, 1, x, C, w, C, 0, y, V);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, V, 1, y, V, w, C, 0, x, C);
            flops += 4.0 * N * C * V;
        }
        double dt = now_s() - t0;
        if (dt < best) best = dt;
    }
    free(x);
    free(w);
    free(y);
    *flops_out = flops;
    return flops / best / 1e9;
}

/* Adds this run's figures as object `key` of the JSON file at path (made when
 * absent, the key replaced when present). */
static int json_add_case(const char *path, const char *key, const char *shape, int B, int T, int r,
                         const char *targets, int full, size_t trainable, int64_t all, double ms, double tps,
                         double gflop, double achieved, double ceiling, long rss) {
    struct lerr e;
    FILE *probe = fopen(path, "r");
    char *text = probe ? read_text_file(path, 16u << 20, &e) : NULL;
    if (probe) fclose(probe);
    cJSON *root = text ? cJSON_Parse(text) : cJSON_CreateObject();
    free(text);
    if (!cJSON_IsObject(root)) {
        fprintf(stderr, "lora_bench: %s is not a JSON object\n", path);
        cJSON_Delete(root);
        return 1;
    }
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "model", shape);
    cJSON_AddNumberToObject(c, "B", B);
    cJSON_AddNumberToObject(c, "T", T);
    cJSON_AddNumberToObject(c, "r", r);
    cJSON_AddStringToObject(c, "targets", targets);
    cJSON_AddBoolToObject(c, "full_finetune", full);
    cJSON_AddNumberToObject(c, "threads", omp_get_max_threads());
    cJSON_AddNumberToObject(c, "trainable_params", (double)trainable);
    cJSON_AddNumberToObject(c, "all_params", (double)all);
    cJSON_AddNumberToObject(c, "ms_per_step", round(ms * 1e3) / 1e3);
    cJSON_AddNumberToObject(c, "tokens_per_s", round(tps * 10) / 10);
    cJSON_AddNumberToObject(c, "gflop_per_step", round(gflop * 1e4) / 1e4);
    cJSON_AddNumberToObject(c, "achieved_gflops", round(achieved * 100) / 100);
    cJSON_AddNumberToObject(c, "sgemm_ceiling_gflops", round(ceiling * 100) / 100);
    cJSON_AddNumberToObject(c, "sgemm_ceiling_ratio", round(achieved / ceiling * 1e4) / 1e4);
    cJSON_AddNumberToObject(c, "peak_rss_bytes", (double)rss);
    if (cJSON_GetObjectItemCaseSensitive(root, key))
        cJSON_ReplaceItemInObjectCaseSensitive(root, key, c);
    else
        cJSON_AddItemToObject(root, key, c);
    char *out = cJSON_Print(root);
    cJSON_Delete(root);
    int rc = out && write_file_atomic(path, out, strlen(out), &e) == 0 ? 0 : 1;
    if (rc)
        fprintf(stderr, "lora_bench: cannot write %s\n", path);
    else
        printf("\nbench JSON: %s (key \"%s\")\n", path, key);
    free(out);
    return rc;
}

int main(int argc, char **argv) {
    blas_env_setup(argv);
    signal(SIGXFSZ, SIG_IGN); /* past a file size limit writes fail with EFBIG and are reported, not a silent kill */
    opts o = {.r = 8, .json = "build/bench.json", .family = "gpt2"};
    int pr = parse(&o, argc, argv);
    if (pr) return pr > 0 ? 0 : 2; /* 1: --help */
    int llama = !strcmp(o.family, "llama"), bert = !strcmp(o.family, "bert-cls");
    char cfg[512], shape[160];
    if (bert) {
        snprintf(cfg, sizeof cfg,
                 "{\"model_type\": \"bert\", \"architectures\": [\"BertForSequenceClassification\"], "
                 "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"hidden_size\": %d, "
                 "\"intermediate_size\": %d, \"max_position_embeddings\": %d, \"vocab_size\": %d}",
                 o.layers, o.heads, o.embd, o.inter, o.positions, o.vocab);
        snprintf(shape, sizeof shape, "bert-cls L%d C%d H%d F%d V%d", o.layers, o.embd, o.heads, o.inter, o.vocab);
    } else if (llama) {
        snprintf(cfg, sizeof cfg,
                 "{\"model_type\": \"llama\", \"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
                 "\"num_key_value_heads\": %d, \"hidden_size\": %d, \"intermediate_size\": %d, \"vocab_size\": %d, "
                 "\"max_position_embeddings\": %d, \"rms_norm_eps\": 1e-5, \"rope_theta\": 500000.0}",
                 o.layers, o.heads, o.kv_heads, o.embd, o.inter, o.vocab, o.positions);
        snprintf(shape, sizeof shape, "llama L%d C%d H%d KV%d F%d V%d", o.layers, o.embd, o.heads, o.kv_heads, o.inter,
                 o.vocab);
    } else {
        snprintf(cfg, sizeof cfg,
                 "{\"model_type\": \"gpt2\", \"n_layer\": %d, \"n_head\": %d, \"n_embd\": %d, \"n_positions\": %d, "
                 "\"vocab_size\": %d}",
                 o.layers, o.heads, o.embd, o.positions, o.vocab);
        snprintf(shape, sizeof shape, "gpt2 L%d C%d H%d V%d", o.layers, o.embd, o.heads, o.vocab);
    }
    model m;
    struct lerr e;
    double ti = now_s();
    if (model_init_random(&m, cfg, 1234, &e)) {
        fprintf(stderr, "lora_bench: %s\n", e.msg);
        return 1;
    }
    lora_spec sp = {.r = o.r, .alpha = 2.0f * o.r};
    char tl[1024];
    snprintf(tl, sizeof tl, "%s", o.targets);
    for (char *tok = strtok(tl, ","); tok && sp.n_targets < LORA_MAX_TARGETS; tok = strtok(NULL, ","))
        snprintf(sp.targets[sp.n_targets++], LORA_NAME, "%s", tok);
    if (m.save_modules) snprintf(sp.save[sp.n_save++], LORA_NAME, "%s", m.save_modules); /* peft's default */
    lora_adapter a;
    if (o.full ? model_full_adapter(&a, &m, &e) : model_adapter_create(&a, &sp, &m, 1, &e)) {
        fprintf(stderr, "lora_bench: %s\n", e.msg);
        return 1;
    }
    if (!o.full) model_adapter_init(&a, &m, 1);
    char line[200];
    lora_params_line(line, sizeof line, (int64_t)a.n_params, o.full ? 0 : m.n_params);
    int B = o.B, T = o.T, N = B * T;
    char what[1100];
    if (o.full)
        snprintf(what, sizeof what, "full fine-tuning (every weight trainable)");
    else
        snprintf(what, sizeof what, "LoRA r=%d on %s%s", o.r, o.targets, m.save_modules ? " + classifier" : "");
    if (bert)
        printf("lora_bench: BERT-base shape (sequence classification, 2 labels) L=%d C=%d H=%d F=%d V=%d, B=%d T=%d, "
               "%s; %d threads, OpenBLAS %s\n",
               o.layers, o.embd, o.heads, o.inter, o.vocab, B, T, what, omp_get_max_threads(), openblas_get_corename());
    else if (llama)
        printf("lora_bench: LLaMA shape L=%d C=%d H=%d KV=%d F=%d V=%d, B=%d T=%d, %s; %d threads, OpenBLAS %s\n",
               o.layers, o.embd, o.heads, o.kv_heads, o.inter, o.vocab, B, T, what, omp_get_max_threads(),
               openblas_get_corename());
    else
        printf("lora_bench: GPT-2 shape L=%d C=%d H=%d V=%d, B=%d T=%d, %s; %d threads, OpenBLAS %s\n", o.layers,
               o.embd, o.heads, o.vocab, B, T, what, omp_get_max_threads(), openblas_get_corename());
    printf("%s\n", line);
    if (llama) printf("  random model: %.1f s (%.2f GB of fp32 weights)\n", now_s() - ti, (double)m.n_params * 4e-9);
    model_ws *s = model_ws_create(&m, &a, B, T);
    int32_t *tok = malloc(sizeof(int32_t) * N);
    for (int i = 0; i < N; i++) tok[i] = (int32_t)((i * 2654435761u) % (unsigned)o.vocab);
    model_batch mb = {.tokens = tok, .labels = tok, .B = B, .T = T};
    /* BERT: every other row padded over its last quarter (the work is the same: rows are computed, keys masked) */
    int32_t *mask = malloc(sizeof(int32_t) * N), *labels = malloc(sizeof(int32_t) * B);
    for (int i = 0; i < N; i++) mask[i] = !((i / T) % 2 && i % T >= T - T / 4);
    for (int b = 0; b < B; b++) labels[b] = b % 2;
    if (bert) mb.mask = mask, mb.labels = labels;
    float *grad = xalloc_aligned(a.n_params * 4), *mm = xalloc_aligned(a.n_params * 4),
          *vv = xalloc_aligned(a.n_params * 4);
    adamw_hparams hp = {0.9f, 0.999f, 1e-8f, 0.0f};
    double best = 1e30, tf = 0, tb = 0, total = 0;
    for (int step = 0; step <= o.steps; step++) { /* step 0 warms up */
        double t0 = now_s();
        memset(grad, 0, a.n_params * 4);
        int64_t n;
        double loss = model_forward(&m, &a, s, &mb, 1, 1, &n);
        double t1 = now_s();
        model_backward(&m, &a, s, grad, 1.0f / (float)n);
        double t2 = now_s();
        adamw_step(a.w, mm, vv, grad, a.n_params, step + 1, 1e-4f, &hp);
        double dt = now_s() - t0;
        if (step == 0) {
            printf("  warm-up step: %.0f ms (loss %.3f)\n", dt * 1e3, loss / (double)n);
            continue;
        }
        total += dt;
        tf += t1 - t0;
        tb += t2 - t1;
        if (dt < best) best = dt;
    }
    double mean = total / o.steps;
    double flops = m.fam->step_flops(&m, &a, B, T);
    double ceil_flops;
    double ceiling = sgemm_ceiling(&m, N, &ceil_flops);
    double achieved = flops / mean / 1e9;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long rss = ru.ru_maxrss * 1024L;
    printf("\n  %-34s %12.1f\n", "ms/step (mean)", mean * 1e3);
    printf("  %-34s %12.1f\n", "ms/step (best)", best * 1e3);
    printf("  %-34s %12.1f / %.1f\n", "ms forward / backward (mean)", tf / o.steps * 1e3, tb / o.steps * 1e3);
    printf("  %-34s %12.0f\n", "tokens/s", N / mean);
    printf("  %-34s %12.2f\n", "GFLOP per step (matmul)", flops / 1e9);
    printf("  %-34s %12.1f\n", "achieved GFLOP/s", achieved);
    printf("  %-34s %12.1f\n", "sgemm GFLOP/s at model shapes", ceiling);
    printf("  %-34s %11.1f%%\n", "achieved / sgemm ceiling", 100 * achieved / ceiling);
    printf("  %-34s %12.1f\n", "peak RSS (MiB)", rss / 1048576.0);
    printf("  %-34s %12.1f\n", "activations (MiB)", m.fam->ws_bytes(s) / 1048576.0);
    if (o.json_key) {
        int rc = json_add_case(o.json, o.json_key, shape, B, T, o.r, o.targets, o.full, a.n_params,
                               o.full ? (int64_t)a.n_params : m.n_params + (int64_t)a.n_params, mean * 1e3, N / mean,
                               flops / 1e9, achieved, ceiling, rss);
        free(grad);
        free(mm);
        free(vv);
        free(tok);
        free(mask);
        free(labels);
        model_ws_free(&m, s);
        lora_free(&a);
        model_free(&m);
        return rc;
    }
    FILE *f = fopen(o.json, "w");
    if (f) {
        fprintf(f,
                "{\n  \"model\": \"gpt2 L%d C%d H%d V%d\",\n  \"B\": %d,\n  \"T\": %d,\n  \"r\": %d,\n"
                "  \"targets\": \"%s\",\n  \"full_finetune\": %s,\n  \"threads\": %d,\n  \"trainable_params\": %zu,\n  \"all_params\": %lld,\n"
                "  \"ms_per_step\": %.3f,\n  \"tokens_per_s\": %.1f,\n  \"gflop_per_step\": %.4f,\n"
                "  \"achieved_gflops\": %.2f,\n  \"sgemm_ceiling_gflops\": %.2f,\n  \"sgemm_ceiling_ratio\": %.4f,\n"
                "  \"peak_rss_bytes\": %ld\n}\n",
                o.layers, o.embd, o.heads, o.vocab, B, T, o.r, o.targets, o.full ? "true" : "false",
                omp_get_max_threads(), a.n_params,
                (long long)(o.full ? (int64_t)a.n_params : m.n_params + (int64_t)a.n_params), mean * 1e3, N / mean, flops / 1e9, achieved, ceiling,
                achieved / ceiling, rss);
        fclose(f);
        printf("\nbench JSON: %s\n", o.json);
    } else {
        fprintf(stderr, "lora_bench: cannot write %s\n", o.json);
    }
    free(grad);
    free(mm);
    free(vv);
    free(tok);
    free(mask);
    free(labels);
    model_ws_free(&m, s);
    lora_free(&a);
    model_free(&m);
    return f ? 0 : 1;
}
