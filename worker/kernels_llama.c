/*
 * LLaMA-family kernels (see include/kernels_llama.h). Called by the family's
 * model file for each layer; they own no memory (the caller's workspace holds
 * every buffer, the RoPE tables included, made once per workspace).
 *
 * Invariants: every OpenMP loop has a static schedule and writes disjoint
 * outputs per iteration, and no float reduction crosses iterations, so the
 * results are bitwise the same for any thread count. Row statistics (the
 * RMSNorm mean of squares, softmax sums, the RMSNorm backward's dot product)
 * are summed in double and rounded once. The attention backward iterates over
 * (batch, kv head) pairs so that the G query heads sharing a kv head add
 * their dK, dV contributions in a fixed order without atomics.
 *
 * Compiled with -std=c11, GCC does not contract a*b + c into FMAs
 * (-ffp-contract=off in ISO mode), so the element-wise formulas below round
 * exactly as PyTorch's separate multiply and add kernels do.
 */
#include "kernels_llama.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* kernels.c's exp_fast (Cephes' reduction and polynomial, within 2 ulp of
 * expf, branch-free so the loops vectorize), repeated here because it is
 * static inline there; tests/test_kernels_llama.c checks the two copies agree
 * bitwise with kernels_exp. */
static inline float exp_fast(float x) {
    x = x < -87.33654f ? -87.33654f : x;
    x = x > 88.72283f ? 88.72283f : x;
    float n = __builtin_rintf(x * 1.44269504088896341f);
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t e = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &e, sizeof scale);
    return p * scale;
}

/* ---------------------------------------------------------------- RMSNorm */

void rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int N, int C, float eps) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        const float *xi = x + (long)i * C;
        double ss = 0;
        for (int j = 0; j < C; j++) ss += (double)xi[j] * xi[j];
        /* HF: variance = x.pow(2).mean(-1) (float), x * torch.rsqrt(variance + eps), then weight * (that) */
        float var = (float)(ss / C);
        float r = 1.0f / sqrtf(var + eps);
        float *oi = out + (long)i * C;
        for (int j = 0; j < C; j++) oi[j] = w[j] * (xi[j] * r);
        rstd[i] = r;
    }
}

void rmsnorm_backward(float *dx, const float *dout, const float *x, const float *rstd, const float *w, int N, int C) {
    /* y_j = w_j x_j r, dr/dx_k = -r^3 x_k / C: dx_k = r w_k dy_k - x_k r^3 / C * sum_j dy_j w_j x_j */
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        const float *xi = x + (long)i * C, *di = dout + (long)i * C;
        float r = rstd[i];
        double s = 0;
        for (int j = 0; j < C; j++) s += (double)di[j] * w[j] * xi[j];
        float c = (float)(s * r * r * r / C);
        float *dxi = dx + (long)i * C;
        for (int j = 0; j < C; j++) dxi[j] += r * (w[j] * di[j]) - xi[j] * c;
    }
}

/* Column sums run on blocks of 64 columns, rows in order inside a block (as
 * kernels.c's layernorm_backward_params): each sum is formed in the same order
 * for any thread count. */
#define COLS 64

void rmsnorm_backward_params(float *dw, const float *dout, const float *x, const float *rstd, int N, int C) {
#pragma omp parallel for schedule(static)
    for (int j0 = 0; j0 < C; j0 += COLS) {
        int nj = C - j0 < COLS ? C - j0 : COLS;
        float sw[COLS] = {0};
        for (int i = 0; i < N; i++) {
            const float *d = dout + (long)i * C + j0, *xi = x + (long)i * C + j0;
            float r = rstd[i];
            for (int j = 0; j < nj; j++) sw[j] += d[j] * (xi[j] * r);
        }
        for (int j = 0; j < nj; j++) dw[j0 + j] += sw[j];
    }
}

/* ------------------------------------------------------------------- RoPE */

void rope_inv_freq(float *inv_freq, int d, double theta) {
    /* HF: 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float) / dim)), all float32:
     * the exponent is a float division, pow and the reciprocal are float-rounded. */
    float base = (float)theta;
    for (int i = 0; i < d / 2; i++) {
        float e = (float)(2 * i) / (float)d;
        float p = (float)pow((double)base, (double)e);
        inv_freq[i] = 1.0f / p;
    }
}

