/*
 * Each layer's backward against central finite differences of its forward.
 * f(x) = sum(g * forward(x)) for a fixed random g; the kernel's backward with
 * dout = g must equal df/dx. Kernels run in float, so h = 1e-2 and the check
 * is a relative 2-norm error below 2e-3 (measured: ~1e-5).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "kernels.h"
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

/* A kernel under test: y = f(x), with its fixed extra inputs in ctx. */
typedef void (*fwd_fn)(float *y, const float *x, void *ctx);

static double fd_check(const char *name, fwd_fn f, void *ctx, float *x, long nx, long ny, const float *g,
                       const float *analytic) {
    float *y = malloc(sizeof(float) * ny), *num = malloc(sizeof(float) * nx);
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
    printf("  %-22s rel err vs finite differences %.2e\n", name, err);
    CHECK(err < 2e-3, "%s: backward differs from finite differences (rel err %g)", name, err);
    free(y);
    free(num);
    return err;
}

/* ---- layernorm */
typedef struct { const float *w, *b; float *mean, *rstd; int N, C; } ln_ctx;
static void ln_f(float *y, const float *x, void *c) {
    ln_ctx *k = c;
    layernorm_forward(y, k->mean, k->rstd, x, k->w, k->b, k->N, k->C, 1e-5f);
}
static void test_layernorm(void) {
    int N = 3, C = 16;
    float x[48], w[16], b[16], g[48], mean[3], rstd[3], y[48], dx[48] = {0};
    fill(x, 48, 2), fill(w, 16, 1), fill(b, 16, 1), fill(g, 48, 1);
    ln_ctx k = {w, b, mean, rstd, N, C};
    ln_f(y, x, &k);
    layernorm_backward(dx, g, x, mean, rstd, w, N, C);
    fd_check("layernorm", ln_f, &k, x, 48, 48, g, dx);
    /* the backward accumulates (fd_check left the stats of a perturbed x: redo the forward) */
    ln_f(y, x, &k);
    float dx2[48];
    for (int i = 0; i < 48; i++) dx2[i] = 1.0f;
    layernorm_backward(dx2, g, x, mean, rstd, w, N, C);
    double worst = 0;
    for (int i = 0; i < 48; i++) worst = fmax(worst, fabs(dx2[i] - 1.0f - dx[i]));
    CHECK(worst < 1e-6, "layernorm_backward must add into dx (off by %g)", worst);
}

/* ---- gelu */
static int gelu_exact;
static void gelu_f(float *y, const float *x, void *c) {
    (void)c;
    gelu_forward(y, x, 40, gelu_exact);
}
static void test_gelu(void) {
    float x[40], g[40], dx[40];
    fill(x, 40, 3), fill(g, 40, 1);
    for (gelu_exact = 0; gelu_exact < 2; gelu_exact++) {
        gelu_backward(dx, g, x, 40, gelu_exact);
        fd_check(gelu_exact ? "gelu (erf)" : "gelu (tanh)", gelu_f, NULL, x, 40, 40, g, dx);
    }
    /* a known value: gelu_new(1) = 0.8411920 (PyTorch) */
    float one = 1.0f, y;
    gelu_forward(&y, &one, 1, 0);
    CHECK(fabsf(y - 0.8411920f) < 1e-6f, "gelu_new(1) = %.7f, expected 0.8411920", y);
}

