/* test_optim: AdamW against a double-precision reference and against torch's
 * float op sequence, learning-rate schedules, gradient clipping. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "optim.h"
#include "testutil.h"

static int rel_close(double a, double b, double tol) { return fabs(a - b) <= tol * fmax(fabs(b), 1e-30); }

/* AdamW in double, textbook form: the ground truth up to float rounding. */
static void adamw_ref(double *p, double *m, double *v, const double *g, int n, int t, double lr, double b1,
                      double b2, double eps, double wd) {
    double bc1 = 1 - pow(b1, t), bc2 = 1 - pow(b2, t);
    for (int i = 0; i < n; i++) {
        p[i] *= 1 - lr * wd;
        m[i] = b1 * m[i] + (1 - b1) * g[i];
        v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
        p[i] -= lr / bc1 * m[i] / (sqrt(v[i]) / sqrt(bc2) + eps);
    }
}

/* torch's single-tensor AdamW op by op, with the Python doubles written out
 * (lr 5e-3, betas 0.9/0.999, eps 1e-8, wd 0.01), each tensor op's scalar cast
 * to float, lerp and addcmul fused as ATen's CPU kernels compute them. */
static void adamw_torch(float *p, float *m, float *v, const float *g, int n, int t) {
    const double lr = 5e-3, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.01;
    double bc1 = 1 - pow(b1, (double)t), bc2 = 1 - pow(b2, (double)t);
    double step_size = lr / bc1;
    for (int i = 0; i < n; i++) {
        p[i] = p[i] * (float)(1 - lr * wd);                          /* param.mul_(1 - lr*wd) */
        m[i] = fmaf((float)(1 - b1), g[i] - m[i], m[i]);             /* exp_avg.lerp_(grad, 1-b1) */
        v[i] = v[i] * (float)b2;                                     /* exp_avg_sq.mul_(b2) */
        v[i] = fmaf((float)(1 - b2) * g[i], g[i], v[i]);             /* .addcmul_(g, g, 1-b2) */
        float denom = sqrtf(v[i]) / (float)sqrt(bc2) + (float)eps;   /* (sqrt / bc2_sqrt).add_(eps) */
        p[i] = p[i] + ((float)(-step_size) * m[i]) / denom;          /* addcdiv_(m, denom, -step_size) */
    }
}

enum { N = 21 }; /* not a multiple of 8: exercises the vector body and the tail */

static void init_params(float *p, int n) {
    for (int i = 0; i < n; i++) p[i] = (float)(0.5 * sin(1.3 * i + 0.1) + (i % 3 == 0 ? 2.0 : 0.0));
}

/* gradients of step `round`: mixed signs and magnitudes */
static void init_grads(float *g, int n, int round) {
    for (int i = 0; i < n; i++) g[i] = (float)(0.2 * cos(0.7 * i + round) * (i % 4 == 1 ? 10.0 : 1.0));
}

static void test_adamw_reference(void) {
    const adamw_hparams h = {0.9f, 0.999f, 1e-8f, 0.01f};
    float p[N], m[N] = {0}, v[N] = {0}, g[N];
    double pd[N], md[N] = {0}, vd[N] = {0}, gd[N];
    init_params(p, N);
    for (int i = 0; i < N; i++) pd[i] = p[i];
    double worst = 0;
    for (int t = 1; t <= 3; t++) {
        init_grads(g, N, t);
        for (int i = 0; i < N; i++) gd[i] = g[i];
        adamw_step(p, m, v, g, N, t, 5e-3f, &h);
        adamw_ref(pd, md, vd, gd, N, t, 5e-3, 0.9, 0.999, 1e-8, 0.01);
        for (int i = 0; i < N; i++) {
            double r = fabs(p[i] - pd[i]) / fabs(pd[i]);
            if (r > worst) worst = r;
        }
    }
    CHECK(worst < 1e-6, "AdamW vs double reference after 3 steps: max rel err %.3g", worst);
    int ok = 1;
    for (int i = 0; i < N; i++) ok &= rel_close(m[i], md[i], 1e-5) && rel_close(v[i], vd[i], 1e-5);
    CHECK(ok, "m and v follow the reference");
}

