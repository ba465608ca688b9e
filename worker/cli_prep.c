/*
 * `lora prep`: the command line over prep_lm / prep_cls (include/prep.h).
 * Lives in the library so that tools/lora.c stays a thin dispatcher.
 */
#include <stdlib.h>
#include <string.h>

#include "prep.h"

static const char prep_help[] =
    "usage: lora prep --task lm|seq_cls|token_cls --model DIR --out FILE [options] INPUT...\n"
    "  INPUT: files, or folders (their files, sorted by name)\n"
    "  --task lm         text files -> a token file (include/data.h), EOS after each document\n"
    "    --lines           every line a document (default: every file)\n"
    "    --add-special     add the tokenizer's special tokens (BOS...) to each document\n"
    "    --threads N       tokenizer threads, one file at a time each (default: OpenMP's)\n"
    "  --task seq_cls    TSV / CSV (RFC 4180) / JSONL rows -> a labeled dataset (include/dataset.h)\n"
    "    --format tsv|csv|jsonl   (default: from the file name)\n"
    "    --text-column NAME        (default: sentence, text or sentence1, the first the header has)\n"
    "    --text-pair-column NAME   a second text (default: sentence2 with sentence1, else none)\n"
    "    --label-column NAME       (default: label)\n"
    "  --task token_cls  CoNLL files (token first, tag last; blank line between sentences) -> a dataset\n"
    "    --label-all-tokens        label every word piece (B-X -> I-X after the first), not only the first\n"
    "  labels: integers are class ids (seq_cls); names go through config.json's label2id, or without one\n"
    "    are collected, sorted and written to --labels-out FILE (default: OUT.labels)\n"
    "  --max-length T    classification: truncate and pad to T tokens (default: 128, at most the model's)\n"
    "  --no-truncation   a text longer than T is an error instead\n"
    "  --val-file FILE   validation data, prepared the same way, into --val-out FILE\n"
    "  --val-fraction F  hold out this fraction of the examples (documents for lm) into --val-out\n"
    "  --seed S          of the held-out selection (default 42)\n"
    "  --invalid-utf8 error|replace   invalid UTF-8: an error naming file:line:column (default), or U+FFFD\n";

static int prep_bad(const char *what, const char *arg) {
    fprintf(stderr, "lora prep: %s%s%s (lora prep --help lists the options)\n", what, arg ? " " : "", arg ? arg : "");
    return 2;
}

int prep_main(int argc, char **argv) {
    prep_opts o = {.seed = 42};
    const char *task = NULL, **inputs = calloc((size_t)argc + 1, sizeof(char *));
    if (!inputs) return 1;
    int rc = 2;
    for (int i = 0; i < argc; i++) {
        const char *k = argv[i];
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
            fputs(prep_help, stdout);
            free(inputs);
            return 0;
        }
        if (!strncmp(k, "--", 2) && k[2]) {
            static const char *const flags[] = {"--no-truncation", "--label-all-tokens", "--lines", "--add-special", NULL};
            int fl = -1;
            for (int f = 0; flags[f]; f++)
                if (!strcmp(k, flags[f])) fl = f;
            if (fl == 0) o.no_truncation = 1;
            else if (fl == 1) o.label_all = 1;
            else if (fl == 2) o.lines = 1;
            else if (fl == 3) o.add_special = 1;
            if (fl >= 0) continue;
            if (i + 1 >= argc) {
                rc = prep_bad(k, "needs a value");
                goto out;
            }
            const char *v = argv[++i];
            char *end = NULL;
            if (!strcmp(k, "--task")) task = v;
            else if (!strcmp(k, "--model")) o.model_dir = v;
            else if (!strcmp(k, "--out")) o.out = v;
            else if (!strcmp(k, "--val-out")) o.val_out = v;
            else if (!strcmp(k, "--val-file")) o.val_file = v;
            else if (!strcmp(k, "--labels-out")) o.labels_out = v;
            else if (!strcmp(k, "--format")) o.format = v;
            else if (!strcmp(k, "--text-column")) o.text_col = v;
            else if (!strcmp(k, "--text-pair-column")) o.pair_col = v;
            else if (!strcmp(k, "--label-column")) o.label_col = v;
            else if (!strcmp(k, "--val-fraction")) o.val_fraction = strtod(v, &end);
            else if (!strcmp(k, "--seed")) o.seed = strtoull(v, &end, 10);
            else if (!strcmp(k, "--max-length")) o.max_length = (int)strtol(v, &end, 10);
            else if (!strcmp(k, "--threads")) o.threads = (int)strtol(v, &end, 10);
            else if (!strcmp(k, "--invalid-utf8")) {
                if (strcmp(v, "error") && strcmp(v, "replace")) {
                    rc = prep_bad("--invalid-utf8 takes error or replace, not", v);
                    goto out;
                }
                o.replace_utf8 = !strcmp(v, "replace");
            } else {
                rc = prep_bad("unknown option", k);
                goto out;
            }
            if (end && (*end || end == v)) {
                rc = prep_bad(k, "needs a number");
                goto out;
            }
            continue;
        }
        inputs[o.n_inputs++] = k;
    }
    o.inputs = inputs;
    if (!task || !o.model_dir || !o.out) {
        rc = prep_bad("--task, --model and --out are required", NULL);
        goto out;
    }
    if (!strcmp(task, "lm") || !strcmp(task, "CAUSAL_LM")) o.task = TASK_CAUSAL_LM;
    else if (!strcmp(task, "seq_cls") || !strcmp(task, "SEQ_CLS")) o.task = TASK_SEQ_CLS;
    else if (!strcmp(task, "token_cls") || !strcmp(task, "TOKEN_CLS")) o.task = TASK_TOKEN_CLS;
    else {
        rc = prep_bad("--task takes lm, seq_cls or token_cls, not", task);
        goto out;
    }
    if (!o.n_inputs) {
        rc = prep_bad("no input files", NULL);
        goto out;
    }
    if (!(o.val_fraction >= 0 && o.val_fraction < 1)) {
        rc = prep_bad("--val-fraction must be in [0, 1)", NULL);
        goto out;
    }
    if (o.val_fraction > 0 && o.val_file) {
        rc = prep_bad("--val-file and --val-fraction: give one", NULL);
        goto out;
    }
    if ((o.val_fraction > 0 || o.val_file) != (o.val_out != NULL)) {
        rc = prep_bad(o.val_out ? "--val-out needs --val-file or --val-fraction" : "a validation split needs --val-out FILE", NULL);
        goto out;
    }
    if (o.max_length < 0 || o.max_length == 1 || o.threads < 0) {
        rc = prep_bad("--max-length must be >= 2 and --threads >= 0", NULL);
        goto out;
    }
    if (o.format && strcmp(o.format, "tsv") && strcmp(o.format, "csv") && strcmp(o.format, "jsonl")) {
        rc = prep_bad("--format takes tsv, csv or jsonl, not", o.format);
        goto out;
    }
    struct lerr e = {{0}};
    rc = (o.task == TASK_CAUSAL_LM ? prep_lm(&o, stdout, &e) : prep_cls(&o, stdout, &e)) ? 1 : 0;
    if (rc) fprintf(stderr, "lora prep: %s\n", e.msg);
out:
    free(inputs);
    return rc;
}
