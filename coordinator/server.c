/*
 * A server shard: the optimizer state of its key range, the BSP step and the
 * SSP event loop (see include/ps.h for the protocol).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim.h"
#include "ps.h"
#include "wire.h"

void server_init(ps_state *r) {
    ps_ctx *p = &r->p;
    size_t n = p->hi[p->rank] - p->lo[p->rank];
    r->gsum = xalloc_aligned((n ? n : 1) * sizeof(float));
    r->m = xalloc_aligned((n ? n : 1) * sizeof(float));
    r->v = xalloc_aligned((n ? n : 1) * sizeof(float));
    r->upd_req = xmalloc(sizeof(MPI_Request) * (size_t)p->size);
}

void server_free(ps_state *r) {
    free(r->gsum);
    free(r->m);
    free(r->v);
    free(r->upd_req);
    free(r->upd_buf);
    r->upd_buf = NULL;
    r->upd_req = NULL;
}

/* Packs this shard's current values as an Update. */
static uint8_t *pack_update(ps_state *r, int64_t step, int status, size_t *len) {
    ps_ctx *p = &r->p;
    uint64_t lo = p->lo[p->rank];
    return wire_pack_update(r->t.ad.w + lo, lo, p->hi[p->rank] - lo, r->t.cfg.param_dtype, r->version,
                            (uint64_t)step, status, len);
}

void server_finish_step(ps_state *r) {
    if (!r->n_upd) return;
    PS_MPI(MPI_Waitall(r->n_upd, r->upd_req, MPI_STATUSES_IGNORE));
    free(r->upd_buf);
    r->upd_buf = NULL;
    r->n_upd = 0;
}

static int nonfinite(const float *x, size_t n) {
    int bad = 0;
    for (size_t i = 0; i < n; i++) bad |= !isfinite(x[i]);
    return bad;
}

/* Shards exchange their squared norms and NaN flags (ShardStat, shard order)
 * so that all take the same decision. Returns the global squared norm. */
static double exchange_stats(ps_state *r, int64_t step, double sq, int *bad) {
    ps_ctx *p = &r->p;
    if (p->rank == 0) ckpt_decide(r, step, &r->stop_after, &r->ckpt_after);
    if (p->S == 1) return sq;
    Lora__ShardStat m = LORA__SHARD_STAT__INIT;
    m.wire_version = WIRE_VERSION;
    m.shard = (uint32_t)p->rank;
    m.step = (uint64_t)step;
    m.sq_sum = sq;
    m.nonfinite = *bad;
    m.bytes_sent = p->bytes_sent;
    m.bytes_received = p->bytes_recv;
    m.stop = p->rank == 0 ? r->stop_after : ps_signal_seen(); /* from another shard: its own signal, passed on */
    m.checkpoint = p->rank == 0 && r->ckpt_after;
    size_t len;
    uint8_t *buf = wire_pack(&m.base, &len);
    MPI_Request *req = xmalloc(sizeof(MPI_Request) * (size_t)p->S);
    int nr = 0;
    for (int s = 0; s < p->S; s++)
        if (s != p->rank) ps_isend(p, buf, len, s, TAG_STAT, &req[nr++]);
    double *sqs = xcalloc((size_t)p->S, sizeof(double));
    sqs[p->rank] = sq;
    for (int s = 0; s < p->S; s++) {
        if (s == p->rank) continue;
        size_t l;
        uint8_t *b = ps_recv(p, s, TAG_STAT, &l, NULL, NULL);
        struct lerr e;
        Lora__ShardStat *st = wire_unpack_shard_stat(b, l, s, &e);
        free(b);
        if (!st) ps_abort(p, 4, "%s", e.msg);
        if (st->step != (uint64_t)step) ps_abort(p, 4, "shard %d is at step %llu, this shard at %lld", s,
                                                 (unsigned long long)st->step, (long long)step);
        sqs[s] = st->sq_sum;
        *bad |= st->nonfinite;
        if (s == 0) {
            r->stop_after = st->stop;
            r->ckpt_after = st->checkpoint;
        } else if (p->rank == 0 && st->stop && !r->peer_stop) {
            r->peer_stop = 1; /* decided with the next step */
            if (!ps_signal_seen())
                fprintf(stderr, "lora_worker: server shard %d received a stop signal: stopping after the next step\n", s);
        }
        if (p->rank == 0) r->peer_bytes[s] = st->bytes_sent + st->bytes_received;
        lora__shard_stat__free_unpacked(st, NULL);
    }
    double total = 0;
    for (int s = 0; s < p->S; s++) total += sqs[s]; /* shard order: the same sum on every shard */
    PS_MPI(MPI_Waitall(nr, req, MPI_STATUSES_IGNORE));
    free(req);
    free(buf);
    free(sqs);
    return total;
}

