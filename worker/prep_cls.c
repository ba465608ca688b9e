/*
 * `lora prep --task seq_cls | token_cls`: labeled examples into
 * include/dataset.h's safetensors format.
 *
 * Sequence classification reads TSV (GLUE's layout: a header row, tabs, no
 * quoting, so SST-2's `sentence<TAB>label` works as is), CSV (RFC 4180) and
 * JSONL; each row is encoded as transformers' tokenizer(text[, pair],
 * truncation=True, max_length=T, padding="max_length") encodes it.
 * Token classification reads CoNLL files (the token first, its tag last,
 * a blank line between sentences, -DOCSTART- lines skipped); each word is
 * encoded alone without special tokens (what is_split_into_words does for a
 * WordPiece tokenizer), the pieces framed by the special tokens the
 * tokenizer's post-processor adds around one sequence, truncated to T, and
 * labeled as run_ner labels them (prep_align_labels).
 *
 * Labels: for sequence classification, integers are class ids; names are
 * mapped through config.json's label2id when it has names (not transformers'
 * LABEL_k defaults); otherwise the names of the training files are collected,
 * sorted (byte order, as run_glue / run_ner sort their label lists) and
 * written beside the output. A validation file's unknown label is an error.
 */
#include <cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "prep_int.h"

typedef struct {
    const char *file; /* a name of the file list (not owned) */
    long line;        /* where the example starts */
    int n;            /* texts (1 or 2) or words */
    char **w;         /* the texts, or the words */
    char **tag;       /* sequence classification: tag[0] the label; tokens: one per word */
    long *wline;      /* tokens: the line of each word */
    char col[96];     /* sequence classification: the label's column, for messages */
} ex_t;

typedef struct {
    ex_t *v;
    int64_t n, cap;
} exs_t;

static void exs_free(exs_t *x) {
    for (int64_t i = 0; i < x->n; i++) {
        ex_t *q = &x->v[i];
        int nt = q->wline ? q->n : 1;
        for (int k = 0; k < q->n; k++) free(q->w[k]);
        for (int k = 0; q->tag && k < nt; k++) free(q->tag[k]);
        free(q->w);
        free(q->tag);
        free(q->wline);
    }
    free(x->v);
    memset(x, 0, sizeof *x);
}

static ex_t *exs_add(exs_t *x) {
    if (x->n == x->cap) {
        int64_t cap = x->cap ? x->cap * 2 : 256;
        ex_t *p = realloc(x->v, sizeof(ex_t) * (size_t)cap);
        if (!p) return NULL;
        x->v = p;
        x->cap = cap;
    }
    ex_t *q = &x->v[x->n++];
    memset(q, 0, sizeof *q);
    return q;
}

static char *dupn(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

static int blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return 0;
    return 1;
}

/* ---- reading ---- */

typedef struct {
    const char *text, *pair, *label;
} cols_t;

/* The column names in use: the options, else the defaults among `has`. */
static void pick_cols(const prep_opts *o, int (*has)(void *, const char *), void *ctx, cols_t *c) {
    c->label = o->label_col ? o->label_col : "label";
    c->pair = o->pair_col;
    c->text = o->text_col;
    if (c->text) return;
    c->text = has(ctx, "sentence") ? "sentence" : has(ctx, "text") ? "text" : has(ctx, "sentence1") ? "sentence1" : "sentence";
    if (!c->pair && !strcmp(c->text, "sentence1") && has(ctx, "sentence2")) c->pair = "sentence2";
}

static int rec_has(void *ctx, const char *name) {
    const prep_record *h = ctx;
    for (int i = 0; i < h->n; i++)
        if (!strcmp(h->buf + h->off[i], name)) return i + 1;
    return 0;
}

static int json_has(void *ctx, const char *name) { return cJSON_GetObjectItemCaseSensitive(ctx, name) != NULL; }

