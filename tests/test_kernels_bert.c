/*
 * The BERT kernels (include/kernels_bert.h):
 *  - each backward against central finite differences of its forward
 *    (f(x) = sum(g * forward(x)), h = 1e-2, relative 2-norm error < 2e-3, as
 *    tests/test_kernels.c does);
 *  - masked keys get probability exactly 0 and gradients exactly 0, and
 *    nothing at a padded key reaches any row;
 *  - bitwise the same results with 1 and 2 OpenMP threads;
 *  - against HF itself when LORA_KERNELS_BERT_REF names the file that
 *    tests/ref/kernels_bert_ref.py writes (tests/ref_kernels_bert.sh does
 *    both): BertSelfAttention, BertAttention and BertLayer composed from the
 *    kernels, BertEmbeddings, BertPooler, the activations and the losses,
 *    each tensor within 1e-5 relative.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "kernels.h"
#include "kernels_bert.h"
#include "lerr.h"
#include "safetensors.h"
#include "testutil.h"

static rng_t R;
static void fill(float *x, long n, float scale) {
    for (long i = 0; i < n; i++) x[i] = (2.0f * rng_uniform(&R) - 1.0f) * scale;
}
static double dot(const float *a, const float *b, long n) {
    double s = 0;
    for (long i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}
static float *fnew(long n) { return xcalloc((size_t)n, sizeof(float)); }

typedef void (*fwd_fn)(float *y, const float *x, void *ctx);

static double fd_worst;
static void fd_check(const char *name, fwd_fn f, void *ctx, float *x, long nx, long ny, const float *g,
                     const float *analytic) {
    float *y = fnew(ny), *num = fnew(nx);
    const float h = 1e-2f;
    for (long i = 0; i < nx; i++) {
        float keep = x[i];
        x[i] = keep + h;
        f(y, x, ctx);
        double fp = dot(y, g, ny);
        x[i] = keep - h;
        f(y, x, ctx);
        double fm = dot(y, g, ny);
        x[i] = keep;
        num[i] = (float)((fp - fm) / (2.0 * h));
    }
    double err = tu_rel_err(analytic, num, nx);
    printf("  %-30s rel err vs finite differences %.2e\n", name, err);
    CHECK(err < 2e-3, "%s: backward differs from finite differences (rel err %g)", name, err);
    fd_worst = fmax(fd_worst, err);
    free(y);
    free(num);
}

/* ---- linear: y = x w^T + b, w (OC, C) */
typedef struct { float *x, *w, *b; int N, C, OC, which; } lin_ctx;
static void lin_f(float *y, const float *v, void *c) {
    lin_ctx *k = c;
    const float *x = k->which == 0 ? v : k->x, *w = k->which == 1 ? v : k->w, *b = k->which == 2 ? v : k->b;
    linear_forward(y, x, w, b, k->N, k->C, k->OC, 0.0f);
}
static void test_linear(void) {
    int N = 4, C = 5, OC = 3;
    float x[20], w[15], b[3], g[12], y[12], dx[20], dw[15] = {0}, db[3] = {0};
    fill(x, 20, 1), fill(w, 15, 1), fill(b, 3, 1), fill(g, 12, 1);
    lin_ctx k = {x, w, b, N, C, OC, 0};
    lin_f(y, x, &k);
    double worst = 0;
    for (int i = 0; i < N; i++)
        for (int o = 0; o < OC; o++) {
            double s = b[o];
            for (int c = 0; c < C; c++) s += (double)x[i * C + c] * w[o * C + c];
            worst = fmax(worst, fabs(s - y[i * OC + o]));
        }
    CHECK(worst < 1e-6, "linear_forward differs from a direct loop by %g", worst);
    linear_backward_input(dx, g, w, N, C, OC, 0);
    linear_backward_weight(dw, x, g, N, C, OC);
    bias_backward(db, g, N, OC);
    fd_check("linear input grad", lin_f, &k, x, 20, 12, g, dx);
    k.which = 1, fd_check("linear weight grad", lin_f, &k, w, 15, 12, g, dw);
    k.which = 2, fd_check("linear bias grad", lin_f, &k, b, 3, 12, g, db);
    /* accumulate flags: beta 1 adds to out; accumulate 1 adds to din */
    float y2[12], dx2[20];
    for (int i = 0; i < 12; i++) y2[i] = 1.0f;
    linear_forward(y2, x, w, b, N, C, OC, 1.0f);
    for (int i = 0; i < 20; i++) dx2[i] = 1.0f;
    linear_backward_input(dx2, g, w, N, C, OC, 1);
    worst = 0;
    for (int i = 0; i < 12; i++) worst = fmax(worst, fabs(y2[i] - 1.0f - y[i]));
    for (int i = 0; i < 20; i++) worst = fmax(worst, fabs(dx2[i] - 1.0f - dx[i]));
    CHECK(worst < 1e-6, "linear beta/accumulate must add (off by %g)", worst);
}

