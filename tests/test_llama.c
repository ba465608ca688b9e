/*
 * The LLaMA family (llama, mistral, qwen2) with LoRA: adapter gradients against
 * finite differences (GQA, head_dim given, q/k/v/o and MLP biases, tied and
 * untied heads, dropout, early stops of the backward at high sites), full
 * fine-tuning gradients, merge equivalence, peft's parameter line for known
 * models, regex targets as Python's re.fullmatch (PCRE2), config errors,
 * sliding windows, unprefixed keys, and sharded weights
 * (model.safetensors.index.json).
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

/* GQA 4/2, head_dim 6 given (hidden 16 / 4 heads = 4), all biases, untied */
#define CFG_LLAMA                                                                                                      \
    "{\"model_type\": \"llama\", \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, " \
    "\"hidden_size\": 16, \"head_dim\": 6, \"intermediate_size\": 24, \"vocab_size\": 29, "                          \
    "\"max_position_embeddings\": 16, \"rms_norm_eps\": 1e-5, \"attention_bias\": true, \"mlp_bias\": true, "        \
    "\"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 10000.0}}"
/* qwen2: q/k/v biases, MQA (1 kv head), tied, rope_theta at the top level */
#define CFG_QWEN2                                                                                                      \
    "{\"model_type\": \"qwen2\", \"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"num_key_value_heads\": 1, " \
    "\"hidden_size\": 16, \"intermediate_size\": 20, \"vocab_size\": 23, \"max_position_embeddings\": 16, "          \
    "\"rms_norm_eps\": 1e-6, \"rope_theta\": 1000000.0, \"tie_word_embeddings\": true}"
#define CFG_MISTRAL                                                                                                    \
    "{\"model_type\": \"mistral\", \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 1, " \
    "\"hidden_size\": 16, \"intermediate_size\": 20, \"vocab_size\": 23, \"max_position_embeddings\": 16, "          \
    "\"sliding_window\": 8}"

static void random_model(model *m, const char *cfg, uint64_t seed) {
    struct lerr e;
    if (model_init_random(m, cfg, seed, &e)) {
        fprintf(stderr, "model_init_random: %s\n", e.msg);
        exit(1);
    }
    /* larger weights than the N(0, 0.02) init, norm weights away from 1 and
     * biases away from 0, so that every path carries signal */
    rng_t r;
    rng_seed(&r, seed + 100);
    for (int i = 0; i < m->n_tensor; i++) {
        model_tensor *t = &m->tensor[i];
        float *v = (float *)t->data;
        size_t n = (size_t)t->shape[0] * (size_t)(t->ndim == 2 ? t->shape[1] : 1);
        for (size_t k = 0; k < n; k++)
            v[k] = t->ndim == 2 ? v[k] * 8.0f : v[k] + 0.2f * (2 * rng_uniform(&r) - 1);
    }
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

static lora_spec spec_of(const char *targets, int r, float dropout) {
    lora_spec s = {.r = r, .alpha = 2.0f * r, .dropout = dropout};
    char buf[512];
    snprintf(buf, sizeof buf, "%s", targets);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) snprintf(s.targets[s.n_targets++], LORA_NAME, "%s", t);
    return s;
}

/* Gradient check of the sum loss w.r.t. every adapter value. */
static void grad_check(const char *label, const char *cfg, const lora_spec *spec, int train) {
    model m;
    random_model(&m, cfg, 11);
    lora_adapter a;
    struct lerr e;
    int ok = model_adapter_create(&a, spec, &m, 1, &e) == 0;
    CHECK(ok, "%s: lora_create: %s", label, e.msg);
    if (!ok) {
        model_free(&m);
        return;
    }
    model_adapter_init(&a, &m, 5);
    rng_t r;
    rng_seed(&r, 3);
    for (size_t i = 0; i < a.n_params; i++) a.w[i] += 0.2f * (2 * rng_uniform(&r) - 1); /* B != 0 */
    int B = 2, T = 7;
    int32_t tok[14];
    for (int i = 0; i < 14; i++) tok[i] = (int32_t)(rng_next(&r) % (uint64_t)m.vocab);
    int64_t ids[2] = {100, 101}, n;
    model_ws *s = model_ws_create(&m, &a, B, T);
    float *grad = calloc(a.n_params, sizeof(float)), *num = calloc(a.n_params, sizeof(float));
    fwd(&m, &a, s, tok, B, T, train, ids, &n);
    model_backward(&m, &a, s, grad, 1.0f);
    /* every value of each tensor up to 48, an even sample beyond (the suite runs this under valgrind too) */
    const float h = 1e-2f;
    size_t k = 0;
    for (int ti = 0; ti < a.n_tensor; ti++) {
        const lora_tensor *t = &a.tensor[ti];
        size_t cnt = (size_t)t->rows * t->cols;
        for (size_t j = 0; j < cnt; j += 1 + cnt / 48) {
            size_t i = t->off + j;
            float keep = a.w[i];
            a.w[i] = keep + h;
            double fp = fwd(&m, &a, s, tok, B, T, train, ids, &n);
            a.w[i] = keep - h;
            double fm = fwd(&m, &a, s, tok, B, T, train, ids, &n);
            a.w[i] = keep;
            num[k] = (float)((fp - fm) / (2 * h));
            grad[k++] = grad[i]; /* i >= k: the analytic values not yet read stay in place */
        }
    }
    double err = tu_rel_err(grad, num, (long)k);
    printf("  %-52s %5zu of %5zu adapter values, rel err vs finite differences %.2e\n", label, k, a.n_params, err);
    CHECK(err < 1e-2, "%s: adapter gradient differs from finite differences (rel err %g)", label, err);
    free(grad);
    free(num);
    model_ws_free(&m, s);
    lora_free(&a);
    model_free(&m);
}

