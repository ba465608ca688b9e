/*
 * metrics_: evaluation metrics from counts, so that workers can each count
 * their share of the validation set and the coordinator adds the counts (never
 * an average of averages). Pure functions, checked against scikit-learn and
 * seqeval on the same predictions (tests/ref_metrics.sh).
 *
 * Classification: a confusion matrix conf[gold * L + pred]; accuracy and
 * macro-F1 as sklearn.metrics.f1_score(average="macro") computes it (the mean
 * over the labels present in gold or predictions; a label with no true
 * positive has F1 0).
 * Token classification: entity-level precision, recall and F1 as seqeval's
 * default (conlleval-style, IOB/IOBES tags by name, micro average), and token
 * accuracy over the labeled tokens.
 */
#ifndef METRICS_H
#define METRICS_H

#include <stdint.h>

/* conf (L x L) += one count per example: gold[i] row, pred[i] column (gold < 0 skipped). */
void metrics_cls_add(int64_t *conf, int L, const int32_t *pred, const int32_t *gold, int64_t n);
/* Accuracy and macro-F1 from a confusion matrix (0 when it is empty). */
void metrics_cls(const int64_t *conf, int L, double *accuracy, double *macro_f1);

typedef struct {
    int64_t tok_correct, tok_total;           /* labeled tokens */
    int64_t ent_correct, ent_pred, ent_true;  /* entities */
} ner_counts;

/* Adds one sentence of n positions: positions with gold < 0 (-100) are not
 * words and are skipped; the rest, in order, are the sentence's tags, named by
 * id2label (L names). Returns -1 when an id is outside [0, L). */
int metrics_ner_add(ner_counts *c, const int32_t *pred, const int32_t *gold, int n, const char *const *id2label,
                    int L);
void metrics_ner_merge(ner_counts *into, const ner_counts *c);
void metrics_ner(const ner_counts *c, double *precision, double *recall, double *f1, double *token_accuracy);

#endif
