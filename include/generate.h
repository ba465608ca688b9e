/*
 * gen_: text generation with a causal LM and its KV cache (the family's
 * decode): the prompt in one pass, then one position per new token; greedy
 * when temperature is 0, else sampling after HF's warpers in HF's order
 * (temperature, top-k, top-p), seeded. Stops at the model's EOS.
 */
#ifndef GENERATE_H
#define GENERATE_H

#include <stdint.h>

#include "lerr.h"
#include "model.h"

typedef struct {
    int max_new;       /* new tokens at most */
    float temperature; /* 0: greedy */
    int top_k;         /* 0: off */
    float top_p;       /* 1: off */
    uint64_t seed;
    int stop_at_eos;   /* stop when the model's eos_id comes (it is kept in out) */
} gen_opts;

/* Writes up to o->max_new new token ids to out and returns how many, or -1
 * with a message (a family without decoding, a prompt longer than the
 * positions, ids outside the vocabulary). ms_per_token (may be NULL) gets the
 * time of each new token in milliseconds. */
int gen_run(const model *m, const lora_adapter *a, const int32_t *prompt, int n_prompt, const gen_opts *o,
            int32_t *out, double *ms_per_token, struct lerr *e);

/* The token picked from logits (V): argmax at temperature 0, else a draw. */
int32_t gen_pick(const float *logits, int V, const gen_opts *o, uint64_t draw);

/* `lora generate ARGS...` (worker/cli_generate.c): prints the new ids and,
 * when the model folder has a tokenizer, their text; returns the exit status. */
int gen_main(int argc, char **argv);

#endif