/* ---- attention */
typedef struct { float *att; int B, T, C, H; } att_ctx;
static void att_f(float *y, const float *x, void *c) {
    att_ctx *k = c;
    attention_forward(y, k->att, x, k->B, k->T, k->C, k->H);
}
static void test_attention(void) {
    int B = 2, T = 5, C = 8, H = 2;
    long nx = (long)B * T * 3 * C, ny = (long)B * T * C;
    float *x = malloc(sizeof(float) * nx), *y = malloc(sizeof(float) * ny), *g = malloc(sizeof(float) * ny);
    float *att = malloc(sizeof(float) * B * H * T * T), *dx = malloc(sizeof(float) * nx);
    float *scratch = malloc(sizeof(float) * 64 * T * T);
    fill(x, nx, 1.5f), fill(g, ny, 1);
    att_ctx k = {att, B, T, C, H};
    att_f(y, x, &k);
    /* causal: probabilities above the diagonal are zero, rows sum to 1 */
    double worst = 0;
    for (int r = 0; r < B * H * T; r++) {
        int t = r % T;
        double s = 0;
        for (int j = 0; j < T; j++) {
            s += att[(long)r * T + j];
            if (j > t) worst = fmax(worst, fabs(att[(long)r * T + j]));
        }
        worst = fmax(worst, fabs(s - 1));
    }
    CHECK(worst < 1e-6, "attention probabilities not causal/normalized (%g)", worst);
    attention_backward(dx, scratch, g, att, x, B, T, C, H);
    fd_check("attention", att_f, &k, x, nx, ny, g, dx);
    free(x), free(y), free(g), free(att), free(dx), free(scratch);
}

/* ---- cross-entropy: f(logits) = loss sum */
typedef struct { float *lse; const int32_t *tg; int N, V; } ce_ctx;
static void ce_f(float *y, const float *x, void *c) {
    ce_ctx *k = c;
    y[0] = (float)crossentropy_forward(k->lse, x, k->tg, k->N, k->V, NULL);
}
static void test_crossentropy(void) {
    int N = 4, V = 7;
    float x[28], lse[4], one = 1.0f;
    int32_t tg[4] = {3, -1, 0, 6};
    fill(x, 28, 2);
    ce_ctx k = {lse, tg, N, V};
    float y;
    int64_t n = 0;
    crossentropy_forward(lse, x, tg, N, V, &n);
    CHECK(n == 3, "targets counted %lld, expected 3 (one row ignored)", (long long)n);
    ce_f(&y, x, &k);
    float d[28];
    memcpy(d, x, sizeof d);
    crossentropy_backward_inplace(d, lse, tg, N, V, 1.0f);
    fd_check("cross-entropy", ce_f, &k, x, 28, 1, &one, d);
    /* value: row 0 loss = logsumexp(x0) - x0[3] */
    double s = 0;
    for (int j = 0; j < V; j++) s += exp(x[j]);
    CHECK(fabs(lse[0] - log(s)) < 1e-5, "lse row 0 %g vs %g", lse[0], log(s));
    /* the loss sum against a direct computation over the three rows that count */
    double want = 0;
    for (int i = 0; i < N; i++) {
        if (tg[i] < 0) continue;
        double si = 0;
        for (int j = 0; j < V; j++) si += exp(x[i * V + j]);
        want += log(si) - x[i * V + tg[i]];
    }
    ce_f(&y, x, &k);
    CHECK(fabs(y - want) < 1e-5 * fabs(want), "cross-entropy loss sum %.7g, direct %.7g", y, want);
}

/* ---- matmul input gradient */
typedef struct { const float *w, *b; int N, C, OC; } mm_ctx;
static void mm_f(float *y, const float *x, void *c) {
    mm_ctx *k = c;
    matmul_forward(y, x, k->w, k->b, k->N, k->C, k->OC, 0.0f);
}
static void test_matmul(void) {
    int N = 3, C = 5, OC = 4;
    float x[15], w[20], b[4], g[12], dx[15];
    fill(x, 15, 1), fill(w, 20, 1), fill(b, 4, 1), fill(g, 12, 1);
    mm_ctx k = {w, b, N, C, OC};
    matmul_backward_input(dx, g, w, N, C, OC, 0);
    fd_check("matmul input grad", mm_f, &k, x, 15, 12, g, dx);
    /* forward against a direct loop */
    float y[12];
    mm_f(y, x, &k);
    double worst = 0;
    for (int i = 0; i < N; i++)
        for (int o = 0; o < OC; o++) {
            double s = b[o];
            for (int c = 0; c < C; c++) s += (double)x[i * C + c] * w[c * OC + o];
            worst = fmax(worst, fabs(s - y[i * OC + o]));
        }
    CHECK(worst < 1e-5, "matmul_forward differs from a direct loop by %g", worst);
}

/* ---- parameter gradients: LayerNorm weight and bias, a linear layer's weight and bias, embeddings.
 * Each forward is seen as a function of the parameter (the input fixed). */
