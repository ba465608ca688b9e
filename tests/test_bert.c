/*
 * The BERT family: config and loader errors (each naming the file and
 * field), peft's trainable-parameter lines for BERT-base shapes, gradients
 * against finite differences (LoRA tensors and the classifier's whole
 * tensors; sequence classification, regression and token classification;
 * several target sets so the early stop of the backward is exercised; with
 * and without LoRA dropout; full fine-tuning), padding invariance (padded
 * tokens change nothing, a padded sequence equals the same sequence alone),
 * merge equivalence with the classifier taken from the adapter, peft save and
 * load, and model_save's config round trip.
 *
 *   test_bert                      the unit tests
 *   test_bert make-adapter BASE_DIR OUT_DIR TARGETS R ALPHA SEED
 *        writes a peft adapter for the BERT model in BASE_DIR with LoRA on
 *        TARGETS (comma-separated) and the classifier (modules_to_save), every
 *        value moved away from peft's init (lora_B != 0, classifier perturbed),
 *        for the round trips with peft (tests/ref_roundtrip_bert.sh): our
 *        single-process trainer does not train BERT yet.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>

#include "data.h"
#include "lora.h"
#include "model.h"
#include "safetensors.h"
#include "testutil.h"
#include "util.h"

#define CFG_FMT                                                                                                        \
    "{\"model_type\": \"bert\", \"architectures\": [\"%s\"], \"num_hidden_layers\": 2, "                              \
    "\"num_attention_heads\": 2, \"hidden_size\": 12, \"intermediate_size\": 20, \"vocab_size\": 31, "                \
    "\"max_position_embeddings\": 10, \"type_vocab_size\": 2, \"pad_token_id\": 1, \"layer_norm_eps\": 1e-6, "      \
    "\"hidden_act\": \"%s\", \"id2label\": %s}"
#define V_ 31
#define LABELS3 "{\"0\": \"A\", \"1\": \"B\", \"2\": \"C\"}"
#define LABELS1 "{\"0\": \"LABEL_0\"}"

typedef enum { K_CLS = 0, K_REG, K_TOK } kind;
static const char *kind_name[] = {"sequence classification", "regression", "token classification"};

static void tiny(model *m, kind k, const char *act, uint64_t seed) {
    char cfg[1024];
    snprintf(cfg, sizeof cfg, CFG_FMT, k == K_TOK ? "BertForTokenClassification" : "BertForSequenceClassification",
             act, k == K_REG ? LABELS1 : LABELS3);
    struct lerr e;
    if (model_init_random(m, cfg, seed, &e)) {
        fprintf(stderr, "model_init_random: %s\n", e.msg);
        exit(1);
    }
    /* weights of N(0, 0.02) carry almost no signal through 2 layers: make them
     * larger, and 1-D tensors (LayerNorm, biases) away from 1 and 0 */
    rng_t r;
    rng_seed(&r, seed + 7);
    for (int i = 0; i < m->n_tensor; i++) {
        model_tensor *t = &m->tensor[i];
        float *v = (float *)t->data;
        long n = (long)t->shape[0] * (t->ndim == 2 ? t->shape[1] : 1);
        for (long j = 0; j < n; j++) v[j] = t->ndim == 2 ? v[j] * 15.0f : v[j] + 0.2f * (2 * rng_uniform(&r) - 1);
    }
}

static lora_spec spec_of(const char *targets, int r, float dropout, int save_classifier) {
    lora_spec s = {.r = r, .alpha = 1.5f * r, .dropout = dropout};
    char buf[512];
    snprintf(buf, sizeof buf, "%s", targets);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) snprintf(s.targets[s.n_targets++], LORA_NAME, "%s", t);
    if (save_classifier) snprintf(s.save[s.n_save++], LORA_NAME, "classifier");
    return s;
}

/* A padded batch: row lengths lens[], pad_id at padded positions, token
 * types, labels for the kind (-100 at padding for token classification). */
typedef struct {
    int B, T;
    int32_t tok[64], mask[64], types[64], labels[64];
    float values[8];
    int64_t ids[8];
} batch;

