/*
 * lora_tokbench: tokenization speed, one thread.
 *
 *   lora_tokbench --text FILE [--runs 3] [--json OUT] NAME=DIR...
 *
 * For each tokenizer: a fresh load, then every line of FILE encoded without
 * special tokens (tkz_encode, ids only, as HF's encode_batch_fast), timed;
 * the best of --runs such passes (each with a fresh tokenizer, so the word
 * cache starts empty every time, as HF's does in a new process) gives MB/s of
 * input text. scripts/bench_tokenizers.sh runs HF on the same text and prints
 * both.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lerr.h"
#include "tokenizer.h"
#include "util.h"

int main(int argc, char **argv) {
    const char *text = NULL, *json = NULL;
    int runs = 3, nm = 0;
    char *names[64], *dirs[64];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: lora_tokbench --text FILE [--runs N] [--json OUT] NAME=DIR...\n"
                   "  tokenization speed of each tokenizer folder DIR on FILE, one thread (make bench runs it)\n");
            return 0;
        }
        if (!strcmp(argv[i], "--text") && i + 1 < argc) text = argv[++i];
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc) runs = atoi(argv[++i]);
        else if (strchr(argv[i], '=') && nm < 64) {
            names[nm] = argv[i];
            dirs[nm] = strchr(argv[i], '=') + 1;
            dirs[nm][-1] = 0;
            nm++;
        } else {
            fprintf(stderr, "usage: lora_tokbench --text FILE [--runs N] [--json OUT] NAME=DIR...\n");
            return 2;
        }
    }
    if (!text || !nm || runs < 1) {
        fprintf(stderr, "usage: lora_tokbench --text FILE [--runs N] [--json OUT] NAME=DIR...\n");
        return 2;
    }
    struct lerr e = {{0}};
    char *buf = read_text_file(text, (size_t)1 << 31, &e);
    if (!buf) {
        fprintf(stderr, "lora_tokbench: %s\n", e.msg);
        return 1;
    }
    size_t len = strlen(buf), nl = 0;
    for (size_t i = 0; i < len; i++) nl += buf[i] == '\n';
    size_t *off = malloc(sizeof(size_t) * (nl + 2)), *ln = malloc(sizeof(size_t) * (nl + 2)), n = 0;
    for (size_t i = 0; i < len;) {
        const char *p = memchr(buf + i, '\n', len - i);
        size_t end = p ? (size_t)(p - buf) : len;
        off[n] = i;
        ln[n++] = end - i;
        i = end + 1;
    }
    FILE *jf = json ? fopen(json, "w") : NULL;
    if (jf) fprintf(jf, "{\n  \"text_bytes\": %zu,\n  \"lines\": %zu,\n  \"ours_mb_per_s\": {", len, n);
    printf("%-24s %10s %10s %14s\n", "tokenizer", "MB/s", "tokens", "tokens/s");
    int rc = 0;
    for (int m = 0; m < nm; m++) {
        double best = 1e30;
        size_t tokens = 0;
        for (int r = 0; r < runs && !rc; r++) {
            tkz *t = tkz_open(dirs[m], &e);
            if (!t) {
                fprintf(stderr, "lora_tokbench: %s\n", e.msg);
                rc = 1;
                break;
            }
            tkz_no_truncation_padding(t);
            tkz_enc x = {0};
            tokens = 0;
            double t0 = now_s();
            for (size_t i = 0; i < n; i++) {
                if (tkz_encode(t, buf + off[i], ln[i], NULL, 0, 0, &x, &e)) {
                    fprintf(stderr, "lora_tokbench: %s line %zu: %s\n", names[m], i + 1, e.msg);
                    rc = 1;
                    break;
                }
                tokens += x.n;
            }
            double dt = now_s() - t0;
            if (dt < best) best = dt;
            tkz_enc_free(&x);
            tkz_free(t);
        }
        if (rc) break;
        printf("%-24s %10.2f %10zu %14.0f\n", names[m], (double)len / best / 1e6, tokens, (double)tokens / best);
        if (jf) fprintf(jf, "%s\"%s\": %.3f", m ? ", " : "", names[m], (double)len / best / 1e6);
    }
    if (jf) {
        fprintf(jf, "}\n}\n");
        fclose(jf);
    }
    free(off);
    free(ln);
    free(buf);
    return rc;
}