/* Full fine-tuning: the gradient of every base tensor (embedding, norms,
 * biases, weights, lm_head or the tied embedding) on a sample of each. */
static void full_grad_check(const char *label, const char *cfg) {
    model m;
    random_model(&m, cfg, 21);
    lora_adapter a;
    struct lerr e;
    CHECK(model_full_adapter(&a, &m, &e) == 0, "full adapter: %s", e.msg);
    CHECK((int64_t)a.n_params == m.n_params, "full mode trains every parameter (%zu vs %lld)", a.n_params,
          (long long)m.n_params);
    rng_t r;
    rng_seed(&r, 8);
    int B = 2, T = 6;
    int32_t tok[12];
    for (int i = 0; i < 12; i++) tok[i] = (int32_t)(rng_next(&r) % (uint64_t)m.vocab);
    model_ws *s = model_ws_create(&m, &a, B, T);
    float *grad = calloc(a.n_params, sizeof(float));
    int64_t n;
    fwd(&m, &a, s, tok, B, T, 1, NULL, &n);
    model_backward(&m, &a, s, grad, 1.0f);
    double worst = 0;
    for (int ti = 0; ti < a.n_tensor; ti++) {
        const lora_tensor *t = &a.tensor[ti];
        size_t cnt = (size_t)t->rows * t->cols, k = 0;
        float an[16], nu[16];
        for (size_t j = 0; j < cnt && k < 16; j += 1 + cnt / 16) {
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
        CHECK(err < 1e-2, "%s: gradient of %s differs from finite differences (rel err %g)", label, t->key, err);
    }
    printf("  %-52s %5d tensors, worst rel err vs finite differences %.2e\n", label, a.n_tensor, worst);
    free(grad);
    model_ws_free(&m, s);
    lora_free(&a);
    model_free(&m);
}

static void test_merge_equivalence(const char *cfg) {
    model m, mm;
    random_model(&m, cfg, 1);
    lora_spec sp = spec_of("q_proj,v_proj,down_proj", 4, 0);
    lora_adapter a;
    struct lerr e;
    CHECK(model_adapter_create(&a, &sp, &m, 1, &e) == 0, "%s", e.msg);
    model_adapter_init(&a, &m, 2);
    for (size_t i = 0; i < a.n_params; i++) a.w[i] += 0.05f * (float)((i * 7919) % 13) / 13.0f;
    CHECK(model_merge(&mm, &m, &a, &e) == 0, "merge: %s", e.msg);
    int32_t tok[8] = {1, 5, 9, 3, 2, 8, 20, 22};
    model_ws *s = model_ws_create(&m, &a, 1, 8);
    long nv = 8L * m.vocab;
    float *l1 = malloc(sizeof(float) * nv);
    int64_t n;
    fwd(&m, &a, s, tok, 1, 8, 0, NULL, &n);
    memcpy(l1, logits_of(&m, s), sizeof(float) * nv);
    fwd(&mm, NULL, s, tok, 1, 8, 0, NULL, &n);
    double err = tu_rel_err(logits_of(&mm, s), l1, nv);
    printf("  merged model vs base + adapter (%s): rel err %.2e\n", m.fam->model_type, err);
    CHECK(err < 1e-5, "merged model logits differ from base+adapter (rel err %g)", err);
    free(l1);
    model_ws_free(&m, s);
    model_free(&mm);
    lora_free(&a);
    model_free(&m);
}

/* peft's print_trainable_parameters for real model shapes (computed by peft
 * 0.21 on meta-device models of transformers 5.17: LlamaConfig() (Llama-2-7B),
 * Mistral-7B, Qwen2-0.5B). */
static void params_line(const char *cfg, const char *targets, int r, const char *want) {
    model m;
    struct lerr e;
    int ok = model_init_shape(&m, cfg, &e) == 0;
    CHECK(ok, "shape: %s", e.msg);
    if (!ok) return;
    lora_spec sp = spec_of(targets, r, 0);
    lora_adapter a;
    CHECK(model_adapter_create(&a, &sp, &m, 1, &e) == 0, "%s", e.msg);
    char line[200];
    lora_params_line(line, sizeof line, (int64_t)a.n_params, m.n_params);
    CHECK(!strcmp(line, want), "got '%s', want '%s'", line, want);
    printf("  %s %s r=%d: %s\n", m.fam->model_type, targets, r, line);
    lora_free(&a);
    model_free(&m);
}

static void test_params_lines(void) {
    params_line("{\"model_type\": \"llama\", \"num_hidden_layers\": 32, \"num_attention_heads\": 32, "
                "\"hidden_size\": 4096, \"intermediate_size\": 11008, \"vocab_size\": 32000, "
                "\"max_position_embeddings\": 2048}",
                "q_proj,v_proj", 8, "trainable params: 4,194,304 || all params: 6,742,609,920 || trainable%: 0.0622");
    params_line("{\"model_type\": \"mistral\", \"num_hidden_layers\": 32, \"num_attention_heads\": 32, "
                "\"num_key_value_heads\": 8, \"hidden_size\": 4096, \"intermediate_size\": 14336, "
                "\"vocab_size\": 32000, \"max_position_embeddings\": 32768}",
                "all-linear", 16,
                "trainable params: 41,943,040 || all params: 7,283,675,136 || trainable%: 0.5758");
    params_line("{\"model_type\": \"qwen2\", \"num_hidden_layers\": 24, \"num_attention_heads\": 14, "
                "\"num_key_value_heads\": 2, \"hidden_size\": 896, \"intermediate_size\": 4864, "
                "\"vocab_size\": 151936, \"max_position_embeddings\": 32768, \"tie_word_embeddings\": true}",
                "q_proj,k_proj,v_proj,o_proj", 8,
                "trainable params: 1,081,344 || all params: 495,114,112 || trainable%: 0.2184");
}

/* A regex target is Python's re.fullmatch (peft's rule), through PCRE2. Each
 * pattern below is one POSIX ERE reads differently or rejects; the expected
 * site lists are what Python's re.fullmatch selects among the 84 sites of a
 * 12-layer model (computed with Python 3.11). */
static void test_regex_targets(void) {
    model m;
    struct lerr e;
    int ok = model_init_shape(&m,
                              "{\"model_type\": \"llama\", \"num_hidden_layers\": 12, \"num_attention_heads\": 2, "
                              "\"hidden_size\": 8, \"intermediate_size\": 8, \"vocab_size\": 10, "
                              "\"max_position_embeddings\": 8}",
                              &e) == 0;
    CHECK(ok, "shape: %s", e.msg);
    if (!ok) return;
    static const struct {
        const char *pattern;
        int n, first[4];
    } cases[] = {
        {"model\\.layers\\.\\d+\\.self_attn\\.(?:q|v)_proj", 24, {0, 2, 7, 9}}, /* \d, (?:...) */
        {".*?\\.0\\.mlp\\..*_proj", 3, {4, 5, 6}},                                /* non-greedy */
        {".*layers\\.1{,1}\\.self_attn\\.o_proj", 1, {10}},                       /* Python's {,n} */
        {"(?P<blk>model\\.layers)\\.0\\.(self_attn|mlp)\\.\\w+", 7, {0, 1, 2, 3}}, /* named group, \w */
        {"(?!.*layers\\.0\\.).*q_proj", 11, {7, 14, 21, 28}},                     /* lookahead */
        {"model\\.layers\\.[0-1]\\.self_attn\\.[qk]_proj|.*down_proj", 16, {0, 1, 6, 7}}, /* alternation, whole */
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        lora_spec sp = {.r = 2, .alpha = 4, .n_targets = 1, .target_regex = 1};
        snprintf(sp.targets[0], LORA_NAME, "%s", cases[c].pattern);
        lora_adapter a;
        ok = model_adapter_create(&a, &sp, &m, 0, &e) == 0;
        CHECK(ok, "regex '%s': %s", cases[c].pattern, e.msg);
        if (!ok) continue;
        int same = a.n_mod == cases[c].n;
        for (int k = 0; k < 4 && k < a.n_mod && same && (k == 0 || cases[c].first[k]); k++)
            same = a.mod[k].site == cases[c].first[k];
        CHECK(same, "regex '%s' selects %d modules (first %d), Python's re.fullmatch %d (first %d)", cases[c].pattern,
              a.n_mod, a.n_mod ? a.mod[0].site : -1, cases[c].n, cases[c].first[0]);
        lora_free(&a);
    }
    /* fullmatch: a pattern matching a prefix or a suffix only selects nothing */
    CHECK(lora_regex_fullmatch("q_proj", "model.layers.0.self_attn.q_proj", &e) == 0, "suffix is no full match");
    CHECK(lora_regex_fullmatch("model\\.layers", "model.layers.0.self_attn.q_proj", &e) == 0,
          "prefix is no full match");
    CHECK(lora_regex_fullmatch("a|ab", "ab", &e) == 1, "fullmatch backtracks into the second alternative");
    CHECK(lora_regex_fullmatch("x\\Z", "x", &e) == 1, "\\Z is the end, as in Python");
    /* exclude_modules as a regex: the same matching */
    lora_spec sp = spec_of("q_proj,o_proj", 2, 0);
    sp.n_exclude = 1, sp.exclude_regex = 1;
    snprintf(sp.exclude[0], LORA_NAME, "model\\.layers\\.\\d\\.self_attn\\.q_proj");
    lora_adapter a;
    ok = model_adapter_create(&a, &sp, &m, 1, &e) == 0;
    CHECK(ok && a.n_mod == 12 + 2, "exclude regex \\d keeps the q_proj of layers 10 and 11 (%d modules)",
          ok ? a.n_mod : -1);
    if (ok) lora_free(&a);
    /* a pattern that does not compile: the message says where */
    lora_spec bad = {.r = 2, .alpha = 4, .n_targets = 1, .target_regex = 1};
    snprintf(bad.targets[0], LORA_NAME, "model\\.(q_proj");
    CHECK(model_adapter_create(&a, &bad, &m, 0, &e) != 0 && strstr(e.msg, "does not compile") &&
              strstr(e.msg, "model\\.(q_proj"),
          "bad regex: %s", e.msg);
    /* a target the family does not have: the message names its modules */
    lora_spec unk = spec_of("c_attn", 2, 0);
    CHECK(model_adapter_create(&a, &unk, &m, 1, &e) != 0 && strstr(e.msg, "unknown target module 'c_attn'") &&
              strstr(e.msg, "llama modules: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"),
          "unknown target: %s", e.msg);
    printf("  unknown target: %s\n", e.msg);
    model_free(&m);
}

/* config.json errors: each names the file and the field. */
static void expect_describe_error(const char *cfg, const char *want) {
    model m;
    struct lerr e = {{0}};
    int rc = model_init_shape(&m, cfg, &e);
    CHECK(rc != 0 && strstr(e.msg, want), "config %s: wanted an error with '%s', got rc %d '%s'", cfg, want, rc,
          e.msg);
    if (rc == 0) model_free(&m);
}

#define BASE_NOPOS                                                                                                     \
    "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"hidden_size\": 16, \"intermediate_size\": 8, "         \
    "\"vocab_size\": 10, \"num_key_value_heads\": 2"
#define BASE_FIELDS BASE_NOPOS ", \"max_position_embeddings\": 8"

static void test_config_errors(void) {
    expect_describe_error("{\"model_type\": \"llama\", \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
                          "\"intermediate_size\": 8, \"vocab_size\": 10, \"max_position_embeddings\": 8}",
                          "(config): missing \"hidden_size\"");
    expect_describe_error("{\"model_type\": \"llama\", \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
                          "\"hidden_size\": \"16\", \"intermediate_size\": 8, \"vocab_size\": 10, "
                          "\"max_position_embeddings\": 8}",
                          "\"hidden_size\" must be an integer");
    expect_describe_error("{\"model_type\": \"llama\", \"num_hidden_layers\": 2, \"num_attention_heads\": 3, "
                          "\"hidden_size\": 16, \"intermediate_size\": 8, \"vocab_size\": 10, "
                          "\"max_position_embeddings\": 8}",
                          "hidden_size 16 is not a multiple of num_attention_heads 3");
    expect_describe_error("{\"model_type\": \"llama\", \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"hidden_size\": 16, "
                          "\"intermediate_size\": 8, \"vocab_size\": 10, \"max_position_embeddings\": 8, "
                          "\"num_key_value_heads\": 3}",
                          "num_attention_heads 4 is not a multiple of num_key_value_heads 3");
    expect_describe_error("{\"model_type\": \"llama\", \"num_hidden_layers\": 100000000, \"num_attention_heads\": 4, "
                          "\"hidden_size\": 16, \"intermediate_size\": 8, \"vocab_size\": 10, "
                          "\"max_position_embeddings\": 8}",
                          "\"num_hidden_layers\" = 100000000 is outside [1, 1024]");
    expect_describe_error("{\"model_type\": \"llama\", \"num_hidden_layers\": 1024, \"num_attention_heads\": 64, "
                          "\"hidden_size\": 65536, \"intermediate_size\": 262144, \"vocab_size\": 4000000, "
                          "\"max_position_embeddings\": 8}",
                          "more than the 274877906944 this engine can hold");
    expect_describe_error("{\"model_type\": \"llama\", " BASE_FIELDS
                          ", \"rope_parameters\": {\"rope_type\": \"llama3\", \"rope_theta\": 500000.0, "
                          "\"factor\": 8.0}}",
                          "rope_parameters.rope_type \"llama3\" is not supported yet");
    expect_describe_error("{\"model_type\": \"llama\", " BASE_FIELDS
                          ", \"rope_theta\": 10000.0, \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}}",
                          "rope_scaling.type \"linear\" is not supported yet");
    expect_describe_error("{\"model_type\": \"llama\", " BASE_FIELDS ", \"rope_theta\": \"big\"}",
                          "\"rope_theta\" must be a positive number");
    expect_describe_error("{\"model_type\": \"llama\", " BASE_FIELDS ", \"rms_norm_eps\": 1e-52}",
                          "\"rms_norm_eps\" = 1e-52 is too small for float32 (it would be 0)");
    expect_describe_error("{\"model_type\": \"llama\", " BASE_FIELDS ", \"hidden_act\": \"gelu\"}",
                          "hidden_act \"gelu\" is not supported");
    expect_describe_error("{\"model_type\": \"mistral\", " BASE_FIELDS ", \"head_dim\": 5}",
                          "head_dim 5 is odd");
    expect_describe_error("{\"model_type\": \"llama\", " BASE_FIELDS ", \"tie_word_embeddings\": 1}",
                          "\"tie_word_embeddings\" must be true or false");
    expect_describe_error("{\"model_type\": \"qwen2\", " BASE_FIELDS ", "
                          "\"layer_types\": [\"full_attention\"]}",
                          "\"layer_types\" must be a list of 2 strings");
    /* what is accepted: Mistral/Qwen2 with head_dim given need no hidden % heads; defaults */
    model m;
    struct lerr e;
    CHECK(model_init_shape(&m, "{\"model_type\": \"mistral\", \"num_hidden_layers\": 1, \"num_attention_heads\": 3, "
                               "\"num_key_value_heads\": 1, \"hidden_size\": 16, \"head_dim\": 8, "
                               "\"intermediate_size\": 8, \"vocab_size\": 10, \"max_position_embeddings\": 8}",
                           &e) == 0 &&
              m.site[0].out == 24 && m.site[1].out == 8 && m.site[3].in == 24,
          "mistral, 3 heads of 8 on hidden 16: q_proj (24, 16), k_proj (8, 16), o_proj (16, 24): %s", e.msg);
    model_free(&m);
}

/* Mistral's sliding window: sequences longer than it are refused by name;
 * absent means MistralConfig's default 4096, null none. Qwen2's windows come
 * from use_sliding_window and max_window_layers (or layer_types). */
static void test_sliding_windows(void) {
    model m;
    struct lerr e;
    CHECK(model_init_shape(&m, CFG_MISTRAL, &e) == 0, "%s", e.msg);
    CHECK(model_check_seq_len(&m, 8, &e) == 0, "T = window is fine: %s", e.msg);
    CHECK(model_check_seq_len(&m, 9, &e) != 0 && strstr(e.msg, "sliding_window 8") && strstr(e.msg, "seq_len <= 8"),
          "T > window: %s", e.msg);
    printf("  sliding window: %s\n", e.msg);
    CHECK(model_check_seq_len(&m, 17, &e) != 0 && strstr(e.msg, "16 positions"), "T > positions: %s", e.msg);
    model_free(&m);
    CHECK(model_init_shape(&m, "{\"model_type\": \"mistral\", " BASE_NOPOS ", "
                               "\"max_position_embeddings\": 8000}",
                           &e) == 0,
          "%s", e.msg);
    CHECK(model_check_seq_len(&m, 4096, &e) == 0 && model_check_seq_len(&m, 4097, &e) != 0,
          "absent sliding_window is MistralConfig's 4096");
    model_free(&m);
    CHECK(model_init_shape(&m, "{\"model_type\": \"mistral\", " BASE_NOPOS ", "
                               "\"max_position_embeddings\": 8000, \"sliding_window\": null}",
                           &e) == 0,
          "%s", e.msg);
    CHECK(model_check_seq_len(&m, 8000, &e) == 0, "null sliding_window: none (%s)", e.msg);
    model_free(&m);
    CHECK(model_init_shape(&m, "{\"model_type\": \"qwen2\", " BASE_FIELDS ", \"sliding_window\": 4, "
                               "\"max_window_layers\": 1}",
                           &e) == 0 &&
              model_check_seq_len(&m, 8, &e) == 0,
          "qwen2 without use_sliding_window has no window (%s)", e.msg);
    model_free(&m);
    CHECK(model_init_shape(&m, "{\"model_type\": \"qwen2\", " BASE_FIELDS ", \"sliding_window\": 4, "
                               "\"use_sliding_window\": true, \"max_window_layers\": 1}",
                           &e) == 0 &&
              model_check_seq_len(&m, 5, &e) != 0 && strstr(e.msg, "(layer 1)"),
          "qwen2: layers >= max_window_layers slide: %s", e.msg);
    model_free(&m);
    CHECK(model_init_shape(&m, "{\"model_type\": \"qwen2\", " BASE_FIELDS ", \"sliding_window\": 4, "
                               "\"use_sliding_window\": true, \"layer_types\": [\"full_attention\", "
                               "\"full_attention\"]}",
                           &e) == 0 &&
              model_check_seq_len(&m, 8, &e) == 0,
          "qwen2: layer_types decide (%s)", e.msg);
    model_free(&m);
}

/* Writes m's tensors (values from m) under the given names into path. */
static int write_some(const char *path, const model *m, int from, int to, int strip_prefix, struct lerr *e) {
    st_entry *ent = calloc((size_t)(to - from), sizeof(st_entry));
    for (int i = from; i < to; i++) {
        const model_tensor *t = &m->tensor[i];
        ent[i - from].name = strip_prefix && !strncmp(t->name, "model.", 6) ? t->name + 6 : t->name;
        ent[i - from].dtype = ST_F32;
        ent[i - from].ndim = t->ndim;
        ent[i - from].shape[0] = t->shape[0];
        ent[i - from].shape[1] = t->shape[1];
        ent[i - from].data = t->data;
    }
    int rc = st_write(path, ent, to - from, NULL, 0, e);
    free(ent);
    return rc;
}

static float *logits_copy(const model *m, const int32_t *tok, int T) {
    model_ws *s = model_ws_create(m, NULL, 1, T);
    int64_t n;
    fwd(m, NULL, s, tok, 1, T, 0, NULL, &n);
    float *l = malloc(sizeof(float) * (size_t)T * m->vocab);
    memcpy(l, logits_of(m, s), sizeof(float) * (size_t)T * m->vocab);
    model_ws_free(m, s);
    return l;
}

/* The same weights in one file, in two shards with model.safetensors.index.json
 * (HF's sharded layout), and without the "model." prefix give the same
 * logits, bitwise; a shard named in the index but missing is an error naming
 * it; F16 and BF16 files load (converted). */
static void test_files(void) {
    struct lerr e;
    model m;
    random_model(&m, CFG_LLAMA, 5);
    char dir[] = "/tmp/lora-test-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char one[600], path[700], cmd[2000];
    snprintf(one, sizeof one, "%s/one", dir);
    CHECK(model_save(&m, one, ST_F32, &e) == 0, "save: %s", e.msg);
    int32_t tok[9] = {1, 4, 9, 16, 25, 7, 2, 28, 0};
    float *ref = logits_copy(&m, tok, 9);
    long nv = 9L * m.vocab;
    model a;
    int ok = model_open(&a, one, NULL, &e) == 0;
    CHECK(ok, "open one file: %s", e.msg);
    if (ok) {
        float *l = logits_copy(&a, tok, 9);
        CHECK(!memcmp(l, ref, sizeof(float) * nv), "the saved model gives the same logits");
        free(l);
        model_free(&a);
    }
    /* two shards and an index, as save_pretrained(max_shard_size=...) writes them */
    char sh[600];
    snprintf(sh, sizeof sh, "%s/sharded", dir);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cp %s/config.json %s/", sh, one, sh);
    CHECK(system(cmd) == 0, "mkdir");
    int half = m.n_tensor / 2;
    snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", sh);
    CHECK(write_some(path, &m, 0, half, 0, &e) == 0, "shard 1: %s", e.msg);
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", sh);
    CHECK(write_some(path, &m, half, m.n_tensor, 0, &e) == 0, "shard 2: %s", e.msg);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", sh);
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"metadata\": {\"total_size\": %lld}, \"weight_map\": {", (long long)m.n_params * 4);
    for (int i = 0; i < m.n_tensor; i++)
        fprintf(f, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"", i ? ", " : "", m.tensor[i].name,
                i < half ? 1 : 2);
    fprintf(f, "}}\n");
    fclose(f);
    ok = model_open(&a, sh, NULL, &e) == 0;
    CHECK(ok, "open sharded: %s", e.msg);
    if (ok) {
        CHECK(a.n_st == 2, "two shards mapped (%d)", a.n_st);
        float *l = logits_copy(&a, tok, 9);
        CHECK(!memcmp(l, ref, sizeof(float) * nv), "sharded weights give the same logits, bitwise");
        free(l);
        /* merge of a sharded base writes one model.safetensors */
        lora_spec sp = spec_of("q_proj", 2, 0);
        lora_adapter ad;
        CHECK(model_adapter_create(&ad, &sp, &a, 1, &e) == 0, "%s", e.msg);
        model_adapter_init(&ad, &a, 1);
        snprintf(path, sizeof path, "%s/merged", dir);
        CHECK(model_save_merged(&a, &ad, path, &e) == 0, "merge of a sharded model: %s", e.msg);
        model mm;
        if (model_open(&mm, path, NULL, &e) == 0) {
            float *l2 = logits_copy(&mm, tok, 9);
            CHECK(!memcmp(l2, ref, sizeof(float) * nv), "merged (B = 0) sharded model gives the base logits");
            free(l2);
            model_free(&mm);
        } else {
            CHECK(0, "open merged: %s", e.msg);
        }
        lora_free(&ad);
        model_free(&a);
    }
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", sh);
    remove(path);
    CHECK(model_open(&a, sh, NULL, &e) != 0 && strstr(e.msg, "model.safetensors.index.json") &&
              strstr(e.msg, "model-00002-of-00002.safetensors") && strstr(e.msg, "missing"),
          "missing shard: %s", e.msg);
    printf("  missing shard: %s\n", e.msg);
    /* keys without the "model." prefix (lm_head.weight has none anyway) */
    char np[600];
    snprintf(np, sizeof np, "%s/noprefix", dir);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cp %s/config.json %s/", np, one, np);
    CHECK(system(cmd) == 0, "mkdir");
    snprintf(path, sizeof path, "%s/model.safetensors", np);
    CHECK(write_some(path, &m, 0, m.n_tensor, 1, &e) == 0, "write: %s", e.msg);
    ok = model_open(&a, np, NULL, &e) == 0;
    CHECK(ok, "open unprefixed: %s", e.msg);
    if (ok) {
        CHECK(st_find(a.st[0], "embed_tokens.weight") != NULL, "keys without prefix");
        float *l = logits_copy(&a, tok, 9);
        CHECK(!memcmp(l, ref, sizeof(float) * nv), "the same logits with and without the prefix");
        free(l);
        model_free(&a);
    }
    /* BF16 weights: converted on load, the logits within bf16's rounding of the weights */
    char bf[600];
    snprintf(bf, sizeof bf, "%s/bf16", dir);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cp %s/config.json %s/", bf, one, bf);
    CHECK(system(cmd) == 0, "mkdir");
    st_entry *ent = calloc((size_t)m.n_tensor, sizeof(st_entry));
    for (int i = 0; i < m.n_tensor; i++)
        ent[i] = (st_entry){m.tensor[i].name, ST_BF16, m.tensor[i].ndim, {m.tensor[i].shape[0], m.tensor[i].shape[1]},
                            m.tensor[i].data};
    snprintf(path, sizeof path, "%s/model.safetensors", bf);
    CHECK(st_write(path, ent, m.n_tensor, NULL, 0, &e) == 0, "write bf16: %s", e.msg);
    free(ent);
    ok = model_open(&a, bf, NULL, &e) == 0;
    CHECK(ok, "open bf16: %s", e.msg);
    if (ok) {
        float *l = logits_copy(&a, tok, 9);
        double err = tu_rel_err(l, ref, nv);
        CHECK(a.tensor[1].dtype == ST_BF16 && err < 5e-2, "bf16 logits near the f32 ones (rel err %g)", err);
        free(l);
        model_free(&a);
    }
    /* an unexpected key (another architecture's: Qwen3's q_norm) is refused by
     * name, and a missing one too */
    snprintf(path, sizeof path, "%s/model.safetensors", np);
    float junk[6] = {0};
    ent = calloc((size_t)m.n_tensor + 1, sizeof(st_entry));
    for (int i = 0; i < m.n_tensor; i++)
        ent[i] = (st_entry){m.tensor[i].name, ST_F32, m.tensor[i].ndim, {m.tensor[i].shape[0], m.tensor[i].shape[1]},
                            m.tensor[i].data};
    ent[m.n_tensor] = (st_entry){"model.layers.0.self_attn.q_norm.weight", ST_F32, 1, {6}, junk};
    CHECK(st_write(path, ent, m.n_tensor + 1, NULL, 0, &e) == 0, "write");
    CHECK(model_open(&a, np, NULL, &e) != 0 && strstr(e.msg, "unexpected tensor 'model.layers.0.self_attn.q_norm"),
          "unexpected tensors are named: %s", e.msg);
    CHECK(st_write(path, ent + 1, m.n_tensor, NULL, 0, &e) == 0, "write");
    CHECK(model_open(&a, np, NULL, &e) != 0 && strstr(e.msg, "missing tensor 'model.embed_tokens.weight'"),
          "missing tensors are named: %s", e.msg);
    free(ent);
    free(ref);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
    model_free(&m);
}

