/*
 * Decoding with the KV cache: token by token (and in chunks) it gives the
 * logits the full forward gives at every position, with and without an
 * adapter; the picking rules (greedy, top-k 1, a tiny top-p are all the
 * argmax; the same seed draws the same tokens). For GPT-2 and the LLaMA family
 * (GQA with biases, MQA tied qwen2, mistral with a sliding window shorter than
 * the sequence), plus the time per new token early and late in a long text
 * (printed, not asserted: the cache makes each token one position).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "generate.h"
#include "model.h"
#include "testutil.h"
#include "util.h"

static void check_decode(const char *label, const model *m, const lora_adapter *a) {
    int T = 12, V = m->vocab;
    int32_t tok[12];
    for (int i = 0; i < T; i++) tok[i] = (int32_t)((i * 7 + 3) % V);
    model_ws *s = model_ws_create(m, a, 1, T);
    model_batch b = {.tokens = tok, .labels = tok, .B = 1, .T = T};
    int64_t n;
    model_forward(m, a, s, &b, 0, 0, &n);
    int nd;
    int64_t sh[3];
    const float *full = model_output(m, s, &nd, sh);
    /* one token at a time, then the same in chunks of 5, 1, 6 */
    double worst = 0;
    for (int chunked = 0; chunked < 2; chunked++) {
        model_kv *kv = m->fam->kv_create(m, a, T);
        int sizes[3] = {5, 1, 6}, at = 0;
        for (int k = 0; at < T; k++) {
            int len = chunked ? sizes[k] : 1;
            const float *lg = m->fam->decode(m, a, kv, tok + at, len);
            at += len;
            double err = tu_rel_err(lg, full + (size_t)(at - 1) * V, V);
            if (err > worst) worst = err;
        }
        CHECK(m->fam->decode(m, a, kv, tok, 1) == NULL, "a full cache refuses another token");
        m->fam->kv_free(kv);
    }
    printf("  %-40s decode vs full forward: worst rel err %.2e\n", label, worst);
    CHECK(worst < 1e-5, "%s: decoding differs from the forward (rel err %g)", label, worst);
    model_ws_free(m, s);
}

static void test_pick(void) {
    float lg[6] = {0.1f, 2.0f, -1.0f, 1.9f, 0.0f, 2.0f};
    gen_opts g = {.temperature = 0}, k1 = {.temperature = 1, .top_k = 1}, p0 = {.temperature = 1, .top_p = 1e-6f};
    CHECK(gen_pick(lg, 6, &g, 0) == 1, "greedy takes the first maximum");
    CHECK(gen_pick(lg, 6, &k1, 12345) == 1 && gen_pick(lg, 6, &p0, 999) == 1, "top-k 1 and a tiny top-p are greedy");
    gen_opts t = {.temperature = 0.7f, .top_k = 4, .top_p = 0.9f};
    int same = 1, seen[6] = {0};
    for (uint64_t d = 0; d < 200; d++) {
        int32_t x = gen_pick(lg, 6, &t, d * 0x9e3779b97f4a7c15ull);
        same &= x == gen_pick(lg, 6, &t, d * 0x9e3779b97f4a7c15ull);
        if (x >= 0 && x < 6) seen[x]++;
    }
    CHECK(same, "the same draw gives the same token");
    CHECK(seen[2] == 0 && seen[1] + seen[5] + seen[3] > 0, "top-k 4 never draws the lowest token (%d)", seen[2]);
}

/* Weights larger than the N(0, 0.02) init and norms away from 1, so that
 * every path carries signal (as test_llama does). */
static void scale_weights(model *m, uint64_t seed) {
    rng_t r;
    rng_seed(&r, seed);
    for (int i = 0; i < m->n_tensor; i++) {
        model_tensor *t = &m->tensor[i];
        float *v = (float *)t->data;
        size_t n = (size_t)t->shape[0] * (size_t)(t->ndim == 2 ? t->shape[1] : 1);
        for (size_t k = 0; k < n; k++) v[k] = t->ndim == 2 ? v[k] * 8.0f : v[k] + 0.2f * (2 * rng_uniform(&r) - 1);
    }
}

static void check_family(const char *name, const char *cfg) {
    model m;
    struct lerr e;
    if (model_init_random(&m, cfg, 7, &e)) {
        fprintf(stderr, "%s: %s\n", name, e.msg);
        exit(1);
    }
    scale_weights(&m, 8);
    char label[96];
    snprintf(label, sizeof label, "%s, base", name);
    check_decode(label, &m, NULL);
    lora_spec sp = {.r = 2, .alpha = 4, .n_targets = 1};
    snprintf(sp.targets[0], LORA_NAME, "all-linear");
    lora_adapter a;
    CHECK(model_adapter_create(&a, &sp, &m, 1, &e) == 0, "%s", e.msg);
    model_adapter_init(&a, &m, 3);
    for (size_t i = 0; i < a.n_params; i++) a.w[i] += 0.1f * (float)((i * 31) % 7) / 7.0f;
    snprintf(label, sizeof label, "%s + LoRA on every linear layer", name);
    check_decode(label, &m, &a);
    lora_free(&a);
    model_free(&m);
}

