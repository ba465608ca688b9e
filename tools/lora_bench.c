/*
 * lora_bench: the engine's speed on a GPT-2 124M-shaped model (random, seeded),
 * or (--family bert-cls) a BERT-base-shaped BertForSequenceClassification
 * (12 layers, 768 hidden, 12 heads, intermediate 3072, vocab 30522, 2 labels;
 * defaults B=4 T=128, LoRA on query,value + the classifier, 3 steps; padded
 * rows, attention_mask, one label per sequence).
 *
 *   lora_bench [--family gpt2|bert-cls] [--B 4] [--T 256] [--r 8] [--targets c_attn] [--steps 5]
 *              [--layers 12] [--embd 768] [--heads 12] [--vocab 50257] [--json build/bench.json]
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "blas_env.h"
#include "lora.h"
#include "model.h"
#include "optim.h"

typedef struct {
    int B, T, r, steps, layers, embd, heads, vocab, positions, full;
    const char *targets, *json, *family;
    int set_B, set_T, set_steps, set_vocab, set_targets; /* given on the command line (else the family's default) */
} opts;

static int parse(opts *o, int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "--full")) {
            o->full = 1;
            continue;
        }
        if (!v) goto bad;
        int *ip = !strcmp(k, "--B") ? &o->B : !strcmp(k, "--T") ? &o->T : !strcmp(k, "--r") ? &o->r
                : !strcmp(k, "--steps") ? &o->steps : !strcmp(k, "--layers") ? &o->layers
                : !strcmp(k, "--embd") ? &o->embd : !strcmp(k, "--heads") ? &o->heads
                : !strcmp(k, "--vocab") ? &o->vocab : NULL;
        if (ip) {
            char *end;
            long x = strtol(v, &end, 10);
            if (*end || x < 1 || x > 1 << 24) goto bad;
            *ip = (int)x;
            o->set_B |= ip == &o->B, o->set_T |= ip == &o->T, o->set_steps |= ip == &o->steps;
            o->set_vocab |= ip == &o->vocab;
        } else if (!strcmp(k, "--targets"))
            o->targets = v, o->set_targets = 1;
        else if (!strcmp(k, "--family") && (!strcmp(v, "gpt2") || !strcmp(v, "bert-cls")))
            o->family = v;
        else if (!strcmp(k, "--json"))
            o->json = v;
        else
            goto bad;
        i++;
        continue;
    bad:
        fprintf(stderr, "lora_bench: bad argument '%s'\nusage: lora_bench [--B n] [--T n] [--r n] [--targets list] "
                        "[--steps n] [--layers n] [--embd n] [--heads n] [--vocab n] [--json path] [--full] "
                        "[--family gpt2|bert-cls]\n", k);
        return -1;
    }
    if (o->embd % o->heads) {
        fprintf(stderr, "lora_bench: --embd must be a multiple of --heads\n");
        return -1;
    }
    if (!strcmp(o->family, "bert-cls")) { /* BERT-base's shapes and a classification-sized step */
        if (!o->set_B) o->B = 4;
        if (!o->set_T) o->T = 128;
        if (!o->set_steps) o->steps = 3;
        if (!o->set_vocab) o->vocab = 30522;
        if (!o->set_targets) o->targets = "query,value";
        o->positions = 512;
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

int main(int argc, char **argv) {
    blas_env_setup(argv);
    opts o = {.B = 4, .T = 256, .r = 8, .steps = 5, .layers = 12, .embd = 768, .heads = 12, .vocab = 50257,
              .positions = 1024, .targets = "c_attn", .json = "build/bench.json", .family = "gpt2"};
    if (parse(&o, argc, argv)) return 2;
    int bert = !strcmp(o.family, "bert-cls");
    char cfg[512];
    if (bert)
        snprintf(cfg, sizeof cfg,
                 "{\"model_type\": \"bert\", \"architectures\": [\"BertForSequenceClassification\"], "
                 "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"hidden_size\": %d, "
                 "\"intermediate_size\": %d, \"max_position_embeddings\": %d, \"vocab_size\": %d}",
                 o.layers, o.heads, o.embd, 4 * o.embd, o.positions, o.vocab);
    else
        snprintf(cfg, sizeof cfg,
                 "{\"model_type\": \"gpt2\", \"n_layer\": %d, \"n_head\": %d, \"n_embd\": %d, \"n_positions\": %d, "
                 "\"vocab_size\": %d}",
                 o.layers, o.heads, o.embd, o.positions, o.vocab);
    model m;
    struct lerr e;
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
        snprintf(what, sizeof what, "LoRA r=%d on %s", o.r, o.targets);
    if (bert) snprintf(what + strlen(what), sizeof what - strlen(what), " + classifier");
    printf("lora_bench: %s shape L=%d C=%d H=%d V=%d, B=%d T=%d, %s; %d threads, OpenBLAS %s\n",
           bert ? "BERT-base (sequence classification, 2 labels)" : "GPT-2", o.layers, o.embd, o.heads, o.vocab, B, T,
           what, omp_get_max_threads(), openblas_get_corename());
    printf("%s\n", line);
    model_ws *s = model_ws_create(&m, &a, B, T);
    int32_t *tok = malloc(sizeof(int32_t) * N);
    for (int i = 0; i < N; i++) tok[i] = (int32_t)((i * 2654435761u) % (unsigned)o.vocab);
    /* BERT: every other row padded over its last quarter (the work is the same: rows are computed, keys masked) */
    int32_t *mask = malloc(sizeof(int32_t) * N), *labels = malloc(sizeof(int32_t) * B);
    for (int i = 0; i < N; i++) mask[i] = !((i / T) % 2 && i % T >= T - T / 4);
    for (int b = 0; b < B; b++) labels[b] = b % 2;
    model_batch mb = {.tokens = tok, .labels = tok, .B = B, .T = T};
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
    FILE *f = fopen(o.json, "w");
    if (f) {
        fprintf(f,
                "{\n  \"model\": \"%s L%d C%d H%d V%d\",\n  \"B\": %d,\n  \"T\": %d,\n  \"r\": %d,\n"
                "  \"targets\": \"%s\",\n  \"full_finetune\": %s,\n  \"threads\": %d,\n  \"trainable_params\": %zu,\n  \"all_params\": %lld,\n"
                "  \"ms_per_step\": %.3f,\n  \"tokens_per_s\": %.1f,\n  \"gflop_per_step\": %.4f,\n"
                "  \"achieved_gflops\": %.2f,\n  \"sgemm_ceiling_gflops\": %.2f,\n  \"sgemm_ceiling_ratio\": %.4f,\n"
                "  \"peak_rss_bytes\": %ld\n}\n",
                bert ? "bert-cls" : "gpt2", o.layers, o.embd, o.heads, o.vocab, B, T, o.r, o.targets,
                o.full ? "true" : "false",
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
