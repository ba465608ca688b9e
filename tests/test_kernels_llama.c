/*
 * The LLaMA-family kernels (include/kernels_llama.h):
 *  - each backward against central finite differences of its forward
 *    (f(x) = sum(g * forward(x)) for a fixed random g; as tests/test_kernels.c:
 *    h = 1e-2, relative 2-norm error below 2e-3);
 *  - results bitwise equal with 1, 2 and 3 OpenMP threads;
 *  - with LORA_KERNELS_LLAMA_REF=FILE (tests/ref/kernels_llama_ref.py writes
 *    it; tests/ref_kernels_llama.sh does both), RoPE tables and rotation,
 *    attention (probabilities, output, gradients), RMSNorm and SwiGLU against
 *    the values HF transformers computed, relative error at most 1e-5 per
 *    tensor. Without the variable that comparison is reported as not run.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "kernels.h"
#include "kernels_llama.h"
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
static float *falloc(long n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(float)); }

/* A kernel under test: y = f(x), with its fixed extra inputs in ctx. */
typedef void (*fwd_fn)(float *y, const float *x, void *ctx);

static double worst_fd;

static double fd_check(const char *name, fwd_fn f, void *ctx, float *x, long nx, long ny, const float *g,
                       const float *analytic) {
    float *y = falloc(ny), *num = falloc(nx);
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
    printf("  %-34s rel err vs finite differences %.2e\n", name, err);
    CHECK(err < 2e-3, "%s: backward differs from finite differences (rel err %g)", name, err);
    worst_fd = fmax(worst_fd, err);
    free(y);
    free(num);
    return err;
}

/* ---- exp: kernels_llama.c's copy of exp_fast must be kernels.c's (seen through silu with up = 1) */
static void test_exp_copy(void) {
    long n = 0, bad = 0;
    float g[1024], one[1024], h[1024];
    for (int i = 0; i < 1024; i++) one[i] = 1.0f;
    for (float x0 = -95.0f; x0 < 95.0f; x0 += 1024 * 0.00390625f) {
        for (int i = 0; i < 1024; i++) g[i] = x0 + i * 0.00390625f;
        swiglu_forward(h, g, one, 1024);
        for (int i = 0; i < 1024; i++, n++) {
            float want = g[i] / (1.0f + kernels_exp(-g[i]));
            bad += memcmp(&want, &h[i], sizeof want) != 0;
        }
    }
    CHECK(bad == 0, "silu differs from x / (1 + kernels_exp(-x)) at %ld of %ld points", bad, n);
}

/* ---- RMSNorm */
typedef struct { const float *w; float *rstd; int N, C; float eps; } rms_ctx;
static void rms_fx(float *y, const float *x, void *c) {
    rms_ctx *k = c;
    rmsnorm_forward(y, k->rstd, x, k->w, k->N, k->C, k->eps);
}
typedef struct { const float *x; float *rstd; int N, C; float eps; } rmsw_ctx;
static void rms_fw(float *y, const float *w, void *c) {
    rmsw_ctx *k = c;
    rmsnorm_forward(y, k->rstd, k->x, w, k->N, k->C, k->eps);
}
static void test_rmsnorm(void) {
    enum { N = 4, C = 70 }; /* C > 64: two column blocks in the params gradient */
    float x[N * C], w[C], g[N * C], y[N * C], rstd[N], dx[N * C] = {0}, dw[C] = {0};
    fill(x, N * C, 2), fill(w, C, 1.5f), fill(g, N * C, 1);
    rms_ctx k = {w, rstd, N, C, 1e-5f};
    rms_fx(y, x, &k);
    /* value: row 0 against a direct double computation */
    double ss = 0, worst = 0;
    for (int j = 0; j < C; j++) ss += (double)x[j] * x[j];
    double r = 1.0 / sqrt(ss / C + 1e-5);
    for (int j = 0; j < C; j++) worst = fmax(worst, fabs(y[j] - w[j] * x[j] * r) / (fabs(w[j] * x[j] * r) + 1e-30));
    CHECK(worst < 1e-6, "rmsnorm row 0 differs from a direct computation (rel %g)", worst);
    rmsnorm_backward(dx, g, x, rstd, w, N, C);
    rmsnorm_backward_params(dw, g, x, rstd, N, C);
    fd_check("rmsnorm dx", rms_fx, &k, x, N * C, N * C, g, dx);
    rmsw_ctx kw = {x, rstd, N, C, 1e-5f};
    rms_fx(y, x, &k); /* fd_check left the stats of a perturbed x */
    fd_check("rmsnorm dw", rms_fw, &kw, w, C, N * C, g, dw);
    /* both backwards accumulate */
    rms_fx(y, x, &k);
    float dx2[N * C], dw2[C];
    for (int i = 0; i < N * C; i++) dx2[i] = 1.0f;
    for (int i = 0; i < C; i++) dw2[i] = -2.0f;
    rmsnorm_backward(dx2, g, x, rstd, w, N, C);
    rmsnorm_backward_params(dw2, g, x, rstd, N, C);
    worst = 0;
    for (int i = 0; i < N * C; i++) worst = fmax(worst, fabs(dx2[i] - 1.0f - dx[i]));
    for (int i = 0; i < C; i++) worst = fmax(worst, fabs(dw2[i] + 2.0f - dw[i]));
    CHECK(worst < 1e-5, "rmsnorm backwards must add into dx and dw (off by %g)", worst);
}

