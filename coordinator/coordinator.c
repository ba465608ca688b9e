/*
 * lora_worker's run: set-up checks, the step loop, progress, the end of run
 * (see include/ps.h for roles and protocol).
 *
 * Rank 0 reads the same config as every rank and checks, from each rank's
 * Hello, that all loaded the same base model (hash of the safetensors bytes)
 * and the same effective config; it broadcasts the initial adapter so that
 * every rank starts from identical values; it prints one progress line per
 * step (a bar on a terminal) and appends JSON lines to [train] metrics; at the
 * end it gathers the adapter, evaluates, writes it in peft's format and prints
 * the communication summary.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blas_env.h"
#include "plot.h"
#include "ps.h"
#include "util.h"
#include "wire.h"

typedef struct {
    FILE *metrics;
    int tty;
    double t0, t_step;
    uint64_t last_bytes;
    int64_t tokens_done;
} progress;

static progress prog;

/* "rank 3" or "ranks 1-4" for the ranks [lo, hi) */
static void fmt_ranks(char *b, size_t cap, int lo, int hi) {
    if (hi - lo == 1)
        snprintf(b, cap, "rank %d", lo);
    else
        snprintf(b, cap, "ranks %d-%d", lo, hi - 1);
}

/* Which rank does what (rank 0), as include/ps.h describes the roles. */
static void print_roles(const ps_ctx *p) {
    char sv[32], wk[32];
    fmt_ranks(sv, sizeof sv, 0, p->S);
    if (p->size == p->S) {
        printf("roles: %s: server shard%s and worker%s alike (each owns a key range of the adapter and computes "
               "gradients); rank 0 also coordinates, evaluates and writes checkpoints\n", sv, p->S > 1 ? "s" : "",
               p->S > 1 ? "s" : "");
        return;
    }
    fmt_ranks(wk, sizeof wk, p->S, p->size);
    printf("roles: %s: server shard%s (own%s the adapter's values and AdamW's state, %s the pushed gradients); "
           "rank 0 also coordinates, evaluates and writes checkpoints; %s: worker%s (forward and backward on %s "
           "share of each step's batch, gradients of the adapter only)\n", sv, p->S > 1 ? "s" : "",
           p->S > 1 ? "" : "s", p->S > 1 ? "sum" : "sums", wk, p->W > 1 ? "s" : "", p->W > 1 ? "their" : "its");
}