static void make_batch(batch *b, kind k, int B, int T, const int *lens, uint64_t seed) {
    rng_t r;
    rng_seed(&r, seed);
    memset(b, 0, sizeof *b);
    b->B = B, b->T = T;
    for (int i = 0; i < B; i++) {
        b->ids[i] = 1000 + i;
        for (int t = 0; t < T; t++) {
            int real = t < lens[i];
            b->mask[i * T + t] = real;
            b->tok[i * T + t] = real ? (int32_t)(rng_next(&r) % V_) : 1;
            b->types[i * T + t] = real && t >= lens[i] / 2 ? 1 : 0;
            b->labels[i * T + t] = real && rng_next(&r) % 5 ? (int32_t)(rng_next(&r) % 3) : -100;
        }
        if (k != K_TOK) b->labels[i] = (int32_t)(rng_next(&r) % 3);
        b->values[i] = 2 * rng_uniform(&r) - 1;
    }
    if (k == K_TOK) b->labels[0] = 2; /* at least one labeled token */
}

static double fwd(const model *m, const lora_adapter *a, model_ws *s, const batch *b, int train, int64_t *n) {
    model_batch mb = {.tokens = b->tok, .mask = b->mask, .type_ids = b->types, .labels = b->labels,
                      .label_values = b->values, .sample_ids = b->ids, .B = b->B, .T = b->T};
    return model_forward(m, a, s, &mb, train, 77, n);
}

static const float *logits_of(const model *m, const model_ws *s, long *n) {
    int nd;
    int64_t sh[3];
    const float *o = model_output(m, s, &nd, sh);
    *n = 1;
    for (int d = 0; d < nd; d++) *n *= (long)sh[d];
    return o;
}

/* The sum loss's gradient against central differences at up to 10 evenly
 * spaced values of every adapter tensor (all of a small one); returns the
 * worst relative error over the tensors. */
static double grad_check(const char *label, kind k, const char *targets, float dropout, int save_classifier) {
    model m;
    tiny(&m, k, "gelu", 11 + (uint64_t)k);
    lora_spec sp = spec_of(targets, 3, dropout, save_classifier);
    lora_adapter a;
    struct lerr e;
    int ok = model_adapter_create(&a, &sp, &m, 1, &e) == 0;
    CHECK(ok, "%s: model_adapter_create: %s", label, e.msg);
    if (!ok) {
        model_free(&m);
        return 1;
    }
    model_adapter_init(&a, &m, 5);
    rng_t r;
    rng_seed(&r, 3);
    for (size_t i = 0; i < a.n_params; i++) a.w[i] += 0.3f * (2 * rng_uniform(&r) - 1); /* B != 0 */
    batch b;
    const int lens[3] = {5, 3, 6};
    make_batch(&b, k, 3, 6, lens, 9);
    model_ws *s = model_ws_create(&m, &a, b.B, b.T);
    float *grad = xcalloc(a.n_params, sizeof(float));
    int64_t n;
    fwd(&m, &a, s, &b, 1, &n);
    model_backward(&m, &a, s, grad, 1.0f);
    const float h = 1e-2f;
    double worst = 0;
    int whole = 0;
    for (int t = 0; t < a.n_tensor; t++) {
        const lora_tensor *lt = &a.tensor[t];
        long cnt = (long)lt->rows * lt->cols, nk = 0, step = cnt > 10 ? (cnt + 9) / 10 : 1;
        float an[10], nu[10];
        for (long j = (step - 1) / 2; j < cnt && nk < 10; j += step, nk++) {
            float *p = a.w + lt->off + j, keep = *p;
            *p = keep + h;
            double fp = fwd(&m, &a, s, &b, 1, &n);
            *p = keep - h;
            double fm = fwd(&m, &a, s, &b, 1, &n);
            *p = keep;
            nu[nk] = (float)((fp - fm) / (2 * h));
            an[nk] = grad[lt->off + j];
        }
        double err = tu_rel_err(an, nu, nk);
        if (err > worst || isnan(err)) worst = err;
        whole += lt->kind == LORA_KIND_WHOLE;
        CHECK(err < 1e-2, "%s: gradient of %s differs from finite differences (rel err %g)", label, lt->key, err);
        double norm = 0;
        for (long i = 0; i < cnt; i++) norm += fabs(grad[lt->off + i]);
        CHECK(norm > 0, "%s: %s: zero gradient", label, lt->key);
    }
    CHECK(whole == 2 * save_classifier, "%s: %d whole tensors, expected %d", label, whole, 2 * save_classifier);
    printf("  %-58s %3d modules + %d whole, worst rel err %.2e\n", label, a.n_mod, whole, worst);
    free(grad);
    model_ws_free(&m, s);
    lora_free(&a);
    model_free(&m);
    return worst;
}