typedef struct { const float *x, *w, *b; float *mean, *rstd; int N, C, OC, which; const int32_t *tok; } par_ctx;
static void ln_w_f(float *y, const float *p, void *c) {
    par_ctx *k = c;
    layernorm_forward(y, k->mean, k->rstd, k->x, k->which ? k->w : p, k->which ? p : k->b, k->N, k->C, 1e-5f);
}
static void mm_w_f(float *y, const float *p, void *c) {
    par_ctx *k = c;
    matmul_forward(y, k->x, k->which ? k->w : p, k->which ? p : k->b, k->N, k->C, k->OC, 0.0f);
}
static void emb_f(float *y, const float *p, void *c) {
    par_ctx *k = c; /* p: wte (V, C) then wpe (T, C) in one buffer; N = B * T rows, OC = V */
    embedding_forward(y, k->tok, p, p + (long)k->OC * k->C, 1, k->N, k->C);
}
static void test_param_grads(void) {
    int N = 4, C = 8, OC = 5;
    float x[32], w[8], b[8], g[32], mean[4], rstd[4], dw[8] = {0}, db[8] = {0};
    fill(x, 32, 2), fill(w, 8, 1), fill(b, 8, 1), fill(g, 32, 1);
    par_ctx k = {x, w, b, mean, rstd, N, C, 0, 0, NULL};
    float y[32];
    layernorm_forward(y, mean, rstd, x, w, b, N, C, 1e-5f);
    layernorm_backward_params(dw, db, g, x, mean, rstd, N, C);
    fd_check("layernorm weight grad", ln_w_f, &k, w, 8, 32, g, dw);
    k.which = 1;
    fd_check("layernorm bias grad", ln_w_f, &k, b, 8, 32, g, db);

    float xm[4 * 8], wm[8 * 5], bm[5], gm[4 * 5], dwm[8 * 5] = {0}, dbm[5] = {0};
    fill(xm, 32, 1), fill(wm, 40, 1), fill(bm, 5, 1), fill(gm, 20, 1);
    par_ctx km = {xm, wm, bm, NULL, NULL, N, C, OC, 0, NULL};
    matmul_backward_weight(dwm, xm, gm, N, C, OC);
    fd_check("matmul weight grad", mm_w_f, &km, wm, 40, 20, gm, dwm);
    bias_backward(dbm, gm, N, OC);
    km.which = 1;
    fd_check("bias grad", mm_w_f, &km, bm, 5, 20, gm, dbm);

    /* embeddings: a token repeated, so rows accumulate */
    enum { V = 6, T = 5, CE = 4 };
    int32_t tok[T] = {2, 0, 2, 5, 1};
    float p[(V + T) * CE], ge[T * CE], dp[(V + T) * CE] = {0};
    fill(p, (V + T) * CE, 1), fill(ge, T * CE, 1);
    par_ctx ke = {NULL, NULL, NULL, NULL, NULL, T, CE, V, 0, tok};
    embedding_backward(dp, dp + V * CE, ge, tok, 1, T, CE);
    fd_check("embedding wte+wpe grad", emb_f, &ke, p, (V + T) * CE, T * CE, ge, dp);
}

static void test_exp(void) {
    double worst = 0;
    for (float x = -87.0f; x < 88.0f; x += 0.001953125f) {
        double ref = exp((double)x), got = kernels_exp(x);
        double rel = fabs(got - ref) / ref;
        if (rel > worst) worst = rel;
    }
    printf("  %-22s max rel err vs exp() %.2e\n", "exp_fast", worst);
    CHECK(worst < 3e-7, "kernels_exp max relative error %g", worst);
    CHECK(kernels_exp(-200.0f) < 1e-37f, "exp(-200) must underflow to ~0");
    CHECK(isnan(kernels_exp(NAN)), "exp(NaN) must be NaN (a diverged logit stays visible)");
}

int main(void) {
    test_exp();
    rng_seed(&R, 7);
    test_layernorm();
    test_gelu();
    test_attention();
    test_crossentropy();
    test_matmul();
    test_param_grads();
    return tu_end("test_kernels");
}
