/*
 * ps_: the parameter server's MPI side (only the files that include this
 * header talk MPI).
 *
 * Roles. Ranks 0..S-1 are server shards; shard s owns the key range
 * [lo[s], hi[s]) of the flat adapter buffer (an even split of the values, the
 * way ps-lite splits a key space), so no single link carries every push.
 * Rank 0 is also the coordinator. Ranks S..N-1 are workers; when N == S every
 * rank is a worker too (N = 1: one rank does everything).
 *
 * A BSP step v: each worker computes the summed gradient of its share of the
 * step's global samples (train_grad) and pushes each shard its range; each
 * shard receives the pushes in worker-rank order (a fixed summation order, so
 * runs are bitwise repeatable), divides by the step's token count, agrees with
 * the other shards on the clip factor and on skipping a non-finite step,
 * steps AdamW on its range and sends every worker the new values (version v+1).
 *
 * SSP (staleness s > 0): a worker asks each shard for values before an
 * iteration (Pull with its clock c), computes, and pushes. A shard applies each
 * push as its own AdamW step, with the push's gradient divided by the push's own
 * token count (a worker's share is a small batch of its own), and answers a
 * Pull at clock c only once every worker has pushed at least c - s iterations:
 * a fast worker is held back, never more than s iterations ahead of the slowest.
 *
 * Errors: every communicator uses MPI_ERRORS_RETURN and every call goes
 * through PS_MPI, which prints the MPI error string with rank and place and
 * aborts the job. A message that fails to decode is reported naming the sender
 * and aborts the job (MPI_Abort), never a crash or a hang.
 */
#ifndef PS_H
#define PS_H

#include <mpi.h>
#include <stdint.h>

#include "trainer.h"

enum { TAG_HELLO = 1, TAG_INIT, TAG_PUSH, TAG_UPDATE, TAG_PULL, TAG_STAT, TAG_FINAL, TAG_STATE };

typedef struct {
    MPI_Comm comm;        /* dup of MPI_COMM_WORLD, errors return */
    MPI_Comm servers;     /* ranks < S; MPI_COMM_NULL elsewhere */
    MPI_Comm node;        /* ranks sharing memory with this one */
    MPI_Win shm_win;      /* the node's shared block of converted base weights, or MPI_WIN_NULL */
    int rank, size, S, W;
    int is_server, is_worker, worker_index;
    int *worker_ranks;    /* (W) */
    uint64_t *lo, *hi;    /* (S) shard key ranges */
    uint64_t n_params;
    uint64_t bytes_sent, bytes_recv;
    /* test hooks (environment, see ps_hooks_read) */
    int64_t hook_corrupt_step, hook_nan_step;
    int hook_wire_version;
} ps_ctx;

/* Checks an MPI call: on error prints the MPI error string, the rank and the
 * place, then aborts the whole job. Evaluates the call once. */
