/* Text generation with a KV cache (see include/generate.h). */
#include "generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "util.h"

typedef struct {
    float p;
    int32_t id;
} cand;

static int by_p_desc(const void *x, const void *y) {
    const cand *a = x, *b = y;
    if (a->p != b->p) return a->p < b->p ? 1 : -1;
    return a->id < b->id ? -1 : a->id > b->id;
}

int32_t gen_pick(const float *logits, int V, const gen_opts *o, uint64_t draw) {
    if (!(o->temperature > 0)) { /* greedy: the first maximum, as torch.argmax */
        int32_t k = 0;
        for (int j = 1; j < V; j++)
            if (logits[j] > logits[k]) k = j;
        return k;
    }
    cand *c = xmalloc(sizeof(cand) * (size_t)V);
    float mx = -INFINITY;
    for (int j = 0; j < V; j++) {
        c[j].p = logits[j] / o->temperature;
        c[j].id = j;
        if (c[j].p > mx) mx = c[j].p;
    }
    qsort(c, (size_t)V, sizeof *c, by_p_desc);
    int n = V;
    if (o->top_k > 0 && o->top_k < n) n = o->top_k;
    double sum = 0;
    for (int j = 0; j < n; j++) sum += c[j].p = expf(c[j].p - mx);
    if (o->top_p > 0 && o->top_p < 1) { /* the smallest set whose probability reaches top_p (at least one) */
        double acc = 0;
        int keep = n;
        for (int j = 0; j < n; j++) {
            acc += c[j].p / sum;
            if (acc >= o->top_p) {
                keep = j + 1;
                break;
            }
        }
        n = keep;
        sum = 0;
        for (int j = 0; j < n; j++) sum += c[j].p;
    }
    double u = (double)(draw >> 11) * (1.0 / 9007199254740992.0) * sum, acc = 0;
    int32_t pick = c[n - 1].id;
    for (int j = 0; j < n; j++) {
        acc += c[j].p;
        if (u < acc) {
            pick = c[j].id;
            break;
        }
    }
    free(c);
    return pick;
}

int gen_run(const model *m, const lora_adapter *a, const int32_t *prompt, int n_prompt, const gen_opts *o,
            int32_t *out, double *ms_per_token, struct lerr *e) {
    if (!m->fam->decode) return lerr_set(e, "the %s family cannot generate (not a causal LM)", m->fam->model_type);
    if (n_prompt < 1) return lerr_set(e, "the prompt is empty");
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= m->vocab)
            return lerr_set(e, "prompt token %d is %d, outside the vocabulary (%d)", i, prompt[i], m->vocab);
    int max_T = n_prompt + o->max_new;
    if (max_T > m->max_positions) max_T = m->max_positions;
    if (n_prompt >= max_T && o->max_new > 0)
        return lerr_set(e, "the prompt has %d tokens: no room left in the model's %d positions", n_prompt,
                        m->max_positions);
    model_kv *kv = m->fam->kv_create(m, a, max_T);
    rng_t r;
    rng_seed(&r, o->seed);
    int n = 0;
    double t0 = now_s();
    const float *logits = m->fam->decode(m, a, kv, prompt, n_prompt);
    while (logits && n < o->max_new) {
        int32_t t = gen_pick(logits, m->vocab, o, rng_next(&r));
        out[n++] = t;
        double t1 = now_s();
        if (ms_per_token) ms_per_token[n - 1] = (t1 - t0) * 1e3;
        t0 = t1;
        if (o->stop_at_eos && m->eos_id >= 0 && t == m->eos_id) break;
        if (n == o->max_new || n_prompt + n >= max_T) break;
        logits = m->fam->decode(m, a, kv, &t, 1);
    }
    m->fam->kv_free(kv);
    return n;
}