/* ---- masked attention: x is one of q, k, v */
typedef struct { float *q, *k, *v, *att; const int32_t *mask; int B, T, C, H, which; } att_ctx;
static void att_f(float *y, const float *x, void *c) {
    att_ctx *a = c;
    bert_attention_forward(y, a->att, a->which == 0 ? x : a->q, a->which == 1 ? x : a->k, a->which == 2 ? x : a->v,
                           a->mask, a->B, a->T, a->C, a->H);
}
static void test_attention(void) {
    enum { B = 3, T = 6, C = 12, H = 3 };
    long n = (long)B * T * C, na = (long)B * H * T * T;
    int32_t mask[B * T] = {0};
    int lens[B] = {6, 3, 1};
    for (int b = 0; b < B; b++)
        for (int t = 0; t < lens[b]; t++) mask[b * T + t] = 1;
    float *q = fnew(n), *k = fnew(n), *v = fnew(n), *g = fnew(n), *y = fnew(n), *att = fnew(na);
    float *dq = fnew(n), *dk = fnew(n), *dv = fnew(n), *scratch = fnew((long)omp_get_max_threads() * T * T);
    fill(q, n, 1.5f), fill(k, n, 1.5f), fill(v, n, 1), fill(g, n, 1);
    att_ctx a = {q, k, v, att, mask, B, T, C, H, 0};
    att_f(y, q, &a);
    /* masked keys: probability exactly 0.0f; every row (padded queries too) sums to 1 */
    int nonzero = 0;
    double worst = 0;
    for (int r = 0; r < B * H * T; r++) {
        int b = r / (H * T);
        double s = 0;
        for (int j = 0; j < T; j++) {
            float p = att[(long)r * T + j];
            s += p;
            if (!mask[b * T + j] && p != 0.0f) nonzero++;
        }
        worst = fmax(worst, fabs(s - 1));
    }
    CHECK(nonzero == 0, "%d masked-key probabilities are not exactly 0", nonzero);
    CHECK(worst < 1e-6, "attention rows not normalized (%g)", worst);
    bert_attention_backward(dq, dk, dv, scratch, g, att, q, k, v, B, T, C, H);
    int nzg = 0;
    for (int i = 0; i < B * T; i++)
        for (int c = 0; c < C; c++)
            if (!mask[i] && (dk[(long)i * C + c] != 0.0f || dv[(long)i * C + c] != 0.0f)) nzg++;
    CHECK(nzg == 0, "%d dk/dv values at masked keys are not exactly 0", nzg);
    fd_check("masked attention dq", att_f, &a, q, n, n, g, dq);
    a.which = 1, fd_check("masked attention dk", att_f, &a, k, n, n, g, dk);
    a.which = 2, fd_check("masked attention dv", att_f, &a, v, n, n, g, dv);
    a.which = 0;
    /* nothing at a padded key reaches any row: change k and v there, outputs bitwise equal */
    float *y2 = fnew(n), *k2 = fnew(n), *v2 = fnew(n);
    memcpy(k2, k, sizeof(float) * n), memcpy(v2, v, sizeof(float) * n);
    for (int i = 0; i < B * T; i++)
        if (!mask[i])
            for (int c = 0; c < C; c++) k2[(long)i * C + c] = 1e4f, v2[(long)i * C + c] = -1e4f;
    bert_attention_forward(y2, att, q, k2, v2, mask, B, T, C, H);
    CHECK(memcmp(y, y2, sizeof(float) * n) == 0, "padded keys changed the attention output");
    /* the backward accumulates */
    float *dq2 = fnew(n);
    for (long i = 0; i < n; i++) dq2[i] = 1.0f;
    att_f(y, q, &a);
    bert_attention_backward(dq2, dk, dv, scratch, g, att, q, k, v, B, T, C, H);
    worst = 0;
    for (long i = 0; i < n; i++) worst = fmax(worst, fabs(dq2[i] - 1.0f - dq[i]));
    CHECK(worst < 1e-6, "bert_attention_backward must add into dq (off by %g)", worst);
    /* no mask = all ones; a sequence with no token: all-zero probabilities and output */
    int32_t ones[B * T];
    for (int i = 0; i < B * T; i++) ones[i] = 1;
    bert_attention_forward(y, att, q, k, v, NULL, B, T, C, H);
    bert_attention_forward(y2, att, q, k, v, ones, B, T, C, H);
    CHECK(memcmp(y, y2, sizeof(float) * n) == 0, "mask NULL differs from an all-ones mask");
    for (int t = 0; t < T; t++) ones[2 * T + t] = 0;
    bert_attention_forward(y2, att, q, k, v, ones, B, T, C, H);
    int bad = 0;
    for (long i = 2L * T * C; i < n; i++) bad += y2[i] != 0.0f;
    for (long i = 2L * H * T * T; i < na; i++) bad += att[i] != 0.0f;
    CHECK(bad == 0, "an all-padding sequence must give zero probabilities and output (%d nonzero)", bad);
    free(q), free(k), free(v), free(g), free(y), free(att), free(dq), free(dk), free(dv), free(scratch);
    free(y2), free(k2), free(v2), free(dq2);
}

