/*
 * Kernels of the LLaMA family (LlamaForCausalLM, Mistral, Qwen2): RMSNorm,
 * rotary position embeddings (HF's rotate-half convention), causal
 * grouped-query attention, SwiGLU. Same conventions as kernels.h: row-major
 * float buffers, outputs first, then const inputs, then sizes; backward
 * functions accumulate (+=) into input gradients unless the name says
 * otherwise (the *_inplace ones); OpenMP over rows (or (batch, head) pairs)
 * with results bitwise independent of the thread count; every matmul is an
 * OpenBLAS sgemm. The numerics follow HF transformers 5.x in float32 (the
 * notes at each function say where they mirror HF's order of operations).
 *
 * Legend: N rows (= B*T), C channels (hidden_size), B batch, T sequence
 * length, Hq query heads, Hkv key/value heads (Hq = G * Hkv; query head h
 * reads kv head h / G, as HF's repeat_kv), d head_dim (may differ from C/Hq
 * when config.json gives head_dim), I intermediate size.
 *
 * Head layout: q, k, v are the q_proj/k_proj/v_proj outputs as rows of N;
 * row n = b*T + t holds the heads side by side, head h at columns
 * [h*d, (h+1)*d). A row stride ld (>= H*d) lets the three be separate
 * buffers or column slices of one fused buffer without copies.
 */
#ifndef KERNELS_LLAMA_H
#define KERNELS_LLAMA_H

#include <stddef.h>

/* ---- RMSNorm (LlamaRMSNorm): out = w * (x * rstd), rstd = 1 / sqrtf(mean(x^2) + eps).
 * out, x (N, C); w (C); rstd (N) saved for the backward. mean(x^2) is summed
 * in double and rounded to float, then rstd and the two products are float
 * ops in HF's order. out may not alias x (the backward needs x). */
void rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int N, int C, float eps);
/* dx (N, C) += input gradient of rmsnorm_forward for dout (N, C). */
void rmsnorm_backward(float *dx, const float *dout, const float *x, const float *rstd, const float *w, int N, int C);
/* dw (C) += sum over rows of dout * (x * rstd) (rows summed in order: deterministic). For full
 * fine-tuning; LoRA keeps the norm weights frozen. */
void rmsnorm_backward_params(float *dw, const float *dout, const float *x, const float *rstd, int N, int C);

/* ---- Rotary embeddings (LlamaRotaryEmbedding, rope_type "default"; apply_rotary_pos_emb).
 * inv_freq (d/2): inv_freq[i] = 1 / theta^((2i)/d), the exponent a float
 * division and the power and reciprocal float-rounded, as HF computes it in
 * float32. Another rope_type (llama3, linear, yarn...) is a different
 * inv_freq (and attention_scaling) fed to rope_table. d must be even. */
void rope_inv_freq(float *inv_freq, int d, double theta);
/* cos, sin (T, d/2): angle = (float)t * inv_freq[i] rounded to float (HF's
 * float32 outer product), cos/sin of that float angle rounded to float, times
 * attention_scaling (1 for "default"). HF's tables are (T, d) =
 * cat(half, half); only one half is stored. Positions are 0..T-1. */
void rope_table(float *cos, float *sin, const float *inv_freq, int T, int d, float attention_scaling);
/* In place on x (B*T rows of stride ldx, H heads of d): for each head and
 * i < d/2, with c, s = cos/sin[t][i], (x1, x2) = (x[i], x[i + d/2]):
 * x[i] = x1*c - x2*s, x[i + d/2] = x2*c + x1*s (HF's q*cos + rotate_half(q)*sin,
 * same float ops). Position t = row % T. Call once for q (Hq) and once for k (Hkv). */
void rope_forward_inplace(float *x, const float *cos, const float *sin, int B, int T, int H, int d, int ldx);
/* In place: turns the gradient w.r.t. the rotated x into the gradient w.r.t.
 * the unrotated x (the transpose rotation, by -angle). Overwrites, as the name says. */
void rope_backward_inplace(float *dx, const float *cos, const float *sin, int B, int T, int H, int d, int ldx);

/* ---- Causal grouped-query attention (eager_attention_forward with the causal mask).
 * q (N, ldq) Hq heads, k (N, ldk) and v (N, ldv) Hkv heads, all of size d;
 * q and k already rotated. S = (Q K^T) * d^-0.5 (sgemm alpha, the float
 * (float)(1/sqrt(d)) as HF's float32 tensor times the scalar head_dim**-0.5),
 * key j visible from query t iff j <= t and, when window > 0, t - j < window
 * (HF's sliding_window: kv_idx > q_idx - sliding_window); window <= 0: plain
 * causal. Softmax per row over the visible keys (max subtracted, sum in
 * double); att (B, Hq, T, T) receives the probabilities (invisible entries 0);
 * out (N, Hq*d) contiguous, the heads side by side (HF's transpose(1, 2) +
 * reshape: the o_proj input). One (b, query head) pair per OpenMP iteration. */
void gqa_attention_forward(float *out, float *att, const float *q, const float *k, const float *v, int B, int T,
                           int Hq, int Hkv, int d, int ldq, int ldk, int ldv, int window);
/* dq += , dk += , dv += their gradients for dout (N, Hq*d), with dq laid out
 * like q (stride ldq), dk like k (ldk), dv like v (ldv): they may be slices of
 * one fused gradient buffer. dk, dv sum the G query heads of each kv head in
 * order (one (b, kv head) pair per OpenMP iteration, so no two threads write
 * the same rows). att is the forward's. scratch: gqa_attention_scratch_floats(T)
 * floats. window as in the forward. */
void gqa_attention_backward(float *dq, float *dk, float *dv, float *scratch, const float *dout, const float *att,
                            const float *q, const float *k, const float *v, int B, int T, int Hq, int Hkv, int d,
                            int ldq, int ldk, int ldv, int window);
/* Decoding with a KV cache: out (n, Hq*d) for n new queries q (n, ldq) at
 * positions pos0 .. pos0+n-1, against the cached keys kc and values vc
 * (pos0+n rows of stride ldc, Hkv heads of d; this step's rows already in).
 * The same mask, scale and softmax as gqa_attention_forward (query i sees
 * keys j <= pos0+i, inside the window when window > 0). */
void gqa_attention_decode(float *out, const float *q, int ldq, const float *kc, const float *vc, int ldc, int n,
                          int pos0, int Hq, int Hkv, int d, int window);
/* Floats of scratch the backward needs: omp_get_max_threads() * T * T (call it
 * with the thread count the backward will run with). */
size_t gqa_attention_scratch_floats(int T);

/* ---- SwiGLU (LlamaMLP): h = silu(gate) * up, silu(x) = x / (1 + exp(-x)) (torch's
 * CPU silu, float), over n elements (h, gate, up (N, I) contiguous). exp is
 * kernels_exp (within 2 ulp of expf). */
void swiglu_forward(float *h, const float *gate, const float *up, long n);
/* dgate += dh * up * silu'(gate), dup += dh * silu(gate);
 * silu'(x) = s (1 + x (1 - s)), s = sigmoid(x). */
void swiglu_backward(float *dgate, float *dup, const float *dh, const float *gate, const float *up, long n);

#endif