/* Every rank sends rank 0 a Hello; rank 0 compares them with its own. */
static void hello_check(ps_state *r) {
    ps_ctx *p = &r->p;
    char cfgtext[16384];
    int cl = rc_to_text(&r->t.cfg, cfgtext, sizeof cfgtext);
    Lora__Hello h = LORA__HELLO__INIT;
    h.wire_version = WIRE_VERSION;
    h.rank = (uint32_t)p->rank;
    h.model_hash = r->model_hash = model_content_hash(&r->t.model);
    h.model_bytes = r->model_size = r->t.model.size;
    h.config_hash = hash64(cfgtext, (size_t)(cl < (int)sizeof cfgtext ? cl : (int)sizeof cfgtext), 0);
    h.n_params = r->t.ad.n_params;
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    h.host = host;
    char where[PATH_MAX + 64];
    if (!realpath(r->t.cfg.model_path, where)) snprintf(where, sizeof where, "%s (unresolved)", r->t.cfg.model_path);
    h.model_path = where;
    h.config_text = cfgtext;
    mem_usage(&h.rss_bytes, &h.pss_bytes, &h.private_bytes);
    /* the node as MPI sees it (shared memory), not the hostname: containers and
     * network namespaces may share a hostname across nodes */
    int leader = p->rank;
    PS_MPI(MPI_Bcast(&leader, 1, MPI_INT, 0, p->node)); /* collective over the node */
    h.node_leader = (uint32_t)leader;
    size_t len;
    uint8_t *mine = wire_pack(&h.base, &len);
    if (p->rank != 0) {
        MPI_Request req;
        ps_isend(p, mine, len, 0, TAG_HELLO, &req);
        PS_MPI(MPI_Wait(&req, MPI_STATUS_IGNORE));
        free(mine);
        return;
    }
    free(mine);
    uint64_t pss_total = h.pss_bytes, priv_max = 0;
    int same_host = 0;
    for (int i = 1; i < p->size; i++) {
        size_t l;
        int from;
        uint8_t *b = ps_recv(p, MPI_ANY_SOURCE, TAG_HELLO, &l, &from, NULL);
        struct lerr e;
        Lora__Hello *o = wire_unpack_hello(b, l, from, &e);
        free(b);
        if (!o) ps_abort(p, 4, "%s", e.msg);
        if (o->model_hash != h.model_hash || o->model_bytes != h.model_bytes)
            ps_abort(p, 6, "rank %d (host %s) loaded a different base model: %s has %llu bytes, "
                     "hash %016llx; rank 0's %s has %llu bytes, hash %016llx", from, o->host, o->model_path,
                     (unsigned long long)o->model_bytes, (unsigned long long)o->model_hash,
                     where, (unsigned long long)h.model_bytes, (unsigned long long)h.model_hash);
        if (o->config_hash != h.config_hash || o->n_params != h.n_params) {
            char diff[1024] = "the effective config text differs";
            if (!rc_first_difference(cfgtext, o->config_text, diff, sizeof diff) && o->n_params != h.n_params)
                snprintf(diff, sizeof diff, "%llu adapter values there, %llu here", (unsigned long long)o->n_params,
                         (unsigned long long)h.n_params);
            ps_abort(p, 6, "rank %d (host %s) runs a different config than rank 0: %s (rank 0 is 'here'; check that "
                     "every node sees the same config file and --set options)", from, o->host, diff);
        }
        pss_total += o->pss_bytes;
        if (o->node_leader == h.node_leader) {
            same_host++;
            if (o->private_bytes > priv_max) priv_max = o->private_bytes;
        }
        lora__hello__free_unpacked(o, NULL);
    }
    printf("ranks: %d (%d server shard%s, %d worker%s); all loaded %s (%llu bytes, hash %016llx) and the same "
           "config\n", p->size, p->S, p->S > 1 ? "s" : "", p->W, p->W > 1 ? "s" : "", r->t.cfg.model_path,
           (unsigned long long)h.model_bytes, (unsigned long long)h.model_hash);
    print_roles(p);
    printf("memory after loading: rank 0 rss %.1f MiB (private %.1f MiB); all ranks pss %.1f MiB", h.rss_bytes / 1048576.0,
           h.private_bytes / 1048576.0, pss_total / 1048576.0);
    if (same_host) printf("; each extra rank on rank 0's node adds at most %.1f MiB private", priv_max / 1048576.0);
    printf("\n");
}

/* Rank 0's initial adapter values go to every rank, so all start identical. */
static void broadcast_init(ps_state *r) {
    ps_ctx *p = &r->p;
    uint64_t len = 0;
    uint8_t *buf = NULL;
    if (p->rank == 0) {
        size_t l;
        buf = wire_pack_update(r->t.ad.w, 0, r->t.ad.n_params, LORA__DTYPE__F32, r->version,
                               (uint64_t)r->start_step, LORA__STATUS__CONTINUE, &l);
        len = l;
    }
    PS_MPI(MPI_Bcast(&len, 1, MPI_UINT64_T, 0, p->comm)); /* collective */
    if (p->rank != 0) buf = xmalloc(len ? len : 1);
    PS_MPI(MPI_Bcast(buf, (int)len, MPI_BYTE, 0, p->comm)); /* collective */
    if (p->rank == 0)
        p->bytes_sent += len * (uint64_t)(p->size - 1);
    else {
        p->bytes_recv += len;
        struct lerr e;
        Lora__Update *u = wire_unpack_update(buf, len, 0, p->n_params, &e);
        if (!u || u->count != p->n_params) ps_abort(p, 4, "initial adapter: %s", u ? "wrong size" : e.msg);
        wire_decode_floats(r->t.ad.w, u->values.data, u->count, u->dtype, 0);
        lora__update__free_unpacked(u, NULL);
    }
    free(buf);
}

