/*
 * BERT kernels (see include/kernels_bert.h). Same rules as kernels.c: loops
 * over rows (or over (sequence, head) pairs, or over column blocks for the
 * gradient sums) are OpenMP-parallel with static schedules, each output
 * element is formed by one thread in a fixed order, and the sgemms inside a
 * parallel region run single-threaded (OpenBLAS's OpenMP build), so results
 * are bitwise independent of the thread count.
 */
#include "kernels_bert.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "kernels.h"

/* kernels.c's exp_fast (Cephes expf, within 2 ulp), repeated here because
 * kernels_exp is an out-of-line call and the softmax loop wants it inlined.
 * Inputs below -87.3 give ~1.2e-38, NOT 0: that is why masked keys are
 * skipped below rather than sent through exp with HF's -FLT_MAX bias. */
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

void residual_forward(float *out, const float *a, const float *b, long n) {
#pragma omp parallel for simd schedule(static)
    for (long i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void bert_attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                            const int32_t *mask, int B, int T, int C, int H) {
    int hs = C / H;
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for schedule(static) collapse(2)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            long off = (long)b * T * C + h * hs;
            const int32_t *m = mask ? mask + (long)b * T : NULL;
            float *p = att + ((long)b * H + h) * T * T;
            /* S = scale * Q K^T (HF: matmul(q, k^T) * scaling) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, scale, q + off, C, k + off, C, 0.0f, p, T);
            for (int t = 0; t < T; t++) {
                float *row = p + (long)t * T;
                /* HF adds finfo.min (eager) or drops (SDPA) masked keys: their
                 * probability is exactly 0 whenever the row has one real key. */
                float mx = -INFINITY;
                for (int j = 0; j < T; j++)
                    if (!m || m[j]) mx = row[j] > mx ? row[j] : mx;
                if (mx == -INFINITY) { /* no token in this sequence */
                    memset(row, 0, sizeof(float) * (size_t)T);
                    continue;
                }
                double s = 0;
                for (int j = 0; j < T; j++) {
                    row[j] = (!m || m[j]) ? exp_fast(row[j] - mx) : 0.0f;
                    s += row[j];
                }
                float inv = (float)(1.0 / s);
                for (int j = 0; j < T; j++) row[j] *= inv;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, p, T, v + off, C, 0.0f, out + off,
                        C);
        }
    }
}

void bert_attention_backward(float *dq, float *dk, float *dv, float *scratch, const float *dout, const float *att,
                             const float *q, const float *k, const float *v, int B, int T, int C, int H) {
    int hs = C / H;
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for schedule(static) collapse(2)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            float *dp = scratch + (long)omp_get_thread_num() * T * T;
            long off = (long)b * T * C + h * hs;
            const float *p = att + ((long)b * H + h) * T * T;
            /* dP = dY V^T ; dV += P^T dY */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, 1.0f, dout + off, C, v + off, C, 0.0f, dp,
                        T);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, p, T, dout + off, C, 1.0f, dv + off,
                        C);
            /* dS = P * (dP - rowsum(dP * P)): 0 where P is 0 (masked keys) */
            for (int t = 0; t < T; t++) {
                const float *pr = p + (long)t * T;
                float *dr = dp + (long)t * T;
                double s = 0;
                for (int j = 0; j < T; j++) s += (double)dr[j] * pr[j];
                float fs = (float)s;
                for (int j = 0; j < T; j++) dr[j] = pr[j] * (dr[j] - fs);
            }
            /* dQ += scale dS K ; dK += scale dS^T Q */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, scale, dp, T, k + off, C, 1.0f, dq + off,
                        C);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, scale, dp, T, q + off, C, 1.0f, dk + off,
                        C);
        }
    }
}