static void test_adamw_torch_bits(void) {
    const adamw_hparams h = {0.9f, 0.999f, 1e-8f, 0.01f};
    float p[N], m[N] = {0}, v[N] = {0}, g[N];
    float pt[N], mt[N] = {0}, vt[N] = {0};
    init_params(p, N);
    memcpy(pt, p, sizeof p);
    for (int t = 1; t <= 5; t++) {
        init_grads(g, N, t);
        adamw_step(p, m, v, g, N, t, 5e-3f, &h);
        adamw_torch(pt, mt, vt, g, N, t);
    }
    CHECK(memcmp(p, pt, sizeof p) == 0 && memcmp(m, mt, sizeof m) == 0 && memcmp(v, vt, sizeof v) == 0,
          "float hyperparameters reproduce torch's double-scalar op sequence bit for bit (max |dp| %g)",
          tu_max_abs(p, pt, N));
    /* adamw_step64 with the Python double is the same step */
    float p2[N], m2[N] = {0}, v2[N] = {0};
    init_params(p2, N);
    for (int t = 1; t <= 5; t++) {
        init_grads(g, N, t);
        adamw_step64(p2, m2, v2, g, N, t, 5e-3, &h);
    }
    CHECK(memcmp(p, p2, sizeof p) == 0, "adamw_step64(0.005) == adamw_step(5e-3f)");
}

/* The vector body, the scalar tail and any split into ranges (server shards,
 * OpenMP threads) give the same bits. */
static void test_adamw_splits(void) {
    const adamw_hparams h = {0.9f, 0.95f, 1e-6f, 0.1f};
    enum { BIG = 70001 }; /* above the OpenMP threshold */
    float *p = malloc(BIG * sizeof *p), *m = calloc(BIG, sizeof *m), *v = calloc(BIG, sizeof *v);
    float *g = malloc(BIG * sizeof *g);
    float *p2 = malloc(BIG * sizeof *p), *m2 = calloc(BIG, sizeof *m), *v2 = calloc(BIG, sizeof *v);
    init_params(p, BIG);
    init_grads(g, BIG, 0);
    memcpy(p2, p, BIG * sizeof *p);
    for (int t = 1; t <= 2; t++) {
        adamw_step(p, m, v, g, BIG, t, 1e-2f, &h);
        for (size_t off = 0; off < BIG;) {
            size_t k = off % 7 == 0 ? 1 : 997; /* single elements (scalar path) and odd chunks */
            if (off + k > BIG) k = BIG - off;
            adamw_step(p2 + off, m2 + off, v2 + off, g + off, k, t, 1e-2f, &h);
            off += k;
        }
    }
    CHECK(memcmp(p, p2, BIG * sizeof *p) == 0 && memcmp(m, m2, BIG * sizeof *m) == 0 &&
              memcmp(v, v2, BIG * sizeof *v) == 0,
          "whole-range step == step in pieces, bitwise (max |dp| %g)", tu_max_abs(p, p2, BIG));
    free(p), free(m), free(v), free(g), free(p2), free(m2), free(v2);
}

static void test_adamw_semantics(void) {
    /* decoupled weight decay: zero grad, zero moments, the param still shrinks */
    const adamw_hparams h = {0.9f, 0.999f, 1e-8f, 0.1f};
    float p[3] = {1.0f, -2.0f, 0.5f}, m[3] = {0}, v[3] = {0}, g[3] = {0};
    adamw_step(p, m, v, g, 3, 1, 0.01f, &h);
    CHECK(rel_close(p[0], 1.0 * (1 - 0.01 * 0.1), 1e-7) && rel_close(p[1], -2.0 * (1 - 0.01 * 0.1), 1e-7) &&
              rel_close(p[2], 0.5 * (1 - 0.01 * 0.1), 1e-7),
          "weight decay with g = 0: %.9g %.9g %.9g", p[0], p[1], p[2]);
    CHECK(m[0] == 0 && v[0] == 0, "moments stay 0");

    /* bias correction: at t = 1 the update is lr * g / (|g| + eps), about lr */
    const adamw_hparams h0 = {0.9f, 0.999f, 1e-8f, 0.0f};
    float q[4] = {0.25f, 0.25f, 0.25f, 0.25f}, mq[4] = {0}, vq[4] = {0}, gq[4] = {0.3f, -2.0f, 1e-3f, 50.0f};
    adamw_step(q, mq, vq, gq, 4, 1, 1e-3f, &h0);
    int ok = 1;
    for (int i = 0; i < 4; i++) ok &= rel_close(fabs(q[i] - 0.25), 1e-3, 1e-4) && (q[i] < 0.25f) == (gq[i] > 0);
    CHECK(ok, "t = 1: |update| = lr (%.7g %.7g %.7g %.7g)", q[0] - 0.25, q[1] - 0.25, q[2] - 0.25, q[3] - 0.25);

    /* wd = 0: p is not touched before the update (torch skips the mul_) */
    float r[1] = {0.3f}, mr[1] = {0}, vr[1] = {0}, gr[1] = {0};
    adamw_step(r, mr, vr, gr, 1, 1, 1e-3f, &h0);
    CHECK(r[0] == 0.3f, "zero grad, no decay: unchanged (%.9g)", r[0]);
}

