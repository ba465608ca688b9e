/* Classifying text with a trained BERT-family model (see include/predict.h). */
#include "predict.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "tokenizer.h"
#include "util.h"

struct predictor {
    model m;
    lora_adapter a;
    int have_adapter;
    tkz *t;
    tkz_enc enc;
    const char *prefix;  /* the tokenizer's continuing-subword prefix, or NULL */
    char (*names)[64];   /* (n_labels) */
    model_ws *ws;
    int ws_T;
};


predictor *pred_open(const char *model_dir, const char *adapter_dir, struct lerr *e) {
    predictor *p = xcalloc(1, sizeof *p);
    if (model_open(&p->m, model_dir, NULL, e)) {
        free(p);
        return NULL;
    }
    model *m = &p->m;
    if (m->task != TASK_SEQ_CLS && m->task != TASK_TOKEN_CLS) {
        lerr_set(e, "%s is a %s %s model: predict takes a classifier (SEQ_CLS or TOKEN_CLS, such as "
                    "BertForSequenceClassification); for a causal LM use lora generate",
                 model_dir, m->fam->model_type, model_task_name(m->task));
        goto fail;
    }
    if (adapter_dir) {
        if (model_load_peft(&p->a, m, adapter_dir, e)) goto fail;
        p->have_adapter = 1;
    }
    const char *tdir = !tkz_present(model_dir) && adapter_dir && tkz_present(adapter_dir) ? adapter_dir : model_dir;
    if (!(p->t = tkz_open(tdir, e))) {
        char msg[sizeof e->msg];
        snprintf(msg, sizeof msg, "%s", e->msg);
        lerr_set(e, "%s (predict reads text: the model folder needs the tokenizer it was trained with)", msg);
        goto fail;
    }
    if (tkz_vocab_size(p->t) > m->vocab) {
        lerr_set(e, "%s: the tokenizer has %d ids but the model's vocabulary is %d: it is not this model's tokenizer",
                 tdir, tkz_vocab_size(p->t), m->vocab);
        goto fail;
    }
    tkz_no_truncation_padding(p->t);
    tkz_set_truncation(p->t, (size_t)m->max_positions);
    p->prefix = tkz_subword_prefix(p->t);
    p->names = xcalloc((size_t)m->n_labels, sizeof *p->names);
    for (int k = 0; k < m->n_labels; k++) {
        if (m->label_names) snprintf(p->names[k], sizeof p->names[k], "%s", m->label_names[k]);
        else snprintf(p->names[k], sizeof p->names[k], "LABEL_%d", k);
    }
    return p;
fail:
    pred_free(p);
    return NULL;
}

void pred_free(predictor *p) {
    if (!p) return;
    if (p->ws) model_ws_free(&p->m, p->ws);
    if (p->have_adapter) lora_free(&p->a);
    tkz_enc_free(&p->enc);
    tkz_free(p->t);
    free(p->names);
    model_free(&p->m);
    free(p);
}

int pred_task(const predictor *p) { return (int)p->m.task; }
const char *pred_label_name(const predictor *p, int k) { return p->names[k]; }

void pred_result_free(pred_result *r) {
    free(r->ids);
    free(r->probs);
    free(r->tok_label);
    free(r->word);
    for (int i = 0; i < r->n_ent; i++) free(r->ent[i].text);
    free(r->ent);
    memset(r, 0, sizeof *r);
}

/* out (L) = softmax(x (L)), in double as torch's float softmax is close to */
static void softmax(float *out, const float *x, int L) {
    float mx = x[0];
    for (int k = 1; k < L; k++) mx = x[k] > mx ? x[k] : mx;
    double s = 0;
    for (int k = 0; k < L; k++) s += exp((double)x[k] - mx);
    for (int k = 0; k < L; k++) out[k] = (float)(exp((double)x[k] - mx) / s);
}

static int argmax(const float *x, int L) {
    int b = 0;
    for (int k = 1; k < L; k++)
        if (x[k] > x[b]) b = k;
    return b;
}

/* HF's get_tag: "B-X" -> (B, X), "I-X" -> (I, X), anything else -> (I, itself). */
static const char *tag_of(const char *name, int *begin) {
    *begin = 0;
    if ((name[0] == 'B' || name[0] == 'I') && name[1] == '-') {
        *begin = name[0] == 'B';
        return name + 2;
    }
    return name;
}