/* ms per new token at early and late positions of a long greedy run */
static void time_per_token(const char *name, const char *cfg, int n_new) {
    model m;
    struct lerr e;
    if (model_init_random(&m, cfg, 9, &e)) {
        fprintf(stderr, "%s: %s\n", name, e.msg);
        exit(1);
    }
    int32_t prompt[4] = {1, 2, 3, 4};
    int32_t *out = xmalloc(sizeof(int32_t) * (size_t)n_new);
    double *ms = xmalloc(sizeof(double) * (size_t)n_new);
    gen_opts o = {.max_new = n_new, .temperature = 0, .top_p = 1};
    int k = gen_run(&m, NULL, prompt, 4, &o, out, ms, &e);
    CHECK(k == n_new, "%s: %d of %d new tokens (%s)", name, k, n_new, k < 0 ? e.msg : "");
    if (k == n_new) {
        double early = 0, late = 0;
        int w = n_new / 8;
        for (int i = 1; i <= w; i++) early += ms[i];
        for (int i = n_new - w; i < n_new; i++) late += ms[i];
        printf("  %-40s ms/token: %.3f at positions 5..%d, %.3f at %d..%d (%d positions)\n", name, early / w,
               4 + w, late / w, 4 + n_new - w, 4 + n_new - 1, m.max_positions);
        /* what one token would cost without the cache: a forward over the whole text */
        int T = 4 + n_new;
        int32_t *all = xmalloc(sizeof(int32_t) * (size_t)T);
        memcpy(all, prompt, sizeof prompt);
        memcpy(all + 4, out, sizeof(int32_t) * (size_t)n_new);
        model_ws *s = model_ws_create(&m, NULL, 1, T);
        model_batch b = {.tokens = all, .B = 1, .T = T};
        int64_t nt;
        double t0 = now_s();
        model_forward(&m, NULL, s, &b, 0, 0, &nt);
        printf("  %-40s (without the cache, the last token would cost a forward over %d positions: %.1f ms)\n", "",
               T, (now_s() - t0) * 1e3);
        model_ws_free(&m, s);
        free(all);
    }
    free(out);
    free(ms);
    model_free(&m);
}

int main(void) {
    model m;
    struct lerr e;
    if (model_init_random(&m, "{\"model_type\": \"gpt2\", \"n_layer\": 2, \"n_head\": 2, \"n_embd\": 16, "
                              "\"n_positions\": 16, \"vocab_size\": 37}", 5, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    check_decode("gpt2, base", &m, NULL);
    lora_spec sp = {.r = 2, .alpha = 4, .n_targets = 1};
    snprintf(sp.targets[0], LORA_NAME, "all-linear");
    lora_adapter a;
    CHECK(model_adapter_create(&a, &sp, &m, 1, &e) == 0, "%s", e.msg);
    model_adapter_init(&a, &m, 3);
    for (size_t i = 0; i < a.n_params; i++) a.w[i] += 0.1f * (float)((i * 31) % 7) / 7.0f;
    check_decode("gpt2 + LoRA on every linear layer", &m, &a);
    lora_free(&a);
    model_free(&m);
    /* GQA 4/2, head_dim 6 given, every bias, untied */
    check_family("llama", "{\"model_type\": \"llama\", \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
                          "\"num_key_value_heads\": 2, \"hidden_size\": 16, \"head_dim\": 6, \"intermediate_size\": 24, "
                          "\"vocab_size\": 29, \"max_position_embeddings\": 16, \"rms_norm_eps\": 1e-5, "
                          "\"attention_bias\": true, \"mlp_bias\": true, "
                          "\"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 10000.0}}");
    /* MQA (one kv head), q/k/v biases, tied */
    check_family("qwen2", "{\"model_type\": \"qwen2\", \"num_hidden_layers\": 2, \"num_attention_heads\": 2, "
                          "\"num_key_value_heads\": 1, \"hidden_size\": 16, \"intermediate_size\": 20, "
                          "\"vocab_size\": 23, \"max_position_embeddings\": 16, \"rms_norm_eps\": 1e-6, "
                          "\"rope_theta\": 1000000.0, \"tie_word_embeddings\": true}");
    /* a sliding window of 8 over 12 positions: the decode masks as the forward */
    check_family("mistral (window 8 < 12 tokens)",
                 "{\"model_type\": \"mistral\", \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
                 "\"num_key_value_heads\": 1, \"hidden_size\": 16, \"intermediate_size\": 20, \"vocab_size\": 23, "
                 "\"max_position_embeddings\": 16, \"sliding_window\": 8}");
    test_pick();
    /* LORA_GEN_TIMING_TOKENS: fewer under valgrind (scripts/run_valgrind.sh), where 512 took 10 minutes */
    const char *nt = getenv("LORA_GEN_TIMING_TOKENS");
    int n_new = nt && atoi(nt) >= 16 && atoi(nt) <= 512 ? atoi(nt) : 512;
    char name[96];
    snprintf(name, sizeof name, "gpt2 (4 x 256, %d new tokens)", n_new);
    time_per_token(name,
                   "{\"model_type\": \"gpt2\", \"n_layer\": 4, \"n_head\": 4, \"n_embd\": 256, "
                   "\"n_positions\": 516, \"vocab_size\": 2000}", n_new);
    snprintf(name, sizeof name, "llama (4 x 256, GQA 8/2, %d new tokens)", n_new);
    time_per_token(name,
                   "{\"model_type\": \"llama\", \"num_hidden_layers\": 4, \"num_attention_heads\": 8, "
                   "\"num_key_value_heads\": 2, \"hidden_size\": 256, \"intermediate_size\": 688, "
                   "\"vocab_size\": 2000, \"max_position_embeddings\": 516}", n_new);
    return tu_end("test_generate");
}
