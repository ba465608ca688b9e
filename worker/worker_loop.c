/*
 * The worker side of the parameter server: compute the share of a step,
 * push each shard its range, take the shards' updates (see include/ps.h).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps.h"
#include "wire.h"

void worker_push(ps_state *r, int64_t step, uint64_t clock_version) {
    ps_ctx *p = &r->p;
    train_ctx *t = &r->t;
    size_t n = t->ad.n_params;
    memset(r->grad, 0, n * sizeof(float));
    int64_t g0, cnt, ntok = 0;
    ps_share(step, r->G, p->worker_index, p->W, &g0, &cnt);
    double tc = now_s();
    double loss = cnt > 0 ? train_grad(t, g0, cnt, r->grad, &ntok) : 0.0;
    tc = now_s() - tc;
    if (p->hook_nan_step == step) r->grad[n / 2] = NAN; /* test hook: a gradient the server must catch */
    if (!r->push_req) {
        r->push_req = xmalloc(sizeof(MPI_Request) * (size_t)p->S);
        r->push_buf = xcalloc((size_t)p->S, sizeof(uint8_t *));
    }
    int dtype = t->cfg.grad_dtype;
    size_t ds = wire_dtype_size(dtype);
    for (int s = 0; s < p->S; s++) {
        uint64_t lo = p->lo[s], count = p->hi[s] - p->lo[s];
        uint8_t *payload = xmalloc(count * ds + 1);
        wire_encode_floats(payload, r->grad + lo, count, dtype);
        Lora__Push m = LORA__PUSH__INIT;
        m.wire_version = p->hook_wire_version >= 0 ? (uint32_t)p->hook_wire_version : WIRE_VERSION;
        m.step = (uint64_t)step;
        m.worker = (uint32_t)p->rank;
        m.adapter_version = clock_version;
        m.n_tokens = (uint64_t)ntok;
        m.loss_sum = loss;
        m.dtype = dtype;
        m.offset = lo;
        m.count = count;
        m.payload.data = payload;
        m.payload.len = count * ds;
        m.checksum = wire_checksum(payload, count * ds);
        m.bytes_sent = p->bytes_sent;
        m.bytes_received = p->bytes_recv;
        m.compute_seconds = tc;
        m.stop_requested = ps_signal_seen(); /* passed on: rank 0 decides the stop (BSP) */
        size_t len;
        r->push_buf[s] = wire_pack(&m.base, &len);
        free(payload);
        if (p->hook_corrupt_step == step && len > 16) r->push_buf[s][len / 2] ^= 0x5a; /* test hook: a byte flipped on the wire */
        ps_isend(p, r->push_buf[s], len, s, TAG_PUSH, &r->push_req[s]);
    }
    r->n_push = p->S;
}

void worker_finish_step(ps_state *r) {
    if (!r->n_push) return;
    PS_MPI(MPI_Waitall(r->n_push, r->push_req, MPI_STATUSES_IGNORE));
    for (int s = 0; s < r->n_push; s++) {
        free(r->push_buf[s]);
        r->push_buf[s] = NULL;
    }
    r->n_push = 0;
}

/* One Update from shard s, checked (range, step when step >= 0), decoded into
 * dst (the full-size buffer: the shard's range is written). Returns its
 * version; *status gets its status. */
static uint64_t recv_shard_update(ps_state *r, int s, float *dst, int64_t step, int *status) {
    ps_ctx *p = &r->p;
    size_t len;
    uint8_t *buf = ps_recv(p, s, TAG_UPDATE, &len, NULL, NULL);
    struct lerr e;
    Lora__Update *u = wire_unpack_update(buf, len, s, p->n_params, &e);
    free(buf);
    if (!u) ps_abort(p, 4, "%s", e.msg);
    if (u->offset != p->lo[s] || u->count != p->hi[s] - p->lo[s])
        ps_abort(p, 4, "shard %d sent an Update for keys [%llu, %llu), but it owns [%llu, %llu)", s,
                 (unsigned long long)u->offset, (unsigned long long)(u->offset + u->count),
                 (unsigned long long)p->lo[s], (unsigned long long)p->hi[s]);
    if (step >= 0 && u->step != (uint64_t)step)
        ps_abort(p, 4, "shard %d sent the Update of step %llu during step %lld", s, (unsigned long long)u->step,
                 (long long)step);
    wire_decode_floats(dst + u->offset, u->values.data, u->count, u->dtype, 0);
    uint64_t version = u->adapter_version;
    *status = u->status;
    lora__update__free_unpacked(u, NULL);
    return version;
}