static int entities(predictor *p, pred_result *r, struct lerr *e) {
    int n = r->n_tok, nw = 0;
    /* words: a non-special token without the subword prefix starts one */
    for (int i = 0; i < n; i++) {
        const char *tok = tkz_id_to_token(p->t, r->ids[i]);
        if (tkz_is_special(p->t, r->ids[i])) r->word[i] = -1;
        else if (nw > 0 && p->prefix && tok && !strncmp(tok, p->prefix, strlen(p->prefix)) && i > 0 && r->word[i - 1] >= 0)
            r->word[i] = nw - 1;
        else r->word[i] = nw++;
    }
    r->ent = xcalloc((size_t)(nw > 0 ? nw : 1), sizeof *r->ent);
    r->n_ent = 0;
    int open = 0; /* the last entity is still open */
    for (int i = 0; i < n; i++) {
        if (r->word[i] < 0 || (i > 0 && r->word[i - 1] == r->word[i])) continue; /* not a word's first piece */
        int w = r->word[i], last = i;
        while (last + 1 < n && r->word[last + 1] == w) last++;
        int begin;
        const char *type = tag_of(p->names[r->tok_label[i]], &begin);
        float sc = r->probs[(size_t)i * r->L + r->tok_label[i]];
        pred_entity *cur = open ? &r->ent[r->n_ent - 1] : NULL;
        if (cur && !begin && !strcmp(cur->type, type)) {
            cur->w1 = w;
            cur->t1 = last;
            cur->score += sc; /* a sum until the end */
        } else {
            cur = &r->ent[r->n_ent++];
            snprintf(cur->type, sizeof cur->type, "%s", type);
            cur->w0 = cur->w1 = w;
            cur->t0 = i;
            cur->t1 = last;
            cur->score = sc;
            open = 1;
        }
    }
    int k = 0;
    for (int i = 0; i < r->n_ent; i++) {
        pred_entity x = r->ent[i];
        if (!strcmp(x.type, "O")) continue;
        x.score /= (float)(x.w1 - x.w0 + 1);
        size_t len;
        if (tkz_decode(p->t, r->ids + x.t0, (size_t)(x.t1 - x.t0 + 1), 1, &x.text, &len, e)) {
            r->n_ent = k;
            return -1;
        }
        r->ent[k++] = x;
    }
    r->n_ent = k;
    return 0;
}

int pred_run(predictor *p, const char *text, size_t len, pred_result *r, struct lerr *e) {
    pred_result_free(r);
    model *m = &p->m;
    if (len == 0 || strspn(text, " \t\r\n") >= len) return lerr_set(e, "the text is empty");
    size_t full = 0;
    tkz_no_truncation_padding(p->t);
    if (tkz_encode(p->t, text, len, NULL, 0, 1, &p->enc, e)) return -1;
    full = p->enc.n;
    tkz_set_truncation(p->t, (size_t)m->max_positions);
    if (full > (size_t)m->max_positions && tkz_encode(p->t, text, len, NULL, 0, 1, &p->enc, e)) return -1;
    int T = (int)p->enc.n, L = m->n_labels;
    for (int i = 0; i < T; i++)
        if (p->enc.ids[i] < 0 || p->enc.ids[i] >= m->vocab)
            return lerr_set(e, "token id %d is outside the model's vocabulary (%d)", p->enc.ids[i], m->vocab);
    if (p->ws && p->ws_T < T) {
        model_ws_free(m, p->ws);
        p->ws = NULL;
    }
    if (!p->ws) {
        p->ws = model_ws_create(m, p->have_adapter ? &p->a : NULL, 1, T);
        p->ws_T = T;
    }
    int32_t *types = xmalloc(sizeof(int32_t) * (size_t)T);
    for (int i = 0; i < T; i++) types[i] = m->n_types > 0 && p->enc.type_ids[i] < m->n_types ? p->enc.type_ids[i] : 0;
    model_batch b = {.tokens = p->enc.ids, .type_ids = m->n_types > 0 ? types : NULL, .B = 1, .T = T};
    int64_t nt;
    model_forward(m, p->have_adapter ? &p->a : NULL, p->ws, &b, 0, 0, &nt);
    free(types);
    int nd;
    int64_t sh[3];
    const float *lg = model_output(m, p->ws, &nd, sh);
    r->task = (int)m->task;
    r->L = L;
    r->n_tok = T;
    r->truncated = full > (size_t)T;
    r->ids = xmalloc(sizeof(int32_t) * (size_t)T);
    memcpy(r->ids, p->enc.ids, sizeof(int32_t) * (size_t)T);
    if (m->task == TASK_SEQ_CLS) {
        r->probs = xmalloc(sizeof(float) * (size_t)L);
        if (L == 1) r->probs[0] = lg[0];
        else softmax(r->probs, lg, L);
        r->label = L == 1 ? 0 : argmax(lg, L);
        return 0;
    }
    r->probs = xmalloc(sizeof(float) * (size_t)T * (size_t)L);
    r->tok_label = xmalloc(sizeof(int) * (size_t)T);
    r->word = xmalloc(sizeof(int) * (size_t)T);
    for (int i = 0; i < T; i++) {
        softmax(r->probs + (size_t)i * L, lg + (size_t)i * L, L);
        r->tok_label[i] = argmax(lg + (size_t)i * L, L);
    }
    return entities(p, r, e);
}