/* ---- RoPE on a strided buffer (ld > H*d: the other columns must stay untouched) */
typedef struct { const float *cos, *sin; int B, T, H, d, ld; } rope_ctx;
static void rope_f(float *y, const float *x, void *c) {
    rope_ctx *k = c;
    memcpy(y, x, sizeof(float) * (size_t)k->B * k->T * k->ld);
    rope_forward_inplace(y, k->cos, k->sin, k->B, k->T, k->H, k->d, k->ld);
}
static void test_rope(void) {
    enum { B = 2, T = 6, H = 3, d = 10, ld = H * d + 5, NX = B * T * ld };
    float inv[d / 2], cs[T * d / 2], sn[T * d / 2];
    rope_inv_freq(inv, d, 10000.0);
    rope_table(cs, sn, inv, T, d, 1.0f);
    double worst = 0;
    for (int i = 0; i < d / 2; i++) {
        double want = pow(10000.0, -2.0 * i / d);
        worst = fmax(worst, fabs(inv[i] - want) / want);
        for (int t = 0; t < T; t++) {
            worst = fmax(worst, fabs(cs[t * d / 2 + i] - cos(t * want)));
            worst = fmax(worst, fabs(sn[t * d / 2 + i] - sin(t * want)));
        }
    }
    CHECK(worst < 1e-6, "rope tables differ from theta^(-2i/d) and cos/sin by %g", worst);
    float *x = falloc(NX), *y = falloc(NX), *g = falloc(NX), *dx = falloc(NX);
    fill(x, NX, 1.5f), fill(g, NX, 1);
    rope_ctx k = {cs, sn, B, T, H, d, ld};
    rope_f(y, x, &k);
    /* position 0 is the identity, padding columns untouched, each (i, i + d/2) pair keeps its norm */
    double wid = 0, wpad = 0, wnorm = 0;
    for (int n = 0; n < B * T; n++) {
        for (int j = 0; j < ld; j++) {
            long o = (long)n * ld + j;
            if (j >= H * d) wpad = fmax(wpad, fabs(y[o] - x[o]));
            else if (n % T == 0) wid = fmax(wid, fabs(y[o] - x[o]));
        }
        for (int hd = 0; hd < H; hd++)
            for (int i = 0; i < d / 2; i++) {
                long a = (long)n * ld + hd * d + i, b = a + d / 2;
                wnorm = fmax(wnorm, fabs(hypot(y[a], y[b]) - hypot(x[a], x[b])));
            }
    }
    CHECK(wid == 0 && wpad == 0, "rope: position 0 changed by %g, padding columns by %g", wid, wpad);
    CHECK(wnorm < 1e-6, "rope must rotate (pair norms changed by %g)", wnorm);
    /* the backward of y = Rx, in place on a copy of g */
    memcpy(dx, g, sizeof(float) * NX);
    rope_backward_inplace(dx, cs, sn, B, T, H, d, ld);
    fd_check("rope (strided)", rope_f, &k, x, NX, NX, g, dx);
    /* backward(forward(x)) = x */
    memcpy(y, x, sizeof(float) * NX);
    rope_forward_inplace(y, cs, sn, B, T, H, d, ld);
    rope_backward_inplace(y, cs, sn, B, T, H, d, ld);
    CHECK(tu_max_abs(y, x, NX) < 1e-6, "rope backward is not the inverse rotation (%g)", tu_max_abs(y, x, NX));
    free(x), free(y), free(g), free(dx);
}

