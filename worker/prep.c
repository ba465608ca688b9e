/*
 * The pieces of `lora prep` that are not one task's: UTF-8 checking and
 * repair, delimited-record splitting (RFC 4180 CSV, GLUE's unquoted TSV),
 * word-piece label alignment, the seeded held-out selection, the input file
 * list and what a model folder says about labels and special tokens.
 * Pure functions first (tests/test_prep.c), then the file helpers.
 */
#include "prep_int.h"

#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data.h"
#include "util.h"

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when it is invalid;
 * *bad gets the length of its maximal invalid subpart (at least 1). The
 * second-byte ranges are Unicode's Table 3-7 (no overlongs, surrogates or
 * code points past U+10FFFF). */
static size_t utf8_seq(const unsigned char *s, size_t n, size_t *bad) {
    unsigned char c = s[0];
    *bad = 1;
    if (c < 0x80) return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 0;
    for (size_t i = 1; i < len; i++) {
        if (i >= n) return 0;
        unsigned char b = s[i];
        if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return 0;
        *bad = i + 1;
    }
    return len;
}

long prep_utf8_fix(const char *s, size_t n, size_t *first_bad, char **out, size_t *out_len) {
    const unsigned char *u = (const unsigned char *)s;
    char *o = NULL;
    size_t w = 0;
    long count = 0;
    if (out) {
        o = malloc(n * 3 + 1); /* each bad byte becomes at most 3 */
        if (!o) return -1;
    }
    for (size_t i = 0; i < n;) {
        size_t bad, k = utf8_seq(u + i, n - i, &bad);
        if (k) {
            if (o) memcpy(o + w, s + i, k);
            w += k;
            i += k;
            continue;
        }
        if (!count && first_bad) *first_bad = i;
        count++;
        if (o) memcpy(o + w, "\xEF\xBF\xBD", 3);
        w += 3;
        i += bad;
    }
    if (o) {
        o[w] = 0;
        *out = o;
        if (out_len) *out_len = w;
    }
    return count;
}

void prep_record_free(prep_record *r) {
    free(r->buf);
    free(r->off);
    free(r->len);
    memset(r, 0, sizeof *r);
}

/* Room for one more field and for `more` bytes of field text. */
static int rec_grow(prep_record *r, size_t more) {
    if (r->n + 1 > r->cap) {
        int cap = r->cap ? r->cap * 2 : 16;
        size_t *o = realloc(r->off, sizeof(size_t) * (size_t)cap), *l = o ? realloc(r->len, sizeof(size_t) * (size_t)cap) : NULL;
        if (o) r->off = o;
        if (!l) return -1;
        r->len = l;
        r->cap = cap;
    }
    if (more > r->buf_cap) {
        size_t cap = more + more / 2 + 64;
        char *b = realloc(r->buf, cap);
        if (!b) return -1;
        r->buf = b;
        r->buf_cap = cap;
    }
    return 0;
}