/* ---- embeddings: x is one of the three tables */
typedef struct { float *wte, *wpe, *wtt; const int32_t *tok, *typ; int B, T, C, which; } emb_ctx;
static void emb_f(float *y, const float *x, void *c) {
    emb_ctx *e = c;
    bert_embedding_forward(y, e->tok, e->typ, e->which == 0 ? x : e->wte, e->which == 1 ? x : e->wpe,
                           e->which == 2 ? x : e->wtt, e->B, e->T, e->C);
}
static void test_embeddings(void) {
    enum { B = 2, T = 4, C = 6, V = 7, P = 5, TT = 3 };
    int32_t tok[B * T] = {3, 0, 5, 3, 6, 1, 0, 0}, typ[B * T] = {0, 1, 2, 1, 0, 0, 1, 1};
    float wte[V * C], wpe[P * C], wtt[TT * C], g[B * T * C], y[B * T * C];
    float dte[V * C] = {0}, dpe[P * C] = {0}, dtt[TT * C] = {0}, dte0[V * C] = {0};
    fill(wte, V * C, 1), fill(wpe, P * C, 1), fill(wtt, TT * C, 1), fill(g, B * T * C, 1);
    emb_ctx e = {wte, wpe, wtt, tok, typ, B, T, C, 0};
    emb_f(y, wte, &e);
    double worst = 0;
    for (int i = 0; i < B * T; i++)
        for (int j = 0; j < C; j++)
            worst = fmax(worst, fabs(y[i * C + j] - ((wte[tok[i] * C + j] + wtt[typ[i] * C + j]) + wpe[(i % T) * C + j])));
    CHECK(worst == 0, "bert_embedding_forward differs from (word + type) + position by %g", worst);
    bert_embedding_backward(dte, dpe, dtt, g, tok, typ, -1, B, T, C);
    fd_check("embedding word grad", emb_f, &e, wte, V * C, B * T * C, g, dte);
    e.which = 1, fd_check("embedding position grad", emb_f, &e, wpe, P * C, B * T * C, g, dpe);
    e.which = 2, fd_check("embedding token-type grad", emb_f, &e, wtt, TT * C, B * T * C, g, dtt);
    /* padding_idx 0: its row gets nothing, every other row the same as without */
    bert_embedding_backward(dte0, NULL, NULL, g, tok, typ, 0, B, T, C);
    int bad = 0;
    for (int r = 0; r < V; r++)
        for (int j = 0; j < C; j++) bad += dte0[r * C + j] != (r == 0 ? 0.0f : dte[r * C + j]);
    CHECK(bad == 0, "pad_id row must get no gradient, the others the same (%d differ)", bad);
    /* types NULL = type 0 everywhere */
    int32_t zero[B * T] = {0};
    float y0[B * T * C];
    bert_embedding_forward(y, tok, NULL, wte, wpe, wtt, B, T, C);
    bert_embedding_forward(y0, tok, zero, wte, wpe, wtt, B, T, C);
    CHECK(memcmp(y, y0, sizeof y) == 0, "types NULL must equal all-zero token types");
}