static void fmt_eta(char *b, size_t cap, double s) {
    if (!(s >= 0) || s > 1e7) s = 0;
    long x = (long)(s + 0.5);
    if (x >= 3600)
        snprintf(b, cap, "%ldh%02ldm", x / 3600, x / 60 % 60);
    else
        snprintf(b, cap, "%ldm%02lds", x / 60, x % 60);
}

static double tps_of(const ps_state *r, double t_step) { return t_step > 0 ? r->step_tokens / t_step : 0; }

/* The coordinator's line for a finished step (rank 0 only). */
static void report(ps_state *r, int64_t step, double t_step) {
    ps_ctx *p = &r->p;
    /* every byte is counted once by its sender and once by its receiver */
    uint64_t bytes = p->bytes_sent + p->bytes_recv;
    for (int i = 1; i < p->size; i++) bytes += r->peer_bytes[i];
    bytes /= 2;
    uint64_t dbytes = bytes - prog.last_bytes;
    prog.last_bytes = bytes;
    prog.tokens_done += r->step_tokens;
    r->tokens_seen += r->step_tokens;
    r->steps_skipped += r->step_skipped != 0;
    metrics_add(r, step + 1, r->step_loss, r->step_lr, tps_of(r, t_step));
    r->sum_step_s += t_step;
    r->sum_compute_s += r->step_compute;
    double el = now_s() - prog.t0, tps = t_step > 0 ? r->step_tokens / t_step : 0;
    double eta = (double)(r->steps - step - 1) * el / (double)(step + 1 - r->start_step);
    char etab[32];
    fmt_eta(etab, sizeof etab, eta);
    int64_t every = r->t.cfg.log_every;
    int last = step + 1 == r->steps;
    if (prog.tty) {
        int width = 24, filled = (int)((double)(step + 1) / (double)r->steps * width);
        char bar[32];
        for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
        bar[width] = 0;
        printf("\r[%s] step %lld/%lld | loss %.4f | lr %.2e | %.0f tok/s | %.2f MB moved | ETA %s   ", bar,
               (long long)step + 1, (long long)r->steps, r->step_loss, r->step_lr, tps, dbytes / 1e6, etab);
        if (last || (step + 1) % every == 0) printf("\n");
    } else if (last || (step + 1) % every == 0) {
        printf("step %5lld/%lld | loss %.4f | lr %.3e | %.0f tok/s | %.2f MB moved | ETA %s%s\n",
               (long long)step + 1, (long long)r->steps, r->step_loss, r->step_lr, tps, dbytes / 1e6, etab,
               r->step_skipped ? " | SKIPPED (non-finite gradient)" : "");
    }
    fflush(stdout);
    if (prog.metrics) {
        fprintf(prog.metrics,
                "{\"step\": %lld, \"loss\": %.6f, \"lr\": %.6e, \"tokens\": %lld, \"tokens_per_s\": %.1f, "
                "\"bytes\": %llu, \"grad_norm\": %.6f, \"skipped\": %s, \"elapsed_s\": %.3f}\n",
                (long long)step + 1, r->step_loss, r->step_lr, (long long)r->step_tokens, tps,
                (unsigned long long)dbytes, r->step_norm, r->step_skipped ? "true" : "false", el);
        fflush(prog.metrics);
    }
}