/* Receives one Push from `from` (or any rank) with the given tag, checked. */
static Lora__Push *recv_push(ps_state *r, int src, int64_t step) {
    ps_ctx *p = &r->p;
    size_t len;
    int from;
    uint8_t *buf = ps_recv(p, src, TAG_PUSH, &len, &from, NULL);
    struct lerr e;
    Lora__Push *m = wire_unpack_push(buf, len, from, p->n_params, &e);
    free(buf);
    if (!m) ps_abort(p, 4, "%s", e.msg);
    uint64_t lo = p->lo[p->rank], count = p->hi[p->rank] - lo;
    if (m->offset != lo || m->count != count)
        ps_abort(p, 4, "rank %d pushed keys [%llu, %llu) to shard %d, which owns [%llu, %llu)", from,
                 (unsigned long long)m->offset, (unsigned long long)(m->offset + m->count), p->rank,
                 (unsigned long long)lo, (unsigned long long)(lo + count));
    if (step >= 0 && m->step != (uint64_t)step)
        ps_abort(p, 4, "rank %d pushed for step %llu while the shard is at step %lld", from,
                 (unsigned long long)m->step, (long long)step);
    return m;
}

static void send_updates(ps_state *r, int64_t step, int status) {
    ps_ctx *p = &r->p;
    size_t len;
    r->upd_buf = pack_update(r, step, status, &len);
    for (int w = 0; w < p->W; w++) ps_isend(p, r->upd_buf, len, p->worker_ranks[w], TAG_UPDATE, &r->upd_req[w]);
    r->n_upd = p->W;
}

void server_step_bsp(ps_state *r, int64_t step) {
    ps_ctx *p = &r->p;
    const run_config *c = &r->t.cfg;
    uint64_t lo = p->lo[p->rank], n = p->hi[p->rank] - lo;
    memset(r->gsum, 0, n * sizeof(float));
    int64_t ntok = 0;
    double loss = 0;
    r->step_compute = 0;
    /* fixed order: worker ranks ascending, whatever order the messages arrive in */
    for (int w = 0; w < p->W; w++) {
        Lora__Push *m = recv_push(r, p->worker_ranks[w], step);
        wire_decode_floats(r->gsum, m->payload.data, n, m->dtype, 1);
        ntok += (int64_t)m->n_tokens;
        loss += m->loss_sum;
        if (m->compute_seconds > r->step_compute) r->step_compute = m->compute_seconds;
        if (m->stop_requested && p->rank == 0 && !r->peer_stop) {
            r->peer_stop = 1;
            if (!ps_signal_seen())
                fprintf(stderr, "lora_worker: rank %d received a stop signal: stopping after this step (with a "
                                "checkpoint when [checkpoint] dir is set)\n", m->worker);
        }
        if (p->rank == 0 && m->worker != 0) r->peer_bytes[m->worker] = m->bytes_sent + m->bytes_received;
        lora__push__free_unpacked(m, NULL);
    }
    if (ntok > 0) grad_scale(r->gsum, n, 1.0f / (float)ntok);
    int bad = nonfinite(r->gsum, n) || !isfinite(loss);
    double sq = exchange_stats(r, step, bad ? 0.0 : grad_sq_sum(r->gsum, n), &bad);
    r->step_loss = ntok ? loss / (double)ntok : 0;
    r->step_tokens = ntok;
    r->step_norm = sqrt(sq);
    r->step_skipped = bad;
    optim_policy pol = {{c->beta1, c->beta2, c->eps, c->weight_decay},
                        {(sched_kind)c->schedule, c->lr, c->warmup_steps, r->steps, c->min_lr_ratio},
                        c->grad_clip,
                        c->nan_policy};
    optim_outcome oc = optim_update(&pol, r->t.ad.w + lo, r->m, r->v, r->gsum, n, !bad, sqrt(sq), step, &r->opt_t,
                                    &r->step_lr);
    if (oc == OPT_ABORT)
        ps_abort(p, 5, "step %lld: the aggregated gradient holds NaN or Inf ([system] nan_policy = abort)",
                 (long long)step + 1);
    if (oc == OPT_DIVERGED)
        ps_abort(p, 5,
                 "step %lld: shard %d: the trainable values became non-finite after the update (lr %g, grad norm "
                 "%g): the run diverged; stopping without saving (lower optim.lr or set optim.grad_clip)",
                 (long long)step + 1, p->rank, r->step_lr, sqrt(sq));
    if (optim_skip_limit(oc, c->max_skipped, &r->skip_run) == OPT_DIVERGED)
        ps_abort(p, 5,
                 "step %lld: %lld steps in a row had a non-finite loss or gradient: the run diverged; stopping "
                 "without saving ([system] max_skipped_steps = %d; lower optim.lr?)",
                 (long long)step + 1, (long long)r->skip_run, c->max_skipped);
    if (oc == OPT_SKIPPED && p->rank == 0)
        fprintf(stderr, "lora_worker: warning: step %lld: the aggregated gradient holds NaN or Inf; step skipped "
                        "([system] nan_policy = skip)\n", (long long)step + 1);
    r->version++;
    send_updates(r, step, step + 1 == r->steps || r->stop_after ? LORA__STATUS__DONE : LORA__STATUS__CONTINUE);
}

