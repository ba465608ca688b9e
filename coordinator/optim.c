/*
 * optim: AdamW, learning-rate schedules and gradient clipping (include/optim.h).
 *
 * Owns no state: the caller (a parameter-server shard, or the single-process
 * trainer) owns params, grads, m and v as flat float buffers and steps any
 * range of them. The arithmetic follows what torch 2.x computes on the CPU for
 * float32 tensors, operation by operation, so that a run can be compared with
 * a PyTorch reference bit for bit:
 *
 *  - torch.optim.AdamW, single-tensor path (the CPU default). The Python
 *    scalars (lr, betas, eps, wd and the bias corrections) are doubles; each
 *    tensor op casts its scalar operand to float, so the constants below are
 *    formed in double and then cast once.
 *  - exp_avg.lerp_(grad, w): ATen's vectorized lerp is fmadd(coeff, end - self,
 *    base) (LerpKernel.cpp), i.e. one fused multiply-add; GCC-built wheels also
 *    contract the scalar tail the same way. So m = fmaf(w, g - m, m) for w < 0.5.
 *  - exp_avg_sq.mul_(beta2).addcmul_(g, g, value): addcmul is self + value*t1*t2,
 *    and GCC on x86 contracts its last multiply with the add (PyTorch's own
 *    inductor had to copy this, pytorch#183904): v = fmaf(value*g, g, v*beta2).
 *  - every other op (mul_, sqrt, div, add_, addcdiv_) is a single IEEE op.
 *
 * The header's hyperparameters are floats (the run config stores floats), but
 * torch's are the doubles the user wrote in Python. optim_decimal() recovers
 * that double from the float: the shortest decimal that rounds to the float
 * (what Python's repr would print) read back as a double. For every value that
 * someone types, such as lr 5e-3 or beta2 0.999, it is exactly the Python
 * double, so the float API loses nothing against a torch reference.
 *
 * Every element is updated on its own, so the result does not depend on the
 * number of OpenMP threads nor on the SIMD width (the AVX path and the scalar
 * path perform the same correctly rounded operations).
 */
#include "optim.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#if defined(__AVX__) && defined(__FMA__)
#include <immintrin.h>
#define OPTIM_AVX 1
#endif

/* Below this many values a step stays on the calling thread. */
#define OPTIM_PAR_MIN 65536

/* The double that the float x was most likely typed as: the shortest decimal
 * (1 to 9 significant digits) that reads back as x, parsed as a double. */
static double optim_decimal(float x) {
    if (!isfinite(x) || x == 0.0f) return (double)x;
    char buf[32];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)x);
        if (strtof(buf, NULL) == x) return strtod(buf, NULL);
    }
    return (double)x; /* not reached: 9 digits always round-trip a float */
}

/* The float constants of one step, as torch forms them. */
typedef struct {
    float decay;    /* (float)(1 - lr*wd) */
    float w1;       /* lerp weight (float)(1 - beta1) */
    float beta2;    /* (float)beta2 */
    float w2;       /* (float)(1 - beta2) */
    float bc2_sqrt; /* (float)sqrt(1 - beta2^t) */
    float eps;
    float neg_step; /* (float)(-lr / (1 - beta1^t)) */
    int decay_on;   /* torch skips mul_ when weight_decay == 0 */
} adamw_consts;

/* One element. The order of operations is torch's; see the file comment. */
static inline void adamw_one(float *p, float *m, float *v, float g, const adamw_consts *k) {
    float pp = *p;
    if (k->decay_on) pp = pp * k->decay;
    float mm = *m;
    if (k->w1 < 0.5f) mm = fmaf(k->w1, g - mm, mm);
    else mm = fmaf(k->w1 - 1.0f, g - mm, g);
    float vv = fmaf(k->w2 * g, g, *v * k->beta2);
    float denom = sqrtf(vv) / k->bc2_sqrt + k->eps;
    *p = pp + (k->neg_step * mm) / denom;
    *m = mm;
    *v = vv;
}

#ifdef OPTIM_AVX
/* Eight elements, the same operations as adamw_one (all correctly rounded, so
 * the results are bitwise the scalar ones). GCC will not vectorize sqrtf
 * without -fno-math-errno, hence the intrinsics. */
static inline void adamw_eight(float *p, float *m, float *v, const float *g, const adamw_consts *k) {
    __m256 gg = _mm256_loadu_ps(g);
    __m256 pp = _mm256_loadu_ps(p);
    if (k->decay_on) pp = _mm256_mul_ps(pp, _mm256_set1_ps(k->decay));
    __m256 mm = _mm256_loadu_ps(m);
    __m256 diff = _mm256_sub_ps(gg, mm);
    if (k->w1 < 0.5f) mm = _mm256_fmadd_ps(_mm256_set1_ps(k->w1), diff, mm);
    else mm = _mm256_fmadd_ps(_mm256_set1_ps(k->w1 - 1.0f), diff, gg);
    __m256 vv = _mm256_mul_ps(_mm256_loadu_ps(v), _mm256_set1_ps(k->beta2));
    vv = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(k->w2), gg), gg, vv);
    __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vv), _mm256_set1_ps(k->bc2_sqrt)),
                                 _mm256_set1_ps(k->eps));
    pp = _mm256_add_ps(pp, _mm256_div_ps(_mm256_mul_ps(_mm256_set1_ps(k->neg_step), mm), denom));
    _mm256_storeu_ps(p, pp);
    _mm256_storeu_ps(m, mm);
    _mm256_storeu_ps(v, vv);
}
#endif