/* ---- pooler: x is the hidden states, the weight or the bias */
typedef struct { float *x, *w, *b; int B, T, C, which; } pool_ctx;
static void pool_f(float *y, const float *v, void *c) {
    pool_ctx *p = c;
    bert_pooler_forward(y, p->which == 0 ? v : p->x, p->which == 1 ? v : p->w, p->which == 2 ? v : p->b, p->B, p->T,
                        p->C);
}
static void test_pooler(void) {
    enum { B = 2, T = 3, C = 8 };
    float x[B * T * C], w[C * C], b[C], g[B * C], y[B * C], dpre[B * C];
    float dx[B * T * C] = {0}, dw[C * C] = {0}, db[C] = {0};
    fill(x, B * T * C, 1), fill(w, C * C, 0.5f), fill(b, C, 0.5f), fill(g, B * C, 1);
    pool_ctx p = {x, w, b, B, T, C, 0};
    pool_f(y, x, &p);
    bert_pooler_backward(dx, dw, db, dpre, g, y, x, w, B, T, C);
    fd_check("pooler input grad", pool_f, &p, x, B * T * C, B * C, g, dx);
    p.which = 1, fd_check("pooler weight grad", pool_f, &p, w, C * C, B * C, g, dw);
    p.which = 2, fd_check("pooler bias grad", pool_f, &p, b, C, B * C, g, db);
    /* the composition a LoRA on pooler.dense would use gives the same values */
    float first[B * C], pre[B * C], y2[B * C], dfirst[B * C] = {0}, dx2[B * T * C] = {0}, dpre2[B * C] = {0};
    bert_first_tokens(first, x, B, T, C);
    linear_forward(pre, first, w, b, B, C, C, 0.0f);
    tanh_forward(y2, pre, B * C);
    CHECK(tu_max_abs(y, y2, B * C) < 1e-6, "pooler != first_tokens + linear + tanh (%g)", tu_max_abs(y, y2, B * C));
    tanh_backward(dpre2, g, y2, B * C);
    CHECK(tu_max_abs(dpre, dpre2, B * C) < 1e-6, "pooler dpre != tanh_backward (%g)", tu_max_abs(dpre, dpre2, B * C));
    linear_backward_input(dfirst, dpre2, w, B, C, C, 0);
    bert_first_tokens_backward(dx2, dfirst, B, T, C);
    CHECK(tu_max_abs(dx, dx2, B * T * C) < 1e-6, "pooler dx != the composition's (%g)", tu_max_abs(dx, dx2, B * T * C));
}

/* ---- tanh and the regression loss */
static void tanh_f(float *y, const float *x, void *c) { tanh_forward(y, x, *(long *)c); }
typedef struct { const float *t; int N; } mse_ctx;
static void mse_f(float *y, const float *x, void *c) {
    mse_ctx *m = c;
    y[0] = (float)(mse_forward(x, m->t, m->N) / m->N);
}
static void test_tanh_mse(void) {
    long n = 30;
    float x[30], g[30], dx[30] = {0};
    fill(x, n, 3), fill(g, n, 1);
    float y[30];
    tanh_forward(y, x, n);
    tanh_backward(dx, g, y, n);
    fd_check("tanh", tanh_f, &n, x, n, n, g, dx);
    float p[5], t[5], dp[5] = {0}, one = 1.0f;
    fill(p, 5, 2), fill(t, 5, 2);
    mse_ctx m = {t, 5};
    mse_backward(dp, p, t, 5, 1.0f / 5);
    fd_check("mse (mean)", mse_f, &m, p, 5, 1, &one, dp);
}

/* ---- 1 thread vs 2 threads: bitwise, for our own loops. linear_forward and
 * linear_backward_weight are one cblas_sgemm each: OpenBLAS's Haswell/Zen sgemm
 * splits the work by thread count and does not promise the same bits at
 * another count (seen on an AMD EPYC with AVX2: 1 vs 2 threads differ), so they
 * are not in this comparison; the project promises equal bits at equal thread
 * counts, which every BSP-vs-single-process test checks. */
static void run_all(float **o, int B, int T, int C, int H, const float *q, const float *k, const float *v,
                    const float *g, const int32_t *mask, const int32_t *tok, const float *w) {
    long n = (long)B * T * C;
    float *scratch = fnew((long)omp_get_max_threads() * T * T);
    bert_attention_forward(o[0], o[1], q, k, v, mask, B, T, C, H);
    bert_attention_backward(o[2], o[3], o[4], scratch, g, o[1], q, k, v, B, T, C, H);
    bert_embedding_backward(o[5], o[6], o[7], g, tok, mask, 0, B, T, C);
    bert_pooler_forward(o[8], q, w, w, B, T, C);
    bert_pooler_backward(o[9], o[10], o[11], o[12], g, o[8], q, w, B, T, C);
    bert_embedding_forward(o[13], tok, mask, w, w, w, B, T, C);
    residual_forward(o[13], o[13], q, n);
    free(scratch);
}
static void test_threads(void) {
    enum { B = 4, T = 16, C = 160, H = 4, NO = 14 };
    long n = (long)B * T * C, len = (long)C * C; /* every output fits in C*C floats */
    float *q = fnew(n), *k = fnew(n), *v = fnew(n), *g = fnew(n), *w = fnew((long)C * C);
    int32_t mask[B * T], tok[B * T];
    for (int i = 0; i < B * T; i++) mask[i] = (i % T) < T - 3 * (i / T), tok[i] = (i * 7) % 50;
    fill(q, n, 1), fill(k, n, 1), fill(v, n, 1), fill(g, n, 1), fill(w, (long)C * C, 0.2f);
    float *o[2][NO];
    int keep = omp_get_max_threads();
    for (int r = 0; r < 2; r++) {
        for (int i = 0; i < NO; i++) o[r][i] = fnew(len);
        omp_set_num_threads(r + 1);
        run_all(o[r], B, T, C, H, q, k, v, g, mask, tok, w);
    }
    omp_set_num_threads(keep);
    int differ = 0;
    for (int i = 0; i < NO; i++) {
        if (memcmp(o[0][i], o[1][i], sizeof(float) * len) != 0) {
            differ++;
            fprintf(stderr, "  output %d differs between 1 and 2 threads\n", i);
        }
    }
    printf("  %-30s %d of %d outputs differ between 1 and 2 threads\n", "thread count", differ, NO);
    CHECK(differ == 0, "results depend on the thread count (%d outputs)", differ);
    for (int r = 0; r < 2; r++)
        for (int i = 0; i < NO; i++) free(o[r][i]);
    free(q), free(k), free(v), free(g), free(w);
}