/* ---- attention on one fused buffer [q | k | v | pad] of row stride ld */
typedef struct { float *att; int B, T, Hq, Hkv, d, ld, window; } att_ctx;
static void att_f(float *y, const float *x, void *c) {
    att_ctx *k = c;
    const float *q = x, *kk = x + k->Hq * k->d, *v = kk + k->Hkv * k->d;
    gqa_attention_forward(y, k->att, q, kk, v, k->B, k->T, k->Hq, k->Hkv, k->d, k->ld, k->ld, k->ld, k->window);
}
static void test_attention_one(int Hq, int Hkv, int window) {
    int B = 2, T = 6, d = 4, ld = (Hq + 2 * Hkv) * d + 3;
    long nx = (long)B * T * ld, ny = (long)B * T * Hq * d;
    float *x = falloc(nx), *y = falloc(ny), *g = falloc(ny), *dx = falloc(nx);
    float *att = falloc((long)B * Hq * T * T), *scratch = falloc((long)gqa_attention_scratch_floats(T));
    fill(x, nx, 1.5f), fill(g, ny, 1);
    att_ctx k = {att, B, T, Hq, Hkv, d, ld, window};
    att_f(y, x, &k);
    /* probabilities: zero outside the visible keys, rows sum to 1 */
    double worst = 0;
    for (long r = 0; r < (long)B * Hq * T; r++) {
        int t = (int)(r % T);
        double s = 0;
        for (int j = 0; j < T; j++) {
            float p = att[r * T + j];
            s += p;
            if (j > t || (window > 0 && t - j >= window)) worst = fmax(worst, fabs(p));
        }
        worst = fmax(worst, fabs(s - 1));
    }
    CHECK(worst < 1e-6, "G=%d window %d: attention probabilities not causal/normalized (%g)", Hq / Hkv, window, worst);
    float *q = dx, *kk = dx + Hq * d, *v = kk + Hkv * d;
    gqa_attention_backward(q, kk, v, scratch, g, att, x, x + Hq * d, x + (Hq + Hkv) * d, B, T, Hq, Hkv, d, ld, ld, ld,
                           window);
    char name[64];
    snprintf(name, sizeof name, "attention Hq=%d Hkv=%d window=%d", Hq, Hkv, window);
    fd_check(name, att_f, &k, x, nx, ny, g, dx);
    /* the backward accumulates: a second call doubles the gradient */
    att_f(y, x, &k);
    float *dx2 = falloc(nx);
    memcpy(dx2, dx, sizeof(float) * (size_t)nx);
    gqa_attention_backward(dx2, dx2 + Hq * d, dx2 + (Hq + Hkv) * d, scratch, g, att, x, x + Hq * d,
                           x + (Hq + Hkv) * d, B, T, Hq, Hkv, d, ld, ld, ld, window);
    worst = 0;
    for (long i = 0; i < nx; i++) worst = fmax(worst, fabs(dx2[i] - 2 * dx[i]));
    CHECK(worst < 1e-5, "gqa_attention_backward must add into dq, dk, dv (off by %g)", worst);
    free(x), free(y), free(g), free(dx), free(dx2), free(att), free(scratch);
}
static void test_attention(void) {
    test_attention_one(2, 2, 0);
    test_attention_one(4, 2, 0);
    test_attention_one(4, 1, 0);
    test_attention_one(4, 2, 3);
    /* G = 1 and no window is the GPT-2 kernel's attention: same output */
    int B = 2, T = 5, C = 12, H = 3, d = 4;
    long nx = (long)B * T * 3 * C, ny = (long)B * T * C;
    float *x = falloc(nx), *y1 = falloc(ny), *y2 = falloc(ny), *att = falloc((long)B * H * T * T);
    fill(x, nx, 1.5f);
    attention_forward(y1, att, x, B, T, C, H);
    gqa_attention_forward(y2, att, x, x + C, x + 2 * C, B, T, H, H, d, 3 * C, 3 * C, 3 * C, 0);
    CHECK(tu_rel_err(y2, y1, ny) < 1e-6, "G = 1 attention differs from attention_forward (%g)",
          tu_rel_err(y2, y1, ny));
    free(x), free(y1), free(y2), free(att);
}

