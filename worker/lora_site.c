/*
 * The LoRA part of a site's forward and backward, with dropout (see
 * include/lora.h): out += scale * (dropout(x) A^T) B^T. The same for every
 * model family; the base matmul is the caller's (model_linear_forward).
 *
 * Dropout masks are a pure function of (seed, sample id, site, position,
 * channel): the backward regenerates them, and a sample's mask is the same
 * whichever worker or batch slot computes it (BSP at any N equals the single
 * process).
 */
#include <cblas.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "lora.h"
#include "util.h"

lora_ws *lora_ws_create(const lora_adapter *a, int n_sites, int B, int T, int max_in) {
    lora_ws *w = xcalloc(1, sizeof *w);
    size_t N = (size_t)B * (size_t)T;
    int r = a ? a->spec.r : 0;
    w->n_sites = n_sites;
    w->Bmax = B;
    w->Tmax = T;
    w->r = r;
    w->u_off = xcalloc((size_t)(n_sites ? n_sites : 1), sizeof(size_t));
    size_t nu = 0;
    for (int i = 0; i < n_sites; i++) {
        w->u_off[i] = SIZE_MAX;
        if (a && a->site_mod && a->site_mod[i] >= 0) {
            w->u_off[i] = nu;
            nu += N * (size_t)r;
        }
    }
    size_t ndrop = a && a->spec.dropout > 0 ? N * (size_t)max_in : 1;
    w->u = xalloc_aligned((nu ? nu : 1) * sizeof(float));
    w->du = xalloc_aligned(N * (size_t)(r ? r : 1) * sizeof(float));
    w->dropx = xalloc_aligned(ndrop * sizeof(float));
    w->sample_ids = xcalloc((size_t)B, sizeof(int64_t));
    w->bytes = (nu + N * (size_t)(r ? r : 1) + ndrop) * sizeof(float) + (size_t)B * sizeof(int64_t);
    return w;
}

void lora_ws_free(lora_ws *w) {
    if (!w) return;
    free(w->u);
    free(w->u_off);
    free(w->du);
    free(w->dropx);
    free(w->sample_ids);
    free(w);
}

void lora_ws_begin(lora_ws *w, int train, uint64_t seed, const int64_t *sample_ids, int B, int T) {
    w->train = train;
    w->drop_seed = seed;
    w->T = T;
    for (int b = 0; b < B && b < w->Bmax; b++) w->sample_ids[b] = sample_ids ? sample_ids[b] : b;
}

/* The mask's row hash of (sample, site, position). */
static uint64_t mask_row(const lora_ws *w, int site, int i) {
    int b = i / w->T, t = i % w->T;
    return mix64(w->drop_seed ^ mix64((uint64_t)w->sample_ids[b] * 0x100000001b3ull +
                                      (uint64_t)site * 0x9e3779b97f4a7c15ull + (uint64_t)t));
}

static uint32_t keep_threshold(float p) {
    double t = (double)p * 4294967296.0;
    return (uint32_t)(t > 4294967295.0 ? 4294967295.0 : t);
}

/* out = dropout(x): keep when a hashed uniform is >= p, scaled by 1/(1-p). */
static void dropout_apply(float *out, const float *x, const lora_ws *w, int site, int N, int in, float p) {
    float keep = 1.0f / (1.0f - p);
    uint32_t thr = keep_threshold(p);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        uint64_t row = mask_row(w, site, i);
        const float *xi = x + (long)i * in;
        float *oi = out + (long)i * in;
        for (int j = 0; j < in; j++) {
            uint32_t h = (uint32_t)(mix64(row + (uint64_t)j) >> 32);
            oi[j] = h >= thr ? xi[j] * keep : 0.0f;
        }
    }
}

void lora_forward(const lora_adapter *a, lora_ws *w, int site, float *out, const float *x, int N, int in, int oc) {
    int mi = a && a->site_mod ? a->site_mod[site] : -1;
    if (mi < 0) return;
    const lora_module *md = &a->mod[mi];
    int r = md->r;
    const float *xin = x;
    if (w->train && a->spec.dropout > 0) {
        dropout_apply(w->dropx, x, w, site, N, in, a->spec.dropout);
        xin = w->dropx;
    }
    float *u = w->u + w->u_off[site];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, r, in, 1.0f, xin, in, lora_A(a, md), in, 0.0f, u, r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, oc, r, md->scale, u, r, lora_B(a, md), r, 1.0f, out, oc);
}

void lora_backward(const lora_adapter *a, lora_ws *w, int site, float *grad, float *dx, const float *dout,
                   const float *x, int N, int in, int oc) {
    int mi = a && a->site_mod ? a->site_mod[site] : -1;
    if (mi < 0) return;
    const lora_module *md = &a->mod[mi];
    int r = md->r;
    const float *u = w->u + w->u_off[site];
    float *gA = grad + a->tensor[md->tA].off, *gB = grad + a->tensor[md->tB].off;
    int drop = w->train && a->spec.dropout > 0;
    /* dB += scale dout^T u ; du = scale dout B ; dA += du^T x_dropped */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, oc, r, N, md->scale, dout, oc, u, r, 1.0f, gB, r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, r, oc, md->scale, dout, oc, lora_B(a, md), r, 0.0f,
                w->du, r);
    const float *xin = x;
    if (drop) {
        dropout_apply(w->dropx, x, w, site, N, in, a->spec.dropout);
        xin = w->dropx;
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, in, N, 1.0f, w->du, r, xin, in, 1.0f, gA, in);
    if (!dx) return;
    if (!drop) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, in, r, 1.0f, w->du, r, lora_A(a, md), in, 1.0f, dx,
                    in);
        return;
    }
    /* dx += mask * (du A) / (1 - p): the mask is the dropout of a ones tensor */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, in, r, 1.0f, w->du, r, lora_A(a, md), in, 0.0f, w->dropx,
                in);
    float keep = 1.0f / (1.0f - a->spec.dropout);
    uint32_t thr = keep_threshold(a->spec.dropout);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        uint64_t row = mask_row(w, site, i);
        float *di = dx + (long)i * in;
        const float *ti = w->dropx + (long)i * in;
        for (int j = 0; j < in; j++) {
            uint32_t h = (uint32_t)(mix64(row + (uint64_t)j) >> 32);
            if (h >= thr) di[j] += ti[j] * keep;
        }
    }
}