/* ---- against HF (tests/ref/kernels_bert_ref.py) */
static st_file *REF;
static double hf_worst;
static const char *hf_worst_name = "";
static char hf_worst_buf[128];

/* A reference tensor as float (NULL and a failed check when absent or not n values). */
static float *ref_f(const char *name, long n) {
    struct lerr e;
    const st_tensor *t = st_find(REF, name);
    CHECK(t && t->numel == n, "reference tensor %s missing or not %ld values", name, n);
    if (!t || t->numel != n) return NULL;
    float *x = fnew(n);
    if (st_to_f32(x, t, &e) != 0) {
        CHECK(0, "%s", e.msg);
        free(x);
        return NULL;
    }
    return x;
}
static int32_t *ref_i(const char *name, long n) {
    struct lerr e;
    const st_tensor *t = st_find(REF, name);
    CHECK(t && t->numel == n, "reference tensor %s missing or not %ld values", name, n);
    if (!t || t->numel != n) return NULL;
    int32_t *x = xcalloc((size_t)n, sizeof(int32_t));
    if (st_to_i32(x, t, &e) != 0) {
        CHECK(0, "%s", e.msg);
        free(x);
        return NULL;
    }
    return x;
}
/* ours vs the reference tensor `name`: relative 2-norm error < 1e-5 */
static void cmp(const char *name, const float *ours, long n) {
    float *ref = ref_f(name, n);
    if (!ref) return;
    double rel = tu_rel_err(ours, ref, n), mx = tu_max_abs(ours, ref, n);
    printf("  %-46s rel err %.2e  max abs %.2e\n", name, rel, mx);
    CHECK(rel <= 1e-5, "%s differs from HF: rel err %g", name, rel);
    if (rel > hf_worst || isnan(rel)) {
        hf_worst = rel;
        snprintf(hf_worst_buf, sizeof hf_worst_buf, "%s", name);
        hf_worst_name = hf_worst_buf;
    }
    free(ref);
}

enum { B_ = 3, T_ = 7, C_ = 24, H_ = 3, I_ = 40, V_ = 30, P_ = 20, TT_ = 3 };
#define N_ (B_ * T_)

static void hf_attention(const int32_t *mask) {
    long n = (long)N_ * C_, na = (long)B_ * H_ * T_ * T_;
    float *q = ref_f("attn.q", n), *k = ref_f("attn.k", n), *v = ref_f("attn.v", n), *g = ref_f("attn.g", n);
    float *hp = ref_f("attn.probs", na);
    if (!q || !k || !v || !g || !hp) return;
    float *y = fnew(n), *att = fnew(na), *dq = fnew(n), *dk = fnew(n), *dv = fnew(n);
    float *scratch = fnew((long)omp_get_max_threads() * T_ * T_);
    bert_attention_forward(y, att, q, k, v, mask, B_, T_, C_, H_);
    cmp("attn.out", y, n);
    cmp("attn.out_sdpa", y, n);
    cmp("attn.probs", att, na);
    int both0 = 1;
    for (long i = 0; i < na; i++)
        if (!mask[(i / (H_ * T_ * T_)) * T_ + i % T_]) both0 &= att[i] == 0.0f && hp[i] == 0.0f;
    CHECK(both0, "masked probabilities must be exactly 0 in HF and here");
    bert_attention_backward(dq, dk, dv, scratch, g, att, q, k, v, B_, T_, C_, H_);
    cmp("attn.dq", dq, n);
    cmp("attn.dk", dk, n);
    cmp("attn.dv", dv, n);
    free(q), free(k), free(v), free(g), free(hp), free(y), free(att), free(dq), free(dk), free(dv), free(scratch);
}

