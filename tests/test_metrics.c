/*
 * Metrics from counts: hand-checked cases, counts that add across shards, and
 * (with LORA_METRICS_REF=FILE from tests/ref/metrics_ref.py) random cases
 * against scikit-learn and seqeval.
 */
#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "testutil.h"
#include "util.h"

static void test_cls(void) {
    int32_t gold[6] = {0, 0, 1, 1, 2, 2}, pred[6] = {0, 1, 1, 1, 0, 0};
    int64_t conf[9] = {0};
    metrics_cls_add(conf, 3, pred, gold, 6);
    double acc, f1;
    metrics_cls(conf, 3, &acc, &f1);
    /* label 0: tp 1, gold 2, pred 3 -> 0.4; label 1: tp 2, gold 2, pred 3 -> 0.8; label 2: 0 */
    CHECK(fabs(acc - 0.5) < 1e-15 && fabs(f1 - 0.4) < 1e-15, "accuracy %g, macro-F1 %g (want 0.5, 0.4)", acc, f1);
    /* two shards' counts add to the whole's */
    int64_t a[9] = {0}, b[9] = {0};
    metrics_cls_add(a, 3, pred, gold, 3);
    metrics_cls_add(b, 3, pred + 3, gold + 3, 3);
    for (int i = 0; i < 9; i++) a[i] += b[i];
    CHECK(!memcmp(a, conf, sizeof a), "counts of two shards add up");
}

static void test_ner(void) {
    const char *lab[] = {"O", "B-PER", "I-PER", "B-LOC"};
    int32_t gold[6] = {1, 2, 0, 3, -100, 0}, pred[6] = {1, 2, 0, 1, 3, 0};
    ner_counts c = {0};
    CHECK(metrics_ner_add(&c, pred, gold, 6, lab, 4) == 0, "add");
    double p, r, f1, ta;
    metrics_ner(&c, &p, &r, &f1, &ta);
    /* gold: PER 0-1, LOC 3; pred: PER 0-1, PER 3 -> 1 of 2 right both ways; tokens 4 of 5 */
    CHECK(c.ent_true == 2 && c.ent_pred == 2 && c.ent_correct == 1, "entities %lld %lld %lld", (long long)c.ent_true,
          (long long)c.ent_pred, (long long)c.ent_correct);
    CHECK(fabs(p - 0.5) < 1e-15 && fabs(r - 0.5) < 1e-15 && fabs(ta - 0.8) < 1e-15, "p %g r %g token acc %g", p, r,
          ta);
    int32_t bad[1] = {7};
    CHECK(metrics_ner_add(&c, bad, bad, 1, lab, 4) != 0, "an id outside the labels is an error");
}

/* The reference cases of tests/ref/metrics_ref.py. */
static void test_reference(const char *path) {
    struct lerr e;
    char *text = read_text_file(path, 64u << 20, &e);
    CHECK(text != NULL, "%s", e.msg);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    CHECK(j != NULL, "%s: JSON", path);
    if (!j) return;
    int n = 0;
    double worst = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(j, "cls")) {
        int L = cJSON_GetObjectItem(it, "L")->valueint;
        const cJSON *g = cJSON_GetObjectItem(it, "gold"), *pr = cJSON_GetObjectItem(it, "pred");
        int len = cJSON_GetArraySize(g);
        int32_t *gv = xmalloc(sizeof(int32_t) * (size_t)len), *pv = xmalloc(sizeof(int32_t) * (size_t)len);
        for (int i = 0; i < len; i++) {
            gv[i] = cJSON_GetArrayItem(g, i)->valueint;
            pv[i] = cJSON_GetArrayItem(pr, i)->valueint;
        }
        int64_t *conf = xcalloc((size_t)L * L, sizeof(int64_t));
        metrics_cls_add(conf, L, pv, gv, len);
        double acc, f1;
        metrics_cls(conf, L, &acc, &f1);
        double d1 = fabs(acc - cJSON_GetObjectItem(it, "accuracy")->valuedouble);
        double d2 = fabs(f1 - cJSON_GetObjectItem(it, "macro_f1")->valuedouble);
        if (d1 > worst) worst = d1;
        if (d2 > worst) worst = d2;
        CHECK(d1 < 1e-12 && d2 < 1e-12, "classification case %d: accuracy %.15g macro-F1 %.15g vs sklearn", n, acc, f1);
        free(gv);
        free(pv);
        free(conf);
        n++;
    }
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(j, "ner")) {
        const cJSON *labs = cJSON_GetObjectItem(it, "labels");
        int L = cJSON_GetArraySize(labs);
        const char **names = xmalloc(sizeof(char *) * (size_t)L);
        for (int i = 0; i < L; i++) names[i] = cJSON_GetArrayItem(labs, i)->valuestring;
        ner_counts c = {0};
        const cJSON *gs = cJSON_GetObjectItem(it, "gold"), *ps = cJSON_GetObjectItem(it, "pred");
        for (int s = 0; s < cJSON_GetArraySize(gs); s++) {
            const cJSON *g = cJSON_GetArrayItem(gs, s), *pr = cJSON_GetArrayItem(ps, s);
            int len = cJSON_GetArraySize(g);
            int32_t gv[64], pv[64];
            for (int i = 0; i < len && i < 64; i++) {
                gv[i] = cJSON_GetArrayItem(g, i)->valueint;
                pv[i] = cJSON_GetArrayItem(pr, i)->valueint;
            }
            ner_counts one = {0}; /* per sentence, merged: what workers do */
            CHECK(metrics_ner_add(&one, pv, gv, len, names, L) == 0, "ner add");
            metrics_ner_merge(&c, &one);
        }
        double p, r, f1, ta;
        metrics_ner(&c, &p, &r, &f1, &ta);
        const char *keys[4] = {"precision", "recall", "f1", "token_accuracy"};
        double ours[4] = {p, r, f1, ta};
        for (int k = 0; k < 4; k++) {
            double d = fabs(ours[k] - cJSON_GetObjectItem(it, keys[k])->valuedouble);
            if (d > worst) worst = d;
            CHECK(d < 1e-12, "NER case %d: %s %.15g vs seqeval %.15g", n, keys[k], ours[k],
                  cJSON_GetObjectItem(it, keys[k])->valuedouble);
        }
        free(names);
        n++;
    }
    printf("  %d cases against scikit-learn and seqeval, worst difference %.3g\n", n, worst);
    cJSON_Delete(j);
}

int main(void) {
    test_cls();
    test_ner();
    const char *ref = getenv("LORA_METRICS_REF");
    if (ref)
        test_reference(ref);
    else
        printf("  NOT RUN: the comparison with scikit-learn and seqeval (set LORA_METRICS_REF; tests/ref_metrics.sh)\n");
    return tu_end("test_metrics");
}