void rope_table(float *cos_t, float *sin_t, const float *inv_freq, int T, int d, float attention_scaling) {
    int h = d / 2;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < h; i++) {
            /* HF: freqs = inv_freq @ position_ids in float32 (one product, rounded), emb.cos() in float32 */
            float a = (float)t * inv_freq[i];
            float c = (float)cos((double)a), s = (float)sin((double)a);
            if (attention_scaling != 1.0f) c *= attention_scaling, s *= attention_scaling;
            cos_t[(long)t * h + i] = c;
            sin_t[(long)t * h + i] = s;
        }
    }
}

/* sign +1: forward rotation (by +angle); -1: the transpose (by -angle). */
static void rope_apply(float *x, const float *cos_t, const float *sin_t, int B, int T, int H, int d, int ldx,
                       float sign) {
    int h = d / 2;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < B * T; n++) {
        const float *c = cos_t + (long)(n % T) * h, *s = sin_t + (long)(n % T) * h;
        for (int hd = 0; hd < H; hd++) {
            float *x1 = x + (long)n * ldx + (long)hd * d, *x2 = x1 + h;
            for (int i = 0; i < h; i++) {
                float a = x1[i], b = x2[i], si = sign * s[i];
                /* HF: q * cos + rotate_half(q) * sin, rotate_half(q) = cat(-q2, q1) */
                x1[i] = a * c[i] + (-b) * si;
                x2[i] = b * c[i] + a * si;
            }
        }
    }
}

void rope_forward_inplace(float *x, const float *cos_t, const float *sin_t, int B, int T, int H, int d, int ldx) {
    rope_apply(x, cos_t, sin_t, B, T, H, d, ldx, 1.0f);
}

void rope_backward_inplace(float *dx, const float *cos_t, const float *sin_t, int B, int T, int H, int d, int ldx) {
    /* y = R x with R orthogonal per (x1, x2) pair: dx = R^T dy, a rotation by -angle */
    rope_apply(dx, cos_t, sin_t, B, T, H, d, ldx, -1.0f);
}

/* -------------------------------------------------------------- attention */

/* First key visible from query t. */
static inline int first_key(int t, int window) { return window > 0 && t - window + 1 > 0 ? t - window + 1 : 0; }

void gqa_attention_forward(float *out, float *att, const float *q, const float *k, const float *v, int B, int T,
                           int Hq, int Hkv, int d, int ldq, int ldk, int ldv, int window) {
    int G = Hq / Hkv, ldo = Hq * d;
    /* HF: matmul(q, k^T) * scaling, scaling = head_dim**-0.5 (a double, used as float by the float32 kernel) */
    float scale = (float)(1.0 / sqrt((double)d));
#pragma omp parallel for schedule(static) collapse(2)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < Hq; h++) {
            const float *qh = q + (long)b * T * ldq + (long)h * d;
            const float *kh = k + (long)b * T * ldk + (long)(h / G) * d;
            const float *vh = v + (long)b * T * ldv + (long)(h / G) * d;
            float *p = att + ((long)b * Hq + h) * T * T;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, d, scale, qh, ldq, kh, ldk, 0.0f, p, T);
            for (int t = 0; t < T; t++) {
                float *row = p + (long)t * T;
                int j0 = first_key(t, window);
                float mx = row[j0];
                for (int j = j0 + 1; j <= t; j++) mx = row[j] > mx ? row[j] : mx;
                for (int j = j0; j <= t; j++) row[j] = exp_fast(row[j] - mx);
                double s = 0;
                for (int j = j0; j <= t; j++) s += row[j];
                float inv = (float)(1.0 / s);
                for (int j = 0; j < j0; j++) row[j] = 0.0f;
                for (int j = j0; j <= t; j++) row[j] *= inv;
                for (int j = t + 1; j < T; j++) row[j] = 0.0f;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, d, T, 1.0f, p, T, vh, ldv, 0.0f,
                        out + (long)b * T * ldo + (long)h * d, ldo);
        }
    }
}