/* ---------------------------------------------------------------- SSP */

typedef struct {
    int worker;
    int64_t clock;
} pending_pull;

void server_run_ssp(ps_state *r, void (*report)(ps_state *r, int64_t step, double t_step)) {
    ps_ctx *p = &r->p;
    const run_config *c = &r->t.cfg;
    uint64_t lo = p->lo[p->rank], n = p->hi[p->rank] - lo;
    int64_t *clock = xcalloc((size_t)p->W, sizeof(int64_t));
    for (int w = 0; w < p->W; w++) clock[w] = r->start_step;
    int *widx = xmalloc(sizeof(int) * (size_t)p->size);
    for (int i = 0; i < p->size; i++) widx[i] = -1;
    for (int w = 0; w < p->W; w++) widx[p->worker_ranks[w]] = w;
    pending_pull *pend = xmalloc(sizeof(pending_pull) * (size_t)p->W);
    int npend = 0;
    int *left = xcalloc((size_t)p->W, sizeof(int)); /* workers that stopped on a signal */
    /* per-iteration loss, kept for the coordinator's line when the slowest worker finishes it */
    int ring = c->staleness + 2;
    double *ring_loss = xcalloc((size_t)ring, sizeof(double));
    int64_t *ring_tok = xcalloc((size_t)ring, sizeof(int64_t));
    double *ring_compute = xcalloc((size_t)ring, sizeof(double));
    int64_t min_clock = r->start_step, done_pushes = 0;
    int64_t total = r->steps > r->start_step ? (r->steps - r->start_step) * p->W : 0;
    double t_last = now_s();
    optim_policy pol = {{c->beta1, c->beta2, c->eps, c->weight_decay},
                        {(sched_kind)c->schedule, c->lr, c->warmup_steps, r->steps, c->min_lr_ratio},
                        c->grad_clip,
                        c->nan_policy};
    int64_t acc_tok = 0;
    int acc_n = 0, acc_bad = 0;
    memset(r->gsum, 0, n * sizeof(float));
    /* outstanding sends (each Update has its own buffer) */
    int cap = 4 * p->W + 4, nout = 0;
    MPI_Request *req = xmalloc(sizeof(MPI_Request) * (size_t)cap);
    uint8_t **bufs = xmalloc(sizeof(uint8_t *) * (size_t)cap);
    while (done_pushes < total || npend > 0) {
        size_t len;
        int from, tag;
        uint8_t *buf = ps_recv(p, MPI_ANY_SOURCE, MPI_ANY_TAG, &len, &from, &tag);
        int w = from >= 0 && from < p->size ? widx[from] : -1;
        if (w < 0) ps_abort(p, 4, "rank %d, which is not a worker, sent tag %d to shard %d", from, tag, p->rank);
        struct lerr e;
        if (tag == TAG_PULL) {
            Lora__Pull *m = wire_unpack_pull(buf, len, from, &e);
            free(buf);
            if (!m) ps_abort(p, 4, "%s", e.msg);
            if (m->leave) {
                /* it stops: its remaining iterations will not come, and it holds nobody back */
                if (!left[w]) total -= r->steps - clock[w];
                left[w] = 1;
            } else {
                pend[npend].worker = from;
                pend[npend].clock = (int64_t)m->clock;
                npend++;
            }
            lora__pull__free_unpacked(m, NULL);
        } else if (tag == TAG_PUSH) {
            Lora__Push *m = wire_unpack_push(buf, len, from, p->n_params, &e);
            free(buf);
            if (!m) ps_abort(p, 4, "%s", e.msg);
            if (m->offset != lo || m->count != n || (int64_t)m->step != clock[w])
                ps_abort(p, 4, "rank %d pushed clock %llu keys [%llu, +%llu) to shard %d, expected clock %lld keys "
                         "[%llu, +%llu)", from, (unsigned long long)m->step, (unsigned long long)m->offset,
                         (unsigned long long)m->count, p->rank, (long long)clock[w], (unsigned long long)lo,
                         (unsigned long long)n);
            /* Pushes accumulate (sums of token-loss gradients, so each counts by its tokens); every W
             * pushes, a step's worth of samples, the shard takes one AdamW step on their mean, as BSP
             * would, except that the gradients may come from values up to `staleness` steps old. */
            wire_decode_floats(r->gsum, m->payload.data, n, m->dtype, 1);
            acc_tok += (int64_t)m->n_tokens;
            acc_bad |= !isfinite(m->loss_sum);
            if (++acc_n == p->W) {
                if (acc_tok) grad_scale(r->gsum, n, 1.0f / (float)acc_tok);
                int bad = acc_bad || nonfinite(r->gsum, n);
                /* clipping on the shard's own slice: shards do not synchronize under SSP */
                optim_outcome oc = optim_update(&pol, r->t.ad.w + lo, r->m, r->v, r->gsum, n, !bad,
                                                bad ? 0.0 : sqrt(grad_sq_sum(r->gsum, n)), (int64_t)r->version,
                                                &r->opt_t, NULL);
                if (oc == OPT_ABORT)
                    ps_abort(p, 5, "shard %d: the gradient of update %lld holds NaN or Inf ([system] nan_policy = "
                             "abort)", p->rank, (long long)r->version + 1);
                if (oc == OPT_DIVERGED)
                    ps_abort(p, 5, "shard %d: update %lld: the trainable values became non-finite (the run "
                             "diverged; lower optim.lr or set optim.grad_clip)", p->rank, (long long)r->version + 1);
                if (oc == OPT_SKIPPED)
                    fprintf(stderr, "lora_worker: warning: shard %d: the gradient of update %lld holds NaN or Inf; "
                                    "update skipped\n", p->rank, (long long)r->version + 1);
                r->version++;
                memset(r->gsum, 0, n * sizeof(float));
                acc_tok = 0;
                acc_n = 0;
                acc_bad = 0;
            }
            ring_loss[m->step % ring] += m->loss_sum;
            ring_tok[m->step % ring] += (int64_t)m->n_tokens;
            if (m->compute_seconds > ring_compute[m->step % ring]) ring_compute[m->step % ring] = m->compute_seconds;
            if (p->rank == 0) r->peer_bytes[from] = m->bytes_sent + m->bytes_received;
            clock[w]++;
            done_pushes++;
            lora__push__free_unpacked(m, NULL);
            int64_t mc = INT64_MAX;
            for (int k = 0; k < p->W; k++)
                if (!left[k] && clock[k] < mc) mc = clock[k];
            if (mc == INT64_MAX) mc = min_clock; /* everyone left */
            while (min_clock < mc) { /* the slowest worker finished iteration min_clock */
                int slot = (int)(min_clock % ring);
                r->step_loss = ring_tok[slot] ? ring_loss[slot] / (double)ring_tok[slot] : 0;
                r->step_tokens = ring_tok[slot];
                r->step_lr = lr_at(&pol.sched, min_clock);
                r->step_compute = ring_compute[slot];
                ring_loss[slot] = 0;
                ring_tok[slot] = 0;
                ring_compute[slot] = 0;
                double tn = now_s();
                if (report && p->rank == 0) report(r, min_clock, tn - t_last);
                t_last = tn;
                min_clock++;
            }
        } else {
            free(buf);
            ps_abort(p, 4, "rank %d sent an unexpected message (tag %d) to shard %d under SSP", from, tag, p->rank);
        }
        /* answer the pulls that the staleness bound now allows; after a signal, answer every pull at
         * once with DONE: the workers stop and say so */
        int stopping = ps_signal_seen();
        for (int i = 0; i < npend;) {
            if (stopping || pend[i].clock - min_clock <= c->staleness) {
                if (nout == cap) {
                    PS_MPI(MPI_Waitall(nout, req, MPI_STATUSES_IGNORE));
                    for (int k = 0; k < nout; k++) free(bufs[k]);
                    nout = 0;
                }
                size_t l;
                bufs[nout] = pack_update(r, pend[i].clock, stopping ? LORA__STATUS__DONE : LORA__STATUS__CONTINUE, &l);
                ps_isend(p, bufs[nout], l, pend[i].worker, TAG_UPDATE, &req[nout]);
                nout++;
                pend[i] = pend[--npend];
            } else
                i++;
        }
    }
    PS_MPI(MPI_Waitall(nout, req, MPI_STATUSES_IGNORE));
    for (int k = 0; k < nout; k++) free(bufs[k]);
    free(req);
    free(bufs);
    /* where a resume starts: every worker has pushed at least this many iterations */
    int64_t done = INT64_MAX;
    for (int k = 0; k < p->W; k++) done = clock[k] < done ? clock[k] : done;
    r->ssp_steps_done = p->W ? done : r->steps;
    free(clock);
    free(left);
    free(widx);
    free(pend);
    free(ring_loss);
    free(ring_tok);
    free(ring_compute);
}