/* ---- SwiGLU: x = [gate | up] */
static long sw_n;
static void sw_f(float *y, const float *x, void *c) {
    (void)c;
    swiglu_forward(y, x, x + sw_n, sw_n);
}
static void test_swiglu(void) {
    enum { n = 60 };
    float x[2 * n], g[n], d[2 * n] = {0};
    sw_n = n;
    fill(x, 2 * n, 6), fill(g, n, 1);
    x[0] = -30.0f, x[1] = 25.0f, x[2] = 0.0f; /* the tails and 0 */
    swiglu_backward(d, d + n, g, x, x + n, n);
    fd_check("swiglu (dgate, dup)", sw_f, NULL, x, 2 * n, n, g, d);
    /* a known value: silu(1) = 0.7310586 (PyTorch) */
    float one = 1.0f, y;
    swiglu_forward(&y, &one, &one, 1);
    CHECK(fabsf(y - 0.7310586f) < 1e-6f, "silu(1) = %.7f, expected 0.7310586", y);
}

/* ---- bitwise the same for any thread count: every kernel's outputs, concatenated */
static float *run_all(int threads, long *len) {
    omp_set_num_threads(threads);
    rng_seed(&R, 99);
    int N = 37, C = 150, B = 3, T = 17, Hq = 6, Hkv = 2, d = 8, ld = (Hq + 2 * Hkv) * d;
    long nsw = 10007, nqkv = (long)B * T * ld, no = (long)B * T * Hq * d, natt = (long)B * Hq * T * T;
    long total = 2L * N * C + C + N + 2 * nqkv + no + natt + 3 * nsw + T * d;
    float *res = falloc(total), *p = res;
    float *x = falloc((long)N * C), *w = falloc(C), *g = falloc((long)N * C);
    fill(x, (long)N * C, 2), fill(w, C, 1), fill(g, (long)N * C, 1);
    rmsnorm_forward(p, p + (long)N * C, x, w, N, C, 1e-6f);
    float *rstd = p + (long)N * C;
    p += (long)N * C + N;
    rmsnorm_backward(p, g, x, rstd, w, N, C);
    p += (long)N * C;
    rmsnorm_backward_params(p, g, x, rstd, N, C);
    p += C;
    float inv[4];
    rope_inv_freq(inv, d, 500000.0);
    float *cs = p, *sn = p + T * d / 2;
    rope_table(cs, sn, inv, T, d, 1.0f);
    p += T * d;
    float *qkv = p, *gy = falloc(no);
    fill(qkv, nqkv, 1.5f), fill(gy, no, 1);
    rope_forward_inplace(qkv, cs, sn, B, T, Hq, d, ld);
    rope_forward_inplace(qkv + Hq * d, cs, sn, B, T, Hkv, d, ld);
    p += nqkv;
    float *out = p, *att = p + no;
    gqa_attention_forward(out, att, qkv, qkv + Hq * d, qkv + (Hq + Hkv) * d, B, T, Hq, Hkv, d, ld, ld, ld, 5);
    p += no + natt;
    float *scratch = falloc((long)gqa_attention_scratch_floats(T));
    gqa_attention_backward(p, p + Hq * d, p + (Hq + Hkv) * d, scratch, gy, att, qkv, qkv + Hq * d,
                           qkv + (Hq + Hkv) * d, B, T, Hq, Hkv, d, ld, ld, ld, 5);
    rope_backward_inplace(p, cs, sn, B, T, Hq, d, ld);
    p += nqkv;
    float *gate = falloc(nsw), *up = falloc(nsw), *dh = falloc(nsw);
    fill(gate, nsw, 8), fill(up, nsw, 1), fill(dh, nsw, 1);
    swiglu_forward(p, gate, up, nsw);
    swiglu_backward(p + nsw, p + 2 * nsw, dh, gate, up, nsw);
    p += 3 * nsw;
    CHECK(p - res == total, "run_all layout");
    free(x), free(w), free(g), free(gy), free(scratch), free(gate), free(up), free(dh);
    *len = total;
    return res;
}
static void test_threads(void) {
    int keep = omp_get_max_threads();
    long n1, n2, n3;
    float *r1 = run_all(1, &n1), *r2 = run_all(2, &n2), *r3 = run_all(3, &n3);
    CHECK(memcmp(r1, r2, sizeof(float) * (size_t)n1) == 0, "results differ between 1 and 2 threads (max %g)",
          tu_max_abs(r1, r2, n1));
    CHECK(memcmp(r1, r3, sizeof(float) * (size_t)n1) == 0, "results differ between 1 and 3 threads (max %g)",
          tu_max_abs(r1, r3, n1));
    printf("  %-34s %s\n", "1 vs 2 vs 3 threads", memcmp(r1, r2, sizeof(float) * (size_t)n1) ||
           memcmp(r1, r3, sizeof(float) * (size_t)n1) ? "DIFFER" : "bitwise equal");
    free(r1), free(r2), free(r3);
    omp_set_num_threads(keep);
}

