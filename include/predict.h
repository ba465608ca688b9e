/*
 * pred_: using a trained classifier on text (`lora predict`). A predictor is
 * a BERT-family classification model (SEQ_CLS or TOKEN_CLS; a merged folder,
 * or a base folder plus a peft adapter) with its folder's tokenizer. A text
 * is tokenized as transformers' tokenizer(text, truncation=True,
 * max_length=max_position_embeddings) does (special tokens added), run
 * through the model once, and turned into
 *   - SEQ_CLS: the softmax of the logits over the labels and the argmax (HF's
 *     text-classification pipeline; one label (regression): the raw value);
 *   - TOKEN_CLS: the softmax per token, each token's argmax label, and the
 *     entities: each word takes the label of its first piece (a word is a
 *     piece and the pieces after it that carry the tokenizer's
 *     continuing-subword prefix, "##"; special tokens belong to none), then
 *     words are grouped as HF's pipeline("ner") groups tags: "B-X" starts an
 *     entity of type X, "I-X" (or a bare "X") continues one of type X, anything
 *     else starts a new one; entities of type "O" are dropped. An entity's
 *     score is the mean of its words' first-piece probabilities.
 * Label names come from config.json's id2label, "LABEL_k" when it has none.
 */
#ifndef PREDICT_H
#define PREDICT_H

#include <stddef.h>
#include <stdint.h>

#include "lerr.h"

typedef struct predictor predictor;

typedef struct {
    char type[64];  /* the tag without its B-/I- prefix */
    int w0, w1;     /* first and last word (inclusive) */
    int t0, t1;     /* first and last token (inclusive, pieces included) */
    float score;
    char *text;     /* the span's pieces decoded (malloc'd) */
} pred_entity;

typedef struct {
    int task;        /* model_task: TASK_SEQ_CLS or TASK_TOKEN_CLS */
    int L;           /* labels */
    int n_tok;       /* tokens the model saw (special tokens included) */
    int32_t *ids;    /* (n_tok) */
    float *probs;    /* SEQ_CLS (L), TOKEN_CLS (n_tok, L); one label: the raw value */
    int label;       /* SEQ_CLS: the argmax */
    int *tok_label;  /* TOKEN_CLS (n_tok) the argmax of each token */
    int *word;       /* TOKEN_CLS (n_tok) word index of each token, -1 for special tokens */
    int n_ent;
    pred_entity *ent;
    int truncated;   /* the text had more tokens than the model's positions */
} pred_result;

/* Opens model_dir (and the peft adapter in adapter_dir when not NULL) and
 * the tokenizer of model_dir (else of adapter_dir). NULL with a message: a
 * model that is not a classifier, a missing adapter or tokenizer, a
 * tokenizer whose ids do not fit the model. */
predictor *pred_open(const char *model_dir, const char *adapter_dir, struct lerr *e);
void pred_free(predictor *p);
/* The task (model_task) and label names of the model. */
int pred_task(const predictor *p);
const char *pred_label_name(const predictor *p, int k);

/* Classifies text (len bytes, UTF-8, not empty) into r (reused across calls;
 * pred_result_free). 0, or -1 with a message. */
int pred_run(predictor *p, const char *text, size_t len, pred_result *r, struct lerr *e);
void pred_result_free(pred_result *r);

/* r as one line of JSON (malloc'd, no newline): {"text", "label", "label_id",
 * "probs": {name: p}} or {"text", "entities": [{"type", "text", "words",
 * "score"}], "tokens": [{"id", "token", "word", "label"}]}. */
char *pred_json(const predictor *p, const char *text, const pred_result *r);
/* r for people: the label and every label's probability, or the entities. */
void pred_print(const predictor *p, const pred_result *r);

/* `lora predict ARGS...`; returns the exit status. */
int pred_main(int argc, char **argv);

#endif
