/*
 * The parameter server's MPI plumbing: roles and communicators, counted
 * sends and receives, the error macro's handler, aborts, test hooks.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps.h"

void ps_mpi_fail(int rc, const char *what, const char *file, int line) {
    char msg[MPI_MAX_ERROR_STRING];
    int n = 0, rank = -1;
    MPI_Error_string(rc, msg, &n);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    fprintf(stderr, "rank %d: %s:%d: %s failed: %s\n", rank, file, line, what, msg);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 3);
    exit(3);
}

_Noreturn void ps_abort(const ps_ctx *p, int code, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "lora_worker: rank %d: %s\n", p ? p->rank : -1, msg);
    fflush(stderr);
    fflush(stdout);
    MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

/* LORA_TEST_<NAME>=rank:value, for this rank; -1 when unset or for another rank. */
static int64_t hook(const char *name, int rank) {
    const char *v = getenv(name);
    if (!v) return -1;
    long r;
    long long x;
    if (sscanf(v, "%ld:%lld", &r, &x) != 2 || r != rank) return -1;
    return (int64_t)x;
}

int ps_init(ps_ctx *p, int servers, struct lerr *e) {
    memset(p, 0, sizeof *p);
    p->shm_win = MPI_WIN_NULL;
    PS_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &p->comm));
    PS_MPI(MPI_Comm_set_errhandler(p->comm, MPI_ERRORS_RETURN));
    PS_MPI(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    PS_MPI(MPI_Comm_rank(p->comm, &p->rank));
    PS_MPI(MPI_Comm_size(p->comm, &p->size));
    if (servers > p->size)
        return lerr_set(e, "[system] servers = %d but the job has only %d ranks", servers, p->size);
    if (servers > 64) return lerr_set(e, "[system] servers = %d: at most 64 server shards are supported", servers);
    p->S = servers;
    p->is_server = p->rank < p->S;
    int dedicated = p->size > p->S;
    p->W = dedicated ? p->size - p->S : p->size;
    p->is_worker = !dedicated || p->rank >= p->S;
    p->worker_index = p->is_worker ? (dedicated ? p->rank - p->S : p->rank) : -1;
    p->worker_ranks = xmalloc(sizeof(int) * (size_t)p->W);
    for (int w = 0; w < p->W; w++) p->worker_ranks[w] = dedicated ? p->S + w : w;
    /* collective: every rank calls both splits */
    PS_MPI(MPI_Comm_split(p->comm, p->is_server ? 0 : MPI_UNDEFINED, p->rank, &p->servers));
    if (p->servers != MPI_COMM_NULL) PS_MPI(MPI_Comm_set_errhandler(p->servers, MPI_ERRORS_RETURN));
    PS_MPI(MPI_Comm_split_type(p->comm, MPI_COMM_TYPE_SHARED, p->rank, MPI_INFO_NULL, &p->node));
    PS_MPI(MPI_Comm_set_errhandler(p->node, MPI_ERRORS_RETURN));
    p->hook_corrupt_step = hook("LORA_TEST_CORRUPT", p->rank);
    p->hook_nan_step = hook("LORA_TEST_NAN", p->rank);
    p->hook_wire_version = (int)hook("LORA_TEST_WIRE_VERSION", p->rank);
    return 0;
}

void ps_layout(ps_ctx *p, uint64_t n_params) {
    p->n_params = n_params;
    p->lo = xmalloc(sizeof(uint64_t) * (size_t)p->S);
    p->hi = xmalloc(sizeof(uint64_t) * (size_t)p->S);
    for (int s = 0; s < p->S; s++) {
        p->lo[s] = n_params * (uint64_t)s / (uint64_t)p->S;
        p->hi[s] = n_params * (uint64_t)(s + 1) / (uint64_t)p->S;
    }
}

/* The node's shared block for converted weights (model_alloc callbacks). */
static float *shm_alloc(size_t bytes, void *ctx, int *fill) {
    ps_ctx *p = ctx;
    int nr;
    PS_MPI(MPI_Comm_rank(p->node, &nr));
    void *base = NULL, *p0 = NULL;
    MPI_Aint qs;
    int du;
    /* collective over the node: the node's first rank holds the whole block */
    PS_MPI(MPI_Win_allocate_shared(nr == 0 ? (MPI_Aint)bytes : 0, sizeof(float), MPI_INFO_NULL, p->node, &base,
                                   &p->shm_win));
    PS_MPI(MPI_Win_shared_query(p->shm_win, 0, &qs, &du, &p0));
    *fill = nr == 0;
    return p0;
}

static void shm_ready(void *ctx) {
    ps_ctx *p = ctx;
    PS_MPI(MPI_Barrier(p->node)); /* collective over the node: the writer is done */
}

model_alloc ps_node_alloc(ps_ctx *p) {
    model_alloc a = {shm_alloc, shm_ready, p};
    return a;
}

void ps_free(ps_ctx *p) {
    if (p->shm_win != MPI_WIN_NULL) MPI_Win_free(&p->shm_win); /* collective over the node */
    if (p->servers != MPI_COMM_NULL) MPI_Comm_free(&p->servers);
    if (p->node != MPI_COMM_NULL) MPI_Comm_free(&p->node);
    if (p->comm != MPI_COMM_NULL) MPI_Comm_free(&p->comm);
    free(p->worker_ranks);
    free(p->lo);
    free(p->hi);
    memset(p, 0, sizeof *p);
}

void ps_isend(ps_ctx *p, const void *buf, size_t len, int dest, int tag, MPI_Request *req) {
    if (len > (size_t)INT32_MAX) ps_abort(p, 3, "message of %zu bytes is too large for one send", len);
    PS_MPI(MPI_Isend(buf, (int)len, MPI_BYTE, dest, tag, p->comm, req));
    p->bytes_sent += len;
}

uint8_t *ps_recv(ps_ctx *p, int src, int tag, size_t *len, int *from, int *tag_out) {
    MPI_Status st;
    PS_MPI(MPI_Probe(src, tag, p->comm, &st));
    int n = 0;
    PS_MPI(MPI_Get_count(&st, MPI_BYTE, &n));
    uint8_t *buf = xmalloc(n > 0 ? (size_t)n : 1);
    PS_MPI(MPI_Recv(buf, n, MPI_BYTE, st.MPI_SOURCE, st.MPI_TAG, p->comm, MPI_STATUS_IGNORE));
    p->bytes_recv += (uint64_t)n;
    *len = (size_t)n;
    if (from) *from = st.MPI_SOURCE;
    if (tag_out) *tag_out = st.MPI_TAG;
    return buf;
}

void ps_share(int64_t step, int64_t G, int w, int W, int64_t *g0, int64_t *n) {
    int64_t lo = G * w / W, hi = G * (w + 1) / W;
    *g0 = step * G + lo;
    *n = hi - lo;
}