static int add_seq_example(exs_t *x, const char *file, long line, const char *col, const char *t, size_t tn,
                           const char *p, size_t pn, int has_pair, const char *lab, size_t ln, struct lerr *e) {
    ex_t *q = exs_add(x);
    if (!q) return lerr_set(e, "out of memory");
    q->file = file;
    q->line = line;
    q->n = has_pair ? 2 : 1;
    snprintf(q->col, sizeof q->col, "%s", col);
    q->w = calloc(2, sizeof(char *));
    q->tag = calloc(1, sizeof(char *));
    if (!q->w || !q->tag || !(q->w[0] = dupn(t, tn)) || (has_pair && !(q->w[1] = dupn(p, pn))) ||
        !(q->tag[0] = dupn(lab, ln)))
        return lerr_set(e, "out of memory");
    return 0;
}

/* Invalid UTF-8 in a record's fields: an error naming the line and the column (by the header's
 * name when there is one). Fields keep the bytes of the file (separators and quotes are ASCII, so
 * an invalid sequence is never split by them), so this finds what a check of the file would. */
static int fields_utf8(const char *path, long line, const prep_record *r, const prep_record *h, struct lerr *e) {
    for (int k = 0; k < r->n; k++) {
        size_t bad = 0;
        long n = prep_utf8_fix(r->buf + r->off[k], r->len[k], &bad, NULL, NULL);
        if (!n) continue;
        char col[160];
        if (h && k < h->n) snprintf(col, sizeof col, "column '%s' (%d)", h->buf + h->off[k], k + 1);
        else snprintf(col, sizeof col, "column %d", k + 1);
        return lerr_set(e, "%s:%ld: %s: invalid UTF-8 (byte 0x%02X, byte %zu of the field; --invalid-utf8 replace "
                        "writes U+FFFD instead)", path, line, col, (unsigned char)r->buf[r->off[k] + bad], bad + 1);
    }
    return 0;
}