static void test_gradients(void) {
    printf("gradients vs finite differences (sum loss, padded batch with token types):\n");
    for (int k = 0; k < 3; k++) {
        char label[160];
        snprintf(label, sizeof label, "%s, all-linear + classifier", kind_name[k]);
        grad_check(label, (kind)k, "all-linear", 0, 1);
        snprintf(label, sizeof label, "%s, all-linear + classifier, dropout 0.2", kind_name[k]);
        grad_check(label, (kind)k, "all-linear", 0.2f, 1);
        /* a high site only: the backward must stop right below it */
        snprintf(label, sizeof label, "%s, layer 1 output.dense + classifier", kind_name[k]);
        grad_check(label, (kind)k, "bert.encoder.layer.1.output.dense", 0, 1);
        snprintf(label, sizeof label, "%s, key,value (no classifier)", kind_name[k]);
        grad_check(label, (kind)k, "key,value", 0, 0);
    }
    grad_check("sequence classification, pooler.dense only + classifier", K_CLS, "pooler.dense", 0.1f, 1);
    grad_check("token classification, layer 0 query + classifier", K_TOK, "bert.encoder.layer.0.attention.self.query",
               0, 1);
}

/* Full fine-tuning: every base tensor's gradient (embeddings, LayerNorms,
 * biases, the pooler, the classifier) at 16 values of each tensor. */
static void test_full_finetune(kind k) {
    model m;
    tiny(&m, k, "gelu_new", 21);
    lora_adapter a;
    struct lerr e;
    CHECK(model_full_adapter(&a, &m, &e) == 0, "full adapter: %s", e.msg);
    CHECK((int64_t)a.n_params == m.n_params, "full mode trains every parameter (%zu vs %lld)", a.n_params,
          (long long)m.n_params);
    batch b;
    const int lens[2] = {4, 6};
    make_batch(&b, k, 2, 6, lens, 4);
    model_ws *s = model_ws_create(&m, &a, b.B, b.T);
    float *grad = xcalloc(a.n_params, sizeof(float));
    int64_t n;
    fwd(&m, &a, s, &b, 1, &n);
    model_backward(&m, &a, s, grad, 1.0f);
    double worst = 0;
    for (int ti = 0; ti < a.n_tensor; ti++) {
        const lora_tensor *t = &a.tensor[ti];
        size_t cnt = (size_t)t->rows * t->cols, kk = 0;
        float an[16], nu[16];
        for (size_t j = 0; j < cnt && kk < 16; j += 1 + cnt / 16) {
            float *p = a.w + t->off + j, keep = *p;
            const float h = 1e-2f;
            *p = keep + h;
            double fp = fwd(&m, &a, s, &b, 1, &n);
            *p = keep - h;
            double fm = fwd(&m, &a, s, &b, 1, &n);
            *p = keep;
            nu[kk] = (float)((fp - fm) / (2 * h));
            an[kk] = grad[t->off + j];
            kk++;
        }
        if (strstr(t->key, ".key.bias")) {
            /* q.(k_j + b) moves every score of a row by the same q.b: softmax
             * ignores it, the gradient is 0 and both sides are rounding */
            double mx = 0;
            for (size_t j = 0; j < kk; j++) mx = fmax(mx, fmax(fabs(an[j]), fabs(nu[j])));
            CHECK(mx < 1e-3, "full fine-tuning (%s): %s's gradient should be 0 (max %g)", kind_name[k], t->key, mx);
            continue;
        }
        double err = tu_rel_err(an, nu, (long)kk);
        if (err > worst) worst = err;
        CHECK(err < 2e-2, "full fine-tuning (%s): gradient of %s differs from finite differences (rel err %g)",
              kind_name[k], t->key, err);
    }
    /* nn.Embedding(padding_idx): the pad token's row gets no gradient */
    int wte = model_tensor_index(&m, "bert.embeddings.word_embeddings.weight");
    const float *gpad = grad + a.tensor[a.whole[wte]].off + 1 * 12;
    int zero = 1;
    for (int j = 0; j < 12; j++) zero &= gpad[j] == 0.0f;
    CHECK(zero, "full fine-tuning: the pad token's embedding row got a gradient");
    printf("  %-58s %3d tensors, worst rel err %.2e\n", k == K_TOK ? "full fine-tuning, token classification"
                                                               : "full fine-tuning, sequence classification",
           a.n_tensor, worst);
    free(grad);
    model_ws_free(&m, s);
    lora_free(&a);
    model_free(&m);
}

/* Padded positions change nothing: other tokens and types there give the
 * same logits and gradients bitwise, and a padded row equals the same
 * sequence alone without padding. */