char *pred_json(const predictor *p, const char *text, const pred_result *r) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "text", text);
    if (r->task == TASK_SEQ_CLS && r->L == 1) {
        cJSON_AddNumberToObject(j, "value", r->probs[0]);
    } else if (r->task == TASK_SEQ_CLS) {
        cJSON_AddStringToObject(j, "label", p->names[r->label]);
        cJSON_AddNumberToObject(j, "label_id", r->label);
        cJSON *pr = cJSON_AddObjectToObject(j, "probs");
        for (int k = 0; k < r->L; k++) cJSON_AddNumberToObject(pr, p->names[k], r->probs[k]);
    } else {
        cJSON *es = cJSON_AddArrayToObject(j, "entities");
        for (int i = 0; i < r->n_ent; i++) {
            cJSON *x = cJSON_CreateObject();
            cJSON_AddStringToObject(x, "type", r->ent[i].type);
            cJSON_AddStringToObject(x, "text", r->ent[i].text);
            int w[2] = {r->ent[i].w0, r->ent[i].w1};
            cJSON_AddItemToObject(x, "words", cJSON_CreateIntArray(w, 2));
            cJSON_AddNumberToObject(x, "score", r->ent[i].score);
            cJSON_AddItemToArray(es, x);
        }
        cJSON *ts = cJSON_AddArrayToObject(j, "tokens");
        for (int i = 0; i < r->n_tok; i++) {
            cJSON *x = cJSON_CreateObject();
            const char *tok = tkz_id_to_token(p->t, r->ids[i]);
            cJSON_AddNumberToObject(x, "id", r->ids[i]);
            cJSON_AddStringToObject(x, "token", tok ? tok : "");
            cJSON_AddNumberToObject(x, "word", r->word[i]);
            cJSON_AddStringToObject(x, "label", p->names[r->tok_label[i]]);
            cJSON_AddItemToArray(ts, x);
        }
    }
    if (r->truncated) cJSON_AddBoolToObject(j, "truncated", 1);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

void pred_print(const predictor *p, const pred_result *r) {
    if (r->truncated) printf("(truncated to the model's %d positions)\n", p->m.max_positions);
    if (r->task == TASK_SEQ_CLS && r->L == 1) {
        printf("value: %.6g\n", r->probs[0]);
    } else if (r->task == TASK_SEQ_CLS) {
        printf("label: %s (%.4f)\n", p->names[r->label], r->probs[r->label]);
        for (int k = 0; k < r->L; k++) printf("  %-20s %.4f\n", p->names[k], r->probs[k]);
    } else {
        printf("entities: %d\n", r->n_ent);
        for (int i = 0; i < r->n_ent; i++)
            printf("  %-10s %-30s words %d-%d  score %.4f\n", r->ent[i].type, r->ent[i].text, r->ent[i].w0,
                   r->ent[i].w1, r->ent[i].score);
    }
}

static int pred_usage(void) {
    fprintf(stderr, "usage: lora predict --model DIR [--adapter PEFT_DIR] (--text TEXT | --file FILE)\n"
                    "       (DIR: a BERT classifier's folder with its tokenizer, or a merged model;\n"
                    "        --file: one JSON line per input line)\n");
    return 2;
}

int pred_main(int argc, char **argv) {
    const char *dir = NULL, *adapter = NULL, *text = NULL, *file = NULL;
    for (int i = 0; i < argc; i += 2) {
        if (i + 1 >= argc) return pred_usage();
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--model")) dir = v;
        else if (!strcmp(k, "--adapter")) adapter = v;
        else if (!strcmp(k, "--text")) text = v;
        else if (!strcmp(k, "--file")) file = v;
        else {
            fprintf(stderr, "lora predict: unknown option '%s'\n", k);
            return pred_usage();
        }
    }
    if (!dir) return pred_usage();
    if (!!text == !!file) {
        fprintf(stderr, "lora predict: give the input as --text TEXT or --file FILE (one of them)\n");
        return 2;
    }
    if (text && strspn(text, " \t\r\n") == strlen(text)) {
        fprintf(stderr, "lora predict: --text is empty\n");
        return 2;
    }
    struct lerr e = {{0}};
    FILE *in = NULL;
    if (file && !(in = strcmp(file, "-") ? fopen(file, "r") : stdin)) {
        fprintf(stderr, "lora predict: %s: cannot open\n", file);
        return 1;
    }
    predictor *p = pred_open(dir, adapter, &e);
    if (!p) {
        fprintf(stderr, "lora predict: %s\n", e.msg);
        if (in && in != stdin) fclose(in);
        return 1;
    }
    pred_result r = {0};
    int rc = 0;
    if (text) {
        if (pred_run(p, text, strlen(text), &r, &e)) {
            fprintf(stderr, "lora predict: %s\n", e.msg);
            rc = 1;
        } else {
            pred_print(p, &r);
        }
    } else {
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        long long lineno = 0;
        while ((n = getline(&line, &cap, in)) >= 0) {
            lineno++;
            while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
            if (pred_run(p, line, (size_t)n, &r, &e)) {
                fprintf(stderr, "lora predict: %s:%lld: %s\n", file, lineno, e.msg);
                rc = 1;
                break;
            }
            char *js = pred_json(p, line, &r);
            puts(js);
            free(js);
        }
        free(line);
        if (in != stdin) fclose(in);
    }
    if (fflush(stdout)) rc = 1;
    pred_result_free(&r);
    pred_free(p);
    return rc;
}