int prep_split_record(const char *s, size_t n, char sep, int quoted, prep_record *r, size_t *used, int *lines,
                      struct lerr *e) {
    r->n = 0;
    *lines = 0;
    /* the record's extent (to the first line end outside quotes) bounds its unescaped text, which is
     * never longer than the input plus a NUL per field: buf holds 2 * extent + 2 */
    size_t ext = 0;
    for (int inq = 0, start = 1; ext < n && (inq || s[ext] != '\n'); ext++) { /* quotes as the parser reads them */
        char ch = s[ext];
        if (inq && ch == '"' && ext + 1 < n && s[ext + 1] == '"') ext++;
        else if (inq && ch == '"') inq = 0;
        else if (!inq && quoted && start && ch == '"') inq = 1;
        start = ch == sep;
    }
    size_t i = 0, w = 0;
    if (rec_grow(r, 2 * ext + 2) < 0) return lerr_set(e, "out of memory");
    for (;;) {
        if (rec_grow(r, 0) < 0) return lerr_set(e, "out of memory");
        size_t start = w;
        if (quoted && i < n && s[i] == '"') {
            size_t q = i++;
            for (;;) {
                if (i >= n) return lerr_set(e, "a quoted field (opened at byte %zu) is not closed", q + 1);
                if (s[i] == '"') {
                    if (i + 1 < n && s[i + 1] == '"') {
                        r->buf[w++] = '"';
                        i += 2;
                        continue;
                    }
                    i++;
                    break;
                }
                if (s[i] == '\n') (*lines)++;
                r->buf[w++] = s[i++];
            }
            if (i < n && s[i] != sep && s[i] != '\n' && !(s[i] == '\r' && i + 1 < n && s[i + 1] == '\n') &&
                !(s[i] == '\r' && i + 1 == n))
                return lerr_set(e, "a character ('%c') after the closing quote of field %d (RFC 4180 wants the "
                                "separator or the line end there)", s[i], r->n + 1);
        } else {
            while (i < n && s[i] != sep && s[i] != '\n') r->buf[w++] = s[i++];
            if (w > start && r->buf[w - 1] == '\r' && (i >= n || s[i] == '\n')) w--; /* CRLF */
        }
        r->off[r->n] = start;
        r->len[r->n] = w - start;
        r->buf[w++] = 0;
        r->n++;
        if (i < n && s[i] == sep) {
            i++;
            continue;
        }
        if (i < n && s[i] == '\r') i++;
        if (i < n && s[i] == '\n') {
            i++;
            (*lines)++;
        }
        break;
    }
    *used = i;
    return 0;
}

void prep_align_labels(int32_t *out, const int32_t *word_ids, int n, const int32_t *word_labels, int label_all,
                       const int32_t *b_to_i) {
    int32_t prev = -1;
    for (int i = 0; i < n; i++) {
        int32_t w = word_ids[i];
        if (w < 0) out[i] = -100;
        else if (w != prev) out[i] = word_labels[w];
        else if (label_all) out[i] = b_to_i ? b_to_i[word_labels[w]] : word_labels[w];
        else out[i] = -100;
        prev = w;
    }
}

int64_t prep_split_select(uint8_t *is_val, int64_t n, double frac, uint64_t seed) {
    if (n < 0 || !(frac >= 0 && frac < 1)) return -1;
    int64_t k = (int64_t)llround((double)n * frac);
    memset(is_val, 0, (size_t)n);
    if (!k) return 0;
    int64_t *p = malloc(sizeof(int64_t) * (size_t)n);
    if (!p) return -1;
    for (int64_t i = 0; i < n; i++) p[i] = i;
    rng_t r;
    rng_seed(&r, mix64(seed ^ 0x70726570u)); /* "prep": its own stream of the seed */
    for (int64_t i = 0; i < k; i++) {         /* the first k of a Fisher-Yates shuffle */
        int64_t j = i + (int64_t)(rng_next(&r) % (uint64_t)(n - i));
        int64_t t = p[i];
        p[i] = p[j];
        p[j] = t;
        is_val[p[i]] = 1;
    }
    free(p);
    return k;
}

int prep_parse_label_id(const char *s, size_t len, int32_t *v) {
    if (!len || len > 10) return 0;
    int64_t x = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        x = x * 10 + (s[i] - '0');
    }
    if (x >= (int64_t)1 << 31) return 0;
    *v = (int32_t)x;
    return 1;
}

void prep_line_col(const char *s, size_t off, long *line, long *col) {
    long l = 1;
    size_t bol = 0;
    for (size_t i = 0; i < off; i++)
        if (s[i] == '\n') {
            l++;
            bol = i + 1;
        }
    *line = l;
    *col = (long)(off - bol) + 1;
}