/* ---- against HF transformers' own values */
static st_file *REF;
static double worst_hf;
static float *ref_get(const char *name, long n) {
    struct lerr e;
    const st_tensor *t = st_find(REF, name);
    CHECK(t && t->numel == n, "reference tensor %s missing or of %lld values (expected %ld)", name,
          t ? (long long)t->numel : -1LL, n);
    if (!t || t->numel != n) return NULL;
    float *v = falloc(n);
    if (st_to_f32(v, t, &e) != 0) {
        CHECK(0, "%s", e.msg);
        free(v);
        return NULL;
    }
    return v;
}
static int ref_ints(const char *name, int32_t *out, long n) {
    struct lerr e;
    const st_tensor *t = st_find(REF, name);
    CHECK(t && t->numel == n && st_to_i32(out, t, &e) == 0, "reference tensor %s missing or wrong", name);
    return t && t->numel == n ? 0 : -1;
}
static double ref_f64(const char *name) {
    const st_tensor *t = st_find(REF, name);
    double v = 0;
    CHECK(t && t->dtype == ST_F64 && t->numel == 1, "reference tensor %s missing or not one F64", name);
    if (t && t->dtype == ST_F64 && t->numel == 1) memcpy(&v, t->data, sizeof v);
    return v;
}
static void cmp(const char *name, const float *got, const float *ref, long n) {
    if (!ref) return;
    double rel = tu_rel_err(got, ref, n), mx = tu_max_abs(got, ref, n);
    printf("  %-34s rel err vs HF %.2e (max abs %.2e)\n", name, rel, mx);
    CHECK(rel <= 1e-5, "%s differs from HF: rel err %g > 1e-5 (max abs %g)", name, rel, mx);
    worst_hf = fmax(worst_hf, rel);
}
/* Float values equal bit for bit, and the largest distance in units in the last place. */
static void cmp_ulp(const char *name, const float *got, const float *ref, long n) {
    if (!ref) return;
    long same = 0, worst = 0;
    for (long i = 0; i < n; i++) {
        int32_t a, b;
        memcpy(&a, &got[i], 4), memcpy(&b, &ref[i], 4);
        long u = labs((long)a - (long)b);
        same += u == 0;
        worst = u > worst ? u : worst;
    }
    printf("  %-34s %ld/%ld bitwise equal to HF, worst %ld ulp\n", name, same, n, worst);
}