/* After the last step rank 0 holds every shard's final values. */
static void gather_final(ps_state *r) {
    ps_ctx *p = &r->p;
    if (p->size == p->S) return; /* every rank, rank 0 included, is a worker and got every shard's last update */
    if (p->is_server && p->rank != 0) {
        uint64_t lo = p->lo[p->rank];
        size_t len;
        uint8_t *buf = wire_pack_update(r->t.ad.w + lo, lo, p->hi[p->rank] - lo, LORA__DTYPE__F32, r->version, 0,
                                        LORA__STATUS__DONE, &len);
        MPI_Request req;
        ps_isend(p, buf, len, 0, TAG_FINAL, &req);
        PS_MPI(MPI_Wait(&req, MPI_STATUS_IGNORE));
        free(buf);
    } else if (p->rank == 0) {
        for (int s = 1; s < p->S; s++) {
            size_t len;
            uint8_t *buf = ps_recv(p, s, TAG_FINAL, &len, NULL, NULL);
            struct lerr e;
            Lora__Update *u = wire_unpack_update(buf, len, s, p->n_params, &e);
            free(buf);
            if (!u) ps_abort(p, 4, "%s", e.msg);
            wire_decode_floats(r->t.ad.w + u->offset, u->values.data, u->count, u->dtype, 0);
            lora__update__free_unpacked(u, NULL);
        }
    }
}

/* bytes_at_start: this rank's sent/received counters when the step loop began
 * (set-up traffic, the Hello and the initial broadcast, is not per-step traffic). */
static void summary(ps_state *r, double wall, const uint64_t bytes_at_start[2]) {
    ps_ctx *p = &r->p;
    uint64_t mine[2] = {p->bytes_sent - bytes_at_start[0], p->bytes_recv - bytes_at_start[1]}, tot[2] = {0, 0};
    PS_MPI(MPI_Reduce(mine, tot, 2, MPI_UINT64_T, MPI_SUM, 0, p->comm)); /* collective */
    if (p->rank != 0) return;
    int64_t steps = r->steps_run ? r->steps_run : 1;
    double per_step = (double)tot[0] / (double)steps; /* every byte sent is received once */
    /* the same scheme if every base parameter were trained: each worker pushes
     * and receives every parameter in fp32 each step */
    double full = (double)p->W * (double)r->t.model.n_params * 4.0 * 2.0;
    printf("communication: %.3f MB per step (all ranks, sent; %s pushes, %s updates), %llu bytes in total; "
           "full fine-tuning (%lld params, fp32) would move %.1f MB per step: %.1fx more\n",
           per_step / 1e6, wire_dtype_name(r->t.cfg.grad_dtype), wire_dtype_name(r->t.cfg.param_dtype),
           (unsigned long long)tot[0], (long long)r->t.model.n_params, full / 1e6, full / per_step);
    double comm_share = r->sum_step_s > 0 ? 1.0 - r->sum_compute_s / r->sum_step_s : 0;
    if (comm_share < 0) comm_share = 0;
    printf("trained %lld steps in %.1f s (%.0f tok/s) on %d ranks; %.1f ms/step, of which %.1f%% outside the "
           "slowest worker's forward/backward (communication, aggregation, optimizer)\n",
           (long long)r->steps_run, wall, prog.tokens_done / wall, p->size, 1e3 * wall / (double)steps, 100 * comm_share);
    if (prog.metrics) {
        fprintf(prog.metrics, "{\"summary\": true, \"ranks\": %d, \"bytes_per_step\": %.0f, "
                              "\"ratio_vs_full_finetune\": %.2f, \"ms_per_step\": %.3f, \"comm_share\": %.4f, "
                              "\"wall_s\": %.3f}\n", p->size, per_step, full / per_step, 1e3 * wall / (double)steps,
                comm_share, wall);
    }
}

/* The adapter of an epoch's end: out_dir/epoch-N, or out_dir/best (written by worker 0, which holds every value). */
static void save_as(ps_state *r, const char *what, long long n) {
    char dir[RC_PATH + 32];
    struct lerr e;
    if (n >= 0)
        snprintf(dir, sizeof dir, "%s/%s-%lld", r->t.cfg.out_dir, what, n);
    else
        snprintf(dir, sizeof dir, "%s/%s", r->t.cfg.out_dir, what);
    if (train_save(&r->t, dir, &e)) ps_abort(&r->p, 1, "%s", e.msg);
    printf("adapter (peft format) written to %s\n", dir);
}