static int read_delim(const char *path, const char *s, size_t len, char sep, const prep_opts *o, exs_t *x,
                      struct lerr *e) {
    prep_record h = {0}, r = {0};
    size_t at = 0, used;
    long line = 1;
    int nl, rc = -1, quoted = sep == ',';
    const char *kind = quoted ? "CSV" : "TSV";
    if (prep_split_record(s, len, sep, quoted, &h, &used, &nl, e)) {
        lerr_prefix(e, "%s:1", path);
        goto done;
    }
    at = used;
    line += nl;
    if (fields_utf8(path, 1, &h, NULL, e)) goto done;
    cols_t c;
    pick_cols(o, rec_has, &h, &c);
    int ti = rec_has(&h, c.text) - 1, pi = c.pair ? rec_has(&h, c.pair) - 1 : -1, li = rec_has(&h, c.label) - 1;
    const char *miss = ti < 0 ? c.text : c.pair && pi < 0 ? c.pair : li < 0 ? c.label : NULL;
    if (miss) {
        char list[512] = "";
        for (int i = 0; i < h.n; i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s'%s'", i ? ", " : "", h.buf + h.off[i]);
        lerr_set(e, "%s:1: no column '%s' in the %s header (its columns: %s; --text-column, --text-pair-column and "
                 "--label-column name them)", path, miss, kind, list);
        goto done;
    }
    char lcol[96];
    snprintf(lcol, sizeof lcol, "column '%s' (%d)", c.label, li + 1);
    while (at < len) {
        long here = line;
        if (prep_split_record(s + at, len - at, sep, quoted, &r, &used, &nl, e)) {
            lerr_prefix(e, "%s:%ld", path, here);
            goto done;
        }
        at += used;
        line += nl;
        if (r.n == 1 && blank(r.buf, r.len[0])) continue; /* a blank line */
        if (fields_utf8(path, here, &r, &h, e)) goto done;
        const int want[3] = {ti, pi, li};
        const char *names[3] = {c.text, c.pair, c.label};
        for (int k = 0; k < 3; k++) {
            if (want[k] < 0) continue;
            if (want[k] >= r.n) {
                lerr_set(e, "%s:%ld: column '%s' (%d) is missing: the row has %d field%s, the header %d", path, here,
                         names[k], want[k] + 1, r.n, r.n == 1 ? "" : "s", h.n);
                goto done;
            }
            if (blank(r.buf + r.off[want[k]], r.len[want[k]])) {
                lerr_set(e, "%s:%ld: column '%s' (%d) is empty%s", path, here, names[k], want[k] + 1,
                         k < 2 ? " (an empty text)" : " (no label)");
                goto done;
            }
        }
        if (add_seq_example(x, path, here, lcol, r.buf + r.off[ti], r.len[ti], pi >= 0 ? r.buf + r.off[pi] : NULL,
                            pi >= 0 ? r.len[pi] : 0, pi >= 0, r.buf + r.off[li], r.len[li], e))
            goto done;
    }
    rc = 0;
done:
    prep_record_free(&h);
    prep_record_free(&r);
    return rc;
}

static int read_jsonl(const char *path, const char *s, size_t len, const prep_opts *o, exs_t *x, struct lerr *e) {
    long line = 0;
    cols_t c;
    int have_cols = 0;
    for (size_t a = 0; a < len;) {
        const char *nl = memchr(s + a, '\n', len - a);
        size_t b = nl ? (size_t)(nl - s) : len;
        line++;
        size_t at = a;
        a = b + 1;
        if (blank(s + at, b - at)) continue;
        cJSON *j = cJSON_ParseWithLength(s + at, b - at);
        if (!cJSON_IsObject(j)) {
            cJSON_Delete(j);
            return lerr_set(e, "%s:%ld: not a JSON object (JSONL wants one object per line)", path, line);
        }
        if (!have_cols) { /* the defaults from the first object, kept for the file */
            pick_cols(o, json_has, j, &c);
            have_cols = 1;
        }
        const char *names[3] = {c.text, c.pair, c.label};
        char num[32];
        const char *val[3] = {0};
        for (int k = 0; k < 3; k++) {
            if (!names[k]) continue;
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, names[k]);
            if (!v) {
                cJSON_Delete(j);
                return lerr_set(e, "%s:%ld: no key \"%s\" (--text-column, --text-pair-column and --label-column "
                                "name the keys)", path, line, names[k]);
            }
            if (k == 2 && cJSON_IsNumber(v) && v->valuedouble == (double)(long long)v->valuedouble) {
                snprintf(num, sizeof num, "%lld", (long long)v->valuedouble);
                val[k] = num;
            } else if (cJSON_IsString(v))
                val[k] = v->valuestring;
            if (!val[k] || blank(val[k], strlen(val[k]))) {
                cJSON_Delete(j);
                return lerr_set(e, "%s:%ld: key \"%s\" is %s", path, line, names[k],
                                !val[k] ? (k == 2 ? "not a string or an integer" : "not a string")
                                        : (k < 2 ? "empty (an empty text)" : "empty (no label)"));
            }
        }
        char col[96];
        snprintf(col, sizeof col, "key \"%s\"", c.label);
        int rc = add_seq_example(x, path, line, col, val[0], strlen(val[0]), val[1], val[1] ? strlen(val[1]) : 0,
                                 c.pair != NULL, val[2], strlen(val[2]), e);
        cJSON_Delete(j);
        if (rc) return -1;
    }
    return 0;
}

/* Ends the sentence being collected (words [0, n)) as an example. */
static int conll_flush(exs_t *x, const char *path, char **w, char **t, long *wl, int *n, struct lerr *e) {
    if (!*n) return 0;
    ex_t *q = exs_add(x);
    if (!q) return lerr_set(e, "out of memory");
    q->file = path;
    q->line = wl[0];
    q->n = *n;
    q->w = malloc(sizeof(char *) * (size_t)*n);
    q->tag = malloc(sizeof(char *) * (size_t)*n);
    q->wline = malloc(sizeof(long) * (size_t)*n);
    if (!q->w || !q->tag || !q->wline) {
        free(q->w), free(q->tag), free(q->wline);
        q->w = NULL, q->tag = NULL, q->wline = NULL, q->n = 0;
        return lerr_set(e, "out of memory");
    }
    memcpy(q->w, w, sizeof(char *) * (size_t)*n);
    memcpy(q->tag, t, sizeof(char *) * (size_t)*n);
    memcpy(q->wline, wl, sizeof(long) * (size_t)*n);
    *n = 0;
    return 0;
}