static void hf_attention_case(int c) {
    char nm[64], label[96];
    int32_t dims[6];
#define REFN(s) (snprintf(nm, sizeof nm, "attn%d.%s", c, s), nm)
    if (ref_ints(REFN("dims"), dims, 6)) return;
    int B = dims[0], T = dims[1], Hq = dims[2], Hkv = dims[3], d = dims[4], window = dims[5], h = d / 2;
    double theta = ref_f64(REFN("theta"));
    long N = (long)B * T, nq = N * Hq * d, nk = N * Hkv * d;
    int ld = (Hq + 2 * Hkv) * d + 1; /* the three in one fused, padded buffer */
    printf(" HF case %d: B=%d T=%d Hq=%d Hkv=%d head_dim=%d theta=%g window=%d\n", c, B, T, Hq, Hkv, d, theta,
           window);
    float *inv = falloc(h), *cs = falloc((long)T * h), *sn = falloc((long)T * h);
    rope_inv_freq(inv, d, theta);
    rope_table(cs, sn, inv, T, d, 1.0f);
    float *r_inv = ref_get(REFN("inv_freq"), h), *r_cos = ref_get(REFN("cos"), (long)T * d);
    float *r_sin = ref_get(REFN("sin"), (long)T * d);
    cmp_ulp("inv_freq", inv, r_inv, h);
    cmp("inv_freq", inv, r_inv, h);
    if (r_cos && r_sin) { /* HF's table is cat(half, half) */
        float *c2 = falloc((long)T * d), *s2 = falloc((long)T * d);
        for (int t = 0; t < T; t++)
            for (int i = 0; i < d; i++) c2[t * d + i] = cs[t * h + i % h], s2[t * d + i] = sn[t * h + i % h];
        cmp_ulp("cos table", c2, r_cos, (long)T * d);
        cmp_ulp("sin table", s2, r_sin, (long)T * d);
        cmp("cos table", c2, r_cos, (long)T * d);
        cmp("sin table", s2, r_sin, (long)T * d);
        free(c2), free(s2);
    }
    float *r_q = ref_get(REFN("q"), nq), *r_k = ref_get(REFN("k"), nk), *r_v = ref_get(REFN("v"), nk);
    float *r_qr = ref_get(REFN("q_rot"), nq), *r_kr = ref_get(REFN("k_rot"), nk);
    float *r_p = ref_get(REFN("probs"), (long)B * Hq * T * T), *r_oe = ref_get(REFN("out_eager"), nq);
    float *r_os = ref_get(REFN("out_sdpa"), nq), *r_dy = ref_get(REFN("dout"), nq);
    float *r_dq = ref_get(REFN("dq"), nq), *r_dk = ref_get(REFN("dk"), nk), *r_dv = ref_get(REFN("dv"), nk);
    if (r_q && r_k && r_v && r_dy) {
        float *qkv = falloc(N * ld), *dqkv = falloc(N * ld), *got = falloc(nq), *out = falloc(nq);
        float *att = falloc((long)B * Hq * T * T), *scratch = falloc((long)gqa_attention_scratch_floats(T));
        float *q = qkv, *k = qkv + Hq * d, *v = k + Hkv * d;
        for (long n = 0; n < N; n++) {
            memcpy(q + n * ld, r_q + n * Hq * d, sizeof(float) * (size_t)(Hq * d));
            memcpy(k + n * ld, r_k + n * Hkv * d, sizeof(float) * (size_t)(Hkv * d));
            memcpy(v + n * ld, r_v + n * Hkv * d, sizeof(float) * (size_t)(Hkv * d));
        }
        rope_forward_inplace(q, cs, sn, B, T, Hq, d, ld);
        rope_forward_inplace(k, cs, sn, B, T, Hkv, d, ld);
#define GATHER(src, H, dst)                                                                                           \
    for (long n = 0; n < N; n++) memcpy((dst) + n * (H) * d, (src) + n * ld, sizeof(float) * (size_t)((H) * d))
        GATHER(q, Hq, got);
        cmp_ulp("q rotated", got, r_qr, nq);
        cmp("q rotated", got, r_qr, nq);
        GATHER(k, Hkv, got);
        cmp_ulp("k rotated", got, r_kr, nk);
        cmp("k rotated", got, r_kr, nk);
        gqa_attention_forward(out, att, q, k, v, B, T, Hq, Hkv, d, ld, ld, ld, window);
        cmp("attention probabilities (eager)", att, r_p, (long)B * Hq * T * T);
        cmp("attention output vs eager", out, r_oe, nq);
        cmp("attention output vs sdpa", out, r_os, nq);
        gqa_attention_backward(dqkv, dqkv + Hq * d, dqkv + (Hq + Hkv) * d, scratch, r_dy, att, q, k, v, B, T, Hq,
                               Hkv, d, ld, ld, ld, window);
        rope_backward_inplace(dqkv, cs, sn, B, T, Hq, d, ld);
        rope_backward_inplace(dqkv + Hq * d, cs, sn, B, T, Hkv, d, ld);
        GATHER(dqkv, Hq, got);
        snprintf(label, sizeof label, "dq (through rope) vs autograd");
        cmp(label, got, r_dq, nq);
        GATHER(dqkv + Hq * d, Hkv, got);
        cmp("dk (through rope) vs autograd", got, r_dk, nk);
        GATHER(dqkv + (Hq + Hkv) * d, Hkv, got);
        cmp("dv vs autograd", got, r_dv, nk);
#undef GATHER
        free(qkv), free(dqkv), free(got), free(out), free(att), free(scratch);
    }
#undef REFN
    free(inv), free(cs), free(sn), free(r_inv), free(r_cos), free(r_sin), free(r_q), free(r_k), free(r_v);
    free(r_qr), free(r_kr), free(r_p), free(r_oe), free(r_os), free(r_dy), free(r_dq), free(r_dk), free(r_dv);
}