/* The end of an epoch (BSP), collective over every rank: each worker
 * evaluates its share of the validation items, rank 0 adds the counts (the
 * metrics of the whole set, not an average of averages), prints and logs
 * them and decides whether this is the best adapter so far; worker 0, which
 * holds every value, writes the exports. */
static void epoch_end(ps_state *r, int64_t steps_done) {
    const run_config *c = &r->t.cfg;
    ps_ctx *p = &r->p;
    int64_t ep = train_epoch_ending(&r->t, steps_done - 1);
    if (!ep) return;
    int save_best = 0;
    if (train_has_val(&r->t) && (c->eval_epochs || c->metric_for_best[0])) {
        int nc = train_counts_size(&r->t);
        double *cnt = xcalloc((size_t)nc, sizeof(double)), *sum = xcalloc((size_t)nc, sizeof(double));
        int64_t n = train_val_items(&r->t);
        if (p->is_worker)
            train_eval_counts(&r->t, n * p->worker_index / p->W, n * (p->worker_index + 1) / p->W, cnt);
        PS_MPI(MPI_Reduce(cnt, sum, nc, MPI_DOUBLE, MPI_SUM, 0, p->comm)); /* collective: every rank */
        if (p->rank == 0) {
            train_metrics tm;
            train_metrics_from_counts(&r->t, sum, &tm);
            char line[512], js[512];
            train_metrics_line(&r->t, &tm, line, sizeof line);
            printf("epoch %lld (step %lld) | %s (%lld items evaluated by %d workers)\n", (long long)ep,
                   (long long)steps_done, line, (long long)n, p->W);
            if (prog.metrics) {
                train_metrics_json(&r->t, &tm, js, sizeof js);
                fprintf(prog.metrics, "{\"eval\": true, \"epoch\": %lld, \"step\": %lld, %s}\n", (long long)ep,
                        (long long)steps_done, js);
                fflush(prog.metrics);
            }
            evals_add(r, steps_done, ep, &tm);
            double v;
            int gb;
            if (c->metric_for_best[0] && c->out_dir[0] && !train_metric_value(&r->t, &tm, c->metric_for_best, &v, &gb) &&
                (r->best_epoch == 0 || (gb ? v > r->best_metric : v < r->best_metric))) {
                r->best_metric = v;
                r->best_epoch = ep;
                save_best = 1;
                printf("best %s so far (%.4f, epoch %lld)\n", c->metric_for_best, v, (long long)ep);
            }
            fflush(stdout);
        }
        PS_MPI(MPI_Bcast(&save_best, 1, MPI_INT, 0, p->comm)); /* collective: every rank */
        free(cnt);
        free(sum);
    }
    if (p->worker_index == 0 && p->is_worker) {
        if (save_best) save_as(r, "best", -1);
        if (c->save_epochs && c->out_dir[0]) save_as(r, "epoch", ep);
        fflush(stdout);
    }
}

