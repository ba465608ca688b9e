/*
 * Layer kernels (see include/kernels.h). Row loops are OpenMP-parallel with
 * static schedules and no cross-row reductions in float, so results do not
 * depend on the thread count. Per-row statistics are accumulated in double:
 * the extra precision costs nothing next to the sgemms and keeps LayerNorm and
 * the loss close to PyTorch's reference values.
 */
#include "kernels.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* exp for the hot loops: Cephes' expf reduction and polynomial (within 2 ulp
 * of expf over the whole range), written without calls or branches so that
 * GCC vectorizes the loops that use it; glibc's expf and tanhf are scalar
 * calls and were a sixth of a GPT-2 124M step. Inputs below -87.3 give 0,
 * NaN gives NaN. */
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
    /* a NaN x stays NaN through p; its n is made 0 so that the exponent bits
     * below are computed from an integer in [1, 255] (no UB on the shift) */
    n = n != n ? 0.0f : n;
    int32_t e = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &e, sizeof scale);
    return p * scale;
}

float kernels_exp(float x) { return exp_fast(x); }

void matmul_forward(float *out, const float *in, const float *w, const float *bias, int N, int C, int OC, float beta) {
    if (bias) {
        if (beta == 0.0f) {
#pragma omp parallel for schedule(static)
            for (int i = 0; i < N; i++) memcpy(out + (long)i * OC, bias, sizeof(float) * (size_t)OC);
        } else {
#pragma omp parallel for schedule(static)
            for (int i = 0; i < N; i++) {
                float *o = out + (long)i * OC;
                for (int j = 0; j < OC; j++) o[j] += bias[j];
            }
        }
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, OC, C, 1.0f, in, C, w, OC, beta, out, OC);
}

void matmul_backward_input(float *din, const float *dout, const float *w, int N, int C, int OC, int accumulate) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, C, OC, 1.0f, dout, OC, w, OC, accumulate ? 1.0f : 0.0f, din,
                C);
}

void layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *w, const float *b, int N,
                       int C, float eps) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        const float *xi = x + (long)i * C;
        double s = 0;
        for (int j = 0; j < C; j++) s += xi[j];
        float m = (float)(s / C);
        double v = 0;
        for (int j = 0; j < C; j++) {
            double d = (double)xi[j] - m;
            v += d * d;
        }
        float r = (float)(1.0 / sqrt(v / C + (double)eps));
        float *oi = out + (long)i * C;
        for (int j = 0; j < C; j++) oi[j] = (xi[j] - m) * r * w[j] + b[j];
        mean[i] = m;
        rstd[i] = r;
    }
}

void layernorm_backward(float *dx, const float *dout, const float *x, const float *mean, const float *rstd,
                        const float *w, int N, int C) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        const float *xi = x + (long)i * C, *di = dout + (long)i * C;
        float m = mean[i], r = rstd[i];
        double sd = 0, sdx = 0;
        for (int j = 0; j < C; j++) {
            float dn = di[j] * w[j];
            float xh = (xi[j] - m) * r;
            sd += dn;
            sdx += (double)dn * xh;
        }
        float md = (float)(sd / C), mdx = (float)(sdx / C);
        float *dxi = dx + (long)i * C;
        for (int j = 0; j < C; j++) {
            float dn = di[j] * w[j];
            float xh = (xi[j] - m) * r;
            dxi[j] += r * (dn - md - xh * mdx);
        }
    }
}

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */

void gelu_forward(float *out, const float *x, long n, int exact) {
    if (exact) {
#pragma omp parallel for schedule(static)
        for (long i = 0; i < n; i++) out[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
        return;
    }
    /* 0.5 (1 + tanh(u)) = sigmoid(2u): no tanh and no cancellation near 0 */
#pragma omp parallel for simd schedule(static)
    for (long i = 0; i < n; i++) {
        float v = x[i];
        float u2 = 2.0f * GELU_K * (v + 0.044715f * v * v * v);
        out[i] = v / (1.0f + exp_fast(-u2));
    }
}

void gelu_backward(float *dx, const float *dout, const float *x, long n, int exact) {
    if (exact) {
#pragma omp parallel for schedule(static)
        for (long i = 0; i < n; i++) {
            float v = x[i];
            float cdf = 0.5f * (1.0f + erff(v * 0.70710678118654752f));
            float pdf = 0.3989422804014327f * expf(-0.5f * v * v);
            dx[i] = dout[i] * (cdf + v * pdf);
        }
        return;
    }
    /* gelu = v sig(2u): gelu' = sig + v sig (1 - sig) 2u' */
#pragma omp parallel for simd schedule(static)
    for (long i = 0; i < n; i++) {
        float v = x[i];
        float u2 = 2.0f * GELU_K * (v + 0.044715f * v * v * v);
        float sg = 1.0f / (1.0f + exp_fast(-u2));
        float du2 = 2.0f * GELU_K * (1.0f + 3.0f * 0.044715f * v * v);
        dx[i] = dout[i] * (sg + v * sg * (1.0f - sg) * du2);
    }
}

void attention_forward(float *out, float *att, const float *qkv, int B, int T, int C, int H) {
    int hs = C / H, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for schedule(static) collapse(2)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            const float *q = qkv + (long)b * T * C3 + h * hs;
            const float *k = q + C;
            const float *v = q + 2 * C;
            float *p = att + ((long)b * H + h) * T * T;
            /* S = scale * Q K^T, lower triangle only matters */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, scale, q, C3, k, C3, 0.0f, p, T);
            for (int t = 0; t < T; t++) {
                float *row = p + (long)t * T;
                float mx = row[0];
                for (int j = 1; j <= t; j++) mx = row[j] > mx ? row[j] : mx;
                double s = 0;
                for (int j = 0; j <= t; j++) row[j] = exp_fast(row[j] - mx);
                for (int j = 0; j <= t; j++) s += row[j];
                float inv = (float)(1.0 / s);
                for (int j = 0; j <= t; j++) row[j] *= inv;
                for (int j = t + 1; j < T; j++) row[j] = 0.0f;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, p, T, v, C3, 0.0f,
                        out + (long)b * T * C + h * hs, C);
        }
    }
}