static void test_padding(kind k) {
    model m;
    tiny(&m, k, "gelu", 31);
    lora_spec sp = spec_of("all-linear", 2, 0, 1);
    lora_adapter a;
    struct lerr e;
    CHECK(model_adapter_create(&a, &sp, &m, 1, &e) == 0, "%s", e.msg);
    model_adapter_init(&a, &m, 5);
    for (size_t i = 0; i < a.n_params; i++) a.w[i] += 0.1f * (float)((i * 7919) % 13) / 13.0f;
    batch b, b2;
    const int lens[3] = {3, 7, 5};
    make_batch(&b, k, 3, 7, lens, 2);
    b2 = b;
    for (int i = 0; i < b.B * b.T; i++)
        if (!b.mask[i]) b2.tok[i] = (b.tok[i] + 5 + i) % V_, b2.types[i] = 1;
    model_ws *s = model_ws_create(&m, &a, b.B, b.T);
    long nl;
    int64_t n;
    float *g1 = xcalloc(a.n_params, sizeof(float)), *g2 = xcalloc(a.n_params, sizeof(float));
    double l1 = fwd(&m, &a, s, &b, 0, &n);
    const float *o = logits_of(&m, s, &nl);
    float *lg1 = xmalloc(sizeof(float) * (size_t)nl);
    memcpy(lg1, o, sizeof(float) * (size_t)nl);
    model_backward(&m, &a, s, g1, 1.0f);
    double l2 = fwd(&m, &a, s, &b2, 0, &n);
    o = logits_of(&m, s, &nl);
    int same = 1;
    for (long i = 0; i < nl; i++) {
        int row = k == K_TOK ? (int)(i / m.n_labels) : (int)(i / m.n_labels) * b.T;
        if (b.mask[row]) same &= o[i] == lg1[i];
    }
    model_backward(&m, &a, s, g2, 1.0f);
    CHECK(same, "%s: other tokens at padded positions changed the logits of real ones", kind_name[k]);
    CHECK(l1 == l2, "%s: other tokens at padded positions changed the loss (%.9g vs %.9g)", kind_name[k], l1, l2);
    CHECK(!memcmp(g1, g2, sizeof(float) * a.n_params), "%s: other tokens at padded positions changed the gradients",
          kind_name[k]);
    /* row 0 (3 tokens of 7) against the same 3 tokens alone */
    batch one;
    memset(&one, 0, sizeof one);
    one.B = 1, one.T = 3;
    for (int t = 0; t < 3; t++) {
        one.tok[t] = b.tok[t], one.types[t] = b.types[t], one.labels[t] = b.labels[t], one.mask[t] = 1;
    }
    if (k != K_TOK) one.labels[0] = b.labels[0];
    one.values[0] = b.values[0];
    one.ids[0] = b.ids[0];
    fwd(&m, &a, s, &one, 0, &n);
    long n1;
    o = logits_of(&m, s, &n1);
    double err = tu_rel_err(o, lg1, n1); /* the first row's logits lead lg1 in both layouts */
    CHECK(err < 1e-5, "%s: a padded sequence's logits differ from the sequence alone (rel err %g)", kind_name[k], err);
    printf("  padding (%s): padded tokens change nothing (bitwise); padded vs alone rel err %.2e\n", kind_name[k], err);
    free(lg1);
    free(g1);
    free(g2);
    model_ws_free(&m, s);
    lora_free(&a);
    model_free(&m);
}

/* The merged model (LoRA merged, the classifier taken from the adapter)
 * gives the logits of base + adapter; merged weights of frozen tensors are
 * the base's bitwise. */