int ps_run(int argc, char **argv) {
    ps_state r;
    memset(&r, 0, sizeof r);
    struct lerr e = {{0}};
    run_config cfg;
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    /* from the start: a signal while the model loads is a stop request too (after the first step) */
    ps_signals_install(rank, PS_SIGNAL_REPEAT_MS);
    const char *resume_key = "--resume", *resume = NULL;
    /* Ranks may get different arguments (mpirun's MPMD form, a config missing
     * on one node): every rank that fails says why, and all agree to stop
     * before the first collective that the others would wait in forever. */
    int pa = trainer_parse_args(&cfg, argc, argv, &resume_key, &resume, &e);
    int bad = pa < 0 || (pa == 0 && rc_validate(&cfg, &e));
    if (bad) fprintf(stderr, "lora_worker: rank %d: %s\n", rank, e.msg);
    int agreed[2] = {bad, pa == 1}; /* any rank failed; any rank was asked for --help */
    if (MPI_Allreduce(MPI_IN_PLACE, agreed, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS) {
        fprintf(stderr, "lora_worker: rank %d: MPI_Allreduce failed\n", rank);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    int any_bad = agreed[0];
    if (!any_bad && agreed[1]) {
        if (rank == 0)
            printf("usage: mpirun -np N lora_worker --config FILE [--set section.key=value ...] [--resume auto|PATH]\n"
                   "  rank 0 coordinates and serves ([system] servers ranks hold the adapter), the others are workers;\n"
                   "  FILE: an INI run config (configs/*.ini; every key is in README.md's table)\n");
        return 0;
    }
    if (any_bad) {
        if (!bad && rank == 0) fprintf(stderr, "lora_worker: stopping: another rank's arguments or config failed\n");
        return 1;
    }
    if (ps_init(&r.p, cfg.servers, &e)) ps_abort(&r.p, 1, "%s", e.msg);
    ps_ctx *p = &r.p;
    if (rank == 0 && cfg.ckpt_dir[0] && dir_check_writable(cfg.ckpt_dir, &e))
        ps_abort(p, 1, "[checkpoint] dir: %s", e.msg);
    model_alloc shared = ps_node_alloc(p);
    if (train_ctx_open(&r.t, &cfg, &shared, &e)) ps_abort(p, 1, "%s", e.msg);
    ps_layout(p, r.t.ad.n_params);
    if (cfg.staleness > 0 && (cfg.eval_epochs || cfg.save_epochs || cfg.metric_for_best[0]))
        ps_abort(p, 1, "[train] eval_epochs, save_epochs and metric_for_best need BSP ([system] staleness = 0)");
    if (cfg.staleness > 0 && p->size == p->S)
        ps_abort(p, 1, "[system] staleness > 0 needs dedicated server ranks: run more ranks than servers (%d)", p->S);
    r.steps = cfg.steps = r.t.cfg.steps; /* [train] epochs decides it once the data is open */
    r.G = train_global_batch(&r.t);
    if (rank == 0) {
        char line[256];
        lora_params_line(line, sizeof line, (int64_t)r.t.ad.n_params, r.t.ad.full ? 0 : r.t.model.n_params);
        printf("%s\n", line);
    }
    hello_check(&r);
    if (p->is_server) server_init(&r);
    ckpt_resume(&r, resume);
    broadcast_init(&r);
    if (p->is_worker) r.grad = xalloc_aligned(r.t.ad.n_params * sizeof(float));
    /* every rank: workers only take the shards' decision (an Update saying DONE),
     * but must not die of the signal meanwhile */
    r.last_ckpt_time = now_s();
    double val0 = NAN;
    if (rank == 0) {
        r.peer_bytes = xcalloc((size_t)p->size, sizeof(uint64_t));
        /* a bar only for a terminal; launchers (mpirun, srun) give ranks a pty
         * even when their own output goes to a file, so under one ask for it
         * with LORA_PROGRESS=bar */
        const char *pm = getenv("LORA_PROGRESS");
        int launched = getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("SLURM_JOB_ID");
        prog.tty = pm ? !strcmp(pm, "bar") : (isatty(STDOUT_FILENO) && !launched);
        if (cfg.metrics_path[0] && !(prog.metrics = fopen(cfg.metrics_path, "a")))
            ps_abort(p, 1, "[train] metrics: cannot open %s for appending", cfg.metrics_path);
        if (train_has_val(&r.t)) {
            val0 = train_eval(&r.t);
            printf("val loss before: %.4f\n", val0);
        }
        printf("%s: global batch %lld sequences of %d tokens per step, %lld steps, %s pushes\n",
               cfg.staleness ? "SSP" : "BSP", (long long)r.G, r.t.T, (long long)r.steps,
               wire_dtype_name(cfg.grad_dtype));
        fflush(stdout);
        prog.t0 = now_s();
    }
    PS_MPI(MPI_Barrier(p->comm)); /* collective: everyone is set up */
    double t0 = now_s();
    uint64_t bytes_at_start[2] = {p->bytes_sent, p->bytes_recv};
    int stopped = 0;
    if (rank == 0 && r.start_step >= r.steps)
        printf("the run is already at step %lld of %lld: nothing left to train\n", (long long)r.start_step,
               (long long)r.steps);
    if (cfg.staleness == 0) {
        for (int64_t step = r.start_step; step < r.steps; step++) {
            double ts = now_s();
            int status = LORA__STATUS__CONTINUE;
            if (p->is_worker) worker_push(&r, step, r.version);
            if (p->is_server) server_step_bsp(&r, step);
            if (p->is_worker) status = worker_recv_updates(&r, step);
            if (p->is_worker) worker_finish_step(&r);
            if (p->worker_index == 0) worker_maybe_eval(&r, step + 1);
            epoch_end(&r, step + 1);
            if (p->is_server) server_finish_step(&r);
            if (rank == 0) report(&r, step, now_s() - ts);
            r.steps_run++;
            if (p->is_server && r.ckpt_after) ckpt_collect_and_write(&r, step + 1);
            if (p->is_server ? r.stop_after : status == LORA__STATUS__DONE) {
                if (step + 1 < r.steps) {
                    if (rank == 0) printf("stopped after step %lld of %lld on a signal; resume with --resume auto\n",
                                          (long long)step + 1, (long long)r.steps);
                    stopped = 1;
                }
                break;
            }
        }
    } else if (p->is_server) {
        server_run_ssp(&r, report);
        r.steps_run = r.ssp_steps_done - r.start_step;
        if (r.ssp_steps_done < r.steps) {
            stopped = 1;
            if (rank == 0)
                printf("stopped after step %lld of %lld on a signal (SSP: every worker completed that many "
                       "iterations); resume with --resume auto\n", (long long)r.ssp_steps_done, (long long)r.steps);
        }
        /* under SSP the only checkpoint is the one at the end (or at a stop) */
        if (cfg.ckpt_dir[0] && r.start_step < r.steps) ckpt_collect_and_write(&r, r.ssp_steps_done);
    } else {
        worker_run_ssp(&r);
        stopped = ps_signal_seen();
    }
    double wall = now_s() - t0;
    summary(&r, wall, bytes_at_start);
    gather_final(&r);
    int rc = 0;
    if (rank == 0 && !stopped && r.steps_run > 0 && r.steps_skipped == r.steps_run) {
        fprintf(stderr, "lora_worker: every step of the run was skipped (non-finite gradients): nothing was trained; "
                        "no adapter written\n");
        rc = 1;
    }
    if (rank == 0 && !stopped && !rc) {
        if (train_has_val(&r.t)) {
            double val1 = train_eval(&r.t);
            printf("val loss after: %.4f (before %.4f)\n", val1, val0);
        }
        if (cfg.out_dir[0]) {
            if (train_save(&r.t, cfg.out_dir, &e)) {
                fprintf(stderr, "lora_worker: %s\n", e.msg);
                rc = 1;
            } else
                printf("%s written to %s\n", r.t.ad.full ? "model (full fine-tuning, HF format)" : "adapter (peft format)",
                       cfg.out_dir);
        }
    }
    if (rank == 0 && prog.metrics) fclose(prog.metrics);
    if (rank == 0 && !rc && cfg.plot_path[0]) {
        if (plot_metrics(cfg.metrics_path, cfg.plot_path, &e)) {
            fprintf(stderr, "lora_worker: [train] plot: %s\n", e.msg);
            rc = 1;
        } else
            printf("loss curve: %s (from %s)\n", cfg.plot_path, cfg.metrics_path);
    }
    if (p->is_server) server_free(&r);
    free(r.grad);
    free(r.push_req);
    free(r.push_buf);
    free(r.peer_bytes);
    free(r.m_step);
    free(r.m_loss);
    free(r.m_lr);
    free(r.m_tps);
    free(r.ev_step);
    free(r.ev_epoch);
    free(r.ev_values);
    train_ctx_close(&r.t);
    ps_free(&r.p);
    return rc;
}