void gqa_attention_decode(float *out, const float *q, int ldq, const float *kc, const float *vc, int ldc, int n,
                          int pos0, int Hq, int Hkv, int d, int window) {
    int G = Hq / Hkv, ldo = Hq * d, Tk = pos0 + n;
    float scale = (float)(1.0 / sqrt((double)d));
#pragma omp parallel
    {
        float *row = malloc(sizeof(float) * (size_t)Tk);
#pragma omp for schedule(static) collapse(2)
        for (int i = 0; i < n; i++)
            for (int h = 0; h < Hq; h++) {
                int t = pos0 + i, j0 = first_key(t, window);
                const float *qi = q + (long)i * ldq + (long)h * d;
                const float *kh = kc + (long)(h / G) * d, *vh = vc + (long)(h / G) * d;
                float mx = -INFINITY;
                for (int j = j0; j <= t; j++) {
                    const float *kj = kh + (long)j * ldc;
                    float s = 0;
                    for (int c = 0; c < d; c++) s += qi[c] * kj[c];
                    row[j] = s * scale;
                    if (row[j] > mx) mx = row[j];
                }
                double sum = 0;
                for (int j = j0; j <= t; j++) row[j] = exp_fast(row[j] - mx);
                for (int j = j0; j <= t; j++) sum += row[j];
                float inv = (float)(1.0 / sum);
                float *o = out + (long)i * ldo + (long)h * d;
                for (int c = 0; c < d; c++) o[c] = 0;
                for (int j = j0; j <= t; j++) {
                    const float *vj = vh + (long)j * ldc;
                    float p = row[j] * inv;
                    for (int c = 0; c < d; c++) o[c] += p * vj[c];
                }
            }
        free(row);
    }
}

size_t gqa_attention_scratch_floats(int T) { return (size_t)omp_get_max_threads() * (size_t)T * (size_t)T; }

void gqa_attention_backward(float *dq, float *dk, float *dv, float *scratch, const float *dout, const float *att,
                            const float *q, const float *k, const float *v, int B, int T, int Hq, int Hkv, int d,
                            int ldq, int ldk, int ldv, int window) {
    int G = Hq / Hkv, ldo = Hq * d;
    float scale = (float)(1.0 / sqrt((double)d));
#pragma omp parallel for schedule(static) collapse(2)
    for (int b = 0; b < B; b++) {
        for (int kvh = 0; kvh < Hkv; kvh++) {
            float *dp = scratch + (long)omp_get_thread_num() * T * T;
            const float *kj = k + (long)b * T * ldk + (long)kvh * d;
            const float *vj = v + (long)b * T * ldv + (long)kvh * d;
            float *dkj = dk + (long)b * T * ldk + (long)kvh * d;
            float *dvj = dv + (long)b * T * ldv + (long)kvh * d;
            for (int g = 0; g < G; g++) {
                int h = kvh * G + g;
                const float *qh = q + (long)b * T * ldq + (long)h * d;
                float *dqh = dq + (long)b * T * ldq + (long)h * d;
                const float *p = att + ((long)b * Hq + h) * T * T;
                const float *dy = dout + (long)b * T * ldo + (long)h * d;
                /* dP = dY V^T ; dV += P^T dY */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, d, 1.0f, dy, ldo, vj, ldv, 0.0f, dp, T);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, d, T, 1.0f, p, T, dy, ldo, 1.0f, dvj, ldv);
                /* dS = P * (dP - rowsum(dP * P)), zero where the key is invisible */
                for (int t = 0; t < T; t++) {
                    const float *pr = p + (long)t * T;
                    float *dr = dp + (long)t * T;
                    int j0 = first_key(t, window);
                    double s = 0;
                    for (int j = j0; j <= t; j++) s += (double)dr[j] * pr[j];
                    float fs = (float)s;
                    for (int j = 0; j < j0; j++) dr[j] = 0.0f;
                    for (int j = j0; j <= t; j++) dr[j] = pr[j] * (dr[j] - fs);
                    for (int j = t + 1; j < T; j++) dr[j] = 0.0f;
                }
                /* dQ += scale dS K ; dK += scale dS^T Q */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, d, T, scale, dp, T, kj, ldk, 1.0f, dqh,
                            ldq);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, d, T, scale, dp, T, qh, ldq, 1.0f, dkj, ldk);
            }
        }
    }
}

/* ----------------------------------------------------------------- SwiGLU */

void swiglu_forward(float *h, const float *gate, const float *up, long n) {
#pragma omp parallel for simd schedule(static)
    for (long i = 0; i < n; i++) {
        float g = gate[i];
        float si = g / (1.0f + exp_fast(-g)); /* torch's silu: x / (1 + exp(-x)) */
        h[i] = si * up[i];
    }
}

void swiglu_backward(float *dgate, float *dup, const float *dh, const float *gate, const float *up, long n) {
#pragma omp parallel for simd schedule(static)
    for (long i = 0; i < n; i++) {
        float g = gate[i];
        float sg = 1.0f / (1.0f + exp_fast(-g));
        float si = g * sg;
        dgate[i] += dh[i] * up[i] * (sg * (1.0f + g * (1.0f - sg)));
        dup[i] += dh[i] * si;
    }
}