static int read_conll(const char *path, const char *s, size_t len, exs_t *x, struct lerr *e) {
    int n = 0, cap = 0, want = 0, rc = -1;
    long want_line = 0, line = 0;
    char **w = NULL, **t = NULL;
    long *wl = NULL;
    for (size_t a = 0; a <= len;) {
        const char *nl = a < len ? memchr(s + a, '\n', len - a) : NULL;
        size_t b = nl ? (size_t)(nl - s) : len;
        line++;
        size_t at = a;
        a = b + 1;
        if (blank(s + at, b - at) || !strncmp(s + at, "-DOCSTART-", 10)) {
            if (conll_flush(x, path, w, t, wl, &n, e)) goto done;
            continue;
        }
        const char *f[2] = {0};
        size_t fl[2] = {0};
        int nf = 0;
        for (size_t i = at; i < b;) { /* fields split on spaces and tabs: the first and the last kept */
            while (i < b && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r')) i++;
            if (i >= b) break;
            size_t k = i;
            while (i < b && s[i] != ' ' && s[i] != '\t' && s[i] != '\r') i++;
            f[nf ? 1 : 0] = s + k;
            fl[nf ? 1 : 0] = i - k;
            nf++;
        }
        if (nf < 2 || (want && nf != want)) {
            if (nf < 2)
                lerr_set(e, "%s:%ld: 1 field; a CoNLL line needs the token and its tag (the tag in the last "
                         "column), separated by spaces or tabs", path, line);
            else
                lerr_set(e, "%s:%ld: %d fields, but line %ld has %d (every token line needs the same columns)", path,
                         line, nf, want_line, want);
            goto done;
        }
        if (!want) {
            want = nf;
            want_line = line;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **w2 = realloc(w, sizeof(char *) * (size_t)cap), **t2 = w2 ? realloc(t, sizeof(char *) * (size_t)cap) : NULL;
            long *l2 = t2 ? realloc(wl, sizeof(long) * (size_t)cap) : NULL;
            if (w2) w = w2;
            if (t2) t = t2;
            if (!l2) {
                lerr_set(e, "out of memory");
                goto done;
            }
            wl = l2;
        }
        if (!(w[n] = dupn(f[0], fl[0])) || !(t[n] = dupn(f[1], fl[1]))) {
            lerr_set(e, "out of memory");
            goto done;
        }
        wl[n++] = line;
        if (a > len) break;
    }
    rc = conll_flush(x, path, w, t, wl, &n, e);
done:
    for (int i = 0; i < n; i++) free(w[i]), free(t[i]);
    free(w);
    free(t);
    free(wl);
    return rc;
}

static const char *ext_of(const char *path) {
    const char *d = strrchr(path, '.'), *sl = strrchr(path, '/');
    return d && (!sl || d > sl) ? d + 1 : "";
}

static int read_file(const char *path, const prep_opts *o, exs_t *x, long *replaced, struct lerr *e) {
    size_t len;
    const char *f = o->format ? o->format : ext_of(path);
    int delim = o->task == TASK_SEQ_CLS && (!strcmp(f, "tsv") || !strcmp(f, "csv"));
    /* delimited files are checked field by field (read_delim), so that an error names the column */
    char *s = prep_read_text(path, o->replace_utf8 ? PREP_UTF8_REPLACE : delim ? PREP_UTF8_UNCHECKED : PREP_UTF8_ERROR,
                             &len, replaced, e);
    if (!s) return -1;
    int rc;
    if (o->task == TASK_TOKEN_CLS)
        rc = read_conll(path, s, len, x, e);
    else {
        if (!strcmp(f, "tsv")) rc = read_delim(path, s, len, '\t', o, x, e);
        else if (!strcmp(f, "csv")) rc = read_delim(path, s, len, ',', o, x, e);
        else if (!strcmp(f, "jsonl") || !strcmp(f, "json")) rc = read_jsonl(path, s, len, o, x, e);
        else rc = lerr_set(e, "%s: which format? the name ends neither in .tsv, .csv nor .jsonl (--format tsv|csv|jsonl)", path);
    }
    free(s);
    return rc;
}

/* ---- labels ---- */

typedef struct {
    int by_number;
    int n;           /* names */
    char **names;    /* (n) by id (collected: sorted) */
    int32_t *ids;    /* (n) ids of names (collected: 0..n-1) */
    int collected;
    int n_ids;       /* one more than the largest id */
    int32_t *b_to_i; /* (n_ids) B-X -> I-X */
} labels_t;

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int label_lookup(const labels_t *L, const char *s) {
    if (L->collected) {
        char **p = bsearch(&s, L->names, (size_t)L->n, sizeof(char *), cmp_str);
        return p ? (int)(p - L->names) : -1;
    }
    for (int i = 0; i < L->n; i++)
        if (!strcmp(L->names[i], s)) return L->ids[i];
    return -1;
}

static const char *label_name(const labels_t *L, int id) {
    for (int i = 0; i < L->n; i++)
        if (L->ids[i] == id) return L->names[i];
    return NULL;
}

static int labels_decide(labels_t *L, const exs_t *tr, const exs_t *va, const prep_model_info *mi, model_task task,
                         struct lerr *e) {
    memset(L, 0, sizeof *L);
    int all_num = task == TASK_SEQ_CLS; /* integers are class ids, whatever label2id says (GLUE's ClassLabel) */
    int32_t v;
    for (int s = 0; s < 2 && all_num; s++)
        for (int64_t i = 0; i < (s ? va->n : tr->n) && all_num; i++)
            all_num = prep_parse_label_id((s ? va : tr)->v[i].tag[0], strlen((s ? va : tr)->v[i].tag[0]), &v);
    if (all_num) {
        L->by_number = 1;
        return 0;
    }
    if (mi->n_label2id) {
        L->n = mi->n_label2id;
        L->names = mi->label_names;
        L->ids = mi->label_ids;
    } else {
        size_t cap = 0;
        for (int64_t i = 0; i < tr->n; i++) cap += (size_t)(task == TASK_SEQ_CLS ? 1 : tr->v[i].n);
        char **all = malloc(sizeof(char *) * (cap ? cap : 1));
        if (!all) return lerr_set(e, "out of memory");
        size_t k = 0;
        for (int64_t i = 0; i < tr->n; i++)
            for (int w = 0; w < (task == TASK_SEQ_CLS ? 1 : tr->v[i].n); w++) all[k++] = tr->v[i].tag[w];
        qsort(all, k, sizeof(char *), cmp_str);
        size_t u = 0;
        for (size_t i = 0; i < k; i++)
            if (!u || strcmp(all[i], all[u - 1])) all[u++] = all[i];
        L->names = all;
        L->n = (int)u;
        L->collected = 1;
        L->ids = malloc(sizeof(int32_t) * (u ? u : 1));
        if (!L->ids) return lerr_set(e, "out of memory");
        for (size_t i = 0; i < u; i++) L->ids[i] = (int32_t)i;
    }
    for (int i = 0; i < L->n; i++)
        if (L->ids[i] + 1 > L->n_ids) L->n_ids = L->ids[i] + 1;
    L->b_to_i = malloc(sizeof(int32_t) * (size_t)(L->n_ids ? L->n_ids : 1));
    if (!L->b_to_i) return lerr_set(e, "out of memory");
    for (int id = 0; id < L->n_ids; id++) {
        L->b_to_i[id] = id;
        const char *nm = label_name(L, id);
        if (nm && !strncmp(nm, "B-", 2)) {
            char in[256];
            snprintf(in, sizeof in, "I-%s", nm + 2);
            int j = label_lookup(L, in);
            if (j >= 0) L->b_to_i[id] = j;
        }
    }
    return 0;
}

static void labels_free(labels_t *L) {
    if (L->collected) {
        free(L->names);
        free(L->ids);
    }
    free(L->b_to_i);
}

/* The id of label s of an example (for messages: file, line, where). */
static int label_id(const labels_t *L, const prep_model_info *mi, const char *s, const char *file, long line,
                    const char *where, int32_t *id, struct lerr *e) {
    if (L->by_number) {
        prep_parse_label_id(s, strlen(s), id);
        if (mi->num_labels > 0 && *id >= mi->num_labels)
            return lerr_set(e, "%s:%ld: %s: label %d is outside the model's %d labels (config.json)", file, line,
                            where, *id, mi->num_labels);
        return 0;
    }
    int v = label_lookup(L, s);
    if (v < 0) {
        char list[384] = "";
        for (int i = 0; i < L->n && strlen(list) < sizeof list - 80; i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", L->names[i]);
        return lerr_set(e, "%s:%ld: %s: unknown label '%s' (%s: %s)", file, line, where, s,
                        L->collected ? "the training files' labels" : "config.json's label2id", list);
    }
    *id = v;
    return 0;
}

/* ---- encoding ---- */

typedef struct {
    tkz *t;
    int T, pad, no_trunc, label_all;
    int32_t *pre, *post; /* special tokens around one sequence */
    int n_pre, n_post;
    tkz_enc enc;
    int32_t *pieces, *word_of, *wlab; /* scratch for token classification */
    size_t cap, cap2, wcap;
} enc_ctx;

/* The special tokens the post-processor puts before and after one sequence:
 * where a probe word's pieces sit inside its encoding with specials. */
static int find_frame(enc_ctx *c, struct lerr *e) {
    tkz_enc a = {0}, b = {0};
    int rc = -1;
    if (tkz_encode(c->t, "a", 1, NULL, 0, 0, &a, e) || tkz_encode(c->t, "a", 1, NULL, 0, 1, &b, e)) goto done;
    for (size_t k = 0; k + a.n <= b.n; k++)
        if (!memcmp(b.ids + k, a.ids, sizeof(int32_t) * a.n)) {
            c->n_pre = (int)k;
            c->n_post = (int)(b.n - k - a.n);
            c->pre = malloc(sizeof(int32_t) * (size_t)(c->n_pre + 1));
            c->post = malloc(sizeof(int32_t) * (size_t)(c->n_post + 1));
            if (!c->pre || !c->post) break;
            memcpy(c->pre, b.ids, sizeof(int32_t) * (size_t)c->n_pre);
            memcpy(c->post, b.ids + k + a.n, sizeof(int32_t) * (size_t)c->n_post);
            rc = 0;
            break;
        }
    if (rc) lerr_set(e, "cannot tell the tokenizer's special tokens around a sequence (its post-processor)");
done:
    tkz_enc_free(&a);
    tkz_enc_free(&b);
    return rc;
}

static int grow32(int32_t **p, size_t *cap, size_t n) {
    if (n <= *cap) return 0;
    size_t c = n * 2;
    int32_t *q = realloc(*p, sizeof(int32_t) * c);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

/* Row r of the outputs (ids, mask, types, labels) from example q. */
static int encode_one(enc_ctx *c, const labels_t *L, const prep_model_info *mi, model_task task, const ex_t *q,
                      int32_t *ids, int32_t *mask, int32_t *types, int32_t *lab, struct lerr *e) {
    int T = c->T;
    for (int i = 0; i < T; i++) ids[i] = c->pad, mask[i] = 0, types[i] = 0;
    if (task == TASK_SEQ_CLS) {
        if (tkz_encode(c->t, q->w[0], strlen(q->w[0]), q->n > 1 ? q->w[1] : NULL, q->n > 1 ? strlen(q->w[1]) : 0,
                       1, &c->enc, e))
            return lerr_prefix(e, "%s:%ld", q->file, q->line);
        if (c->enc.n > (size_t)T)
            return lerr_set(e, "%s:%ld: the text is %zu tokens, longer than --max-length %d (--no-truncation is set)",
                            q->file, q->line, c->enc.n, T);
        for (size_t i = 0; i < c->enc.n; i++) ids[i] = c->enc.ids[i], mask[i] = 1, types[i] = c->enc.type_ids[i];
        return label_id(L, mi, q->tag[0], q->file, q->line, q->col, lab, e);
    }
    size_t n = 0;
    if (grow32(&c->wlab, &c->wcap, (size_t)q->n)) return lerr_set(e, "out of memory");
    for (int w = 0; w < q->n; w++) {
        if (label_id(L, mi, q->tag[w], q->file, q->wline[w], "the tag", &c->wlab[w], e)) return -1;
        if (tkz_encode(c->t, q->w[w], strlen(q->w[w]), NULL, 0, 0, &c->enc, e))
            return lerr_prefix(e, "%s:%ld", q->file, q->wline[w]);
        if (grow32(&c->pieces, &c->cap, n + c->enc.n + 1) || grow32(&c->word_of, &c->cap2, n + c->enc.n + 1))
            return lerr_set(e, "out of memory");
        for (size_t k = 0; k < c->enc.n; k++) c->pieces[n] = c->enc.ids[k], c->word_of[n++] = w;
    }
    size_t room = (size_t)(T - c->n_pre - c->n_post);
    if (n > room && c->no_trunc)
        return lerr_set(e, "%s:%ld: the sentence is %zu tokens with the special tokens, longer than --max-length %d "
                        "(--no-truncation is set)", q->file, q->line, n + (size_t)(c->n_pre + c->n_post), T);
    if (n > room) n = room;
    int32_t word_ids[T];
    int k = 0;
    for (int i = 0; i < c->n_pre; i++) ids[k] = c->pre[i], word_ids[k++] = -1;
    for (size_t i = 0; i < n; i++) ids[k] = c->pieces[i], word_ids[k++] = c->word_of[i];
    for (int i = 0; i < c->n_post; i++) ids[k] = c->post[i], word_ids[k++] = -1;
    for (int i = 0; i < k; i++) mask[i] = 1;
    prep_align_labels(lab, word_ids, k, c->wlab, c->label_all, L->b_to_i);
    for (int i = k; i < T; i++) lab[i] = -100;
    return 0;
}

/* Encodes the examples with keep[i] == want (all when keep is NULL) and writes them to path. */
static int write_set(const char *path, const exs_t *x, const uint8_t *keep, int want, enc_ctx *c, const labels_t *L,
                     const prep_model_info *mi, model_task task, int64_t *count, int64_t *cut, struct lerr *e) {
    int64_t n = 0;
    for (int64_t i = 0; i < x->n; i++) n += !keep || keep[i] == want;
    if (!n) return lerr_set(e, "%s: no examples to write", path);
    size_t T = (size_t)c->T, NL = task == TASK_SEQ_CLS ? (size_t)n : (size_t)n * T;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n * T), *mask = malloc(sizeof(int32_t) * (size_t)n * T),
            *types = malloc(sizeof(int32_t) * (size_t)n * T), *lab = malloc(sizeof(int32_t) * NL);
    int rc = -1;
    if (!ids || !mask || !types || !lab) {
        lerr_set(e, "%s: out of memory", path);
        goto done;
    }
    int64_t r = 0;
    *cut = 0;
    for (int64_t i = 0; i < x->n; i++) {
        if (keep && keep[i] != want) continue;
        size_t o = (size_t)r * T;
        if (encode_one(c, L, mi, task, &x->v[i], ids + o, mask + o, types + o,
                       lab + (task == TASK_SEQ_CLS ? (size_t)r : o), e))
            goto done;
        *cut += mask[o + T - 1] == 1; /* full rows: some were truncated */
        r++;
    }
    const char **names = NULL;
    int nn = 0;
    if (!L->by_number && L->n_ids) {
        if (!(names = calloc((size_t)L->n_ids, sizeof(char *)))) goto done;
        for (int id = 0; id < L->n_ids; id++) {
            const char *s = label_name(L, id);
            names[id] = s ? s : "";
        }
        nn = L->n_ids;
    }
    rc = ds_write(path, task, n, c->T, ids, mask, types, lab, names, nn, e);
    free(names);
    *count = n;
done:
    free(ids);
    free(mask);
    free(types);
    free(lab);
    return rc;
}

int prep_cls(const prep_opts *o, FILE *log, struct lerr *e) {
    double t0 = now_s();
    char **files = NULL;
    int nf = 0, rc = -1;
    long replaced = 0;
    exs_t tr = {0}, va = {0};
    prep_model_info mi;
    labels_t L = {0};
    enc_ctx c = {0};
    uint8_t *is_val = NULL;
    if (prep_model_info_read(o->model_dir, &mi, e)) return -1;
    if (prep_list_files(o->inputs, o->n_inputs, &files, &nf, e)) goto done;
    c.T = o->max_length ? o->max_length : (mi.max_pos && mi.max_pos < 128 ? mi.max_pos : 128);
    if (mi.max_pos && c.T > mi.max_pos) {
        lerr_set(e, "--max-length %d is more than the model's %d positions (%s/config.json)", c.T, mi.max_pos,
                 o->model_dir);
        goto done;
    }
    for (int i = 0; i < nf; i++)
        if (read_file(files[i], o, &tr, &replaced, e)) goto done;
    if (o->val_file && read_file(o->val_file, o, &va, &replaced, e)) goto done;
    if (!tr.n) {
        lerr_set(e, "%s: no examples in the input", nf == 1 ? files[0] : "the input files");
        goto done;
    }
    if (labels_decide(&L, &tr, &va, &mi, o->task, e)) goto done;
    if (!(c.t = tkz_open(o->model_dir, e))) goto done;
    tkz_no_truncation_padding(c.t);
    if (!o->no_truncation && o->task == TASK_SEQ_CLS) tkz_set_truncation(c.t, (size_t)c.T);
    c.no_trunc = o->no_truncation;
    c.label_all = o->label_all;
    int32_t pad = prep_special_id(c.t, &mi, "pad");
    c.pad = pad < 0 ? 0 : pad;
    if (o->task == TASK_TOKEN_CLS && find_frame(&c, e)) goto done;
    if (o->task == TASK_TOKEN_CLS && c.T <= c.n_pre + c.n_post) {
        lerr_set(e, "--max-length %d leaves no room between the %d special tokens", c.T, c.n_pre + c.n_post);
        goto done;
    }
    if (o->val_fraction > 0) {
        if (!(is_val = malloc((size_t)tr.n)) || prep_split_select(is_val, tr.n, o->val_fraction, o->seed) < 1) {
            lerr_set(e, "--val-fraction %g of %lld examples holds out none", o->val_fraction, (long long)tr.n);
            goto done;
        }
    }
    int64_t n_tr, n_va = 0, cut_tr, cut_va = 0;
    if (write_set(o->out, &tr, is_val, 0, &c, &L, &mi, o->task, &n_tr, &cut_tr, e)) goto done;
    if (is_val && write_set(o->val_out, &tr, is_val, 1, &c, &L, &mi, o->task, &n_va, &cut_va, e)) goto done;
    if (o->val_file && write_set(o->val_out, &va, NULL, 0, &c, &L, &mi, o->task, &n_va, &cut_va, e)) goto done;
    const char *what = o->task == TASK_SEQ_CLS ? "examples" : "sentences";
    fprintf(log, "prep: %lld %s (%s, T = %d; %lld fill all T positions%s) -> %s", (long long)n_tr, what,
            model_task_name(o->task), c.T, (long long)cut_tr, o->no_truncation ? "" : ": truncated or exactly T tokens",
            o->out);
    if (is_val || o->val_file) fprintf(log, "; validation: %lld %s -> %s", (long long)n_va, what, o->val_out);
    fprintf(log, "; %.2f s\n", now_s() - t0);
    if (replaced) fprintf(log, "prep: invalid UTF-8: %ld sequence%s replaced with U+FFFD\n", replaced,
                          replaced == 1 ? "" : "s");
    if (L.by_number) fprintf(log, "prep: labels are class ids (integers in the label column)\n");
    else if (!L.collected) fprintf(log, "prep: labels mapped through %s/config.json's label2id (%d labels)\n",
                                   o->model_dir, L.n);
    else {
        char path[4096];
        snprintf(path, sizeof path, "%s%s", o->labels_out ? o->labels_out : o->out, o->labels_out ? "" : ".labels");
        FILE *f = fopen(path, "w");
        for (int i = 0; f && i < L.n; i++) fprintf(f, "%s\n", L.names[i]);
        if (!f || fclose(f)) {
            lerr_set(e, "%s: cannot write the label names", path);
            goto done;
        }
        fprintf(log, "prep: %d labels collected from the training files (sorted; id = line - 1 of %s):", L.n, path);
        for (int i = 0; i < L.n; i++) fprintf(log, " %d=%s", i, L.names[i]);
        fprintf(log, "\n");
    }
    rc = 0;
done:
    tkz_enc_free(&c.enc);
    free(c.pre);
    free(c.post);
    free(c.pieces);
    free(c.word_of);
    free(c.wlab);
    tkz_free(c.t);
    free(is_val);
    labels_free(&L);
    exs_free(&tr);
    exs_free(&va);
    prep_files_free(files, nf);
    prep_model_info_free(&mi);
    return rc;
}
