/*
 * `lora prep --task lm`: text files into one token file (include/data.h's
 * format, what `lora train` reads for a causal LM), EOS after every document.
 * A document is a file, or with --lines a line (lines end at \n; every line,
 * an empty one too, as the demo's wordnet files were made). Files are
 * tokenized in parallel (OpenMP, one tokenizer per thread: a tkz is not
 * thread-safe) and written in the sorted order of the file list, so the
 * output does not depend on the thread count.
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data.h"
#include "prep_int.h"

typedef struct {
    int32_t *ids; /* the file's tokens, each document's EOS included */
    int64_t n, cap;
    int64_t *doc_end; /* (n_docs) end offset of each document in ids */
    int64_t n_docs, docs_cap;
    long replaced;
    int failed;
    struct lerr err;
} file_out;

static int fo_push(file_out *f, const int32_t *ids, size_t n, int32_t eos) {
    if (f->n + (int64_t)n + 1 > f->cap) {
        int64_t cap = (f->n + (int64_t)n + 1) * 2;
        int32_t *p = realloc(f->ids, sizeof(int32_t) * (size_t)cap);
        if (!p) return -1;
        f->ids = p;
        f->cap = cap;
    }
    memcpy(f->ids + f->n, ids, sizeof(int32_t) * n);
    f->n += (int64_t)n;
    f->ids[f->n++] = eos;
    if (f->n_docs == f->docs_cap) {
        int64_t cap = f->docs_cap ? f->docs_cap * 2 : 64;
        int64_t *p = realloc(f->doc_end, sizeof(int64_t) * (size_t)cap);
        if (!p) return -1;
        f->doc_end = p;
        f->docs_cap = cap;
    }
    f->doc_end[f->n_docs++] = f->n;
    return 0;
}

static void tokenize_file(tkz *t, const char *path, const prep_opts *o, int32_t eos, file_out *f) {
    size_t len;
    char *s = prep_read_text(path, o->replace_utf8 ? PREP_UTF8_REPLACE : PREP_UTF8_ERROR, &len, &f->replaced, &f->err);
    if (!s) {
        f->failed = 1;
        return;
    }
    tkz_enc enc = {0};
    size_t a = 0;
    long line = 1;
    while (a <= len) {
        size_t b = len;
        if (o->lines) {
            const char *nl = memchr(s + a, '\n', len - a);
            b = nl ? (size_t)(nl - s) : len;
            if (b == len && a == len) break; /* no line after the last \n */
        }
        if (tkz_encode(t, s + a, b - a, NULL, 0, o->add_special, &enc, &f->err) < 0) {
            if (o->lines) lerr_prefix(&f->err, "%s:%ld", path, line);
            else lerr_prefix(&f->err, "%s", path);
            f->failed = 1;
            break;
        }
        if (fo_push(f, enc.ids, enc.n, eos) < 0) {
            lerr_set(&f->err, "%s: out of memory", path);
            f->failed = 1;
            break;
        }
        if (!o->lines) break;
        a = b + 1;
        line++;
    }
    tkz_enc_free(&enc);
    free(s);
}

static void progress(int done, int total, int64_t tokens) {
    int w = 40, k = total ? done * w / total : w;
    fprintf(stderr, "\rprep [");
    for (int i = 0; i < w; i++) fputc(i < k ? '#' : '.', stderr);
    fprintf(stderr, "] %d/%d files, %lld tokens", done, total, (long long)tokens);
    if (done == total) fputc('\n', stderr);
    fflush(stderr);
}

/* Writes the documents whose is_val[d] == want (all when is_val is NULL). */
static int write_docs(const char *path, file_out *fo, int nf, const uint8_t *is_val, int want, int dtype,
                      int64_t *n_docs, int64_t *n_tok, struct lerr *e) {
    int64_t total = 0;
    for (int i = 0; i < nf; i++) total += fo[i].n;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(total ? total : 1));
    if (!ids) return lerr_set(e, "%s: out of memory (%lld tokens)", path, (long long)total);
    int64_t n = 0, d = 0, nd = 0;
    for (int i = 0; i < nf; i++)
        for (int64_t k = 0; k < fo[i].n_docs; k++, d++) {
            if (is_val && is_val[d] != want) continue;
            int64_t a = k ? fo[i].doc_end[k - 1] : 0, b = fo[i].doc_end[k];
            memcpy(ids + n, fo[i].ids + a, sizeof(int32_t) * (size_t)(b - a));
            n += b - a;
            nd++;
        }
    int rc = n ? tok_write(path, ids, n, dtype, e) : lerr_set(e, "%s: no documents to write", path);
    free(ids);
    *n_docs = nd;
    *n_tok = n;
    return rc;
}