/* BertAttention (ffn 0) or BertLayer (ffn 1) composed from the kernels. */
enum { WQ, BQ, WK, BK, WV, BV, WO, BO, L1W, L1B, WI, BI, WO2, BO2, L2W, L2B, NPAR };
static const char *PNAME[NPAR] = {
    "attention.self.query.weight", "attention.self.query.bias", "attention.self.key.weight",
    "attention.self.key.bias", "attention.self.value.weight", "attention.self.value.bias",
    "attention.output.dense.weight", "attention.output.dense.bias", "attention.output.LayerNorm.weight",
    "attention.output.LayerNorm.bias", "intermediate.dense.weight", "intermediate.dense.bias",
    "output.dense.weight", "output.dense.bias", "output.LayerNorm.weight", "output.LayerNorm.bias"};

static void hf_layer(const char *prefix, const int32_t *mask, int ffn, int exact) {
    const int N = N_, C = C_, I = I_;
    long n = (long)N * C, ni = (long)N * I, na = (long)B_ * H_ * T_ * T_;
    long psz[NPAR] = {C * C, C, C * C, C, C * C, C, C * C, C, C, C, (long)I * C, I, (long)C * I, C, C, C};
    int np = ffn ? NPAR : WI;
    float *p[NPAR] = {0}, *gp[NPAR] = {0};
    char name[160];
    int ok = 1;
    for (int i = 0; i < np; i++) {
        /* BertAttention names its parameters without the "attention." of BertLayer */
        snprintf(name, sizeof name, "%s.%s", prefix, ffn ? PNAME[i] : PNAME[i] + strlen("attention."));
        ok &= (p[i] = ref_f(name, psz[i])) != NULL;
        gp[i] = fnew(psz[i]);
    }
    snprintf(name, sizeof name, "%s.x", prefix);
    float *x = ref_f(name, n);
    snprintf(name, sizeof name, "%s.g", prefix);
    float *g = ref_f(name, n);
    if (!ok || !x || !g) return;
    float *q = fnew(n), *k = fnew(n), *v = fnew(n), *a = fnew(n), *att = fnew(na), *r1 = fnew(n), *h1 = fnew(n);
    float *m1 = fnew(N), *s1 = fnew(N), *m2 = fnew(N), *s2 = fnew(N), *it = fnew(ni), *gi = fnew(ni);
    float *r2 = fnew(n), *y = fnew(n), *dr2 = fnew(n), *dh1 = fnew(n), *dgi = fnew(ni), *dr1 = fnew(n);
    float *da = fnew(n), *dq = fnew(n), *dk = fnew(n), *dv = fnew(n), *dx = fnew(n);
    float *scratch = fnew((long)omp_get_max_threads() * T_ * T_);
    float eps = 1e-12f;
    /* forward: LayerNorm(x + dense(attn(q, k, v))) [then LayerNorm(h + dense(act(dense(h))))] */
    linear_forward(q, x, p[WQ], p[BQ], N, C, C, 0.0f);
    linear_forward(k, x, p[WK], p[BK], N, C, C, 0.0f);
    linear_forward(v, x, p[WV], p[BV], N, C, C, 0.0f);
    bert_attention_forward(a, att, q, k, v, mask, B_, T_, C, H_);
    linear_forward(r1, a, p[WO], p[BO], N, C, C, 0.0f);
    residual_forward(r1, r1, x, n);
    layernorm_forward(h1, m1, s1, r1, p[L1W], p[L1B], N, C, eps);
    const float *out = h1;
    if (ffn) {
        linear_forward(it, h1, p[WI], p[BI], N, C, I, 0.0f);
        gelu_forward(gi, it, ni, exact);
        linear_forward(r2, gi, p[WO2], p[BO2], N, I, C, 0.0f);
        residual_forward(r2, r2, h1, n);
        layernorm_forward(y, m2, s2, r2, p[L2W], p[L2B], N, C, eps);
        out = y;
    }
    snprintf(name, sizeof name, "%s.out", prefix);
    cmp(name, out, n);
    /* backward */
    if (ffn) {
        layernorm_backward(dr2, g, r2, m2, s2, p[L2W], N, C);
        layernorm_backward_params(gp[L2W], gp[L2B], g, r2, m2, s2, N, C);
        memcpy(dh1, dr2, sizeof(float) * n); /* the residual */
        linear_backward_input(dgi, dr2, p[WO2], N, I, C, 0);
        linear_backward_weight(gp[WO2], gi, dr2, N, I, C);
        bias_backward(gp[BO2], dr2, N, C);
        gelu_backward(dgi, dgi, it, ni, exact);
        linear_backward_input(dh1, dgi, p[WI], N, C, I, 1);
        linear_backward_weight(gp[WI], h1, dgi, N, C, I);
        bias_backward(gp[BI], dgi, N, I);
    } else {
        memcpy(dh1, g, sizeof(float) * n);
    }
    layernorm_backward(dr1, dh1, r1, m1, s1, p[L1W], N, C);
    layernorm_backward_params(gp[L1W], gp[L1B], dh1, r1, m1, s1, N, C);
    memcpy(dx, dr1, sizeof(float) * n);
    linear_backward_input(da, dr1, p[WO], N, C, C, 0);
    linear_backward_weight(gp[WO], a, dr1, N, C, C);
    bias_backward(gp[BO], dr1, N, C);
    bert_attention_backward(dq, dk, dv, scratch, da, att, q, k, v, B_, T_, C, H_);
    const float *dqkv[3] = {dq, dk, dv};
    for (int j = 0; j < 3; j++) {
        linear_backward_input(dx, dqkv[j], p[WQ + 2 * j], N, C, C, 1);
        linear_backward_weight(gp[WQ + 2 * j], x, dqkv[j], N, C, C);
        bias_backward(gp[BQ + 2 * j], dqkv[j], N, C);
    }
    snprintf(name, sizeof name, "%s.dx", prefix);
    cmp(name, dx, n);
    for (int i = 0; i < np; i++) { /* the parameter gradients the reference saved */
        snprintf(name, sizeof name, "%s.%s.grad", prefix, ffn ? PNAME[i] : PNAME[i] + strlen("attention."));
        if (st_find(REF, name)) cmp(name, gp[i], psz[i]);
    }
    for (int i = 0; i < np; i++) free(p[i]), free(gp[i]);
    float *all[] = {x, g, q, k, v, a, att, r1, h1, m1, s1, m2, s2, it, gi, r2, y, dr2, dh1, dgi, dr1, da, dq, dk, dv,
                    dx, scratch};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
}