void attention_backward(float *dqkv, float *scratch, const float *dout, const float *att, const float *qkv, int B,
                        int T, int C, int H) {
    int hs = C / H, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for schedule(static) collapse(2)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            float *dp = scratch + (long)omp_get_thread_num() * T * T;
            const float *q = qkv + (long)b * T * C3 + h * hs;
            const float *k = q + C, *v = q + 2 * C;
            float *dq = dqkv + (long)b * T * C3 + h * hs;
            float *dk = dq + C, *dv = dq + 2 * C;
            const float *p = att + ((long)b * H + h) * T * T;
            const float *dy = dout + (long)b * T * C + h * hs;
            /* dP = dY V^T ; dV = P^T dY */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, 1.0f, dy, C, v, C3, 0.0f, dp, T);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, p, T, dy, C, 0.0f, dv, C3);
            /* dS = P * (dP - rowsum(dP * P)) */
            for (int t = 0; t < T; t++) {
                const float *pr = p + (long)t * T;
                float *dr = dp + (long)t * T;
                double s = 0;
                for (int j = 0; j <= t; j++) s += (double)dr[j] * pr[j];
                float fs = (float)s;
                for (int j = 0; j <= t; j++) dr[j] = pr[j] * (dr[j] - fs);
                for (int j = t + 1; j < T; j++) dr[j] = 0.0f;
            }
            /* dQ = scale dS K ; dK = scale dS^T Q */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, scale, dp, T, k, C3, 0.0f, dq, C3);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, scale, dp, T, q, C3, 0.0f, dk, C3);
        }
    }
}

double crossentropy_forward(float *lse, const float *logits, const int32_t *targets, int N, int V,
                            int64_t *n_targets) {
    double total = 0;
    int64_t cnt = 0;
    /* Row sums are per-thread partials combined by OpenMP; to keep the total
     * independent of the thread count, losses are stored per row and summed in
     * order afterwards. lse doubles as that store until the end. */
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        const float *l = logits + (long)i * V;
        float mx = l[0];
        for (int j = 1; j < V; j++) mx = l[j] > mx ? l[j] : mx;
        /* 8 double lanes: vectorizes, and the sum of V terms keeps full precision */
        double acc[8] = {0};
        int j = 0;
        for (; j + 8 <= V; j += 8)
            for (int k = 0; k < 8; k++) acc[k] += (double)exp_fast(l[j + k] - mx);
        double s = 0;
        for (; j < V; j++) s += exp_fast(l[j] - mx);
        for (int k = 0; k < 8; k++) s += acc[k];
        lse[i] = mx + (float)log(s);
    }
    for (int i = 0; i < N; i++) {
        if (targets[i] < 0) continue;
        total += (double)lse[i] - (double)logits[(long)i * V + targets[i]];
        cnt++;
    }
    if (n_targets) *n_targets = cnt;
    return total;
}

void crossentropy_backward_inplace(float *logits, const float *lse, const int32_t *targets, int N, int V,
                                   float dscale) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        float *l = logits + (long)i * V;
        if (targets[i] < 0) {
            memset(l, 0, sizeof(float) * (size_t)V);
            continue;
        }
        float m = lse[i];
        for (int j = 0; j < V; j++) l[j] = dscale * exp_fast(l[j] - m);
        l[targets[i]] -= dscale;
    }
}

