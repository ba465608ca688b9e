/*
 * Layer kernels: forward/backward pairs over row-major float buffers.
 *
 * Conventions (STYLE.md): outputs first, then const inputs, then sizes.
 * Backward functions accumulate (+=) into input gradients unless the name says
 * otherwise. Rows are independent, so every kernel parallelizes over rows with
 * OpenMP and gives bitwise the same result for any thread count. Every matmul
 * goes through OpenBLAS sgemm (the OpenMP build: inside an OpenMP region it
 * runs single-threaded, outside it uses the whole pool).
 *
 * Legend: N rows (= B*T), C channels, OC output channels, V vocab, H heads,
 * hs = C/H head size, T sequence length.
 */
#ifndef KERNELS_H
#define KERNELS_H

#include <stdint.h>

/* out (N, OC) = in (N, C) . w (C, OC) [+ bias (OC)]; w in HF Conv1D layout (in, out).
 * beta 0 overwrites out, 1 accumulates. */
void matmul_forward(float *out, const float *in, const float *w, const float *bias, int N, int C, int OC, float beta);
/* din (N, C) (+)= dout (N, OC) . w^T; accumulate 0 overwrites. */
void matmul_backward_input(float *din, const float *dout, const float *w, int N, int C, int OC, int accumulate);

/* out (N, OC) = in (N, C) . w^T [+ bias (OC)], w (OC, C) in nn.Linear layout.
 * beta 0 overwrites out, 1 accumulates (the bias is added either way). */
void linear_forward(float *out, const float *in, const float *w, const float *bias, int N, int C, int OC, float beta);
/* din (N, C) (+)= dout (N, OC) . w (OC, C); accumulate 0 overwrites. */
void linear_backward_input(float *din, const float *dout, const float *w, int N, int C, int OC, int accumulate);
/* dw (OC, C) += dout^T (OC, N) . in (N, C): an nn.Linear weight's gradient
 * (the bias gradient is kernels.h's bias_backward). */
void linear_backward_weight(float *dw, const float *in, const float *dout, int N, int C, int OC);

/* out = (x - mean) * rstd * w + b per row; mean/rstd (N) saved for backward. */
void layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *w, const float *b, int N,
                       int C, float eps);
/* dx += LayerNorm input gradient (weights frozen: no dw, db). */
void layernorm_backward(float *dx, const float *dout, const float *x, const float *mean, const float *rstd,
                        const float *w, int N, int C);

/* LayerNorm's parameter gradients: dw += sum_i dout * xhat, db += sum_i dout
 * (rows summed in order: deterministic). */
void layernorm_backward_params(float *dw, float *db, const float *dout, const float *x, const float *mean,
                               const float *rstd, int N, int C);
/* db (OC) += column sums of dout (N, OC), rows in order. */
void bias_backward(float *db, const float *dout, int N, int OC);
/* dw (C, OC) += in^T (C, N) . dout (N, OC): a Conv1D weight's gradient. */
void matmul_backward_weight(float *dw, const float *in, const float *dout, int N, int C, int OC);

/* GELU, tanh form (HF gelu_new / gelu_pytorch_tanh) or exact erf form (HF gelu). */
void gelu_forward(float *out, const float *x, long n, int exact);
/* dx = dout * gelu'(x) (overwrites). */
void gelu_backward(float *dx, const float *dout, const float *x, long n, int exact);

/* Causal multi-head attention on qkv (B, T, 3C) laid out [q | k | v], head h
 * at columns h*hs. att (B, H, T, T) receives the softmax probabilities (upper
 * triangle zero), out (B, T, C) the heads' outputs side by side. */
void attention_forward(float *out, float *att, const float *qkv, int B, int T, int C, int H);
/* dqkv (B, T, 3C) = gradient through attention (overwrites); scratch needs
 * omp_get_max_threads() * T * T floats. */
void attention_backward(float *dqkv, float *scratch, const float *dout, const float *att, const float *qkv, int B,
                        int T, int C, int H);

/* Causal attention of n new queries against a cache, for decoding: q (n, C)
 * at absolute positions pos0 .. pos0+n-1, keys and values of positions
 * 0 .. pos0+n-1 in kc, vc (rows of stride ldc, head h at columns h*hs); out
 * (n, C). The same arithmetic as attention_forward's rows. */
void attention_decode(float *out, const float *q, int ldq, const float *kc, const float *vc, int ldc, int n, int pos0,
                      int C, int H);

/* Softmax cross-entropy over rows of logits (N, V): for rows with target >= 0,
 * loss_sum += lse - logit[target]; lse (N) saved. Returns the sum of losses (double). */
double crossentropy_forward(float *lse, const float *logits, const int32_t *targets, int N, int V, int64_t *n_targets);
/* In place: logits (N, V) becomes dlogits = dscale * (softmax - onehot) for
 * rows with a target, 0 for rows without. */
void crossentropy_backward_inplace(float *logits, const float *lse, const int32_t *targets, int N, int V,
                                   float dscale);

/* dwte[tokens[i]] += dout[i], dwpe[i % T] += dout[i] (rows in order). */
void embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tokens, int B, int T, int C);
/* residual (B*T, C) = wte[tokens] + wpe[t]. */
void embedding_forward(float *out, const int32_t *tokens, const float *wte, const float *wpe, int B, int T, int C);

/* The vectorizable exp the kernels use (exposed for its accuracy test). */
float kernels_exp(float x);

#endif