static void hf_embeddings(void) {
    long n = (long)N_ * C_;
    int32_t *ids = ref_i("emb.ids", N_), *types = ref_i("emb.types", N_);
    float *wte = ref_f("emb.word_embeddings.weight", V_ * C_), *wpe = ref_f("emb.position_embeddings.weight", P_ * C_);
    float *wtt = ref_f("emb.token_type_embeddings.weight", TT_ * C_), *lw = ref_f("emb.LayerNorm.weight", C_);
    float *lb = ref_f("emb.LayerNorm.bias", C_), *g = ref_f("emb.g", n);
    if (!ids || !types || !wte || !wpe || !wtt || !lw || !lb || !g) return;
    float *e = fnew(n), *y = fnew(n), *m = fnew(N_), *s = fnew(N_), *de = fnew(n);
    float *dte = fnew(V_ * C_), *dpe = fnew(P_ * C_), *dtt = fnew(TT_ * C_), *dlw = fnew(C_), *dlb = fnew(C_);
    bert_embedding_forward(e, ids, NULL, wte, wpe, wtt, B_, T_, C_);
    layernorm_forward(y, m, s, e, lw, lb, N_, C_, 1e-12f);
    cmp("emb.out_notypes", y, n);
    bert_embedding_forward(e, ids, types, wte, wpe, wtt, B_, T_, C_);
    layernorm_forward(y, m, s, e, lw, lb, N_, C_, 1e-12f);
    cmp("emb.out", y, n);
    layernorm_backward(de, g, e, m, s, lw, N_, C_);
    layernorm_backward_params(dlw, dlb, g, e, m, s, N_, C_);
    bert_embedding_backward(dte, dpe, dtt, de, ids, types, 0, B_, T_, C_);
    cmp("emb.word_embeddings.weight.grad", dte, V_ * C_);
    cmp("emb.position_embeddings.weight.grad", dpe, P_ * C_);
    cmp("emb.token_type_embeddings.weight.grad", dtt, TT_ * C_);
    cmp("emb.LayerNorm.weight.grad", dlw, C_);
    cmp("emb.LayerNorm.bias.grad", dlb, C_);
    int pad0 = 1;
    for (int j = 0; j < C_; j++) pad0 &= dte[j] == 0.0f;
    CHECK(pad0, "the padding_idx row of the word embeddings must get no gradient");
    float *all[] = {wte, wpe, wtt, lw, lb, g, e, y, m, s, de, dte, dpe, dtt, dlw, dlb};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
    free(ids), free(types);
}