#define PS_MPI(call)                                                                                                   \
    do {                                                                                                               \
        int ps_rc_ = (call);                                                                                           \
        if (ps_rc_ != MPI_SUCCESS) ps_mpi_fail(ps_rc_, #call, __FILE__, __LINE__);                                    \
    } while (0)
void ps_mpi_fail(int rc, const char *what, const char *file, int line);

/* Ends the job from any rank with a message (MPI_Abort with code). */
_Noreturn void ps_abort(const ps_ctx *p, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Sets up roles and communicators (collective over MPI_COMM_WORLD). */
int ps_init(ps_ctx *p, int servers, struct lerr *e);
/* Splits the n_params keys among the S shards. */
void ps_layout(ps_ctx *p, uint64_t n_params);
/* An allocator that gives the ranks of a node one shared copy of the
 * converted base weights (MPI-3 shared window; see gpt2_open_shared). */
model_alloc ps_node_alloc(ps_ctx *p);
void ps_free(ps_ctx *p);

/* Non-blocking send of len bytes (counted); buf must live until the request completes. */
void ps_isend(ps_ctx *p, const void *buf, size_t len, int dest, int tag, MPI_Request *req);
/* Blocking receive of one message from src (or MPI_ANY_SOURCE) with tag (or
 * MPI_ANY_TAG); returns a malloc'd buffer, its length, sender and tag. */
uint8_t *ps_recv(ps_ctx *p, int src, int tag, size_t *len, int *from, int *tag_out);

/* The share [g0, g0 + n) of a step's global samples that worker index w of W computes. */
void ps_share(int64_t step, int64_t G, int w, int W, int64_t *g0, int64_t *n);

/* The whole distributed run (lora_worker). Returns the process exit code. */
int ps_run(int argc, char **argv);

/* The state of one rank during a run, shared by the coordinator, server and
 * worker parts (coordinator/coordinator.c, coordinator/server.c, worker/worker_loop.c). */
typedef struct {
    ps_ctx p;
    train_ctx t;               /* model, adapter values (t.ad.w), data, workspace */
    int64_t steps, G;          /* optimizer steps, samples per step */
    float *grad;               /* worker: (n_params) summed gradient */
    /* sends in flight (their buffers live until the requests complete) */
    MPI_Request *push_req;     /* worker: (S) this step's pushes */
    uint8_t **push_buf;
    int n_push;
    MPI_Request *upd_req;      /* server: (size) this step's updates, one shared buffer */
    uint8_t *upd_buf;
    int n_upd;
    /* server shard: its range of the optimizer state */
    float *gsum, *m, *v;       /* (hi - lo) */
    int64_t opt_t;             /* AdamW steps applied */
    double best_metric;        /* rank 0: the best [train] metric_for_best so far (best_epoch > 0; restored on resume) */
    int64_t best_epoch;
    uint64_t version;          /* adapter version */
    /* what the coordinator reports for the last step */
    double step_loss;          /* mean token loss */
    int64_t step_tokens;
    float step_lr;
    double step_norm;
    int step_skipped;
    int64_t steps_skipped;     /* rank 0: steps of this run skipped on a non-finite gradient (BSP) */
    int64_t skip_run;          /* servers: consecutive skipped steps (BSP; optim_skip_limit) */
    int peer_stop;             /* rank 0: another rank got a stop signal (passed on in a push or shard stat) */
    double step_compute;       /* the slowest worker's forward/backward time */
    double sum_step_s, sum_compute_s; /* rank 0: totals over the run, for the communication share */
    uint64_t *peer_bytes;      /* rank 0: (size) the latest sent+received totals each rank reported */
    /* checkpoints and resume */
    int64_t start_step;        /* first step of this run (0, or the checkpoint's) */
    int64_t steps_run;         /* steps this process took part in */
    int64_t ssp_steps_done;    /* SSP shards: iterations every worker completed when the loop ended */
    int stop_after, ckpt_after;/* decided by rank 0 for the current step, known to every shard */
    double last_ckpt_time;
    int64_t tokens_seen;
    uint64_t model_hash, model_size;
    /* rank 0: metrics so far (checkpoints carry them) */
    int64_t n_metrics, cap_metrics;
    int64_t *m_step;
    double *m_loss, *m_lr, *m_tps;
    /* rank 0: evaluations so far (checkpoints carry them): step, epoch, CKPT_EVAL_N values a row */
    int64_t n_evals, cap_evals;
    int64_t *ev_step, *ev_epoch;
    double *ev_values;
} ps_state;

/* worker/worker_loop.c */
/* Computes this worker's share of step `step` and sends each shard its range (non-blocking; the
 * requests are completed by worker_finish_step). */
void worker_push(ps_state *r, int64_t step, uint64_t clock_version);
/* Receives one Update from every shard into t.ad.w; returns the status (LORA__STATUS__*). */
int worker_recv_updates(ps_state *r, int64_t step);
void worker_finish_step(ps_state *r);
/* The first worker evaluates on [data] val every [train] eval_every steps
 * (with the values it holds after `steps_done` steps) and prints the line. */
void worker_maybe_eval(ps_state *r, int64_t steps_done);
/* SSP worker: pulls, computes and pushes `steps` iterations. */
void worker_run_ssp(ps_state *r);

/* coordinator/run_ckpt.c: checkpoints, resume and signals */
/* SIGTERM, SIGINT, SIGUSR1: the first asks for a checkpoint and a clean stop after the current
 * step (rank 0 says so at once; a worker's or another shard's passes the request on to rank 0
 * with its next message, BSP); a second one, repeat_ms or more after the first, exits at once
 * (repeats sooner are the same request: a launcher may deliver one twice). */
#define PS_SIGNAL_REPEAT_MS 1000
void ps_signals_install(int rank, long repeat_ms);
int ps_signal_seen(void);
/* Rank 0, during step `step`: stop after it? write a checkpoint after it? */
void ckpt_decide(ps_state *r, int64_t step, int *stop, int *ckpt);
/* After `steps_done` steps: every shard sends rank 0 its state; rank 0 writes the checkpoint.
 * Collective over the server shards. */
void ckpt_collect_and_write(ps_state *r, int64_t steps_done);
/* --resume: rank 0 finds/reads the checkpoint and checks it against the config and model; the
 * shards get their optimizer state. Sets r->start_step on every rank (collective). mode is "auto",
 * a path, or NULL (fresh start). */
void ckpt_resume(ps_state *r, const char *mode);
/* Rank 0 appends a row to the metrics it keeps for checkpoints. */
void metrics_add(ps_state *r, int64_t step, double loss, double lr, double tps);
/* Rank 0: appends an evaluation at the end of epoch `epoch` (step `step`). */
void evals_add(ps_state *r, int64_t step, int64_t epoch, const train_metrics *m);

/* coordinator/server.c */
void server_init(ps_state *r);
void server_free(ps_state *r);
/* One BSP step of this shard: pushes in, AdamW, updates out. */
void server_step_bsp(ps_state *r, int64_t step);
/* Completes the shard's outstanding update sends. */
void server_finish_step(ps_state *r);
/* The SSP event loop of this shard until every worker pushed all iterations;
 * `report` is called on rank 0 each time the slowest worker completes an iteration. */
void server_run_ssp(ps_state *r, void (*report)(ps_state *r, int64_t step, double t_step));

#endif