static void test_schedules(void) {
    const float lr = 2e-3f;
    lr_schedule s = {SCHED_CONSTANT, lr, 0, 100, 0.0f};
    CHECK(lr_at(&s, 0) == lr && lr_at(&s, 50) == lr && lr_at(&s, 1000) == lr, "constant");
    CHECK(lr_at64(&s, 3) == 2e-3, "lr_at64 gives the typed double");

    s.warmup = 10;
    CHECK(lr_at(&s, 0) == 0.0f, "warmup step 0 -> 0");
    CHECK(rel_close(lr_at(&s, 5), lr / 2, 1e-7), "warmup half %g", lr_at(&s, 5));
    CHECK(lr_at(&s, 10) == lr && lr_at(&s, 99) == lr, "after warmup -> lr");

    s.kind = SCHED_COSINE;
    s.warmup = 10;
    s.total = 110;
    CHECK(lr_at(&s, 0) == 0.0f && lr_at(&s, 10) == lr, "cosine: warmup then peak");
    CHECK(rel_close(lr_at(&s, 60), lr / 2, 1e-6), "cosine midpoint = lr/2: %g", lr_at(&s, 60));
    CHECK(lr_at(&s, 110) == 0.0f, "cosine end 0: %g", lr_at(&s, 110));
    CHECK(lr_at(&s, 500) == 0.0f, "cosine past end stays 0: %g", lr_at(&s, 500));
    CHECK(rel_close(lr_at(&s, 35), lr * 0.5 * (1 + cos(3.141592653589793 * 0.25)), 1e-6), "cosine quarter %g", lr_at(&s, 35));
    int mono = 1;
    for (int64_t k = 11; k <= 110; k++) mono &= lr_at(&s, k) <= lr_at(&s, k - 1);
    CHECK(mono, "cosine decays monotonically");
    s.min_lr_ratio = 0.1f;
    CHECK(rel_close(lr_at(&s, 110), lr * 0.1, 1e-6), "cosine end = min lr: %g", lr_at(&s, 110));
    CHECK(rel_close(lr_at(&s, 1000), lr * 0.1, 1e-6), "cosine past end = min lr: %g", lr_at(&s, 1000));
    CHECK(rel_close(lr_at(&s, 60), lr * (0.5 * 0.9 + 0.1), 1e-6), "cosine midpoint with floor: %g", lr_at(&s, 60));
    CHECK(lr_at(&s, 10) == lr, "peak unchanged by floor");

    s.kind = SCHED_LINEAR;
    s.min_lr_ratio = 0.0f;
    s.warmup = 0;
    s.total = 100;
    CHECK(lr_at(&s, 0) == lr, "linear start = lr");
    CHECK(rel_close(lr_at(&s, 50), lr / 2, 1e-7), "linear midpoint %g", lr_at(&s, 50));
    CHECK(rel_close(lr_at(&s, 75), lr / 4, 1e-7), "linear 3/4 %g", lr_at(&s, 75));
    CHECK(lr_at(&s, 100) == 0.0f && lr_at(&s, 150) == 0.0f, "linear end 0");
    s.min_lr_ratio = 0.2f;
    CHECK(rel_close(lr_at(&s, 100), lr * 0.2, 1e-6) && rel_close(lr_at(&s, 150), lr * 0.2, 1e-6), "linear floor");
    CHECK(rel_close(lr_at(&s, 50), lr * 0.6, 1e-6), "linear midpoint with floor %g", lr_at(&s, 50));

    /* degenerate: warmup >= total, as transformers: warmup, the peak at step
     * warmup (progress 0), then the floor */
    lr_schedule d = {SCHED_COSINE, lr, 10, 5, 0.0f};
    CHECK(lr_at(&d, 5) == lr / 2 && lr_at(&d, 10) == lr && lr_at(&d, 11) == 0.0f, "warmup past total");
}