static void hf_pooler(void) {
    long n = (long)N_ * C_;
    float *x = ref_f("pool.x", n), *w = ref_f("pool.w", C_ * C_), *b = ref_f("pool.b", C_), *g = ref_f("pool.g", B_ * C_);
    if (!x || !w || !b || !g) return;
    float *y = fnew(B_ * C_), *dpre = fnew(B_ * C_), *dx = fnew(n), *dw = fnew(C_ * C_), *db = fnew(C_);
    bert_pooler_forward(y, x, w, b, B_, T_, C_);
    cmp("pool.out", y, B_ * C_);
    bert_pooler_backward(dx, dw, db, dpre, g, y, x, w, B_, T_, C_);
    cmp("pool.dx", dx, n);
    cmp("pool.dw", dw, C_ * C_);
    cmp("pool.db", db, C_);
    float *all[] = {x, w, b, g, y, dpre, dx, dw, db};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
}

static void hf_act_loss(void) {
    const char *acts[2] = {"gelu_new", "gelu"};
    char name[64];
    for (int exact = 0; exact < 2; exact++) {
        long n = 97;
        snprintf(name, sizeof name, "act.%s.x", acts[exact]);
        float *x = ref_f(name, n);
        snprintf(name, sizeof name, "act.%s.g", acts[exact]);
        float *g = ref_f(name, n);
        if (!x || !g) return;
        float y[97], dx[97];
        gelu_forward(y, x, n, exact);
        gelu_backward(dx, g, x, n, exact);
        snprintf(name, sizeof name, "act.%s.y", acts[exact]);
        cmp(name, y, n);
        snprintf(name, sizeof name, "act.%s.dx", acts[exact]);
        cmp(name, dx, n);
        free(x), free(g);
    }
    /* classification (B rows) and token classification (B*T rows, -100 ignored): kernels.h's cross-entropy */
    const char *ce[2] = {"cls", "tok"};
    for (int c = 0; c < 2; c++) {
        int rows = c ? N_ : B_, K = 4;
        snprintf(name, sizeof name, "loss.%s.logits", ce[c]);
        float *lg = ref_f(name, (long)rows * K), lse[N_];
        snprintf(name, sizeof name, "loss.%s.labels", ce[c]);
        int32_t *lab = ref_i(name, rows);
        if (!lg || !lab) return;
        int64_t cnt = 0;
        float loss = (float)(crossentropy_forward(lse, lg, lab, rows, K, &cnt) / (double)cnt);
        crossentropy_backward_inplace(lg, lse, lab, rows, K, 1.0f / (float)cnt);
        snprintf(name, sizeof name, "loss.%s.loss", ce[c]);
        cmp(name, &loss, 1);
        snprintf(name, sizeof name, "loss.%s.dlogits", ce[c]);
        cmp(name, lg, (long)rows * K);
        free(lg), free(lab);
    }
    float *p = ref_f("loss.mse.logits", B_), *t = ref_f("loss.mse.labels", B_);
    if (!p || !t) return;
    float loss = (float)(mse_forward(p, t, B_) / B_), dp[B_] = {0};
    mse_backward(dp, p, t, B_, 1.0f / B_);
    cmp("loss.mse.loss", &loss, 1);
    cmp("loss.mse.dlogits", dp, B_);
    free(p), free(t);
}

static void test_hf(const char *path) {
    if (!path || !*path) {
        printf("  HF comparison NOT RUN: LORA_KERNELS_BERT_REF is not set (tests/ref_kernels_bert.sh sets it)\n");
        return;
    }
    struct lerr e;
    REF = st_open(path, &e);
    CHECK(REF != NULL, "%s", e.msg);
    if (!REF) return;
    printf("  against HF (%s):\n", path);
    int32_t *mask = ref_i("mask", N_);
    if (mask) {
        hf_attention(mask);
        hf_layer("battn", mask, 0, 1);
        hf_layer("layer_gelu", mask, 1, 1);
        hf_layer("layer_gelu_new", mask, 1, 0);
    }
    hf_embeddings();
    hf_pooler();
    hf_act_loss();
    printf("  worst rel err vs HF %.2e (%s)\n", hf_worst, hf_worst_name);
    free(mask);
    st_close(REF);
}

int main(void) {
    rng_seed(&R, 11);
    test_linear();
    test_attention();
    test_embeddings();
    test_pooler();
    test_tanh_mse();
    printf("  worst finite-difference rel err %.2e\n", fd_worst);
    test_threads();
    test_hf(getenv("LORA_KERNELS_BERT_REF"));
    return tu_end("test_kernels_bert");
}
