/* Evaluation metrics from counts (see include/metrics.h). */
#include "metrics.h"

#include <stdlib.h>
#include <string.h>

void metrics_cls_add(int64_t *conf, int L, const int32_t *pred, const int32_t *gold, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (gold[i] >= 0 && gold[i] < L && pred[i] >= 0 && pred[i] < L) conf[(int64_t)gold[i] * L + pred[i]]++;
}

void metrics_cls(const int64_t *conf, int L, double *accuracy, double *macro_f1) {
    int64_t total = 0, correct = 0;
    double f1_sum = 0;
    int present = 0;
    for (int k = 0; k < L; k++) {
        int64_t tp = conf[(int64_t)k * L + k], gold = 0, pred = 0;
        for (int j = 0; j < L; j++) {
            gold += conf[(int64_t)k * L + j];
            pred += conf[(int64_t)j * L + k];
        }
        total += gold;
        correct += tp;
        if (!gold && !pred) continue; /* sklearn averages over the labels that occur */
        present++;
        /* F1 = 2 tp / (2 tp + fp + fn) = 2 tp / (gold + pred); 0 when tp = 0 */
        f1_sum += tp ? 2.0 * (double)tp / (double)(gold + pred) : 0.0;
    }
    *accuracy = total ? (double)correct / (double)total : 0.0;
    *macro_f1 = present ? f1_sum / present : 0.0;
}

/* ---- seqeval's chunking (sequence_labeling.get_entities, prefix mode) */

typedef struct {
    char tag;          /* B, I, E, S, O, or the name's first character */
    const char *type;  /* what follows the first '-' of name[1:], or name[1:]; "_" when empty */
    size_t type_len;
} chunk_tag;

static chunk_tag parse_tag(const char *name) {
    chunk_tag c = {'O', "_", 1};
    if (!name || !name[0]) return c;
    c.tag = name[0];
    const char *rest = name + 1, *dash = strchr(rest, '-');
    c.type = dash ? dash + 1 : rest;
    c.type_len = strlen(c.type);
    if (!c.type_len) c.type = "_", c.type_len = 1;
    return c;
}

static int same_type(const chunk_tag *a, const chunk_tag *b) {
    return a->type_len == b->type_len && !memcmp(a->type, b->type, a->type_len);
}

static int end_of_chunk(const chunk_tag *p, const chunk_tag *t) {
    char pt = p->tag, tt = t->tag;
    if (pt == 'E' || pt == 'S') return 1;
    if ((pt == 'B' || pt == 'I') && (tt == 'B' || tt == 'S' || tt == 'O')) return 1;
    return pt != 'O' && pt != '.' && !same_type(p, t);
}

static int start_of_chunk(const chunk_tag *p, const chunk_tag *t) {
    char pt = p->tag, tt = t->tag;
    if (tt == 'B' || tt == 'S') return 1;
    if ((pt == 'E' || pt == 'S' || pt == 'O') && (tt == 'E' || tt == 'I')) return 1;
    return tt != 'O' && tt != '.' && !same_type(p, t);
}

typedef struct {
    chunk_tag type;
    int begin, end;
} entity;

/* The entities of tags[0..n) (names), appending a final 'O' as seqeval does. */
static int entities(entity *out, const char *const *names, int n) {
    chunk_tag prev = {'O', "", 0};
    int begin = 0, k = 0;
    for (int i = 0; i <= n; i++) {
        chunk_tag t = i < n ? parse_tag(names[i]) : parse_tag("O");
        if (end_of_chunk(&prev, &t)) out[k++] = (entity){prev, begin, i - 1};
        if (start_of_chunk(&prev, &t)) begin = i;
        prev = t;
    }
    return k;
}

int metrics_ner_add(ner_counts *c, const int32_t *pred, const int32_t *gold, int n, const char *const *id2label,
                    int L) {
    const char **gn = malloc(sizeof(char *) * (size_t)(n + 1)), **pn = malloc(sizeof(char *) * (size_t)(n + 1));
    entity *ge = malloc(sizeof(entity) * (size_t)(n + 2)), *pe = malloc(sizeof(entity) * (size_t)(n + 2));
    int rc = -1, w = 0;
    if (!gn || !pn || !ge || !pe) goto out;
    for (int i = 0; i < n; i++) {
        if (gold[i] < 0) continue;
        if (gold[i] >= L || pred[i] < 0 || pred[i] >= L) goto out;
        gn[w] = id2label[gold[i]];
        pn[w] = id2label[pred[i]];
        c->tok_total++;
        c->tok_correct += gold[i] == pred[i];
        w++;
    }
    int ng = entities(ge, gn, w), np = entities(pe, pn, w);
    c->ent_true += ng;
    c->ent_pred += np;
    for (int i = 0; i < ng; i++)
        for (int j = 0; j < np; j++)
            if (ge[i].begin == pe[j].begin && ge[i].end == pe[j].end && same_type(&ge[i].type, &pe[j].type)) {
                c->ent_correct++;
                break;
            }
    rc = 0;
out:
    free(gn);
    free(pn);
    free(ge);
    free(pe);
    return rc;
}

void metrics_ner_merge(ner_counts *into, const ner_counts *c) {
    into->tok_correct += c->tok_correct;
    into->tok_total += c->tok_total;
    into->ent_correct += c->ent_correct;
    into->ent_pred += c->ent_pred;
    into->ent_true += c->ent_true;
}

void metrics_ner(const ner_counts *c, double *precision, double *recall, double *f1, double *token_accuracy) {
    double p = c->ent_pred ? (double)c->ent_correct / (double)c->ent_pred : 0.0;
    double r = c->ent_true ? (double)c->ent_correct / (double)c->ent_true : 0.0;
    *precision = p;
    *recall = r;
    *f1 = p + r > 0 ? 2 * p * r / (p + r) : 0.0;
    *token_accuracy = c->tok_total ? (double)c->tok_correct / (double)c->tok_total : 0.0;
}