void embedding_forward(float *out, const int32_t *tokens, const float *wte, const float *wpe, int B, int T, int C) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < B * T; i++) {
        const float *e = wte + (long)tokens[i] * C;
        const float *p = wpe + (long)(i % T) * C;
        float *o = out + (long)i * C;
        for (int j = 0; j < C; j++) o[j] = e[j] + p[j];
    }
}

/* Column sums over rows run on blocks of 64 columns, rows in order inside a
 * block: every row read is a contiguous 256 bytes (cache-friendly) and each
 * sum is formed in the same order for any thread count. */
#define COLS 64

void layernorm_backward_params(float *dw, float *db, const float *dout, const float *x, const float *mean,
                               const float *rstd, int N, int C) {
#pragma omp parallel for schedule(static)
    for (int j0 = 0; j0 < C; j0 += COLS) {
        int nj = C - j0 < COLS ? C - j0 : COLS;
        float sw[COLS] = {0}, sb[COLS] = {0};
        for (int i = 0; i < N; i++) {
            const float *d = dout + (long)i * C + j0, *xi = x + (long)i * C + j0;
            float m = mean[i], r = rstd[i];
            for (int j = 0; j < nj; j++) {
                sw[j] += d[j] * (xi[j] - m) * r;
                sb[j] += d[j];
            }
        }
        for (int j = 0; j < nj; j++) {
            dw[j0 + j] += sw[j];
            db[j0 + j] += sb[j];
        }
    }
}

void bias_backward(float *db, const float *dout, int N, int OC) {
#pragma omp parallel for schedule(static)
    for (int j0 = 0; j0 < OC; j0 += COLS) {
        int nj = OC - j0 < COLS ? OC - j0 : COLS;
        float sb[COLS] = {0};
        for (int i = 0; i < N; i++) {
            const float *d = dout + (long)i * OC + j0;
            for (int j = 0; j < nj; j++) sb[j] += d[j];
        }
        for (int j = 0; j < nj; j++) db[j0 + j] += sb[j];
    }
}

void matmul_backward_weight(float *dw, const float *in, const float *dout, int N, int C, int OC) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, OC, N, 1.0f, in, C, dout, OC, 1.0f, dw, OC);
}

void embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tokens, int B, int T, int C) {
    for (int i = 0; i < B * T; i++) {
        const float *d = dout + (long)i * C;
        float *e = dwte + (long)tokens[i] * C, *p = dwpe + (long)(i % T) * C;
        for (int j = 0; j < C; j++) {
            e[j] += d[j];
            p[j] += d[j];
        }
    }
}

void linear_forward(float *out, const float *in, const float *w, const float *bias, int N, int C, int OC, float beta) {
    if (bias) {
        if (beta == 0.0f) {
#pragma omp parallel for schedule(static)
            for (int i = 0; i < N; i++) memcpy(out + (long)i * OC, bias, sizeof(float) * (size_t)OC);
        } else {
#pragma omp parallel for schedule(static)
            for (int i = 0; i < N; i++) {
                float *o = out + (long)i * OC;
                for (int j = 0; j < OC; j++) o[j] += bias[j];
            }
        }
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1.0f, in, C, w, C, beta, out, OC);
}

void linear_backward_input(float *din, const float *dout, const float *w, int N, int C, int OC, int accumulate) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, w, C, accumulate ? 1.0f : 0.0f,
                din, C);
}

void linear_backward_weight(float *dw, const float *in, const float *dout, int N, int C, int OC) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, in, C, 1.0f, dw, C);
}

void attention_decode(float *out, const float *q, int ldq, const float *kc, const float *vc, int ldc, int n, int pos0,
                      int C, int H) {
    int hs = C / H, Tk = pos0 + n;
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for schedule(static) collapse(2)
    for (int i = 0; i < n; i++)
        for (int h = 0; h < H; h++) {
            int t = pos0 + i; /* keys 0..t */
            float *row = malloc(sizeof(float) * (size_t)Tk);
            const float *qi = q + (long)i * ldq + h * hs;
            float mx = -INFINITY;
            for (int j = 0; j <= t; j++) {
                const float *kj = kc + (long)j * ldc + h * hs;
                float d = 0;
                for (int c = 0; c < hs; c++) d += qi[c] * kj[c];
                row[j] = d * scale;
                if (row[j] > mx) mx = row[j];
            }
            double sum = 0;
            for (int j = 0; j <= t; j++) row[j] = exp_fast(row[j] - mx);
            for (int j = 0; j <= t; j++) sum += row[j];
            float inv = (float)(1.0 / sum);
            float *o = out + (long)i * C + h * hs;
            for (int c = 0; c < hs; c++) o[c] = 0;
            for (int j = 0; j <= t; j++) {
                const float *vj = vc + (long)j * ldc + h * hs;
                float pj = row[j] * inv;
                for (int c = 0; c < hs; c++) o[c] += pj * vj[c];
            }
            free(row);
        }
}