void adamw_step64(float *p, float *m, float *v, const float *g, size_t n, int64_t t, double lr,
                  const adamw_hparams *h) {
    double beta1 = optim_decimal(h->beta1), beta2 = optim_decimal(h->beta2);
    double eps = optim_decimal(h->eps), wd = optim_decimal(h->weight_decay);
    double step = (double)t; /* torch keeps step as a float tensor; .item() gives a double */
    double bc1 = 1.0 - pow(beta1, step);
    double bc2 = 1.0 - pow(beta2, step);
    adamw_consts k = {
        .decay = (float)(1.0 - lr * wd),
        .w1 = (float)(1.0 - beta1),
        .beta2 = (float)beta2,
        .w2 = (float)(1.0 - beta2),
        .bc2_sqrt = (float)sqrt(bc2), /* math.sqrt (older torch) or ** 0.5 (newer): both correctly rounded */
        .eps = (float)eps,
        .neg_step = (float)(-(lr / bc1)),
        .decay_on = wd != 0.0,
    };
#ifdef OPTIM_AVX
    size_t n8 = n / 8;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (n >= OPTIM_PAR_MIN)
#endif
    for (size_t b = 0; b < n8; b++) adamw_eight(p + 8 * b, m + 8 * b, v + 8 * b, g + 8 * b, &k);
    for (size_t i = 8 * n8; i < n; i++) adamw_one(p + i, m + i, v + i, g[i], &k);
#else
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (n >= OPTIM_PAR_MIN)
#endif
    for (size_t i = 0; i < n; i++) adamw_one(p + i, m + i, v + i, g[i], &k);
#endif
}

void adamw_step(float *p, float *m, float *v, const float *g, size_t n, int64_t t, float lr, const adamw_hparams *h) {
    adamw_step64(p, m, v, g, n, t, optim_decimal(lr), h);
}

/* transformers' lr_lambda for each schedule, in Python's double arithmetic. */
static double lr_factor(const lr_schedule *s, int64_t step) {
    double w = (double)s->warmup;
    if (step < s->warmup) return (double)step / (w > 1.0 ? w : 1.0);
    if (s->kind == SCHED_CONSTANT) return 1.0;
    double floor_ratio = s->min_lr_ratio > 0.0f ? optim_decimal(s->min_lr_ratio) : 0.0;
    double f;
    int64_t span = s->total - s->warmup;
    if (span < 1) span = 1;
    if (s->kind == SCHED_COSINE) {
        /* progress is clamped at 1 so that the rate stays at its floor past
         * total; transformers' cosine would start to climb again. */
        double progress = (double)(step - s->warmup) / (double)span;
        if (progress > 1.0) progress = 1.0;
        f = 0.5 * (1.0 + cos(3.141592653589793 * progress)); /* math.pi */
        if (f < 0.0) f = 0.0;
    } else {
        f = (double)(s->total - step) / (double)span;
        if (f < 0.0) f = 0.0;
    }
    /* the floor as transformers' cosine_with_min_lr applies it
     * (factor * (1 - min_lr_rate) + min_lr_rate); the linear schedule gets the
     * same treatment, so it decays to lr * min_lr_ratio instead of 0 */
    if (floor_ratio > 0.0) f = f * (1.0 - floor_ratio) + floor_ratio;
    return f;
}

double lr_at64(const lr_schedule *s, int64_t step) {
    return optim_decimal(s->lr) * lr_factor(s, step); /* LambdaLR: base_lr * lambda(step) */
}

float lr_at(const lr_schedule *s, int64_t step) { return (float)lr_at64(s, step); }

double grad_sq_sum(const float *g, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)g[i] * (double)g[i];
    return s;
}

/* torch: clip_coef = max_norm / (total_norm + 1e-6) on a float32 tensor, where
 * python-scalar / tensor is tensor.reciprocal() * scalar; then clamp(max=1).
 * A NaN norm gives a NaN coefficient, as in torch (the caller's nan policy
 * decides what to do with it). */
float clip_coef(double total_norm, float max_norm) {
    if (!(max_norm > 0.0f)) return 1.0f;
    float d = (float)total_norm + 1e-6f;
    float c = (1.0f / d) * max_norm;
    return c > 1.0f ? 1.0f : c;
}

void grad_scale(float *g, size_t n, float c) {
#ifdef _OPENMP
#pragma omp parallel for simd schedule(static) if (n >= OPTIM_PAR_MIN)
#endif
    for (size_t i = 0; i < n; i++) g[i] *= c;
}

optim_outcome optim_skip_limit(optim_outcome oc, int max, int64_t *run) {
    if (oc == OPT_APPLIED) *run = 0;
    if (oc != OPT_SKIPPED) return oc;
    return ++*run >= max && max > 0 ? OPT_DIVERGED : OPT_SKIPPED;
}

optim_outcome optim_update(const optim_policy *pol, float *p, float *m, float *v, float *g, size_t n, int finite,
                           double norm, int64_t pos, int64_t *applied, float *lr_out) {
    float lr = lr_at(&pol->sched, pos);
    if (lr_out) *lr_out = lr;
    if (!finite || !isfinite(norm)) return pol->nan_abort ? OPT_ABORT : OPT_SKIPPED;
    float coef = clip_coef(norm, pol->grad_clip);
    if (coef < 1.0f) grad_scale(g, n, coef);
    adamw_step(p, m, v, g, n, ++*applied, lr, &pol->hp);
    /* m and v follow a finite gradient's finite values; p is what can blow up */
    return first_nonfinite(p, n) >= 0 ? OPT_DIVERGED : OPT_APPLIED;
}