static void test_clip(void) {
    float g[5] = {3, 4, 0, 0, 0};
    CHECK(grad_sq_sum(g, 5) == 25.0, "sum of squares");
    CHECK(grad_sq_sum(g, 0) == 0.0, "empty sum");
    float tiny[2] = {1e-30f, 1e-30f};
    CHECK(grad_sq_sum(tiny, 2) > 0, "double accumulation keeps 1e-60");
    CHECK(clip_coef(10.0, 0.0f) == 1.0f, "max_norm 0: no clipping");
    CHECK(clip_coef(10.0, -1.0f) == 1.0f, "max_norm < 0: no clipping");
    CHECK(rel_close(clip_coef(10.0, 1.0f), 1.0 / (10.0 + 1e-6), 1e-6), "clip 10 -> 1: %.9g", clip_coef(10.0, 1.0f));
    CHECK(clip_coef(0.5, 1.0f) == 1.0f, "norm below max: 1");
    CHECK(clip_coef(0.0, 1.0f) == 1.0f, "zero norm: 1");
    CHECK(clip_coef(INFINITY, 1.0f) == 0.0f, "inf norm: 0");
    CHECK(isnan(clip_coef(NAN, 1.0f)), "NaN norm: NaN, as torch");
    grad_scale(g, 5, 0.5f);
    CHECK(g[0] == 1.5f && g[1] == 2.0f && g[2] == 0.0f, "grad_scale");
}

/* The outcomes past "applied": values that the update made non-finite, and
 * a run of skips long enough to count as divergence. */
static void test_divergence(void) {
    optim_policy pol = {{0.9f, 0.999f, 1e-8f, 1e10f}, {SCHED_CONSTANT, 1e30f, 0, 10, 0}, 0, 0};
    float p[4] = {0, 0.5f, -1, 2}, m[4] = {0}, v[4] = {0}, g[4] = {0.1f, 0.2f, 0.3f, 0.4f};
    int64_t applied = 0;
    optim_outcome oc = optim_update(&pol, p, m, v, g, 4, 1, 0.5, 0, &applied, NULL);
    CHECK(oc == OPT_DIVERGED, "lr 1e30 and weight decay 1e10: outcome %d, want OPT_DIVERGED (%g %g)", (int)oc, p[0], p[1]);
    pol.hp.weight_decay = 0, pol.sched.lr = 1e-3f;
    float q[2] = {1, 2}, mq[2] = {0}, vq[2] = {0}, gq[2] = {0.1f, 0.2f};
    CHECK(optim_update(&pol, q, mq, vq, gq, 2, 1, 0.2, 0, &applied, NULL) == OPT_APPLIED, "a sane step is applied");
    /* skips in a row: the 3rd with max 3 diverges; an applied step resets the count; max 0 never stops */
    int64_t run = 0;
    optim_outcome seq[] = {OPT_SKIPPED, OPT_SKIPPED, OPT_APPLIED, OPT_SKIPPED, OPT_SKIPPED, OPT_SKIPPED};
    optim_outcome want[] = {OPT_SKIPPED, OPT_SKIPPED, OPT_APPLIED, OPT_SKIPPED, OPT_SKIPPED, OPT_DIVERGED};
    int ok = 1;
    for (int i = 0; i < 6; i++) ok &= optim_skip_limit(seq[i], 3, &run) == want[i];
    CHECK(ok && run == 3, "skip limit 3 over S S A S S S (run %lld)", (long long)run);
    run = 0;
    ok = 1;
    for (int i = 0; i < 100; i++) ok &= optim_skip_limit(OPT_SKIPPED, 0, &run) == OPT_SKIPPED;
    CHECK(ok, "max 0 never stops");
    CHECK(optim_skip_limit(OPT_ABORT, 1, &run) == OPT_ABORT && optim_skip_limit(OPT_DIVERGED, 0, &run) == OPT_DIVERGED,
          "abort and diverged pass through");
}

int main(void) {
    test_adamw_reference();
    test_adamw_torch_bits();
    test_adamw_splits();
    test_adamw_semantics();
    test_schedules();
    test_clip();
    test_divergence();
    return tu_end("test_optim");
}