static void test_merge(kind k) {
    model m, mm;
    tiny(&m, k, "gelu", 41);
    lora_spec sp = spec_of(k == K_TOK ? "query,value,intermediate.dense" : "query,dense", 4, 0, 1);
    lora_adapter a;
    struct lerr e;
    CHECK(model_adapter_create(&a, &sp, &m, 1, &e) == 0, "%s", e.msg);
    model_adapter_init(&a, &m, 2);
    for (size_t i = 0; i < a.n_params; i++) a.w[i] += 0.1f * (float)((i * 7919) % 13) / 13.0f - 0.05f;
    CHECK(model_merge(&mm, &m, &a, &e) == 0, "merge: %s", e.msg);
    batch b;
    const int lens[2] = {6, 4};
    make_batch(&b, k, 2, 6, lens, 5);
    model_ws *s = model_ws_create(&m, &a, b.B, b.T);
    int64_t n;
    long nl;
    double la = fwd(&m, &a, s, &b, 0, &n);
    const float *o = logits_of(&m, s, &nl);
    float *l1 = xmalloc(sizeof(float) * (size_t)nl);
    memcpy(l1, o, sizeof(float) * (size_t)nl);
    double lm = fwd(&mm, NULL, s, &b, 0, &n);
    double err = tu_rel_err(logits_of(&mm, s, &nl), l1, nl);
    CHECK(err < 1e-5, "%s: merged logits differ from base + adapter (rel err %g)", kind_name[k], err);
    CHECK(fabs(la - lm) <= 1e-5 * fabs(la), "%s: merged loss %.9g vs %.9g", kind_name[k], lm, la);
    int tc = model_tensor_index(&m, "classifier.weight");
    CHECK(tc >= 0 && !memcmp(mm.tensor[tc].data, a.w + a.tensor[a.whole[tc]].off, sizeof(float) * m.n_labels * 12),
          "%s: the merged classifier is not the adapter's", kind_name[k]);
    int frozen = model_tensor_index(&m, "bert.encoder.layer.0.attention.self.key.weight");
    CHECK(!memcmp(mm.tensor[frozen].data, m.tensor[frozen].data, sizeof(float) * 12 * 12),
          "%s: a frozen weight changed in the merge", kind_name[k]);
    printf("  merge (%s): merged vs base + adapter rel err %.2e\n", kind_name[k], err);
    free(l1);
    model_ws_free(&m, s);
    model_free(&mm);
    lora_free(&a);
    model_free(&m);
}

/* peft's format: save, load back bitwise; the config says SEQ_CLS, no
 * fan_in_fan_out, modules_to_save ["classifier"]; the classifier is keyed as
 * peft keys it. Then model_save / model_open of a random model. */
static void test_peft_io(void) {
    model m;
    tiny(&m, K_CLS, "gelu", 51);
    char dir[] = "/tmp/test-bert-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char mdir[200], adir[200], path[300];
    snprintf(mdir, sizeof mdir, "%s/model", dir);
    snprintf(adir, sizeof adir, "%s/adapter", dir);
    struct lerr e;
    CHECK(model_save(&m, mdir, ST_F32, &e) == 0, "model_save: %s", e.msg);
    model m2;
    CHECK(model_open(&m2, mdir, NULL, &e) == 0, "model_open of model_save's folder: %s", e.msg);
    int same = m2.n_tensor == m.n_tensor && m2.n_labels == 3 && m2.task == TASK_SEQ_CLS && m2.n_types == 2;
    for (int i = 0; same && i < m.n_tensor; i++)
        same = !memcmp(m.tensor[i].data, m2.tensor[i].data,
                       sizeof(float) * (size_t)m.tensor[i].shape[0] * (m.tensor[i].ndim == 2 ? m.tensor[i].shape[1] : 1));
    CHECK(same, "model_save + model_open: tensors or config differ");
    lora_spec sp = spec_of("query,value", 4, 0, 1);
    lora_adapter a, b;
    CHECK(model_adapter_create(&a, &sp, &m2, 1, &e) == 0, "%s", e.msg);
    model_adapter_init(&a, &m2, 3);
    for (size_t i = 0; i < a.n_params; i++) a.w[i] += 0.01f * (float)(i % 17);
    CHECK(model_save_peft(&a, &m2, adir, &e) == 0, "save: %s", e.msg);
    CHECK(model_load_peft(&b, &m2, adir, &e) == 0, "load: %s", e.msg);
    CHECK(b.n_params == a.n_params && !memcmp(a.w, b.w, sizeof(float) * a.n_params), "peft round trip not bitwise");
    CHECK(lora_find(&b, "base_model.model.classifier.weight") && lora_find(&b, "base_model.model.classifier.bias"),
          "the classifier is not keyed base_model.model.classifier.{weight,bias}");
    CHECK(lora_find(&b, "base_model.model.bert.encoder.layer.1.attention.self.value.lora_B.weight"),
          "LoRA keys are not peft's");
    snprintf(path, sizeof path, "%s/adapter_config.json", adir);
    char *text = read_text_file(path, 1 << 20, &e);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    const cJSON *tt = cJSON_GetObjectItemCaseSensitive(j, "task_type");
    const cJSON *ff = cJSON_GetObjectItemCaseSensitive(j, "fan_in_fan_out");
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(j, "modules_to_save");
    CHECK(cJSON_IsString(tt) && !strcmp(tt->valuestring, "SEQ_CLS"), "task_type is not SEQ_CLS");
    CHECK(cJSON_IsFalse(ff), "fan_in_fan_out is not false");
    CHECK(cJSON_GetArraySize(ms) == 1 && !strcmp(cJSON_GetArrayItem(ms, 0)->valuestring, "classifier"),
          "modules_to_save is not [\"classifier\"]");
    cJSON_Delete(j);
    free(text);
    /* all-linear is written as peft's string form (in a list it would be a module name) */
    lora_spec spa = spec_of("all-linear", 2, 0, 1);
    lora_adapter al;
    CHECK(model_adapter_create(&al, &spa, &m2, 1, &e) == 0 && model_save_peft(&al, &m2, adir, &e) == 0, "%s", e.msg);
    text = read_text_file(path, 1 << 20, &e);
    j = text ? cJSON_Parse(text) : NULL;
    const cJSON *tm = cJSON_GetObjectItemCaseSensitive(j, "target_modules");
    CHECK(cJSON_IsString(tm) && !strcmp(tm->valuestring, "all-linear"), "all-linear is not written as a string");
    cJSON_Delete(j);
    free(text);
    lora_free(&al);
    /* peft's own SEQ_CLS adapters list "score" too: it matches nothing and is skipped */
    lora_spec sp2 = sp;
    snprintf(sp2.save[sp2.n_save++], LORA_NAME, "score");
    lora_adapter c;
    CHECK(model_adapter_create(&c, &sp2, &m2, 0, &e) == 0 && c.n_whole == 2,
          "modules_to_save [classifier, score] from a peft file: %s", e.msg);
    lora_free(&c);
    CHECK(model_adapter_create(&c, &sp2, &m2, 1, &e) != 0 && strstr(e.msg, "'score'"),
          "a modules_to_save name that matches nothing, asked by the user, must be an error");
    printf("  peft save/load bitwise; model_save/model_open round trip; modules_to_save as peft writes it\n");
    lora_free(&a);
    lora_free(&b);
    model_free(&m2);
    model_free(&m);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "rm");
}