int worker_recv_updates(ps_state *r, int64_t step) {
    int status = LORA__STATUS__CONTINUE;
    for (int s = 0; s < r->p.S; s++) {
        int st;
        r->version = recv_shard_update(r, s, r->t.ad.w, step, &st);
        if (st != LORA__STATUS__CONTINUE) status = st;
    }
    return status;
}

void worker_maybe_eval(ps_state *r, int64_t steps_done) {
    const run_config *c = &r->t.cfg;
    if (!train_has_val(&r->t) || c->eval_every <= 0 || steps_done <= 0 || steps_done % c->eval_every || steps_done >= r->steps)
        return;
    double l = train_eval(&r->t);
    printf("step %5lld val loss %.4f (evaluated by rank %d on adapter version %llu)\n", (long long)steps_done, l,
           r->p.rank, (unsigned long long)r->version);
    fflush(stdout);
}

/*
 * The SSP worker. Before iteration c it asks every shard for values (Pull);
 * a shard answers once no worker is more than `staleness` iterations behind c.
 * The values it gets are version v (optimizer steps the shard applied), while
 * its gradient will join step c: it is tau = c - v steps late. With
 * [system] ssp_lookahead the worker computes at w + tau * d instead of w, d
 * being the last observed change per version of that shard's range: the
 * gradient is taken where the adapter will roughly be when it is applied
 * (the look-ahead of DANA, Hakimi et al. 2019). tau = 0, the usual case of an
 * in-step worker, leaves w as it is, so one worker under SSP is BSP exactly.
 */
void worker_run_ssp(ps_state *r) {
    ps_ctx *p = &r->p;
    size_t n = r->t.ad.n_params;
    float *pulled = xalloc_aligned(n * 4), *prev = xalloc_aligned(n * 4), *delta = xalloc_aligned(n * 4);
    uint64_t *ver = xcalloc((size_t)p->S, sizeof(uint64_t)), *prev_ver = xcalloc((size_t)p->S, sizeof(uint64_t));
    int *have_prev = xcalloc((size_t)p->S, sizeof(int));
    uint8_t **bufs = xcalloc((size_t)p->S, sizeof(uint8_t *));
    MPI_Request *reqs = xmalloc(sizeof(MPI_Request) * (size_t)p->S);
    int leave = 0, told = 0; /* told: a shard answered DONE (it saw a signal) */
    for (int64_t c = r->start_step; c < r->steps; c++) {
        leave = ps_signal_seen() || told;
        for (int s = 0; s < p->S; s++) {
            Lora__Pull m = LORA__PULL__INIT;
            m.wire_version = WIRE_VERSION;
            m.worker = (uint32_t)p->rank;
            m.clock = (uint64_t)c;
            m.leave = leave;
            size_t len;
            bufs[s] = wire_pack(&m.base, &len);
            ps_isend(p, bufs[s], len, s, TAG_PULL, &reqs[s]);
        }
        int done = 0;
        for (int s = 0; s < p->S && !leave; s++) {
            int st;
            ver[s] = recv_shard_update(r, s, pulled, -1, &st);
            done |= st == LORA__STATUS__DONE;
        }
        PS_MPI(MPI_Waitall(p->S, reqs, MPI_STATUSES_IGNORE));
        for (int s = 0; s < p->S; s++) free(bufs[s]);
        if (leave) break;
        if (done) { /* a shard saw a signal: say that this worker leaves, at the same clock */
            told = 1;
            c--;
            continue;
        }
        for (int s = 0; s < p->S; s++) {
            uint64_t lo = p->lo[s], hi = p->hi[s];
            if (have_prev[s] && ver[s] > prev_ver[s]) {
                float inv = 1.0f / (float)(ver[s] - prev_ver[s]);
                for (uint64_t i = lo; i < hi; i++) delta[i] = (pulled[i] - prev[i]) * inv;
            }
            if (!have_prev[s] || ver[s] != prev_ver[s]) {
                memcpy(prev + lo, pulled + lo, (hi - lo) * 4);
                prev_ver[s] = ver[s];
                have_prev[s] = 1;
            }
            float tau = (int64_t)ver[s] < c ? (float)(c - (int64_t)ver[s]) : 0.0f;
            float *w = r->t.ad.w;
            if (r->t.cfg.ssp_lookahead && tau > 0)
                for (uint64_t i = lo; i < hi; i++) w[i] = pulled[i] + tau * delta[i];
            else
                memcpy(w + lo, pulled + lo, (hi - lo) * 4);
        }
        r->version = ver[0];
        if (p->worker_index == 0) worker_maybe_eval(r, c);
        worker_push(r, c, r->version);
        worker_finish_step(r);
    }
    free(pulled);
    free(prev);
    free(delta);
    free(ver);
    free(prev_ver);
    free(have_prev);
    free(bufs);
    free(reqs);
}