/* ---- files ---- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int push_file(char ***v, int *n, int *cap, const char *path) {
    if (*n == *cap) {
        int c = *cap ? *cap * 2 : 16;
        char **p = realloc(*v, sizeof(char *) * (size_t)c);
        if (!p) return -1;
        *v = p;
        *cap = c;
    }
    if (!((*v)[*n] = strdup(path))) return -1;
    (*n)++;
    return 0;
}

void prep_files_free(char **files, int n) {
    for (int i = 0; i < n; i++) free(files[i]);
    free(files);
}

int prep_list_files(const char *const *inputs, int n, char ***files, int *n_files, struct lerr *e) {
    char **v = NULL;
    int nv = 0, cap = 0;
    for (int i = 0; i < n; i++) {
        struct stat st;
        if (stat(inputs[i], &st)) {
            lerr_set(e, "%s: cannot open: %s", inputs[i], strerror(errno));
            goto fail;
        }
        if (!S_ISDIR(st.st_mode)) {
            if (push_file(&v, &nv, &cap, inputs[i])) goto oom;
            continue;
        }
        DIR *d = opendir(inputs[i]);
        if (!d) {
            lerr_set(e, "%s: cannot read the folder: %s", inputs[i], strerror(errno));
            goto fail;
        }
        int first = nv;
        struct dirent *de;
        char path[4096];
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.') continue;
            snprintf(path, sizeof path, "%s/%s", inputs[i], de->d_name);
            if (stat(path, &st) || !S_ISREG(st.st_mode)) continue;
            if (push_file(&v, &nv, &cap, path)) {
                closedir(d);
                goto oom;
            }
        }
        closedir(d);
        if (nv == first) {
            lerr_set(e, "%s: the folder holds no files", inputs[i]);
            goto fail;
        }
        qsort(v + first, (size_t)(nv - first), sizeof(char *), cmp_str);
    }
    if (!nv) {
        lerr_set(e, "no input files");
        goto fail;
    }
    *files = v;
    *n_files = nv;
    return 0;
oom:
    lerr_set(e, "out of memory listing the inputs");
fail:
    prep_files_free(v, nv);
    return -1;
}

char *prep_read_text(const char *path, int utf8, size_t *len, long *n_replaced, struct lerr *e) {
    char *s = read_text_file(path, (size_t)1 << 34, e);
    if (!s) return NULL;
    size_t n = strlen(s), bad = 0;
    struct stat st;
    if (!stat(path, &st) && (size_t)st.st_size > n) { /* the text would end at the NUL: say so instead */
        long line, col;
        prep_line_col(s, n, &line, &col);
        lerr_set(e, "%s:%ld: column %ld (byte): a NUL byte (not a text file?)", path, line, col);
        free(s);
        return NULL;
    }
    long k = utf8 == PREP_UTF8_UNCHECKED ? 0 : prep_utf8_fix(s, n, &bad, NULL, NULL);
    if (k && utf8 == PREP_UTF8_ERROR) {
        long line, col;
        prep_line_col(s, bad, &line, &col);
        lerr_set(e, "%s:%ld: column %ld (byte): invalid UTF-8 (byte 0x%02X; %ld invalid sequence%s in the file; "
                 "--invalid-utf8 replace writes U+FFFD instead)", path, line, col, (unsigned char)s[bad], k,
                 k == 1 ? "" : "s");
        free(s);
        return NULL;
    }
    if (k) {
        char *o;
        if (prep_utf8_fix(s, n, NULL, &o, &n) < 0) {
            free(s);
            lerr_set(e, "%s: out of memory", path);
            return NULL;
        }
        free(s);
        s = o;
    }
    *len = n;
    if (n_replaced) *n_replaced += k;
    return s;
}

/* ---- the model folder ---- */

static cJSON *read_json(const char *path, int *absent, struct lerr *e) {
    FILE *f = fopen(path, "rb");
    *absent = !f;
    if (!f) return NULL;
    fclose(f);
    char *s = read_text_file(path, (size_t)1 << 28, e);
    if (!s) return NULL;
    cJSON *j = cJSON_Parse(s);
    free(s);
    if (!j) lerr_set(e, "%s: not valid JSON", path);
    return j;
}

/* A special-token entry: "[PAD]" or {"content": "[PAD]", ...}. */
static void token_entry(const cJSON *v, char *out, size_t cap) {
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    if (cJSON_IsString(v)) snprintf(out, cap, "%s", v->valuestring);
}