static void test_params_lines(void) {
    /* BERT-base shapes: peft 0.21's print_trainable_parameters (checked with the reference environment) */
    struct {
        const char *arch, *labels, *targets, *want;
    } cases[] = {
        {"BertForSequenceClassification", "{\"0\": \"N\", \"1\": \"P\"}", "query,value",
         "trainable params: 296,450 || all params: 109,780,228 || trainable%: 0.2700"},
        {"BertForSequenceClassification", "{\"0\": \"LABEL_0\"}", "all-linear",
         "trainable params: 1,340,161 || all params: 110,823,170 || trainable%: 1.2093"},
        {"BertForTokenClassification",
         "{\"0\": \"O\", \"1\": \"a\", \"2\": \"b\", \"3\": \"c\", \"4\": \"d\", \"5\": \"e\", \"6\": \"f\", "
         "\"7\": \"g\", \"8\": \"h\"}",
         "query,key,value,dense", "trainable params: 1,334,025 || all params: 110,232,594 || trainable%: 1.2102"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char cfg[1024];
        snprintf(cfg, sizeof cfg,
                 "{\"model_type\": \"bert\", \"architectures\": [\"%s\"], \"num_hidden_layers\": 12, "
                 "\"num_attention_heads\": 12, \"hidden_size\": 768, \"intermediate_size\": 3072, "
                 "\"vocab_size\": 30522, \"max_position_embeddings\": 512, \"type_vocab_size\": 2, \"id2label\": %s}",
                 cases[i].arch, cases[i].labels);
        model m;
        struct lerr e;
        CHECK(model_init_shape(&m, cfg, &e) == 0, "shape: %s", e.msg);
        lora_spec sp = spec_of(cases[i].targets, 8, 0, 1);
        lora_adapter a;
        CHECK(model_adapter_create(&a, &sp, &m, 1, &e) == 0, "%s", e.msg);
        char line[200];
        lora_params_line(line, sizeof line, (int64_t)a.n_params, m.n_params);
        CHECK(!strcmp(line, cases[i].want), "%s %s: got '%s', want '%s'", cases[i].arch, cases[i].targets, line,
              cases[i].want);
        lora_free(&a);
        model_free(&m);
    }
    printf("  peft's trainable-parameter lines for BERT-base (SEQ_CLS, regression, TOKEN_CLS): equal\n");
}

/* config.json errors: each a message naming the file and the field. */
static void expect_config_error(const char *cfg, const char *want) {
    model m;
    struct lerr e = {{0}};
    int rc = model_init_shape(&m, cfg, &e);
    CHECK(rc != 0 && strstr(e.msg, want) && strstr(e.msg, "(config)"), "config %s: want an error with '%s', got '%s'",
          cfg, want, rc ? e.msg : "(no error)");
    if (!rc) model_free(&m);
}

#define BASE_FIELDS                                                                                                    \
    "\"model_type\": \"bert\", \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"intermediate_size\": 8, "      \
    "\"vocab_size\": 20, \"max_position_embeddings\": 8"
#define SEQ "\"architectures\": [\"BertForSequenceClassification\"]"

static void test_config_errors(void) {
    expect_config_error("{" BASE_FIELDS ", \"hidden_size\": 8}", "\"architectures\"");
    expect_config_error("{" BASE_FIELDS ", \"hidden_size\": 8, \"architectures\": \"BertModel\"}",
                        "\"architectures\" must be");
    expect_config_error("{" BASE_FIELDS ", \"hidden_size\": 8, \"architectures\": [\"BertForMaskedLM\"]}",
                        "BertForMaskedLM");
    expect_config_error("{" BASE_FIELDS ", " SEQ "}", "missing \"hidden_size\"");
    expect_config_error("{" BASE_FIELDS ", " SEQ ", \"hidden_size\": \"8\"}", "\"hidden_size\" must be an integer");
    expect_config_error("{" BASE_FIELDS ", " SEQ ", \"hidden_size\": 9}",
                        "hidden_size 9 is not a multiple of num_attention_heads 2");
    expect_config_error("{" BASE_FIELDS ", " SEQ ", \"hidden_size\": 100000000}", "\"hidden_size\"");
    expect_config_error("{\"model_type\": \"bert\", " SEQ ", \"num_hidden_layers\": 1000, \"num_attention_heads\": 2, "
                        "\"intermediate_size\": 262144, \"vocab_size\": 4000000, \"max_position_embeddings\": 8, "
                        "\"hidden_size\": 65536}",
                        "parameters");
    expect_config_error("{" BASE_FIELDS ", " SEQ ", \"hidden_size\": 8, \"hidden_act\": \"relu\"}", "hidden_act");
    expect_config_error("{" BASE_FIELDS ", " SEQ ", \"hidden_size\": 8, \"layer_norm_eps\": -1}", "layer_norm_eps");
    expect_config_error("{" BASE_FIELDS ", " SEQ ", \"hidden_size\": 8, \"pad_token_id\": 20}", "pad_token_id");
    expect_config_error("{" BASE_FIELDS ", " SEQ ", \"hidden_size\": 8, \"type_vocab_size\": 0}", "type_vocab_size");
    expect_config_error("{" BASE_FIELDS ", " SEQ ", \"hidden_size\": 8, \"id2label\": [\"a\"]}", "id2label");
    expect_config_error("{" BASE_FIELDS ", " SEQ ", \"hidden_size\": 8, \"id2label\": {\"0\": \"a\", \"2\": \"b\"}}",
                        "id2label");
    expect_config_error("{" BASE_FIELDS ", " SEQ ", \"hidden_size\": 8, \"num_labels\": 3, \"id2label\": {\"0\": \"a\"}}",
                        "num_labels");
    expect_config_error("{" BASE_FIELDS ", " SEQ ", \"hidden_size\": 8, \"problem_type\": \"multi_label_classification\"}",
                        "multi_label_classification");
    expect_config_error("{" BASE_FIELDS ", " SEQ ", \"hidden_size\": 8, \"problem_type\": \"regression\"}",
                        "regression");
    expect_config_error("{" BASE_FIELDS ", " SEQ ", \"hidden_size\": 8, \"is_decoder\": true}", "is_decoder");
    expect_config_error("{" BASE_FIELDS ", " SEQ ", \"hidden_size\": 8, \"position_embedding_type\": \"relative_key\"}",
                        "position_embedding_type");
    /* defaults as HF's: 2 labels, single-label classification */
    model m;
    struct lerr e;
    CHECK(model_init_shape(&m, "{" BASE_FIELDS ", " SEQ ", \"hidden_size\": 8}", &e) == 0 && m.n_labels == 2 &&
              m.task == TASK_SEQ_CLS && m.n_types == 2 && !strcmp(m.save_modules, "classifier"),
          "defaults: %s", e.msg);
    /* a target the family does not have names the family's modules */
    lora_spec sp = spec_of("c_attn", 4, 0, 0);
    lora_adapter a;
    CHECK(model_adapter_create(&a, &sp, &m, 1, &e) != 0 && strstr(e.msg, "c_attn") && strstr(e.msg, "query") &&
              strstr(e.msg, "intermediate.dense"),
          "unknown target: '%s'", e.msg);
    model_free(&m);
    printf("  config errors name the file and field; unknown targets name the family's modules\n");
}

/* Loader errors on a folder: the classifier's shape must agree with id2label. */
static void test_open_errors(void) {
    model m;
    tiny(&m, K_CLS, "gelu", 61);
    char dir[] = "/tmp/test-bert-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    struct lerr e;
    CHECK(model_save(&m, dir, ST_F32, &e) == 0, "model_save: %s", e.msg);
    char path[300], cfg[1024];
    snprintf(path, sizeof path, "%s/config.json", dir);
    snprintf(cfg, sizeof cfg, CFG_FMT, "BertForSequenceClassification", "gelu", "{\"0\": \"A\", \"1\": \"B\"}");
    CHECK(write_file_atomic(path, cfg, strlen(cfg), &e) == 0, "write: %s", e.msg);
    model m2;
    int rc = model_open(&m2, dir, NULL, &e);
    CHECK(rc != 0 && strstr(e.msg, "classifier.weight") && strstr(e.msg, "(2, 12)"),
          "2 labels in config.json, 3 in the file: got '%s'", rc ? e.msg : "(no error)");
    if (!rc) model_free(&m2);
    /* the same file as a token classifier: the pooler is left unused (HF loads it so), the shapes fit */
    snprintf(cfg, sizeof cfg, CFG_FMT, "BertForTokenClassification", "gelu", LABELS3);
    CHECK(write_file_atomic(path, cfg, strlen(cfg), &e) == 0, "write: %s", e.msg);
    rc = model_open(&m2, dir, NULL, &e);
    CHECK(rc == 0 && m2.task == TASK_TOKEN_CLS, "a SEQ_CLS file opened as TOKEN_CLS: %s", e.msg);
    if (!rc) model_free(&m2);
    printf("  loader: classifier shape checked against id2label; a pooler is ignorable for token classification\n");
    model_free(&m);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "rm");
}