int prep_lm(const prep_opts *o, FILE *log, struct lerr *e) {
    double t0 = now_s();
    char **files = NULL;
    int nf = 0, nv = 0;
    if (prep_list_files(o->inputs, o->n_inputs, &files, &nf, e)) return -1;
    if (o->val_file) { /* the validation file goes last, into the other output */
        char **p = realloc(files, sizeof(char *) * (size_t)(nf + 1));
        if (!p || !(p[nf] = strdup(o->val_file))) {
            prep_files_free(p ? p : files, nf);
            return lerr_set(e, "out of memory");
        }
        files = p;
        nv = 1;
    }
    int n_all = nf + nv, rc = -1;
    prep_model_info mi;
    if (prep_model_info_read(o->model_dir, &mi, e)) {
        prep_files_free(files, n_all);
        return -1;
    }
    tkz *t0k = tkz_open(o->model_dir, e);
    file_out *fo = calloc((size_t)n_all, sizeof *fo);
    uint8_t *is_val = NULL;
    if (!t0k || !fo) {
        if (t0k) lerr_set(e, "out of memory");
        goto done;
    }
    int32_t eos = prep_special_id(t0k, &mi, "eos");
    if (eos < 0) {
        lerr_set(e, "%s: the tokenizer has no EOS token (tokenizer_config.json's eos_token, config.json's "
                 "eos_token_id, <|endoftext|> or </s>)", o->model_dir);
        goto done;
    }
    int dtype = tkz_vocab_size(t0k) <= 65536 ? 2 : 4;
    int threads = o->threads > 0 ? o->threads : omp_get_max_threads(), tty = isatty(2), done_files = 0, stop = 0;
    if (threads > n_all) threads = n_all;
    int64_t tok_so_far = 0;
#pragma omp parallel num_threads(threads)
    {
        struct lerr te;
        tkz *t = omp_get_thread_num() == 0 ? t0k : tkz_open(o->model_dir, &te);
#pragma omp for schedule(dynamic, 1)
        for (int i = 0; i < n_all; i++) {
            int skip;
#pragma omp atomic read
            skip = stop;
            if (skip) continue;
            if (!t) {
                fo[i].failed = 1;
                fo[i].err = te;
            } else
                tokenize_file(t, files[i], o, eos, &fo[i]);
#pragma omp critical(prep_progress)
            {
                done_files++;
                tok_so_far += fo[i].n;
                if (fo[i].failed) {
#pragma omp atomic write
                    stop = 1;
                }
                if (tty) progress(done_files, n_all, tok_so_far);
            }
        }
        if (t && t != t0k) tkz_free(t);
    }
    if (tty && done_files < n_all) fputc('\n', stderr);
    for (int i = 0; i < n_all; i++) /* the first failure in file order */
        if (fo[i].failed) {
            *e = fo[i].err;
            goto done;
        }
    int64_t n_docs = 0, n_tr_docs = 0, n_val_docs = 0, n_tr = 0, n_val = 0;
    long replaced = 0;
    for (int i = 0; i < n_all; i++) {
        n_docs += fo[i].n_docs;
        replaced += fo[i].replaced;
    }
    if (o->val_fraction > 0 || nv) {
        if (!(is_val = calloc((size_t)n_docs + 1, 1))) {
            lerr_set(e, "out of memory");
            goto done;
        }
        int64_t n_train_docs = n_docs - (nv ? fo[nf].n_docs : 0);
        if (o->val_fraction > 0 && prep_split_select(is_val, n_train_docs, o->val_fraction, o->seed) < 1) {
            lerr_set(e, "--val-fraction %g of %lld documents holds out none (use --lines, more files or a larger "
                     "fraction)", o->val_fraction, (long long)n_train_docs);
            goto done;
        }
        for (int64_t d = n_train_docs; d < n_docs; d++) is_val[d] = 1;
    }
    if (write_docs(o->out, fo, n_all, is_val, 0, dtype, &n_tr_docs, &n_tr, e)) goto done;
    if (is_val && write_docs(o->val_out, fo, n_all, is_val, 1, dtype, &n_val_docs, &n_val, e)) goto done;
    fprintf(log, "prep: %lld documents, %lld tokens (EOS %d after each) from %d file%s -> %s", (long long)n_tr_docs,
            (long long)n_tr, eos, nf, nf == 1 ? "" : "s", o->out);
    if (is_val) fprintf(log, "; validation: %lld documents, %lld tokens -> %s", (long long)n_val_docs,
                        (long long)n_val, o->val_out);
    fprintf(log, "; %.2f s, %d thread%s\n", now_s() - t0, threads, threads == 1 ? "" : "s");
    if (replaced) fprintf(log, "prep: invalid UTF-8: %ld sequence%s replaced with U+FFFD\n", replaced,
                          replaced == 1 ? "" : "s");
    rc = 0;
done:
    for (int i = 0; fo && i < n_all; i++) {
        free(fo[i].ids);
        free(fo[i].doc_end);
    }
    free(fo);
    free(is_val);
    tkz_free(t0k);
    prep_model_info_free(&mi);
    prep_files_free(files, n_all);
    return rc;
}
