/*
 * Kernels the BERT family needs beyond include/kernels.h: bidirectional self-attention with a key padding mask, the
 * embeddings sum with token types, the pooler, and the regression loss.
 *
 * Same conventions as kernels.h: row-major float buffers, outputs first, then
 * const inputs, then sizes; backward functions accumulate (+=) into gradients
 * the caller zeroes (an `accumulate` flag says so where it is a choice); every
 * matmul is one cblas_sgemm; loops over rows are OpenMP-parallel and give
 * bitwise the same result for any thread count.
 *
 * HF semantics (transformers 5.x, BertModel, float32) these reproduce:
 *  - attention_mask (B, T), 1 = token, 0 = padding, masks KEYS only: every
 *    query row is computed, padded ones too (they attend to the real tokens of
 *    their sequence), and a masked key gets probability exactly 0.
 *  - embeddings: (word[id] + token_type[tt]) + position[t], then LayerNorm
 *    (kernels.h); word_embeddings has padding_idx = pad_token_id, whose row
 *    never receives a gradient.
 *  - post-LN layers: LayerNorm(x + dense(sublayer)), composed from
 *    linear_forward, residual_forward and layernorm_forward.
 *  - "gelu" is the exact erf GELU (gelu_forward(.., exact=1)), "gelu_new" the
 *    tanh form (exact=0).
 *  - losses: classification and token classification are kernels.h's
 *    crossentropy_forward / crossentropy_backward_inplace (targets < 0, i.e.
 *    -100, ignored; the mean divides by the number of targets); regression
 *    (num_labels == 1) is mse_forward / mse_backward below.
 *
 * Legend: B batch, T tokens, N = B*T rows, C hidden, H heads, hs = C/H,
 * OC output channels, V vocab, P max positions, TT type vocab.
 */
#ifndef KERNELS_BERT_H
#define KERNELS_BERT_H

#include <stdint.h>

/* The nn.Linear-layout matmuls (linear_forward, ...) are in kernels.h. */

/* out = a + b elementwise (n floats): the post-LN residual x + sublayer(x). */
void residual_forward(float *out, const float *a, const float *b, long n);

/* Bidirectional multi-head attention. q, k, v (N, C): the query/key/value
 * Linear outputs, head h at columns h*hs. mask (B, T): nonzero = token, 0 =
 * padding key; NULL = no padding. att (B, H, T, T) receives the softmax of
 * q.k^T / sqrt(hs) over the unmasked keys, 0.0f exactly at masked keys; out
 * (N, C) the heads' outputs side by side. A sequence with no token at all
 * (HF's SDPA path gives 0 there) gets all-zero probabilities and output. */
void bert_attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                            const int32_t *mask, int B, int T, int C, int H);
/* dq, dk, dv (N, C) += gradients through the attention; the mask is implied
 * by att's zeros (masked keys get dk = dv = 0 exactly). scratch:
 * omp_get_max_threads() * T * T floats. */
void bert_attention_backward(float *dq, float *dk, float *dv, float *scratch, const float *dout, const float *att,
                             const float *q, const float *k, const float *v, int B, int T, int C, int H);

/* out (N, C) = (wte[tokens] + wtt[types]) + wpe[t], t = i % T (position ids
 * 0..T-1). wte (V, C), wpe (P >= T, C), wtt (TT, C); types NULL = all 0. The
 * LayerNorm that follows is layernorm_forward. */
void bert_embedding_forward(float *out, const int32_t *tokens, const int32_t *types, const float *wte,
                            const float *wpe, const float *wtt, int B, int T, int C);
/* dwte[tokens[i]] += dout[i] except where tokens[i] == pad_id (nn.Embedding
 * padding_idx; pad_id < 0: none), dwpe[i % T] += dout[i], dwtt[types[i]] +=
 * dout[i] (types NULL: row 0). Any of the three may be NULL (not computed).
 * Rows summed in order. */
void bert_embedding_backward(float *dwte, float *dwpe, float *dwtt, const float *dout, const int32_t *tokens,
                             const int32_t *types, int pad_id, int B, int T, int C);

/* BertPooler: pooled (B, C) = tanh(x[b, 0, :] . w^T + b), x (N, C), w (C, C)
 * nn.Linear layout. For a LoRA on pooler.dense compose it instead from
 * bert_first_tokens, linear_forward (+ the adapter) and tanh_forward. */
void bert_pooler_forward(float *pooled, const float *x, const float *w, const float *b, int B, int T, int C);
/* dpre (B, C) = dpooled * (1 - pooled^2) (overwritten: the gradient at the
 * dense output); dx rows b*T += dpre . w; dw (C, C) += dpre^T . x[:, 0];
 * db += column sums of dpre. dw and db may be NULL (frozen pooler). */
void bert_pooler_backward(float *dx, float *dw, float *db, float *dpre, const float *dpooled, const float *pooled,
                          const float *x, const float *w, int B, int T, int C);

/* first (B, C) = x[b, 0, :] (the [CLS] rows of x (N, C)). */
void bert_first_tokens(float *first, const float *x, int B, int T, int C);
/* dx[b, 0, :] += dfirst[b] for dx (N, C). */
void bert_first_tokens_backward(float *dx, const float *dfirst, int B, int T, int C);

/* out = tanh(x) (n floats). */
void tanh_forward(float *out, const float *x, long n);
/* dx += dout * (1 - out^2), from tanh's output. */
void tanh_backward(float *dx, const float *dout, const float *out, long n);

/* Regression loss (BertForSequenceClassification with num_labels == 1:
 * MSELoss(logits.squeeze(), labels.squeeze()), mean over the B sequences).
 * Returns sum_i (pred[i] - target[i])^2 in double: the mean is that / N. */
double mse_forward(const float *pred, const float *target, int N);
/* dpred += dscale * 2 (pred - target); dscale = dloss / N for the mean. */
void mse_backward(float *dpred, const float *pred, const float *target, int N, float dscale);

#endif
