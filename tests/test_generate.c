/*
 * Decoding with the KV cache: token by token (and in chunks) it gives the
 * logits the full forward gives at every position, with and without an
 * adapter; the picking rules (greedy, top-k 1, a tiny top-p are all the
 * argmax; the same seed draws the same tokens).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "generate.h"
#include "model.h"
#include "testutil.h"

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
    test_pick();
    return tu_end("test_generate");
}