static int json_int(const cJSON *root, const char *key, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    return cJSON_IsNumber(v) ? (int)v->valuedouble : dflt;
}

void prep_model_info_free(prep_model_info *m) {
    for (int i = 0; i < m->n_label2id; i++) free(m->label_names[i]);
    free(m->label_names);
    free(m->label_ids);
    memset(m, 0, sizeof *m);
}

int prep_model_info_read(const char *dir, prep_model_info *m, struct lerr *e) {
    memset(m, 0, sizeof *m);
    m->eos_id = m->pad_id = -1;
    char path[4096];
    int absent;
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *c = read_json(path, &absent, e);
    if (!c && !absent) return -1;
    if (c) {
        m->max_pos = json_int(c, "max_position_embeddings", json_int(c, "n_positions", 0));
        m->eos_id = json_int(c, "eos_token_id", -1);
        m->pad_id = json_int(c, "pad_token_id", -1);
        m->num_labels = json_int(c, "num_labels", 0);
        const cJSON *i2l = cJSON_GetObjectItemCaseSensitive(c, "id2label");
        if (cJSON_IsObject(i2l)) m->num_labels = cJSON_GetArraySize(i2l);
        const cJSON *l2i = cJSON_GetObjectItemCaseSensitive(c, "label2id"), *it;
        int n = cJSON_IsObject(l2i) ? cJSON_GetArraySize(l2i) : 0, dflt = 1;
        cJSON_ArrayForEach(it, l2i) {
            char want[32];
            snprintf(want, sizeof want, "LABEL_%d", cJSON_IsNumber(it) ? (int)it->valuedouble : -1);
            if (!cJSON_IsNumber(it) || strcmp(it->string, want)) dflt = 0;
        }
        if (n && !dflt) { /* transformers' LABEL_k defaults say nothing about the data */
            m->label_names = calloc((size_t)n, sizeof(char *));
            m->label_ids = calloc((size_t)n, sizeof(int32_t));
            if (!m->label_names || !m->label_ids) {
                cJSON_Delete(c);
                prep_model_info_free(m);
                return lerr_set(e, "%s: out of memory", path);
            }
            cJSON_ArrayForEach(it, l2i) {
                if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= 1 << 20) {
                    lerr_set(e, "%s: label2id[\"%s\"] must be a label id (an integer >= 0)", path, it->string);
                    cJSON_Delete(c);
                    prep_model_info_free(m);
                    return -1;
                }
                m->label_names[m->n_label2id] = strdup(it->string);
                m->label_ids[m->n_label2id++] = (int32_t)it->valuedouble;
            }
            if (!m->num_labels) m->num_labels = n;
        }
        cJSON_Delete(c);
    }
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    cJSON *t = read_json(path, &absent, e);
    if (!t && !absent) {
        prep_model_info_free(m);
        return -1;
    }
    if (t) {
        token_entry(cJSON_GetObjectItemCaseSensitive(t, "eos_token"), m->eos, sizeof m->eos);
        token_entry(cJSON_GetObjectItemCaseSensitive(t, "pad_token"), m->pad, sizeof m->pad);
        cJSON_Delete(t);
    }
    return 0;
}

int32_t prep_special_id(const tkz *t, const prep_model_info *m, const char *which) {
    int eos = !strcmp(which, "eos");
    const char *named = eos ? m->eos : m->pad;
    int32_t id = named[0] ? tkz_token_to_id(t, named) : -1;
    if (id >= 0) return id;
    int cfg = eos ? m->eos_id : m->pad_id;
    if (cfg >= 0 && cfg < tkz_vocab_size(t)) return cfg;
    static const char *const eos_names[] = {"<|endoftext|>", "</s>", "<|end_of_text|>", "[SEP]", NULL};
    static const char *const pad_names[] = {"[PAD]", "<pad>", "<|pad|>", NULL};
    for (const char *const *p = eos ? eos_names : pad_names; *p; p++)
        if ((id = tkz_token_to_id(t, *p)) >= 0) return id;
    return -1;
}