/* make-adapter: see the header comment. */
static int make_adapter(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: test_bert make-adapter BASE_DIR OUT_DIR TARGETS R ALPHA SEED\n");
        return 2;
    }
    model m;
    struct lerr e;
    if (model_open(&m, argv[2], NULL, &e)) {
        fprintf(stderr, "test_bert make-adapter: %s\n", e.msg);
        return 1;
    }
    lora_spec sp = spec_of(argv[4], atoi(argv[5]), 0, 0);
    sp.alpha = (float)atof(argv[6]);
    if (m.save_modules) snprintf(sp.save[sp.n_save++], LORA_NAME, "%s", m.save_modules);
    /* peft creates a token classifier's all-linear adapter only with the
     * classifier excluded (it expands all-linear with the head among the
     * targets, then refuses it in modules_to_save): write what peft writes */
    if (m.task == TASK_TOKEN_CLS && !strcmp(argv[4], "all-linear"))
        snprintf(sp.exclude[sp.n_exclude++], LORA_NAME, "classifier");
    lora_adapter a;
    if (model_adapter_create(&a, &sp, &m, 1, &e)) {
        fprintf(stderr, "test_bert make-adapter: %s\n", e.msg);
        model_free(&m);
        return 1;
    }
    uint64_t seed = (uint64_t)atoll(argv[7]);
    model_adapter_init(&a, &m, seed);
    rng_t r;
    rng_seed(&r, seed + 1);
    for (int t = 0; t < a.n_tensor; t++) {
        const lora_tensor *lt = &a.tensor[t];
        float amp = lt->kind == LORA_KIND_A ? 0.0f : lt->kind == LORA_KIND_B ? 0.05f : 0.2f;
        for (long i = 0; i < (long)lt->rows * lt->cols; i++) a.w[lt->off + i] += amp * (2 * rng_uniform(&r) - 1);
    }
    int rc = model_save_peft(&a, &m, argv[3], &e);
    if (rc)
        fprintf(stderr, "test_bert make-adapter: %s\n", e.msg);
    else
        printf("wrote %s: %d LoRA modules (r=%d) + %d whole tensors (%s), %zu values\n", argv[3], a.n_mod, a.spec.r,
               a.n_whole, m.save_modules ? m.save_modules : "-", a.n_params);
    lora_free(&a);
    model_free(&m);
    return rc ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "make-adapter")) return make_adapter(argc, argv);
    test_config_errors();
    test_open_errors();
    test_params_lines();
    test_gradients();
    test_full_finetune(K_CLS);
    test_full_finetune(K_TOK);
    for (int k = 0; k < 3; k++) test_padding((kind)k);
    for (int k = 0; k < 3; k++) test_merge((kind)k);
    test_peft_io();
    return tu_end("test_bert");
}