/* The fixture folder's model (HF-saved) and its peft adapter load, and our
 * save of it is what peft saved (names, shapes, bytes). */
static void test_fixture_roundtrip(void) {
    struct lerr e;
    char base[512], src[512];
    snprintf(base, sizeof base, "%s/base", tu_fixture("llama-tiny"));
    snprintf(src, sizeof src, "%s/lora-trained", tu_fixture("llama-tiny"));
    model m;
    lora_adapter a;
    if (model_open(&m, base, NULL, &e) || model_load_peft(&a, &m, src, &e)) {
        CHECK(0, "load: %s", e.msg);
        return;
    }
    CHECK(!strcmp(m.fam->model_type, "llama") && m.n_site == 14 && !m.fan_in_fan_out, "llama-tiny: 14 sites");
    char dir[] = "/tmp/lora-test-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    CHECK(model_save_peft(&a, &m, dir, &e) == 0, "save: %s", e.msg);
    char pa[600], pb[600];
    snprintf(pa, sizeof pa, "%s/adapter_model.safetensors", src);
    snprintf(pb, sizeof pb, "%s/adapter_model.safetensors", dir);
    st_file *fa = st_open(pa, &e), *fb = st_open(pb, &e);
    CHECK(fa && fb, "open: %s", e.msg);
    if (fa && fb) {
        int same = st_count(fa) == st_count(fb);
        for (int i = 0; same && i < st_count(fa); i++) {
            const st_tensor *x = st_at(fa, i), *y = st_find(fb, x->name);
            same = y && y->dtype == x->dtype && y->nbytes == x->nbytes && !memcmp(y->data, x->data, x->nbytes);
        }
        CHECK(same, "our save of peft's adapter has peft's names, dtypes, shapes and bytes");
    }
    st_close(fa);
    st_close(fb);
    snprintf(pb, sizeof pb, "%s/adapter_config.json", dir);
    char *txt = read_text_file(pb, 1 << 20, &e);
    CHECK(txt && strstr(txt, "\"fan_in_fan_out\":\tfalse") && strstr(txt, "\"task_type\":\t\"CAUSAL_LM\""),
          "adapter_config.json: fan_in_fan_out false, CAUSAL_LM");
    free(txt);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
    lora_free(&a);
    model_free(&m);
}