void bert_embedding_forward(float *out, const int32_t *tokens, const int32_t *types, const float *wte,
                            const float *wpe, const float *wtt, int B, int T, int C) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < B * T; i++) {
        const float *e = wte + (long)tokens[i] * C;
        const float *tt = wtt + (long)(types ? types[i] : 0) * C;
        const float *p = wpe + (long)(i % T) * C;
        float *o = out + (long)i * C;
        /* HF's order: (inputs_embeds + token_type_embeddings) + position_embeddings */
        for (int j = 0; j < C; j++) o[j] = (e[j] + tt[j]) + p[j];
    }
}

/* Gradient sums over rows run on blocks of 64 columns, rows in order inside a
 * block (as kernels.c does): each sum is formed in the same order for any
 * thread count, and no two threads write the same element. */
#define COLS 64

void bert_embedding_backward(float *dwte, float *dwpe, float *dwtt, const float *dout, const int32_t *tokens,
                             const int32_t *types, int pad_id, int B, int T, int C) {
#pragma omp parallel for schedule(static)
    for (int j0 = 0; j0 < C; j0 += COLS) {
        int nj = C - j0 < COLS ? C - j0 : COLS;
        for (int i = 0; i < B * T; i++) {
            const float *d = dout + (long)i * C + j0;
            if (dwte && tokens[i] != pad_id) {
                float *g = dwte + (long)tokens[i] * C + j0;
                for (int j = 0; j < nj; j++) g[j] += d[j];
            }
            if (dwpe) {
                float *g = dwpe + (long)(i % T) * C + j0;
                for (int j = 0; j < nj; j++) g[j] += d[j];
            }
            if (dwtt) {
                float *g = dwtt + (long)(types ? types[i] : 0) * C + j0;
                for (int j = 0; j < nj; j++) g[j] += d[j];
            }
        }
    }
}

void bert_pooler_forward(float *pooled, const float *x, const float *w, const float *b, int B, int T, int C) {
    for (int i = 0; i < B; i++) memcpy(pooled + (long)i * C, b, sizeof(float) * (size_t)C);
    /* the first token of each sequence is row b*T: a stride of T*C rows */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, C, C, 1.0f, x, T * C, w, C, 1.0f, pooled, C);
    tanh_forward(pooled, pooled, (long)B * C);
}

void bert_pooler_backward(float *dx, float *dw, float *db, float *dpre, const float *dpooled, const float *pooled,
                          const float *x, const float *w, int B, int T, int C) {
    memset(dpre, 0, sizeof(float) * (size_t)B * C);
    tanh_backward(dpre, dpooled, pooled, (long)B * C);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, C, C, 1.0f, dpre, C, w, C, 1.0f, dx, T * C);
    if (dw) cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, C, B, 1.0f, dpre, C, x, T * C, 1.0f, dw, C);
    if (db) bias_backward(db, dpre, B, C);
}

void bert_first_tokens(float *first, const float *x, int B, int T, int C) {
    for (int b = 0; b < B; b++) memcpy(first + (long)b * C, x + (long)b * T * C, sizeof(float) * (size_t)C);
}

void bert_first_tokens_backward(float *dx, const float *dfirst, int B, int T, int C) {
    for (int b = 0; b < B; b++) {
        float *d = dx + (long)b * T * C;
        const float *s = dfirst + (long)b * C;
        for (int j = 0; j < C; j++) d[j] += s[j];
    }
}

void tanh_forward(float *out, const float *x, long n) {
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) out[i] = tanhf(x[i]);
}

void tanh_backward(float *dx, const float *dout, const float *out, long n) {
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) dx[i] += dout[i] * (1.0f - out[i] * out[i]);
}

double mse_forward(const float *pred, const float *target, int N) {
    double s = 0;
    for (int i = 0; i < N; i++) {
        double d = (double)pred[i] - (double)target[i];
        s += d * d;
    }
    return s;
}

void mse_backward(float *dpred, const float *pred, const float *target, int N, float dscale) {
    for (int i = 0; i < N; i++) dpred[i] += dscale * 2.0f * (pred[i] - target[i]);
}