static void hf_rms_case(int c) {
    char nm[64];
    int32_t dims[2];
    snprintf(nm, sizeof nm, "rms%d.dims", c);
    if (ref_ints(nm, dims, 2)) return;
    int N = dims[0], C = dims[1];
    snprintf(nm, sizeof nm, "rms%d.eps", c);
    float eps = (float)ref_f64(nm);
    printf(" HF RMSNorm case %d: N=%d C=%d eps=%g\n", c, N, C, eps);
    const char *names[] = {"x", "w", "y", "dy", "dx", "dw"};
    long sizes[] = {(long)N * C, C, (long)N * C, (long)N * C, (long)N * C, C};
    float *r[6];
    for (int i = 0; i < 6; i++) {
        snprintf(nm, sizeof nm, "rms%d.%s", c, names[i]);
        r[i] = ref_get(nm, sizes[i]);
    }
    if (r[0] && r[1] && r[3]) {
        float *y = falloc((long)N * C), *rstd = falloc(N), *dx = falloc((long)N * C), *dw = falloc(C);
        rmsnorm_forward(y, rstd, r[0], r[1], N, C, eps);
        rmsnorm_backward(dx, r[3], r[0], rstd, r[1], N, C);
        rmsnorm_backward_params(dw, r[3], r[0], rstd, N, C);
        cmp_ulp("rmsnorm y", y, r[2], (long)N * C);
        cmp("rmsnorm y", y, r[2], (long)N * C);
        cmp("rmsnorm dx vs autograd", dx, r[4], (long)N * C);
        cmp("rmsnorm dw vs autograd", dw, r[5], C);
        free(y), free(rstd), free(dx), free(dw);
    }
    for (int i = 0; i < 6; i++) free(r[i]);
}

static void hf_mlp(void) {
    const st_tensor *t = st_find(REF, "mlp.gate");
    CHECK(t != NULL, "reference tensor mlp.gate missing");
    if (!t) return;
    long n = (long)t->numel;
    float *gate = ref_get("mlp.gate", n), *up = ref_get("mlp.up", n), *rh = ref_get("mlp.h", n);
    float *dh = ref_get("mlp.dh", n), *rdg = ref_get("mlp.dgate", n), *rdu = ref_get("mlp.dup", n);
    printf(" HF SwiGLU: n=%ld (gate in about +-20, and +-100, +-88, +-30, +-1e-6, 0)\n", n);
    if (gate && up && dh) {
        float *h = falloc(n), *dg = falloc(n), *du = falloc(n);
        swiglu_forward(h, gate, up, n);
        swiglu_backward(dg, du, dh, gate, up, n);
        cmp_ulp("swiglu h", h, rh, n);
        cmp("swiglu h", h, rh, n);
        cmp("swiglu dgate vs autograd", dg, rdg, n);
        cmp("swiglu dup vs autograd", du, rdu, n);
        free(h), free(dg), free(du);
    }
    free(gate), free(up), free(rh), free(dh), free(rdg), free(rdu);
}

static void test_hf(void) {
    const char *path = getenv("LORA_KERNELS_LLAMA_REF");
    if (!path || !*path) {
        printf("  NOT RUN: the comparison with HF transformers (set LORA_KERNELS_LLAMA_REF to the file "
               "tests/ref/kernels_llama_ref.py writes, or run tests/ref_kernels_llama.sh)\n");
        return;
    }
    struct lerr e;
    REF = st_open(path, &e);
    CHECK(REF != NULL, "LORA_KERNELS_LLAMA_REF: %s", e.msg);
    if (!REF) return;
    int32_t na = 0, nr = 0;
    ref_ints("n_attn", &na, 1);
    ref_ints("n_rms", &nr, 1);
    for (int c = 0; c < na; c++) hf_attention_case(c);
    for (int c = 0; c < nr; c++) hf_rms_case(c);
    hf_mlp();
    printf("  worst rel err vs HF over all tensors: %.2e\n", worst_hf);
    st_close(REF);
}

int main(void) {
    rng_seed(&R, 11);
    test_exp_copy();
    test_rmsnorm();
    test_rope();
    test_attention();
    test_swiglu();
    printf("  worst rel err vs finite differences: %.2e\n", worst_fd);
    test_threads();
    test_hf();
    return tu_end("test_kernels_llama");
}
