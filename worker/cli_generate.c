/*
 * `lora generate`: the command line over gen_run (see include/generate.h).
 * The prompt is ids (--ids) or text (--prompt) tokenized with the model
 * folder's tokenizer as transformers' tokenizer(prompt) does
 * (add_special_tokens=True: LLaMA's post-processor adds its BOS, GPT-2's
 * adds nothing); the continuation is printed as ids and, with a tokenizer,
 * as text (decoded skipping special tokens, as the text-generation pipeline).
 * Lives in the library so that tools/lora.c stays a thin dispatcher.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "generate.h"
#include "model.h"
#include "tokenizer.h"
#include "util.h"

static int gen_usage(void) {
    fprintf(stderr, "usage: lora generate --model DIR [--adapter PEFT_DIR] (--prompt TEXT | --ids \"ID ...\")\n"
                    "                     [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S]\n"
                    "                     [--ignore-eos true]   (greedy when T = 0, the default)\n");
    return 2;
}

/* "true"/"false"/"1"/"0" for a flag's value; *end set past it (NULL on anything else). */
static int parse_flag(const char *v, char **end) {
    int t = !strcmp(v, "true") || !strcmp(v, "1"), f = !strcmp(v, "false") || !strcmp(v, "0");
    *end = (char *)(t || f ? v + strlen(v) : v);
    return t;
}

/* Ids "1 2 3" (spaces, tabs or commas between) into a malloc'd array; -1 on anything else. */
static int parse_ids(const char *ids, int32_t **out) {
    int n = 0;
    int32_t *p = xmalloc(sizeof(int32_t) * (strlen(ids) / 2 + 2));
    for (const char *s = ids + strspn(ids, " \t,"); *s;) {
        char *end;
        long x = strtol(s, &end, 10);
        if (end == s || x < INT32_MIN || x > INT32_MAX) {
            free(p);
            return -1;
        }
        p[n++] = (int32_t)x;
        s = end + strspn(end, " \t,");
    }
    *out = p;
    return n;
}


int gen_main(int argc, char **argv) {
    const char *dir = NULL, *adapter = NULL, *ids = NULL, *text = NULL;
    gen_opts o = {.max_new = 32, .temperature = 0, .top_k = 0, .top_p = 1, .seed = 1, .stop_at_eos = 1};
    for (int i = 0; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        char *end = NULL;
        if (!strcmp(k, "--model")) dir = v;
        else if (!strcmp(k, "--adapter")) adapter = v;
        else if (!strcmp(k, "--ids")) ids = v;
        else if (!strcmp(k, "--prompt")) text = v;
        else if (!strcmp(k, "--max-new-tokens")) o.max_new = (int)strtol(v, &end, 10);
        else if (!strcmp(k, "--temperature")) o.temperature = strtof(v, &end);
        else if (!strcmp(k, "--top-k")) o.top_k = (int)strtol(v, &end, 10);
        else if (!strcmp(k, "--top-p")) o.top_p = strtof(v, &end);
        else if (!strcmp(k, "--seed")) o.seed = strtoull(v, &end, 10);
        else if (!strcmp(k, "--ignore-eos")) o.stop_at_eos = !parse_flag(v, &end);
        else {
            fprintf(stderr, "lora generate: unknown option '%s'\n", k);
            return 2;
        }
        if (end && *end) {
            fprintf(stderr, "lora generate: %s needs a number, got '%s'\n", k, v);
            return 2;
        }
    }
    if (!dir || argc % 2 || o.max_new < 1 || o.max_new > 1 << 20 || o.temperature < 0 || o.top_k < 0 ||
        !(o.top_p > 0 && o.top_p <= 1))
        return gen_usage();
    if (!!ids == !!text) {
        fprintf(stderr, "lora generate: give the prompt as --prompt TEXT or as --ids \"ID ...\" (one of them)\n");
        return 2;
    }
    if (text && !*text) {
        fprintf(stderr, "lora generate: --prompt is empty\n");
        return 2;
    }
    struct lerr e = {{0}};
    model m = {0};
    lora_adapter a = {0};
    tkz *t = NULL;
    tkz_enc enc = {0};
    int rc = 1, have = 0, n = 0;
    int32_t *prompt = NULL, *out = NULL;
    double *ms = NULL;
    char *dec = NULL;
    if (ids && (n = parse_ids(ids, &prompt)) < 0) {
        fprintf(stderr, "lora generate: --ids must be integers separated by spaces, got '%s'\n", ids);
        return 2;
    }
    if (model_open(&m, dir, NULL, &e)) goto done_model;
    if (!m.fam->decode) {
        lerr_set(&e, "%s is a %s %s model: generate takes a causal LM (GPT-2 or the LLaMA family); "
                            "for classification use lora predict", dir, m.fam->model_type, model_task_name(m.task));
        goto done_model;
    }
    if (adapter) {
        if (model_load_peft(&a, &m, adapter, &e)) goto done_model;
        have = 1;
    }
    /* a tokenizer is needed for --prompt; with --ids it only decodes the output when the folder has one */
    if (text || tkz_present(dir)) {
        if (!(t = tkz_open(dir, &e))) {
            if (text) goto done_model;
            e.msg[0] = 0;
        }
    }
    if (text) {
        tkz_no_truncation_padding(t);
        if (tkz_encode(t, text, strlen(text), NULL, 0, 1, &enc, &e)) goto done_model;
        n = (int)enc.n;
        prompt = xmalloc(sizeof(int32_t) * (size_t)(n + 1));
        memcpy(prompt, enc.ids, sizeof(int32_t) * (size_t)n);
        printf("prompt ids:");
        for (int i = 0; i < n; i++) printf(" %d", prompt[i]);
        printf("\n");
    }
    out = xmalloc(sizeof(int32_t) * (size_t)o.max_new);
    ms = xmalloc(sizeof(double) * (size_t)o.max_new);
    int k = gen_run(&m, have ? &a : NULL, prompt, n, &o, out, ms, &e);
    if (k < 0) goto done_model;
    printf("ids:");
    for (int i = 0; i < k; i++) printf(" %d", out[i]);
    printf("\n");
    if (t) {
        size_t len;
        if (tkz_decode(t, out, (size_t)k, 1, &dec, &len, &e)) goto done_model;
        printf("text: %s\n", dec);
    }
    double rest = 0;
    for (int i = 1; i < k; i++) rest += ms[i];
    printf("%d new tokens: %.1f ms for the prompt (%d tokens) and the first, %.2f ms per token after it\n", k, ms[0],
           n, k > 1 ? rest / (k - 1) : 0.0);
    rc = 0;
done_model:
    model_free(&m);
    if (rc) fprintf(stderr, "lora generate: %s\n", e.msg);
    free(prompt);
    free(out);
    free(ms);
    free(dec);
    tkz_enc_free(&enc);
    tkz_free(t);
    if (have) lora_free(&a);
    return rc;
}