int main(void) {
    lora_spec all = spec_of("all-linear", 3, 0);
    grad_check("llama GQA, head_dim 6, biases: all-linear r=3", CFG_LLAMA, &all, 0);
    lora_spec drop = spec_of("q_proj,up_proj", 2, 0.3f);
    grad_check("llama: q_proj + up_proj, dropout 0.3 (train)", CFG_LLAMA, &drop, 1);
    lora_spec high = spec_of("model.layers.1.mlp.down_proj", 2, 0);
    grad_check("llama: only layers.1 down_proj (early stop)", CFG_LLAMA, &high, 0);
    lora_spec up = spec_of("model.layers.1.mlp.up_proj", 2, 0);
    grad_check("llama: only layers.1 up_proj (gate not below)", CFG_LLAMA, &up, 0);
    lora_spec kv = spec_of("k_proj", 2, 0);
    grad_check("llama: k_proj (q below it is not trained)", CFG_LLAMA, &kv, 0);
    lora_spec rs = spec_of("o_proj,gate_proj", 4, 0);
    rs.rslora = 1;
    grad_check("llama: o_proj + gate_proj, rsLoRA", CFG_LLAMA, &rs, 0);
    lora_spec qall = spec_of("all-linear", 2, 0);
    grad_check("qwen2 MQA, q/k/v biases, tied: all-linear", CFG_QWEN2, &qall, 0);
    lora_spec mv = spec_of("v_proj,down_proj", 3, 0);
    grad_check("mistral GQA 4/1 (window 8 > T): v_proj, down_proj", CFG_MISTRAL, &mv, 0);
    full_grad_check("full fine-tuning, llama (untied, biases)", CFG_LLAMA);
    full_grad_check("full fine-tuning, qwen2 (tied)", CFG_QWEN2);
    test_merge_equivalence(CFG_LLAMA);
    test_merge_equivalence(CFG_QWEN2);
    test_params_lines();
    test_regex_targets();
    test_config_errors();
    test_sliding_windows();
    test_files();
    test_fixture_roundtrip();
    return tu_end("test_llama");
}
